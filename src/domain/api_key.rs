//! API keys: credentials for services, created and revoked by organization
//! administrators (or the operator's CLI).

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    audit::AuditRecord,
    caller::{Actor, Scope, Scopes},
    name::DisplayName,
    paging::{Page, PageSize},
    token::{Secret, TokenKind},
    DomainError, FieldViolation,
};
use crate::store::{self, Transaction};

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
    pub request_id: Option<String>,
}

impl NewApiKey {
    /// `scopes` holds `None` for each unspecified or unknown scope the caller sent.
    pub fn parse(
        name: &str,
        scopes: &[Option<Scope>],
        expire_time: Option<DateTime<Utc>>,
        request_id: &str,
    ) -> Result<Self, DomainError> {
        let mut violations = Vec::new();
        let name = DisplayName::parse(name, "name")
            .map_err(|v| violations.push(v))
            .ok();
        if scopes.is_empty() {
            violations.push(FieldViolation::new(
                "scopes",
                "REQUIRED",
                "must hold ADMIN and/or VIEWER",
            ));
        }
        for (index, scope) in scopes.iter().enumerate() {
            if scope.is_none() {
                violations.push(FieldViolation::new(
                    format!("scopes[{index}]"),
                    "INVALID_VALUE",
                    "must be SCOPE_ADMIN or SCOPE_VIEWER",
                ));
            }
        }
        if expire_time.is_some_and(|time| time <= Utc::now()) {
            violations.push(FieldViolation::new(
                "expire_time",
                "IN_THE_PAST",
                "must be in the future",
            ));
        }
        let request_id = parse_request_id(request_id)
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        DomainError::check(violations)?;
        Ok(Self {
            name: name.ok_or_else(|| anyhow::anyhow!("name validated above"))?,
            scopes: Scopes::new(scopes.iter().flatten().copied().collect()),
            expire_time,
            request_id,
        })
    }
}

/// An optional idempotency key: at most 128 printable ASCII characters.
pub fn parse_request_id(raw: &str) -> Result<Option<String>, FieldViolation> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldViolation::new(
            "request_id",
            "INVALID_VALUE",
            "must be at most 128 printable ASCII characters",
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// Creates a key and returns it with its secret, shown only now. A retry
/// with the same request id by the same actor returns the first key without
/// a secret.
pub async fn create_api_key(
    pool: &PgPool,
    organization_id: Uuid,
    actor: Actor,
    request_id: &str,
    new_key: &NewApiKey,
) -> Result<(ApiKey, Option<Secret>), DomainError> {
    if let Some(previous) = match &new_key.request_id {
        Some(id) => {
            store::api_keys::find_by_request_id(pool, organization_id, &actor.reference(), id)
                .await?
        }
        None => None,
    } {
        return Ok((previous, None));
    }
    let mut tx = pool.begin().await?;
    let (key, secret) =
        insert_api_key(&mut tx, organization_id, actor, request_id, new_key).await?;
    tx.commit().await?;
    Ok((key, Some(secret)))
}

/// Stores a new key and its audit event inside the caller's transaction.
pub async fn insert_api_key(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    actor: Actor,
    request_id: &str,
    new_key: &NewApiKey,
) -> Result<(ApiKey, Secret), DomainError> {
    let secret = Secret::generate(TokenKind::ApiKey);
    let key = store::api_keys::insert(
        tx,
        organization_id,
        &actor.reference(),
        new_key,
        &secret.hash(),
    )
    .await?;
    store::audit::record(
        tx,
        &AuditRecord::new(organization_id, actor, "api_key.create", "api_key", key.id)
            .with_request_id(request_id)
            .with_details(json!({
                "name": key.name,
                "scopes": key.scopes.as_slice().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "expire_time": key.expire_time,
            })),
    )
    .await?;
    Ok((key, secret))
}

pub async fn list_api_keys(
    pool: &PgPool,
    organization_id: Uuid,
    page_size: PageSize,
    page_token: &str,
    show_revoked: bool,
) -> Result<Page<ApiKey>, DomainError> {
    store::api_keys::list(pool, organization_id, page_size, page_token, show_revoked).await
}

/// Revokes a key at once; revoking a revoked key changes nothing.
pub async fn revoke_api_key(
    pool: &PgPool,
    organization_id: Uuid,
    key_id: Uuid,
    actor: Actor,
    request_id: &str,
) -> Result<ApiKey, DomainError> {
    let mut tx = pool.begin().await?;
    let key = store::api_keys::revoke(&mut tx, organization_id, key_id)
        .await?
        .ok_or(DomainError::NotFound("API key not found".into()))?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(organization_id, actor, "api_key.revoke", "api_key", key.id)
            .with_request_id(request_id)
            .with_details(json!({ "name": key.name })),
    )
    .await?;
    tx.commit().await?;
    Ok(key)
}

pub async fn find_api_key_by_name(
    pool: &PgPool,
    organization_id: Uuid,
    name: &str,
) -> Result<ApiKey, DomainError> {
    store::api_keys::find_active_by_name(pool, organization_id, name)
        .await?
        .ok_or(DomainError::NotFound("API key not found".into()))
}
