//! A call's deadline (issue 20 point 3): one that passes while the call waits
//! for a database connection ends the call DEADLINE_EXCEEDED at the deadline.

use std::time::{Duration, Instant};

use roster::proto;
use tonic::Code;

use crate::metrics::{grew, method, spawn_with_metrics, Scrape};

#[tokio::test]
async fn a_deadline_that_passes_while_waiting_for_a_connection_is_deadline_exceeded() {
    let app = spawn_with_metrics().await;
    // The server shares this pool: holding every connection makes calls wait.
    let mut held = Vec::new();
    for _ in 0..app.pool.options().get_max_connections() {
        held.push(app.pool.acquire().await.unwrap());
    }
    let before = Scrape::of(&app).await;

    let mut request = tonic::Request::new(proto::ListUsersRequest::default());
    // The deadline as the header only: a tonic client that also ends the
    // call itself at the same instant races the server, whose clock starts
    // later, and the server may see the call cancelled before its deadline.
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let started = Instant::now();
    let status = app
        .users(app.as_admin())
        .list_users(request)
        .await
        .unwrap_err();
    let took = started.elapsed();

    // The server's answer (a tonic client with `set_timeout` would say
    // CANCELLED "Timeout expired" itself). It is what its log and metrics record.
    assert!(
        [Code::DeadlineExceeded, Code::Cancelled].contains(&status.code()),
        "{status:?}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let list_users = method("roster.v1.UserService", "ListUsers");
    let deadline_exceeded = [list_users.as_slice(), &[("grpc_code", "DeadlineExceeded")]].concat();
    let after = Scrape::of(&app).await;
    assert_eq!(
        grew(
            &before,
            &after,
            "grpc_server_handled_total",
            &deadline_exceeded
        ),
        1.0
    );
    drop(held);
    app.users(app.as_admin())
        .list_users(proto::ListUsersRequest::default())
        .await
        .expect("served again once connections are free");
}
