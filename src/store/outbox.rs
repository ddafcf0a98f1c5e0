//! The outbox: what to send, written with the change that causes it, never
//! a secret; and the delivery worker's claims, leases and outcomes.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Pool, Transaction};

/// Queues a message of `kind` ("INVITATION", "PASSWORD_RESET") for a user.
pub async fn enqueue<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
    kind: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into outbox (organization_id, id, kind, user_id) values ($1, $2, $3, $4)",
        organization_id,
        Uuid::now_v7(),
        kind,
        user_id,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Queues "invite user X" in the transaction that creates or re-invites the
/// user; the delivery worker creates the token when it sends.
pub async fn enqueue_invitation(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    enqueue(&mut **tx, organization_id, user_id, "INVITATION").await
}

/// Queues the invitations of many users in one statement.
pub async fn enqueue_invitations(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = user_ids.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query!(
        "insert into outbox (organization_id, id, kind, user_id) \
         select $1, t.id, 'INVITATION', t.user_id from unnest($2::uuid[], $3::uuid[]) as t(id, user_id)",
        organization_id,
        &ids,
        user_ids,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Turns the reports of ended import jobs into messages: to the requester
/// when they are a user and asked for it (an API key has nobody to tell),
/// and to the users whose emails the job's `report_to` names, one message
/// per address.
pub async fn enqueue_import_reports(pool: &Pool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "with due as (update import_jobs set report_pending = false where report_pending \
           returning organization_id, id, requested_by, notify_requester, report_to), \
         recipients as ( \
           select due.organization_id, due.id as job_id, users.id as user_id, lower(users.email) as address, 0 as rank \
           from due join users on users.organization_id = due.organization_id and due.notify_requester \
             and users.id = (case when due.requested_by like 'user:%' then substr(due.requested_by, 6)::uuid end) \
           union all \
           select due.organization_id, due.id, users.id, lower(users.email), 1 \
           from due cross join unnest(due.report_to) as named(address) \
           join users on users.organization_id = due.organization_id and lower(users.email) = lower(named.address)) \
         insert into outbox (organization_id, id, kind, user_id, import_job_id) \
         select distinct on (job_id, address) organization_id, gen_random_uuid(), 'IMPORT_REPORT', user_id, job_id \
         from recipients order by job_id, address, rank, user_id",
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(done.rows_affected())
}

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub organization_id: Uuid,
    pub id: Uuid,
    pub kind: String,
    pub user_id: Uuid,
    pub import_job_id: Option<Uuid>,
    /// Including this one.
    pub attempts: i32,
    pub create_time: DateTime<Utc>,
}

/// Claims up to `limit` due messages for `owner` until the lease ends. Rows
/// another worker is claiming are skipped, not waited for.
pub async fn claim(
    pool: &Pool,
    owner: Uuid,
    lease_seconds: f64,
    limit: i64,
) -> Result<Vec<ClaimedMessage>, sqlx::Error> {
    sqlx::query_as!(
        ClaimedMessage,
        "update outbox o set lease_owner = $1, lease_expire_time = now() + make_interval(secs => $2), \
         attempts = o.attempts + 1 \
         from (select organization_id, id from outbox \
               where status = 'PENDING' and next_attempt_time <= now() \
               and (lease_expire_time is null or lease_expire_time < now()) \
               order by next_attempt_time limit $3 for update skip locked) due \
         where o.organization_id = due.organization_id and o.id = due.id \
         returning o.organization_id, o.id, o.kind, o.user_id, o.import_job_id, o.attempts, o.create_time",
        owner,
        lease_seconds,
        limit,
    )
    .fetch_all(&mut *pool.acquire().await?)
    .await
}

/// Gives up every lease `owner` holds on a pending message: its round was
/// cut short (the database stopped answering), and those messages are due
/// again now rather than when their leases run out. Returns how many.
pub async fn release_leases(pool: &Pool, owner: Uuid) -> Result<u64, sqlx::Error> {
    let released = sqlx::query!(
        "update outbox set lease_owner = null, lease_expire_time = null \
         where lease_owner = $1 and status = 'PENDING'",
        owner,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(released.rows_affected())
}

/// Ends a claimed message as `status` (SENT or SKIPPED, with a note for
/// SKIPPED). `false` when the lease was lost meanwhile.
pub async fn finish<'e>(
    executor: impl PgExecutor<'e>,
    message: &ClaimedMessage,
    owner: Uuid,
    status: &str,
    note: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "update outbox set status = $4, last_error = $5, \
         sent_time = case when $4 = 'SENT' then now() end, lease_owner = null, lease_expire_time = null \
         where organization_id = $1 and id = $2 and lease_owner = $3 and status = 'PENDING'",
        message.organization_id,
        message.id,
        owner,
        status,
        note,
    )
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt: tried again at `retry_at`, or FAILED for good
/// when there is none.
pub async fn attempt_failed(
    pool: &Pool,
    message: &ClaimedMessage,
    owner: Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update outbox set last_error = $4, lease_owner = null, lease_expire_time = null, \
         status = case when $5::timestamptz is null then 'FAILED' else 'PENDING' end, \
         next_attempt_time = coalesce($5, next_attempt_time) \
         where organization_id = $1 and id = $2 and lease_owner = $3 and status = 'PENDING'",
        message.organization_id,
        message.id,
        owner,
        error,
        retry_at,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(())
}

/// An outbox row as an operator reads it.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub organization_id: Uuid,
    pub id: Uuid,
    pub kind: String,
    pub user_id: Uuid,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub create_time: DateTime<Utc>,
    pub next_attempt_time: DateTime<Utc>,
    pub sent_time: Option<DateTime<Utc>>,
}

/// The newest messages, optionally of one status.
pub async fn list(
    pool: &Pool,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    sqlx::query_as!(
        OutboxEntry,
        "select organization_id, id, kind, user_id, status, attempts, last_error, create_time, \
         next_attempt_time, sent_time from outbox where $1::text is null or status = $1 \
         order by create_time desc, id desc limit $2",
        status,
        limit,
    )
    .fetch_all(&mut *pool.acquire().await?)
    .await
}
