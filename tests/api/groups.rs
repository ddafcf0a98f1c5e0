use roster::proto::{self, UnitScope};
use tonic::Code;

use crate::{
    helpers::{
        error_reason, mask, mirror_request, new_group, new_profile, new_unit, violated_fields,
        Answered, Bearer, CreatedId, TestApp,
    },
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
        .create_profile(new_profile("POS", "Cashier"))
        .await
        .created_id();
    let branch = |name| new_unit(name, proto::UnitKind::Branch);
    let south = groups.create_unit(branch("South Zone")).await.created_id();
    let west = groups.create_unit(branch("West Zone")).await.created_id();
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
        .create_group(new_group(name, profile, scope, units))
        .await
        .created_id()
}

/// AddUserToGroups as `bearer`: the ids of the groups it added.
pub async fn give(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    groups: &[&str],
) -> Result<Vec<String>, tonic::Status> {
    let added = add_to_groups(app, bearer, user_id, groups).await?;
    Ok(added.added_group_ids)
}

/// AddUserToGroups as `bearer`, by group id.
pub async fn add_to_groups(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    groups: &[&str],
) -> Result<proto::AddUserToGroupsResponse, tonic::Status> {
    let request = proto::AddUserToGroupsRequest {
        user_id: user_id.into(),
        group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Default::default()
    };
    let answer = app.users(bearer).add_user_to_groups(request).await?;
    Ok(answer.into_inner())
}

/// RemoveUserFromGroups as `bearer`, by group id: give's undoing.
pub async fn take(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    groups: &[&str],
) -> Result<proto::RemoveUserFromGroupsResponse, tonic::Status> {
    let group_ids = groups.iter().map(|g| (*g).to_owned()).collect();
    app.users(bearer)
        .remove_user_from_groups(proto::RemoveUserFromGroupsRequest {
            user_id: user_id.into(),
            group_ids,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A fresh app with the spec's organization and its south administrator.
pub async fn spawn_with_south_admin() -> (TestApp, Org, SouthAdmin) {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let admin = south_admin(&app, &o).await;
    (app, o, admin)
}

/// A group of the Cashier profile on the South unit.
pub async fn cashiers_on_south(app: &TestApp, o: &Org, name: &str) -> String {
    group(app, name, &o.cashier_profile, UnitScope::Units, &[&o.south]).await
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

/// A user (not signed in) holding `groups`, given by the admin key.
pub async fn user_in(
    app: &TestApp,
    first: &str,
    last: &str,
    email: &str,
    groups: &[&str],
) -> proto::User {
    let user = app.create_user(first, last, email).await;
    give(app, app.as_admin(), &user.id, groups).await.unwrap();
    user
}

/// A signed-in holder of an "Admins" group (the Admin profile on all
/// units): an administrator of the whole organization.
pub async fn organization_admin(app: &TestApp, o: &Org, email: &str) -> (proto::User, Bearer) {
    let admins = group(app, "Admins", &o.admin_profile, UnitScope::AllUnits, &[]).await;
    holder(app, email, &[&admins]).await
}

/// A signed-in user holding the given groups.
pub async fn holder(app: &TestApp, email: &str, groups: &[&str]) -> (proto::User, Bearer) {
    let (user, bearer) = app.signed_in_user(email).await;
    give(app, app.as_admin(), &user.id, groups).await.unwrap();
    (user, bearer)
}

/// A call of the who-may-do-what table, made by the row's caller.
#[derive(Debug)]
enum Call {
    /// AddUserToGroups on a fresh user: one holding an earlier row's group
    /// may be out of the caller's reach.
    Give {
        group: String,
    },
    SetStatus {
        user: String,
        status: proto::UserStatus,
    },
    DeleteUser {
        user: String,
    },
    CreateProfile,
    CreateUnit,
    CreateAdminKey,
    CreateGroup {
        units: Vec<String>,
    },
    MoveGroup {
        group: String,
        units: Vec<String>,
    },
    DeleteGroup {
        group: String,
    },
}

impl Call {
    fn give(group: &str) -> Self {
        Self::Give {
            group: group.to_owned(),
        }
    }

    fn set_status(user: &str, status: proto::UserStatus) -> Self {
        Self::SetStatus {
            user: user.to_owned(),
            status,
        }
    }

    fn delete_user(user: &str) -> Self {
        Self::DeleteUser {
            user: user.to_owned(),
        }
    }

    fn create_group_on(unit: &str) -> Self {
        Self::CreateGroup {
            units: vec![unit.to_owned()],
        }
    }

    fn move_group(group: &str, unit: &str) -> Self {
        Self::MoveGroup {
            group: group.to_owned(),
            units: vec![unit.to_owned()],
        }
    }

    fn delete_group(group: &str) -> Self {
        Self::DeleteGroup {
            group: group.to_owned(),
        }
    }
}

#[derive(Debug)]
enum Expect {
    Allowed,
    Denied,
    /// Denied, with the message naming this id.
    DeniedNaming(String),
}

struct Row<'a> {
    case: &'static str,
    caller: &'a (&'static str, Bearer),
    call: Call,
    expect: Expect,
}

fn row<'a>(
    case: &'static str,
    caller: &'a (&'static str, Bearer),
    call: Call,
    expect: Expect,
) -> Row<'a> {
    Row {
        case,
        caller,
        call,
        expect,
    }
}

async fn make(
    app: &TestApp,
    bearer: Bearer,
    call: &Call,
    o: &Org,
    row_index: usize,
) -> Result<(), tonic::Status> {
    let mut groups = app.groups(bearer.clone());
    let mut users = app.users(bearer.clone());
    match call {
        Call::Give { group } => {
            let target = app
                .create_user("Target", "User", &format!("target{row_index}@acme.test"))
                .await;
            give(app, bearer, &target.id, &[group]).await.map(drop)
        }
        Call::SetStatus { user, status } => users
            .set_user_status(proto::SetUserStatusRequest {
                user_id: user.clone(),
                status: *status as i32,
            })
            .await
            .map(drop),
        Call::DeleteUser { user } => users
            .delete_user(proto::DeleteUserRequest {
                user_id: user.clone(),
            })
            .await
            .map(drop),
        Call::CreateProfile => groups
            .create_profile(new_profile("X", format!("Y{row_index}")))
            .await
            .map(drop),
        Call::CreateUnit => groups
            .create_unit(new_unit(
                format!("North {row_index}"),
                proto::UnitKind::Store,
            ))
            .await
            .map(drop),
        Call::CreateAdminKey => app
            .auth(bearer)
            .create_api_key(proto::CreateApiKeyRequest {
                name: format!("mine {row_index}"),
                scopes: vec![proto::Scope::Admin as i32],
                ..Default::default()
            })
            .await
            .map(drop),
        Call::CreateGroup { units } => {
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            let name = format!("Cashiers {row_index}");
            let request = new_group(name, &o.cashier_profile, UnitScope::Units, &units);
            groups.create_group(request).await.map(drop)
        }
        Call::MoveGroup { group, units } => groups
            .update_group(proto::UpdateGroupRequest {
                group: Some(proto::Group {
                    id: group.clone(),
                    unit_ids: units.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["unit_ids"]),
            })
            .await
            .map(drop),
        Call::DeleteGroup { group } => groups
            .delete_group(proto::DeleteGroupRequest {
                group_id: group.clone(),
            })
            .await
            .map(drop),
    }
}

/// A signed-in holder of `groups`, labelled for the table's rows.
async fn caller(app: &TestApp, label: &'static str, groups: &[&str]) -> (&'static str, Bearer) {
    let local: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
    let email = format!("{local}@acme.test");
    (label, holder(app, &email, groups).await.1)
}

/// A user (not signed in) holding `group`; returns their id.
async fn member(app: &TestApp, email: &str, group: &str) -> String {
    let user = app.create_user("Member", "User", email).await;
    give(app, app.as_admin(), &user.id, &[group]).await.unwrap();
    user.id
}

/// Makes every row's call in order and fails naming each row whose answer
/// differs: case, caller, call, expected and got, with ids shown by name.
async fn check_rows(app: &TestApp, o: &Org, rows: Vec<Row<'_>>, names: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let (caller, bearer) = row.caller;
        let got = make(app, bearer.clone(), &row.call, o, index).await;
        let as_expected = match (&row.expect, &got) {
            (Expect::Allowed, Ok(())) => true,
            (Expect::Denied, Err(status)) => status.code() == Code::PermissionDenied,
            (Expect::DeniedNaming(id), Err(status)) => {
                status.code() == Code::PermissionDenied && status.message().contains(id.as_str())
            }
            _ => false,
        };
        if !as_expected {
            let got = got.map_err(|status| (status.code(), status.message().to_owned()));
            let line = format!(
                "{}: {caller} calls {:?}: expected {:?}, got {got:?}",
                row.case, row.call, row.expect
            );
            let line = names
                .iter()
                .fold(line, |line, (id, name)| line.replace(id, name));
            wrong.push(line);
        }
    }
    assert!(
        wrong.is_empty(),
        "rows answered wrong:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn the_who_may_do_what_table_of_the_spec() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let (south, west) = (o.south.as_str(), o.west.as_str());
    use UnitScope::{AllUnits, NoUnit, Units};
    let cashier = o.cashier_profile.as_str();
    let admin_all = group(&app, "Admins", &o.admin_profile, AllUnits, &[]).await;
    let admin_south = group(&app, "Admin South", &o.admin_profile, Units, &[south]).await;
    let cashier_south = group(&app, "Cashier South", cashier, Units, &[south]).await;
    let cashier_west = group(&app, "Cashier West", cashier, Units, &[west]).await;
    let cashier_both = group(&app, "Cashier South West", cashier, Units, &[south, west]).await;
    let cashier_no_unit = group(&app, "Cashier", cashier, NoUnit, &[]).await;
    let cashier_all = group(&app, "Cashier everywhere", cashier, AllUnits, &[]).await;
    let south_night = group(&app, "South cashiers (night)", cashier, Units, &[south]).await;

    let key = ("API key ADMIN", app.as_admin());
    let org_admin = caller(&app, "Admin/ALL_UNITS", &[&admin_all]).await;
    let unit_admin = caller(
        &app,
        "Admin/{South}+Cashier/{South}",
        &[&admin_south, &cashier_south],
    )
    .await;
    let union_admin = caller(
        &app,
        "Admin/{South}+Cashier/{South}+Cashier/{West}",
        &[&admin_south, &cashier_south, &cashier_west],
    )
    .await;
    let only_admin_south = caller(&app, "Admin/{South}", &[&admin_south]).await;
    let west_cashier = member(&app, "west.cashier@acme.test", &cashier_west).await;
    let south_cashier = member(&app, "south.cashier@acme.test", &cashier_south).await;

    use proto::UserStatus::{Inactive, OnVacation};
    use Call::{CreateAdminKey, CreateProfile, CreateUnit};
    use Expect::{Allowed, Denied};
    let naming = |group: &str| Expect::DeniedNaming(group.to_owned());
    // One row a line: the table reads as the spec's.
    #[rustfmt::skip]
    let rows = vec![
        row("an ADMIN key gives any group", &key, Call::give(&cashier_all), Allowed),
        row("an org admin gives Cashier on South", &org_admin, Call::give(&cashier_south), Allowed),
        row("a unit admin gives Cashier on their unit", &unit_admin, Call::give(&cashier_south), Allowed),
        row("a unit admin gives Cashier on another unit", &unit_admin, Call::give(&cashier_west), naming(&cashier_west)),
        row("a union of groups covers South and West", &union_admin, Call::give(&cashier_both), Allowed),
        row("a unit admin gives Cashier NO_UNIT", &unit_admin, Call::give(&cashier_no_unit), Allowed),
        row("a unit admin gives Cashier ALL_UNITS", &unit_admin, Call::give(&cashier_all), naming(&cashier_all)),
        row("a unit admin gives a peer Admin on South", &only_admin_south, Call::give(&admin_south), Allowed),
        row("a unit admin gives Admin ALL_UNITS", &only_admin_south, Call::give(&admin_all), naming(&admin_all)),
        row("deactivate a holder of an uncovered group", &only_admin_south, Call::set_status(&west_cashier, Inactive), Denied),
        row("delete a holder of an uncovered group", &only_admin_south, Call::delete_user(&west_cashier), Denied),
        row("act on a user whose groups are covered", &unit_admin, Call::set_status(&south_cashier, OnVacation), Allowed),
        row("profiles are for org admins", &only_admin_south, CreateProfile, Denied),
        row("units are for org admins", &only_admin_south, CreateUnit, Denied),
        row("keys are for org admins", &only_admin_south, CreateAdminKey, Denied),
        row("Admin on all units is an org admin", &org_admin, CreateUnit, Allowed),
        row("a unit admin creates a group on their unit", &unit_admin, Call::create_group_on(south), Allowed),
        row("a group not covered after the change", &unit_admin, Call::move_group(&south_night, west), Denied),
        row("a group not covered before the change", &unit_admin, Call::delete_group(&cashier_west), Denied),
    ];
    let names = [
        (south, "South"),
        (west, "West"),
        (&admin_all, "Admins"),
        (&admin_south, "Admin South"),
        (&cashier_south, "Cashier South"),
        (&cashier_west, "Cashier West"),
        (&cashier_both, "Cashier South West"),
        (&cashier_no_unit, "Cashier"),
        (&cashier_all, "Cashier everywhere"),
        (&south_night, "South cashiers (night)"),
        (&west_cashier, "west.cashier"),
        (&south_cashier, "south.cashier"),
    ];
    check_rows(&app, &o, rows, &names).await;
}

#[tokio::test]
async fn nobody_deletes_or_changes_the_status_of_themselves() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let (me, bearer) = organization_admin(&app, &o, "me@acme.test").await;
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
    let cashiers = cashiers_on_south(&app, &o, "Cashier South").await;
    let (user, bearer) = holder(&app, "v@acme.test", &[&viewers, &cashiers]).await;

    let me = app.who_am_i(bearer.clone()).await.unwrap().into_inner();
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

    let access = app.user_access(&user.id).await;
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
    let access = app.user_access(&user.id).await;
    assert!(!access.can_sign_in);
    assert_eq!(access.status, proto::UserStatus::OnVacation as i32);
    assert!(
        access.grants.is_empty() && access.scopes.is_empty(),
        "nothing to authorize while away"
    );
    let status = app.who_am_i(bearer).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "leaving ACTIVE revoked the token"
    );
}

/// Every listed action appears in the organization's audit trail.
async fn assert_audited(app: &TestApp, expected: &[&str]) {
    let events = app
        .audit_events(proto::ListAuditEventsRequest::default())
        .await;
    let actions: Vec<&str> = events.iter().map(|event| event.action.as_str()).collect();
    for action in expected {
        assert!(actions.contains(action), "{action} audited: {actions:?}");
    }
}

/// Refused because something still uses what the call would delete.
fn assert_in_use<T: std::fmt::Debug>(result: Result<T, tonic::Status>, reason: &str) {
    let status = result.expect_err(reason);
    assert_eq!(
        (status.code(), error_reason(&status).as_deref()),
        (Code::FailedPrecondition, Some(reason))
    );
}

/// The spec's organization with a Cashiers group on South holding one
/// member (carla@acme.test): the group, and the member's id.
pub async fn cashiers_on_south_with_a_member() -> (TestApp, Org, String, String) {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let cashiers = cashiers_on_south(&app, &o, "Cashiers").await;
    let member = member(&app, "carla@acme.test", &cashiers).await;
    (app, o, cashiers, member)
}

#[tokio::test]
async fn a_new_group_reports_every_invalid_field_and_an_unknown_unit_is_not_found() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let mut groups = app.groups(app.as_admin());

    let status = groups
        .create_group(new_group("A|B", "nope", UnitScope::Units, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["group.name", "group.profile_id", "group.unit_ids"]
    );
    let ghost = uuid::Uuid::new_v4().to_string();
    let status = groups
        .create_group(new_group(
            "Ghost units",
            &o.cashier_profile,
            UnitScope::Units,
            &[&ghost],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn group_names_are_unique_ignoring_case_and_creations_are_audited() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    cashiers_on_south(&app, &o, "Cashiers").await;
    let status = app
        .groups(app.as_admin())
        .create_group(new_group(
            "CASHIERS",
            &o.cashier_profile,
            UnitScope::NoUnit,
            &[],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("GROUP_ALREADY_EXISTS")
    );
    assert_audited(&app, &["group.create", "unit.create", "profile.create"]).await;
}

#[tokio::test]
async fn a_group_counts_and_lists_its_members_and_its_unit_lists_them_too() {
    let (app, o, cashiers, member) = cashiers_on_south_with_a_member().await;
    let mut groups = app.groups(app.as_admin());

    let fetched = app.get_group(&cashiers).await;
    assert_eq!(fetched.member_count, 1);
    let members = groups
        .list_group_members(proto::ListGroupMembersRequest {
            group_id: cashiers.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.users[0].id, member);
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
    assert_audited(&app, &["user.groups.add"]).await;
}

#[tokio::test]
async fn a_unit_in_use_stays_until_no_group_is_scoped_to_it() {
    let (app, o, cashiers, _) = cashiers_on_south_with_a_member().await;
    let mut groups = app.groups(app.as_admin());
    let delete_south = proto::DeleteUnitRequest {
        unit_id: o.south.clone(),
    };

    assert_in_use(
        groups.delete_unit(delete_south.clone()).await,
        "UNIT_IN_USE",
    );
    let widened = groups
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: cashiers.clone(),
                unit_scope: UnitScope::AllUnits as i32,
                ..Default::default()
            }),
            update_mask: mask(&["unit_scope"]),
        })
        .await
        .answered();
    assert_eq!(
        (widened.unit_scope, widened.unit_ids.len()),
        (UnitScope::AllUnits as i32, 0)
    );
    groups
        .delete_unit(delete_south)
        .await
        .expect("no longer in use");
    assert_audited(&app, &["group.update", "unit.delete"]).await;
}

#[tokio::test]
async fn a_profile_in_use_stays_until_its_groups_are_deleted_with_their_memberships() {
    let (app, o, cashiers, member) = cashiers_on_south_with_a_member().await;
    let mut groups = app.groups(app.as_admin());
    let delete_cashier = proto::DeleteProfileRequest {
        profile_id: o.cashier_profile.clone(),
    };

    assert_in_use(
        groups.delete_profile(delete_cashier.clone()).await,
        "PROFILE_IN_USE",
    );
    groups
        .delete_group(proto::DeleteGroupRequest { group_id: cashiers })
        .await
        .unwrap();
    let left = app
        .users(app.as_admin())
        .list_user_groups(proto::ListUserGroupsRequest {
            user_id: member,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        left.total_size, 0,
        "deleting a group removes its memberships"
    );
    groups
        .delete_profile(delete_cashier)
        .await
        .expect("no longer in use");
    assert_audited(&app, &["group.delete", "profile.delete"]).await;
}

#[tokio::test]
async fn built_in_profiles_are_neither_edited_nor_deleted() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let mut groups = app.groups(app.as_admin());
    let status = groups
        .update_profile(proto::UpdateProfileRequest {
            profile: Some(proto::Profile {
                id: o.admin_profile.clone(),
                name: "Root".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
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
}

#[tokio::test]
async fn a_unit_update_changes_only_the_masked_fields_and_is_audited() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let renamed = app
        .groups(app.as_admin())
        .update_unit(proto::UpdateUnitRequest {
            unit: Some(proto::Unit {
                id: o.west.clone(),
                name: "West Side".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .answered();
    assert_eq!(
        (renamed.name.as_str(), renamed.kind),
        ("West Side", proto::UnitKind::Branch as i32)
    );
    assert_audited(&app, &["unit.update"]).await;
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
    let removed = take(&app, app.as_admin(), &user.id, &[&viewers])
        .await
        .unwrap();
    assert_eq!(removed.removed_group_ids, [viewers]);
    let status = app
        .users(app.as_admin())
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: user.id,
            group_ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["group_ids"]);
}

#[tokio::test]
async fn a_unit_admin_clones_a_user_getting_only_covered_groups_and_the_rest_reported_skipped() {
    let (app, _, south) = spawn_with_south_admin().await;
    let source = user_in(
        &app,
        "Source",
        "Cashier",
        "source@acme.test",
        &[&south.cashier_south, &south.cashier_west],
    )
    .await;

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
        .users(south.bearer.clone())
        .clone_user(clone(&source.id, "new@acme.test"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cloned.skipped_group_ids, [south.cashier_west.clone()]);
    let groups_of_clone = app.user_groups(&cloned.user.unwrap().id).await;
    let ids: Vec<String> = groups_of_clone.into_iter().map(|g| g.id).collect();
    assert_eq!(ids, [south.cashier_south.clone()]);

    let status = app
        .users(south.bearer.clone())
        .clone_user(clone(&south.user.id, "me2@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "nobody clones themselves"
    );
    let status = app
        .users(south.bearer.clone())
        .clone_user(clone("", "x@acme.test"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["source_user_id"]);
    let status = app
        .users(south.bearer)
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
    let (app, o, south) = spawn_with_south_admin().await;
    let cashier = group(&app, "Cashier", &o.cashier_profile, UnitScope::NoUnit, &[]).await;

    let reference = user_in(
        &app,
        "Ref",
        "Erence",
        "ref@acme.test",
        &[&south.cashier_south, &south.cashier_west],
    )
    .await;
    let plain = user_in(&app, "Plain", "Target", "plain@acme.test", &[&cashier]).await;
    let western = user_in(
        &app,
        "West",
        "Target",
        "west@acme.test",
        &[&south.cashier_west],
    )
    .await;
    let missing = uuid::Uuid::new_v4().to_string();

    let results = app
        .mirror_user(
            south.bearer.clone(),
            mirror_request(
                &reference.id,
                &[&plain.id, &western.id, &missing],
                proto::MirrorMode::Add,
            ),
        )
        .await;
    assert_eq!(results.len(), 3);
    assert!(results[0].applied);
    assert_eq!(results[0].added_group_ids, [south.cashier_south.clone()]);
    assert_eq!(results[0].skipped_group_ids, [south.cashier_west.clone()]);
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
        .mirror_user(
            south.bearer,
            mirror_request(&reference.id, &[&plain.id], proto::MirrorMode::Replace),
        )
        .await;
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
