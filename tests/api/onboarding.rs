//! Onboarding and sign-in over gRPC: invitations and reset links delivered
//! by the worker (as `.eml` files here), RegisterPassword, ResetPassword,
//! Login, Logout, ChangePassword and throttling.

use roster::proto::{self, auth_service_client::AuthServiceClient, UnitScope};
use tonic::{Code, Status};

use crate::{
    groups,
    helpers::{
        error_reason, eventually, mask, violated_fields, Answered, Authed, Bearer, Email, TestApp,
    },
};

/// A password that meets every rule of the policy.
pub const GOOD_PASSWORD: &str = "ExAmple@2026";

pub async fn login(app: &TestApp, username: &str, password: &str) -> Result<String, Status> {
    sign_in(&mut app.auth(Bearer::none()), "ACME", username, password).await
}

/// Login through `auth`, as typed on a sign-in form; the access token.
pub async fn sign_in(
    auth: &mut AuthServiceClient<Authed>,
    organization: &str,
    username: &str,
    password: &str,
) -> Result<String, Status> {
    auth.login(proto::LoginRequest {
        organization: organization.into(),
        username: username.into(),
        password: password.into(),
    })
    .await
    .map(|r| r.into_inner().access_token)
}

pub async fn register(
    app: &TestApp,
    token: &str,
    password: &str,
) -> Result<proto::RegisterPasswordResponse, Status> {
    app.auth(Bearer::none())
        .register_password(proto::RegisterPasswordRequest {
            token: token.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A user created through the API who registered `GOOD_PASSWORD` from their invitation.
pub async fn registered_user(app: &TestApp, email: &str) -> proto::User {
    let user = app.create_user("Reg", "Istered", email).await;
    let invitation = app.email(email, 1).await;
    register(app, &invitation.link_token(), GOOD_PASSWORD)
        .await
        .unwrap();
    user
}

/// A newer invitation replaced `older`: its link is refused, the newer one registers.
pub async fn only_the_newer_link_registers(app: &TestApp, older: &Email, newer: &Email) {
    let refused = register(app, &older.link_token(), GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["token"]);
    register(app, &newer.link_token(), GOOD_PASSWORD)
        .await
        .unwrap();
}

async fn who_am_i(app: &TestApp, token: &str) -> Result<proto::WhoAmIResponse, Status> {
    app.who_am_i(Bearer::token(token))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn an_invited_user_registers_a_password_signs_in_and_gets_the_scopes_of_their_groups() {
    let app = TestApp::spawn().await;
    let org = groups::org(&app).await;
    let viewers = groups::group(
        &app,
        "Viewers",
        &org.viewer_profile,
        UnitScope::AllUnits,
        &[],
    )
    .await;
    let user = groups::user_in(&app, "Zoë", "Souza", "zoe@acme.com", &[&viewers]).await;

    let invitation = app.email("zoe@acme.com", 1).await;
    assert!(
        invitation.subject.contains("acme"),
        "{}",
        invitation.subject
    );
    assert!(invitation.text.contains("Zoë"));
    let link = invitation.link();
    assert!(
        link.starts_with("https://roster.test/register#token=rst_inv_"),
        "{link}"
    );
    assert!(invitation.html.contains("Register Password"));
    let token = invitation.link_token();
    let stored: i64 = sqlx::query_scalar(
        "select count(*) from onboarding_tokens where encode(token_hash, 'hex') = encode(sha256($1::bytea), 'hex')",
    )
    .bind(token.as_bytes())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 1, "only the token's hash is stored");
    let clear = app
        .count("select count(*) from outbox where kind = 'INVITATION' and status = 'SENT'")
        .await;
    assert_eq!(clear, 1);

    // Not onboarded yet: the same answer as a wrong password.
    let refused = login(&app, "zoe@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let weak = register(&app, &token, "zoe@acme.com").await.unwrap_err();
    assert_eq!(weak.code(), Code::InvalidArgument);
    let reasons: Vec<String> = tonic_types::StatusExt::get_details_bad_request(&weak)
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "PASSWORD_UPPERCASE",
            "PASSWORD_DIGITS",
            "PASSWORD_CONTAINS_USERNAME"
        ]
    );
    assert_eq!(violated_fields(&weak), ["password"; 3]);

    let registered = register(&app, &token, GOOD_PASSWORD).await.unwrap();
    assert_eq!(registered.organization, "acme");
    assert_eq!(registered.username, "zoe@acme.com");
    let reused = register(&app, &token, GOOD_PASSWORD).await.unwrap_err();
    assert_eq!(error_reason(&reused).as_deref(), Some("INVALID_ARGUMENT"));
    assert_eq!(violated_fields(&reused), ["token"]);

    let signed_in = app
        .auth(Bearer::none())
        .login(proto::LoginRequest {
            organization: "  Acme ".into(),
            username: "ZOE@acme.com".into(),
            password: GOOD_PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(signed_in.access_token.starts_with("rst_at_"));
    assert_eq!(signed_in.scopes, [proto::Scope::Viewer as i32]);
    let me = who_am_i(&app, &signed_in.access_token).await.unwrap();
    assert_eq!(me.scopes, [proto::Scope::Viewer as i32]);
    let Some(proto::who_am_i_response::Principal::User(me)) = me.principal else {
        panic!("a user");
    };
    assert_eq!(me.id, user.id);
    let stored = app.get_user(&user.id).await;
    assert!(stored.onboarded);
    assert_eq!(stored.status, proto::UserStatus::Active as i32);
    assert!(stored.last_login_time.is_some());

    // Logout ends this session only.
    app.auth(Bearer::token(&signed_in.access_token))
        .logout(proto::LogoutRequest {})
        .await
        .unwrap();
    let after = who_am_i(&app, &signed_in.access_token).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn without_a_public_url_links_lead_to_the_pages_on_the_port_they_bound() {
    // Pages on port 0, as `--http-listen 127.0.0.1:0` asks, and no public URL.
    let app = TestApp::spawn_with(|settings| {
        settings.delivery.as_mut().unwrap().public_url = None;
    })
    .await;
    assert!(!app.pages().ends_with(":0"), "{}", app.pages());
    app.create_user("Port", "Bound", "port@acme.com").await;

    let link = app.email("port@acme.com", 1).await.link();
    assert!(
        link.starts_with(&format!("{}/register#token=", app.pages())),
        "{link}"
    );
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK, "{link}");
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_and_signs_every_session_out() {
    let app = TestApp::spawn().await;
    registered_user(&app, "ana@acme.com").await;
    let old_session = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();

    let request = |username: &str| {
        let mut auth = app.auth(Bearer::none());
        let username = username.to_owned();
        async move {
            auth.request_password_reset(proto::RequestPasswordResetRequest {
                organization: "acme".into(),
                username,
            })
            .await
        }
    };
    // The same answer for nobody, and nothing is sent.
    request("nobody@acme.com").await.unwrap();
    request("ana@acme.com").await.unwrap();
    let email = app.email("ana@acme.com", 2).await;
    assert!(email
        .link()
        .starts_with("https://roster.test/reset#token=rst_pwr_"));
    assert!(app.mail.emails().iter().all(|e| e.to != "nobody@acme.com"));

    let reset = |token: String, password: &str| {
        let mut auth = app.auth(Bearer::none());
        let password = password.to_owned();
        async move {
            auth.reset_password(proto::ResetPasswordRequest {
                token,
                new_password: password,
            })
            .await
        }
    };
    let weak = reset(email.link_token(), "short").await.unwrap_err();
    assert_eq!(violated_fields(&weak), ["new_password"; 3]);
    // An invitation token is not a reset token.
    let done = reset(email.link_token(), "NewPass#4321x")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.username, "ana@acme.com");

    let refused = who_am_i(&app, &old_session).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        login(&app, "ana@acme.com", GOOD_PASSWORD)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let new_session = login(&app, "ana@acme.com", "NewPass#4321x").await.unwrap();
    who_am_i(&app, &new_session).await.unwrap();
    let again = reset(email.link_token(), "Other#Pass9876")
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&again), ["token"]);
}

#[tokio::test]
async fn an_expired_link_is_told_apart_from_an_invalid_one_and_the_user_shows_expired() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Eva", "Lima", "eva@acme.com").await;
    let token = app.email("eva@acme.com", 1).await.link_token();
    app.expire_invitation(&user.id).await;
    let expired = register(&app, &token, GOOD_PASSWORD).await.unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&expired).as_deref(), Some("TOKEN_EXPIRED"));
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );

    let forged = format!("rst_inv_{}", "A".repeat(43));
    for invalid in [forged.as_str(), "not-a-token", ""] {
        let status = register(&app, invalid, GOOD_PASSWORD).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{invalid}");
        assert_eq!(violated_fields(&status), ["token"]);
    }
    let shown = app.get_user(&user.id).await;
    assert_eq!(shown.status, proto::UserStatus::Expired as i32);
}

#[tokio::test]
async fn sign_in_is_refused_for_inactive_on_vacation_and_not_onboarded_users() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "rui@acme.com").await;
    app.create_user("Not", "Onboarded", "new@acme.com").await;
    let set_status = |status: proto::UserStatus| {
        let mut users = app.users(app.as_admin());
        let user_id = user.id.clone();
        async move {
            users
                .set_user_status(proto::SetUserStatusRequest {
                    user_id,
                    status: status as i32,
                })
                .await
                .unwrap();
        }
    };
    for status in [proto::UserStatus::Inactive, proto::UserStatus::OnVacation] {
        set_status(status).await;
        let refused = login(&app, "rui@acme.com", GOOD_PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(
            error_reason(&refused).as_deref(),
            Some("ACCOUNT_NOT_ACTIVE")
        );
        // A wrong password learns nothing about the account.
        let wrong = login(&app, "rui@acme.com", "Wrong#Pass1234")
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
    }
    set_status(proto::UserStatus::Active).await;
    login(&app, "rui@acme.com", GOOD_PASSWORD).await.unwrap();

    let not_onboarded = login(&app, "new@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    let unknown_user = login(&app, "ghost@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    let unknown_org = app
        .auth(Bearer::none())
        .login(proto::LoginRequest {
            organization: "globex".into(),
            username: "rui@acme.com".into(),
            password: GOOD_PASSWORD.into(),
        })
        .await
        .unwrap_err();
    for status in [&not_onboarded, &unknown_user, &unknown_org] {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), not_onboarded.message());
    }
    let empty = login(&app, "", "").await.unwrap_err();
    assert_eq!(violated_fields(&empty), ["username", "password"]);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_alike_for_existing_and_unknown_usernames() {
    // A backoff that outlasts the test: the right password below meets it for sure.
    let app = TestApp::spawn_with(|settings| {
        settings.throttle.base = std::time::Duration::from_secs(60);
    })
    .await;
    registered_user(&app, "lia@acme.com").await;
    let failures = |username: &'static str| {
        let app = &app;
        async move {
            let mut codes = Vec::new();
            // Distinct guesses: the same wrong password again counts once.
            for guess in 0..7 {
                let password = format!("Wrong#Pass{guess}");
                codes.push(login(app, username, &password).await.unwrap_err());
            }
            codes
        }
    };
    let existing = failures("lia@acme.com").await;
    let unknown = failures("nobody@acme.com").await;
    for attempts in [&existing, &unknown] {
        let codes: Vec<Code> = attempts.iter().map(Status::code).collect();
        assert_eq!(codes[..5], [Code::Unauthenticated; 5]);
        assert_eq!(codes[6], Code::ResourceExhausted);
        let retry = tonic_types::StatusExt::get_details_retry_info(&attempts[6]).unwrap();
        assert!(retry.retry_delay.is_some());
        assert_eq!(error_reason(&attempts[6]).as_deref(), Some("THROTTLED"));
    }
    assert_eq!(existing[6].message(), unknown[6].message());
    // Even the right password waits out the backoff from an address the
    // owner never signed in from: no hard lock, no bypass.
    let held = login(&app, "lia@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(held.code(), Code::ResourceExhausted);
    sqlx::query("update sign_in_throttle set blocked_until = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    login(&app, "lia@acme.com", GOOD_PASSWORD).await.unwrap();
}

/// An AuthService client whose connection comes from `source` (any
/// 127.0.0.0/8 address is local), so that the server sees another peer.
pub async fn auth_from(app: &TestApp, source: &str) -> AuthServiceClient<Authed> {
    let channel = tonic::transport::Channel::from_shared(app.address.clone())
        .unwrap()
        .local_address(Some(source.parse().unwrap()))
        .connect()
        .await
        .unwrap();
    AuthServiceClient::with_interceptor(channel, Bearer::none())
}

#[tokio::test]
async fn one_address_guessing_many_usernames_is_throttled_across_organizations_and_others_are_not()
{
    let app = TestApp::spawn().await;
    app.create_organization("globex").await;
    registered_user(&app, "lia@acme.com").await;
    let mut guesser = auth_from(&app, "127.0.0.1").await;
    // 31 usernames, each failing once: no username reaches its own limit of 5,
    // the address passes its 30 free failures.
    for attempt in 0..31 {
        let organization = if attempt % 2 == 0 { "acme" } else { "globex" };
        let username = format!("guess{attempt}@acme.com");
        let refused = sign_in(&mut guesser, organization, &username, "Wrong#Pass1234")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    let held = sign_in(&mut guesser, "acme", "lia@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(held.code(), Code::ResourceExhausted);
    assert_eq!(error_reason(&held).as_deref(), Some("THROTTLED"));
    assert!(tonic_types::StatusExt::get_details_retry_info(&held).is_some());
    // The same person from another address is not held back by the guesser.
    let mut colleague = auth_from(&app, "127.0.0.2").await;
    sign_in(&mut colleague, "acme", "lia@acme.com", GOOD_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn password_checks_beyond_the_hash_queue_are_refused_not_queued() {
    // One hashing thread and no waiting room: concurrent sign-ins overflow
    // it. The throttle lets them all try: it is the hash queue under test.
    let app = TestApp::spawn_with(|settings| {
        settings.passwords = roster::startup::PasswordSettings {
            workers: 1,
            queue: 0,
        };
        settings.throttle.user_free = 100;
        settings.throttle.peer_free = 100;
    })
    .await;
    registered_user(&app, "lia@acme.com").await;
    // Sixteen users with lia's password, each from an address of its own:
    // concurrent attempts on one budget row are held back by the throttle
    // (a busy row counts as held), and here none share one.
    let mut clients = Vec::new();
    for user in 0..16 {
        let username = format!("user{user}@acme.com");
        app.insert_user(&username, "ACTIVE", true).await;
        clients.push((username, auth_from(&app, &format!("127.0.1.{user}")).await));
    }
    sqlx::query(
        "update users set password_hash = \
           (select password_hash from users where username = 'lia@acme.com') \
         where username like 'user%'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let attempts = clients
        .iter_mut()
        .map(|(username, auth)| sign_in(auth, "acme", username, GOOD_PASSWORD));
    let results = futures::future::join_all(attempts).await;
    let refused: Vec<&Status> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        !refused.is_empty() && refused.len() < results.len(),
        "some sign-ins hashed, some refused: {} of {} refused",
        refused.len(),
        results.len()
    );
    for status in refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(error_reason(status).as_deref(), Some("RESOURCE_EXHAUSTED"));
    }
    // A refusal is no failed attempt, and the pool is free again.
    login(&app, "lia@acme.com", GOOD_PASSWORD).await.unwrap();
    let failures = app
        .count("select coalesce(sum(failures + in_flight), 0) from sign_in_throttle")
        .await;
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn a_group_removal_deactivation_or_deletion_reaches_a_signed_in_session_within_the_access_ttl(
) {
    let ttl = std::time::Duration::from_secs(1);
    let app = TestApp::spawn_with(|settings| settings.auth_cache_ttl = ttl).await;
    let o = groups::org(&app).await;
    let viewers = groups::group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    let mut sessions = Vec::new();
    for email in ["grp@acme.com", "off@acme.com", "del@acme.com"] {
        let user = registered_user(&app, email).await;
        groups::give(&app, app.as_admin(), &user.id, &[&viewers])
            .await
            .unwrap();
        let token = login(&app, email, GOOD_PASSWORD).await.unwrap();
        sessions.push((user.id, token));
    }
    // Each session reads once, so its access is cached.
    let read = |token: String| {
        let mut users = app.users(Bearer::token(&token));
        async move {
            users
                .list_users(proto::ListUsersRequest::default())
                .await
                .map(|_| ())
        }
    };
    for (_, token) in &sessions {
        read(token.clone()).await.unwrap();
    }
    let [(in_group, group_token), (deactivated, off_token), (deleted, del_token)] =
        <[_; 3]>::try_from(sessions).unwrap();
    groups::take(&app, app.as_admin(), &in_group, &[&viewers])
        .await
        .unwrap();
    let mut admin = app.users(app.as_admin());
    admin
        .set_user_status(proto::SetUserStatusRequest {
            user_id: deactivated,
            status: proto::UserStatus::Inactive as i32,
        })
        .await
        .unwrap();
    admin
        .delete_user(proto::DeleteUserRequest { user_id: deleted })
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    for (token, refused_with) in [
        (group_token, Code::PermissionDenied),
        (off_token, Code::Unauthenticated),
        (del_token, Code::Unauthenticated),
    ] {
        let left = (ttl + std::time::Duration::from_secs(2)).saturating_sub(changed.elapsed());
        eventually(
            &format!("the change refuses the session with {refused_with:?} within the access TTL"),
            left,
            || async {
                matches!(read(token.clone()).await, Err(status) if status.code() == refused_with)
                    .then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_signs_other_sessions_out() {
    let app = TestApp::spawn().await;
    registered_user(&app, "bia@acme.com").await;
    let this = login(&app, "bia@acme.com", GOOD_PASSWORD).await.unwrap();
    let other = login(&app, "bia@acme.com", GOOD_PASSWORD).await.unwrap();
    let change = |current: &str, new: &str| {
        let mut auth = app.auth(Bearer::token(&this));
        let (current, new) = (current.to_owned(), new.to_owned());
        async move {
            auth.change_password(proto::ChangePasswordRequest {
                current_password: current,
                new_password: new,
            })
            .await
        }
    };
    let wrong = change("Wrong#Pass1234", "Fresh#Pass5678")
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&wrong), ["current_password"]);
    let weak = change(GOOD_PASSWORD, "weak").await.unwrap_err();
    assert_eq!(violated_fields(&weak), ["new_password"; 3]);
    change(GOOD_PASSWORD, "Fresh#Pass5678").await.unwrap();
    who_am_i(&app, &this).await.unwrap();
    assert_eq!(
        who_am_i(&app, &other).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    login(&app, "bia@acme.com", "Fresh#Pass5678").await.unwrap();

    // API keys have no password and no session.
    let status = app
        .auth(app.as_admin())
        .change_password(proto::ChangePasswordRequest {
            current_password: "x".into(),
            new_password: "y".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_new_invitation_invalidates_the_previous_link() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ivo", "Reis", "ivo@acme.com").await;
    let first = app.email("ivo@acme.com", 1).await;
    let queued = app
        .users(app.as_admin())
        .send_activation_email(proto::SendActivationEmailRequest {
            user_ids: vec![user.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .queued_count;
    assert_eq!(queued, 1);
    let second = app.email("ivo@acme.com", 2).await;
    assert_ne!(first.link_token(), second.link_token());
    assert_ne!(first.message_id, second.message_id);
    only_the_newer_link_registers(&app, &first, &second).await;
}

#[tokio::test]
async fn html_looking_names_are_escaped_in_the_email() {
    let app = TestApp::spawn().await;
    app.create_user("<b>Bob</b>", "O'Hara & Sons", "bob@acme.com")
        .await;
    let email = app.email("bob@acme.com", 1).await;
    assert!(email.html.contains("&lt;b&gt;Bob&lt;"), "{}", email.html);
    assert!(!email.html.contains("<b>Bob"));
    assert!(email.text.contains("<b>Bob</b>"));
}

#[tokio::test]
async fn the_pages_check_a_link_without_using_it_and_list_every_unmet_rule() {
    let app = TestApp::spawn().await;
    app.create_user("Léa", "Alves", "lea@acme.com").await;
    let token = app.email("lea@acme.com", 1).await.link_token();
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let request = http.post(format!("{}{path}", app.pages())).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let page = http
        .get(format!("{}/register", app.pages()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("/assets/pages.js"));

    // Opening the link twice (a mail scanner, then the person) uses nothing up.
    for _ in 0..2 {
        let (status, link) = post(
            "/api/link",
            serde_json::json!({"token": token, "purpose": "register"}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(link["state"], "valid");
        assert_eq!(link["username"], "lea@acme.com");
        assert_eq!(link["locale"], "en");
    }
    let (_, wrong_page) = post(
        "/api/link",
        serde_json::json!({"token": token, "purpose": "reset"}),
    )
    .await;
    assert_eq!(wrong_page["state"], "invalid");

    let (status, weak) = post(
        "/api/register",
        serde_json::json!({"token": token, "password": "abc"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(weak["error"], "PASSWORD_POLICY");
    assert_eq!(
        weak["unmet"],
        serde_json::json!([
            "PASSWORD_UPPERCASE",
            "PASSWORD_LOWERCASE",
            "PASSWORD_SPECIAL",
            "PASSWORD_DIGITS"
        ])
    );
    let (status, done) = post(
        "/api/register",
        serde_json::json!({"token": token, "password": GOOD_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["organization"], "acme");
    let (_, used) = post(
        "/api/link",
        serde_json::json!({"token": token, "purpose": "register"}),
    )
    .await;
    assert_eq!(used["state"], "invalid");
    login(&app, "lea@acme.com", GOOD_PASSWORD).await.unwrap();

    // An expired link says so.
    app.create_user("Tom", "Dias", "tom@acme.com").await;
    let expired = app.email("tom@acme.com", 1).await.link_token();
    sqlx::query("update onboarding_tokens set expire_time = now() - interval '1 second' where used_time is null")
        .execute(&app.pool)
        .await
        .unwrap();
    let (_, link) = post(
        "/api/link",
        serde_json::json!({"token": expired, "purpose": "register"}),
    )
    .await;
    assert_eq!(link["state"], "expired");
    let (status, refused) = post(
        "/api/register",
        serde_json::json!({"token": expired, "password": GOOD_PASSWORD}),
    )
    .await;
    assert_eq!(status, 410);
    assert_eq!(refused["error"], "TOKEN_EXPIRED");
}

#[tokio::test]
async fn activation_emails_go_to_the_users_named_expired_not_onboarded_or_created_by_an_import() {
    let app = TestApp::spawn().await;
    let onboarded = registered_user(&app, "done@acme.com").await;
    let expired = app.create_user("Old", "Link", "old@acme.com").await;
    app.create_user("New", "Link", "new@acme.com").await;
    app.email("new@acme.com", 1).await;
    app.email("old@acme.com", 1).await;
    app.expire_invitation(&expired.id).await;
    let send = |request: proto::SendActivationEmailRequest| {
        let mut users = app.users(app.as_admin());
        async move {
            users
                .send_activation_email(request)
                .await
                .map(|r| r.into_inner().queued_count)
        }
    };
    let by_filter = |filter: proto::ActivationFilter| proto::SendActivationEmailRequest {
        filter: filter as i32,
        ..Default::default()
    };
    assert_eq!(
        send(by_filter(proto::ActivationFilter::Expired))
            .await
            .unwrap(),
        1
    );
    app.email("old@acme.com", 2).await;
    assert_eq!(
        send(by_filter(proto::ActivationFilter::NotOnboarded))
            .await
            .unwrap(),
        2
    );
    app.email("new@acme.com", 2).await;
    // A registered user needs no invitation.
    let named = proto::SendActivationEmailRequest {
        user_ids: vec![onboarded.id.clone()],
        ..Default::default()
    };
    assert_eq!(send(named).await.unwrap(), 0);

    let both = proto::SendActivationEmailRequest {
        user_ids: vec![onboarded.id],
        filter: proto::ActivationFilter::Expired as i32,
        ..Default::default()
    };
    assert_eq!(
        violated_fields(&send(both).await.unwrap_err()),
        ["user_ids"]
    );
    let none = send(proto::SendActivationEmailRequest::default())
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);
    let unknown = proto::SendActivationEmailRequest {
        user_ids: vec![uuid::Uuid::now_v7().to_string()],
        ..Default::default()
    };
    assert_eq!(send(unknown).await.unwrap_err().code(), Code::NotFound);

    // The users an import created.
    let csv = "first_name,last_name,email\nImp,One,imp1@acme.com\nImp,Two,imp2@acme.com\n";
    let options = proto::ImportOptions {
        send_invitations: Some(false),
        ..crate::import::options()
    };
    let run =
        crate::import::run_import(&app, app.as_admin(), false, options, csv.as_bytes(), 64).await;
    let job_id = run.summary().job_id.clone();
    let by_job = proto::SendActivationEmailRequest {
        import_job_id: job_id,
        ..Default::default()
    };
    assert_eq!(send(by_job).await.unwrap(), 2);
    app.email("imp1@acme.com", 1).await;
    app.email("imp2@acme.com", 1).await;
}

#[tokio::test]
async fn a_unit_administrator_re_invites_only_the_users_they_cover() {
    let (app, _, south) = groups::spawn_with_south_admin().await;
    let covered = app.create_user("South", "Cashier", "south@acme.com").await;
    let uncovered = app.create_user("West", "Cashier", "west@acme.com").await;
    for (user, group) in [
        (&covered, &south.cashier_south),
        (&uncovered, &south.cashier_west),
    ] {
        groups::give(&app, app.as_admin(), &user.id, &[group])
            .await
            .unwrap();
    }
    let invitations = || async {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select u.email, count(o.id) from users u left join outbox o on o.user_id = u.id and o.kind = 'INVITATION' \
             where u.email in ('south@acme.com', 'west@acme.com') group by u.email order by u.email",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        counts
    };
    let before = invitations().await;
    let send = |request: proto::SendActivationEmailRequest| {
        let mut users = app.users(south.bearer.clone());
        async move {
            users
                .send_activation_email(request)
                .await
                .map(|r| r.into_inner().queued_count)
        }
    };
    let named = |ids: &[&str]| proto::SendActivationEmailRequest {
        user_ids: ids.iter().map(|id| id.to_string()).collect(),
        ..Default::default()
    };

    let refused = send(named(&[&covered.id, &uncovered.id]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains(&uncovered.id),
        "{}",
        refused.message()
    );
    assert_eq!(invitations().await, before, "nothing queued for either");

    assert_eq!(send(named(&[&covered.id])).await.unwrap(), 1);
    // A filter leaves out whom the caller does not cover instead of failing.
    let not_onboarded = proto::SendActivationEmailRequest {
        filter: proto::ActivationFilter::NotOnboarded as i32,
        ..Default::default()
    };
    assert_eq!(send(not_onboarded).await.unwrap(), 1);
    let after = invitations().await;
    assert_eq!(after[0], ("south@acme.com".to_owned(), before[0].1 + 2));
    assert_eq!(after[1], before[1]);
}

#[tokio::test]
async fn the_requester_of_an_import_gets_a_report_with_the_counts_and_the_failed_rows() {
    let app = TestApp::spawn().await;
    let org = groups::org(&app).await;
    let (_, requester) = groups::organization_admin(&app, &org, "boss@acme.com").await;
    let csv = "first_name,last_name,email\nAna,Good,ana.good@acme.com\nBad,Row,not-an-email\n";
    let options = proto::ImportOptions {
        notify_requester: Some(true),
        send_invitations: Some(false),
        ..crate::import::options()
    };
    let run = crate::import::run_import(&app, requester, false, options, csv.as_bytes(), 64).await;
    let job_id = run.summary().job_id.clone();
    let report = eventually(
        "the import report is emailed",
        std::time::Duration::from_secs(15),
        || async {
            app.mail
                .emails()
                .into_iter()
                .find(|email| email.to == "boss@acme.com" && email.text.contains(&job_id))
        },
    )
    .await;
    assert!(
        report.subject.contains("1 created, 1 failed"),
        "{}",
        report.subject
    );
    assert!(
        report.text.contains("line 3 not-an-email"),
        "{}",
        report.text
    );
    assert!(report.html.contains("not-an-email"));

    // An import by an API key has nobody to report to.
    let options = proto::ImportOptions {
        notify_requester: Some(true),
        ..crate::import::options()
    };
    crate::import::import_no_rows(&app, options).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let reports = app
        .count("select count(*) from outbox where kind = 'IMPORT_REPORT'")
        .await;
    assert_eq!(reports, 1);
}

/// "Forgot password" on a sign-in form: RequestPasswordReset as typed.
async fn forgot_password(app: &TestApp, username: &str) {
    app.auth(Bearer::none())
        .request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: username.into(),
        })
        .await
        .expect("the same OK for every input");
}

/// Messages of `kind` queued for a user, sent or not.
async fn queued(app: &TestApp, user_id: &str, kind: &str) -> i64 {
    sqlx::query_scalar("select count(*) from outbox where user_id = $1::uuid and kind = $2")
        .bind(user_id)
        .bind(kind)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn create_deactivated(app: &TestApp, email: &str) -> proto::User {
    app.users(app.as_admin())
        .create_user(proto::CreateUserRequest {
            deactivated: true,
            ..crate::users::new_user("Ina", "Active", email)
        })
        .await
        .answered()
}

#[tokio::test]
async fn forgot_password_sends_a_new_invitation_to_an_active_user_who_never_registered_one() {
    let app = TestApp::spawn().await;
    let lia = app.create_user("Lia", "Lost", "lia@acme.com").await;
    let first = app.email("lia@acme.com", 1).await;
    app.expire_invitation(&lia.id).await;
    assert_eq!(
        app.get_user(&lia.id).await.status,
        proto::UserStatus::Expired as i32
    );
    let ina = create_deactivated(&app, "ina@acme.com").await;
    app.email("ina@acme.com", 1).await;

    // Requests are resolved in the order they came: by the time Lia's
    // invitation arrives, the others were answered too (with nothing).
    forgot_password(&app, "ina@acme.com").await;
    forgot_password(&app, "nobody@acme.com").await;
    forgot_password(&app, " LIA@acme.com ").await;
    let second = app.email("lia@acme.com", 2).await;
    assert!(
        second
            .link()
            .starts_with("https://roster.test/register#token=rst_inv_"),
        "an invitation, not a reset link: {}",
        second.text
    );
    let shown = app.get_user(&lia.id).await;
    assert_eq!(shown.status, proto::UserStatus::Pending as i32);
    assert!(
        shown.invitation_expire_time.unwrap().seconds > chrono::Utc::now().timestamp(),
        "the new invitation's expiry"
    );
    assert_eq!(
        queued(&app, &ina.id, "INVITATION").await,
        1,
        "a deactivated user is not invited by asking"
    );
    assert!(app.mail.emails().iter().all(|e| e.to != "nobody@acme.com"));

    only_the_newer_link_registers(&app, &first, &second).await;
    login(&app, "lia@acme.com", GOOD_PASSWORD).await.unwrap();
    // Onboarded now: asking again brings a reset link.
    forgot_password(&app, "lia@acme.com").await;
    let reset = app.email("lia@acme.com", 3).await;
    assert!(reset
        .link()
        .starts_with("https://roster.test/reset#token=rst_pwr_"));
}

#[tokio::test]
async fn an_email_change_of_a_user_still_to_register_sends_a_new_invitation_to_the_new_address() {
    let app = TestApp::spawn().await;
    let change_email = |user_id: &str, email: &str| {
        let mut users = app.users(app.as_admin());
        let request = proto::UpdateUserRequest {
            user: Some(proto::User {
                id: user_id.into(),
                email: email.into(),
                ..Default::default()
            }),
            update_mask: mask(&["email"]),
        };
        async move { users.update_user(request).await.answered() }
    };
    let pia = app.create_user("Pia", "Typo", "pia@acme.con").await;
    let old = app.email("pia@acme.con", 1).await;
    assert!(app.get_user(&pia.id).await.invitation_expire_time.is_some());

    let moved = change_email(&pia.id, "pia@acme.com").await;
    assert_eq!(moved.status, proto::UserStatus::Pending as i32);
    assert_eq!(
        moved.invitation_expire_time, None,
        "the old link's expiry went with it; the new one's is set when it is sent"
    );
    let new = app.email("pia@acme.com", 1).await;
    let live: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select expire_time from onboarding_tokens where user_id = $1::uuid and revoke_time is null",
    )
    .bind(&pia.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let shown = app
        .get_user(&pia.id)
        .await
        .invitation_expire_time
        .expect("the new invitation's expiry");
    assert_eq!(
        chrono::DateTime::from_timestamp(shown.seconds, shown.nanos as u32),
        Some(live)
    );
    only_the_newer_link_registers(&app, &old, &new).await;

    // Deactivated users are invited when created, and so at a new address.
    let dee = create_deactivated(&app, "dee@acme.con").await;
    app.email("dee@acme.con", 1).await;
    change_email(&dee.id, "dee@acme.com").await;
    app.email("dee@acme.com", 1).await;

    // A user with a password needs no invitation.
    let ola = registered_user(&app, "ola@acme.com").await;
    let before = app.get_user(&ola.id).await.invitation_expire_time;
    let moved = change_email(&ola.id, "ola@acme.org").await;
    assert_eq!(queued(&app, &ola.id, "INVITATION").await, 1);
    assert_eq!(moved.invitation_expire_time, before);
}
