//! WatchChanges: its request to a start and a filter, changes to messages.

use uuid::Uuid;

use super::{organizations::actor_kind, parse_ids, timestamp};
use crate::{
    domain::{
        changes::{
            ChangeFilter, ChangeKind, ChangeOperation, Cursor, DeliveredChange, WatchStart,
            MAX_WATCHED_USERS,
        },
        DomainError, FieldViolation,
    },
    proto::{self, watch_changes_request::Start},
};

/// Where to start and what to send, every violation at once.
pub fn watch_request(
    body: &proto::WatchChangesRequest,
    organization_id: Uuid,
) -> Result<(WatchStart, ChangeFilter), DomainError> {
    let mut violations = Vec::new();
    let start = match &body.start {
        None | Some(Start::FromBeginning(false)) => WatchStart::Now,
        Some(Start::FromBeginning(true)) => WatchStart::Beginning,
        Some(Start::AfterCursor(raw)) => match Cursor::decode(raw, organization_id) {
            Ok(cursor) => WatchStart::After(cursor),
            Err(DomainError::InvalidArgument(found)) => {
                violations.extend(found);
                WatchStart::Now
            }
            Err(other) => return Err(other),
        },
    };
    let mut kinds = Vec::new();
    for (index, raw) in body.kinds.iter().enumerate() {
        match change_kind(*raw) {
            Some(kind) => kinds.push(kind),
            None => violations.push(FieldViolation::new(
                format!("kinds[{index}]"),
                "INVALID_KIND",
                format!("kinds[{index}] is not a ChangeKind (give USER, MEMBERSHIP, GROUP, UNIT, PROFILE, ORGANIZATION or USER_ATTRIBUTE)"),
            )),
        }
    }
    if body.user_ids.len() > MAX_WATCHED_USERS {
        // Refused before any is parsed.
        return Err(DomainError::invalid(
            "user_ids",
            "TOO_MANY",
            format!("at most {MAX_WATCHED_USERS} ids; watch every user and filter on your side for more"),
        ));
    }
    let user_ids = match parse_ids(&body.user_ids, "user_ids") {
        Ok(ids) => ids.into_iter().collect(),
        Err(DomainError::InvalidArgument(found)) => {
            violations.extend(found);
            Default::default()
        }
        Err(other) => return Err(other),
    };
    DomainError::check(violations)?;
    Ok((start, ChangeFilter { kinds, user_ids }))
}

fn change_kind(raw: i32) -> Option<ChangeKind> {
    Some(match proto::ChangeKind::try_from(raw).ok()? {
        proto::ChangeKind::Unspecified => return None,
        proto::ChangeKind::User => ChangeKind::User,
        proto::ChangeKind::Membership => ChangeKind::Membership,
        proto::ChangeKind::Group => ChangeKind::Group,
        proto::ChangeKind::Unit => ChangeKind::Unit,
        proto::ChangeKind::Profile => ChangeKind::Profile,
        proto::ChangeKind::Organization => ChangeKind::Organization,
        proto::ChangeKind::UserAttribute => ChangeKind::UserAttribute,
    })
}

fn change_kind_to_proto(kind: ChangeKind) -> proto::ChangeKind {
    match kind {
        ChangeKind::User => proto::ChangeKind::User,
        ChangeKind::Membership => proto::ChangeKind::Membership,
        ChangeKind::Group => proto::ChangeKind::Group,
        ChangeKind::Unit => proto::ChangeKind::Unit,
        ChangeKind::Profile => proto::ChangeKind::Profile,
        ChangeKind::Organization => proto::ChangeKind::Organization,
        ChangeKind::UserAttribute => proto::ChangeKind::UserAttribute,
    }
}

fn operation_to_proto(operation: ChangeOperation) -> proto::ChangeOperation {
    match operation {
        ChangeOperation::Created => proto::ChangeOperation::Created,
        ChangeOperation::Updated => proto::ChangeOperation::Updated,
        ChangeOperation::Deleted => proto::ChangeOperation::Deleted,
    }
}

pub fn change(delivered: &DeliveredChange, organization_id: Uuid) -> proto::WatchChangesResponse {
    let change = &delivered.change;
    let cursor = Cursor {
        organization_id,
        position: change.position,
    };
    let message = proto::Change {
        cursor: cursor.encode(),
        kind: change_kind_to_proto(change.kind) as i32,
        operation: operation_to_proto(change.operation) as i32,
        resource_id: change.resource_id.clone(),
        action: change.action.clone(),
        changed_fields: change.changed_fields.clone(),
        actor_kind: actor_kind(change.actor_kind) as i32,
        actor_id: change.actor_id.map(|id| id.to_string()).unwrap_or_default(),
        request_id: change.request_id.clone(),
        commit_time: Some(timestamp(change.commit_time)),
        user_access: delivered.user_access.clone().map(Into::into),
        group_ids: change.group_ids.iter().map(Uuid::to_string).collect(),
    };
    proto::WatchChangesResponse {
        event: Some(proto::watch_changes_response::Event::Change(message)),
    }
}

pub fn heartbeat(cursor: Cursor) -> proto::WatchChangesResponse {
    let heartbeat = proto::Heartbeat {
        cursor: cursor.encode(),
        time: Some(timestamp(chrono::Utc::now())),
    };
    proto::WatchChangesResponse {
        event: Some(proto::watch_changes_response::Event::Heartbeat(heartbeat)),
    }
}
