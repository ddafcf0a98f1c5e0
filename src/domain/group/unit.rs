//! Units: the branches, stores and partners a group's scope names.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{create_once, created, violations_of};
/// Newest first. A read with no rule of its own: the store's query.
pub use crate::store::units::list as list_units;
use crate::{
    domain::{
        call::Call, name::DisplayName, request::IdempotencyKey, text_state::text_states,
        unit_of_work::UnitOfWork, DomainError, FieldViolation,
    },
    store::{self, Pool},
};

text_states! {
    /// What a unit is (`units.kind`).
    UnitKind {
        Branch => "BRANCH",
        Store => "STORE",
        Partner => "PARTNER",
        Other => "OTHER",
    }
}

#[derive(Debug, Clone)]
pub struct Unit {
    pub id: Uuid,
    pub name: String,
    pub kind: UnitKind,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A unit as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitValues {
    pub name: DisplayName,
    pub kind: UnitKind,
}

impl UnitValues {
    /// `kind` is `None` for a kind the API does not know. Every violation at once.
    pub fn parse(name: &str, kind: Option<UnitKind>) -> Result<Self, DomainError> {
        let name = DisplayName::parse(name, "unit.name").map_err(|v| vec![v]);
        let kind = kind.ok_or_else(|| {
            vec![FieldViolation::new(
                "unit.kind",
                "UNKNOWN_VALUE",
                "must be UNIT_KIND_BRANCH, UNIT_KIND_STORE, UNIT_KIND_PARTNER or UNIT_KIND_OTHER \
                 (unset means UNIT_KIND_OTHER)",
            )]
        });
        match (name, kind) {
            (Ok(name), Ok(kind)) => Ok(Self { name, kind }),
            (name, kind) => Err(violations_of([name.err(), kind.err()])),
        }
    }
}

/// An update: `None` for a field not in the mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitChanges {
    pub name: Option<String>,
    /// `Some(None)`: the mask names the kind but its number is unknown.
    pub kind: Option<Option<UnitKind>>,
}

impl UnitChanges {
    /// The current unit with the masked fields replaced, parsed as a whole.
    pub fn merged_onto(&self, current: &Unit) -> Result<UnitValues, DomainError> {
        UnitValues::parse(
            self.name.as_deref().unwrap_or(&current.name),
            self.kind.unwrap_or(Some(current.kind)),
        )
    }
}

fn unit_details(unit: &Unit) -> serde_json::Value {
    json!({ "name": unit.name, "kind": unit.kind.as_str() })
}

pub async fn create_unit(
    call: &Call,
    idempotency_key: Option<IdempotencyKey>,
    values: &UnitValues,
) -> Result<Unit, DomainError> {
    create_once(call, idempotency_key, async |work: &mut UnitOfWork| {
        store::units::insert(work.tx(), call.organization_id(), values).await
    })
    .await
}

created!(
    Unit,
    "CreateUnit",
    "unit.create",
    "unit",
    unit_details,
    get_unit
);

pub async fn get_unit(pool: &Pool, organization_id: Uuid, id: Uuid) -> Result<Unit, DomainError> {
    store::units::find(&mut *pool.acquire().await?, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("unit", id))
}

/// Which units ListUnits shows: an empty `name_contains` and a `kind` of
/// `None` do not narrow the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFilter {
    pub name_contains: String,
    pub kind: Option<UnitKind>,
}

pub async fn update_unit(
    call: &Call,
    id: Uuid,
    changes: &UnitChanges,
) -> Result<Unit, DomainError> {
    let mut work = call.begin().await?;
    let current = store::units::find(&mut **work.tx(), call.organization_id(), id)
        .await?
        .ok_or_else(|| DomainError::not_found("unit", id))?;
    let values = changes.merged_onto(&current)?;
    let unit = store::units::update(work.tx(), call.organization_id(), id, &values).await?;
    work.record(
        work.audit_record("unit.update", "unit", id)
            .with_details(json!({
                "old": unit_details(&current),
                "new": unit_details(&unit),
            })),
    );
    work.commit().await?;
    Ok(unit)
}

pub async fn delete_unit(call: &Call, id: Uuid) -> Result<(), DomainError> {
    let mut work = call.begin().await?;
    if !store::units::delete(work.tx(), call.organization_id(), id).await? {
        return Err(DomainError::not_found("unit", id));
    }
    work.record(work.audit_record("unit.delete", "unit", id));
    work.commit().await?;
    Ok(())
}
