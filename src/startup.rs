//! Builds the gRPC server (services, layers, health, reflection) and runs it
//! until a stop signal, then drains in-flight calls for a bounded time.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tonic::transport::{server::TcpIncoming, Server};
use tonic_reflection::server::{
    v1::{ServerReflection, ServerReflectionServer},
    v1alpha,
};
use uuid::Uuid;

use crate::{
    database_watch::{DatabaseWatch, DatabaseWatcher},
    delivery::{DeliverySettings, DeliveryWorker},
    domain::{
        auth_cache::follow_changes,
        authentication::{Authenticator, AUTH_CACHE_TTL},
        change_feed::{ChangeFeed, ChangeSettings},
        import::run::{ImportSettings, Jobs},
        password::PasswordHasher,
        second_factor::{SecondFactors, SecretKey},
        sign_in::{SignIn, ThrottleSettings},
    },
    grpc::{
        auth_layer::AuthLayer,
        boundary::{BoundaryLayer, RequestBoundary},
        database_gate,
        metrics_layer::MetricsLayer,
        middleware::middleware,
        request_log::RequestLogLayer,
        AuthHandler, ChangeHandler, GroupHandler, ImportHandler, OrganizationHandler, UserHandler,
    },
    metrics::{Metrics, ScrapeSources},
    proto::{
        auth_service_server::AuthServiceServer, change_service_server::ChangeServiceServer,
        group_service_server::GroupServiceServer, import_service_server::ImportServiceServer,
        organization_service_server::OrganizationServiceServer,
        user_service_server::UserServiceServer, FILE_DESCRIPTOR_SET,
    },
    scim::ScimState,
    store::Pool,
    tls::{ServerTls, TlsSettings},
};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Serve gRPC reflection (grpcurl without proto files).
    pub reflection: bool,
    /// How long in-flight calls may run on after a stop signal.
    pub shutdown_grace: Duration,
    pub import: ImportSettings,
    /// The outbox's delivery worker; `None` runs none (another replica delivers).
    pub delivery: Option<DeliverySettings>,
    pub passwords: PasswordSettings,
    pub throttle: ThrottleSettings,
    /// The longest an authenticated credential or a user's status and
    /// scopes are reused from memory. Changes evict them on every server as
    /// they commit; this bounds a change whose notification never came.
    pub auth_cache_ttl: Duration,
    /// The password pages' listener; `None` serves no pages.
    pub http_listen: Option<SocketAddr>,
    /// Where Prometheus scrapes `/metrics`; `None` serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve every listener over TLS with this certificate; `None` is plaintext.
    pub tls: Option<TlsSettings>,
    /// Allow plaintext on an address that is not loopback (behind a
    /// TLS-terminating proxy, say); without it such a server refuses to start.
    pub insecure_plaintext: bool,
    /// Seals second-factor seeds at rest; every replica needs the same one.
    /// `None`: nobody can enroll a second factor on this server.
    pub secret_key: Option<Arc<SecretKey>>,
    /// The change stream's retention and heartbeat.
    pub changes: ChangeSettings,
}

/// The bounded pool that hashes passwords.
#[derive(Debug, Clone, Copy)]
pub struct PasswordSettings {
    pub workers: usize,
    /// Calls that may wait for a worker; more are refused (RESOURCE_EXHAUSTED).
    pub queue: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            workers: PasswordHasher::default_workers(),
            queue: 64,
        }
    }
}

impl ServerSettings {
    /// Defaults around a gRPC address: reflection on, a 30 s grace, no delivery worker.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            reflection: true,
            shutdown_grace: Duration::from_secs(30),
            import: ImportSettings::default(),
            delivery: None,
            passwords: PasswordSettings::default(),
            throttle: ThrottleSettings::default(),
            auth_cache_ttl: AUTH_CACHE_TTL,
            http_listen: None,
            metrics_listen: None,
            tls: None,
            insecure_plaintext: false,
            secret_key: None,
            changes: ChangeSettings::default(),
        }
    }

    /// Refuses plaintext off loopback and a certificate or key that cannot
    /// be used, and gives the loaded certificate. `roster serve` calls it
    /// before the private cluster starts; `Application::build` calls it again
    /// and serves what it loads (the files are read as they are then).
    pub fn preflight(&self) -> Result<Option<ServerTls>> {
        self.refuse_plaintext_off_loopback()?;
        self.tls.as_ref().map(ServerTls::load).transpose()
    }

    /// Plaintext is for loopback only, unless the operator says otherwise.
    fn refuse_plaintext_off_loopback(&self) -> Result<()> {
        if self.tls.is_some() || self.insecure_plaintext {
            return Ok(());
        }
        let listeners = [
            ("gRPC", Some(self.listen)),
            ("the password pages", self.http_listen),
            ("the metrics", self.metrics_listen),
        ];
        for (what, address) in listeners {
            let Some(address) = address else { continue };
            if !address.ip().is_loopback() {
                bail!(
                    "refusing to serve {what} in plaintext on {address}, which is not a loopback address: \
                     give --tls-cert and --tls-key to serve TLS, or --insecure-plaintext \
                     (e.g. behind a proxy that terminates TLS)"
                );
            }
        }
        Ok(())
    }
}

/// HTTP/2 receive windows. h2 charges each small DATA frame it holds unread
/// (under 256 bytes) against a per-connection budget of half the connection
/// window, and ends the connection (GOAWAY `too_many_data_frames`) when it is
/// spent. An import paused by back-pressure leaves up to one stream window
/// unread: filled with one-byte chunks (8-byte gRPC messages, 248 charged
/// each) that is 31 × the window, so the connection window is 4 × 62 × the
/// stream window, enough for the running imports an organization may have.
/// (hyper's defaults, 1 MiB each, allow about 2,000 such frames.)
const STREAM_WINDOW_BYTES: u32 = 128 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 4 * 62 * STREAM_WINDOW_BYTES;

type HealthServer =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

type ServerFuture = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

pub struct Application {
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    server: ServerFuture,
    /// The reaper, the sweeps, the delivery worker, the pages and metrics servers: one
    /// of them ending while the server runs stops the server with an error.
    tasks: BackgroundTasks,
    stop_accepting: oneshot::Sender<()>,
    stopping: watch::Sender<bool>,
    shutdown_grace: Duration,
    tls: Option<ServerTls>,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and assembles the server.
    /// `pool` is this server's alone when its waiting callers are to be counted apart.
    pub async fn build(settings: &ServerSettings, pool: impl Into<Pool>) -> Result<Self> {
        let pool = pool.into();
        let tls = settings.preflight()?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::new().context("register the metrics")?);
        let authenticator = Arc::new(Authenticator::new(pool.clone(), settings.auth_cache_ttl));
        let mut tasks = BackgroundTasks::default();
        let (health, watcher, database) = health_service(&pool).await;
        tasks.spawn("the database watch", watcher.run());
        spawn_authentication_tasks(&mut tasks, &authenticator, &pool, &database);
        let jobs = Jobs {
            pool: pool.clone(),
            settings: Arc::new(settings.import.clone()),
            owner: Uuid::now_v7(),
            rows_decided: metrics.import_rows.clone(),
        };
        spawn_import_sweeps(&mut tasks, &jobs, &database);
        let changes = Arc::new(ChangeFeed::new(pool.clone(), settings.changes.clone()));
        spawn_change_tasks(&mut tasks, &changes, &database);
        let (stopping, stopping_rx) = watch::channel(false);
        let (sign_in, hasher) = start_sign_in(settings, &pool, &authenticator, &metrics)?;
        spawn_sign_in_sweep(&mut tasks, &sign_in, &database);
        let served = HttpServed {
            pages: sign_in.clone(),
            scim: ScimState::new(pool.clone(), authenticator.clone(), tls.is_some()),
            metrics: ScrapeSources {
                metrics: metrics.clone(),
                pool: pool.clone(),
                hasher,
            },
        };
        let (http_addr, metrics_addr) =
            serve_http_listeners(&mut tasks, settings, tls.as_ref(), served, &stopping_rx).await?;
        if let Some(delivery) = &settings.delivery {
            // Links lead to the pages where they were bound (port 0 included).
            let pages_url = http_addr.map(|pages| pages_url(tls.is_some(), pages));
            spawn_delivery_worker(
                &mut tasks,
                delivery,
                pages_url,
                &pool,
                &database,
                &stopping_rx,
            )?;
        }
        let services = Services {
            pool,
            health,
            database,
            authenticator,
            sign_in,
            import: ImportHandler::new(jobs, stopping_rx.clone()),
            metrics,
            changes,
            stopping: stopping_rx,
        };
        let (stop_accepting, stopped) = oneshot::channel::<()>();
        let server = grpc_server(settings, services, listener, tls.as_ref(), stopped).await?;
        Ok(Self {
            local_addr,
            http_addr,
            metrics_addr,
            server,
            tasks,
            stop_accepting,
            stopping,
            shutdown_grace: settings.shutdown_grace,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS material both listeners serve, to reload it (on SIGHUP);
    /// `None` when serving plaintext.
    pub fn tls(&self) -> Option<ServerTls> {
        self.tls.clone()
    }

    /// Where the password pages are served, if they are.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Serves until `stop` resolves, then stops accepting and gives in-flight
    /// calls up to the grace period to finish. A background task that ends
    /// first stops the server the same way and is returned as the error.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> Result<()> {
        let Self {
            mut server,
            mut tasks,
            stop_accepting,
            stopping,
            shutdown_grace,
            ..
        } = self;
        let task_died = tokio::select! {
            result = &mut server => return result.context("gRPC server failed"),
            () = stop => None,
            died = tasks.first_exit() => Some(died),
        };
        if let Some(died) = &task_died {
            tracing::error!(
                error = format!("{died:#}"),
                "a background task stopped; stopping the server"
            );
        }
        tracing::info!(
            grace_seconds = shutdown_grace.as_secs(),
            "stopping: no new calls, draining in-flight calls"
        );
        // Running imports end INTERRUPTED after their batch in progress, then their streams close.
        let _ = stopping.send(true);
        let _ = stop_accepting.send(());
        match tokio::time::timeout(shutdown_grace, server).await {
            Ok(result) => result.context("gRPC server failed while draining")?,
            Err(_) => {
                tracing::warn!("in-flight calls still running after the grace period; closing them")
            }
        }
        task_died.map_or(Ok(()), Err)
    }
}

/// The URL of password pages served at `address`: the default public URL,
/// with the port actually bound (never the 0 of `--http-listen 127.0.0.1:0`).
pub fn pages_url(tls: bool, address: SocketAddr) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}")
}

/// What the gRPC services are built from.
struct Services {
    pool: Pool,
    health: HealthServer,
    database: DatabaseWatch,
    authenticator: Arc<Authenticator>,
    sign_in: Arc<SignIn>,
    import: ImportHandler,
    metrics: Arc<Metrics>,
    changes: Arc<ChangeFeed>,
    stopping: watch::Receiver<bool>,
}

/// The gRPC server with its layers, health, reflection and the five
/// services, serving `listener` (over `tls` when given) until `stopped` resolves.
async fn grpc_server(
    settings: &ServerSettings,
    services: Services,
    listener: TcpListener,
    tls: Option<&ServerTls>,
    stopped: oneshot::Receiver<()>,
) -> Result<ServerFuture> {
    let Services {
        pool,
        health,
        database,
        authenticator,
        sign_in,
        import,
        metrics,
        changes,
        stopping,
    } = services;
    let metrics_layer = rpc_metrics_layer(&metrics)?;
    let (reflection_v1, reflection_v1alpha) = reflection_services(settings.reflection)?;
    let boundary = Arc::new(
        RequestBoundary::from_descriptor_set(FILE_DESCRIPTOR_SET)
            .context("compile the request boundary from the descriptor set")?,
    );
    let router = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        // Outermost: calls the layers below refuse are counted too.
        .layer(middleware(metrics_layer))
        .layer(middleware(RequestLogLayer))
        // Before authentication, which reads the database.
        .layer(database_gate::layer(database))
        .layer(middleware(AuthLayer::new(authenticator.clone())))
        // After authentication: an anonymous caller is refused before any body is read.
        .layer(middleware(BoundaryLayer::new(boundary)))
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(AuthServiceServer::new(AuthHandler::new(
            pool.clone(),
            sign_in.clone(),
        )))
        .add_service(OrganizationServiceServer::new(OrganizationHandler::new(
            pool.clone(),
            sign_in.second_factors().available(),
        )))
        .add_service(UserServiceServer::new(UserHandler::new(
            pool.clone(),
            sign_in,
        )))
        .add_service(GroupServiceServer::new(GroupHandler::new(pool)))
        .add_service(ChangeServiceServer::new(ChangeHandler::new(
            changes,
            authenticator,
            stopping,
        )))
        .add_service(ImportServiceServer::new(import));
    let stopped = async {
        let _ = stopped.await;
    };
    let server: ServerFuture =
        match tls {
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                tls.grpc_listener(listener)?.into_incoming(),
                stopped,
            )),
            // Small unary answers must not wait out Nagle's algorithm against delayed ACKs (~40 ms).
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopped,
            )),
        };
    Ok(server)
}

/// Counts every method served: Roster's, health's and reflection's.
fn rpc_metrics_layer(metrics: &Metrics) -> Result<MetricsLayer> {
    MetricsLayer::new(
        &metrics.rpc,
        &[
            FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ],
    )
    .context("list the methods the metrics count")
}

/// The names of Roster's own services, as health reports them.
fn roster_service_names() -> Vec<&'static str> {
    use tonic::server::NamedService;
    vec![
        <AuthServiceServer<AuthHandler> as NamedService>::NAME,
        <OrganizationServiceServer<OrganizationHandler> as NamedService>::NAME,
        <UserServiceServer<UserHandler> as NamedService>::NAME,
        <GroupServiceServer<GroupHandler> as NamedService>::NAME,
        <ImportServiceServer<ImportHandler> as NamedService>::NAME,
    ]
}

/// The health service, reporting every Roster service as serving, and the
/// watch of the database that sets them NOT_SERVING while it does not answer.
async fn health_service(pool: &Pool) -> (HealthServer, DatabaseWatcher, DatabaseWatch) {
    let health_reporter = tonic_health::server::HealthReporter::new();
    let health_service = HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health_reporter.clone()),
    );
    let services = roster_service_names();
    for &service in &services {
        health_reporter
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let (watcher, watch) = DatabaseWatcher::new(pool, health_reporter, services);
    (health_service, watcher, watch)
}

/// gRPC reflection in both versions, when it is on.
#[allow(clippy::type_complexity)]
fn reflection_services(
    on: bool,
) -> Result<(
    Option<ServerReflectionServer<impl ServerReflection>>,
    Option<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>>,
)> {
    if !on {
        return Ok((None, None));
    }
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can show BadRequest and ErrorInfo.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((
        Some(builder().build_v1()?),
        Some(builder().build_v1alpha()?),
    ))
}

/// Sign-in, with the password hashing threads it shares with the metrics.
fn start_sign_in(
    settings: &ServerSettings,
    pool: &Pool,
    authenticator: &Arc<Authenticator>,
    metrics: &Metrics,
) -> Result<(Arc<SignIn>, Arc<PasswordHasher>)> {
    let hasher = Arc::new(
        PasswordHasher::new(settings.passwords.workers, settings.passwords.queue)
            .context("start the password hashing threads")?,
    );
    let sign_in = SignIn::new(
        pool.clone(),
        hasher.clone(),
        authenticator.clone(),
        settings.throttle.clone(),
        metrics.sign_in.clone(),
        Arc::new(SecondFactors::new(settings.secret_key.clone())),
    );
    Ok((Arc::new(sign_in), hasher))
}

/// The listener that evicts changed credentials and users from memory, and
/// the writer of API key uses.
fn spawn_authentication_tasks(
    tasks: &mut BackgroundTasks,
    authenticator: &Arc<Authenticator>,
    pool: &Pool,
    database: &DatabaseWatch,
) {
    tasks.spawn(
        "the auth change listener",
        follow_changes(authenticator.cache(), pool.clone()),
    );
    tasks.spawn_periodic(
        (
            "the API key and session use recorder",
            "record API key and session uses",
        ),
        Duration::from_secs(1),
        database,
        authenticator.clone(),
        |recorder| async move { recorder.record_uses().await },
    );
}

/// The listener that wakes change watchers as changes commit, and the
/// sweep of changes past their retention.
fn spawn_change_tasks(
    tasks: &mut BackgroundTasks,
    changes: &Arc<ChangeFeed>,
    database: &DatabaseWatch,
) {
    tasks.spawn(
        "the change notification listener",
        changes.clone().follow_notifications(),
    );
    tasks.spawn_periodic(
        (
            "the change retention sweep",
            "delete changes past their retention",
        ),
        Duration::from_secs(300),
        database,
        changes.clone(),
        |sweeper| async move { sweeper.prune_expired().await },
    );
}

/// Forgets stale sign-in throttling state now and then.
fn spawn_sign_in_sweep(
    tasks: &mut BackgroundTasks,
    sign_in: &Arc<SignIn>,
    database: &DatabaseWatch,
) {
    tasks.spawn_periodic(
        (
            "the sign-in throttle sweep",
            "forget stale sign-in throttling state",
        ),
        Duration::from_secs(60),
        database,
        sign_in.clone(),
        |sweeper| async move { sweeper.forget_stale().await },
    );
}

/// The outbox's delivery worker, its links starting with the configured
/// public URL, else `pages_url`; it waits out database outages.
fn spawn_delivery_worker(
    tasks: &mut BackgroundTasks,
    delivery: &DeliverySettings,
    pages_url: Option<String>,
    pool: &Pool,
    database: &DatabaseWatch,
    stopping: &watch::Receiver<bool>,
) -> Result<()> {
    let mut delivery = delivery.clone();
    if delivery.public_url.is_none() {
        delivery.public_url = pages_url;
    }
    let worker = DeliveryWorker::new(pool.clone(), delivery)?;
    let (database, stopping) = (database.clone(), stopping.clone());
    tasks.spawn("the email delivery worker", async move {
        worker.run(database, stopping).await;
        Ok(())
    });
    Ok(())
}

/// Any server ends the jobs of servers that stopped beating, and deletes
/// review results past their retention.
fn spawn_import_sweeps(tasks: &mut BackgroundTasks, jobs: &Jobs, database: &DatabaseWatch) {
    tasks.spawn_periodic(
        ("the stale import job reaper", "check for stale import jobs"),
        jobs.settings.stale_after.get() / 2,
        database,
        jobs.clone(),
        |reaper| async move { reaper.interrupt_stale().await.map(drop) },
    );
    tasks.spawn_periodic(
        (
            "the review results sweep",
            "delete expired review row results",
        ),
        jobs.settings.retention_sweep_every.get(),
        database,
        jobs.clone(),
        |sweeper| async move {
            let jobs = sweeper.expire_review_row_results().await?;
            if jobs > 0 {
                tracing::info!(jobs, "deleted review row results past their retention");
            }
            Ok::<_, crate::domain::DomainError>(())
        },
    );
}

/// What the HTTP listeners serve: the password pages with SCIM, and `/metrics`.
struct HttpServed {
    pages: Arc<SignIn>,
    scim: ScimState,
    metrics: ScrapeSources,
}

/// Serves the password pages and the metrics on their listeners, those
/// that are configured; returns where.
async fn serve_http_listeners(
    tasks: &mut BackgroundTasks,
    settings: &ServerSettings,
    tls: Option<&ServerTls>,
    served: HttpServed,
    stop: &watch::Receiver<bool>,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>)> {
    let pages = match settings.http_listen {
        Some(listen) => {
            // SCIM shares the pages' listener and TLS, not their browser headers.
            let router = crate::pages::router(served.pages).merge(crate::scim::router(served.scim));
            let server = ("the password pages server", "the password pages");
            Some(serve_http(tasks, server, listen, tls, router, stop.clone()).await?)
        }
        None => None,
    };
    let metrics = match settings.metrics_listen {
        Some(listen) => {
            let router = crate::metrics::router(served.metrics);
            let server = ("the metrics server", "the metrics");
            Some(serve_http(tasks, server, listen, tls, router, stop.clone()).await?)
        }
        None => None,
    };
    Ok((pages, metrics))
}

/// Binds an HTTP listener and serves `router` on it until the server stops;
/// returns where it is served. `(name, what)`: the task's name and what it serves.
async fn serve_http(
    tasks: &mut BackgroundTasks,
    (name, what): (&'static str, &'static str),
    listen: SocketAddr,
    tls: Option<&ServerTls>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for {what}"))?;
    let address = listener.local_addr()?;
    let stopping = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    match tls {
        Some(tls) => {
            let listener = tls.http_listener(listener)?;
            tasks.spawn(name, serve_until(listener, router, stopping, what));
        }
        None => tasks.spawn(name, serve_until(listener, router, stopping, what)),
    }
    Ok(address)
}

/// Serves `router` on `listener`, plain or TLS, until `stopping` resolves;
/// an error says `what` stopped.
async fn serve_until<L>(
    listener: L,
    router: axum::Router,
    stopping: impl Future<Output = ()> + Send + 'static,
    what: &'static str,
) -> Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(stopping)
        .await
        .with_context(|| format!("{what} stopped"))
}

/// The tasks a server runs beside its gRPC server, by name.
#[derive(Default)]
struct BackgroundTasks(Vec<(&'static str, JoinHandle<Result<()>>)>);

impl BackgroundTasks {
    fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<()>> + Send + 'static,
    ) {
        self.0.push((name, tokio::spawn(task)));
    }

    /// Runs `task` on a clone of `subject` every `every` (`periodic`).
    fn spawn_periodic<Subject, Run, Error>(
        &mut self,
        (name, what): (&'static str, &'static str),
        every: Duration,
        database: &DatabaseWatch,
        subject: Subject,
        task: impl Fn(Subject) -> Run + Send + 'static,
    ) where
        Subject: Clone + Send + 'static,
        Run: Future<Output = Result<(), Error>> + Send + 'static,
        Error: std::fmt::Display + 'static,
    {
        let run = move || task(subject.clone());
        self.spawn(name, periodic(what, every, database.clone(), run));
    }

    /// Resolves when the first task ends (returns, fails or panics), with an
    /// error naming it; never resolves when there are none.
    async fn first_exit(&mut self) -> anyhow::Error {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let handles = self.0.iter_mut().map(|(_, handle)| handle);
        let (result, index, _) = futures::future::select_all(handles).await;
        let name = self.0[index].0;
        match result {
            Ok(Ok(())) => anyhow!("{name} ended while the server was running"),
            Ok(Err(error)) => error.context(format!("{name} failed")),
            Err(error) => anyhow!("{name} stopped: {error}"),
        }
    }
}

/// Runs `task` every `every` (the first time at once) for as long as the
/// process runs; a run that fails is logged as a warning, "cannot {what}",
/// and the next runs as planned. While `database` does not answer, runs
/// wait for it (and one under way is dropped): the first runs once it
/// answers again, instead of each waiting out the pool's acquire timeout.
async fn periodic<Task, Run, Error>(
    what: &'static str,
    every: Duration,
    database: DatabaseWatch,
    mut task: Task,
) -> Result<()>
where
    Task: FnMut() -> Run + Send + 'static,
    Run: Future<Output = Result<(), Error>> + Send,
    Error: std::fmt::Display,
{
    let mut interval = tokio::time::interval(every);
    // Ticks missed while waiting for the database are not made up in a burst.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match database.while_answering(task()).await {
            Some(Ok(())) => {}
            Some(Err(error)) => tracing::warn!(error = %error, "cannot {what}"),
            None => tracing::debug!("the database stopped answering: {what} waits for it"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: `roster serve` calls it
/// before anything listens, so an early signal stops it cleanly instead of
/// killing it.
pub fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// The SIGHUP handler, installed when this is called: `roster serve` calls
/// it before anything starts, since SIGHUP's default action ends the process.
pub fn hangup_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Reloads the TLS files on every SIGHUP, for as long as the process runs.
pub async fn reload_tls_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    tls: Option<ServerTls>,
) {
    while hangups.recv().await.is_some() {
        match &tls {
            Some(tls) => tls.reload_and_log(),
            None => tracing::info!("SIGHUP: serving plaintext, no TLS certificate to reload"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_periodic_task_runs_at_once_then_every_period_even_after_failing() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let (_answers, answering) = watch::channel(true);
        let database = DatabaseWatch::following(answering);
        tokio::spawn(periodic(
            "count",
            Duration::from_millis(100),
            database,
            move || {
                let counted = counted.clone();
                async move {
                    match counted.fetch_add(1, Ordering::SeqCst) {
                        0 => Err("the first run fails"),
                        _ => Ok(()),
                    }
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the first run is at once");
        tokio::time::sleep(Duration::from_millis(320)).await;
        let later = runs.load(Ordering::SeqCst);
        assert!((3..=5).contains(&later), "{later} runs");
    }

    #[tokio::test]
    async fn a_periodic_task_waits_while_the_database_does_not_answer_and_runs_once_it_does() {
        let (answers, answering) = watch::channel(false);
        let database = DatabaseWatch::following(answering);
        let (runs, mut ran) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(periodic(
            "wait",
            Duration::from_secs(3600),
            database,
            move || {
                let runs = runs.clone();
                async move {
                    // The receiver hears when this run is dropped.
                    let (alive, dropped) = oneshot::channel::<()>();
                    let _ = runs.send(dropped);
                    let _alive = alive;
                    std::future::pending::<Result<(), &str>>().await
                }
            },
        ));
        let early = tokio::time::timeout(Duration::from_millis(200), ran.recv()).await;
        assert!(early.is_err(), "no run while the database does not answer");
        answers.send(true).unwrap();
        let run = tokio::time::timeout(Duration::from_secs(1), ran.recv())
            .await
            .expect("the tick runs once the database answers")
            .unwrap();
        answers.send(false).unwrap();
        let dropped = tokio::time::timeout(Duration::from_secs(1), run).await;
        assert!(
            matches!(dropped, Ok(Err(_))),
            "the run under way is dropped when the database stops answering"
        );
    }

    #[tokio::test]
    async fn a_background_task_that_dies_stops_the_server_with_an_error_naming_it() {
        // tokio refuses a zero interval: the review results sweep panics at
        // its first tick, a real death of a background task. Settings refuse
        // a zero period; the test-only `unchecked` lets one through.
        let mut settings = ServerSettings::new("127.0.0.1:0".parse().expect("address"));
        settings.import.retention_sweep_every =
            crate::domain::import::period::Period::unchecked(Duration::ZERO);
        settings.shutdown_grace = Duration::from_secs(1);
        // Never reached before the sweep dies: the pool connects lazily.
        let pool = sqlx::PgPool::connect_lazy("postgres://roster@127.0.0.1:1/none").expect("pool");
        let application = Application::build(&settings, pool).await.expect("build");

        let stopped = tokio::time::timeout(
            Duration::from_secs(10),
            application.run_until_stopped(std::future::pending()),
        )
        .await
        .expect("the server stops by itself");

        let error = format!("{:#}", stopped.expect_err("the server stops with an error"));
        assert!(error.contains("the review results sweep"), "{error}");
        assert!(error.contains("panicked"), "{error}");
    }
}
