use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{call_of, caller, convert, request_id_of};
use crate::{
    domain::{
        api_key::{self, NewApiKey},
        call::Via,
        caller::Principal,
        organization,
        password::Password,
        request::RequestId,
        session::SessionOrigin,
        sign_in::{LoginOutcome, PasswordSet, SignIn},
        token::TokenKind,
        user,
    },
    proto::{self, auth_service_server::AuthService},
    store::Pool,
};

/// Where a sign-in comes from: the peer's address and its `user-agent`.
fn session_origin<T>(request: &Request<T>) -> SessionOrigin {
    let user_agent = request
        .metadata()
        .get("user-agent")
        .and_then(|value| value.to_str().ok());
    SessionOrigin::new(
        request.remote_addr().map(|address| address.ip()),
        user_agent,
    )
}

/// AuthService: sign-in, passwords, the caller's identity and API keys.
pub struct AuthHandler {
    pool: Pool,
    sign_in: Arc<SignIn>,
}

impl AuthHandler {
    pub fn new(pool: Pool, sign_in: Arc<SignIn>) -> Self {
        Self { pool, sign_in }
    }

    /// RegisterPassword and ResetPassword: the link's token and the new password.
    async fn redeem(
        &self,
        token: &str,
        kind: TokenKind,
        password: String,
        request_id: &RequestId,
    ) -> Result<PasswordSet, Status> {
        let field = if kind == TokenKind::Invitation {
            "password"
        } else {
            "new_password"
        };
        Ok(self
            .sign_in
            .redeem(
                token,
                kind,
                &Password::new(password),
                field,
                request_id,
                Via::Grpc,
            )
            .await?)
    }
}

#[tonic::async_trait]
impl AuthService for AuthHandler {
    async fn login(
        &self,
        request: Request<proto::LoginRequest>,
    ) -> Result<Response<proto::LoginResponse>, Status> {
        let origin = session_origin(&request);
        let body = request.into_inner();
        let outcome = self
            .sign_in
            .login(
                &body.organization,
                &body.username,
                &Password::new(body.password),
                &origin,
            )
            .await?;
        Ok(Response::new(match outcome {
            LoginOutcome::SignedIn(signed_in) => proto::LoginResponse {
                access_token: signed_in.access_token.expose().to_owned(),
                expire_time: Some(convert::timestamp(signed_in.expire_time)),
                scopes: convert::scopes_to_proto(&signed_in.scopes),
                ..Default::default()
            },
            LoginOutcome::Challenged {
                challenge,
                expire_time,
            } => proto::LoginResponse {
                challenge: challenge.expose().to_owned(),
                challenge_expire_time: Some(convert::timestamp(expire_time)),
                ..Default::default()
            },
        }))
    }

    async fn complete_login(
        &self,
        request: Request<proto::CompleteLoginRequest>,
    ) -> Result<Response<proto::CompleteLoginResponse>, Status> {
        let origin = session_origin(&request);
        let body = request.into_inner();
        let signed_in = self
            .sign_in
            .complete_login(&body.challenge, &body.code, &origin)
            .await?;
        Ok(Response::new(proto::CompleteLoginResponse {
            access_token: signed_in.access_token.expose().to_owned(),
            expire_time: Some(convert::timestamp(signed_in.expire_time)),
            scopes: convert::scopes_to_proto(&signed_in.scopes),
        }))
    }

    async fn begin_totp_enrollment(
        &self,
        request: Request<proto::BeginTotpEnrollmentRequest>,
    ) -> Result<Response<proto::BeginTotpEnrollmentResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let enrollment = self
            .sign_in
            .second_factors()
            .begin_enrollment(&call)
            .await?;
        Ok(Response::new(proto::BeginTotpEnrollmentResponse {
            secret: enrollment.secret_base32,
            otpauth_uri: enrollment.otpauth_uri,
        }))
    }

    async fn confirm_totp_enrollment(
        &self,
        request: Request<proto::ConfirmTotpEnrollmentRequest>,
    ) -> Result<Response<proto::ConfirmTotpEnrollmentResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let recovery_codes = self
            .sign_in
            .second_factors()
            .confirm_enrollment(&call, &request.get_ref().code)
            .await?;
        Ok(Response::new(proto::ConfirmTotpEnrollmentResponse {
            recovery_codes,
        }))
    }

    async fn logout(
        &self,
        request: Request<proto::LogoutRequest>,
    ) -> Result<Response<proto::LogoutResponse>, Status> {
        let caller = caller(&request)?;
        self.sign_in.logout(&caller).await?;
        Ok(Response::new(proto::LogoutResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::ChangePasswordResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.into_inner();
        self.sign_in
            .change_password(
                &call,
                &Password::new(body.current_password),
                &Password::new(body.new_password),
            )
            .await?;
        Ok(Response::new(proto::ChangePasswordResponse {}))
    }

    async fn register_password(
        &self,
        request: Request<proto::RegisterPasswordRequest>,
    ) -> Result<Response<proto::RegisterPasswordResponse>, Status> {
        let request_id = request_id_of(&request);
        let body = request.into_inner();
        let set = self
            .redeem(
                &body.token,
                TokenKind::Invitation,
                body.password,
                &request_id,
            )
            .await?;
        Ok(Response::new(proto::RegisterPasswordResponse {
            organization: set.organization,
            username: set.username,
        }))
    }

    async fn request_password_reset(
        &self,
        request: Request<proto::RequestPasswordResetRequest>,
    ) -> Result<Response<proto::RequestPasswordResetResponse>, Status> {
        let peer = request.remote_addr().map(|address| address.ip());
        let body = request.into_inner();
        self.sign_in
            .request_password_reset(&body.organization, &body.username, peer)
            .await?;
        Ok(Response::new(proto::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        request: Request<proto::ResetPasswordRequest>,
    ) -> Result<Response<proto::ResetPasswordResponse>, Status> {
        let request_id = request_id_of(&request);
        let body = request.into_inner();
        let set = self
            .redeem(
                &body.token,
                TokenKind::PasswordReset,
                body.new_password,
                &request_id,
            )
            .await?;
        Ok(Response::new(proto::ResetPasswordResponse {
            organization: set.organization,
            username: set.username,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<Response<proto::WhoAmIResponse>, Status> {
        let caller = caller(&request)?;
        let organization =
            organization::get_organization(&self.pool, caller.organization_id).await?;
        let principal = match caller.principal {
            Principal::ApiKey { id } => {
                let key = api_key::get_api_key(&self.pool, caller.organization_id, id).await?;
                proto::who_am_i_response::Principal::ApiKey(convert::api_keys::api_key(&key))
            }
            Principal::User { id, .. } => {
                let user = user::get_user(&self.pool, caller.organization_id, id).await?;
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
        let request_id = request_id_of(&request);
        let new_key = NewApiKey::try_from(request.get_ref())?;
        let (key, secret) = api_key::create_api_key(
            &self.pool,
            caller.organization_id,
            caller.actor(),
            Some(request_id),
            Via::Grpc,
            &new_key,
        )
        .await?;
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(convert::api_keys::api_key(&key)),
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
            body.show_revoked,
            &convert::page_request(body.page_size, body.page_token)?,
        )
        .await?;
        Ok(Response::new(proto::ListApiKeysResponse {
            api_keys: page.items.iter().map(convert::api_keys::api_key).collect(),
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
        let request_id = request_id_of(&request);
        let key_id = convert::parse_id(&request.get_ref().api_key_id, "api_key_id")?;
        let key = api_key::revoke_api_key(
            &self.pool,
            caller.organization_id,
            key_id,
            caller.actor(),
            Some(request_id),
            Via::Grpc,
        )
        .await?;
        Ok(Response::new(proto::RevokeApiKeyResponse {
            api_key: Some(convert::api_keys::api_key(&key)),
        }))
    }
}
