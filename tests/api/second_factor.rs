//! A second factor (issue 19 point 5): a signed-in user enrolls an
//! authenticator app (TOTP, RFC 6238) and gets ten recovery codes; Login of
//! an enrolled user answers a challenge that CompleteLogin takes with a code;
//! an administrator resets a lost one under the who-may-do-what rule.

use roster::{domain::caller::Scope, proto};
use tonic::{Code, Status};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::{
    groups,
    helpers::{error_reason, violations, Answered, Bearer, TestApp},
    onboarding::{login, registered_user, GOOD_PASSWORD},
};

/// The test's authenticator app: codes computed from the enrolled secret.
pub struct Authenticator(TOTP);

impl Authenticator {
    pub fn new(secret_base32: &str) -> Self {
        let seed = Secret::Encoded(secret_base32.to_owned())
            .to_bytes()
            .expect("a base32 secret");
        Self(TOTP::new_unchecked(
            Algorithm::SHA1,
            6,
            0,
            30,
            seed,
            None,
            String::new(),
        ))
    }

    /// The code of the time step `steps` away from now.
    pub fn code(&self, steps: i64) -> String {
        let now = chrono::Utc::now().timestamp() + steps * 30;
        self.0.generate(now as u64)
    }

    /// A code that is not the one of step `steps`: half the code space
    /// away from it, plus `offset` (for several different wrong codes).
    pub fn wrong_code(&self, steps: i64, offset: u32) -> String {
        let right: u32 = self.code(steps).parse().expect("six digits");
        format!("{:06}", (right + 500_000 + offset) % 1_000_000)
    }
}

pub async fn begin(
    app: &TestApp,
    bearer: Bearer,
) -> Result<proto::BeginTotpEnrollmentResponse, Status> {
    app.auth(bearer)
        .begin_totp_enrollment(proto::BeginTotpEnrollmentRequest {})
        .await
        .map(|r| r.into_inner())
}

pub async fn confirm(app: &TestApp, bearer: Bearer, code: &str) -> Result<Vec<String>, Status> {
    app.auth(bearer)
        .confirm_totp_enrollment(proto::ConfirmTotpEnrollmentRequest { code: code.into() })
        .await
        .map(|r| r.into_inner().recovery_codes)
}

/// Enrolls the session's user: their authenticator and recovery codes.
pub async fn enroll(app: &TestApp, bearer: Bearer) -> (Authenticator, Vec<String>) {
    let started = begin(app, bearer.clone()).await.unwrap();
    let authenticator = Authenticator::new(&started.secret);
    let codes = confirm(app, bearer, &authenticator.code(0)).await.unwrap();
    (authenticator, codes)
}

/// Login of an enrolled user: the challenge.
pub async fn challenge(app: &TestApp, username: &str) -> String {
    challenge_for(app, username, GOOD_PASSWORD).await
}

/// Login of an enrolled user with `password`: the challenge.
pub async fn challenge_for(app: &TestApp, username: &str, password: &str) -> String {
    let answer = app
        .auth(Bearer::none())
        .login(proto::LoginRequest {
            organization: "acme".into(),
            username: username.into(),
            password: password.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.access_token, "", "no token before the second factor");
    assert!(answer.challenge.starts_with("rst_lc_"), "{answer:?}");
    assert!(answer.challenge_expire_time.is_some());
    answer.challenge
}

pub async fn complete(app: &TestApp, challenge: &str, code: &str) -> Result<String, Status> {
    app.auth(Bearer::none())
        .complete_login(proto::CompleteLoginRequest {
            challenge: challenge.into(),
            code: code.into(),
        })
        .await
        .map(|r| r.into_inner().access_token)
}

/// ListUsers filtered on `second_factor_enrolled`: the emails.
async fn enrolled_emails(app: &TestApp, enrolled: bool) -> Vec<String> {
    let listed = app
        .users(app.as_admin())
        .list_users(proto::ListUsersRequest {
            second_factor_enrolled: Some(enrolled),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    listed.users.into_iter().map(|user| user.email).collect()
}

async fn who_am_i(app: &TestApp, token: &str) -> Result<(), Status> {
    app.who_am_i(Bearer::token(token)).await.map(drop)
}

/// A registered user signed in with their password: the user and the session.
async fn signed_in(app: &TestApp, email: &str) -> (proto::User, Bearer) {
    let user = registered_user(app, email).await;
    let token = login(app, email, GOOD_PASSWORD).await.unwrap();
    (user, Bearer::token(&token))
}

async fn reset_second_factor(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
) -> Result<proto::User, Status> {
    app.users(bearer)
        .reset_user_second_factor(proto::ResetUserSecondFactorRequest {
            user_id: user_id.into(),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

#[tokio::test]
async fn an_enrolled_user_signs_in_with_the_password_then_a_code_from_their_app() {
    let app = TestApp::spawn().await;
    let (user, session) = signed_in(&app, "ana@acme.com").await;
    assert!(!app.get_user(&user.id).await.second_factor_enrolled);

    let started = begin(&app, session.clone()).await.unwrap();
    assert!(started.secret.len() >= 32, "160 bits in base32");
    assert!(
        started
            .otpauth_uri
            .starts_with("otpauth://totp/Roster:acme%2Fana%40acme.com?"),
        "{}",
        started.otpauth_uri
    );
    assert!(started
        .otpauth_uri
        .contains(&format!("secret={}", started.secret)));
    assert!(started.otpauth_uri.contains("issuer=Roster"));
    let app_codes = Authenticator::new(&started.secret);
    let recovery_codes = confirm(&app, session.clone(), &app_codes.code(0))
        .await
        .unwrap();
    assert_eq!(recovery_codes.len(), 10);
    let enrolled = app.get_user(&user.id).await;
    assert!(enrolled.second_factor_enrolled && enrolled.second_factor_enroll_time.is_some());

    // The password alone no longer signs in: a challenge, then a code.
    let first = challenge(&app, "ana@acme.com").await;
    let wrong = app_codes.wrong_code(0, 0);
    let refused = complete(&app, &first, &wrong).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // The code that confirmed the enrollment was used; the next one works.
    let code = app_codes.code(1);
    let token = complete(&app, &first, &code).await.unwrap();
    who_am_i(&app, &token).await.unwrap();

    // A challenge is used once, and a code too.
    let again = complete(&app, &first, &app_codes.code(0))
        .await
        .unwrap_err();
    assert_eq!(violations(&again)[0].0, "challenge");
    assert_eq!(violations(&again)[0].1, "INVALID_CHALLENGE");
    let second = challenge(&app, "ana@acme.com").await;
    let replayed = complete(&app, &second, &code).await.unwrap_err();
    assert_eq!(replayed.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn each_recovery_code_signs_in_once_however_it_is_typed() {
    let app = TestApp::spawn().await;
    let (_, session) = signed_in(&app, "ana@acme.com").await;
    let (_, codes) = enroll(&app, session).await;
    assert!(codes.iter().all(|code| code.len() == 19), "{codes:?}");

    let token = complete(&app, &challenge(&app, "ana@acme.com").await, &codes[0])
        .await
        .unwrap();
    who_am_i(&app, &token).await.unwrap();
    let used = complete(&app, &challenge(&app, "ana@acme.com").await, &codes[0])
        .await
        .unwrap_err();
    assert_eq!(used.code(), Code::Unauthenticated);
    let typed = codes[1].replace('-', " ").to_uppercase();
    complete(&app, &challenge(&app, "ana@acme.com").await, &typed)
        .await
        .unwrap();
}

#[tokio::test]
async fn enrollment_needs_the_app_s_current_code_and_happens_once() {
    let app = TestApp::spawn().await;
    let (_, session) = signed_in(&app, "ana@acme.com").await;
    let unstarted = confirm(&app, session.clone(), "123456").await.unwrap_err();
    assert_eq!(error_reason(&unstarted).as_deref(), Some("NO_ENROLLMENT"));

    let started = begin(&app, session.clone()).await.unwrap();
    let app_codes = Authenticator::new(&started.secret);
    let wrong = app_codes.wrong_code(0, 0);
    let refused = confirm(&app, session.clone(), &wrong).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violations(&refused)[0].1, "WRONG_CODE");
    let malformed = confirm(&app, session.clone(), "12ab").await.unwrap_err();
    assert_eq!(violations(&malformed)[0].0, "code");
    assert_eq!(violations(&malformed)[0].1, "INVALID_CODE");
    // Unconfirmed, it changes nothing: the password signs in alone.
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();

    // Beginning again replaces the unconfirmed secret.
    let restarted = begin(&app, session.clone()).await.unwrap();
    assert_ne!(restarted.secret, started.secret);
    let stale = confirm(&app, session.clone(), &app_codes.code(0))
        .await
        .unwrap_err();
    assert_eq!(violations(&stale)[0].1, "WRONG_CODE");
    let app_codes = Authenticator::new(&restarted.secret);
    confirm(&app, session.clone(), &app_codes.code(0))
        .await
        .unwrap();

    let twice = begin(&app, session.clone()).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(
        error_reason(&twice).as_deref(),
        Some("SECOND_FACTOR_ALREADY_ENROLLED")
    );
    let api_key = begin(&app, app.as_admin()).await.unwrap_err();
    assert_eq!(api_key.code(), Code::PermissionDenied, "{api_key:?}");
}

/// Six wrong codes on one challenge (the free failures and the one that
/// starts the backoff), each a new one or the same one again; then the
/// right code is held back.
async fn six_wrong_codes_hold_back_the_right_one(distinct: bool) {
    // A backoff that outlasts the test, so that what it holds back is certain.
    let app = TestApp::spawn_with(|settings| {
        settings.throttle.base = std::time::Duration::from_secs(60);
    })
    .await;
    let (_, session) = signed_in(&app, "ana@acme.com").await;
    let (app_codes, _) = enroll(&app, session).await;
    let challenge = challenge(&app, "ana@acme.com").await;
    for attempt in 0..6 {
        let wrong = app_codes.wrong_code(1, if distinct { attempt } else { 0 });
        let refused = complete(&app, &challenge, &wrong).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    let held = complete(&app, &challenge, &app_codes.code(1))
        .await
        .unwrap_err();
    assert_eq!(held.code(), Code::ResourceExhausted, "{held:?}");
    assert_eq!(error_reason(&held).as_deref(), Some("THROTTLED"));
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    six_wrong_codes_hold_back_the_right_one(true).await;
}

#[tokio::test]
async fn the_same_wrong_code_sent_again_is_counted_again() {
    // A code wrong now may be right at the next time step: unlike a retyped
    // password, a repeated code is a new guess and costs one.
    six_wrong_codes_hold_back_the_right_one(false).await;
}

#[tokio::test]
async fn a_recovery_code_is_not_spent_on_an_account_that_may_not_sign_in() {
    let app = TestApp::spawn().await;
    let (user, session) = signed_in(&app, "ana@acme.com").await;
    let (_, recovery_codes) = enroll(&app, session).await;
    let pending = challenge(&app, "ana@acme.com").await;
    let set_status = |status: proto::UserStatus| proto::SetUserStatusRequest {
        user_id: user.id.clone(),
        status: status as i32,
    };
    let mut users = app.users(app.as_admin());
    users
        .set_user_status(set_status(proto::UserStatus::Inactive))
        .await
        .unwrap();
    let refused = complete(&app, &pending, &recovery_codes[0])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("ACCOUNT_NOT_ACTIVE")
    );
    users
        .set_user_status(set_status(proto::UserStatus::Active))
        .await
        .unwrap();
    let again = challenge(&app, "ana@acme.com").await;
    let token = complete(&app, &again, &recovery_codes[0]).await.unwrap();
    who_am_i(&app, &token).await.unwrap();
}

#[tokio::test]
async fn a_server_without_a_secret_key_refuses_to_require_a_second_factor() {
    let app = TestApp::spawn_with(|settings| settings.secret_key = None).await;
    let refused = set_require_second_factor(&app).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("SECOND_FACTOR_UNAVAILABLE")
    );
}

#[tokio::test]
async fn complete_login_refuses_what_is_not_a_challenge_or_a_code() {
    let app = TestApp::spawn().await;
    let empty = complete(&app, "", "").await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(violations(&empty)[0].0, "code");
    assert_eq!(violations(&empty)[0].1, "REQUIRED");
    let unknown = complete(&app, "rst_lc_nope", "123456").await.unwrap_err();
    assert_eq!(violations(&unknown)[0].0, "challenge");
    assert_eq!(violations(&unknown)[0].1, "INVALID_CHALLENGE");
    let long = complete(&app, &"x".repeat(10_000), "123456")
        .await
        .unwrap_err();
    assert_eq!(violations(&long)[0].0, "challenge");
    assert_eq!(violations(&long)[0].1, "TOO_LONG");
    let long_code = complete(&app, "rst_lc_nope", &"1".repeat(10_000))
        .await
        .unwrap_err();
    assert_eq!(violations(&long_code)[0].1, "TOO_LONG");
}

#[tokio::test]
async fn an_administrator_resets_a_lost_second_factor_and_the_password_signs_in_alone() {
    let app = TestApp::spawn().await;
    let (user, session) = signed_in(&app, "ana@acme.com").await;
    enroll(&app, session.clone()).await;
    let pending = challenge(&app, "ana@acme.com").await;

    registered_user(&app, "bia@acme.com").await;
    assert_eq!(enrolled_emails(&app, true).await, ["ana@acme.com"]);
    assert_eq!(enrolled_emails(&app, false).await, ["bia@acme.com"]);
    let reset = reset_second_factor(&app, app.as_admin(), &user.id)
        .await
        .unwrap();
    assert!(!reset.second_factor_enrolled && reset.second_factor_enroll_time.is_none());
    assert!(enrolled_emails(&app, true).await.is_empty());
    let void = complete(&app, &pending, "123456").await.unwrap_err();
    assert_eq!(violations(&void)[0].1, "INVALID_CHALLENGE");
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    // And they may enroll anew.
    enroll(&app, session).await;

    let events = app
        .audit_events(proto::ListAuditEventsRequest::default())
        .await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "user.second_factor.begin",
        "user.second_factor.enroll",
        "user.second_factor.reset",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn a_unit_administrator_resets_second_factors_only_of_users_they_may_act_on() {
    let (app, _, south) = groups::spawn_with_south_admin().await;
    let (in_west, west_session) = signed_in(&app, "west@acme.com").await;
    groups::give(&app, app.as_admin(), &in_west.id, &[&south.cashier_west])
        .await
        .unwrap();
    enroll(&app, west_session).await;
    let (in_south, south_session) = signed_in(&app, "south@acme.com").await;
    groups::give(&app, app.as_admin(), &in_south.id, &[&south.cashier_south])
        .await
        .unwrap();
    enroll(&app, south_session).await;

    let refused = reset_second_factor(&app, south.bearer.clone(), &in_west.id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(app.get_user(&in_west.id).await.second_factor_enrolled);
    let own = reset_second_factor(&app, south.bearer.clone(), &south.user.id)
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied);
    let reset = reset_second_factor(&app, south.bearer.clone(), &in_south.id)
        .await
        .unwrap();
    assert!(!reset.second_factor_enrolled);
    let viewer_key = app
        .create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
        .await;
    let viewer = reset_second_factor(&app, Bearer::token(&viewer_key), &in_west.id)
        .await
        .unwrap_err();
    assert_eq!(viewer.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn resetting_credentials_removes_the_second_factor_too() {
    let app = TestApp::spawn().await;
    let (user, session) = signed_in(&app, "ana@acme.com").await;
    enroll(&app, session).await;
    let reset = app
        .users(app.as_admin())
        .reset_user_credentials(proto::ResetUserCredentialsRequest {
            user_id: user.id.clone(),
        })
        .await
        .answered();
    assert!(!reset.second_factor_enrolled);
    // Registering again from the fresh invitation signs in with the password alone.
    let invitation = app.email("ana@acme.com", 2).await;
    crate::onboarding::register(&app, &invitation.link_token(), GOOD_PASSWORD)
        .await
        .unwrap();
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
}

/// Every table of the database as text, one row a line (bytea as hex).
async fn database_as_text(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables \
         where table_schema = 'public' and table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut dump = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("select t::text from \"{table}\" t"))
            .fetch_all(&pool)
            .await
            .unwrap();
        dump.push_str(&format!("{table}:\n{}\n", rows.join("\n")));
    }
    pool.close().await;
    dump
}

/// What must never be stored or logged in clear, each in the forms it may take.
fn secrets_of(
    secret_base32: &str,
    recovery_codes: &[String],
    challenges: &[String],
) -> Vec<String> {
    let seed = Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .unwrap();
    let mut secrets = vec![
        secret_base32.to_owned(),
        secret_base32.to_lowercase(),
        hex::encode(&seed),
    ];
    for code in recovery_codes {
        secrets.push(code.clone());
        secrets.push(code.replace('-', ""));
    }
    secrets.extend(challenges.iter().cloned());
    secrets
}

#[tokio::test(flavor = "multi_thread")]
async fn no_seed_recovery_code_challenge_or_token_is_in_clear_in_the_database_the_mail_or_the_log()
{
    use crate::cli::{acme_and_its_ops_key, roster, serve_with_pages};
    let Some(url) = crate::helpers::fresh_database_url().await else {
        eprintln!("skipped: the test database server is the one DATABASE_URL names");
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let operator = |args: &[&str]| {
        let mut command = roster(data_dir.path());
        command
            .env("DATABASE_URL", &url)
            .env(
                "ROSTER_SECRET_KEY",
                "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=",
            )
            .env("RUST_LOG", "debug")
            .args(args);
        command
    };
    let key = acme_and_its_ops_key(operator);
    let (served, channel) = serve_with_pages(operator(&[])).await;
    let users = || {
        roster::proto::user_service_client::UserServiceClient::with_interceptor(
            channel.clone(),
            Bearer::token(&key),
        )
    };
    let auth = |bearer: Bearer| {
        roster::proto::auth_service_client::AuthServiceClient::with_interceptor(
            channel.clone(),
            bearer,
        )
    };
    users()
        .create_user(crate::users::new_user("Ana", "Souza", "ana@acme.test"))
        .await
        .unwrap();
    let links = crate::helpers::eventually(
        "the invitation is written",
        std::time::Duration::from_secs(15),
        || async {
            let written = roster(data_dir.path())
                .args(["mail", "links", "--latest"])
                .output()
                .unwrap();
            let links = String::from_utf8(written.stdout).unwrap();
            links.contains("#token=").then_some(links)
        },
    )
    .await;
    let token = links.split("#token=").nth(1).unwrap().trim().to_owned();
    auth(Bearer::none())
        .register_password(proto::RegisterPasswordRequest {
            token,
            password: GOOD_PASSWORD.into(),
        })
        .await
        .unwrap();
    let login = || async {
        auth(Bearer::none())
            .login(proto::LoginRequest {
                organization: "acme".into(),
                username: "ana@acme.test".into(),
                password: GOOD_PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let session_token = login().await.access_token;
    let session = Bearer::token(&session_token);
    let started = auth(session.clone())
        .begin_totp_enrollment(proto::BeginTotpEnrollmentRequest {})
        .await
        .unwrap()
        .into_inner();
    let recovery_codes = auth(session)
        .confirm_totp_enrollment(proto::ConfirmTotpEnrollmentRequest {
            code: Authenticator::new(&started.secret).code(0),
        })
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    let used = login().await.challenge;
    let completed_token = auth(Bearer::none())
        .complete_login(proto::CompleteLoginRequest {
            challenge: used.clone(),
            code: recovery_codes[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    // A session in use: its last use is written (and logged at debug) too.
    auth(Bearer::token(&completed_token))
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .unwrap();
    let pending = login().await.challenge;

    let mut secrets = secrets_of(&started.secret, &recovery_codes, &[used, pending]);
    // Session tokens and the API key: kept by hash only, like the codes.
    assert!(session_token.starts_with("rst_at_") && completed_token.starts_with("rst_at_"));
    secrets.extend([session_token, completed_token, key.trim().to_owned()]);
    let dump = database_as_text(&url).await;
    assert!(dump.contains("second_factors:\n") && dump.contains("recovery_codes:\n"));
    let mut mail = String::new();
    for entry in std::fs::read_dir(data_dir.path().join("mail")).unwrap() {
        mail.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.unwrap().path()).unwrap(),
        ));
    }
    let log = served.logged_all(&[]).join("\n");
    assert!(!log.is_empty(), "the server logged at debug level");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "{secret} in the database");
        assert!(!mail.contains(secret.as_str()), "{secret} in an email");
        assert!(!log.contains(secret.as_str()), "{secret} in the log");
    }
    served.stop(nix::sys::signal::Signal::SIGTERM);
}

/// Asks to turn the organization's `require_second_factor` on, over gRPC.
async fn set_require_second_factor(app: &TestApp) -> Result<proto::Organization, Status> {
    let required = proto::OrganizationSettings {
        require_second_factor: true,
        ..Default::default()
    };
    app.update_settings(required, &["require_second_factor"])
        .await
}

/// Turns the organization's `require_second_factor` on, over gRPC.
pub async fn require_second_factor(app: &TestApp) {
    let updated = set_require_second_factor(app).await.unwrap();
    assert!(updated.settings.unwrap().require_second_factor);
}

async fn post_page(app: &TestApp, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", app.pages()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn under_require_second_factor_the_password_alone_sends_a_reset_link_whose_page_enrolls() {
    let app = TestApp::spawn().await;
    registered_user(&app, "ana@acme.com").await;
    require_second_factor(&app).await;

    let refused = login(&app, "ana@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("SECOND_FACTOR_REQUIRED")
    );
    let reset = app.email("ana@acme.com", 2).await;

    let (status, set) = post_page(
        &app,
        "/api/reset",
        serde_json::json!({"token": reset.link_token(), "password": GOOD_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let setup = &set["second_factor"];
    assert!(setup["qr_svg"].as_str().unwrap().contains("<svg"), "{set}");
    let app_codes = Authenticator::new(setup["secret"].as_str().unwrap());
    let challenge = setup["challenge"].as_str().unwrap().to_owned();
    // Not enrolled yet: the password still does not sign in.
    let pending = login(&app, "ana@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        error_reason(&pending).as_deref(),
        Some("SECOND_FACTOR_REQUIRED")
    );

    let wrong = app_codes.wrong_code(0, 0);
    let (status, refused) = post_page(
        &app,
        "/api/second-factor",
        serde_json::json!({"challenge": challenge, "code": wrong}),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("WRONG_CODE"))
    );
    let (status, enrolled) = post_page(
        &app,
        "/api/second-factor",
        serde_json::json!({"challenge": challenge, "code": app_codes.code(0)}),
    )
    .await;
    assert_eq!(status, 200, "{enrolled}");
    assert_eq!(enrolled["recovery_codes"].as_array().unwrap().len(), 10);
    let (status, again) = post_page(
        &app,
        "/api/second-factor",
        serde_json::json!({"challenge": challenge, "code": app_codes.code(1)}),
    )
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("INVALID_TOKEN")),
        "{again}"
    );

    let token = complete(&app, &challenge_of(&app).await, &app_codes.code(1))
        .await
        .unwrap();
    who_am_i(&app, &token).await.unwrap();
}

/// Login of ana@acme.com, enrolled: the challenge.
async fn challenge_of(app: &TestApp) -> String {
    challenge(app, "ana@acme.com").await
}
