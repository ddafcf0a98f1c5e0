//! Prometheus metrics: one registry per server (tests run many servers in
//! one process, and each must see its own numbers), served as the classic
//! text format at `/metrics` on `--metrics-listen`.
//!
//! Counters are bumped where things happen (the RPC layer, the sign-in
//! throttle, the import's batches); gauges of the pool, the password hash
//! queue and the database backlog are read when Prometheus scrapes.

use std::{sync::Arc, time::Duration};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::domain::{
    import::job::{Counts, Outcome},
    password::PasswordHasher,
};
use crate::store::Pool;

/// The gRPC families under the names grpc-ecosystem's Go interceptors
/// (go-grpc-middleware providers/prometheus) give them, so that existing
/// dashboards work. The histogram also has `grpc_code`, for latency by code.
#[derive(Clone)]
pub struct RpcFamilies {
    pub started: IntCounterVec,
    pub handled: IntCounterVec,
    pub received: IntCounterVec,
    pub sent: IntCounterVec,
    pub handling: HistogramVec,
}

const METHOD_LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];
const METHOD_AND_CODE_LABELS: [&str; 4] = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"];

impl RpcFamilies {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let family = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(family.clone()))?;
            Ok::<_, prometheus::Error>(family)
        };
        let handling = HistogramVec::new(
            // The Go library's default buckets (prometheus.DefBuckets), which are the crate's too.
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            ),
            &METHOD_AND_CODE_LABELS,
        )?;
        registry.register(Box::new(handling.clone()))?;
        Ok(Self {
            started: counter(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &METHOD_LABELS,
            )?,
            handled: counter(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &METHOD_AND_CODE_LABELS,
            )?,
            received: counter(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                &METHOD_LABELS,
            )?,
            sent: counter(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                &METHOD_LABELS,
            )?,
            handling,
        })
    }
}

/// Failed and throttled sign-in checks, by flow.
#[derive(Clone)]
pub struct SignInCounters {
    failures: IntCounterVec,
    throttled: IntCounterVec,
}

impl SignInCounters {
    /// The flows' label values; each series exists from the start, at zero.
    pub const FLOWS: [&'static str; 4] = [
        "login",
        "password_reset",
        "change_password",
        "second_factor",
    ];

    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let family = |name: &str, help: &str| {
            let family = IntCounterVec::new(Opts::new(name, help), &["flow"])?;
            for flow in Self::FLOWS {
                family.with_label_values(&[flow]);
            }
            registry.register(Box::new(family.clone()))?;
            Ok::<_, prometheus::Error>(family)
        };
        Ok(Self {
            failures: family(
                "roster_sign_in_failures_total",
                "Password checks that failed: wrong password, unknown account or organization.",
            )?,
            throttled: family(
                "roster_sign_in_throttled_total",
                "Sign-in attempts and reset requests the throttle held back.",
            )?,
        })
    }

    pub fn failed(&self, flow: &str) {
        self.failures.with_label_values(&[flow]).inc();
    }

    pub fn throttled(&self, flow: &str) {
        self.throttled.with_label_values(&[flow]).inc();
    }
}

/// Import rows by the outcome their committed batch recorded, labelled as
/// `import_rows.outcome` spells it (`CREATED`, `FAILED`, ...).
#[derive(Clone)]
pub struct ImportRowCounters(IntCounterVec);

impl ImportRowCounters {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let family = IntCounterVec::new(
            Opts::new(
                "roster_import_rows_total",
                "Import and review rows decided, by outcome, once their batch committed.",
            ),
            &["outcome"],
        )?;
        for outcome in Outcome::ALL {
            family.with_label_values(&[outcome.as_str()]);
        }
        registry.register(Box::new(family.clone()))?;
        Ok(Self(family))
    }

    pub fn add(&self, counts: &Counts) {
        for &outcome in Outcome::ALL {
            let rows = counts.of_outcome(outcome);
            if rows > 0 {
                self.0
                    .with_label_values(&[outcome.as_str()])
                    .inc_by(rows as u64);
            }
        }
    }
}

/// Gauges set when Prometheus scrapes.
struct ScrapedGauges {
    pool_connections: IntGaugeVec,
    pool_max_connections: IntGauge,
    password_hash_queue_depth: IntGauge,
    outbox_pending: IntGauge,
    outbox_oldest_pending_age: Gauge,
    outbox_failed: IntGauge,
    import_running_jobs: IntGauge,
}

/// The families read from the database: left out of a scrape when the read
/// fails, so that Prometheus sees them go missing instead of a stale number.
const DATABASE_FAMILIES: [&str; 4] = [
    "roster_outbox_pending_messages",
    "roster_outbox_oldest_pending_age_seconds",
    "roster_outbox_failed_messages",
    "roster_import_running_jobs",
];

impl ScrapedGauges {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok::<_, prometheus::Error>(gauge)
        };
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "roster_db_pool_connections",
                "Connections of the database pool, in use by a call or idle, and callers waiting for one.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(pool_connections.clone()))?;
        let outbox_oldest_pending_age = Gauge::new(
            DATABASE_FAMILIES[1],
            "Age of the oldest email waiting in the outbox; 0 when none waits.",
        )?;
        registry.register(Box::new(outbox_oldest_pending_age.clone()))?;
        Ok(Self {
            pool_connections,
            pool_max_connections: gauge(
                "roster_db_pool_max_connections",
                "The most connections the database pool opens.",
            )?,
            password_hash_queue_depth: gauge(
                "roster_password_hash_queue_depth",
                "Password checks admitted and waiting for a hashing thread.",
            )?,
            outbox_pending: gauge(
                DATABASE_FAMILIES[0],
                "Emails waiting in the outbox, all organizations.",
            )?,
            outbox_oldest_pending_age,
            outbox_failed: gauge(
                DATABASE_FAMILIES[2],
                "Emails the delivery worker gave up on, all organizations.",
            )?,
            import_running_jobs: gauge(
                DATABASE_FAMILIES[3],
                "Import and review jobs running, on any server.",
            )?,
        })
    }
}

pub struct Metrics {
    registry: Registry,
    pub rpc: RpcFamilies,
    pub sign_in: SignInCounters,
    pub import_rows: ImportRowCounters,
    scraped: ScrapedGauges,
}

/// How long a scrape waits for the database before it leaves its families out.
const DATABASE_READ_TIMEOUT: Duration = Duration::from_secs(2);

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "roster_build_info",
                "The running Roster's version; always 1.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        Ok(Self {
            rpc: RpcFamilies::register(&registry)?,
            sign_in: SignInCounters::register(&registry)?,
            import_rows: ImportRowCounters::register(&registry)?,
            scraped: ScrapedGauges::register(&registry)?,
            registry,
        })
    }

    /// Reads the gauges, then renders every family in the text format.
    pub async fn render(&self, sources: &ScrapeSources) -> String {
        let gauges = &self.scraped;
        let idle = sources.pool.num_idle() as i64;
        let open = i64::from(sources.pool.size());
        gauges
            .pool_connections
            .with_label_values(&["in_use"])
            .set(open - idle);
        gauges
            .pool_connections
            .with_label_values(&["idle"])
            .set(idle);
        gauges
            .pool_connections
            .with_label_values(&["waiting"])
            .set(sources.pool.waiting() as i64);
        gauges
            .pool_max_connections
            .set(i64::from(sources.pool.max_connections()));
        gauges
            .password_hash_queue_depth
            .set(sources.hasher.queue_depth() as i64);
        let backlog = tokio::time::timeout(
            DATABASE_READ_TIMEOUT,
            crate::store::metrics::backlog(&sources.pool),
        )
        .await;
        let database_read = match backlog {
            Ok(Ok(backlog)) => {
                gauges.outbox_pending.set(backlog.outbox_pending);
                gauges
                    .outbox_oldest_pending_age
                    .set(backlog.outbox_oldest_pending_seconds);
                gauges.outbox_failed.set(backlog.outbox_failed);
                gauges.import_running_jobs.set(backlog.running_import_jobs);
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot read the outbox and import gauges");
                false
            }
            Err(_) => {
                tracing::warn!("reading the outbox and import gauges timed out");
                false
            }
        };
        let mut families = self.registry.gather();
        if !database_read {
            families.retain(|family| !DATABASE_FAMILIES.contains(&family.name()));
        }
        TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|error| {
                tracing::error!(error = %error, "cannot encode the metrics");
                String::new()
            })
    }
}

/// What the scrape-time gauges are read from.
#[derive(Clone)]
pub struct ScrapeSources {
    pub metrics: Arc<Metrics>,
    pub pool: Pool,
    pub hasher: Arc<PasswordHasher>,
}

/// `GET /metrics`, for the metrics listener.
pub fn router(sources: ScrapeSources) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(sources)
}

async fn scrape(State(sources): State<ScrapeSources>) -> impl IntoResponse {
    let text = sources.metrics.render(&sources).await;
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text)
}
