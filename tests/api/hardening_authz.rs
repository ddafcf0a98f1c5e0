//! Issue 12, points 1–5: a unit administrator acts only on people who hold no
//! more than they do, by every path; built-in profiles never sit on NO_UNIT;
//! copying from a user passes on only covered groups; request ids belong to
//! their caller.

use roster::{
    domain::caller::Scope,
    proto::{self, RowOutcome, UnitScope},
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    groups::{self, give, group, organization_admin, user_in, SouthAdmin},
    helpers::{
        mask, mirror_request, new_group, new_profile, new_unit, violated_fields, Answered, Bearer,
        CreatedId, TestApp,
    },
    import::{options, run_import},
};

/// Every use case that acts on `target`, as `bearer`: (what, code or row error code).
async fn act_on_user_by_every_path(
    app: &TestApp,
    bearer: &Bearer,
    target: &proto::User,
    covered_group: &str,
    held_covered_group: &str,
    reference: &proto::User,
) -> Vec<(&'static str, String)> {
    let mut users = app.users(bearer.clone());
    let code = |result: Result<(), tonic::Status>| match result {
        Ok(()) => "OK".to_owned(),
        Err(status) => format!("{:?}", status.code()),
    };
    let mut outcomes = vec![
        (
            "AddUserToGroups",
            code(
                give(app, bearer.clone(), &target.id, &[covered_group])
                    .await
                    .map(drop),
            ),
        ),
        (
            "RemoveUserFromGroups",
            code(
                users
                    .remove_user_from_groups(proto::RemoveUserFromGroupsRequest {
                        user_id: target.id.clone(),
                        group_ids: vec![held_covered_group.to_owned()],
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "UpdateUser",
            code(
                users
                    .update_user(proto::UpdateUserRequest {
                        user: Some(proto::User {
                            id: target.id.clone(),
                            first_name: "Renamed".into(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["first_name"]),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "SetUserStatus",
            code(
                users
                    .set_user_status(proto::SetUserStatusRequest {
                        user_id: target.id.clone(),
                        status: proto::UserStatus::Inactive as i32,
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "SendActivationEmail",
            code(
                users
                    .send_activation_email(proto::SendActivationEmailRequest {
                        user_ids: vec![target.id.clone()],
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
        ),
    ];
    let mirrored = app
        .mirror_user(
            bearer.clone(),
            mirror_request(&reference.id, &[&target.id], proto::MirrorMode::Replace),
        )
        .await;
    outcomes.push(("MirrorUser onto", mirrored[0].error_code.clone()));
    let email = &target.email;
    let import_rows = [
        (
            "import update row",
            format!("action,email,first_name\nupdate,{email},Renamed\n"),
            proto::OnExisting::Fail,
        ),
        (
            "import add row updating an existing user",
            format!("first_name,last_name,email\nRenamed,Person,{email}\n"),
            proto::OnExisting::Update,
        ),
    ];
    for (what, file, on_existing) in import_rows {
        outcomes.push((what, import_row(app, bearer, &file, on_existing).await));
    }
    let deleted = users
        .delete_user(proto::DeleteUserRequest {
            user_id: target.id.clone(),
        })
        .await
        .map(drop);
    outcomes.push(("DeleteUser", code(deleted)));
    let file = format!(
        "action,email,username\ndelete,{},{}\n",
        target.email, target.username
    );
    outcomes.push((
        "import delete row",
        import_row(app, bearer, &file, proto::OnExisting::Fail).await,
    ));
    outcomes
}

/// The outcome of a one-row import, or the code of its first error.
async fn import_row(
    app: &TestApp,
    bearer: &Bearer,
    file: &str,
    on_existing: proto::OnExisting,
) -> String {
    let run = run_import(
        app,
        bearer.clone(),
        false,
        proto::ImportOptions {
            on_existing: on_existing as i32,
            ..options()
        },
        file.as_bytes(),
        64 * 1024,
    )
    .await;
    let row = &run.rows[0];
    match RowOutcome::try_from(row.outcome).unwrap() {
        RowOutcome::Failed => row.errors[0].code.clone(),
        other => format!("{other:?}"),
    }
}

async fn group_ids_of(app: &TestApp, user_id: &str) -> Vec<String> {
    app.sorted_user_groups(user_id, |g| g.id).await
}

#[tokio::test]
async fn a_unit_admin_may_act_by_no_path_on_a_user_holding_an_uncovered_group() {
    let (app, o, south_admin) = groups::spawn_with_south_admin().await;
    let admins = group(&app, "Admins", &o.admin_profile, UnitScope::AllUnits, &[]).await;
    let cashier_anywhere = group(
        &app,
        "Cashier on no unit",
        &o.cashier_profile,
        UnitScope::NoUnit,
        &[],
    )
    .await;
    let reference = app.create_user("Ref", "Erence", "ref@acme.test").await;

    let org_admin = user_in(
        &app,
        "Org",
        "Admin",
        "org.admin@acme.test",
        &[&admins, &south_admin.cashier_south],
    )
    .await;
    let west_cashier =
        with_an_uncovered_group(&app, &south_admin, "West", "west.cashier@acme.test").await;

    for target in [&org_admin, &west_cashier] {
        let groups_before = group_ids_of(&app, &target.id).await;
        let outcomes = act_on_user_by_every_path(
            &app,
            &south_admin.bearer,
            target,
            &cashier_anywhere,
            &south_admin.cashier_south,
            &reference,
        )
        .await;
        for (what, outcome) in &outcomes {
            let expected = if what.starts_with("import") {
                "NOT_COVERED"
            } else if *what == "MirrorUser onto" {
                "PERMISSION_DENIED"
            } else {
                "PermissionDenied"
            };
            assert_eq!(outcome, expected, "{what} on {}", target.email);
        }
        // Still there: not deleted.
        let after = app.get_user(&target.id).await;
        assert_eq!(after.first_name, target.first_name, "not renamed");
        assert_eq!(after.status, target.status, "status unchanged");
        assert_eq!(group_ids_of(&app, &target.id).await, groups_before);
    }

    // The same paths reach a user whose groups the unit administrator all covers.
    let south_cashier = user_in(
        &app,
        "South",
        "Cashier",
        "south.cashier@acme.test",
        &[&south_admin.cashier_south],
    )
    .await;
    let outcomes = act_on_user_by_every_path(
        &app,
        &south_admin.bearer,
        &south_cashier,
        &cashier_anywhere,
        &south_admin.cashier_south,
        &reference,
    )
    .await;
    assert_eq!(
        outcomes,
        [
            ("AddUserToGroups", "OK".to_owned()),
            ("RemoveUserFromGroups", "OK".to_owned()),
            ("UpdateUser", "OK".to_owned()),
            ("SetUserStatus", "OK".to_owned()),
            ("SendActivationEmail", "OK".to_owned()),
            ("MirrorUser onto", String::new()),
            // UpdateUser already set this first name.
            ("import update row", "Unchanged".to_owned()),
            (
                "import add row updating an existing user",
                "Updated".to_owned()
            ),
            ("DeleteUser", "OK".to_owned()),
            // DeleteUser removed them just before.
            ("import delete row", "USER_NOT_FOUND".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_denied_membership_change_names_the_user_and_a_group_out_of_reach() {
    let (app, _, south) = groups::spawn_with_south_admin().await;
    let target = user_in(
        &app,
        "West",
        "Cashier",
        "w@acme.test",
        &[&south.cashier_west],
    )
    .await;
    let status = give(&app, south.bearer, &target.id, &[&south.cashier_south])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains(&target.id),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(&south.cashier_west),
        "{}",
        status.message()
    );
}

/// UpdateGroup of the fields `changes` sets, named in `paths`.
async fn update_group(
    app: &TestApp,
    bearer: &Bearer,
    changes: proto::Group,
    paths: &[&str],
) -> Result<proto::Group, tonic::Status> {
    app.groups(bearer.clone())
        .update_group(proto::UpdateGroupRequest {
            group: Some(changes),
            update_mask: mask(paths),
        })
        .await
        .map(|r| r.into_inner().group.unwrap())
}

/// A group the unit administrator covers ("Cashier South night"), held by
/// someone they may not act on.
async fn covered_group_with_a_member_out_of_reach(
    app: &TestApp,
    o: &groups::Org,
    member_out_of_reach: &proto::User,
) -> String {
    let night = groups::cashiers_on_south(app, o, "Cashier South night").await;
    give(app, app.as_admin(), &member_out_of_reach.id, &[&night])
        .await
        .unwrap();
    night
}

#[tokio::test]
async fn a_unit_admin_may_not_change_or_delete_a_covered_group_with_a_member_out_of_reach() {
    let (app, o, south) = groups::spawn_with_south_admin().await;
    let admins = group(&app, "Admins", &o.admin_profile, UnitScope::AllUnits, &[]).await;
    let org_admin = user_in(&app, "Org", "Admin", "org.admin@acme.test", &[&admins]).await;
    let west_cashier = user_in(
        &app,
        "West",
        "Cashier",
        "west.cashier@acme.test",
        &[&south.cashier_west],
    )
    .await;

    for member in [&org_admin, &west_cashier] {
        let night = covered_group_with_a_member_out_of_reach(&app, &o, member).await;
        let mut unit_groups = app.groups(south.bearer.clone());
        let to_admin_on_south = update_group(
            &app,
            &south.bearer,
            proto::Group {
                id: night.clone(),
                profile_id: o.admin_profile.clone(),
                ..Default::default()
            },
            &["profile_id"],
        )
        .await
        .unwrap_err();
        let renamed = update_group(
            &app,
            &south.bearer,
            proto::Group {
                id: night.clone(),
                name: "Cashier South late".into(),
                ..Default::default()
            },
            &["name"],
        )
        .await
        .unwrap_err();
        let deleted = unit_groups
            .delete_group(proto::DeleteGroupRequest {
                group_id: night.clone(),
            })
            .await
            .unwrap_err();
        for (what, status) in [
            ("turned into Admin on South", to_admin_on_south),
            ("renamed", renamed),
            ("deleted", deleted),
        ] {
            assert_eq!(status.code(), Code::PermissionDenied, "{what}");
            assert!(
                status.message().contains(&member.email),
                "{what}: names the member: {}",
                status.message()
            );
        }
        let unchanged = app.get_group(&night).await;
        assert_eq!(
            (unchanged.name.as_str(), unchanged.profile_id.as_str()),
            ("Cashier South night", o.cashier_profile.as_str())
        );
        assert_eq!(
            group_ids_of(&app, &member.id).await.len(),
            2,
            "still a member"
        );

        // Once the member out of reach has left, the covered group is the unit administrator's to change.
        groups::take(&app, app.as_admin(), &member.id, &[&night])
            .await
            .unwrap();
        unit_groups
            .delete_group(proto::DeleteGroupRequest { group_id: night })
            .await
            .expect("no member out of reach");
    }
}

#[tokio::test]
async fn the_built_in_profiles_refuse_no_unit_on_create_and_update_with_a_hint() {
    let app = TestApp::spawn().await;
    let o = groups::org(&app).await;
    let mut admin_groups = app.groups(app.as_admin());
    let create = |name: &str, profile: &str, scope: UnitScope| proto::CreateGroupRequest {
        group: Some(proto::Group {
            name: name.into(),
            profile_id: profile.into(),
            unit_scope: scope as i32,
            unit_ids: if scope == UnitScope::Units {
                vec![o.south.clone()]
            } else {
                vec![]
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let assert_refused = |what: &str, status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert_eq!(violated_fields(&status), ["group.unit_scope"], "{what}");
        let reasons: Vec<String> = status
            .get_details_bad_request()
            .map(|bad| bad.field_violations.into_iter().map(|v| v.reason).collect())
            .unwrap_or_default();
        assert_eq!(reasons, ["BUILT_IN_PROFILE_NEEDS_UNITS"], "{what}");
        assert!(
            status.message().contains("UNIT_SCOPE_ALL_UNITS")
                && status.message().contains("UNIT_SCOPE_UNITS"),
            "{what}: hints at the scopes to use: {}",
            status.message()
        );
    };
    for (profile, name) in [(&o.admin_profile, "Admin"), (&o.viewer_profile, "Viewer")] {
        let status = admin_groups
            .create_group(create(
                &format!("User Management – {name}"),
                profile,
                UnitScope::NoUnit,
            ))
            .await
            .unwrap_err();
        assert_refused(&format!("create {name} on NO_UNIT"), status);
    }
    let groups_now = admin_groups
        .list_groups(proto::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(groups_now.is_empty(), "nothing created: {groups_now:?}");

    // A unit list is fine, and NO_UNIT is fine for a product's own profile;
    // updated onto NO_UNIT with a built-in profile, either is refused.
    let admin_south = admin_groups
        .create_group(create("Admin South", &o.admin_profile, UnitScope::Units))
        .await
        .answered();
    let cashiers = admin_groups
        .create_group(create("Cashiers", &o.cashier_profile, UnitScope::NoUnit))
        .await
        .answered();
    let refused_updates = [
        (
            "update Admin South to NO_UNIT",
            proto::Group {
                id: admin_south.id,
                unit_scope: UnitScope::NoUnit as i32,
                ..Default::default()
            },
            "unit_scope",
        ),
        (
            "update Cashiers on NO_UNIT to the Viewer profile",
            proto::Group {
                id: cashiers.id,
                profile_id: o.viewer_profile.clone(),
                ..Default::default()
            },
            "profile_id",
        ),
    ];
    for (what, changes, path) in refused_updates {
        let status = update_group(&app, &app.as_admin(), changes, &[path])
            .await
            .unwrap_err();
        assert_refused(what, status);
    }
    admin_groups
        .create_group(create("Admins", &o.admin_profile, UnitScope::AllUnits))
        .await
        .expect("ALL_UNITS is fine");
}

/// A cashier `first` holding Cashier South (covered by the south
/// administrator) and Cashier West (not covered).
async fn with_an_uncovered_group(
    app: &TestApp,
    admin: &SouthAdmin,
    first: &str,
    email: &str,
) -> proto::User {
    let groups = [admin.cashier_south.as_str(), admin.cashier_west.as_str()];
    user_in(app, first, "Cashier", email, &groups).await
}

async fn source_with_an_uncovered_group(app: &TestApp, admin: &SouthAdmin) -> proto::User {
    with_an_uncovered_group(app, admin, "Source", "source@acme.test").await
}

#[tokio::test]
async fn clone_user_from_a_user_with_an_uncovered_group_copies_the_covered_one_and_reports_the_other(
) {
    let (app, _, admin) = groups::spawn_with_south_admin().await;
    let source = source_with_an_uncovered_group(&app, &admin).await;
    let cloned = app
        .users(admin.bearer.clone())
        .clone_user(proto::CloneUserRequest {
            source_user_id: source.id.clone(),
            user: Some(proto::User {
                first_name: "New".into(),
                last_name: "Cashier".into(),
                email: "new@acme.test".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("skipping blocks nothing")
        .into_inner();
    assert_eq!(cloned.skipped_group_ids, [admin.cashier_west.clone()]);
    assert_eq!(
        group_ids_of(&app, &cloned.user.unwrap().id).await,
        [admin.cashier_south.clone()]
    );
}

#[tokio::test]
async fn mirror_user_from_a_user_with_an_uncovered_group_copies_the_covered_one_and_reports_the_other(
) {
    let (app, _, admin) = groups::spawn_with_south_admin().await;
    let source = source_with_an_uncovered_group(&app, &admin).await;
    let target = app.create_user("Plain", "Target", "plain@acme.test").await;
    let results = app
        .mirror_user(
            admin.bearer.clone(),
            mirror_request(&source.id, &[&target.id], proto::MirrorMode::Add),
        )
        .await;
    assert!(results[0].applied, "skipping blocks nothing: {results:?}");
    assert_eq!(results[0].added_group_ids, [admin.cashier_south.clone()]);
    assert_eq!(results[0].skipped_group_ids, [admin.cashier_west.clone()]);
    assert_eq!(
        group_ids_of(&app, &target.id).await,
        [admin.cashier_south.clone()]
    );
}

#[tokio::test]
async fn an_import_mirroring_a_user_with_an_uncovered_group_gives_the_covered_one_and_reports_the_other(
) {
    let (app, _, admin) = groups::spawn_with_south_admin().await;
    let source = source_with_an_uncovered_group(&app, &admin).await;
    let run = run_import(
        &app,
        admin.bearer.clone(),
        false,
        proto::ImportOptions {
            mirror_user_id: source.id.clone(),
            ..options()
        },
        b"first_name,last_name,email\nNew,Cashier,new@acme.test\n",
        64 * 1024,
    )
    .await;
    assert_eq!(
        run.outcomes(),
        [(2, RowOutcome::Created)],
        "{:?}",
        run.error
    );
    let warnings: Vec<(&str, &str)> = run.rows[0]
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.code.as_str()))
        .collect();
    assert_eq!(warnings, [("groups", "GROUP_SKIPPED")]);
    assert!(run.rows[0].warnings[0]
        .message
        .contains(&admin.cashier_west));
    assert_eq!(
        group_ids_of(&app, &run.rows[0].user_id).await,
        [admin.cashier_south.clone()]
    );
}

/// The id each create call returns for `request_id`, as `bearer`; `n` keeps names apart.
async fn create_everything(
    app: &TestApp,
    bearer: &Bearer,
    request_id: &str,
    n: usize,
    o: &groups::Org,
    source_id: &str,
) -> Vec<(&'static str, String)> {
    let request_id = request_id.to_owned();
    let person = |kind: &str| proto::User {
        first_name: "Idem".into(),
        last_name: "Potent".into(),
        email: format!("{kind}{n}@acme.test"),
        ..Default::default()
    };
    let mut users = app.users(bearer.clone());
    let mut groups = app.groups(bearer.clone());
    let user = users
        .create_user(proto::CreateUserRequest {
            user: Some(person("created")),
            request_id: request_id.clone(),
            ..Default::default()
        })
        .await
        .created_id();
    let clone = users
        .clone_user(proto::CloneUserRequest {
            source_user_id: source_id.into(),
            user: Some(person("cloned")),
            request_id: request_id.clone(),
            ..Default::default()
        })
        .await
        .created_id();
    let group = groups
        .create_group(proto::CreateGroupRequest {
            request_id: request_id.clone(),
            ..new_group(
                format!("Group {n}"),
                &o.cashier_profile,
                UnitScope::NoUnit,
                &[],
            )
        })
        .await
        .created_id();
    let unit = groups
        .create_unit(proto::CreateUnitRequest {
            request_id: request_id.clone(),
            ..new_unit(format!("Unit {n}"), proto::UnitKind::Store)
        })
        .await
        .created_id();
    let profile = groups
        .create_profile(proto::CreateProfileRequest {
            request_id: request_id.clone(),
            ..new_profile("POS", format!("Profile {n}"))
        })
        .await
        .created_id();
    let key = app
        .auth(bearer.clone())
        .create_api_key(proto::CreateApiKeyRequest {
            name: format!("Key {n}"),
            scopes: vec![proto::Scope::Viewer as i32],
            request_id,
            ..Default::default()
        })
        .await
        .created_id();
    vec![
        ("CreateUser", user),
        ("CloneUser", clone),
        ("CreateGroup", group),
        ("CreateUnit", unit),
        ("CreateProfile", profile),
        ("CreateApiKey", key),
    ]
}

#[tokio::test]
async fn a_request_id_replays_only_for_the_caller_who_sent_it() {
    let app = TestApp::spawn().await;
    let o = groups::org(&app).await;
    let source = app.create_user("Clone", "Source", "source@acme.test").await;
    let first_key = app.as_admin();
    let second_key = Bearer::token(
        &app.create_api_key(app.organization_id, "second", &[Scope::Admin])
            .await,
    );
    let (_, org_admin_user) = organization_admin(&app, &o, "org.admin@acme.test").await;

    let first = create_everything(&app, &first_key, "retry-1", 1, &o, &source.id).await;
    let replayed = create_everything(&app, &first_key, "retry-1", 2, &o, &source.id).await;
    assert_eq!(
        replayed, first,
        "the same caller gets the first results back"
    );
    for (n, other_caller) in [(3, &second_key), (4, &org_admin_user)] {
        let theirs = create_everything(&app, other_caller, "retry-1", n, &o, &source.id).await;
        for ((operation, first_id), (_, their_id)) in first.iter().zip(&theirs) {
            assert_ne!(
                first_id, their_id,
                "{operation}: another caller's request id is their own"
            );
        }
        let replayed =
            create_everything(&app, other_caller, "retry-1", n + 10, &o, &source.id).await;
        assert_eq!(replayed, theirs, "and replays for them");
    }
    let mut ids: Vec<&String> = first.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        first.len(),
        "CreateUser and CloneUser with one request id are two requests"
    );
}

/// During a rolling upgrade, replicas of the previous release still insert
/// idempotency keys without a caller; migration 0007 must not fail them.
#[tokio::test]
async fn a_replica_of_the_previous_release_can_still_record_a_request_id() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("Old", "Replica", "old.replica@acme.test")
        .await;

    sqlx::query(
        "insert into idempotent_requests (organization_id, operation, request_id, resource_id) \
         select organization_id, 'user.create', 'previous-release', id from users where id = $1",
    )
    .bind(uuid::Uuid::parse_str(&user.id).unwrap())
    .execute(&app.pool)
    .await
    .expect("the previous release's insert, without a caller");
    let caller: String = sqlx::query_scalar(
        "select caller from idempotent_requests where request_id = 'previous-release'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        caller, "",
        "a key without a caller is never replayed to anyone"
    );
}

/// A single call, a re-invitation and an import row refuse a user out of
/// reach with the same sentence, naming the user and a group not covered.
#[tokio::test]
async fn every_refusal_to_act_on_a_user_names_the_user_and_a_group_out_of_reach() {
    let (app, _, south) = groups::spawn_with_south_admin().await;
    let target = with_an_uncovered_group(&app, &south, "West", "west@acme.test").await;
    let names_both = |message: &str| {
        assert!(message.contains(&target.id), "{message}");
        assert!(message.contains(&south.cashier_west), "{message}");
    };

    let mut users = app.users(south.bearer.clone());
    let status = users
        .set_user_status(proto::SetUserStatusRequest {
            user_id: target.id.clone(),
            status: proto::UserStatus::Inactive as i32,
        })
        .await
        .expect_err("out of reach");
    assert_eq!(status.code(), Code::PermissionDenied);
    names_both(status.message());
    let status = users
        .send_activation_email(proto::SendActivationEmailRequest {
            user_ids: vec![target.id.clone()],
            ..Default::default()
        })
        .await
        .expect_err("out of reach");
    assert_eq!(status.code(), Code::PermissionDenied);
    names_both(status.message());
    let run = run_import(
        &app,
        south.bearer,
        false,
        options(),
        format!("action,email,first_name\nupdate,{},Renamed\n", target.email).as_bytes(),
        64 * 1024,
    )
    .await;
    let error = &run.rows[0].errors[0];
    assert_eq!(
        (error.field.as_str(), error.code.as_str()),
        ("row", "NOT_COVERED")
    );
    names_both(&error.message);
}
