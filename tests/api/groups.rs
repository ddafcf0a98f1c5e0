use roster::proto::{self, UnitScope};
use tonic::Code;

use crate::{
    helpers::{error_reason, violated_fields, Bearer, TestApp},
    users::builtin_profile,
};

/// Fixtures of the spec's example: Admin and Cashier profiles, South and West units.
pub struct Org {
    pub admin_profile: String,
    pub viewer_profile: String,
    pub cashier_profile: String,
    pub south: String,
    pub west: String,
}

pub async fn org(app: &TestApp) -> Org {
    let mut groups = app.groups(app.as_admin());
    let cashier_profile = groups
        .create_profile(proto::CreateProfileRequest {
            profile: Some(proto::Profile {
                product: "POS".into(),
                name: "Cashier".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .id;
    let unit = |name: &str| {
        let mut groups = groups.clone();
        let name = name.to_owned();
        async move {
            groups
                .create_unit(proto::CreateUnitRequest {
                    unit: Some(proto::Unit {
                        name,
                        kind: proto::UnitKind::Branch as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .unit
                .unwrap()
                .id
        }
    };
    let south = unit("South Zone").await;
    let west = unit("West Zone").await;
    Org {
        admin_profile: builtin_profile(app, "Admin").await,
        viewer_profile: builtin_profile(app, "Viewer").await,
        cashier_profile,
        south,
        west,
    }
}

pub async fn group(
    app: &TestApp,
    name: &str,
    profile: &str,
    scope: UnitScope,
    units: &[&str],
) -> String {
    app.groups(app.as_admin())
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                name: name.into(),
                profile_id: profile.into(),
                unit_scope: scope as i32,
                unit_ids: units.iter().map(|u| (*u).to_owned()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
        .id
}

pub async fn give(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    groups: &[&str],
) -> Result<Vec<String>, tonic::Status> {
    app.users(bearer)
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: user_id.into(),
            group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
        .await
        .map(|r| r.into_inner().added_group_ids)
}

/// A unit administrator of the spec's examples: Admin and Cashier on South
/// (signed in), beside a Cashier group on West they do not cover.
pub struct SouthAdmin {
    pub cashier_south: String,
    pub cashier_west: String,
    pub user: proto::User,
    pub bearer: Bearer,
}

pub async fn south_admin(app: &TestApp, o: &Org) -> SouthAdmin {
    let on = |name: &'static str, profile: &str, unit: &str| {
        let (profile, unit) = (profile.to_owned(), unit.to_owned());
        async move { group(app, name, &profile, UnitScope::Units, &[&unit]).await }
    };
    let admin_south = on("Admin South", &o.admin_profile, &o.south).await;
    let cashier_south = on("Cashier South", &o.cashier_profile, &o.south).await;
    let cashier_west = on("Cashier West", &o.cashier_profile, &o.west).await;
    let (user, bearer) = holder(
        app,
        "south.admin@acme.test",
        &[&admin_south, &cashier_south],
    )
    .await;
    SouthAdmin {
        cashier_south,
        cashier_west,
        user,
        bearer,
    }
}

/// A signed-in user holding the given groups.
pub async fn holder(app: &TestApp, email: &str, groups: &[&str]) -> (proto::User, Bearer) {
    let (user, bearer) = app.signed_in_user(email).await;
    give(app, app.as_admin(), &user.id, groups).await.unwrap();
    (user, bearer)
}

#[tokio::test]
async fn the_who_may_do_what_table_of_the_spec() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let (south, west) = (o.south.as_str(), o.west.as_str());
    let admin_all = group(&app, "Admins", &o.admin_profile, UnitScope::AllUnits, &[]).await;
    let admin_south = group(
        &app,
        "Admin South",
        &o.admin_profile,
        UnitScope::Units,
        &[south],
    )
    .await;
    let cashier_south = group(
        &app,
        "Cashier South",
        &o.cashier_profile,
        UnitScope::Units,
        &[south],
    )
    .await;
    let cashier_west = group(
        &app,
        "Cashier West",
        &o.cashier_profile,
        UnitScope::Units,
        &[west],
    )
    .await;
    let cashier_both = group(
        &app,
        "Cashier South West",
        &o.cashier_profile,
        UnitScope::Units,
        &[south, west],
    )
    .await;
    let cashier_no_unit = group(&app, "Cashier", &o.cashier_profile, UnitScope::NoUnit, &[]).await;
    let cashier_all = group(
        &app,
        "Cashier everywhere",
        &o.cashier_profile,
        UnitScope::AllUnits,
        &[],
    )
    .await;

    let (_, org_admin) = holder(&app, "org.admin@acme.test", &[&admin_all]).await;
    let (_, unit_admin) = holder(
        &app,
        "south.admin@acme.test",
        &[&admin_south, &cashier_south],
    )
    .await;
    let (_, union_admin) = holder(
        &app,
        "union.admin@acme.test",
        &[&admin_south, &cashier_south, &cashier_west],
    )
    .await;
    let (_, only_admin_south) = holder(&app, "only.admin@acme.test", &[&admin_south]).await;

    let cases: Vec<(&str, Bearer, &str, bool)> = vec![
        (
            "API key ADMIN gives any group",
            app.as_admin(),
            cashier_all.as_str(),
            true,
        ),
        (
            "Admin/ALL_UNITS gives Cashier on South",
            org_admin.clone(),
            cashier_south.as_str(),
            true,
        ),
        (
            "Admin/{South}+Cashier/{South} gives Cashier on South",
            unit_admin.clone(),
            cashier_south.as_str(),
            true,
        ),
        (
            "Admin/{South}+Cashier/{South} gives Cashier on West",
            unit_admin.clone(),
            cashier_west.as_str(),
            false,
        ),
        (
            "union gives Cashier on South, West",
            union_admin.clone(),
            cashier_both.as_str(),
            true,
        ),
        (
            "Admin/{South}+Cashier/{South} gives Cashier NO_UNIT",
            unit_admin.clone(),
            cashier_no_unit.as_str(),
            true,
        ),
        (
            "Admin/{South}+Cashier/{South} gives Cashier ALL_UNITS",
            unit_admin.clone(),
            cashier_all.as_str(),
            false,
        ),
        (
            "Admin/{South} gives Admin on South (a peer)",
            only_admin_south.clone(),
            admin_south.as_str(),
            true,
        ),
        (
            "Admin/{South} gives Admin on ALL_UNITS",
            only_admin_south.clone(),
            admin_all.as_str(),
            false,
        ),
    ];
    for (index, (case, bearer, group_id, allowed)) in cases.into_iter().enumerate() {
        // A fresh target each time: one holding an earlier case's group may be out of reach.
        let target = app
            .create_user("Target", "User", &format!("target{index}@acme.test"))
            .await;
        let result = give(&app, bearer, &target.id, &[group_id]).await;
        match (allowed, result) {
            (true, Ok(_)) => {}
            (false, Err(status)) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{case}");
                assert!(
                    status.message().contains(group_id),
                    "{case}: names the group"
                );
            }
            (expected, outcome) => panic!("{case}: expected allowed={expected}, got {outcome:?}"),
        }
    }

    // Acting on a user who holds an uncovered group.
    let west_cashier = app
        .create_user("West", "Cashier", "west.cashier@acme.test")
        .await;
    give(&app, app.as_admin(), &west_cashier.id, &[&cashier_west])
        .await
        .unwrap();
    let status = app
        .users(only_admin_south.clone())
        .set_user_status(proto::SetUserStatusRequest {
            user_id: west_cashier.id.clone(),
            status: proto::UserStatus::Inactive as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "deactivate a user holding Cashier on West"
    );
    let status = app
        .users(only_admin_south.clone())
        .delete_user(proto::DeleteUserRequest {
            user_id: west_cashier.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // The unit administrator may act on a user whose groups they cover.
    let south_cashier = app
        .create_user("South", "Cashier", "south.cashier@acme.test")
        .await;
    give(
        &app,
        unit_admin.clone(),
        &south_cashier.id,
        &[&cashier_south],
    )
    .await
    .unwrap();
    app.users(unit_admin.clone())
        .set_user_status(proto::SetUserStatusRequest {
            user_id: south_cashier.id.clone(),
            status: proto::UserStatus::OnVacation as i32,
        })
        .await
        .unwrap();

    // Profiles, units, keys and settings are for organization administrators.
    let denied = [
        app.groups(only_admin_south.clone())
            .create_profile(proto::CreateProfileRequest {
                profile: Some(proto::Profile {
                    product: "X".into(),
                    name: "Y".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(drop),
        app.groups(only_admin_south.clone())
            .create_unit(proto::CreateUnitRequest {
                unit: Some(proto::Unit {
                    name: "North".into(),
                    kind: proto::UnitKind::Store as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(drop),
        app.auth(only_admin_south.clone())
            .create_api_key(proto::CreateApiKeyRequest {
                name: "mine".into(),
                scopes: vec![proto::Scope::Admin as i32],
                ..Default::default()
            })
            .await
            .map(drop),
    ];
    for result in denied {
        assert_eq!(result.unwrap_err().code(), Code::PermissionDenied);
    }
    app.groups(org_admin.clone())
        .create_unit(proto::CreateUnitRequest {
            unit: Some(proto::Unit {
                name: "North".into(),
                kind: proto::UnitKind::Store as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("Admin on all units is an organization administrator");

    // Groups: a unit administrator creates and changes only groups covered before and after.
    let mut unit_groups = app.groups(unit_admin.clone());
    let created = unit_groups
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                name: "South cashiers (night)".into(),
                profile_id: o.cashier_profile.clone(),
                unit_scope: UnitScope::Units as i32,
                unit_ids: vec![o.south.clone()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    let status = unit_groups
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: created.id.clone(),
                unit_ids: vec![o.west.clone()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["unit_ids".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "not covered after the change"
    );
    let status = unit_groups
        .delete_group(proto::DeleteGroupRequest {
            group_id: cashier_west.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "not covered before");
}

#[tokio::test]
async fn nobody_deletes_or_changes_the_status_of_themselves() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let admins = group(&app, "Admins", &o.admin_profile, UnitScope::AllUnits, &[]).await;
    let (me, bearer) = holder(&app, "me@acme.test", &[&admins]).await;
    let mut users = app.users(bearer);
    let status = users
        .set_user_status(proto::SetUserStatusRequest {
            user_id: me.id.clone(),
            status: proto::UserStatus::Inactive as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("yourself"));
    let status = users
        .delete_user(proto::DeleteUserRequest {
            user_id: me.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn scopes_and_access_come_from_the_groups_while_the_user_can_sign_in() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let viewers = group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    let cashiers = group(
        &app,
        "Cashier South",
        &o.cashier_profile,
        UnitScope::Units,
        &[&o.south],
    )
    .await;
    let (user, bearer) = holder(&app, "v@acme.test", &[&viewers, &cashiers]).await;

    let me = app
        .auth(bearer.clone())
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.scopes, [proto::Scope::Viewer as i32]);
    assert!(!me.organization_admin);
    app.users(bearer.clone())
        .list_users(proto::ListUsersRequest::default())
        .await
        .expect("a viewer reads");
    let status = app
        .users(bearer.clone())
        .create_user(proto::CreateUserRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let access = app
        .users(app.as_admin())
        .get_user_access(proto::GetUserAccessRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(access.can_sign_in);
    assert_eq!(access.status, proto::UserStatus::Active as i32);
    assert_eq!(access.scopes, [proto::Scope::Viewer as i32]);
    let mut grants: Vec<(String, i32, Vec<String>)> = access
        .grants
        .into_iter()
        .map(|g| (g.profile_name, g.unit_scope, g.unit_ids))
        .collect();
    grants.sort();
    assert_eq!(
        grants,
        [
            (
                "Cashier".to_owned(),
                UnitScope::Units as i32,
                vec![o.south.clone()]
            ),
            ("Viewer".to_owned(), UnitScope::AllUnits as i32, vec![]),
        ]
    );

    app.users(app.as_admin())
        .set_user_status(proto::SetUserStatusRequest {
            user_id: user.id.clone(),
            status: proto::UserStatus::OnVacation as i32,
        })
        .await
        .unwrap();
    let access = app
        .users(app.as_admin())
        .get_user_access(proto::GetUserAccessRequest {
            user_id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!access.can_sign_in);
    assert_eq!(access.status, proto::UserStatus::OnVacation as i32);
    assert!(
        access.grants.is_empty() && access.scopes.is_empty(),
        "nothing to authorize while away"
    );
    let status = app
        .auth(bearer)
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "leaving ACTIVE revoked the token"
    );
}

#[tokio::test]
async fn groups_units_and_profiles_have_full_crud_with_clear_refusals() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let mut groups = app.groups(app.as_admin());

    let status = groups
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                name: "A|B".into(),
                profile_id: "nope".into(),
                unit_scope: UnitScope::Units as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["group.name", "group.profile_id", "group.unit_ids"]
    );
    let status = groups
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                name: "Ghost units".into(),
                profile_id: o.cashier_profile.clone(),
                unit_scope: UnitScope::Units as i32,
                unit_ids: vec![uuid::Uuid::new_v4().to_string()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let cashiers = group(
        &app,
        "Cashiers",
        &o.cashier_profile,
        UnitScope::Units,
        &[&o.south],
    )
    .await;
    let status = groups
        .create_group(proto::CreateGroupRequest {
            group: Some(proto::Group {
                name: "CASHIERS".into(),
                profile_id: o.cashier_profile.clone(),
                unit_scope: UnitScope::NoUnit as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("GROUP_ALREADY_EXISTS")
    );

    let member = app.create_user("Carla", "Caixa", "carla@acme.test").await;
    give(&app, app.as_admin(), &member.id, &[&cashiers])
        .await
        .unwrap();
    let fetched = groups
        .get_group(proto::GetGroupRequest {
            group_id: cashiers.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(fetched.member_count, 1);
    let members = groups
        .list_group_members(proto::ListGroupMembersRequest {
            group_id: cashiers.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.users[0].id, member.id);
    let south_users = app
        .users(app.as_admin())
        .list_users(proto::ListUsersRequest {
            unit_id: o.south.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        south_users.users.len(),
        1,
        "members of groups scoped to the unit"
    );

    // In use: the profile and the unit cannot go.
    let status = groups
        .delete_profile(proto::DeleteProfileRequest {
            profile_id: o.cashier_profile.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), error_reason(&status).as_deref()),
        (Code::FailedPrecondition, Some("PROFILE_IN_USE"))
    );
    let status = groups
        .delete_unit(proto::DeleteUnitRequest {
            unit_id: o.south.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), error_reason(&status).as_deref()),
        (Code::FailedPrecondition, Some("UNIT_IN_USE"))
    );
    // Built-in profiles are not editable.
    let status = groups
        .update_profile(proto::UpdateProfileRequest {
            profile: Some(proto::Profile {
                id: o.admin_profile.clone(),
                name: "Root".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status).as_deref(), Some("BUILT_IN_PROFILE"));
    let status = groups
        .delete_profile(proto::DeleteProfileRequest {
            profile_id: o.viewer_profile.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status).as_deref(), Some("BUILT_IN_PROFILE"));

    // Updates by mask.
    let renamed = groups
        .update_unit(proto::UpdateUnitRequest {
            unit: Some(proto::Unit {
                id: o.west.clone(),
                name: "West Side".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.kind),
        ("West Side", proto::UnitKind::Branch as i32)
    );
    let widened = groups
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: cashiers.clone(),
                unit_scope: UnitScope::AllUnits as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["unit_scope".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(
        (widened.unit_scope, widened.unit_ids.len()),
        (UnitScope::AllUnits as i32, 0)
    );
    groups
        .delete_unit(proto::DeleteUnitRequest {
            unit_id: o.south.clone(),
        })
        .await
        .expect("no longer in use");

    // Deleting a group removes its memberships.
    groups
        .delete_group(proto::DeleteGroupRequest {
            group_id: cashiers.clone(),
        })
        .await
        .unwrap();
    let left = app
        .users(app.as_admin())
        .list_user_groups(proto::ListUserGroupsRequest {
            user_id: member.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.total_size, 0);
    groups
        .delete_profile(proto::DeleteProfileRequest {
            profile_id: o.cashier_profile.clone(),
        })
        .await
        .expect("no longer in use");
    let events = app
        .organizations(app.as_admin())
        .list_audit_events(proto::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = events
        .audit_events
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    for expected in [
        "profile.delete",
        "group.delete",
        "unit.delete",
        "group.update",
        "unit.update",
        "user.groups.add",
        "group.create",
        "unit.create",
        "profile.create",
    ] {
        assert!(actions.contains(&expected), "{expected} audited");
    }
}

#[tokio::test]
async fn removing_a_group_takes_effect_on_the_next_resolution_and_adding_twice_is_harmless() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let viewers = group(&app, "Viewers", &o.viewer_profile, UnitScope::AllUnits, &[]).await;
    let user = app.create_user("Ian", "Viewer", "ian@acme.test").await;
    assert_eq!(
        give(&app, app.as_admin(), &user.id, &[&viewers])
            .await
            .unwrap(),
        [viewers.clone()]
    );
    assert!(give(&app, app.as_admin(), &user.id, &[&viewers])
        .await
        .unwrap()
        .is_empty());
    let removed = app
        .users(app.as_admin())
        .remove_user_from_groups(proto::RemoveUserFromGroupsRequest {
            user_id: user.id.clone(),
            group_ids: vec![viewers.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed_group_ids, [viewers]);
    let status = app
        .users(app.as_admin())
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: user.id,
            group_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["group_ids"]);
}

#[tokio::test]
async fn a_unit_admin_clones_a_user_getting_only_covered_groups_and_the_rest_reported_skipped() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let SouthAdmin {
        cashier_south,
        cashier_west,
        user: me,
        bearer: unit_admin,
        ..
    } = south_admin(&app, &o).await;
    let source = app
        .create_user("Source", "Cashier", "source@acme.test")
        .await;
    give(
        &app,
        app.as_admin(),
        &source.id,
        &[&cashier_south, &cashier_west],
    )
    .await
    .unwrap();

    let clone = |source_user_id: &str, email: &str| proto::CloneUserRequest {
        source_user_id: source_user_id.into(),
        user: Some(proto::User {
            first_name: "New".into(),
            last_name: "Cashier".into(),
            email: email.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cloned = app
        .users(unit_admin.clone())
        .clone_user(clone(&source.id, "new@acme.test"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cloned.skipped_group_ids, [cashier_west.clone()]);
    let groups_of_clone = app
        .users(app.as_admin())
        .list_user_groups(proto::ListUserGroupsRequest {
            user_id: cloned.user.unwrap().id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    let ids: Vec<String> = groups_of_clone.into_iter().map(|g| g.id).collect();
    assert_eq!(ids, [cashier_south.clone()]);

    let status = app
        .users(unit_admin.clone())
        .clone_user(clone(&me.id, "me2@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "nobody clones themselves"
    );
    let status = app
        .users(unit_admin.clone())
        .clone_user(clone("", "x@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["source_user_id"]);
    let status = app
        .users(unit_admin)
        .clone_user(clone(&uuid::Uuid::new_v4().to_string(), "y@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), violated_fields(&status)),
        (Code::NotFound, vec!["source_user_id".to_owned()])
    );
}

#[tokio::test]
async fn mirroring_adds_or_replaces_covered_groups_with_a_result_per_target() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let SouthAdmin {
        cashier_south,
        cashier_west,
        bearer: unit_admin,
        ..
    } = south_admin(&app, &o).await;
    let cashier = group(&app, "Cashier", &o.cashier_profile, UnitScope::NoUnit, &[]).await;

    let reference = app.create_user("Ref", "Erence", "ref@acme.test").await;
    give(
        &app,
        app.as_admin(),
        &reference.id,
        &[&cashier_south, &cashier_west],
    )
    .await
    .unwrap();
    let plain = app.create_user("Plain", "Target", "plain@acme.test").await;
    give(&app, app.as_admin(), &plain.id, &[&cashier])
        .await
        .unwrap();
    let western = app.create_user("West", "Target", "west@acme.test").await;
    give(&app, app.as_admin(), &western.id, &[&cashier_west])
        .await
        .unwrap();
    let missing = uuid::Uuid::new_v4().to_string();

    let mirror = |mode: proto::MirrorMode, targets: Vec<String>| proto::MirrorUserRequest {
        reference_user_id: reference.id.clone(),
        target_user_ids: targets,
        mode: mode as i32,
    };
    let results = app
        .users(unit_admin.clone())
        .mirror_user(mirror(
            proto::MirrorMode::Add,
            vec![plain.id.clone(), western.id.clone(), missing.clone()],
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 3);
    assert!(results[0].applied);
    assert_eq!(results[0].added_group_ids, [cashier_south.clone()]);
    assert_eq!(results[0].skipped_group_ids, [cashier_west.clone()]);
    assert_eq!(
        (results[1].applied, results[1].error_code.as_str()),
        (false, "PERMISSION_DENIED"),
        "holds an uncovered group"
    );
    assert_eq!(
        (results[2].applied, results[2].error_code.as_str()),
        (false, "NOT_FOUND")
    );

    let replaced = app
        .users(unit_admin)
        .mirror_user(mirror(proto::MirrorMode::Replace, vec![plain.id.clone()]))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(replaced[0].removed_group_ids, [cashier.clone()]);
    assert!(
        replaced[0].added_group_ids.is_empty(),
        "already had Cashier South"
    );
    let status = app
        .users(app.as_admin())
        .mirror_user(proto::MirrorUserRequest {
            reference_user_id: reference.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["target_user_ids", "mode"]);
}
