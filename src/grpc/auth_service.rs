use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::{caller, convert, request_id};
use crate::{
    domain::{
        api_key::{self, NewApiKey},
        caller::Principal,
        DomainError,
    },
    proto::{self, auth_service_server::AuthService},
    store,
};

/// AuthService. Login, Logout, passwords and reset arrive with onboarding;
/// until then they answer UNIMPLEMENTED through the generated default stubs.
pub struct AuthHandler {
    pool: PgPool,
}

impl AuthHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl AuthService for AuthHandler {
    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<Response<proto::WhoAmIResponse>, Status> {
        let caller = caller(&request)?;
        let organization = store::organizations::find(&self.pool, caller.organization_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("organization not found".into()))?;
        let principal = match caller.principal {
            Principal::ApiKey { id } => {
                let key = store::api_keys::find(&self.pool, caller.organization_id, id)
                    .await
                    .map_err(DomainError::from)?
                    .ok_or(DomainError::NotFound("API key not found".into()))?;
                proto::who_am_i_response::Principal::ApiKey(convert::api_key(&key))
            }
            Principal::User { id, .. } => {
                let user = store::users::find(&self.pool, caller.organization_id, id)
                    .await
                    .map_err(DomainError::from)?
                    .ok_or(DomainError::NotFound("user not found".into()))?;
                proto::who_am_i_response::Principal::User(proto::User {
                    id: user.id.to_string(),
                    first_name: user.first_name,
                    last_name: user.last_name,
                    email: user.email,
                    username: user.username,
                    onboarded: user.onboarded,
                    // Only users who may sign in get past the auth layer.
                    status: proto::UserStatus::Active as i32,
                    ..Default::default()
                })
            }
        };
        Ok(Response::new(proto::WhoAmIResponse {
            organization_id: organization.id.to_string(),
            organization_name: organization.name,
            principal: Some(principal),
            scopes: convert::scopes_to_proto(&caller.scopes),
            organization_admin: caller.organization_admin(),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Result<Response<proto::CreateApiKeyResponse>, Status> {
        let caller = caller(&request)?;
        let request_id = request_id(&request);
        let body = request.into_inner();
        let scopes: Vec<_> = body
            .scopes
            .iter()
            .map(|s| convert::scope_from_proto(*s))
            .collect();
        let expire_time = convert::parse_timestamp(body.expire_time.as_ref(), "expire_time")
            .map_err(|v| DomainError::InvalidArgument(vec![v]))?;
        let new_key = NewApiKey::parse(&body.name, &scopes, expire_time, &body.request_id)?;
        let (key, secret) = api_key::create_api_key(
            &self.pool,
            caller.organization_id,
            caller.actor(),
            &request_id,
            &new_key,
        )
        .await?;
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(convert::api_key(&key)),
            secret: secret.map(|s| s.expose().to_owned()).unwrap_or_default(),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Result<Response<proto::ListApiKeysResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let page = api_key::list_api_keys(
            &self.pool,
            caller.organization_id,
            convert::page_size(body.page_size)?,
            &body.page_token,
            body.show_revoked,
        )
        .await?;
        Ok(Response::new(proto::ListApiKeysResponse {
            api_keys: page.items.iter().map(convert::api_key).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Result<Response<proto::RevokeApiKeyResponse>, Status> {
        let caller = caller(&request)?;
        let request_id = request_id(&request);
        let key_id = convert::parse_id(&request.get_ref().api_key_id, "api_key_id")?;
        let key = api_key::revoke_api_key(
            &self.pool,
            caller.organization_id,
            key_id,
            caller.actor(),
            &request_id,
        )
        .await?;
        Ok(Response::new(proto::RevokeApiKeyResponse {
            api_key: Some(convert::api_key(&key)),
        }))
    }
}
