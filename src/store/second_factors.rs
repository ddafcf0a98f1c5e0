//! Second factors (TOTP seeds, sealed), their recovery codes (hashed) and
//! the login challenges between a password and a code (hashed).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Transaction;
use crate::domain::token::TokenHash;

/// A user's second factor as stored: the sealed seed and its use.
#[derive(Debug, Clone)]
pub struct StoredFactor {
    pub sealed_secret: Vec<u8>,
    pub confirm_time: Option<DateTime<Utc>>,
    pub last_step: Option<i64>,
}

/// Starts (or starts over) an unconfirmed enrollment; `false`, writing
/// nothing, when the user has a confirmed second factor.
pub async fn begin(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    sealed_secret: &[u8],
) -> Result<bool, sqlx::Error> {
    let written = sqlx::query!(
        "insert into second_factors (organization_id, user_id, sealed_secret) values ($1, $2, $3) \
         on conflict (organization_id, user_id) do update \
         set sealed_secret = excluded.sealed_secret, create_time = now(), last_step = null \
         where second_factors.confirm_time is null",
        organization_id,
        user_id,
        sealed_secret,
    )
    .execute(&mut **tx)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// The user's second factor, locked until the transaction ends (a code is
/// checked and its step recorded in turn).
pub async fn lock(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<StoredFactor>, sqlx::Error> {
    sqlx::query_as!(
        StoredFactor,
        "select sealed_secret, confirm_time, last_step from second_factors \
         where organization_id = $1 and user_id = $2 for update",
        organization_id,
        user_id,
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Records the time step of a code that was used (confirming the factor if
/// it was not yet).
pub async fn use_step(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    step: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update second_factors set last_step = $3, confirm_time = coalesce(confirm_time, now()) \
         where organization_id = $1 and user_id = $2",
        organization_id,
        user_id,
        step,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the user's recovery codes by these hashes.
pub async fn replace_recovery_codes(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    hashes: &[Vec<u8>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from recovery_codes where organization_id = $1 and user_id = $2",
        organization_id,
        user_id,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "insert into recovery_codes (organization_id, user_id, code_hash) \
         select $1, $2, hash from unnest($3::bytea[]) as hash",
        organization_id,
        user_id,
        hashes,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Uses an unused recovery code of the user; `false` when there is none such.
pub async fn use_recovery_code(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let used = sqlx::query!(
        "update recovery_codes set used_time = now() \
         where organization_id = $1 and user_id = $2 and code_hash = $3 and used_time is null",
        organization_id,
        user_id,
        hash,
    )
    .execute(&mut **tx)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// Removes the users' second factors, recovery codes and pending
/// challenges; the number of factors removed (confirmed or not).
pub async fn remove(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        "delete from recovery_codes where organization_id = $1 and user_id = $2",
        organization_id,
        user_id,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "delete from login_challenges where organization_id = $1 and user_id = $2",
        organization_id,
        user_id,
    )
    .execute(&mut **tx)
    .await?;
    let removed = sqlx::query!(
        "delete from second_factors where organization_id = $1 and user_id = $2",
        organization_id,
        user_id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(removed.rows_affected())
}

/// A stored login challenge.
#[derive(Debug, Clone)]
pub struct ChallengeRecord {
    pub organization_id: Uuid,
    pub id: Uuid,
    pub user_id: Uuid,
    pub expire_time: DateTime<Utc>,
    pub used_time: Option<DateTime<Utc>>,
}

pub async fn insert_challenge<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    hash: &TokenHash,
    expire_time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into login_challenges (organization_id, id, user_id, challenge_hash, expire_time) \
         values ($1, $2, $3, $4, $5)",
        organization_id,
        Uuid::now_v7(),
        user_id,
        &hash.0,
        expire_time,
    )
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn find_challenge<'e>(
    executor: impl PgExecutor<'e>,
    hash: &TokenHash,
) -> Result<Option<ChallengeRecord>, sqlx::Error> {
    sqlx::query_as!(
        ChallengeRecord,
        "select organization_id, id, user_id, expire_time, used_time \
         from login_challenges where challenge_hash = $1",
        &hash.0,
    )
    .fetch_optional(executor)
    .await
}

/// Uses a challenge once; `false` when it was used meanwhile.
pub async fn use_challenge(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let used = sqlx::query!(
        "update login_challenges set used_time = now() \
         where organization_id = $1 and id = $2 and used_time is null",
        organization_id,
        id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// Drops challenges that expired a while ago.
pub async fn forget_expired_challenges<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("delete from login_challenges where expire_time < now() - interval '1 hour'")
        .execute(executor)
        .await?;
    Ok(())
}
