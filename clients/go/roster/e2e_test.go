//go:build e2e

// End-to-end tests against a running `roster serve`, started by
// clients/e2e with an organization of their own:
//
//	ROSTER_SERVER       host:port, plaintext unless ROSTER_CA_CERT is set
//	ROSTER_CA_CERT      the CA of the server's certificate: dial over TLS
//	ROSTER_CLIENT_CERT  a client certificate and its key, for a server
//	ROSTER_CLIENT_KEY   started with --tls-client-ca (mutual TLS)
//	ROSTER_ADMIN_KEY    an ADMIN API key of the organization
//	ROSTER_VIEWER_KEY   a VIEWER API key of the same organization
//	ROSTER_IMPORT_FILE  a CSV file to import
//	ROSTER_CLI_RESULTS  the results `roster import` wrote for the same file
package roster_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-dev/roster/clients/go/internal/e2e"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// The environment's helpers, shared with the example's end-to-end tests.
var (
	env       = e2e.Env
	dial      = e2e.Dial
	transport = e2e.Transport
)

func context30s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAnAdminKeyCreatesAGroupAndAUserThenFindsThem(t *testing.T) {
	ctx := context30s(t)
	admin := dial(t, env(t, "ROSTER_ADMIN_KEY"))

	me, err := admin.Auth.WhoAmI(ctx, &rosterv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !me.OrganizationAdmin || me.GetApiKey() == nil {
		t.Fatalf("expected an organization-admin API key, got %v", me)
	}

	group := createGroup(t, ctx, admin, "Go auditors")

	created, err := admin.Users.CreateUser(ctx, &rosterv1.CreateUserRequest{
		User:     &rosterv1.User{FirstName: "Gopher", LastName: "Gonçalves", Email: "gopher@e2e-go.example"},
		GroupIds: []string{group},
	})
	if err != nil {
		t.Fatal(err)
	}

	found, err := admin.Users.ListUsers(ctx, &rosterv1.ListUsersRequest{Query: "goncalves gopher"})
	if err != nil {
		t.Fatal(err)
	}
	if len(found.Users) != 1 || found.Users[0].Id != created.User.Id {
		t.Fatalf("search for the new user found %v", found.Users)
	}

	byEmail, err := admin.Users.LookupUser(ctx, &rosterv1.LookupUserRequest{
		Key: &rosterv1.LookupUserRequest_Email{Email: "GOPHER@e2e-go.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(byEmail.Users) != 1 || byEmail.Users[0].Id != created.User.Id {
		t.Fatalf("lookup by email found %v", byEmail.Users)
	}
}

func TestAnInvalidRequestNamesEachFieldInATypedBadRequest(t *testing.T) {
	admin := dial(t, env(t, "ROSTER_ADMIN_KEY"))
	_, err := admin.Users.CreateUser(context30s(t), &rosterv1.CreateUserRequest{
		User: &rosterv1.User{FirstName: "", LastName: "Nobody", Email: "not-an-email"},
	})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("expected INVALID_ARGUMENT, got %v", err)
	}
	fields := map[string]string{}
	for _, detail := range st.Details() {
		if badRequest, ok := detail.(*errdetails.BadRequest); ok {
			for _, violation := range badRequest.FieldViolations {
				fields[violation.Field] = violation.Reason
			}
		}
	}
	if fields["user.first_name"] == "" || fields["user.email"] == "" {
		t.Fatalf("expected violations on user.first_name and user.email, got %v", fields)
	}
}

func TestAViewerKeyMayReadButNotWrite(t *testing.T) {
	ctx := context30s(t)
	viewer := dial(t, env(t, "ROSTER_VIEWER_KEY"))
	if _, err := viewer.Users.ListUsers(ctx, &rosterv1.ListUsersRequest{}); err != nil {
		t.Fatalf("a viewer reads: %v", err)
	}
	_, err := viewer.Users.CreateUser(ctx, &rosterv1.CreateUserRequest{
		User: &rosterv1.User{FirstName: "Not", LastName: "Allowed", Email: "not.allowed@e2e-go.example"},
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("expected PERMISSION_DENIED, got %v", err)
	}
}

// The helper streams the file from disk and yields the same outcome for
// every row as `roster import` did for the same file in another organization.
func TestImportingAFileFromDiskGivesTheSameRowOutcomesAsTheCommandLine(t *testing.T) {
	admin := dial(t, env(t, "ROSTER_ADMIN_KEY"))
	expected := readResults(t, env(t, "ROSTER_CLI_RESULTS"))
	file, err := os.Open(env(t, "ROSTER_IMPORT_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	info, _ := file.Stat()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Past the first 256 KiB the file only reads on once a row result has
	// come back: a helper that read the whole file before sending, or that
	// did not receive while sending, would stall here.
	gate := &gatedReader{file: file, openAfter: 256 << 10, open: make(chan struct{})}
	run, err := admin.ImportCSV(ctx, gate, &rosterv1.ImportOptions{
		FileName: "e2e.csv", SendInvitations: ptr(false), NotifyRequester: ptr(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for row, err := range run.Rows() {
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			close(gate.open)
		}
		got = append(got, resultLine(row))
	}
	if !gate.waited.Load() {
		t.Fatal("the helper never waited for a result past 256 KiB: it did not stream the file, or the file is smaller")
	}

	if run.JobID() == "" || run.Summary().JobId != run.JobID() {
		t.Fatalf("job id header %q, summary %q", run.JobID(), run.Summary().JobId)
	}
	if len(got) != len(expected) {
		t.Fatalf("%d row results, the command line had %d", len(got), len(expected))
	}
	for i := range expected {
		if strings.Join(got[i], "|") != strings.Join(expected[i], "|") {
			t.Fatalf("row %d differs:\n go:  %q\n cli: %q", i, got[i], expected[i])
		}
	}
	t.Logf("%d rows (%d bytes) imported, job %s", len(got), info.Size(), run.JobID())
}

// gatedReader reads file freely up to openAfter bytes, then waits for open.
type gatedReader struct {
	file      io.Reader
	openAfter int
	read      int
	open      chan struct{}
	waited    atomic.Bool
}

func (g *gatedReader) Read(buffer []byte) (int, error) {
	if g.read >= g.openAfter && !g.waited.Load() {
		select {
		case <-g.open:
			g.waited.Store(true)
		case <-time.After(30 * time.Second):
			return 0, errors.New("no row result within 30 s of sending the first 256 KiB")
		}
	}
	n, err := g.file.Read(buffer)
	g.read += n
	return n, err
}

// resultLine is a row result as `roster import` writes it to FILE.results.csv.
func resultLine(row *rosterv1.ImportRowResult) []string {
	issues := func(list []*rosterv1.FieldIssue) string {
		parts := make([]string, 0, len(list))
		for _, issue := range list {
			parts = append(parts, fmt.Sprintf("%s: %s (%s)", issue.Field, issue.Message, issue.Code))
		}
		return strings.Join(parts, "; ")
	}
	return []string{
		strconv.FormatInt(row.Line, 10),
		row.Email,
		strings.TrimPrefix(row.Outcome.String(), "ROW_OUTCOME_"),
		issues(row.Errors),
		issues(row.Warnings),
	}
}

func readResults(t *testing.T, path string) [][]string {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	records, err := csv.NewReader(file).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// The file's own columns come first, then the results: pick by name.
	column := map[string]int{}
	for i, name := range records[0] {
		column[name] = i
	}
	var rows [][]string
	for _, record := range records[1:] {
		row := make([]string, 0, 5)
		for _, name := range []string{"line", "email", "outcome", "errors", "warnings"} {
			i, ok := column[name]
			if !ok {
				t.Fatalf("%s has no %s column: %q", path, name, records[0])
			}
			row = append(row, record[i])
		}
		rows = append(rows, row)
	}
	return rows
}

func ptr[T any](value T) *T { return &value }
