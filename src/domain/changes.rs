//! The change stream of `WatchChanges`: which recorded changes it carries,
//! how they are numbered, and the cursor a consumer resumes from.
//!
//! Every change a use case makes is recorded for the audit trail when its
//! unit of work commits (`UnitOfWork::commit`, an import batch); the same
//! records, those a consumer keeps a copy of, are numbered per organization
//! in commit order (`store::changes::publish`, where the why is told) and
//! kept for the retention window. A stream reads them by position.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    audit::AuditRecord, caller::ActorKind, text_state::text_states, user::AuthorizableAccess,
    DomainError,
};

text_states! {
    /// What a change is about.
    ChangeKind {
        User => "USER",
        Membership => "MEMBERSHIP",
        Group => "GROUP",
        Unit => "UNIT",
        Profile => "PROFILE",
        Organization => "ORGANIZATION",
        UserAttribute => "USER_ATTRIBUTE",
    }
}

text_states! {
    ChangeOperation {
        Created => "CREATED",
        Updated => "UPDATED",
        Deleted => "DELETED",
    }
}

impl ChangeKind {
    /// Whether the change carries the user's resulting access.
    pub fn affects_one_user(self) -> bool {
        matches!(self, Self::User | Self::Membership)
    }
}

/// What an audit action announces on the stream; `None` for what changes no
/// state a consumer keeps (an export, a reset link sent) or is not theirs to
/// see (API keys).
pub fn classify(action: &str) -> Option<(ChangeKind, ChangeOperation)> {
    use ChangeOperation::{Created, Deleted, Updated};
    let (aggregate, verb) = action.split_once('.')?;
    let kind = match aggregate {
        "user" => match verb {
            "export" | "password_reset.send" => return None,
            "groups.add" | "groups.remove" | "mirror" => {
                return Some((ChangeKind::Membership, Updated))
            }
            _ => ChangeKind::User,
        },
        "group" => ChangeKind::Group,
        "unit" => ChangeKind::Unit,
        "profile" => ChangeKind::Profile,
        "organization" => ChangeKind::Organization,
        "user_attribute" => ChangeKind::UserAttribute,
        _ => return None,
    };
    let operation = match verb {
        "create" => Created,
        "delete" => Deleted,
        _ => Updated,
    };
    Some((kind, operation))
}

/// A recorded change the stream carries, as `publish` writes it.
#[derive(Debug, Clone)]
pub struct NewChange<'a> {
    pub record: &'a AuditRecord,
    pub kind: ChangeKind,
    pub operation: ChangeOperation,
    pub group_ids: Vec<Uuid>,
}

impl<'a> NewChange<'a> {
    /// The changes among a unit's records, in the order they were recorded.
    pub fn among(records: &'a [AuditRecord]) -> Vec<Self> {
        records
            .iter()
            .filter_map(|record| {
                let (kind, operation) = classify(record.action)?;
                Some(Self {
                    record,
                    kind,
                    operation,
                    group_ids: groups_named(&record.details),
                })
            })
            .collect()
    }
}

/// The groups a membership record names: `group_ids` of an add or remove,
/// `added` and `removed` of a mirror.
fn groups_named(details: &serde_json::Value) -> Vec<Uuid> {
    ["group_ids", "added", "removed"]
        .iter()
        .filter_map(|key| details.get(key)?.as_array())
        .flatten()
        .filter_map(|id| id.as_str()?.parse().ok())
        .collect()
}

/// A change as read back, numbered.
#[derive(Debug, Clone)]
pub struct Change {
    pub position: i64,
    pub kind: ChangeKind,
    pub operation: ChangeOperation,
    pub resource_id: String,
    pub action: String,
    pub changed_fields: Vec<String>,
    pub actor_kind: ActorKind,
    pub actor_id: Option<Uuid>,
    pub request_id: String,
    pub group_ids: Vec<Uuid>,
    pub commit_time: DateTime<Utc>,
}

impl Change {
    /// The user a USER or MEMBERSHIP change is about.
    pub fn user_id(&self) -> Option<Uuid> {
        if self.kind.affects_one_user() {
            self.resource_id.parse().ok()
        } else {
            None
        }
    }
}

/// A change with what the stream sends along: for a user's change, their
/// access as read when it was sent (`None`: the user is gone).
#[derive(Debug, Clone)]
pub struct DeliveredChange {
    pub change: Change,
    pub user_access: Option<AuthorizableAccess>,
}

/// Where a stream stands in its organization's changes: after `position`.
/// Opaque to consumers; it names its organization so a cursor of another
/// one is refused rather than read as a position of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub organization_id: Uuid,
    pub position: i64,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_BYTES: usize = 1 + 16 + 8;

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(self.organization_id.as_bytes());
        bytes.extend_from_slice(&self.position.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A cursor this organization's stream gave out.
    pub fn decode(raw: &str, organization_id: Uuid) -> Result<Self, DomainError> {
        let invalid = |rule: &str| {
            DomainError::invalid(
                "after_cursor",
                "INVALID_CURSOR",
                format!(
                    "after_cursor {rule}: give the `cursor` of a change or heartbeat as received"
                ),
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| invalid("is not a cursor"))?;
        if bytes.len() != CURSOR_BYTES || bytes[0] != CURSOR_VERSION {
            return Err(invalid("is not a cursor"));
        }
        let cursor_organization = Uuid::from_slice(&bytes[1..17]).expect("16 bytes");
        if cursor_organization != organization_id {
            return Err(invalid("belongs to another organization"));
        }
        let position = i64::from_be_bytes(bytes[17..].try_into().expect("8 bytes"));
        if position < 0 {
            return Err(invalid("is not a cursor"));
        }
        Ok(Self {
            organization_id,
            position,
        })
    }
}

/// The most users one stream may follow by id; more is a resynchronization
/// of the whole organization, which needs no list.
pub const MAX_WATCHED_USERS: usize = 1_000;

/// What a consumer asked to receive.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// Empty: every kind.
    pub kinds: Vec<ChangeKind>,
    /// USER and MEMBERSHIP changes of these users only; empty: every user.
    pub user_ids: std::collections::HashSet<Uuid>,
}

impl ChangeFilter {
    pub fn admits(&self, change: &Change) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&change.kind) {
            return false;
        }
        match change.user_id() {
            Some(user_id) if !self.user_ids.is_empty() => self.user_ids.contains(&user_id),
            _ => true,
        }
    }
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    Now,
    Beginning,
    After(Cursor),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_action_is_classified_on_purpose() {
        use ChangeKind::*;
        use ChangeOperation::*;
        let expected = [
            ("user.create", Some((User, Created))),
            ("user.delete", Some((User, Deleted))),
            ("user.update", Some((User, Updated))),
            ("user.status.set", Some((User, Updated))),
            ("user.invite", Some((User, Updated))),
            ("user.password.register", Some((User, Updated))),
            ("user.second_factor.enroll", Some((User, Updated))),
            ("user.groups.add", Some((Membership, Updated))),
            ("user.groups.remove", Some((Membership, Updated))),
            ("user.mirror", Some((Membership, Updated))),
            ("user.export", None),
            ("user.password_reset.send", None),
            ("group.create", Some((Group, Created))),
            ("unit.delete", Some((Unit, Deleted))),
            ("profile.update", Some((Profile, Updated))),
            ("organization.create", Some((Organization, Created))),
            (
                "organization.settings.update",
                Some((Organization, Updated)),
            ),
            ("user_attribute.create", Some((UserAttribute, Created))),
            ("api_key.create", None),
            ("api_key.revoke", None),
        ];
        for (action, kind) in expected {
            assert_eq!(classify(action), kind, "{action}");
        }
    }

    #[test]
    fn membership_records_name_their_groups() {
        let [a, b] = [Uuid::new_v4(), Uuid::new_v4()];
        let details = serde_json::json!({ "group_ids": [a.to_string()] });
        assert_eq!(groups_named(&details), vec![a]);
        let mirror = serde_json::json!({ "added": [a.to_string()], "removed": [b.to_string()], "reference_user_id": "x" });
        assert_eq!(groups_named(&mirror), vec![a, b]);
    }

    #[test]
    fn a_cursor_reads_back_in_its_organization_only() {
        let organization_id = Uuid::new_v4();
        let cursor = Cursor {
            organization_id,
            position: 42,
        };
        let encoded = cursor.encode();
        assert_eq!(Cursor::decode(&encoded, organization_id).unwrap(), cursor);
        assert!(Cursor::decode(&encoded, Uuid::new_v4()).is_err());
        for garbage in ["", "abc", "!!!", &encoded[1..]] {
            assert!(
                Cursor::decode(garbage, organization_id).is_err(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn filters_narrow_kinds_and_the_users_of_user_changes() {
        let user = Uuid::new_v4();
        let change = |kind, resource_id: String| Change {
            position: 1,
            kind,
            operation: ChangeOperation::Updated,
            resource_id,
            action: String::new(),
            changed_fields: Vec::new(),
            actor_kind: ActorKind::System,
            actor_id: None,
            request_id: String::new(),
            group_ids: Vec::new(),
            commit_time: Utc::now(),
        };
        let theirs = change(ChangeKind::User, user.to_string());
        let others = change(ChangeKind::Membership, Uuid::new_v4().to_string());
        let group = change(ChangeKind::Group, Uuid::new_v4().to_string());
        let by_user = ChangeFilter {
            kinds: Vec::new(),
            user_ids: [user].into(),
        };
        assert!(by_user.admits(&theirs) && !by_user.admits(&others) && by_user.admits(&group));
        let groups_only = ChangeFilter {
            kinds: vec![ChangeKind::Group],
            user_ids: Default::default(),
        };
        assert!(!groups_only.admits(&theirs) && groups_only.admits(&group));
        assert!(ChangeFilter::default().admits(&others));
    }
}
