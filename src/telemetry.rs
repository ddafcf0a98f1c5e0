//! Structured logs on stderr, human-readable by default or JSON, and, with
//! an OTLP endpoint, traces: a span per RPC and per SQL statement.

pub mod traces;

use std::io::IsTerminal;

use anyhow::Result;
use clap::ValueEnum;
use tracing_subscriber::{
    fmt::{self, writer::BoxMakeWriter},
    layer::SubscriberExt,
    util::SubscriberInitExt,
    EnvFilter, Layer, Registry,
};

pub use traces::TraceSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where logs go: stderr, written by the caller's thread, or by a thread of
/// their own (a server: a call's log line costs no system call of its
/// worker, and lines logged together go out in one write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriting {
    Direct,
    Buffered,
}

/// What `init` started that must be stopped: the trace exporter and the
/// thread writing the logs.
#[must_use = "shut it down, or the last spans and log lines are lost"]
pub struct Telemetry {
    traces: Option<traces::Exporter>,
    logs: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Exports the spans still buffered (waits a bounded time for the
    /// collector) and writes the log lines still queued.
    pub async fn shutdown(self) {
        if let Some(exporter) = self.traces {
            exporter.shutdown().await;
        }
        drop(self.logs);
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter`,
/// for the logs only: traces have their own filter, so SQL statements are
/// traced while the logs leave them out. Must run inside the Tokio runtime
/// when traces are exported (the gRPC exporter's channel lives there).
pub fn init(
    format: LogFormat,
    writing: LogWriting,
    default_filter: &str,
    traces: &TraceSettings,
) -> Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (stderr, guard) = match writing {
        LogWriting::Direct => (BoxMakeWriter::new(std::io::stderr), None),
        LogWriting::Buffered => {
            // The thread writes what is queued, then flushes: one write per
            // burst. A full queue (128,000 lines) makes loggers wait rather
            // than lose lines.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("roster-logs")
                .finish(std::io::BufWriter::new(std::io::stderr()));
            (BoxMakeWriter::new(writer), Some(guard))
        }
    };
    let logs = match format {
        // Colours only for a person at a terminal: journald and log files
        // would keep the escape codes.
        LogFormat::Human => fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(stderr)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(stderr)
            .boxed(),
    }
    .with_filter(filter);
    let exporter = traces::Exporter::start(traces)?;
    let subscriber = Registry::default()
        .with(logs)
        .with(exporter.as_ref().map(traces::Exporter::layers));
    // A second initialization (tests) keeps the first subscriber.
    if subscriber.try_init().is_err() {
        return Ok(Telemetry {
            traces: None,
            logs: None,
        });
    }
    if exporter.is_some() {
        traces::mark_exporting();
    }
    Ok(Telemetry {
        traces: exporter,
        logs: guard,
    })
}
