//! The `roster` binary: zero-configuration serve (private cluster, bootstrap
//! key, restart, signals), DATABASE_URL mode, and the admin commands.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use roster::proto::{
    self, auth_service_client::AuthServiceClient, user_service_client::UserServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::helpers::{eventually, Bearer};

/// How soon a change made by another process (the CLI) bites on a server.
const WITHIN_A_SECOND: Duration = Duration::from_secs(1);

pub(crate) fn roster(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("ROSTER_LISTEN")
        .env_remove("ROSTER_DATA_DIR")
        .env("RUST_LOG", "info");
    command
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `roster serve` and the stderr lines it printed until ready.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) startup: Vec<String>,
    /// The stderr lines printed after startup.
    log: Arc<Mutex<Vec<String>>>,
    pub(crate) address: String,
}

pub(crate) fn serve(command: Command, port: u16) -> Served {
    serve_with(command, port, &[])
}

/// `roster serve` with these options besides `--listen`.
pub(crate) fn serve_with(mut command: Command, port: u16, options: &[&str]) -> Served {
    let mut child = command
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(options)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roster serve");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut startup = Vec::new();
    loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("roster serve did not get ready:\n{}", startup.join("\n")));
        let ready = line.contains("roster is serving gRPC");
        startup.push(line);
        if ready {
            break;
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    let log = Arc::new(Mutex::new(Vec::new()));
    let collected = log.clone();
    std::thread::spawn(move || {
        while let Ok(line) = lines_rx.recv() {
            collected.lock().unwrap().push(line);
        }
    });
    Served {
        child,
        startup,
        log,
        address: format!("http://127.0.0.1:{port}"),
    }
}

/// A test that fails midway leaves no server running (nor its cluster).
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// The first line logged after startup that contains every one of `words`.
    pub(crate) fn logged(&self, words: &[&str]) -> Option<String> {
        self.logged_all(words).into_iter().next()
    }

    /// Every line logged after startup that contains every one of `words`.
    pub(crate) fn logged_all(&self, words: &[&str]) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|line| words.iter().all(|word| line.contains(word)))
            .cloned()
            .collect()
    }

    pub(crate) fn bootstrap_key(&self) -> Option<String> {
        self.startup.iter().find_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with("rst_key_"))
                .map(|word| word.trim_matches('\'').to_owned())
        })
    }

    pub(crate) fn stop(mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "roster serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "roster serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn who_am_i(address: &str, token: &str) -> Result<proto::WhoAmIResponse, tonic::Status> {
    let channel = Channel::from_shared(address.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthServiceClient::with_interceptor(channel, Bearer::token(token))
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("run roster");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Organization `acme` and its admin key `ops`, made with the operator's CLI
/// (`operator(args)`: `roster` on the database, with `args`); the key's secret.
pub(crate) fn acme_and_its_ops_key(operator: impl Fn(&[&str]) -> Command) -> String {
    run_ok(&mut operator(&["org", "create", "acme"]));
    run_ok(&mut operator(&[
        "api-key", "create", "--org", "acme", "--name", "ops", "--scope", "admin",
    ]))
    .trim()
    .to_owned()
}

/// `roster serve` (`command`) on a free port with the password pages, and a
/// channel to its gRPC address.
pub(crate) async fn serve_with_pages(command: Command) -> (Served, Channel) {
    let served = serve_with(command, free_port(), &["--http-listen", "127.0.0.1:0"]);
    let channel = Channel::from_shared(served.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (served, channel)
}

/// A fresh data directory the postgres user may enter, so that the private
/// cluster lives inside it.
pub(crate) fn data_dir_for_postgres(prefix: &str) -> tempfile::TempDir {
    let data_dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    data_dir
}

pub(crate) fn cluster_dir(data_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(data_dir.join("CLUSTER_LOCATION")) {
        Ok(note) => PathBuf::from(note.lines().nth(1).unwrap().trim()),
        Err(_) => data_dir.join("postgres"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_configuration_serve_bootstraps_once_and_survives_a_restart_under_a_closed_directory()
{
    // A clone under a directory the postgres user cannot enter (like /root).
    let closed = tempfile::Builder::new()
        .prefix("roster-closed-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data_dir = closed.path().join("checkout").join(".roster");
    let port = free_port();

    let first = serve(roster(&data_dir), port);
    let key = first
        .bootstrap_key()
        .expect("the first start prints a bootstrap key");
    let me = who_am_i(&first.address, &key).await.unwrap();
    assert_eq!(me.organization_name, "default");
    assert_eq!(me.scopes, [proto::Scope::Admin as i32]);
    assert!(who_am_i(&first.address, "").await.is_err());

    // Admin commands while the server runs: they attach to its cluster.
    let beta_id = run_ok(roster(&data_dir).args(["org", "create", "beta"]));
    assert!(
        uuid::Uuid::parse_str(beta_id.trim()).is_ok(),
        "prints the id: {beta_id}"
    );
    let secret = run_ok(roster(&data_dir).args([
        "api-key", "create", "--org", "beta", "--name", "ci", "--scope", "viewer",
    ]));
    assert_eq!(secret.lines().count(), 1);
    let secret = secret.trim();
    assert!(secret.starts_with("rst_key_"));
    let me = who_am_i(&first.address, secret).await.unwrap();
    assert_eq!(me.organization_name, "beta");
    assert_eq!(me.scopes, [proto::Scope::Viewer as i32]);
    run_ok(roster(&data_dir).args(["api-key", "revoke", "--org", "beta", "--name", "ci"]));
    // Another process revoked it: the server hears of it within a second.
    eventually(
        "the key revoked by the CLI is refused",
        WITHIN_A_SECOND,
        || async {
            let code = who_am_i(&first.address, secret).await.err()?.code();
            assert_eq!(code, tonic::Code::Unauthenticated);
            Some(())
        },
    )
    .await;
    first.stop(nix::sys::signal::Signal::SIGTERM);
    let pgdata = cluster_dir(&data_dir);
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "serve stopped its cluster"
    );

    // Without a server, an admin command starts the cluster and stops it again.
    let organizations = run_ok(roster(&data_dir).args(["org", "list"]));
    assert!(
        organizations.contains("\tdefault") && organizations.contains("\tbeta"),
        "{organizations}"
    );
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "the command stopped the cluster it started"
    );

    // The key that seals second-factor secrets: created on the first start, its owner's only.
    let secret_key = std::fs::read_to_string(data_dir.join("secret_key")).unwrap();
    let mode = std::fs::metadata(data_dir.join("secret_key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let second = serve(roster(&data_dir), port);
    assert_eq!(second.bootstrap_key(), None, "a restart prints no new key");
    assert_eq!(
        std::fs::read_to_string(data_dir.join("secret_key")).unwrap(),
        secret_key,
        "a restart keeps the key"
    );
    assert_eq!(
        who_am_i(&second.address, &key)
            .await
            .unwrap()
            .organization_name,
        "default"
    );
    second.stop(nix::sys::signal::Signal::SIGINT);

    if data_dir.join("CLUSTER_LOCATION").exists() {
        std::fs::remove_dir_all(&pgdata).unwrap();
    }
}

/// The pid in a cluster's `postmaster.pid`, once the file names a live one.
pub(crate) fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    alive.then_some(pid)
}

/// Whether a postmaster other than `not` runs and says it is ready.
fn postmaster_ready(pgdata: &Path, not: i32) -> bool {
    let status = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap_or_default();
    postmaster_pid(pgdata).is_some_and(|pid| pid != not)
        && status.lines().nth(7).map(str::trim) == Some("ready")
}

type Users = UserServiceClient<InterceptedService<Channel, Bearer>>;

/// A user service client with `key` and a health client, on one connection to `served`.
pub(crate) async fn users_and_health(served: &Served, key: &str) -> (Users, HealthClient<Channel>) {
    let channel = Channel::from_shared(served.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let users = UserServiceClient::with_interceptor(channel.clone(), Bearer::token(key));
    (users, HealthClient::new(channel))
}

/// Kills the postmaster of `pgdata` and reads until Roster serves again:
/// every refusal UNAVAILABLE and quick, health NOT_SERVING meanwhile, and
/// serving within 5 s of the restarted cluster being ready (crash recovery
/// is PostgreSQL's and takes what the disk takes).
pub(crate) async fn kill_postmaster_and_read_until_served(
    users: &mut Users,
    health: &mut HealthClient<Channel>,
    pgdata: &Path,
) {
    let killed_pid = postmaster_pid(pgdata).expect("the postmaster runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let (mut refused, mut not_serving, mut ready) = (0, false, None);
    let back = loop {
        let limit = ready.map_or(Duration::from_secs(30), |ready: Duration| {
            ready + Duration::from_secs(5)
        });
        assert!(
            killed.elapsed() < limit,
            "not serving in time ({refused} refused)"
        );
        if ready.is_none() && postmaster_ready(pgdata, killed_pid) {
            ready = Some(killed.elapsed());
        }
        let check = health.check(HealthCheckRequest::default()).await.unwrap();
        not_serving |= check.into_inner().status() == ServingStatus::NotServing;
        let mut request = tonic::Request::new(proto::ListUsersRequest::default());
        request.set_timeout(Duration::from_secs(3));
        let asked = Instant::now();
        match users.list_users(request).await {
            Ok(_) if refused > 0 => break killed.elapsed(),
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                let took = asked.elapsed();
                // Refused as soon as the watch's next probe fails (a quarter
                // of a second), not after the call's 3 s deadline; the slack
                // is for a loaded machine.
                assert!(took < Duration::from_secs(2), "refused after {took:?}");
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        not_serving,
        "health said NOT_SERVING while the postmaster was gone"
    );
    assert_ne!(
        postmaster_pid(pgdata),
        Some(killed_pid),
        "a new postmaster runs"
    );
    eprintln!(
        "postmaster killed: {refused} reads refused, the restarted cluster ready after {ready:?}, serving again after {back:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postmaster_killed_with_sigkill_is_restarted_and_calls_are_unavailable_meanwhile() {
    let data_dir = data_dir_for_postgres("roster-crash-");
    let mut command = roster(data_dir.path());
    // Pages on a free port (another test serves the default one).
    command.env("ROSTER_HTTP_LISTEN", "127.0.0.1:0");
    let served = serve(command, free_port());
    let key = served.bootstrap_key().unwrap();
    let (mut users, mut health) = users_and_health(&served, &key).await;
    let pgdata = cluster_dir(data_dir.path());
    let killed_pid = postmaster_pid(&pgdata).expect("the postmaster runs");
    users
        .list_users(proto::ListUsersRequest::default())
        .await
        .unwrap();

    kill_postmaster_and_read_until_served(&mut users, &mut health, &pgdata).await;
    let restarted = postmaster_pid(&pgdata).expect("a new postmaster runs");
    assert_ne!(restarted, killed_pid);
    let log = served.log.lock().unwrap().join("\n");
    assert!(
        log.contains("private postgresql exited unexpectedly; restarting it"),
        "{log}"
    );
    assert!(log.contains("restarted private postgresql"), "{log}");

    // Pages on port 0: the public URL names the port bound (issue 20 point 4).
    let pages = log
        .lines()
        .find(|line| line.contains("password pages served"))
        .unwrap();
    assert!(
        pages.contains("http://127.0.0.1:") && !pages.ends_with(":0"),
        "{pages}"
    );

    served.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(
        postmaster_pid(&pgdata).is_none(),
        "serve stopped the restarted cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_database_url_nothing_is_created_automatically() {
    let Some(url) = crate::helpers::fresh_database_url().await else {
        eprintln!("skipped: the test database server is the one DATABASE_URL names");
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = roster(data_dir.path());
    command.env("DATABASE_URL", &url);
    let served = serve(command, port);
    assert_eq!(served.bootstrap_key(), None);
    let with_url = |args: &[&str]| {
        let mut command = roster(data_dir.path());
        command.env("DATABASE_URL", &url).args(args);
        command
    };
    assert_eq!(run_ok(&mut with_url(&["org", "list"])), "");
    let secret = acme_and_its_ops_key(with_url);
    assert_eq!(
        who_am_i(&served.address, &secret)
            .await
            .unwrap()
            .organization_name,
        "acme"
    );
    assert!(
        !data_dir.path().join("postgres").exists(),
        "no private cluster"
    );
    served.stop(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn without_postgresql_binaries_the_error_names_the_fix() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = roster(data_dir.path())
        .env("PATH", "/nonexistent")
        .env("ROSTER_POSTGRESQL_LIB_DIR", "/nonexistent")
        .args(["--init", "org", "list"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("apt-get install postgresql") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
}

#[test]
fn every_command_has_help() {
    let data_dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["org", "create", "--help"],
        vec!["org", "list", "--help"],
        vec!["org", "rename", "--help"],
        vec!["mail", "list", "--help"],
        vec!["mail", "show", "--help"],
        vec!["mail", "links", "--help"],
        vec!["api-key", "create", "--help"],
        vec!["api-key", "revoke", "--help"],
    ] {
        let help = run_ok(roster(data_dir.path()).args(&args));
        assert!(help.contains("Usage:"), "{args:?}");
    }
}

/// `roster import` / `roster export` against a test server.
fn client(app: &crate::helpers::TestApp) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .env("ROSTER_SERVER", &app.address)
        .env("ROSTER_API_KEY", &app.admin_key)
        .env_remove("DATABASE_URL");
    command
}

// The binary runs while this test waits on it: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_import_reviews_imports_writes_results_resumes_and_roster_export_writes_the_csv() {
    let app = crate::helpers::TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "first_name;last_name;email\r\nAna;Silva;ana@acme.com\r\nBruno;;bruno@acme.com\r\n",
    )
    .unwrap();
    let results_path = dir.path().join("people.csv.results.csv");

    let review = client(&app)
        .arg("import")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_eq!(
        review.status.code(),
        Some(2),
        "a failed row exits 2: {review:?}"
    );
    let users = app.count("select count(*) from users").await;
    assert_eq!(users, 0, "a dry run writes no user");

    let imported = client(&app)
        .arg("import")
        .arg(&file)
        .args(["--on-existing", "skip", "--no-invitations"])
        .output()
        .unwrap();
    assert_eq!(imported.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(stdout.contains("created 1"), "{stdout}");
    let results = std::fs::read_to_string(&results_path).unwrap();
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(
        lines[0],
        "first_name,last_name,email,line,outcome,user_id,errors,warnings"
    );
    let ana: uuid::Uuid = sqlx::query_scalar("select id from users where email = 'ana@acme.com'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        lines[1],
        format!("Ana,Silva,ana@acme.com,2,CREATED,{ana},,")
    );
    assert!(
        lines[2].starts_with("Bruno,,bruno@acme.com,3,FAILED,,last_name: "),
        "{}",
        lines[2]
    );
    let outbox = app.count("select count(*) from outbox").await;
    assert_eq!(outbox, 0, "--no-invitations");

    let job_id = stdout.split_whitespace().nth(1).unwrap().to_owned();
    std::fs::remove_file(&results_path).unwrap();
    let resumed = client(&app)
        .arg("import")
        .arg(&file)
        .args(["--resume", &job_id])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&results_path).unwrap(), results);

    let export_path = dir.path().join("export.csv");
    let exported = client(&app)
        .arg("export")
        .arg("--output")
        .arg(&export_path)
        .args(["--delimiter", ";"])
        .output()
        .unwrap();
    assert!(exported.status.success(), "{exported:?}");
    let csv = std::fs::read_to_string(&export_path).unwrap();
    assert!(
        csv.starts_with("\u{FEFF}first_name;last_name;email;"),
        "{csv}"
    );
    assert!(csv.contains("Ana;Silva;ana@acme.com;ana@acme.com;"));

    let refused = client(&app)
        .arg("import")
        .arg(dir.path().join("missing.csv"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
}

// The binary runs while this test waits on it: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_rows_fixed_in_the_results_file_import_again_from_it() {
    let app = crate::helpers::TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    // A phone escaped as an export escapes it, a quoted cell, a blank line.
    std::fs::write(
        &file,
        "First Name,last_name,email,phone\n\
         Ana,\"Silva, Jr.\",ana@acme.com,\n\
         \n\
         Bruno,,bruno@acme.com,'+5511999998888\n\
         Carla,Souza,not-an-email,\n",
    )
    .unwrap();
    let import = |file: &Path| {
        client(&app)
            .arg("import")
            .arg(file)
            .args(["--failed-only", "--no-invitations"])
            .output()
            .unwrap()
    };
    let first = import(&file);
    assert_eq!(first.status.code(), Some(2), "{first:?}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("created 1"), "{stdout}");
    assert!(stdout.contains("(failed rows only)"), "{stdout}");
    let results_path = dir.path().join("people.csv.results.csv");
    let results = std::fs::read_to_string(&results_path).unwrap();
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(
        lines[0],
        "First Name,last_name,email,phone,line,outcome,user_id,errors,warnings"
    );
    assert_eq!(lines.len(), 3, "only the failed rows: {results}");
    assert!(
        lines[1].starts_with("Bruno,,bruno@acme.com,'+5511999998888,4,FAILED,,last_name: "),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("Carla,Souza,not-an-email,,5,FAILED,,email: "),
        "{}",
        lines[2]
    );

    // Fixed where they are, the rows import again from the results file:
    // its result columns are ignored, and written afresh (not twice).
    let fixed = results
        .replace("Bruno,,", "Bruno,Lima,")
        .replace("not-an-email", "carla@acme.com");
    std::fs::write(&results_path, fixed).unwrap();
    let second = import(&results_path);
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("created 2"), "{stdout}");
    let rerun_results =
        std::fs::read_to_string(dir.path().join("people.csv.results.csv.results.csv")).unwrap();
    assert_eq!(
        rerun_results.lines().collect::<Vec<_>>(),
        ["First Name,last_name,email,phone,line,outcome,user_id,errors,warnings"],
        "nothing failed"
    );
    let phone: Option<String> =
        sqlx::query_scalar("select phone from users where email = 'bruno@acme.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(phone.as_deref(), Some("+5511999998888"));
    let last_name: String =
        sqlx::query_scalar("select last_name from users where email = 'ana@acme.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(last_name, "Silva, Jr.");
}

// The binary runs while this test waits on it: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_import_report_to_mails_the_report_of_an_api_key_import_to_users_only() {
    let app = crate::helpers::TestApp::spawn().await;
    app.create_user("Bo", "Ss", "boss@acme.com").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("march.csv");
    std::fs::write(
        &file,
        "first_name,last_name,email\nAna,Silva,ana@acme.com\n",
    )
    .unwrap();

    let refused = client(&app)
        .arg("import")
        .arg(&file)
        .args([
            "--report-to",
            "boss@acme.com",
            "--report-to",
            "me@example.com",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("options.report_to[1]"), "{stderr}");

    let imported = client(&app)
        .arg("import")
        .arg(&file)
        .args(["--report-to", "boss@acme.com", "--no-invitations"])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(
        stdout.contains("the report is emailed to boss@acme.com"),
        "{stdout}"
    );
    // Boss's first message is their invitation.
    let report = app.email("boss@acme.com", 2).await;
    assert!(report.text.contains("march.csv"), "{}", report.text);
}
