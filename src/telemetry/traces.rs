//! Traces over OTLP/gRPC. The `rpc` span of every call becomes the call's
//! server span, continuing the caller's W3C `traceparent`, and every SQL
//! statement run inside it becomes a child span. Background work has spans
//! of its own, which its statements are children of: an import job's span
//! is a child of the call that started it, a delivery batch's starts a
//! trace. Without an endpoint none of this is installed and calls pay one
//! relaxed load of a flag.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _, Result};
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _},
    Context, KeyValue,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider},
    Resource,
};
use tracing::{field::Field, Event, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::Targets,
    layer::{self, Layer},
    registry::LookupSpan,
};

/// The attribute that carries the call's request id on each of its spans.
pub const REQUEST_ID_ATTRIBUTE: &str = "roster.request_id";

/// sqlx logs one event per statement under this target (sqlx-core's `QueryLogger`).
const SQLX_STATEMENT_TARGET: &str = "sqlx::query";

/// How long `roster serve` waits at exit for the collector to take the last spans.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TraceSettings {
    /// Export traces (a span per RPC and per SQL statement) over OTLP/gRPC
    /// to this collector, e.g. http://127.0.0.1:4317 (https:// checks its
    /// certificate against the system's CAs). Unset: no traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The service.name of the exported traces.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "roster")]
    pub otel_service_name: String,
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(super) fn mark_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether this process exports traces: per-call trace work is skipped otherwise.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The tracer provider and its batch exporter.
pub(super) struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// `None` without an endpoint.
    pub(super) fn start(settings: &TraceSettings) -> Result<Option<Self>> {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok(None);
        };
        check_endpoint(endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .with_context(|| format!("--otlp-endpoint {endpoint}: cannot export traces there"))?;
        let resource = Resource::builder()
            .with_service_name(settings.otel_service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider }))
    }

    /// Roster's spans through tracing-opentelemetry, and sqlx's statement
    /// events as spans; each with its own filter, whatever the logs filter.
    pub(super) fn layers<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.provider.tracer("roster");
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer.clone())
            .with_filter(Targets::new().with_target("roster", Level::INFO));
        let statements = SqlStatementSpans { tracer }
            .with_filter(Targets::new().with_target(SQLX_STATEMENT_TARGET, Level::TRACE));
        spans.and_then(statements)
    }

    /// Exports what is buffered. Blocking, so off the runtime's workers,
    /// whose reactor the gRPC export needs meanwhile.
    pub(super) async fn shutdown(self) {
        let provider = self.provider;
        let shutdown =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match shutdown {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = %error, "cannot export the last spans"),
            Err(error) => tracing::warn!(error = %error, "cannot export the last spans"),
        }
    }
}

fn check_endpoint(endpoint: &str) -> Result<()> {
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("--otlp-endpoint {endpoint:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => bail!(
            "--otlp-endpoint must be an http:// or https:// URL with a host, \
             like http://127.0.0.1:4317; got {endpoint:?}"
        ),
    }
}

/// Marks the OpenTelemetry context of a call's server span or of a
/// background work's span, so that the statements under it are traced; with
/// the request id of the call (that started the work), which they carry too.
struct TracedWork {
    request_id: Option<String>,
}

/// Makes `span` the server span of the gRPC call to `path`
/// (`/roster.v1.UserService/GetUser`): named the gRPC way and a child of
/// the caller's span when the headers carry a valid W3C `traceparent` (an
/// invalid one is ignored: the call starts a new trace).
pub fn start_server_span(
    span: &tracing::Span,
    headers: &http::HeaderMap,
    path: &str,
    request_id: &str,
) {
    if !exporting() {
        return;
    }
    let full_method = path.trim_start_matches('/');
    let (service, method) = full_method.split_once('/').unwrap_or((full_method, ""));
    span.record("otel.name", full_method);
    span.record("otel.kind", "server");
    let caller = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only for a span the trace filter left out: nothing to continue then.
    let _ = span.set_parent(caller.with_value(TracedWork {
        request_id: Some(request_id.to_owned()),
    }));
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", service.to_owned());
    span.set_attribute("rpc.method", method.to_owned());
    span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id.to_owned());
}

/// Makes `span`, made inside the span of the call with `request_id`, the
/// span of work that call started and that may outlive it (an import job):
/// a child of the call's span, in its trace, carrying its request id.
pub fn start_call_work_span(span: &tracing::Span, request_id: &str) {
    if !exporting() {
        return;
    }
    span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id.to_owned());
}

/// Makes `span` the first span of a trace of background work of its own
/// (a delivery batch), whose statements are traced under it.
pub fn start_background_span(span: &tracing::Span) {
    if !exporting() {
        return;
    }
    // Fails only for a span the trace filter left out: nothing to trace then.
    let _ = span.set_parent(Context::new().with_value(TracedWork { request_id: None }));
}

/// Records the call's final status on its server span; the codes that say
/// the server failed mark the span as an error (OpenTelemetry's gRPC rules).
pub fn end_server_span(span: &tracing::Span, code: tonic::Code) {
    if !exporting() {
        return;
    }
    span.set_attribute("rpc.grpc.status_code", code as i64);
    use tonic::Code::*;
    if matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    ) {
        span.set_status(Status::error(code.description()));
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Turns sqlx's event per statement, sent when the statement is done, into
/// a client span under the call's or the background work's span that
/// started `elapsed` before it. Statements outside both are not traced.
struct SqlStatementSpans {
    tracer: SdkTracer,
}

impl<S: Subscriber> Layer<S> for SqlStatementSpans {
    fn on_event(&self, event: &Event<'_>, _: layer::Context<'_, S>) {
        // tracing-opentelemetry makes the entered span's context current.
        let parent = Context::current();
        let Some(work) = parent.get::<TracedWork>() else {
            return;
        };
        let mut statement = SqlxStatement::default();
        event.record(&mut statement);
        let end = SystemTime::now();
        let start = end.checked_sub(statement.elapsed).unwrap_or(end);
        let mut attributes = vec![
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.statement", statement.text()),
            KeyValue::new("db.response.returned_rows", statement.rows_returned),
            KeyValue::new("roster.db.rows_affected", statement.rows_affected),
        ];
        if let Some(request_id) = &work.request_id {
            attributes.push(KeyValue::new(REQUEST_ID_ATTRIBUTE, request_id.clone()));
        }
        self.tracer
            .span_builder(statement.name())
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent)
            .end_with_timestamp(end);
    }
}

/// The fields of sqlx-core 0.8's statement event: `summary` (the first four
/// words, with " …" when cut), `db.statement` (the whole SQL when cut, else
/// empty), `rows_affected`, `rows_returned` and `elapsed_secs`.
#[derive(Default)]
struct SqlxStatement {
    summary: String,
    sql: String,
    rows_affected: i64,
    rows_returned: i64,
    elapsed: Duration,
}

impl SqlxStatement {
    fn name(&self) -> String {
        self.summary.trim_end_matches(" …").to_owned()
    }

    fn text(&self) -> String {
        match self.sql.trim() {
            "" => self.summary.clone(),
            sql => sql.to_owned(),
        }
    }
}

impl tracing::field::Visit for SqlxStatement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.sql = value.to_owned(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = Duration::try_from_secs_f64(value).unwrap_or_default();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}
