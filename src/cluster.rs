//! A private PostgreSQL cluster run from the machine's own server binaries,
//! for zero-configuration `roster serve` and for the test suite.
//!
//! As root, `initdb` and `postgres` refuse to run, so they run as the
//! `postgres` system user. When that user cannot enter the data directory
//! (a clone under `/root`), the cluster lives under `/var/lib/roster/`.
//! The socket directory is a short path under `/tmp` so it stays under the
//! kernel's 108-byte limit whatever the data directory's depth.

use std::{
    fs,
    io::{Read, Write},
    os::unix::{
        fs::{chown, DirBuilderExt, PermissionsExt},
        net::UnixStream,
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
    sys::signal::{kill, Signal},
    unistd::{Gid, Pid, Uid, User},
};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

/// The PostgreSQL role `initdb` creates and Roster connects as.
const SUPERUSER: &str = "roster";
const PORT: u16 = 5432;
const FALLBACK_ROOT: &str = "/var/lib/roster";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Trade durability for speed (tests on /dev/shm): no fsync.
    pub ephemeral: bool,
    /// This process is the data directory's server (`roster serve`): one at a
    /// time (the serve lock says so), and a cluster it finds running is
    /// stopped and started again under its own supervision rather than used.
    pub serving: bool,
    /// Refuse to create a cluster where there is none (admin commands
    /// without `--init`): a mistyped data directory is an error, not a new
    /// empty organization list.
    pub existing_only: bool,
}

/// No cluster where an admin command was pointed, and it was not asked to
/// create one.
#[derive(Debug, thiserror::Error)]
#[error(
    "no Roster data in {}: no database cluster was found there. Give the directory \
     `roster serve` uses (--data-dir DIR or ROSTER_DATA_DIR; the default is .roster in the current \
     directory) or its database (DATABASE_URL), or pass --init to create a new, empty cluster there",
    .data_dir.display()
)]
pub struct NoRosterData {
    pub data_dir: PathBuf,
}

/// A running cluster: started by this process (and stopped by it), or found
/// already running on the same data directory (and left alone).
#[derive(Debug)]
pub struct PrivateCluster {
    pgdata: PathBuf,
    socket_dir: PathBuf,
    started: Option<StartedServer>,
    /// Held while `roster serve` runs: the kernel drops it when the process
    /// dies, however it dies.
    _serve_lock: Option<Flock<fs::File>>,
}

#[derive(Debug)]
struct StartedServer {
    /// The running postmaster; a restart after a crash replaces it.
    pid: Arc<AtomicI32>,
    /// Receives once the server process has exited for good (it is not
    /// restarted). In a mutex so a cluster can be shared.
    exited: Mutex<mpsc::Receiver<()>>,
    /// Set once the server was first ready: from then on its exit is a crash
    /// and it is restarted (before, an exit is a failed start).
    supervised: Arc<AtomicBool>,
    /// Set by `stop`: the exit that follows is the end.
    stopping: Arc<AtomicBool>,
}

impl StartedServer {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.pid.load(Ordering::SeqCst))
    }

    fn wait_exit(&self, timeout: Duration) -> bool {
        let exited = self
            .exited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match exited.recv_timeout(timeout) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

/// Who runs `initdb` and `postgres`: the current user, or the `postgres`
/// system user when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: Uid,
    gid: Gid,
}

#[derive(Debug)]
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl PrivateCluster {
    /// Starts the cluster of `data_dir` (creating it on first use), or attaches
    /// to it when another process already runs it.
    pub fn start_or_attach(data_dir: &Path, options: ClusterOptions) -> Result<Self> {
        let run_as = run_as()?;
        if options.existing_only && !holds_cluster(data_dir, run_as) {
            return Err(NoRosterData {
                data_dir: std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned()),
            }
            .into());
        }
        let binaries = find_binaries()?;
        fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data directory {}", data_dir.display()))?;
        let serve_lock = options
            .serving
            .then(|| lock_serving(&data_dir))
            .transpose()?;
        let pgdata = cluster_location(&data_dir, run_as)?;
        let socket_dir = PathBuf::from(format!("/tmp/roster-{}", short_hash(&pgdata)));
        make_private_dir(&socket_dir, run_as)?;

        let mut cluster = PrivateCluster {
            pgdata,
            socket_dir,
            started: None,
            _serve_lock: serve_lock,
        };
        if !cluster.pgdata.join("PG_VERSION").exists() {
            init_cluster(&binaries, &cluster.pgdata, run_as, options)?;
        }
        cluster.make_way(options.serving)?;
        if cluster.accepts_connections() {
            tracing::info!(pgdata = %cluster.pgdata.display(), "attached to running private postgresql");
            return Ok(cluster);
        }
        let log_path = data_dir.join("postgres.log");
        let started = spawn_postgres(&binaries, &cluster, run_as, options, &log_path)?;
        cluster.started = Some(started);
        match cluster.wait_until_ready(&log_path) {
            Ok(()) => {
                if let Some(started) = &cluster.started {
                    started.supervised.store(true, Ordering::SeqCst);
                }
                tracing::info!(pgdata = %cluster.pgdata.display(), "started private postgresql");
                Ok(cluster)
            }
            // Another process won the race to start the same cluster.
            Err(_) if cluster.server_exited() && cluster.accepts_connections() => {
                cluster.started = None;
                Ok(cluster)
            }
            Err(error) => Err(error),
        }
    }

    /// Connection options for one database of the cluster, over its socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
    }

    /// A URL for DATABASE_URL or psql; the `host` parameter (the socket directory) wins over `localhost`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@localhost/{database}?host={}&port={PORT}",
            self.socket_dir.display()
        )
    }

    /// Stops the server if this process started it: a fast shutdown, then an
    /// immediate one if it does not stop in time. A no-op otherwise.
    pub fn stop(&mut self) -> Result<()> {
        let Some(server) = self.started.take() else {
            return Ok(());
        };
        server.stopping.store(true, Ordering::SeqCst);
        let _ = kill(server.pid(), Signal::SIGINT);
        if !server.wait_exit(STOP_TIMEOUT) {
            tracing::warn!("postgresql did not stop in time, sending an immediate shutdown");
            let _ = kill(server.pid(), Signal::SIGQUIT);
            if !server.wait_exit(STOP_TIMEOUT) {
                bail!("postgresql (pid {}) did not stop", server.pid());
            }
        }
        tracing::info!("stopped private postgresql");
        Ok(())
    }

    fn accepts_connections(&self) -> bool {
        UnixStream::connect(self.socket_dir.join(format!(".s.PGSQL.{PORT}"))).is_ok()
            && postmaster_status(&self.pgdata).as_deref() == Some("ready")
    }

    /// Clears the way for a start after a crash. A postmaster of this data
    /// directory that is shutting down (the one of a `roster serve` killed
    /// with SIGKILL gets SIGINT at its parent's death) or starting is waited
    /// for. One that is ready is used by a command; a server waits for the
    /// roster process that runs it (an admin command stops it when done), and
    /// stops an orphan (its roster died) to run it under its own supervision.
    fn make_way(&self, serving: bool) -> Result<()> {
        let Some(pid) = running_postmaster(&self.pgdata) else {
            return Ok(());
        };
        let owner = roster_parent(pid);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let (mut waiting_logged, mut stop_sent) = (false, false);
        while running_postmaster(&self.pgdata) == Some(pid) {
            let ready = self.accepts_connections();
            if ready && !serving {
                return Ok(());
            }
            if ready && owner.is_none() && !stop_sent {
                tracing::warn!(pid = pid.as_raw(), "stopping the private postgresql a dead server left running, to run it under this one's supervision");
                let _ = kill(pid, Signal::SIGINT);
                stop_sent = true;
            } else if !waiting_logged && !stop_sent {
                tracing::info!(
                    pid = pid.as_raw(),
                    run_by = owner.map(Pid::as_raw),
                    status = postmaster_status(&self.pgdata).unwrap_or_default(),
                    wait_s = STOP_TIMEOUT.as_secs(),
                    "waiting for the private postgresql of another run to stop"
                );
            }
            waiting_logged = true;
            if Instant::now() > deadline {
                let run_by = owner.map_or(String::new(), |owner| {
                    format!(", run by roster process {owner}")
                });
                bail!(
                    "the private postgresql of {} (pid {pid}{run_by}) still runs after {}s; stop it and start again",
                    self.pgdata.display(),
                    STOP_TIMEOUT.as_secs(),
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn server_exited(&self) -> bool {
        self.started
            .as_ref()
            .is_some_and(|server| server.wait_exit(Duration::ZERO))
    }

    fn wait_until_ready(&self, log_path: &Path) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.accepts_connections() {
                return Ok(());
            }
            if self.server_exited() {
                bail!(
                    "postgresql exited during start-up; its log ({}) ends with:\n{}",
                    log_path.display(),
                    log_tail(log_path)
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "postgresql was not ready after {}s; see {}",
            READY_TIMEOUT.as_secs(),
            log_path.display()
        )
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(error = %error, "could not stop private postgresql");
        }
    }
}

fn find_binaries() -> Result<Binaries> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    // Overridable so the "no binaries" error can be exercised on a machine that has them.
    let lib_dir = std::env::var_os("ROSTER_POSTGRESQL_LIB_DIR")
        .unwrap_or_else(|| "/usr/lib/postgresql".into());
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir(lib_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    // Newest installed version first.
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .map(|dir| Binaries {
            initdb: dir.join("initdb"),
            postgres: dir.join("postgres"),
        })
        .ok_or_else(|| {
            anyhow!(
                "no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin; \
                 install them (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL to an existing database"
            )
        })
}

fn run_as() -> Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")?.ok_or_else(|| {
        anyhow!(
            "running as root, PostgreSQL must run as the `postgres` system user, which does not exist; \
             install the postgresql package, run Roster as another user, or set DATABASE_URL"
        )
    })?;
    Ok(Some(RunAs {
        uid: user.uid,
        gid: user.gid,
    }))
}

/// Whether `data_dir` (as given) holds a cluster, found without creating
/// anything.
fn holds_cluster(data_dir: &Path, run_as: Option<RunAs>) -> bool {
    let Ok(data_dir) = data_dir.canonicalize() else {
        return false;
    };
    outside_location(&data_dir, run_as)
        .unwrap_or_else(|| data_dir.join("postgres"))
        .join("PG_VERSION")
        .exists()
}

/// Where the cluster of a (canonical) data directory lives when the
/// server's user cannot reach inside it: a place under /var/lib/roster
/// named after it.
fn outside_location(data_dir: &Path, run_as: Option<RunAs>) -> Option<PathBuf> {
    let run_as = run_as?;
    (!can_enter(data_dir, run_as)).then(|| Path::new(FALLBACK_ROOT).join(short_hash(data_dir)))
}

/// `<data dir>/postgres` when the server's user can reach it, else
/// `outside_location`, created and noted in the data directory so people
/// can find it.
fn cluster_location(data_dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
    let Some(outside) = outside_location(data_dir, run_as) else {
        return Ok(data_dir.join("postgres"));
    };
    let root = Path::new(FALLBACK_ROOT);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .with_context(|| format!("cannot create {}", root.display()))?;
    fs::write(
        data_dir.join("CLUSTER_LOCATION"),
        format!(
            "The postgres user cannot enter this directory, so this data directory's PostgreSQL cluster lives in\n{}\n",
            outside.display()
        ),
    )?;
    Ok(outside)
}

/// Whether `user` can traverse every directory down to `dir`, asked of the
/// kernel by running `test` as that user rather than re-implementing the
/// permission rules (ACLs, groups).
fn can_enter(dir: &Path, run_as: RunAs) -> bool {
    Command::new("test")
        .arg("-x")
        .arg(dir)
        .uid(run_as.uid.as_raw())
        .gid(run_as.gid.as_raw())
        .status()
        .is_ok_and(|status| status.success())
}

fn make_private_dir(dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    if let Some(run_as) = run_as {
        chown(dir, Some(run_as.uid.as_raw()), Some(run_as.gid.as_raw()))
            .with_context(|| format!("cannot give {} to the postgres user", dir.display()))?;
    }
    Ok(())
}

fn init_cluster(
    binaries: &Binaries,
    pgdata: &Path,
    run_as: Option<RunAs>,
    options: ClusterOptions,
) -> Result<()> {
    make_private_dir(pgdata, run_as)?;
    let mut command = Command::new(&binaries.initdb);
    command
        .arg("--pgdata")
        .arg(pgdata)
        .args(["--username", SUPERUSER])
        // Only this machine's users who can reach the 0700 socket directory connect.
        .args(["--auth", "trust"])
        .args(["--encoding", "UTF8", "--locale", "C.UTF-8"])
        .stdin(Stdio::null());
    if options.ephemeral {
        command.arg("--no-sync");
    }
    as_user(&mut command, run_as);
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", binaries.initdb.display()))?;
    if !output.status.success() {
        bail!(
            "initdb failed for {}:\n{}{}",
            pgdata.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// What it takes to start the postmaster, again after a crash.
struct Launch {
    postgres: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<RunAs>,
    options: ClusterOptions,
    log_path: PathBuf,
}

impl Launch {
    fn command(&self) -> Result<Command> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let mut command = Command::new(&self.postgres);
        command
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-k")
            .arg(&self.socket_dir)
            .args(["-p", &PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.options.ephemeral {
            command.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        as_user(&mut command, self.run_as);
        stop_with_parent(&mut command);
        Ok(command)
    }
}

/// The first pause before restarting a postmaster that died, doubled at each
/// death in a row up to `RESTART_BACKOFF_MAX`; a server that ran for
/// `RESTART_STABLE_AFTER` starts the count again.
const RESTART_BACKOFF_FIRST: Duration = Duration::from_millis(200);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
const RESTART_STABLE_AFTER: Duration = Duration::from_secs(60);

fn spawn_postgres(
    binaries: &Binaries,
    cluster: &PrivateCluster,
    run_as: Option<RunAs>,
    options: ClusterOptions,
    log_path: &Path,
) -> Result<StartedServer> {
    let launch = Launch {
        postgres: binaries.postgres.clone(),
        pgdata: cluster.pgdata.clone(),
        socket_dir: cluster.socket_dir.clone(),
        run_as,
        options,
        log_path: log_path.to_owned(),
    };
    let mut command = launch.command()?;
    let pid = Arc::new(AtomicI32::new(0));
    let supervised = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));
    // A dedicated thread owns the child: the parent-death signal follows the
    // thread that spawned it, so that thread must live as long as the server.
    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (exited_tx, exited_rx) = mpsc::channel();
    let postmaster = Postmaster {
        launch,
        pid: pid.clone(),
        supervised: supervised.clone(),
        stopping: stopping.clone(),
    };
    thread::Builder::new()
        .name("postgres".into())
        .spawn(move || {
            match command.spawn() {
                Ok(child) => {
                    let _ = spawned_tx.send(Ok(child.id()));
                    postmaster.supervise(child);
                }
                Err(error) => {
                    let _ = spawned_tx.send(Err(error));
                }
            }
            let _ = exited_tx.send(());
        })?;
    let first = spawned_rx
        .recv()?
        .with_context(|| format!("cannot run {}", binaries.postgres.display()))?;
    pid.store(i32::try_from(first)?, Ordering::SeqCst);
    Ok(StartedServer {
        pid,
        exited: Mutex::new(exited_rx),
        supervised,
        stopping,
    })
}

/// The owner of a started postmaster, on its own thread.
struct Postmaster {
    launch: Launch,
    pid: Arc<AtomicI32>,
    supervised: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

impl Postmaster {
    /// Waits for the postmaster to exit; once it was ready, an exit that no
    /// `stop` asked for is a crash: it is started again (PostgreSQL's crash
    /// recovery does the rest), with a pause that grows while it keeps dying.
    /// Returns when it exited for good.
    fn supervise(&self, mut child: std::process::Child) {
        let mut pause = RESTART_BACKOFF_FIRST;
        loop {
            let started = Instant::now();
            let status = child.wait();
            if self.stopping.load(Ordering::SeqCst) || !self.supervised.load(Ordering::SeqCst) {
                return;
            }
            if started.elapsed() > RESTART_STABLE_AFTER {
                pause = RESTART_BACKOFF_FIRST;
            }
            tracing::error!(
                status = ?status,
                restart_in_ms = pause.as_millis() as u64,
                log_tail = %log_tail(&self.launch.log_path),
                "private postgresql exited unexpectedly; restarting it"
            );
            loop {
                if !self.pause_unless_stopping(pause) {
                    return;
                }
                pause = (pause * 2).min(RESTART_BACKOFF_MAX);
                match self
                    .launch
                    .command()
                    .and_then(|mut command| Ok(command.spawn()?))
                {
                    Ok(restarted) => {
                        child = restarted;
                        break;
                    }
                    Err(error) => tracing::error!(
                        error = format!("{error:#}"),
                        "cannot restart private postgresql"
                    ),
                }
            }
            self.pid.store(child.id() as i32, Ordering::SeqCst);
            tracing::info!(pid = child.id(), "restarted private postgresql");
            // A stop that came while it restarted missed this child.
            if self.stopping.load(Ordering::SeqCst) {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            }
        }
    }

    /// Sleeps `pause` unless a stop comes first; false when one came.
    fn pause_unless_stopping(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        !self.stopping.load(Ordering::SeqCst)
    }
}

fn as_user(command: &mut Command, run_as: Option<RunAs>) {
    if let Some(run_as) = run_as {
        command.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
        // HOME of root is not readable by the postgres user.
        command.current_dir("/");
    }
}

/// If this process dies without stopping the server (a crash, SIGKILL), the
/// server gets a fast-shutdown signal instead of running on, orphaned.
#[allow(unsafe_code)]
fn stop_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
        });
    }
}

/// Takes `<data dir>/serve.lock` for this process's life, or says which
/// server holds it: two servers on one private cluster would fight over it.
fn lock_serving(data_dir: &Path) -> Result<Flock<fs::File>> {
    let path = data_dir.join("serve.lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "another `roster serve` (pid {}) runs on the data directory {}; stop it, or give this one another --data-dir",
                holder.trim(),
                data_dir.display()
            );
        }
        Err((_, error)) => {
            return Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    };
    file.set_len(0)?;
    file.write_all(std::process::id().to_string().as_bytes())?;
    Ok(file)
}

/// The postmaster `postmaster.pid` names, while a postgres process of that
/// pid lives (after a crash the file stays, and its pid may be reused).
fn running_postmaster(pgdata: &Path) -> Option<Pid> {
    let content = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid = Pid::from_raw(content.lines().next()?.trim().parse().ok()?);
    let command = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (command.trim() == "postgres").then_some(pid)
}

/// The parent of `pid` when it is a live `roster` process (which supervises
/// its postmaster); None for an orphan.
fn roster_parent(pid: Pid) -> Option<Pid> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": the command may hold spaces and parentheses.
    let (_, after_command) = stat.rsplit_once(')')?;
    let parent: i32 = after_command.split_whitespace().nth(1)?.parse().ok()?;
    let command = fs::read_to_string(format!("/proc/{parent}/comm")).ok()?;
    (command.trim() == "roster").then(|| Pid::from_raw(parent))
}

/// The status line PostgreSQL writes into postmaster.pid ("starting", "ready", ...).
fn postmaster_status(pgdata: &Path) -> Option<String> {
    let content = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    content.lines().nth(7).map(|line| line.trim().to_owned())
}

fn log_tail(path: &Path) -> String {
    let mut content = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_string(&mut content);
    }
    let lines: Vec<&str> = content.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn short_hash(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
