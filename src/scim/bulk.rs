//! `POST /scim/v2/Bulk` (RFC 7644 §3.7): many operations in one request.
//! Each operation is sent as its own request through the SCIM router
//! itself, so every resource type is served by the one code path its
//! endpoint has (rules, audit, ETags, errors) and /Bulk knows none of them.
//!
//! Operations run one by one in the order given, each its own transaction:
//! a failure undoes nothing before it, and a `bulkId:<id>` reference needs
//! only the operations before it. A create's idempotency key is derived
//! from the caller's `X-Request-Id`, so a replayed Bulk creates nothing twice.

use std::collections::HashMap;

use axum::{
    body::{Body, Bytes},
    extract::{
        rejection::{BytesRejection, FailedToBufferBody},
        DefaultBodyLimit, Request, State,
    },
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::Response,
    routing::post,
    Extension, Router,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use super::{
    auth::{CreateKey, ScimCall},
    errors::{ScimError, ScimType},
    routes::{base_url, scim_json},
    ScimState, BASE_PATH, MEDIA_TYPE,
};
use crate::domain::request::IdempotencyKey;

/// The most operations one request may carry (`bulk.maxOperations`).
pub const MAX_OPERATIONS: usize = 1000;
/// The largest request body in bytes (`bulk.maxPayloadSize`): 1 MiB holds
/// 1,000 typical users (about 400 bytes each) with room to spare.
pub const MAX_PAYLOAD_SIZE: usize = 1 << 20;

const SCHEMA_BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SCHEMA_BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// How a value names the resource an earlier POST of this request created.
const BULK_ID_PREFIX: &str = "bulkId:";

/// The SCIM routes an operation may reach: every route but /Bulk itself.
#[derive(Clone)]
struct Resources(Router);

/// `resources` with `/Bulk`, which dispatches its operations to `resources`.
pub fn with_bulk(resources: Router, state: ScimState) -> Router {
    let bulk = Router::new()
        .route("/scim/v2/Bulk", post(bulk))
        // The body is refused as soon as it passes the limit, not after.
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_SIZE))
        .layer(Extension(Resources(resources.clone())))
        .with_state(state);
    resources.merge(bulk)
}

async fn bulk(
    State(state): State<ScimState>,
    Extension(Resources(resources)): Extension<Resources>,
    call: ScimCall,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let call = call.writer()?;
    let body = body.map_err(unreadable)?;
    let request = BulkRequest::parse(&body)?;
    let inner = InnerHeaders {
        authorization: headers.get(header::AUTHORIZATION).cloned(),
        host: headers.get(header::HOST).cloned(),
        request_id: HeaderValue::from_str(call.request_id.as_str()).ok(),
        // Only a request id the caller chose makes a replay recognizable.
        replay_id: headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|given| *given == call.request_id.as_str())
            .map(str::to_owned),
    };
    let base_url = base_url(&state, &headers);
    let mut created: HashMap<&str, Created> = HashMap::new();
    let mut results = Vec::with_capacity(request.operations.len());
    let mut errors = 0;
    for operation in &request.operations {
        let result = run(&resources, operation, &created, &inner, &base_url).await;
        let created_by = operation.bulk_id.as_deref();
        if let Some(bulk_id) = created_by.filter(|_| operation.method == Method::POST) {
            let outcome = match &result.created_id {
                Some(id) => Created::Id(id.clone()),
                None => Created::Failed,
            };
            created.insert(bulk_id, outcome);
        }
        let failed = !result.status.is_success();
        results.push(result.entry);
        if failed {
            errors += 1;
            if request.fail_on_errors.is_some_and(|limit| errors >= limit) {
                break;
            }
        }
    }
    let body = json!({ "schemas": [SCHEMA_BULK_RESPONSE], "Operations": results });
    Ok(scim_json(StatusCode::OK, &body))
}

/// A body over the limit is 413; any other unreadable body is 400.
fn unreadable(rejection: BytesRejection) -> ScimError {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("the request is larger than maxPayloadSize, {MAX_PAYLOAD_SIZE} bytes"),
            )
        }
        other => ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body could not be read: {other}"),
        ),
    }
}

/// What became of a POST with a bulkId.
enum Created {
    Id(String),
    Failed,
}

/// What every operation's request carries of the Bulk request.
struct InnerHeaders {
    authorization: Option<HeaderValue>,
    host: Option<HeaderValue>,
    /// The Bulk's request id, so its operations' audit records share it.
    request_id: Option<HeaderValue>,
    /// The caller's own `X-Request-Id`, from which creates' keys derive.
    replay_id: Option<String>,
}

/// A validated BulkRequest.
struct BulkRequest {
    fail_on_errors: Option<u64>,
    operations: Vec<Operation>,
}

struct Operation {
    method: Method,
    /// Relative to the base, as given: `/Users`, `/Groups/bulkId:g1`.
    path: String,
    bulk_id: Option<String>,
    /// The ETag the resource must still have (`If-Match`).
    version: Option<String>,
    data: Option<Value>,
}

fn syntax(detail: String) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, detail)
}

impl BulkRequest {
    /// Every rule is checked before any operation runs: a malformed request
    /// changes nothing.
    fn parse(body: &[u8]) -> Result<Self, ScimError> {
        let body: Value = serde_json::from_slice(body)
            .map_err(|error| syntax(format!("the body is not JSON: {error}")))?;
        let schemas_ok = body["schemas"].as_array().is_some_and(|schemas| {
            schemas
                .iter()
                .any(|s| s.as_str() == Some(SCHEMA_BULK_REQUEST))
        });
        if !schemas_ok {
            return Err(syntax(format!("schemas: must hold {SCHEMA_BULK_REQUEST}")));
        }
        let fail_on_errors = match &body["failOnErrors"] {
            Value::Null => None,
            value => Some(value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    "failOnErrors: must be a positive integer",
                )
            })?),
        };
        let raw = body["Operations"]
            .as_array()
            .ok_or_else(|| syntax("Operations: must be a list of operations".into()))?;
        if raw.len() > MAX_OPERATIONS {
            return Err(ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(ScimType::TooMany),
                format!(
                    "Operations: {} operations are more than maxOperations, {MAX_OPERATIONS}",
                    raw.len()
                ),
            ));
        }
        let mut operations: Vec<Operation> = Vec::with_capacity(raw.len());
        for (index, operation) in raw.iter().enumerate() {
            let operation = Operation::parse(operation).map_err(|mut error| {
                error.detail = format!("Operations[{index}].{}", error.detail);
                error
            })?;
            let bulk_id = operation.bulk_id.as_deref();
            if let Some(earlier) = operations
                .iter()
                .position(|other| bulk_id.is_some() && other.bulk_id.as_deref() == bulk_id)
            {
                return Err(ScimError::bad(
                    ScimType::InvalidValue,
                    format!("Operations[{index}].bulkId: Operations[{earlier}] has it already"),
                ));
            }
            operations.push(operation);
        }
        Ok(Self {
            fail_on_errors,
            operations,
        })
    }
}

impl Operation {
    /// One operation; errors name its field (the caller prefixes the index).
    fn parse(raw: &Value) -> Result<Self, ScimError> {
        let text = |field: &str| match &raw[field] {
            Value::Null => Ok(None),
            Value::String(value) => Ok(Some(value.clone())),
            _ => Err(syntax(format!("{field}: must be a string"))),
        };
        let method = match text("method")?.map(|m| m.to_ascii_uppercase()).as_deref() {
            Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some("PATCH") => Method::PATCH,
            Some("DELETE") => Method::DELETE,
            _ => {
                return Err(syntax(
                    "method: must be one of POST, PUT, PATCH, DELETE".into(),
                ))
            }
        };
        let path = text("path")?.ok_or_else(|| syntax("path: is required".into()))?;
        check_path(&path)?;
        let bulk_id = text("bulkId")?;
        if bulk_id.as_deref().is_some_and(str::is_empty) {
            return Err(syntax("bulkId: must not be empty".into()));
        }
        if method == Method::POST && bulk_id.is_none() {
            return Err(syntax("bulkId: is required for a POST".into()));
        }
        let data = match &raw["data"] {
            _ if method == Method::DELETE => None,
            data @ Value::Object(_) => Some(data.clone()),
            _ => return Err(syntax(format!("data: is required for a {method}"))),
        };
        let version = text("version")?;
        if version
            .as_deref()
            .is_some_and(|version| HeaderValue::from_str(version).is_err())
        {
            return Err(syntax("version: must be an ETag, e.g. W/\"3\"".into()));
        }
        Ok(Self {
            method,
            path,
            bulk_id,
            version,
            data,
        })
    }
}

/// A resource path under the base: `/Users` or `/Users/<id>`; never /Bulk
/// (operations do not nest), a query or a step up.
fn check_path(path: &str) -> Result<(), ScimError> {
    let invalid = |rule: &str| {
        ScimError::bad(
            ScimType::InvalidPath,
            format!("path: {} {rule}", crate::domain::echo(path)),
        )
    };
    let Some(relative) = path.strip_prefix('/') else {
        return Err(invalid(
            "must start with / (a resource endpoint, e.g. /Users)",
        ));
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains(['?', '#', '%']) {
        return Err(invalid(
            "must be a resource path: printable characters, no query",
        ));
    }
    let mut segments = relative.split('/');
    let endpoint = segments.next().unwrap_or_default();
    if endpoint.is_empty() || endpoint.eq_ignore_ascii_case("Bulk") || endpoint.starts_with('.') {
        return Err(invalid("must name a resource endpoint, e.g. /Users"));
    }
    // No `.search` either: a Bulk writes (RFC 7644 §3.7), and a thousand
    // searches' answers would all be held for one response.
    if segments.any(|segment| segment.is_empty() || segment.starts_with('.')) {
        return Err(invalid("must be /<endpoint> or /<endpoint>/<id>"));
    }
    Ok(())
}

/// One operation's entry in the BulkResponse, and the id a POST created.
struct Outcome {
    status: StatusCode,
    entry: Value,
    created_id: Option<String>,
}

async fn run(
    resources: &Router,
    operation: &Operation,
    created: &HashMap<&str, Created>,
    inner: &InnerHeaders,
    base_url: &str,
) -> Outcome {
    let mut entry = json!({ "method": operation.method.as_str() });
    if let Some(bulk_id) = &operation.bulk_id {
        entry["bulkId"] = json!(bulk_id);
    }
    let resolved = resolve_path(&operation.path, created).and_then(|path| {
        let mut data = operation.data.clone();
        if let Some(data) = &mut data {
            resolve_references(data, created)?;
        }
        Ok((path, data))
    });
    let (path, data) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => return failed(entry, error),
    };
    if operation.method != Method::POST {
        entry["location"] = json!(format!("{base_url}{path}"));
    }
    let request = match inner_request(operation, &path, data, inner) {
        Ok(request) => request,
        Err(error) => return failed(entry, error),
    };
    let Ok(response) = resources.clone().oneshot(request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), MAX_PAYLOAD_SIZE)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    entry["status"] = json!(status.as_str());
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(version) = header(header::ETAG) {
        entry["version"] = json!(version);
    }
    if let Some(location) = header(header::LOCATION) {
        entry["location"] = json!(location);
    }
    if !status.is_success() {
        entry["response"] = body.unwrap_or(Value::Null);
        return Outcome {
            status,
            entry,
            created_id: None,
        };
    }
    let created_id = (operation.method == Method::POST)
        .then(|| body.as_ref()?["id"].as_str().map(str::to_owned))
        .flatten();
    Outcome {
        status,
        entry,
        created_id,
    }
}

/// The failed operation's entry, its error as the response (RFC 7644 §3.7.3).
fn failed(mut entry: Value, error: ScimError) -> Outcome {
    entry["status"] = json!(error.status.as_str());
    entry["response"] = error.body();
    Outcome {
        status: error.status,
        entry,
        created_id: None,
    }
}

/// The id the POST with `bulk_id` created; 409 invalidValue when it failed
/// or comes later (operations run in order) or nowhere.
fn created_id<'a>(
    bulk_id: &str,
    created: &'a HashMap<&str, Created>,
) -> Result<&'a str, ScimError> {
    let conflict = |why: &str| {
        ScimError::new(
            StatusCode::CONFLICT,
            Some(ScimType::InvalidValue),
            format!("{BULK_ID_PREFIX}{}: {why}", crate::domain::echo(bulk_id)),
        )
    };
    match created.get(bulk_id) {
        Some(Created::Id(id)) => Ok(id),
        Some(Created::Failed) => Err(conflict("the operation that was to create it failed")),
        None => Err(conflict(
            "no earlier POST has this bulkId (operations run in order: a reference follows the POST it names)",
        )),
    }
}

fn resolve_path(path: &str, created: &HashMap<&str, Created>) -> Result<String, ScimError> {
    let mut resolved = Vec::new();
    for segment in path.split('/') {
        match segment.strip_prefix(BULK_ID_PREFIX) {
            Some(bulk_id) => resolved.push(created_id(bulk_id, created)?),
            None => resolved.push(segment),
        }
    }
    Ok(resolved.join("/"))
}

/// Replaces every string `bulkId:<id>` anywhere in `value` by the id it names.
fn resolve_references(
    value: &mut Value,
    created: &HashMap<&str, Created>,
) -> Result<(), ScimError> {
    match value {
        Value::String(text) => {
            if let Some(bulk_id) = text.strip_prefix(BULK_ID_PREFIX) {
                *text = created_id(bulk_id, created)?.to_owned();
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_references(item, created)?;
            }
        }
        Value::Object(fields) => {
            for field in fields.values_mut() {
                resolve_references(field, created)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The operation as a request of its own, with the Bulk's credentials.
fn inner_request(
    operation: &Operation,
    path: &str,
    data: Option<Value>,
    inner: &InnerHeaders,
) -> Result<Request, ScimError> {
    let body = data.map(|data| data.to_string()).unwrap_or_default();
    let mut request = Request::builder()
        .method(operation.method.clone())
        .uri(format!("{BASE_PATH}{path}"))
        .header(header::CONTENT_TYPE, MEDIA_TYPE);
    let given = [
        (header::AUTHORIZATION, &inner.authorization),
        (header::HOST, &inner.host),
        (
            header::HeaderName::from_static("x-request-id"),
            &inner.request_id,
        ),
    ];
    for (name, value) in given {
        if let Some(value) = value {
            request = request.header(name, value);
        }
    }
    if let Some(version) = &operation.version {
        request = request.header(header::IF_MATCH, version);
    }
    if operation.method == Method::POST {
        if let Some(key) = inner
            .replay_id
            .as_deref()
            .and_then(|id| create_key(id, operation))
        {
            request = request.extension(CreateKey(key));
        }
    }
    // Path and version were checked when the request was parsed.
    request
        .body(Body::from(body))
        .map_err(|error| ScimError::from(crate::domain::DomainError::Internal(error.into())))
}

/// A create's idempotency key: the caller's request id, the bulkId and the
/// operation itself, so the same Bulk replayed finds its first creates, and
/// a request id reused for other operations does not.
fn create_key(request_id: &str, operation: &Operation) -> Option<IdempotencyKey> {
    let mut digest = Sha256::new();
    for part in [
        request_id,
        operation.bulk_id.as_deref().unwrap_or_default(),
        &operation.path,
        &operation
            .data
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let key = format!("scim-bulk:{}", hex::encode(digest.finalize()));
    IdempotencyKey::parse_optional(&key).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_a_resource_endpoint_or_one_resource() {
        for good in ["/Users", "/Users/42", "/Groups/bulkId:g1"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "Users",
            "/",
            "/Bulk",
            "/bulk/x",
            "/Users/../Bulk",
            "/Users//x",
            "/Users?filter=x",
            "/Users/a b",
            "/Users/%2e%2e",
        ] {
            let error = check_path(bad).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::InvalidPath), "{bad}");
            assert!(error.detail.starts_with("path: "), "{}", error.detail);
        }
    }

    #[test]
    fn references_anywhere_become_the_created_ids() {
        let created = HashMap::from([("u1", Created::Id("id-1".into())), ("u2", Created::Failed)]);
        let mut data = json!({
            "members": [{ "value": "bulkId:u1" }, { "value": "plain" }],
            "nested": { "deep": ["bulkId:u1"] },
            "count": 3,
        });
        resolve_references(&mut data, &created).unwrap();
        assert_eq!(
            data,
            json!({
                "members": [{ "value": "id-1" }, { "value": "plain" }],
                "nested": { "deep": ["id-1"] },
                "count": 3,
            })
        );
        assert_eq!(
            resolve_path("/Groups/bulkId:u1", &created).unwrap(),
            "/Groups/id-1"
        );
        for unresolved in ["bulkId:u2", "bulkId:u3"] {
            let error = resolve_references(&mut json!([unresolved]), &created).unwrap_err();
            assert_eq!(error.status, StatusCode::CONFLICT);
            assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
        }
    }

    #[test]
    fn a_create_key_changes_with_the_request_id_and_the_operation() {
        let operation = |bulk_id: &str, name: &str| Operation {
            method: Method::POST,
            path: "/Users".into(),
            bulk_id: Some(bulk_id.into()),
            version: None,
            data: Some(json!({ "userName": name })),
        };
        let key = |id, operation| create_key(id, &operation).unwrap();
        let first = key("r1", operation("u1", "ana"));
        assert_eq!(first, key("r1", operation("u1", "ana")));
        assert!(first.as_str().len() <= 128);
        assert_ne!(first, key("r2", operation("u1", "ana")));
        assert_ne!(first, key("r1", operation("u2", "ana")));
        assert_ne!(first, key("r1", operation("u1", "bea")));
    }
}
