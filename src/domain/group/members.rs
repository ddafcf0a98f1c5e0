//! A group with its members as one whole (SCIM's Group resource): groups
//! matching a condition, their members, and creating or changing a group
//! together with its members in one unit of work.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{group_details, insert_group, lock_covered, update_locked, Group, GroupUpdate};
use crate::{
    domain::{
        access::Authority,
        call::Call,
        caller::Caller,
        request::IdempotencyKey,
        unit_of_work::{IdempotentCreate, UnitOfWork},
        user::{ensure_may_act_on, TextOp, TimeField, TimeOp},
        DomainError, FieldViolation,
    },
    store::{self, connections::read, Pool},
};

/// Which groups a read finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCondition {
    /// Every group (`true`) or none (`false`).
    Always(bool),
    And(Box<GroupCondition>, Box<GroupCondition>),
    Or(Box<GroupCondition>, Box<GroupCondition>),
    Not(Box<GroupCondition>),
    /// The name, ignoring case.
    Name {
        op: TextOp,
        value: String,
    },
    Id(Uuid),
    /// The external id, case-exact (SCIM's `externalId` is).
    ExternalId {
        op: TextOp,
        value: String,
    },
    HasExternalId,
    /// The user is a member.
    Member(Uuid),
    /// `LastModified`: the later of the group's update and its last join.
    Time {
        field: TimeField,
        op: TimeOp,
        value: DateTime<Utc>,
    },
}

/// A group and when a member last joined it. With the group's update time
/// and member count, that tells one state of the group and its members from
/// every later one: a join moves the last join time on, a leave lowers the
/// count.
#[derive(Debug, Clone)]
pub struct TrackedGroup {
    pub group: Group,
    pub last_join_time: Option<DateTime<Utc>>,
}

impl TrackedGroup {
    /// When the group or its members last changed (as far as joins tell).
    pub fn last_modified(&self) -> DateTime<Utc> {
        self.last_join_time
            .map_or(self.group.update_time, |joined| {
                joined.max(self.group.update_time)
            })
    }
}

/// One page of the groups matching, oldest first, and how many match in all.
#[derive(Debug, Clone)]
pub struct MatchingGroups {
    pub groups: Vec<TrackedGroup>,
    pub total: i64,
}

/// The groups matching `condition`, skipping `offset` of them (oldest
/// first), at most `limit`.
pub async fn groups_matching(
    pool: &Pool,
    organization_id: Uuid,
    condition: &GroupCondition,
    offset: i64,
    limit: i64,
) -> Result<MatchingGroups, DomainError> {
    let (groups, total) = read!(pool, |connection| {
        store::group_members::matching(connection, organization_id, condition, offset, limit).await
    })?;
    Ok(MatchingGroups { groups, total })
}

/// A member of a group (SCIM answers members without `display`: a
/// provider compares it with what it sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub group_id: Uuid,
    pub user_id: Uuid,
}

/// The members of these groups, by group then user id.
pub async fn members_of_groups(
    pool: &Pool,
    organization_id: Uuid,
    group_ids: &[Uuid],
) -> Result<Vec<GroupMember>, DomainError> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(read!(pool, |connection| {
        store::group_members::members_of(connection, organization_id, group_ids).await
    })?)
}

/// How a request changes a group's members; several apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Add(Vec<Uuid>),
    Remove(Vec<Uuid>),
    Replace(Vec<Uuid>),
}

/// Creates a group and gives it its first members, at once: a member that
/// is not a user of the organization creates nothing.
pub async fn create_group_with_members(
    call: &Call,
    idempotency_key: Option<IdempotencyKey>,
    values: &super::GroupValues,
    members: &[Uuid],
) -> Result<TrackedGroup, DomainError> {
    let caller = &call.caller;
    // With a key, a retry (a SCIM /Bulk sent again) answers the first create's group.
    let create = idempotency_key
        .map(|key| IdempotentCreate::new(caller, <Group as super::Created>::OPERATION, key));
    if let Some(create) = &create {
        if let Some((id, _)) = create.earlier::<serde_json::Value>(call.pool()).await? {
            let condition = GroupCondition::Id(id);
            let found = groups_matching(call.pool(), caller.organization_id, &condition, 0, 1);
            return found
                .await?
                .groups
                .pop()
                .ok_or_else(|| DomainError::not_found("group", id));
        }
    }
    let mut work = call.begin().await?;
    let group = insert_group(&mut work, caller, values).await?;
    if let Some(create) = &create {
        work.remember(create, group.id, &json!({})).await?;
    }
    let audit = work.audit_record("group.create", "group", group.id);
    work.record(audit.with_details(group_details(&group)));
    let replace = [MemberChange::Replace(members.to_vec())];
    change_members(&mut work, caller, group.id, &replace).await?;
    let tracked = find_tracked(&mut work, caller.organization_id, group.id).await?;
    work.commit().await?;
    Ok(tracked)
}

/// Changes a group's values (when `update` is given) and members at once,
/// under the rules of `update_group` and of adding users to groups.
/// `decide` sees the group as locked for the change (SCIM checks its
/// If-Match version there) and says what update of its values to make.
pub async fn change_group<E: From<DomainError>>(
    call: &Call,
    id: Uuid,
    decide: impl FnOnce(&TrackedGroup) -> Result<Option<GroupUpdate>, E>,
    changes: &[MemberChange],
) -> Result<TrackedGroup, E> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    lock_covered(&mut work, caller, id).await?;
    let locked = find_tracked(&mut work, caller.organization_id, id).await?;
    if let Some(update) = decide(&locked)? {
        update_locked(&mut work, caller, id, &update).await?;
    }
    change_members(&mut work, caller, id, changes).await?;
    let tracked = find_tracked(&mut work, caller.organization_id, id).await?;
    work.commit().await?;
    Ok(tracked)
}

async fn find_tracked(
    work: &mut UnitOfWork,
    organization_id: Uuid,
    id: Uuid,
) -> Result<TrackedGroup, DomainError> {
    store::group_members::find(&mut **work.tx(), organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))
}

/// Applies the changes to the locked group's members: whoever joins must be
/// a user of the organization (refused naming each one that is not), and the
/// caller must be allowed to act on each user who joins or leaves. Each is
/// recorded as that user's membership change.
async fn change_members(
    work: &mut UnitOfWork,
    caller: &Caller,
    group_id: Uuid,
    changes: &[MemberChange],
) -> Result<(), DomainError> {
    if changes.is_empty() {
        return Ok(());
    }
    let organization_id = caller.organization_id;
    let current: BTreeSet<Uuid> =
        store::group_members::member_ids(work.tx(), organization_id, group_id)
            .await?
            .into_iter()
            .collect();
    let mut wanted = current.clone();
    for change in changes {
        match change {
            MemberChange::Add(ids) => wanted.extend(ids),
            MemberChange::Remove(ids) => ids.iter().for_each(|id| {
                wanted.remove(id);
            }),
            MemberChange::Replace(ids) => wanted = ids.iter().copied().collect(),
        }
    }
    let joining: Vec<Uuid> = wanted.difference(&current).copied().collect();
    let leaving: Vec<Uuid> = current.difference(&wanted).copied().collect();
    let found: BTreeSet<Uuid> =
        store::group_members::existing_user_ids(work.tx(), organization_id, &joining)
            .await?
            .into_iter()
            .collect();
    let unknown: Vec<FieldViolation> = joining
        .iter()
        .filter(|id| !found.contains(id))
        .map(|id| {
            FieldViolation::new(
                "members",
                "USER_NOT_FOUND",
                format!("value {id} is not a user of this organization"),
            )
        })
        .collect();
    DomainError::check(unknown)?;
    if caller.authority != Authority::Organization {
        for user_id in joining.iter().chain(&leaving) {
            ensure_may_act_on(work.tx(), caller, *user_id, None).await?;
        }
    }
    store::group_members::add(work.tx(), organization_id, group_id, &joining).await?;
    store::group_members::remove(work.tx(), organization_id, group_id, &leaving).await?;
    for (action, users) in [
        ("user.groups.add", &joining),
        ("user.groups.remove", &leaving),
    ] {
        for user_id in users {
            let record = work
                .audit_record(action, "user", user_id)
                .with_changes(vec!["groups".into()], json!({ "group_ids": [group_id] }));
            work.record(record);
        }
    }
    Ok(())
}

/// Deletes the group if `check` passes on it as locked for the delete
/// (SCIM's If-Match: a version the caller read).
pub async fn delete_group_if<E: From<DomainError>>(
    call: &Call,
    id: Uuid,
    check: impl FnOnce(&TrackedGroup) -> Result<(), E>,
) -> Result<(), E> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    lock_covered(&mut work, caller, id).await?;
    let locked = find_tracked(&mut work, caller.organization_id, id).await?;
    check(&locked)?;
    super::delete_locked(work, caller, id).await?;
    Ok(())
}
