//! First results of create calls that carried a `request_id`, per caller.

use uuid::Uuid;

use super::{map_constraint_violation, Pool, Transaction};
use crate::domain::{unit_of_work::IdempotentCreate, DomainError};

pub async fn find(
    pool: &Pool,
    create: &IdempotentCreate,
) -> Result<Option<(Uuid, serde_json::Value)>, sqlx::Error> {
    let found = sqlx::query!(
        "select resource_id, response from idempotent_requests \
         where organization_id = $1 and caller = $2 and operation = $3 and request_id = $4",
        create.organization_id,
        create.caller,
        create.operation,
        create.key.as_str(),
    )
    .fetch_optional(&mut *pool.acquire().await?)
    .await?;
    Ok(found.map(|row| (row.resource_id, row.response)))
}

/// Records the first result; a concurrent twin of the same request loses here.
pub async fn insert(
    tx: &mut Transaction<'_>,
    create: &IdempotentCreate,
    resource_id: Uuid,
    response: &serde_json::Value,
) -> Result<(), DomainError> {
    sqlx::query!(
        "insert into idempotent_requests (organization_id, caller, operation, request_id, resource_id, response) \
         values ($1, $2, $3, $4, $5, $6)",
        create.organization_id,
        create.caller,
        create.operation,
        create.key.as_str(),
        resource_id,
        response,
    )
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
