//! One import stream, from its options to its summary: the session owns the
//! reader of the client's file, the job that decides and writes its rows, the
//! follower that streams the results back, and the reasons the job stops
//! (the client went away or stopped reading, the server stops, the job's
//! task died). The gRPC layer only converts messages both ways.

use std::future::Future;

use futures::{Stream, StreamExt};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    job::{ImportJob, ImportOptions, JobKind, JobStatus, RowResult},
    run::{end_job, start_job, EndError, Input, Jobs, Progress},
};
use crate::{
    domain::{call::Call, DomainError},
    store::{self, connections::read, Pool},
    telemetry::traces,
};

/// What the client sends after its options, one message at a time.
#[derive(Debug)]
pub enum Inbound {
    Chunk(Vec<u8>),
    /// `options` sent again: the protocol is broken.
    OptionsAgain,
    /// The client's stream failed; the text says how.
    Failed(String),
}

/// A running import stream; its events are the response.
pub struct ImportSession {
    job_id: Uuid,
    events: mpsc::Receiver<Event>,
}

/// What the job of a session is told to stop by: a reason, once.
type StopSender = watch::Sender<Option<&'static str>>;

impl ImportSession {
    /// Checks the options and starts the job (both before any row), then the
    /// tasks that read `inbound`, run the job and follow its results.
    /// `server_stopping` turning true ends the job INTERRUPTED.
    pub async fn start(
        jobs: &Jobs,
        call: &Call,
        kind: JobKind,
        options: ImportOptions,
        inbound: impl Stream<Item = Inbound> + Send + Unpin + 'static,
        server_stopping: watch::Receiver<bool>,
    ) -> Result<Self, DomainError> {
        let settings = &jobs.settings;
        let job = start_job(jobs, call, kind, options).await?;
        let job_id = job.record.id;
        tracing::info!(job_id = %job_id, kind = kind.as_str(), "import job started");
        // A child of the call's span: the job's statements belong to the
        // call's trace, though the job may outlive the call.
        let job_span = tracing::info_span!("import job", job_id = %job_id, kind = kind.as_str());
        traces::start_call_work_span(&job_span, call.request_id.as_str());

        let (input_tx, input_rx) = mpsc::channel(1);
        tokio::spawn(read_inbound(
            inbound,
            input_tx,
            settings.inbound_buffer_bytes,
        ));
        let (stop_tx, stop_rx) = watch::channel(None);
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let run = job
            .run(input_rx, progress_tx.clone(), stop_rx)
            .instrument(job_span.clone());
        let supervisor =
            tokio::spawn(supervise(jobs.clone(), job_id, run, progress_tx).instrument(job_span));

        let (out_tx, out_rx) = mpsc::channel(64);
        let follower = follow(
            jobs.pool.clone(),
            call.organization_id(),
            job_id,
            progress_rx,
            out_tx,
        );
        // The follower's reads are the call's answer: in the call's span.
        tokio::spawn(
            stop_when_gone(follower, stop_tx, server_stopping, supervisor)
                .instrument(tracing::Span::current()),
        );
        Ok(Self {
            job_id,
            events: out_rx,
        })
    }

    /// Known before any row: a client that loses the stream can read the
    /// results back.
    pub fn job_id(&self) -> Uuid {
        self.job_id
    }

    /// Row results in file order, then the summary or an error.
    pub fn into_events(self) -> mpsc::Receiver<Event> {
        self.events
    }
}

/// Runs the job in a task of its own and outlives it. A job ends itself in
/// every planned way; if its task panics or is cancelled, this owner ends it
/// INTERRUPTED at once (not after the stale sweep) and tells the follower.
/// A supervising task rather than a `Drop` guard: ending a job is a write to
/// PostgreSQL, which a `Drop` cannot await, and the follower must learn of
/// the end only once it is written.
async fn supervise(
    jobs: Jobs,
    job_id: Uuid,
    run: impl Future<Output = ()> + Send + 'static,
    progress: watch::Sender<Progress>,
) {
    let Err(error) = tokio::spawn(run).await else {
        return;
    };
    if progress.borrow().ended.is_some() {
        return;
    }
    tracing::error!(job_id = %job_id, error = %error, "import job task died");
    let why = "an internal error stopped the job";
    end_job(&jobs.pool, job_id, jobs.owner, JobStatus::Interrupted, why).await;
    progress.send_modify(|p| p.ended = Some(Some(EndError::Internal)));
}

/// Streams the results; tells the job to stop when the client stops reading
/// or the server stops, and keeps the stop channel open until the job has
/// ended (a closed channel is not a reason).
async fn stop_when_gone(
    follower: impl Future<Output = bool>,
    stop: StopSender,
    mut server_stopping: watch::Receiver<bool>,
    supervisor: JoinHandle<()>,
) {
    tokio::pin!(follower);
    loop {
        tokio::select! {
            client_reading = &mut follower => {
                if !client_reading {
                    let _ = stop.send(Some("the client went away"));
                }
                break;
            }
            Ok(()) = server_stopping.changed() => {
                if *server_stopping.borrow() {
                    let _ = stop.send(Some("the server stopped"));
                }
            }
        }
    }
    let _ = supervisor.await;
    drop(stop);
}

/// Keeps reading the client's messages while the job writes a batch, gathering
/// their bytes into one buffer handed to the job whole; it pauses only when
/// `limit` bytes wait (back-pressure by bytes, not by messages). A reader that
/// paused per message would leave the client's small DATA frames queued in
/// h2, whose budget for small frames then ends the connection with GOAWAY
/// `too_many_data_frames` (a client sending one line or one byte per message).
async fn read_inbound(
    mut inbound: impl Stream<Item = Inbound> + Unpin,
    job: mpsc::Sender<Input>,
    limit: usize,
) {
    let mut gathered: Vec<u8> = Vec::new();
    let mut end: Option<Input> = None;
    loop {
        tokio::select! {
            // The job ended (idle, cancelled, refused): stop holding the stream.
            () = job.closed() => return,
            permit = job.reserve(), if !gathered.is_empty() || end.is_some() => {
                let Ok(permit) = permit else { return };
                if gathered.is_empty() {
                    permit.send(end.take().unwrap_or(Input::End));
                    return;
                }
                permit.send(Input::Chunk(std::mem::take(&mut gathered)));
            }
            // Cancel-safe: a message half received stays in `inbound`.
            message = inbound.next(), if end.is_none() && gathered.len() < limit => {
                match message {
                    Some(Inbound::Chunk(chunk)) => gathered.extend_from_slice(&chunk),
                    Some(Inbound::OptionsAgain) => {
                        end = Some(Input::Broken("`options` may be sent only once, first".into()));
                    }
                    Some(Inbound::Failed(why)) => {
                        end = Some(Input::Broken(format!("the client went away ({why})")));
                    }
                    None => end = Some(Input::End),
                }
            }
        }
    }
}

/// What the follower of a job streams to the client.
#[derive(Debug)]
pub enum Event {
    Row(RowResult),
    Summary(Box<ImportJob>),
    Error(EndError),
}

/// Streams a job's row results in file order as they are written, then its
/// summary. Returns false when the client stopped reading (the job is then
/// told to stop).
pub async fn follow(
    pool: Pool,
    organization_id: Uuid,
    job_id: Uuid,
    mut progress: watch::Receiver<Progress>,
    out: mpsc::Sender<Event>,
) -> bool {
    let mut sent = 0u64;
    loop {
        let snapshot = progress.borrow_and_update().clone();
        if snapshot.ended == Some(Some(EndError::Unavailable)) {
            // The rows not streamed yet cannot be read now; they are written,
            // and ListImportRows gives them once the database is back.
            return out.send(Event::Error(EndError::Unavailable)).await.is_ok();
        }
        while sent < snapshot.last_line {
            let rows = match store::imports::rows_after(&pool, job_id, sent, false, 500).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(job_id = %job_id, error = ?error, "cannot read import results");
                    return out.send(Event::Error(end_error_of(&error))).await.is_ok();
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
                None => match read!(&pool, |connection| {
                    store::imports::find_job(connection, organization_id, job_id).await
                }) {
                    Ok(Some(job)) => Event::Summary(Box::new(job)),
                    Ok(None) => Event::Error(EndError::Internal),
                    Err(error) => Event::Error(end_error_of(&error)),
                },
            };
            return out.send(event).await.is_ok();
        }
        if progress.changed().await.is_err() {
            // The job's owner was dropped without ending it (the runtime is
            // shutting down): the stale sweep ends it.
            if progress.borrow().ended.is_none() {
                return out.send(Event::Error(EndError::Internal)).await.is_ok();
            }
        }
    }
}

/// How a stream ends when the database failed it.
fn end_error_of(error: &sqlx::Error) -> EndError {
    match store::error::classify(error) {
        store::error::DbErrorKind::Unavailable => EndError::Unavailable,
        _ => EndError::Internal,
    }
}
