//! Sign-in throttling state: budgets per key, wrong passwords seen lately,
//! and the familiar addresses of accounts. Every key is a 32-byte keyed
//! digest made by the domain; no username, address or password is stored
//! in clear, but the digests' key is in this database too (`secret`).

use sqlx::PgExecutor;

use super::{Pool, Transaction};
use crate::domain::sign_in::{Bucket, ThrottleSettings};

/// The server-side key of the sign-in digests.
pub async fn secret<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<u8>, sqlx::Error> {
    sqlx::query_scalar!("select secret from server_secrets where name = 'sign_in'")
        .fetch_one(executor)
        .await
}

/// The buckets of `keys` that exist, read without a lock and without
/// waiting for one: what holds an attempt back before any row is locked.
pub async fn peek<'e>(
    executor: impl PgExecutor<'e>,
    keys: &[Vec<u8>],
    forget_after_seconds: f64,
    stale_reservation_seconds: f64,
) -> Result<Vec<Bucket>, sqlx::Error> {
    // As `lock_now` reads them: failures forgotten after `$2` seconds,
    // reservations of a server that died (older than `$3`) dropped.
    sqlx::query_as!(
        Bucket,
        r#"select key,
             case when last_failure_time < now() - make_interval(secs => $2) then 0 else failures end as "failures!",
             case when reserve_time < now() - make_interval(secs => $3) then 0 else in_flight end as "in_flight!",
             case when blocked_until > now() then blocked_until end as blocked_until
           from sign_in_throttle where key = any($1)"#,
        keys,
        forget_after_seconds,
        stale_reservation_seconds,
    )
    .fetch_all(executor)
    .await
}

/// How long `lock` may wait for a row another attempt is inserting: a
/// backstop, since it never waits for a locked row.
const LOCK_TIMEOUT: &str = "100ms";

/// Locks the buckets of `keys` until the end of `tx`, creating `missing`
/// ones first, without waiting: `None` when another attempt holds one of
/// them (the caller treats it as held back), so that a flood on one hot
/// row never queues up pool connections behind its lock.
pub async fn lock(
    tx: &mut Transaction<'_>,
    keys: &[Vec<u8>],
    missing: &[Vec<u8>],
    forget_after_seconds: f64,
    stale_reservation_seconds: f64,
) -> Result<Option<Vec<Bucket>>, sqlx::Error> {
    match lock_now(
        tx,
        keys,
        missing,
        forget_after_seconds,
        stale_reservation_seconds,
    )
    .await
    {
        Err(error) if is_lock_not_available(&error) => Ok(None),
        locked => locked.map(Some),
    }
}

async fn lock_now(
    tx: &mut Transaction<'_>,
    keys: &[Vec<u8>],
    missing: &[Vec<u8>],
    forget_after_seconds: f64,
    stale_reservation_seconds: f64,
) -> Result<Vec<Bucket>, sqlx::Error> {
    sqlx::query_scalar!("select set_config('lock_timeout', $1, true)", LOCK_TIMEOUT)
        .fetch_one(&mut **tx)
        .await?;
    if !missing.is_empty() {
        sqlx::query!(
            "insert into sign_in_throttle (key) select k from unnest($1::bytea[]) as k order by k \
             on conflict (key) do nothing",
            &sorted(missing),
        )
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query_as!(
        Bucket,
        r#"select key,
             case when last_failure_time < now() - make_interval(secs => $2) then 0 else failures end as "failures!",
             case when reserve_time < now() - make_interval(secs => $3) then 0 else in_flight end as "in_flight!",
             case when blocked_until > now() then blocked_until end as blocked_until
           from sign_in_throttle where key = any($1) order by key for update nowait"#,
        &sorted(keys),
        forget_after_seconds,
        stale_reservation_seconds,
    )
    .fetch_all(&mut **tx)
    .await
}

/// A row lock that was not free (`NOWAIT`), or not within `lock_timeout`.
fn is_lock_not_available(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "55P03")
}

/// Writes back the locked `buckets` with one more attempt in flight each.
pub async fn reserve(tx: &mut Transaction<'_>, buckets: &[Bucket]) -> Result<(), sqlx::Error> {
    let keys: Vec<Vec<u8>> = buckets.iter().map(|b| b.key.clone()).collect();
    let failures: Vec<i32> = buckets.iter().map(|b| b.failures).collect();
    let in_flight: Vec<i32> = buckets.iter().map(|b| b.in_flight + 1).collect();
    sqlx::query!(
        "update sign_in_throttle s set failures = t.failures, in_flight = t.in_flight, \
           reserve_time = now(), \
           last_failure_time = case when t.failures = 0 then null else s.last_failure_time end \
         from unnest($1::bytea[], $2::int4[], $3::int4[]) as t(key, failures, in_flight) \
         where s.key = t.key",
        &keys,
        &failures,
        &in_flight,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Gives back the reservations of an attempt that was not a counted failure.
pub async fn release<'e>(
    executor: impl PgExecutor<'e>,
    keys: &[Vec<u8>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update sign_in_throttle set in_flight = greatest(in_flight - 1, 0) where key = any($1)",
        &sorted(keys),
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Like `release`, and forgets the failures of `reset` (a successful sign-in).
pub async fn release_and_reset(
    pool: &Pool,
    keys: &[Vec<u8>],
    reset: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update sign_in_throttle set in_flight = greatest(in_flight - 1, 0), \
           failures = case when key = $2 then 0 else failures end, \
           blocked_until = case when key = $2 then null else blocked_until end \
         where key = any($1)",
        &sorted(keys),
        reset,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(())
}

/// Counts a failure on each key (allowed `free` failures before backoff),
/// giving back its reservation when `reserved`. Past its free failures a
/// key is held back for `base * 2^(failures - free - 1)` seconds, at most
/// `max`; failures older than `forget_after` are forgotten first.
pub async fn record_failure<'e>(
    executor: impl PgExecutor<'e>,
    settings: &ThrottleSettings,
    keys: &[Vec<u8>],
    free: &[i32],
    reserved: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "with counted as ( \
           select s.key, t.free, case when s.last_failure_time is null \
               or s.last_failure_time < now() - make_interval(secs => $6) then 1 else s.failures + 1 end as failures \
           from sign_in_throttle s join unnest($1::bytea[], $2::int4[]) as t(key, free) on s.key = t.key \
           order by s.key for update of s) \
         update sign_in_throttle s set failures = c.failures, last_failure_time = now(), \
           in_flight = case when $3 then greatest(s.in_flight - 1, 0) else s.in_flight end, \
           blocked_until = case when c.failures <= c.free then null \
             else now() + make_interval(secs => least($5, $4 * power(2, least(30, c.failures - c.free - 1)))) end \
         from counted c where s.key = c.key",
        keys,
        free,
        reserved,
        settings.base.as_secs_f64(),
        settings.max.as_secs_f64(),
        settings.forget_after.as_secs_f64(),
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Remembers a wrong password's digest; `true` when it was not seen in the
/// last `window_seconds` (a new guess, to be counted). Two attempts with the
/// same password at once: the second waits for the first and is not new.
pub async fn first_sighting(
    pool: &Pool,
    digest: &[u8],
    window_seconds: f64,
) -> Result<bool, sqlx::Error> {
    let counted: Option<bool> = sqlx::query_scalar!(
        "insert into sign_in_wrong_passwords as w (digest, seen_time) values ($1, now()) \
         on conflict (digest) do update set seen_time = now() \
           where w.seen_time < now() - make_interval(secs => $2) \
         returning true as \"counted!\"",
        digest,
        window_seconds,
    )
    .fetch_optional(&mut *pool.acquire().await?)
    .await?;
    Ok(counted.is_some())
}

/// Whether the account signed in successfully from the address within `max_age_seconds`.
pub async fn is_familiar(
    pool: &Pool,
    account_key: &[u8],
    address_key: &[u8],
    max_age_seconds: f64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        "select exists (select 1 from sign_in_familiar_addresses where account_key = $1 \
           and address_key = $2 and last_success_time > now() - make_interval(secs => $3)) as \"familiar!\"",
        account_key,
        address_key,
        max_age_seconds,
    )
    .fetch_one(&mut *pool.acquire().await?)
    .await
}

/// Remembers a successful sign-in from the address, keeping the account's
/// `keep` most recent addresses only.
pub async fn remember_familiar(
    pool: &Pool,
    account_key: &[u8],
    address_key: &[u8],
    keep: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "insert into sign_in_familiar_addresses (account_key, address_key, last_success_time) \
         values ($1, $2, now()) on conflict (account_key, address_key) \
         do update set last_success_time = now()",
        account_key,
        address_key,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "delete from sign_in_familiar_addresses where account_key = $1 and address_key not in \
           (select address_key from sign_in_familiar_addresses where account_key = $1 \
            order by last_success_time desc limit $2)",
        account_key,
        keep,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Gives the familiar addresses of each account in `old` to the account
/// at the same place in `new` (an organization renamed).
pub async fn move_familiar_addresses(
    tx: &mut Transaction<'_>,
    old: &[Vec<u8>],
    new: &[Vec<u8>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into sign_in_familiar_addresses (account_key, address_key, last_success_time) \
         select moved.new_key, f.address_key, f.last_success_time from sign_in_familiar_addresses f \
           join unnest($1::bytea[], $2::bytea[]) as moved (old_key, new_key) on f.account_key = moved.old_key \
         on conflict (account_key, address_key) do update \
           set last_success_time = greatest(sign_in_familiar_addresses.last_success_time, excluded.last_success_time)",
        old,
        new,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "delete from sign_in_familiar_addresses where account_key = any($1)",
        old
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Gives the failures and holds of each budget in `old` to the budget at
/// the same place in `new`, keeping the worse of the two. Reservations in
/// flight stay with the old budget, which their attempt settles.
pub async fn move_budgets(
    tx: &mut Transaction<'_>,
    old: &[Vec<u8>],
    new: &[Vec<u8>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into sign_in_throttle (key, failures, last_failure_time, blocked_until) \
         select moved.new_key, t.failures, t.last_failure_time, t.blocked_until from sign_in_throttle t \
           join unnest($1::bytea[], $2::bytea[]) as moved (old_key, new_key) on t.key = moved.old_key \
         on conflict (key) do update \
           set failures = greatest(sign_in_throttle.failures, excluded.failures), \
               last_failure_time = greatest(sign_in_throttle.last_failure_time, excluded.last_failure_time), \
               blocked_until = greatest(sign_in_throttle.blocked_until, excluded.blocked_until)",
        old,
        new,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "delete from sign_in_throttle where key = any($1) and in_flight = 0",
        old
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Drops what no longer matters: budgets idle for `idle_seconds` (nothing
/// reserved or failed since, nothing held back), wrong
/// passwords older than `window_seconds`, familiar addresses older than
/// `familiar_seconds`.
pub async fn forget_stale(
    pool: &Pool,
    idle_seconds: f64,
    window_seconds: f64,
    familiar_seconds: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from sign_in_throttle \
           where coalesce(greatest(last_failure_time, reserve_time), '-infinity') < now() - make_interval(secs => $1) \
           and coalesce(blocked_until, '-infinity') < now()",
        idle_seconds,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    sqlx::query!(
        "delete from sign_in_wrong_passwords where seen_time < now() - make_interval(secs => $1)",
        window_seconds,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    sqlx::query!(
        "delete from sign_in_familiar_addresses where last_success_time < now() - make_interval(secs => $1)",
        familiar_seconds,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(())
}

fn sorted(keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys
}
