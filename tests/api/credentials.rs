//! An administrator's credential actions (issue 19 points 2-4):
//! SendPasswordReset, password expiry, ResetUserCredentials.

use roster::proto;
use tonic::{Code, Status};

use crate::{
    groups,
    helpers::{error_reason, Bearer, TestApp},
    onboarding::{login, register, registered_user, GOOD_PASSWORD},
};

/// A password other than GOOD_PASSWORD that meets the policy.
const NEW_PASSWORD: &str = "OthEr#pass2027";

async fn send_password_reset(app: &TestApp, bearer: Bearer, user_id: &str) -> Result<(), Status> {
    app.users(bearer)
        .send_password_reset(proto::SendPasswordResetRequest {
            user_id: user_id.into(),
        })
        .await
        .map(drop)
}

async fn reset_password(app: &TestApp, token: &str, password: &str) -> Result<(), Status> {
    app.auth(Bearer::none())
        .reset_password(proto::ResetPasswordRequest {
            token: token.into(),
            new_password: password.into(),
        })
        .await
        .map(drop)
}

async fn audited(app: &TestApp, action: &str, user_id: &str) -> Vec<proto::AuditEvent> {
    app.organizations(app.as_admin())
        .list_audit_events(proto::ListAuditEventsRequest {
            action: action.into(),
            target_id: user_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events
}

#[tokio::test]
async fn an_administrator_sends_a_reset_link_that_sets_a_new_password() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;

    send_password_reset(&app, app.as_admin(), &user.id)
        .await
        .unwrap();

    let reset = app.email("ana@acme.com", 2).await;
    reset_password(&app, &reset.link_token(), NEW_PASSWORD)
        .await
        .unwrap();
    login(&app, "ana@acme.com", NEW_PASSWORD).await.unwrap();
    assert_eq!(
        audited(&app, "user.password_reset.send", &user.id)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_reset_link_is_refused_to_a_user_without_a_password_and_throttled_like_any_reset() {
    let app = TestApp::spawn().await;
    let invited = app.create_user("Ivo", "Invited", "ivo@acme.com").await;
    let refused = send_password_reset(&app, app.as_admin(), &invited.id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("USER_NOT_ONBOARDED")
    );
    assert!(refused.message().contains("SendActivationEmail"));

    let user = registered_user(&app, "ana@acme.com").await;
    // A "Forgot password" counts on the same budget as the administrator's sends.
    app.auth(Bearer::none())
        .request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: "ana@acme.com".into(),
        })
        .await
        .unwrap();
    let mut sent = 0;
    let refused = loop {
        match send_password_reset(&app, app.as_admin(), &user.id).await {
            Ok(()) => sent += 1,
            Err(status) => break status,
        }
        assert!(sent <= 4, "never held back");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(error_reason(&refused).as_deref(), Some("THROTTLED"));
    // Four requests pass (the free three, then one after the backoff
    // started), the first of them the Forgot password.
    assert_eq!(sent, 3, "the Forgot password counted on the same budget");
    assert_eq!(
        audited(&app, "user.password_reset.send", &user.id)
            .await
            .len(),
        sent
    );
}

#[tokio::test]
async fn a_unit_administrator_sends_reset_links_only_to_users_they_may_act_on() {
    let app = TestApp::spawn().await;
    let o = groups::org(&app).await;
    let south = groups::south_admin(&app, &o).await;
    let in_west = registered_user(&app, "west@acme.com").await;
    groups::give(&app, app.as_admin(), &in_west.id, &[&south.cashier_west])
        .await
        .unwrap();
    let in_south = registered_user(&app, "south@acme.com").await;
    groups::give(&app, app.as_admin(), &in_south.id, &[&south.cashier_south])
        .await
        .unwrap();

    let refused = send_password_reset(&app, south.bearer.clone(), &in_west.id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    send_password_reset(&app, south.bearer.clone(), &in_south.id)
        .await
        .unwrap();
    app.email("south@acme.com", 2).await;
}

async fn reset_credentials(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
) -> Result<proto::User, Status> {
    app.users(bearer)
        .reset_user_credentials(proto::ResetUserCredentialsRequest {
            user_id: user_id.into(),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

#[tokio::test]
async fn resetting_credentials_starts_the_account_over_with_a_fresh_invitation() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;
    let session = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    app.auth(Bearer::none())
        .request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: "ana@acme.com".into(),
        })
        .await
        .unwrap();
    let reset_link = app.email("ana@acme.com", 2).await;

    let reset = reset_credentials(&app, app.as_admin(), &user.id)
        .await
        .unwrap();
    assert!(!reset.onboarded);
    assert_eq!(reset.status(), proto::UserStatus::Pending);

    let ended = app
        .auth(Bearer::token(&session))
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "every session ended");
    let refused = login(&app, "ana@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "the password is gone"
    );
    let void = reset_password(&app, &reset_link.link_token(), NEW_PASSWORD).await;
    assert_eq!(
        void.unwrap_err().code(),
        Code::InvalidArgument,
        "links are void"
    );

    let invitation = app.email("ana@acme.com", 3).await;
    register(&app, &invitation.link_token(), NEW_PASSWORD)
        .await
        .unwrap();
    login(&app, "ana@acme.com", NEW_PASSWORD).await.unwrap();
    assert_eq!(
        audited(&app, "user.credentials.reset", &user.id)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn credentials_are_reset_only_for_users_the_caller_may_act_on_and_never_one_s_own() {
    let app = TestApp::spawn().await;
    let o = groups::org(&app).await;
    let south = groups::south_admin(&app, &o).await;
    let (in_west, _) = groups::holder(&app, "west@acme.test", &[&south.cashier_west]).await;
    let (in_south, _) = groups::holder(&app, "south@acme.test", &[&south.cashier_south]).await;

    let refused = reset_credentials(&app, south.bearer.clone(), &in_west.id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = reset_credentials(&app, south.bearer.clone(), &south.user.id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("yourself"));
    reset_credentials(&app, south.bearer.clone(), &in_south.id)
        .await
        .unwrap();
}
