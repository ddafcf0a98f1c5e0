// Package cache keeps every user's access in memory, exact and current, from
// Roster's WatchChanges stream, and answers "may user X use product P on
// unit U" without calling Roster.
//
// How it stays exact:
//
//  1. It watches from now and waits for the stream's position (the first
//     heartbeat, which the server sends at once) BEFORE reading anything,
//     buffering what arrives.
//  2. It lists every user (ListUsers pages) and reads each one's access
//     (GetUserAccess). Whatever commits after the position is also in the
//     stream, so nothing between the list and the watch is lost.
//  3. It applies the buffered changes, then each new one, in commit order.
//     A USER or MEMBERSHIP change carries the user's access as the server
//     read it when sending (absent: the user is gone); since that read is
//     never older than the change and every later change follows, applying
//     them in order ends exact, even when the list already saw a change.
//  4. GROUP, PROFILE and UNIT changes carry no access. The consumer's rule:
//     re-read (GetUserAccess) the cached users whose grants name that group,
//     profile or unit. Only they can be affected: a group's members hold
//     grants naming it while they can sign in, and those who cannot hold
//     none.
//  5. On OUT_OF_RANGE (the cursor fell out of the server's retained window)
//     it starts again at 1 and replaces the map when the new list is read.
//
// It fails closed: once Run has returned (Roster refused the key, or ctx
// ended) every answer is "no", since nothing keeps the copy current any
// more; and with WithMaxSilence, so is every answer while nothing (no
// change, no heartbeat) has come from Roster for that long.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-dev/roster/clients/go/roster"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// The kinds of change that can alter a user's access.
var kinds = []rosterv1.ChangeKind{
	rosterv1.ChangeKind_CHANGE_KIND_USER, rosterv1.ChangeKind_CHANGE_KIND_MEMBERSHIP,
	rosterv1.ChangeKind_CHANGE_KIND_GROUP, rosterv1.ChangeKind_CHANGE_KIND_PROFILE,
	rosterv1.ChangeKind_CHANGE_KIND_UNIT,
}

// Cache is every user's access, kept current by Run. Safe for concurrent use.
type Cache struct {
	client *roster.Client
	log    *slog.Logger
	// Concurrent GetUserAccess calls while listing.
	readers int
	// Wait before reading everything again after a failed read.
	retry time.Duration
	// Options for Watch (tests shorten the backoff).
	watchOptions []roster.WatchOption
	// Answer "no" after this long without news; 0: never.
	maxSilence time.Duration
	now        func() time.Time

	// When a change or heartbeat last came (UnixNano), and whether Run ended.
	heard   atomic.Int64
	stopped atomic.Bool

	mu     sync.RWMutex
	users  map[string]Access
	cursor string // of the last change applied

	ready     chan struct{}
	readyOnce sync.Once
}

// Option adjusts New.
type Option func(*Cache)

// WithLogger logs to logger instead of slog.Default().
func WithLogger(logger *slog.Logger) Option { return func(c *Cache) { c.log = logger } }

// WithWatchOptions passes options to Watch (a shorter backoff, ...).
func WithWatchOptions(options ...roster.WatchOption) Option {
	return func(c *Cache) { c.watchOptions = append(c.watchOptions, options...) }
}

// WithMaxSilence answers "no" to everyone while nothing has come from
// Roster for d (no change, no heartbeat: Roster's heartbeat comes every 10 s
// by default), instead of answering from a copy that may be missing a
// deactivation. It trades availability for safety: while Roster is out of
// reach, nobody is allowed. Default: off.
func WithMaxSilence(d time.Duration) Option { return func(c *Cache) { c.maxSilence = d } }

// New is an empty cache over client (a VIEWER key is enough); Run fills it.
func New(client *roster.Client, options ...Option) *Cache {
	c := &Cache{client: client, log: slog.Default(), readers: 8, retry: time.Second,
		users: map[string]Access{}, ready: make(chan struct{}), now: time.Now}
	for _, option := range options {
		option(c)
	}
	return c
}

// Ready is closed once the first list is read: answers before it are "no".
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Access is the user's cached access; false when the user is unknown.
func (c *Cache) Access(user string) (Access, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	access, ok := c.users[user]
	return access, ok
}

// May is the profiles with which the user may use product on unit, empty
// when they may not (see Access.May; an unknown user may not), or when the
// cache is not current (see Current).
func (c *Cache) May(user, product, unit string) []string {
	if c.Current() != nil {
		return nil
	}
	access, _ := c.Access(user)
	return access.May(product, unit)
}

// Current is nil while the cache's answers are current, else why not: not
// ready yet, Run ended, or silent beyond WithMaxSilence.
func (c *Cache) Current() error {
	select {
	case <-c.ready:
	default:
		return errors.New("the users are not read yet")
	}
	if c.stopped.Load() {
		return errors.New("the cache no longer follows Roster's changes")
	}
	if silent := c.now().Sub(time.Unix(0, c.heard.Load())); c.maxSilence > 0 && silent > c.maxSilence {
		return fmt.Errorf("nothing from Roster for %v", silent.Round(time.Second))
	}
	return nil
}

// Len is the number of users cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.users)
}

// Cursor is the cursor of the last change applied: how far the cache is.
func (c *Cache) Cursor() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cursor
}

// Run fills the cache and keeps it current until ctx ends or Roster refuses
// the key (the error is returned). It reads everything again after
// OUT_OF_RANGE and after a failed read.
func (c *Cache) Run(ctx context.Context) error {
	defer c.stopped.Store(true)
	for {
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var read readError
		switch {
		case status.Code(err) == codes.OutOfRange:
			c.log.Warn("the cursor left the retained window: reading everything again", "error", err)
		case errors.As(err, &read) && !refused(read.err):
			c.log.Warn("a read failed: reading everything again", "error", read.err, "after", c.retry)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(c.retry):
			}
		default:
			return err
		}
	}
}

// readError is a failed ListUsers or GetUserAccess, as opposed to an error
// the watch yielded.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func refused(err error) bool {
	code := status.Code(err)
	return code == codes.PermissionDenied || code == codes.Unauthenticated
}

// event is what the watching goroutine hands over, in stream order.
type event struct {
	positioned bool // the stream holds a position: the list may be read
	change     *rosterv1.Change
	err        error
}

// follow is one pass of steps 1 to 4; it returns why it ended.
func (c *Cache) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := c.watch(ctx)

	first, ok := <-events
	switch {
	case !ok:
		return ctx.Err()
	case first.err != nil:
		return first.err
	}
	users, err := c.list(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.users = users
	c.mu.Unlock()
	c.readyOnce.Do(func() { close(c.ready) })
	c.log.Info("access cache ready", "users", len(users))

	for event := range events {
		if event.err != nil {
			return event.err
		}
		if err := c.apply(ctx, event.change); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// watch starts watching from now in a goroutine; its first event says the
// stream holds a position (or is the error that prevented it). The channel
// is bounded: while the list is read, a long backlog holds the stream back
// rather than memory.
func (c *Cache) watch(ctx context.Context) <-chan event {
	events := make(chan event, 1024)
	go func() {
		defer close(events)
		positioned := false
		position := func() bool {
			c.heard.Store(c.now().UnixNano())
			if positioned {
				return true
			}
			positioned = true
			return c.hand(ctx, events, event{positioned: true})
		}
		options := append([]roster.WatchOption{
			roster.WatchKinds(kinds...),
			roster.WatchHeartbeats(func(*rosterv1.Heartbeat) { position() }),
			roster.WatchRetries(func(err error, wait time.Duration) {
				c.log.Warn("watch reconnecting", "error", err, "after", wait)
			}),
		}, c.watchOptions...)
		for change, err := range c.client.Watch(ctx, roster.Now(), options...) {
			if err == nil && !position() {
				return
			}
			if !c.hand(ctx, events, event{change: change, err: err}) || err != nil {
				return
			}
		}
	}()
	return events
}

func (c *Cache) hand(ctx context.Context, events chan<- event, e event) bool {
	select {
	case events <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// list reads every user's access, readers calls at a time.
func (c *Cache) list(ctx context.Context) (map[string]Access, error) {
	users := map[string]Access{}
	var mu sync.Mutex
	request := &rosterv1.ListUsersRequest{PageSize: 1000}
	for {
		page, err := c.client.Users.ListUsers(ctx, request)
		if err != nil {
			return nil, readError{err}
		}
		group, groupCtx := errgroup.WithContext(ctx)
		group.SetLimit(c.readers)
		for _, user := range page.Users {
			group.Go(func() error {
				access, found, err := c.read(groupCtx, user.Id)
				if err == nil && found {
					mu.Lock()
					users[user.Id] = access
					mu.Unlock()
				}
				return err
			})
		}
		if err := group.Wait(); err != nil {
			return nil, err
		}
		if page.NextPageToken == "" {
			return users, nil
		}
		request.PageToken = page.NextPageToken
	}
}

// read is one user's access; found is false when the user is gone (deleted
// since the list: the stream brings the deletion).
func (c *Cache) read(ctx context.Context, user string) (access Access, found bool, err error) {
	answer, err := c.client.Users.GetUserAccess(ctx, &rosterv1.GetUserAccessRequest{UserId: user})
	if status.Code(err) == codes.NotFound {
		return Access{}, false, nil
	}
	if err != nil {
		return Access{}, false, readError{err}
	}
	return FromProto(answer), true, nil
}

// apply brings one change into the map (steps 3 and 4).
func (c *Cache) apply(ctx context.Context, change *rosterv1.Change) error {
	switch change.Kind {
	case rosterv1.ChangeKind_CHANGE_KIND_USER, rosterv1.ChangeKind_CHANGE_KIND_MEMBERSHIP:
		c.mu.Lock()
		if change.UserAccess == nil {
			delete(c.users, change.ResourceId)
		} else {
			c.users[change.ResourceId] = FromProto(change.UserAccess)
		}
		c.cursor = change.Cursor
		c.mu.Unlock()
		return nil
	default:
		for _, user := range c.naming(change.Kind, change.ResourceId) {
			access, found, err := c.read(ctx, user)
			if err != nil {
				return err
			}
			c.mu.Lock()
			if found {
				c.users[user] = access
			} else {
				delete(c.users, user)
			}
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.cursor = change.Cursor
		c.mu.Unlock()
		return nil
	}
}

// naming is the cached users whose grants name the change's resource.
func (c *Cache) naming(kind rosterv1.ChangeKind, id string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var users []string
	for user, access := range c.users {
		if access.names(kind, id) {
			users = append(users, user)
		}
	}
	return users
}
