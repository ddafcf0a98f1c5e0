package roster

import (
	"context"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// From is where Watch starts: Now, Beginning or After a cursor.
type From struct {
	start  start
	cursor string
}

type start int

const (
	startNow start = iota
	startBeginning
	startAfter
)

// Now starts with the changes that commit from now on. The position is taken
// when the server's first message, a heartbeat sent at once, arrives (see
// WatchHeartbeats): a consumer that lists what exists must wait for it
// before listing, or changes in between are lost.
func Now() From { return From{start: startNow} }

// Beginning starts with every change the server still retains (7 days by
// default), then goes on with new ones.
func Beginning() From { return From{start: startBeginning} }

// After resumes right after the change or heartbeat whose Cursor is cursor,
// for example one a consumer saved with its data before it stopped.
func After(cursor string) From { return From{start: startAfter, cursor: cursor} }

// String names the start for logs.
func (f From) String() string {
	switch f.start {
	case startBeginning:
		return "the beginning"
	case startAfter:
		return "after " + f.cursor
	default:
		return "now"
	}
}

// request is the WatchChangesRequest that starts at f.
func (f From) request(kinds []rosterv1.ChangeKind, userIDs []string) *rosterv1.WatchChangesRequest {
	request := &rosterv1.WatchChangesRequest{Kinds: kinds, UserIds: userIDs}
	switch f.start {
	case startBeginning:
		request.Start = &rosterv1.WatchChangesRequest_FromBeginning{FromBeginning: true}
	case startAfter:
		// An empty cursor is sent as such, for the server to refuse: taking
		// it for "now" would silently skip what happened since the save.
		request.Start = &rosterv1.WatchChangesRequest_AfterCursor{AfterCursor: f.cursor}
	}
	return request
}

// WatchOption adjusts Watch.
type WatchOption func(*watchSettings)

type watchSettings struct {
	kinds       []rosterv1.ChangeKind
	userIDs     []string
	onHeartbeat func(*rosterv1.Heartbeat)
	onRetry     func(err error, wait time.Duration)
	initial     time.Duration
	max         time.Duration
	idle        time.Duration
}

// WatchKinds watches only these kinds of change (default: every kind).
func WatchKinds(kinds ...rosterv1.ChangeKind) WatchOption {
	return func(s *watchSettings) { s.kinds = append(s.kinds, kinds...) }
}

// WatchUsers watches the USER and MEMBERSHIP changes of these users only;
// the other kinds are not filtered by it (default: every user).
func WatchUsers(ids ...string) WatchOption {
	return func(s *watchSettings) { s.userIDs = append(s.userIDs, ids...) }
}

// WatchHeartbeats calls f with each heartbeat, on the iterating goroutine.
// Heartbeats are not yielded; the first one (or the first change) tells that
// the stream holds a position, which a consumer starting from Now waits for.
func WatchHeartbeats(f func(*rosterv1.Heartbeat)) WatchOption {
	return func(s *watchSettings) { s.onHeartbeat = f }
}

// WatchRetries calls f before each reconnection with the error that ended
// the stream and the wait before the next attempt, for logs and metrics.
func WatchRetries(f func(err error, wait time.Duration)) WatchOption {
	return func(s *watchSettings) { s.onRetry = f }
}

// WatchBackoff sets the wait before reconnecting: initial after the first
// failure, doubled after each further one up to max, each wait drawn at
// random in its upper half so that many clients cut at once do not return
// at once. A received change or heartbeat starts again from initial.
// Default: 250 ms up to 30 s; a wait is never under 1 ms.
func WatchBackoff(initial, max time.Duration) WatchOption {
	return func(s *watchSettings) { s.initial, s.max = initial, max }
}

// WatchIdleTimeout reconnects when nothing (no change, no heartbeat) arrived
// for d, which finds a connection that died silently (a network partition
// that no TCP reset reports). Keep it well above the server's heartbeat
// interval (10 s by default). Default: DefaultWatchIdleTimeout, three
// heartbeats missed, as the Java client; 0 turns it off.
func WatchIdleTimeout(d time.Duration) WatchOption {
	return func(s *watchSettings) { s.idle = d }
}

// DefaultWatchIdleTimeout is WatchIdleTimeout's default.
const DefaultWatchIdleTimeout = 35 * time.Second

// Watch yields the organization's changes in commit order from `from`, then
// each new one as it commits, until the loop breaks, ctx ends (both end the
// stream and the loop without an error) or an error a retry cannot fix.
//
//	for change, err := range client.Watch(ctx, roster.Now()) {
//		if err != nil { ... }
//		apply(change) // then save change.Cursor to resume there after a restart
//	}
//
// A dropped connection, UNAVAILABLE and other transient failures are not
// yielded: Watch reconnects after a backoff (WatchBackoff) and resumes after
// the last cursor it received, of a change or a heartbeat, so no change is
// lost or repeated. (The server's first message is a heartbeat with the
// start's cursor, so only a connection lost before that one arrives starts
// again from `from`: from Now, a later now.)
//
// Any other error is yielded once, and the loop ends:
//   - OUT_OF_RANGE: the cursor is older than the server's retained window.
//     The consumer must resynchronize: watch from Now, wait for the position
//     (WatchHeartbeats), list what it keeps (ListUsers, GetUserAccess, ...),
//     then apply the changes received meanwhile and go on.
//   - UNAUTHENTICATED, PERMISSION_DENIED: the key was revoked, or the user
//     behind the token can no longer sign in or lacks the VIEWER scope.
//   - INVALID_ARGUMENT: a malformed cursor, kind or user id, or over 1,000
//     user ids.
//
// Heartbeats are only used for the cursor (see WatchHeartbeats).
func (c *Client) Watch(ctx context.Context, from From, options ...WatchOption) iter.Seq2[*rosterv1.Change, error] {
	settings := watchSettings{initial: 250 * time.Millisecond, max: 30 * time.Second, idle: DefaultWatchIdleTimeout}
	for _, option := range options {
		option(&settings)
	}
	return func(yield func(*rosterv1.Change, error) bool) {
		w := &watcher{client: c.Changes, settings: &settings, from: from,
			backoff: backoff{initial: settings.initial, max: settings.max, random: rand.Float64}}
		w.run(ctx, yield)
	}
}

type watcher struct {
	client   rosterv1.ChangeServiceClient
	settings *watchSettings
	from     From
	// The last cursor received; "" until the first change or heartbeat.
	cursor  string
	backoff backoff
}

var (
	// errStopped ends a stream because the loop broke.
	errStopped = errors.New("roster: the watch loop stopped")
	// errIdle ends a stream that received nothing for the idle timeout.
	errIdle = errors.New("roster: nothing received from the watch stream within the idle timeout")
)

func (w *watcher) run(ctx context.Context, yield func(*rosterv1.Change, error) bool) {
	for {
		err := w.stream(ctx, yield)
		if errors.Is(err, errStopped) || ctx.Err() != nil {
			return
		}
		if !retryable(err) {
			yield(nil, err)
			return
		}
		wait := w.backoff.next()
		if w.settings.onRetry != nil {
			w.settings.onRetry(err, wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// stream runs one WatchChanges call, from the last cursor, until it fails
// or the loop breaks (errStopped). Leaving it cancels the call.
func (w *watcher) stream(ctx context.Context, yield func(*rosterv1.Change, error) bool) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	from := w.from
	if w.cursor != "" {
		from = After(w.cursor)
	}
	stream, err := w.client.WatchChanges(ctx, from.request(w.settings.kinds, w.settings.userIDs))
	if err != nil {
		return err
	}
	idle := func() {}
	if w.settings.idle > 0 {
		timer := time.AfterFunc(w.settings.idle, func() { cancel(errIdle) })
		defer timer.Stop()
		idle = func() { timer.Reset(w.settings.idle) }
	}
	for {
		response, err := stream.Recv()
		if err != nil {
			if errors.Is(context.Cause(ctx), errIdle) {
				return errIdle
			}
			return err
		}
		idle()
		w.backoff.reset()
		switch event := response.Event.(type) {
		case *rosterv1.WatchChangesResponse_Change:
			w.advance(event.Change.GetCursor())
			if !yield(event.Change, nil) {
				return errStopped
			}
		case *rosterv1.WatchChangesResponse_Heartbeat:
			w.advance(event.Heartbeat.GetCursor())
			if w.settings.onHeartbeat != nil {
				w.settings.onHeartbeat(event.Heartbeat)
			}
		}
	}
}

func (w *watcher) advance(cursor string) {
	if cursor != "" {
		w.cursor = cursor
	}
}

// retryable tells a failure that a new call may not meet (the connection, the
// server's load or restart, a stream the server ended) from an answer that
// every retry would repeat.
func retryable(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, errIdle) {
		// A watch never ends by itself: the server went away in order.
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown,
		codes.Canceled, codes.DeadlineExceeded:
		// CANCELLED and DEADLINE_EXCEEDED come from the server or a proxy
		// here: the caller's own context is checked first.
		return true
	default:
		return false
	}
}

// backoff is a capped exponential backoff with jitter.
type backoff struct {
	initial, max time.Duration
	attempt      int
	random       func() float64 // in [0, 1)
}

// next is the wait before the next attempt: initial·2^attempt, at most max,
// drawn in [half, whole) of it.
func (b *backoff) next() time.Duration {
	wait := max(b.initial, time.Millisecond)
	for i := 0; i < b.attempt && wait < b.max; i++ {
		wait *= 2
	}
	wait = min(wait, max(b.max, b.initial, time.Millisecond))
	b.attempt++
	half := wait / 2
	return half + time.Duration(b.random()*float64(wait-half))
}

func (b *backoff) reset() { b.attempt = 0 }
