use prost_types::Duration;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::{caller, convert, request_id_of};
use crate::{
    domain::{
        audit::{self, AuditFilter},
        organization::{self, Organization, PublicEmailDomainPolicy, SettingsPatch},
        paging::PageSize,
        DomainError, FieldViolation,
    },
    proto::{self, organization_service_server::OrganizationService},
};

pub struct OrganizationHandler {
    pool: PgPool,
}

impl OrganizationHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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
            organization: Some(organization_to_proto(&organization)),
        }))
    }

    async fn update_organization_settings(
        &self,
        request: Request<proto::UpdateOrganizationSettingsRequest>,
    ) -> Result<Response<proto::UpdateOrganizationSettingsResponse>, Status> {
        let caller = caller(&request)?;
        let request_id = request_id_of(&request);
        let body = request.into_inner();
        let patch = settings_patch(
            body.settings.unwrap_or_default(),
            body.update_mask.unwrap_or_default(),
        )?;
        let organization =
            organization::update_settings(&self.pool, &caller, &request_id, &patch).await?;
        Ok(Response::new(proto::UpdateOrganizationSettingsResponse {
            organization: Some(organization_to_proto(&organization)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let mut violations = Vec::new();
        let actor_id = match body.actor_id.as_str() {
            "" => None,
            raw => uuid::Uuid::parse_str(raw)
                .map_err(|_| {
                    violations.push(FieldViolation::new(
                        "actor_id",
                        "INVALID_ID",
                        "must be a UUID",
                    ))
                })
                .ok(),
        };
        let start_time = convert::parse_timestamp(body.start_time.as_ref(), "start_time")
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let end_time = convert::parse_timestamp(body.end_time.as_ref(), "end_time")
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let page_size = PageSize::parse(body.page_size);
        violations.extend(page_size.as_ref().err().cloned());
        let page_size = match page_size {
            Ok(page_size) if violations.is_empty() => page_size,
            _ => return Err(DomainError::InvalidArgument(violations).into()),
        };
        let filter = AuditFilter {
            target_type: body.target_type,
            target_id: body.target_id,
            actor_id,
            action: body.action,
            start_time,
            end_time,
        };
        let page = audit::list_audit_events(
            &self.pool,
            caller.organization_id,
            &filter,
            page_size,
            &body.page_token,
        )
        .await?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            audit_events: page
                .items
                .into_iter()
                .map(|event| proto::AuditEvent {
                    id: event.id.to_string(),
                    actor_kind: actor_kind(&event.actor_kind) as i32,
                    actor_id: event.actor_id.map(|id| id.to_string()).unwrap_or_default(),
                    action: event.action,
                    target_type: event.target_type,
                    target_id: event.target_id,
                    request_id: event.request_id,
                    changed_fields: event.changed_fields,
                    details: Some(convert::json_struct(&event.details)),
                    create_time: Some(convert::timestamp(event.create_time)),
                })
                .collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size.value,
            total_size_estimated: page.total_size.estimated,
        }))
    }
}

fn actor_kind(raw: &str) -> proto::ActorKind {
    match raw {
        "API_KEY" => proto::ActorKind::ApiKey,
        "USER" => proto::ActorKind::User,
        "OPERATOR" => proto::ActorKind::Operator,
        "SYSTEM" => proto::ActorKind::System,
        _ => proto::ActorKind::Unspecified,
    }
}

const SETTING_PATHS: &[&str] = &[
    "allow_duplicate_emails",
    "public_email_domain_policy",
    "invitation_ttl",
    "password_reset_ttl",
    "access_token_ttl",
    "locale",
];

/// Reads the settings named in the mask (`x` or `settings.x`); an empty mask
/// or an unknown path is refused, naming the path.
fn settings_patch(
    settings: proto::OrganizationSettings,
    mask: prost_types::FieldMask,
) -> Result<SettingsPatch, DomainError> {
    let paths = convert::mask_fields(
        Some(&mask),
        "settings.",
        &SETTING_PATHS.join(", "),
        |path| SETTING_PATHS.iter().find(|known| **known == path).copied(),
    )?;
    let mut patch = SettingsPatch::default();
    for path in paths {
        match path {
            "allow_duplicate_emails" => {
                patch.allow_duplicate_emails = Some(settings.allow_duplicate_emails)
            }
            "public_email_domain_policy" => {
                patch.public_email_domain_policy =
                    Some(policy_from_proto(settings.public_email_domain_policy))
            }
            "invitation_ttl" => {
                patch.invitation_ttl = Some(whole_seconds(settings.invitation_ttl.as_ref()))
            }
            "password_reset_ttl" => {
                patch.password_reset_ttl = Some(whole_seconds(settings.password_reset_ttl.as_ref()))
            }
            "access_token_ttl" => {
                patch.access_token_ttl = Some(whole_seconds(settings.access_token_ttl.as_ref()))
            }
            _ => patch.locale = Some(settings.locale.clone()),
        }
    }
    Ok(patch)
}

fn whole_seconds(duration: Option<&Duration>) -> Option<i64> {
    duration.filter(|d| d.nanos == 0).map(|d| d.seconds)
}

fn policy_from_proto(raw: i32) -> Option<PublicEmailDomainPolicy> {
    match proto::PublicEmailDomainPolicy::try_from(raw).ok()? {
        proto::PublicEmailDomainPolicy::Allow => Some(PublicEmailDomainPolicy::Allow),
        proto::PublicEmailDomainPolicy::Warn => Some(PublicEmailDomainPolicy::Warn),
        proto::PublicEmailDomainPolicy::Reject => Some(PublicEmailDomainPolicy::Reject),
        proto::PublicEmailDomainPolicy::Unspecified => None,
    }
}

fn organization_to_proto(organization: &Organization) -> proto::Organization {
    let settings = &organization.settings;
    let duration = |seconds: i64| Some(Duration { seconds, nanos: 0 });
    proto::Organization {
        id: organization.id.to_string(),
        name: organization.name.clone(),
        settings: Some(proto::OrganizationSettings {
            allow_duplicate_emails: settings.allow_duplicate_emails,
            public_email_domain_policy: match settings.public_email_domain_policy {
                PublicEmailDomainPolicy::Allow => proto::PublicEmailDomainPolicy::Allow,
                PublicEmailDomainPolicy::Warn => proto::PublicEmailDomainPolicy::Warn,
                PublicEmailDomainPolicy::Reject => proto::PublicEmailDomainPolicy::Reject,
            } as i32,
            invitation_ttl: duration(settings.invitation_ttl_seconds),
            password_reset_ttl: duration(settings.password_reset_ttl_seconds),
            access_token_ttl: duration(settings.access_token_ttl_seconds),
            locale: settings.locale.as_str().to_owned(),
        }),
        create_time: Some(convert::timestamp(organization.create_time)),
        update_time: Some(convert::timestamp(organization.update_time)),
    }
}
