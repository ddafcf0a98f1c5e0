//! First results of create calls that carried a `request_id`, per caller.

use sqlx::PgPool;
use uuid::Uuid;

use super::{map_constraint_violation, Transaction};
use crate::domain::{caller::Caller, DomainError};

/// One caller's request id for one operation: ids are scoped to the caller
/// (API key or user), so a replay by another caller never returns this result.
#[derive(Debug, Clone)]
pub struct RequestKey {
    organization_id: Uuid,
    /// `Actor::reference()`: "api_key:<id>", "user:<id>" or "operator".
    caller: String,
    operation: &'static str,
    request_id: String,
}

impl RequestKey {
    pub fn new(caller: &Caller, operation: &'static str, request_id: &str) -> Self {
        Self {
            organization_id: caller.organization_id,
            caller: caller.actor().reference(),
            operation,
            request_id: request_id.to_owned(),
        }
    }
}

pub async fn find(
    pool: &PgPool,
    key: &RequestKey,
) -> Result<Option<(Uuid, serde_json::Value)>, sqlx::Error> {
    sqlx::query_as(
        "select resource_id, response from idempotent_requests \
         where organization_id = $1 and caller = $2 and operation = $3 and request_id = $4",
    )
    .bind(key.organization_id)
    .bind(&key.caller)
    .bind(key.operation)
    .bind(&key.request_id)
    .fetch_optional(pool)
    .await
}

/// Records the first result; a concurrent twin of the same request loses here.
pub async fn insert(
    tx: &mut Transaction<'_>,
    key: &RequestKey,
    resource_id: Uuid,
    response: &serde_json::Value,
) -> Result<(), DomainError> {
    sqlx::query(
        "insert into idempotent_requests (organization_id, caller, operation, request_id, resource_id, response) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.organization_id)
    .bind(&key.caller)
    .bind(key.operation)
    .bind(&key.request_id)
    .bind(resource_id)
    .bind(response)
    .execute(&mut **tx)
    .await
    .map_err(|error| {
        map_constraint_violation(error, |constraint| {
            (constraint == "idempotent_requests_pkey").then(|| DomainError::AlreadyExists {
                reason: "REQUEST_IN_PROGRESS",
                field: "request_id".into(),
                message: "a request with this request_id is being processed; retry".into(),
            })
        })
    })?;
    Ok(())
}
