//! SCIM's rules beyond the shapes of the requests: which door the audit
//! trail names, one record per change, If-Match under concurrency, sorting
//! and POST `.search`.

use reqwest::{Method, StatusCode};
use roster::{
    domain::caller::Scope,
    proto::{self, ActorKind, Via},
};
use serde_json::{json, Value};

use crate::{
    helpers::TestApp,
    scim::{assert_error, encode, resource_ids, Answer, Scim, PATCH, USER},
};

const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// The audit events of one target, oldest first.
async fn audit_of(app: &TestApp, target_id: &str) -> Vec<proto::AuditEvent> {
    let mut events = app
        .audit_events(proto::ListAuditEventsRequest {
            target_id: target_id.into(),
            ..Default::default()
        })
        .await;
    events.reverse();
    events
}

fn actions(events: &[proto::AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.action.as_str()).collect()
}

async fn key_id(app: &TestApp, name: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("select id from api_keys where name = $1")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    id.to_string()
}

fn replacement(user_name: &str, given: &str, email: &str, active: bool) -> Value {
    json!({
        "schemas": [USER], "userName": user_name, "active": active,
        "name": { "givenName": given, "familyName": "Lima" },
        "emails": [{ "value": email, "type": "work", "primary": true }],
    })
}

#[tokio::test]
async fn scim_writes_are_audited_via_scim_with_the_key_as_actor_and_grpc_ones_via_grpc() {
    let app = TestApp::spawn().await;
    let (_, scim) = Scim::with_admin_key(&app, "entra").await;
    let id = scim.create("ana", "Ana", "Lima", "ana@acme.test").await;
    let put = scim
        .put(&id, replacement("ana", "Anna", "ana@acme.test", true))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let patched = scim
        .patch(
            &id,
            json!([{ "op": "replace", "path": "externalId", "value": "E-7" }]),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let deleted = scim.delete(&id).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let events = audit_of(&app, &id).await;
    assert_eq!(
        actions(&events),
        ["user.create", "user.update", "user.update", "user.delete"]
    );
    let entra = key_id(&app, "entra").await;
    for event in &events {
        assert_eq!(event.via, Via::Scim as i32, "{}", event.action);
        assert_eq!(event.actor_kind, ActorKind::ApiKey as i32);
        assert_eq!(event.actor_id, entra, "{}", event.action);
    }

    let over_grpc = app.create_user("Bo", "Ng", "bo@acme.test").await;
    let events = audit_of(&app, &over_grpc.id).await;
    assert_eq!(actions(&events), ["user.create"]);
    assert_eq!(events[0].via, Via::Grpc as i32);
}

#[tokio::test]
async fn a_put_changing_values_and_active_is_one_audited_update() {
    let (app, scim) = Scim::spawn().await;
    let id = scim.create("ana", "Ana", "Lima", "ana@acme.test").await;
    let put = scim
        .put(&id, replacement("ana", "Anna", "anna@acme.test", false))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["active"], json!(false));
    assert_eq!(put.body["name"]["givenName"], json!("Anna"));
    let patched = scim
        .patch(
            &id,
            json!([
                { "op": "replace", "path": "active", "value": true },
                { "op": "replace", "path": "name.familyName", "value": "Lima Souza" },
            ]),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["active"], json!(true));
    // Okta's deactivation changes the admin state alone: recorded as such.
    scim.deactivate(&id).await;

    let events = audit_of(&app, &id).await;
    assert_eq!(
        actions(&events),
        [
            "user.create",
            "user.update",
            "user.update",
            "user.status.set"
        ]
    );
    assert_eq!(
        events[1].changed_fields,
        ["first_name", "email", "status"],
        "the PUT's values and its status in one record"
    );
    let details = events[1].details.as_ref().unwrap();
    let status = &details.fields["status"];
    let status = format!("{status:?}");
    assert!(
        status.contains("PENDING") && status.contains("INACTIVE"),
        "{status}"
    );
    assert_eq!(events[2].changed_fields, ["last_name", "status"]);
    assert_eq!(events[3].changed_fields, ["status"]);
}

/// The body of a PUT that renames the user to `given`.
fn rename(given: &str) -> Value {
    replacement("hal", given, "hal@acme.test", true)
}

#[tokio::test]
async fn two_concurrent_writes_at_the_same_version_cannot_both_succeed() {
    let (app, scim) = Scim::spawn().await;
    let id = scim.create("hal", "Hal", "Lima", "hal@acme.test").await;
    // Sending the invitation writes the user too (its expiry): a new version.
    app.email("hal@acme.test", 1).await;
    let path = format!("/Users/{id}");
    // A few rounds: a check made before the writing transaction lets both
    // through whenever the two reads come before either write.
    for round in 0..4 {
        let version = scim.get(&path).await.etag.unwrap();
        let headers = [("if-match", version.as_str())];
        let (first, second) = tokio::join!(
            scim.call_with(
                Method::PUT,
                &path,
                Some(rename(&format!("A{round}"))),
                &headers
            ),
            scim.call_with(
                Method::PUT,
                &path,
                Some(rename(&format!("B{round}"))),
                &headers
            ),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::PRECONDITION_FAILED],
            "round {round}: {} / {}",
            first.body,
            second.body
        );
        let winner: &Answer = if first.status == StatusCode::OK {
            &first
        } else {
            &second
        };
        let now = scim.get(&path).await;
        assert_eq!(
            now.body["name"]["givenName"],
            winner.body["name"]["givenName"]
        );
        assert_eq!(now.etag, winner.etag);
    }
    let updates = audit_of(&app, &id)
        .await
        .into_iter()
        .filter(|e| e.action == "user.update")
        .count();
    assert_eq!(updates, 4, "one write per round");

    // A delete and a write at the same version: the second to lock is refused.
    let version = scim.get(&path).await.etag.unwrap();
    let headers = [("if-match", version.as_str())];
    let (write, delete) = tokio::join!(
        scim.call_with(Method::PUT, &path, Some(rename("Last")), &headers),
        scim.call_with(Method::DELETE, &path, None, &headers),
    );
    let mut statuses = [write.status, delete.status];
    statuses.sort();
    let refused_write = [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND];
    let refused_delete = [StatusCode::OK, StatusCode::PRECONDITION_FAILED];
    assert!(
        statuses == refused_write || statuses == refused_delete,
        "{statuses:?}: {} / {}",
        write.body,
        delete.body
    );
}

/// Users with names, emails and external ids that sort differently.
async fn five_users(scim: &Scim) -> Vec<String> {
    let mut ids = Vec::new();
    for (user_name, given, family, email, external_id) in [
        ("carla", "Zoë", "Ávila", "c@acme.test", Some("E-3")),
        ("Bruno", "yara", "Costa", "e@acme.test", None),
        ("alice", "Xavier", "bento", "a@acme.test", Some("E-1")),
        ("eva", "Wanda", "Duarte", "b@acme.test", Some("E-2")),
        ("Dora", "vera", "Esteves", "d@acme.test", None),
    ] {
        let mut body = json!({
            "schemas": [USER], "userName": user_name,
            "name": { "givenName": given, "familyName": family },
            "emails": [{ "value": email, "primary": true }],
        });
        if let Some(external_id) = external_id {
            body["externalId"] = json!(external_id);
        }
        let created = scim.post("/Users", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn user_names(scim: &Scim, query: &str) -> Vec<String> {
    let answer = scim.get(&format!("/Users?{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
    names(&answer)
}

fn names(answer: &Answer) -> Vec<String> {
    answer.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_sort_by_the_attribute_asked_ignoring_case() {
    let (app, scim) = Scim::spawn().await;
    let ids = five_users(&scim).await;
    let created = ["carla", "Bruno", "alice", "eva", "Dora"];
    assert_eq!(user_names(&scim, "").await, created, "oldest first");
    for (query, expected) in [
        (
            "sortBy=userName",
            ["alice", "Bruno", "carla", "Dora", "eva"],
        ),
        (
            "sortBy=userName&sortOrder=descending",
            ["eva", "Dora", "carla", "Bruno", "alice"],
        ),
        // Accents and case aside: Ávila, bento, Costa, Duarte, Esteves.
        (
            "sortBy=name.familyName",
            ["carla", "alice", "Bruno", "eva", "Dora"],
        ),
        (
            "sortBy=name.givenName",
            ["Dora", "eva", "alice", "Bruno", "carla"],
        ),
        (
            "sortBy=emails.value",
            ["alice", "eva", "carla", "Dora", "Bruno"],
        ),
        ("sortBy=emails", ["alice", "eva", "carla", "Dora", "Bruno"]),
        // Without an external id last, in both orders; ties by id.
        (
            "sortBy=externalId",
            ["alice", "eva", "carla", "Bruno", "Dora"],
        ),
        (
            "sortBy=externalId&sortOrder=descending",
            ["carla", "eva", "alice", "Dora", "Bruno"],
        ),
        (
            "sortBy=meta.created&sortOrder=descending",
            ["Dora", "eva", "alice", "Bruno", "carla"],
        ),
        (
            "sortBy=urn:ietf:params:scim:schemas:core:2.0:User:userName",
            ["alice", "Bruno", "carla", "Dora", "eva"],
        ),
    ] {
        assert_eq!(user_names(&scim, query).await, expected, "{query}");
    }
    // UUIDv7 ids follow creation.
    let mut by_id = ids.clone();
    by_id.sort();
    let answer = scim.get("/Users?sortBy=id").await;
    assert_eq!(resource_ids(&answer.body), by_id);
    // The latest change first, once the invitations (which write the
    // users too) are out.
    for address in ["a", "b", "c", "d", "e"] {
        app.email(&format!("{address}@acme.test"), 1).await;
    }
    let patched = scim
        .patch(
            &ids[2],
            json!([{ "op": "replace", "path": "name.givenName", "value": "Xavi" }]),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let latest = user_names(&scim, "sortBy=meta.lastModified&sortOrder=descending").await;
    assert_eq!(latest[0], "alice");
    // Sorting and paging together: the second page of two.
    let filter = encode(r#"userName ne "eva""#);
    let page = scim
        .get(&format!(
            "/Users?filter={filter}&sortBy=userName&startIndex=3&count=2"
        ))
        .await;
    assert_eq!(names(&page), ["carla", "Dora"]);
    assert_eq!(page.body["totalResults"], json!(4));
    assert_eq!(page.body["startIndex"], json!(3));

    let unknown = scim.get("/Users?sortBy=title").await;
    assert_error(
        &unknown,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "sortBy: `title` cannot be sorted on; sortable: userName",
    );
    let order = scim.get("/Users?sortBy=userName&sortOrder=up").await;
    assert_error(
        &order,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "sortOrder: `up` is neither ascending nor descending",
    );
}

#[tokio::test]
async fn post_search_lists_like_get_at_users_and_not_across_types_at_the_root() {
    let app = TestApp::spawn().await;
    let viewer = app
        .create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
        .await;
    let scim = Scim::new(&app, &app.admin_key);
    five_users(&scim).await;
    let reader = Scim::new(&app, &viewer);
    let search = json!({
        "schemas": [SEARCH],
        "filter": r#"emails.value ew "@acme.test" and not (userName eq "eva")"#,
        "sortBy": "userName",
        "sortOrder": "descending",
        "attributes": ["userName", "name.familyName"],
        "startIndex": 2,
        "count": 2,
    });
    let filter = encode(r#"emails.value ew "@acme.test" and not (userName eq "eva")"#);
    let by_get = reader
        .get(&format!(
            "/Users?filter={filter}&sortBy=userName&sortOrder=descending\
             &attributes=userName,name.familyName&startIndex=2&count=2"
        ))
        .await;
    assert_eq!(by_get.status, StatusCode::OK, "{}", by_get.body);
    let found = reader.post("/Users/.search", search.clone()).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body, by_get.body);
    // At the root a search would span users and groups at once, which this
    // service provider does not do: 501, naming where to search instead.
    let root = reader.post("/.search", search.clone()).await;
    assert_eq!(root.status, StatusCode::NOT_IMPLEMENTED, "{}", root.body);
    assert!(root.body["detail"]
        .as_str()
        .unwrap()
        .contains("/Users/.search"));
    assert_eq!(names(&by_get), ["carla", "Bruno"]);
    assert_eq!(by_get.body["totalResults"], json!(4));
    let first = &by_get.body["Resources"][0];
    assert_eq!(first["name"], json!({ "familyName": "Ávila" }));
    assert!(first.get("emails").is_none(), "{first}");

    // An empty search is every user, oldest first.
    let all = reader
        .post("/Users/.search", json!({ "schemas": [SEARCH] }))
        .await;
    assert_eq!(all.body["totalResults"], json!(5));

    for (body, scim_type, detail) in [
        (
            json!(["userName"]),
            "invalidSyntax",
            "the body must be a JSON object",
        ),
        (
            json!({ "schemas": [PATCH] }),
            "invalidSyntax",
            "schemas must hold urn:ietf:params:scim:api:messages:2.0:SearchRequest",
        ),
        (
            json!({ "schemas": [SEARCH], "count": "2" }),
            "invalidValue",
            "count: must be an integer",
        ),
        (
            json!({ "schemas": [SEARCH], "attributes": [1] }),
            "invalidValue",
            "attributes: must be a list of attribute paths",
        ),
        (
            json!({ "schemas": [SEARCH], "filter": "userName zz \"a\"" }),
            "invalidFilter",
            "filter:",
        ),
        (
            json!({ "schemas": [SEARCH], "sortBy": "password" }),
            "invalidValue",
            "sortBy: `password` cannot be sorted on",
        ),
    ] {
        let refused = reader.post("/Users/.search", body.clone()).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, Some(scim_type), detail);
    }
    let anonymous = Scim::new(&app, "nope")
        .post("/.search", json!({ "schemas": [SEARCH] }))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn phone_numbers_take_tel_uris_and_refuse_a_number_without_its_country_code() {
    let (_app, scim) = Scim::spawn().await;
    let person = |user_name: &str, phone: &str| {
        json!({
            "schemas": [USER], "userName": user_name,
            "name": { "givenName": "Ana", "familyName": "Lima" },
            "emails": [{ "value": format!("{user_name}@acme.test"), "type": "work", "primary": true }],
            "phoneNumbers": [{ "value": phone, "type": "work", "primary": true }],
        })
    };
    let created = scim
        .post("/Users", person("ana", "tel:+1-201-555-0123"))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // One value of each: no `primary` flag in answers, none in the schema.
    assert_eq!(
        created.body["phoneNumbers"],
        json!([{ "value": "+12015550123", "type": "work" }])
    );
    assert_eq!(
        created.body["emails"],
        json!([{ "value": "ana@acme.test", "type": "work" }])
    );
    let schema = scim.get(&format!("/Schemas/{USER}")).await;
    assert!(
        !schema.body.to_string().contains("\"primary\""),
        "{}",
        schema.body
    );
    let local = scim.post("/Users", person("bo", "(555) 555-0100")).await;
    assert_error(
        &local,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "phoneNumbers: must be + and 8–15 digits",
    );
}
