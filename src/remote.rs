//! CLI commands that talk to a running server over gRPC, as any client
//! would: `roster import` and `roster export`.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{
    metadata::MetadataValue,
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Request, Status,
};

use crate::{
    domain::import::{
        csv_line,
        header::Column,
        reader::{CsvStream, Limits, Record},
        row::unescape_cell,
    },
    grpc::JOB_ID_HEADER,
    proto::{
        self, import_service_client::ImportServiceClient, import_users_request,
        import_users_response, user_service_client::UserServiceClient, validate_import_request,
        validate_import_response, ImportRowResult, ImportSummary, RowOutcome,
    },
};

/// Where the server is and who is calling.
#[derive(Debug, Clone)]
pub struct Connection {
    pub server: String,
    pub api_key: String,
    pub tls: ClientTls,
}

/// How the CLI trusts an `https://` server and proves itself to one that
/// asks (PEM files); without a CA, the system's roots.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_cert: Option<PathBuf>,
    /// The client certificate and its key, for a server with mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    fn config(&self) -> Result<ClientTlsConfig> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_cert {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read("--ca-cert", ca)?)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            let identity =
                Identity::from_pem(read("--client-cert", cert)?, read("--client-key", key)?);
            config = config.identity(identity);
        }
        Ok(config)
    }
}

type Authed =
    InterceptedService<Channel, Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>>;

impl Connection {
    async fn channel(&self) -> Result<(Channel, MetadataValue<tonic::metadata::Ascii>)> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("`{}` is not a server address", self.server))?;
        if self.server.starts_with("https://") {
            endpoint = endpoint
                .tls_config(self.tls.config()?)
                .context("the TLS settings of --ca-cert, --client-cert and --client-key")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the Roster server at {}", self.server))?;
        let bearer = format!("Bearer {}", self.api_key)
            .parse()
            .context("the API key holds characters a header cannot carry")?;
        Ok((channel, bearer))
    }

    fn authed(channel: Channel, bearer: MetadataValue<tonic::metadata::Ascii>) -> Authed {
        InterceptedService::new(
            channel,
            Box::new(move |mut request: Request<()>| {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
                Ok(request)
            }),
        )
    }

    async fn imports(&self) -> Result<ImportServiceClient<Authed>> {
        let (channel, bearer) = self.channel().await?;
        Ok(ImportServiceClient::new(Self::authed(channel, bearer)))
    }

    async fn users(&self) -> Result<UserServiceClient<Authed>> {
        let (channel, bearer) = self.channel().await?;
        Ok(UserServiceClient::new(Self::authed(channel, bearer)))
    }
}

/// What `roster import` was asked to do.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub file: PathBuf,
    pub dry_run: bool,
    pub options: proto::ImportOptions,
    /// Read the results of this job instead of sending the file again.
    pub resume: Option<String>,
    /// Write only the failed rows to the results file.
    pub failed_only: bool,
}

/// `FILE.results.csv` next to the file.
fn results_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".results.csv");
    PathBuf::from(name)
}

/// The records of the file being imported, read again from disk as its
/// results come back (in file order), so that each result is written next to
/// the row it is about. Read by the server's own reader: the same lines,
/// encodings and delimiters. A file it cannot read gives no records.
struct OriginalRows {
    file: Option<tokio::fs::File>,
    stream: CsvStream,
    read: VecDeque<Record>,
}

impl OriginalRows {
    async fn open(path: &Path) -> Self {
        Self {
            file: tokio::fs::File::open(path).await.ok(),
            stream: CsvStream::new(Limits::default()),
            read: VecDeque::new(),
        }
    }

    /// The next record, reading more of the file when needed.
    async fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.read.pop_front() {
                return Some(record);
            }
            let file = self.file.as_mut()?;
            let mut buffer = vec![0u8; 64 * 1024];
            let records = match file.read(&mut buffer).await {
                Ok(0) => {
                    self.file = None;
                    self.stream.finish()
                }
                Ok(read) => self.stream.push(&buffer[..read]),
                Err(_) => {
                    self.file = None;
                    return None;
                }
            };
            match records {
                Ok(records) => self.read.extend(records),
                Err(_) => self.file = None,
            }
        }
    }

    /// The cells of the record that starts at `line` (none for a record the
    /// reader could not read, such as an unterminated quote).
    async fn cells_at(&mut self, line: u64) -> Option<Vec<String>> {
        while let Some(record) = self.next().await {
            if record.line == line {
                return record.fields.ok();
            }
            if record.line > line {
                self.read.push_front(record);
                return None;
            }
        }
        None
    }
}

/// Writes row results as CSV: the file's own columns, then `line`,
/// `outcome`, `user_id`, `errors` and `warnings`, which an import ignores;
/// so the failed rows, fixed in this file, import again from it.
struct ResultsFile {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: PathBuf,
    original: OriginalRows,
    /// Positions of the file's own columns (named, and not result columns
    /// of an earlier run, which are written afresh).
    kept: Vec<usize>,
    failed_only: bool,
    failed: u64,
    rows: u64,
}

impl ResultsFile {
    async fn create(source: &Path, failed_only: bool) -> Result<Self> {
        let path = results_path(source);
        let mut file = tokio::io::BufWriter::new(
            tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?,
        );
        let mut original = OriginalRows::open(source).await;
        let header = match original.next().await {
            Some(Record {
                fields: Ok(cells), ..
            }) => cells,
            _ => Vec::new(),
        };
        let kept: Vec<usize> = (0..header.len())
            .filter(|&index| {
                let name = header[index].trim();
                !name.is_empty()
                    && !Column::matching(name).is_some_and(|c| Column::RESULTS.contains(&c))
            })
            .collect();
        let mut line = String::new();
        csv_line(
            kept.iter()
                .map(|&index| header[index].trim())
                .chain(Column::RESULTS.map(Column::name)),
            ',',
            &mut line,
        );
        file.write_all(line.as_bytes()).await?;
        Ok(Self {
            file,
            path,
            original,
            kept,
            failed_only,
            failed: 0,
            rows: 0,
        })
    }

    async fn write(&mut self, row: &ImportRowResult) -> Result<()> {
        let outcome = RowOutcome::try_from(row.outcome).unwrap_or(RowOutcome::Unspecified);
        self.rows += 1;
        if outcome == RowOutcome::Failed {
            self.failed += 1;
        } else if self.failed_only {
            return Ok(());
        }
        let line_number = u64::try_from(row.line).unwrap_or(0);
        let cells = self
            .original
            .cells_at(line_number)
            .await
            .unwrap_or_default();
        let issues = |list: &[proto::FieldIssue]| {
            list.iter()
                .map(|i| format!("{}: {} ({})", i.field, i.message, i.code))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (line_text, errors, warnings) = (
            row.line.to_string(),
            issues(&row.errors),
            issues(&row.warnings),
        );
        let mut line = String::new();
        csv_line(
            // The values the import read (an export's `'` escape removed;
            // `csv_line` puts it back where a spreadsheet needs it).
            self.kept
                .iter()
                .map(|&index| cells.get(index).map_or("", |cell| unescape_cell(cell)))
                .chain([
                    line_text.as_str(),
                    outcome.as_str_name().trim_start_matches("ROW_OUTCOME_"),
                    &row.user_id,
                    &errors,
                    &warnings,
                ]),
            ',',
            &mut line,
        );
        self.file.write_all(line.as_bytes()).await?;
        Ok(())
    }
}

fn progress_bar(total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn rate_message(results: &ResultsFile, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    format!(
        "{} rows, {:.0} rows/s, {} failed",
        results.rows,
        results.rows as f64 / seconds,
        results.failed
    )
}

fn print_summary(summary: &ImportSummary, results: &ResultsFile, dry_run: bool) {
    let counts = summary.counts.unwrap_or_default();
    let status = proto::ImportJobStatus::try_from(summary.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("IMPORT_JOB_STATUS_")
                .to_owned()
        })
        .unwrap_or_default();
    println!(
        "job {} {status}{}",
        summary.job_id,
        if dry_run { " (review only)" } else { "" }
    );
    println!(
        "rows {}  created {}  updated {}  deleted {}  unchanged {}  skipped {}  valid {}  failed {}",
        counts.rows,
        counts.created,
        counts.updated,
        counts.deleted,
        counts.unchanged,
        counts.skipped,
        counts.valid,
        counts.failed
    );
    if !summary.failure_message.is_empty() {
        println!("{}", summary.failure_message);
    }
    if !summary.report_delivery.is_empty() {
        println!("{}", summary.report_delivery);
    }
    println!(
        "results: {}{}",
        results.path.display(),
        if results.failed_only {
            " (failed rows only)"
        } else {
            ""
        }
    );
}

/// Runs `roster import`; returns whether every row succeeded.
pub async fn import(connection: &Connection, request: ImportRequest) -> Result<bool> {
    if let Some(job_id) = &request.resume {
        return resume(connection, &request.file, job_id, request.failed_only).await;
    }
    let mut file = tokio::fs::File::open(&request.file)
        .await
        .with_context(|| format!("cannot read {}", request.file.display()))?;
    let total = file.metadata().await?.len();
    let mut options = request.options.clone();
    if options.file_name.is_empty() {
        options.file_name = request
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    let bar = progress_bar(total);
    // The file streams from disk in 64 KiB chunks while results come back.
    let (chunks, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let sent_bar = bar.clone();
    let reader = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 || chunks.send(buffer[..read].to_vec()).await.is_err() {
                return Ok::<_, std::io::Error>(());
            }
            sent_bar.inc(read as u64);
        }
    });
    let mut results = ResultsFile::create(&request.file, request.failed_only).await?;
    let started = Instant::now();
    let mut client = connection.imports().await?;
    let chunks = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let summary = if request.dry_run {
        use futures::StreamExt;
        let messages = futures::stream::iter([validate_import_request::Message::Options(options)])
            .chain(chunks.map(validate_import_request::Message::Chunk))
            .map(|m| proto::ValidateImportRequest { message: Some(m) });
        let response = client.validate_import(messages).await?;
        let job_id = job_id_of(response.metadata());
        let stream = response.into_inner().map(|m| {
            m.map(|m| match m.message {
                Some(validate_import_response::Message::Row(row)) => Answer::Row(row),
                Some(validate_import_response::Message::Summary(summary)) => {
                    Answer::Summary(summary)
                }
                None => Answer::Nothing,
            })
        });
        read_results(&mut results, &bar, started, &job_id, stream).await?
    } else {
        use futures::StreamExt;
        let messages = futures::stream::iter([import_users_request::Message::Options(options)])
            .chain(chunks.map(import_users_request::Message::Chunk))
            .map(|m| proto::ImportUsersRequest { message: Some(m) });
        let response = client.import_users(messages).await?;
        let job_id = job_id_of(response.metadata());
        let stream = response.into_inner().map(|m| {
            m.map(|m| match m.message {
                Some(import_users_response::Message::Row(row)) => Answer::Row(row),
                Some(import_users_response::Message::Summary(summary)) => Answer::Summary(summary),
                None => Answer::Nothing,
            })
        });
        read_results(&mut results, &bar, started, &job_id, stream).await?
    };
    reader.abort();
    bar.finish_and_clear();
    results.file.flush().await?;
    print_summary(&summary, &results, request.dry_run);
    Ok(summary.counts.unwrap_or_default().failed == 0
        && summary.status == proto::ImportJobStatus::Succeeded as i32)
}

fn job_id_of(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get(JOB_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// One answer of an import stream.
enum Answer {
    Row(ImportRowResult),
    Summary(ImportSummary),
    Nothing,
}

/// Reads rows into the results file until the summary; a lost connection
/// tells how to resume.
async fn read_results(
    results: &mut ResultsFile,
    bar: &ProgressBar,
    started: Instant,
    job_id: &str,
    mut stream: impl futures::Stream<Item = Result<Answer, Status>> + Unpin,
) -> Result<ImportSummary> {
    use futures::StreamExt;
    loop {
        match stream.next().await {
            Some(Ok(Answer::Row(row))) => {
                results.write(&row).await?;
                bar.set_message(rate_message(results, started));
            }
            Some(Ok(Answer::Summary(summary))) => return Ok(summary),
            Some(Ok(Answer::Nothing)) => {}
            None => bail!("the server ended the stream without a summary"),
            Some(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                bar.finish_and_clear();
                bail!("the file was refused: {}", describe(&status));
            }
            Some(Err(status)) => {
                bar.finish_and_clear();
                bail!(
                    "the connection was lost ({}); the job goes on or ends INTERRUPTED on the server. \
                     Read its results with: roster import --resume {job_id} FILE",
                    status.message()
                );
            }
        }
    }
}

/// A status with its field violations, one per line.
fn describe(status: &Status) -> String {
    use tonic_types::StatusExt;
    let mut text = status.message().to_owned();
    if let Some(bad_request) = status.get_details_bad_request() {
        for violation in bad_request.field_violations {
            text.push_str(&format!(
                "\n  {}: {}",
                violation.field, violation.description
            ));
        }
    }
    text
}

/// Waits for a job to end and writes all its results.
async fn resume(
    connection: &Connection,
    file: &Path,
    job_id: &str,
    failed_only: bool,
) -> Result<bool> {
    let mut client = connection.imports().await?;
    let job = loop {
        let job = client
            .get_import_job(proto::GetImportJobRequest {
                job_id: job_id.to_owned(),
            })
            .await?
            .into_inner()
            .job
            .context("the server sent no job")?;
        if job.status != proto::ImportJobStatus::Running as i32 {
            break job;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut results = ResultsFile::create(file, failed_only).await?;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_import_row_results(proto::ListImportRowResultsRequest {
                job_id: job_id.to_owned(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for row in &page.rows {
            results.write(row).await?;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    results.file.flush().await?;
    let summary = ImportSummary {
        job_id: job.id,
        status: job.status,
        counts: job.counts,
        failure_message: job.failure_message,
        report_delivery: job.report_delivery,
    };
    print_summary(
        &summary,
        &results,
        job.kind == proto::ImportJobKind::Validate as i32,
    );
    Ok(summary.counts.unwrap_or_default().failed == 0
        && summary.status == proto::ImportJobStatus::Succeeded as i32)
}

/// Runs `roster export`: the CSV to `output` (or stdout).
pub async fn export(
    connection: &Connection,
    request: proto::ExportUsersRequest,
    output: Option<PathBuf>,
) -> Result<()> {
    let mut stream = connection
        .users()
        .await?
        .export_users(request)
        .await
        .map_err(|status| anyhow::anyhow!(describe(&status)))?
        .into_inner();
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    while let Some(message) = stream
        .message()
        .await
        .map_err(|status| anyhow::anyhow!(describe(&status)))?
    {
        out.write_all(&message.chunk).await?;
    }
    out.flush().await?;
    Ok(())
}
