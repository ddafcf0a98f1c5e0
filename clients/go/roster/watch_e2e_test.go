//go:build e2e

package roster_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-dev/roster/clients/go/internal/e2e"
	"github.com/roster-dev/roster/clients/go/roster"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// Two watchers of the same users from the same start, one dialed through a
// proxy that is cut three times while changes are made, must receive the
// same changes, in the same order, each once; and every call made, during a
// cut too, must be among them in the order it was made.
func TestWatchResumesAfterACutConnectionWithoutLosingOrRepeatingAChange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := dial(t, env(t, "ROSTER_ADMIN_KEY"))
	suffix := time.Now().Format("150405.000000")
	var users []string
	for i := range 3 {
		created, err := admin.Users.CreateUser(ctx, &rosterv1.CreateUserRequest{
			User:           &rosterv1.User{FirstName: "Watched", LastName: fmt.Sprint(i), Email: fmt.Sprintf("watched.%d.%s@e2e-go.example", i, suffix)},
			SendInvitation: ptr(false),
		})
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, created.User.Id)
	}
	group := createGroup(t, ctx, admin, "Watched "+suffix)
	proxy := newProxy(t, env(t, "ROSTER_SERVER"))
	throughProxy := e2e.DialAt(t, proxy.address(), env(t, "ROSTER_VIEWER_KEY"))
	var retries atomic.Int32
	cut := startWatcher(ctx, throughProxy, users, roster.WatchBackoff(20*time.Millisecond, 200*time.Millisecond),
		roster.WatchRetries(func(err error, wait time.Duration) {
			if retries.Add(1) == 1 {
				t.Logf("the first reconnection, after %v: %v", wait, err)
			}
		}))
	direct := startWatcher(ctx, dial(t, env(t, "ROSTER_VIEWER_KEY")), users)

	var calls []made // in the order they returned
	do := func(kind rosterv1.ChangeKind, operation rosterv1.ChangeOperation, user string, call func() error) {
		t.Helper()
		if err := call(); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, madeChange(kind, operation, user))
	}
	updated, membership := rosterv1.ChangeKind_CHANGE_KIND_USER, rosterv1.ChangeKind_CHANGE_KIND_MEMBERSHIP
	for round := range 3 {
		// A change the cut watcher has received shows its stream is live.
		seen := cut.count()
		do(updated, rosterv1.ChangeOperation_CHANGE_OPERATION_UPDATED, users[0], func() error {
			_, err := admin.Users.SetUserStatus(ctx, &rosterv1.SetUserStatusRequest{UserId: users[0], Status: statuses[round%2]})
			return err
		})
		cut.waitBeyond(t, seen)

		proxy.cut()
		do(updated, rosterv1.ChangeOperation_CHANGE_OPERATION_UPDATED, users[1], func() error {
			_, err := admin.Users.SetUserStatus(ctx, &rosterv1.SetUserStatusRequest{UserId: users[1], Status: statuses[round%2]})
			return err
		})
		do(membership, rosterv1.ChangeOperation_CHANGE_OPERATION_UPDATED, users[2], func() error {
			if round%2 == 0 {
				_, err := admin.Users.AddUserToGroups(ctx, &rosterv1.AddUserToGroupsRequest{UserId: users[2], GroupIds: []string{group}})
				return err
			}
			_, err := admin.Users.RemoveUserFromGroups(ctx, &rosterv1.RemoveUserFromGroupsRequest{UserId: users[2], GroupIds: []string{group}})
			return err
		})
		time.Sleep(300 * time.Millisecond) // the watcher fails to reconnect meanwhile
		proxy.resume()
	}
	// The last user's deletion ends both watchers.
	do(updated, rosterv1.ChangeOperation_CHANGE_OPERATION_DELETED, users[2], func() error {
		_, err := admin.Users.DeleteUser(ctx, &rosterv1.DeleteUserRequest{UserId: users[2]})
		return err
	})

	viaProxy, viaDirect := cut.wait(t), direct.wait(t)
	if n := retries.Load(); n < 3 {
		t.Fatalf("%d reconnections for 3 cuts", n)
	}
	if len(viaProxy) != len(viaDirect) {
		t.Fatalf("%d changes through the cut connection, %d direct:\n%v\n%v", len(viaProxy), len(viaDirect), viaProxy, viaDirect)
	}
	cursors := map[string]bool{}
	for i := range viaDirect {
		if viaProxy[i] != viaDirect[i] {
			t.Fatalf("change %d differs:\n cut:    %v\n direct: %v", i, viaProxy[i], viaDirect[i])
		}
		if cursors[viaDirect[i].cursor] {
			t.Fatalf("cursor %s received twice", viaDirect[i].cursor)
		}
		cursors[viaDirect[i].cursor] = true
	}
	// Every call is there, in order (a call may record more than one change).
	next := 0
	for _, change := range viaDirect {
		if next < len(calls) && change.made == calls[next] {
			next++
		}
	}
	if next != len(calls) {
		t.Fatalf("call %d (%v) is not among the %d changes received in order: %v", next, calls[next], len(viaDirect), viaDirect)
	}
	t.Logf("%d changes, %d calls, %d reconnections through 3 cuts", len(viaDirect), len(calls), retries.Load())
}

var statuses = []rosterv1.UserStatus{rosterv1.UserStatus_USER_STATUS_INACTIVE, rosterv1.UserStatus_USER_STATUS_ACTIVE}

// createGroup is a group of the built-in Viewer profile on all units.
func createGroup(t *testing.T, ctx context.Context, admin *roster.Client, name string) string {
	t.Helper()
	profiles, err := admin.Groups.ListProfiles(ctx, &rosterv1.ListProfilesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var viewer string
	for _, profile := range profiles.Profiles {
		if profile.BuiltIn && profile.Name == "Viewer" {
			viewer = profile.Id
		}
	}
	group, err := admin.Groups.CreateGroup(ctx, &rosterv1.CreateGroupRequest{Group: &rosterv1.Group{
		Name: name, ProfileId: viewer, UnitScope: rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return group.Group.Id
}

// made is what a change is about, to match it with the call that made it.
type made struct {
	kind      rosterv1.ChangeKind
	operation rosterv1.ChangeOperation
	resource  string
}

func madeChange(kind rosterv1.ChangeKind, operation rosterv1.ChangeOperation, resource string) made {
	return made{kind, operation, resource}
}

type received struct {
	made
	cursor string
	action string
}

// watcher collects the USER and MEMBERSHIP changes of some users from the
// beginning, until the last one's deletion.
type watcher struct {
	mu      sync.Mutex
	changes []received
	arrived chan struct{}
	ended   chan struct{} // closed when the loop ended; err is then set
	err     error
}

func startWatcher(ctx context.Context, client *roster.Client, users []string, options ...roster.WatchOption) *watcher {
	w := &watcher{arrived: make(chan struct{}, 1), ended: make(chan struct{})}
	options = append(options, roster.WatchUsers(users...),
		roster.WatchKinds(rosterv1.ChangeKind_CHANGE_KIND_USER, rosterv1.ChangeKind_CHANGE_KIND_MEMBERSHIP))
	go func() {
		defer close(w.ended)
		for change, err := range client.Watch(ctx, roster.Beginning(), options...) {
			if err != nil {
				w.err = err
				return
			}
			w.mu.Lock()
			w.changes = append(w.changes, received{madeChange(change.Kind, change.Operation, change.ResourceId), change.Cursor, change.Action})
			w.mu.Unlock()
			select {
			case w.arrived <- struct{}{}:
			default:
			}
			if change.Operation == rosterv1.ChangeOperation_CHANGE_OPERATION_DELETED && change.ResourceId == users[len(users)-1] {
				return
			}
		}
		w.err = fmt.Errorf("the watch ended before the last user's deletion: %v", ctx.Err())
	}()
	return w
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.changes)
}

func (w *watcher) waitBeyond(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for w.count() <= n {
		select {
		case <-w.arrived:
		case <-w.ended:
			t.Fatalf("the watcher ended with %v after %d changes", w.err, w.count())
		case <-timeout:
			t.Fatalf("the watcher received nothing beyond %d changes in 30 s", n)
		}
	}
}

func (w *watcher) wait(t *testing.T) []received {
	t.Helper()
	<-w.ended
	if w.err != nil {
		t.Fatalf("the watcher ended with %v after %d changes", w.err, w.count())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changes
}

// proxy forwards TCP connections to a server; cut drops every connection
// (a reset) and refuses new ones until resume; swallowAnswers drops what the
// server sends (requests still reach it) until cut.
type proxy struct {
	listener   net.Listener
	target     string
	mu         sync.Mutex
	conns      []net.Conn
	refusing   bool
	swallowing bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{listener: listener, target: target}
	t.Cleanup(func() { listener.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) address() string { return p.listener.Addr().String() }

func (p *proxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.refusing {
			p.mu.Unlock()
			reset(client)
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			reset(client)
			continue
		}
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go func() { io.Copy(server, client); server.Close() }()
		go func() { p.answer(client, server); client.Close() }()
	}
}

// answer copies what the server sends to the client, but while swallowing.
func (p *proxy) answer(client, server net.Conn) {
	buffer := make([]byte, 32*1024)
	for {
		n, err := server.Read(buffer)
		if n > 0 {
			p.mu.Lock()
			swallowing := p.swallowing
			p.mu.Unlock()
			if !swallowing {
				if _, err := client.Write(buffer[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) swallowAnswers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.swallowing = true
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = true
	p.swallowing = false
	for _, conn := range p.conns {
		reset(conn)
	}
	p.conns = nil
}

func (p *proxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = false
}

// reset closes with an RST, as a dropped connection is seen, not a FIN.
func reset(conn net.Conn) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}
