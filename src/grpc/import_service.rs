use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::{call_of, caller, convert};
use crate::{
    domain::{
        group::GivenGroups,
        import::{
            self,
            job::{
                Counts, ImportJob, ImportOptions, JobKind, JobStatus, OnExisting, Outcome,
                RowResult, RowSelection,
            },
            row::Action,
            run::{EndError, Jobs},
            session::{Event, ImportSession, Inbound},
        },
        user::UserKey,
        DomainError,
    },
    proto::{self, import_service_server::ImportService},
};

/// ImportService: the two import streams share one job runner; the job
/// methods read the durable jobs.
pub struct ImportHandler {
    jobs: Jobs,
    /// Turns true when the server stops: running jobs end INTERRUPTED.
    stopping: watch::Receiver<bool>,
}

impl ImportHandler {
    pub fn new(jobs: Jobs, stopping: watch::Receiver<bool>) -> Self {
        Self { jobs, stopping }
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The two request types carry the same oneof.
trait ImportRequestMessage: Send + 'static {
    fn into_part(self) -> Option<Part>;
}

enum Part {
    Options(proto::ImportOptions),
    Chunk(Vec<u8>),
}

impl ImportRequestMessage for proto::ImportUsersRequest {
    fn into_part(self) -> Option<Part> {
        use proto::import_users_request::Message;
        self.message.map(|message| match message {
            Message::Options(options) => Part::Options(options),
            Message::Chunk(chunk) => Part::Chunk(chunk),
        })
    }
}

impl ImportRequestMessage for proto::ValidateImportRequest {
    fn into_part(self) -> Option<Part> {
        use proto::validate_import_request::Message;
        self.message.map(|message| match message {
            Message::Options(options) => Part::Options(options),
            Message::Chunk(chunk) => Part::Chunk(chunk),
        })
    }
}

/// The two response types carry the same oneof.
trait ImportResponseMessage: Send + 'static {
    fn row(row: proto::ImportRowResult) -> Self;
    fn summary(summary: proto::ImportSummary) -> Self;
}

impl ImportResponseMessage for proto::ImportUsersResponse {
    fn row(row: proto::ImportRowResult) -> Self {
        Self {
            message: Some(proto::import_users_response::Message::Row(row)),
        }
    }
    fn summary(summary: proto::ImportSummary) -> Self {
        Self {
            message: Some(proto::import_users_response::Message::Summary(summary)),
        }
    }
}

impl ImportResponseMessage for proto::ValidateImportResponse {
    fn row(row: proto::ImportRowResult) -> Self {
        Self {
            message: Some(proto::validate_import_response::Message::Row(row)),
        }
    }
    fn summary(summary: proto::ImportSummary) -> Self {
        Self {
            message: Some(proto::validate_import_response::Message::Summary(summary)),
        }
    }
}

fn options_from_proto(options: proto::ImportOptions) -> Result<ImportOptions, DomainError> {
    let on_existing = match proto::OnExisting::try_from(options.on_existing) {
        Ok(proto::OnExisting::Unspecified | proto::OnExisting::Fail) => OnExisting::Fail,
        Ok(proto::OnExisting::Skip) => OnExisting::Skip,
        Ok(proto::OnExisting::Update) => OnExisting::Update,
        Err(_) => {
            return Err(DomainError::invalid(
                "options.on_existing",
                "INVALID_ENUM",
                "must be FAIL, SKIP or UPDATE",
            ))
        }
    };
    let report_to =
        import::job::parse_report_to(&options.report_to).map_err(DomainError::InvalidArgument)?;
    let groups = GivenGroups::parse(&options.group_ids, &options.group_names, "options.")?;
    let mirror = convert::given_user(
        &options.mirror_user_id,
        options.mirror_user.clone(),
        "options.mirror_user",
    )?;
    // A user named by mirror_user_id stays there, as the job listing echoes it.
    let (mirror_user_id, mirror_user) = match mirror.map(|given| given.key) {
        Some(UserKey::Id(id)) if options.mirror_user.is_none() => (Some(id), None),
        key => (None, key),
    };
    Ok(ImportOptions {
        group_ids: groups.ids,
        group_names: groups.names,
        mirror_user,
        mirror_user_id,
        on_existing,
        send_invitations: options.send_invitations.unwrap_or(true),
        deactivated: options.deactivated,
        notify_requester: options.notify_requester.unwrap_or(true),
        allow_legacy_statuses: options.allow_legacy_statuses,
        file_name: import::job::parse_file_name(&options.file_name, "options.file_name")
            .map_err(|violation| DomainError::InvalidArgument(vec![violation]))?,
        report_to,
    })
}

fn options_to_proto(options: &ImportOptions) -> proto::ImportOptions {
    proto::ImportOptions {
        group_ids: options.group_ids.iter().map(Uuid::to_string).collect(),
        mirror_user_id: options
            .mirror_user_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        mirror_user: options.mirror_user.as_ref().map(convert::user_key_to_proto),
        on_existing: match options.on_existing {
            OnExisting::Fail => proto::OnExisting::Fail,
            OnExisting::Skip => proto::OnExisting::Skip,
            OnExisting::Update => proto::OnExisting::Update,
        } as i32,
        send_invitations: Some(options.send_invitations),
        deactivated: options.deactivated,
        notify_requester: Some(options.notify_requester),
        allow_legacy_statuses: options.allow_legacy_statuses,
        file_name: options.file_name.clone(),
        report_to: options.report_to.iter().map(ToString::to_string).collect(),
        group_names: options.group_names.clone(),
    }
}

fn action_to_proto(action: Option<Action>) -> i32 {
    (match action {
        None => proto::ImportAction::Unspecified,
        Some(Action::Add) => proto::ImportAction::Add,
        Some(Action::Update) => proto::ImportAction::Update,
        Some(Action::Delete) => proto::ImportAction::Delete,
        Some(Action::Example) => proto::ImportAction::Example,
    }) as i32
}

fn outcome_to_proto(outcome: Outcome) -> i32 {
    (match outcome {
        Outcome::Created => proto::RowOutcome::Created,
        Outcome::Updated => proto::RowOutcome::Updated,
        Outcome::Deleted => proto::RowOutcome::Deleted,
        Outcome::Unchanged => proto::RowOutcome::Unchanged,
        Outcome::Skipped => proto::RowOutcome::Skipped,
        Outcome::Valid => proto::RowOutcome::Valid,
        Outcome::Failed => proto::RowOutcome::Failed,
    }) as i32
}

fn status_to_proto(status: JobStatus) -> i32 {
    (match status {
        JobStatus::Running => proto::ImportJobStatus::Running,
        JobStatus::Succeeded => proto::ImportJobStatus::Succeeded,
        JobStatus::Failed => proto::ImportJobStatus::Failed,
        JobStatus::Cancelled => proto::ImportJobStatus::Cancelled,
        JobStatus::Interrupted => proto::ImportJobStatus::Interrupted,
    }) as i32
}

fn status_from_proto(raw: i32) -> Result<Option<JobStatus>, DomainError> {
    Ok(match proto::ImportJobStatus::try_from(raw) {
        Ok(proto::ImportJobStatus::Unspecified) => None,
        Ok(proto::ImportJobStatus::Running) => Some(JobStatus::Running),
        Ok(proto::ImportJobStatus::Succeeded) => Some(JobStatus::Succeeded),
        Ok(proto::ImportJobStatus::Failed) => Some(JobStatus::Failed),
        Ok(proto::ImportJobStatus::Cancelled) => Some(JobStatus::Cancelled),
        Ok(proto::ImportJobStatus::Interrupted) => Some(JobStatus::Interrupted),
        Err(_) => {
            return Err(DomainError::invalid(
                "status",
                "INVALID_ENUM",
                "is not an import job status",
            ))
        }
    })
}

fn row_to_proto(row: &RowResult) -> proto::ImportRowResult {
    proto::ImportRowResult {
        line: row.line as i64,
        action: action_to_proto(row.action),
        email: row.email.clone(),
        outcome: outcome_to_proto(row.outcome),
        user_id: row.user_id.map(|id| id.to_string()).unwrap_or_default(),
        errors: convert::field_issues(&row.errors),
        warnings: convert::field_issues(&row.warnings),
    }
}

fn counts_to_proto(counts: &Counts) -> proto::ImportCounts {
    proto::ImportCounts {
        rows: counts.rows,
        created: counts.created,
        updated: counts.updated,
        deleted: counts.deleted,
        unchanged: counts.unchanged,
        skipped: counts.skipped,
        valid: counts.valid,
        failed: counts.failed,
    }
}

fn job_to_proto(job: &ImportJob) -> proto::ImportJob {
    proto::ImportJob {
        id: job.id.to_string(),
        kind: (match job.kind {
            JobKind::Validate => proto::ImportJobKind::Validate,
            JobKind::Import => proto::ImportJobKind::Import,
        }) as i32,
        status: status_to_proto(job.status),
        options: Some(options_to_proto(&job.options)),
        counts: Some(counts_to_proto(&job.counts)),
        requested_by: job.requested_by.clone(),
        bytes_received: job.bytes_received,
        last_line: job.last_line,
        failure_message: job.failure_message.clone(),
        create_time: Some(convert::timestamp(job.create_time)),
        update_time: Some(convert::timestamp(job.update_time)),
        end_time: convert::optional_timestamp(job.end_time),
        report_delivery: job.report_delivery(),
    }
}

impl ImportHandler {
    /// Reads the options, then hands the rest of the stream to an import
    /// session and streams its events back.
    async fn run_stream<Req: ImportRequestMessage, Resp: ImportResponseMessage>(
        &self,
        request: Request<Streaming<Req>>,
        kind: JobKind,
    ) -> Result<Response<ResponseStream<Resp>>, Status> {
        let call = call_of(&self.jobs.pool, &request)?;
        let mut inbound = request.into_inner();
        let options = match inbound.message().await?.and_then(Req::into_part) {
            Some(Part::Options(options)) => options_from_proto(options)?,
            _ => {
                return Err(DomainError::invalid(
                    "options",
                    "OPTIONS_FIRST",
                    "the first message must be `options`, then the file as `chunk`s",
                )
                .into())
            }
        };
        let session = ImportSession::start(
            &self.jobs,
            &call,
            kind,
            options,
            inbound_of(inbound),
            self.stopping.clone(),
        )
        .await?;
        let job_id = session.job_id();
        let stream = ReceiverStream::new(session.into_events()).map(event_to_proto::<Resp>);
        let mut response = Response::new(Box::pin(stream) as ResponseStream<Resp>);
        // Known before any row: a client that loses the stream can read the results back.
        if let Ok(value) = job_id.to_string().parse() {
            response.metadata_mut().insert(JOB_ID_HEADER, value);
        }
        Ok(response)
    }
}

/// The client's messages after the options, as the session reads them;
/// messages without a part are skipped.
fn inbound_of<Req: ImportRequestMessage>(
    inbound: Streaming<Req>,
) -> impl Stream<Item = Inbound> + Send + Unpin + 'static {
    inbound.filter_map(|message| {
        futures::future::ready(match message {
            Ok(message) => message.into_part().map(|part| match part {
                Part::Chunk(chunk) => Inbound::Chunk(chunk),
                Part::Options(_) => Inbound::OptionsAgain,
            }),
            Err(status) => Some(Inbound::Failed(status.message().to_owned())),
        })
    })
}

fn event_to_proto<Resp: ImportResponseMessage>(event: Event) -> Result<Resp, Status> {
    match event {
        Event::Row(row) => Ok(Resp::row(row_to_proto(&row))),
        Event::Summary(job) => Ok(Resp::summary(proto::ImportSummary {
            job_id: job.id.to_string(),
            status: status_to_proto(job.status),
            counts: Some(counts_to_proto(&job.counts)),
            report_delivery: job.report_delivery(),
            failure_message: job.failure_message,
        })),
        Event::Error(EndError::Refused(violations)) => {
            Err(DomainError::InvalidArgument(violations).into())
        }
        Event::Error(EndError::Unavailable) => Err(DomainError::Unavailable(anyhow::anyhow!(
            "the database stopped answering during the import"
        ))
        .into()),
        Event::Error(EndError::Internal) => {
            Err(Status::internal("the import stopped on an internal error"))
        }
    }
}

/// Response header carrying the job id of an import stream.
pub const JOB_ID_HEADER: &str = "roster-import-job-id";

#[tonic::async_trait]
impl ImportService for ImportHandler {
    type ValidateImportStream = ResponseStream<proto::ValidateImportResponse>;
    type ImportUsersStream = ResponseStream<proto::ImportUsersResponse>;

    async fn get_import_template(
        &self,
        request: Request<proto::GetImportTemplateRequest>,
    ) -> Result<Response<proto::GetImportTemplateResponse>, Status> {
        let caller = caller(&request)?;
        let delimiter = convert::delimiter(&request.get_ref().delimiter)?;
        let (header, example_row) = self
            .jobs
            .template(caller.organization_id, delimiter)
            .await?;
        // UTF-8 with a BOM and CRLF line ends, so spreadsheets open it right.
        let csv = format!("\u{FEFF}{header}\r\n{example_row}\r\n").into_bytes();
        Ok(Response::new(proto::GetImportTemplateResponse {
            header,
            example_row,
            csv,
        }))
    }

    async fn validate_import(
        &self,
        request: Request<Streaming<proto::ValidateImportRequest>>,
    ) -> Result<Response<ResponseStream<proto::ValidateImportResponse>>, Status> {
        self.run_stream(request, JobKind::Validate).await
    }

    async fn import_users(
        &self,
        request: Request<Streaming<proto::ImportUsersRequest>>,
    ) -> Result<Response<ResponseStream<proto::ImportUsersResponse>>, Status> {
        self.run_stream(request, JobKind::Import).await
    }

    async fn get_import_job(
        &self,
        request: Request<proto::GetImportJobRequest>,
    ) -> Result<Response<proto::GetImportJobResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().job_id, "job_id")?;
        let job = self.jobs.get(caller.organization_id, id).await?;
        Ok(Response::new(proto::GetImportJobResponse {
            job: Some(job_to_proto(&job)),
        }))
    }

    async fn list_import_jobs(
        &self,
        request: Request<proto::ListImportJobsRequest>,
    ) -> Result<Response<proto::ListImportJobsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let page = self
            .jobs
            .list(
                caller.organization_id,
                status_from_proto(body.status)?,
                &convert::page_request(body.page_size, body.page_token)?,
            )
            .await?;
        Ok(Response::new(proto::ListImportJobsResponse {
            jobs: page.items.iter().map(job_to_proto).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn list_import_row_results(
        &self,
        request: Request<proto::ListImportRowResultsRequest>,
    ) -> Result<Response<proto::ListImportRowResultsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let id = convert::parse_id(&body.job_id, "job_id")?;
        if body.from_line < 0 {
            return Err(
                DomainError::invalid("from_line", "NEGATIVE", "must not be negative").into(),
            );
        }
        let page = self
            .jobs
            .rows(
                caller.organization_id,
                id,
                RowSelection {
                    failed_only: body.failed_only,
                    from_line: body.from_line as u64,
                },
                &convert::page_request(body.page_size, body.page_token)?,
            )
            .await?;
        Ok(Response::new(proto::ListImportRowResultsResponse {
            rows: page.items.iter().map(row_to_proto).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn cancel_import_job(
        &self,
        request: Request<proto::CancelImportJobRequest>,
    ) -> Result<Response<proto::CancelImportJobResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().job_id, "job_id")?;
        let job = self.jobs.cancel(caller.organization_id, id).await?;
        Ok(Response::new(proto::CancelImportJobResponse {
            job: Some(job_to_proto(&job)),
        }))
    }
}
