//! Traces over OTLP: `roster serve --otlp-endpoint` exports a server span per
//! call, continuing the caller's W3C `traceparent`, with a span per SQL
//! statement under it, to an OTLP receiver the test runs itself. Background
//! work (an import job, a delivery batch) has a span its statements are under.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, KeyValue},
    trace::v1::{span::SpanKind, Span},
};
use roster::{
    domain::{
        api_key::{self, NewApiKey},
        call::Via,
        caller::{Actor, Scope},
        organization,
    },
    proto::{
        self, import_service_client::ImportServiceClient, import_users_request,
        user_service_client::UserServiceClient,
    },
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{transport::Channel, Request, Response, Status};

use crate::cli::{free_port, roster, serve_with};

const CALLER_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_ID: &str = "b7ad6b7169203331";
const REQUEST_ID: &str = "roster.request_id";

/// A span as the receiver got it, with the service.name of its resource.
struct Received {
    service_name: Option<String>,
    span: Span,
}

/// An OTLP/gRPC trace receiver on a free loopback port; keeps every span.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| string_attribute(&resource.attributes, "service.name"));
            for scope_spans in resource_spans.scope_spans {
                received.extend(scope_spans.spans.into_iter().map(|span| Received {
                    service_name: service_name.clone(),
                    span,
                }));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves until the test ends; returns the endpoint URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{address}")
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(value) => Some(value.clone()),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An organization and its ADMIN key in the database at `url`; the key's secret.
async fn admin_key(url: &str) -> String {
    let pool = roster::store::Pool::from(sqlx::PgPool::connect(url).await.unwrap());
    let organization = organization::create_organization(&pool, "acme", Actor::Operator)
        .await
        .unwrap();
    let new_key = NewApiKey::parse("ops", &[Some(Scope::Admin)], None, "").unwrap();
    let (_, secret) = api_key::create_api_key(
        &pool,
        organization.id,
        Actor::Operator,
        None,
        Via::Cli,
        &new_key,
    )
    .await
    .unwrap();
    pool.close().await;
    secret.unwrap().expose().to_owned()
}

/// `message` with these headers (metadata).
fn request<T>(message: T, headers: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in headers {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

/// The server span of the call with this request id.
fn server_span<'a>(received: &'a [Received], request_id: &str) -> &'a Received {
    received
        .iter()
        .find(|received| {
            received.span.kind == SpanKind::Server as i32
                && string_attribute(&received.span.attributes, REQUEST_ID).as_deref()
                    == Some(request_id)
        })
        .unwrap_or_else(|| panic!("no server span with request id {request_id}"))
}

/// The spans under `parent`, each checked to be an SQL statement of the
/// same call that ran within it.
fn sql_statements_under<'a>(received: &'a [Received], parent: &Span) -> Vec<&'a Span> {
    let request_id = string_attribute(&parent.attributes, REQUEST_ID);
    let statements: Vec<&Span> = received
        .iter()
        .map(|received| &received.span)
        .filter(|span| span.parent_span_id == parent.span_id)
        .collect();
    for statement in &statements {
        let attributes = &statement.attributes;
        let name = &statement.name;
        assert_eq!(
            string_attribute(attributes, "db.system").as_deref(),
            Some("postgresql"),
            "{name}"
        );
        assert_eq!(
            string_attribute(attributes, REQUEST_ID),
            request_id,
            "{name}"
        );
        assert_eq!(statement.kind, SpanKind::Client as i32, "{name}");
        assert_eq!(statement.trace_id, parent.trace_id, "{name}");
        let sql = string_attribute(attributes, "db.statement").unwrap_or_default();
        assert!(
            !name.is_empty() && sql.to_lowercase().starts_with(&name.to_lowercase()),
            "named after its first words: {name} / {sql}"
        );
        assert!(
            parent.start_time_unix_nano <= statement.start_time_unix_nano
                && statement.end_time_unix_nano <= parent.end_time_unix_nano,
            "{name} runs within the call"
        );
    }
    statements
}

/// The one span named `name` that has the `attribute`; panics unless there is one.
fn named_span<'a>(received: &'a [Received], name: &str, attribute: Option<&str>) -> &'a Span {
    let found: Vec<&Span> = received
        .iter()
        .map(|received| &received.span)
        .filter(|span| span.name == name)
        .filter(|span| string_attribute(&span.attributes, REQUEST_ID).as_deref() == attribute)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} span with request id {attribute:?}"
    );
    found[0]
}

/// Beyond the key lookup of authentication, the call's own work is traced.
fn assert_reads_users(statements: &[&Span]) {
    assert!(
        statements
            .iter()
            .any(|statement| statement.name.to_lowercase().starts_with("select users.")),
        "the users are read in the call: {:?}",
        statements.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

// The server runs as a child process (its own global subscriber and
// exporter); this test only waits on it and serves the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_traced_under_the_callers_trace_with_a_child_span_per_sql_statement() {
    let Some(url) = crate::helpers::fresh_database_url().await else {
        eprintln!("skipped: the test database server is the one DATABASE_URL names");
        return;
    };
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let bearer = format!("Bearer {}", admin_key(&url).await);
    let data_dir = tempfile::tempdir().unwrap();
    // RUST_LOG=info (see `roster`) keeps sqlx's statement events out of
    // the logs: the traces must get them all the same.
    let mut command = roster(data_dir.path());
    command
        .env("DATABASE_URL", &url)
        .env_remove("OTEL_SERVICE_NAME");
    let served = serve_with(
        command,
        free_port(),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &endpoint,
            "--log-format",
            "json",
        ],
    );
    let users_channel = Channel::from_shared(served.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut users = UserServiceClient::new(users_channel.clone());
    let authorization = ("authorization", bearer.as_str());

    let caller = format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01");
    let list = proto::ListUsersRequest::default();
    let headers = [
        authorization,
        ("x-request-id", "traced-call"),
        ("traceparent", caller.as_str()),
    ];
    users
        .list_users(request(list.clone(), &headers))
        .await
        .unwrap();
    // A traceparent that cannot be parsed starts a new trace; the call goes on.
    let headers = [
        authorization,
        ("x-request-id", "badly-parented-call"),
        ("traceparent", "00-not-a-trace-01"),
    ];
    users.list_users(request(list, &headers)).await.unwrap();
    // A server stream: its statements run in a task of their own.
    let export = proto::ExportUsersRequest {
        delimiter: ",".into(),
        ..Default::default()
    };
    let headers = [authorization, ("x-request-id", "exported-call")];
    let mut chunks = users
        .export_users(request(export, &headers))
        .await
        .unwrap()
        .into_inner();
    while chunks.message().await.unwrap().is_some() {}
    // An import: its job runs in a task of its own, and its invitations go
    // out in a batch of the delivery worker.
    let import = [
        proto::ImportUsersRequest {
            message: Some(import_users_request::Message::Options(
                proto::ImportOptions {
                    send_invitations: Some(true),
                    ..Default::default()
                },
            )),
        },
        proto::ImportUsersRequest {
            message: Some(import_users_request::Message::Chunk(
                b"first_name,last_name,email\nAda,Traced,ada@acme.com\nBob,Traced,bob@acme.com\n"
                    .to_vec(),
            )),
        },
    ];
    let headers = [authorization, ("x-request-id", "imported-call")];
    let mut imports = ImportServiceClient::new(users_channel.clone());
    let mut answers = imports
        .import_users(request(tokio_stream::iter(import), &headers))
        .await
        .unwrap()
        .into_inner();
    while answers.message().await.unwrap().is_some() {}
    crate::helpers::eventually("the invitations sent", Duration::from_secs(15), || async {
        served.logged(&[r#""message":"email sent""#])
    })
    .await;
    // The JSON logs keep the request id of each call.
    crate::helpers::eventually("the call's log line", Duration::from_secs(10), || async {
        served.logged(&[
            r#""message":"rpc finished""#,
            r#""request_id":"traced-call""#,
        ])
    })
    .await;
    // Stopping flushes the spans still buffered: all of them are in by exit.
    served.stop(nix::sys::signal::Signal::SIGTERM);
    let received = receiver.take();

    let call = server_span(&received, "traced-call");
    assert_eq!(call.service_name.as_deref(), Some("roster"));
    let call = &call.span;
    assert_eq!(call.name, "roster.v1.UserService/ListUsers");
    assert_eq!(hex(&call.trace_id), CALLER_TRACE_ID);
    assert_eq!(hex(&call.parent_span_id), CALLER_SPAN_ID);
    let attributes = &call.attributes;
    assert_eq!(
        string_attribute(attributes, "rpc.system").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        string_attribute(attributes, "rpc.service").as_deref(),
        Some("roster.v1.UserService")
    );
    assert_eq!(
        string_attribute(attributes, "rpc.method").as_deref(),
        Some("ListUsers")
    );
    assert_eq!(int_attribute(attributes, "rpc.grpc.status_code"), Some(0));
    assert_reads_users(&sql_statements_under(&received, call));

    let badly_parented = &server_span(&received, "badly-parented-call").span;
    assert!(badly_parented.parent_span_id.is_empty(), "a new trace");
    assert_ne!(hex(&badly_parented.trace_id), CALLER_TRACE_ID);
    assert!(!sql_statements_under(&received, badly_parented).is_empty());

    let exported = &server_span(&received, "exported-call").span;
    assert_eq!(exported.name, "roster.v1.UserService/ExportUsers");
    assert_reads_users(&sql_statements_under(&received, exported));

    // The import job's statements are under its span, in the call's trace.
    let imported = &server_span(&received, "imported-call").span;
    assert_eq!(imported.name, "roster.v1.ImportService/ImportUsers");
    let job = named_span(&received, "import job", Some("imported-call"));
    assert_eq!(job.trace_id, imported.trace_id);
    assert_eq!(job.parent_span_id, imported.span_id);
    assert!(string_attribute(&job.attributes, "job_id").is_some());
    let job_statements = sql_statements_under(&received, job);
    assert!(
        job_statements.iter().any(|statement| statement
            .name
            .to_lowercase()
            .starts_with("insert into users")),
        "the job writes the users: {:?}",
        job_statements.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // A delivery batch starts a trace of its own.
    let batches: Vec<&Span> = received
        .iter()
        .map(|received| &received.span)
        .filter(|span| span.name == "delivery batch")
        .collect();
    assert!(!batches.is_empty(), "a delivery batch span");
    for batch in &batches {
        assert!(batch.parent_span_id.is_empty(), "a trace of its own");
        assert!(!sql_statements_under(&received, batch).is_empty());
    }

    // Statements outside calls and background work's spans (startup, the
    // polls that find nothing) are not traced.
    for received in &received {
        let span = &received.span;
        if span.kind == SpanKind::Client as i32 {
            assert!(
                string_attribute(&span.attributes, REQUEST_ID).is_some()
                    || batches
                        .iter()
                        .any(|batch| batch.span_id == span.parent_span_id),
                "{}",
                span.name
            );
        }
    }
}

#[test]
fn an_otlp_endpoint_that_is_not_an_http_url_is_refused_naming_the_flag() {
    let data_dir = tempfile::tempdir().unwrap();
    for endpoint in ["collector:4317", "grpc://127.0.0.1:4317", "http://"] {
        let output = roster(data_dir.path())
            .args(["serve", "--otlp-endpoint", endpoint])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{endpoint}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--otlp-endpoint"), "{endpoint}: {stderr}");
    }
}
