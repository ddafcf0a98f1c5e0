use tonic::{Request, Response, Status};

use super::{
    call_of, caller,
    convert::{self, groups as convert_groups},
};
use crate::{
    domain::group::{self, GroupFilter, UnitFilter},
    proto::{self, group_service_server::GroupService},
    store::Pool,
};

pub struct GroupHandler {
    pool: Pool,
}

impl GroupHandler {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl GroupService for GroupHandler {
    async fn create_group(
        &self,
        request: Request<proto::CreateGroupRequest>,
    ) -> Result<Response<proto::CreateGroupResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let (values, key) = convert_groups::create_group(request.get_ref())?;
        let created = group::create_group(&call, key, &values).await?;
        Ok(Response::new(proto::CreateGroupResponse {
            group: Some(convert_groups::group(&created)),
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
            group: Some(convert_groups::group(&found)),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let (unit_id, unit_name) = convert::id_or_name(&body.unit_id, &body.unit_name, "unit")?;
        let filter = GroupFilter {
            name_contains: body.query.trim().to_owned(),
            profile_id: convert::parse_optional_id(&body.profile_id, "profile_id")?,
            unit_id,
            unit_name,
            member_id: None,
        };
        let page = group::list_groups(
            &self.pool,
            caller.organization_id,
            &filter,
            &convert::page_request(body.page_size, body.page_token)?,
        )
        .await?;
        Ok(Response::new(proto::ListGroupsResponse {
            groups: page.items.iter().map(convert_groups::group).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_group(
        &self,
        request: Request<proto::UpdateGroupRequest>,
    ) -> Result<Response<proto::UpdateGroupResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let (id, update) = convert_groups::update_group(request.get_ref())?;
        let updated = group::update_group(&call, id, &update).await?;
        Ok(Response::new(proto::UpdateGroupResponse {
            group: Some(convert_groups::group(&updated)),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<proto::DeleteGroupRequest>,
    ) -> Result<Response<proto::DeleteGroupResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let id = convert::parse_id(&request.get_ref().group_id, "group_id")?;
        group::delete_group(&call, id).await?;
        Ok(Response::new(proto::DeleteGroupResponse {}))
    }

    async fn list_group_members(
        &self,
        request: Request<proto::ListGroupMembersRequest>,
    ) -> Result<Response<proto::ListGroupMembersResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let group_id = convert::parse_id(&body.group_id, "group_id")?;
        let page = group::list_members(
            &self.pool,
            caller.organization_id,
            group_id,
            &convert::page_request(body.page_size, body.page_token)?,
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
        let call = call_of(&self.pool, &request)?;
        let (values, key) = convert_groups::create_unit(request.get_ref())?;
        let created = group::create_unit(&call, key, &values).await?;
        Ok(Response::new(proto::CreateUnitResponse {
            unit: Some(convert_groups::unit(&created)),
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
            unit: Some(convert_groups::unit(&found)),
        }))
    }

    async fn list_units(
        &self,
        request: Request<proto::ListUnitsRequest>,
    ) -> Result<Response<proto::ListUnitsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let page = group::list_units(
            &self.pool,
            caller.organization_id,
            &UnitFilter {
                name_contains: body.query.trim().to_owned(),
                kind: convert_groups::unit_kind_from_proto(body.kind),
            },
            &convert::page_request(body.page_size, body.page_token)?,
        )
        .await?;
        Ok(Response::new(proto::ListUnitsResponse {
            units: page.items.iter().map(convert_groups::unit).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_unit(
        &self,
        request: Request<proto::UpdateUnitRequest>,
    ) -> Result<Response<proto::UpdateUnitResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let (id, changes) = convert_groups::update_unit(request.get_ref())?;
        let updated = group::update_unit(&call, id, &changes).await?;
        Ok(Response::new(proto::UpdateUnitResponse {
            unit: Some(convert_groups::unit(&updated)),
        }))
    }

    async fn delete_unit(
        &self,
        request: Request<proto::DeleteUnitRequest>,
    ) -> Result<Response<proto::DeleteUnitResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let id = convert::parse_id(&request.get_ref().unit_id, "unit_id")?;
        group::delete_unit(&call, id).await?;
        Ok(Response::new(proto::DeleteUnitResponse {}))
    }

    async fn create_profile(
        &self,
        request: Request<proto::CreateProfileRequest>,
    ) -> Result<Response<proto::CreateProfileResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let (values, key) = convert_groups::create_profile(request.get_ref())?;
        let created = group::create_profile(&call, key, &values).await?;
        Ok(Response::new(proto::CreateProfileResponse {
            profile: Some(convert_groups::profile(&created)),
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
            profile: Some(convert_groups::profile(&found)),
        }))
    }

    async fn list_profiles(
        &self,
        request: Request<proto::ListProfilesRequest>,
    ) -> Result<Response<proto::ListProfilesResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let page = group::list_profiles(
            &self.pool,
            caller.organization_id,
            &body.product,
            &convert::page_request(body.page_size, body.page_token)?,
        )
        .await?;
        Ok(Response::new(proto::ListProfilesResponse {
            profiles: page.items.iter().map(convert_groups::profile).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_profile(
        &self,
        request: Request<proto::UpdateProfileRequest>,
    ) -> Result<Response<proto::UpdateProfileResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let (id, changes) = convert_groups::update_profile(request.get_ref())?;
        let updated = group::update_profile(&call, id, &changes).await?;
        Ok(Response::new(proto::UpdateProfileResponse {
            profile: Some(convert_groups::profile(&updated)),
        }))
    }

    async fn delete_profile(
        &self,
        request: Request<proto::DeleteProfileRequest>,
    ) -> Result<Response<proto::DeleteProfileResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let id = convert::parse_id(&request.get_ref().profile_id, "profile_id")?;
        group::delete_profile(&call, id).await?;
        Ok(Response::new(proto::DeleteProfileResponse {}))
    }
}
