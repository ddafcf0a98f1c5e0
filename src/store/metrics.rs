//! The backlog the metrics report, across all organizations: the one place
//! that reads without an `organization_id`, for the operator's gauges.
//! Each count walks a partial index (`outbox_pending_idx`,
//! `outbox_failed_idx`, `import_jobs_running_idx`).

use super::Pool;

pub struct Backlog {
    pub outbox_pending: i64,
    /// 0 when nothing is pending.
    pub outbox_oldest_pending_seconds: f64,
    pub outbox_failed: i64,
    pub running_import_jobs: i64,
}

pub async fn backlog(pool: &Pool) -> Result<Backlog, sqlx::Error> {
    let row = sqlx::query!(
        r#"select
             (select count(*) from outbox where status = 'PENDING') as "outbox_pending!",
             (select coalesce(extract(epoch from now() - min(create_time))::float8, 0)
                from outbox where status = 'PENDING') as "outbox_oldest_pending_seconds!",
             (select count(*) from outbox where status = 'FAILED') as "outbox_failed!",
             (select count(*) from import_jobs where status = 'RUNNING') as "running_import_jobs!""#
    )
    .fetch_one(&mut *pool.acquire().await?)
    .await?;
    Ok(Backlog {
        outbox_pending: row.outbox_pending,
        outbox_oldest_pending_seconds: row.outbox_oldest_pending_seconds,
        outbox_failed: row.outbox_failed,
        running_import_jobs: row.running_import_jobs,
    })
}
