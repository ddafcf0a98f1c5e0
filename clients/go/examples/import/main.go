// Imports a CSV file into Roster and prints every failed row and the counts.
//
//	ROSTER_SERVER=127.0.0.1:50051 ROSTER_API_KEY=rst_key_... go run ./examples/import people.csv
//
// ROSTER_PLAINTEXT=1 dials without TLS (a local server). ROSTER_CA_CERT trusts
// a private CA; ROSTER_CLIENT_CERT and ROSTER_CLIENT_KEY present a client
// certificate (a server started with --tls-client-ca).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/roster-dev/roster/clients/go/examples/internal/connect"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: import FILE.csv (ROSTER_SERVER and ROSTER_API_KEY set)")
	}
	client, err := connect.Dial()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// Ctrl-C stops the job after the row in progress.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	me, err := client.Auth.WhoAmI(ctx, &rosterv1.WhoAmIRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("importing into %s\n", me.OrganizationName)

	file, err := os.Open(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	defer file.Close()
	run, err := client.ImportCSV(ctx, file, &rosterv1.ImportOptions{FileName: os.Args[1]})
	if err != nil {
		log.Fatal(err)
	}
	for row, err := range run.Rows() {
		if err != nil {
			log.Fatalf("job %s: %v", run.JobID(), err)
		}
		if row.Outcome == rosterv1.RowOutcome_ROW_OUTCOME_FAILED {
			for _, issue := range row.Errors {
				fmt.Printf("line %d: %s: %s (%s)\n", row.Line, issue.Field, issue.Message, issue.Code)
			}
		}
	}
	summary := run.Summary()
	counts := summary.Counts
	fmt.Printf("job %s %s: %d rows, %d created, %d updated, %d failed\n",
		summary.JobId, summary.Status, counts.GetRows(), counts.GetCreated(), counts.GetUpdated(), counts.GetFailed())
}
