//! Custom user attributes (issue 19 point 6): organization administrators
//! define them; users carry typed values through CreateUser, UpdateUser,
//! GetUser and ListUsers' filter, checked against the definitions, audited.

use prost_types::{value::Kind, Struct, Value};
use roster::proto::{self, UserAttributeType};
use tonic::{Code, Status};

use crate::{
    groups,
    helpers::{error_reason, mask, violations, Bearer, TestApp},
};

pub fn text(value: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.into())),
    }
}

pub fn number(value: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(value)),
    }
}

pub fn boolean(value: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(value)),
    }
}

fn attributes(pairs: &[(&str, Value)]) -> Option<Struct> {
    Some(Struct {
        fields: pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect(),
    })
}

pub async fn define(
    app: &TestApp,
    bearer: Bearer,
    key: &str,
    value_type: UserAttributeType,
    allowed: &[Value],
    required: bool,
) -> Result<proto::DefineUserAttributeResponse, Status> {
    app.organizations(bearer)
        .define_user_attribute(proto::DefineUserAttributeRequest {
            attribute: Some(proto::UserAttributeDefinition {
                key: key.into(),
                r#type: value_type as i32,
                allowed_values: allowed.to_vec(),
                required,
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner())
}

/// `level`, a number, by the organization's ADMIN key.
async fn define_level(
    app: &TestApp,
    allowed: &[Value],
    required: bool,
) -> Result<proto::DefineUserAttributeResponse, Status> {
    define(
        app,
        app.as_admin(),
        "level",
        UserAttributeType::Number,
        allowed,
        required,
    )
    .await
}

/// department (string, sales or engineering, required), level (number),
/// remote (boolean), hired (date).
pub async fn define_four(app: &TestApp) {
    let departments = [text("sales"), text("engineering")];
    let definitions: [(&str, UserAttributeType, &[Value], bool); 4] = [
        ("department", UserAttributeType::String, &departments, true),
        ("level", UserAttributeType::Number, &[], false),
        ("remote", UserAttributeType::Boolean, &[], false),
        ("hired", UserAttributeType::Date, &[], false),
    ];
    for (key, value_type, allowed, required) in definitions {
        define(app, app.as_admin(), key, value_type, allowed, required)
            .await
            .unwrap();
    }
}

async fn create(
    app: &TestApp,
    email: &str,
    values: &[(&str, Value)],
) -> Result<proto::User, Status> {
    app.users(app.as_admin())
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                first_name: "Ana".into(),
                last_name: "Lima".into(),
                email: email.into(),
                attributes: attributes(values),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

async fn update(
    app: &TestApp,
    bearer: Bearer,
    user_id: &str,
    values: &[(&str, Value)],
    paths: &[&str],
) -> Result<proto::User, Status> {
    app.users(bearer)
        .update_user(proto::UpdateUserRequest {
            user: Some(proto::User {
                id: user_id.into(),
                attributes: attributes(values),
                ..Default::default()
            }),
            update_mask: mask(paths),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

pub fn held(user: &proto::User) -> Vec<(String, Option<Kind>)> {
    let mut pairs: Vec<(String, Option<Kind>)> = user
        .attributes
        .as_ref()
        .map(|s| {
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.kind.clone()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

fn codes(status: &Status) -> Vec<(String, String)> {
    violations(status)
        .into_iter()
        .map(|(field, code, _)| (field, code))
        .collect()
}

#[tokio::test]
async fn users_carry_typed_attribute_values_checked_against_the_definitions() {
    let app = TestApp::spawn().await;
    define_four(&app).await;

    let ana = create(
        &app,
        "ana@acme.test",
        &[
            ("department", text("sales")),
            ("level", number(3.0)),
            ("remote", boolean(true)),
            ("hired", text("2024-03-01")),
        ],
    )
    .await
    .unwrap();
    let expected = vec![
        (
            "department".to_owned(),
            Some(Kind::StringValue("sales".into())),
        ),
        (
            "hired".to_owned(),
            Some(Kind::StringValue("2024-03-01".into())),
        ),
        ("level".to_owned(), Some(Kind::NumberValue(3.0))),
        ("remote".to_owned(), Some(Kind::BoolValue(true))),
    ];
    assert_eq!(held(&ana), expected);
    assert_eq!(held(&app.get_user(&ana.id).await), expected);

    let refused = create(&app, "bea@acme.test", &[("level", number(1.0))])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        codes(&refused),
        [(
            "user.attributes.department".to_owned(),
            "REQUIRED".to_owned()
        )]
    );
    let refused = create(
        &app,
        "bea@acme.test",
        &[
            ("department", text("marketing")),
            ("level", text("3")),
            ("remote", text("yes")),
            ("hired", text("2024-02-30")),
            ("shoe_size", number(40.0)),
        ],
    )
    .await
    .unwrap_err();
    let mut found = codes(&refused);
    found.sort();
    assert_eq!(
        found,
        [
            ("user.attributes.department", "NOT_ALLOWED"),
            ("user.attributes.hired", "INVALID_TYPE"),
            ("user.attributes.level", "INVALID_TYPE"),
            ("user.attributes.remote", "INVALID_TYPE"),
            ("user.attributes.shoe_size", "UNKNOWN_ATTRIBUTE"),
        ]
        .map(|(f, c)| (f.to_owned(), c.to_owned()))
    );
}

#[tokio::test]
async fn update_mask_changes_one_attribute_or_the_whole_map_and_the_audit_records_it() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let ana = create(
        &app,
        "ana@acme.test",
        &[("department", text("sales")), ("remote", boolean(true))],
    )
    .await
    .unwrap();

    // One key: set level, remove remote (named, absent); others stay.
    let updated = update(
        &app,
        app.as_admin(),
        &ana.id,
        &[("level", number(2.0))],
        &["attributes.level", "attributes.remote", "first_name"],
    )
    .await;
    assert_eq!(updated.unwrap_err().code(), Code::InvalidArgument); // first_name empty
    let updated = update(
        &app,
        app.as_admin(),
        &ana.id,
        &[("level", number(2.0))],
        &["attributes.level", "attributes.remote"],
    )
    .await
    .unwrap();
    assert_eq!(
        held(&updated),
        [
            (
                "department".to_owned(),
                Some(Kind::StringValue("sales".into()))
            ),
            ("level".to_owned(), Some(Kind::NumberValue(2.0))),
        ]
    );
    // A required attribute the user holds may change but not go.
    let refused = update(
        &app,
        app.as_admin(),
        &ana.id,
        &[],
        &["attributes.department"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        codes(&refused),
        [(
            "user.attributes.department".to_owned(),
            "REQUIRED".to_owned()
        )]
    );
    // The whole map: keys left out are removed.
    let replaced = update(
        &app,
        app.as_admin(),
        &ana.id,
        &[
            ("department", text("engineering")),
            ("hired", text("2025-01-31")),
        ],
        &["attributes"],
    )
    .await
    .unwrap();
    assert_eq!(
        held(&replaced),
        [
            (
                "department".to_owned(),
                Some(Kind::StringValue("engineering".into()))
            ),
            (
                "hired".to_owned(),
                Some(Kind::StringValue("2025-01-31".into()))
            ),
        ]
    );

    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            action: "user.update".into(),
            target_id: ana.id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].changed_fields,
        [
            "attributes.department",
            "attributes.hired",
            "attributes.level"
        ]
    );
    assert_eq!(
        events[1].changed_fields,
        ["attributes.level", "attributes.remote"]
    );
    let level = &events[1].details.as_ref().unwrap().fields["attributes.level"];
    let Some(Kind::StructValue(level)) = &level.kind else {
        panic!("old and new of attributes.level");
    };
    assert_eq!(level.fields["new"].kind, Some(Kind::NumberValue(2.0)));
    assert_eq!(level.fields["old"].kind, Some(Kind::NullValue(0)));
}

#[tokio::test]
async fn a_definition_change_users_values_would_not_meet_is_refused_with_their_count() {
    let app = TestApp::spawn().await;
    define_level(&app, &[], false).await.unwrap();
    for (email, level) in [
        ("a@acme.test", 5.0),
        ("b@acme.test", 1.0),
        ("c@acme.test", 7.0),
    ] {
        create(&app, email, &[("level", number(level))])
            .await
            .unwrap();
    }
    let allowed = [number(1.0), number(2.0)];
    let refused = define_level(&app, &allowed, false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        error_reason(&refused).as_deref(),
        Some("ATTRIBUTE_VALUES_DO_NOT_FIT")
    );
    assert!(
        refused.message().starts_with("2 user(s)"),
        "{}",
        refused.message()
    );
    let refused = define(
        &app,
        app.as_admin(),
        "level",
        UserAttributeType::String,
        &[],
        false,
    )
    .await
    .unwrap_err();
    assert!(
        refused.message().starts_with("3 user(s)"),
        "{}",
        refused.message()
    );

    // Required from now on: existing users without it stay as they are.
    let ana = create(&app, "ana@acme.test", &[]).await.unwrap();
    let changed = define_level(&app, &[], true).await.unwrap();
    assert!(!changed.created);
    assert!(changed.attribute.unwrap().required);
    update(&app, app.as_admin(), &ana.id, &[], &["attributes"])
        .await
        .unwrap();
    let refused = create(&app, "bea@acme.test", &[]).await.unwrap_err();
    assert_eq!(
        codes(&refused),
        [("user.attributes.level".to_owned(), "REQUIRED".to_owned())]
    );
    let bad_key = define(
        &app,
        app.as_admin(),
        "Level",
        UserAttributeType::Number,
        &[],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(
        codes(&bad_key),
        [("attribute.key".to_owned(), "INVALID_KEY".to_owned())]
    );
}

#[tokio::test]
async fn deleting_a_definition_removes_every_value_of_it_and_is_audited() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let ana = create(
        &app,
        "ana@acme.test",
        &[("department", text("sales")), ("level", number(2.0))],
    )
    .await
    .unwrap();
    let removed = app
        .organizations(app.as_admin())
        .delete_user_attribute(proto::DeleteUserAttributeRequest {
            key: "level".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .removed_user_values;
    assert_eq!(removed, 1);
    assert_eq!(
        held(&app.get_user(&ana.id).await),
        [(
            "department".to_owned(),
            Some(Kind::StringValue("sales".into()))
        )]
    );
    let listed = app
        .organizations(app.as_admin())
        .list_user_attributes(proto::ListUserAttributesRequest {})
        .await
        .unwrap()
        .into_inner()
        .attributes;
    let keys: Vec<&str> = listed.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["department", "hired", "remote"]);
    let again = app
        .organizations(app.as_admin())
        .delete_user_attribute(proto::DeleteUserAttributeRequest {
            key: "level".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let events = app.audit_events_of("user_attribute.delete").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target_id, "level");
}

#[tokio::test]
async fn list_users_filters_by_exact_typed_attribute_values() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let sales = [("department", text("sales")), ("level", number(3.0))];
    let ana = create(&app, "ana@acme.test", &sales).await.unwrap();
    create(
        &app,
        "bea@acme.test",
        &[("department", text("sales")), ("level", number(4.0))],
    )
    .await
    .unwrap();
    create(
        &app,
        "caio@acme.test",
        &[("department", text("engineering"))],
    )
    .await
    .unwrap();
    let list = |pairs: Vec<(&'static str, Value)>| {
        let app = &app;
        async move {
            app.users(app.as_admin())
                .list_users(proto::ListUsersRequest {
                    attributes: attributes(&pairs),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let found = list(vec![("department", text("sales")), ("level", number(3.0))])
        .await
        .unwrap();
    assert_eq!(found.total_size, 1);
    assert_eq!(found.users[0].id, ana.id);
    assert_eq!(
        list(vec![("department", text("sales"))])
            .await
            .unwrap()
            .total_size,
        2
    );
    let refused = list(vec![("level", text("3")), ("nope", boolean(true))])
        .await
        .unwrap_err();
    assert_eq!(
        codes(&refused),
        [
            ("attributes.level".to_owned(), "INVALID_TYPE".to_owned()),
            ("attributes.nope".to_owned(), "UNKNOWN_ATTRIBUTE".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_unit_administrator_sets_attributes_only_on_users_they_may_act_on_and_defines_none() {
    let app = TestApp::spawn().await;
    define_level(&app, &[], false).await.unwrap();
    let o = groups::org(&app).await;
    let south = groups::south_admin(&app, &o).await;
    let (in_south, _) = groups::holder(&app, "south@acme.test", &[&south.cashier_south]).await;
    let (in_west, _) = groups::holder(&app, "west@acme.test", &[&south.cashier_west]).await;

    let refused = update(
        &app,
        south.bearer.clone(),
        &in_west.id,
        &[("level", number(1.0))],
        &["attributes.level"],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let updated = update(
        &app,
        south.bearer.clone(),
        &in_south.id,
        &[("level", number(1.0))],
        &["attributes.level"],
    )
    .await
    .unwrap();
    assert_eq!(
        held(&updated),
        [("level".to_owned(), Some(Kind::NumberValue(1.0)))]
    );
    let refused = define(
        &app,
        south.bearer.clone(),
        "grade",
        UserAttributeType::Number,
        &[],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = app
        .organizations(south.bearer.clone())
        .delete_user_attribute(proto::DeleteUserAttributeRequest {
            key: "level".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}
