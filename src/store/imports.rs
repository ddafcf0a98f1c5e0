//! Import jobs, their row results and the in-file claims of running jobs.
//!
//! States are enums on the Rust side (`JobStatus`, `JobKind`, `Outcome`,
//! `Action`, decoded loudly); inside SQL the constant ones stay literals
//! ('RUNNING', 'VALIDATE', 'FAILED'…) because partial indexes are defined on
//! those literals and a bound parameter would keep a generic plan off them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{types::Json, FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    paging::{cut_to_page, newest_first, newest_first_page, start_after, total_size},
    Pool, Transaction,
};
use crate::domain::{
    import::{
        batch::ImportBatch,
        job::{
            Counts, ImportJob, ImportOptions, JobKind, JobStatus, NewJob, Outcome, RowResult,
            RowSelection,
        },
        row::Action,
    },
    paging::{fingerprint, Page, PageRequest},
    DomainError, FieldViolation,
};

/// The columns of `JobRow`, for the one query built at run time (`list_jobs`,
/// whose filters and keyset the shared paging helper adds); `find_job` names
/// them itself so that the compiler checks them.
const JOB_COLUMNS: &str = "id, kind, status, options, requested_by, rows_total, created, updated, \
     deleted, unchanged, skipped, valid, failed, bytes_received, last_line, failure_message, create_time, \
     update_time, end_time, row_results_expired_time";

#[derive(FromRow)]
struct JobRow {
    id: Uuid,
    kind: JobKind,
    status: JobStatus,
    options: Json<ImportOptions>,
    requested_by: String,
    rows_total: i64,
    created: i64,
    updated: i64,
    deleted: i64,
    unchanged: i64,
    skipped: i64,
    valid: i64,
    failed: i64,
    bytes_received: i64,
    last_line: i64,
    failure_message: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    row_results_expired_time: Option<DateTime<Utc>>,
}

newest_first!(JobRow);

impl From<JobRow> for ImportJob {
    fn from(row: JobRow) -> Self {
        ImportJob {
            id: row.id,
            kind: row.kind,
            status: row.status,
            options: row.options.0,
            counts: Counts {
                rows: row.rows_total,
                created: row.created,
                updated: row.updated,
                deleted: row.deleted,
                unchanged: row.unchanged,
                skipped: row.skipped,
                valid: row.valid,
                failed: row.failed,
            },
            requested_by: row.requested_by,
            bytes_received: row.bytes_received,
            last_line: row.last_line,
            failure_message: row.failure_message,
            create_time: row.create_time,
            update_time: row.update_time,
            end_time: row.end_time,
            row_results_expired_time: row.row_results_expired_time,
        }
    }
}

/// Creates the job unless its organization already runs `limit` jobs of its
/// kind (whose owners still beat); then `Err` with how many run. Imports and
/// reviews have places of their own, so reviews (which read-only callers may
/// start) never keep an import from starting. Starts of one organization are
/// serialized so that two cannot both take the last place.
pub async fn insert_job_within_limit(
    pool: &Pool,
    job: &NewJob<'_>,
    limit: u32,
    stale_after_seconds: i64,
) -> Result<Result<ImportJob, i64>, DomainError> {
    let options = serde_json::to_value(job.options).map_err(anyhow::Error::from)?;
    let report_to: Vec<String> = job
        .options
        .report_to
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut tx = pool.begin().await?;
    // A void function in `from`: the macros cannot decode a `void` column.
    sqlx::query!(
        r#"select true as "locked!" from pg_advisory_xact_lock(hashtextextended('roster.import_jobs.start:' || $1::uuid::text, 0))"#,
        job.organization_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let running = sqlx::query_scalar!(
        r#"select count(*) as "running!" from import_jobs where organization_id = $1 and status = 'RUNNING'
         and kind = $2 and heartbeat_time >= now() - make_interval(secs => $3)"#,
        job.organization_id,
        job.kind.as_str(),
        stale_after_seconds as f64,
    )
    .fetch_one(&mut *tx)
    .await?;
    if running >= i64::from(limit) {
        return Ok(Err(running));
    }
    sqlx::query!(
        "insert into import_jobs (organization_id, id, kind, options, file_name, requested_by, notify_requester, \
         report_to, owner) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        job.organization_id,
        job.id,
        job.kind.as_str(),
        options,
        job.options.file_name,
        job.requested_by,
        job.options.notify_requester,
        &report_to,
        job.owner,
    )
    .execute(&mut *tx)
    .await?;
    let inserted = find_job(&mut *tx, job.organization_id, job.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("import job {} not found after its insert", job.id))?;
    tx.commit().await?;
    Ok(Ok(inserted))
}

/// Review jobs (organization, id) that ended more than `retention_seconds`
/// ago and still have their row results, oldest first, at most `max_jobs`. The
/// sweep looks across organizations; what it deletes and marks is then named
/// by organization and job.
pub async fn reviews_past_retention(
    pool: &Pool,
    retention_seconds: i64,
    max_jobs: i64,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    let jobs = sqlx::query!(
        "select organization_id, id from import_jobs where kind = 'VALIDATE' \
         and row_results_expired_time is null and end_time is not null \
         and end_time < now() - make_interval(secs => $1) order by end_time limit $2",
        retention_seconds as f64,
        max_jobs,
    )
    .fetch_all(&mut *pool.acquire().await?)
    .await?;
    Ok(jobs
        .into_iter()
        .map(|job| (job.organization_id, job.id))
        .collect())
}

/// Deletes at most `max_rows` row results of an ended review job, skipping
/// rows another server is deleting; returns how many were deleted. One
/// statement stays short however many rows the job has.
pub async fn delete_review_rows(
    pool: &Pool,
    organization_id: Uuid,
    job_id: Uuid,
    max_rows: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "with batch as ( \
             select r.job_id, r.line from import_rows r join import_jobs j on j.id = r.job_id \
             where j.organization_id = $1 and j.id = $2 and j.kind = 'VALIDATE' and j.end_time is not null \
             order by r.line limit $3 for update of r skip locked) \
         delete from import_rows r using batch where r.job_id = batch.job_id and r.line = batch.line",
        organization_id,
        job_id,
        max_rows,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(deleted.rows_affected())
}

/// Records that a review job's row results are deleted, once none is left;
/// false when some are (another server is still deleting them) or it was
/// recorded already.
pub async fn mark_review_rows_expired(
    pool: &Pool,
    organization_id: Uuid,
    job_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let marked = sqlx::query!(
        "update import_jobs j set row_results_expired_time = now() \
         where j.organization_id = $1 and j.id = $2 and j.kind = 'VALIDATE' \
         and j.row_results_expired_time is null \
         and not exists (select 1 from import_rows r where r.job_id = j.id)",
        organization_id,
        job_id,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    Ok(marked.rows_affected() == 1)
}

pub async fn find_job<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<ImportJob>, sqlx::Error> {
    let row = sqlx::query_as!(
        JobRow,
        r#"select id, kind as "kind: JobKind", status as "status: JobStatus",
         options as "options: Json<ImportOptions>", requested_by,
         rows_total, created, updated, deleted, unchanged, skipped, valid, failed, bytes_received, last_line,
         failure_message, create_time, update_time, end_time, row_results_expired_time
         from import_jobs where organization_id = $1 and id = $2"#,
        organization_id,
        id,
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// Newest first, optionally of one status.
pub async fn list_jobs(
    pool: &Pool,
    organization_id: Uuid,
    status: Option<JobStatus>,
    page: &PageRequest,
) -> Result<Page<ImportJob>, DomainError> {
    let status = status.map(JobStatus::as_str);
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from import_jobs where organization_id = ")
            .push_bind(organization_id);
        if let Some(status) = status {
            query.push(" and status = ").push_bind(status);
        }
    };
    let query_fingerprint = fingerprint(&("import_jobs", status));
    newest_first_page::<JobRow, _>(pool, JOB_COLUMNS, push_from_where, page, &query_fingerprint)
        .await
}

/// What a batch learns when it locks its job.
pub struct JobLock {
    /// Still RUNNING and owned by this process.
    pub running: bool,
    pub cancel_requested: bool,
}

/// Locks the job row for a batch: a cancel waits for the batch, and a job
/// another server ended (stale heartbeat) is seen as such.
pub async fn lock_job(
    tx: &mut Transaction<'_>,
    id: Uuid,
    owner: Uuid,
) -> Result<JobLock, sqlx::Error> {
    let row = sqlx::query!(
        r#"select status as "status: JobStatus", owner, cancel_requested from import_jobs where id = $1 for update"#,
        id,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(job) => JobLock {
            running: job.status == JobStatus::Running && job.owner == owner,
            cancel_requested: job.cancel_requested,
        },
        None => JobLock {
            running: false,
            cancel_requested: false,
        },
    })
}

/// Adds a batch's counts and progress, and beats the heart.
pub async fn add_progress(
    tx: &mut Transaction<'_>,
    id: Uuid,
    counts: &Counts,
    last_line: u64,
    bytes_received: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update import_jobs set rows_total = rows_total + $2, created = created + $3, updated = updated + $4, \
         deleted = deleted + $5, unchanged = unchanged + $6, skipped = skipped + $7, valid = valid + $8, \
         failed = failed + $9, last_line = greatest(last_line, $10), bytes_received = greatest(bytes_received, $11), \
         heartbeat_time = now() where id = $1",
        id,
        counts.rows,
        counts.created,
        counts.updated,
        counts.deleted,
        counts.unchanged,
        counts.skipped,
        counts.valid,
        counts.failed,
        last_line as i64,
        bytes_received as i64,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keeps a job alive between batches; `None` when it is no longer this
/// process's running job, else whether a cancel was asked for.
pub async fn heartbeat(pool: &Pool, id: Uuid, owner: Uuid) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        "update import_jobs set heartbeat_time = now() where id = $1 and owner = $2 and status = 'RUNNING' \
         returning cancel_requested",
        id,
        owner,
    )
    .fetch_optional(&mut *pool.acquire().await?)
    .await
}

/// Ends a job this process runs, and drops its claims.
pub async fn finish_job(
    pool: &Pool,
    id: Uuid,
    owner: Uuid,
    status: JobStatus,
    failure_message: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "update import_jobs set status = $3, failure_message = $4, end_time = now(), \
         report_pending = (notify_requester or cardinality(report_to) > 0) and kind = 'IMPORT' \
         where id = $1 and owner = $2 and status = 'RUNNING'",
        id,
        owner,
        status.as_str(),
        failure_message,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("delete from import_claims where job_id = $1", id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Ends INTERRUPTED every running job whose owner stopped beating; their
/// counts are exact because each batch writes them with its rows.
pub async fn interrupt_stale_jobs(
    pool: &Pool,
    stale_after_seconds: i64,
) -> Result<u64, sqlx::Error> {
    let ended = sqlx::query_scalar!(
        "update import_jobs set status = 'INTERRUPTED', end_time = now(), \
         failure_message = 'the server running the job stopped', report_pending = (notify_requester or cardinality(report_to) > 0) and kind = 'IMPORT' \
         where status = 'RUNNING' and heartbeat_time < now() - make_interval(secs => $1) returning id",
        stale_after_seconds as f64,
    )
    .fetch_all(&mut *pool.acquire().await?)
    .await?;
    if !ended.is_empty() {
        sqlx::query!("delete from import_claims where job_id = any($1)", &ended)
            .execute(&mut *pool.acquire().await?)
            .await?;
    }
    Ok(ended.len() as u64)
}

/// Asks the running job to stop after its batch in progress.
pub async fn request_cancel(
    pool: &Pool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<ImportJob>, sqlx::Error> {
    sqlx::query!(
        "update import_jobs set cancel_requested = true \
         where organization_id = $1 and id = $2 and status = 'RUNNING'",
        organization_id,
        id,
    )
    .execute(&mut *pool.acquire().await?)
    .await?;
    find_job(&mut *pool.acquire().await?, organization_id, id).await
}

/// The lines that already claimed any of these keys.
pub async fn claims(
    tx: &mut Transaction<'_>,
    job_id: Uuid,
    keys: &[String],
) -> Result<HashMap<String, u64>, sqlx::Error> {
    let rows = sqlx::query!(
        "select key, line from import_claims where job_id = $1 and key = any($2)",
        job_id,
        keys,
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|claim| (claim.key, claim.line as u64))
        .collect())
}

pub async fn insert_claims(
    tx: &mut Transaction<'_>,
    job_id: Uuid,
    keys: &[String],
    lines: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into import_claims (job_id, key, line) select $1, * from unnest($2::text[], $3::bigint[]) \
         on conflict do nothing",
        job_id,
        keys,
        lines,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn issues_json(issues: &[FieldViolation]) -> Option<serde_json::Value> {
    (!issues.is_empty()).then(|| {
        issues
            .iter()
            .map(
                |i| serde_json::json!({"field": i.field, "code": i.code, "message": i.description}),
            )
            .collect()
    })
}

/// One stored error or warning of a row, as `insert_rows` writes it.
#[derive(serde::Deserialize)]
struct StoredIssue {
    field: String,
    code: String,
    message: String,
}

/// A row's stored issues; a value of another shape is an error, not "none".
fn issues_of(value: Option<serde_json::Value>) -> Result<Vec<FieldViolation>, sqlx::Error> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let issues: Vec<StoredIssue> =
        serde_json::from_value(value).map_err(|error| sqlx::Error::Decode(error.into()))?;
    Ok(issues
        .into_iter()
        .map(|issue| FieldViolation::new(issue.field, issue.code, issue.message))
        .collect())
}

/// The stored action of a row whose action could not be read.
const UNREAD_ACTION: &str = "UNSPECIFIED";

/// Writes row results in one statement.
pub async fn insert_rows(
    tx: &mut Transaction<'_>,
    job_id: Uuid,
    rows: &[RowResult],
) -> Result<(), sqlx::Error> {
    let lines: Vec<i64> = rows.iter().map(|r| r.line as i64).collect();
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r.action.map_or(UNREAD_ACTION, Action::as_str))
        .collect();
    let emails: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
    let outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    let user_ids: Vec<Option<Uuid>> = rows.iter().map(|r| r.user_id).collect();
    let errors: Vec<Option<serde_json::Value>> =
        rows.iter().map(|r| issues_json(&r.errors)).collect();
    let warnings: Vec<Option<serde_json::Value>> =
        rows.iter().map(|r| issues_json(&r.warnings)).collect();
    sqlx::query!(
        "insert into import_rows (job_id, line, action, email, outcome, user_id, errors, warnings) \
         select $1, * from unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::jsonb[], $8::jsonb[])",
        job_id,
        &lines,
        &actions as &[&str],
        &emails as &[&str],
        &outcomes as &[&str],
        &user_ids as &[Option<Uuid>],
        &errors as &[Option<serde_json::Value>],
        &warnings as &[Option<serde_json::Value>],
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

struct RowResultRow {
    line: i64,
    action: Option<Action>,
    email: String,
    outcome: Outcome,
    user_id: Option<Uuid>,
    errors: Option<serde_json::Value>,
    warnings: Option<serde_json::Value>,
}

impl TryFrom<RowResultRow> for RowResult {
    type Error = sqlx::Error;

    fn try_from(row: RowResultRow) -> Result<Self, sqlx::Error> {
        Ok(RowResult {
            line: row.line as u64,
            action: row.action,
            email: row.email,
            outcome: row.outcome,
            user_id: row.user_id,
            errors: issues_of(row.errors)?,
            warnings: issues_of(row.warnings)?,
        })
    }
}

/// Row results after `after_line`, in file order.
pub async fn rows_after(
    pool: &Pool,
    job_id: Uuid,
    after_line: u64,
    failed_only: bool,
    limit: i64,
) -> Result<Vec<RowResult>, sqlx::Error> {
    let after_line = after_line as i64;
    // Two statements rather than an optional filter: the failed rows' partial
    // index (`outcome = 'FAILED'`) only serves a literal condition.
    let rows = if failed_only {
        sqlx::query_as!(
            RowResultRow,
            r#"select line, nullif(action, 'UNSPECIFIED') as "action: Action", email, outcome as "outcome: Outcome",
             user_id, errors, warnings from import_rows
             where job_id = $1 and line > $2 and outcome = 'FAILED' order by line limit $3"#,
            job_id,
            after_line,
            limit,
        )
        .fetch_all(&mut *pool.acquire().await?)
        .await?
    } else {
        sqlx::query_as!(
            RowResultRow,
            r#"select line, nullif(action, 'UNSPECIFIED') as "action: Action", email, outcome as "outcome: Outcome",
             user_id, errors, warnings from import_rows
             where job_id = $1 and line > $2 order by line limit $3"#,
            job_id,
            after_line,
            limit,
        )
        .fetch_all(&mut *pool.acquire().await?)
        .await?
    };
    rows.into_iter().map(TryInto::try_into).collect()
}

/// A page of a job's row results in file order, from `from_line` on.
pub async fn list_rows(
    pool: &Pool,
    job_id: Uuid,
    selection: RowSelection,
    page: &PageRequest,
) -> Result<Page<RowResult>, DomainError> {
    let RowSelection {
        failed_only,
        from_line,
    } = selection;
    let query_fingerprint = fingerprint(&("import_rows", job_id, failed_only, from_line));
    let after: Option<u64> = start_after(page, &query_fingerprint)?;
    let after = after.unwrap_or(from_line.saturating_sub(1));
    let mut rows = rows_after(pool, job_id, after, failed_only, page.size.fetch_limit()).await?;
    let next_page_token = cut_to_page(&mut rows, page, &query_fingerprint, |last| last.line);
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from import_rows where job_id = ")
            .push_bind(job_id)
            .push(" and line >= ")
            .push_bind(from_line as i64);
        if failed_only {
            query.push(" and outcome = 'FAILED'");
        }
    };
    Ok(Page {
        items: rows,
        next_page_token,
        total_size: total_size(pool, push_from_where).await?,
    })
}

/// Writes an import batch's changes, memberships, invitations, revocations,
/// deletions and audit rows: one statement each, in the transaction that
/// inserted its new users.
pub async fn write_batch(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    batch: &ImportBatch<'_>,
) -> Result<(), DomainError> {
    if !batch.changes.is_empty() {
        super::users::update_many(tx, organization_id, &batch.changes).await?;
    }
    if !batch.member_users.is_empty() {
        super::groups::add_many_memberships(
            tx,
            organization_id,
            &batch.member_users,
            &batch.member_groups,
        )
        .await?;
    }
    if !batch.invited.is_empty() {
        super::outbox::enqueue_invitations(tx, organization_id, &batch.invited).await?;
    }
    if !batch.tokens_revoked.is_empty() {
        super::access_tokens::revoke_all_for_users(
            &mut **tx,
            organization_id,
            &batch.tokens_revoked,
        )
        .await?;
    }
    if !batch.new_addresses.is_empty() {
        super::onboarding_tokens::readdress(
            tx,
            organization_id,
            &batch.new_addresses,
            batch.invite_new_addresses,
        )
        .await?;
    }
    if !batch.deleted.is_empty() {
        super::users::delete_many(tx, organization_id, &batch.deleted).await?;
    }
    super::audit::record_many(tx, &batch.audits).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state names written as literals in this module's SQL are names
    /// the enums store: renaming a state cannot leave a statement behind.
    #[test]
    fn every_state_literal_in_the_sql_is_a_stored_name() {
        let source = include_str!("imports.rs");
        // Every quoted run of two or more capitals or underscores.
        let literals: Vec<&str> = source
            .match_indices('\'')
            .filter_map(|(quote, _)| {
                let rest = &source[quote + 1..];
                let name_len = rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap_or(rest.len());
                (name_len > 1 && rest[name_len..].starts_with('\'')).then(|| &rest[..name_len])
            })
            .collect();
        assert!(literals.contains(&"RUNNING"), "{literals:?}");
        for literal in literals {
            let known = JobStatus::parse(literal).is_some()
                || JobKind::parse(literal).is_some()
                || Outcome::parse(literal).is_some()
                || literal == UNREAD_ACTION;
            assert!(known, "'{literal}' is no stored state name");
        }
    }
}
