//! Who may hand out what (spec §1, "Who may do what").
//!
//! A group grants a profile on a unit scope. A caller *covers* a group when,
//! for that group's profile, the union of the caller's unit scopes for the
//! same profile includes the group's scope.

use std::collections::BTreeSet;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitScope {
    NoUnit,
    AllUnits,
    Units(BTreeSet<Uuid>),
}

impl UnitScope {
    pub fn kind(&self) -> &'static str {
        match self {
            UnitScope::NoUnit => "NO_UNIT",
            UnitScope::AllUnits => "ALL_UNITS",
            UnitScope::Units(_) => "UNITS",
        }
    }

    pub fn unit_ids(&self) -> Vec<Uuid> {
        match self {
            UnitScope::Units(units) => units.iter().copied().collect(),
            _ => Vec::new(),
        }
    }
}

/// A (profile, unit scope) pair: what one group gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub group_id: Uuid,
    pub profile_id: Uuid,
    pub scope: UnitScope,
}

/// What a caller may pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// Organization administrators: ADMIN API keys, Admin on all units.
    Organization,
    /// Everyone else: exactly the grants of their own groups.
    Grants(Vec<Grant>),
}

impl Authority {
    pub fn covers(&self, group: &Grant) -> bool {
        let Authority::Grants(held) = self else {
            return true;
        };
        let same_profile = || held.iter().filter(|h| h.profile_id == group.profile_id);
        if same_profile().any(|h| h.scope == UnitScope::AllUnits) {
            return true;
        }
        match &group.scope {
            // Any scope on the profile includes NO_UNIT.
            UnitScope::NoUnit => same_profile().next().is_some(),
            UnitScope::AllUnits => false,
            UnitScope::Units(wanted) => {
                let union: BTreeSet<Uuid> = same_profile()
                    .filter_map(|h| match &h.scope {
                        UnitScope::Units(units) => Some(units.iter().copied()),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                wanted.is_subset(&union)
            }
        }
    }

    /// True when every group is covered (acting on a user needs this for all their groups).
    pub fn covers_all<'a>(&self, groups: impl IntoIterator<Item = &'a Grant>) -> bool {
        groups.into_iter().all(|group| self.covers(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example table, with Admin, Cashier and the South/West units.
    #[test]
    fn the_spec_examples() {
        let admin = Uuid::new_v4();
        let cashier = Uuid::new_v4();
        let south = Uuid::new_v4();
        let west = Uuid::new_v4();
        let units = |ids: &[Uuid]| UnitScope::Units(ids.iter().copied().collect());
        let grant = |profile: Uuid, scope: UnitScope| Grant {
            group_id: Uuid::new_v4(),
            profile_id: profile,
            scope,
        };
        let admin_south = || grant(admin, units(&[south]));
        let cashier_south = || grant(cashier, units(&[south]));
        let unit_admin = Authority::Grants(vec![admin_south(), cashier_south()]);
        let union_admin = Authority::Grants(vec![
            admin_south(),
            cashier_south(),
            grant(cashier, units(&[west])),
        ]);
        let org_admin_by_group = Authority::Grants(vec![grant(admin, UnitScope::AllUnits)]);
        let only_admin_south = Authority::Grants(vec![admin_south()]);

        assert!(Authority::Organization.covers(&grant(cashier, UnitScope::AllUnits)));
        assert!(org_admin_by_group.covers(&grant(admin, units(&[south]))));
        assert!(unit_admin.covers(&grant(cashier, units(&[south]))));
        assert!(!unit_admin.covers(&grant(cashier, units(&[west]))));
        assert!(union_admin.covers(&grant(cashier, units(&[south, west]))));
        assert!(unit_admin.covers(&grant(cashier, UnitScope::NoUnit)));
        assert!(!unit_admin.covers(&grant(cashier, UnitScope::AllUnits)));
        assert!(only_admin_south.covers(&grant(admin, units(&[south]))));
        assert!(!only_admin_south.covers(&grant(admin, UnitScope::AllUnits)));
        assert!(!only_admin_south.covers_all(&[grant(cashier, units(&[west]))]));
        assert!(
            !only_admin_south.covers(&grant(cashier, UnitScope::NoUnit)),
            "no Cashier grant at all"
        );
    }
}
