//go:build e2e

package roster_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-dev/roster/clients/go/roster"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// A create whose answer is lost (a proxy swallows what the server sends)
// ends DEADLINE_EXCEEDED; when it is retried the user is already there,
// and the retry, with the same request id, returns that user instead of
// creating a second one.
func TestACreateWhoseAnswerWasLostIsRetriedAndReturnsTheFirstResult(t *testing.T) {
	ctx := context30s(t)
	key := env(t, "ROSTER_ADMIN_KEY")
	direct := dial(t, key)
	proxy := newProxy(t, env(t, "ROSTER_SERVER"))
	email := "lost.answer." + time.Now().Format("150405.000000") + "@e2e-go.example"

	var mu sync.Mutex
	var failures []error
	var thereBeforeTheRetry string
	policy := roster.DefaultRetryPolicy()
	policy.AttemptTimeout = 2 * time.Second
	policy.OnRetry = func(method string, err error, wait time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, err)
		if len(failures) > 1 {
			return
		}
		if found := usersWithEmail(t, ctx, direct, email); len(found) == 1 {
			thereBeforeTheRetry = found[0].Id
		} else {
			t.Errorf("before the retry, users with the email: %v; want the one the first attempt created", found)
		}
		proxy.cut() // The connection that lost the answer goes; a new one answers.
		proxy.resume()
	}
	client, err := roster.Dial(proxy.address(), key, transport(t), roster.WithRetryPolicy(policy))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Auth.WhoAmI(ctx, &rosterv1.WhoAmIRequest{}); err != nil {
		t.Fatal(err) // The connection is up: the create's request will reach the server.
	}
	proxy.swallowAnswers()

	created, err := client.CreateUser(ctx, &rosterv1.CreateUserRequest{
		User:           &rosterv1.User{FirstName: "Lost", LastName: "Answer", Email: email},
		SendInvitation: ptr(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) == 0 || status.Code(failures[0]) != codes.DeadlineExceeded {
		t.Fatalf("the first attempt failed with %v, want DEADLINE_EXCEEDED", failures)
	}
	if thereBeforeTheRetry == "" || created.GetUser().GetId() != thereBeforeTheRetry {
		t.Fatalf("the retry returned user %q, the first attempt created %q", created.GetUser().GetId(), thereBeforeTheRetry)
	}
	if same := usersWithEmail(t, ctx, direct, email); len(same) != 1 {
		t.Fatalf("%d users with the email %s, want 1: %v", len(same), email, same)
	}
}

// usersWithEmail is LookupUser by email: none (NOT_FOUND), one, or several.
func usersWithEmail(t *testing.T, ctx context.Context, client *roster.Client, email string) []*rosterv1.User {
	t.Helper()
	found, err := client.Users.LookupUser(ctx, &rosterv1.LookupUserRequest{
		Key: &rosterv1.LookupUserRequest_Email{Email: email}})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return found.Users
}

// A create sent while every connection is refused is retried until the
// server is reachable again, then made once.
func TestACreateIsRetriedUntilTheServerIsReachableAgain(t *testing.T) {
	ctx := context30s(t)
	key := env(t, "ROSTER_ADMIN_KEY")
	proxy := newProxy(t, env(t, "ROSTER_SERVER"))
	email := "unreachable." + time.Now().Format("150405.000000") + "@e2e-go.example"
	var mu sync.Mutex
	var failures []error
	policy := roster.DefaultRetryPolicy()
	policy.OnRetry = func(method string, err error, wait time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, err)
	}
	client, err := roster.Dial(proxy.address(), key, transport(t), roster.WithRetryPolicy(policy))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	proxy.cut()
	reachable := time.AfterFunc(1500*time.Millisecond, proxy.resume)
	defer reachable.Stop()
	started := time.Now()
	created, err := client.CreateUser(ctx, &rosterv1.CreateUserRequest{
		User:           &rosterv1.User{FirstName: "Un", LastName: "Reachable", Email: email},
		SendInvitation: ptr(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(started); elapsed < 1500*time.Millisecond {
		t.Fatalf("created after %v, while the proxy still refused", elapsed)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) == 0 || status.Code(failures[0]) != codes.Unavailable {
		t.Fatalf("failures %v, want UNAVAILABLE first", failures)
	}
	if found := usersWithEmail(t, ctx, dial(t, key), email); len(found) != 1 || found[0].Id != created.User.Id {
		t.Fatalf("users with the email %s: %v, want only %s", email, found, created.User.Id)
	}
}
