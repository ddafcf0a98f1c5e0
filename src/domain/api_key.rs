//! API keys: credentials for services, created and revoked by organization
//! administrators (or the operator's CLI).

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    call::Via,
    caller::{Actor, Scope, Scopes},
    name::DisplayName,
    paging::{Page, PageRequest},
    request::{IdempotencyKey, RequestId},
    token::{Secret, TokenKind},
    unit_of_work::{IdempotentCreate, UnitOfWork},
    DomainError, FieldViolation,
};
use crate::store;
use crate::store::Pool;

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub created_by: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub last_used_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
}

/// A validated request for a new key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: DisplayName,
    pub scopes: Scopes,
    pub expire_time: Option<DateTime<Utc>>,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl NewApiKey {
    /// `scopes` holds `None` for each unspecified or unknown scope the caller
    /// sent. Every violation is reported, the request id's included.
    pub fn parse(
        name: &str,
        scopes: &[Option<Scope>],
        expire_time: Option<DateTime<Utc>>,
        request_id: &str,
    ) -> Result<Self, DomainError> {
        let name = DisplayName::parse(name, "name");
        let idempotency_key = IdempotencyKey::parse_optional(request_id);
        let mut violations: Vec<FieldViolation> =
            name.as_ref().err().cloned().into_iter().collect();
        violations.extend(scope_violations(scopes));
        if expire_time.is_some_and(|time| time <= Utc::now()) {
            violations.push(FieldViolation::new(
                "expire_time",
                "IN_THE_PAST",
                "must be in the future",
            ));
        }
        violations.extend(idempotency_key.as_ref().err().cloned());
        match (name, idempotency_key) {
            (Ok(name), Ok(idempotency_key)) if violations.is_empty() => Ok(Self {
                name,
                scopes: Scopes::new(scopes.iter().flatten().copied().collect()),
                expire_time,
                idempotency_key,
            }),
            _ => Err(DomainError::InvalidArgument(violations)),
        }
    }
}

fn scope_violations(scopes: &[Option<Scope>]) -> Vec<FieldViolation> {
    if scopes.is_empty() {
        return vec![FieldViolation::new(
            "scopes",
            "REQUIRED",
            "must hold ADMIN and/or VIEWER",
        )];
    }
    scopes
        .iter()
        .enumerate()
        .filter(|(_, scope)| scope.is_none())
        .map(|(index, _)| {
            FieldViolation::new(
                format!("scopes[{index}]"),
                "INVALID_VALUE",
                "must be SCOPE_ADMIN or SCOPE_VIEWER",
            )
        })
        .collect()
}

/// Creates a key and returns it with its secret, shown only now. A retry
/// with the same idempotency key by the same actor returns the first key
/// without a secret.
///
/// Keys created before idempotent_requests held API keys recorded their
/// key in `api_keys.request_id` only; a retry of such a pre-upgrade request
/// is not replayed (retries come within seconds, not across an upgrade) and
/// is refused as API_KEY_ALREADY_EXISTS by the name rule instead.
pub async fn create_api_key(
    pool: &Pool,
    organization_id: Uuid,
    actor: Actor,
    request_id: Option<RequestId>,
    via: Via,
    new_key: &NewApiKey,
) -> Result<(ApiKey, Option<Secret>), DomainError> {
    let create = new_key
        .idempotency_key
        .clone()
        .map(|key| IdempotentCreate::by(organization_id, actor, "CreateApiKey", key));
    if let Some(create) = &create {
        if let Some((id, _)) = create.earlier::<serde_json::Value>(pool).await? {
            return Ok((get_api_key(pool, organization_id, id).await?, None));
        }
    }
    let mut work = UnitOfWork::begin_as(pool, organization_id, actor, request_id, via).await?;
    let (key, secret) = add_api_key(&mut work, new_key, create.as_ref()).await?;
    work.commit().await?;
    Ok((key, Some(secret)))
}

/// Stores a new key inside the unit and records its audit event.
pub async fn add_api_key(
    work: &mut UnitOfWork,
    new_key: &NewApiKey,
    create: Option<&IdempotentCreate>,
) -> Result<(ApiKey, Secret), DomainError> {
    let id = Uuid::now_v7();
    if let Some(create) = create {
        // Before the key, so a concurrent twin waits here and is refused
        // rather than colliding on the name. The secret is never stored: a
        // replay answers with the key alone.
        work.remember(create, id, &json!({})).await?;
    }
    let secret = Secret::generate(TokenKind::ApiKey);
    let organization_id = work.organization_id();
    let created_by = work.actor().reference();
    let key = store::api_keys::insert(
        work.tx(),
        organization_id,
        id,
        &created_by,
        new_key,
        &secret.hash(),
    )
    .await?;
    work.record(
        work.audit_record("api_key.create", "api_key", key.id)
            .with_details(json!({
                "name": key.name,
                "scopes": key.scopes.as_slice().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "expire_time": key.expire_time,
            })),
    );
    Ok((key, secret))
}

pub async fn get_api_key(
    pool: &Pool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<ApiKey, DomainError> {
    store::api_keys::find(pool, organization_id, id)
        .await?
        .ok_or(DomainError::NotFound("API key not found".into()))
}

pub async fn list_api_keys(
    pool: &Pool,
    organization_id: Uuid,
    show_revoked: bool,
    page: &PageRequest,
) -> Result<Page<ApiKey>, DomainError> {
    store::api_keys::list(pool, organization_id, show_revoked, page).await
}

/// Revokes a key at once; revoking a revoked key changes nothing.
pub async fn revoke_api_key(
    pool: &Pool,
    organization_id: Uuid,
    key_id: Uuid,
    actor: Actor,
    request_id: Option<RequestId>,
    via: Via,
) -> Result<ApiKey, DomainError> {
    let mut work = UnitOfWork::begin_as(pool, organization_id, actor, request_id, via).await?;
    let key = store::api_keys::revoke(work.tx(), organization_id, key_id)
        .await?
        .ok_or(DomainError::NotFound("API key not found".into()))?;
    work.record(
        work.audit_record("api_key.revoke", "api_key", key.id)
            .with_details(json!({ "name": key.name })),
    );
    work.commit().await?;
    Ok(key)
}

pub async fn find_api_key_by_name(
    pool: &Pool,
    organization_id: Uuid,
    name: &str,
) -> Result<ApiKey, DomainError> {
    store::api_keys::find_active_by_name(pool, organization_id, name)
        .await?
        .ok_or(DomainError::NotFound("API key not found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(error: DomainError) -> Vec<String> {
        match error {
            DomainError::InvalidArgument(violations) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_new_key_reports_every_invalid_field_in_request_order() {
        let past = Utc::now() - chrono::Duration::days(1);
        let error =
            NewApiKey::parse(" ", &[Some(Scope::Admin), None], Some(past), "a b").unwrap_err();
        assert_eq!(
            fields(error),
            ["name", "scopes[1]", "expire_time", "request_id"]
        );
        assert_eq!(
            fields(NewApiKey::parse("x", &[], None, "").unwrap_err()),
            ["scopes"]
        );
    }

    #[test]
    fn a_valid_key_keeps_its_scopes_and_idempotency_key() {
        let key = NewApiKey::parse("ci", &[Some(Scope::Viewer)], None, "k-1").unwrap();
        assert_eq!(key.name.as_str(), "ci");
        assert_eq!(key.scopes.as_slice(), [Scope::Viewer]);
        assert_eq!(key.idempotency_key.unwrap().as_str(), "k-1");
        let key = NewApiKey::parse("ci", &[Some(Scope::Viewer)], None, "").unwrap();
        assert!(key.idempotency_key.is_none());
    }
}
