//! Password reset requests as typed: queued whatever they name, so that
//! asking costs the same; the delivery worker resolves them (a reset link,
//! or a new invitation for a user who never registered a password).

use uuid::Uuid;

use super::Pool;

pub async fn insert(pool: &Pool, organization: &str, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into password_reset_requests (id, organization, username) values ($1, $2, $3)",
        Uuid::now_v7(),
        organization,
        username,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(())
}

/// Takes up to `limit` requests (organization and username ignoring case,
/// trimmed when queued) and queues, for each that names a user: a reset
/// email when the user has a password; a new invitation, as
/// SendActivationEmail queues one, when the user never registered one and
/// may sign in once they do (admin state ACTIVE, no legacy status). The
/// others end here, unanswered. Returns how many requests were taken.
pub async fn resolve(pool: &Pool, limit: i64) -> Result<u64, sqlx::Error> {
    let taken = sqlx::query_scalar!(
        "with taken as (delete from password_reset_requests where id in \
             (select id from password_reset_requests order by id limit $1 for update skip locked) \
           returning organization, username), \
         queued as (insert into outbox (organization_id, id, kind, user_id) \
           select o.id, gen_random_uuid(), \
             case when u.password_hash is not null then 'PASSWORD_RESET' else 'INVITATION' end, u.id \
           from taken t \
           join organizations o on lower(o.name) = lower(t.organization) \
           join users u on u.organization_id = o.id and lower(u.username) = lower(t.username) \
           where u.password_hash is not null \
             or (not u.onboarded and u.admin_state = 'ACTIVE' and u.legacy_status is null)) \
         select count(*) as \"taken!\" from taken",
        limit,
    )
    .fetch_one(&mut *pool.acquire().await?)
    .await?;
    Ok(taken as u64)
}
