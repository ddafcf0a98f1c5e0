use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    paging::{newest_first, newest_first_page},
    Pool, Transaction,
};
use crate::domain::{
    audit::{AuditEvent, AuditFilter, AuditRecord},
    call::Via,
    caller::ActorKind,
    paging::{fingerprint, Page, PageRequest},
    DomainError,
};

/// Records a change inside the transaction that makes it.
pub async fn record(tx: &mut Transaction<'_>, record: &AuditRecord) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into audit_events (organization_id, id, actor_kind, actor_id, via, action, target_type, target_id, \
         request_id, changed_fields, details) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        record.organization_id,
        Uuid::now_v7(),
        record.actor.kind().as_str(),
        record.actor.id(),
        record.via.as_str(),
        record.action,
        record.target_type,
        record.target_id,
        record.request_id,
        &record.changed_fields,
        record.details,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records many changes of one caller and request in one statement (bulk
/// import): organization, actor, door and request id are taken from the first.
pub async fn record_many(
    tx: &mut Transaction<'_>,
    records: &[AuditRecord],
) -> Result<(), sqlx::Error> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let ids: Vec<Uuid> = records.iter().map(|_| Uuid::now_v7()).collect();
    let actions: Vec<&str> = records.iter().map(|r| r.action).collect();
    let target_types: Vec<&str> = records.iter().map(|r| r.target_type).collect();
    let target_ids: Vec<&str> = records.iter().map(|r| r.target_id.as_str()).collect();
    // Changed-field lists are ragged, so they travel joined and are split back.
    let changed_fields: Vec<String> = records.iter().map(|r| r.changed_fields.join(",")).collect();
    let details: Vec<&serde_json::Value> = records.iter().map(|r| &r.details).collect();
    sqlx::query!(
        "insert into audit_events (organization_id, id, actor_kind, actor_id, via, action, target_type, target_id, \
         request_id, changed_fields, details) \
         select $1, t.id, $2, $3, $11, t.action, t.target_type, t.target_id, $4, string_to_array(t.changed_fields, ','), t.details \
         from unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[]) \
         as t(id, action, target_type, target_id, changed_fields, details)",
        first.organization_id,
        first.actor.kind().as_str(),
        first.actor.id(),
        first.request_id,
        &ids,
        &actions as &[&str],
        &target_types as &[&str],
        &target_ids as &[&str],
        &changed_fields,
        &details as &[&serde_json::Value],
        first.via.as_str(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct AuditRow {
    id: Uuid,
    actor_kind: ActorKind,
    actor_id: Option<Uuid>,
    via: Option<Via>,
    action: String,
    target_type: String,
    target_id: String,
    request_id: String,
    changed_fields: Vec<String>,
    details: serde_json::Value,
    create_time: DateTime<Utc>,
}

newest_first!(AuditRow);

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        AuditEvent {
            id: row.id,
            actor_kind: row.actor_kind,
            actor_id: row.actor_id,
            via: row.via,
            action: row.action,
            target_type: row.target_type,
            target_id: row.target_id,
            request_id: row.request_id,
            changed_fields: row.changed_fields,
            details: row.details,
            create_time: row.create_time,
        }
    }
}

const AUDIT_COLUMNS: &str = "id, actor_kind, actor_id, via, action, target_type, target_id, \
    request_id, changed_fields, details, create_time";

/// Newest first.
pub async fn list(
    pool: &Pool,
    organization_id: Uuid,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Page<AuditEvent>, DomainError> {
    let query_fingerprint = fingerprint(&("audit_events", filter));
    let filter = filter.clone();
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from audit_events where organization_id = ")
            .push_bind(organization_id);
        let text_filters = [
            ("target_type", &filter.target_type),
            ("target_id", &filter.target_id),
            ("action", &filter.action),
        ];
        for (column, value) in text_filters {
            if !value.is_empty() {
                query
                    .push(format!(" and {column} = "))
                    .push_bind(value.clone());
            }
        }
        if let Some(actor_id) = filter.actor_id {
            query.push(" and actor_id = ").push_bind(actor_id);
        }
        if let Some(start) = filter.start_time {
            query.push(" and create_time >= ").push_bind(start);
        }
        if let Some(end) = filter.end_time {
            query.push(" and create_time < ").push_bind(end);
        }
    };
    newest_first_page::<AuditRow, _>(
        pool,
        AUDIT_COLUMNS,
        push_from_where,
        page,
        &query_fingerprint,
    )
    .await
}
