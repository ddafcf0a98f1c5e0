//! Sign-in hardening (issue 12, points 6–9): every public input bounded
//! before any work, failures counted apart for familiar and other addresses,
//! a repeated wrong password counted once, a budget that holds under
//! concurrent guesses, and a password reset request that does the same work
//! whatever it names.

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use roster::proto::{self, auth_service_client::AuthServiceClient};
use sqlx::Connection;
use tonic::{Code, Status};

use crate::{
    helpers::{error_reason, violated_fields, Authed, Bearer, TestApp},
    onboarding::{auth_from, registered_user, sign_in, GOOD_PASSWORD},
};

const OWNER: &str = "lia@acme.com";

/// The owner, registered, who signed in once from `familiar_address`.
async fn owner_familiar_with(app: &TestApp, familiar_address: &str) {
    registered_user(app, OWNER).await;
    let mut owner = auth_from(app, familiar_address).await;
    sign_in(&mut owner, "acme", OWNER, GOOD_PASSWORD)
        .await
        .unwrap();
}

/// A sign-in in acme through `auth` that must be refused as wrong (checked, not held back).
async fn assert_wrong(auth: &mut AuthServiceClient<Authed>, username: &str, password: &str) {
    let refused = sign_in(auth, "acme", username, password).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "{username}: {refused:?}"
    );
}

fn assert_throttled(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status).as_deref(), Some("THROTTLED"));
}

async fn assert_count(app: &TestApp, query: &str, expected: i64) {
    assert_eq!(app.count(query).await, expected, "{query}");
}

/// Every reservation of the throttle was settled.
async fn assert_nothing_reserved(app: &TestApp) {
    let in_flight = "select coalesce(sum(in_flight), 0) from sign_in_throttle";
    assert_count(app, in_flight, 0).await;
}

#[tokio::test]
async fn over_long_or_malformed_sign_in_fields_are_refused_naming_the_field_before_any_work() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(Bearer::none());
    let huge = "a".repeat(9_000);
    let longest_username = format!("{}@acme.com", "u".repeat(245));
    assert_eq!(longest_username.len(), 254);
    let long_password = "Aa1!".repeat(257);
    let cases: [(&str, &str, &str, &str); 6] = [
        (&huge, OWNER, GOOD_PASSWORD, "organization"),
        ("acme", &huge, GOOD_PASSWORD, "username"),
        (
            "acme",
            &format!("{longest_username}x"),
            GOOD_PASSWORD,
            "username",
        ),
        ("acme", "lia\0@acme.com", GOOD_PASSWORD, "username"),
        ("ac\0me", OWNER, GOOD_PASSWORD, "organization"),
        ("acme", OWNER, &long_password, "password"),
    ];
    let assert_refused = |refused: tonic::Status, field: &str| {
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert_eq!(violated_fields(&refused), [field]);
    };
    for (organization, username, password, field) in cases {
        let refused = sign_in(&mut auth, organization, username, password).await;
        assert_refused(refused.unwrap_err(), field);
        if field == "password" {
            continue;
        }
        let forgot = proto::RequestPasswordResetRequest {
            organization: organization.into(),
            username: username.into(),
        };
        assert_refused(
            auth.request_password_reset(forgot).await.unwrap_err(),
            field,
        );
    }
    // At the bound, a sign-in is an ordinary wrong one.
    let at_bound = sign_in(&mut auth, "acme", &longest_username, GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(at_bound.code(), Code::Unauthenticated);

    // Links: the token and the new password, over gRPC and on the pages.
    let register = auth
        .register_password(proto::RegisterPasswordRequest {
            token: huge.clone(),
            password: GOOD_PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&register), ["token"]);
    let reset = auth
        .reset_password(proto::ResetPasswordRequest {
            token: "rst_reset_whatever".into(),
            new_password: long_password.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&reset), ["new_password"]);
    let http = reqwest::Client::new();
    for (body, error) in [
        (
            serde_json::json!({"token": huge, "password": GOOD_PASSWORD}),
            "INVALID_TOKEN",
        ),
        (
            serde_json::json!({"token": "rst_inv_x", "password": long_password}),
            "PASSWORD_POLICY",
        ),
    ] {
        for page in ["register", "reset"] {
            let response = http
                .post(format!("{}/api/{page}", app.pages()))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 400);
            let answer: serde_json::Value = response.json().await.unwrap();
            assert_eq!(answer["error"], error, "{answer}");
        }
    }
    // Nothing was counted or queued for the refused calls; the one
    // well-formed sign-in counted against the account and the address.
    assert_count(&app, "select count(*) from password_reset_requests", 0).await;
    assert_count(
        &app,
        "select coalesce(sum(failures), 0) from sign_in_throttle",
        2,
    )
    .await;
}

/// The owner's familiar address in the flood tests.
const OWNER_ADDRESS: &str = "127.0.0.2";

/// An app hashing on one thread with `queue` places waiting, whose owner
/// signed in from `OWNER_ADDRESS` before.
async fn app_with_hash_queue(queue: usize) -> TestApp {
    let app = TestApp::spawn_with(|settings| {
        settings.passwords = roster::startup::PasswordSettings { workers: 1, queue }
    })
    .await;
    owner_familiar_with(&app, OWNER_ADDRESS).await;
    app
}

/// `count` sign-ins from `flooder_address`, all at once but `concurrency`,
/// each with the (organization, username, password) `form` gives for its
/// number; meanwhile the owner signs in from their familiar address. The
/// flood's answers, and the owner's.
async fn flood_while_the_owner_signs_in(
    app: &TestApp,
    flooder_address: &str,
    count: usize,
    concurrency: usize,
    form: impl Fn(usize) -> (String, String, String),
) -> (Vec<Status>, Result<String, Status>) {
    let flooder = auth_from(app, flooder_address).await;
    let flood = stream::iter(0..count)
        .map(|attempt| {
            let mut flooder = flooder.clone();
            let (organization, username, password) = form(attempt);
            async move {
                sign_in(&mut flooder, &organization, &username, &password)
                    .await
                    .unwrap_err()
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<Status>>();
    let owner = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut owner = auth_from(app, OWNER_ADDRESS).await;
        sign_in(&mut owner, "acme", OWNER, GOOD_PASSWORD).await
    };
    tokio::join!(flood, owner)
}

#[tokio::test]
async fn a_flood_of_8000_malformed_sign_ins_from_one_address_does_not_stop_a_familiar_sign_in() {
    // No waiting room: a flood that reached the hash would refuse the owner.
    let app = app_with_hash_queue(0).await;
    let over_long = "x".repeat(9_000);
    let form = |attempt: usize| {
        let (organization, username, password) = match attempt % 4 {
            0 => ("acme", over_long.as_str(), "Wrong#Pass1"),
            1 => (over_long.as_str(), OWNER, "Wrong#Pass1"),
            2 => ("acme", "lia\0@acme.com", "Wrong#Pass1"),
            _ => ("acme", OWNER, ""),
        };
        (organization.into(), username.into(), password.into())
    };
    // From the owner's own address (a shared office NAT, say).
    let (answers, owner) =
        flood_while_the_owner_signs_in(&app, OWNER_ADDRESS, 8_000, 64, form).await;
    owner.unwrap();
    assert!(answers.iter().all(|s| s.code() == Code::InvalidArgument));
    let mut owner = auth_from(&app, OWNER_ADDRESS).await;
    sign_in(&mut owner, "acme", OWNER, GOOD_PASSWORD)
        .await
        .unwrap();
    assert_count(
        &app,
        "select coalesce(sum(failures), 0) from sign_in_throttle",
        0,
    )
    .await;
}

#[tokio::test]
async fn wrong_sign_ins_flooding_from_one_address_cannot_fill_the_hash_queue() {
    // Room for 41 checks: more than one address's budget of 30.
    let app = app_with_hash_queue(40).await;
    let form = |attempt: usize| {
        let username = format!("guess{attempt}@acme.com");
        ("acme".into(), username, "Wrong#Pass1234".into())
    };
    let (answers, owner) = flood_while_the_owner_signs_in(&app, "127.0.0.3", 300, 300, form).await;
    owner.unwrap();
    assert!(checked(&answers) <= 30, "{} checked", checked(&answers));
    for status in answers.iter().filter(|s| s.code() != Code::Unauthenticated) {
        assert_throttled(status);
    }
}

/// Wrong passwords for the owner, one per number in `guesses` (distinct
/// numbers, distinct passwords), `concurrency` at a time, spread over
/// `addresses`; the answers.
async fn guesses(
    app: &TestApp,
    addresses: &[String],
    guesses: std::ops::Range<usize>,
    concurrency: usize,
) -> Vec<Status> {
    let mut clients: Vec<AuthServiceClient<Authed>> = Vec::new();
    for address in addresses {
        clients.push(auth_from(app, address).await);
    }
    stream::iter(guesses)
        .map(|guess| {
            let mut client = clients[guess % clients.len()].clone();
            async move {
                sign_in(&mut client, "acme", OWNER, &format!("Wrong#Guess{guess}"))
                    .await
                    .unwrap_err()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn checked(answers: &[Status]) -> usize {
    answers
        .iter()
        .filter(|status| status.code() == Code::Unauthenticated)
        .count()
}

#[tokio::test]
async fn a_thousand_wrong_passwords_from_other_addresses_never_lock_the_owner_out_at_a_familiar_address(
) {
    // A backoff that outlasts the test, so that what it holds back is certain.
    let app =
        TestApp::spawn_with(|settings| settings.throttle.base = Duration::from_secs(60)).await;
    owner_familiar_with(&app, "127.0.0.2").await;
    let attackers: Vec<String> = (10..20).map(|host| format!("127.0.0.{host}")).collect();
    // A burst, then one at a time (as a patient attacker goes on).
    let mut answers = guesses(&app, &attackers, 0..990, 20).await;
    answers.extend(guesses(&app, &attackers, 990..1_000, 1).await);
    for status in answers.iter().filter(|s| s.code() != Code::Unauthenticated) {
        assert_throttled(status);
    }
    // At most the free failures, and the one that starts the backoff.
    assert!(checked(&answers) <= 6, "{} checked", checked(&answers));

    let mut owner = auth_from(&app, "127.0.0.2").await;
    sign_in(&mut owner, "acme", OWNER, GOOD_PASSWORD)
        .await
        .unwrap();
    // From an address new to the owner, the backoff the attacker caused holds.
    let mut elsewhere = auth_from(&app, "127.0.0.30").await;
    let held = sign_in(&mut elsewhere, "acme", OWNER, GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_throttled(&held);
}

#[tokio::test]
async fn concurrent_wrong_guesses_against_one_username_are_not_all_checked() {
    let app = TestApp::spawn().await;
    registered_user(&app, OWNER).await;
    let attackers: Vec<String> = (40..46).map(|host| format!("127.0.0.{host}")).collect();
    let answers = guesses(&app, &attackers, 0..60, 60).await;
    assert!(
        checked(&answers) <= 5,
        "{} of 60 concurrent guesses checked",
        checked(&answers)
    );
    for status in answers.iter().filter(|s| s.code() != Code::Unauthenticated) {
        assert_throttled(status);
    }
    // Every reservation was settled.
    assert_nothing_reserved(&app).await;
}

#[tokio::test]
async fn the_same_wrong_password_retyped_counts_once() {
    let app = TestApp::spawn().await;
    registered_user(&app, OWNER).await;
    let mut auth = auth_from(&app, "127.0.0.1").await;
    for _ in 0..10 {
        assert_wrong(&mut auth, OWNER, "Wrong#Pass0").await;
    }
    // Five distinct failures in all are free, the sixth starts the backoff.
    for guess in 1..=5 {
        assert_wrong(&mut auth, OWNER, &format!("Wrong#Pass{guess}")).await;
    }
    let held = sign_in(&mut auth, "acme", OWNER, "Wrong#Pass6")
        .await
        .unwrap_err();
    assert_throttled(&held);
    // Kept as keyed digests only: six distinct passwords, 32 bytes each.
    assert_count(
        &app,
        "select count(*) from sign_in_wrong_passwords where octet_length(digest) = 32",
        6,
    )
    .await;
}

#[tokio::test]
async fn an_address_past_its_limit_still_lets_in_users_familiar_with_it() {
    let app = TestApp::spawn().await;
    let office = "127.0.0.5";
    owner_familiar_with(&app, office).await;
    registered_user(&app, "bob@acme.com").await;
    let mut guesser = auth_from(&app, office).await;
    for attempt in 0..31 {
        assert_wrong(
            &mut guesser,
            &format!("guess{attempt}@acme.com"),
            "Wrong#Pass1234",
        )
        .await;
    }
    // Bob never signed in from the office: its limit holds him back.
    let held = sign_in(&mut guesser, "acme", "bob@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_throttled(&held);
    sign_in(&mut guesser, "acme", OWNER, GOOD_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_password_reset_request_does_the_same_work_whatever_it_names() {
    // No delivery worker here: what a request leaves behind stays visible.
    let app = TestApp::spawn_with(|settings| {
        settings.delivery = None;
        settings.throttle.reset_free = 10_000;
        settings.throttle.peer_free = 10_000;
    })
    .await;
    app.insert_user(OWNER, "ACTIVE", true).await;
    sqlx::query("update users set password_hash = 'set' where username = $1")
        .bind(OWNER)
        .execute(&app.pool)
        .await
        .unwrap();
    let not_onboarded = app.insert_user("tom@acme.com", "ACTIVE", false).await;
    let cases = [
        ("onboarded user", OWNER),
        ("user not onboarded", "tom@acme.com"),
        ("unknown user", "nobody@acme.com"),
    ];
    const ROUNDS: usize = 40;
    let mut auth = auth_from(&app, "127.0.0.1").await;
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (index, (_, username)) in cases.iter().enumerate() {
            let began = Instant::now();
            auth.request_password_reset(proto::RequestPasswordResetRequest {
                organization: "acme".into(),
                username: (*username).into(),
            })
            .await
            .unwrap();
            times[index].push(began.elapsed());
        }
    }
    for ((case, _), mut durations) in cases.iter().zip(times) {
        durations.sort();
        println!(
            "RequestPasswordReset, {case}: median {:.2} ms, p90 {:.2} ms over {ROUNDS} calls",
            durations[ROUNDS / 2].as_secs_f64() * 1e3,
            durations[ROUNDS * 9 / 10].as_secs_f64() * 1e3,
        );
    }
    // Each request left one queued row, whatever it named; nothing was looked up.
    assert_count(
        &app,
        "select count(*) from password_reset_requests",
        (ROUNDS * cases.len()) as i64,
    )
    .await;
    assert_count(&app, "select count(*) from outbox", 0).await;

    // A delivery worker resolves them: a reset email for the onboarded user,
    // a new invitation for the active one who never registered, nothing for
    // nobody.
    let _worker = app.replica(|_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .count("select count(*) from password_reset_requests")
        .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the requests were never resolved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued: Vec<(String, uuid::Uuid)> = sqlx::query_as("select kind, user_id from outbox")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(queued.len(), 2 * ROUNDS);
    let invited = queued
        .iter()
        .filter(|(kind, user)| kind == "INVITATION" && *user == not_onboarded);
    assert_eq!(invited.count(), ROUNDS);
    let reset = queued
        .iter()
        .filter(|(kind, user)| kind == "PASSWORD_RESET" && *user != not_onboarded);
    assert_eq!(reset.count(), ROUNDS);
}

#[tokio::test]
async fn a_password_retyped_on_made_up_usernames_counts_against_the_address_every_time() {
    // A backoff that outlasts the test, so that what it holds back is certain.
    let app =
        TestApp::spawn_with(|settings| settings.throttle.base = Duration::from_secs(60)).await;
    owner_familiar_with(&app, "127.0.0.7").await;
    let mut flooder = auth_from(&app, "127.0.0.6").await;
    let mut answers = Vec::new();
    for attempt in 0..45 {
        // Three made-up accounts, each retyping its one password.
        let username = format!("made-up{}@acme.com", attempt % 3);
        let refused = sign_in(&mut flooder, "acme", &username, "Wrong#Pass1234")
            .await
            .unwrap_err();
        answers.push(refused);
    }
    // The address's 30 free failures and the one that starts its backoff
    // were checked; the rest were held back before the hash.
    assert_eq!(checked(&answers[..31]), 31);
    for status in &answers[31..] {
        assert_throttled(status);
    }
    // A familiar pair uses no address budget, and for the account a
    // retyped password still counts once: the owner is never held back.
    let mut owner = auth_from(&app, "127.0.0.7").await;
    for _ in 0..40 {
        assert_wrong(&mut owner, OWNER, "Wrong#Pass0").await;
    }
    sign_in(&mut owner, "acme", OWNER, GOOD_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn attempts_on_a_budget_row_another_holds_are_held_back_at_once_and_never_drain_the_pool() {
    let app = TestApp::spawn().await;
    owner_familiar_with(&app, OWNER_ADDRESS).await;
    let flooder_address = "127.0.0.8";
    let mut flooder = auth_from(&app, flooder_address).await;
    assert_wrong(&mut flooder, "made-up@acme.com", "Wrong#Pass1234").await;
    // Another attempt (a replica, a slow commit) holds the address's row:
    // the only rows with a failure are the flooder's.
    let mut holder = sqlx::PgConnection::connect_with(&app.pool.connect_options())
        .await
        .unwrap();
    sqlx::query("begin").execute(&mut holder).await.unwrap();
    let held: Vec<Vec<u8>> =
        sqlx::query_scalar("select key from sign_in_throttle where failures > 0 for update")
            .fetch_all(&mut holder)
            .await
            .unwrap();
    assert_eq!(held.len(), 2);

    let flood = stream::iter(0..200)
        .map(|attempt| {
            let mut flooder = flooder.clone();
            async move {
                let username = format!("guess{attempt}@acme.com");
                sign_in(&mut flooder, "acme", &username, "Wrong#Pass1234")
                    .await
                    .unwrap_err()
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<Status>>();
    let others = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let prompt = Duration::from_secs(3);
        let mut owner = auth_from(&app, OWNER_ADDRESS).await;
        tokio::time::timeout(prompt, sign_in(&mut owner, "acme", OWNER, GOOD_PASSWORD))
            .await
            .expect("the owner's sign-in answers promptly")
            .unwrap();
        tokio::time::timeout(
            prompt,
            app.auth(app.as_admin()).who_am_i(proto::WhoAmIRequest {}),
        )
        .await
        .expect("WhoAmI answers promptly")
        .unwrap();
        // A reset request on the held row is held back silently, at once.
        tokio::time::timeout(
            prompt,
            auth_from(&app, flooder_address)
                .await
                .request_password_reset(proto::RequestPasswordResetRequest {
                    organization: "acme".into(),
                    username: "made-up@acme.com".into(),
                }),
        )
        .await
        .expect("RequestPasswordReset answers promptly")
        .unwrap();
    };
    let (answers, ()) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(flood, others)
    })
    .await
    .expect("the flood is answered, not queued behind the held row");
    for status in &answers {
        assert_throttled(status);
    }

    sqlx::query("rollback").execute(&mut holder).await.unwrap();
    // Released, the address is checked again; nothing stayed reserved.
    assert_wrong(&mut flooder, "made-up@acme.com", "Wrong#Pass5678").await;
    assert_nothing_reserved(&app).await;
}

#[tokio::test]
async fn a_replica_of_the_previous_release_still_reads_its_sign_in_failures_after_the_upgrade() {
    let app = TestApp::spawn().await;
    // What the previous release's Login reads first, on every attempt.
    let blocked: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select max(blocked_until) from sign_in_failures where key = any($1) and blocked_until > now()",
    )
    .bind(vec!["user:acme:lia@acme.com".to_owned(), "peer:127.0.0.1".to_owned()])
    .fetch_one(&app.pool)
    .await
    .expect("sign_in_failures stays until a later release drops it");
    assert_eq!(blocked, None);
}
