//! The outbox's delivery worker against a real SMTP server (aiosmtpd):
//! nothing is lost while the server is down, several replicas send each
//! message exactly once, a worker that dies mid-batch loses nothing, and
//! only a refusal of the recipient for good fails a message at once.

use std::collections::HashSet;

use roster::store;
use uuid::Uuid;

use crate::{
    helpers::{eventually, TestApp},
    smtp::{deliver_to, RefusingSmtp, SmtpSink},
};

/// `count` not-onboarded users, each with an invitation queued, written
/// directly so that the test measures delivery, not creation.
async fn queue_invitations(app: &TestApp, count: i64) {
    sqlx::query(
        "with created as ( \
           insert into users (organization_id, id, first_name, last_name, email, username, search_key, last_name_key) \
           select $1, gen_random_uuid(), 'Person', 'Number ' || n, 'person' || n || '@acme.com', \
                  'person' || n || '@acme.com', 'person', 'number' \
           from generate_series(1, $2) as n returning id) \
         insert into outbox (organization_id, id, kind, user_id) \
         select $1, gen_random_uuid(), 'INVITATION', id from created",
    )
    .bind(app.organization_id)
    .bind(count)
    .execute(&app.pool)
    .await
    .unwrap();
}

async fn outbox_count(app: &TestApp, condition: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from outbox where {condition}"))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn while_the_smtp_server_is_down_messages_stay_queued_and_go_out_when_it_returns() {
    let port = SmtpSink::free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::spawn_with(|settings| deliver_to(settings, &url)).await;
    for n in 0..5 {
        app.create_user("Down", "Time", &format!("down{n}@acme.com"))
            .await;
    }
    // Tried, failed, kept.
    eventually(
        "5 outbox rows with attempts >= 2",
        std::time::Duration::from_secs(10),
        || async { (outbox_count(&app, "attempts >= 2").await == 5).then_some(()) },
    )
    .await;
    assert_eq!(outbox_count(&app, "attempts >= 2").await, 5);
    assert_eq!(
        outbox_count(&app, "status = 'PENDING' and last_error is not null").await,
        5
    );

    let sink = SmtpSink::start_on(port).await;
    let received = sink.wait_for_count(5, 20).await;
    assert_eq!(received.len(), 5);
    eventually(
        "5 outbox rows with status = 'SENT'",
        std::time::Duration::from_secs(10),
        || async { (outbox_count(&app, "status = 'SENT'").await == 5).then_some(()) },
    )
    .await;
    assert_eq!(outbox_count(&app, "status = 'SENT'").await, 5);
    let recipients: HashSet<String> = received.iter().map(|m| m.to.clone()).collect();
    assert_eq!(recipients.len(), 5);
    // A link that arrives after the retries works.
    let token = received[0].link_token();
    crate::onboarding::register(&app, &token, crate::onboarding::GOOD_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_database_deliver_1000_messages_each_exactly_once() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(|settings| deliver_to(settings, &url)).await;
    let _second = app.replica(|settings| deliver_to(settings, &url)).await;
    let _third = app.replica(|settings| deliver_to(settings, &url)).await;
    queue_invitations(&app, 1_000).await;

    let received = sink.wait_for_count(1_000, 120).await;
    // Anything still in flight would show up as an extra message.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let received_after = sink.messages();
    assert_eq!(received.len(), 1_000);
    assert_eq!(received_after.len(), 1_000);
    let ids: HashSet<&str> = received_after
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(ids.len(), 1_000, "one Message-ID per message");
    let recipients: HashSet<&str> = received_after.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(recipients.len(), 1_000);
    assert_eq!(outbox_count(&app, "status = 'SENT'").await, 1_000);
    assert_eq!(
        outbox_count(&app, "attempts <> 1").await,
        0,
        "nothing was sent twice"
    );
}

#[tokio::test]
async fn a_worker_that_dies_mid_batch_loses_nothing() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    // No worker yet: the dying one claims first.
    let app = TestApp::spawn_with(|settings| settings.delivery = None).await;
    queue_invitations(&app, 10).await;
    let dead_worker = Uuid::now_v7();
    let claimed = store::outbox::claim(&app.store, dead_worker, 1.0, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 10);
    // It sent nothing and never came back; a live worker takes over once the lease ends.
    let _live = app.replica(|settings| deliver_to(settings, &url)).await;
    let received = sink.wait_for_count(10, 30).await;
    assert_eq!(received.len(), 10);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 10);
    eventually(
        "10 outbox rows with status = 'SENT'",
        std::time::Duration::from_secs(10),
        || async { (outbox_count(&app, "status = 'SENT'").await == 10).then_some(()) },
    )
    .await;
    assert_eq!(
        outbox_count(&app, "status = 'SENT' and attempts = 2").await,
        10
    );
}

/// The outbox row of the one message to `email`: status, attempts, last error.
async fn outbox_of(app: &TestApp, email: &str) -> (String, i32, Option<String>) {
    sqlx::query_as(
        "select o.status, o.attempts, o.last_error from outbox o \
         join users u on u.organization_id = o.organization_id and u.id = o.user_id \
         where u.email = $1",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_recipient_the_mail_server_refuses_for_good_fails_at_once_and_a_busy_one_is_retried() {
    let smtp = RefusingSmtp::start().await;
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let app = TestApp::spawn_with(|settings| deliver_to(settings, &url)).await;
    for email in [
        "refused@acme.test",
        "busy@acme.test",
        "denied@acme.test",
        "ok@acme.test",
    ] {
        app.create_user("Mail", "Test", email).await;
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let busy = outbox_of(&app, "busy@acme.test").await;
        let denied = outbox_of(&app, "denied@acme.test").await;
        let ok = outbox_of(&app, "ok@acme.test").await;
        if busy.1 >= 2 && denied.1 >= 2 && ok.0 == "SENT" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "busy {busy:?}, denied {denied:?}, ok {ok:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, attempts, last_error) = outbox_of(&app, "refused@acme.test").await;
    assert_eq!((status.as_str(), attempts), ("FAILED", 1));
    assert!(last_error.unwrap_or_default().contains("550"));
    assert_eq!(outbox_of(&app, "busy@acme.test").await.0, "PENDING");
    // A relay refusal is the server's configuration, not the recipient's.
    assert_eq!(outbox_of(&app, "denied@acme.test").await.0, "PENDING");
}

#[tokio::test]
async fn a_mail_server_wanting_credentials_gets_the_message_again_not_a_failed_row() {
    let smtp = RefusingSmtp::start_with("Misconfigured").await;
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let app = TestApp::spawn_with(|settings| deliver_to(settings, &url)).await;
    app.create_user("Mail", "Test", "ana@acme.test").await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, attempts, last_error) = outbox_of(&app, "ana@acme.test").await;
        assert_eq!(
            status, "PENDING",
            "a 530 must not fail the message for good"
        );
        if attempts >= 2 {
            assert!(last_error.unwrap_or_default().contains("530"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "attempts {attempts}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
