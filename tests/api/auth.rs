use roster::{domain::caller::Scope, proto};
use tonic::Code;

use crate::helpers::{error_reason, mask, Bearer, TestApp};

#[tokio::test]
async fn who_am_i_with_an_admin_key_names_the_organization_and_the_key() {
    let app = TestApp::spawn().await;
    let me = app.who_am_i(app.as_admin()).await.unwrap().into_inner();
    assert_eq!(me.organization_name, "acme");
    assert_eq!(me.organization_id, app.organization_id.to_string());
    assert_eq!(me.scopes, [proto::Scope::Admin as i32]);
    assert!(me.organization_admin);
    let Some(proto::who_am_i_response::Principal::ApiKey(key)) = me.principal else {
        panic!("expected an API key principal");
    };
    assert_eq!(key.name, "admin");
    assert_eq!(key.created_by, "operator");
}

#[tokio::test]
async fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let unknown_key = format!("rst_key_{}", "A".repeat(43));
    let credentials = [
        Bearer::none(),
        Bearer::raw("Basic dXNlcjpwYXNz"),
        Bearer::raw("Bearer"),
        Bearer::token("not-a-roster-token"),
        Bearer::token("rst_key_tooshort"),
        Bearer::token(&unknown_key),
        Bearer::raw(&app.admin_key), // the secret without "Bearer "
    ];
    for bearer in credentials {
        let status = app.who_am_i(bearer).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(
            error_reason(&status)
                .as_deref()
                .unwrap_or("UNAUTHENTICATED"),
            "UNAUTHENTICATED"
        );
    }
}

#[tokio::test]
async fn an_expired_api_key_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let key = app
        .create_api_key(app.organization_id, "soon-gone", &[Scope::Admin])
        .await;
    sqlx::query(
        "update api_keys set expire_time = now() - interval '1 second' where name = 'soon-gone'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let status = app.who_am_i(Bearer::token(&key)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
}

#[tokio::test]
async fn a_revoked_api_key_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let key = app
        .create_api_key(app.organization_id, "leaked", &[Scope::Viewer])
        .await;
    let mut client = app.auth(Bearer::token(&key));
    let me = client
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    let Some(proto::who_am_i_response::Principal::ApiKey(leaked)) = me.principal else {
        panic!()
    };
    app.auth(app.as_admin())
        .revoke_api_key(proto::RevokeApiKeyRequest {
            api_key_id: leaked.id,
        })
        .await
        .unwrap();
    let status = client.who_am_i(proto::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"));
}

#[tokio::test]
async fn a_viewer_key_reads_but_cannot_create_keys_or_change_settings() {
    let app = TestApp::spawn().await;
    let viewer = Bearer::token(
        &app.create_api_key(app.organization_id, "dashboard", &[Scope::Viewer])
            .await,
    );
    let organization = app
        .organizations(viewer.clone())
        .get_organization(proto::GetOrganizationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(organization.organization.unwrap().name, "acme");
    let status = app
        .auth(viewer.clone())
        .create_api_key(proto::CreateApiKeyRequest {
            name: "escalate".into(),
            scopes: vec![proto::Scope::Admin as i32],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status).as_deref(), Some("PERMISSION_DENIED"));
    let status = app
        .organizations(viewer)
        .update_organization_settings(proto::UpdateOrganizationSettingsRequest {
            settings: Some(proto::OrganizationSettings {
                locale: "pt-BR".into(),
                ..Default::default()
            }),
            update_mask: mask(&["locale"]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn another_organizations_key_cannot_reach_this_organizations_data() {
    let app = TestApp::spawn().await;
    let globex = app.create_organization("globex").await;
    let foreign = Bearer::token(&app.create_api_key(globex, "admin", &[Scope::Admin]).await);
    let me = app.who_am_i(app.as_admin()).await.unwrap().into_inner();
    let Some(proto::who_am_i_response::Principal::ApiKey(acme_key)) = me.principal else {
        panic!()
    };

    let status = app
        .auth(foreign.clone())
        .revoke_api_key(proto::RevokeApiKeyRequest {
            api_key_id: acme_key.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let keys = app
        .auth(foreign.clone())
        .list_api_keys(proto::ListApiKeysRequest::default())
        .await
        .unwrap();
    assert!(keys
        .into_inner()
        .api_keys
        .iter()
        .all(|key| key.id != acme_key.id));
    let events = app
        .organizations(foreign)
        .list_audit_events(proto::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(events
        .audit_events
        .iter()
        .all(|event| event.target_id != app.organization_id.to_string()));
    // The acme key still works.
    app.who_am_i(app.as_admin()).await.unwrap();
}

#[tokio::test]
async fn a_user_access_token_resolves_to_the_user_while_they_may_sign_in() {
    let app = TestApp::spawn().await;
    let active = app.insert_user("ana@acme.test", "ACTIVE", true).await;
    let token = app
        .mint_access_token(active, chrono::Duration::hours(1))
        .await;
    let me = app
        .who_am_i(Bearer::token(&token))
        .await
        .unwrap()
        .into_inner();
    let Some(proto::who_am_i_response::Principal::User(user)) = me.principal else {
        panic!("expected a user principal");
    };
    assert_eq!(user.id, active.to_string());
    assert_eq!(user.username, "ana@acme.test");
    assert!(!me.organization_admin);
    // No Admin or Viewer group yet: no scope, so reads are denied.
    let status = app
        .organizations(Bearer::token(&token))
        .get_organization(proto::GetOrganizationRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn user_tokens_of_inactive_or_not_onboarded_users_or_expired_or_revoked_are_refused() {
    let app = TestApp::spawn().await;
    let inactive = app.insert_user("ina@acme.test", "INACTIVE", true).await;
    let on_vacation = app.insert_user("vic@acme.test", "ON_VACATION", true).await;
    let pending = app.insert_user("pen@acme.test", "ACTIVE", false).await;
    let active = app.insert_user("act@acme.test", "ACTIVE", true).await;
    let expired = app
        .mint_access_token(active, chrono::Duration::seconds(-1))
        .await;
    let revoked = app
        .mint_access_token(active, chrono::Duration::hours(1))
        .await;
    roster::store::access_tokens::revoke_all_for_users(&app.pool, app.organization_id, &[active])
        .await
        .unwrap();
    let tokens = [
        app.mint_access_token(inactive, chrono::Duration::hours(1))
            .await,
        app.mint_access_token(on_vacation, chrono::Duration::hours(1))
            .await,
        app.mint_access_token(pending, chrono::Duration::hours(1))
            .await,
        expired,
        revoked,
    ];
    for token in tokens {
        let status = app.who_am_i(Bearer::token(&token)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    }
}

#[tokio::test]
async fn a_signed_in_method_refuses_api_keys() {
    let app = TestApp::spawn().await;
    let status = app
        .auth(app.as_admin())
        .logout(proto::LogoutRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("user access token"));
}

#[tokio::test]
async fn the_request_id_is_echoed_and_recorded_in_the_audit_trail() {
    let app = TestApp::spawn().await;
    let mut request = tonic::Request::new(proto::CreateApiKeyRequest {
        name: "traced".into(),
        scopes: vec![proto::Scope::Viewer as i32],
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "req-42".parse().unwrap());
    let response = app
        .auth(app.as_admin())
        .create_api_key(request)
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "req-42");
    let key_id = response.into_inner().api_key.unwrap().id;
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            target_id: key_id,
            ..Default::default()
        })
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "api_key.create");
    assert_eq!(events[0].request_id, "req-42");

    let generated = app.who_am_i(app.as_admin()).await.unwrap();
    let id = generated
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "generated request id {id}"
    );
}
