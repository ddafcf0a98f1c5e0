// access-cache keeps every user's access in memory from Roster's change
// stream and answers "may user X use product P on unit U" over HTTP without
// calling Roster (see README.md and package cache).
//
//	ROSTER_SERVER=127.0.0.1:50051 ROSTER_API_KEY=rst_key_... ROSTER_PLAINTEXT=1 go run ./examples/access-cache
//	curl 'localhost:8080/may?user=ID&product=Point+of+Sale&unit=ID'
//
// ACCESS_CACHE_LISTEN sets the HTTP address (default 127.0.0.1:8080);
// ACCESS_CACHE_MAX_SILENCE (a duration: 1m) refuses everyone while nothing
// came from Roster for that long (see cache.WithMaxSilence).
// ROSTER_CA_CERT trusts a private CA; ROSTER_CLIENT_CERT and
// ROSTER_CLIENT_KEY present a client certificate.
package main

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/roster-dev/roster/clients/go/examples/access-cache/cache"
	"github.com/roster-dev/roster/clients/go/examples/internal/connect"
)

func main() {
	client, err := connect.Dial()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var options []cache.Option
	if silence := os.Getenv("ACCESS_CACHE_MAX_SILENCE"); silence != "" {
		d, err := time.ParseDuration(silence)
		if err != nil || d <= 0 {
			log.Fatalf("ACCESS_CACHE_MAX_SILENCE=%q: give a positive duration such as 1m", silence)
		}
		options = append(options, cache.WithMaxSilence(d))
	}
	access := cache.New(client, options...)
	listen := os.Getenv("ACCESS_CACHE_LISTEN")
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	server := &http.Server{Addr: listen, Handler: access.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		server.Close()
	}()
	go func() {
		slog.Info("serving HTTP", "listen", listen)
		if err := server.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	// Run returns when ctx ends or Roster refuses the key: a cache that can
	// no longer follow the changes must not answer, so the service stops.
	if err := access.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("access cache: %v", err)
	}
}
