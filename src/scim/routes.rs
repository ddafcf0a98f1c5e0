//! The SCIM endpoints: discovery (public, static), `/Users` and `/Groups`
//! (its handlers in `groups.rs`).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post, MethodRouter},
    Router,
};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    auth::ScimCall,
    bulk, discovery,
    errors::{ScimError, ScimType},
    filter::{parse_filter, Filter},
    groups,
    resources::{
        user::{self as scim_user, ScimUser},
        Projection,
    },
    ScimState, BASE_PATH, MAX_RESULTS, MEDIA_TYPE, SCHEMA_LIST, SCHEMA_SEARCH,
};
use crate::domain::{
    call::Call,
    user::{self, User, UserCondition},
};

pub fn router(state: ScimState) -> Router {
    let resources = Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/Schemas", discovery_list(discovery::schemas))
        .route(
            "/scim/v2/Schemas/{id}",
            discovery_item(discovery::schemas, "schema"),
        )
        .route(
            "/scim/v2/ResourceTypes",
            discovery_list(discovery::resource_types),
        )
        .route(
            "/scim/v2/ResourceTypes/{id}",
            discovery_item(discovery::resource_types, "resource type"),
        )
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/Users/.search", post(list_users))
        .route("/scim/v2/.search", post(search_across_types))
        .route("/scim/v2/Groups/.search", post(groups::list_groups))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            "/scim/v2/Groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::get_group)
                .put(groups::replace_group)
                .patch(groups::patch_group)
                .delete(groups::delete_group),
        )
        .route("/scim/v2/{*rest}", any(not_served))
        .with_state(state.clone());
    bulk::with_bulk(resources, state)
}

/// What every `/Users` and `/Groups` handler takes of its request: the
/// service, the caller's key (checked first: a request without a valid one
/// is refused before anything else is read), and the headers (`Host` for
/// links, `If-Match` for versions).
pub(super) struct ScimRequest {
    pub(super) state: ScimState,
    pub(super) call: ScimCall,
    pub(super) headers: HeaderMap,
}

impl FromRequestParts<ScimState> for ScimRequest {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        let call = ScimCall::from_request_parts(parts, state).await?;
        Ok(Self {
            state: state.clone(),
            call,
            headers: parts.headers.clone(),
        })
    }
}

impl ScimRequest {
    /// `<scheme>://<host>/scim/v2`, as the caller reached it.
    pub(super) fn base_url(&self) -> String {
        base_url(&self.state, &self.headers)
    }

    /// A read of one resource: the caller, who needs VIEWER (checked
    /// first), and what of the resource the answer returns.
    pub(super) fn read_one(
        &self,
        parameters: Vec<(String, String)>,
    ) -> Result<(&Call, Projection), ScimError> {
        let call = self.call.reader()?;
        Ok((call, Parameters(parameters).projection()?))
    }
}

/// `<scheme>://<host>/scim/v2`, as the caller reached it.
pub(super) fn base_url(state: &ScimState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}{BASE_PATH}", state.scheme)
}

pub(super) fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
        body.to_string(),
    )
        .into_response()
}

async fn service_provider_config(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    let base_url = base_url(&state, &headers);
    scim_json(
        StatusCode::OK,
        &discovery::service_provider_config(&base_url),
    )
}

/// The items of a discovery endpoint (`/Schemas`, `/ResourceTypes`), their
/// links under the base URL the caller reached.
type DiscoveryItems = fn(&str) -> Vec<Value>;

/// `GET /Schemas`, `GET /ResourceTypes`: all the items, as a ListResponse.
fn discovery_list(items: DiscoveryItems) -> MethodRouter<ScimState> {
    get(
        move |State(state): State<ScimState>, headers: HeaderMap| async move {
            let all = items(&base_url(&state, &headers));
            scim_json(StatusCode::OK, &discovery::list(all))
        },
    )
}

/// `GET /Schemas/{id}`, `GET /ResourceTypes/{id}`: the item with this `id`
/// (`what` the items are).
fn discovery_item(items: DiscoveryItems, what: &'static str) -> MethodRouter<ScimState> {
    get(
        move |State(state): State<ScimState>, headers: HeaderMap, Path(id): Path<String>| async move {
            let found = items(&base_url(&state, &headers))
                .into_iter()
                .find(|item| item["id"].as_str() == Some(id.as_str()))
                .ok_or_else(|| {
                    ScimError::not_found(format!("no {what} {}", crate::domain::echo(&id)))
                })?;
            Ok::<_, ScimError>(scim_json(StatusCode::OK, &found))
        },
    )
}

async fn not_served() -> ScimError {
    ScimError::not_found(
        "not served here: this service provider serves /Users, /Groups and discovery \
         (/ServiceProviderConfig, /Schemas, /ResourceTypes)",
    )
}

/// The query parameters of a read, by name ignoring case.
pub(super) struct Parameters(pub(super) Vec<(String, String)>);

impl Parameters {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn number(&self, name: &str) -> Result<Option<i64>, ScimError> {
        self.get(name)
            .map(|raw| {
                raw.trim().parse::<i64>().map_err(|_| {
                    ScimError::bad(
                        ScimType::InvalidValue,
                        format!("{name}: {} is not an integer", crate::domain::echo(raw)),
                    )
                })
            })
            .transpose()
    }

    pub(super) fn projection(&self) -> Result<Projection, ScimError> {
        Projection::parse(self.get("attributes"), self.get("excludedAttributes"))
    }
}

/// What a list asks (RFC 7644 §3.4.2), from a GET's query or the body of a
/// POST `.search` (§3.4.3): the same names, the same meaning.
pub(super) struct ListRequest {
    filter: Option<String>,
    pub(super) projection: Projection,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
}

impl ListRequest {
    /// The filter asked, parsed; none for an empty one.
    pub(super) fn filter(&self) -> Result<Option<Filter>, ScimError> {
        match self.filter.as_deref() {
            Some(raw) if !raw.trim().is_empty() => parse_filter(raw).map(Some).map_err(|error| {
                ScimError::bad(ScimType::InvalidFilter, format!("filter: {error}"))
            }),
            _ => Ok(None),
        }
    }

    /// `sortBy`, when asked.
    pub(super) fn sort_by(&self) -> Option<&str> {
        self.sort_by.as_deref().filter(|raw| !raw.trim().is_empty())
    }

    /// `startIndex` (from 1) and `count` as RFC 7644 §3.4.2.4 reads them: a
    /// start below 1 is 1, a negative count is 0, and at most `MAX_RESULTS`.
    pub(super) fn page(&self) -> (i64, i64) {
        let start_index = self.start_index.unwrap_or(1).max(1);
        (
            start_index,
            self.count.unwrap_or(MAX_RESULTS).clamp(0, MAX_RESULTS),
        )
    }

    fn from_query(parameters: Vec<(String, String)>) -> Result<Self, ScimError> {
        let parameters = Parameters(parameters);
        let text = |name: &str| parameters.get(name).map(str::to_owned);
        Ok(Self {
            filter: text("filter"),
            projection: parameters.projection()?,
            sort_by: text("sortBy"),
            sort_order: text("sortOrder"),
            start_index: parameters.number("startIndex")?,
            count: parameters.number("count")?,
        })
    }

    /// A SearchRequest; its `schemas`, when given, must name it.
    fn from_search(body: &Value) -> Result<Self, ScimError> {
        let object = body.as_object().ok_or_else(|| {
            ScimError::bad(ScimType::InvalidSyntax, "the body must be a JSON object")
        })?;
        let field = |name: &str| {
            object
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
                .filter(|value| !value.is_null())
        };
        if let Some(schemas) = field("schemas") {
            let names_it = schemas
                .as_array()
                .is_some_and(|list| list.iter().any(|s| s.as_str() == Some(SCHEMA_SEARCH)));
            if !names_it {
                return Err(ScimError::bad(
                    ScimType::InvalidSyntax,
                    format!("schemas must hold {SCHEMA_SEARCH}"),
                ));
            }
        }
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            field(name)
                .map(|value| {
                    value.as_str().map(str::to_owned).ok_or_else(|| {
                        ScimError::bad(ScimType::InvalidValue, format!("{name}: must be a string"))
                    })
                })
                .transpose()
        };
        // Attribute lists are arrays of paths; a comma-separated string is taken too.
        let paths = |name: &str| -> Result<Option<String>, ScimError> {
            let Some(value) = field(name) else {
                return Ok(None);
            };
            if let Some(text) = value.as_str() {
                return Ok(Some(text.to_owned()));
            }
            let items = value.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str())
                    .collect::<Option<Vec<&str>>>()
            });
            items.map(|items| Some(items.join(","))).ok_or_else(|| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    format!("{name}: must be a list of attribute paths"),
                )
            })
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            field(name)
                .map(|value| {
                    value.as_i64().ok_or_else(|| {
                        ScimError::bad(
                            ScimType::InvalidValue,
                            format!("{name}: must be an integer"),
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            filter: text("filter")?,
            projection: Projection::parse(
                paths("attributes")?.as_deref(),
                paths("excludedAttributes")?.as_deref(),
            )?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
            start_index: number("startIndex")?,
            count: number("count")?,
        })
    }
}

/// A list is asked in a GET's query or in the body of a POST `.search`
/// (RFC 7644 §3.4.3): either way its handler takes one `ListRequest`.
impl FromRequest<ScimState> for ListRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ScimState) -> Result<Self, Response> {
        if request.method() == Method::POST {
            let body = Bytes::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            let search = json_body(&body).and_then(|body| Self::from_search(&body));
            search.map_err(IntoResponse::into_response)
        } else {
            let Query(parameters) =
                Query::try_from_uri(request.uri()).map_err(IntoResponse::into_response)?;
            Self::from_query(parameters).map_err(IntoResponse::into_response)
        }
    }
}

/// `POST /.search` at the root searches all resource types at once (RFC
/// 7644 §3.4.3), which would mix users and groups in one page: not done,
/// and said with 501 as the RFC asks of an unsupported operation.
async fn search_across_types(call: ScimCall) -> Result<Response, ScimError> {
    call.reader()?;
    Err(ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "a search across resource types is not supported: POST /Users/.search or /Groups/.search",
    ))
}

/// `GET /Users` and `POST /Users/.search`: one page of the users a list
/// asks for, as a ListResponse.
async fn list_users(scim: ScimRequest, request: ListRequest) -> Result<Response, ScimError> {
    let call = scim.call.reader()?;
    let condition = match request.filter()? {
        Some(filter) => scim_user::condition(&filter)?,
        None => UserCondition::Always(true),
    };
    let ordering = scim_user::ordering(request.sort_by.as_deref(), request.sort_order.as_deref())?;
    let (start_index, count) = request.page();
    let found = user::users_matching(
        call.pool(),
        call.organization_id(),
        &condition,
        ordering,
        start_index - 1,
        count,
    )
    .await?;
    let base_url = scim.base_url();
    let resources: Vec<Value> = found
        .users
        .iter()
        .map(|user| {
            request
                .projection
                .apply(scim_user::resource(user, &base_url))
        })
        .collect();
    Ok(list_response(found.total, start_index, resources))
}

/// A ListResponse of one page of resources.
pub(super) fn list_response(total: i64, start_index: i64, resources: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [SCHEMA_LIST],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    scim_json(StatusCode::OK, &body)
}

/// A user of the caller's organization; an id that is not a UUID is not found.
async fn find_user(call: &Call, raw_id: &str) -> Result<User, ScimError> {
    let id = user_id(raw_id)?;
    match user::get_user(call.pool(), call.organization_id(), id).await {
        Err(crate::domain::DomainError::NotFound(_)) => Err(user_not_found(raw_id)),
        found => Ok(found?),
    }
}

/// The id of a user in a path; one that is not a UUID names no user.
fn user_id(raw_id: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(raw_id).map_err(|_| user_not_found(raw_id))
}

fn user_not_found(raw_id: &str) -> ScimError {
    ScimError::not_found(format!("User {} not found", crate::domain::echo(raw_id)))
}

/// One user with its ETag, `status` 200 or 201 (with its Location).
fn user_response(
    status: StatusCode,
    user: &User,
    base_url: &str,
    projection: &Projection,
) -> Response {
    let resource = scim_user::resource(user, base_url);
    resource_response(status, resource, &scim_user::version(user), projection)
}

/// One resource at `version` (its ETag), `status` 200 or 201 (with its
/// Location, `meta.location`, read before the projection may drop it).
pub(super) fn resource_response(
    status: StatusCode,
    resource: Value,
    version: &str,
    projection: &Projection,
) -> Response {
    let location = resource["meta"]["location"].as_str().map(str::to_owned);
    let mut response = scim_json(status, &projection.apply(resource));
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(version) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED {
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
    }
    response
}

async fn get_user(
    scim: ScimRequest,
    Path(id): Path<String>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Response, ScimError> {
    let (call, projection) = scim.read_one(parameters)?;
    let found = find_user(call, &id).await?;
    Ok(user_response(
        StatusCode::OK,
        &found,
        &scim.base_url(),
        &projection,
    ))
}

pub(super) fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body).map_err(|error| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not JSON: {error}"),
        )
    })
}

/// `If-Match` (RFC 7644 §3.14): the user must still be at a version the
/// caller names (`*`: any).
fn check_if_match(headers: &HeaderMap, user: &User) -> Result<(), ScimError> {
    check_version(headers, &scim_user::version(user), "user")
}

/// `If-Match` against a resource's current version (`what` it is).
pub(super) fn check_version(
    headers: &HeaderMap,
    current: &str,
    what: &str,
) -> Result<(), ScimError> {
    let Some(wanted) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let strong = current.trim_start_matches("W/");
    let matches = wanted.to_str().is_ok_and(|wanted| {
        wanted
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag == current || tag == strong)
    });
    if matches {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(format!(
            "the {what} changed: it is now at version {current}; read it again"
        )))
    }
}

async fn create_user(scim: ScimRequest, body: Bytes) -> Result<Response, ScimError> {
    let create_key = scim.call.create_key();
    let call = scim.call.writer()?;
    let new_user = scim_user::from_resource(&json_body(&body)?, None)?;
    let created = scim_user::create(call, &new_user, create_key).await;
    scim.state.authenticator.forget_own_writes();
    let base_url = scim.base_url();
    Ok(user_response(
        StatusCode::CREATED,
        &created?,
        &base_url,
        &Projection::default(),
    ))
}

/// How a PUT or PATCH turns the body and the user's current values into new ones.
type Change = fn(&Value, &ScimUser) -> Result<ScimUser, ScimError>;

async fn replace_user(
    scim: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let replace: Change = |body, before| scim_user::from_resource(body, Some(before));
    change_user(&scim, &id, &body, replace).await
}

async fn patch_user(
    scim: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let patch: Change = |body, before| {
        let mut after = before.clone();
        scim_user::apply_patch(&mut after, body)?;
        Ok(after)
    };
    change_user(&scim, &id, &body, patch).await
}

/// PUT and PATCH: the user at the version `If-Match` names, changed and
/// saved; the version is checked on the user as locked for the write.
async fn change_user(
    scim: &ScimRequest,
    id: &str,
    body: &Bytes,
    change: Change,
) -> Result<Response, ScimError> {
    let call = scim.call.writer()?;
    let body = json_body(body)?;
    let user_id = user_id(id)?;
    let revised = user::revise_user(call, user_id, |current| {
        check_if_match(&scim.headers, current)?;
        let before = ScimUser::of(current);
        let after = change(&body, &before)?;
        Ok::<_, ScimError>(scim_user::revision(current.id, &before, &after))
    })
    .await;
    scim.state.authenticator.forget_own_writes();
    let (saved, _) = revised.map_err(|error| missing_user(error, id))?;
    Ok(user_response(
        StatusCode::OK,
        &saved,
        &scim.base_url(),
        &Projection::default(),
    ))
}

/// A write's "not found" names the user as the path gave it.
fn missing_user(error: ScimError, raw_id: &str) -> ScimError {
    if error.status == StatusCode::NOT_FOUND {
        user_not_found(raw_id)
    } else {
        error
    }
}

async fn delete_user(scim: ScimRequest, Path(id): Path<String>) -> Result<Response, ScimError> {
    let call = scim.call.writer()?;
    let user_id = user_id(&id)?;
    let deleted = user::delete_user_if(call, user_id, |current| {
        check_if_match(&scim.headers, current)
    })
    .await;
    scim.state.authenticator.forget_own_writes();
    deleted.map_err(|error| missing_user(error, &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
