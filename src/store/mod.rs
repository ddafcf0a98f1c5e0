//! All SQL lives here, one module per aggregate. Functions take a pool or a
//! transaction so that use cases compose transactions (the audit row always
//! commits with its change), and every query filters on `organization_id`.

pub mod access_tokens;
pub mod api_keys;
pub mod attributes;
pub mod audit;
pub mod auth_changes;
pub mod changes;
pub mod connections;
pub mod error;
pub mod group_members;
pub mod groups;
pub mod idempotency;
pub mod imports;
pub mod meta;
pub mod metrics;
pub mod notifications;
pub mod onboarding_tokens;
pub mod organizations;
pub mod outbox;
pub mod paging;
pub mod password_reset_requests;
pub mod profiles;
pub mod read_lane;
pub mod second_factors;
pub mod shared_reads;
pub mod sign_in_throttle;
pub mod units;
pub mod users;

use sqlx::migrate::Migrator;

pub use connections::Pool;

use crate::domain::DomainError;

/// Migrations embedded at compile time; sqlx applies them under an advisory
/// lock, so replicas may start together.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub type Transaction<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Maps a violated constraint (unique, foreign key, check) to the domain
/// error its name stands for; any other error is internal.
pub(crate) fn map_constraint_violation(
    error: sqlx::Error,
    domain_error: impl Fn(&str) -> Option<DomainError>,
) -> DomainError {
    if let sqlx::Error::Database(database_error) = &error {
        if let Some(mapped) = database_error.constraint().and_then(&domain_error) {
            return mapped;
        }
    }
    DomainError::from(error)
}

/// Records uses of credentials in `$table` (`api_keys` or `access_tokens`),
/// `$uses` of (organization id, id, time of use), in one statement; one
/// whose recorded use is less than a minute older is left as it is,
/// whichever server wrote it. A macro: the checked statement names its table.
macro_rules! record_uses_in {
    ($table:literal, $pool:expr, $uses:expr) => {{
        let (organization_ids, ids, times) = $crate::store::use_columns($uses);
        sqlx::query!(
            "update "
                + $table
                + " t set last_used_time = u.used \
                   from unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) as u (organization_id, id, used) \
                   where t.organization_id = u.organization_id and t.id = u.id \
                   and (t.last_used_time is null or t.last_used_time <= u.used - interval '1 minute')",
            &organization_ids,
            &ids,
            &times,
        )
        .execute(&mut *$pool.acquire().await?)
        .await?;
        Ok(())
    }};
}
pub(crate) use record_uses_in;

/// Uses of credentials, (organization id, id, time of use), as the three
/// arrays an `unnest` update takes.
pub(crate) fn use_columns(
    uses: &[(uuid::Uuid, uuid::Uuid, chrono::DateTime<chrono::Utc>)],
) -> (
    Vec<uuid::Uuid>,
    Vec<uuid::Uuid>,
    Vec<chrono::DateTime<chrono::Utc>>,
) {
    let mut columns = (
        Vec::with_capacity(uses.len()),
        Vec::with_capacity(uses.len()),
        Vec::with_capacity(uses.len()),
    );
    for &(organization_id, id, time) in uses {
        columns.0.push(organization_id);
        columns.1.push(id);
        columns.2.push(time);
    }
    columns
}
