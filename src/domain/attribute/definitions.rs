//! The use cases on definitions: define (create or change), list, delete.
//! Each locks the organization's row the way a settings change does, so no
//! user write (which holds it shared) sees a definition half changed.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{AttributeDefinition, MAX_ATTRIBUTES};
use crate::domain::{audit::FieldChanges, call::Call, DomainError};
use crate::store::{self, Pool, Transaction};

/// A definition with its times.
#[derive(Debug, Clone)]
pub struct DefinedAttribute {
    pub definition: AttributeDefinition,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// What DefineUserAttribute did.
#[derive(Debug, Clone)]
pub struct Defined {
    pub attribute: DefinedAttribute,
    pub created: bool,
}

pub async fn list_user_attributes(
    pool: &Pool,
    organization_id: Uuid,
) -> Result<Vec<DefinedAttribute>, DomainError> {
    Ok(store::attributes::list(&mut *pool.acquire().await?, organization_id).await?)
}

/// Creates a definition, or changes one (its key stays). A change of type
/// or allowed values is refused while users hold values it would not
/// admit, with their count: the administrator changes or removes those
/// first. Making an attribute required asks nothing of existing users.
pub async fn define_user_attribute(
    call: &Call,
    definition: &AttributeDefinition,
) -> Result<Defined, DomainError> {
    let organization_id = call.organization_id();
    let mut work = call.begin().await?;
    let tx = work.tx();
    lock_organization(tx, organization_id).await?;
    let existing = store::attributes::list(&mut **tx, organization_id).await?;
    let before = existing
        .iter()
        .find(|d| d.definition.key == definition.key)
        .map(|d| d.definition.clone());
    match &before {
        None if existing.len() >= MAX_ATTRIBUTES => {
            return Err(DomainError::FailedPrecondition {
                reason: "TOO_MANY_ATTRIBUTES",
                message: format!(
                    "an organization defines at most {MAX_ATTRIBUTES} attributes; delete one first"
                ),
            });
        }
        Some(before) if before == definition => {
            let attribute = existing.into_iter().find(|d| d.definition == *definition);
            return Ok(Defined {
                attribute: attribute.expect("found above"),
                created: false,
            });
        }
        Some(_) => ensure_values_fit(tx, organization_id, definition).await?,
        None => {}
    }
    let (attribute, created) = store::attributes::upsert(tx, organization_id, definition).await?;
    let key = definition.key.as_str();
    let record = if created {
        work.audit_record("user_attribute.create", "user_attribute", key)
            .with_details(definition_json(definition))
    } else {
        let before = before.expect("an existing definition is changed");
        work.audit_record("user_attribute.update", "user_attribute", key)
            .with_field_changes(definition_changes(&before, definition))
    };
    work.record(record);
    work.commit().await?;
    Ok(Defined { attribute, created })
}

/// Deletes a definition and every user's value of it (one audit record,
/// with how many users held one). Returns that count.
pub async fn delete_user_attribute(call: &Call, key: &str) -> Result<u64, DomainError> {
    let organization_id = call.organization_id();
    let mut work = call.begin().await?;
    let tx = work.tx();
    lock_organization(tx, organization_id).await?;
    if !store::attributes::delete(tx, organization_id, key).await? {
        return Err(DomainError::NotFound(format!(
            "user attribute {} not found",
            crate::domain::echo(key)
        )));
    }
    let removed = store::attributes::remove_values(tx, organization_id, key).await?;
    work.record(
        work.audit_record("user_attribute.delete", "user_attribute", key)
            .with_details(json!({ "key": key, "removed_user_values": removed })),
    );
    work.commit().await?;
    Ok(removed)
}

async fn lock_organization(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
) -> Result<(), DomainError> {
    store::organizations::lock(tx, organization_id)
        .await?
        .ok_or_else(|| DomainError::not_found("organization", organization_id))?;
    Ok(())
}

/// Users' values of the attribute must all fit the changed definition.
async fn ensure_values_fit(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    definition: &AttributeDefinition,
) -> Result<(), DomainError> {
    let key = definition.key.as_str();
    let values = store::attributes::values_of(tx, organization_id, key).await?;
    let misfits = values.iter().filter(|v| !definition.admits(v)).count();
    if misfits == 0 {
        return Ok(());
    }
    Err(DomainError::FailedPrecondition {
        reason: "ATTRIBUTE_VALUES_DO_NOT_FIT",
        message: format!(
            "{misfits} user(s) hold a value of `{key}` the new type or allowed values would refuse; \
             change or remove those values first (ListUsers filters by attribute)"
        ),
    })
}

fn definition_json(definition: &AttributeDefinition) -> serde_json::Value {
    json!({
        "key": definition.key.as_str(),
        "type": definition.value_type.as_str(),
        "allowed_values": definition.allowed_values_json(),
        "required": definition.required,
        "description": definition.description,
    })
}

fn definition_changes(before: &AttributeDefinition, after: &AttributeDefinition) -> FieldChanges {
    FieldChanges::between([
        (
            "type",
            json!(before.value_type.as_str()),
            json!(after.value_type.as_str()),
        ),
        (
            "allowed_values",
            before.allowed_values_json(),
            after.allowed_values_json(),
        ),
        ("required", json!(before.required), json!(after.required)),
        (
            "description",
            json!(before.description),
            json!(after.description),
        ),
    ])
}
