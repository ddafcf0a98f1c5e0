//! Names wherever an administrator refers to something (issue 16 point 1,
//! continued): a user by id, email, username or external id where a request
//! names the user whose groups are copied (mirror, clone, import) or the
//! targets of a mirror; a group or unit by name in the list filters; the
//! FULL view of users with their groups.

use roster::proto::{self, user_key::Key, RowOutcome};
use tonic::Code;

use crate::{
    groups::{org, south_admin, spawn_with_south_admin, SouthAdmin},
    helpers::{mirror_request, violated_fields, violations, Answered, Bearer, TestApp},
    import::{export, options, run_import},
    users::new_user,
};

fn key(key: Key) -> Option<proto::UserKey> {
    Some(proto::UserKey { key: Some(key) })
}

async fn group_names_of(app: &TestApp, user_id: &str) -> Vec<String> {
    let user = app
        .users(app.as_admin())
        .get_user(proto::GetUserRequest {
            user_id: user_id.into(),
            view: proto::UserView::Full as i32,
        })
        .await
        .answered();
    user.groups.into_iter().map(|g| g.name).collect()
}

/// Ana (username ana.souza, external id E-1) in Cashier South and West.
async fn source(app: &TestApp) -> proto::User {
    app.users(app.as_admin())
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                username: "ana.souza".into(),
                external_id: "E-1".into(),
                ..new_user("Ana", "Souza", "ana@acme.test").user.unwrap()
            }),
            group_names: vec!["Cashier South".into(), "Cashier West".into()],
            ..Default::default()
        })
        .await
        .answered()
}

#[tokio::test]
async fn the_user_whose_groups_are_copied_is_named_by_any_key() {
    let (app, _, _) = spawn_with_south_admin().await;
    source(&app).await;
    let both = ["Cashier South", "Cashier West"];
    let mut users = app.users(app.as_admin());

    let mirrored = users
        .create_user(proto::CreateUserRequest {
            mirror_user: key(Key::Email(" ANA@acme.test ".into())),
            ..new_user("Bia", "Lima", "bia@acme.test")
        })
        .await
        .answered();
    assert_eq!(group_names_of(&app, &mirrored.id).await, both);

    let cloned = users
        .clone_user(proto::CloneUserRequest {
            source_user: key(Key::Username("Ana.Souza".into())),
            user: new_user("Caio", "Reis", "caio@acme.test").user,
            ..Default::default()
        })
        .await
        .answered();
    assert_eq!(group_names_of(&app, &cloned.id).await, both);

    let run = run_import(
        &app,
        app.as_admin(),
        false,
        proto::ImportOptions {
            mirror_user: key(Key::ExternalId("E-1".into())),
            ..options()
        },
        b"first_name,last_name,email\nDora,Reis,dora@acme.test\n",
        64,
    )
    .await;
    assert_eq!(run.outcomes(), [(2, RowOutcome::Created)]);
    assert_eq!(group_names_of(&app, &run.rows[0].user_id).await, both);
    let job = app
        .imports(app.as_admin())
        .get_import_job(proto::GetImportJobRequest {
            job_id: run.summary.unwrap().job_id,
        })
        .await
        .answered()
        .options
        .unwrap();
    assert_eq!(
        job.mirror_user,
        key(Key::ExternalId("E-1".into())),
        "the job keeps the key as given"
    );
    assert_eq!(job.mirror_user_id, "");
}

#[tokio::test]
async fn mirror_targets_are_named_by_any_key_and_each_answered_as_named() {
    let (app, _, _) = spawn_with_south_admin().await;
    source(&app).await;
    let eva = app.create_user("Eva", "Melo", "eva@acme.test").await;
    let gil = app.create_user("Gil", "Melo", "gil@acme.test").await;
    let results = app
        .mirror_user(
            app.as_admin(),
            proto::MirrorUserRequest {
                reference_user: key(Key::Username("ana.souza".into())),
                target_users: vec![
                    proto::UserKey {
                        key: Some(Key::Email("GIL@acme.test".into())),
                    },
                    proto::UserKey {
                        key: Some(Key::Username("nobody".into())),
                    },
                ],
                ..mirror_request("", &[&eva.id], proto::MirrorMode::Add)
            },
        )
        .await;
    let answered: Vec<_> = results
        .iter()
        .map(|r| (r.target_user_id.as_str(), r.applied, r.error_code.as_str()))
        .collect();
    assert_eq!(
        answered,
        [
            (eva.id.as_str(), true, ""),
            (gil.id.as_str(), true, ""),
            ("", false, "NOT_FOUND")
        ]
    );
    assert_eq!(results[0].target_user, key(Key::Id(eva.id.clone())));
    assert_eq!(
        results[1].target_user,
        key(Key::Email("GIL@acme.test".into()))
    );
    assert_eq!(results[2].target_user, key(Key::Username("nobody".into())));
    assert_eq!(results[2].error_message, "no user with username `nobody`");
    assert_eq!(results[1].added_groups.len(), 2, "{:?}", results[1]);
    assert_eq!(
        group_names_of(&app, &gil.id).await,
        ["Cashier South", "Cashier West"]
    );
}

#[tokio::test]
async fn a_user_key_that_names_nobody_or_several_or_is_malformed_is_refused_naming_its_field() {
    let (app, _, _) = spawn_with_south_admin().await;
    let ana = source(&app).await;
    let globex = app.create_organization("globex").await;
    let globex_key = app
        .create_api_key(globex, "admin", &[roster::domain::caller::Scope::Admin])
        .await;
    app.users(Bearer::token(&globex_key))
        .create_user(new_user("Gil", "Globex", "gil@globex.test"))
        .await
        .unwrap();
    let mut users = app.users(app.as_admin());
    let create =
        |mirror_user_id: &str, mirror_user: Option<proto::UserKey>| proto::CreateUserRequest {
            mirror_user_id: mirror_user_id.into(),
            mirror_user,
            ..new_user("Bia", "Lima", "bia@acme.test")
        };
    for (request, code, field, reason) in [
        (
            create("", key(Key::Email("nobody@acme.test".into()))),
            Code::NotFound,
            "mirror_user.email",
            None,
        ),
        (
            create("", key(Key::Email("gil@globex.test".into()))),
            Code::NotFound,
            "mirror_user.email",
            None,
        ),
        (
            create(&ana.id, key(Key::Email("ana@acme.test".into()))),
            Code::InvalidArgument,
            "mirror_user",
            Some("ONE_OF"),
        ),
        (
            create("", Some(proto::UserKey { key: None })),
            Code::InvalidArgument,
            "mirror_user",
            Some("REQUIRED"),
        ),
        (
            create("", key(Key::Id("ana".into()))),
            Code::InvalidArgument,
            "mirror_user.id",
            Some("INVALID_ID"),
        ),
        (
            create("", key(Key::Username("  ".into()))),
            Code::InvalidArgument,
            "mirror_user.username",
            Some("REQUIRED"),
        ),
    ] {
        let status = users.create_user(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        if code == Code::InvalidArgument {
            let found = violations(&status);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(
                (found[0].0.as_str(), Some(found[0].1.as_str())),
                (field, reason)
            );
        } else {
            assert_eq!(violated_fields(&status), [field], "{status:?}");
        }
    }

    // Where emails may be shared, a shared one names nobody in particular.
    app.allow_duplicate_emails().await;
    users
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                username: "ana.2".into(),
                ..new_user("Ana", "Segunda", "ana@acme.test").user.unwrap()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = users
        .clone_user(proto::CloneUserRequest {
            source_user: key(Key::Email("ana@acme.test".into())),
            user: new_user("Caio", "Reis", "caio@acme.test").user,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let found = violations(&status);
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        ("source_user.email", "AMBIGUOUS_USER")
    );
    assert!(
        found[0].2.starts_with("2 users share this email"),
        "{found:?}"
    );

    let refused = run_import(
        &app,
        app.as_admin(),
        true,
        proto::ImportOptions {
            mirror_user: key(Key::Email("nobody@acme.test".into())),
            ..options()
        },
        b"first_name,last_name,email\nA,B,ab@acme.test\n",
        64,
    )
    .await;
    let status = refused.error.unwrap();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(violated_fields(&status), ["options.mirror_user.email"]);
}

#[tokio::test]
async fn an_import_s_warning_for_a_skipped_group_of_the_mirrored_user_names_it() {
    let (app, _, south) = spawn_with_south_admin().await;
    source(&app).await;
    let run = run_import(
        &app,
        south.bearer,
        true,
        proto::ImportOptions {
            mirror_user: key(Key::Email("ana@acme.test".into())),
            ..options()
        },
        b"first_name,last_name,email\nA,B,ab@acme.test\n",
        64,
    )
    .await;
    let warnings = &run.rows[0].warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].code, "GROUP_SKIPPED");
    assert_eq!(
        warnings[0].message,
        format!(
            "group `Cashier West` ({}) of the mirrored user was not given: it grants more than you hold",
            south.cashier_west
        )
    );
}

async fn listed(
    app: &TestApp,
    request: proto::ListUsersRequest,
) -> Result<Vec<String>, tonic::Status> {
    let mut emails: Vec<String> = app
        .users(app.as_admin())
        .list_users(request)
        .await?
        .into_inner()
        .users
        .into_iter()
        .map(|u| u.email)
        .collect();
    emails.sort();
    Ok(emails)
}

#[tokio::test]
async fn list_and_export_filters_take_a_group_or_unit_by_name() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let SouthAdmin { cashier_south, .. } = south_admin(&app, &o).await;
    source(&app).await;
    let mut users = app.users(app.as_admin());
    users
        .create_user(proto::CreateUserRequest {
            group_names: vec!["Cashier West".into()],
            ..new_user("Wil", "Oeste", "wil@acme.test")
        })
        .await
        .unwrap();
    let by = |group_name: &str, unit_name: &str| proto::ListUsersRequest {
        group_name: group_name.into(),
        unit_name: unit_name.into(),
        ..Default::default()
    };
    assert_eq!(
        listed(&app, by(" cashier south ", "")).await.unwrap(),
        ["ana@acme.test", "south.admin@acme.test"]
    );
    assert_eq!(
        listed(&app, by("", "WEST ZONE")).await.unwrap(),
        ["ana@acme.test", "wil@acme.test"]
    );
    assert_eq!(
        listed(&app, by("Cashier West", "South Zone"))
            .await
            .unwrap(),
        ["ana@acme.test"],
        "both filters apply: Wil is in West only"
    );
    for (request, field, reason, message) in [
        (
            by("Cashier North", ""),
            "group_name",
            "GROUP_NOT_FOUND",
            "there is no group named `Cashier North` in this organization",
        ),
        (
            by("", "North Zone"),
            "unit_name",
            "UNIT_NOT_FOUND",
            "there is no unit named `North Zone` in this organization",
        ),
        (
            proto::ListUsersRequest {
                group_id: cashier_south.clone(),
                ..by("Cashier South", "")
            },
            "group_name",
            "ONE_OF",
            "give group_id or group_name, not both",
        ),
    ] {
        let status = listed(&app, request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            violations(&status),
            [(field.to_owned(), reason.to_owned(), message.to_owned())]
        );
    }

    let groups = app
        .groups(app.as_admin())
        .list_groups(proto::ListGroupsRequest {
            unit_name: "west zone".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(
        groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["Cashier West"]
    );
    let status = app
        .groups(app.as_admin())
        .list_groups(proto::ListGroupsRequest {
            unit_name: "North Zone".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["unit_name"]);

    let csv = export(
        &app,
        proto::ExportUsersRequest {
            group_name: "Cashier West".into(),
            ..Default::default()
        },
    )
    .await;
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains("wil@acme.test") && csv.contains("ana@acme.test"));
    let status = app
        .users(app.as_admin())
        .export_users(proto::ExportUsersRequest {
            unit_name: "Nowhere".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["unit_name"]);
}

#[tokio::test]
async fn the_full_view_carries_each_user_s_groups_by_name() {
    let (app, _, south) = spawn_with_south_admin().await;
    let ana = source(&app).await;
    let bia = app.create_user("Bia", "Lima", "bia@acme.test").await;
    let mut users = app.users(app.as_admin());
    let get = |view: proto::UserView| proto::GetUserRequest {
        user_id: ana.id.clone(),
        view: view as i32,
    };
    for view in [proto::UserView::Unspecified, proto::UserView::Basic] {
        let basic = users.get_user(get(view)).await.unwrap().into_inner();
        assert!(basic.user.unwrap().groups.is_empty(), "{view:?}");
    }
    let full = users.get_user(get(proto::UserView::Full)).await.answered();
    let refs: Vec<_> = full
        .groups
        .iter()
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    assert_eq!(
        refs,
        [
            (south.cashier_south, "Cashier South".to_owned()),
            (south.cashier_west, "Cashier West".to_owned())
        ]
    );

    let page = users
        .list_users(proto::ListUsersRequest {
            view: proto::UserView::Full as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    let of = |id: &str| {
        let user = page.iter().find(|u| u.id == id).unwrap();
        user.groups
            .iter()
            .map(|g| g.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&ana.id), ["Cashier South", "Cashier West"]);
    assert!(of(&bia.id).is_empty());

    let status = users
        .list_users(proto::ListUsersRequest {
            view: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["view"]);
}
