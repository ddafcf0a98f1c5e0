package cache

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-dev/roster/clients/go/roster"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// fakeRoster serves WatchChanges, ListUsers and GetUserAccess on loopback
// from a script, and records in which order things happened.
type fakeRoster struct {
	rosterv1.UnimplementedChangeServiceServer
	rosterv1.UnimplementedUserServiceServer
	mu       sync.Mutex
	events   []string
	watches  []*rosterv1.WatchChangesRequest
	lists    int
	users    [][]string // the users each list answers, in turn
	send     chan *rosterv1.WatchChangesResponse
	sent     chan struct{}
	outdated chan struct{} // closed: the first stream answers OUT_OF_RANGE
}

func (f *fakeRoster) record(event string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, event)
}

func (f *fakeRoster) WatchChanges(request *rosterv1.WatchChangesRequest, stream grpc.ServerStreamingServer[rosterv1.WatchChangesResponse]) error {
	f.mu.Lock()
	f.watches = append(f.watches, request)
	n := len(f.watches)
	f.mu.Unlock()
	beat := &rosterv1.WatchChangesResponse{Event: &rosterv1.WatchChangesResponse_Heartbeat{
		Heartbeat: &rosterv1.Heartbeat{Cursor: "h" + string(rune('0'+n))}}}
	// Late, and recorded before it is sent: a cache that listed before the
	// position would list first.
	time.Sleep(100 * time.Millisecond)
	f.record("heartbeat")
	if err := stream.Send(beat); err != nil {
		return err
	}
	if n > 1 {
		<-stream.Context().Done()
		return nil
	}
	for {
		select {
		case response := <-f.send:
			if err := stream.Send(response); err != nil {
				return err
			}
			f.sent <- struct{}{}
		case <-f.outdated:
			return status.Error(codes.OutOfRange, "resynchronize: list, then watch from now")
		case <-stream.Context().Done():
			return nil
		}
	}
}

// ListUsers answers the next list of users. The first one sends a change
// of the first user while it is being read: a change between list and watch.
func (f *fakeRoster) ListUsers(ctx context.Context, _ *rosterv1.ListUsersRequest) (*rosterv1.ListUsersResponse, error) {
	f.mu.Lock()
	n := f.lists
	f.lists++
	f.mu.Unlock()
	f.record("list")
	if n == 0 {
		f.send <- userChange("c1", "u1", false)
		<-f.sent
	}
	response := &rosterv1.ListUsersResponse{}
	for _, id := range f.users[min(n, len(f.users)-1)] {
		response.Users = append(response.Users, &rosterv1.User{Id: id})
	}
	return response, nil
}

// GetUserAccess answers the state before the change: active.
func (f *fakeRoster) GetUserAccess(context.Context, *rosterv1.GetUserAccessRequest) (*rosterv1.GetUserAccessResponse, error) {
	return activeAccess(true), nil
}

func activeAccess(canSignIn bool) *rosterv1.GetUserAccessResponse {
	return &rosterv1.GetUserAccessResponse{CanSignIn: canSignIn,
		Grants: []*rosterv1.AccessGrant{grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS)}}
}

func userChange(cursor, user string, canSignIn bool) *rosterv1.WatchChangesResponse {
	return &rosterv1.WatchChangesResponse{Event: &rosterv1.WatchChangesResponse_Change{Change: &rosterv1.Change{
		Cursor: cursor, Kind: rosterv1.ChangeKind_CHANGE_KIND_USER, ResourceId: user, UserAccess: activeAccess(canSignIn)}}}
}

func eventually(t *testing.T, what string, condition func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !condition(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTheCacheListsOnlyOnceTheWatchHoldsAPositionAndResynchronizesOnOutOfRange(t *testing.T) {
	fake := &fakeRoster{users: [][]string{{"u1", "u2"}, {"u2"}}, send: make(chan *rosterv1.WatchChangesResponse),
		sent: make(chan struct{}), outdated: make(chan struct{})}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	rosterv1.RegisterChangeServiceServer(server, fake)
	rosterv1.RegisterUserServiceServer(server, fake)
	go server.Serve(listener)
	defer server.Stop()
	client, err := roster.Dial(listener.Addr().String(), "key", roster.Plaintext())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	c := New(client, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- c.Run(ctx) }()
	<-c.Ready()

	// The change sent while the list was read is applied after it: u1, read
	// active by the list, ends inactive as the change says.
	eventually(t, "u1 inactive", func() bool { a, ok := c.Access("u1"); return ok && !a.CanSignIn })
	if a, ok := c.Access("u2"); !ok || !a.CanSignIn || c.Cursor() != "c1" {
		t.Fatalf("u2 %v %v, cursor %q", a, ok, c.Cursor())
	}

	close(fake.outdated)
	// Read again from scratch: u1 is gone from the new list.
	eventually(t, "u1 gone after the new list", func() bool { _, ok := c.Access("u1"); return !ok })
	cancel()
	if err := <-ended; err != context.Canceled {
		t.Fatalf("Run ended with %v", err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if !slices.Equal(fake.events, []string{"heartbeat", "list", "heartbeat", "list"}) {
		t.Fatalf("happened in this order: %v (each list must follow its watch's position)", fake.events)
	}
	for i, watch := range fake.watches {
		if watch.Start != nil || len(watch.Kinds) != len(kinds) {
			t.Fatalf("watch %d asked %v: want from now, the access kinds", i, watch)
		}
	}
}
