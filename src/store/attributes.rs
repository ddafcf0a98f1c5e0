//! Custom user attribute definitions, and the statements over every user's
//! value of one attribute (a changed definition's check, a deletion).

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Transaction;
use crate::domain::attribute::{AttributeDefinition, AttributeSchema, DefinedAttribute};

struct DefinitionRow {
    key: String,
    value_type: String,
    allowed_values: Json,
    required: bool,
    description: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl From<DefinitionRow> for DefinedAttribute {
    fn from(row: DefinitionRow) -> Self {
        DefinedAttribute {
            definition: AttributeDefinition::from_stored(
                row.key,
                &row.value_type,
                &row.allowed_values,
                row.required,
                row.description,
            ),
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

/// The organization's definitions, by key.
pub async fn list<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
) -> Result<Vec<DefinedAttribute>, sqlx::Error> {
    let rows = sqlx::query_as!(
        DefinitionRow,
        "select key, value_type, allowed_values, required, description, create_time, update_time \
         from user_attribute_definitions where organization_id = $1 order by key",
        organization_id,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// What every value of the organization's users is checked against.
pub async fn schema<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
) -> Result<AttributeSchema, sqlx::Error> {
    let defined = list(executor, organization_id).await?;
    Ok(AttributeSchema::new(
        defined.into_iter().map(|d| d.definition).collect(),
    ))
}

/// Creates or replaces a definition; `true` when it is new.
pub async fn upsert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    definition: &AttributeDefinition,
) -> Result<(DefinedAttribute, bool), sqlx::Error> {
    let row = sqlx::query!(
        "insert into user_attribute_definitions \
         (organization_id, key, value_type, allowed_values, required, description) \
         values ($1, $2, $3, $4, $5, $6) \
         on conflict (organization_id, key) do update set value_type = excluded.value_type, \
         allowed_values = excluded.allowed_values, required = excluded.required, \
         description = excluded.description \
         returning key, value_type, allowed_values, required, description, create_time, update_time, \
         (xmax = 0) as \"created!\"",
        organization_id,
        definition.key.as_str(),
        definition.value_type.as_str(),
        definition.allowed_values_json(),
        definition.required,
        definition.description,
    )
    .fetch_one(&mut **tx)
    .await?;
    let defined = DefinitionRow {
        key: row.key,
        value_type: row.value_type,
        allowed_values: row.allowed_values,
        required: row.required,
        description: row.description,
        create_time: row.create_time,
        update_time: row.update_time,
    };
    Ok((defined.into(), row.created))
}

pub async fn delete(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "delete from user_attribute_definitions where organization_id = $1 and key = $2",
        organization_id,
        key,
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Every user's value of `key` (users without one are left out).
pub async fn values_of(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    key: &str,
) -> Result<Vec<Json>, sqlx::Error> {
    sqlx::query_scalar!(
        "select attributes -> $2 as \"value!\" from users \
         where organization_id = $1 and attributes ? $2",
        organization_id,
        key,
    )
    .fetch_all(&mut **tx)
    .await
}

/// Removes every user's value of `key`; how many users held one.
pub async fn remove_values(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    key: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "update users set attributes = attributes - $2 \
         where organization_id = $1 and attributes ? $2",
        organization_id,
        key,
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
