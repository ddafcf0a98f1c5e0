//! `TestApp`: the real server on a free port against its own fresh database,
//! reached over real gRPC with the generated client.
//!
//! Without DATABASE_URL the test process starts a private cluster on
//! /dev/shm (stopped when the process exits) and clones a migrated template
//! database for each test; with DATABASE_URL it does the same on that server.

use std::{path::PathBuf, sync::OnceLock, time::Duration};

use roster::{
    cluster::{ClusterOptions, PrivateCluster},
    database::pool_options,
    delivery::{mailer::MailTransport, DeliverySettings},
    domain::{
        api_key::{self, NewApiKey},
        call::Via,
        caller::{Actor, Scope},
        organization,
        second_factor::SecretKey,
        token::{Secret, TokenKind},
    },
    proto::{
        self, auth_service_client::AuthServiceClient, change_service_client::ChangeServiceClient,
        group_service_client::GroupServiceClient, import_service_client::ImportServiceClient,
        organization_service_client::OrganizationServiceClient,
        user_service_client::UserServiceClient,
    },
    startup::{Application, ServerSettings},
    store,
};
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection, PgPool};
use tonic::{
    metadata::MetadataValue,
    service::{interceptor::InterceptedService, Interceptor},
    transport::Channel,
    Request, Status,
};
use uuid::Uuid;

const TEMPLATE_DATABASE: &str = "roster_test_template";

/// The key test servers seal second-factor secrets with (replicas share it).
pub const TEST_SECRET_KEY: [u8; 32] = [42; 32];

/// Polls `check` until it yields a value, at most `within`; then fails the
/// test naming `what`. The one way tests wait for something to happen, so
/// that no wait can hang the suite.
pub async fn eventually<T, Fut>(what: &str, within: Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

type OptionsOf = Box<dyn Fn(&str) -> PgConnectOptions + Send + Sync>;
type UrlOf = Box<dyn Fn(&str) -> String + Send + Sync>;

/// The PostgreSQL server all tests of this process share.
struct TestDatabaseServer {
    /// Options for a database of that server, by name.
    options: OptionsOf,
    template: String,
    /// A libpq URL of a database by name, for the private cluster only.
    url_of: Option<UrlOf>,
    /// Kept so the private cluster lives (and is stopped) with the process.
    _cluster: Option<PrivateCluster>,
}

static SERVER: OnceLock<TestDatabaseServer> = OnceLock::new();

fn database_server() -> &'static TestDatabaseServer {
    SERVER.get_or_init(|| {
        // Its own thread and runtime: each test's runtime ends with its test.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(start_database_server())
        })
        .join()
        .expect("database server start-up panicked")
    })
}

async fn start_database_server() -> TestDatabaseServer {
    #[allow(clippy::type_complexity)]
    let (options, cluster, template): (
        Box<dyn Fn(&str) -> PgConnectOptions + Send + Sync>,
        Option<PrivateCluster>,
        _,
    ) = match std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(url) => {
            let base: PgConnectOptions = url.parse().expect("DATABASE_URL");
            let template = format!("{TEMPLATE_DATABASE}_{}", std::process::id());
            (
                Box::new(move |db: &str| base.clone().database(db)),
                None,
                template,
            )
        }
        None => {
            remove_stale_test_clusters();
            let dir = test_cluster_dir(std::process::id());
            let cluster = PrivateCluster::start_or_attach(
                &dir,
                ClusterOptions {
                    ephemeral: true,
                    ..ClusterOptions::default()
                },
            )
            .expect("start the test cluster (are PostgreSQL's server binaries installed?)");
            let options_of = {
                let base = cluster.connect_options("postgres");
                move |db: &str| base.clone().database(db)
            };
            (
                Box::new(options_of),
                Some(cluster),
                TEMPLATE_DATABASE.to_owned(),
            )
        }
    };
    let mut admin = PgConnection::connect_with(&options("postgres"))
        .await
        .expect("connect");
    sqlx::query(&format!("drop database if exists \"{template}\""))
        .execute(&mut admin)
        .await
        .expect("drop old template");
    sqlx::query(&format!("create database \"{template}\""))
        .execute(&mut admin)
        .await
        .expect("create template");
    let mut template_connection = PgConnection::connect_with(&options(&template))
        .await
        .expect("connect");
    store::MIGRATOR
        .run(&mut template_connection)
        .await
        .expect("migrate template");
    template_connection.close().await.expect("close");
    admin.close().await.expect("close");
    let url_of = cluster.as_ref().map(|cluster| {
        let base = cluster.url("DATABASE");
        Box::new(move |db: &str| base.replace("/DATABASE?", &format!("/{db}?"))) as UrlOf
    });
    TestDatabaseServer {
        options,
        template,
        url_of,
        _cluster: cluster,
    }
}

fn test_cluster_dir(pid: u32) -> PathBuf {
    let base = if PathBuf::from("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    PathBuf::from(format!("{base}/roster-test-{pid}"))
}

/// Clusters of test processes that are gone (their server stopped with them).
fn remove_stale_test_clusters() {
    for base in ["/dev/shm", "/tmp"] {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("roster-test-")
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A new database cloned from the migrated template.
pub async fn fresh_database() -> (PgPool, String) {
    let server = database_server();
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&(server.options)("postgres"))
        .await
        .expect("connect");
    sqlx::query(&format!(
        "create database \"{name}\" template \"{}\"",
        server.template
    ))
    .execute(&mut admin)
    .await
    .expect("create test database");
    admin.close().await.expect("close");
    let pool = pool_options(5)
        .connect_with((server.options)(&name))
        .await
        .expect("connect to test database");
    (pool, name)
}

/// The URL of a new migrated database, when the test server is the private cluster.
pub async fn fresh_database_url() -> Option<String> {
    let (pool, name) = fresh_database().await;
    pool.close().await;
    database_url(&name)
}

/// A libpq URL of a test database (for the `roster` binary's DATABASE_URL);
/// `None` when the tests run on the server DATABASE_URL names.
pub fn database_url(name: &str) -> Option<String> {
    database_server().url_of.as_ref().map(|url_of| url_of(name))
}

/// Adds `authorization: Bearer <token>` to every call; no header when `None`.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn raw(header_value: &str) -> Self {
        Self(Some(header_value.parse().expect("ascii header")))
    }

    pub fn token(token: &str) -> Self {
        Self::raw(&format!("Bearer {token}"))
    }

    pub fn none() -> Self {
        Self(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

pub struct TestApp {
    /// The server's pool, shared: the test's own statements and connections.
    pub pool: PgPool,
    /// The same pool as the domain functions take it (with a count of waiters
    /// of its own: the server's count is not the test's).
    pub store: roster::store::Pool,
    pub channel: Channel,
    /// `http://127.0.0.1:<port>` of the server (`https://` over TLS).
    pub address: String,
    /// Organization `acme` and the secret of one of its ADMIN keys.
    pub organization_id: Uuid,
    pub admin_key: String,
    /// Where this app's servers write emails (`.eml`, no SMTP configured).
    pub mail: MailDirectory,
    server: RunningServer,
}

/// A server started in this process; `stop` shuts it down as SIGTERM would.
pub struct RunningServer {
    pub address: String,
    /// `http://127.0.0.1:<port>` of the password pages (`https://` over TLS).
    pub pages: String,
    /// `http://127.0.0.1:<port>/metrics`, when the settings serve metrics.
    pub metrics: Option<String>,
    pub channel: Channel,
    /// The TLS material it serves, to reload it as SIGHUP would.
    pub tls: Option<roster::tls::ServerTls>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningServer {
    /// A server whose delivery worker writes `.eml` files into `mail` and polls often.
    pub async fn start(
        pool: &PgPool,
        mail: &MailDirectory,
        adjust: impl FnOnce(&mut ServerSettings),
    ) -> Self {
        let mut settings = ServerSettings::new("127.0.0.1:0".parse().expect("address"));
        settings.shutdown_grace = Duration::from_secs(5);
        let mut delivery = DeliverySettings::new(
            MailTransport::Directory(mail.path()),
            Some("https://roster.test"),
        );
        delivery.poll_every = Duration::from_millis(50);
        delivery.retry_base = Duration::from_millis(200);
        settings.delivery = Some(delivery);
        settings.http_listen = Some("127.0.0.1:0".parse().expect("address"));
        settings.secret_key = Some(std::sync::Arc::new(SecretKey::from_bytes(TEST_SECRET_KEY)));
        adjust(&mut settings);
        let application = Application::build(&settings, pool.clone())
            .await
            .expect("build the server");
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let address = format!("{scheme}://{}", application.local_addr());
        let pages = format!("{scheme}://{}", application.http_addr().expect("pages"));
        let tls = application.tls();
        let metrics = application
            .metrics_addr()
            .map(|address| format!("{scheme}://{address}/metrics"));
        let (stop, stop_received) = tokio::sync::oneshot::channel::<()>();
        let stopped = tokio::spawn(application.run_until_stopped(async move {
            let _ = stop_received.await;
        }));
        let channel = Channel::from_shared(address.clone()).expect("uri");
        // Over TLS the test dials with its own CA; this channel is never used.
        let channel = if settings.tls.is_some() {
            channel.connect_lazy()
        } else {
            channel.connect().await.expect("connect to the server")
        };
        Self {
            address,
            pages,
            metrics,
            channel,
            tls,
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    /// Graceful shutdown, as on SIGTERM; returns once the server has stopped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            stopped
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    pub fn imports(&self, bearer: Bearer) -> ImportServiceClient<Authed> {
        ImportServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn auth(&self, bearer: Bearer) -> AuthServiceClient<Authed> {
        AuthServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn users(&self, bearer: Bearer) -> UserServiceClient<Authed> {
        UserServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn changes(&self, bearer: Bearer) -> ChangeServiceClient<Authed> {
        ChangeServiceClient::with_interceptor(self.channel.clone(), bearer)
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with_reflection(true).await
    }

    pub async fn spawn_with_reflection(reflection: bool) -> TestApp {
        Self::spawn_with(|settings| settings.reflection = reflection).await
    }

    /// A server with adjusted settings (import limits, reflection).
    pub async fn spawn_with(adjust: impl FnOnce(&mut ServerSettings)) -> TestApp {
        let (pool, _) = fresh_database().await;
        Self::spawn_on(pool, adjust).await
    }

    /// A server on a migrated database of the test's own (its own cluster, say).
    pub async fn spawn_on(pool: PgPool, adjust: impl FnOnce(&mut ServerSettings)) -> TestApp {
        let mail = MailDirectory::new();
        let server = RunningServer::start(&pool, &mail, adjust).await;
        let store = roster::store::Pool::from(pool.clone());
        let organization = organization::create_organization(&store, "acme", Actor::Operator)
            .await
            .expect("create organization");
        let mut app = TestApp {
            pool,
            store,
            channel: server.channel.clone(),
            address: server.address.clone(),
            organization_id: organization.id,
            admin_key: String::new(),
            mail,
            server,
        };
        app.admin_key = app
            .create_api_key(organization.id, "admin", &[Scope::Admin])
            .await;
        app
    }

    /// `http://127.0.0.1:<port>` of the password pages.
    pub fn pages(&self) -> &str {
        &self.server.pages
    }

    /// The server's TLS material (reload it as SIGHUP would).
    pub fn tls(&self) -> &roster::tls::ServerTls {
        self.server.tls.as_ref().expect("a server started with TLS")
    }

    /// `<scheme>://127.0.0.1:<port>/metrics`, when the server serves metrics.
    pub fn metrics_url(&self) -> Option<&str> {
        self.server.metrics.as_deref()
    }

    /// The Prometheus text of `/metrics`; the server must serve metrics.
    pub async fn scrape_metrics(&self) -> String {
        let url = self
            .server
            .metrics
            .as_deref()
            .expect("a server with metrics_listen");
        let response = reqwest::get(url).await.expect("scrape /metrics");
        assert!(response.status().is_success(), "{response:?}");
        response.text().await.expect("metrics text")
    }

    /// Another server (a replica) on this app's database.
    pub async fn replica(&self, adjust: impl FnOnce(&mut ServerSettings)) -> RunningServer {
        RunningServer::start(&self.pool, &self.mail, adjust).await
    }

    /// Waits for email #`count` to `to` and for its delivery to commit (the
    /// file is written just before: the link works once committed).
    pub async fn email(&self, to: &str, count: usize) -> Email {
        let email = self.mail.wait_for(to, count).await;
        eventually(
            &format!("the delivery of email #{count} to {to} commits"),
            Duration::from_secs(15),
            || async {
                let leased: i64 =
                    sqlx::query_scalar("select count(*) from outbox where lease_owner is not null")
                        .fetch_one(&self.pool)
                        .await
                        .expect("outbox");
                (leased == 0).then_some(())
            },
        )
        .await;
        email
    }

    /// Stops this app's server gracefully, as on SIGTERM.
    pub async fn stop_server(&mut self) {
        self.server.stop().await;
    }

    /// A key created the way the operator's CLI does; returns its secret.
    pub async fn create_api_key(
        &self,
        organization_id: Uuid,
        name: &str,
        scopes: &[Scope],
    ) -> String {
        let scopes: Vec<Option<Scope>> = scopes.iter().copied().map(Some).collect();
        let new_key = NewApiKey::parse(name, &scopes, None, "").expect("valid key");
        let (_, secret) = api_key::create_api_key(
            &self.store,
            organization_id,
            Actor::Operator,
            None,
            Via::Cli,
            &new_key,
        )
        .await
        .expect("create key");
        secret.expect("secret").expose().to_owned()
    }

    pub async fn create_organization(&self, name: &str) -> Uuid {
        organization::create_organization(&self.store, name, Actor::Operator)
            .await
            .expect("create organization")
            .id
    }

    pub fn auth(&self, bearer: Bearer) -> AuthServiceClient<Authed> {
        AuthServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn changes(&self, bearer: Bearer) -> ChangeServiceClient<Authed> {
        ChangeServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn organizations(&self, bearer: Bearer) -> OrganizationServiceClient<Authed> {
        OrganizationServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn users(&self, bearer: Bearer) -> UserServiceClient<Authed> {
        UserServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn imports(&self, bearer: Bearer) -> ImportServiceClient<Authed> {
        ImportServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    pub fn groups(&self, bearer: Bearer) -> GroupServiceClient<Authed> {
        GroupServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    /// Sets the organization settings named in `paths` to their values in
    /// `settings`, as the admin key; the organization as it then is.
    pub async fn update_settings(
        &self,
        settings: proto::OrganizationSettings,
        paths: &[&str],
    ) -> Result<proto::Organization, Status> {
        self.organizations(self.as_admin())
            .update_organization_settings(proto::UpdateOrganizationSettingsRequest {
                settings: Some(settings),
                update_mask: mask(paths),
            })
            .await
            .map(|answer| answer.into_inner().organization.expect("organization"))
    }

    /// Turns on the organization setting that lets users share an email.
    pub async fn allow_duplicate_emails(&self) {
        let allow = proto::OrganizationSettings {
            allow_duplicate_emails: true,
            ..Default::default()
        };
        self.update_settings(allow, &["allow_duplicate_emails"])
            .await
            .unwrap();
    }

    /// A user with a username of their own (not their email).
    pub async fn create_named_user(
        &self,
        first: &str,
        last: &str,
        username: &str,
        email: &str,
    ) -> proto::User {
        self.users(self.as_admin())
            .create_user(proto::CreateUserRequest {
                user: Some(proto::User {
                    first_name: first.into(),
                    last_name: last.into(),
                    email: email.into(),
                    username: username.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .answered()
    }

    pub async fn create_user(&self, first: &str, last: &str, email: &str) -> proto::User {
        // No username: the server makes the email the username.
        self.create_named_user(first, last, "", email).await
    }

    /// Lets a user's invitation lapse unused, link and all. Waits for the
    /// invitation to be sent first: sending it sets the expiry, and would
    /// undo a lapse made before.
    pub async fn expire_invitation(&self, user_id: &str) {
        let user_id: Uuid = user_id.parse().expect("a user id");
        eventually("the invitation sent", Duration::from_secs(10), || async {
            let sent: bool = sqlx::query_scalar(
                "select invitation_expire_time is not null from users where id = $1",
            )
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .expect("read the invitation's expiry");
            sent.then_some(())
        })
        .await;
        for lapse in [
            "update onboarding_tokens set expire_time = now() - interval '1 minute' where user_id = $1",
            "update users set invitation_expire_time = now() - interval '1 minute' where id = $1",
        ] {
            sqlx::query(lapse)
                .bind(user_id)
                .execute(&self.pool)
                .await
                .expect("lapse the invitation");
        }
    }

    /// Marks a user onboarded directly, without a password: for tests that
    /// need a session (`mint_access_token`), not the email round trip.
    pub async fn onboard(&self, user_id: &str) {
        sqlx::query("update users set onboarded = true where id = $1::uuid")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .expect("onboard");
    }

    /// A signed-in user: created, onboarded, with an access token.
    pub async fn signed_in_user(&self, email: &str) -> (proto::User, Bearer) {
        let user = self.create_user("Signed", "In", email).await;
        self.onboard(&user.id).await;
        let token = self
            .mint_access_token(user.id.parse().expect("uuid"), chrono::Duration::hours(1))
            .await;
        (user, Bearer::token(&token))
    }

    pub fn as_admin(&self) -> Bearer {
        Bearer::token(&self.admin_key)
    }

    /// WhoAmI with `bearer`: whether it is let in, and as whom.
    pub async fn who_am_i(
        &self,
        bearer: Bearer,
    ) -> Result<tonic::Response<proto::WhoAmIResponse>, Status> {
        self.auth(bearer).who_am_i(proto::WhoAmIRequest {}).await
    }

    /// The user as the admin key reads it (GetUser, default view).
    pub async fn get_user(&self, user_id: &str) -> proto::User {
        self.users(self.as_admin())
            .get_user(proto::GetUserRequest {
                user_id: user_id.into(),
                ..Default::default()
            })
            .await
            .answered()
    }

    /// The group as the admin key reads it (GetGroup).
    pub async fn get_group(&self, group_id: &str) -> proto::Group {
        self.groups(self.as_admin())
            .get_group(proto::GetGroupRequest {
                group_id: group_id.into(),
            })
            .await
            .answered()
    }

    /// MirrorUser as `bearer`: the result of each target (the call itself
    /// must succeed).
    pub async fn mirror_user(
        &self,
        bearer: Bearer,
        request: proto::MirrorUserRequest,
    ) -> Vec<proto::MirrorTargetResult> {
        self.users(bearer)
            .mirror_user(request)
            .await
            .expect("mirror user")
            .into_inner()
            .results
    }

    /// This app's organization as the admin key reads it.
    pub async fn organization(&self) -> proto::Organization {
        self.organizations(self.as_admin())
            .get_organization(proto::GetOrganizationRequest {})
            .await
            .answered()
    }

    /// The users `request` lists (one page), as the admin key lists them.
    pub async fn list_users(&self, request: proto::ListUsersRequest) -> Vec<proto::User> {
        self.users(self.as_admin())
            .list_users(request)
            .await
            .expect("list users")
            .into_inner()
            .users
    }

    /// What a user may do (GetUserAccess), as the admin key reads it.
    pub async fn user_access(&self, user_id: &str) -> proto::GetUserAccessResponse {
        self.users(self.as_admin())
            .get_user_access(proto::GetUserAccessRequest {
                user_id: user_id.into(),
            })
            .await
            .expect("get user access")
            .into_inner()
    }

    /// The groups a user holds (first page), as the admin key lists them.
    pub async fn user_groups(&self, user_id: &str) -> Vec<proto::Group> {
        self.users(self.as_admin())
            .list_user_groups(proto::ListUserGroupsRequest {
                user_id: user_id.into(),
                ..Default::default()
            })
            .await
            .expect("list user groups")
            .into_inner()
            .groups
    }

    /// One field of each group a user holds (`|g| g.id`, `|g| g.name`), sorted.
    pub async fn sorted_user_groups<T: Ord>(
        &self,
        user_id: &str,
        field: impl Fn(proto::Group) -> T,
    ) -> Vec<T> {
        let mut fields: Vec<T> = self
            .user_groups(user_id)
            .await
            .into_iter()
            .map(field)
            .collect();
        fields.sort();
        fields
    }

    /// The organization's audit events matching `filter`, newest first, as
    /// the admin key lists them.
    pub async fn audit_events(
        &self,
        filter: proto::ListAuditEventsRequest,
    ) -> Vec<proto::AuditEvent> {
        self.organizations(self.as_admin())
            .list_audit_events(filter)
            .await
            .expect("list audit events")
            .into_inner()
            .audit_events
    }

    /// The audit events of one action, newest first.
    pub async fn audit_events_of(&self, action: &str) -> Vec<proto::AuditEvent> {
        self.audit_events(proto::ListAuditEventsRequest {
            action: action.into(),
            ..Default::default()
        })
        .await
    }

    /// A user row written directly with an admin state and onboarding, in
    /// one step no API call takes.
    pub async fn insert_user(&self, username: &str, admin_state: &str, onboarded: bool) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into users (organization_id, id, first_name, last_name, email, username, admin_state, onboarded) \
             values ($1, $2, 'Test', 'User', $3, $3, $4, $5)",
        )
        .bind(self.organization_id)
        .bind(id)
        .bind(username)
        .bind(admin_state)
        .bind(onboarded)
        .execute(&self.pool)
        .await
        .expect("insert user");
        id
    }

    /// A number the test reads from the database (`select count(*) …`).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// A user access token minted through the store function Login will use.
    pub async fn mint_access_token(&self, user_id: Uuid, valid_for: chrono::Duration) -> String {
        let secret = Secret::generate(TokenKind::AccessToken);
        store::access_tokens::insert(
            &self.pool,
            self.organization_id,
            user_id,
            &secret.hash(),
            chrono::Utc::now() + valid_for,
            &Default::default(),
        )
        .await
        .expect("mint access token");
        secret.expose().to_owned()
    }
}

/// A MirrorUser request: `reference`'s groups onto the users `targets` names by id.
pub fn mirror_request(
    reference: &str,
    targets: &[&str],
    mode: proto::MirrorMode,
) -> proto::MirrorUserRequest {
    proto::MirrorUserRequest {
        reference_user_id: reference.into(),
        target_user_ids: targets.iter().map(|id| (*id).to_owned()).collect(),
        mode: mode as i32,
        ..Default::default()
    }
}

/// A CreateUnit request with what a test names.
pub fn new_unit(name: impl Into<String>, kind: proto::UnitKind) -> proto::CreateUnitRequest {
    let unit = proto::Unit {
        name: name.into(),
        kind: kind as i32,
        ..Default::default()
    };
    proto::CreateUnitRequest {
        unit: Some(unit),
        ..Default::default()
    }
}

/// A CreateProfile request with what a test names.
pub fn new_profile(product: &str, name: impl Into<String>) -> proto::CreateProfileRequest {
    let profile = proto::Profile {
        product: product.into(),
        name: name.into(),
        ..Default::default()
    };
    proto::CreateProfileRequest {
        profile: Some(profile),
        ..Default::default()
    }
}

/// A CreateGroup request with what a test names.
pub fn new_group(
    name: impl Into<String>,
    profile_id: &str,
    scope: proto::UnitScope,
    unit_ids: &[&str],
) -> proto::CreateGroupRequest {
    let group = proto::Group {
        name: name.into(),
        profile_id: profile_id.into(),
        unit_scope: scope as i32,
        unit_ids: unit_ids.iter().map(|id| (*id).to_owned()).collect(),
        ..Default::default()
    };
    proto::CreateGroupRequest {
        group: Some(group),
        ..Default::default()
    }
}

/// The one resource a call's answer carries, or a panic naming the call
/// that failed or the field that was missing.
pub trait Answered {
    type Resource;
    fn answered(self) -> Self::Resource;
}

macro_rules! answered {
    ($response:ty, $field:ident, $resource:ty) => {
        impl Answered for Result<tonic::Response<$response>, Status> {
            type Resource = $resource;
            fn answered(self) -> $resource {
                let answer = self.expect(stringify!($response)).into_inner();
                answer.$field.expect(stringify!($field))
            }
        }
    };
}
answered!(proto::CreateUserResponse, user, proto::User);
answered!(proto::GetUserResponse, user, proto::User);
answered!(proto::UpdateUserResponse, user, proto::User);
answered!(proto::SetUserStatusResponse, user, proto::User);
answered!(proto::CloneUserResponse, user, proto::User);
answered!(proto::ResetUserCredentialsResponse, user, proto::User);
answered!(proto::CreateGroupResponse, group, proto::Group);
answered!(proto::GetGroupResponse, group, proto::Group);
answered!(proto::UpdateGroupResponse, group, proto::Group);
answered!(proto::CreateUnitResponse, unit, proto::Unit);
answered!(proto::GetUnitResponse, unit, proto::Unit);
answered!(proto::UpdateUnitResponse, unit, proto::Unit);
answered!(proto::CreateProfileResponse, profile, proto::Profile);
answered!(proto::GetProfileResponse, profile, proto::Profile);
answered!(proto::UpdateProfileResponse, profile, proto::Profile);
answered!(proto::GetImportJobResponse, job, proto::ImportJob);
answered!(proto::CancelImportJobResponse, job, proto::ImportJob);
answered!(
    proto::GetOrganizationResponse,
    organization,
    proto::Organization
);
answered!(proto::CreateApiKeyResponse, api_key, proto::ApiKey);

/// The id of what a create answered, or a panic naming what failed.
pub trait CreatedId {
    fn created_id(self) -> String;
}

macro_rules! created_id {
    ($response:ty) => {
        impl CreatedId for Result<tonic::Response<$response>, Status> {
            fn created_id(self) -> String {
                self.answered().id
            }
        }
    };
}
created_id!(proto::CreateUnitResponse);
created_id!(proto::CreateProfileResponse);
created_id!(proto::CreateGroupResponse);
created_id!(proto::CreateUserResponse);
created_id!(proto::CloneUserResponse);
created_id!(proto::CreateApiKeyResponse);

/// An update mask of these field paths.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

/// The field paths of a status's `BadRequest` details, in order.
pub fn violated_fields(status: &Status) -> Vec<String> {
    violations(status)
        .into_iter()
        .map(|(field, _, _)| field)
        .collect()
}

/// The `BadRequest` violations of a status as (field, reason, description).
pub fn violations(status: &Status) -> Vec<(String, String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|v| (v.field, v.reason, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The `ErrorInfo` reason of a status, if any.
pub fn error_reason(status: &Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// A directory of `.eml` files the delivery worker writes: `mail/` in a
/// data directory of its own, as `roster serve` lays them out.
pub struct MailDirectory(tempfile::TempDir);

impl Default for MailDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl MailDirectory {
    pub fn new() -> Self {
        let data_dir = tempfile::tempdir().expect("data directory");
        std::fs::create_dir(data_dir.path().join("mail")).expect("mail directory");
        Self(data_dir)
    }

    pub fn path(&self) -> PathBuf {
        self.0.path().join("mail")
    }

    /// The data directory the folder is in (`roster --data-dir` for `roster mail`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.0.path()
    }

    /// Every message written so far, oldest first.
    pub fn emails(&self) -> Vec<Email> {
        let mut files: Vec<_> = std::fs::read_dir(self.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|path| Email::parse(&std::fs::read(path).expect("read email")))
            .collect()
    }

    /// Waits (up to 15 s) until `to` has received `count` messages; returns the last.
    pub async fn wait_for(&self, to: &str, count: usize) -> Email {
        eventually(
            &format!("email #{count} to {to} arrives"),
            Duration::from_secs(15),
            || async {
                self.emails()
                    .into_iter()
                    .filter(|email| email.to.eq_ignore_ascii_case(to))
                    .nth(count - 1)
            },
        )
        .await
    }
}

/// A received message, decoded.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub text: String,
    pub html: String,
}

impl Email {
    pub fn parse(raw: &[u8]) -> Self {
        let message = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("a MIME message");
        let to = message
            .to()
            .and_then(|to| to.first())
            .and_then(|address| address.address())
            .unwrap_or_default()
            .to_owned();
        Email {
            to,
            subject: message.subject().unwrap_or_default().to_owned(),
            message_id: message.message_id().unwrap_or_default().to_owned(),
            text: message.body_text(0).unwrap_or_default().into_owned(),
            html: message.body_html(0).unwrap_or_default().into_owned(),
        }
    }

    /// The token of the link in the message (after `#token=`).
    pub fn link_token(&self) -> String {
        let start = self.text.find("#token=").expect("a link with a token") + "#token=".len();
        self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect()
    }

    /// The link itself.
    pub fn link(&self) -> String {
        let end = self.text.find("#token=").expect("a link") + "#token=".len();
        let start = self.text[..end].rfind("http").expect("a link");
        format!("{}{}", &self.text[start..end], self.link_token())
    }
}
