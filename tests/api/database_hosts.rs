//! A DATABASE_URL naming several hosts (issue 21 point 1, the first part):
//! Roster connects to the first host that answers and, with
//! `target_session_attrs=read-write`, accepts writes.

use roster::database::{Database, DatabaseSource};

use crate::helpers::{fresh_database_url, TestApp};

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
