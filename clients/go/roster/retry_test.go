package roster

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// creates is a UserService whose n-th CreateUser runs answers[n] (with the
// call's context); it records each request and each call's deadline.
type creates struct {
	rosterv1.UnimplementedUserServiceServer
	mu        sync.Mutex
	answers   []func(context.Context) error
	requests  []*rosterv1.CreateUserRequest
	deadlines []time.Duration
}

func (s *creates) CreateUser(ctx context.Context, request *rosterv1.CreateUserRequest) (*rosterv1.CreateUserResponse, error) {
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, request)
	deadline, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, time.Until(deadline))
	s.mu.Unlock()
	if n >= len(s.answers) {
		return nil, status.Error(codes.FailedPrecondition, "no more answers scripted")
	}
	if err := s.answers[n](ctx); err != nil {
		return nil, err
	}
	return &rosterv1.CreateUserResponse{User: &rosterv1.User{Id: "user-1", Email: request.GetUser().GetEmail()}}, nil
}

func (s *creates) sent() []*rosterv1.CreateUserRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// serveCreates runs the answers on a loopback port and dials it with policy.
func serveCreates(t *testing.T, policy RetryPolicy, answers ...func(context.Context) error) (*Client, *creates) {
	t.Helper()
	script := &creates{answers: answers}
	client := serveOnLoopback(t, func(server *grpc.Server) { rosterv1.RegisterUserServiceServer(server, script) },
		WithRetryPolicy(policy))
	return client, script
}

func fail(err error) func(context.Context) error { return func(context.Context) error { return err } }

func answer(context.Context) error { return nil }

// withDetails is an error of code with the details attached.
func withDetails(t *testing.T, code codes.Code, details ...protoadapt.MessageV1) error {
	t.Helper()
	s, err := status.New(code, "scripted").WithDetails(details...)
	if err != nil {
		t.Fatal(err)
	}
	return s.Err()
}

func inProgress(t *testing.T) error {
	return withDetails(t, codes.AlreadyExists, &errdetails.ErrorInfo{Reason: "REQUEST_IN_PROGRESS", Domain: "roster"})
}

func retryAfter(t *testing.T, code codes.Code, delay time.Duration) error {
	return withDetails(t, code, &errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
}

// quick retries at once, with a budget a test does not wait out.
func quick() RetryPolicy {
	return RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		AttemptTimeout: 5 * time.Second, Budget: 10 * time.Second}
}

var uuid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestACreateIsRetriedWithTheSameRequestIdUntilItIsAnswered(t *testing.T) {
	client, script := serveCreates(t, quick(),
		fail(status.Error(codes.Unavailable, "the database is away")),
		fail(status.Error(codes.DeadlineExceeded, "outcome unknown")),
		fail(inProgress(t)),
		fail(retryAfter(t, codes.ResourceExhausted, time.Millisecond)),
		answer)
	request := &rosterv1.CreateUserRequest{User: &rosterv1.User{Email: "ana@example.com"}}
	created, err := client.CreateUser(context.Background(), request)
	if err != nil {
		t.Fatal(err)
	}
	if created.GetUser().GetId() != "user-1" {
		t.Fatalf("answered %v", created)
	}
	sent := script.sent()
	if len(sent) != 5 {
		t.Fatalf("%d attempts, want 5", len(sent))
	}
	id := sent[0].RequestId
	if !uuid.MatchString(id) {
		t.Fatalf("request id %q is not a random UUID", id)
	}
	for i, attempt := range sent {
		if !proto.Equal(attempt, sent[0]) {
			t.Fatalf("attempt %d sent %v, the first %v", i, attempt, sent[0])
		}
	}
	if request.RequestId != "" {
		t.Fatalf("the caller's request was changed: request_id %q", request.RequestId)
	}
	// Another call is another create: another id.
	script.answers = append(script.answers, answer)
	if _, err := client.CreateUser(context.Background(), request); err != nil {
		t.Fatal(err)
	}
	if again := script.sent()[5].RequestId; again == id || !uuid.MatchString(again) {
		t.Fatalf("the second create was sent with request id %q, the first with %q", again, id)
	}
}

func TestARequestIdSetByTheCallerIsKept(t *testing.T) {
	client, script := serveCreates(t, quick(), fail(status.Error(codes.Unavailable, "")), answer)
	request := &rosterv1.CreateUserRequest{User: &rosterv1.User{Email: "ana@example.com"}, RequestId: "order-42"}
	if _, err := client.CreateUser(context.Background(), request); err != nil {
		t.Fatal(err)
	}
	for _, attempt := range script.sent() {
		if attempt.RequestId != "order-42" {
			t.Fatalf("sent request id %q, want order-42", attempt.RequestId)
		}
	}
}

func TestEveryCreateFillsItsRequestId(t *testing.T) {
	for _, request := range []proto.Message{&rosterv1.CreateUserRequest{}, &rosterv1.CloneUserRequest{},
		&rosterv1.CreateGroupRequest{}, &rosterv1.CreateUnitRequest{}, &rosterv1.CreateProfileRequest{},
		&rosterv1.CreateApiKeyRequest{}} {
		identified := withRequestID(request).ProtoReflect()
		field := identified.Descriptor().Fields().ByName("request_id")
		if id := identified.Get(field).String(); !uuid.MatchString(id) {
			t.Errorf("%s: request_id %q", identified.Descriptor().Name(), id)
		}
	}
}

func TestOnlyFailuresANewAttemptMayCureAreRetried(t *testing.T) {
	final := []error{
		status.Error(codes.InvalidArgument, "user.email: must be an email address"),
		status.Error(codes.AlreadyExists, "the email is taken"), // no REQUEST_IN_PROGRESS
		withDetails(t, codes.AlreadyExists, &errdetails.ErrorInfo{Reason: "REQUEST_IN_PROGRESS", Domain: "elsewhere"}),
		status.Error(codes.ResourceExhausted, "quota"), // no RetryInfo: waiting does not restore it
		status.Error(codes.PermissionDenied, ""),
		status.Error(codes.Unauthenticated, ""),
		status.Error(codes.Internal, ""),
		status.Error(codes.FailedPrecondition, ""),
	}
	for _, err := range final {
		client, script := serveCreates(t, quick(), fail(err), answer)
		_, got := client.CreateUser(context.Background(), &rosterv1.CreateUserRequest{})
		if status.Code(got) != status.Code(err) || len(script.sent()) != 1 {
			t.Errorf("%v: answered %v after %d attempts, want it at once", err, got, len(script.sent()))
		}
	}
}

func TestTheServersRetryHintIsWaited(t *testing.T) {
	policy := quick()
	var waits []time.Duration
	policy.OnRetry = func(method string, err error, wait time.Duration) {
		if method != "CreateUser" || status.Code(err) != codes.Unavailable {
			t.Errorf("OnRetry(%q, %v)", method, err)
		}
		waits = append(waits, wait)
	}
	client, _ := serveCreates(t, policy, fail(retryAfter(t, codes.Unavailable, 300*time.Millisecond)), answer)
	started := time.Now()
	if _, err := client.CreateUser(context.Background(), &rosterv1.CreateUserRequest{}); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(started); elapsed < 300*time.Millisecond {
		t.Fatalf("retried after %v, the server asked for 300ms", elapsed)
	}
	if len(waits) != 1 || waits[0] < 300*time.Millisecond || waits[0] > 330*time.Millisecond {
		t.Fatalf("waits %v, want one in [300ms, 330ms]", waits)
	}
}

func TestAHintPastTheBudgetEndsTheRetriesAtOnce(t *testing.T) {
	policy := quick()
	policy.Budget = time.Second
	client, script := serveCreates(t, policy, fail(retryAfter(t, codes.Unavailable, 5*time.Second)), answer)
	started := time.Now()
	_, err := client.CreateUser(context.Background(), &rosterv1.CreateUserRequest{})
	if status.Code(err) != codes.Unavailable || len(script.sent()) != 1 {
		t.Fatalf("answered %v after %d attempts", err, len(script.sent()))
	}
	if elapsed := time.Since(started); elapsed > 500*time.Millisecond {
		t.Fatalf("waited %v for a retry the budget could not hold", elapsed)
	}
}

func TestTheBudgetEndsTheRetriesWithTheLastError(t *testing.T) {
	policy := quick()
	policy.Budget = 300 * time.Millisecond
	policy.InitialBackoff, policy.MaxBackoff = 20*time.Millisecond, 20*time.Millisecond
	answers := make([]func(context.Context) error, 1000)
	for i := range answers {
		answers[i] = fail(status.Errorf(codes.Unavailable, "attempt %d", i))
	}
	client, script := serveCreates(t, policy, answers...)
	started := time.Now()
	_, err := client.CreateUser(context.Background(), &rosterv1.CreateUserRequest{})
	elapsed := time.Since(started)
	sent := len(script.sent())
	if status.Code(err) != codes.Unavailable || !strings.HasSuffix(status.Convert(err).Message(), fmt.Sprintf("attempt %d", sent-1)) {
		t.Fatalf("answered %v after %d attempts, want the last one's error", err, sent)
	}
	if sent < 3 || elapsed > 400*time.Millisecond {
		t.Fatalf("%d attempts in %v within a 300ms budget", sent, elapsed)
	}
}

func TestAnUnansweredAttemptIsCutByItsDeadlineAndRetried(t *testing.T) {
	policy := quick()
	policy.AttemptTimeout = 200 * time.Millisecond
	hold := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	client, script := serveCreates(t, policy, hold, answer)
	started := time.Now()
	if _, err := client.CreateUser(context.Background(), &rosterv1.CreateUserRequest{}); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(started); elapsed < 200*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("answered after %v", elapsed)
	}
	sent := script.sent()
	if len(sent) != 2 || sent[0].RequestId != sent[1].RequestId {
		t.Fatalf("sent %v", sent)
	}
	for i, left := range script.deadlines {
		if left > 200*time.Millisecond {
			t.Fatalf("attempt %d had %v, over the attempt timeout", i, left)
		}
	}
}

func TestNoAttemptOutlivesTheBudget(t *testing.T) {
	policy := quick()
	policy.Budget = 300 * time.Millisecond
	client, script := serveCreates(t, policy, answer)
	if _, err := client.CreateUser(context.Background(), &rosterv1.CreateUserRequest{}); err != nil {
		t.Fatal(err)
	}
	if left := script.deadlines[0]; left > 300*time.Millisecond {
		t.Fatalf("the attempt had %v, over the 300ms budget", left)
	}
}

func TestTheCallersDeadlineShortensTheBudget(t *testing.T) {
	client, script := serveCreates(t, quick(), answer)
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if _, err := client.CreateUser(ctx, &rosterv1.CreateUserRequest{}); err != nil {
		t.Fatal(err)
	}
	if left := script.deadlines[0]; left > 250*time.Millisecond {
		t.Fatalf("the attempt had %v, past the caller's deadline", left)
	}
}

func TestCancellingTheContextWhileWaitingEndsWithCancelled(t *testing.T) {
	policy := quick()
	ctx, cancel := context.WithCancel(context.Background())
	policy.OnRetry = func(string, error, time.Duration) { cancel() }
	client, script := serveCreates(t, policy, fail(retryAfter(t, codes.Unavailable, 5*time.Second)), answer)
	started := time.Now()
	_, err := client.CreateUser(ctx, &rosterv1.CreateUserRequest{})
	if status.Code(err) != codes.Canceled || len(script.sent()) != 1 || time.Since(started) > time.Second {
		t.Fatalf("answered %v after %d attempts and %v", err, len(script.sent()), time.Since(started))
	}
}

func TestRetryRetriesAReadTheSameWay(t *testing.T) {
	client, script := serveCreates(t, quick(), fail(status.Error(codes.Unavailable, "")), answer)
	var created *rosterv1.CreateUserResponse
	request := &rosterv1.CreateUserRequest{RequestId: "mine"}
	err := client.Retry(context.Background(), func(ctx context.Context) (err error) {
		created, err = client.Users.CreateUser(ctx, request)
		return err
	})
	if err != nil || created.GetUser().GetId() != "user-1" || len(script.sent()) != 2 {
		t.Fatalf("answered %v, %v after %d attempts", created, err, len(script.sent()))
	}
}

func TestDialRefusesAPolicyThatCannotRun(t *testing.T) {
	cases := map[string]RetryPolicy{
		"InitialBackoff": {InitialBackoff: -1, MaxBackoff: time.Second, AttemptTimeout: time.Second, Budget: time.Second},
		"MaxBackoff":     {InitialBackoff: time.Second, MaxBackoff: time.Millisecond, AttemptTimeout: time.Second, Budget: time.Second},
		"AttemptTimeout": {InitialBackoff: time.Millisecond, MaxBackoff: time.Second, Budget: time.Second},
		"Budget":         {InitialBackoff: time.Millisecond, MaxBackoff: time.Second, AttemptTimeout: time.Second},
	}
	for field, policy := range cases {
		_, err := Dial("127.0.0.1:1", "", Plaintext(), WithRetryPolicy(policy))
		if err == nil || !strings.Contains(err.Error(), "RetryPolicy."+field) {
			t.Errorf("a bad %s: Dial answered %v", field, err)
		}
	}
	client, err := Dial("127.0.0.1:1", "", Plaintext())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if got := client.RetryPolicy(); got.Budget != 30*time.Second || got.AttemptTimeout != 10*time.Second {
		t.Fatalf("default policy %+v", got)
	}
}
