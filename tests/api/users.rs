use roster::proto::{self, UserStatus};
use tonic::Code;

use crate::helpers::{
    error_reason, mask, new_group, violated_fields, Answered, Bearer, CreatedId, TestApp,
};

pub fn new_user(first: &str, last: &str, email: &str) -> proto::CreateUserRequest {
    proto::CreateUserRequest {
        user: Some(proto::User {
            first_name: first.into(),
            last_name: last.into(),
            email: email.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn outbox_rows(app: &TestApp, user_id: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from outbox where user_id = $1::uuid and kind = 'INVITATION'",
    )
    .bind(user_id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_created_user_is_pending_normalized_and_has_an_invitation_queued() {
    let app = TestApp::spawn().await;
    let mut request = new_user("  Sa\u{0303}o ", "Paulo", " Sao.Paulo@Acme.test ");
    request.user.as_mut().unwrap().phone = "+55 (11) 99999-8888".into();
    let created = app
        .users(app.as_admin())
        .create_user(request)
        .await
        .unwrap()
        .into_inner();
    let user = created.user.unwrap();
    assert_eq!(user.first_name, "São", "trimmed and NFC");
    assert_eq!(user.email, "Sao.Paulo@Acme.test");
    assert_eq!(
        user.username, "Sao.Paulo@Acme.test",
        "the username defaults to the email"
    );
    assert_eq!(user.phone, "+5511999998888");
    assert_eq!(user.status, UserStatus::Pending as i32);
    assert!(!user.onboarded);
    assert!(created.warnings.is_empty());
    assert_eq!(outbox_rows(&app, &user.id).await, 1);

    let quiet = proto::CreateUserRequest {
        send_invitation: Some(false),
        ..new_user("Quiet", "One", "quiet@acme.test")
    };
    let quiet = app
        .users(app.as_admin())
        .create_user(quiet)
        .await
        .answered();
    assert_eq!(outbox_rows(&app, &quiet.id).await, 0);

    let deactivated = proto::CreateUserRequest {
        deactivated: true,
        ..new_user("Off", "Line", "off@acme.test")
    };
    let deactivated = app
        .users(app.as_admin())
        .create_user(deactivated)
        .await
        .answered();
    assert_eq!(deactivated.status, UserStatus::Inactive as i32);
    assert_eq!(
        outbox_rows(&app, &deactivated.id).await,
        1,
        "deactivated users get the invitation too"
    );
}

#[tokio::test]
async fn every_invalid_field_of_a_new_user_is_reported_together() {
    let app = TestApp::spawn().await;
    let request = proto::CreateUserRequest {
        user: Some(proto::User {
            first_name: " ".into(),
            last_name: "x".repeat(101),
            email: "not an email".into(),
            username: "ab".into(),
            phone: "12345".into(),
            ..Default::default()
        }),
        group_ids: vec!["nope".into()],
        mirror_user_id: "also-nope".into(),
        ..Default::default()
    };
    let status = app
        .users(app.as_admin())
        .create_user(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "user.first_name",
            "user.last_name",
            "user.email",
            "user.username",
            "user.phone",
            "group_ids[0]",
            "mirror_user_id"
        ]
    );
}

#[tokio::test]
async fn public_email_domains_warn_by_default_and_are_refused_under_reject() {
    let app = TestApp::spawn().await;
    let created = app
        .users(app.as_admin())
        .create_user(new_user("Ana", "Gomes", "ana@gmail.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.warnings.len(), 1);
    assert_eq!(created.warnings[0].code, "PUBLIC_EMAIL_DOMAIN");
    assert_eq!(created.warnings[0].field, "user.email");
    let reject = proto::OrganizationSettings {
        public_email_domain_policy: proto::PublicEmailDomainPolicy::Reject as i32,
        ..Default::default()
    };
    app.update_settings(reject, &["public_email_domain_policy"])
        .await
        .unwrap();
    let status = app
        .users(app.as_admin())
        .create_user(new_user("Bia", "Gomes", "bia@mail.yahoo.com"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["user.email"]);
}

#[tokio::test]
async fn emails_and_usernames_are_unique_ignoring_case() {
    let app = TestApp::spawn().await;
    app.create_user("Ana", "Silva", "ana@acme.test").await;
    let mut users = app.users(app.as_admin());
    let status = users
        .create_user(new_user("Other", "Ana", "ANA@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(status.message(), "User already exists");
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("USER_ALREADY_EXISTS")
    );
    let mut taken = new_user("Ana", "Two", "ana.two@acme.test");
    taken.user.as_mut().unwrap().username = "Ana@Acme.test".into();
    let status = users.create_user(taken).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(violated_fields(&status), ["user.username"]);
    assert_eq!(status.message(), "Username already taken");
}

#[tokio::test]
async fn where_duplicate_emails_are_allowed_a_shared_email_needs_its_own_username() {
    let app = TestApp::spawn().await;
    app.allow_duplicate_emails().await;
    let first = app.create_user("Front", "Desk", "desk@acme.test").await;
    let mut users = app.users(app.as_admin());
    let status = users
        .create_user(new_user("Night", "Desk", "Desk@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["user.username"]);
    let mut second = new_user("Night", "Desk", "Desk@acme.test");
    second.user.as_mut().unwrap().username = "night.desk".into();
    let second = users.create_user(second).await.answered();
    let found = users
        .lookup_user(proto::LookupUserRequest {
            key: Some(proto::lookup_user_request::Key::Email(
                "DESK@ACME.TEST".into(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    let ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_creates_one_user() {
    let app = TestApp::spawn().await;
    let request = proto::CreateUserRequest {
        request_id: "hr-sync-42".into(),
        ..new_user("Rita", "Lee", "rita@gmail.com")
    };
    let mut users = app.users(app.as_admin());
    let first = users
        .create_user(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = users.create_user(request).await.unwrap().into_inner();
    assert_eq!(first.user.unwrap().id, retry.user.as_ref().unwrap().id);
    assert_eq!(
        retry.warnings.len(),
        1,
        "the first result, warnings included"
    );
    let count = app.count("select count(*) from users").await;
    assert_eq!(count, 1);
    assert_eq!(outbox_rows(&app, &retry.user.unwrap().id).await, 1);
}

#[tokio::test]
async fn statuses_follow_the_admin_state_and_onboarding() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ana", "Souza", "ana@acme.test").await;
    let mut users = app.users(app.as_admin());
    let set = |status: UserStatus| proto::SetUserStatusRequest {
        user_id: user.id.clone(),
        status: status as i32,
    };
    let status_of = |response: tonic::Response<proto::SetUserStatusResponse>| {
        response.into_inner().user.unwrap().status
    };

    // Not onboarded: PENDING whatever the admin state but INACTIVE.
    for (assigned, shown) in [
        (UserStatus::OnVacation, UserStatus::Pending),
        (UserStatus::Inactive, UserStatus::Inactive),
        (UserStatus::Active, UserStatus::Pending),
    ] {
        let response = users.set_user_status(set(assigned)).await.unwrap();
        assert_eq!(status_of(response), shown as i32, "{assigned:?}");
    }
    app.expire_invitation(&user.id).await;
    let get = proto::GetUserRequest {
        user_id: user.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        users.get_user(get.clone()).await.answered().status,
        UserStatus::Expired as i32
    );

    // Onboarded: the admin state shows.
    app.onboard(&user.id).await;
    assert_eq!(
        users.get_user(get.clone()).await.answered().status,
        UserStatus::Active as i32
    );
    for (assigned, shown) in [
        (UserStatus::OnVacation, UserStatus::OnVacation),
        (UserStatus::Inactive, UserStatus::Inactive),
        (UserStatus::Active, UserStatus::Active),
    ] {
        let response = users.set_user_status(set(assigned)).await.unwrap();
        assert_eq!(status_of(response), shown as i32, "{assigned:?}");
    }

    for unassignable in [
        UserStatus::Blocked,
        UserStatus::Disabled,
        UserStatus::Pending,
        UserStatus::Expired,
        UserStatus::Unspecified,
    ] {
        let status = users.set_user_status(set(unassignable)).await.unwrap_err();
        assert_eq!(violated_fields(&status), ["status"], "{unassignable:?}");
    }
    let events = app
        .organizations(app.as_admin())
        .list_audit_events(proto::ListAuditEventsRequest {
            action: "user.status.set".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.total_size, 6);
}

#[tokio::test]
async fn legacy_statuses_are_readable_filterable_and_leavable_but_never_assignable() {
    let app = TestApp::spawn().await;
    let legacy = app.create_user("Old", "Timer", "old@acme.test").await;
    app.create_user("New", "Comer", "new@acme.test").await;
    sqlx::query("update users set legacy_status = 'BLOCKED', onboarded = true where id = $1::uuid")
        .bind(&legacy.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut users = app.users(app.as_admin());
    let blocked = users
        .list_users(proto::ListUsersRequest {
            statuses: vec![UserStatus::Blocked as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(blocked.users.len(), 1);
    assert_eq!(blocked.users[0].status, UserStatus::Blocked as i32);
    let stats = users
        .get_onboarding_stats(proto::GetOnboardingStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.onboarded_count, stats.not_onboarded_count), (1, 1));
    assert!(stats
        .status_counts
        .iter()
        .any(|c| c.status == UserStatus::Blocked as i32 && c.count == 1));
    let moved = users
        .set_user_status(proto::SetUserStatusRequest {
            user_id: legacy.id.clone(),
            status: UserStatus::Active as i32,
        })
        .await
        .answered();
    assert_eq!(moved.status, UserStatus::Active as i32);
}

#[tokio::test]
async fn search_matches_every_word_ignoring_case_and_accents() {
    let app = TestApp::spawn().await;
    let joao = app.create_user("João Pedro", "Silva", "jp@acme.test").await;
    let sao = app
        .create_user("Ana", "São Paulo", "ana.sp@acme.test")
        .await;
    let zoe = app.create_user("Zoë", "Ångström", "zoe@acme.test").await;
    let search = |query: &str| proto::ListUsersRequest {
        query: query.into(),
        ..Default::default()
    };
    let mut users = app.users(app.as_admin());
    let ids = |response: proto::ListUsersResponse| {
        response.users.into_iter().map(|u| u.id).collect::<Vec<_>>()
    };
    for (query, expected) in [
        ("joao silva", vec![joao.id.clone()]),
        ("SILVA João", vec![joao.id.clone()]),
        ("sao", vec![sao.id.clone()]),
        ("ANA.SP@", vec![sao.id.clone()]),
        ("zoe angstrom", vec![zoe.id.clone()]),
        ("joao paulo", vec![]),
        ("100%", vec![]),
    ] {
        let found = users.list_users(search(query)).await.unwrap().into_inner();
        assert_eq!(ids(found), expected, "{query}");
    }
}

#[tokio::test]
async fn users_on_public_mail_providers_are_listed_and_exported_apart() {
    let app = TestApp::spawn().await;
    let mut public = Vec::new();
    for email in ["ana@gmail.com", "bia@MAIL.Yahoo.com", "cid@Hotmail.com.br"] {
        public.push(app.create_user("On", "Public", email).await.email);
    }
    let mut own = Vec::new();
    // A provider's name inside another domain is not that provider.
    for email in [
        "dan@x-gmail.com",
        "eva@acme.com",
        "fia@gmail.com.evil.net",
        "gil@mygmail.com",
    ] {
        own.push(app.create_user("Own", "Domain", email).await.email);
    }
    let list = |public_email_domain: Option<bool>| {
        let mut users = app.users(app.as_admin());
        async move {
            let mut request = proto::ListUsersRequest {
                public_email_domain,
                page_size: 2,
                ..Default::default()
            };
            let mut found = Vec::new();
            let total_size = loop {
                let page = users
                    .list_users(request.clone())
                    .await
                    .unwrap()
                    .into_inner();
                found.extend(page.users.into_iter().map(|user| user.email));
                if page.next_page_token.is_empty() {
                    break page.total_size;
                }
                request.page_token = page.next_page_token;
            };
            found.sort();
            (found, total_size)
        }
    };
    public.sort();
    own.sort();
    assert_eq!(list(Some(true)).await, (public.clone(), 3));
    assert_eq!(list(Some(false)).await, (own.clone(), 4));
    assert_eq!(list(None).await.1, 7);

    let file = crate::import::export(
        &app,
        proto::ExportUsersRequest {
            public_email_domain: Some(true),
            ..Default::default()
        },
    )
    .await;
    let file = String::from_utf8(file).unwrap();
    let mut exported: Vec<&str> = file
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(2).unwrap())
        .collect();
    exported.sort();
    assert_eq!(exported, public);
}

#[tokio::test]
async fn last_name_order_ignores_accents_and_pages_stay_stable_while_inserting() {
    let app = TestApp::spawn().await;
    for (first, last) in [
        ("a", "Zuñiga"),
        ("b", "Álvares"),
        ("c", "Barros"),
        ("d", "Éboli"),
        ("e", "Costa"),
    ] {
        app.create_user(first, last, &format!("{first}@acme.test"))
            .await;
    }
    let mut users = app.users(app.as_admin());
    let by_name = users
        .list_users(proto::ListUsersRequest {
            order_by: "last_name".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = by_name.users.iter().map(|u| u.last_name.as_str()).collect();
    assert_eq!(names, ["Álvares", "Barros", "Costa", "Éboli", "Zuñiga"]);

    let page = |token: String| proto::ListUsersRequest {
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first = users
        .list_users(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.total_size, 5);
    app.create_user("f", "Newcomer", "f@acme.test").await;
    let second = users
        .list_users(page(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    let third = users
        .list_users(page(second.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert!(third.next_page_token.is_empty());
    let seen: Vec<String> = first
        .users
        .iter()
        .chain(&second.users)
        .chain(&third.users)
        .map(|u| u.first_name.clone())
        .collect();
    assert_eq!(
        seen,
        ["e", "d", "c", "b", "a"],
        "newest first, no repeat, no gap, the newcomer after the start"
    );
    let status = users
        .list_users(proto::ListUsersRequest {
            page_size: -5,
            order_by: "age".into(),
            // Not 42: an unknown number is refused at the boundary, alone.
            statuses: vec![UserStatus::Unspecified as i32],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["page_size", "order_by", "statuses[0]"]
    );
}

#[tokio::test]
async fn exact_lookups_and_batch_gets() {
    let app = TestApp::spawn().await;
    let mut request = new_user("Eva", "Lima", "eva@acme.test");
    request.user.as_mut().unwrap().username = "eva.lima".into();
    request.user.as_mut().unwrap().external_id = "HR-0042".into();
    let eva = app
        .users(app.as_admin())
        .create_user(request)
        .await
        .answered();
    let mut users = app.users(app.as_admin());
    use proto::lookup_user_request::Key;
    for key in [
        Key::Email("EVA@acme.test".into()),
        Key::Username("Eva.Lima".into()),
        Key::ExternalId("HR-0042".into()),
    ] {
        let found = users
            .lookup_user(proto::LookupUserRequest { key: Some(key) })
            .await
            .unwrap()
            .into_inner()
            .users;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, eva.id);
    }
    let none = users
        .lookup_user(proto::LookupUserRequest {
            key: Some(Key::Email("eva@acme".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.users.is_empty(), "exact, not a search");
    let missing = uuid::Uuid::new_v4().to_string();
    let batch = users
        .batch_get_users(proto::BatchGetUsersRequest {
            user_ids: vec![missing.clone(), eva.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.users.len(), 1);
    assert_eq!(batch.not_found_user_ids, [missing]);
    let status = users
        .batch_get_users(proto::BatchGetUsersRequest {
            user_ids: vec![eva.id.clone(); 1001],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["user_ids"]);
}

#[tokio::test]
async fn updates_change_only_the_masked_fields_and_an_email_change_signs_the_user_out() {
    let app = TestApp::spawn().await;
    let (user, bearer) = app.signed_in_user("mia@acme.test").await;
    app.who_am_i(bearer.clone()).await.unwrap();
    let mut users = app.users(app.as_admin());
    let update = |paths: &[&str], user: proto::User| proto::UpdateUserRequest {
        user: Some(user),
        update_mask: mask(paths),
    };
    let changed = users
        .update_user(update(
            &["last_name", "user.phone"],
            proto::User {
                id: user.id.clone(),
                last_name: "Costa".into(),
                phone: "+1 212 555 0100".into(),
                first_name: "ignored".into(),
                ..Default::default()
            },
        ))
        .await
        .answered();
    assert_eq!(
        (
            changed.first_name.as_str(),
            changed.last_name.as_str(),
            changed.phone.as_str()
        ),
        ("Signed", "Costa", "+12125550100")
    );
    app.who_am_i(bearer.clone()).await.unwrap();

    // (mask, email, the field refused)
    for (mask, email, refused) in [
        ("status", "", "update_mask.paths[0]"),
        ("email", "bad", "user.email"),
    ] {
        let status = users
            .update_user(update(
                &[mask],
                proto::User {
                    id: user.id.clone(),
                    email: email.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), [refused], "{mask}");
    }

    let moved = users
        .update_user(update(
            &["email"],
            proto::User {
                id: user.id.clone(),
                email: "mia@new.test".into(),
                ..Default::default()
            },
        ))
        .await
        .answered();
    assert_eq!(
        moved.username, "mia@acme.test",
        "changing the email does not change the username"
    );
    let status = app.who_am_i(bearer).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "the email change revoked the access token"
    );
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            target_id: user.id.clone(),
            action: "user.update".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(events[0].changed_fields, ["email"]);
    assert_eq!(events[1].changed_fields, ["last_name", "phone"]);
}

#[tokio::test]
async fn deleting_a_user_removes_them_and_is_audited() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Gone", "Soon", "gone@acme.test").await;
    let mut users = app.users(app.as_admin());
    users
        .delete_user(proto::DeleteUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap();
    let status = users
        .get_user(proto::GetUserRequest {
            user_id: user.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = users
        .delete_user(proto::DeleteUserRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            target_id: user.id,
            ..Default::default()
        })
        .await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["user.delete", "user.create"]);
}

#[tokio::test]
async fn another_organizations_users_and_groups_are_not_found() {
    let app = TestApp::spawn().await;
    let globex = app.create_organization("globex").await;
    let foreign = Bearer::token(
        &app.create_api_key(globex, "admin", &[roster::domain::caller::Scope::Admin])
            .await,
    );
    let user = app.create_user("Acme", "Person", "p@acme.test").await;
    let profile_id = builtin_profile(&app, "Viewer").await;
    let viewers = new_group("Acme viewers", &profile_id, proto::UnitScope::AllUnits, &[]);
    let group_id = app
        .groups(app.as_admin())
        .create_group(viewers)
        .await
        .created_id();
    let mut users = app.users(foreign.clone());
    let codes = [
        users
            .get_user(proto::GetUserRequest {
                user_id: user.id.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        users
            .delete_user(proto::DeleteUserRequest {
                user_id: user.id.clone(),
            })
            .await
            .map(drop),
        users
            .set_user_status(proto::SetUserStatusRequest {
                user_id: user.id.clone(),
                status: UserStatus::Inactive as i32,
            })
            .await
            .map(drop),
        users
            .get_user_access(proto::GetUserAccessRequest {
                user_id: user.id.clone(),
            })
            .await
            .map(drop),
        users
            .list_user_groups(proto::ListUserGroupsRequest {
                user_id: user.id.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        app.groups(foreign.clone())
            .get_group(proto::GetGroupRequest {
                group_id: group_id.clone(),
            })
            .await
            .map(drop),
        app.groups(foreign.clone())
            .delete_group(proto::DeleteGroupRequest {
                group_id: group_id.clone(),
            })
            .await
            .map(drop),
        app.groups(foreign.clone())
            .get_profile(proto::GetProfileRequest {
                profile_id: profile_id.clone(),
            })
            .await
            .map(drop),
        app.groups(foreign.clone())
            .create_group(new_group(
                "Borrowed",
                &profile_id,
                proto::UnitScope::NoUnit,
                &[],
            ))
            .await
            .map(drop),
    ];
    for (index, result) in codes.into_iter().enumerate() {
        assert_eq!(result.unwrap_err().code(), Code::NotFound, "call {index}");
    }
    // A globex user cannot be given an acme group.
    let globex_user = users
        .create_user(new_user("Globex", "Person", "p@globex.test"))
        .await
        .answered();
    let status = users
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: globex_user.id,
            group_ids: vec![group_id],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(violated_fields(&status), ["group_ids[0]"]);
    let listed = users
        .list_users(proto::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 1, "only globex's own user");
}

pub async fn builtin_profile(app: &TestApp, name: &str) -> String {
    let profiles = app
        .groups(app.as_admin())
        .list_profiles(proto::ListProfilesRequest {
            product: "User Management".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profiles;
    profiles
        .into_iter()
        .find(|p| p.name == name && p.built_in)
        .unwrap()
        .id
}
