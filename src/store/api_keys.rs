use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    map_constraint_violation,
    paging::{newest_first, newest_first_page},
    Pool, Transaction,
};
use crate::domain::{
    api_key::{ApiKey, NewApiKey},
    caller::{Scope, Scopes},
    paging::{fingerprint, Page, PageRequest},
    token::TokenHash,
    DomainError,
};

/// For the dynamic page query; the static statements spell the list out so
/// that the macros check it.
const COLUMNS: &str =
    "id, organization_id, name, scopes, created_by, create_time, expire_time, last_used_time, revoke_time";

#[derive(FromRow)]
struct ApiKeyRow {
    id: Uuid,
    organization_id: Uuid,
    name: String,
    scopes: Vec<String>,
    created_by: String,
    create_time: DateTime<Utc>,
    expire_time: Option<DateTime<Utc>>,
    last_used_time: Option<DateTime<Utc>>,
    revoke_time: Option<DateTime<Utc>>,
}

newest_first!(ApiKeyRow);

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        ApiKey {
            id: row.id,
            organization_id: row.organization_id,
            name: row.name,
            // The table's check constraint admits only known scopes.
            scopes: Scopes::new(row.scopes.iter().filter_map(|s| Scope::parse(s)).collect()),
            created_by: row.created_by,
            create_time: row.create_time,
            expire_time: row.expire_time,
            last_used_time: row.last_used_time,
            revoke_time: row.revoke_time,
        }
    }
}

pub async fn insert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    created_by: &str,
    key: &NewApiKey,
    secret_hash: &TokenHash,
) -> Result<ApiKey, DomainError> {
    let scopes: Vec<&str> = key.scopes.as_slice().iter().map(|s| s.as_str()).collect();
    let row = sqlx::query_as!(
        ApiKeyRow,
        "insert into api_keys (organization_id, id, name, scopes, secret_hash, created_by, expire_time) \
         values ($1, $2, $3, $4, $5, $6, $7) returning id, organization_id, name, scopes, created_by, create_time, expire_time, last_used_time, revoke_time",
        organization_id,
        id,
        key.name.as_str(),
        &scopes as &[&str],
        &secret_hash.0,
        created_by,
        key.expire_time,
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| {
        map_constraint_violation(error, |constraint| match constraint {
            "api_keys_org_name_key" => Some(DomainError::AlreadyExists {
                reason: "API_KEY_ALREADY_EXISTS",
                field: "name".into(),
                message: format!("an API key named `{}` already exists", key.name.as_str()),
            }),
            _ => None,
        })
    })?;
    Ok(row.into())
}

pub async fn find(
    pool: &Pool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let row = sqlx::query_as!(
        ApiKeyRow,
        "select id, organization_id, name, scopes, created_by, create_time, expire_time, last_used_time, revoke_time from api_keys where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .fetch_optional(&mut *pool.acquire().await?)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn find_active_by_name(
    pool: &Pool,
    organization_id: Uuid,
    name: &str,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let row = sqlx::query_as!(
        ApiKeyRow,
        "select id, organization_id, name, scopes, created_by, create_time, expire_time, last_used_time, revoke_time from api_keys where organization_id = $1 and lower(name) = lower($2) and revoke_time is null",
        organization_id,
        name.trim(),
    )
    .fetch_optional(&mut *pool.acquire().await?)
    .await?;
    Ok(row.map(Into::into))
}

/// The key a presented secret belongs to, revoked or expired ones included
/// (the caller tells those apart).
pub async fn find_by_secret_hash<'e>(
    executor: impl PgExecutor<'e>,
    hash: &TokenHash,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let row = sqlx::query_as!(
        ApiKeyRow,
        "select id, organization_id, name, scopes, created_by, create_time, expire_time, last_used_time, revoke_time from api_keys where secret_hash = $1",
        &hash.0,
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// Records uses of keys, (organization id, id, time of use), in one
/// statement (see `record_uses_in!`).
pub async fn record_uses(
    pool: &Pool,
    uses: &[(Uuid, Uuid, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    super::record_uses_in!("api_keys", pool, uses)
}

/// Sets the revocation time unless already revoked; `None` when no such key.
pub async fn revoke(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let row = sqlx::query_as!(
        ApiKeyRow,
        "update api_keys set revoke_time = coalesce(revoke_time, now()) \
         where organization_id = $1 and id = $2 returning id, organization_id, name, scopes, created_by, create_time, expire_time, last_used_time, revoke_time",
        organization_id,
        id,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(Into::into))
}

/// Newest first.
pub async fn list(
    pool: &Pool,
    organization_id: Uuid,
    show_revoked: bool,
    page: &PageRequest,
) -> Result<Page<ApiKey>, DomainError> {
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from api_keys where organization_id = ")
            .push_bind(organization_id);
        if !show_revoked {
            query.push(" and revoke_time is null");
        }
    };
    let query_fingerprint = fingerprint(&("api_keys", show_revoked));
    newest_first_page::<ApiKeyRow, _>(pool, COLUMNS, push_from_where, page, &query_fingerprint)
        .await
}
