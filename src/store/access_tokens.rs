use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Pool;
use crate::domain::token::{AccessTokenRecord, TokenHash};

/// Stores a new token for a user; only its hash is kept.
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    hash: &TokenHash,
    expire_time: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into access_tokens (organization_id, id, user_id, token_hash, expire_time) values ($1, $2, $3, $4, $5)",
        organization_id,
        id,
        user_id,
        &hash.0,
        expire_time,
    )
    .execute(executor)
    .await?;
    Ok(id)
}

pub async fn find_by_hash<'e>(
    executor: impl PgExecutor<'e>,
    hash: &TokenHash,
) -> Result<Option<AccessTokenRecord>, sqlx::Error> {
    sqlx::query_as!(
        AccessTokenRecord,
        "select id, organization_id, user_id, expire_time, revoke_time from access_tokens where token_hash = $1",
        &hash.0,
    )
    .fetch_optional(executor)
    .await
}

/// Revokes every live token of these users, e.g. when they may no longer sign in.
pub async fn revoke_all_for_users<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "update access_tokens set revoke_time = now() \
         where organization_id = $1 and user_id = any($2) and revoke_time is null",
        organization_id,
        user_ids,
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

/// Revokes one token (Logout).
pub async fn revoke(pool: &Pool, organization_id: Uuid, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update access_tokens set revoke_time = now() \
         where organization_id = $1 and id = $2 and revoke_time is null",
        organization_id,
        id,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(())
}

/// Revokes every live token of a user but `keep` (ChangePassword).
pub async fn revoke_others(
    tx: &mut super::Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    keep: Uuid,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "update access_tokens set revoke_time = now() \
         where organization_id = $1 and user_id = $2 and id <> $3 and revoke_time is null",
        organization_id,
        user_id,
        keep,
    )
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}
