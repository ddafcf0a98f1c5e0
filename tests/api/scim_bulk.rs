//! SCIM `/Bulk` (RFC 7644 §3.7): operations dispatched in order through the
//! SCIM endpoints, bulkId references, failOnErrors, the advertised limits,
//! who may send one, and replays with the same X-Request-Id.

use reqwest::StatusCode;
use roster::domain::caller::Scope;
use serde_json::{json, Value};

use crate::{
    helpers::TestApp,
    scim::{assert_error, Answer, Scim},
};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const MAX_OPERATIONS: usize = 1000;
const MAX_PAYLOAD_SIZE: usize = 1 << 20;

fn user(name: &str) -> Value {
    json!({
        "schemas": [USER], "userName": name,
        "name": { "givenName": "Given", "familyName": "Family" },
        "emails": [{ "value": format!("{name}@acme.test"), "type": "work", "primary": true }],
    })
}

/// A POST of a new user with this bulkId (also its userName).
fn create(bulk_id: &str) -> Value {
    json!({ "method": "POST", "path": "/Users", "bulkId": bulk_id, "data": user(bulk_id) })
}

fn bulk_request(operations: Value) -> Value {
    json!({ "schemas": [BULK_REQUEST], "Operations": operations })
}

async fn bulk(scim: &Scim, request: Value) -> Answer {
    bulk_with(scim, request, &[]).await
}

async fn bulk_with(scim: &Scim, request: Value, headers: &[(&str, &str)]) -> Answer {
    scim.call_with(reqwest::Method::POST, "/Bulk", Some(request), headers)
        .await
}

/// The operations of a 200 BulkResponse.
fn operations(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["schemas"], json!([BULK_RESPONSE]));
    answer.body["Operations"].as_array().unwrap().clone()
}

fn statuses(operations: &[Value]) -> Vec<&str> {
    operations
        .iter()
        .map(|operation| operation["status"].as_str().unwrap())
        .collect()
}

async fn user_count(scim: &Scim) -> u64 {
    scim.get("/Users?count=0").await.body["totalResults"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn discovery_advertises_the_bulk_limits() {
    let (_app, scim) = Scim::spawn().await;
    let config = scim.get("/ServiceProviderConfig").await;
    assert_eq!(
        config.body["bulk"],
        json!({ "supported": true, "maxOperations": MAX_OPERATIONS, "maxPayloadSize": MAX_PAYLOAD_SIZE })
    );
}

#[tokio::test]
async fn creates_with_bulk_ids_and_a_patch_naming_one_of_them() {
    // No mail delivery: sending bea's invitation moves her version on, and
    // the PATCH's version is compared with a read after it.
    let app = TestApp::spawn_with(|settings| settings.delivery = None).await;
    let scim = Scim::new(&app, &app.admin_key);
    let answer = bulk(
        &scim,
        bulk_request(json!([
            create("ana"),
            create("bea"),
            {
                "method": "PATCH", "path": "/Users/bulkId:bea",
                "data": { "schemas": [PATCH], "Operations": [
                    { "op": "replace", "path": "active", "value": false },
                    { "op": "replace", "path": "externalId", "value": "bulkId:ana" },
                ] },
            },
        ])),
    )
    .await;
    let operations = operations(&answer);
    assert_eq!(statuses(&operations), ["201", "201", "200"]);
    let (ana, bea) = (&operations[0], &operations[1]);
    assert_eq!(ana["method"], json!("POST"));
    assert_eq!(ana["bulkId"], json!("ana"));
    assert!(ana.get("response").is_none(), "{ana}");
    let location = ana["location"].as_str().unwrap();
    let ana_id = location.rsplit('/').next().unwrap();
    let bea_id = bea["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    // The PATCH reached bea by her bulkId, and the reference in its data
    // became ana's id.
    let patched = &operations[2];
    assert_eq!(patched["method"], json!("PATCH"));
    assert!(patched["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/scim/v2/Users/{bea_id}")));
    let read = scim.get(&format!("/Users/{bea_id}")).await;
    assert_eq!(read.body["active"], json!(false));
    assert_eq!(read.body["externalId"], json!(ana_id));
    assert_eq!(patched["version"].as_str(), read.etag.as_deref());
    let read = scim.get(location.split("/scim/v2").nth(1).unwrap()).await;
    assert_eq!(read.body["userName"], json!("ana"));
    // (The invitation's delivery may have moved ana's version on since.)
    assert!(
        ana["version"].as_str().unwrap().starts_with("W/\""),
        "{ana}"
    );
}

#[tokio::test]
async fn a_bad_operation_fails_alone_and_a_reference_to_it_is_a_conflict() {
    let (_app, scim) = Scim::spawn().await;
    let mut bad = user("bad");
    bad["emails"][0]["value"] = json!("not an email");
    let answer = bulk(
        &scim,
        bulk_request(json!([
            create("ana"),
            { "method": "POST", "path": "/Users", "bulkId": "bad", "data": bad },
            { "method": "DELETE", "path": "/Users/bulkId:bad" },
            { "method": "DELETE", "path": "/Users/bulkId:later" },
            { "method": "PUT", "path": "/Users/00000000-0000-0000-0000-000000000000", "data": user("nobody") },
            {
                "method": "PATCH", "path": "/Users/bulkId:ana", "version": "W/\"1\"",
                "data": { "schemas": [PATCH], "Operations": [
                    { "op": "replace", "path": "active", "value": false },
                ] },
            },
            create("later"),
        ])),
    )
    .await;
    let operations = operations(&answer);
    assert_eq!(
        statuses(&operations),
        ["201", "400", "409", "409", "404", "412", "201"]
    );
    // The version is the If-Match of its operation: ana stayed active.
    assert!(operations[5]["location"].as_str().unwrap().ends_with(
        operations[0]["location"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
    ));
    let ana = scim
        .get(
            operations[0]["location"]
                .as_str()
                .unwrap()
                .split("/scim/v2")
                .nth(1)
                .unwrap(),
        )
        .await;
    assert_eq!(ana.body["active"], json!(true));
    let failed = &operations[1];
    assert_eq!(failed["bulkId"], json!("bad"));
    assert!(failed.get("location").is_none(), "{failed}");
    assert_eq!(failed["response"]["schemas"], json!([ERROR]));
    assert_eq!(failed["response"]["scimType"], json!("invalidValue"));
    assert!(failed["response"]["detail"]
        .as_str()
        .unwrap()
        .contains("emails"));
    for (index, why) in [(2, "failed"), (3, "no earlier POST")] {
        let response = &operations[index]["response"];
        assert_eq!(response["status"], json!("409"));
        assert_eq!(response["scimType"], json!("invalidValue"), "{response}");
        assert!(
            response["detail"].as_str().unwrap().contains(why),
            "{response}"
        );
    }
    assert_eq!(user_count(&scim).await, 2);
}

#[tokio::test]
async fn fail_on_errors_stops_at_that_many_errors() {
    let (_app, scim) = Scim::spawn().await;
    scim.create("taken", "Ta", "Ken", "taken@acme.test").await;
    let mut request = bulk_request(json!([create("ana"), create("taken"), create("bea"),]));
    request["failOnErrors"] = json!(1);
    let answer = bulk(&scim, request).await;
    let operations = operations(&answer);
    assert_eq!(statuses(&operations), ["201", "409"]);
    assert_eq!(operations[1]["response"]["scimType"], json!("uniqueness"));
    // Each operation is its own transaction: ana stays, bea never ran.
    assert_eq!(user_count(&scim).await, 2);
    let names = scim.filter("userName eq \"bea\"").await;
    assert!(names.is_empty());
}

#[tokio::test]
async fn too_many_operations_or_too_large_a_body_is_413() {
    let (_app, scim) = Scim::spawn().await;
    let many: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|i| json!({ "method": "DELETE", "path": format!("/Users/{i}") }))
        .collect();
    let answer = bulk(&scim, bulk_request(json!(many))).await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("tooMany"),
        "1001 operations are more than maxOperations, 1000",
    );
    let mut big = user("big");
    big["name"]["givenName"] = json!("x".repeat(MAX_PAYLOAD_SIZE));
    let answer = bulk(
        &scim,
        bulk_request(json!([{ "method": "POST", "path": "/Users", "bulkId": "big", "data": big }])),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
        "larger than maxPayloadSize, 1048576 bytes",
    );
    assert_eq!(user_count(&scim).await, 0);
}

#[tokio::test]
async fn a_malformed_request_is_invalid_syntax_naming_the_field_and_runs_nothing() {
    let (_app, scim) = Scim::spawn().await;
    let cases = [
        (json!({ "Operations": [] }), "schemas: must hold"),
        (
            json!({ "schemas": [BULK_REQUEST] }),
            "Operations: must be a list",
        ),
        (
            bulk_request(json!([create("ana"), { "method": "GET", "path": "/Users" }])),
            "Operations[1].method: must be one of POST, PUT, PATCH, DELETE",
        ),
        (
            bulk_request(
                json!([create("ana"), { "method": "POST", "path": "/Users", "data": user("bea") }]),
            ),
            "Operations[1].bulkId: is required for a POST",
        ),
        (
            bulk_request(json!([{ "method": "PATCH", "path": "/Users/x" }])),
            "Operations[0].data: is required for a PATCH",
        ),
        (
            bulk_request(json!([{ "method": "DELETE" }])),
            "Operations[0].path: is required",
        ),
    ];
    for (request, detail) in cases {
        let answer = bulk(&scim, request).await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            detail,
        );
    }
    // Neither a nested Bulk nor a search runs inside a Bulk.
    for path in ["/Bulk", "/Users/.search", "/.search"] {
        let refused = bulk(
            &scim,
            bulk_request(json!([create("ana"), { "method": "POST", "path": path, "bulkId": "x", "data": {} }])),
        )
        .await;
        assert_error(
            &refused,
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
            "Operations[1].path",
        );
    }
    let twice = bulk(&scim, bulk_request(json!([create("ana"), create("ana")]))).await;
    assert_error(
        &twice,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "Operations[1].bulkId: Operations[0] has it already",
    );
    let mut zero = bulk_request(json!([create("ana")]));
    zero["failOnErrors"] = json!(0);
    assert_error(
        &bulk(&scim, zero).await,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "failOnErrors: must be a positive integer",
    );
    assert_eq!(user_count(&scim).await, 0);
}

#[tokio::test]
async fn a_viewer_key_cannot_send_a_bulk_request() {
    let app = TestApp::spawn().await;
    let viewer_key = app
        .create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
        .await;
    let viewer = Scim::new(&app, &viewer_key);
    let answer = bulk(&viewer, bulk_request(json!([create("ana")]))).await;
    assert_error(&answer, StatusCode::FORBIDDEN, None, "ADMIN");
    let admin = Scim::new(&app, &app.admin_key);
    assert_eq!(user_count(&admin).await, 0);
}

#[tokio::test]
async fn a_replayed_bulk_with_the_same_request_id_creates_nothing_twice() {
    let (app, scim) = Scim::spawn().await;
    let request = bulk_request(json!([
        create("ana"),
        create("bea"),
        {
            "method": "PATCH", "path": "/Users/bulkId:bea",
            "data": { "schemas": [PATCH], "Operations": [
                { "op": "replace", "path": "externalId", "value": "bulkId:ana" },
            ] },
        },
    ]));
    let sent = [("x-request-id", "sync-2026-12-02")];
    let first = operations(&bulk_with(&scim, request.clone(), &sent).await);
    let again = operations(&bulk_with(&scim, request.clone(), &sent).await);
    assert_eq!(statuses(&first), ["201", "201", "200"]);
    assert_eq!(statuses(&again), ["201", "201", "200"]);
    for index in 0..2 {
        assert_eq!(first[index]["location"], again[index]["location"]);
    }
    assert_eq!(user_count(&scim).await, 2);
    // The operations are audited under the Bulk's request id.
    let request_ids: Vec<String> = sqlx::query_scalar(
        "select distinct request_id from audit_events where action like 'user.%'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(request_ids, ["sync-2026-12-02"]);
    // Without a request id, or with another, the same creates are new
    // creates: the users exist, so each is refused.
    for headers in [&[][..], &[("x-request-id", "sync-2026-12-03")][..]] {
        let other = operations(&bulk_with(&scim, request.clone(), headers).await);
        assert_eq!(statuses(&other), ["409", "409", "409"]);
    }
    // The same request id for different operations is no replay.
    let other = operations(&bulk_with(&scim, bulk_request(json!([create("cyd")])), &sent).await);
    assert_eq!(statuses(&other), ["201"]);
    assert_eq!(user_count(&scim).await, 3);
}

#[tokio::test]
async fn a_group_with_bulk_id_members_is_created_once_when_the_bulk_is_replayed() {
    let app = TestApp::spawn().await;
    crate::scim_groups::default_profile(&app).await;
    let scim = Scim::new(&app, &app.admin_key);
    let request = bulk_request(json!([
        create("ana"),
        {
            "method": "POST", "path": "/Groups", "bulkId": "cashiers",
            "data": {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Cashiers",
                "members": [{ "value": "bulkId:ana" }],
            },
        },
    ]));
    let sent = [("x-request-id", "groups-2026-12-02")];
    let first = operations(&bulk_with(&scim, request.clone(), &sent).await);
    let again = operations(&bulk_with(&scim, request, &sent).await);
    assert_eq!(statuses(&first), ["201", "201"]);
    assert_eq!(statuses(&again), ["201", "201"]);
    assert_eq!(first[1]["location"], again[1]["location"]);
    let groups = scim.get("/Groups").await;
    assert_eq!(groups.body["totalResults"], json!(1));
    let members = &groups.body["Resources"][0]["members"];
    let ana = first[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert_eq!(members[0]["value"], json!(ana));
}
