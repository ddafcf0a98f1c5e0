use futures::StreamExt;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::{caller, convert, request_id, request_id_of};
use crate::{
    domain::{
        authentication::UserAccess,
        group::{self as groups},
        import,
        paging::PageSize,
        request::IdempotencyKey,
        user::{self, MirrorMode, NewUser, Origin, UserField, UserFilter, UserOrder, UserValues},
        DomainError, FieldViolation,
    },
    proto::{self, user_service_server::UserService},
    store::{
        self,
        groups::GroupFilter,
        users::{InvitationTargets, LookupKey},
    },
};

/// UserService: the directory's users, their groups, onboarding and export.
pub struct UserHandler {
    pool: PgPool,
}

impl UserHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const MAX_BATCH: usize = 1000;
const USER_FIELDS: &str = "first_name, last_name, email, username, phone, external_id";

#[tonic::async_trait]
impl UserService for UserHandler {
    type ExportUsersStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<proto::ExportUsersResponse, Status>> + Send>,
    >;

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id_of(&request);
        let body = request.into_inner();
        let new_user = parse_new_user(
            Origin::Create,
            body.user.as_ref(),
            &body.group_ids,
            &body.mirror_user_id,
            body.deactivated,
            body.send_invitation,
            &body.request_id,
        )?;
        let created = user::create_user(&self.pool, &caller, &audit_request_id, &new_user).await?;
        Ok(Response::new(proto::CreateUserResponse {
            user: Some(convert::user(&created.user)),
            skipped_group_ids: created
                .skipped_group_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            warnings: convert::field_issues(&created.warnings),
        }))
    }

    async fn clone_user(
        &self,
        request: Request<proto::CloneUserRequest>,
    ) -> Result<Response<proto::CloneUserResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id_of(&request);
        let body = request.into_inner();
        let new_user = parse_new_user(
            Origin::Clone,
            body.user.as_ref(),
            &[],
            &body.source_user_id,
            body.deactivated,
            body.send_invitation,
            &body.request_id,
        )?;
        let created = user::create_user(&self.pool, &caller, &audit_request_id, &new_user).await?;
        Ok(Response::new(proto::CloneUserResponse {
            user: Some(convert::user(&created.user)),
            skipped_group_ids: created
                .skipped_group_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            warnings: convert::field_issues(&created.warnings),
        }))
    }

    async fn mirror_user(
        &self,
        request: Request<proto::MirrorUserRequest>,
    ) -> Result<Response<proto::MirrorUserResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id(&request);
        let body = request.into_inner();
        let mut violations = Vec::new();
        let reference = convert::parse_id(&body.reference_user_id, "reference_user_id")
            .map_err(|e| collect(e, &mut violations))
            .ok();
        let targets = convert::parse_ids(&body.target_user_ids, "target_user_ids")
            .map_err(|e| collect(e, &mut violations))
            .ok();
        if body.target_user_ids.is_empty() || body.target_user_ids.len() > MAX_BATCH {
            violations.push(FieldViolation::new(
                "target_user_ids",
                "COUNT",
                format!("must list 1 to {MAX_BATCH} users"),
            ));
        }
        let mode = match proto::MirrorMode::try_from(body.mode) {
            Ok(proto::MirrorMode::Add) => Some(MirrorMode::Add),
            Ok(proto::MirrorMode::Replace) => Some(MirrorMode::Replace),
            _ => {
                violations.push(FieldViolation::new(
                    "mode",
                    "REQUIRED",
                    "must be MIRROR_MODE_ADD or MIRROR_MODE_REPLACE",
                ));
                None
            }
        };
        DomainError::check(violations)?;
        let (Some(reference), Some(targets), Some(mode)) = (reference, targets, mode) else {
            return Err(Status::internal("validated above"));
        };
        let results = user::mirror_user(
            &self.pool,
            &caller,
            &audit_request_id,
            reference,
            &targets,
            mode,
        )
        .await?;
        let ids = |ids: &[uuid::Uuid]| ids.iter().map(ToString::to_string).collect();
        Ok(Response::new(proto::MirrorUserResponse {
            results: results
                .iter()
                .map(|r| proto::MirrorTargetResult {
                    target_user_id: r.target_user_id.to_string(),
                    applied: r.error.is_none(),
                    added_group_ids: ids(&r.added),
                    removed_group_ids: ids(&r.removed),
                    skipped_group_ids: ids(&r.skipped),
                    error_code: r
                        .error
                        .as_ref()
                        .map(|(code, _)| (*code).to_owned())
                        .unwrap_or_default(),
                    error_message: r
                        .error
                        .as_ref()
                        .map(|(_, message)| message.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let found = user::get_user(&self.pool, caller.organization_id, id).await?;
        Ok(Response::new(proto::GetUserResponse {
            user: Some(convert::user(&found)),
        }))
    }

    async fn lookup_user(
        &self,
        request: Request<proto::LookupUserRequest>,
    ) -> Result<Response<proto::LookupUserResponse>, Status> {
        use proto::lookup_user_request::Key;
        let caller = caller(&request)?;
        let key = match &request.get_ref().key {
            Some(Key::Email(email)) if !email.trim().is_empty() => LookupKey::Email(email),
            Some(Key::Username(username)) if !username.trim().is_empty() => {
                LookupKey::Username(username)
            }
            Some(Key::ExternalId(external_id)) if !external_id.trim().is_empty() => {
                LookupKey::ExternalId(external_id)
            }
            _ => {
                return Err(DomainError::invalid(
                    "key",
                    "REQUIRED",
                    "give one of email, username or external_id",
                )
                .into());
            }
        };
        let users = store::users::lookup(&self.pool, caller.organization_id, key)
            .await
            .map_err(DomainError::from)?;
        Ok(Response::new(proto::LookupUserResponse {
            users: users.iter().map(convert::user).collect(),
        }))
    }

    async fn batch_get_users(
        &self,
        request: Request<proto::BatchGetUsersRequest>,
    ) -> Result<Response<proto::BatchGetUsersResponse>, Status> {
        let caller = caller(&request)?;
        let raw = &request.get_ref().user_ids;
        if raw.len() > MAX_BATCH {
            return Err(DomainError::invalid(
                "user_ids",
                "TOO_MANY",
                format!("at most {MAX_BATCH} ids"),
            )
            .into());
        }
        let ids = convert::parse_ids(raw, "user_ids")?;
        let found = store::users::find_many(&self.pool, caller.organization_id, &ids)
            .await
            .map_err(DomainError::from)?;
        let mut users = Vec::new();
        let mut not_found_user_ids = Vec::new();
        for id in &ids {
            match found.iter().find(|u| u.id == *id) {
                Some(found) => users.push(convert::user(found)),
                None => not_found_user_ids.push(id.to_string()),
            }
        }
        Ok(Response::new(proto::BatchGetUsersResponse {
            users,
            not_found_user_ids,
        }))
    }

    async fn export_users(
        &self,
        request: Request<proto::ExportUsersRequest>,
    ) -> Result<Response<Self::ExportUsersStream>, Status> {
        let caller = caller(&request)?;
        let request_id = request_id_of(&request);
        let body = request.into_inner();
        let mut violations = Vec::new();
        let delimiter = convert::delimiter(&body.delimiter)
            .map_err(|error| {
                if let DomainError::InvalidArgument(found) = error {
                    violations.extend(found)
                }
            })
            .ok();
        let filter = user_filter(
            &body.query,
            &body.statuses,
            &body.group_id,
            &body.unit_id,
            body.onboarded,
            &mut violations,
        );
        DomainError::check(violations)?;
        let (chunks, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(import::export::export_users(
            self.pool.clone(),
            caller,
            request_id,
            filter,
            delimiter.unwrap_or(','),
            chunks,
        ));
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
        let body = request.into_inner();
        let mut violations = Vec::new();
        let page_size = PageSize::parse(body.page_size)
            .map_err(|v| violations.push(v))
            .ok();
        let order = UserOrder::parse(&body.order_by)
            .map_err(|v| violations.push(v))
            .ok();
        let filter = user_filter(
            &body.query,
            &body.statuses,
            &body.group_id,
            &body.unit_id,
            body.onboarded,
            &mut violations,
        );
        DomainError::check(violations)?;
        let (Some(page_size), Some(order)) = (page_size, order) else {
            return Err(Status::internal("validated above"));
        };
        let page = store::users::list(
            &self.pool,
            caller.organization_id,
            &filter,
            order,
            page_size,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListUsersResponse {
            users: page.items.iter().map(convert::user).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Result<Response<proto::UpdateUserResponse>, Status> {
        let caller = caller(&request)?;
        let audit_request_id = request_id(&request);
        let body = request.into_inner();
        let id = convert::parse_id(
            body.user
                .as_ref()
                .map(|u| u.id.as_str())
                .unwrap_or_default(),
            "user.id",
        )?;
        let fields = convert::mask_fields(
            body.update_mask.as_ref(),
            "user.",
            USER_FIELDS,
            UserField::parse,
        )?;
        let input = convert::user_input(body.user.as_ref());
        let (updated, warnings) =
            user::update_user(&self.pool, &caller, &audit_request_id, id, &fields, &input).await?;
        Ok(Response::new(proto::UpdateUserResponse {
            user: Some(convert::user(&updated)),
            warnings: convert::field_issues(&warnings),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().user_id, "user_id")?;
        user::delete_user(&self.pool, &caller, &request_id(&request), id).await?;
        Ok(Response::new(proto::DeleteUserResponse {}))
    }

    async fn set_user_status(
        &self,
        request: Request<proto::SetUserStatusRequest>,
    ) -> Result<Response<proto::SetUserStatusResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let status =
            convert::user_status_from_proto(request.get_ref().status).ok_or_else(|| {
                DomainError::invalid(
                    "status",
                    "REQUIRED",
                    "must be USER_STATUS_ACTIVE, USER_STATUS_INACTIVE or USER_STATUS_ON_VACATION",
                )
            })?;
        let updated =
            user::set_user_status(&self.pool, &caller, &request_id(&request), id, status).await?;
        Ok(Response::new(proto::SetUserStatusResponse {
            user: Some(convert::user(&updated)),
        }))
    }

    async fn add_user_to_groups(
        &self,
        request: Request<proto::AddUserToGroupsRequest>,
    ) -> Result<Response<proto::AddUserToGroupsResponse>, Status> {
        let caller = caller(&request)?;
        let (user_id, group_ids) =
            user_and_groups(&request.get_ref().user_id, &request.get_ref().group_ids)?;
        let added = groups::add_user_to_groups(
            &self.pool,
            &caller,
            &request_id(&request),
            user_id,
            &group_ids,
        )
        .await?;
        Ok(Response::new(proto::AddUserToGroupsResponse {
            added_group_ids: added.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn remove_user_from_groups(
        &self,
        request: Request<proto::RemoveUserFromGroupsRequest>,
    ) -> Result<Response<proto::RemoveUserFromGroupsResponse>, Status> {
        let caller = caller(&request)?;
        let (user_id, group_ids) =
            user_and_groups(&request.get_ref().user_id, &request.get_ref().group_ids)?;
        let removed = groups::remove_user_from_groups(
            &self.pool,
            &caller,
            &request_id(&request),
            user_id,
            &group_ids,
        )
        .await?;
        Ok(Response::new(proto::RemoveUserFromGroupsResponse {
            removed_group_ids: removed.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn list_user_groups(
        &self,
        request: Request<proto::ListUserGroupsRequest>,
    ) -> Result<Response<proto::ListUserGroupsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let user_id = convert::parse_id(&body.user_id, "user_id")?;
        user::get_user(&self.pool, caller.organization_id, user_id).await?;
        let filter = GroupFilter {
            member_id: Some(user_id),
            ..Default::default()
        };
        let page = store::groups::list(
            &self.pool,
            caller.organization_id,
            &filter,
            convert::page_size(body.page_size)?,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListUserGroupsResponse {
            groups: page.items.iter().map(convert::group).collect(),
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
        let user_id = convert::parse_id(&request.get_ref().user_id, "user_id")?;
        let found = user::get_user(&self.pool, caller.organization_id, user_id).await?;
        let can_sign_in = found.status == user::UserStatus::Active;
        let mut response = proto::GetUserAccessResponse {
            status: convert::user_status_to_proto(found.status),
            can_sign_in,
            ..Default::default()
        };
        // A calling service must never authorize someone who may not sign in.
        if can_sign_in {
            let rows = store::groups::access_of_user(&self.pool, caller.organization_id, user_id)
                .await
                .map_err(DomainError::from)?;
            let grants: Vec<_> = rows.iter().map(store::groups::AccessRow::grant).collect();
            response.grants = rows
                .into_iter()
                .zip(&grants)
                .map(|(row, (grant, _))| {
                    let (unit_scope, unit_ids) = convert::unit_scope_to_proto(&grant.scope);
                    proto::AccessGrant {
                        group_id: row.group_id.to_string(),
                        group_name: row.group_name,
                        profile_id: row.profile_id.to_string(),
                        product: row.product,
                        profile_name: row.profile_name,
                        unit_scope,
                        unit_ids,
                    }
                })
                .collect();
            response.scopes =
                convert::scopes_to_proto(&UserAccess::from_groups(true, grants).scopes);
        }
        Ok(Response::new(response))
    }

    async fn send_activation_email(
        &self,
        request: Request<proto::SendActivationEmailRequest>,
    ) -> Result<Response<proto::SendActivationEmailResponse>, Status> {
        let caller = caller(&request)?;
        let request_id = request_id(&request);
        let body = request.into_inner();
        let filter = proto::ActivationFilter::try_from(body.filter)
            .unwrap_or(proto::ActivationFilter::Unspecified);
        let given = [
            !body.user_ids.is_empty(),
            filter != proto::ActivationFilter::Unspecified,
            !body.import_job_id.is_empty(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(DomainError::invalid(
                "user_ids",
                "ONE_TARGET",
                "give exactly one of user_ids, filter and import_job_id",
            )
            .into());
        }
        let targets = if !body.user_ids.is_empty() {
            if body.user_ids.len() > 1000 {
                return Err(DomainError::invalid(
                    "user_ids",
                    "TOO_MANY",
                    "at most 1000 ids; use a filter for more",
                )
                .into());
            }
            let ids = body
                .user_ids
                .iter()
                .enumerate()
                .map(|(i, id)| convert::parse_id(id, &format!("user_ids[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            InvitationTargets::Ids(ids)
        } else if !body.import_job_id.is_empty() {
            InvitationTargets::ImportJob(convert::parse_id(&body.import_job_id, "import_job_id")?)
        } else if filter == proto::ActivationFilter::Expired {
            InvitationTargets::Expired
        } else {
            InvitationTargets::NotOnboarded
        };
        let queued =
            user::send_activation_emails(&self.pool, &caller, &request_id, &targets).await?;
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
        Ok(Response::new(proto::GetOnboardingStatsResponse {
            onboarded_count: stats.onboarded,
            not_onboarded_count: stats.not_onboarded,
            status_counts: stats
                .by_status
                .into_iter()
                .map(|(status, count)| proto::StatusCount {
                    status: convert::user_status_to_proto(status),
                    count,
                })
                .collect(),
        }))
    }
}

/// Adds an invalid-argument error's violations to `violations`.
fn collect(error: DomainError, violations: &mut Vec<FieldViolation>) {
    if let DomainError::InvalidArgument(found) = error {
        violations.extend(found);
    }
}

fn user_and_groups(
    user_id: &str,
    group_ids: &[String],
) -> Result<(uuid::Uuid, Vec<uuid::Uuid>), DomainError> {
    let user_id = convert::parse_id(user_id, "user_id")?;
    if group_ids.is_empty() {
        return Err(DomainError::invalid(
            "group_ids",
            "REQUIRED",
            "must list at least one group",
        ));
    }
    Ok((user_id, convert::parse_ids(group_ids, "group_ids")?))
}

/// The ListUsers/ExportUsers filters; violations are collected into `violations`.
pub(super) fn user_filter(
    query: &str,
    statuses: &[i32],
    group_id: &str,
    unit_id: &str,
    onboarded: Option<bool>,
    violations: &mut Vec<FieldViolation>,
) -> UserFilter {
    let mut parsed_statuses = Vec::new();
    for (index, raw) in statuses.iter().enumerate() {
        match convert::user_status_from_proto(*raw) {
            Some(status) => parsed_statuses.push(status),
            None => violations.push(FieldViolation::new(
                format!("statuses[{index}]"),
                "INVALID_VALUE",
                "is not a user status",
            )),
        }
    }
    let mut optional_id = |raw: &str, field: &str| match convert::parse_optional_id(raw, field) {
        Ok(id) => id,
        Err(DomainError::InvalidArgument(found)) => {
            violations.extend(found);
            None
        }
        Err(_) => None,
    };
    let group_id = optional_id(group_id, "group_id");
    let unit_id = optional_id(unit_id, "unit_id");
    if query.chars().count() > 200 {
        violations.push(FieldViolation::new(
            "query",
            "TOO_LONG",
            "must be at most 200 characters",
        ));
    }
    UserFilter {
        query_words: UserFilter::query_words(query),
        statuses: parsed_statuses,
        group_id,
        unit_id,
        onboarded,
    }
}

/// Parses CreateUser (and CloneUser) into a validated new user, every violation at once.
pub(super) fn parse_new_user(
    origin: Origin,
    user: Option<&proto::User>,
    group_ids: &[String],
    mirror_user_id: &str,
    deactivated: bool,
    send_invitation: Option<bool>,
    request_id: &str,
) -> Result<NewUser, DomainError> {
    let mut violations = Vec::new();
    let values = UserValues::parse(&convert::user_input(user), "user.")
        .map_err(|v| violations.extend(v))
        .ok();
    let group_ids = match convert::parse_ids(group_ids, "group_ids") {
        Ok(ids) => ids,
        Err(DomainError::InvalidArgument(found)) => {
            violations.extend(found);
            Vec::new()
        }
        Err(other) => return Err(other),
    };
    let mirror_field = match origin {
        Origin::Create => "mirror_user_id",
        Origin::Clone => "source_user_id",
    };
    let parsed_source = if origin == Origin::Clone {
        convert::parse_id(mirror_user_id, mirror_field).map(Some)
    } else {
        convert::parse_optional_id(mirror_user_id, mirror_field)
    };
    let mirror_user_id = match parsed_source {
        Ok(id) => id,
        Err(DomainError::InvalidArgument(found)) => {
            violations.extend(found);
            None
        }
        Err(other) => return Err(other),
    };
    let request_id = IdempotencyKey::parse_optional(request_id)
        .map_err(|v| violations.push(v))
        .ok()
        .flatten();
    DomainError::check(violations)?;
    let values = values
        .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("user values validated above")))?;
    Ok(NewUser {
        origin,
        values,
        group_ids,
        mirror_user_id,
        deactivated,
        send_invitation: send_invitation.unwrap_or(true),
        request_id,
    })
}
