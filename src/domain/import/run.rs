//! Running an import job (spec §4): the file is read as it arrives, rows are
//! decided and written in bounded batches (each batch one transaction that
//! also writes the row results and the job's counts), and the results are
//! followed from the database, so the reading of the file never waits on the
//! client's reading of results and memory stays flat.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::{
    batch::{self, result_of, BatchAuthor, ImportBatch, ResultWithClaims},
    decide::{decide_batch, BatchContext, Candidate, Decision, NamedGroup, Users},
    header::{self, Column, Header},
    job::{
        Counts, ImportJob, ImportOptions, JobKind, JobStatus, NewJob, Outcome, RowResult,
        RowSelection,
    },
    period::Period,
    reader::{CsvStream, FileRefusal, Limits, Record, RecordProblem},
    row::{
        legacy_status_refused, names_legacy_status_on_add, parse_action, parse_row, unescape_cell,
        RowCommand,
    },
};
use crate::{
    domain::{
        attribute::AttributeSchema,
        audit::AuditRecord,
        call::{Call, Via},
        caller::Caller,
        group::{ensure_covered, found_ids, labels, GivenGroups, GroupLabel},
        organization::Settings,
        paging::{Page, PageRequest},
        request::RequestId,
        user::mirrored_grants,
        values::Email,
        DomainError, FieldViolation,
    },
    metrics::ImportRowCounters,
    store::{self, Pool},
};

/// How jobs run; limits are configurable (spec §4.1 "Limits").
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub limits: Limits,
    pub max_rows: u64,
    /// Rows decided and written per transaction, at most.
    pub batch_rows: usize,
    /// A running job whose heartbeat is older than this is ended INTERRUPTED;
    /// the reaper looks twice per period.
    pub stale_after: Period,
    pub heartbeat_every: Period,
    /// A client that sends nothing for this long is gone.
    pub idle_timeout: Duration,
    /// File bytes read ahead of the job while it writes a batch, at most.
    pub inbound_buffer_bytes: usize,
    /// Imports one organization may run at once, and reviews (counted apart,
    /// so that reviews never hold an import's place).
    pub max_running_jobs_per_organization: u32,
    /// How long a review job's row results are kept after it ends.
    pub review_retention: Duration,
    /// How often a server looks for review results past their retention.
    pub retention_sweep_every: Period,
    /// Review row results one statement of that sweep deletes, at most.
    pub retention_delete_rows: i64,
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_rows: 1_000_000,
            batch_rows: 2000,
            stale_after: Period::constant(Duration::from_secs(30)),
            heartbeat_every: Period::constant(Duration::from_secs(1)),
            idle_timeout: Duration::from_secs(600),
            inbound_buffer_bytes: 256 * 1024,
            max_running_jobs_per_organization: 4,
            review_retention: Duration::from_secs(7 * 24 * 3600),
            retention_sweep_every: Period::constant(Duration::from_secs(60)),
            retention_delete_rows: 10_000,
        }
    }
}

/// What the reader of the client's stream hands the job.
#[derive(Debug)]
pub enum Input {
    Chunk(Vec<u8>),
    End,
    /// The client's stream failed or broke the protocol.
    Broken(String),
}

/// How a job ended, beyond its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndError {
    /// The file or its header was refused: the stream ends INVALID_ARGUMENT.
    Refused(Vec<FieldViolation>),
    /// The database stopped answering: the stream ends UNAVAILABLE (every
    /// row reported before is written; the job ends INTERRUPTED once the
    /// database answers again).
    Unavailable,
    Internal,
}

/// What the follower of a job's results needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every row result up to this line is written.
    pub last_line: u64,
    /// The job ended; `Some(error)` when the stream ends with an error.
    pub ended: Option<Option<EndError>>,
}

/// A job that passed its options check and is RUNNING.
pub struct Job {
    pool: Pool,
    caller: Caller,
    request_id: RequestId,
    /// The door the import came through; its batches are recorded under it.
    via: Via,
    settings: ImportSettings,
    owner: Uuid,
    kind: JobKind,
    options: ImportOptions,
    pub record: ImportJob,
    /// Options' groups and the mirrored user's covered groups.
    option_group_ids: Vec<Uuid>,
    mirror_skipped: Vec<GroupLabel>,
    /// The custom attributes' definitions when the job started: the header
    /// and every row are read with them.
    schema: AttributeSchema,
    rows_decided: ImportRowCounters,
}

/// Checks the options (spec §4.1: before any row) and creates the job.
pub async fn start_job(
    jobs: &Jobs,
    call: &Call,
    kind: JobKind,
    options: ImportOptions,
) -> Result<Job, DomainError> {
    let (caller, request_id) = (&call.caller, &call.request_id);
    let Jobs {
        pool,
        settings,
        owner,
        rows_decided,
    } = jobs;
    let owner = *owner;
    if options.allow_legacy_statuses && !caller.organization_admin() {
        return Err(DomainError::PermissionDenied(
            "only organization administrators may import legacy statuses".into(),
        ));
    }
    let organization_id = caller.organization_id;
    let mut tx = pool.begin().await?;
    check_report_recipients(&mut tx, organization_id, &options.report_to).await?;
    let (option_group_ids, mirror_skipped) = option_groups(&mut tx, caller, &options).await?;
    let schema = store::attributes::schema(&mut *tx, organization_id).await?;
    tx.commit().await?;
    let limit = settings.max_running_jobs_per_organization;
    let new_job = NewJob {
        organization_id,
        id: Uuid::now_v7(),
        kind,
        options: &options,
        requested_by: caller.actor().reference(),
        owner,
    };
    let stale_after = settings.stale_after.get().as_secs() as i64;
    let record = match store::imports::insert_job_within_limit(pool, &new_job, limit, stale_after)
        .await?
    {
        Ok(record) => record,
        Err(running) => {
            let (jobs, others) = match kind {
                JobKind::Import => ("imports", "reviews"),
                JobKind::Validate => ("reviews", "imports"),
            };
            return Err(DomainError::ResourceExhausted(format!(
                    "{running} {jobs} are running in this organization and {limit} may run at once ({others} have places of their own); start this one when one of them has ended"
                )));
        }
    };
    Ok(Job {
        pool: pool.clone(),
        caller: caller.clone(),
        request_id: request_id.clone(),
        via: call.via,
        settings: ImportSettings::clone(settings),
        owner,
        kind,
        options,
        record,
        option_group_ids,
        mirror_skipped,
        schema,
        rows_decided: rows_decided.clone(),
    })
}

/// The groups every created user gets (the options' and the mirrored
/// user's covered ones) and the mirrored user's groups the caller does not
/// cover.
async fn option_groups(
    tx: &mut store::Transaction<'_>,
    caller: &Caller,
    options: &ImportOptions,
) -> Result<(Vec<Uuid>, Vec<GroupLabel>), DomainError> {
    let organization_id = caller.organization_id;
    let given = GivenGroups {
        prefix: "options.",
        ids: options.group_ids.clone(),
        names: options.group_names.clone(),
    };
    let given = given.find(tx, organization_id).await?;
    ensure_covered(&caller.authority, "give", &given)?;
    let mut option_group_ids = found_ids(&given);
    let mut mirror_skipped = Vec::new();
    if let Some(mirror) = options.mirror_user() {
        let mirror = mirror.find(tx, organization_id).await?;
        let (covered, skipped) = mirrored_grants(tx, caller, mirror).await?;
        for grant in covered {
            if !option_group_ids.contains(&grant.group_id) {
                option_group_ids.push(grant.group_id);
            }
        }
        mirror_skipped = labels(&mut **tx, organization_id, &skipped).await?;
    }
    Ok((option_group_ids, mirror_skipped))
}

/// Reports go only to users of the organization: `report_to` must not make
/// Roster a way to send mail anywhere.
async fn check_report_recipients(
    tx: &mut store::Transaction<'_>,
    organization_id: Uuid,
    report_to: &[Email],
) -> Result<(), DomainError> {
    if report_to.is_empty() {
        return Ok(());
    }
    let known = store::users::emails_of_users(&mut **tx, organization_id, report_to).await?;
    DomainError::check(
        report_to
            .iter()
            .enumerate()
            .filter(|(_, address)| !known.contains(&address.to_lowercase()))
            .map(|(index, _)| {
                FieldViolation::new(
                    format!("options.report_to[{index}]"),
                    "NOT_A_USER",
                    "is not the email of a user of this organization; reports go only to its users, so that Roster cannot be made to send mail anywhere",
                )
            })
            .collect(),
    )
}

const CANCELLED: &str = "cancelled by CancelImportJob";

/// Ends a RUNNING job. A job must never stay RUNNING: if its message cannot
/// be stored, it is ended with a plain one; while the database does not
/// answer, the end is retried (for up to `END_RETRY_FOR`; past it the stale
/// job reaper ends the job).
pub(super) async fn end_job(
    pool: &Pool,
    job_id: Uuid,
    owner: Uuid,
    status: JobStatus,
    message: &str,
) {
    let message = message.replace('\0', "");
    let mut messages = [
        message.as_str(),
        "the job ended; its message could not be stored",
    ]
    .into_iter();
    let mut message = messages.next();
    let mut pause = Duration::from_millis(100);
    let give_up = tokio::time::Instant::now() + END_RETRY_FOR;
    while let Some(text) = message {
        let Err(error) = store::imports::finish_job(pool, job_id, owner, status, text).await else {
            return;
        };
        if store::error::classify(&error) == store::error::DbErrorKind::Unavailable
            && tokio::time::Instant::now() < give_up
        {
            tracing::debug!(job_id = %job_id, error = ?error, "the database does not answer; ending the import job later");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        }
        tracing::error!(job_id = %job_id, error = ?error, "cannot end import job");
        message = messages.next();
    }
}

const DEFINITIONS_CHANGED: &str = "the custom attributes' definitions changed during the job; \
     the rows reported were written, send the others again";

/// How long a job's end is retried while the database does not answer.
const END_RETRY_FOR: Duration = Duration::from_secs(120);

/// The file as read so far: its header, the records not yet written.
#[derive(Default)]
struct ReadState {
    header: Option<Header>,
    pending: Vec<Record>,
    bytes_received: u64,
    data_rows: u64,
}

/// What a heartbeat learns of the job.
enum Beat {
    Running,
    CancelRequested,
    EndedElsewhere,
}

fn ended_elsewhere() -> Stop {
    Stop::Ended(
        JobStatus::Interrupted,
        "the job was ended elsewhere".into(),
        None,
    )
}

/// Why no records could be read from what arrived.
enum Read {
    /// The file was refused: the job ends with this.
    Refused(Stop),
    /// The client's stream broke or ended early: what is pending is written first.
    Broken(String),
}

/// The records in what arrived, and whether the file ended.
fn read_records(
    reader: &mut CsvStream,
    state: &mut ReadState,
    next: Option<Input>,
) -> Result<(Vec<Record>, bool), Read> {
    match next {
        Some(Input::Chunk(chunk)) => {
            state.bytes_received += chunk.len() as u64;
            reader
                .push(&chunk)
                .map(|records| (records, false))
                .map_err(|refusal| Read::Refused(file_refused(&refusal)))
        }
        Some(Input::End) => reader
            .finish()
            .map(|records| (records, true))
            .map_err(|refusal| Read::Refused(file_refused(&refusal))),
        Some(Input::Broken(why)) => Err(Read::Broken(why)),
        None => Err(Read::Broken("the client went away".into())),
    }
}

fn header_refused(violations: Vec<FieldViolation>) -> Stop {
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Stop::Ended(
        JobStatus::Failed,
        format!("the header was refused: {message}"),
        Some(EndError::Refused(violations)),
    )
}

/// Why reading stopped before the end of the file.
enum Stop {
    Ended(JobStatus, String, Option<EndError>),
}

/// One violation for a file refused as a whole.
fn file_refused(refusal: &FileRefusal) -> Stop {
    Stop::Ended(
        JobStatus::Failed,
        refusal.message().to_owned(),
        Some(EndError::Refused(vec![FieldViolation::new(
            "file",
            match refusal {
                FileRefusal::Utf16 => "UTF16_FILE",
                FileRefusal::Workbook => "WORKBOOK_FILE",
                FileRefusal::Empty => "EMPTY_FILE",
            },
            refusal.message(),
        )])),
    )
}

impl Job {
    /// Reads the file from `input` to its end, writes every row, and ends the
    /// job; `progress` tells the follower what is written. `stop` turns true
    /// when the client went away or the server stops.
    pub async fn run(
        self,
        mut input: mpsc::Receiver<Input>,
        progress: watch::Sender<Progress>,
        mut stop: watch::Receiver<Option<&'static str>>,
    ) {
        let job_id = self.record.id;
        let (status, message, error) = match self
            .read_and_write(&mut input, &progress, &mut stop)
            .await
        {
            Ok(Stop::Ended(status, message, error)) => (status, message, error),
            Err(error) if store::error::is_unavailable(&error) => {
                tracing::warn!(job_id = %job_id, error = ?error, "the database stopped answering; the import job ends");
                // Told at once: the client's stream ends now, not when
                // the database is back and the end is stored.
                progress.send_modify(|p| p.ended = Some(Some(EndError::Unavailable)));
                (
                        JobStatus::Interrupted,
                        "the database stopped answering; every row reported was written, send the rest again".to_owned(),
                        Some(EndError::Unavailable),
                    )
            }
            Err(error) => {
                tracing::error!(job_id = %job_id, error = ?error, "import job failed");
                (
                    JobStatus::Interrupted,
                    "an internal error stopped the job".to_owned(),
                    Some(EndError::Internal),
                )
            }
        };
        end_job(&self.pool, job_id, self.owner, status, &message).await;
        tracing::info!(job_id = %job_id, status = status.as_str(), "import job ended");
        progress.send_modify(|p| p.ended = Some(error));
    }

    async fn read_and_write(
        &self,
        input: &mut mpsc::Receiver<Input>,
        progress: &watch::Sender<Progress>,
        stop: &mut watch::Receiver<Option<&'static str>>,
    ) -> Result<Stop, DomainError> {
        let mut reader = CsvStream::new(self.settings.limits);
        let mut state = ReadState::default();
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat_every.get());
        // One deadline, moved on only when data arrives: the heartbeat's ticks
        // and the batches' writes do not keep a silent client's job alive.
        let idle = tokio::time::sleep(self.settings.idle_timeout);
        tokio::pin!(idle);
        loop {
            let next = tokio::select! {
                biased;
                Ok(()) = stop.changed() => {
                    let why = (*stop.borrow()).unwrap_or("the job was stopped");
                    return self.flush_then(&mut state, progress, JobStatus::Interrupted, why).await;
                }
                next = input.recv() => next,
                _ = heartbeat.tick() => match self.beat().await? {
                    Beat::Running => continue,
                    Beat::EndedElsewhere => return Ok(ended_elsewhere()),
                    Beat::CancelRequested => {
                        return self.flush_then(&mut state, progress, JobStatus::Cancelled, CANCELLED).await;
                    }
                },
                () = &mut idle => Some(Input::Broken(format!(
                    "the client sent no data for {}; the job was ended so that its place is free",
                    describe_duration(self.settings.idle_timeout)
                ))),
            };
            if matches!(next, Some(Input::Chunk(_))) {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + self.settings.idle_timeout);
            }
            let (records, at_end) = match read_records(&mut reader, &mut state, next) {
                Ok(read) => read,
                Err(Read::Refused(stop)) => return Ok(stop),
                Err(Read::Broken(why)) => {
                    return self
                        .flush_then(&mut state, progress, JobStatus::Interrupted, &why)
                        .await;
                }
            };
            if let Some(stop) = self.take_records(records, &mut state, progress).await? {
                return Ok(stop);
            }
            // Decide what arrived as soon as the client pauses, not only when a batch fills.
            if at_end || input.is_empty() {
                if let Some(stop) = self.flush(&mut state, progress).await? {
                    return Ok(stop);
                }
            }
            if at_end {
                return Ok(Stop::Ended(JobStatus::Succeeded, String::new(), None));
            }
        }
    }

    /// Records the job's heartbeat and reads whether it should go on.
    async fn beat(&self) -> Result<Beat, DomainError> {
        Ok(
            match store::imports::heartbeat(&self.pool, self.record.id, self.owner).await? {
                None => Beat::EndedElsewhere,
                Some(true) => Beat::CancelRequested,
                Some(false) => Beat::Running,
            },
        )
    }

    /// Takes the header from the first record and queues the others, writing
    /// a batch whenever one fills; `Some` when the job must stop.
    async fn take_records(
        &self,
        records: Vec<Record>,
        state: &mut ReadState,
        progress: &watch::Sender<Progress>,
    ) -> Result<Option<Stop>, DomainError> {
        for record in records {
            if state.header.is_none() {
                match header_of(record, &self.schema) {
                    Ok(header) => state.header = Some(header),
                    Err(violations) => return Ok(Some(header_refused(violations))),
                }
                continue;
            }
            if state.data_rows == self.settings.max_rows {
                let message = format!(
                    "the file has more than {} data rows, the most one job takes; it stopped at line {}, which was not read",
                    self.settings.max_rows, record.line
                );
                return self
                    .flush_then(state, progress, JobStatus::Failed, &message)
                    .await
                    .map(Some);
            }
            state.data_rows += 1;
            state.pending.push(record);
            if state.pending.len() >= self.settings.batch_rows {
                if let Some(stop) = self.flush(state, progress).await? {
                    return Ok(Some(stop));
                }
            }
        }
        Ok(None)
    }

    /// Writes what is pending, then ends the job with `status`.
    async fn flush_then(
        &self,
        state: &mut ReadState,
        progress: &watch::Sender<Progress>,
        status: JobStatus,
        why: &str,
    ) -> Result<Stop, DomainError> {
        Ok(match self.flush(state, progress).await? {
            Some(stop) => stop,
            None => Stop::Ended(status, why.to_owned(), None),
        })
    }

    /// Decides and writes the pending records as one batch.
    async fn flush(
        &self,
        state: &mut ReadState,
        progress: &watch::Sender<Progress>,
    ) -> Result<Option<Stop>, DomainError> {
        let records = std::mem::take(&mut state.pending);
        self.write(records, &state.header, state.bytes_received, progress)
            .await
    }

    /// Decides and writes a batch; `Some` when the job must stop (cancelled,
    /// or ended elsewhere).
    async fn write(
        &self,
        records: Vec<Record>,
        header: &Option<Header>,
        bytes_received: u64,
        progress: &watch::Sender<Progress>,
    ) -> Result<Option<Stop>, DomainError> {
        let (Some(header), Some(last)) = (header, records.last()) else {
            return Ok(None);
        };
        let last_line = last.line;
        let candidates: Vec<Candidate> = records
            .into_iter()
            .map(|record| self.candidate(header, record))
            .collect();
        let stop = match self.write_batch(&candidates, bytes_received).await {
            Err(error) if is_contention(&error) || is_statement_error(&error) => {
                // A concurrent change collided with this batch, or one row's values
                // broke a statement: redo it a row at a time, so only that row fails.
                let mut stop = None;
                for candidate in candidates {
                    stop = self.write_single(candidate, bytes_received).await?;
                    if stop.is_some() {
                        break;
                    }
                }
                stop
            }
            other => other?,
        };
        if stop.is_none() {
            progress.send_modify(|p| p.last_line = last_line);
        }
        Ok(stop)
    }

    async fn write_single(
        &self,
        candidate: Candidate,
        bytes_received: u64,
    ) -> Result<Option<Stop>, DomainError> {
        let single = std::slice::from_ref(&candidate);
        for _ in 0..3 {
            match self.write_batch(single, bytes_received).await {
                Err(error) if is_contention(&error) => {
                    if let DomainError::AlreadyExists {
                        field,
                        message,
                        reason,
                    } = error
                    {
                        let violation = FieldViolation::new(field, reason, message);
                        return self
                            .write_failed(candidate, violation, bytes_received)
                            .await;
                    }
                }
                Err(error) if is_statement_error(&error) => {
                    tracing::warn!(job_id = %self.record.id, line = candidate.line, error = ?error, "an import row could not be written");
                    let violation = FieldViolation::new(
                        "row",
                        "ROW_NOT_WRITTEN",
                        "the database refused this row's values",
                    );
                    return self
                        .write_failed(candidate, violation, bytes_received)
                        .await;
                }
                other => return other,
            }
        }
        let violation = FieldViolation::new(
            "row",
            "CONTENTION",
            "other changes kept colliding with this row; send it again",
        );
        self.write_failed(candidate, violation, bytes_received)
            .await
    }

    /// Writes the row's result as failed with `violation`, alone.
    async fn write_failed(
        &self,
        candidate: Candidate,
        violation: FieldViolation,
        bytes_received: u64,
    ) -> Result<Option<Stop>, DomainError> {
        let failed = Candidate {
            command: Err(vec![violation]),
            ..candidate
        };
        self.write_batch(&[failed], bytes_received).await
    }

    fn candidate(&self, header: &Header, record: Record) -> Candidate {
        let line = record.line;
        match record.fields {
            Err(problem) => Candidate {
                line,
                action: None,
                email: String::new(),
                command: Err(vec![record_problem(header, &problem)]),
            },
            Ok(cells) => {
                let cell = |column| unescape_cell(header.cell(&cells, column));
                Candidate {
                    line,
                    action: parse_action(cell(Column::Action)).ok(),
                    email: cell(Column::Email).trim().to_owned(),
                    // Legacy statuses are judged when the row is decided (see decide_create).
                    command: parse_row(header, &cells, true)
                        .map(|(_, command)| command)
                        .map_err(|mut violations| {
                            if !self.options.allow_legacy_statuses
                                && names_legacy_status_on_add(header, &cells)
                            {
                                violations.push(legacy_status_refused());
                            }
                            violations
                        }),
                }
            }
        }
    }

    /// One transaction: lock the job, read what the rows name, decide, write
    /// users, memberships, invitations, audit events, row results, claims and
    /// counts.
    async fn write_batch(
        &self,
        candidates: &[Candidate],
        bytes_received: u64,
    ) -> Result<Option<Stop>, DomainError> {
        let organization_id = self.caller.organization_id;
        // Not a UnitOfWork: a batch is one slice of a long job, not one
        // request's change; its audit rows (one per user) are columns of the
        // batch that store::imports::write_batch writes with its other rows.
        let mut tx = self.pool.begin().await?;
        let started = std::time::Instant::now();
        let lock = store::imports::lock_job(&mut tx, self.record.id, self.owner).await?;
        if !lock.running {
            return Ok(Some(ended_elsewhere()));
        }
        if lock.cancel_requested {
            return Ok(Some(Stop::Ended(
                JobStatus::Cancelled,
                CANCELLED.into(),
                None,
            )));
        }
        let organization = store::organizations::lock_shared(&mut tx, organization_id)
            .await?
            .ok_or_else(|| DomainError::not_found("organization", organization_id))?;
        // Definitions change under the organization's lock, held shared here:
        // rows read with other definitions are not written.
        let schema = store::attributes::schema(&mut *tx, organization_id).await?;
        if !schema.same_rules(&self.schema) {
            return Ok(Some(Stop::Ended(
                JobStatus::Failed,
                DEFINITIONS_CHANGED.into(),
                None,
            )));
        }
        let mut context = self
            .batch_context(&mut tx, &organization.settings, candidates)
            .await?;
        let read = started.elapsed();
        let decisions = decide_batch(&mut context, candidates.to_vec());
        drop(context);
        let decided = started.elapsed();
        let (results, audits) = if self.kind == JobKind::Import {
            let email_unique = !organization.settings.allow_duplicate_emails;
            self.apply(&mut tx, decisions, email_unique).await?
        } else {
            let results = decisions
                .into_iter()
                .map(|d| (result_of(&d, self.kind), d.claims))
                .collect();
            (results, Vec::new())
        };
        let applied = started.elapsed();
        let counts = self
            .record_results(&mut tx, results, bytes_received)
            .await?;
        // Last: it numbers the changes in commit order by holding a lock to the end.
        store::changes::publish(&mut tx, &audits).await?;
        tx.commit().await?;
        self.rows_decided.add(&counts);
        tracing::debug!(
            job_id = %self.record.id,
            rows = candidates.len(),
            read_ms = read.as_millis() as u64,
            decide_ms = (decided - read).as_millis() as u64,
            apply_ms = (applied - decided).as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "import batch written"
        );
        Ok(None)
    }

    /// Reads what the candidates name: the users (with their grants), the
    /// groups when a row names any, and the keys earlier rows claimed.
    async fn batch_context<'a>(
        &'a self,
        tx: &mut store::Transaction<'_>,
        settings: &'a Settings,
        candidates: &[Candidate],
    ) -> Result<BatchContext<'a>, DomainError> {
        let organization_id = self.caller.organization_id;
        let keys = Keys::of(candidates);
        let mut found = store::users::find_by_keys(
            tx,
            organization_id,
            &keys.emails,
            &keys.usernames,
            &keys.external_ids,
            self.kind == JobKind::Import,
        )
        .await?;
        let ids: Vec<Uuid> = found.iter().map(|user| user.id).collect();
        let mut grants = store::groups::grants_of_users(tx, organization_id, &ids).await?;
        for user in &mut found {
            user.grants = grants.remove(&user.id).unwrap_or_default();
        }
        let users = Users::new(found);
        let groups = if keys.any_groups {
            store::groups::all_named_grants(tx, organization_id)
                .await?
                .into_iter()
                .map(|(name, grant)| (name.to_lowercase(), NamedGroup { name, grant }))
                .collect()
        } else {
            Default::default()
        };
        let mut context = BatchContext {
            caller: &self.caller,
            kind: self.kind,
            options: &self.options,
            settings,
            schema: &self.schema,
            option_group_ids: &self.option_group_ids,
            mirror_skipped: &self.mirror_skipped,
            users,
            groups,
            claims: Default::default(),
        };
        let claim_keys = context.candidate_keys(candidates);
        context.claims = store::imports::claims(tx, self.record.id, &claim_keys).await?;
        Ok(context)
    }

    /// Writes the rows' results, the keys the successful rows claim, and the
    /// job's counts and progress; gives the counts.
    async fn record_results(
        &self,
        tx: &mut store::Transaction<'_>,
        results: Vec<ResultWithClaims>,
        bytes_received: u64,
    ) -> Result<Counts, DomainError> {
        let job_id = self.record.id;
        let (mut claim_keys, mut claim_lines) = (Vec::new(), Vec::new());
        for (result, claims) in &results {
            if result.outcome != Outcome::Failed {
                for key in claims {
                    claim_keys.push(key.clone());
                    claim_lines.push(result.line as i64);
                }
            }
        }
        store::imports::insert_claims(tx, job_id, &claim_keys, &claim_lines).await?;
        let results: Vec<RowResult> = results.into_iter().map(|(result, _)| result).collect();
        store::imports::insert_rows(tx, job_id, &results).await?;
        let last_line = results.last().map_or(0, |r| r.line);
        let counts = Counts::of(&results);
        store::imports::add_progress(tx, job_id, &counts, last_line, bytes_received).await?;
        Ok(counts)
    }

    /// Writes what the decisions say: the new users first (a concurrent
    /// import may have created one), then the rest of the batch in one go.
    async fn apply(
        &self,
        tx: &mut store::Transaction<'_>,
        decisions: Vec<Decision>,
        email_unique: bool,
    ) -> Result<(Vec<ResultWithClaims>, Vec<AuditRecord>), DomainError> {
        let organization_id = self.caller.organization_id;
        let new_users = batch::new_users(&decisions);
        let inserted: HashSet<Uuid> = if new_users.is_empty() {
            HashSet::new()
        } else {
            store::users::insert_many(tx, organization_id, &new_users, email_unique)
                .await?
                .into_iter()
                .collect()
        };
        drop(new_users);
        let author = BatchAuthor {
            organization_id,
            actor: self.caller.actor(),
            via: self.via,
            request_id: &self.request_id,
            job_id: self.record.id,
            send_invitations: self.options.send_invitations,
            mirror_skipped: &self.mirror_skipped,
            email_unique,
        };
        let (batch, results) = ImportBatch::of(&decisions, &inserted, &author);
        store::imports::write_batch(tx, organization_id, &batch).await?;
        Ok((results, batch.audits))
    }
}

/// A duration as a person reads it: `600 seconds`, `1.5 seconds`.
fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds == 1.0 {
        "1 second".to_owned()
    } else {
        format!("{seconds} seconds")
    }
}

/// The first non-blank record names the columns; one it cannot read refuses
/// the file, naming the cell at fault by its position.
fn header_of(record: Record, schema: &AttributeSchema) -> Result<Header, Vec<FieldViolation>> {
    match record.fields {
        Ok(cells) => Header::parse_with(&cells, schema),
        Err(problem) => Err(vec![FieldViolation::new(
            problem
                .cell()
                .map_or_else(|| "header".to_owned(), header::position_label),
            problem.code(),
            format!("the header line cannot be read: {}", problem.message()),
        )]),
    }
}

/// A record that cannot be read fails its row; the field is the column when known.
fn record_problem(header: &Header, problem: &RecordProblem) -> FieldViolation {
    FieldViolation::new(
        problem
            .cell()
            .map_or_else(|| "row".to_owned(), |index| header.label_at(index)),
        problem.code(),
        problem.message(),
    )
}

/// One row's values broke a statement (`store::error::is_bad_value`): the
/// batch is redone a row at a time, so only the row at fault fails. Any other
/// database error is no row's fault and ends the job.
fn is_statement_error(error: &DomainError) -> bool {
    store::error::is_bad_value(error)
}

/// Errors a batch may meet because of concurrent changes; the batch is then
/// redone a row at a time.
fn is_contention(error: &DomainError) -> bool {
    matches!(error, DomainError::AlreadyExists { .. }) || store::error::is_contention(error)
}

/// The values a batch's rows name, to read the users they mean.
#[derive(Default)]
struct Keys {
    emails: Vec<String>,
    usernames: Vec<String>,
    external_ids: Vec<String>,
    any_groups: bool,
}

impl Keys {
    fn of(candidates: &[Candidate]) -> Self {
        let mut keys = Self::default();
        for candidate in candidates {
            let Ok(command) = &candidate.command else {
                continue;
            };
            let (email, username, external_id) = command.named_values();
            keys.any_groups |= match command {
                RowCommand::Add { groups, .. } | RowCommand::Update { groups, .. } => {
                    !groups.is_empty()
                }
                RowCommand::Delete { .. } => false,
            };
            keys.emails.extend(email.map(|e| e.to_lowercase()));
            keys.usernames.extend(username.map(|u| u.to_lowercase()));
            keys.external_ids.extend(external_id.map(str::to_owned));
        }
        keys
    }
}

/// The shared pieces a server gives every job.
#[derive(Clone)]
pub struct Jobs {
    pub pool: Pool,
    pub settings: Arc<ImportSettings>,
    /// This process, as the owner of the jobs it runs.
    pub owner: Uuid,
    pub rows_decided: ImportRowCounters,
}

impl Jobs {
    /// Ends the jobs of servers that stopped beating ("whichever server notices").
    pub async fn interrupt_stale(&self) -> Result<u64, DomainError> {
        Ok(store::imports::interrupt_stale_jobs(
            &self.pool,
            self.settings.stale_after.get().as_secs() as i64,
        )
        .await?)
    }

    /// Deletes the row results of review jobs past their retention, a few jobs
    /// at a time and each job's rows in bounded statements, then records each
    /// job's as deleted; returns how many jobs.
    pub async fn expire_review_row_results(&self) -> Result<u64, DomainError> {
        const JOBS_PER_PASS: i64 = 10;
        let retention = self.settings.review_retention.as_secs() as i64;
        let max_rows = self.settings.retention_delete_rows.max(1);
        let mut total = 0;
        loop {
            let jobs = store::imports::reviews_past_retention(&self.pool, retention, JOBS_PER_PASS)
                .await?;
            let mut marked = 0;
            for &(organization_id, job_id) in &jobs {
                while store::imports::delete_review_rows(
                    &self.pool,
                    organization_id,
                    job_id,
                    max_rows,
                )
                .await?
                    == max_rows as u64
                {}
                if store::imports::mark_review_rows_expired(&self.pool, organization_id, job_id)
                    .await?
                {
                    marked += 1;
                }
            }
            total += marked;
            // A job left unmarked is being deleted by another server, which marks it.
            if (jobs.len() as i64) < JOBS_PER_PASS || marked == 0 {
                return Ok(total);
            }
        }
    }

    async fn find(&self, organization_id: Uuid, id: Uuid) -> Result<ImportJob, DomainError> {
        store::imports::find_job(&mut *self.pool.acquire().await?, organization_id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("import job", id))
    }

    /// A RUNNING job is read after ending stale ones, so a dead server's job
    /// never shows as running; ended jobs are read as they are.
    /// The CSV template with the organization's custom attributes' columns.
    pub async fn template(
        &self,
        organization_id: Uuid,
        delimiter: char,
    ) -> Result<(String, String), DomainError> {
        let schema =
            store::attributes::schema(&mut *self.pool.acquire().await?, organization_id).await?;
        Ok(super::template(delimiter, &schema))
    }

    pub async fn get(&self, organization_id: Uuid, id: Uuid) -> Result<ImportJob, DomainError> {
        let job = self.find(organization_id, id).await?;
        if job.status != JobStatus::Running || self.interrupt_stale().await? == 0 {
            return Ok(job);
        }
        self.find(organization_id, id).await
    }

    pub async fn list(
        &self,
        organization_id: Uuid,
        status: Option<JobStatus>,
        page: &PageRequest,
    ) -> Result<Page<ImportJob>, DomainError> {
        self.interrupt_stale().await?;
        store::imports::list_jobs(&self.pool, organization_id, status, page).await
    }

    pub async fn rows(
        &self,
        organization_id: Uuid,
        id: Uuid,
        selection: RowSelection,
        page: &PageRequest,
    ) -> Result<Page<RowResult>, DomainError> {
        let job = self.find(organization_id, id).await?;
        // Past its retention a review's rows are gone, or going: the sweep
        // deletes them in batches and records it at the end.
        let expired = job.row_results_expired_time.or_else(|| {
            let retention = chrono::Duration::from_std(self.settings.review_retention).ok()?;
            let due = job.end_time? + retention;
            (job.kind == JobKind::Validate && due <= chrono::Utc::now()).then_some(due)
        });
        if let Some(expired) = expired {
            return Err(DomainError::FailedPrecondition {
                reason: "ROW_RESULTS_EXPIRED",
                message: format!(
                    "the row results of review job {id} were deleted on {} (reviews keep them for a while after they end); the job and its counts remain, review the file again for its rows",
                    expired.format("%Y-%m-%d"),
                ),
            });
        }
        store::imports::list_rows(&self.pool, id, selection, page).await
    }

    /// Asks a running job to stop after the batch in progress and waits a
    /// little for it; an ended job is returned as it is.
    pub async fn cancel(&self, organization_id: Uuid, id: Uuid) -> Result<ImportJob, DomainError> {
        let mut job = store::imports::request_cancel(&self.pool, organization_id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("import job", id))?;
        for _ in 0..50 {
            if job.status != JobStatus::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            job = self.get(organization_id, id).await?;
        }
        Ok(job)
    }
}
