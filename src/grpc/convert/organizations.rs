//! The organization service's settings and audit events, both ways.

use prost_types::Duration;

use super::{json_struct, json_value, mask_fields, parse_timestamp, timestamp, value_json};
use crate::{
    domain::{
        attribute::{AttributeDefinition, AttributeType, DefinedAttribute, DefinitionInput},
        audit::{AuditEvent, AuditFilter},
        call::Via,
        caller::ActorKind,
        organization::{Organization, PublicEmailDomainPolicy, SettingsPatch},
        paging::PageRequest,
        DomainError, FieldViolation,
    },
    proto,
};

pub fn actor_kind(kind: ActorKind) -> proto::ActorKind {
    match kind {
        ActorKind::ApiKey => proto::ActorKind::ApiKey,
        ActorKind::User => proto::ActorKind::User,
        ActorKind::Operator => proto::ActorKind::Operator,
        ActorKind::System => proto::ActorKind::System,
    }
}

pub fn via(via: Option<Via>) -> proto::Via {
    match via {
        None => proto::Via::Unspecified,
        Some(Via::Grpc) => proto::Via::Grpc,
        Some(Via::Scim) => proto::Via::Scim,
        Some(Via::Pages) => proto::Via::Pages,
        Some(Via::Cli) => proto::Via::Cli,
        Some(Via::System) => proto::Via::System,
    }
}

pub fn audit_event(event: &AuditEvent) -> proto::AuditEvent {
    proto::AuditEvent {
        id: event.id.to_string(),
        actor_kind: actor_kind(event.actor_kind) as i32,
        actor_id: event.actor_id.map(|id| id.to_string()).unwrap_or_default(),
        action: event.action.clone(),
        target_type: event.target_type.clone(),
        target_id: event.target_id.clone(),
        request_id: event.request_id.clone(),
        changed_fields: event.changed_fields.clone(),
        details: Some(json_struct(&event.details)),
        create_time: Some(timestamp(event.create_time)),
        via: via(event.via) as i32,
    }
}

/// The filters and page of `ListAuditEvents`, every violation at once.
pub fn audit_query(
    body: &proto::ListAuditEventsRequest,
) -> Result<(AuditFilter, PageRequest), DomainError> {
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
    let start_time = parse_timestamp(body.start_time.as_ref(), "start_time")
        .map_err(|v| violations.push(v))
        .ok()
        .flatten();
    let end_time = parse_timestamp(body.end_time.as_ref(), "end_time")
        .map_err(|v| violations.push(v))
        .ok()
        .flatten();
    let page = PageRequest::parse(body.page_size, body.page_token.clone());
    violations.extend(page.as_ref().err().cloned());
    let page = match page {
        Ok(page) if violations.is_empty() => page,
        _ => return Err(DomainError::InvalidArgument(violations)),
    };
    let filter = AuditFilter {
        target_type: body.target_type.clone(),
        target_id: body.target_id.clone(),
        actor_id,
        action: body.action.clone(),
        start_time,
        end_time,
    };
    Ok((filter, page))
}

const SETTING_PATHS: &[&str] = &[
    "allow_duplicate_emails",
    "public_email_domain_policy",
    "invitation_ttl",
    "password_reset_ttl",
    "access_token_ttl",
    "locale",
    "display_name",
    "max_sessions_per_user",
    "password_max_age",
    "require_second_factor",
    "scim_default_profile_id",
    "scim_send_invitations",
];

/// Reads the settings named in the mask (`x` or `settings.x`); an empty mask
/// or an unknown path is refused, naming the path.
pub fn settings_patch(
    settings: proto::OrganizationSettings,
    mask: prost_types::FieldMask,
) -> Result<SettingsPatch, DomainError> {
    let paths = mask_fields(
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
            "locale" => patch.locale = Some(settings.locale.clone()),
            "require_second_factor" => {
                patch.require_second_factor = Some(settings.require_second_factor)
            }
            "scim_default_profile_id" => {
                patch.scim_default_profile_id = Some(settings.scim_default_profile_id.clone())
            }
            "scim_send_invitations" => {
                patch.scim_send_invitations = Some(settings.scim_send_invitations)
            }
            "max_sessions_per_user" => {
                patch.max_sessions_per_user = Some(settings.max_sessions_per_user)
            }
            "password_max_age" => {
                // Unset or zero clears it; a fractional one is out of range (-1).
                patch.password_max_age = Some(match settings.password_max_age {
                    None
                    | Some(Duration {
                        seconds: 0,
                        nanos: 0,
                    }) => None,
                    Some(Duration { seconds, nanos: 0 }) => Some(seconds),
                    Some(_) => Some(-1),
                })
            }
            _ => patch.display_name = Some(settings.display_name.clone()),
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

pub fn organization(organization: &Organization) -> proto::Organization {
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
            display_name: settings.display_name.clone(),
            max_sessions_per_user: settings.max_sessions_per_user.unwrap_or(0),
            password_max_age: settings.password_max_age_seconds.and_then(duration),
            require_second_factor: settings.require_second_factor,
            scim_default_profile_id: settings
                .scim_default_profile_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            scim_send_invitations: settings.scim_send_invitations,
        }),
        create_time: Some(timestamp(organization.create_time)),
        update_time: Some(timestamp(organization.update_time)),
    }
}

/// DefineUserAttribute's definition, every violation at once.
pub fn attribute_definition(
    attribute: Option<proto::UserAttributeDefinition>,
) -> Result<AttributeDefinition, DomainError> {
    let attribute = attribute.unwrap_or_default();
    let value_type = match proto::UserAttributeType::try_from(attribute.r#type) {
        Ok(proto::UserAttributeType::String) => Some(AttributeType::String),
        Ok(proto::UserAttributeType::Number) => Some(AttributeType::Number),
        Ok(proto::UserAttributeType::Boolean) => Some(AttributeType::Boolean),
        Ok(proto::UserAttributeType::Date) => Some(AttributeType::Date),
        _ => None,
    };
    let input = DefinitionInput {
        key: attribute.key,
        value_type,
        allowed_values: attribute.allowed_values.iter().map(value_json).collect(),
        required: attribute.required,
        description: attribute.description,
    };
    AttributeDefinition::parse(&input, "attribute.").map_err(DomainError::InvalidArgument)
}

pub fn attribute(defined: &DefinedAttribute) -> proto::UserAttributeDefinition {
    let definition = &defined.definition;
    proto::UserAttributeDefinition {
        key: definition.key.as_str().to_owned(),
        r#type: match definition.value_type {
            AttributeType::String => proto::UserAttributeType::String,
            AttributeType::Number => proto::UserAttributeType::Number,
            AttributeType::Boolean => proto::UserAttributeType::Boolean,
            AttributeType::Date => proto::UserAttributeType::Date,
        } as i32,
        allowed_values: definition
            .allowed_values
            .iter()
            .map(|value| json_value(&value.to_json()))
            .collect(),
        required: definition.required,
        description: definition.description.clone(),
        create_time: Some(timestamp(defined.create_time)),
        update_time: Some(timestamp(defined.update_time)),
    }
}
