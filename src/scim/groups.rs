//! The `/Groups` endpoints: a group and its members read, listed, created,
//! replaced, patched and deleted, each write one domain use case with the
//! key's `Call` (rules, audit, change stream as over gRPC).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Path, Query},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    errors::ScimError,
    resources::{group as scim_group, Projection},
    routes::{
        check_version, json_body, list_response, resource_response, ListRequest, ScimRequest,
    },
};
use crate::domain::{
    call::Call,
    group::{self, GroupCondition, GroupMember, TrackedGroup},
    organization, DomainError,
};

/// The members of each group, when the answer returns them.
async fn members_by_group(
    call: &Call,
    groups: &[TrackedGroup],
    projection: &Projection,
) -> Result<Option<BTreeMap<Uuid, Vec<GroupMember>>>, ScimError> {
    if !projection.returns("members") {
        return Ok(None);
    }
    let ids: Vec<Uuid> = groups.iter().map(|g| g.group.id).collect();
    let members = group::members_of_groups(call.pool(), call.organization_id(), &ids).await?;
    let mut by_group: BTreeMap<Uuid, Vec<GroupMember>> = BTreeMap::new();
    for member in members {
        by_group.entry(member.group_id).or_default().push(member);
    }
    Ok(Some(by_group))
}

fn resource_of(
    tracked: &TrackedGroup,
    members: Option<&BTreeMap<Uuid, Vec<GroupMember>>>,
    base_url: &str,
) -> Value {
    let members = members.map(|by_group| {
        by_group
            .get(&tracked.group.id)
            .map_or(&[][..], Vec::as_slice)
    });
    scim_group::resource(tracked, members, base_url)
}

/// `GET /Groups` and `POST /Groups/.search`: one page of the groups a list
/// asks for, oldest first, as a ListResponse.
pub async fn list_groups(scim: ScimRequest, request: ListRequest) -> Result<Response, ScimError> {
    let call = scim.call.reader()?;
    // Sorting is offered for users; a group list asked sorted says it is not
    // rather than come back in another order than asked.
    if let Some(sort_by) = request.sort_by() {
        return Err(ScimError::bad(
            super::errors::ScimType::InvalidValue,
            format!(
                "sortBy: {} — groups are listed oldest first and cannot be sorted",
                crate::domain::echo(sort_by)
            ),
        ));
    }
    let condition = match request.filter()? {
        Some(filter) => scim_group::condition(&filter)?,
        None => GroupCondition::Always(true),
    };
    let (start_index, count) = request.page();
    let found = group::groups_matching(
        call.pool(),
        call.organization_id(),
        &condition,
        start_index - 1,
        count,
    )
    .await?;
    let members = members_by_group(call, &found.groups, &request.projection).await?;
    let base_url = scim.base_url();
    let resources: Vec<Value> = found
        .groups
        .iter()
        .map(|tracked| {
            let resource = resource_of(tracked, members.as_ref(), &base_url);
            request.projection.apply(resource)
        })
        .collect();
    Ok(list_response(found.total, start_index, resources))
}

/// A group of the caller's organization; an id that is not a UUID is not found.
async fn find_group(call: &Call, raw_id: &str) -> Result<TrackedGroup, ScimError> {
    let not_found =
        || ScimError::not_found(format!("Group {} not found", crate::domain::echo(raw_id)));
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    let condition = GroupCondition::Id(id);
    let found = group::groups_matching(call.pool(), call.organization_id(), &condition, 0, 1);
    found.await?.groups.pop().ok_or_else(not_found)
}

/// One group with its ETag, `status` 200 or 201 (with its Location).
async fn group_response(
    call: &Call,
    status: StatusCode,
    tracked: &TrackedGroup,
    base_url: &str,
    projection: &Projection,
) -> Result<Response, ScimError> {
    let members = members_by_group(call, std::slice::from_ref(tracked), projection).await?;
    let resource = resource_of(tracked, members.as_ref(), base_url);
    let version = scim_group::version(tracked);
    Ok(resource_response(status, resource, &version, projection))
}

pub async fn get_group(
    scim: ScimRequest,
    Path(id): Path<String>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Response, ScimError> {
    let (call, projection) = scim.read_one(parameters)?;
    let found = find_group(call, &id).await?;
    let base_url = scim.base_url();
    group_response(call, StatusCode::OK, &found, &base_url, &projection).await
}

pub async fn create_group(scim: ScimRequest, body: Bytes) -> Result<Response, ScimError> {
    let create_key = scim.call.create_key();
    let call = scim.call.writer()?;
    let changes = scim_group::from_resource(&json_body(&body)?)?;
    let organization = organization::get_organization(call.pool(), call.organization_id()).await?;
    let input = scim_group::new_group(&changes, &organization.settings)?;
    let values = group::GroupValues::parse(&input).map_err(scim_group::scim_error)?;
    let members = match changes.members.last() {
        Some(group::MemberChange::Replace(ids)) => ids.clone(),
        _ => Vec::new(),
    };
    let created = group::create_group_with_members(call, create_key, &values, &members).await;
    scim.state.authenticator.forget_own_writes();
    let created = created.map_err(scim_group::scim_error)?;
    let base_url = scim.base_url();
    let projection = Projection::default();
    group_response(call, StatusCode::CREATED, &created, &base_url, &projection).await
}

pub async fn replace_group(
    scim: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let changes = |body: &Value| scim_group::from_resource(body);
    change_group(&scim, &id, &body, changes).await
}

pub async fn patch_group(
    scim: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    change_group(&scim, &id, &body, scim_group::patch).await
}

/// PUT and PATCH: the group at the version `If-Match` names, changed and
/// saved with its members in one unit of work.
async fn change_group(
    scim: &ScimRequest,
    id: &str,
    body: &Bytes,
    read_changes: impl Fn(&Value) -> Result<scim_group::GroupChanges, ScimError>,
) -> Result<Response, ScimError> {
    let call = scim.call.writer()?;
    let body = json_body(body)?;
    let found = find_group(call, id).await?;
    let changes = read_changes(&body)?;
    let settings = match changes.default_profile {
        true => Some(organization::get_organization(call.pool(), call.organization_id()).await?),
        false => None,
    };
    let settings = settings.as_ref().map(|organization| &organization.settings);
    // The version is checked, and the update decided, on the group as
    // locked for the write: of two writes at one version, one gets 412.
    let decide = |locked: &TrackedGroup| -> Result<_, GroupError> {
        check_version(&scim.headers, &scim_group::version(locked), "group")?;
        Ok(scim_group::update(&changes, &locked.group, settings)?)
    };
    let saved = group::change_group(call, found.group.id, decide, &changes.members).await;
    scim.state.authenticator.forget_own_writes();
    let saved = saved.map_err(|GroupError(error)| error)?;
    let base_url = scim.base_url();
    let projection = Projection::default();
    group_response(call, StatusCode::OK, &saved, &base_url, &projection).await
}

pub async fn delete_group(
    scim: ScimRequest,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let call = scim.call.writer()?;
    let found = find_group(call, &id).await?;
    let check = |locked: &TrackedGroup| -> Result<(), GroupError> {
        Ok(check_version(
            &scim.headers,
            &scim_group::version(locked),
            "group",
        )?)
    };
    let deleted = group::delete_group_if(call, found.group.id, check).await;
    scim.state.authenticator.forget_own_writes();
    deleted.map_err(|GroupError(error)| error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A SCIM error of a group write: domain errors name the group's fields as
/// SCIM attributes (`scim_group::scim_error`).
struct GroupError(ScimError);

impl From<DomainError> for GroupError {
    fn from(error: DomainError) -> Self {
        Self(scim_group::scim_error(error))
    }
}

impl From<ScimError> for GroupError {
    fn from(error: ScimError) -> Self {
        Self(error)
    }
}
