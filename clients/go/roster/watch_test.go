package roster

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

func TestEachStartIsSentAsItsOwnOneofCase(t *testing.T) {
	kinds := []rosterv1.ChangeKind{rosterv1.ChangeKind_CHANGE_KIND_USER}
	users := []string{"u1"}
	cases := []struct {
		from From
		want *rosterv1.WatchChangesRequest
	}{
		{Now(), &rosterv1.WatchChangesRequest{Kinds: kinds, UserIds: users}},
		{Beginning(), &rosterv1.WatchChangesRequest{
			Start: &rosterv1.WatchChangesRequest_FromBeginning{FromBeginning: true}, Kinds: kinds, UserIds: users}},
		{After("c42"), &rosterv1.WatchChangesRequest{
			Start: &rosterv1.WatchChangesRequest_AfterCursor{AfterCursor: "c42"}, Kinds: kinds, UserIds: users}},
		// A lost cursor must reach the server as such, not turn into "now".
		{After(""), &rosterv1.WatchChangesRequest{
			Start: &rosterv1.WatchChangesRequest_AfterCursor{AfterCursor: ""}, Kinds: kinds, UserIds: users}},
	}
	for _, c := range cases {
		if got := c.from.request(kinds, users); !proto.Equal(got, c.want) {
			t.Errorf("%v: sent %v, want %v", c.from, got, c.want)
		}
	}
}

func TestTheBackoffDoublesUpToItsCapWithJitterInTheUpperHalf(t *testing.T) {
	for _, random := range []float64{0, 0.5, 0.999999} {
		b := backoff{initial: 100 * time.Millisecond, max: time.Second, random: func() float64 { return random }}
		for attempt, whole := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
			whole *= time.Millisecond
			wait := b.next()
			if wait < whole/2 || wait >= whole {
				t.Fatalf("random %v, attempt %d: waited %v, want in [%v, %v)", random, attempt, wait, whole/2, whole)
			}
		}
		// Many failures neither overflow nor pass the cap.
		for range 200 {
			if wait := b.next(); wait < 500*time.Millisecond || wait >= time.Second {
				t.Fatalf("after many attempts: waited %v", wait)
			}
		}
		b.reset()
		if wait := b.next(); wait >= 100*time.Millisecond {
			t.Fatalf("after a reset: waited %v, want under 100ms", wait)
		}
	}
}

func TestTheJitterSpreadsTheWaits(t *testing.T) {
	b := backoff{initial: time.Second, max: time.Second, random: func() float64 { return 0 }}
	low := b.next()
	b.random = func() float64 { return 0.9 }
	if high := b.next(); high-low != 450*time.Millisecond {
		t.Fatalf("waits %v and %v: the random draw is not applied", low, high)
	}
}

func TestAZeroBackoffStillWaits(t *testing.T) {
	b := backoff{random: func() float64 { return 0 }}
	if wait := b.next(); wait <= 0 {
		t.Fatalf("waited %v: a zero backoff would spin", wait)
	}
}

func TestOnlyTransientFailuresAreRetried(t *testing.T) {
	retried := []error{io.EOF, errIdle, status.Error(codes.Unavailable, "connection reset"),
		status.Error(codes.ResourceExhausted, "too many streams"), status.Error(codes.Internal, "RST_STREAM")}
	final := []error{status.Error(codes.OutOfRange, "resynchronize"), status.Error(codes.PermissionDenied, ""),
		status.Error(codes.Unauthenticated, ""), status.Error(codes.InvalidArgument, "cursor"),
		status.Error(codes.Unimplemented, ""), status.Error(codes.FailedPrecondition, "")}
	for _, err := range retried {
		if !retryable(err) {
			t.Errorf("%v is not retried", err)
		}
	}
	for _, err := range final {
		if retryable(err) {
			t.Errorf("%v is retried", err)
		}
	}
}

// scripted is a ChangeService whose n-th call runs calls[n]; it records the
// requests and when each call's context ended.
type scripted struct {
	rosterv1.UnimplementedChangeServiceServer
	mu       sync.Mutex
	calls    []func(grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error
	requests []*rosterv1.WatchChangesRequest
	ended    chan struct{}
}

func (s *scripted) WatchChanges(request *rosterv1.WatchChangesRequest, stream grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, request)
	s.mu.Unlock()
	defer func() { s.ended <- struct{}{} }()
	if n >= len(s.calls) {
		return status.Error(codes.FailedPrecondition, "no more calls scripted")
	}
	return s.calls[n](stream)
}

func (s *scripted) sent() []*rosterv1.WatchChangesRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// serveOnLoopback runs a gRPC server with what register adds on a loopback
// port, and dials it with options; both end with the test.
func serveOnLoopback(t *testing.T, register func(*grpc.Server), options ...Option) *Client {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	register(server)
	go server.Serve(listener)
	t.Cleanup(server.Stop)
	client, err := Dial(listener.Addr().String(), "key", append([]Option{Plaintext()}, options...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// serve runs the script on a loopback port and dials it.
func serve(t *testing.T, calls ...func(grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error) (*Client, *scripted) {
	t.Helper()
	script := &scripted{calls: calls, ended: make(chan struct{}, 100)}
	client := serveOnLoopback(t, func(server *grpc.Server) { rosterv1.RegisterChangeServiceServer(server, script) })
	return client, script
}

func change(cursor string) *rosterv1.WatchChangesResponse {
	return &rosterv1.WatchChangesResponse{Event: &rosterv1.WatchChangesResponse_Change{
		Change: &rosterv1.Change{Cursor: cursor, Kind: rosterv1.ChangeKind_CHANGE_KIND_USER, ResourceId: "u-" + cursor}}}
}

func heartbeat(cursor string) *rosterv1.WatchChangesResponse {
	return &rosterv1.WatchChangesResponse{Event: &rosterv1.WatchChangesResponse_Heartbeat{
		Heartbeat: &rosterv1.Heartbeat{Cursor: cursor}}}
}

func send(responses ...*rosterv1.WatchChangesResponse) func(grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
	return func(stream grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
		for _, response := range responses {
			if err := stream.Send(response); err != nil {
				return err
			}
		}
		return nil
	}
}

func then(first func(grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error, err error) func(grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
	return func(stream grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
		if sendErr := first(stream); sendErr != nil {
			return sendErr
		}
		return err
	}
}

// hold keeps the stream open until the client ends it.
func hold(responses ...*rosterv1.WatchChangesResponse) func(grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
	return func(stream grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
		if err := send(responses...)(stream); err != nil {
			return err
		}
		<-stream.Context().Done()
		return stream.Context().Err()
	}
}

func fast() WatchOption { return WatchBackoff(time.Millisecond, 5*time.Millisecond) }

func collect(t *testing.T, changes func(func(*rosterv1.Change, error) bool)) (cursors []string, errs []error) {
	t.Helper()
	for change, err := range changes {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cursors = append(cursors, change.Cursor)
	}
	return cursors, errs
}

func TestAFailedStreamResumesAfterTheLastCursorAndAnOutOfRangeEndsTheLoop(t *testing.T) {
	client, script := serve(t,
		then(send(change("c1"), heartbeat("h2")), status.Error(codes.Unavailable, "restarting")),
		then(send(change("c3")), io.EOF),               // a stream the server ended in order
		then(send(), status.Error(codes.Internal, "")), // fails before sending anything
		then(send(change("c4")), status.Error(codes.OutOfRange, "resynchronize")),
	)
	var retries []error
	kinds := []rosterv1.ChangeKind{rosterv1.ChangeKind_CHANGE_KIND_USER, rosterv1.ChangeKind_CHANGE_KIND_MEMBERSHIP}
	cursors, errs := collect(t, client.Watch(context.Background(), Now(), fast(), WatchKinds(kinds...), WatchUsers("u1", "u2"),
		WatchRetries(func(err error, wait time.Duration) { retries = append(retries, err) })))

	if !slices.Equal(cursors, []string{"c1", "c3", "c4"}) {
		t.Fatalf("yielded %v", cursors)
	}
	if len(errs) != 1 || status.Code(errs[0]) != codes.OutOfRange {
		t.Fatalf("errors yielded: %v", errs)
	}
	if len(retries) != 3 {
		t.Fatalf("retries reported: %v", retries)
	}
	requests := script.sent()
	starts := []string{}
	for _, request := range requests {
		starts = append(starts, request.GetAfterCursor())
		if !slices.Equal(request.Kinds, kinds) || !slices.Equal(request.UserIds, []string{"u1", "u2"}) {
			t.Fatalf("a reconnection lost the filters: %v", request)
		}
	}
	// The first call is from now; then after the heartbeat, the change, and
	// the same change again since the third call received nothing.
	if requests[0].Start != nil || !slices.Equal(starts, []string{"", "h2", "c3", "c3"}) {
		t.Fatalf("calls started at %v (first %v)", starts, requests[0].Start)
	}
}

func TestAnErrorNoRetryFixesIsYieldedOnceWithoutRetrying(t *testing.T) {
	for _, code := range []codes.Code{codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument} {
		client, script := serve(t, then(send(), status.Error(code, "no")))
		cursors, errs := collect(t, client.Watch(context.Background(), Beginning(), fast()))
		if len(cursors) != 0 || len(errs) != 1 || status.Code(errs[0]) != code {
			t.Fatalf("%v: yielded %v, errors %v", code, cursors, errs)
		}
		if requests := script.sent(); len(requests) != 1 || !requests[0].GetFromBeginning() {
			t.Fatalf("%v: calls %v", code, requests)
		}
	}
}

func TestBreakingTheLoopEndsTheCall(t *testing.T) {
	client, script := serve(t, hold(change("c1"), change("c2")))
	for change, err := range client.Watch(context.Background(), Now()) {
		if err != nil || change.Cursor != "c1" {
			t.Fatalf("got %v, %v", change, err)
		}
		break
	}
	select {
	case <-script.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the server's call is still open 5 s after the loop broke")
	}
}

func TestCancellingTheContextEndsTheLoopWithoutAnError(t *testing.T) {
	client, script := serve(t, hold(change("c1")))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []error)
	go func() {
		_, errs := collect(t, client.Watch(ctx, Now(), WatchHeartbeats(func(*rosterv1.Heartbeat) {})))
		done <- errs
	}()
	// Wait for the call, then cancel while the server holds it open.
	deadline := time.Now().Add(5 * time.Second)
	for len(script.sent()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case errs := <-done:
		if len(errs) != 0 {
			t.Fatalf("cancelling yielded %v", errs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end within 5 s of cancelling")
	}
	<-script.ended
}

func TestASilentStreamIsReplacedAfterTheIdleTimeout(t *testing.T) {
	var beats []string
	client, script := serve(t, hold(heartbeat("h1")), then(send(change("c2")), status.Error(codes.PermissionDenied, "revoked")))
	var retries []error
	cursors, errs := collect(t, client.Watch(context.Background(), Now(), fast(), WatchIdleTimeout(100*time.Millisecond),
		WatchHeartbeats(func(h *rosterv1.Heartbeat) { beats = append(beats, h.Cursor) }),
		WatchRetries(func(err error, _ time.Duration) { retries = append(retries, err) })))
	if !slices.Equal(cursors, []string{"c2"}) || len(errs) != 1 || !slices.Equal(beats, []string{"h1"}) {
		t.Fatalf("yielded %v, errors %v, heartbeats %v", cursors, errs, beats)
	}
	if len(retries) != 1 || !errors.Is(retries[0], errIdle) {
		t.Fatalf("retries: %v", retries)
	}
	if requests := script.sent(); requests[1].GetAfterCursor() != "h1" {
		t.Fatalf("resumed from %v", requests[1])
	}
}
