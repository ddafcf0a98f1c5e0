//! Sessions (issue 19 point 1): every Login is a session its user and the
//! administrators who may act on them list and end; an organization may
//! cap them; an ended session is refused at once on every server.

use std::time::Duration;

use roster::proto::{self, UnitScope};
use tonic::{Code, Status};

use crate::{
    groups,
    helpers::{eventually, violated_fields, Bearer, TestApp},
    onboarding::{login, registered_user, GOOD_PASSWORD},
};

pub async fn list_sessions(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
) -> Result<Vec<proto::Session>, Status> {
    app.users(bearer)
        .list_user_sessions(proto::ListUserSessionsRequest {
            user_id: user_id.into(),
        })
        .await
        .map(|r| r.into_inner().sessions)
}

pub async fn revoke_sessions(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    session_id: &str,
) -> Result<i64, Status> {
    app.users(bearer)
        .revoke_user_sessions(proto::RevokeUserSessionsRequest {
            user_id: user_id.into(),
            session_id: session_id.into(),
        })
        .await
        .map(|r| r.into_inner().revoked_count)
}

async fn who_am_i(app: &TestApp, token: &str) -> Result<(), Status> {
    app.who_am_i(Bearer::token(token)).await.map(drop)
}

#[tokio::test]
async fn every_login_is_a_session_its_user_lists_with_address_and_client() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;
    let first = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    let second = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();

    let sessions = list_sessions(&app, Bearer::token(&second), "")
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let (newest, oldest) = (&sessions[0], &sessions[1]);
    assert!(
        newest.current && !oldest.current,
        "the calling session is marked"
    );
    let seconds = |session: &proto::Session| session.create_time.as_ref().unwrap().seconds;
    assert!(seconds(newest) >= seconds(oldest));
    for session in &sessions {
        assert_eq!(session.peer_address, "127.0.0.1");
        assert!(session.user_agent.contains("tonic"), "{session:?}");
        assert!(session.expire_time.is_some());
    }
    // Named by id, the same list.
    let named = list_sessions(&app, Bearer::token(&first), &user.id)
        .await
        .unwrap();
    assert_eq!(named.len(), 2);
    assert!(named[1].current);

    // Sessions are stored hashed: no column of any row holds a token.
    let rows: Vec<String> = sqlx::query_scalar("select row_to_json(t)::text from access_tokens t")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for token in [&first, &second] {
        let secret = token.trim_start_matches("rst_at_");
        assert!(rows.iter().all(|row| !row.contains(secret)), "{rows:?}");
    }
}

#[tokio::test]
async fn a_session_s_last_use_is_written_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    registered_user(&app, "ana@acme.com").await;
    let token = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    let last_used = || async {
        list_sessions(&app, Bearer::token(&token), "")
            .await
            .unwrap()[0]
            .last_used_time
    };
    let first_use = eventually("the use is recorded", Duration::from_secs(5), || async {
        last_used().await
    })
    .await;
    who_am_i(&app, &token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(last_used().await, Some(first_use), "within the minute");
}

#[tokio::test]
async fn a_revoked_session_is_refused_at_once_on_every_server() {
    let app = TestApp::spawn().await;
    let other = app.replica(|_| {}).await;
    registered_user(&app, "ana@acme.com").await;
    let kept = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    let ended = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    // The other server has both in memory.
    for token in [&kept, &ended] {
        other
            .auth(Bearer::token(token))
            .who_am_i(proto::WhoAmIRequest {})
            .await
            .unwrap();
    }
    let sessions = list_sessions(&app, Bearer::token(&kept), "").await.unwrap();
    let ended_id = &sessions.iter().find(|s| !s.current).unwrap().id;

    let revoked = revoke_sessions(&app, Bearer::token(&kept), "", ended_id).await;
    assert_eq!(revoked.unwrap(), 1);

    assert_eq!(
        who_am_i(&app, &ended).await.unwrap_err().code(),
        Code::Unauthenticated,
        "this server refuses it on the next call"
    );
    eventually(
        "the other server refuses the revoked session",
        Duration::from_secs(1),
        || async {
            let answer = other
                .auth(Bearer::token(&ended))
                .who_am_i(proto::WhoAmIRequest {})
                .await;
            matches!(answer, Err(status) if status.code() == Code::Unauthenticated).then_some(())
        },
    )
    .await;
    who_am_i(&app, &kept).await.unwrap();

    // Revoking it again ends nothing; an unknown session is named.
    assert_eq!(
        revoke_sessions(&app, Bearer::token(&kept), "", ended_id)
            .await
            .unwrap(),
        0
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let refused = revoke_sessions(&app, Bearer::token(&kept), "", &unknown)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    // Empty session_id: every session, the calling one too.
    assert_eq!(
        revoke_sessions(&app, Bearer::token(&kept), "", "")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        who_am_i(&app, &kept).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn an_administrator_lists_and_ends_sessions_only_of_users_they_may_act_on() {
    let (app, o, south) = groups::spawn_with_south_admin().await;
    let (in_south, south_token) =
        groups::holder(&app, "cashier.south@acme.test", &[&south.cashier_south]).await;
    let (in_west, _) = groups::holder(&app, "cashier.west@acme.test", &[&south.cashier_west]).await;

    let listed = list_sessions(&app, south.bearer.clone(), &in_west.id).await;
    assert_eq!(listed.unwrap_err().code(), Code::PermissionDenied);
    let revoked = revoke_sessions(&app, south.bearer.clone(), &in_west.id, "").await;
    assert_eq!(revoked.unwrap_err().code(), Code::PermissionDenied);
    // A viewer (or anyone without ADMIN) sees only their own.
    let viewers = groups::group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    let (_, viewer) = groups::holder(&app, "viewer@acme.test", &[&viewers]).await;
    let refused = list_sessions(&app, viewer, &in_south.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let listed = list_sessions(&app, south.bearer.clone(), &in_south.id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].current);
    let revoked = revoke_sessions(&app, south.bearer.clone(), &in_south.id, "")
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    let refused = app
        .users(south_token)
        .list_users(proto::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // An API key names the user; an organization administrator reaches anyone.
    let missing = list_sessions(&app, app.as_admin(), "").await.unwrap_err();
    assert_eq!(violated_fields(&missing), ["user_id"]);
    list_sessions(&app, app.as_admin(), &in_west.id)
        .await
        .unwrap();

    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            action: "user.sessions.revoke".into(),
            target_id: in_south.id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_id, south.user.id);
}

#[tokio::test]
async fn a_sign_in_beyond_the_organization_s_session_limit_ends_the_oldest_session() {
    let app = TestApp::spawn().await;
    let set_limit = |limit: i32| {
        let settings = proto::OrganizationSettings {
            max_sessions_per_user: limit,
            ..Default::default()
        };
        let app = &app;
        async move {
            app.update_settings(settings, &["max_sessions_per_user"])
                .await
                .map(|organization| organization.settings.unwrap())
        }
    };
    let refused = set_limit(1001).await.unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["settings.max_sessions_per_user"]
    );
    assert_eq!(set_limit(2).await.unwrap().max_sessions_per_user, 2);

    registered_user(&app, "ana@acme.com").await;
    let oldest = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    let middle = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    who_am_i(&app, &oldest).await.unwrap();
    let newest = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();

    assert_eq!(
        who_am_i(&app, &oldest).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    who_am_i(&app, &middle).await.unwrap();
    let sessions = list_sessions(&app, Bearer::token(&newest), "")
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);

    // 0 lifts the limit.
    assert_eq!(set_limit(0).await.unwrap().max_sessions_per_user, 0);
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    who_am_i(&app, &middle).await.unwrap();
}

async fn set_user_limit(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    max_sessions: Option<i32>,
) -> Result<(), Status> {
    app.users(bearer)
        .set_user_session_limit(proto::SetUserSessionLimitRequest {
            user_id: user_id.into(),
            max_sessions,
        })
        .await
        .map(drop)
}

#[tokio::test]
async fn a_user_s_own_session_limit_overrides_the_organization_s() {
    let app = TestApp::spawn().await;
    let user = registered_user(&app, "ana@acme.com").await;
    let refused = set_user_limit(&app, app.as_admin(), &user.id, Some(-1))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["max_sessions"]);
    set_user_limit(&app, app.as_admin(), &user.id, Some(1))
        .await
        .unwrap();

    let first = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    let second = login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    assert_eq!(
        who_am_i(&app, &first).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let listed = app
        .users(Bearer::token(&second))
        .list_user_sessions(proto::ListUserSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.sessions.len(), listed.max_sessions), (1, 1));

    // Unset: the organization's (none by default) applies again.
    set_user_limit(&app, app.as_admin(), &user.id, None)
        .await
        .unwrap();
    login(&app, "ana@acme.com", GOOD_PASSWORD).await.unwrap();
    who_am_i(&app, &second).await.unwrap();

    let o = groups::org(&app).await;
    let south = groups::south_admin(&app, &o).await;
    let (in_west, _) = groups::holder(&app, "west@acme.test", &[&south.cashier_west]).await;
    let refused = set_user_limit(&app, south.bearer.clone(), &in_west.id, Some(2))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}
