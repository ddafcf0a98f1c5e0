//! Invitation and reset tokens: only their hash is stored.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Transaction;
use crate::domain::token::{LinkPurpose, LinkRecord, TokenHash};

/// Stores a new token of `purpose` for the user and revokes the previous
/// ones of the same purpose, so only the newest link works.
pub async fn replace(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    purpose: LinkPurpose,
    hash: &TokenHash,
    expire_time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    revoke(tx, organization_id, &[user_id], &[purpose]).await?;
    sqlx::query!(
        "insert into onboarding_tokens (organization_id, id, user_id, purpose, token_hash, expire_time) \
         values ($1, $2, $3, $4, $5, $6)",
        organization_id,
        Uuid::now_v7(),
        user_id,
        purpose.as_str(),
        &hash.0,
        expire_time,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Revokes the users' live tokens of these purposes (e.g. on an email change).
pub async fn revoke(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_ids: &[Uuid],
    purposes: &[LinkPurpose],
) -> Result<u64, sqlx::Error> {
    let purposes: Vec<&str> = purposes.iter().map(|purpose| purpose.as_str()).collect();
    let done = sqlx::query!(
        "update onboarding_tokens set revoke_time = now() \
         where organization_id = $1 and user_id = any($2) and purpose = any($3) \
         and used_time is null and revoke_time is null",
        organization_id,
        user_ids,
        &purposes as &[&str],
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// The users' email changed: the links sent to the old address stop
/// working, and a user who has not registered a password yet loses that
/// invitation's expiry (no link of theirs is out) and, with `invite`, gets a
/// new invitation at the new address, whose expiry the delivery worker sets
/// when it sends. Onboarded users get nothing new.
pub async fn readdress(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_ids: &[Uuid],
    invite: bool,
) -> Result<(), sqlx::Error> {
    revoke(tx, organization_id, user_ids, LinkPurpose::ALL).await?;
    let pending = sqlx::query_scalar!(
        "update users set invitation_expire_time = null \
         where organization_id = $1 and id = any($2) and not onboarded returning id",
        organization_id,
        user_ids,
    )
    .fetch_all(&mut **tx)
    .await?;
    if invite && !pending.is_empty() {
        super::outbox::enqueue_invitations(tx, organization_id, &pending).await?;
    }
    Ok(())
}

/// Reads a token without locking it: what a page or a first check needs.
pub async fn find_by_hash<'e>(
    executor: impl PgExecutor<'e>,
    hash: &TokenHash,
) -> Result<Option<LinkRecord>, sqlx::Error> {
    sqlx::query_file_as!(
        LinkRecord,
        "src/store/queries/onboarding_tokens_find_by_hash.sql",
        &hash.0,
    )
    .fetch_optional(executor)
    .await
}

/// Reads a token and locks it and its user for the rest of the transaction.
pub async fn lock_by_hash(
    tx: &mut Transaction<'_>,
    hash: &TokenHash,
) -> Result<Option<LinkRecord>, sqlx::Error> {
    let locked = sqlx::query_scalar!(
        "select t.id from onboarding_tokens t \
         join users on users.organization_id = t.organization_id and users.id = t.user_id \
         where t.token_hash = $1 for update of t, users",
        &hash.0,
    )
    .fetch_optional(&mut **tx)
    .await?;
    match locked {
        Some(_) => find_by_hash(&mut **tx, hash).await,
        None => Ok(None),
    }
}

pub async fn mark_used(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update onboarding_tokens set used_time = now() where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
