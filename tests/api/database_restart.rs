//! A database that restarts (issue 14 point 4): the server's own PostgreSQL
//! cluster (not the suite's shared one) stops and starts again under a
//! steady load of reads and one running import.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use roster::{
    cluster::{ClusterOptions, PrivateCluster},
    database::{ensure_database, pool_options},
    proto::{self, import_users_response::Message},
    store,
};
use sqlx::PgPool;
use tokio::sync::watch;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::helpers::{eventually, Answered, RunningServer, TestApp};

/// Each read of the load carries this deadline.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(2);
/// Rows the import sends per message, and how often.
const ROWS_PER_CHUNK: usize = 20;
const CHUNK_EVERY: Duration = Duration::from_millis(50);

/// A private cluster of the test's own, in a directory the postgres user can enter.
struct OwnCluster {
    directory: tempfile::TempDir,
    cluster: Option<PrivateCluster>,
}

impl OwnCluster {
    async fn start() -> Self {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let directory = tempfile::Builder::new()
            .prefix("roster-restart-")
            .tempdir_in(base)
            .unwrap();
        // The postgres user (the server's, when the tests run as root) enters it.
        std::fs::set_permissions(
            directory.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let mut own = Self {
            directory,
            cluster: None,
        };
        own.start_again().await;
        ensure_database(own.cluster.as_ref().unwrap(), "roster")
            .await
            .unwrap();
        own
    }

    async fn start_again(&mut self) {
        let path = self.directory.path().to_owned();
        let cluster = tokio::task::spawn_blocking(move || {
            PrivateCluster::start_or_attach(
                &path,
                ClusterOptions {
                    ephemeral: true,
                    ..ClusterOptions::default()
                },
            )
        })
        .await
        .unwrap()
        .expect("start the test's own cluster");
        self.cluster = Some(cluster);
    }

    /// A fast shutdown, as `pg_ctl stop -m fast` does; returns once it has stopped.
    async fn stop(&mut self) {
        let mut cluster = self.cluster.take().unwrap();
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .unwrap()
            .unwrap();
    }

    async fn migrated_pool(&self) -> PgPool {
        let options = self.cluster.as_ref().unwrap().connect_options("roster");
        let pool = pool_options(10).connect_with(options).await.unwrap();
        store::MIGRATOR.run(&pool).await.unwrap();
        pool
    }
}

/// One read of the load: when it started, how long it took, how it ended.
struct Read {
    started: Instant,
    took: Duration,
    code: Code,
    retry_hint: bool,
}

/// Reads (GetUser and ListUsers by turns, each with `CALL_DEADLINE`) until
/// `stop`, counting the successful ones in `succeeded`.
async fn read_steadily(
    app: &TestApp,
    user_id: String,
    stop: watch::Receiver<bool>,
    succeeded: Arc<AtomicU64>,
) -> Vec<Read> {
    let mut users = app.users(app.as_admin());
    let mut reads = Vec::new();
    for turn in 0u64.. {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        let answer = if turn % 2 == 0 {
            let mut request = tonic::Request::new(proto::GetUserRequest {
                user_id: user_id.clone(),
                ..Default::default()
            });
            request.set_timeout(CALL_DEADLINE);
            users.get_user(request).await.map(drop)
        } else {
            let mut request = tonic::Request::new(proto::ListUsersRequest::default());
            request.set_timeout(CALL_DEADLINE);
            users.list_users(request).await.map(drop)
        };
        let (code, retry_hint) = match answer {
            Ok(()) => {
                succeeded.fetch_add(1, Ordering::SeqCst);
                (Code::Ok, false)
            }
            Err(status) => (
                status.code(),
                tonic_types::StatusExt::get_details_retry_info(&status).is_some(),
            ),
        };
        reads.push(Read {
            started,
            took: started.elapsed(),
            code,
            retry_hint,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reads
}

/// An import whose file arrives slowly and never ends: `ROWS_PER_CHUNK` new
/// users every `CHUNK_EVERY`. Counts the row results the client is given in
/// `seen`; returns the job's id and how the stream ended.
async fn import_slowly(app: &TestApp, seen: Arc<AtomicU64>) -> (String, Result<(), tonic::Status>) {
    let (requests, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let options =
            proto::import_users_request::Message::Options(proto::ImportOptions::default());
        let mut message = Some(options);
        for chunk in 0.. {
            let Some(next) = message.take() else { break };
            let request = proto::ImportUsersRequest {
                message: Some(next),
            };
            if requests.send(request).await.is_err() {
                break;
            }
            tokio::time::sleep(CHUNK_EVERY).await;
            let mut rows = if chunk == 0 {
                String::from("first_name,last_name,email\n")
            } else {
                String::new()
            };
            for n in chunk * ROWS_PER_CHUNK..(chunk + 1) * ROWS_PER_CHUNK {
                rows.push_str(&format!("Person,Number {n},person{n}@acme.com\n"));
            }
            message = Some(proto::import_users_request::Message::Chunk(
                rows.into_bytes(),
            ));
        }
    });
    let response = app
        .imports(app.as_admin())
        .import_users(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("the import starts");
    let job_id = response
        .metadata()
        .get(roster::grpc::JOB_ID_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut stream = response.into_inner();
    loop {
        match stream.message().await {
            Ok(Some(proto::ImportUsersResponse {
                message: Some(Message::Row(_)),
            })) => {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Ok(other) => panic!("the import ended without an error: {other:?}"),
            Err(status) => return (job_id, Err(status)),
        }
    }
}

async fn health(app: &TestApp, service: &str) -> Option<ServingStatus> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.into(),
    });
    request.set_timeout(Duration::from_secs(1));
    let answer = HealthClient::new(app.channel.clone()).check(request).await;
    answer.ok().map(|response| response.into_inner().status())
}

async fn every_health_is(app: &TestApp, expected: ServingStatus) -> Option<()> {
    for service in ["", "roster.v1.UserService", "roster.v1.ImportService"] {
        if health(app, service).await != Some(expected) {
            return None;
        }
    }
    Some(())
}

async fn count(pool: &PgPool, sql: &str, job_id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(job_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_is_answered_unavailable_and_loses_no_reported_row() {
    let mut own = OwnCluster::start().await;
    let pool = own.migrated_pool().await;
    let app = TestApp::spawn_on(pool.clone(), |_| {}).await;
    let user = app.create_user("Steady", "Reader", "steady@acme.com").await;

    let (stop_reading, stop) = watch::channel(false);
    let seen = Arc::new(AtomicU64::new(0));
    let succeeded = Arc::new(AtomicU64::new(0));
    let reader = read_steadily(&app, user.id.clone(), stop, succeeded.clone());
    let (reads, import) = tokio::join!(reader, async {
        let import = import_slowly(&app, seen.clone());
        let outage = async {
            eventually(
                "the import writes rows",
                Duration::from_secs(30),
                || async { (seen.load(Ordering::SeqCst) >= 100).then_some(()) },
            )
            .await;
            let pending: Vec<uuid::Uuid> =
                sqlx::query_scalar("select id from outbox where status = 'PENDING'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let seen_before = seen.load(Ordering::SeqCst);
            let stopped = Instant::now();
            own.stop().await;
            eventually(
                "health reports NOT_SERVING while the database is down",
                Duration::from_secs(2),
                || every_health_is(&app, ServingStatus::NotServing),
            )
            .await;
            let noticed = stopped.elapsed();
            tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
            own.start_again().await;
            let returned = Instant::now();
            eventually(
                "reads succeed once the database is back",
                Duration::from_secs(5),
                || async {
                    app.users(app.as_admin())
                        .get_user(proto::GetUserRequest {
                            user_id: user.id.clone(),
                            ..Default::default()
                        })
                        .await
                        .ok()
                },
            )
            .await;
            let back_in = returned.elapsed();
            eventually(
                "health reports SERVING once the database is back",
                Duration::from_secs(5),
                || every_health_is(&app, ServingStatus::Serving),
            )
            .await;
            eprintln!(
                "outage: noticed in {noticed:?}, database down for {:?}, served again {back_in:?} after its return",
                returned - stopped
            );
            assert!(back_in < Duration::from_secs(5), "{back_in:?}");
            // The load itself reads again before it stops.
            let before = succeeded.load(Ordering::SeqCst);
            eventually(
                "the steady reads succeed again",
                Duration::from_secs(5),
                || async { (succeeded.load(Ordering::SeqCst) >= before + 2).then_some(()) },
            )
            .await;
            let _ = stop_reading.send(true);
            (pending, seen_before, stopped, returned)
        };
        tokio::join!(import, outage)
    });
    let ((job_id, import_end), (pending, seen_before, stopped, returned)) = import;

    // Every failed read was UNAVAILABLE with a retry hint, none waited out its deadline.
    let failed: Vec<&Read> = reads.iter().filter(|read| read.code != Code::Ok).collect();
    assert!(
        !failed.is_empty(),
        "the load met the outage ({} reads)",
        reads.len()
    );
    for read in &failed {
        assert_eq!(read.code, Code::Unavailable, "took {:?}", read.took);
        assert!(read.retry_hint, "UNAVAILABLE carries a RetryInfo");
    }
    let slowest = reads.iter().map(|read| read.took).max().unwrap();
    assert!(slowest < CALL_DEADLINE, "a read took {slowest:?}");
    assert!(reads
        .iter()
        .any(|read| read.started < stopped && read.code == Code::Ok));
    assert!(reads
        .iter()
        .any(|read| read.started > returned && read.code == Code::Ok));

    // The import's stream ended UNAVAILABLE; its job ends INTERRUPTED with
    // the counts of what the database holds, every reported row among them.
    let status = import_end.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let seen = seen.load(Ordering::SeqCst);
    assert!(seen >= seen_before);
    let job = eventually("the import job ends", Duration::from_secs(10), || async {
        let job = app
            .imports(app.as_admin())
            .get_import_job(proto::GetImportJobRequest {
                job_id: job_id.clone(),
            })
            .await
            .answered();
        (job.status != proto::ImportJobStatus::Running as i32).then_some(job)
    })
    .await;
    assert_eq!(job.status, proto::ImportJobStatus::Interrupted as i32);
    let counts = job.counts.unwrap();
    let rows_written = count(
        &pool,
        "select count(*) from import_rows where job_id = $1::uuid",
        &job_id,
    )
    .await;
    assert_eq!(counts.rows, rows_written);
    assert!(rows_written as u64 >= seen, "{rows_written} < {seen}");
    assert_eq!(
        counts.created,
        count(
            &pool,
            "select count(*) from users where email like 'person%' and $1 <> ''",
            &job_id
        )
        .await
    );

    // The outbox resumed: what was queued before the outage is delivered, and so is a new email.
    eventually(
        "the emails queued before the outage are delivered",
        Duration::from_secs(30),
        || async {
            let still: i64 = sqlx::query_scalar(
                "select count(*) from outbox where id = any($1) and status = 'PENDING'",
            )
            .bind(&pending)
            .fetch_one(&pool)
            .await
            .unwrap();
            (still == 0).then_some(())
        },
    )
    .await;
    app.create_user("After", "Outage", "after@acme.com").await;
    app.email("after@acme.com", 1).await;

    // The server stayed up all along and stops cleanly.
    let mut app = app;
    app.stop_server().await;
    pool.close().await;
    own.stop().await;
}

/// Pooled connections are handed out without a ping first (issue 15): a
/// read that lands on one whose backend died while it sat idle runs again on
/// a sound one, and the caller sees nothing.
#[tokio::test]
async fn reads_on_pooled_connections_that_died_while_idle_are_answered() {
    const POOL_NAME: &str = "roster reads on dead connections";
    let app = TestApp::spawn().await;
    let user = app.create_user("Ana", "Idle", "ana.idle@acme.com").await;
    // A server with two connections of its own and no email worker: nothing
    // but the reads below takes them from its pool. (Its database watch
    // connects with the same name; the reads' last statement tells them apart.)
    let options = (*app.pool.connect_options())
        .clone()
        .application_name(POOL_NAME);
    let pool = pool_options(2).connect_with(options).await.unwrap();
    let server = RunningServer::start(&pool, &app.mail, |settings| settings.delivery = None).await;
    let reads = || {
        futures::future::join_all((0..2).map(|_| {
            let mut users = server.users(app.as_admin());
            let request = proto::GetUserRequest {
                user_id: user.id.clone(),
                ..Default::default()
            };
            async move { users.get_user(request).await.map(|_| ()) }
        }))
    };
    for read in reads().await {
        read.unwrap();
    }
    // The key's first use is written within a second (then once a minute):
    // after that, both connections serve the reads again and sit idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for read in reads().await {
        read.unwrap();
    }

    let ended: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid, 5000) from pg_stat_activity \
         where datname = current_database() and application_name = $1 \
         and query like 'select id, first_name%'",
    )
    .bind(POOL_NAME)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    // Both, or one when a single connection happened to serve both reads.
    assert!(
        !ended.is_empty() && ended.iter().all(|&ended| ended),
        "idle connections ended: {ended:?}"
    );

    for round in 0..2 {
        for read in reads().await {
            read.unwrap_or_else(|status| panic!("round {round}: {status:?}"));
        }
    }
}
