//! A DATABASE_URL naming several hosts (issue 21 point 1, the first part):
//! Roster connects to the first host that answers and, with
//! `target_session_attrs=read-write`, accepts writes.

use roster::database::{Database, DatabaseSource};

use crate::{
    helpers::{fresh_database_url, TestApp},
    socket_proxy::SocketProxy,
};

/// A number no other test uses at the same time.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `url` (the test cluster's: a socket directory in its `host` parameter)
/// with `before` put in front of its host list.
fn with_hosts_before(url: &str, before: &str) -> String {
    url.replace("host=", &format!("host={before},"))
}

fn with_parameter(url: &str, parameter: &str) -> String {
    let joint = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joint}{parameter}")
}

#[tokio::test]
async fn the_first_host_that_answers_and_accepts_writes_is_used() {
    let _app = TestApp::spawn().await; // the shared test server is up
    let Some(url) = fresh_database_url().await else {
        return; // the tests run on a server DATABASE_URL names: no URL to rewrite
    };
    // A socket directory where no server listens (what a dead node is to libpq).
    let dead = format!("/tmp/roster-no-server-{}", dead_port());
    let multi = with_parameter(
        &with_hosts_before(&url, &dead),
        "target_session_attrs=read-write",
    );
    let database = Database::open(DatabaseSource::Url(multi.clone()), 2)
        .await
        .unwrap_or_else(|error| panic!("{multi}: {error:#}"));
    let options = database.pool.connect_options();
    assert_ne!(
        roster::database_hosts::place(&options),
        format!("{dead}:5432")
    );
    let answer: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut *database.pool.acquire().await.unwrap())
        .await
        .unwrap();
    assert_eq!(answer, 1);
    assert!(database.pool.requires_writes());
    assert!(!database.pool.repoint().await.unwrap(), "nothing moved");
    database.close().await.unwrap();

    // A read-only node (a standby, a primary being demoted) is passed over;
    // with none left, opening says why for each host.
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let name = url
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    sqlx::query(&format!(
        "alter database \"{name}\" set default_transaction_read_only = on"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let error = Database::open(DatabaseSource::Url(multi), 2)
        .await
        .err()
        .expect("no writable host");
    let said = format!("{error:#}");
    assert!(
        said.starts_with("no database host accepts writes: "),
        "{said}"
    );
    assert!(said.contains(&format!("{dead}:5432: ")), "{said}");
    assert!(said.ends_with("is read-only"), "{said}");
}

use sqlx::Connection;

/// A fresh database, and a pool of 4 on it whose first host is a proxy to
/// its socket (the one it connects to) and whose second is the socket itself.
async fn behind_a_proxy_first() -> Option<(String, SocketProxy, Database)> {
    let url = fresh_database_url().await?;
    // The URL names the socket directory and the port: the socket is
    // `<dir>/.s.PGSQL.<port>`.
    let parameter = |name: &str| {
        url.split(['?', '&'])
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{url} has no {name}"))
            .to_owned()
    };
    let (dir, port) = (parameter("host"), parameter("port"));
    let proxy = SocketProxy::start(format!("{dir}/.s.PGSQL.{port}").into()).await;
    let multi = with_parameter(
        &url.replace(
            &format!("host={dir}&port={port}"),
            &format!("host=127.0.0.1,{dir}&port={},{port}", proxy.port),
        ),
        "target_session_attrs=read-write",
    );
    let database = Database::open(DatabaseSource::Url(multi.clone()), 4)
        .await
        .unwrap_or_else(|error| panic!("{multi}: {error:#}"));
    assert_eq!(
        roster::database_hosts::place(&database.pool.connect_options()),
        format!("127.0.0.1:{}", proxy.port)
    );
    Some((url, proxy, database))
}

#[tokio::test]
async fn a_repointed_pool_closes_the_connections_kept_for_reads() {
    let _app = TestApp::spawn().await;
    let Some((url, proxy, database)) = behind_a_proxy_first().await else {
        return;
    };
    let pool = &database.pool;
    // A pool of 4 keeps up to 2 for reads: one kept between reads, one lent.
    let mut kept = pool.read_connection().await.unwrap();
    let mut lent = pool.read_connection().await.unwrap();
    let mut pids = Vec::new();
    for read in [&mut kept, &mut lent] {
        pids.push(backend_pid(read.connection()).await);
    }
    kept.ended(&Ok::<(), sqlx::Error>(()));
    assert_eq!(proxy.open(2).await, 2);

    proxy.refuse();
    assert!(pool.repoint().await.unwrap(), "the pool moved");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    assert_eq!(
        wait_running(&mut admin, &pids, &[pids[1]]).await,
        vec![pids[1]],
        "the connection kept for reads is closed at once, the lent one is not yet"
    );
    // The lent one, its read ended, is not kept: it goes, and the next read
    // runs on the new host.
    lent.ended(&Ok::<(), sqlx::Error>(()));
    assert_eq!(
        wait_running(&mut admin, &pids, &[]).await,
        Vec::<i32>::new()
    );
    assert_eq!(proxy.open(0).await, 0);
    let mut next = pool.read_connection().await.unwrap();
    let pid = backend_pid(next.connection()).await;
    assert!(!pids.contains(&pid), "{pid} is one of {pids:?}");
    next.ended(&Ok::<(), sqlx::Error>(()));
    database.close().await.unwrap();
}

/// The pid of the backend serving `connection`.
async fn backend_pid(connection: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(connection)
        .await
        .unwrap()
}

/// The backends among `pids` still running.
async fn still_running(admin: &mut sqlx::PgConnection, pids: &[i32]) -> Vec<i32> {
    sqlx::query_scalar("select pid from pg_stat_activity where pid = any($1) order by pid")
        .bind(pids)
        .fetch_all(admin)
        .await
        .unwrap()
}

/// Polls `still_running` for up to 5 s until it is `want`.
async fn wait_running(admin: &mut sqlx::PgConnection, pids: &[i32], want: &[i32]) -> Vec<i32> {
    let mut running = still_running(admin, pids).await;
    for _ in 0..50 {
        if running == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        running = still_running(admin, pids).await;
    }
    running
}

#[tokio::test]
async fn a_repointed_pool_closes_its_connections_to_the_old_host() {
    let _app = TestApp::spawn().await;
    let Some((url, proxy, database)) = behind_a_proxy_first().await else {
        return;
    };
    let pool = &database.pool;
    // Three connections through the proxy left idle, one kept in use.
    let mut connections = Vec::new();
    let mut old = Vec::new();
    for _ in 0..4 {
        let mut connection = pool.acquire().await.unwrap();
        old.push(backend_pid(&mut connection).await);
        connections.push(connection);
    }
    let in_use = connections.pop().unwrap();
    let in_use_pid = old[3];
    old.sort();
    drop(connections);
    while pool.num_idle() < 3 {
        tokio::task::yield_now().await; // handed back by tasks of their own
    }
    assert_eq!(proxy.open(4).await, 4);

    // The first host takes no new connection (those open stay): the pool
    // moves to the socket and closes the idle ones to the old host at once.
    proxy.refuse();
    assert!(pool.repoint().await.unwrap(), "the pool moved");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    assert_eq!(
        wait_running(&mut admin, &old, &[in_use_pid]).await,
        vec![in_use_pid],
        "the idle connections to the old host are closed, the one in use is not yet"
    );
    assert_eq!(proxy.open(1).await, 1);

    // New connections go to the new host; the one in use is closed when
    // it is released, not handed out again.
    let mut fresh = pool.acquire().await.unwrap();
    let fresh_pid = backend_pid(&mut fresh).await;
    assert!(!old.contains(&fresh_pid), "{fresh_pid} is one of {old:?}");
    drop(in_use);
    assert_eq!(wait_running(&mut admin, &old, &[]).await, Vec::<i32>::new());
    assert_eq!(proxy.open(0).await, 0);
    drop(fresh);
    assert!(!pool.repoint().await.unwrap(), "nothing moved since");
    database.close().await.unwrap();
}
