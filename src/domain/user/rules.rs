//! The rules about users that need no database: who may act on a user, what
//! an update leaves, which mirrored groups are given, whom a re-invitation
//! reaches, what a calling service may authorize. The use cases fetch the
//! facts, ask these, and write.

use std::collections::HashMap;

use uuid::Uuid;

use super::{User, UserField, UserInput, UserStatus, UserValues, Warning};
use crate::domain::{
    access::{Authority, Grant},
    authentication::UserAccess,
    caller::{Scope, Scopes},
    organization::PublicEmailDomainPolicy,
    values::Email,
    DomainError,
};

/// Why a caller may not act on a user: the user holds a group the caller's
/// authority does not cover. Every path that acts on a user (single calls,
/// re-invitations, import rows) refuses with this one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "user {user_id} holds group {group_id}, which you do not cover, so you may not act on them"
)]
pub(crate) struct NotCovered {
    pub user_id: Uuid,
    pub group_id: Uuid,
}

/// Whether `authority` may act on the user `user_id` holding `grants`: it
/// must cover every one of them; a refusal names the first it does not.
pub(crate) fn may_act_on(
    authority: &Authority,
    user_id: Uuid,
    grants: &[Grant],
) -> Result<(), NotCovered> {
    match grants.iter().find(|grant| !authority.covers(grant)) {
        Some(uncovered) => Err(NotCovered {
            user_id,
            group_id: uncovered.group_id,
        }),
        None => Ok(()),
    }
}

/// Checks the email against the organization's public-domain policy.
pub(crate) fn public_domain_check(
    email: &str,
    policy: PublicEmailDomainPolicy,
    field: &str,
) -> Result<Option<Warning>, DomainError> {
    let Ok(email) = Email::parse(email, field) else {
        return Ok(None);
    };
    if !email.is_on_public_domain() {
        return Ok(None);
    }
    let message = format!(
        "{} is a public mail provider, not a company address",
        email.domain()
    );
    match policy {
        PublicEmailDomainPolicy::Allow => Ok(None),
        PublicEmailDomainPolicy::Warn => {
            Ok(Some(Warning::new(field, "PUBLIC_EMAIL_DOMAIN", message)))
        }
        PublicEmailDomainPolicy::Reject => Err(DomainError::invalid(
            field,
            "PUBLIC_EMAIL_DOMAIN",
            format!("{message}; the organization refuses such addresses"),
        )),
    }
}

/// Where duplicate emails are allowed, a shared email cannot also be a login:
/// refused when the username is the email and another user has that email.
pub(crate) fn shared_email_login(
    values: &UserValues,
    email_used_by_other: bool,
    field_prefix: &str,
) -> Result<(), DomainError> {
    if values.username_is_email() && email_used_by_other {
        return Err(DomainError::invalid(
            format!("{field_prefix}username"),
            "SHARED_EMAIL_AS_USERNAME",
            "another user already has this email, so give this user a username different from it",
        ));
    }
    Ok(())
}

/// The values after an update: the stored ones with the named fields taken
/// from the input, parsed as a whole. An update may not clear the username.
pub(crate) fn merge_update(
    current: &User,
    fields: &[UserField],
    input: &UserInput,
) -> Result<UserValues, DomainError> {
    if fields.contains(&UserField::Username) && input.username.trim().is_empty() {
        return Err(DomainError::invalid(
            "user.username",
            "REQUIRED",
            "must not be empty",
        ));
    }
    let mut merged = UserInput {
        first_name: current.first_name.clone(),
        last_name: current.last_name.clone(),
        email: current.email.clone(),
        username: current.username.clone(),
        phone: current.phone.clone().unwrap_or_default(),
        external_id: current.external_id.clone().unwrap_or_default(),
    };
    for field in fields {
        let (target, given) = match field {
            UserField::FirstName => (&mut merged.first_name, &input.first_name),
            UserField::LastName => (&mut merged.last_name, &input.last_name),
            UserField::Email => (&mut merged.email, &input.email),
            UserField::Username => (&mut merged.username, &input.username),
            UserField::Phone => (&mut merged.phone, &input.phone),
            UserField::ExternalId => (&mut merged.external_id, &input.external_id),
        };
        target.clone_from(given);
    }
    UserValues::parse(&merged, "user.").map_err(DomainError::InvalidArgument)
}

/// The groups of a mirrored (or cloned) user the caller covers, and the ids
/// of those skipped because the caller does not.
pub(crate) fn split_covered(authority: &Authority, grants: Vec<Grant>) -> (Vec<Grant>, Vec<Uuid>) {
    let (covered, skipped): (Vec<Grant>, Vec<Grant>) =
        grants.into_iter().partition(|g| authority.covers(g));
    (covered, skipped.into_iter().map(|g| g.group_id).collect())
}

/// The groups a new user gets: the explicit ones and the mirrored ones, once each.
pub(crate) fn granted_group_ids(explicit: &[Uuid], mirrored: &[Grant]) -> Vec<Uuid> {
    let mut group_ids: Vec<Uuid> = explicit.to_vec();
    group_ids.extend(mirrored.iter().map(|g| g.group_id));
    group_ids.sort();
    group_ids.dedup();
    group_ids
}

/// The groups a REPLACE mirror takes away: those the target holds and the reference does not.
pub(crate) fn unwanted_groups(current: &[Grant], wanted: &[Uuid]) -> Vec<Uuid> {
    current
        .iter()
        .map(|g| g.group_id)
        .filter(|id| !wanted.contains(id))
        .collect()
}

/// Whom a re-invitation reaches among the locked targets: a caller re-invites
/// only users whose groups they all cover; named users they do not cover
/// are refused, filtered ones are left out.
pub(crate) fn invitable(
    authority: &Authority,
    named: bool,
    mut ids: Vec<Uuid>,
    grants: &HashMap<Uuid, Vec<Grant>>,
) -> Result<Vec<Uuid>, NotCovered> {
    let may_invite = |id: &Uuid| {
        may_act_on(
            authority,
            *id,
            grants.get(id).map_or(&[][..], Vec::as_slice),
        )
    };
    if named {
        if let Some(refusal) = ids.iter().find_map(|id| may_invite(id).err()) {
            return Err(refusal);
        }
    }
    ids.retain(|id| may_invite(id).is_ok());
    Ok(ids)
}

/// A group a user holds, named for a calling service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedGrant {
    pub grant: Grant,
    pub group_name: String,
    pub product: String,
    pub profile_name: String,
    /// The names of the grant's units, for people.
    pub unit_names: std::collections::BTreeMap<Uuid, String>,
    /// The built-in role of the profile, which gives Roster's own scopes.
    pub built_in: Option<Scope>,
}

/// What a calling service may authorize a user for (GetUserAccess).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizableAccess {
    pub status: UserStatus,
    pub grants: Vec<NamedGrant>,
    pub scopes: Scopes,
}

impl AuthorizableAccess {
    /// Whether grants are worth reading at all for a user of this status.
    pub fn can_sign_in(status: UserStatus) -> bool {
        status == UserStatus::Active
    }

    /// A calling service must never authorize someone who cannot sign in,
    /// so only such a user shows grants and scopes.
    pub fn of(status: UserStatus, grants: Vec<NamedGrant>) -> Self {
        if !Self::can_sign_in(status) {
            return Self {
                status,
                grants: Vec::new(),
                scopes: Scopes::default(),
            };
        }
        let roles = grants
            .iter()
            .map(|named| (named.grant.clone(), named.built_in))
            .collect();
        Self {
            status,
            scopes: UserAccess::from_groups(true, roles).scopes,
            grants,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::UnitScope;

    fn grant(unit: Uuid) -> Grant {
        Grant {
            group_id: Uuid::new_v4(),
            profile_id: Uuid::new_v4(),
            scope: UnitScope::Units([unit].into()),
        }
    }

    #[test]
    fn acting_on_a_user_needs_every_group_covered_and_the_refusal_names_one() {
        let (south, west) = (Uuid::new_v4(), Uuid::new_v4());
        let cashier = Uuid::new_v4();
        let grant = |unit: Uuid| Grant {
            profile_id: cashier,
            ..grant(unit)
        };
        let (on_south, on_west) = (grant(south), grant(west));
        let south_admin = Authority::Grants(vec![grant(south)]);
        let user = Uuid::new_v4();

        assert_eq!(may_act_on(&south_admin, user, &[]), Ok(()));
        assert_eq!(
            may_act_on(&south_admin, user, std::slice::from_ref(&on_south)),
            Ok(())
        );
        let refusal =
            may_act_on(&south_admin, user, &[on_south.clone(), on_west.clone()]).unwrap_err();
        assert_eq!(
            refusal,
            NotCovered {
                user_id: user,
                group_id: on_west.group_id
            }
        );
        let message = refusal.to_string();
        assert!(message.contains(&user.to_string()), "{message}");
        assert!(message.contains(&on_west.group_id.to_string()), "{message}");
        assert_eq!(
            may_act_on(&Authority::Organization, user, &[on_south, on_west]),
            Ok(())
        );
    }

    fn values(email: &str, username: &str) -> UserValues {
        let input = UserInput {
            first_name: "Ana".into(),
            last_name: "Lima".into(),
            email: email.into(),
            username: username.into(),
            ..Default::default()
        };
        UserValues::parse(&input, "user.").unwrap()
    }

    #[test]
    fn a_shared_email_is_refused_as_a_login_only_when_someone_else_has_it() {
        let email_login = values("ana@acme.com", "");
        let own_login = values("ana@acme.com", "ana.lima");
        assert!(shared_email_login(&email_login, false, "user.").is_ok());
        assert!(shared_email_login(&own_login, true, "user.").is_ok());
        let DomainError::InvalidArgument(violations) =
            shared_email_login(&email_login, true, "user.").unwrap_err()
        else {
            panic!("expected a field violation");
        };
        assert_eq!(violations[0].field, "user.username");
        assert_eq!(violations[0].code, "SHARED_EMAIL_AS_USERNAME");
    }

    fn stored_user() -> User {
        User {
            id: Uuid::new_v4(),
            first_name: "Ana".into(),
            last_name: "Lima".into(),
            email: "ana@acme.com".into(),
            username: "ana".into(),
            phone: Some("+5511999998888".into()),
            external_id: None,
            status: UserStatus::Active,
            onboarded: true,
            invitation_expire_time: None,
            create_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
            last_login_time: None,
            password_expire_time: None,
            second_factor_time: None,
            password_expired: false,
            attributes: Default::default(),
        }
    }

    #[test]
    fn an_update_takes_only_the_named_fields_and_keeps_the_rest() {
        let input = UserInput {
            last_name: "Souza".into(),
            email: "ignored@acme.com".into(),
            ..Default::default()
        };
        let merged = merge_update(&stored_user(), &[UserField::LastName], &input).unwrap();
        assert_eq!(merged.last_name, "Souza");
        assert_eq!(merged.email, "ana@acme.com");
        assert_eq!(merged.phone.as_deref(), Some("+5511999998888"));

        let cleared = merge_update(&stored_user(), &[UserField::Phone], &input).unwrap();
        assert_eq!(cleared.phone, None);
        let refused = merge_update(&stored_user(), &[UserField::Username], &input).unwrap_err();
        assert!(matches!(refused, DomainError::InvalidArgument(v) if v[0].code == "REQUIRED"));
    }

    #[test]
    fn mirrored_groups_are_split_into_covered_and_skipped() {
        let (south, cashier) = (Uuid::new_v4(), Uuid::new_v4());
        let grant = |unit: Uuid| Grant {
            profile_id: cashier,
            ..grant(unit)
        };
        let (on_south, elsewhere) = (grant(south), grant(Uuid::new_v4()));
        let south_admin = Authority::Grants(vec![grant(south)]);
        let (covered, skipped) =
            split_covered(&south_admin, vec![on_south.clone(), elsewhere.clone()]);
        assert_eq!(covered, std::slice::from_ref(&on_south));
        assert_eq!(skipped, [elsewhere.group_id]);
        assert_eq!(
            granted_group_ids(&[on_south.group_id], &covered),
            [on_south.group_id]
        );
        assert_eq!(
            unwanted_groups(&[on_south.clone(), elsewhere.clone()], &[on_south.group_id]),
            [elsewhere.group_id]
        );
    }

    #[test]
    fn a_reinvitation_refuses_named_users_not_covered_and_leaves_filtered_ones_out() {
        let (south, cashier) = (Uuid::new_v4(), Uuid::new_v4());
        let grant = |unit: Uuid| Grant {
            profile_id: cashier,
            ..grant(unit)
        };
        let south_admin = Authority::Grants(vec![grant(south)]);
        let (covered, uncovered) = (Uuid::new_v4(), Uuid::new_v4());
        let grants = HashMap::from([
            (covered, vec![grant(south)]),
            (uncovered, vec![grant(Uuid::new_v4())]),
        ]);
        let both = vec![covered, uncovered];
        assert_eq!(
            invitable(&south_admin, false, both.clone(), &grants),
            Ok(vec![covered])
        );
        let refusal = invitable(&south_admin, true, both, &grants).unwrap_err();
        assert_eq!(refusal.user_id, uncovered);
    }

    #[test]
    fn no_one_who_cannot_sign_in_is_shown_as_authorized() {
        let admin = NamedGrant {
            grant: Grant {
                scope: UnitScope::AllUnits,
                ..grant(Uuid::new_v4())
            },
            group_name: "Admins".into(),
            product: "roster".into(),
            profile_name: "Admin".into(),
            unit_names: Default::default(),
            built_in: Some(Scope::Admin),
        };
        let active = AuthorizableAccess::of(UserStatus::Active, vec![admin.clone()]);
        assert_eq!(active.grants, std::slice::from_ref(&admin));
        assert_eq!(active.scopes, Scopes::new(vec![Scope::Admin]));
        for status in [
            UserStatus::Pending,
            UserStatus::Expired,
            UserStatus::Inactive,
            UserStatus::OnVacation,
            UserStatus::Blocked,
            UserStatus::Disabled,
        ] {
            let access = AuthorizableAccess::of(status, vec![admin.clone()]);
            assert!(access.grants.is_empty(), "{status:?}");
            assert_eq!(access.scopes, Scopes::default(), "{status:?}");
        }
    }
}
