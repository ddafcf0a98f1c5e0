//go:build e2e

// End-to-end tests of the cache against a running `roster serve`, started by
// clients/e2e in an organization of their own:
//
//	ROSTER_SERVER      host:port (see package internal/e2e for TLS)
//	ROSTER_ADMIN_KEY   an ADMIN API key of the organization
//	ROSTER_VIEWER_KEY  a VIEWER API key of the same organization (the cache's)
//	ROSTER_CLI         the roster command on the server's data directory,
//	                   to read the invitations (`mail links`)
package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/roster-dev/roster/clients/go/examples/access-cache/cache"
	"github.com/roster-dev/roster/clients/go/internal/e2e"
	"github.com/roster-dev/roster/clients/go/roster"
	"github.com/roster-dev/roster/clients/go/rosterv1"
)

var env, dial = e2e.Env, e2e.Dial

// world is a product's profile, two units and a group on one of them.
type world struct {
	admin        *roster.Client
	product      string
	south, north string
	group        string
	suffix       string
}

func newWorld(t *testing.T, ctx context.Context) *world {
	t.Helper()
	w := &world{admin: dial(t, env(t, "ROSTER_ADMIN_KEY")), suffix: time.Now().Format("150405.000000")}
	w.product = "Point of Sale " + w.suffix
	unit := func(name string) string {
		created, err := w.admin.Groups.CreateUnit(ctx, &rosterv1.CreateUnitRequest{Unit: &rosterv1.Unit{
			Name: name + " " + w.suffix, Kind: rosterv1.UnitKind_UNIT_KIND_BRANCH}})
		if err != nil {
			t.Fatal(err)
		}
		return created.Unit.Id
	}
	w.south, w.north = unit("South"), unit("North")
	profile, err := w.admin.Groups.CreateProfile(ctx, &rosterv1.CreateProfileRequest{Profile: &rosterv1.Profile{
		Product: w.product, Name: "Cashier"}})
	if err != nil {
		t.Fatal(err)
	}
	group, err := w.admin.Groups.CreateGroup(ctx, &rosterv1.CreateGroupRequest{Group: &rosterv1.Group{
		Name: "Cashiers " + w.suffix, ProfileId: profile.Profile.Id,
		UnitScope: rosterv1.UnitScope_UNIT_SCOPE_UNITS, UnitIds: []string{w.south}}})
	if err != nil {
		t.Fatal(err)
	}
	w.group = group.Group.Id
	return w
}

// cashier is a user of the group who registered a password: one who can sign in.
func (w *world) cashier(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	email := fmt.Sprintf("%s.%s@e2e-cache.example", name, w.suffix)
	created, err := w.admin.Users.CreateUser(ctx, &rosterv1.CreateUserRequest{
		User: &rosterv1.User{FirstName: name, LastName: "Cashier", Email: email}, GroupIds: []string{w.group}})
	if err != nil {
		t.Fatal(err)
	}
	public := dial(t, "")
	// The newest invitation read may have been overtaken by a newer one
	// being written: read again.
	for attempt := 0; ; attempt++ {
		_, err = public.Auth.RegisterPassword(ctx, &rosterv1.RegisterPasswordRequest{
			Token: invitation(t, email), Password: "Correct Horse Battery 12"})
		if err == nil {
			return created.User.Id
		}
		if attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("registering %s: %v", email, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// invitation is the token of the newest invitation to email, read with
// `roster mail links` (10 s at most).
func invitation(t *testing.T, email string) string {
	t.Helper()
	for range 100 {
		out, _ := exec.Command("sh", "-c", env(t, "ROSTER_CLI")+` mail links --to "$0"`, email).Output()
		for _, line := range strings.Split(string(out), "\n") {
			columns := strings.Split(line, "\t")
			if len(columns) >= 4 && columns[2] == "invitation" {
				if _, token, ok := strings.Cut(columns[3], "#token="); ok {
					return token
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no invitation to %s within 10 s", email)
	return ""
}

// running is a cache on a key with its HTTP service, ready.
type running struct {
	*cache.Cache
	service *httptest.Server
	ended   chan struct{} // closed when Run returned; err is then set
	err     error
}

// start runs a cache on key and its HTTP service, and waits until it is
// ready. Run must end only when the test ends, with the context.
func start(t *testing.T, ctx context.Context, key string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	r := &running{ended: make(chan struct{}), Cache: cache.New(dial(t, key),
		cache.WithWatchOptions(roster.WatchBackoff(20*time.Millisecond, 500*time.Millisecond)))}
	go func() {
		defer close(r.ended)
		r.err = r.Run(ctx)
	}()
	r.service = httptest.NewServer(r.Handler())
	t.Cleanup(func() {
		r.service.Close()
		cancel()
		<-r.ended
		if r.err != context.Canceled {
			t.Errorf("the cache ended with %v", r.err)
		}
	})
	select {
	case <-r.Ready():
	case <-r.ended:
		t.Fatalf("the cache ended before it was ready: %v", r.err)
	case <-time.After(time.Minute):
		t.Fatal("the cache was not ready within a minute")
	}
	return r
}

// may asks the example's HTTP service.
func may(t *testing.T, service *httptest.Server, user, product, unit string) bool {
	t.Helper()
	query := url.Values{"user": {user}, "product": {product}, "unit": {unit}}
	response, err := http.Get(service.URL + "/may?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	var answer struct{ Allowed bool }
	if response.StatusCode != http.StatusOK || json.NewDecoder(response.Body).Decode(&answer) != nil {
		t.Fatalf("/may answered %s", response.Status)
	}
	return answer.Allowed
}

// within polls condition every millisecond for at most limit and tells how
// long it took to hold.
func within(limit time.Duration, since time.Time, condition func() bool) (time.Duration, bool) {
	for time.Since(since) < limit {
		if condition() {
			return time.Since(since), true
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(since), condition()
}

func TestADeactivatedUserIsRefusedByTheCacheWithinOneSecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := newWorld(t, ctx)
	ana := w.cashier(t, ctx, "ana")
	service := start(t, ctx, env(t, "ROSTER_VIEWER_KEY")).service
	if !may(t, service, ana, w.product, w.south) || may(t, service, ana, w.product, w.north) {
		t.Fatal("a South cashier is not allowed on South only")
	}

	start := time.Now()
	_, err := w.admin.Users.SetUserStatus(ctx, &rosterv1.SetUserStatusRequest{
		UserId: ana, Status: rosterv1.UserStatus_USER_STATUS_INACTIVE})
	if err != nil {
		t.Fatal(err)
	}
	took, refused := within(10*time.Second, start, func() bool { return !may(t, service, ana, w.product, w.south) })
	t.Logf("deactivation to the cache's no: %v (the SetUserStatus call included)", took)
	if !refused || took >= time.Second {
		t.Fatalf("the cache still allowed the deactivated user %v after the call began (refused: %v)", took, refused)
	}

	// The other ways access changes reach it too.
	steps := []struct {
		name  string
		call  func() error
		south bool
		north bool
	}{
		{"reactivated", func() error {
			_, err := w.admin.Users.SetUserStatus(ctx, &rosterv1.SetUserStatusRequest{
				UserId: ana, Status: rosterv1.UserStatus_USER_STATUS_ACTIVE})
			return err
		}, true, false},
		{"the group moved to North (a GROUP change: re-read)", func() error {
			_, err := w.admin.Groups.UpdateGroup(ctx, &rosterv1.UpdateGroupRequest{
				Group:      &rosterv1.Group{Id: w.group, UnitScope: rosterv1.UnitScope_UNIT_SCOPE_UNITS, UnitIds: []string{w.north}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"unit_scope", "unit_ids"}}})
			return err
		}, false, true},
		{"removed from the group", func() error {
			_, err := w.admin.Users.RemoveUserFromGroups(ctx, &rosterv1.RemoveUserFromGroupsRequest{
				UserId: ana, GroupIds: []string{w.group}})
			return err
		}, false, false},
	}
	for _, step := range steps {
		start := time.Now()
		if err := step.call(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		took, ok := within(5*time.Second, start, func() bool {
			return may(t, service, ana, w.product, w.south) == step.south && may(t, service, ana, w.product, w.north) == step.north
		})
		if !ok {
			t.Fatalf("%s: after %v the cache says South %v, North %v; want %v, %v", step.name, took,
				may(t, service, ana, w.product, w.south), may(t, service, ana, w.product, w.north), step.south, step.north)
		}
		t.Logf("%s: %v", step.name, took)
	}

	if _, err := w.admin.Users.DeleteUser(ctx, &rosterv1.DeleteUserRequest{UserId: ana}); err != nil {
		t.Fatal(err)
	}
	if _, gone := within(5*time.Second, time.Now(), func() bool {
		response, err := http.Get(service.URL + "/access?user=" + ana)
		if err != nil {
			t.Fatal(err)
		}
		response.Body.Close()
		return response.StatusCode == http.StatusNotFound
	}); !gone {
		t.Fatal("a deleted user is still in the cache after 5 s")
	}
}

// A cache whose key is revoked can no longer learn of a deactivation: Run
// returns, and the service refuses everyone rather than answer from a copy
// nothing keeps current.
func TestACacheWhoseKeyIsRevokedStopsAndRefusesEveryone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := newWorld(t, ctx)
	ana := w.cashier(t, ctx, "eva")
	key, err := w.admin.Auth.CreateApiKey(ctx, &rosterv1.CreateApiKeyRequest{
		Name: "access cache " + w.suffix, Scopes: []rosterv1.Scope{rosterv1.Scope_SCOPE_VIEWER}})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, ctx, key.Secret)
	if !may(t, r.service, ana, w.product, w.south) {
		t.Fatal("the cashier is refused before the revocation")
	}

	if _, err := w.admin.Auth.RevokeApiKey(ctx, &rosterv1.RevokeApiKeyRequest{ApiKeyId: key.ApiKey.Id}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the cache still runs 10 s after its key was revoked")
	}
	if code := status.Code(r.err); code != codes.Unauthenticated && code != codes.PermissionDenied {
		t.Fatalf("Run ended with %v", r.err)
	}
	r.err = context.Canceled // as expected: the cleanup need not report it
	if may(t, r.service, ana, w.product, w.south) {
		t.Fatal("a cache that stopped following Roster still allows")
	}
	response, err := http.Get(r.service.URL + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/ready answered %s after the cache stopped", response.Status)
	}
}

// A cache started while access changes on every side must end equal to what
// Roster answers for every user: nothing between its list and its watch is
// lost, and no stale answer outlives a later one.
func TestACacheStartedDuringWritesEndsEqualToRoster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := newWorld(t, ctx)
	users := []string{w.cashier(t, ctx, "bia"), w.cashier(t, ctx, "caio"), w.cashier(t, ctx, "dora")}

	stop := make(chan struct{})
	var writes sync.WaitGroup
	writes.Add(1)
	var failure error
	go func() {
		defer writes.Done()
		failure = write(ctx, w, users, stop)
	}()
	time.Sleep(200 * time.Millisecond)
	access := start(t, ctx, env(t, "ROSTER_VIEWER_KEY")).Cache
	time.Sleep(time.Second)
	close(stop)
	writes.Wait()
	if failure != nil {
		t.Fatal(failure)
	}

	var differences []string
	if _, same := within(10*time.Second, time.Now(), func() bool {
		differences = compare(t, ctx, w.admin, access)
		return len(differences) == 0
	}); !same {
		t.Fatalf("10 s after the writes the cache differs from Roster:\n%s", strings.Join(differences, "\n"))
	}
	t.Logf("%d users equal to Roster's answers", access.Len())
}

// write changes statuses, memberships and the group's units in turn until stop.
func write(ctx context.Context, w *world, users []string, stop <-chan struct{}) error {
	statuses := []rosterv1.UserStatus{rosterv1.UserStatus_USER_STATUS_INACTIVE,
		rosterv1.UserStatus_USER_STATUS_ON_VACATION, rosterv1.UserStatus_USER_STATUS_ACTIVE}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		user := users[i%len(users)]
		var err error
		switch i % 4 {
		case 0, 1:
			_, err = w.admin.Users.SetUserStatus(ctx, &rosterv1.SetUserStatusRequest{UserId: user, Status: statuses[i%3]})
		case 2:
			if i%8 == 2 {
				_, err = w.admin.Users.RemoveUserFromGroups(ctx, &rosterv1.RemoveUserFromGroupsRequest{UserId: user, GroupIds: []string{w.group}})
			} else {
				_, err = w.admin.Users.AddUserToGroups(ctx, &rosterv1.AddUserToGroupsRequest{UserId: user, GroupIds: []string{w.group}})
			}
		case 3:
			units := [][]string{{w.south}, {w.north}, {w.south, w.north}}[i%3]
			_, err = w.admin.Groups.UpdateGroup(ctx, &rosterv1.UpdateGroupRequest{
				Group:      &rosterv1.Group{Id: w.group, UnitScope: rosterv1.UnitScope_UNIT_SCOPE_UNITS, UnitIds: units},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"unit_scope", "unit_ids"}}})
		}
		if err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
}

// compare lists the users whose cached access differs from GetUserAccess's
// answer now, and the users one side lacks.
func compare(t *testing.T, ctx context.Context, admin *roster.Client, access *cache.Cache) []string {
	t.Helper()
	var differences []string
	listed := 0
	request := &rosterv1.ListUsersRequest{PageSize: 1000}
	for {
		page, err := admin.Users.ListUsers(ctx, request)
		if err != nil {
			t.Fatal(err)
		}
		for _, user := range page.Users {
			listed++
			answer, err := admin.Users.GetUserAccess(ctx, &rosterv1.GetUserAccessRequest{UserId: user.Id})
			if err != nil {
				t.Fatal(err)
			}
			want := sorted(cache.FromProto(answer))
			got, ok := access.Access(user.Id)
			if !ok || !reflect.DeepEqual(sorted(got), want) {
				differences = append(differences, fmt.Sprintf("%s: cached %+v (%v), Roster %+v", user.Id, got, ok, want))
			}
		}
		if page.NextPageToken == "" {
			break
		}
		request.PageToken = page.NextPageToken
	}
	if access.Len() != listed {
		differences = append(differences, fmt.Sprintf("%d users cached, %d listed", access.Len(), listed))
	}
	return differences
}

// sorted orders the grants, which no answer promises to keep in one order.
func sorted(access cache.Access) cache.Access {
	access.Grants = slices.Clone(access.Grants)
	slices.SortFunc(access.Grants, func(a, b cache.Grant) int {
		return strings.Compare(a.GroupID+a.ProfileID, b.GroupID+b.ProfileID)
	})
	return access
}
