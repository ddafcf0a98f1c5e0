//! `roster serve` killed with SIGKILL during an import and started again at
//! once (issue 20 point 2), and then with its postmaster too; the postmaster
//! killed on its own (point 1); both under a steady load of reads. Each start
//! works, reads resume, and each interrupted import ends INTERRUPTED with the
//! counts of the rows it wrote.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use roster::proto::{self, user_service_client::UserServiceClient};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};
use tonic::transport::Channel;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use crate::{
    cli::{
        cluster_dir, data_dir_for_postgres, free_port, kill_postmaster_and_read_until_served,
        postmaster_pid, roster, serve_with, users_and_health, Served,
    },
    helpers::{eventually, Bearer},
};

/// Five kills of `roster serve`, then one of the server and its postmaster
/// at once (what a power cut leaves: a stale postmaster.pid, no clean stop).
const CYCLES: usize = 6;
const POWER_CUT: usize = 5;
const ROWS: usize = 50_000;
/// A start right after a kill waits for the old cluster to stop: bounded.
const RESTART_WITHIN: Duration = Duration::from_secs(20);

/// `roster serve` on `port`, with pages on a free one, a short stale
/// period, and room for every cycle's import to run at once (the killed ones
/// run on until they are found stale).
fn start(data_dir: &Path, port: u16) -> Served {
    let mut command = roster(data_dir);
    command.env("ROSTER_HTTP_LISTEN", "127.0.0.1:0");
    serve_with(
        command,
        port,
        &[
            "--import-stale-after",
            "3",
            "--import-max-running-jobs",
            "10",
        ],
    )
}

/// How long a read of the steady load may take: its grpc-timeout. A read
/// that outlives it by `HANG_SLACK` hangs.
const READ_DEADLINE: Duration = Duration::from_secs(2);
const HANG_SLACK: Duration = Duration::from_millis(500);

/// A steady load of reads through a client of its own while servers are
/// killed and started again on the same address: ListUsers, then GetUser of
/// the first user listed, about twenty a second, each with a grpc-timeout.
/// The channel connects again by itself after a restart.
struct ReadLoad {
    /// When each read that succeeded ended.
    served: Arc<Mutex<Vec<Instant>>>,
    /// How long each read that outlived its deadline took.
    hung: Arc<Mutex<Vec<Duration>>>,
    refused: Arc<Mutex<Vec<tonic::Code>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ReadLoad {
    fn start(address: &str, key: &str) -> Self {
        let channel = Channel::from_shared(address.to_owned())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        let mut users = UserServiceClient::with_interceptor(channel, Bearer::token(key));
        let served = Arc::new(Mutex::new(Vec::new()));
        let hung = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (served_by, hung_by, refused_by) = (served.clone(), hung.clone(), refused.clone());
        let reader = tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                let read = tokio::time::timeout(READ_DEADLINE + HANG_SLACK, read_twice(&mut users));
                match read.await {
                    Ok(Ok(())) => served_by.lock().unwrap().push(Instant::now()),
                    Ok(Err(status)) => refused_by.lock().unwrap().push(status.code()),
                    Err(_) => {}
                }
                let took = asked.elapsed();
                if took > READ_DEADLINE + HANG_SLACK {
                    hung_by.lock().unwrap().push(took);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self {
            served,
            hung,
            refused,
            reader,
        }
    }

    fn served_since(&self, since: Instant) -> usize {
        let served = self.served.lock().unwrap();
        served.iter().filter(|&&at| at > since).count()
    }

    /// Waits until a read succeeded after `since` (at most `within`), and
    /// checks that none hung so far.
    async fn resumes_after(&self, since: Instant, within: Duration, what: &str) {
        eventually(&format!("{what}: reads resume"), within, || {
            std::future::ready((self.served_since(since) > 0).then_some(()))
        })
        .await;
        let hung = self.hung.lock().unwrap();
        assert!(
            hung.is_empty(),
            "{what}: reads hung past their deadline: {hung:?}"
        );
    }

    /// Stops reading; says how many reads were served and refused, and how.
    fn stop(self) -> String {
        self.reader.abort();
        let mut refused = self.refused.lock().unwrap().clone();
        refused.sort_by_key(|code| *code as i32);
        refused.dedup();
        format!(
            "{} reads served, {} refused ({refused:?})",
            self.served.lock().unwrap().len(),
            self.refused.lock().unwrap().len()
        )
    }
}

async fn read_twice(
    users: &mut UserServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>,
) -> Result<(), tonic::Status> {
    let mut list = tonic::Request::new(proto::ListUsersRequest {
        page_size: 1,
        ..Default::default()
    });
    list.set_timeout(READ_DEADLINE);
    let listed = users.list_users(list).await?.into_inner();
    if let Some(user) = listed.users.first() {
        let mut get = tonic::Request::new(proto::GetUserRequest {
            user_id: user.id.clone(),
            ..Default::default()
        });
        get.set_timeout(READ_DEADLINE);
        users.get_user(get).await?;
    }
    Ok(())
}

/// A connection to Roster's database in the private cluster, over the socket
/// directory its postmaster.pid names.
async fn connect(pgdata: &Path) -> PgPool {
    let pid_file = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap();
    let socket_dir = pid_file.lines().nth(4).unwrap().trim().to_owned();
    let options = PgConnectOptions::new()
        .socket(socket_dir)
        .username("roster")
        .database("roster");
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

fn people(dir: &Path, cycle: usize) -> std::path::PathBuf {
    let path = dir.join(format!("people-{cycle}.csv"));
    let mut csv = String::from("first_name,last_name,email\n");
    for row in 0..ROWS {
        csv.push_str(&format!("Ana,Cycle,c{cycle}-{row}@acme.com\n"));
    }
    std::fs::write(&path, csv).unwrap();
    path
}

/// `roster import` of cycle `cycle`'s file against `served`, its stderr in
/// `import-<cycle>.log`; returns once the job has written its first batch.
async fn import_until_first_batch(
    served: &Served,
    key: &str,
    files: &Path,
    pgdata: &Path,
    cycle: usize,
) -> std::process::Child {
    let file = people(files, cycle);
    let log = files.join(format!("import-{cycle}.log"));
    let mut import = Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("import")
        .arg(&file)
        .arg("--no-invitations")
        .env("ROSTER_SERVER", &served.address)
        .env("ROSTER_API_KEY", key)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let database = connect(pgdata).await;
    eventually(
        "the import writes its first batch",
        Duration::from_secs(30),
        || {
            if let Some(status) = import.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log);
                panic!("the import ended ({status}) before its first batch: {log:?}");
            }
            let query = sqlx::query_scalar::<_, i64>(
                "select created from import_jobs where status = 'RUNNING' and file_name like $1",
            )
            .bind(format!("%people-{cycle}.csv"));
            let database = database.clone();
            async move {
                let written = query.fetch_optional(&database).await.unwrap();
                written.filter(|created| *created > 0)
            }
        },
    )
    .await;
    database.close().await;
    import
}

/// The import job of cycle `cycle`'s file.
#[derive(sqlx::FromRow)]
struct Job {
    status: String,
    created: i64,
    failed: i64,
}

async fn job_of_cycle(database: &PgPool, cycle: usize) -> Job {
    sqlx::query_as("select status, created, failed from import_jobs where file_name like $1")
        .bind(format!("%people-{cycle}.csv"))
        .fetch_one(database)
        .await
        .unwrap()
}

/// The users that cycle `cycle`'s import wrote.
async fn rows_of_cycle(database: &PgPool, cycle: usize) -> i64 {
    sqlx::query_scalar("select count(*) from users where email like $1")
        .bind(format!("c{cycle}-%"))
        .fetch_one(database)
        .await
        .unwrap()
}

/// Issue 20's acceptance for the server: `roster serve` killed with SIGKILL
/// under steady reads and a running import, and started again at once on the
/// same address. Each start serves within `RESTART_WITHIN`, reads resume and
/// none outlives its deadline, and each import ends INTERRUPTED with the
/// counts of the rows it wrote.
#[tokio::test(flavor = "multi_thread")]
async fn serve_killed_with_sigkill_under_reads_and_an_import_starts_again_at_once_five_times_and_after_a_power_cut(
) {
    let data_dir = data_dir_for_postgres("roster-serve-crash-");
    let files = tempfile::tempdir().unwrap();
    let pgdata = cluster_dir(data_dir.path());
    // Each start listens where the last did, so that clients find it again.
    let port = free_port();
    let mut served = start(data_dir.path(), port);
    let key = served.bootstrap_key().unwrap();
    let load = ReadLoad::start(&served.address, &key);
    load.resumes_after(Instant::now(), Duration::from_secs(10), "at first")
        .await;

    // A second server on the same data directory is refused, naming the first.
    let second = roster(data_dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("ROSTER_HTTP_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another `roster serve` (pid {}) runs on the data directory",
            served.child.id()
        )),
        "{stderr}"
    );

    let started = Instant::now();
    for cycle in 0..CYCLES {
        let mut import =
            import_until_first_batch(&served, &key, files.path(), &pgdata, cycle).await;
        let postmaster = postmaster_pid(&pgdata).unwrap();
        if cycle == POWER_CUT {
            kill(Pid::from_raw(postmaster), Signal::SIGKILL).unwrap();
        }
        kill(Pid::from_raw(served.child.id() as i32), Signal::SIGKILL).unwrap();
        served.child.wait().unwrap();
        let _ = import.kill();
        let _ = import.wait();
        let restart = Instant::now();
        served = start(data_dir.path(), port);
        let took = restart.elapsed();
        let new_postmaster = postmaster_pid(&pgdata).unwrap();
        assert_ne!(new_postmaster, postmaster, "cycle {cycle}");
        assert!(
            took < RESTART_WITHIN,
            "cycle {cycle}: serving after {took:?}"
        );
        let serving = Instant::now();
        load.resumes_after(serving, Duration::from_secs(5), &format!("cycle {cycle}"))
            .await;
        eprintln!(
            "cycle {cycle}: serving again {took:?} after the kill, reads again {:?} later",
            serving.elapsed()
        );
    }
    eprintln!("{}", load.stop());

    // Every job ends INTERRUPTED (the stale-job reaper) with the counts of its rows.
    let database = connect(&pgdata).await;
    eventually("the stale jobs are ended", Duration::from_secs(30), || {
        let database = database.clone();
        async move {
            let running: i64 =
                sqlx::query_scalar("select count(*) from import_jobs where status = 'RUNNING'")
                    .fetch_one(&database)
                    .await
                    .unwrap();
            (running == 0).then_some(())
        }
    })
    .await;
    for cycle in 0..CYCLES {
        let Job {
            status,
            created,
            failed,
        } = job_of_cycle(&database, cycle).await;
        let users = rows_of_cycle(&database, cycle).await;
        assert_eq!(status, "INTERRUPTED", "cycle {cycle}");
        assert_eq!((created, failed), (users, 0), "cycle {cycle}");
        assert!(
            created > 0 && created < ROWS as i64,
            "cycle {cycle}: {created}"
        );
    }
    eprintln!("{CYCLES} kill -9 cycles in {:?}", started.elapsed());
    assert_eq!(
        served.logged(&["private postgresql exited unexpectedly"]),
        None,
        "each start found its cluster stopped or stopping, never crashed"
    );
    served.stop(Signal::SIGTERM);
}

/// A postmaster of the data directory's cluster started by some other process
/// (as a server without a parent-death signal would leave it).
fn orphan_postmaster(pgdata: &Path, socket_dir: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;

    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("bin/postgres"))
        .filter(|path| path.is_file())
        .collect();
    versions.sort();
    let mut command = Command::new(versions.last().expect("postgres installed"));
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-k", socket_dir, "-p", "5432", "-c", "listen_addresses="])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if nix::unistd::Uid::effective().is_root() {
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        command
            .uid(postgres.uid.as_raw())
            .gid(postgres.gid.as_raw())
            .current_dir("/");
    }
    command.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_left_running_without_its_server_is_stopped_and_started_under_the_new_one() {
    let data_dir = data_dir_for_postgres("roster-orphan-");
    let pgdata = cluster_dir(data_dir.path());
    let served = start(data_dir.path(), free_port());
    let pid_file = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap();
    let socket_dir = pid_file.lines().nth(4).unwrap().trim().to_owned();
    served.stop(Signal::SIGTERM);

    let mut orphan = orphan_postmaster(&pgdata, &socket_dir);
    eventually("the orphan is ready", Duration::from_secs(30), || {
        let status = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap_or_default();
        let ready = postmaster_pid(&pgdata) == Some(orphan.id() as i32)
            && status.lines().nth(7).map(str::trim) == Some("ready");
        std::future::ready(ready.then_some(()))
    })
    .await;

    let served = start(data_dir.path(), free_port());
    let stopped = orphan.try_wait().unwrap();
    assert!(stopped.is_some(), "the orphan was stopped");
    let restarted = postmaster_pid(&pgdata).expect("a postmaster runs");
    assert_ne!(restarted, orphan.id() as i32);
    assert!(
        served
            .startup
            .iter()
            .any(|line| line.contains("stopping the private postgresql a dead server left running")),
        "{}",
        served.startup.join("\n")
    );
    served.stop(Signal::SIGTERM);
    assert_eq!(postmaster_pid(&pgdata), None, "the new server stopped it");
}

/// Issue 20's acceptance for the supervisor: the postmaster killed with
/// SIGKILL five times under steady reads and a running import. Each time
/// reads are refused UNAVAILABLE (at once), health says NOT_SERVING, the
/// cluster is restarted and serves within 5 s of being ready, and the import
/// ends INTERRUPTED with the counts of the rows it wrote.
#[tokio::test(flavor = "multi_thread")]
async fn the_postmaster_killed_five_times_under_reads_and_an_import_is_restarted_each_time() {
    let data_dir = data_dir_for_postgres("roster-postmaster-kill-");
    let files = tempfile::tempdir().unwrap();
    let pgdata = cluster_dir(data_dir.path());
    let served = start(data_dir.path(), free_port());
    let key = served.bootstrap_key().unwrap();
    let (mut users, mut health) = users_and_health(&served, &key).await;
    let load = ReadLoad::start(&served.address, &key);

    let mut interrupted = 0;
    for cycle in 0..5 {
        let log = files.path().join(format!("import-{cycle}.log"));
        let mut import =
            import_until_first_batch(&served, &key, files.path(), &pgdata, cycle).await;
        eprintln!("cycle {cycle}:");
        kill_postmaster_and_read_until_served(&mut users, &mut health, &pgdata).await;
        let what = format!("cycle {cycle}");
        load.resumes_after(Instant::now(), Duration::from_secs(5), &what)
            .await;

        // The import's stream ended; its job ends INTERRUPTED with exact counts.
        let ended = tokio::task::spawn_blocking(move || import.wait().unwrap())
            .await
            .unwrap();
        let database = connect(&pgdata).await;
        let job = eventually("the job ends", Duration::from_secs(30), || {
            let database = database.clone();
            async move {
                let job = job_of_cycle(&database, cycle).await;
                (job.status != "RUNNING").then_some(job)
            }
        })
        .await;
        let users_written = rows_of_cycle(&database, cycle).await;
        // An import whose database work fell in the outage ends INTERRUPTED
        // (its client fails and says how to resume); one that touched the
        // database only before and after it runs to the end. Either way the
        // counts are the rows in the database.
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        let expected = if ended.success() {
            "SUCCEEDED"
        } else {
            interrupted += 1;
            "INTERRUPTED"
        };
        assert_eq!(job.status, expected, "cycle {cycle}: {ended:?} {printed}");
        assert_eq!(
            (job.created, job.failed),
            (users_written, 0),
            "cycle {cycle}"
        );
        eprintln!("cycle {cycle}: the import {expected} with {users_written} rows written");
        database.close().await;
    }
    assert!(interrupted > 0, "no import was cut by an outage");
    eprintln!("{}", load.stop());
    assert!(served
        .logged(&["private postgresql exited unexpectedly"])
        .is_some());
    served.stop(Signal::SIGTERM);
}

/// Whether an email to `address` was written to `mail_dir` (no SMTP server).
fn mailed(mail_dir: &Path, address: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(mail_dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry.path().extension().is_some_and(|ext| ext == "eml")
            && std::fs::read_to_string(entry.path()).is_ok_and(|mail| mail.contains(address))
    })
}

/// How long the cluster keeps dying: six deaths, the last pause 6.4 s, so the
/// outage outlasts the pool's 10 s acquire timeout.
const DEATHS: usize = 6;

/// Issue 20: a cluster that keeps dying (a setting PostgreSQL refuses, as a
/// bad edit of postgresql.auto.conf leaves) is restarted with pauses that
/// grow, and Roster's log says why with the tail of postgres.log. The
/// background tasks wait for the database meanwhile instead of timing out on
/// the pool; once the setting is repaired the cluster serves, health says
/// SERVING, and the invitation queued just before the kill is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_keeps_dying_is_restarted_with_backoff_and_serves_and_delivers_once_repaired(
) {
    let data_dir = data_dir_for_postgres("roster-dying-");
    let pgdata = cluster_dir(data_dir.path());
    let mail_dir = data_dir.path().join("mail");
    let served = start(data_dir.path(), free_port());
    let key = served.bootstrap_key().unwrap();
    let (mut users, mut health) = users_and_health(&served, &key).await;
    let auto_conf = pgdata.join("postgresql.auto.conf");
    let sound = std::fs::read_to_string(&auto_conf).unwrap();
    std::fs::write(&auto_conf, format!("{sound}shared_buffers = 'plenty'\n")).unwrap();

    let address = "ana.late@acme.com";
    users
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                first_name: "Ana".into(),
                last_name: "Late".into(),
                email: address.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    kill(
        Pid::from_raw(postmaster_pid(&pgdata).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        !mailed(&mail_dir, address),
        "the worker sent the invitation before the kill (it polls every second): run again"
    );

    let deaths = eventually(
        "the cluster dies again and again",
        Duration::from_secs(30),
        || {
            let deaths = served.logged_all(&["private postgresql exited unexpectedly"]);
            std::future::ready((deaths.len() >= DEATHS).then_some(deaths))
        },
    )
    .await;
    let status = health.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::NotServing);
    let pauses: Vec<u64> = deaths
        .iter()
        .map(|line| {
            // A log that is not a terminal carries no colour escapes (journald keeps them).
            assert!(!line.contains('\u{1b}'), "no escape codes: {line:?}");
            let (_, after) = line
                .split_once("restart_in_ms=")
                .unwrap_or_else(|| panic!("the pause is logged: {line}"));
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect();
    assert!(
        pauses.windows(2).all(|pair| pair[0] < pair[1]),
        "the pause grows: {pauses:?}"
    );
    let why = served.logged(&["postgresql.auto.conf", "contains errors"]);
    assert!(why.is_some(), "the tail of postgres.log names the cause");

    std::fs::write(&auto_conf, sound).unwrap();
    let repaired = Instant::now();
    eventually("health says SERVING", Duration::from_secs(30), || {
        let mut health = health.clone();
        async move {
            let status = health.check(HealthCheckRequest::default()).await.ok()?;
            (status.into_inner().status() == ServingStatus::Serving).then_some(())
        }
    })
    .await;
    let serving = repaired.elapsed();
    users
        .list_users(proto::ListUsersRequest::default())
        .await
        .unwrap();
    eventually(
        "the invitation is delivered",
        Duration::from_secs(5),
        || std::future::ready(mailed(&mail_dir, address).then_some(())),
    )
    .await;
    eprintln!(
        "pauses {pauses:?} ms; serving {serving:?} after the repair, the invitation delivered {:?} after it",
        repaired.elapsed()
    );
    assert_eq!(
        served.logged(&["pool timed out"]),
        None,
        "no background task waited out the pool's acquire timeout"
    );
    served.stop(Signal::SIGTERM);
}
