//! What a person typing requests by hand (grpcurl, JSON) meets: enum fields
//! left unset get the documented default or a hint, masks are accepted as
//! the answers spell fields, and no message or audit record shows a Rust name.

use roster::proto::{self, UnitKind, UnitScope};
use tonic::Code;

use crate::{
    groups::{group, org},
    helpers::{mask, new_group, new_unit, violated_fields, Answered, TestApp},
};

#[tokio::test]
async fn a_unit_created_or_updated_without_a_kind_is_other_and_an_unknown_kind_is_refused() {
    let app = TestApp::spawn().await;
    let mut groups = app.groups(app.as_admin());
    let created = groups
        .create_unit(new_unit("Head Office", UnitKind::Unspecified))
        .await
        .answered();
    assert_eq!(created.kind, UnitKind::Other as i32);

    let branch = groups
        .create_unit(new_unit("North", UnitKind::Branch))
        .await
        .answered();
    let updated = groups
        .update_unit(proto::UpdateUnitRequest {
            unit: Some(proto::Unit {
                id: branch.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["kind"]),
        })
        .await
        .answered();
    assert_eq!(updated.kind, UnitKind::Other as i32);

    let mut unknown = new_unit("South", UnitKind::Store);
    unknown.unit.as_mut().unwrap().kind = 42;
    let status = groups.create_unit(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["unit.kind"]);
}

#[tokio::test]
async fn a_group_without_a_unit_scope_is_refused_with_the_choices_and_no_rust_names() {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let mut groups = app.groups(app.as_admin());
    let status = groups
        .create_group(new_group(
            "Cashiers",
            &o.cashier_profile,
            UnitScope::Unspecified,
            &[],
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["group.unit_scope"]);
    let details = format!(
        "{:?}",
        tonic_types::StatusExt::get_details_bad_request(&status)
    );
    for choice in [
        "UNIT_SCOPE_NO_UNIT",
        "UNIT_SCOPE_ALL_UNITS",
        "UNIT_SCOPE_UNITS",
    ] {
        assert!(details.contains(choice), "{details}");
    }

    let status = groups
        .create_group(new_group(
            "Cashiers",
            &o.cashier_profile,
            UnitScope::AllUnits,
            &[&o.south],
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["group.unit_ids"]);
    let details = format!(
        "{:?}",
        tonic_types::StatusExt::get_details_bad_request(&status)
    );
    assert!(details.contains("it is UNIT_SCOPE_ALL_UNITS"), "{details}");
    assert!(!details.contains("AllUnits"), "a Rust name: {details}");
}

#[tokio::test]
async fn update_masks_take_snake_case_and_camel_case_paths_and_the_audit_names_them_as_the_proto_does(
) {
    let app = TestApp::spawn().await;
    let o = org(&app).await;
    let user = app.create_user("Ana", "Souza", "ana.souza@acme.test").await;
    let updated = app
        .users(app.as_admin())
        .update_user(proto::UpdateUserRequest {
            user: Some(proto::User {
                id: user.id.clone(),
                first_name: "Anna".into(),
                last_name: "Sousa".into(),
                ..Default::default()
            }),
            update_mask: mask(&["firstName", "user.last_name"]),
        })
        .await
        .answered();
    assert_eq!(
        (updated.first_name.as_str(), updated.last_name.as_str()),
        ("Anna", "Sousa")
    );

    let cashiers = group(&app, "Cashiers", &o.cashier_profile, UnitScope::NoUnit, &[]).await;
    app.groups(app.as_admin())
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: cashiers.clone(),
                unit_scope: UnitScope::Units as i32,
                unit_ids: vec![o.south.clone()],
                ..Default::default()
            }),
            update_mask: mask(&["group.unitScope", "unit_ids"]),
        })
        .await
        .unwrap();
    let events = app
        .audit_events(proto::ListAuditEventsRequest::default())
        .await;
    let group_update = events
        .iter()
        .find(|event| event.action == "group.update" && event.target_id == cashiers)
        .expect("the group update is audited");
    assert_eq!(group_update.changed_fields, ["unit_scope", "unit_ids"]);
}
