use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::{caller, convert, idempotency_key, request_id, request_id_of};
use crate::{
    domain::{
        group::{self, GroupField, GroupInput, GroupValues, ProfileValues, ScopeKind},
        user::{UserFilter, UserOrder},
    },
    proto::{self, group_service_server::GroupService},
    store::{self, groups::GroupFilter},
};

pub struct GroupHandler {
    pool: PgPool,
}

impl GroupHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const GROUP_FIELDS: &str = "name, description, profile_id, unit_scope, unit_ids";

fn group_input(group: Option<&proto::Group>) -> GroupInput {
    let group = group.cloned().unwrap_or_default();
    GroupInput {
        name: group.name,
        description: group.description,
        profile_id: group.profile_id,
        scope: match proto::UnitScope::try_from(group.unit_scope) {
            Ok(proto::UnitScope::NoUnit) => Some(ScopeKind::NoUnit),
            Ok(proto::UnitScope::AllUnits) => Some(ScopeKind::AllUnits),
            Ok(proto::UnitScope::Units) => Some(ScopeKind::Units),
            _ => None,
        },
        unit_ids: group.unit_ids,
    }
}

#[tonic::async_trait]
impl GroupService for GroupHandler {
    async fn create_group(
        &self,
        request: Request<proto::CreateGroupRequest>,
    ) -> Result<Response<proto::CreateGroupResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id_of(&request);
        let body = request.into_inner();
        let values = GroupValues::parse(&group_input(body.group.as_ref()))?;
        let key = idempotency_key(&body.request_id)?;
        let created =
            group::create_group(&self.pool, &caller, &audit_request_id, key, &values).await?;
        Ok(Response::new(proto::CreateGroupResponse {
            group: Some(convert::group(&created)),
        }))
    }

    async fn get_group(
        &self,
        request: Request<proto::GetGroupRequest>,
    ) -> Result<Response<proto::GetGroupResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().group_id, "group_id")?;
        let found = group::get_group(&self.pool, caller.organization_id, id).await?;
        Ok(Response::new(proto::GetGroupResponse {
            group: Some(convert::group(&found)),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let filter = GroupFilter {
            name_contains: body.query.trim().to_owned(),
            profile_id: convert::parse_optional_id(&body.profile_id, "profile_id")?,
            unit_id: convert::parse_optional_id(&body.unit_id, "unit_id")?,
            member_id: None,
        };
        let page = store::groups::list(
            &self.pool,
            caller.organization_id,
            &filter,
            convert::page_size(body.page_size)?,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListGroupsResponse {
            groups: page.items.iter().map(convert::group).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_group(
        &self,
        request: Request<proto::UpdateGroupRequest>,
    ) -> Result<Response<proto::UpdateGroupResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id(&request);
        let body = request.into_inner();
        let id = convert::parse_id(
            body.group
                .as_ref()
                .map(|g| g.id.as_str())
                .unwrap_or_default(),
            "group.id",
        )?;
        let fields = convert::mask_fields(
            body.update_mask.as_ref(),
            "group.",
            GROUP_FIELDS,
            GroupField::parse,
        )?;
        let updated = group::update_group(
            &self.pool,
            &caller,
            &audit_request_id,
            id,
            &fields,
            &group_input(body.group.as_ref()),
        )
        .await?;
        Ok(Response::new(proto::UpdateGroupResponse {
            group: Some(convert::group(&updated)),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<proto::DeleteGroupRequest>,
    ) -> Result<Response<proto::DeleteGroupResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().group_id, "group_id")?;
        group::delete_group(&self.pool, &caller, &request_id(&request), id).await?;
        Ok(Response::new(proto::DeleteGroupResponse {}))
    }

    async fn list_group_members(
        &self,
        request: Request<proto::ListGroupMembersRequest>,
    ) -> Result<Response<proto::ListGroupMembersResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let group_id = convert::parse_id(&body.group_id, "group_id")?;
        group::get_group(&self.pool, caller.organization_id, group_id).await?;
        let filter = UserFilter {
            group_id: Some(group_id),
            ..Default::default()
        };
        let page = store::users::list(
            &self.pool,
            caller.organization_id,
            &filter,
            UserOrder::LastName,
            convert::page_size(body.page_size)?,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListGroupMembersResponse {
            users: page.items.iter().map(convert::user).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn create_unit(
        &self,
        request: Request<proto::CreateUnitRequest>,
    ) -> Result<Response<proto::CreateUnitResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id_of(&request);
        let body = request.into_inner();
        let key = idempotency_key(&body.request_id)?;
        let unit = body.unit.unwrap_or_default();
        let created = group::create_unit(
            &self.pool,
            &caller,
            &audit_request_id,
            key,
            &unit.name,
            convert::unit_kind_from_proto(unit.kind),
        )
        .await?;
        Ok(Response::new(proto::CreateUnitResponse {
            unit: Some(convert::unit(&created)),
        }))
    }

    async fn get_unit(
        &self,
        request: Request<proto::GetUnitRequest>,
    ) -> Result<Response<proto::GetUnitResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().unit_id, "unit_id")?;
        let found = group::get_unit(&self.pool, caller.organization_id, id).await?;
        Ok(Response::new(proto::GetUnitResponse {
            unit: Some(convert::unit(&found)),
        }))
    }

    async fn list_units(
        &self,
        request: Request<proto::ListUnitsRequest>,
    ) -> Result<Response<proto::ListUnitsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let page = store::units::list(
            &self.pool,
            caller.organization_id,
            body.query.trim(),
            convert::unit_kind_from_proto(body.kind),
            convert::page_size(body.page_size)?,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListUnitsResponse {
            units: page.items.iter().map(convert::unit).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_unit(
        &self,
        request: Request<proto::UpdateUnitRequest>,
    ) -> Result<Response<proto::UpdateUnitResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id(&request);
        let body = request.into_inner();
        let unit = body.unit.unwrap_or_default();
        let id = convert::parse_id(&unit.id, "unit.id")?;
        #[derive(PartialEq)]
        enum Field {
            Name,
            Kind,
        }
        let fields = convert::mask_fields(
            body.update_mask.as_ref(),
            "unit.",
            "name, kind",
            |path| match path {
                "name" => Some(Field::Name),
                "kind" => Some(Field::Kind),
                _ => None,
            },
        )?;
        let name = fields.contains(&Field::Name).then_some(unit.name.as_str());
        let kind = fields
            .contains(&Field::Kind)
            .then(|| convert::unit_kind_from_proto(unit.kind));
        let updated =
            group::update_unit(&self.pool, &caller, &audit_request_id, id, name, kind).await?;
        Ok(Response::new(proto::UpdateUnitResponse {
            unit: Some(convert::unit(&updated)),
        }))
    }

    async fn delete_unit(
        &self,
        request: Request<proto::DeleteUnitRequest>,
    ) -> Result<Response<proto::DeleteUnitResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().unit_id, "unit_id")?;
        group::delete_unit(&self.pool, &caller, &request_id(&request), id).await?;
        Ok(Response::new(proto::DeleteUnitResponse {}))
    }

    async fn create_profile(
        &self,
        request: Request<proto::CreateProfileRequest>,
    ) -> Result<Response<proto::CreateProfileResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id_of(&request);
        let body = request.into_inner();
        let profile = body.profile.unwrap_or_default();
        let values = ProfileValues::parse(&profile.product, &profile.name, &profile.description)?;
        let key = idempotency_key(&body.request_id)?;
        let created =
            group::create_profile(&self.pool, &caller, &audit_request_id, key, &values).await?;
        Ok(Response::new(proto::CreateProfileResponse {
            profile: Some(convert::profile(&created)),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<proto::GetProfileRequest>,
    ) -> Result<Response<proto::GetProfileResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().profile_id, "profile_id")?;
        let found = group::get_profile(&self.pool, caller.organization_id, id).await?;
        Ok(Response::new(proto::GetProfileResponse {
            profile: Some(convert::profile(&found)),
        }))
    }

    async fn list_profiles(
        &self,
        request: Request<proto::ListProfilesRequest>,
    ) -> Result<Response<proto::ListProfilesResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let page = store::profiles::list(
            &self.pool,
            caller.organization_id,
            &body.product,
            convert::page_size(body.page_size)?,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListProfilesResponse {
            profiles: page.items.iter().map(convert::profile).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_profile(
        &self,
        request: Request<proto::UpdateProfileRequest>,
    ) -> Result<Response<proto::UpdateProfileResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id(&request);
        let body = request.into_inner();
        let profile = body.profile.unwrap_or_default();
        let id = convert::parse_id(&profile.id, "profile.id")?;
        let fields = convert::mask_fields(
            body.update_mask.as_ref(),
            "profile.",
            "product, name, description",
            |path| {
                ["product", "name", "description"]
                    .into_iter()
                    .find(|known| *known == path)
            },
        )?;
        let pick = |name: &str, value: &str| fields.contains(&name).then(|| value.to_owned());
        let updated = group::update_profile(
            &self.pool,
            &caller,
            &audit_request_id,
            id,
            pick("product", &profile.product).as_deref(),
            pick("name", &profile.name).as_deref(),
            pick("description", &profile.description).as_deref(),
        )
        .await?;
        Ok(Response::new(proto::UpdateProfileResponse {
            profile: Some(convert::profile(&updated)),
        }))
    }

    async fn delete_profile(
        &self,
        request: Request<proto::DeleteProfileRequest>,
    ) -> Result<Response<proto::DeleteProfileResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().profile_id, "profile_id")?;
        group::delete_profile(&self.pool, &caller, &request_id(&request), id).await?;
        Ok(Response::new(proto::DeleteProfileResponse {}))
    }
}
