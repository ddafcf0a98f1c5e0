//! The change stream's rows: numbered as they commit, read by position,
//! pruned by age. See the migration `changes` for why a counter row.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{notifications::Notifications, Pool, Transaction};
use crate::domain::{
    audit::AuditRecord,
    caller::ActorKind,
    changes::{Change, ChangeKind, ChangeOperation, NewChange},
};

/// Carries "<organization id>:<last position>" as each numbering commits.
pub const CHANNEL: &str = "roster_changes";
/// How the listening connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "roster changes";

/// Numbers and writes the changes among a unit's records. Call it last,
/// right before the commit: the organization's counter row stays locked
/// until then, so the next writer of the organization numbers after this
/// one is visible, and nothing else is waited for while it is held (the
/// holder waits for no lock, so it is in no deadlock).
pub async fn publish(tx: &mut Transaction<'_>, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
    let changes = NewChange::among(records);
    let mut organizations: Vec<Uuid> = changes
        .iter()
        .map(|change| change.record.organization_id)
        .collect();
    // Counters are locked in one order by every writer.
    organizations.sort_unstable();
    organizations.dedup();
    for organization_id in organizations {
        let of_organization: Vec<&NewChange> = changes
            .iter()
            .filter(|change| change.record.organization_id == organization_id)
            .collect();
        publish_in(tx, organization_id, &of_organization).await?;
    }
    Ok(())
}

async fn publish_in(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    changes: &[&NewChange<'_>],
) -> Result<(), sqlx::Error> {
    let count = changes.len() as i64;
    let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    let operations: Vec<&str> = changes.iter().map(|c| c.operation.as_str()).collect();
    let resource_ids: Vec<&str> = changes
        .iter()
        .map(|c| c.record.target_id.as_str())
        .collect();
    let actions: Vec<&str> = changes.iter().map(|c| c.record.action).collect();
    // Ragged lists travel joined and are split back (field names and ids hold no comma).
    let changed_fields: Vec<String> = changes
        .iter()
        .map(|c| c.record.changed_fields.join(","))
        .collect();
    let actor_kinds: Vec<&str> = changes
        .iter()
        .map(|c| c.record.actor.kind().as_str())
        .collect();
    let actor_ids: Vec<Option<Uuid>> = changes.iter().map(|c| c.record.actor.id()).collect();
    let request_ids: Vec<&str> = changes
        .iter()
        .map(|c| c.record.request_id.as_str())
        .collect();
    let group_ids: Vec<String> = changes
        .iter()
        .map(|c| {
            let ids: Vec<String> = c.group_ids.iter().map(Uuid::to_string).collect();
            ids.join(",")
        })
        .collect();
    // One round trip on every write: take the positions (locking the
    // counter row), write the rows numbered from them, announce the last.
    sqlx::query!(
        "with counter as ( \
           insert into change_counters (organization_id, last_position) values ($1, $2) \
           on conflict (organization_id) do update \
           set last_position = change_counters.last_position + excluded.last_position \
           returning last_position \
         ), numbered as ( \
           insert into changes (organization_id, position, kind, operation, resource_id, action, \
           changed_fields, actor_kind, actor_id, request_id, group_ids, commit_time) \
           select $1, counter.last_position - $2 + t.n, t.kind, t.operation, t.resource_id, t.action, \
           string_to_array(t.changed_fields, ','), t.actor_kind, t.actor_id, t.request_id, \
           string_to_array(t.group_ids, ',')::uuid[], clock_timestamp() \
           from counter, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
           $8::text[], $9::uuid[], $10::text[], $11::text[]) with ordinality \
           as t(kind, operation, resource_id, action, changed_fields, actor_kind, actor_id, \
           request_id, group_ids, n) \
           returning position \
         ) \
         select pg_notify($12, $1::text || ':' || (select max(position) from numbered))",
        organization_id,
        count,
        &kinds as &[&str],
        &operations as &[&str],
        &resource_ids as &[&str],
        &actions as &[&str],
        &changed_fields,
        &actor_kinds as &[&str],
        &actor_ids as &[Option<Uuid>],
        &request_ids as &[&str],
        &group_ids,
        CHANNEL,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The organization's changes after `position`, oldest first, at most `limit`.
pub async fn after<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    position: i64,
    limit: i64,
) -> Result<Vec<Change>, sqlx::Error> {
    sqlx::query_as!(
        Change,
        r#"select position, kind as "kind: ChangeKind", operation as "operation: ChangeOperation",
           resource_id, action, changed_fields, actor_kind as "actor_kind: ActorKind", actor_id,
           request_id, group_ids, commit_time
           from changes where organization_id = $1 and position > $2
           order by position limit $3"#,
        organization_id,
        position,
        limit,
    )
    .fetch_all(executor)
    .await
}

/// The organization's last position (0 before its first change) and the
/// first one still kept (`None` when none is).
pub async fn bounds<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
) -> Result<(i64, Option<i64>), sqlx::Error> {
    let row = sqlx::query!(
        r#"select coalesce((select last_position from change_counters where organization_id = $1), 0) as "last!",
           (select min(position) from changes where organization_id = $1) as first"#,
        organization_id,
    )
    .fetch_one(executor)
    .await?;
    Ok((row.last, row.first))
}

/// Deletes changes committed before `before`, a slice at a time so no
/// statement holds many locks; the number deleted.
pub async fn prune(pool: &Pool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    const SLICE: i64 = 10_000;
    let mut deleted = 0;
    loop {
        let done = sqlx::query!(
            "delete from changes where ctid = any(array(select ctid from changes where commit_time < $1 limit $2))",
            before,
            SLICE,
        )
        .execute(&mut *pool.acquire().await?)
        .await?
        .rows_affected();
        deleted += done;
        if done < SLICE as u64 {
            return Ok(deleted);
        }
    }
}

/// Listens to the numbering commits: payloads "<organization id>:<last position>".
pub async fn listen(pool: &Pool) -> Result<Notifications, sqlx::Error> {
    Notifications::listen(pool, CHANNEL, APPLICATION_NAME).await
}

/// A notification's organization and last position.
pub fn parse_notice(payload: &str) -> Option<(Uuid, i64)> {
    let (organization, position) = payload.split_once(':')?;
    Some((organization.parse().ok()?, position.parse().ok()?))
}
