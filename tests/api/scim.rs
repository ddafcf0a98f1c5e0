//! SCIM 2.0 at `/scim/v2/` on the pages' listener: discovery, the User
//! operations, the request shapes Entra ID and Okta document, filters,
//! paging, ETags, and who may do what.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use roster::{
    domain::caller::Scope,
    proto::{self, ActorKind},
};
use serde_json::{json, Value};

use crate::helpers::TestApp;

pub(crate) const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM client of one app with one bearer token.
pub(crate) struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Scim {
    pub fn new(app: &TestApp, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/scim/v2", app.pages()),
            token: token.to_owned(),
        }
    }

    /// A new app and its admin key's SCIM client.
    pub async fn spawn() -> (TestApp, Self) {
        let app = TestApp::spawn().await;
        let scim = Self::new(&app, &app.admin_key);
        (app, scim)
    }

    /// A new ADMIN key of the app named `name` (an identity provider's) and
    /// its SCIM client: the key's secret and the client.
    pub async fn with_admin_key(app: &TestApp, name: &str) -> (String, Self) {
        let key = app
            .create_api_key(app.organization_id, name, &[Scope::Admin])
            .await;
        let scim = Self::new(app, &key);
        (key, scim)
    }

    /// PUT of a user: `user` replaces it.
    pub async fn put(&self, id: &str, user: Value) -> Answer {
        self.call(Method::PUT, &format!("/Users/{id}"), Some(user))
            .await
    }

    /// Okta's deactivation (a replace of `active` without a path), which
    /// must succeed: the answer.
    pub async fn deactivate(&self, id: &str) -> Answer {
        let inactive = json!([{ "op": "replace", "value": { "active": false } }]);
        let deactivated = self.patch(id, inactive).await;
        assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.body);
        deactivated
    }

    /// DELETE of a user.
    pub async fn delete(&self, id: &str) -> Answer {
        self.call(Method::DELETE, &format!("/Users/{id}"), None)
            .await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("scim request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (etag, location, content_type) =
            (header("etag"), header("location"), header("content-type"));
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            etag,
            location,
            content_type,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, id: &str, operations: Value) -> Answer {
        let body = json!({ "schemas": [PATCH], "Operations": operations });
        self.call(Method::PATCH, &format!("/Users/{id}"), Some(body))
            .await
    }

    /// Creates a user and returns its id.
    pub async fn create(&self, user_name: &str, given: &str, family: &str, email: &str) -> String {
        let created = self
            .post(
                "/Users",
                json!({
                    "schemas": [USER], "userName": user_name,
                    "name": { "givenName": given, "familyName": family },
                    "emails": [{ "value": email, "type": "work", "primary": true }],
                }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body["id"].as_str().unwrap().to_owned()
    }

    /// The ids of the users a filter finds (URL-encoded here).
    pub(crate) async fn filter(&self, filter: &str) -> Vec<String> {
        let answer = self.get(&format!("/Users?filter={}", encode(filter))).await;
        assert_eq!(answer.status, StatusCode::OK, "{filter}: {}", answer.body);
        resource_ids(&answer.body)
    }
}

pub(crate) fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn resource_ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The id of what a POST created, once the answer is 201 and says where
/// the resource is (Location, meta.location) and its version (ETag,
/// meta.version).
pub(crate) fn assert_created(created: &Answer, endpoint: &str) -> String {
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = created.location.as_deref();
    assert_eq!(location, created.body["meta"]["location"].as_str());
    let path = format!("/scim/v2/{endpoint}/{id}");
    assert!(location.unwrap().ends_with(&path), "{location:?}");
    assert_eq!(
        created.etag.as_deref(),
        created.body["meta"]["version"].as_str()
    );
    id
}

/// A SCIM error body: its status string, scimType and detail.
pub(crate) fn assert_error(
    answer: &Answer,
    status: StatusCode,
    scim_type: Option<&str>,
    detail_has: &str,
) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["schemas"], json!([ERROR]), "{}", answer.body);
    assert_eq!(answer.body["status"], json!(status.as_str()));
    assert_eq!(
        answer.body["scimType"].as_str(),
        scim_type,
        "{}",
        answer.body
    );
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.contains(detail_has), "{detail}");
}

#[tokio::test]
async fn discovery_advertises_users_patch_filters_sorting_etags_and_bulk() {
    let (_app, scim) = Scim::spawn().await;
    let config = scim.get("/ServiceProviderConfig").await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(
        config.content_type.as_deref(),
        Some("application/scim+json")
    );
    assert_eq!(config.body["patch"]["supported"], json!(true));
    assert_eq!(config.body["bulk"]["supported"], json!(true));
    assert_eq!(config.body["filter"]["supported"], json!(true));
    assert_eq!(config.body["filter"]["maxResults"], json!(200));
    assert_eq!(config.body["sort"]["supported"], json!(true));
    assert_eq!(config.body["etag"]["supported"], json!(true));
    assert_eq!(config.body["changePassword"]["supported"], json!(false));
    assert_eq!(
        config.body["authenticationSchemes"][0]["type"],
        json!("oauthbearertoken")
    );
    let types = scim.get("/ResourceTypes").await;
    assert_eq!(types.body["totalResults"], json!(2));
    assert_eq!(types.body["Resources"][0]["endpoint"], json!("/Users"));
    assert_eq!(types.body["Resources"][1]["endpoint"], json!("/Groups"));
    let schemas = scim.get("/Schemas").await;
    let ids: Vec<&str> = schemas.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            USER,
            ENTERPRISE,
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "urn:roster:params:scim:schemas:extension:2.0:Group"
        ]
    );
    let user_schema = scim.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(user_schema.body["name"], json!("User"));
    let other = scim.get("/Me").await;
    assert_error(
        &other,
        StatusCode::NOT_FOUND,
        None,
        "serves /Users, /Groups",
    );
}

#[tokio::test]
async fn a_created_user_shows_in_grpc_and_in_the_audit_trail_with_the_key_as_actor() {
    let app = TestApp::spawn().await;
    let (_, scim) = Scim::with_admin_key(&app, "entra").await;
    let created = scim
        .post(
            "/Users",
            json!({
                "schemas": [USER], "userName": "ana.lima", "externalId": "E-1",
                "name": { "givenName": "Ana", "familyName": "Lima" },
                "emails": [{ "value": "ana@acme.test", "type": "work", "primary": true }],
                "phoneNumbers": [{ "value": "+351 912 345 678", "type": "work" }],
            }),
        )
        .await;
    let id = assert_created(&created, "Users");
    assert_eq!(created.body["active"], json!(true));
    assert_eq!(
        created.body["phoneNumbers"][0]["value"],
        json!("+351912345678")
    );
    let user = app.get_user(&id).await;
    assert_eq!(
        (
            user.username.as_str(),
            user.email.as_str(),
            user.external_id.as_str()
        ),
        ("ana.lima", "ana@acme.test", "E-1")
    );
    let key_id: uuid::Uuid = sqlx::query_scalar("select id from api_keys where name = 'entra'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let events = app.audit_events_of("user.create").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_kind, ActorKind::ApiKey as i32);
    assert_eq!(events[0].actor_id, key_id.to_string());
    assert_eq!(events[0].target_id, id);
    // Invited like any other new user.
    app.email("ana@acme.test", 1).await;
}

#[tokio::test]
async fn get_put_and_delete_a_user() {
    let (_app, scim) = Scim::spawn().await;
    let id = scim.create("bo.ng", "Bo", "Ng", "bo@acme.test").await;
    let read = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["userName"], json!("bo.ng"));
    assert_eq!(read.body["name"]["familyName"], json!("Ng"));
    assert_eq!(read.etag.as_deref(), read.body["meta"]["version"].as_str());
    let replaced = scim
        .put(
            &id,
            json!({
                "schemas": [USER], "id": id, "userName": "bo.ng2",
                "name": { "givenName": "Bo", "familyName": "Nguyen" },
                "emails": [{ "value": "bo2@acme.test", "primary": true }],
                "active": false,
                "meta": { "resourceType": "User" },
            }),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["userName"], json!("bo.ng2"));
    assert_eq!(replaced.body["emails"][0]["value"], json!("bo2@acme.test"));
    assert_eq!(replaced.body["active"], json!(false));
    assert_ne!(replaced.etag, read.etag);
    let deleted = scim.delete(&id).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = scim.get(&format!("/Users/{id}")).await;
    assert_error(&gone, StatusCode::NOT_FOUND, None, "not found");
    let malformed = scim.get("/Users/not-a-uuid").await;
    assert_error(&malformed, StatusCode::NOT_FOUND, None, "not found");
}

#[tokio::test]
async fn attributes_and_excluded_attributes_shape_the_answer() {
    let (_app, scim) = Scim::spawn().await;
    let id = scim.create("cy.ode", "Cy", "Ode", "cy@acme.test").await;
    let only = scim
        .get(&format!("/Users/{id}?attributes=userName,emails.value"))
        .await;
    assert_eq!(
        only.body,
        json!({ "schemas": [USER], "id": id, "userName": "cy.ode", "emails": [{ "value": "cy@acme.test" }] })
    );
    let listed = scim.get("/Users?excludedAttributes=emails,meta,name").await;
    let first = &listed.body["Resources"][0];
    assert!(
        first.get("emails").is_none() && first.get("meta").is_none(),
        "{first}"
    );
    assert_eq!(first["userName"], json!("cy.ode"));
}

#[tokio::test]
async fn the_entra_id_requests_create_find_update_disable_and_delete() {
    let (_app, scim) = Scim::spawn().await;
    // Microsoft's "Create User" request.
    let created = scim
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
                "active": true,
                "emails": [{
                    "primary": true, "type": "work",
                    "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"
                }],
                "meta": { "resourceType": "User" },
                "name": { "formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName" },
                "roles": []
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    // "Get User by query" and "Get User by query - Zero results".
    let found = scim
        .filter(r#"userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1""#)
        .await;
    assert_eq!(found, [id.clone()]);
    let none = scim
        .get(&format!(
            "/Users?filter={}",
            encode(r#"userName eq "non-existent user""#)
        ))
        .await;
    assert_eq!(none.body["totalResults"], json!(0));
    assert_eq!(none.body["Resources"], json!([]));
    // "Update User [Multi-valued properties]".
    let updated = scim
        .patch(
            &id,
            json!([
                { "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com" },
                { "op": "Replace", "path": "name.familyName", "value": "updatedFamilyName" }
            ]),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        updated.body["emails"][0]["value"],
        json!("updatedEmail@microsoft.com")
    );
    assert_eq!(
        updated.body["name"]["familyName"],
        json!("updatedFamilyName")
    );
    // "Update User [Single-valued properties]".
    let renamed = scim
        .patch(
            &id,
            json!([{ "op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com" }]),
        )
        .await;
    assert_eq!(
        renamed.body["userName"],
        json!("5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com")
    );
    // "Disable User", as Entra sends it without the SCIM-compliance flag: a string.
    let disabled = scim
        .patch(
            &id,
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )
        .await;
    assert_eq!(disabled.body["active"], json!(false), "{}", disabled.body);
    let enabled = scim
        .patch(
            &id,
            json!([{ "op": "replace", "path": "active", "value": true }]),
        )
        .await;
    assert_eq!(enabled.body["active"], json!(true));
    // "Delete User".
    let deleted = scim.delete(&id).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_okta_requests_find_create_replace_and_deactivate() {
    let (app, scim) = Scim::spawn().await;
    // Okta checks the user is not there first.
    let absent = scim
        .get(&format!(
            "/Users?filter={}&startIndex=1&count=100",
            encode(r#"userName eq "test.user@okta.local""#)
        ))
        .await;
    assert_eq!(absent.body["totalResults"], json!(0), "{}", absent.body);
    let created = scim
        .post(
            "/Users",
            json!({
                "schemas": [USER], "userName": "test.user@okta.local",
                "name": { "givenName": "Test", "familyName": "User" },
                "emails": [{ "primary": true, "value": "test.user@okta.local", "type": "work" }],
                "displayName": "Test User", "locale": "en-US",
                "externalId": "00ujl29u0le5T6Aj10h7", "groups": [],
                "password": "1mz050nq", "active": true
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let replaced = scim
        .put(
            &id,
            json!({
                "schemas": [USER], "id": id, "userName": "test.user@okta.local",
                "name": { "givenName": "Another", "middleName": "Test", "familyName": "User" },
                "emails": [{ "primary": true, "value": "test.user@okta.local", "type": "work" }],
                "active": true, "groups": [], "meta": { "resourceType": "User" }
            }),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["name"]["givenName"], json!("Another"));
    let deactivated = scim.deactivate(&id).await;
    assert_eq!(deactivated.body["active"], json!(false));
    let user = app.get_user(&id).await;
    assert_eq!(user.status, proto::UserStatus::Inactive as i32);
}

#[tokio::test]
async fn a_viewer_key_reads_but_cannot_write_and_a_user_token_is_refused() {
    let (app, admin) = Scim::spawn().await;
    let id = admin.create("dee", "Dee", "Ray", "dee@acme.test").await;
    let viewer_key = app
        .create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
        .await;
    let viewer = Scim::new(&app, &viewer_key);
    assert_eq!(
        viewer.get(&format!("/Users/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(viewer.get("/Users").await.body["totalResults"], json!(1));
    let listed = viewer.get("/Users").await;
    assert_eq!(resource_ids(&listed.body), [id.clone()]);
    let refused = viewer
        .post("/Users", json!({ "userName": "eve", "name": { "givenName": "E", "familyName": "V" }, "emails": [{ "value": "eve@acme.test" }] }))
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, None, "ADMIN");
    let refused = viewer
        .patch(
            &id,
            json!([{ "op": "replace", "path": "active", "value": false }]),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, None, "ADMIN");
    let refused = viewer.delete(&id).await;
    assert_error(&refused, StatusCode::FORBIDDEN, None, "ADMIN");
    let sam = app.create_user("Sam", "Ray", "sam@acme.test").await;
    app.onboard(&sam.id).await;
    let token = app
        .mint_access_token(sam.id.parse().unwrap(), chrono::Duration::hours(1))
        .await;
    let as_user = Scim::new(&app, &token).get("/Users").await;
    assert_error(
        &as_user,
        StatusCode::UNAUTHORIZED,
        None,
        "not a user's access token",
    );
    let unknown = Scim::new(&app, "rst_key_nonsense").get("/Users").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    // Another organization's key sees none of acme's users.
    let other = app.create_organization("globex").await;
    let other_key = app.create_api_key(other, "globex", &[Scope::Admin]).await;
    let other = Scim::new(&app, &other_key);
    assert_eq!(
        other.get(&format!("/Users/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(other.get("/Users").await.body["totalResults"], json!(0));
}

#[tokio::test]
async fn filters_combine_comparisons_and_pages_count_the_matches() {
    let (app, scim) = Scim::spawn().await;
    let ana = scim.create("ana", "Ana", "Lima", "ana@north.test").await;
    let bob = scim.create("bob", "Bob", "Lima", "bob@south.test").await;
    let cid = scim.create("cid", "Cid", "Moss", "cid@north.test").await;
    // Sending an invitation writes its user: cid's change below must be the last.
    crate::helpers::eventually(
        "the invitations are sent",
        Duration::from_secs(15),
        || async {
            let pending = app.count("select count(*) from outbox where status = 'PENDING' or lease_owner is not null").await;
            (pending == 0).then_some(())
        },
    )
    .await;
    scim.patch(
        &cid,
        json!([{ "op": "add", "path": "externalId", "value": "X_1" }]),
    )
    .await;
    assert_eq!(scim.filter(r#"USERNAME eq "ANA""#).await, [ana.clone()]);
    assert_eq!(
        scim.filter(r#"emails co "@north""#).await,
        [ana.clone(), cid.clone()]
    );
    assert_eq!(
        scim.filter(r#"emails.value ew "south.test""#).await,
        [bob.clone()]
    );
    assert_eq!(
        scim.filter(r#"name.familyName sw "li""#).await,
        [ana.clone(), bob.clone()]
    );
    assert_eq!(scim.filter(r#"externalId pr"#).await, [cid.clone()]);
    assert_eq!(
        scim.filter(r#"externalId eq "x_1""#).await,
        Vec::<String>::new()
    );
    assert_eq!(
        scim.filter(r#"externalId ne "X_1""#).await,
        [ana.clone(), bob.clone()]
    );
    assert_eq!(
        scim.filter(r#"name.familyName eq "Lima" and not (userName eq "ana")"#)
            .await,
        [bob.clone()]
    );
    assert_eq!(
        scim.filter(r#"(userName eq "ana" or userName eq "cid") and emails[value co "north"]"#)
            .await,
        [ana.clone(), cid.clone()]
    );
    assert_eq!(
        scim.filter(r#"userName co "%""#).await,
        Vec::<String>::new()
    );
    let modified = scim.get(&format!("/Users/{cid}")).await.body["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        scim.filter(&format!(r#"meta.lastModified ge "{modified}""#))
            .await,
        [cid.clone()]
    );
    assert_eq!(
        scim.filter(&format!(r#"meta.lastModified lt "{modified}""#))
            .await,
        [ana.clone(), bob.clone()]
    );
    let page = scim.get("/Users?startIndex=2&count=1").await;
    assert_eq!(page.body["totalResults"], json!(3));
    assert_eq!(page.body["startIndex"], json!(2));
    assert_eq!(page.body["itemsPerPage"], json!(1));
    assert_eq!(resource_ids(&page.body), [bob.clone()]);
    let none = scim.get("/Users?count=0").await;
    assert_eq!(
        (
            none.body["totalResults"].clone(),
            resource_ids(&none.body).len()
        ),
        (json!(3), 0)
    );
}

#[tokio::test]
async fn filter_errors_are_invalid_filter_naming_the_problem() {
    let (_app, scim) = Scim::spawn().await;
    for (filter, detail) in [
        (r#"userName eq"#, "at character 12: expected a value"),
        (r#"userName equals "x""#, "expected an operator"),
        (r#"(userName eq "x""#, "expected `)`"),
        (r#"title eq "boss""#, "title cannot be filtered on"),
        (r#"meta.lastModified gt "yesterday""#, "date-time"),
        (r#"userName gt "m""#, "compare dates"),
    ] {
        let answer = scim.get(&format!("/Users?filter={}", encode(filter))).await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
            detail,
        );
    }
}

#[tokio::test]
async fn writes_are_refused_with_scim_error_types() {
    let (_app, scim) = Scim::spawn().await;
    let id = scim.create("fay", "Fay", "Um", "fay@acme.test").await;
    let taken = scim
        .post(
            "/Users",
            json!({ "userName": "fay", "name": { "givenName": "F", "familyName": "U" }, "emails": [{ "value": "fay2@acme.test" }] }),
        )
        .await;
    assert_error(&taken, StatusCode::CONFLICT, Some("uniqueness"), "userName");
    let invalid = scim
        .post(
            "/Users",
            json!({ "userName": "gus", "name": { "givenName": "", "familyName": "U" }, "emails": [{ "value": "not-an-email" }] }),
        )
        .await;
    assert_error(
        &invalid,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "name.givenName",
    );
    assert!(invalid.body["detail"].as_str().unwrap().contains("emails"));
    let syntax = scim
        .call(Method::POST, "/Users", Some(Value::String("{".into())))
        .await;
    assert_error(
        &syntax,
        StatusCode::BAD_REQUEST,
        Some("invalidSyntax"),
        "body",
    );
    let read_only = scim
        .patch(
            &id,
            json!([{ "op": "replace", "path": "id", "value": "x" }]),
        )
        .await;
    assert_error(
        &read_only,
        StatusCode::BAD_REQUEST,
        Some("mutability"),
        "read-only",
    );
    let unknown = scim
        .patch(
            &id,
            json!([{ "op": "replace", "path": "shoeSize", "value": "9" }]),
        )
        .await;
    assert_error(
        &unknown,
        StatusCode::BAD_REQUEST,
        Some("invalidPath"),
        "shoeSize",
    );
    let no_target = scim.patch(&id, json!([{ "op": "remove" }])).await;
    assert_error(
        &no_target,
        StatusCode::BAD_REQUEST,
        Some("noTarget"),
        "path",
    );
    let employee = scim
        .patch(
            &id,
            json!([{ "op": "add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "7" }]),
        )
        .await;
    assert_error(
        &employee,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
        "employeeNumber",
    );
}

#[tokio::test]
async fn if_match_guards_writes_with_the_version() {
    let (app, scim) = Scim::spawn().await;
    let id = scim.create("hal", "Hal", "Ito", "hal@acme.test").await;
    // Sending the invitation writes the user too (its expiry): a new version.
    app.email("hal@acme.test", 1).await;
    let read = scim.get(&format!("/Users/{id}")).await;
    let version = read.etag.unwrap();
    let body = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "name.givenName", "value": "Hale" }] });
    let path = format!("/Users/{id}");
    let first = scim
        .call_with(
            Method::PATCH,
            &path,
            Some(body.clone()),
            &[("if-match", &version)],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let stale = scim
        .call_with(Method::PATCH, &path, Some(body), &[("if-match", &version)])
        .await;
    assert_error(&stale, StatusCode::PRECONDITION_FAILED, None, "changed");
    let stale_delete = scim
        .call_with(Method::DELETE, &path, None, &[("if-match", &version)])
        .await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
    let current = first.etag.unwrap();
    let delete = scim
        .call_with(Method::DELETE, &path, None, &[("if-match", &current)])
        .await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn employee_number_is_the_employee_number_attribute_once_defined() {
    let app = TestApp::spawn().await;
    crate::attributes::define(
        &app,
        app.as_admin(),
        "employee_number",
        proto::UserAttributeType::String,
        &[],
        false,
    )
    .await
    .unwrap();
    let scim = Scim::new(&app, &app.admin_key);
    let created = scim
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE], "userName": "ivy",
                "name": { "givenName": "Ivy", "familyName": "Oak" },
                "emails": [{ "value": "ivy@acme.test" }],
                ENTERPRISE: { "employeeNumber": "701984" },
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body[ENTERPRISE]["employeeNumber"], json!("701984"));
    assert_eq!(created.body["schemas"], json!([USER, ENTERPRISE]));
    let id = created.body["id"].as_str().unwrap().to_owned();
    let user = app.get_user(&id).await;
    let stored = &user.attributes.unwrap().fields["employee_number"];
    assert_eq!(
        stored.kind,
        Some(prost_types::value::Kind::StringValue("701984".into()))
    );
    let replaced = scim
        .patch(
            &id,
            json!([{ "op": "replace", "path": ENTERPRISE, "value": { "employeeNumber": "42" } }]),
        )
        .await;
    assert_eq!(
        replaced.body[ENTERPRISE]["employeeNumber"],
        json!("42"),
        "{}",
        replaced.body
    );
    let removed = scim
        .patch(
            &id,
            json!([{ "op": "remove", "path": format!("{ENTERPRISE}:employeeNumber") }]),
        )
        .await;
    assert!(removed.body.get(ENTERPRISE).is_none(), "{}", removed.body);
    assert_eq!(removed.body["schemas"], json!([USER]));
}

#[tokio::test]
async fn watch_changes_streams_what_scim_changed_with_the_key_as_actor() {
    use proto::{watch_changes_request::Start, watch_changes_response::Event};
    let app = TestApp::spawn().await;
    let mut stream = app
        .changes(app.as_admin())
        .watch_changes(proto::WatchChangesRequest {
            start: Some(Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let scim = Scim::new(&app, &app.admin_key);
    let id = scim.create("jo.ann", "Jo", "Ann", "jo@acme.test").await;
    scim.patch(
        &id,
        json!([{ "op": "replace", "path": "active", "value": false }]),
    )
    .await;
    scim.delete(&id).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("a change within 10 s")
            .unwrap()
            .expect("the stream goes on");
        if let Some(Event::Change(change)) = message.event {
            if change.resource_id == id {
                assert_eq!(change.actor_kind, ActorKind::ApiKey as i32);
                seen.push(change.action);
            }
        }
    }
    assert_eq!(seen, ["user.create", "user.status.set", "user.delete"]);
}
