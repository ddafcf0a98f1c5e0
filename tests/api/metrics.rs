//! `/metrics` after a short workload: every family moves as the workload says.

use std::{collections::BTreeMap, time::Duration};

use roster::{proto, startup::ServerSettings};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::{
    helpers::{eventually, mask, Bearer, TestApp},
    import::{collect, options},
    onboarding::{login, registered_user, GOOD_PASSWORD},
};

/// A server with metrics, no delivery worker (emails stay pending) and a
/// throttle that holds an account back after one failure.
pub(crate) async fn spawn_with_metrics() -> TestApp {
    TestApp::spawn_with(|settings: &mut ServerSettings| {
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.delivery = None;
        settings.throttle.user_free = 1;
        settings.throttle.base = Duration::from_secs(60);
    })
    .await
}

/// The samples of one scrape.
pub(crate) struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    pub(crate) async fn of(app: &TestApp) -> Self {
        let text = app.scrape_metrics().await;
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("series and value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("label");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels, value.parse().expect("a number"))
            })
            .collect();
        Self(samples)
    }

    /// The sum of the `name` samples that have all of `labels` (0 when none has).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(sample, sample_labels, _)| {
                sample == name
                    && labels.iter().all(|(key, value)| {
                        sample_labels.get(*key).map(String::as_str) == Some(value)
                    })
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(sample, _, _)| sample == name)
    }
}

/// How much `name{labels}` grew from `before` to `after`.
pub(crate) fn grew(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

pub(crate) fn method<'a>(service: &'a str, method: &'a str) -> [(&'a str, &'a str); 2] {
    [("grpc_service", service), ("grpc_method", method)]
}

/// A unary call to a path no service serves.
async fn call_made_up_method(app: &TestApp, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(()), path, codec)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn rpc_metrics_count_calls_by_method_and_code_with_made_up_methods_under_one_label() {
    let app = spawn_with_metrics().await;
    let before = Scrape::of(&app).await;

    app.organizations(app.as_admin())
        .get_organization(proto::GetOrganizationRequest {})
        .await
        .unwrap();
    let get_user = || proto::GetUserRequest {
        user_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    let missing = app.users(app.as_admin()).get_user(get_user()).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let anonymous = app.users(Bearer::none()).get_user(get_user()).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    for path in ["/made.up.Service/Anything", "/roster.v1.UserService/Nope"] {
        let refused = call_made_up_method(&app, path).await;
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    let after = Scrape::of(&app).await;

    let organization = method("roster.v1.OrganizationService", "GetOrganization");
    let user = method("roster.v1.UserService", "GetUser");
    let unknown = method("unknown", "unknown");
    let ok = [
        organization.as_slice(),
        &[("grpc_code", "OK"), ("grpc_type", "unary")],
    ]
    .concat();
    let not_found = [user.as_slice(), &[("grpc_code", "NotFound")]].concat();
    let unauthenticated = [user.as_slice(), &[("grpc_code", "Unauthenticated")]].concat();
    let unknown_denied = [unknown.as_slice(), &[("grpc_code", "PermissionDenied")]].concat();
    let growth = |name: &str, labels: &[(&str, &str)]| grew(&before, &after, name, labels);
    assert_eq!(growth("grpc_server_started_total", &organization), 1.0);
    assert_eq!(growth("grpc_server_handled_total", &ok), 1.0);
    assert_eq!(growth("grpc_server_handling_seconds_count", &ok), 1.0);
    assert_eq!(growth("grpc_server_msg_received_total", &organization), 1.0);
    assert_eq!(growth("grpc_server_msg_sent_total", &organization), 1.0);
    assert_eq!(growth("grpc_server_started_total", &user), 2.0);
    assert_eq!(growth("grpc_server_handled_total", &not_found), 1.0);
    assert_eq!(growth("grpc_server_handled_total", &unauthenticated), 1.0);
    assert_eq!(
        growth("grpc_server_handling_seconds_count", &not_found),
        1.0
    );
    // The refused anonymous call was not read; errors send no message.
    assert_eq!(growth("grpc_server_msg_received_total", &user), 1.0);
    assert_eq!(growth("grpc_server_msg_sent_total", &user), 0.0);
    assert_eq!(growth("grpc_server_handled_total", &unknown_denied), 2.0);
    let series = after
        .0
        .iter()
        .filter(|(name, _, _)| name == "grpc_server_started_total");
    assert!(
        series
            .clone()
            .all(|(_, labels, _)| labels["grpc_method"] != "Anything"
                && labels["grpc_method"] != "Nope"),
        "a made-up path never becomes a label value"
    );
    assert!(
        after.value("grpc_server_handling_seconds_sum", &ok) > 0.0,
        "a latency is observed"
    );
}

#[tokio::test]
async fn sign_in_failures_throttling_and_the_process_gauges_are_reported() {
    let app = spawn_with_metrics().await;
    let before = Scrape::of(&app).await;

    // Wrong passwords (each new, so each counts) until the backoff holds one back.
    let mut codes = Vec::new();
    for attempt in 0..4 {
        let login = proto::LoginRequest {
            organization: "acme".into(),
            username: "nobody".into(),
            password: format!("Wrong@password{attempt}"),
        };
        codes.push(
            app.auth(Bearer::none())
                .login(login)
                .await
                .unwrap_err()
                .code(),
        );
    }
    let answered = |code| codes.iter().filter(|answer| **answer == code).count() as f64;
    let (wrong, held) = (
        answered(Code::Unauthenticated),
        answered(Code::ResourceExhausted),
    );
    assert!(
        wrong >= 1.0 && held >= 1.0 && wrong + held == 4.0,
        "{codes:?}"
    );
    let after = Scrape::of(&app).await;

    let login_flow = [("flow", "login")];
    assert_eq!(
        grew(
            &before,
            &after,
            "roster_sign_in_failures_total",
            &login_flow
        ),
        wrong
    );
    assert_eq!(
        grew(
            &before,
            &after,
            "roster_sign_in_throttled_total",
            &login_flow
        ),
        held
    );
    let change_flow = [("flow", "change_password")];
    assert_eq!(
        after.value("roster_sign_in_failures_total", &change_flow),
        0.0
    );
    assert!(after.has("roster_sign_in_throttled_total"));
    // Nothing hashes between calls.
    assert!(after.has("roster_password_hash_queue_depth"));
    assert_eq!(after.value("roster_password_hash_queue_depth", &[]), 0.0);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(after.value("roster_build_info", &version), 1.0);
    let max = f64::from(app.pool.options().get_max_connections());
    assert_eq!(after.value("roster_db_pool_max_connections", &[]), max);
    let open = after.value("roster_db_pool_connections", &[]);
    assert!((1.0..=max).contains(&open), "{open} connections");
    // The in-use count itself is checked while a call holds a connection
    // (a_call_past_its_deadline_...); here, that the series is there.
    assert!(after.0.iter().any(|(name, labels, _)| {
        name == "roster_db_pool_connections"
            && labels.get("state").map(String::as_str) == Some("in_use")
    }));
}

#[tokio::test]
async fn import_rows_running_jobs_and_the_outbox_backlog_are_reported() {
    let app = spawn_with_metrics().await;
    let before = Scrape::of(&app).await;
    assert_eq!(before.value("roster_import_running_jobs", &[]), 0.0);

    // A streaming import, scraped while it runs, then given its file.
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    let message = |message| proto::ImportUsersRequest {
        message: Some(message),
    };
    use proto::import_users_request::Message;
    sender
        .send(message(Message::Options(options())))
        .await
        .unwrap();
    let mut imports = app.imports(app.as_admin());
    let response = imports.import_users(ReceiverStream::new(requests)).await;
    let running = Scrape::of(&app).await;
    assert_eq!(running.value("roster_import_running_jobs", &[]), 1.0);
    let file = "first_name,last_name,email\nAna,Silva,ana@acme.com\nBruno,Souza,bruno@acme.com\nCarla,,carla@acme.com\n";
    sender
        .send(message(Message::Chunk(file.as_bytes().to_vec())))
        .await
        .unwrap();
    drop(sender);
    let run = collect(response, |m| match m.message.unwrap() {
        proto::import_users_response::Message::Row(row) => Ok(row),
        proto::import_users_response::Message::Summary(s) => Err(s),
    })
    .await;
    assert_eq!((run.counts().created, run.counts().failed), (2, 1));

    // The two users' invitations wait, with no worker to send them.
    sqlx::query(
        "update outbox set create_time = now() - interval '1 hour' \
         where id = (select id from outbox order by create_time, id limit 1)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "update outbox set status = 'FAILED' \
         where id = (select id from outbox order by create_time desc, id desc limit 1)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let after = eventually(
        "the job is no longer running",
        Duration::from_secs(10),
        || async {
            let scrape = Scrape::of(&app).await;
            (scrape.value("roster_import_running_jobs", &[]) == 0.0).then_some(scrape)
        },
    )
    .await;

    let rows = |outcome| {
        grew(
            &before,
            &after,
            "roster_import_rows_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (rows("CREATED"), rows("FAILED"), rows("UPDATED")),
        (2.0, 1.0, 0.0)
    );
    let import = method("roster.v1.ImportService", "ImportUsers");
    let import_ok = [
        import.as_slice(),
        &[("grpc_code", "OK"), ("grpc_type", "bidi_stream")],
    ]
    .concat();
    assert_eq!(
        grew(&before, &after, "grpc_server_handled_total", &import_ok),
        1.0
    );
    // The options and one chunk in; three rows and the summary out.
    assert_eq!(
        grew(&before, &after, "grpc_server_msg_received_total", &import),
        2.0
    );
    assert_eq!(
        grew(&before, &after, "grpc_server_msg_sent_total", &import),
        4.0
    );
    assert_eq!(after.value("roster_outbox_pending_messages", &[]), 1.0);
    assert_eq!(after.value("roster_outbox_failed_messages", &[]), 1.0);
    let age = after.value("roster_outbox_oldest_pending_age_seconds", &[]);
    assert!((3600.0..3700.0).contains(&age), "{age} s");
}

#[test]
fn metrics_in_plaintext_off_loopback_are_refused_without_insecure_plaintext() {
    let mut settings = ServerSettings::new("127.0.0.1:0".parse().unwrap());
    settings.metrics_listen = Some("0.0.0.0:9464".parse().unwrap());
    let Err(refused) = settings.preflight() else {
        panic!("plaintext metrics on 0.0.0.0 are served");
    };
    let refused = format!("{refused:#}");
    for expected in ["the metrics", "0.0.0.0:9464", "--insecure-plaintext"] {
        assert!(refused.contains(expected), "{refused}");
    }
    settings.insecure_plaintext = true;
    settings
        .preflight()
        .expect("--insecure-plaintext allows it");
}

#[tokio::test]
async fn a_call_past_its_deadline_is_counted_deadline_exceeded_and_holds_a_pool_connection_meanwhile(
) {
    let app = spawn_with_metrics().await;
    let before = Scrape::of(&app).await;
    // The organization row locked elsewhere: the settings update waits on it.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select id from organizations where id = $1 for update")
        .bind(app.organization_id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut organizations = app.organizations(app.as_admin());
    let update = tokio::spawn(async move {
        let mut request = tonic::Request::new(proto::UpdateOrganizationSettingsRequest {
            settings: Some(proto::OrganizationSettings {
                allow_duplicate_emails: true,
                ..Default::default()
            }),
            update_mask: mask(&["allow_duplicate_emails"]),
        });
        // The header only: see deadline.rs (a client ending the call too
        // races the server, which may count it cancelled).
        request
            .metadata_mut()
            .insert("grpc-timeout", "1500m".parse().unwrap());
        organizations.update_organization_settings(request).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = Scrape::of(&app).await;
    // The lock's connection and the waiting call's transaction.
    let in_use = waiting.value("roster_db_pool_connections", &[("state", "in_use")]);
    assert!(in_use >= 2.0, "{in_use} connections in use");

    let refused = update.await.unwrap().unwrap_err();
    assert!(
        matches!(refused.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{refused:?}"
    );
    holder.rollback().await.unwrap();
    let settings = method(
        "roster.v1.OrganizationService",
        "UpdateOrganizationSettings",
    );
    let handled = |code| [settings[0], settings[1], ("grpc_code", code)];
    eventually(
        "the call counted as handled",
        Duration::from_secs(5),
        || {
            let app = &app;
            let before = &before;
            async move {
                let after = Scrape::of(app).await;
                let deadline = handled("DeadlineExceeded");
                let count = grew(before, &after, "grpc_server_handled_total", &deadline);
                (count == 1.0).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_password_hash_queue_depth_counts_the_checks_waiting_for_a_hashing_thread() {
    let app = TestApp::spawn_with(|settings: &mut ServerSettings| {
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.passwords.workers = 1;
    })
    .await;
    let owner = "queue@acme.com";
    registered_user(&app, owner).await;
    let logins = (0..12).map(|_| login(&app, owner, GOOD_PASSWORD));
    let deepest = async {
        let mut deepest: f64 = 0.0;
        for _ in 0..200 {
            let scrape = Scrape::of(&app).await;
            deepest = deepest.max(scrape.value("roster_password_hash_queue_depth", &[]));
            if deepest >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        deepest
    };
    let (signed_in, deepest) = tokio::join!(futures::future::join_all(logins), deepest);
    // The throttle lets a few attempts at one account run at once (their
    // reservations count), and holds back the rest: enough to queue.
    let checked = signed_in.iter().filter(|login| login.is_ok()).count();
    assert!(checked >= 2, "{signed_in:?}");
    assert!(deepest >= 1.0, "the queue never showed a waiting check");
    let after = Scrape::of(&app).await;
    assert_eq!(after.value("roster_password_hash_queue_depth", &[]), 0.0);
}

#[tokio::test]
async fn callers_waiting_for_a_pool_connection_are_counted_while_they_wait() {
    let app = spawn_with_metrics().await;
    let idle = Scrape::of(&app).await;
    assert!(idle.0.iter().any(|(name, labels, _)| {
        name == "roster_db_pool_connections"
            && labels.get("state").map(String::as_str) == Some("waiting")
    }));
    // At start the server's own workers may still wait for the connections
    // the pool is opening: an idle server settles at none waiting.
    waiting_callers(&app, "none at rest", Duration::from_secs(5), |n| n == 0.0).await;

    // The server shares this pool: with every connection held, calls wait.
    let mut held = Vec::new();
    for _ in 0..app.pool.options().get_max_connections() {
        held.push(app.pool.acquire().await.unwrap());
    }
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let mut users = app.users(app.as_admin());
            tokio::spawn(async move { users.list_users(proto::ListUsersRequest::default()).await })
        })
        .collect();
    // Each scrape waits up to 2 s for its own database read meanwhile.
    waiting_callers(&app, "counted", Duration::from_secs(8), |n| n >= 1.0).await;

    drop(held);
    for call in calls {
        call.await
            .unwrap()
            .expect("served once connections are free");
    }
    waiting_callers(&app, "none once served", Duration::from_secs(5), |n| {
        n == 0.0
    })
    .await;
}

/// Waits until the pool's count of waiting callers passes `check`.
async fn waiting_callers(app: &TestApp, what: &str, within: Duration, check: impl Fn(f64) -> bool) {
    let check = &check;
    eventually(&format!("waiting callers: {what}"), within, || async move {
        let scrape = Scrape::of(app).await;
        check(scrape.value("roster_db_pool_connections", &[("state", "waiting")])).then_some(())
    })
    .await;
}
