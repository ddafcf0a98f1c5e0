use roster::proto;
use tonic::Code;

use crate::helpers::{error_reason, mask, violated_fields, TestApp};

fn hours(h: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: h * 3600,
        nanos: 0,
    })
}

#[tokio::test]
async fn a_new_organization_has_the_default_settings_and_the_two_built_in_profiles() {
    let app = TestApp::spawn().await;
    let organization = app.organization().await;
    let settings = organization.settings.unwrap();
    assert!(!settings.allow_duplicate_emails);
    assert_eq!(
        settings.public_email_domain_policy,
        proto::PublicEmailDomainPolicy::Warn as i32
    );
    assert_eq!(settings.invitation_ttl, hours(7 * 24));
    assert_eq!(settings.password_reset_ttl, hours(1));
    assert_eq!(settings.access_token_ttl, hours(8));
    assert_eq!(settings.locale, "en");
    let profiles: Vec<(String, String, String)> = sqlx::query_as(
        "select product, name, built_in from profiles where organization_id = $1 order by name",
    )
    .bind(app.organization_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        profiles,
        [
            ("User Management".into(), "Admin".into(), "ADMIN".into()),
            ("User Management".into(), "Viewer".into(), "VIEWER".into())
        ]
    );
}

#[tokio::test]
async fn settings_named_in_the_mask_change_and_the_change_is_audited() {
    let app = TestApp::spawn().await;
    let updated = app
        .update_settings(
            proto::OrganizationSettings {
                locale: "pt-BR".into(),
                invitation_ttl: hours(48),
                // Not in the mask: ignored.
                access_token_ttl: hours(1),
                ..Default::default()
            },
            &["locale", "settings.invitation_ttl"],
        )
        .await
        .unwrap()
        .settings
        .unwrap();
    assert_eq!(updated.locale, "pt-BR");
    assert_eq!(updated.invitation_ttl, hours(48));
    assert_eq!(updated.access_token_ttl, hours(8));

    let events = app.audit_events_of("organization.settings.update").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_fields, ["invitation_ttl", "locale"]);
    assert_eq!(events[0].actor_kind, proto::ActorKind::ApiKey as i32);
    assert_eq!(events[0].target_id, app.organization_id.to_string());
}

#[tokio::test]
async fn every_invalid_setting_is_reported_with_its_field_path() {
    let app = TestApp::spawn().await;
    let status = app
        .organizations(app.as_admin())
        .update_organization_settings(proto::UpdateOrganizationSettingsRequest {
            settings: Some(proto::OrganizationSettings {
                public_email_domain_policy: proto::PublicEmailDomainPolicy::Unspecified as i32,
                invitation_ttl: Some(prost_types::Duration {
                    seconds: 59,
                    nanos: 0,
                }),
                password_reset_ttl: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 5,
                }),
                access_token_ttl: None,
                locale: "fr".into(),
                ..Default::default()
            }),
            update_mask: mask(&[
                "public_email_domain_policy",
                "invitation_ttl",
                "password_reset_ttl",
                "access_token_ttl",
                "locale",
            ]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
    assert_eq!(
        violated_fields(&status),
        [
            "settings.public_email_domain_policy",
            "settings.invitation_ttl",
            "settings.password_reset_ttl",
            "settings.access_token_ttl",
            "settings.locale"
        ]
    );
    // Nothing was changed.
    let organization = app.organization().await;
    assert_eq!(organization.settings.unwrap().locale, "en");
}

#[tokio::test]
async fn an_empty_mask_or_an_unknown_path_is_refused_naming_it() {
    let app = TestApp::spawn().await;
    let mut organizations = app.organizations(app.as_admin());
    let status = organizations
        .update_organization_settings(proto::UpdateOrganizationSettingsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask"]);
    let status = organizations
        .update_organization_settings(proto::UpdateOrganizationSettingsRequest {
            settings: Some(proto::OrganizationSettings::default()),
            update_mask: mask(&["allow_duplicate_emails", "name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask.paths[1]"]);
}

#[tokio::test]
async fn duplicate_emails_cannot_be_turned_off_while_some_users_share_an_email() {
    let app = TestApp::spawn().await;
    let mut organizations = app.organizations(app.as_admin());
    let allow = |on: bool| proto::UpdateOrganizationSettingsRequest {
        settings: Some(proto::OrganizationSettings {
            allow_duplicate_emails: on,
            ..Default::default()
        }),
        update_mask: mask(&["allow_duplicate_emails"]),
    };
    organizations
        .update_organization_settings(allow(true))
        .await
        .unwrap();
    let mut users = app.users(app.as_admin());
    for username in ["shared.one", "shared.two"] {
        users
            .create_user(proto::CreateUserRequest {
                user: Some(proto::User {
                    first_name: "Shared".into(),
                    last_name: "Mailbox".into(),
                    email: "Team@Acme.test".into(),
                    username: username.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let status = organizations
        .update_organization_settings(allow(false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("DUPLICATE_EMAILS_EXIST")
    );
    assert!(
        status.message().contains("team@acme.test"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn audit_events_filter_and_page_newest_first() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(app.as_admin());
    for name in ["a", "b", "c"] {
        auth.create_api_key(proto::CreateApiKeyRequest {
            name: name.into(),
            scopes: vec![proto::Scope::Viewer as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut organizations = app.organizations(app.as_admin());
    let filter = proto::ListAuditEventsRequest {
        action: "api_key.create".into(),
        page_size: 2,
        ..Default::default()
    };
    let first = organizations
        .list_audit_events(filter.clone())
        .await
        .unwrap()
        .into_inner();
    // The three keys above and the test's admin key.
    assert_eq!(first.total_size, 4);
    assert_eq!(first.audit_events.len(), 2);
    let names: Vec<String> = first
        .audit_events
        .iter()
        .map(|e| e.details.as_ref().unwrap().fields["name"].kind.clone())
        .map(|kind| match kind {
            Some(prost_types::value::Kind::StringValue(s)) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["c", "b"]);
    let second = organizations
        .list_audit_events(proto::ListAuditEventsRequest {
            page_token: first.next_page_token.clone(),
            ..filter
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.audit_events.len(), 2);
    assert!(second.next_page_token.is_empty());
    let status = organizations
        .list_audit_events(proto::ListAuditEventsRequest {
            page_token: first.next_page_token,
            action: "organization.create".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = organizations
        .list_audit_events(proto::ListAuditEventsRequest {
            actor_id: "someone".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["actor_id"]);
    let none_after = organizations
        .list_audit_events(proto::ListAuditEventsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none_after.total_size, 0);
}

#[tokio::test]
async fn the_first_start_gives_its_key_to_a_default_organization_an_operator_made_already() {
    let app = TestApp::spawn().await;
    let made = roster::domain::organization::create_organization(
        &app.store,
        "default",
        roster::domain::caller::Actor::Operator,
    )
    .await
    .expect("the operator creates default");

    let (organization, _secret) = roster::domain::bootstrap::first_start(&app.store)
        .await
        .expect("the first start succeeds")
        .expect("the first start makes a key");
    assert_eq!(organization.id, made.id, "no second default organization");
    let keys_of_default: i64 = sqlx::query_scalar(
        "select count(*) from api_keys where organization_id = $1 and name = 'bootstrap'",
    )
    .bind(made.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(keys_of_default, 1);
    assert!(roster::domain::bootstrap::first_start(&app.store)
        .await
        .unwrap()
        .is_none());
}

async fn set_display_name(
    app: &TestApp,
    display_name: &str,
) -> Result<proto::OrganizationSettings, tonic::Status> {
    let settings = proto::OrganizationSettings {
        display_name: display_name.into(),
        ..Default::default()
    };
    app.update_settings(settings, &["display_name"])
        .await
        .map(|organization| organization.settings.unwrap())
}

#[tokio::test]
async fn the_display_name_names_the_organization_in_emails_and_the_invitation_spells_out_the_sign_in_name(
) {
    let app = TestApp::spawn().await;
    let settings = set_display_name(&app, "  Acme Corporation ").await.unwrap();
    assert_eq!(settings.display_name, "Acme Corporation");

    app.create_named_user("Ana", "Souza", "ana.souza", "ana@acme.test")
        .await;
    let invitation = app.email("ana@acme.test", 1).await;
    assert_eq!(
        invitation.subject,
        "Welcome to Acme Corporation — register your password"
    );
    assert!(
        invitation.text.contains("Acme Corporation invited you"),
        "{}",
        invitation.text
    );
    // What the person types at sign-in, spelled out: the name, not the display name.
    assert!(
        invitation
            .text
            .contains("Company: acme · Username: ana.souza"),
        "{}",
        invitation.text
    );
    assert!(invitation
        .html
        .contains("Company: <strong>acme</strong> · Username: <strong>ana.souza</strong>"));

    let refused = set_display_name(&app, "Acme\u{202E}Corp")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["settings.display_name"]);
    let refused = set_display_name(&app, &"x".repeat(101)).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["settings.display_name"]);

    // Cleared: emails name the organization by its name again.
    assert_eq!(set_display_name(&app, "").await.unwrap().display_name, "");
    app.create_named_user("Bia", "Lima", "bia", "bia@acme.test")
        .await;
    let invitation = app.email("bia@acme.test", 1).await;
    assert_eq!(
        invitation.subject,
        "Welcome to acme — register your password"
    );
}
