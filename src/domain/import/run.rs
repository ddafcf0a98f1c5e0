//! Running an import job (spec §4): the file is read as it arrives, rows are
//! decided and written in bounded batches (each batch one transaction that
//! also writes the row results and the job's counts), and the results are
//! followed from the database, so the reading of the file never waits on the
//! client's reading of results and memory stays flat.

use std::{collections::HashSet, sync::Arc, time::Duration};

use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::{
    decide::{
        decide_batch, BatchContext, Candidate, Decision, NamedGroup, Plan, StoredUser, Users,
    },
    header::{self, Column, Header},
    job::{Counts, ImportJob, ImportOptions, JobKind, JobStatus, Outcome, RowResult},
    reader::{CsvStream, FileRefusal, Limits, Record, RecordProblem},
    row::{
        legacy_status_refused, names_legacy_status_on_add, parse_action, parse_row, unescape_cell,
        RowCommand,
    },
};
use crate::{
    domain::{
        audit::{AuditRecord, FieldChanges},
        caller::Caller,
        user::{check_given_groups, mirrored_grants, user_value_pairs},
        DomainError, FieldViolation,
    },
    store::{
        self,
        users::{ImportedUserChange, NewImportedUser},
    },
};

/// How jobs run; limits are configurable (spec §4.1 "Limits").
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub limits: Limits,
    pub max_rows: u64,
    /// Rows decided and written per transaction, at most.
    pub batch_rows: usize,
    /// A running job whose heartbeat is older than this is ended INTERRUPTED.
    pub stale_after: Duration,
    pub heartbeat_every: Duration,
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
    pub retention_sweep_every: Duration,
    /// Review row results one statement of that sweep deletes, at most.
    pub retention_delete_rows: i64,
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_rows: 1_000_000,
            batch_rows: 2000,
            stale_after: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(600),
            inbound_buffer_bytes: 256 * 1024,
            max_running_jobs_per_organization: 4,
            review_retention: Duration::from_secs(7 * 24 * 3600),
            retention_sweep_every: Duration::from_secs(60),
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
    pool: PgPool,
    caller: Caller,
    request_id: String,
    settings: ImportSettings,
    owner: Uuid,
    kind: JobKind,
    options: ImportOptions,
    pub record: ImportJob,
    /// Options' groups and the mirrored user's covered groups.
    option_group_ids: Vec<Uuid>,
    mirror_skipped: Vec<Uuid>,
}

/// Checks the options (spec §4.1: before any row) and creates the job.
pub async fn start_job(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    settings: &ImportSettings,
    owner: Uuid,
    kind: JobKind,
    options: ImportOptions,
) -> Result<Job, DomainError> {
    if options.allow_legacy_statuses && !caller.organization_admin() {
        return Err(DomainError::PermissionDenied(
            "only organization administrators may import legacy statuses".into(),
        ));
    }
    let organization_id = caller.organization_id;
    let mut tx = pool.begin().await?;
    check_given_groups(&mut tx, caller, &options.group_ids, "options.group_ids").await?;
    let mut option_group_ids = options.group_ids.clone();
    let mut mirror_skipped = Vec::new();
    if let Some(mirror) = options.mirror_user_id {
        let (covered, skipped) =
            mirrored_grants(&mut tx, caller, mirror, "options.mirror_user_id").await?;
        for grant in covered {
            if !option_group_ids.contains(&grant.group_id) {
                option_group_ids.push(grant.group_id);
            }
        }
        mirror_skipped = skipped;
    }
    tx.commit().await?;
    let limit = settings.max_running_jobs_per_organization;
    let new_job = store::imports::NewJob {
        organization_id,
        id: Uuid::now_v7(),
        kind,
        options: &options,
        requested_by: caller.actor().reference(),
        owner,
    };
    let stale_after = settings.stale_after.as_secs() as i64;
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
        request_id: request_id.to_owned(),
        settings: settings.clone(),
        owner,
        kind,
        options,
        record,
        option_group_ids,
        mirror_skipped,
    })
}

const CANCELLED: &str = "cancelled by CancelImportJob";

/// The file as read so far: its header, the records not yet written.
#[derive(Default)]
struct ReadState {
    header: Option<Header>,
    pending: Vec<Record>,
    bytes_received: u64,
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
        let (status, message, error) =
            match self.read_and_write(&mut input, &progress, &mut stop).await {
                Ok(Stop::Ended(status, message, error)) => (status, message, error),
                Err(error) => {
                    tracing::error!(job_id = %job_id, error = ?error, "import job failed");
                    (
                        JobStatus::Interrupted,
                        "an internal error stopped the job".to_owned(),
                        Some(EndError::Internal),
                    )
                }
            };
        // A job must never stay RUNNING: if its message cannot be stored, end it with a plain one.
        let message = message.replace('\0', "");
        for message in [
            message.as_str(),
            "the job ended; its message could not be stored",
        ] {
            match store::imports::finish_job(&self.pool, job_id, self.owner, status, message).await
            {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(job_id = %job_id, error = ?error, "cannot end import job")
                }
            }
        }
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
        let mut data_rows = 0u64;
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat_every);
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
                _ = heartbeat.tick() => {
                    match store::imports::heartbeat(&self.pool, self.record.id, self.owner).await? {
                        None => return Ok(Stop::Ended(JobStatus::Interrupted, "the job was ended elsewhere".into(), None)),
                        Some(true) => {
                            return self.flush_then(&mut state, progress, JobStatus::Cancelled, CANCELLED).await;
                        }
                        Some(false) => continue,
                    }
                }
                () = &mut idle => {
                    Some(Input::Broken(format!(
                        "the client sent no data for {}; the job was ended so that its place is free",
                        describe_duration(self.settings.idle_timeout)
                    )))
                }
            };
            let (records, at_end) = match next {
                Some(Input::Chunk(chunk)) => {
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + self.settings.idle_timeout);
                    state.bytes_received += chunk.len() as u64;
                    match reader.push(&chunk) {
                        Ok(records) => (records, false),
                        Err(refusal) => return Ok(file_refused(&refusal)),
                    }
                }
                Some(Input::End) => match reader.finish() {
                    Ok(records) => (records, true),
                    Err(refusal) => return Ok(file_refused(&refusal)),
                },
                Some(Input::Broken(why)) => {
                    return self
                        .flush_then(&mut state, progress, JobStatus::Interrupted, &why)
                        .await;
                }
                None => {
                    return self
                        .flush_then(
                            &mut state,
                            progress,
                            JobStatus::Interrupted,
                            "the client went away",
                        )
                        .await;
                }
            };
            for record in records {
                if state.header.is_none() {
                    state.header = Some(match header_of(record) {
                        Ok(header) => header,
                        Err(violations) => return Ok(header_refused(violations)),
                    });
                    continue;
                }
                if data_rows == self.settings.max_rows {
                    let message = format!(
                        "the file has more than {} data rows, the most one job takes; it stopped at line {}, which was not read",
                        self.settings.max_rows, record.line
                    );
                    return self
                        .flush_then(&mut state, progress, JobStatus::Failed, &message)
                        .await;
                }
                data_rows += 1;
                state.pending.push(record);
                if state.pending.len() >= self.settings.batch_rows {
                    if let Some(stop) = self.flush(&mut state, progress).await? {
                        return Ok(stop);
                    }
                }
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
        let job_id = self.record.id;
        let importing = self.kind == JobKind::Import;
        let mut tx = self.pool.begin().await?;
        let started = std::time::Instant::now();
        let lock = store::imports::lock_job(&mut tx, job_id, self.owner).await?;
        if !lock.running {
            return Ok(Some(Stop::Ended(
                JobStatus::Interrupted,
                "the job was ended elsewhere".into(),
                None,
            )));
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

        let keys = Keys::of(candidates);
        let rows = store::users::find_by_keys(
            &mut tx,
            organization_id,
            &keys.emails,
            &keys.usernames,
            &keys.external_ids,
            importing,
        )
        .await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut grants = store::groups::grants_of_users(&mut tx, organization_id, &ids).await?;
        let users = Users::new(rows.into_iter().map(|row| StoredUser {
            values: row.values(),
            grants: grants.remove(&row.id).unwrap_or_default(),
            id: row.id,
            admin_state: row.admin_state,
            legacy_status: row.legacy_status,
        }));
        let groups = if keys.any_groups {
            store::groups::all_named_grants(&mut tx, organization_id)
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
            settings: &organization.settings,
            option_group_ids: &self.option_group_ids,
            mirror_skipped: &self.mirror_skipped,
            users,
            groups,
            claims: Default::default(),
        };
        let claim_keys = context.candidate_keys(candidates);
        context.claims = store::imports::claims(&mut tx, job_id, &claim_keys).await?;
        let read = started.elapsed();
        let decisions = decide_batch(&mut context, candidates.to_vec());
        let decided = started.elapsed();
        let email_unique = !organization.settings.allow_duplicate_emails;
        drop(context);

        let results = if importing {
            self.apply(&mut tx, decisions, email_unique).await?
        } else {
            decisions
                .into_iter()
                .map(|d| (result_of(&d, self.kind), d.claims))
                .collect()
        };
        let (mut claim_keys, mut claim_lines) = (Vec::new(), Vec::new());
        for (result, claims) in &results {
            if result.outcome != Outcome::Failed {
                for key in claims {
                    claim_keys.push(key.clone());
                    claim_lines.push(result.line as i64);
                }
            }
        }
        let applied = started.elapsed();
        store::imports::insert_claims(&mut tx, job_id, &claim_keys, &claim_lines).await?;
        let results: Vec<RowResult> = results.into_iter().map(|(result, _)| result).collect();
        store::imports::insert_rows(&mut tx, job_id, &results).await?;
        let last_line = results.last().map_or(0, |r| r.line);
        store::imports::add_progress(
            &mut tx,
            job_id,
            &Counts::of(&results),
            last_line,
            bytes_received,
        )
        .await?;
        tx.commit().await?;
        tracing::debug!(
            job_id = %job_id,
            rows = candidates.len(),
            read_ms = read.as_millis() as u64,
            decide_ms = (decided - read).as_millis() as u64,
            apply_ms = (applied - decided).as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "import batch written"
        );
        Ok(None)
    }

    /// Writes what the decisions say, in a few statements for the whole batch.
    async fn apply(
        &self,
        tx: &mut store::Transaction<'_>,
        decisions: Vec<Decision>,
        email_unique: bool,
    ) -> Result<Vec<(RowResult, Vec<String>)>, DomainError> {
        let organization_id = self.caller.organization_id;
        let actor = self.caller.actor();
        let audit = |action: &'static str, user_id: Uuid| {
            AuditRecord::new(organization_id, actor, action, "user", user_id)
                .with_request_id(&self.request_id)
        };
        let new_users: Vec<NewImportedUser<'_>> = decisions
            .iter()
            .filter_map(|decision| match &decision.plan {
                Plan::Create {
                    user_id,
                    values,
                    admin_state,
                    legacy_status,
                    ..
                } => Some(NewImportedUser {
                    id: *user_id,
                    values,
                    admin_state,
                    legacy_status: *legacy_status,
                }),
                _ => None,
            })
            .collect();
        let inserted: HashSet<Uuid> = if new_users.is_empty() {
            HashSet::new()
        } else {
            store::users::insert_many(tx, organization_id, &new_users, email_unique)
                .await?
                .into_iter()
                .collect()
        };
        drop(new_users);

        let (mut member_users, mut member_groups) = (Vec::new(), Vec::new());
        let mut invited = Vec::new();
        let mut audits = Vec::new();
        let mut changes = Vec::new();
        let mut revoked = Vec::new();
        let mut new_addresses = Vec::new();
        let mut deleted = Vec::new();
        let mut results = Vec::with_capacity(decisions.len());
        for decision in &decisions {
            match &decision.plan {
                Plan::Create {
                    user_id: id,
                    values,
                    group_ids,
                    ..
                } => {
                    if !inserted.contains(id) {
                        // A concurrent import created this user first (same email
                        // where emails are unique, else same username).
                        let failed = RowResult::failed(
                            decision.line,
                            decision.action,
                            decision.email.clone(),
                            vec![FieldViolation::new(
                                if email_unique { "email" } else { "username" },
                                "USER_ALREADY_EXISTS",
                                "User already exists",
                            )],
                        );
                        results.push((failed, Vec::new()));
                        continue;
                    }
                    for group in group_ids {
                        member_users.push(*id);
                        member_groups.push(*group);
                    }
                    if self.options.send_invitations {
                        invited.push(*id);
                    }
                    audits.push(audit("user.create", *id).with_details(json!({
                        "email": values.email,
                        "username": values.username,
                        "group_ids": group_ids,
                        "skipped_group_ids": self.mirror_skipped,
                        "import_job_id": self.record.id,
                        "line": decision.line,
                    })));
                }
                Plan::Update {
                    user_id: id,
                    before,
                    after,
                    status_before,
                    admin_state,
                    legacy_status,
                    add_group_ids,
                    revoke_tokens,
                    email_changed,
                } => {
                    let status_after = legacy_status.as_deref().unwrap_or(admin_state);
                    let field_changes =
                        FieldChanges::between(user_value_pairs(before, after).into_iter().chain([
                            ("status", json!(status_before), json!(status_after)),
                            ("groups", json!([]), json!(add_group_ids)),
                        ]));
                    changes.push(ImportedUserChange {
                        id: *id,
                        values: after,
                        admin_state,
                        legacy_status: legacy_status.as_deref(),
                    });
                    for group in add_group_ids {
                        member_users.push(*id);
                        member_groups.push(*group);
                    }
                    if *revoke_tokens {
                        revoked.push(*id);
                    }
                    if *email_changed {
                        new_addresses.push(*id);
                    }
                    audits.push(audit("user.update", *id).with_field_changes(field_changes));
                }
                Plan::Delete {
                    user_id: id,
                    values,
                } => {
                    deleted.push(*id);
                    audits.push(audit("user.delete", *id).with_details(json!({
                        "email": values.email,
                        "username": values.username,
                        "import_job_id": self.record.id,
                        "line": decision.line,
                    })));
                }
                Plan::Failed(_) | Plan::Unchanged { .. } | Plan::Skipped { .. } => {}
            }
            results.push((result_of(decision, self.kind), decision.claims.clone()));
        }
        if !changes.is_empty() {
            store::users::update_many(tx, organization_id, &changes).await?;
        }
        if !member_users.is_empty() {
            store::groups::add_many_memberships(tx, organization_id, &member_users, &member_groups)
                .await?;
        }
        if !invited.is_empty() {
            store::outbox::enqueue_invitations(tx, organization_id, &invited).await?;
        }
        if !revoked.is_empty() {
            store::access_tokens::revoke_all_for_users(tx, organization_id, &revoked).await?;
        }
        if !new_addresses.is_empty() {
            // Links were sent to the old address.
            store::onboarding_tokens::revoke(
                tx,
                organization_id,
                &new_addresses,
                &store::onboarding_tokens::ALL_PURPOSES,
            )
            .await?;
        }
        if !deleted.is_empty() {
            store::users::delete_many(tx, organization_id, &deleted).await?;
        }
        store::audit::record_many(tx, &audits).await?;
        Ok(results)
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
fn header_of(record: Record) -> Result<Header, Vec<FieldViolation>> {
    match record.fields {
        Ok(cells) => Header::parse(&cells),
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

/// A statement the database refused because of the values it was given: a
/// data exception (SQLSTATE class 22: a value too long, out of range, not
/// valid for its type) or an integrity constraint violation (class 23). The
/// batch is then redone a row at a time, so only the row at fault fails. Any
/// other database error (a server shutting down, a cancelled query, a
/// read-only server after a failover, a lost connection) is no row's fault
/// and ends the job.
fn is_statement_error(error: &DomainError) -> bool {
    let DomainError::Internal(error) = error else {
        return false;
    };
    error
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code())
        .is_some_and(|code| is_row_fault(&code))
}

/// Whether a SQLSTATE names an error in the values of a statement.
fn is_row_fault(sqlstate: &str) -> bool {
    sqlstate.starts_with("22") || sqlstate.starts_with("23")
}

/// Errors a batch may meet because of concurrent changes; the batch is then
/// redone a row at a time.
fn is_contention(error: &DomainError) -> bool {
    match error {
        DomainError::AlreadyExists { .. } => true,
        DomainError::Internal(error) => error
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code())
            .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "23505")),
        _ => false,
    }
}

fn result_of(decision: &Decision, kind: JobKind) -> RowResult {
    RowResult {
        line: decision.line,
        action: decision.action,
        email: decision.email.clone(),
        outcome: decision.plan.outcome(kind),
        // A reviewed new user has no id yet.
        user_id: match (&decision.plan, kind) {
            (Plan::Create { .. }, JobKind::Validate) => None,
            (plan, _) => plan.user_id(),
        },
        errors: match &decision.plan {
            Plan::Failed(errors) => errors.clone(),
            _ => Vec::new(),
        },
        warnings: decision.warnings.clone(),
    }
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

/// What the follower of a job streams to the client.
#[derive(Debug)]
pub enum Event {
    Row(RowResult),
    Summary(ImportJob),
    Error(EndError),
}

/// Streams a job's row results in file order as they are written, then its
/// summary. Returns false when the client stopped reading (the job is then
/// told to stop).
pub async fn follow(
    pool: PgPool,
    organization_id: Uuid,
    job_id: Uuid,
    mut progress: watch::Receiver<Progress>,
    out: mpsc::Sender<Event>,
) -> bool {
    let mut sent = 0u64;
    loop {
        let snapshot = progress.borrow_and_update().clone();
        while sent < snapshot.last_line {
            let rows = match store::imports::rows_after(&pool, job_id, sent, false, 500).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(job_id = %job_id, error = ?error, "cannot read import results");
                    return out.send(Event::Error(EndError::Internal)).await.is_ok();
                }
            };
            let Some(last) = rows.last() else { break };
            sent = last.line;
            for row in rows {
                if out.send(Event::Row(row)).await.is_err() {
                    return false;
                }
            }
        }
        if let Some(ended) = snapshot.ended {
            let event = match ended {
                Some(error) => Event::Error(error),
                None => match store::imports::find_job(&pool, organization_id, job_id).await {
                    Ok(Some(job)) => Event::Summary(job),
                    _ => Event::Error(EndError::Internal),
                },
            };
            return out.send(event).await.is_ok();
        }
        if progress.changed().await.is_err() {
            // The job dropped its end of the channel without ending: read what is there.
            if progress.borrow().ended.is_none() {
                return out.send(Event::Error(EndError::Internal)).await.is_ok();
            }
        }
    }
}

/// The shared pieces a server gives every job.
#[derive(Clone)]
pub struct Jobs {
    pub pool: PgPool,
    pub settings: Arc<ImportSettings>,
    /// This process, as the owner of the jobs it runs.
    pub owner: Uuid,
}

impl Jobs {
    /// Ends the jobs of servers that stopped beating ("whichever server notices").
    pub async fn interrupt_stale(&self) -> Result<u64, DomainError> {
        Ok(store::imports::interrupt_stale_jobs(
            &self.pool,
            self.settings.stale_after.as_secs() as i64,
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
        store::imports::find_job(&self.pool, organization_id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("import job", id))
    }

    /// A RUNNING job is read after ending stale ones, so a dead server's job
    /// never shows as running; ended jobs are read as they are.
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
        page_size: crate::domain::paging::PageSize,
        page_token: &str,
    ) -> Result<crate::domain::paging::Page<ImportJob>, DomainError> {
        self.interrupt_stale().await?;
        store::imports::list_jobs(&self.pool, organization_id, status, page_size, page_token).await
    }

    pub async fn rows(
        &self,
        organization_id: Uuid,
        id: Uuid,
        failed_only: bool,
        from_line: u64,
        page_size: crate::domain::paging::PageSize,
        page_token: &str,
    ) -> Result<crate::domain::paging::Page<RowResult>, DomainError> {
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
        store::imports::list_rows(
            &self.pool,
            id,
            failed_only,
            from_line,
            page_size,
            page_token,
        )
        .await
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error with a SQLSTATE, as PostgreSQL reports one.
    #[derive(Debug)]
    struct Refusal(&'static str);

    impl std::fmt::Display for Refusal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Refusal {}

    impl sqlx::error::DatabaseError for Refusal {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn database_error(sqlstate: &'static str) -> DomainError {
        DomainError::from(sqlx::Error::Database(Box::new(Refusal(sqlstate))))
    }

    #[test]
    fn only_data_and_constraint_errors_are_blamed_on_rows() {
        for sqlstate in [
            "22001", "22003", "22P02", "22021", "23502", "23503", "23514",
        ] {
            assert!(
                is_statement_error(&database_error(sqlstate)),
                "{sqlstate} is a row's fault"
            );
        }
        // A failover, a shutdown, a cancel, a lost connection, a trigger's
        // exception: none is the row's fault, the job ends instead.
        for sqlstate in [
            "57P01", "57014", "25006", "08006", "40P01", "53300", "P0001", "XX000",
        ] {
            assert!(
                !is_statement_error(&database_error(sqlstate)),
                "{sqlstate} is not a row's fault"
            );
        }
        assert!(!is_statement_error(&DomainError::from(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!is_statement_error(&DomainError::Internal(
            anyhow::anyhow!("other")
        )));
    }
}
