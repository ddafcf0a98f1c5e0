//! The writes of one import batch as column vectors, built by pure code from
//! the decided rows, so that the store writes each kind in one statement.

use std::collections::HashSet;

use serde_json::json;
use uuid::Uuid;

use super::{
    decide::{Decision, Plan},
    job::{JobKind, RowResult},
};
use crate::domain::{
    attribute::{attribute_changes, StoredAttributes},
    audit::{AuditRecord, FieldChanges},
    call::Via,
    caller::Actor,
    group::GroupLabel,
    request::RequestId,
    user::{user_value_pairs, AdminState, LegacyStatus, UserStatus, UserValues},
    FieldViolation,
};

/// Who writes a batch, in which job, and what the job's options add.
pub struct BatchAuthor<'a> {
    pub organization_id: Uuid,
    pub actor: Actor,
    pub via: Via,
    pub request_id: &'a RequestId,
    pub job_id: Uuid,
    pub send_invitations: bool,
    /// The mirrored user's groups the caller does not cover.
    pub mirror_skipped: &'a [GroupLabel],
    /// Where emails are unique, a lost race for a new user is on its email.
    pub email_unique: bool,
}

impl BatchAuthor<'_> {
    fn audit(&self, action: &'static str, user_id: Uuid) -> AuditRecord {
        AuditRecord::new(
            self.organization_id,
            self.actor,
            self.via,
            action,
            "user",
            user_id,
        )
        .with_request_id(self.request_id.as_str())
    }
}

/// A user as an import writes it (created or changed): all values and the
/// assigned states.
pub struct ImportedUser<'a> {
    pub id: Uuid,
    pub values: &'a UserValues,
    pub admin_state: AdminState,
    pub legacy_status: Option<LegacyStatus>,
    /// Custom attributes' values, the whole object as stored.
    pub attributes: &'a StoredAttributes,
}

/// Every write of a batch after its new users are inserted.
#[derive(Default)]
pub struct ImportBatch<'a> {
    pub changes: Vec<ImportedUser<'a>>,
    /// Memberships to add, as pairs: `member_users[i]` joins `member_groups[i]`.
    pub member_users: Vec<Uuid>,
    pub member_groups: Vec<Uuid>,
    pub invited: Vec<Uuid>,
    /// Users whose access tokens are revoked.
    pub tokens_revoked: Vec<Uuid>,
    /// Users whose email changed: links sent to the old address stop working.
    pub new_addresses: Vec<Uuid>,
    /// Whether those of them still to register a password are invited at
    /// the new address (the job's `send_invitations`).
    pub invite_new_addresses: bool,
    pub deleted: Vec<Uuid>,
    pub audits: Vec<AuditRecord>,
}

/// A row's result and the keys it claims.
pub type ResultWithClaims = (RowResult, Vec<String>);

/// The users the decisions create, inserted first: which of them are
/// inserted decides the rest of the batch.
pub fn new_users(decisions: &[Decision]) -> Vec<ImportedUser<'_>> {
    decisions
        .iter()
        .filter_map(|decision| decision.plan.new_user())
        .collect()
}

impl Plan {
    /// The user the plan creates, as it is inserted; none for another plan.
    pub fn new_user(&self) -> Option<ImportedUser<'_>> {
        match self {
            Plan::Create {
                user_id,
                values,
                admin_state,
                legacy_status,
                attributes,
                ..
            } => Some(ImportedUser {
                id: *user_id,
                values,
                admin_state: *admin_state,
                legacy_status: *legacy_status,
                attributes,
            }),
            _ => None,
        }
    }
}

impl<'a> ImportBatch<'a> {
    /// The writes of `decisions` and each row's result. A new user missing
    /// from `inserted` was created first by a concurrent import: its row fails.
    pub fn of(
        decisions: &'a [Decision],
        inserted: &HashSet<Uuid>,
        author: &BatchAuthor<'_>,
    ) -> (Self, Vec<ResultWithClaims>) {
        let mut batch = Self {
            invite_new_addresses: author.send_invitations,
            ..Self::default()
        };
        let mut results = Vec::with_capacity(decisions.len());
        for decision in decisions {
            if let Plan::Create { user_id, .. } = &decision.plan {
                if !inserted.contains(user_id) {
                    results.push((lost_race(decision, author.email_unique), Vec::new()));
                    continue;
                }
            }
            batch.add(decision, author);
            results.push((
                result_of(decision, JobKind::Import),
                decision.claims.clone(),
            ));
        }
        (batch, results)
    }

    fn add(&mut self, decision: &'a Decision, author: &BatchAuthor<'_>) {
        let line = decision.line;
        match &decision.plan {
            Plan::Create {
                user_id: id,
                values,
                group_ids,
                attributes,
                ..
            } => {
                self.add_memberships(*id, group_ids);
                if author.send_invitations {
                    self.invited.push(*id);
                }
                let details = json!({
                    "email": values.email,
                    "username": values.username,
                    "attributes": attributes,
                    "group_ids": group_ids,
                    "skipped_group_ids": author.mirror_skipped.iter().map(|g| g.id).collect::<Vec<_>>(),
                    "import_job_id": author.job_id,
                    "line": line,
                });
                self.audits
                    .push(author.audit("user.create", *id).with_details(details));
            }
            Plan::Update {
                user_id: id,
                before,
                after,
                attributes_before,
                attributes_after,
                status_before,
                admin_state,
                legacy_status,
                add_group_ids,
                revoke_tokens,
                email_changed,
            } => {
                self.changes.push(ImportedUser {
                    id: *id,
                    values: after,
                    admin_state: *admin_state,
                    legacy_status: *legacy_status,
                    attributes: attributes_after,
                });
                self.add_memberships(*id, add_group_ids);
                if *revoke_tokens {
                    self.tokens_revoked.push(*id);
                }
                if *email_changed {
                    self.new_addresses.push(*id);
                }
                let status_after = UserStatus::assigned(*admin_state, *legacy_status);
                let changes = update_changes(
                    (before, after),
                    (attributes_before, attributes_after),
                    (*status_before, status_after),
                    add_group_ids,
                );
                self.audits
                    .push(author.audit("user.update", *id).with_field_changes(changes));
            }
            Plan::Delete {
                user_id: id,
                values,
            } => {
                self.deleted.push(*id);
                self.audits
                    .push(author.audit("user.delete", *id).with_details(json!({
                        "email": values.email,
                        "username": values.username,
                        "import_job_id": author.job_id,
                        "line": line,
                    })));
            }
            Plan::Failed(_) | Plan::Unchanged { .. } | Plan::Skipped { .. } | Plan::Example => {}
        }
    }

    fn add_memberships(&mut self, user_id: Uuid, group_ids: &[Uuid]) {
        for group in group_ids {
            self.member_users.push(user_id);
            self.member_groups.push(*group);
        }
    }
}

/// What an update row changed, for its audit record: values, status, the
/// groups added, custom attributes.
fn update_changes(
    values: (&UserValues, &UserValues),
    attributes: (&StoredAttributes, &StoredAttributes),
    status: (UserStatus, UserStatus),
    add_group_ids: &[Uuid],
) -> FieldChanges {
    let mut changes =
        FieldChanges::between(user_value_pairs(values.0, values.1).into_iter().chain([
            // Stored names, as before: the enums' serde form is the variant name.
            ("status", json!(status.0.as_str()), json!(status.1.as_str())),
            ("groups", json!([]), json!(add_group_ids)),
        ]));
    changes.extend(attribute_changes(attributes.0, attributes.1));
    changes
}

/// The row of a new user a concurrent import created first (same email where
/// emails are unique, else same username).
fn lost_race(decision: &Decision, email_unique: bool) -> RowResult {
    RowResult::failed(
        decision.line,
        decision.action,
        decision.email.clone(),
        vec![FieldViolation::new(
            if email_unique { "email" } else { "username" },
            "USER_ALREADY_EXISTS",
            "User already exists",
        )],
    )
}

/// The result a decision gives its row.
pub fn result_of(decision: &Decision, kind: JobKind) -> RowResult {
    RowResult {
        line: decision.line,
        action: decision.action,
        email: decision.email.clone(),
        outcome: decision.plan.outcome(kind),
        // A reviewed new user has no id yet.
        user_id: match (&decision.plan, kind) {
            (Plan::Create { .. }, JobKind::Validate) => None,
            (plan, _) => plan.user_id(),
        },
        errors: match &decision.plan {
            Plan::Failed(errors) => errors.clone(),
            _ => Vec::new(),
        },
        warnings: decision.warnings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        import::{job::Outcome, row::Action},
        user::{UserInput, UserValues},
    };

    fn values(username: &str) -> UserValues {
        let input = UserInput {
            first_name: "Ana".into(),
            last_name: "Silva".into(),
            email: format!("{username}@acme.com"),
            username: username.into(),
            ..UserInput::default()
        };
        UserValues::parse(&input, "").expect("valid values")
    }

    fn decision(line: u64, plan: Plan) -> Decision {
        Decision {
            line,
            action: Some(Action::Add),
            email: String::new(),
            plan,
            warnings: Vec::new(),
            claims: vec![format!("key of line {line}")],
        }
    }

    fn create(user_id: Uuid, username: &str, group_ids: Vec<Uuid>) -> Plan {
        Plan::Create {
            user_id,
            values: values(username),
            admin_state: AdminState::Active,
            legacy_status: None,
            group_ids,
            attributes: StoredAttributes::new(),
        }
    }

    #[test]
    fn each_kind_of_write_is_one_column_and_a_new_user_lost_to_a_race_fails_its_row() {
        let [created, lost, updated, deleted, unchanged, group] = [(); 6].map(|()| Uuid::now_v7());
        let decisions = [
            decision(2, create(created, "ana", vec![group])),
            decision(3, create(lost, "bia", vec![group])),
            decision(
                4,
                Plan::Update {
                    user_id: updated,
                    before: values("caio"),
                    after: values("caio.new"),
                    attributes_before: StoredAttributes::new(),
                    attributes_after: [("level".to_owned(), json!(2))].into_iter().collect(),
                    status_before: UserStatus::Active,
                    admin_state: AdminState::Inactive,
                    legacy_status: None,
                    add_group_ids: vec![group],
                    revoke_tokens: true,
                    email_changed: true,
                },
            ),
            decision(
                5,
                Plan::Delete {
                    user_id: deleted,
                    values: values("duda"),
                },
            ),
            decision(6, Plan::Unchanged { user_id: unchanged }),
        ];
        let author = BatchAuthor {
            organization_id: Uuid::now_v7(),
            actor: Actor::Operator,
            via: Via::Cli,
            request_id: &RequestId::generate(),
            job_id: Uuid::now_v7(),
            send_invitations: true,
            mirror_skipped: &[],
            email_unique: true,
        };

        let (batch, results) = ImportBatch::of(&decisions, &HashSet::from([created]), &author);

        let changed: Vec<Uuid> = batch.changes.iter().map(|change| change.id).collect();
        assert_eq!(changed, [updated]);
        assert_eq!(batch.member_users, [created, updated]);
        assert_eq!(batch.member_groups, [group, group]);
        assert_eq!(batch.invited, [created]);
        assert_eq!(batch.tokens_revoked, [updated]);
        assert_eq!(batch.new_addresses, [updated]);
        assert!(batch.invite_new_addresses);
        assert_eq!(batch.deleted, [deleted]);
        let audited: Vec<_> = batch.audits.iter().map(|a| a.action).collect();
        assert_eq!(audited, ["user.create", "user.update", "user.delete"]);
        assert_eq!(
            batch.audits[1].details["status"],
            json!({ "old": "ACTIVE", "new": "INACTIVE" }),
            "the audit names states as stored, not by their variant names"
        );
        assert_eq!(
            batch.audits[1].details["attributes.level"],
            json!({ "old": null, "new": 2 }),
            "attribute changes are audited like the other fields"
        );
        let outcomes: Vec<_> = results.iter().map(|(result, _)| result.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Created,
                Outcome::Failed,
                Outcome::Updated,
                Outcome::Deleted,
                Outcome::Unchanged
            ]
        );
        let (lost_row, lost_claims) = &results[1];
        assert_eq!(lost_row.errors[0].field, "email");
        assert_eq!(lost_row.errors[0].code, "USER_ALREADY_EXISTS");
        assert!(lost_claims.is_empty(), "a failed row claims nothing");
    }
}
