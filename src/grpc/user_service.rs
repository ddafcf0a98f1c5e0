use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    call_of, caller,
    convert::{page_request, parse_optional_id, users as convert},
};
use crate::{
    domain::{
        group as groups, import, second_factor, session,
        sign_in::SignIn,
        user::{self, InvitationTargets, MirrorRequest, NewUser, UserListRequest, UserUpdate},
    },
    proto::{self, user_service_server::UserService},
    store::Pool,
};

/// UserService: the directory's users, their groups, onboarding and export.
pub struct UserHandler {
    pool: Pool,
    /// Password resets an administrator sends share the sign-in throttle.
    sign_in: Arc<SignIn>,
}

impl UserHandler {
    pub fn new(pool: Pool, sign_in: Arc<SignIn>) -> Self {
        Self { pool, sign_in }
    }

    /// CreateUser and CloneUser: the same use case from two requests.
    async fn create(
        &self,
        request: Request<impl TryInto<NewUser, Error = crate::domain::DomainError>>,
    ) -> Result<user::CreatedUser, Status> {
        let call = call_of(&self.pool, &request)?;
        let new_user = request.into_inner().try_into()?;
        Ok(user::create_user(&call, &new_user).await?)
    }
}

#[tonic::async_trait]
impl UserService for UserHandler {
    type ExportUsersStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<proto::ExportUsersResponse, Status>> + Send>,
    >;

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let created = self.create(request).await?;
        let parts = convert::created_parts(&created);
        Ok(Response::new(proto::CreateUserResponse {
            user: parts.user,
            skipped_group_ids: parts.skipped_group_ids,
            warnings: parts.warnings,
            skipped_groups: parts.skipped_groups,
        }))
    }

    async fn clone_user(
        &self,
        request: Request<proto::CloneUserRequest>,
    ) -> Result<Response<proto::CloneUserResponse>, Status> {
        let created = self.create(request).await?;
        let parts = convert::created_parts(&created);
        Ok(Response::new(proto::CloneUserResponse {
            user: parts.user,
            skipped_group_ids: parts.skipped_group_ids,
            warnings: parts.warnings,
            skipped_groups: parts.skipped_groups,
        }))
    }

    async fn mirror_user(
        &self,
        request: Request<proto::MirrorUserRequest>,
    ) -> Result<Response<proto::MirrorUserResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let mirror = MirrorRequest::try_from(request.into_inner())?;
        let results = user::mirror_user(&call, &mirror).await?;
        Ok(Response::new(proto::MirrorUserResponse {
            results: results.iter().map(convert::mirror_result).collect(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let caller = caller(&request)?;
        let id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let view = convert::user_view(request.get_ref().view)?;
        let found = user::get_user(&self.pool, caller.organization_id, id).await?;
        let found = [found];
        let users = convert::users_in_view(&self.pool, caller.organization_id, view, &found);
        Ok(Response::new(proto::GetUserResponse {
            user: users.await?.pop(),
        }))
    }

    async fn lookup_user(
        &self,
        request: Request<proto::LookupUserRequest>,
    ) -> Result<Response<proto::LookupUserResponse>, Status> {
        let caller = caller(&request)?;
        let key = convert::lookup_key(request.get_ref())?;
        let users = user::lookup_users(&self.pool, caller.organization_id, key).await?;
        Ok(Response::new(proto::LookupUserResponse {
            users: users.iter().map(convert::user).collect(),
        }))
    }

    async fn batch_get_users(
        &self,
        request: Request<proto::BatchGetUsersRequest>,
    ) -> Result<Response<proto::BatchGetUsersResponse>, Status> {
        let caller = caller(&request)?;
        let ids = convert::batch_ids(&request.get_ref().user_ids)?;
        let (found, not_found) =
            user::batch_get_users(&self.pool, caller.organization_id, &ids).await?;
        Ok(Response::new(proto::BatchGetUsersResponse {
            users: found.iter().map(convert::user).collect(),
            not_found_user_ids: not_found.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn export_users(
        &self,
        request: Request<proto::ExportUsersRequest>,
    ) -> Result<Response<Self::ExportUsersStream>, Status> {
        let call = call_of(&self.pool, &request)?;
        let (mut filter, delimiter) = convert::export_request(request.get_ref())?;
        filter
            .find_named(&self.pool, call.organization_id())
            .await?;
        let (chunks, receiver) = tokio::sync::mpsc::channel(4);
        // In the call's span: its logs and SQL statements belong to the call.
        tokio::spawn(
            import::export::export_users(call, filter, delimiter, chunks)
                .instrument(tracing::Span::current()),
        );
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver).map(|chunk| {
            chunk
                .map(|chunk| proto::ExportUsersResponse { chunk })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let caller = caller(&request)?;
        let list = UserListRequest::try_from(request.into_inner())?;
        let page = user::list_users(&self.pool, caller.organization_id, &list).await?;
        let users =
            convert::users_in_view(&self.pool, caller.organization_id, list.view, &page.items);
        Ok(Response::new(proto::ListUsersResponse {
            users: users.await?,
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Result<Response<proto::UpdateUserResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let update = UserUpdate::try_from(request.into_inner())?;
        let (updated, warnings) = user::update_user(&call, &update).await?;
        Ok(Response::new(proto::UpdateUserResponse {
            user: Some(convert::user(&updated)),
            warnings: super::convert::field_issues(&warnings),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        user::delete_user(&call, id).await?;
        Ok(Response::new(proto::DeleteUserResponse {}))
    }

    async fn set_user_status(
        &self,
        request: Request<proto::SetUserStatusRequest>,
    ) -> Result<Response<proto::SetUserStatusResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let status = convert::assigned_status(request.get_ref().status)?;
        let updated = user::set_user_status(&call, id, status).await?;
        Ok(Response::new(proto::SetUserStatusResponse {
            user: Some(convert::user(&updated)),
        }))
    }

    async fn add_user_to_groups(
        &self,
        request: Request<proto::AddUserToGroupsRequest>,
    ) -> Result<Response<proto::AddUserToGroupsResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.get_ref();
        let (user_id, given) =
            convert::user_and_groups(&body.user_id, &body.group_ids, &body.group_names)?;
        let added = groups::add_user_to_groups(&call, user_id, &given).await?;
        Ok(Response::new(proto::AddUserToGroupsResponse {
            added_group_ids: convert::label_ids(&added),
            added_groups: convert::group_refs(&added),
        }))
    }

    async fn remove_user_from_groups(
        &self,
        request: Request<proto::RemoveUserFromGroupsRequest>,
    ) -> Result<Response<proto::RemoveUserFromGroupsResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.get_ref();
        let (user_id, given) =
            convert::user_and_groups(&body.user_id, &body.group_ids, &body.group_names)?;
        let removed = groups::remove_user_from_groups(&call, user_id, &given).await?;
        Ok(Response::new(proto::RemoveUserFromGroupsResponse {
            removed_group_ids: convert::label_ids(&removed),
            removed_groups: convert::group_refs(&removed),
        }))
    }

    async fn list_user_groups(
        &self,
        request: Request<proto::ListUserGroupsRequest>,
    ) -> Result<Response<proto::ListUserGroupsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let user_id = super::convert::parse_id(&body.user_id, "user_id")?;
        let page = page_request(body.page_size, body.page_token)?;
        let page =
            user::list_user_groups(&self.pool, caller.organization_id, user_id, &page).await?;
        Ok(Response::new(proto::ListUserGroupsResponse {
            groups: page.items.iter().map(super::convert::group).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn get_user_access(
        &self,
        request: Request<proto::GetUserAccessRequest>,
    ) -> Result<Response<proto::GetUserAccessResponse>, Status> {
        let caller = caller(&request)?;
        let user_id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let access = user::user_access(&self.pool, caller.organization_id, user_id).await?;
        Ok(Response::new(access.into()))
    }

    async fn send_activation_email(
        &self,
        request: Request<proto::SendActivationEmailRequest>,
    ) -> Result<Response<proto::SendActivationEmailResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let targets = InvitationTargets::try_from(request.into_inner())?;
        let queued = user::send_activation_emails(&call, &targets).await?;
        Ok(Response::new(proto::SendActivationEmailResponse {
            queued_count: queued as i64,
        }))
    }

    async fn get_onboarding_stats(
        &self,
        request: Request<proto::GetOnboardingStatsRequest>,
    ) -> Result<Response<proto::GetOnboardingStatsResponse>, Status> {
        let caller = caller(&request)?;
        let stats = user::onboarding_stats(&self.pool, caller.organization_id).await?;
        Ok(Response::new(stats.into()))
    }

    async fn list_user_sessions(
        &self,
        request: Request<proto::ListUserSessionsRequest>,
    ) -> Result<Response<proto::ListUserSessionsResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let named = parse_optional_id(&request.get_ref().user_id, "user_id")?;
        let user_id = session::sessions_owner(&call.caller, named)?;
        let (sessions, limit) = session::list_user_sessions(&call, user_id).await?;
        Ok(Response::new(proto::ListUserSessionsResponse {
            sessions: sessions
                .iter()
                .map(|listed| convert::session(listed, &call.caller))
                .collect(),
            max_sessions: limit.unwrap_or(0),
        }))
    }

    async fn set_user_session_limit(
        &self,
        request: Request<proto::SetUserSessionLimitRequest>,
    ) -> Result<Response<proto::SetUserSessionLimitResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.get_ref();
        let user_id = super::convert::parse_id(&body.user_id, "user_id")?;
        session::set_user_session_limit(&call, user_id, body.max_sessions).await?;
        Ok(Response::new(proto::SetUserSessionLimitResponse {}))
    }

    async fn revoke_user_sessions(
        &self,
        request: Request<proto::RevokeUserSessionsRequest>,
    ) -> Result<Response<proto::RevokeUserSessionsResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.get_ref();
        let named = parse_optional_id(&body.user_id, "user_id")?;
        let session_id = parse_optional_id(&body.session_id, "session_id")?;
        let user_id = session::sessions_owner(&call.caller, named)?;
        let revoked = session::revoke_user_sessions(&call, user_id, session_id).await?;
        Ok(Response::new(proto::RevokeUserSessionsResponse {
            revoked_count: revoked as i64,
        }))
    }

    async fn send_password_reset(
        &self,
        request: Request<proto::SendPasswordResetRequest>,
    ) -> Result<Response<proto::SendPasswordResetResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let user_id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        self.sign_in.send_password_reset(&call, user_id).await?;
        Ok(Response::new(proto::SendPasswordResetResponse {}))
    }

    async fn reset_user_credentials(
        &self,
        request: Request<proto::ResetUserCredentialsRequest>,
    ) -> Result<Response<proto::ResetUserCredentialsResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let user_id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let user = user::reset_user_credentials(&call, user_id).await?;
        Ok(Response::new(proto::ResetUserCredentialsResponse {
            user: Some(convert::user(&user)),
        }))
    }

    async fn reset_user_second_factor(
        &self,
        request: Request<proto::ResetUserSecondFactorRequest>,
    ) -> Result<Response<proto::ResetUserSecondFactorResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let user_id = super::convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let user = second_factor::reset_user_second_factor(&call, user_id).await?;
        Ok(Response::new(proto::ResetUserSecondFactorResponse {
            user: Some(convert::user(&user)),
        }))
    }

    async fn set_password_expiry(
        &self,
        request: Request<proto::SetPasswordExpiryRequest>,
    ) -> Result<Response<proto::SetPasswordExpiryResponse>, Status> {
        let call = call_of(&self.pool, &request)?;
        let body = request.get_ref();
        let user_id = super::convert::parse_id(&body.user_id, "user_id")?;
        let expire_time = super::convert::parse_timestamp(body.expire_time.as_ref(), "expire_time")
            .map_err(|violation| crate::domain::DomainError::InvalidArgument(vec![violation]))?;
        let user = user::set_password_expiry(&call, user_id, expire_time).await?;
        Ok(Response::new(proto::SetPasswordExpiryResponse {
            user: Some(convert::user(&user)),
        }))
    }
}
