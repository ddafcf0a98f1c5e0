package cache

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

const (
	south = "unit-south"
	north = "unit-north"
	pos   = "Point of Sale"
)

func grant(group, profile string, scope rosterv1.UnitScope, units ...string) *rosterv1.AccessGrant {
	return &rosterv1.AccessGrant{GroupId: group, ProfileId: "p-" + profile, Product: pos, ProfileName: profile,
		UnitScope: scope, UnitIds: units}
}

func access(canSignIn bool, grants ...*rosterv1.AccessGrant) Access {
	status := rosterv1.UserStatus_USER_STATUS_ACTIVE
	if !canSignIn {
		status = rosterv1.UserStatus_USER_STATUS_INACTIVE
	}
	return FromProto(&rosterv1.GetUserAccessResponse{Status: status, CanSignIn: canSignIn, Grants: grants})
}

func TestAGrantCoversTheUnitsOfItsScopeOnly(t *testing.T) {
	cashierSouth := grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_UNITS, south)
	managerEverywhere := grant("g2", "Manager", rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS)
	auditorNoUnit := grant("g3", "Auditor", rosterv1.UnitScope_UNIT_SCOPE_NO_UNIT)
	cases := []struct {
		name    string
		access  Access
		product string
		unit    string
		want    []string
	}{
		{"a listed unit", access(true, cashierSouth), pos, south, []string{"Cashier"}},
		{"an unlisted unit", access(true, cashierSouth), pos, north, nil},
		{"all units covers any", access(true, managerEverywhere), pos, "a-unit-made-tomorrow", []string{"Manager"}},
		{"no unit covers no unit", access(true, auditorNoUnit), pos, south, nil},
		{"without a unit every scope counts", access(true, cashierSouth, managerEverywhere, auditorNoUnit), pos, "",
			[]string{"Cashier", "Manager", "Auditor"}},
		{"another product", access(true, managerEverywhere), "Payroll", south, nil},
		{"a user who cannot sign in may not, whatever the grants", access(false, managerEverywhere), pos, south, nil},
		{"each profile once", access(true, cashierSouth, grant("g4", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS)),
			pos, south, []string{"Cashier"}},
		{"an unspecified scope covers nothing",
			access(true, grant("g5", "Odd", rosterv1.UnitScope_UNIT_SCOPE_UNSPECIFIED, south)), pos, "", nil},
	}
	for _, c := range cases {
		if got := c.access.May(c.product, c.unit); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAChangeToAGroupProfileOrUnitConcernsTheUsersWhoseGrantsNameIt(t *testing.T) {
	a := access(true, grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_UNITS, south, north))
	named := map[rosterv1.ChangeKind][2]string{
		rosterv1.ChangeKind_CHANGE_KIND_GROUP:   {"g1", "g2"},
		rosterv1.ChangeKind_CHANGE_KIND_PROFILE: {"p-Cashier", "p-Manager"},
		rosterv1.ChangeKind_CHANGE_KIND_UNIT:    {north, "unit-east"},
	}
	for kind, ids := range named {
		if !a.names(kind, ids[0]) || a.names(kind, ids[1]) {
			t.Errorf("%v: names %s: %v, names %s: %v", kind, ids[0], a.names(kind, ids[0]), ids[1], a.names(kind, ids[1]))
		}
	}
	// Ids of one kind are not taken for another's.
	if a.names(rosterv1.ChangeKind_CHANGE_KIND_UNIT, "g1") || a.names(rosterv1.ChangeKind_CHANGE_KIND_USER, "g1") {
		t.Error("a group id matched as a unit or a user")
	}
}

func TestAUserChangeSetsTheAccessItCarriesAndAnAbsentOneRemovesTheUser(t *testing.T) {
	c := New(nil)
	user := func(id, cursor string, access *rosterv1.GetUserAccessResponse) *rosterv1.Change {
		return &rosterv1.Change{Kind: rosterv1.ChangeKind_CHANGE_KIND_USER, ResourceId: id, Cursor: cursor, UserAccess: access}
	}
	active := &rosterv1.GetUserAccessResponse{CanSignIn: true,
		Grants: []*rosterv1.AccessGrant{grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS)}}
	for _, change := range []*rosterv1.Change{user("u1", "c1", active), user("u2", "c2", active), user("u1", "c3", nil)} {
		if err := c.apply(context.Background(), change); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := c.Access("u1"); ok {
		t.Fatal("a change without access left the user in the cache")
	}
	got, _ := c.Access("u2")
	if !slices.Equal(got.May(pos, south), []string{"Cashier"}) || c.Cursor() != "c3" {
		t.Fatalf("u2 may %v; cursor %q", got.May(pos, south), c.Cursor())
	}
}

func TestTheCacheAnswersNoUnlessItIsCurrent(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	c := New(nil, WithMaxSilence(30*time.Second))
	c.now = func() time.Time { return clock }
	c.users["u1"] = access(true, grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS))
	allowed := func() bool { return len(c.May("u1", pos, south)) > 0 }

	if allowed() || c.Current() == nil {
		t.Fatal("answered before the users were read")
	}
	c.readyOnce.Do(func() { close(c.ready) })
	c.heard.Store(clock.UnixNano())
	if !allowed() || c.Current() != nil {
		t.Fatalf("a ready cache that just heard from Roster refused: %v", c.Current())
	}
	clock = clock.Add(30 * time.Second)
	if !allowed() {
		t.Fatal("refused at exactly the longest silence allowed")
	}
	clock = clock.Add(time.Second)
	if allowed() || c.Current() == nil {
		t.Fatal("answered after 31 s of silence with 30 s allowed")
	}
	c.heard.Store(clock.UnixNano())
	if !allowed() {
		t.Fatal("still refused after news from Roster")
	}
	c.stopped.Store(true)
	if allowed() || c.Current() == nil {
		t.Fatal("answered after Run ended")
	}
}

func TestWithoutMaxSilenceAQuietCacheStillAnswers(t *testing.T) {
	c := New(nil)
	c.now = func() time.Time { return time.Unix(1_000_000_000, 0) } // long after the last news (never)
	c.users["u1"] = access(true, grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS))
	c.readyOnce.Do(func() { close(c.ready) })
	if len(c.May("u1", pos, south)) == 0 {
		t.Fatalf("refused: %v", c.Current())
	}
}
