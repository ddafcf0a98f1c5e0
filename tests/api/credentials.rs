//! An administrator's credential actions (issue 19 points 2-4):
//! SendPasswordReset, password expiry, ResetUserCredentials.

use roster::proto;
use tonic::{Code, Status};

use crate::{
    groups,
    helpers::{error_reason, mask, Bearer, TestApp},
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

/// How many audit events of `action` name the user.
async fn times_audited(app: &TestApp, action: &str, user_id: &str) -> usize {
    app.audit_events(proto::ListAuditEventsRequest {
        action: action.into(),
        target_id: user_id.into(),
        ..Default::default()
    })
    .await
    .len()
}

/// Sets NEW_PASSWORD by the link of ana@acme.com's email #`count` (a
/// password reset) and signs in with it.
async fn reset_by_email_and_sign_in(app: &TestApp, count: usize) {
    let reset = app.email("ana@acme.com", count).await;
    reset_password(app, &reset.link_token(), NEW_PASSWORD)
        .await
        .unwrap();
    login(app, "ana@acme.com", NEW_PASSWORD).await.unwrap();
}

/// "Forgot password" for ana@acme.com.
async fn forgot_password(app: &TestApp) {
    app.auth(Bearer::none())
        .request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: "ana@acme.com".into(),
        })
        .await
        .unwrap();
}

/// The south administrator and a signed-in holder of Cashier West (out of
/// their reach) and of Cashier South.
async fn south_admin_and_a_holder_in_each_zone(
    app: &TestApp,
) -> (groups::SouthAdmin, proto::User, proto::User) {
    let o = groups::org(app).await;
    let south = groups::south_admin(app, &o).await;
    let (in_west, _) = groups::holder(app, "west@acme.test", &[&south.cashier_west]).await;
    let (in_south, _) = groups::holder(app, "south@acme.test", &[&south.cashier_south]).await;
    (south, in_west, in_south)
}

#[tokio::test]
async fn an_administrator_sends_a_reset_link_that_sets_a_new_password() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;

    send_password_reset(&app, app.as_admin(), &user.id)
        .await
        .unwrap();

    reset_by_email_and_sign_in(&app, 2).await;
    assert_eq!(
        times_audited(&app, "user.password_reset.send", &user.id).await,
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
    forgot_password(&app).await;
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
        times_audited(&app, "user.password_reset.send", &user.id).await,
        sent
    );
}

#[tokio::test]
async fn a_unit_administrator_sends_reset_links_only_to_users_they_may_act_on() {
    let (app, _, south) = groups::spawn_with_south_admin().await;
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
    forgot_password(&app).await;
    let reset_link = app.email("ana@acme.com", 2).await;

    let reset = reset_credentials(&app, app.as_admin(), &user.id)
        .await
        .unwrap();
    assert!(!reset.onboarded);
    assert_eq!(reset.status(), proto::UserStatus::Pending);

    let ended = app.who_am_i(Bearer::token(&session)).await.unwrap_err();
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
        times_audited(&app, "user.credentials.reset", &user.id).await,
        1
    );
}

#[tokio::test]
async fn credentials_are_reset_only_for_users_the_caller_may_act_on_and_never_one_s_own() {
    let app = TestApp::spawn().await;
    let (south, in_west, in_south) = south_admin_and_a_holder_in_each_zone(&app).await;

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

async fn set_password_expiry(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    expire_time: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<proto::User, Status> {
    app.users(bearer)
        .set_password_expiry(proto::SetPasswordExpiryRequest {
            user_id: user_id.into(),
            expire_time: expire_time.map(|time| prost_types::Timestamp {
                seconds: time.timestamp(),
                nanos: 0,
            }),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

async fn users_with_expired_passwords(app: &TestApp, expired: bool) -> Vec<String> {
    app.list_users(proto::ListUsersRequest {
        password_expired: Some(expired),
        ..Default::default()
    })
    .await
    .into_iter()
    .map(|user| user.email)
    .collect()
}

#[tokio::test]
async fn an_expired_password_does_not_sign_in_and_brings_a_reset_link() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;
    registered_user(&app, "bia@acme.com").await;
    let later = chrono::Utc::now() + chrono::Duration::days(30);
    let set = set_password_expiry(&app, app.as_admin(), &user.id, Some(later))
        .await
        .unwrap();
    assert!(!set.password_expired);
    assert_eq!(set.password_expire_time.unwrap().seconds, later.timestamp());
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();

    let now = chrono::Utc::now() - chrono::Duration::seconds(1);
    let set = set_password_expiry(&app, app.as_admin(), &user.id, Some(now))
        .await
        .unwrap();
    assert!(set.password_expired);
    let fetched = app.get_user(&user.id).await;
    assert!(fetched.password_expired);
    assert_eq!(
        users_with_expired_passwords(&app, true).await,
        ["ana@acme.com"]
    );
    assert_eq!(
        users_with_expired_passwords(&app, false).await,
        ["bia@acme.com"]
    );

    // A wrong password is still just wrong; the right one is told it expired.
    let wrong = login(&app, "ana@acme.com", NEW_PASSWORD).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let expired = login(&app, "ana@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&expired).as_deref(), Some("PASSWORD_EXPIRED"));

    reset_by_email_and_sign_in(&app, 2).await;
    assert!(users_with_expired_passwords(&app, true).await.is_empty());
    assert_eq!(
        times_audited(&app, "user.password_expiry.set", &user.id).await,
        2
    );
}

#[tokio::test]
async fn passwords_older_than_the_organization_s_max_age_expire() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;
    let organizations = app.organizations(app.as_admin());
    let set_max_age = |seconds: i64, nanos: i32| {
        let request = proto::UpdateOrganizationSettingsRequest {
            settings: Some(proto::OrganizationSettings {
                password_max_age: Some(prost_types::Duration { seconds, nanos }),
                ..Default::default()
            }),
            update_mask: mask(&["settings.password_max_age"]),
        };
        let mut organizations = organizations.clone();
        async move { organizations.update_organization_settings(request).await }
    };
    let refused = set_max_age(3600, 0).await.unwrap_err();
    assert_eq!(
        crate::helpers::violated_fields(&refused),
        ["settings.password_max_age"]
    );
    let refused = set_max_age(86_400, 5).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    set_max_age(86_400, 0).await.unwrap();
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();

    // The password is two days old.
    sqlx::query(
        "update users set password_set_time = now() - interval '2 days' where id = $1::uuid",
    )
    .bind(&user.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let expired = login(&app, "ana@acme.com", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(error_reason(&expired).as_deref(), Some("PASSWORD_EXPIRED"));
    assert_eq!(
        users_with_expired_passwords(&app, true).await,
        ["ana@acme.com"]
    );

    // Unset again: passwords do not expire.
    set_max_age(0, 0).await.unwrap();
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
}

#[tokio::test]
async fn a_unit_administrator_sets_password_expiry_only_for_users_they_may_act_on() {
    let app = TestApp::spawn().await;
    let (south, in_west, in_south) = south_admin_and_a_holder_in_each_zone(&app).await;
    let now = Some(chrono::Utc::now());
    let refused = set_password_expiry(&app, south.bearer.clone(), &in_west.id, now)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    set_password_expiry(&app, south.bearer.clone(), &in_south.id, now)
        .await
        .unwrap();

    let invited = app.create_user("Ivo", "Invited", "ivo@acme.com").await;
    let refused = set_password_expiry(&app, app.as_admin(), &invited.id, now)
        .await
        .unwrap_err();
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("USER_NOT_ONBOARDED")
    );
}
