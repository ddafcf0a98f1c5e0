use tonic::{Request, Response, Status};

use super::{call_of, caller, convert::organizations as convert};
use crate::{
    domain::{attribute, audit, organization, DomainError},
    proto::{self, organization_service_server::OrganizationService},
    store::Pool,
};

pub struct OrganizationHandler {
    pool: Pool,
    /// Whether the server can seal second-factor seeds (it has a secret key).
    second_factor_available: bool,
}

impl OrganizationHandler {
    pub fn new(pool: Pool, second_factor_available: bool) -> Self {
        Self {
            pool,
            second_factor_available,
        }
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationHandler {
    async fn get_organization(
        &self,
        request: Request<proto::GetOrganizationRequest>,
    ) -> Result<Response<proto::GetOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let organization =
            organization::get_organization(&self.pool, caller.organization_id).await?;
        Ok(Response::new(proto::GetOrganizationResponse {
            organization: Some(convert::organization(&organization)),
        }))
    }

    async fn update_organization_settings(
        &self,
        request: Request<proto::UpdateOrganizationSettingsRequest>,
    ) -> Result<Response<proto::UpdateOrganizationSettingsResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.into_inner();
        let patch = convert::settings_patch(
            body.settings.unwrap_or_default(),
            body.update_mask.unwrap_or_default(),
        )?;
        if patch.require_second_factor == Some(true) && !self.second_factor_available {
            // Users could not enroll: each sign-in would send a reset link
            // whose page cannot finish, in a loop.
            return Err(Status::from(DomainError::FailedPrecondition {
                reason: "SECOND_FACTOR_UNAVAILABLE",
                message: "this server has no secret key (ROSTER_SECRET_KEY) to seal second factors with: nobody could enroll, so it cannot be required".into(),
            }));
        }
        let organization = organization::update_settings(&call, &patch).await?;
        Ok(Response::new(proto::UpdateOrganizationSettingsResponse {
            organization: Some(convert::organization(&organization)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let (filter, page) = convert::audit_query(&body)?;
        let page =
            audit::list_audit_events(&self.pool, caller.organization_id, &filter, &page).await?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            audit_events: page.items.iter().map(convert::audit_event).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn define_user_attribute(
        &self,
        request: Request<proto::DefineUserAttributeRequest>,
    ) -> Result<Response<proto::DefineUserAttributeResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let definition = convert::attribute_definition(request.into_inner().attribute)?;
        let defined = attribute::define_user_attribute(&call, &definition).await?;
        Ok(Response::new(proto::DefineUserAttributeResponse {
            attribute: Some(convert::attribute(&defined.attribute)),
            created: defined.created,
        }))
    }

    async fn list_user_attributes(
        &self,
        request: Request<proto::ListUserAttributesRequest>,
    ) -> Result<Response<proto::ListUserAttributesResponse>, Status> {
        let caller = caller(&request)?;
        let attributes =
            attribute::list_user_attributes(&self.pool, caller.organization_id).await?;
        Ok(Response::new(proto::ListUserAttributesResponse {
            attributes: attributes.iter().map(convert::attribute).collect(),
        }))
    }

    async fn delete_user_attribute(
        &self,
        request: Request<proto::DeleteUserAttributeRequest>,
    ) -> Result<Response<proto::DeleteUserAttributeResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let key = request.into_inner().key;
        if key.is_empty() {
            return Err(DomainError::invalid("key", "REQUIRED", "must name an attribute").into());
        }
        let removed = attribute::delete_user_attribute(&call, &key).await?;
        Ok(Response::new(proto::DeleteUserAttributeResponse {
            removed_user_values: i64::try_from(removed).unwrap_or(i64::MAX),
        }))
    }
}
