//! Names wherever an administrator refers to something (issue 16 point 1):
//! groups by name beside ids, answers that name what they return.

use roster::proto::{self, RowOutcome};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    groups::{add_to_groups, org, south_admin, spawn_with_south_admin, take, SouthAdmin},
    helpers::{
        error_reason, mirror_request, violated_fields, violations, Answered, Bearer, TestApp,
    },
    import::{options, run_import},
    users::new_user,
};

async fn group_names_of(app: &TestApp, user_id: &str) -> Vec<String> {
    app.sorted_user_groups(user_id, |g| g.name).await
}

#[tokio::test]
async fn groups_are_given_and_removed_by_name_ignoring_case_mixed_with_ids_once_each() {
    let (app, _, south) = spawn_with_south_admin().await;
    let mut users = app.users(app.as_admin());
    let created = users
        .create_user(proto::CreateUserRequest {
            group_ids: vec![south.cashier_south.clone()],
            group_names: vec![" cashier SOUTH ".into(), "Cashier West".into()],
            ..new_user("Ana", "Souza", "ana@acme.test")
        })
        .await
        .answered();
    assert_eq!(
        group_names_of(&app, &created.id).await,
        ["Cashier South", "Cashier West"]
    );

    let removed = users
        .remove_user_from_groups(proto::RemoveUserFromGroupsRequest {
            user_id: created.id.clone(),
            group_names: vec!["CASHIER WEST".into(), "cashier west".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed_group_ids, [south.cashier_west.clone()]);
    let added = users
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: created.id.clone(),
            group_ids: vec![south.cashier_west.clone()],
            group_names: vec!["Admin South".into(), "cashier west".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added_group_ids.len(), 2, "{added:?}");
    assert!(added.added_group_ids.contains(&south.cashier_west));
    assert_eq!(
        group_names_of(&app, &created.id).await,
        ["Admin South", "Cashier South", "Cashier West"]
    );

    let cloned = users
        .clone_user(proto::CloneUserRequest {
            source_user_id: created.id.clone(),
            user: new_user("Bia", "Lima", "bia@acme.test").user,
            group_names: vec!["Cashier West".into()],
            ..Default::default()
        })
        .await
        .answered();
    assert_eq!(
        group_names_of(&app, &cloned.id).await,
        ["Admin South", "Cashier South", "Cashier West"]
    );
}

#[tokio::test]
async fn an_unknown_group_name_is_refused_naming_field_index_and_name() {
    let (app, _, _) = spawn_with_south_admin().await;
    let mut users = app.users(app.as_admin());
    let status = create_ana_in(&app, &["Cashier South", "Cashier North"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        violations(&status),
        [(
            "group_names[1]".to_owned(),
            "GROUP_NOT_FOUND".to_owned(),
            "there is no group named `Cashier North` in this organization".to_owned()
        )]
    );
    assert!(status.message().contains("Cashier North"), "{status:?}");

    let user = app.create_user("Bia", "Lima", "bia@acme.test").await;
    for (names, field) in [
        (vec!["Nobody".to_owned()], "group_names[0]"),
        (
            vec!["Cashier West".to_owned(), " ".to_owned()],
            "group_names[1]",
        ),
        (vec!["a\u{0}b".to_owned()], "group_names[0]"),
    ] {
        let status = users
            .add_user_to_groups(proto::AddUserToGroupsRequest {
                user_id: user.id.clone(),
                group_names: names.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{names:?}: {status:?}"
        );
        assert_eq!(violated_fields(&status), [field], "{names:?}");
    }
    assert!(group_names_of(&app, &user.id).await.is_empty());

    let status = users
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: user.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["group_ids"]);
    assert!(status.message().contains("group_names"), "{status:?}");
}

#[tokio::test]
async fn another_organizations_group_name_is_unknown() {
    let (app, _, _) = spawn_with_south_admin().await;
    let globex = app.create_organization("globex").await;
    let globex_key = app
        .create_api_key(globex, "admin", &[roster::domain::caller::Scope::Admin])
        .await;
    let person = new_user("Gil", "Globex", "gil@globex.test");
    let status = create_in(&app, Bearer::token(&globex_key), person, &["Cashier South"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["group_names[0]"]);
}

#[tokio::test]
async fn an_uncovered_group_is_refused_by_name_in_message_and_details() {
    let (app, _, south) = spawn_with_south_admin().await;
    let target = app.create_user("Caio", "Reis", "caio@acme.test").await;
    let by_name = proto::AddUserToGroupsRequest {
        user_id: target.id.clone(),
        group_names: vec!["cashier west".into()],
        ..Default::default()
    };
    let by_id = proto::AddUserToGroupsRequest {
        user_id: target.id.clone(),
        group_ids: vec![south.cashier_west.clone()],
        ..Default::default()
    };
    for request in [by_name, by_id] {
        let status = app
            .users(south.bearer.clone())
            .add_user_to_groups(request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status
                .message()
                .starts_with("you may not give group `Cashier West` ("),
            "{status:?}"
        );
        assert_eq!(error_reason(&status).as_deref(), Some("GROUP_NOT_COVERED"));
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.metadata["group_id"], south.cashier_west);
        assert_eq!(info.metadata["group_name"], "Cashier West");
    }
    let person = new_user("Dora", "Reis", "dora@acme.test");
    let status = create_in(&app, south.bearer, person, &["Cashier West"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("`Cashier West`"), "{status:?}");
}

#[tokio::test]
async fn an_import_gives_the_options_groups_by_name() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let SouthAdmin { cashier_south, .. } = south_admin(&app, &o).await;
    let refused = run_import(
        &app,
        app.as_admin(),
        false,
        proto::ImportOptions {
            group_names: vec!["Cashier South".into(), "Ghosts".into()],
            ..options()
        },
        b"first_name,last_name,email\nA,B,ab@acme.com\n",
        64,
    )
    .await;
    let status = refused.error.unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["options.group_names[1]"]);

    let run = run_import(
        &app,
        app.as_admin(),
        false,
        proto::ImportOptions {
            group_ids: vec![cashier_south],
            group_names: vec!["cashier south".into(), "Cashier West".into()],
            ..options()
        },
        b"first_name,last_name,email\nA,B,ab@acme.com\n",
        64,
    )
    .await;
    assert_eq!(run.outcomes(), [(2, RowOutcome::Created)]);
    let user_id = run.rows[0].user_id.clone();
    assert_eq!(
        group_names_of(&app, &user_id).await,
        ["Cashier South", "Cashier West"]
    );
    let job = app
        .imports(app.as_admin())
        .get_import_job(proto::GetImportJobRequest {
            job_id: run.summary.unwrap().job_id,
        })
        .await
        .answered();
    assert_eq!(
        job.options.unwrap().group_names,
        ["cashier south", "Cashier West"],
        "the job keeps the names as given"
    );
}

/// CreateUser as `bearer` of `person` in the groups `names` names.
async fn create_in(
    app: &TestApp,
    bearer: Bearer,
    person: proto::CreateUserRequest,
    names: &[&str],
) -> Result<tonic::Response<proto::CreateUserResponse>, tonic::Status> {
    let request = proto::CreateUserRequest {
        group_names: names.iter().map(|name| (*name).to_owned()).collect(),
        ..person
    };
    app.users(bearer).create_user(request).await
}

/// Ana Souza, created by the admin key in the groups `names` names.
async fn create_ana_in(
    app: &TestApp,
    names: &[&str],
) -> Result<tonic::Response<proto::CreateUserResponse>, tonic::Status> {
    let ana = new_user("Ana", "Souza", "ana@acme.test");
    create_in(app, app.as_admin(), ana, names).await
}

/// A reference to a group or a unit, as answers carry them.
trait Ref {
    fn id_and_name(&self) -> (String, String);
}

macro_rules! id_and_name {
    ($($reference:ty),*) => {$(
        impl Ref for $reference {
            fn id_and_name(&self) -> (String, String) {
                (self.id.clone(), self.name.clone())
            }
        }
    )*};
}
id_and_name!(proto::GroupRef, proto::UnitRef);

/// (id, name) of each reference.
fn refs(references: &[impl Ref]) -> Vec<(String, String)> {
    references.iter().map(Ref::id_and_name).collect()
}

#[tokio::test]
async fn answers_name_the_groups_they_return() {
    let (app, _, south_admin) = spawn_with_south_admin().await;
    let south = (
        south_admin.cashier_south.clone(),
        "Cashier South".to_owned(),
    );
    let west = (south_admin.cashier_west.clone(), "Cashier West".to_owned());
    let source = create_ana_in(&app, &["Cashier South", "Cashier West"])
        .await
        .answered();

    let mut users = app.users(south_admin.bearer.clone());
    let mirrored = users
        .create_user(proto::CreateUserRequest {
            mirror_user_id: source.id.clone(),
            ..new_user("Bia", "Lima", "bia@acme.test")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mirrored.skipped_group_ids,
        [south_admin.cashier_west.clone()]
    );
    assert_eq!(refs(&mirrored.skipped_groups), [west.clone()]);
    let cloned = users
        .clone_user(proto::CloneUserRequest {
            source_user_id: source.id.clone(),
            user: new_user("Caio", "Reis", "caio@acme.test").user,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refs(&cloned.skipped_groups), [west.clone()]);
    let clone_id = cloned.user.unwrap().id;

    let (bearer, group) = (&south_admin.bearer, &[south_admin.cashier_south.as_str()]);
    let removed = take(&app, bearer.clone(), &clone_id, group).await.unwrap();
    assert_eq!(refs(&removed.removed_groups), [south.clone()]);
    let added = add_to_groups(&app, bearer.clone(), &clone_id, group)
        .await
        .unwrap();
    assert_eq!(refs(&added.added_groups), [south.clone()]);

    let target = app.create_user("Dora", "Reis", "dora@acme.test").await;
    let person = new_user("Eva", "Melo", "eva@acme.test");
    let out_of_reach = create_in(&app, app.as_admin(), person, &["Cashier West"])
        .await
        .answered();
    let results = app
        .mirror_user(
            south_admin.bearer,
            mirror_request(
                &source.id,
                &[&target.id, &out_of_reach.id],
                proto::MirrorMode::Add,
            ),
        )
        .await;
    assert_eq!(refs(&results[0].added_groups), [south]);
    assert_eq!(refs(&results[0].skipped_groups), [west]);
    assert!(results[0].removed_groups.is_empty());
    assert_eq!(results[1].error_code, "PERMISSION_DENIED");
    let message = &results[1].error_message;
    assert!(
        message.starts_with("user eva@acme.test (")
            && message.contains("holds group `Cashier West` ("),
        "{message}"
    );
}

#[tokio::test]
async fn groups_and_access_carry_their_profile_and_unit_names() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let both = crate::groups::group(
        &app,
        "Cashiers South and West",
        &o.cashier_profile,
        proto::UnitScope::Units,
        &[&o.south, &o.west],
    )
    .await;
    let mut expected_units = vec![
        (o.south.clone(), "South Zone".to_owned()),
        (o.west.clone(), "West Zone".to_owned()),
    ];
    expected_units.sort();
    let group = app.get_group(&both).await;
    assert_eq!(
        (group.product.as_str(), group.profile_name.as_str()),
        ("POS", "Cashier")
    );
    assert_eq!(refs(&group.units), expected_units);
    assert_eq!(
        group.units.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        group.unit_ids,
        "in the order of unit_ids"
    );

    let listed = app
        .groups(app.as_admin())
        .list_groups(proto::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups;
    let listed = listed.iter().find(|g| g.id == both).unwrap();
    assert_eq!(refs(&listed.units), expected_units);
    assert_eq!(listed.profile_name, "Cashier");

    let (user, _) = app.signed_in_user("ana@acme.test").await;
    app.users(app.as_admin())
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: user.id.clone(),
            group_names: vec!["Cashiers South and West".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let access = app.user_access(&user.id).await;
    let grant = access.grants.iter().find(|g| g.group_id == both).unwrap();
    assert_eq!(grant.group_name, "Cashiers South and West");
    assert_eq!(
        (grant.product.as_str(), grant.profile_name.as_str()),
        ("POS", "Cashier")
    );
    assert_eq!(refs(&grant.units), expected_units);
    let mine = app.user_groups(&user.id).await;
    assert_eq!(refs(&mine[0].units), expected_units);
}
