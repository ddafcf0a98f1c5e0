//! A user's states and the status derived from them (spec §1): the admin
//! state an administrator sets, the legacy status an import may carry over,
//! and the status every call shows, which follows from those and onboarding.

use super::{text_state::text_states, FieldViolation};
use chrono::{DateTime, Utc};

text_states! {
    /// What an administrator sets (`users.admin_state`).
    AdminState {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
        OnVacation => "ON_VACATION",
    }
}

text_states! {
    /// A status carried over from an older directory by an import
    /// (`users.legacy_status`); it overrides everything else.
    LegacyStatus {
        Blocked => "BLOCKED",
        Disabled => "DISABLED",
    }
}

text_states! {
    /// The status every call shows and filters on.
    UserStatus {
        Pending => "PENDING",
        Expired => "EXPIRED",
        Active => "ACTIVE",
        Inactive => "INACTIVE",
        OnVacation => "ON_VACATION",
        Blocked => "BLOCKED",
        Disabled => "DISABLED",
    }
}

impl From<AdminState> for UserStatus {
    fn from(state: AdminState) -> Self {
        match state {
            AdminState::Active => Self::Active,
            AdminState::Inactive => Self::Inactive,
            AdminState::OnVacation => Self::OnVacation,
        }
    }
}

impl From<LegacyStatus> for UserStatus {
    fn from(status: LegacyStatus) -> Self {
        match status {
            LegacyStatus::Blocked => Self::Blocked,
            LegacyStatus::Disabled => Self::Disabled,
        }
    }
}

/// What the derived status follows from, as stored on a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFacts {
    pub admin_state: AdminState,
    pub legacy_status: Option<LegacyStatus>,
    pub onboarded: bool,
    pub invitation_expire_time: Option<DateTime<Utc>>,
}

impl UserStatus {
    /// The rule of spec §1: a legacy status wins; then INACTIVE; then, before
    /// onboarding, PENDING until the invitation expires and EXPIRED after;
    /// then the admin state. `store::users::STATUS_SQL` is the same rule for
    /// filters and counts, checked against this one by a test.
    pub fn derive(facts: StatusFacts, now: DateTime<Utc>) -> Self {
        if let Some(legacy) = facts.legacy_status {
            return legacy.into();
        }
        if facts.admin_state == AdminState::Inactive {
            return Self::Inactive;
        }
        if !facts.onboarded {
            return match facts.invitation_expire_time {
                Some(expire_time) if expire_time <= now => Self::Expired,
                _ => Self::Pending,
            };
        }
        facts.admin_state.into()
    }

    /// The admin state an administrator may set; legacy and derived statuses are not assignable.
    pub fn assignable(self) -> Result<AdminState, FieldViolation> {
        match self {
            Self::Active => Ok(AdminState::Active),
            Self::Inactive => Ok(AdminState::Inactive),
            Self::OnVacation => Ok(AdminState::OnVacation),
            Self::Blocked | Self::Disabled => Err(FieldViolation::new(
                "status",
                "LEGACY_STATUS",
                "BLOCKED and DISABLED are legacy statuses and cannot be assigned; use ACTIVE, INACTIVE or ON_VACATION",
            )),
            Self::Pending | Self::Expired => Err(FieldViolation::new(
                "status",
                "DERIVED_STATUS",
                "PENDING and EXPIRED follow from onboarding; set ACTIVE, INACTIVE or ON_VACATION",
            )),
        }
    }

    /// The status a user's states assign, onboarding aside: the legacy
    /// status, else the admin state (what an import row and the export show).
    pub fn assigned(admin_state: AdminState, legacy_status: Option<LegacyStatus>) -> Self {
        legacy_status.map_or(admin_state.into(), Self::from)
    }

    /// The stored legacy status this status stands for, if it is one.
    pub fn legacy(self) -> Option<LegacyStatus> {
        match self {
            Self::Blocked => Some(LegacyStatus::Blocked),
            Self::Disabled => Some(LegacyStatus::Disabled),
            _ => None,
        }
    }
}

/// Every combination of facts that can tell statuses apart, around `now`:
/// what the rule's tests (here and against the SQL) walk.
pub fn every_status_case(now: DateTime<Utc>) -> Vec<StatusFacts> {
    let expiries = [
        None,
        Some(now - chrono::Duration::hours(1)),
        Some(now + chrono::Duration::hours(1)),
    ];
    let mut cases = Vec::new();
    for &admin_state in AdminState::ALL {
        for legacy_status in
            std::iter::once(None).chain(LegacyStatus::ALL.iter().copied().map(Some))
        {
            for onboarded in [false, true] {
                for invitation_expire_time in expiries {
                    cases.push(StatusFacts {
                        admin_state,
                        legacy_status,
                        onboarded,
                        invitation_expire_time,
                    });
                }
            }
        }
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(admin_state: AdminState, onboarded: bool) -> StatusFacts {
        StatusFacts {
            admin_state,
            legacy_status: None,
            onboarded,
            invitation_expire_time: None,
        }
    }

    #[test]
    fn the_derived_status_follows_spec_section_1() {
        let now = Utc::now();
        let past = Some(now - chrono::Duration::seconds(1));
        let future = Some(now + chrono::Duration::days(1));
        let cases = [
            (facts(AdminState::Active, true), UserStatus::Active),
            (facts(AdminState::OnVacation, true), UserStatus::OnVacation),
            (facts(AdminState::Inactive, true), UserStatus::Inactive),
            (facts(AdminState::Inactive, false), UserStatus::Inactive),
            (facts(AdminState::OnVacation, false), UserStatus::Pending),
            (
                StatusFacts {
                    invitation_expire_time: future,
                    ..facts(AdminState::Active, false)
                },
                UserStatus::Pending,
            ),
            (
                StatusFacts {
                    invitation_expire_time: past,
                    ..facts(AdminState::Active, false)
                },
                UserStatus::Expired,
            ),
            (
                StatusFacts {
                    invitation_expire_time: Some(now),
                    ..facts(AdminState::Active, false)
                },
                UserStatus::Expired,
            ),
            (
                StatusFacts {
                    legacy_status: Some(LegacyStatus::Blocked),
                    ..facts(AdminState::Inactive, false)
                },
                UserStatus::Blocked,
            ),
            (
                StatusFacts {
                    legacy_status: Some(LegacyStatus::Disabled),
                    ..facts(AdminState::Active, true)
                },
                UserStatus::Disabled,
            ),
        ];
        for (facts, expected) in cases {
            assert_eq!(UserStatus::derive(facts, now), expected, "{facts:?}");
        }
        assert_eq!(every_status_case(now).len(), 3 * 3 * 2 * 3);
    }

    #[test]
    fn only_admin_states_are_assignable() {
        assert_eq!(
            UserStatus::OnVacation.assignable().unwrap(),
            AdminState::OnVacation
        );
        assert_eq!(
            UserStatus::Blocked.assignable().unwrap_err().code,
            "LEGACY_STATUS"
        );
        assert_eq!(
            UserStatus::Pending.assignable().unwrap_err().code,
            "DERIVED_STATUS"
        );
        assert_eq!(UserStatus::Disabled.legacy(), Some(LegacyStatus::Disabled));
        assert_eq!(UserStatus::Active.legacy(), None);
        assert_eq!(
            UserStatus::assigned(AdminState::Inactive, Some(LegacyStatus::Blocked)),
            UserStatus::Blocked
        );
        assert_eq!(
            UserStatus::assigned(AdminState::OnVacation, None),
            UserStatus::OnVacation
        );
    }

    #[test]
    fn stored_names_round_trip_and_unknown_ones_are_refused() {
        for status in UserStatus::ALL {
            assert_eq!(UserStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(
            UserStatus::parse("ON_VACATION"),
            Some(UserStatus::OnVacation)
        );
        assert_eq!(AdminState::parse("BLOCKED"), None);
        assert_eq!(LegacyStatus::parse("active"), None);
    }
}
