//! The `roster` command line: the server and the operator's admin commands.
//! Admin commands work whether or not `roster serve` runs on the same data
//! directory, and never stop a cluster they did not start.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    database::{Database, DatabaseSource},
    delivery::{
        mail_folder::{MailFolder, StoredMail},
        mailer::MailTransport,
        DeliverySettings,
    },
    domain::{
        api_key::{self, NewApiKey},
        bootstrap,
        call::Via,
        caller::{Actor, Scope},
        import::{period::Period, reader::Limits, run::ImportSettings},
        organization,
        password::PasswordHasher,
        second_factor::SecretKey,
    },
    proto, remote,
    startup::{
        self, hangup_signal, reload_tls_on_hangup, stop_signal, Application, PasswordSettings,
        ServerSettings,
    },
    telemetry::{self, LogFormat, LogWriting, TraceSettings},
    tls::TlsSettings,
};

#[derive(Debug, Parser)]
#[command(
    name = "roster",
    version,
    about = "Roster: a multi-tenant user and access directory served over gRPC"
)]
pub struct Cli {
    /// Data directory: the private PostgreSQL cluster (when DATABASE_URL is
    /// unset), its log, and the development mail folder (mail/).
    #[arg(
        long,
        env = "ROSTER_DATA_DIR",
        default_value = ".roster",
        global = true
    )]
    data_dir: PathBuf,
    /// Use this PostgreSQL database instead of the private cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Log format on stderr.
    #[arg(
        long,
        env = "ROSTER_LOG_FORMAT",
        value_enum,
        default_value = "human",
        global = true
    )]
    log_format: LogFormat,
    /// Admin commands (org, api-key, migrate): create a new, empty private
    /// cluster when the data directory holds none, instead of refusing.
    /// `roster serve` creates it on its first start without asking.
    #[arg(long, global = true)]
    init: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API (zero configuration: a private PostgreSQL in the data directory).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage organizations (tenants).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Read the emails `roster serve` writes to <data dir>/mail/ when no SMTP
    /// server is configured: follow an invitation without one.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Import users from a CSV file through a running server, with a progress
    /// bar; writes FILE.results.csv; exits 2 when rows failed.
    Import(ImportArgs),
    /// Export users as CSV (UTF-8 with BOM) through a running server.
    Export(ExportArgs),
}

/// The server a client command calls, and its credentials.
#[derive(Debug, Args)]
struct ServerArgs {
    /// Address of the Roster gRPC server.
    #[arg(long, env = "ROSTER_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// API key (or user access token) sent as the bearer token.
    #[arg(long, env = "ROSTER_API_KEY", hide_env_values = true)]
    api_key: String,
    /// PEM CA certificate(s) an `https://` server's certificate must chain
    /// to (default: the system's roots).
    #[arg(long, env = "ROSTER_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (mutual TLS).
    #[arg(long, env = "ROSTER_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "ROSTER_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl ServerArgs {
    fn connection(self) -> remote::Connection {
        remote::Connection {
            server: self.server,
            api_key: self.api_key,
            tls: remote::ClientTls {
                ca_cert: self.ca_cert,
                identity: self.client_cert.zip(self.client_key),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnExistingArg {
    Fail,
    Skip,
    Update,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The CSV file (UTF-8 or Windows-1252, `,` or `;`).
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
    /// Review only (ValidateImport): nothing but the job and its results is written.
    #[arg(long)]
    dry_run: bool,
    /// Groups for every added user, by name or id (a UUID is taken as an id;
    /// comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Also give every added user this user's groups: their id, email or
    /// username.
    #[arg(long)]
    mirror: Option<String>,
    /// What to do with a row whose user already exists.
    #[arg(long, value_enum, default_value = "fail")]
    on_existing: OnExistingArg,
    /// Do not queue invitation emails.
    #[arg(long)]
    no_invitations: bool,
    /// Create users INACTIVE.
    #[arg(long)]
    deactivated: bool,
    /// Do not email the report to you when the job ends.
    #[arg(long)]
    no_report: bool,
    /// Also email the report to this user of the organization (repeatable;
    /// how an API key's import gets a report).
    #[arg(long, value_name = "ADDRESS")]
    report_to: Vec<String>,
    /// Accept the legacy statuses `blocked` and `disabled` (migrations; organization administrators only).
    #[arg(long)]
    legacy_statuses: bool,
    /// Read the results of this job (after a lost connection) instead of sending the file.
    #[arg(long, value_name = "JOB_ID")]
    resume: Option<String>,
    /// Write only the failed rows to FILE.results.csv: fix them there and
    /// import that file (its result columns are ignored).
    #[arg(long)]
    failed_only: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Write here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Words that must all match names, email or username.
    #[arg(long, default_value = "")]
    query: String,
    /// Members of this group (id).
    #[arg(long, default_value = "")]
    group: String,
    /// Members of groups on this unit (id).
    #[arg(long, default_value = "")]
    unit: String,
    /// `,` or `;` (Excel in many locales).
    #[arg(long, default_value = ",")]
    delimiter: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Listen address of the password pages (register, reset).
    #[arg(long, env = "ROSTER_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Serve Prometheus metrics at /metrics on this address (over TLS with
    /// --tls-cert; plaintext only on loopback unless --insecure-plaintext). Unset: no metrics.
    #[arg(long, env = "ROSTER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Turn gRPC server reflection off.
    #[arg(long, env = "ROSTER_NO_REFLECTION")]
    no_reflection: bool,
    /// Seconds in-flight calls may run on after SIGINT/SIGTERM.
    #[arg(long, env = "ROSTER_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// Maximum PostgreSQL connections of this server (reads keep up to half
    /// of them between calls; writes always have the rest).
    #[arg(long, env = "ROSTER_DB_MAX_CONNECTIONS", default_value_t = 20)]
    db_max_connections: u32,
    /// Most data rows one import job takes.
    #[arg(long, env = "ROSTER_IMPORT_MAX_ROWS", default_value_t = 1_000_000)]
    import_max_rows: u64,
    /// Most bytes of one import cell.
    #[arg(long, env = "ROSTER_IMPORT_MAX_FIELD_BYTES", default_value_t = 4 * 1024)]
    import_max_field_bytes: usize,
    /// Most bytes of one import record (line).
    #[arg(long, env = "ROSTER_IMPORT_MAX_RECORD_BYTES", default_value_t = 64 * 1024)]
    import_max_record_bytes: usize,
    /// Most imports one organization may run at once, and as many reviews (counted apart).
    #[arg(long, env = "ROSTER_IMPORT_MAX_RUNNING_JOBS", default_value_t = 4)]
    import_max_running_jobs: u32,
    /// Seconds without a sign of life after which a running import (its server
    /// died) is ended INTERRUPTED.
    #[arg(long, env = "ROSTER_IMPORT_STALE_AFTER", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=86_400))]
    import_stale_after: u64,
    /// Days a review's (ValidateImport's) row results are kept after it ends.
    #[arg(long, env = "ROSTER_IMPORT_REVIEW_RETENTION_DAYS", default_value_t = 7)]
    import_review_retention_days: u64,
    /// Days the change stream (WatchChanges) keeps changes; a cursor older than that is
    /// answered OUT_OF_RANGE.
    #[arg(long, env = "ROSTER_CHANGE_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    change_retention_days: u64,
    /// Seconds an idle WatchChanges stream waits before it sends a heartbeat.
    #[arg(long, env = "ROSTER_CHANGE_HEARTBEAT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    change_heartbeat: u64,
    /// Most WatchChanges streams this server keeps open at once; more are refused
    /// RESOURCE_EXHAUSTED (the client retries, on another replica behind a balancer).
    #[arg(long, env = "ROSTER_CHANGE_MAX_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    change_max_streams: u64,
    /// SMTP server for emails: smtp://host:port (plain), smtp://user:pass@host:587?tls=required
    /// (STARTTLS) or smtps://user:pass@host:465 (TLS). Unset: emails are written to <data dir>/mail/.
    #[arg(long, env = "ROSTER_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The From of emails.
    #[arg(
        long,
        env = "ROSTER_MAIL_FROM",
        default_value = "Roster <no-reply@localhost>"
    )]
    mail_from: String,
    /// Do not deliver emails from this server (another replica does).
    #[arg(long, env = "ROSTER_NO_DELIVERY")]
    no_delivery: bool,
    /// Where people reach the password pages; every link in an email starts with it.
    /// Default: http://<http-listen> (https:// with --tls-cert).
    #[arg(long, env = "ROSTER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Threads that hash passwords (default: one per core but one).
    #[arg(long, env = "ROSTER_PASSWORD_HASH_WORKERS")]
    password_hash_workers: Option<usize>,
    /// Password checks that may wait for a thread; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ROSTER_PASSWORD_HASH_QUEUE", default_value_t = 64)]
    password_hash_queue: usize,
    /// Serve gRPC and the password pages over TLS with this certificate chain (PEM, leaf first).
    /// SIGHUP reloads it, its key and --tls-client-ca from disk for new connections.
    #[arg(long, env = "ROSTER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "ROSTER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS on gRPC: refuse gRPC clients without a certificate signed by one of these
    /// CAs (PEM). The password pages never ask for a client certificate (people's browsers
    /// have none).
    #[arg(long, env = "ROSTER_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Allow plaintext on addresses that are not loopback (behind a proxy that terminates TLS).
    #[arg(long, env = "ROSTER_INSECURE_PLAINTEXT", conflicts_with = "tls_cert")]
    insecure_plaintext: bool,
    /// The key that seals second-factor (TOTP) secrets at rest: 32 bytes in base64
    /// (`openssl rand -base64 32`), the same on every replica. Unset: with the private
    /// cluster, <data dir>/secret_key (created on first start); with DATABASE_URL, no
    /// second factors can be enrolled.
    #[arg(long, env = "ROSTER_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[command(flatten)]
    traces: TraceSettings,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization (with its built-in Admin and Viewer profiles); prints its id.
    Create {
        /// The name people type at sign-in ("company"); unique ignoring case.
        name: String,
        /// How emails name it, e.g. "Acme Corporation" (default: its name).
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// Rename an organization: people type NEW at sign-in from then on. Its
    /// id, users, keys, groups and the links already emailed stay as they are.
    Rename {
        /// Its current name.
        old: String,
        /// Its new name; unique ignoring case.
        new: String,
    },
    /// List organizations: id, name and display name, tab-separated.
    List,
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// The latest messages, newest first: time, to, kind, subject and file
    /// name, tab-separated.
    List {
        /// Only the messages to this address.
        #[arg(long)]
        to: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One message: its headers and its text.
    Show {
        /// A file name from `roster mail list` (or the path of a message);
        /// without it, the newest message (--latest).
        file: Option<String>,
        /// The newest message (to --to when given); what `show` without FILE shows.
        #[arg(long, conflicts_with = "file")]
        latest: bool,
        /// The newest message to this address.
        #[arg(long, conflicts_with = "file")]
        to: Option<String>,
    },
    /// The links in the latest messages, newest first: time, to, kind and
    /// link, tab-separated.
    Links {
        /// Only the messages to this address.
        #[arg(long)]
        to: Option<String>,
        /// Only the newest message's links.
        #[arg(long)]
        latest: bool,
        /// Messages read at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    Admin,
    Viewer,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; prints the secret alone on stdout (shown once).
    Create {
        /// Organization name.
        #[arg(long)]
        org: String,
        /// Key name, unique among the organization's unrevoked keys.
        #[arg(long)]
        name: String,
        /// Scope (repeat for several).
        #[arg(long, value_enum, required = true)]
        scope: Vec<ScopeArg>,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API key, by id or by name.
    Revoke {
        /// Organization name.
        #[arg(long)]
        org: String,
        /// Key id.
        #[arg(long, conflicts_with = "name", required_unless_present = "name")]
        id: Option<uuid::Uuid>,
        /// Key name.
        #[arg(long)]
        name: Option<String>,
    },
}

pub async fn run(cli: Cli) -> Result<()> {
    let default_filter = match cli.command {
        Command::Serve(_) => "info,sqlx=warn",
        _ => "warn",
    };
    let traces = match &cli.command {
        Command::Serve(args) => args.traces.clone(),
        _ => TraceSettings::default(),
    };
    let writing = match cli.command {
        Command::Serve(_) => LogWriting::Buffered,
        // A command may end with `process::exit`, which would lose queued lines.
        _ => LogWriting::Direct,
    };
    let telemetry = telemetry::init(cli.log_format, writing, default_filter, &traces)?;
    let result = dispatch(cli).await;
    telemetry.shutdown().await;
    result
}

async fn dispatch(cli: Cli) -> Result<()> {
    let mail_dir = cli.data_dir.join("mail");
    let key_file = cli.data_dir.join("secret_key");
    let source = DatabaseSource::from_settings(cli.database_url, cli.data_dir);
    match cli.command {
        Command::Mail(command) => mail_command(&mail_dir, command),
        Command::Serve(args) => serve(source.for_server(), args, mail_dir, &key_file).await,
        Command::Import(args) => {
            let connection = args.server.connection();
            let (group_ids, group_names) = groups_by_id_and_name(&args.groups);
            let request = remote::ImportRequest {
                file: args.file,
                dry_run: args.dry_run,
                resume: args.resume,
                failed_only: args.failed_only,
                options: proto::ImportOptions {
                    group_ids,
                    group_names,
                    mirror_user_id: String::new(),
                    mirror_user: args.mirror.as_deref().map(user_key),
                    on_existing: match args.on_existing {
                        OnExistingArg::Fail => proto::OnExisting::Fail,
                        OnExistingArg::Skip => proto::OnExisting::Skip,
                        OnExistingArg::Update => proto::OnExisting::Update,
                    } as i32,
                    send_invitations: Some(!args.no_invitations),
                    deactivated: args.deactivated,
                    notify_requester: Some(!args.no_report),
                    allow_legacy_statuses: args.legacy_statuses,
                    file_name: String::new(),
                    report_to: args.report_to,
                },
            };
            if remote::import(&connection, request).await? {
                Ok(())
            } else {
                // Rows failed (the results file says which): a distinct exit status for scripts.
                std::process::exit(2)
            }
        }
        Command::Export(args) => {
            let request = proto::ExportUsersRequest {
                query: args.query,
                group_id: args.group,
                unit_id: args.unit,
                delimiter: args.delimiter,
                ..Default::default()
            };
            remote::export(&args.server.connection(), request, args.output).await
        }
        command => {
            let database = Database::open(source.for_admin_command(cli.init), 2).await?;
            let result = admin_command(&database, command).await;
            database.close().await?;
            result
        }
    }
}

fn import_settings(args: &ServeArgs) -> ImportSettings {
    ImportSettings {
        limits: Limits {
            max_field_bytes: args.import_max_field_bytes,
            max_record_bytes: args.import_max_record_bytes,
        },
        max_rows: args.import_max_rows,
        max_running_jobs_per_organization: args.import_max_running_jobs,
        review_retention: Duration::from_secs(args.import_review_retention_days * 86_400),
        stale_after: Period::constant(Duration::from_secs(args.import_stale_after)),
        ..ImportSettings::default()
    }
}

async fn serve(
    source: DatabaseSource,
    args: ServeArgs,
    mail_dir: PathBuf,
    key_file: &Path,
) -> Result<()> {
    let stop = stop_signal();
    let hangups = hangup_signal().context("install the SIGHUP handler")?;
    let mut settings = ServerSettings::new(args.listen);
    settings.reflection = !args.no_reflection;
    settings.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        }),
        _ => None,
    };
    settings.insecure_plaintext = args.insecure_plaintext;
    settings.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    settings.import = import_settings(&args);
    settings.changes.retention = Duration::from_secs(args.change_retention_days * 24 * 3600);
    settings.changes.heartbeat = Duration::from_secs(args.change_heartbeat);
    settings.changes.max_streams = args.change_max_streams as usize;
    if !args.no_delivery {
        let transport = match &args.smtp_url {
            Some(url) => MailTransport::Smtp { url: url.clone() },
            None => MailTransport::Directory(std::path::absolute(&mail_dir)?),
        };
        let mut delivery = DeliverySettings::new(transport, args.public_url.as_deref());
        delivery.from.clone_from(&args.mail_from);
        settings.delivery = Some(delivery);
    }
    settings.http_listen = Some(args.http_listen);
    settings.metrics_listen = args.metrics_listen;
    settings.passwords = PasswordSettings {
        workers: args
            .password_hash_workers
            .unwrap_or_else(PasswordHasher::default_workers),
        queue: args.password_hash_queue,
    };
    // A listener or certificate that cannot serve is refused before the private cluster starts.
    settings.preflight()?;
    let database = Database::open(source, args.db_max_connections).await?;
    settings.secret_key = secret_key(&args, database.is_private(), key_file)?;
    let served = async {
        if database.is_private() {
            if let Some((organization, secret)) = bootstrap::first_start(&database.pool).await? {
                print_bootstrap_key(&args, &organization.name, secret.expose());
            }
        }
        let application = Application::build(&settings, database.pool.clone()).await?;
        tokio::spawn(reload_tls_on_hangup(hangups, application.tls()));
        tracing::info!(address = %application.local_addr(), reflection = settings.reflection, tls = settings.tls.is_some(), "roster is serving gRPC");
        if let Some(pages) = application.http_addr() {
            let public_url = args
                .public_url
                .clone()
                .unwrap_or_else(|| startup::pages_url(settings.tls.is_some(), pages));
            tracing::info!(address = %pages, public_url = %public_url, "password pages served");
        }
        if let Some(metrics) = application.metrics_addr() {
            tracing::info!(address = %metrics, "metrics served at /metrics");
        }
        application.run_until_stopped(stop).await
    }
    .await;
    database.close().await?;
    served
}

/// The first start's bootstrap key, with a grpcurl call that uses it.
/// The key given, else (zero configuration) the data directory's, created
/// on first start readable by its owner only; `None` with a database of
/// the operator's and no key, said once in the log.
fn secret_key(args: &ServeArgs, private: bool, key_file: &Path) -> Result<Option<Arc<SecretKey>>> {
    if let Some(text) = &args.secret_key {
        let key = SecretKey::parse_base64(text)
            .map_err(|problem| anyhow::anyhow!("ROSTER_SECRET_KEY: {problem}"))?;
        return Ok(Some(Arc::new(key)));
    }
    if !private {
        tracing::warn!("no ROSTER_SECRET_KEY: users cannot enroll a second factor on this server");
        return Ok(None);
    }
    Ok(Some(Arc::new(data_dir_secret_key(key_file)?)))
}

/// `<data dir>/secret_key`, created (0600) when missing.
fn data_dir_secret_key(path: &Path) -> Result<SecretKey> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return SecretKey::parse_base64(&text)
                .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    }
    let key = SecretKey::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    writeln!(file, "{}", key.to_base64()).with_context(|| format!("write {}", path.display()))?;
    Ok(key)
}

fn print_bootstrap_key(args: &ServeArgs, organization: &str, secret: &str) {
    let transport = match (&args.tls_cert, &args.tls_client_ca) {
        (Some(cert), None) => format!("-cacert <the CA of {}>", cert.display()),
        (Some(cert), Some(client_ca)) => format!(
            "-cacert <the CA of {}> -cert <a client certificate signed by {}> -key <its key>",
            cert.display(),
            client_ca.display()
        ),
        (None, _) => "-plaintext".to_owned(),
    };
    eprintln!(
        "\nFirst start: created organization `{organization}` and its bootstrap ADMIN API key (shown once, keep it safe):\n\n    {secret}\n\nTry: grpcurl {transport} -H 'authorization: Bearer {secret}' {} roster.v1.AuthService/WhoAmI\n",
        args.listen
    );
}

async fn admin_command(database: &Database, command: Command) -> Result<()> {
    let pool = &database.pool;
    match command {
        Command::Serve(_) | Command::Import(_) | Command::Export(_) | Command::Mail(_) => {
            unreachable!("dispatched above")
        }
        Command::Migrate => {
            eprintln!("migrations applied");
        }
        Command::Org(OrgCommand::Create { name, display_name }) => {
            let organization = organization::create_named_organization(
                pool,
                &name,
                &display_name,
                Actor::Operator,
            )
            .await?;
            println!("{}", organization.id);
        }
        Command::Org(OrgCommand::Rename { old, new }) => {
            let organization =
                organization::rename_organization(pool, &old, &new, Actor::Operator).await?;
            eprintln!(
                "renamed organization `{}` to `{}` ({}): people type `{}` at sign-in from now on",
                old.trim(),
                organization.name,
                organization.id,
                organization.name
            );
        }
        Command::Org(OrgCommand::List) => {
            for organization in organization::list_organizations(pool).await? {
                println!(
                    "{}\t{}\t{}",
                    organization.id, organization.name, organization.settings.display_name
                );
            }
        }
        Command::ApiKey(command) => api_key_command(pool, command).await?,
    }
    Ok(())
}

async fn api_key_command(pool: &crate::store::Pool, command: ApiKeyCommand) -> Result<()> {
    match command {
        ApiKeyCommand::Create {
            org,
            name,
            scope,
            expires_in_days,
        } => {
            let organization = find_organization(pool, &org).await?;
            let scopes: Vec<Option<Scope>> = scope
                .into_iter()
                .map(|s| {
                    Some(match s {
                        ScopeArg::Admin => Scope::Admin,
                        ScopeArg::Viewer => Scope::Viewer,
                    })
                })
                .collect();
            let expire_time = expires_in_days
                .map(|days| chrono::Utc::now() + chrono::Duration::days(i64::from(days)));
            let new_key = NewApiKey::parse(&name, &scopes, expire_time, "")?;
            let (_, secret) = api_key::create_api_key(
                pool,
                organization.id,
                Actor::Operator,
                None,
                Via::Cli,
                &new_key,
            )
            .await?;
            let secret = secret.context("a new key always has a secret")?;
            println!("{}", secret.expose());
        }
        ApiKeyCommand::Revoke { org, id, name } => {
            let organization = find_organization(pool, &org).await?;
            let key_id = match (id, name) {
                (Some(id), _) => id,
                (None, Some(name)) => {
                    api_key::find_api_key_by_name(pool, organization.id, &name)
                        .await?
                        .id
                }
                (None, None) => bail!("give --id or --name"),
            };
            let key = api_key::revoke_api_key(
                pool,
                organization.id,
                key_id,
                Actor::Operator,
                None,
                Via::Cli,
            )
            .await?;
            eprintln!("revoked API key {} ({})", key.name, key.id);
        }
    }
    Ok(())
}

async fn find_organization(
    pool: &crate::store::Pool,
    name: &str,
) -> Result<organization::Organization> {
    organization::find_organization_by_name(pool, name)
        .await?
        .with_context(|| format!("no organization named `{name}` (see `roster org list`)"))
}

fn mail_command(mail_dir: &std::path::Path, command: MailCommand) -> Result<()> {
    let folder = MailFolder::open(mail_dir)?;
    let time = |mail: &StoredMail| mail.time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let kind = |mail: &StoredMail| match mail.kind.as_str() {
        "" => "-".to_owned(),
        kind => kind.to_owned(),
    };
    match command {
        MailCommand::List { to, limit } => {
            for mail in readable(folder.latest(to.as_deref())?).take(limit) {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    time(&mail),
                    mail.to,
                    kind(&mail),
                    mail.subject,
                    mail.file_name
                );
            }
        }
        MailCommand::Show { file, to, .. } => {
            let mail = match file {
                Some(file) => folder.read(&file)?,
                None => readable(folder.latest(to.as_deref())?)
                    .next()
                    .with_context(|| no_messages(mail_dir, to.as_deref()))?,
            };
            println!("File: {}", mail.file_name);
            println!("Date: {}", mail.date);
            println!("From: {}", mail.from);
            println!("To: {}", mail.to_header);
            println!("Subject: {}", mail.subject);
            println!("\n{}", mail.text.trim_end());
        }
        MailCommand::Links { to, latest, limit } => {
            let limit = if latest { 1 } else { limit };
            for mail in readable(folder.latest(to.as_deref())?).take(limit) {
                for link in mail.links() {
                    println!("{}\t{}\t{}\t{link}", time(&mail), mail.to, kind(&mail));
                }
            }
        }
    }
    Ok(())
}

/// The messages that could be read; a file that cannot is reported and skipped.
fn readable(mails: impl Iterator<Item = Result<StoredMail>>) -> impl Iterator<Item = StoredMail> {
    mails.filter_map(|mail| mail.map_err(|error| eprintln!("warning: {error:#}")).ok())
}

fn no_messages(mail_dir: &std::path::Path, to: Option<&str>) -> String {
    match to {
        Some(to) => format!("no message to {to} in {}", mail_dir.display()),
        None => format!("no message in {}", mail_dir.display()),
    }
}

/// A user given on the command line: an id (a UUID), an email (with an
/// `@`) or else a username.
fn user_key(value: &str) -> proto::UserKey {
    use proto::user_key::Key;
    let value = value.trim().to_owned();
    proto::UserKey {
        key: Some(if uuid::Uuid::parse_str(&value).is_ok() {
            Key::Id(value)
        } else if value.contains('@') {
            Key::Email(value)
        } else {
            Key::Username(value)
        }),
    }
}

/// `--groups` values split into ids (those that read as UUIDs) and names.
fn groups_by_id_and_name(values: &[String]) -> (Vec<String>, Vec<String>) {
    values
        .iter()
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .partition(|value| uuid::Uuid::parse_str(value).is_ok())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_data_directory_s_secret_key_is_created_once_readable_by_its_owner_only() {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let path = data_dir.path().join("secret_key");
        let created = data_dir_secret_key(&path).expect("created");
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = data_dir_secret_key(&path).expect("read back");
        assert_eq!(again.to_base64(), created.to_base64());
        std::fs::write(&path, "short").expect("overwrite");
        assert!(data_dir_secret_key(&path).is_err());
    }
}
