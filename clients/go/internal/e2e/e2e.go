// Package e2e is what the end-to-end tests share: the environment
// clients/e2e sets, and clients dialed from it.
//
//	ROSTER_SERVER       host:port, plaintext unless ROSTER_CA_CERT is set
//	ROSTER_CA_CERT      the CA of the server's certificate: dial over TLS
//	ROSTER_CLIENT_CERT  a client certificate and its key, for a server
//	ROSTER_CLIENT_KEY   started with --tls-client-ca (mutual TLS)
package e2e

import (
	"os"
	"testing"

	"github.com/roster-dev/roster/clients/go/roster"
)

// Env is the variable's value; the test fails when it is not set.
func Env(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: run the end-to-end tests with clients/e2e", name)
	}
	return value
}

// Dial connects to ROSTER_SERVER with key ("" for none), closed when the test ends.
func Dial(t *testing.T, key string) *roster.Client {
	t.Helper()
	return DialAt(t, Env(t, "ROSTER_SERVER"), key)
}

// DialAt is Dial to another address (a proxy) with the same transport.
func DialAt(t *testing.T, address, key string) *roster.Client {
	t.Helper()
	client, err := roster.Dial(address, key, Transport(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// Transport is TLS when clients/e2e gives a CA, with a client certificate
// when it gives one; plaintext otherwise.
func Transport(t *testing.T) roster.Option {
	t.Helper()
	ca := os.Getenv("ROSTER_CA_CERT")
	if ca == "" {
		return roster.Plaintext()
	}
	config, err := roster.TLSConfig(ca, os.Getenv("ROSTER_CLIENT_CERT"), os.Getenv("ROSTER_CLIENT_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	return roster.WithTLS(config)
}
