//! First results of create calls that carried a `request_id`.

use sqlx::PgPool;
use uuid::Uuid;

use super::{map_constraint_violation, Transaction};
use crate::domain::DomainError;

pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    operation: &str,
    request_id: &str,
) -> Result<Option<(Uuid, serde_json::Value)>, sqlx::Error> {
    sqlx::query_as(
        "select resource_id, response from idempotent_requests \
         where organization_id = $1 and operation = $2 and request_id = $3",
    )
    .bind(organization_id)
    .bind(operation)
    .bind(request_id)
    .fetch_optional(pool)
    .await
}

/// Records the first result; a concurrent twin of the same request loses here.
pub async fn insert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    operation: &str,
    request_id: &str,
    resource_id: Uuid,
    response: &serde_json::Value,
) -> Result<(), DomainError> {
    sqlx::query(
        "insert into idempotent_requests (organization_id, operation, request_id, resource_id, response) \
         values ($1, $2, $3, $4, $5)",
    )
    .bind(organization_id)
    .bind(operation)
    .bind(request_id)
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
