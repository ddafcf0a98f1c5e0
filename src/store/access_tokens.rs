use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Pool;

use crate::domain::{
    session::{Session, SessionOrigin},
    token::{AccessTokenRecord, TokenHash},
};

/// Stores a new token (a session) for a user; only its hash is kept.
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    hash: &TokenHash,
    expire_time: DateTime<Utc>,
    origin: &SessionOrigin,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into access_tokens (organization_id, id, user_id, token_hash, expire_time, peer_address, user_agent) \
         values ($1, $2, $3, $4, $5, $6, $7)",
        organization_id,
        id,
        user_id,
        &hash.0,
        expire_time,
        origin.peer_address.map(|address| address.to_string()),
        origin.user_agent.as_deref(),
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
        "select id, organization_id, user_id, expire_time, revoke_time, last_used_time \
         from access_tokens where token_hash = $1",
        &hash.0,
    )
    .fetch_optional(executor)
    .await
}

/// A user's live sessions (neither revoked nor expired), newest first.
pub async fn live_sessions<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<Session>, sqlx::Error> {
    sqlx::query_as!(
        Session,
        "select id, create_time, last_used_time, expire_time, peer_address, user_agent \
         from access_tokens where organization_id = $1 and user_id = $2 \
         and revoke_time is null and expire_time > now() order by create_time desc, id desc",
        organization_id,
        user_id,
    )
    .fetch_all(executor)
    .await
}

/// The session limit that applies to a user: theirs, else the
/// organization's; `None`: no limit.
pub async fn session_limit<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "select nullif(coalesce(u.max_sessions, o.max_sessions_per_user), 0) \
         from users u join organizations o on o.id = u.organization_id \
         where u.organization_id = $1 and u.id = $2",
        organization_id,
        user_id,
    )
    .fetch_optional(executor)
    .await
    .map(Option::flatten)
}

/// Sets a user's own session limit: `None` follows the organization's, 0 is none.
pub async fn set_user_limit<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    max_sessions: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update users set max_sessions = $3 where organization_id = $1 and id = $2",
        organization_id,
        user_id,
        max_sessions,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Whether the session exists for this user, live or not.
pub async fn exists<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let found = sqlx::query_scalar!(
        "select exists (select 1 from access_tokens where organization_id = $1 and user_id = $2 and id = $3) as \"found!\"",
        organization_id,
        user_id,
        id,
    )
    .fetch_one(executor)
    .await?;
    Ok(found)
}

/// Ends the user's live sessions past the newest their limit keeps (their
/// own `max_sessions`, else the organization's; none when 0 or unset);
/// returns how many.
pub async fn revoke_beyond_limit<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "update access_tokens set revoke_time = now() \
         where organization_id = $1 and id in ( \
           select id from access_tokens where organization_id = $1 and user_id = $2 \
           and revoke_time is null and expire_time > now() \
           order by create_time desc, id desc \
           offset (select coalesce(nullif(coalesce(u.max_sessions, o.max_sessions_per_user), 0), 2147483647) \
                   from users u join organizations o on o.id = u.organization_id \
                   where u.organization_id = $1 and u.id = $2))",
        organization_id,
        user_id,
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
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

/// Revokes one token of a user (Logout, RevokeUserSessions); returns
/// whether it was live until now.
pub async fn revoke<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        "update access_tokens set revoke_time = now() \
         where organization_id = $1 and user_id = $2 and id = $3 and revoke_time is null",
        organization_id,
        user_id,
        id,
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
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

/// Records uses of sessions, (organization id, id, time of use), in one
/// statement (see `record_uses_in!`).
pub async fn record_uses(
    pool: &Pool,
    uses: &[(Uuid, Uuid, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    super::record_uses_in!("access_tokens", pool, uses)
}
