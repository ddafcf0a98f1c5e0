package cache

import (
	"slices"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// Access is what the cache keeps of one user: GetUserAccess's answer.
type Access struct {
	Status    rosterv1.UserStatus `json:"status"`
	CanSignIn bool                `json:"can_sign_in"`
	// Empty unless the user can sign in.
	Grants []Grant `json:"grants"`
}

// Grant is one (profile, unit scope) pair of a user's access, with the group
// that gives it.
type Grant struct {
	GroupID   string             `json:"group_id"`
	ProfileID string             `json:"profile_id"`
	Product   string             `json:"product"`
	Profile   string             `json:"profile"`
	UnitScope rosterv1.UnitScope `json:"unit_scope"`
	// Set when UnitScope is UNIT_SCOPE_UNITS.
	UnitIDs []string `json:"unit_ids"`
}

// FromProto keeps of an access answer what the cache decides on.
func FromProto(access *rosterv1.GetUserAccessResponse) Access {
	grants := make([]Grant, 0, len(access.GetGrants()))
	for _, grant := range access.GetGrants() {
		grants = append(grants, Grant{
			GroupID:   grant.GroupId,
			ProfileID: grant.ProfileId,
			Product:   grant.Product,
			Profile:   grant.ProfileName,
			UnitScope: grant.UnitScope,
			UnitIDs:   slices.Clone(grant.UnitIds),
		})
	}
	return Access{Status: access.GetStatus(), CanSignIn: access.GetCanSignIn(), Grants: grants}
}

// May tells whether the user may use product on unit ("" asks about the
// product itself, without a unit), and with which profiles.
//
// Nobody who cannot sign in may use anything, whatever the grants say. A
// grant covers a unit when its scope is ALL_UNITS (every unit, present and
// future) or UNITS listing that unit; NO_UNIT covers no unit. Units are flat
// in Roster (a unit has no parent), so a grant on a unit covers that unit
// only. Without a unit, any grant of the product counts: every scope includes
// NO_UNIT.
func (a Access) May(product, unit string) (profiles []string) {
	if !a.CanSignIn {
		return nil
	}
	for _, grant := range a.Grants {
		if grant.Product == product && grant.covers(unit) && !slices.Contains(profiles, grant.Profile) {
			profiles = append(profiles, grant.Profile)
		}
	}
	return profiles
}

func (g Grant) covers(unit string) bool {
	if unit == "" {
		return g.UnitScope != rosterv1.UnitScope_UNIT_SCOPE_UNSPECIFIED
	}
	switch g.UnitScope {
	case rosterv1.UnitScope_UNIT_SCOPE_ALL_UNITS:
		return true
	case rosterv1.UnitScope_UNIT_SCOPE_UNITS:
		return slices.Contains(g.UnitIDs, unit)
	default:
		return false
	}
}

// names tells whether one of the grants comes from, or is about, the group,
// profile or unit of a change: the users whose access a GROUP, PROFILE or
// UNIT change may have altered.
func (a Access) names(kind rosterv1.ChangeKind, id string) bool {
	return slices.ContainsFunc(a.Grants, func(grant Grant) bool {
		switch kind {
		case rosterv1.ChangeKind_CHANGE_KIND_GROUP:
			return grant.GroupID == id
		case rosterv1.ChangeKind_CHANGE_KIND_PROFILE:
			return grant.ProfileID == id
		case rosterv1.ChangeKind_CHANGE_KIND_UNIT:
			return slices.Contains(grant.UnitIDs, id)
		default:
			return false
		}
	})
}
