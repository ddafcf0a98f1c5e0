//! Failed sign-ins per key, for throttling with backoff.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// When the key may try again, if it is held back now.
pub async fn blocked_until(
    pool: &PgPool,
    keys: &[String],
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "select max(blocked_until) from sign_in_failures where key = any($1) and blocked_until > now()",
    )
    .bind(keys)
    .fetch_one(pool)
    .await
}

/// Counts a failure for each key (failures older than `forget_after_seconds`
/// are forgotten first) and holds the key back for
/// `base_seconds * 2^(failures - free)` seconds, at most `max_seconds`, once
/// it is past its `free` failures.
pub async fn record_failure(
    pool: &PgPool,
    key: &str,
    free: i32,
    base_seconds: f64,
    max_seconds: f64,
    forget_after_seconds: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with previous as (select failures, last_failure_time from sign_in_failures where key = $1 for update), \
         counted as (select case when p.last_failure_time is null \
             or p.last_failure_time < now() - make_interval(secs => $5) then 1 else p.failures + 1 end as failures \
           from (select 1) as one left join previous p on true) \
         insert into sign_in_failures (key, failures, last_failure_time, blocked_until) \
         select $1, c.failures, now(), case when c.failures <= $2 then null \
           else now() + make_interval(secs => least($4, $3 * power(2, least(30, c.failures - $2 - 1)))) end \
         from counted c \
         on conflict (key) do update set failures = excluded.failures, \
           last_failure_time = excluded.last_failure_time, blocked_until = excluded.blocked_until",
    )
    .bind(key)
    .bind(free)
    .bind(base_seconds)
    .bind(max_seconds)
    .bind(forget_after_seconds)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn forget(pool: &PgPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("delete from sign_in_failures where key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Drops entries nobody has failed on for a while.
pub async fn forget_old(pool: &PgPool, older_than_seconds: f64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "delete from sign_in_failures where last_failure_time < now() - make_interval(secs => $1) \
         and (blocked_until is null or blocked_until < now())",
    )
    .bind(older_than_seconds)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
