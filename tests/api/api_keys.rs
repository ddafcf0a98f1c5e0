use std::time::Duration;

use roster::proto;
use tonic::Code;

use crate::helpers::{error_reason, eventually, violated_fields, Answered, Bearer, TestApp};

fn viewer_key(name: &str) -> proto::CreateApiKeyRequest {
    proto::CreateApiKeyRequest {
        name: name.into(),
        scopes: vec![proto::Scope::Viewer as i32],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_created_key_shows_its_secret_once_and_authenticates_with_its_scopes() {
    let app = TestApp::spawn().await;
    let created = app
        .auth(app.as_admin())
        .create_api_key(viewer_key("billing-service"))
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("rst_key_"));
    assert!(
        created.secret.len() >= "rst_key_".len() + 43,
        "256 bits of secret"
    );
    let key = created.api_key.unwrap();
    assert_eq!(key.scopes, [proto::Scope::Viewer as i32]);
    assert!(key.created_by.starts_with("api_key:"));

    let me = app.who_am_i(Bearer::token(&created.secret)).await.unwrap();
    assert_eq!(me.into_inner().scopes, [proto::Scope::Viewer as i32]);
    let listed = app
        .auth(app.as_admin())
        .list_api_keys(proto::ListApiKeysRequest::default())
        .await
        .unwrap();
    assert!(
        listed.into_inner().api_keys.iter().any(|k| k.id == key.id),
        "listed"
    );
    let stored: Vec<u8> =
        sqlx::query_scalar("select secret_hash from api_keys where name = 'billing-service'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 32, "only the SHA-256 is stored");
}

#[tokio::test]
async fn every_invalid_field_of_a_new_key_is_reported_together() {
    let app = TestApp::spawn().await;
    let status = app
        .auth(app.as_admin())
        .create_api_key(proto::CreateApiKeyRequest {
            name: "  ".into(),
            // An unknown number (99) is refused at the boundary before the
            // domain sees the request (hardening_input); UNSPECIFIED reaches it.
            scopes: vec![
                proto::Scope::Admin as i32,
                proto::Scope::Unspecified as i32,
                proto::Scope::Unspecified as i32,
            ],
            expire_time: Some(prost_types::Timestamp {
                seconds: 1_000,
                nanos: 0,
            }),
            request_id: "bad id with spaces".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "name",
            "scopes[1]",
            "scopes[2]",
            "expire_time",
            "request_id"
        ]
    );
    let status = app
        .auth(app.as_admin())
        .create_api_key(proto::CreateApiKeyRequest {
            name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["scopes"]);
}

#[tokio::test]
async fn a_second_unrevoked_key_with_the_same_name_already_exists() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    let first = auth
        .create_api_key(viewer_key("Reports"))
        .await
        .unwrap()
        .into_inner();
    let status = auth
        .create_api_key(viewer_key("reports"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("API_KEY_ALREADY_EXISTS")
    );
    assert_eq!(violated_fields(&status), ["name"]);
    // Once revoked, the name is free again.
    auth.revoke_api_key(proto::RevokeApiKeyRequest {
        api_key_id: first.api_key.unwrap().id,
    })
    .await
    .unwrap();
    auth.create_api_key(viewer_key("reports")).await.unwrap();
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_first_key_without_a_second_secret() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    let request = proto::CreateApiKeyRequest {
        request_id: "create-ci-key-1".into(),
        ..viewer_key("ci")
    };
    let first = auth
        .create_api_key(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = auth.create_api_key(request).await.unwrap().into_inner();
    assert_eq!(first.api_key.unwrap().id, retry.api_key.unwrap().id);
    assert!(!first.secret.is_empty());
    assert!(retry.secret.is_empty());
    let count = app
        .count("select count(*) from api_keys where name = 'ci'")
        .await;
    assert_eq!(count, 1);
}

#[tokio::test]
async fn keys_list_newest_first_in_pages_and_revoked_ones_on_request() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    for name in ["k1", "k2", "k3", "k4"] {
        auth.create_api_key(viewer_key(name)).await.unwrap();
    }
    let first = auth
        .list_api_keys(proto::ListApiKeysRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = first.api_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["k4", "k3", "k2"]);
    assert_eq!(first.total_size, 5, "four keys and the admin key");
    assert!(!first.total_size_estimated);
    let second = auth
        .list_api_keys(proto::ListApiKeysRequest {
            page_size: 3,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = second.api_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["k1", "admin"]);
    assert!(second.next_page_token.is_empty());

    // The token is bound to its query.
    let status = auth
        .list_api_keys(proto::ListApiKeysRequest {
            page_token: first.next_page_token,
            show_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = auth
        .list_api_keys(proto::ListApiKeysRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_size"]);

    let k1 = second.api_keys[0].id.clone();
    let revoked = auth
        .revoke_api_key(proto::RevokeApiKeyRequest {
            api_key_id: k1.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.api_key.unwrap().revoke_time.is_some());
    let active = auth
        .list_api_keys(proto::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(active.api_keys.iter().all(|k| k.id != k1));
    let all = auth
        .list_api_keys(proto::ListApiKeysRequest {
            show_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(all.api_keys.iter().any(|k| k.id == k1));
}

#[tokio::test]
async fn revoking_needs_a_valid_existing_key_id() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    let status = auth
        .revoke_api_key(proto::RevokeApiKeyRequest {
            api_key_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["api_key_id"]);
    let status = auth
        .revoke_api_key(proto::RevokeApiKeyRequest {
            api_key_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn using_a_key_records_its_last_use() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    auth.who_am_i(proto::WhoAmIRequest {}).await.unwrap();
    let first_use = eventually("last_used_time is recorded", Duration::from_secs(5), || {
        let mut auth = auth.clone();
        async move {
            let keys = auth
                .list_api_keys(proto::ListApiKeysRequest::default())
                .await
                .unwrap()
                .into_inner();
            keys.api_keys
                .iter()
                .find(|k| k.name == "admin")
                .and_then(|k| k.last_used_time)
        }
    })
    .await;
    // Within the minute, further calls do not move it.
    auth.who_am_i(proto::WhoAmIRequest {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let keys = auth
        .list_api_keys(proto::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    let again = keys
        .api_keys
        .iter()
        .find(|k| k.name == "admin")
        .unwrap()
        .last_used_time;
    assert_eq!(again, Some(first_use));
}

#[tokio::test]
async fn creating_and_revoking_keys_are_audited_with_their_actor() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    let key = auth.create_api_key(viewer_key("audited")).await.answered();
    auth.revoke_api_key(proto::RevokeApiKeyRequest {
        api_key_id: key.id.clone(),
    })
    .await
    .unwrap();
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            target_id: key.id.clone(),
            ..Default::default()
        })
        .await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["api_key.revoke", "api_key.create"]);
    let admin_key_id = key.created_by.trim_start_matches("api_key:").to_owned();
    assert!(events
        .iter()
        .all(|e| e.actor_kind == proto::ActorKind::ApiKey as i32 && e.actor_id == admin_key_id));
    assert!(events.iter().all(|e| e.target_type == "api_key"));
    // The organization itself was created by the operator.
    let created = app.audit_events_of("organization.create").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor_kind, proto::ActorKind::Operator as i32);
}
