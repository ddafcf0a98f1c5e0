//! SCIM Groups at `/scim/v2/Groups`: a group with its members read, listed,
//! filtered, created, replaced, patched and deleted against real
//! PostgreSQL; the organization settings a SCIM-created group and user
//! depend on; and the group requests Entra ID and Okta document.

use reqwest::{Method, StatusCode};
use roster::{domain::caller::Scope, proto};
use serde_json::{json, Value};

use crate::{
    helpers::{mask, new_profile, new_unit, violations, CreatedId, TestApp},
    scim::{assert_created, assert_error, encode, resource_ids, Answer, Scim, PATCH},
};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ROSTER_GROUP: &str = "urn:roster:params:scim:schemas:extension:2.0:Group";

/// A new profile, made the organization's SCIM default; returns its id.
pub(crate) async fn default_profile(app: &TestApp) -> String {
    let profile = app
        .groups(app.as_admin())
        .create_profile(new_profile("POS", "Cashier"))
        .await
        .created_id();
    let settings = proto::OrganizationSettings {
        scim_default_profile_id: profile.clone(),
        ..Default::default()
    };
    app.update_settings(settings, &["scim_default_profile_id"])
        .await
        .unwrap();
    profile
}

/// An app whose organization has a SCIM default profile, its admin key's
/// SCIM client, and the ids of two users (ana.lima, bo.ng). Keep the app
/// bound (`_app`) while the test runs: dropping it stops the server.
async fn scene() -> (TestApp, Scim, String, String) {
    let app = TestApp::spawn().await;
    default_profile(&app).await;
    let scim = Scim::new(&app, &app.admin_key);
    let ana = scim
        .create("ana.lima", "Ana", "Lima", "ana@acme.test")
        .await;
    let bo = scim.create("bo.ng", "Bo", "Ng", "bo@acme.test").await;
    (app, scim, ana, bo)
}

/// The member ids of a group as gRPC lists them.
async fn grpc_members(app: &TestApp, id: &str) -> Vec<String> {
    let mut ids: Vec<String> = app
        .groups(app.as_admin())
        .list_group_members(proto::ListGroupMembersRequest {
            group_id: id.to_owned(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .users
        .into_iter()
        .map(|user| user.id)
        .collect();
    ids.sort();
    ids
}

/// The path of a search of groups by `filter` (URL-encoded here).
fn group_search(filter: &str) -> String {
    format!("/Groups?filter={}", encode(filter))
}

/// The ids of the groups `filter` finds.
async fn found(scim: &Scim, filter: &str) -> Vec<String> {
    resource_ids(&scim.get(&group_search(filter)).await.body)
}

/// The `value`s of a resource's members, sorted.
fn member_values(resource: &Value) -> Vec<String> {
    let mut ids: Vec<String> = resource["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members: {resource}"))
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    ids.sort();
    ids
}

async fn patch_group(scim: &Scim, id: &str, operations: Value) -> Answer {
    let body = json!({ "schemas": [PATCH], "Operations": operations });
    scim.call(Method::PATCH, &format!("/Groups/{id}"), Some(body))
        .await
}

/// A PATCH of group `id` that succeeds: its answer.
async fn patch_group_ok(scim: &Scim, id: &str, operations: Value) -> Answer {
    let answer = patch_group(scim, id, operations).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
}

/// A PATCH of group `id` that the server refuses with this SCIM error.
async fn assert_patch_refused(
    scim: &Scim,
    id: &str,
    operations: Value,
    status: StatusCode,
    scim_type: &str,
    detail_has: &str,
) {
    let refused = patch_group(scim, id, operations).await;
    assert_error(&refused, status, Some(scim_type), detail_has);
}

/// A POS profile named Manager and a store unit named `store`: their ids.
async fn manager_profile_and_store(app: &TestApp, store: &str) -> (String, String) {
    let mut groups = app.groups(app.as_admin());
    let profile = groups
        .create_profile(new_profile("POS", "Manager"))
        .await
        .created_id();
    let unit = groups
        .create_unit(new_unit(store, proto::UnitKind::Store))
        .await
        .created_id();
    (profile, unit)
}

async fn create_group(scim: &Scim, body: Value) -> String {
    let created = scim.post("/Groups", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn discovery_describes_groups_and_the_roster_extension_truthfully() {
    let (_app, scim) = Scim::spawn().await;
    let group_type = scim.get("/ResourceTypes/Group").await;
    assert_eq!(group_type.status, StatusCode::OK, "{}", group_type.body);
    assert_eq!(group_type.body["endpoint"], json!("/Groups"));
    assert_eq!(
        group_type.body["schemaExtensions"],
        json!([{ "schema": ROSTER_GROUP, "required": true }])
    );
    let schema = scim.get(&format!("/Schemas/{GROUP}")).await;
    let description = schema.body["description"].as_str().unwrap();
    assert!(
        description.contains("externalId (the provider's id for it) is unique"),
        "{description}"
    );
    let names: Vec<&str> = schema.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["displayName", "members"]);
    // Members are answered without `display` (a provider compares it with what it sent).
    let member_parts: Vec<&str> = schema.body["attributes"][1]["subAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(member_parts, ["value", "$ref", "type"]);
    let extension = scim.get(&format!("/Schemas/{ROSTER_GROUP}")).await;
    assert!(extension.body["description"]
        .as_str()
        .unwrap()
        .contains("scim_default_profile_id"));
    let config = scim.get("/ServiceProviderConfig").await;
    assert_eq!(config.body["bulk"]["supported"], json!(true));
    assert_eq!(config.body["sort"]["supported"], json!(true));
}

#[tokio::test]
async fn the_scim_default_profile_setting_must_name_a_profile_of_the_organization() {
    let app = TestApp::spawn().await;
    let organization = app.organization().await;
    let settings = organization.settings.unwrap();
    assert_eq!(settings.scim_default_profile_id, "");
    assert!(
        settings.scim_send_invitations,
        "invitations are on by default"
    );
    let set = |id: &str| proto::OrganizationSettings {
        scim_default_profile_id: id.to_owned(),
        ..Default::default()
    };
    let status = app
        .update_settings(set("nope"), &["scim_default_profile_id"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status
        .message()
        .contains("settings.scim_default_profile_id"));
    let elsewhere = app.create_organization("elsewhere").await;
    let foreign = uuid::Uuid::now_v7().to_string();
    let status = app
        .update_settings(set(&foreign), &["scim_default_profile_id"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("not found"), "{elsewhere}");
    let profile = default_profile(&app).await;
    let organization = app.organization().await;
    assert_eq!(
        organization.settings.unwrap().scim_default_profile_id,
        profile
    );
    let cleared = app
        .update_settings(set(" "), &["scim_default_profile_id"])
        .await
        .unwrap();
    assert_eq!(cleared.settings.unwrap().scim_default_profile_id, "");
}

#[tokio::test]
async fn without_a_profile_anywhere_a_group_create_explains_the_setting() {
    let (_app, scim) = Scim::spawn().await;
    let refused = scim
        .post(
            "/Groups",
            json!({ "schemas": [GROUP], "displayName": "Sales" }),
        )
        .await;
    assert_error(
        &refused,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "scim_default_profile_id",
    );
    let unknown = scim
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP, ROSTER_GROUP], "displayName": "Sales",
                ROSTER_GROUP: { "profileId": uuid::Uuid::now_v7().to_string() },
            }),
        )
        .await;
    assert_error(
        &unknown,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        &format!("{ROSTER_GROUP}:profileId: profile"),
    );
}

#[tokio::test]
async fn a_created_group_grants_the_default_profile_on_all_units_or_the_extensions_choice() {
    let app = TestApp::spawn().await;
    let profile = default_profile(&app).await;
    let (other_profile, unit) = manager_profile_and_store(&app, "Lisbon").await;
    let scim = Scim::new(&app, &app.admin_key);
    let ana = scim
        .create("ana.lima", "Ana", "Lima", "ana@acme.test")
        .await;
    let created = scim
        .post(
            "/Groups",
            json!({ "schemas": [GROUP], "displayName": "Cashiers", "members": [{ "value": ana }] }),
        )
        .await;
    let id = assert_created(&created, "Groups");
    assert_eq!(
        created.body["members"][0],
        json!({ "value": ana, "$ref": created.body["members"][0]["$ref"], "type": "User" })
    );
    assert!(created.body["members"][0]["$ref"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Users/{ana}")));
    assert_eq!(
        created.body[ROSTER_GROUP],
        json!({ "profileId": profile, "unitScope": "ALL_UNITS", "unitIds": [] })
    );
    let group = app.get_group(&id).await;
    assert_eq!(
        (
            group.name.as_str(),
            group.profile_id.as_str(),
            group.unit_scope
        ),
        (
            "Cashiers",
            profile.as_str(),
            proto::UnitScope::AllUnits as i32
        )
    );
    assert_eq!(grpc_members(&app, &id).await, [ana.clone()]);
    let scoped = scim
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP, ROSTER_GROUP], "displayName": "Lisbon managers",
                ROSTER_GROUP: { "profileId": other_profile, "unitIds": [unit] },
            }),
        )
        .await;
    assert_eq!(scoped.status, StatusCode::CREATED, "{}", scoped.body);
    let group = app.get_group(scoped.body["id"].as_str().unwrap()).await;
    assert_eq!(
        (
            group.profile_id.as_str(),
            group.unit_scope,
            group.unit_ids.clone()
        ),
        (
            other_profile.as_str(),
            proto::UnitScope::Units as i32,
            vec![unit.clone()]
        )
    );
    // The same name again is a uniqueness conflict; and nothing is created
    // when a member is not a user.
    let again = scim
        .post("/Groups", json!({ "displayName": "cashiers" }))
        .await;
    assert_error(
        &again,
        StatusCode::CONFLICT,
        Some("uniqueness"),
        "displayName",
    );
    let stranger = uuid::Uuid::now_v7().to_string();
    let refused = scim
        .post(
            "/Groups",
            json!({ "displayName": "Ghosts", "members": [{ "value": ana }, { "value": stranger }] }),
        )
        .await;
    assert_error(
        &refused,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        &format!("members: value {stranger} is not a user of this organization"),
    );
    let ghosts = scim
        .get(&format!(
            "/Groups?filter={}",
            encode("displayName eq \"Ghosts\"")
        ))
        .await;
    assert_eq!(ghosts.body["totalResults"], json!(0));
}

#[tokio::test]
async fn members_must_be_users_of_the_organization() {
    let (app, scim, _, _) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "Staff" })).await;
    let other = app.create_organization("other").await;
    let foreign_key = app
        .create_api_key(other, "other-idp", &[Scope::Admin])
        .await;
    let foreign = Scim::new(&app, &foreign_key)
        .create("zed.zee", "Zed", "Zee", "zed@other.test")
        .await;
    // Each added member, and what the refusal says of it.
    for (member, detail) in [
        (
            json!({ "value": foreign }),
            format!("value {foreign} is not a user of this organization"),
        ),
        (
            json!({ "value": "bob" }),
            "Operations[0]: members[0].value: `bob` is not a user of this organization".into(),
        ),
        (
            json!({ "value": id, "type": "Group" }),
            "Roster groups hold users, not groups".into(),
        ),
    ] {
        assert_patch_refused(
            &scim,
            &id,
            json!([{ "op": "add", "path": "members", "value": [member] }]),
            StatusCode::BAD_REQUEST,
            "invalidValue",
            &detail,
        )
        .await;
    }
    // The other organization's key does not see this group.
    let unseen = Scim::new(&app, &foreign_key)
        .get(&format!("/Groups/{id}"))
        .await;
    assert_error(&unseen, StatusCode::NOT_FOUND, None, "not found");
}

#[tokio::test]
async fn get_put_patch_and_delete_a_group_with_etags() {
    let (app, scim, ana, bo) = scene().await;
    let cy = scim.create("cy.ode", "Cy", "Ode", "cy@acme.test").await;
    let id = create_group(
        &scim,
        json!({ "displayName": "Floor", "members": [{ "value": ana }, { "value": bo }] }),
    )
    .await;
    let read = scim.get(&format!("/Groups/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(member_values(&read.body), sorted(&[&ana, &bo]));
    let version = read.etag.clone().unwrap();
    // PUT replaces the members (and the name).
    let replaced = scim
        .call_with(
            Method::PUT,
            &format!("/Groups/{id}"),
            Some(json!({ "schemas": [GROUP], "displayName": "Shop floor", "members": [{ "value": cy }] })),
            &[("if-match", &version)],
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["displayName"], json!("Shop floor"));
    assert_eq!(member_values(&replaced.body), [cy.clone()]);
    assert_ne!(replaced.etag.as_deref(), Some(version.as_str()));
    assert_eq!(grpc_members(&app, &id).await, [cy.clone()]);
    // The old version no longer matches.
    let stale = scim
        .call_with(
            Method::PATCH,
            &format!("/Groups/{id}"),
            Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "add", "path": "members", "value": [{ "value": ana }] }] })),
            &[("if-match", &version)],
        )
        .await;
    assert_error(
        &stale,
        StatusCode::PRECONDITION_FAILED,
        None,
        "the group changed",
    );
    assert_eq!(grpc_members(&app, &id).await, [cy.clone()]);
    // A member's leaving alone changes the version too.
    let before = replaced.etag.unwrap();
    let left = patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "remove", "path": "members", "value": [{ "value": cy }] }]),
    )
    .await;
    assert_eq!(left.body["members"], json!([]));
    assert_ne!(left.etag.as_deref(), Some(before.as_str()));
    // add, replace, remove all, in one request.
    let patched = patch_group(
        &scim,
        &id,
        json!([
            { "op": "add", "path": "members", "value": [{ "value": ana }, { "value": bo }] },
            { "op": "replace", "path": "displayName", "value": "Floor team" },
        ]),
    )
    .await;
    assert_eq!(member_values(&patched.body), sorted(&[&ana, &bo]));
    let replaced_members = patch_group(
        &scim,
        &id,
        json!([{ "op": "replace", "path": "members", "value": [{ "value": bo }, { "value": cy }] }]),
    )
    .await;
    assert_eq!(member_values(&replaced_members.body), sorted(&[&bo, &cy]));
    let emptied = patch_group(&scim, &id, json!([{ "op": "remove", "path": "members" }])).await;
    assert_eq!(emptied.body["members"], json!([]));
    assert!(grpc_members(&app, &id).await.is_empty());
    assert_patch_refused(
        &scim,
        &id,
        json!([{ "op": "replace", "path": "owner", "value": "x" }]),
        StatusCode::BAD_REQUEST,
        "invalidPath",
        "owner is not an attribute of Group",
    )
    .await;
    assert_patch_refused(
        &scim,
        &id,
        json!([{ "op": "remove", "path": "displayName" }]),
        StatusCode::BAD_REQUEST,
        "mutability",
        "displayName is required",
    )
    .await;
    // DELETE, under If-Match too.
    let current = scim.get(&format!("/Groups/{id}")).await.etag.unwrap();
    let refused = scim
        .call_with(
            Method::DELETE,
            &format!("/Groups/{id}"),
            None,
            &[("if-match", &before)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    let deleted = scim
        .call_with(
            Method::DELETE,
            &format!("/Groups/{id}"),
            None,
            &[("if-match", &current)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = scim.get(&format!("/Groups/{id}")).await;
    assert_error(&gone, StatusCode::NOT_FOUND, None, "not found");
    assert_error(
        &scim.get("/Groups/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        None,
        "not found",
    );
}

#[tokio::test]
async fn the_extension_changes_a_groups_profile_and_units() {
    let app = TestApp::spawn().await;
    default_profile(&app).await;
    let (manager, unit) = manager_profile_and_store(&app, "Porto").await;
    let scim = Scim::new(&app, &app.admin_key);
    let id = create_group(&scim, json!({ "displayName": "Porto" })).await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "replace", "path": format!("{ROSTER_GROUP}:unitIds"), "value": [unit] },
               { "op": "replace", "value": { ROSTER_GROUP: { "profileId": manager } } }]),
    )
    .await;
    let group = app.get_group(&id).await;
    assert_eq!(
        (group.profile_id, group.unit_scope, group.unit_ids),
        (
            manager.clone(),
            proto::UnitScope::Units as i32,
            vec![unit.clone()]
        )
    );
    // A PUT without the extension keeps the profile and units.
    let put = scim
        .call(
            Method::PUT,
            &format!("/Groups/{id}"),
            Some(json!({ "displayName": "Porto store" })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body[ROSTER_GROUP]["unitScope"], json!("UNITS"));
    assert_patch_refused(
        &scim,
        &id,
        json!([{ "op": "replace", "path": format!("{ROSTER_GROUP}:unitScope"), "value": "SOME" }]),
        StatusCode::BAD_REQUEST,
        "invalidValue",
        "unitScope: `SOME` is not ALL_UNITS, UNITS or NO_UNIT",
    )
    .await;
    // Removed, the profile and the scope go back to a new group's defaults:
    // the organization's default profile, on all units.
    let default = app
        .get_group(&create_group(&scim, json!({ "displayName": "Other" })).await)
        .await
        .profile_id;
    for remove in [
        json!([{ "op": "remove", "path": format!("{ROSTER_GROUP}:profileId") },
               { "op": "remove", "path": format!("{ROSTER_GROUP}:unitScope") }]),
        json!([{ "op": "remove", "path": ROSTER_GROUP }]),
    ] {
        patch_group_ok(
            &scim,
            &id,
            json!([{ "op": "replace", "value": { ROSTER_GROUP: { "profileId": manager, "unitIds": [unit] } } }]),
        ).await;
        patch_group_ok(&scim, &id, remove).await;
        let group = app.get_group(&id).await;
        assert_eq!(
            (group.profile_id, group.unit_scope, group.unit_ids),
            (default.clone(), proto::UnitScope::AllUnits as i32, vec![])
        );
    }
}

#[tokio::test]
async fn lists_filter_page_and_leave_members_out_when_asked() {
    let (_app, scim, ana, _) = scene().await;
    let mut ids = Vec::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        ids.push(create_group(&scim, json!({ "displayName": name })).await);
    }
    patch_group(
        &scim,
        &ids[1],
        json!([{ "op": "add", "path": "members", "value": [{ "value": ana }] }]),
    )
    .await;
    assert_eq!(
        found(&scim, "displayName eq \"beta\"").await,
        [ids[1].clone()]
    );
    assert_eq!(
        found(&scim, "displayName sw \"a\" or displayName ew \"MMA\"").await,
        [ids[0].clone(), ids[2].clone()]
    );
    assert_eq!(
        found(&scim, &format!("id eq \"{}\"", ids[2])).await,
        [ids[2].clone()]
    );
    assert_eq!(
        found(&scim, &format!("members[value eq \"{ana}\"]")).await,
        [ids[1].clone()]
    );
    assert_eq!(
        found(&scim, "not (displayName co \"et\")").await,
        [ids[0].clone(), ids[2].clone()]
    );
    // No group has an externalId yet: it equals nothing, differs from anything.
    assert!(found(&scim, "externalId eq \"x\"").await.is_empty());
    assert_eq!(found(&scim, "externalId ne \"x\"").await.len(), 3);
    // meta.lastModified moves with a member's joining: Beta's is now
    // later than Gamma's creation.
    let beta = scim.get(&format!("/Groups/{}", ids[1])).await;
    let modified = beta.body["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        found(&scim, &format!("meta.lastModified ge \"{modified}\"")).await,
        [ids[1].clone()]
    );
    let gamma = scim.get(&format!("/Groups/{}", ids[2])).await;
    let created = gamma.body["meta"]["created"].as_str().unwrap().to_owned();
    assert_eq!(
        found(&scim, &format!("meta.created lt \"{created}\"")).await,
        [ids[0].clone(), ids[1].clone()]
    );
    let bad = scim.get(&group_search("members pr")).await;
    assert_error(
        &bad,
        StatusCode::BAD_REQUEST,
        Some("invalidFilter"),
        "members pr",
    );
    let bad = scim.get(&group_search("owner eq \"x\"")).await;
    assert_error(
        &bad,
        StatusCode::BAD_REQUEST,
        Some("invalidFilter"),
        "filterable: displayName",
    );
    let page = scim.get("/Groups?startIndex=2&count=1").await;
    assert_eq!(page.body["totalResults"], json!(3));
    assert_eq!(page.body["startIndex"], json!(2));
    assert_eq!(page.body["itemsPerPage"], json!(1));
    assert_eq!(resource_ids(&page.body), [ids[1].clone()]);
    assert_eq!(member_values(&page.body["Resources"][0]), [ana.clone()]);
    let without = scim.get("/Groups?excludedAttributes=members").await;
    for resource in without.body["Resources"].as_array().unwrap() {
        assert!(resource.get("members").is_none(), "{resource}");
        assert!(resource.get("displayName").is_some(), "{resource}");
    }
    let only = scim
        .get(&format!("/Groups/{}?attributes=displayName", ids[1]))
        .await;
    assert_eq!(
        only.body,
        json!({ "schemas": [GROUP, ROSTER_GROUP], "id": ids[1], "displayName": "Beta" })
    );
}

#[tokio::test]
async fn group_writes_need_an_admin_key_and_are_audited_as_the_key() {
    let app = TestApp::spawn().await;
    default_profile(&app).await;
    let viewer = app
        .create_api_key(app.organization_id, "reader", &[Scope::Viewer])
        .await;
    let reader = Scim::new(&app, &viewer);
    let refused = reader.post("/Groups", json!({ "displayName": "X" })).await;
    assert_error(&refused, StatusCode::FORBIDDEN, None, "ADMIN");
    let (_, scim) = Scim::with_admin_key(&app, "entra").await;
    let ana = scim
        .create("ana.lima", "Ana", "Lima", "ana@acme.test")
        .await;
    let id = create_group(
        &scim,
        json!({ "displayName": "Audited", "members": [{ "value": ana }] }),
    )
    .await;
    assert_eq!(
        reader.get(&format!("/Groups/{id}")).await.status,
        StatusCode::OK
    );
    let key_id: uuid::Uuid = sqlx::query_scalar("select id from api_keys where name = 'entra'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await;
    let by_key: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.actor_id == key_id.to_string())
        .map(|e| (e.action.as_str(), e.target_id.as_str()))
        .collect();
    assert!(
        by_key.contains(&("group.create", id.as_str())),
        "{by_key:?}"
    );
    assert!(
        by_key.contains(&("user.groups.add", ana.as_str())),
        "{by_key:?}"
    );
}

#[tokio::test]
async fn the_change_stream_numbers_the_group_and_each_membership_change() {
    let (app, scim, ana, bo) = scene().await;
    let id = create_group(
        &scim,
        json!({ "displayName": "Streamed", "members": [{ "value": ana }] }),
    )
    .await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "replace", "path": "members", "value": [{ "value": bo }] }]),
    )
    .await;
    let changes: Vec<(String, String)> = crate::helpers::eventually(
        "the changes are numbered",
        std::time::Duration::from_secs(10),
        || async {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "select action, resource_id from changes where organization_id = $1 \
                 and action like any (array['group.%', 'user.groups.%']) order by position",
            )
            .bind(app.organization_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
            (rows.len() == 4).then_some(rows)
        },
    )
    .await;
    let expected = [
        ("group.create", &id),
        ("user.groups.add", &ana),
        ("user.groups.add", &bo),
        ("user.groups.remove", &ana),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(action, id)| ((*action).to_owned(), (*id).clone()))
        .collect();
    assert_eq!(changes, expected);
}

#[tokio::test]
async fn scim_users_are_invited_unless_the_organization_turns_it_off() {
    let (app, scim) = Scim::spawn().await;
    let invitations = |id: String| {
        let pool = app.pool.clone();
        async move {
            let id: uuid::Uuid = id.parse().unwrap();
            sqlx::query_scalar::<_, i64>(
                "select count(*) from outbox where user_id = $1 and kind = 'INVITATION'",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let invited = scim
        .create("ana.lima", "Ana", "Lima", "ana@acme.test")
        .await;
    assert_eq!(invitations(invited).await, 1);
    app.email("ana@acme.test", 1).await;
    let settings = proto::OrganizationSettings {
        scim_send_invitations: false,
        ..Default::default()
    };
    let updated = app
        .update_settings(settings, &["scim_send_invitations"])
        .await
        .unwrap();
    assert!(!updated.settings.unwrap().scim_send_invitations);
    let quiet = scim.create("bo.ng", "Bo", "Ng", "bo@acme.test").await;
    assert_eq!(invitations(quiet.clone()).await, 0);
    // Still invitable later, and still invited over gRPC.
    let user = app.get_user(&quiet).await;
    assert_eq!(user.status, proto::UserStatus::Pending as i32);
    app.create_user("Cy", "Ode", "cy@acme.test").await;
    app.email("cy@acme.test", 1).await;
    assert!(app
        .mail
        .emails()
        .iter()
        .all(|email| !email.to.contains("bo@acme.test")));
}

// The group requests Entra ID documents ("Tutorial: develop a sample SCIM
// endpoint", request and response examples), one test each.

/// Entra's create: its own schema URN, an externalId, no members.
#[tokio::test]
async fn entra_creates_a_group() {
    let (_app, scim, _, _) = scene().await;
    let created = scim
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "displayName",
                "meta": { "resourceType": "Group" },
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["displayName"], json!("displayName"));
    assert_eq!(created.body["members"], json!([]));
    assert_eq!(
        created.body["externalId"],
        json!("8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159")
    );
}

/// Entra's "Get Group by displayName", members left out.
#[tokio::test]
async fn entra_gets_a_group_by_display_name_without_members() {
    let (_app, scim, ana, _) = scene().await;
    let id = create_group(
        &scim,
        json!({ "displayName": "displayName", "members": [{ "value": ana }] }),
    )
    .await;
    let found = scim
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            encode("displayName eq \"displayName\"")
        ))
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["totalResults"], json!(1));
    let group = &found.body["Resources"][0];
    assert_eq!(group["id"], json!(id));
    assert!(group.get("members").is_none(), "{group}");
    // And by id, members left out, as Entra reads one back.
    let by_id = scim
        .get(&format!("/Groups/{id}?excludedAttributes=members"))
        .await;
    assert!(by_id.body.get("members").is_none(), "{}", by_id.body);
    assert_eq!(by_id.body["displayName"], json!("displayName"));
    // Entra's membership check: id and a member's value.
    let check = scim
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            encode(&format!("id eq \"{id}\" and members[value eq \"{ana}\"]"))
        ))
        .await;
    assert_eq!(check.body["totalResults"], json!(1), "{}", check.body);
}

/// Entra's "Update Group [Add Members]": `Add`, capitalised, `$ref` null.
#[tokio::test]
async fn entra_adds_a_member() {
    let (app, scim, ana, _) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "G" })).await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "Add", "path": "members", "value": [{ "$ref": null, "value": ana }] }]),
    )
    .await;
    assert_eq!(grpc_members(&app, &id).await, [ana]);
}

/// Entra's "Update Group [Remove Members]": `Remove` with a value list.
#[tokio::test]
async fn entra_removes_a_member() {
    let (app, scim, ana, bo) = scene().await;
    let id = create_group(
        &scim,
        json!({ "displayName": "G", "members": [{ "value": ana }, { "value": bo }] }),
    )
    .await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "Remove", "path": "members", "value": [{ "$ref": null, "value": ana }] }]),
    )
    .await;
    assert_eq!(grpc_members(&app, &id).await, [bo]);
}

/// Entra's "Update Group [Non-member attributes]": `Replace` of displayName.
#[tokio::test]
async fn entra_replaces_the_display_name() {
    let (app, scim, _, _) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "displayName" })).await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName" }]),
    ).await;
    assert_eq!(
        app.get_group(&id).await.name,
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
}

// The group requests Okta documents ("SCIM 2.0 protocol: Create groups,
// Retrieve groups, Update a group name, Update group memberships, Replace a
// group (PUT)"), one test each.

/// Okta's create: core schema, empty members.
#[tokio::test]
async fn okta_creates_a_group() {
    let (_app, scim, _, _) = scene().await;
    let created = scim
        .post(
            "/Groups",
            json!({ "schemas": [GROUP], "displayName": "Test SCIMv2", "members": [] }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["displayName"], json!("Test SCIMv2"));
}

/// Okta's retrievals: a page of groups, and one by displayName.
#[tokio::test]
async fn okta_retrieves_groups_by_page_and_by_display_name() {
    let (_app, scim, _, _) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "Test SCIMv2" })).await;
    let page = scim.get("/Groups?startIndex=1&count=100").await;
    assert_eq!(page.body["totalResults"], json!(1), "{}", page.body);
    let found = scim
        .get(&format!(
            "/Groups?filter={}&startIndex=1&count=100",
            encode("displayName eq \"Test SCIMv2\"")
        ))
        .await;
    assert_eq!(resource_ids(&found.body), [id]);
}

/// Okta's "Update a specific group name": path-less replace with the id.
#[tokio::test]
async fn okta_replaces_the_display_name_without_a_path() {
    let (app, scim, _, _) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "Test SCIMv2" })).await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "replace", "value": { "id": id, "displayName": "Test SCIMv2 renamed" } }]),
    )
    .await;
    assert_eq!(app.get_group(&id).await.name, "Test SCIMv2 renamed");
}

/// Okta's "Update group memberships": add with a display, remove by filter.
#[tokio::test]
async fn okta_patches_members() {
    let (app, scim, ana, bo) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "Test SCIMv2" })).await;
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "add", "path": "members", "value": [
            { "value": ana, "display": "ana@acme.test" },
            { "value": bo, "display": "bo@acme.test" },
        ] }]),
    )
    .await;
    assert_eq!(grpc_members(&app, &id).await, sorted(&[&ana, &bo]));
    patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "remove", "path": format!("members[value eq \"{ana}\"]") }]),
    )
    .await;
    assert_eq!(grpc_members(&app, &id).await, [bo]);
}

/// Okta's PUT of a group: the name and the whole member list.
#[tokio::test]
async fn okta_puts_a_group_with_its_members() {
    let (app, scim, ana, bo) = scene().await;
    let id = create_group(
        &scim,
        json!({ "displayName": "Test SCIMv2", "members": [{ "value": ana }] }),
    )
    .await;
    let put = scim
        .call(
            Method::PUT,
            &format!("/Groups/{id}"),
            Some(json!({
                "schemas": [GROUP], "id": id, "displayName": "Test SCIMv2",
                "members": [{ "value": bo, "display": "bo@acme.test" }],
            })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(member_values(&put.body), [bo.clone()]);
    assert_eq!(grpc_members(&app, &id).await, [bo]);
    // The same name again changes the members only: no group.update.
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            page_size: 50,
            target_type: "group".into(),
            target_id: id.clone(),
            ..Default::default()
        })
        .await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["group.create"]);
}

#[tokio::test]
async fn post_groups_search_lists_like_get() {
    // `_app` keeps the server running to the end.
    let (_app, scim, ana, _) = scene().await;
    for name in ["Cashiers", "Managers", "Cleaners"] {
        let body =
            json!({ "schemas": [GROUP], "displayName": name, "members": [{ "value": ana }] });
        assert_eq!(scim.post("/Groups", body).await.status, StatusCode::CREATED);
    }
    let filter = r#"displayName sw "C""#;
    let by_get = scim
        .get(&format!(
            "/Groups?filter={}&excludedAttributes=members&startIndex=2&count=1",
            filter.replace(' ', "%20").replace('"', "%22")
        ))
        .await;
    assert_eq!(by_get.status, StatusCode::OK, "{}", by_get.body);
    assert_eq!(by_get.body["totalResults"], json!(2));
    assert_eq!(
        by_get.body["Resources"][0]["displayName"],
        json!("Cleaners")
    );
    assert!(by_get.body["Resources"][0].get("members").is_none());
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": filter,
        "excludedAttributes": ["members"],
        "startIndex": 2,
        "count": 1,
    });
    let by_post = scim.post("/Groups/.search", search).await;
    assert_eq!(by_post.status, StatusCode::OK, "{}", by_post.body);
    assert_eq!(by_post.body, by_get.body);
    // Groups are not sorted: asked, the list says so instead of ignoring it.
    let sorted = scim.get("/Groups?sortBy=displayName").await;
    assert_error(
        &sorted,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "groups are listed oldest first and cannot be sorted",
    );
}

/// Entra ID sends each group's externalId: it is kept through POST, PUT
/// and PATCH, removed on request, found by filter, and unique.
#[tokio::test]
async fn a_groups_external_id_is_kept_filtered_and_unique() {
    let (app, scim, _, _) = scene().await;
    let id = create_group(
        &scim,
        json!({ "displayName": "Tellers", "externalId": "entra-1" }),
    )
    .await;
    let path = format!("/Groups/{id}");
    let read = scim.get(&path).await;
    assert_eq!(read.body["externalId"], json!("entra-1"), "{}", read.body);
    // A PATCH of something else keeps it; a PATCH of it replaces it.
    for (path, value, external_id) in [
        ("displayName", "Tellers 2", "entra-1"),
        ("externalId", "entra-2", "entra-2"),
    ] {
        let replace = json!([{ "op": "replace", "path": path, "value": value }]);
        let patched = patch_group(&scim, &id, replace).await;
        let body = &patched.body;
        assert_eq!(body["externalId"], json!(external_id), "{path}: {body}");
    }
    let added = patch_group(
        &scim,
        &id,
        json!([{ "op": "add", "value": { "externalId": "entra-3" } }]),
    )
    .await;
    assert_eq!(added.body["externalId"], json!("entra-3"), "{}", added.body);
    // A gRPC update leaves it (the proto has no external id).
    app.groups(app.as_admin())
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: id.clone(),
                description: "Front desk".into(),
                ..Default::default()
            }),
            update_mask: mask(&["description"]),
        })
        .await
        .unwrap();
    assert_eq!(scim.get(&path).await.body["externalId"], json!("entra-3"));
    let refused = app
        .groups(app.as_admin())
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["external_id"]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let violation = violations(&refused).pop().unwrap();
    assert_eq!(
        (violation.0.as_str(), violation.1.as_str()),
        ("update_mask.paths[0]", "UNKNOWN_FIELD"),
        "{refused:?}"
    );
    // Found by filter, case-exactly.
    let other = create_group(&scim, json!({ "displayName": "Cooks" })).await;
    assert_eq!(
        found(&scim, "externalId eq \"entra-3\"").await,
        [id.clone()]
    );
    assert!(found(&scim, "externalId eq \"ENTRA-3\"").await.is_empty());
    assert_eq!(found(&scim, "externalId pr").await, [id.clone()]);
    assert_eq!(
        found(&scim, "externalId ne \"entra-3\"").await,
        [other.clone()]
    );
    // Another group may not take it: 409 uniqueness naming externalId.
    let taken = scim
        .post(
            "/Groups",
            json!({ "displayName": "Bakers", "externalId": "entra-3" }),
        )
        .await;
    assert_error(
        &taken,
        StatusCode::CONFLICT,
        Some("uniqueness"),
        "externalId: this external id already belongs to another group",
    );
    assert_patch_refused(
        &scim,
        &other,
        json!([{ "op": "replace", "path": "externalId", "value": "entra-3" }]),
        StatusCode::CONFLICT,
        "uniqueness",
        "externalId",
    )
    .await;
    // Removed by PATCH; a PUT sets it, and a PUT without it removes it.
    let removed = patch_group_ok(
        &scim,
        &id,
        json!([{ "op": "remove", "path": "externalId" }]),
    )
    .await;
    assert!(removed.body.get("externalId").is_none(), "{}", removed.body);
    let put = scim
        .call(
            Method::PUT,
            &path,
            Some(json!({ "displayName": "Tellers", "externalId": "entra-4" })),
        )
        .await;
    assert_eq!(put.body["externalId"], json!("entra-4"), "{}", put.body);
    let put = scim
        .call(
            Method::PUT,
            &path,
            Some(json!({ "displayName": "Tellers" })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert!(put.body.get("externalId").is_none(), "{}", put.body);
    // A bad one is refused naming the attribute and the rule.
    assert_patch_refused(
        &scim,
        &id,
        json!([{ "op": "replace", "path": "externalId", "value": "x".repeat(101) }]),
        StatusCode::BAD_REQUEST,
        "invalidValue",
        "externalId: must be 1–100 characters without control characters",
    )
    .await;
}

#[tokio::test]
async fn unit_ids_added_or_removed_change_only_those_and_never_widen_the_scope() {
    let app = TestApp::spawn().await;
    default_profile(&app).await;
    let groups = app.groups(app.as_admin());
    let mut units = Vec::new();
    for name in ["Porto", "Braga", "Faro"] {
        let unit = groups
            .clone()
            .create_unit(new_unit(name, proto::UnitKind::Store))
            .await
            .created_id();
        units.push(unit);
    }
    units.sort();
    let (porto, braga, faro) = (&units[0], &units[1], &units[2]);
    let scim = Scim::new(&app, &app.admin_key);
    let id = create_group(
        &scim,
        json!({ "displayName": "North", ROSTER_GROUP: { "unitIds": [porto, braga] } }),
    )
    .await;
    let path = format!("{ROSTER_GROUP}:unitIds");
    let scope_of = |group: proto::Group| {
        let mut ids = group.unit_ids;
        ids.sort();
        (group.unit_scope, ids)
    };
    let units_scope = proto::UnitScope::Units as i32;
    for (operations, after) in [
        // Removing one unit keeps the others (it cleared them all before).
        (
            json!([{ "op": "remove", "path": path, "value": [porto] }]),
            vec![braga.clone()],
        ),
        // Adding one keeps those the group has.
        (
            json!([{ "op": "add", "path": path, "value": [faro] }]),
            vec![braga.clone(), faro.clone()],
        ),
    ] {
        patch_group_ok(&scim, &id, operations).await;
        let mut after = after;
        after.sort();
        assert_eq!(scope_of(app.get_group(&id).await), (units_scope, after));
    }
    // Taking away the last units does not make the group ALL_UNITS.
    assert_patch_refused(
        &scim,
        &id,
        json!([{ "op": "remove", "path": path, "value": [braga, faro] }]),
        StatusCode::BAD_REQUEST,
        "invalidValue",
        "this leaves the group on no unit",
    )
    .await;
    let mut held = vec![braga.clone(), faro.clone()];
    held.sort();
    assert_eq!(scope_of(app.get_group(&id).await), (units_scope, held));
}

#[tokio::test]
async fn two_concurrent_group_writes_at_one_version_cannot_both_succeed() {
    let (_app, scim, _, _) = scene().await;
    let id = create_group(&scim, json!({ "displayName": "Race" })).await;
    let path = format!("/Groups/{id}");
    for round in 0..4 {
        let version = scim.get(&path).await.etag.expect("an ETag");
        let if_match = [("if-match", version.as_str())];
        let rename = |name: String| {
            let body = json!({ "schemas": [PATCH], "Operations": [
                { "op": "replace", "path": "displayName", "value": name },
            ] });
            scim.call_with(Method::PATCH, &path, Some(body), &if_match)
        };
        let (first, second) =
            tokio::join!(rename(format!("A{round}")), rename(format!("B{round}")));
        let mut statuses = [first.status.as_u16(), second.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
    }
    // A delete at a version the group has left behind is refused too.
    let stale = scim.get(&path).await.etag.unwrap();
    let renamed = patch_group(
        &scim,
        &id,
        json!([{ "op": "replace", "path": "displayName", "value": "Later" }]),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let deleted = scim
        .call_with(Method::DELETE, &path, None, &[("if-match", stale.as_str())])
        .await;
    assert_eq!(deleted.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(scim.get(&path).await.status, StatusCode::OK);
}
