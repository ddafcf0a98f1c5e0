//! Profiles: what a group grants in one product.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{create_once, created, violations_of, Description};
/// Newest first; an empty `product` lists every product. A read with no
/// rule of its own: the store's query.
pub use crate::store::profiles::list as list_profiles;
use crate::{
    domain::{
        call::Call, caller::Scope, name::DisplayName, request::IdempotencyKey,
        unit_of_work::UnitOfWork, DomainError,
    },
    store::{self, Pool},
};

#[derive(Debug, Clone)]
pub struct Profile {
    pub id: Uuid,
    pub product: String,
    pub name: String,
    pub description: String,
    /// Set on the two built-in User Management profiles.
    pub built_in: Option<Scope>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileValues {
    pub product: DisplayName,
    pub name: DisplayName,
    pub description: Description,
}

impl ProfileValues {
    /// Every violation at once, under `profile.`.
    pub fn parse(product: &str, name: &str, description: &str) -> Result<Self, DomainError> {
        let product = DisplayName::parse(product, "profile.product").map_err(|v| vec![v]);
        let name = DisplayName::parse(name, "profile.name").map_err(|v| vec![v]);
        let description =
            Description::parse(description, "profile.description").map_err(|v| vec![v]);
        match (product, name, description) {
            (Ok(product), Ok(name), Ok(description)) => Ok(Self {
                product,
                name,
                description,
            }),
            (product, name, description) => Err(violations_of([
                product.err(),
                name.err(),
                description.err(),
            ])),
        }
    }
}

/// An update: `None` for a field not in the mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub product: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
}

impl ProfileChanges {
    /// The current profile with the masked fields replaced, parsed as a whole.
    pub fn merged_onto(&self, current: &Profile) -> Result<ProfileValues, DomainError> {
        ProfileValues::parse(
            self.product.as_deref().unwrap_or(&current.product),
            self.name.as_deref().unwrap_or(&current.name),
            self.description.as_deref().unwrap_or(&current.description),
        )
    }
}

pub async fn create_profile(
    call: &Call,
    idempotency_key: Option<IdempotencyKey>,
    values: &ProfileValues,
) -> Result<Profile, DomainError> {
    create_once(call, idempotency_key, async |work: &mut UnitOfWork| {
        store::profiles::insert(work.tx(), call.organization_id(), values).await
    })
    .await
}

fn profile_details(profile: &Profile) -> serde_json::Value {
    json!({ "product": profile.product, "name": profile.name })
}

created!(
    Profile,
    "CreateProfile",
    "profile.create",
    "profile",
    profile_details,
    get_profile
);

pub async fn get_profile(
    pool: &Pool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Profile, DomainError> {
    store::profiles::find(&mut *pool.acquire().await?, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("profile", id))
}

/// The built-in User Management profiles stay as they are.
fn ensure_changeable(profile: &Profile) -> Result<(), DomainError> {
    if profile.built_in.is_some() {
        return Err(DomainError::FailedPrecondition {
            reason: "BUILT_IN_PROFILE",
            message: "the built-in User Management profiles cannot be changed or deleted".into(),
        });
    }
    Ok(())
}

async fn find_changeable(work: &mut UnitOfWork, id: Uuid) -> Result<Profile, DomainError> {
    let organization_id = work.organization_id();
    let profile = store::profiles::find(&mut **work.tx(), organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("profile", id))?;
    ensure_changeable(&profile)?;
    Ok(profile)
}

pub async fn update_profile(
    call: &Call,
    id: Uuid,
    changes: &ProfileChanges,
) -> Result<Profile, DomainError> {
    let mut work = call.begin().await?;
    let current = find_changeable(&mut work, id).await?;
    let values = changes.merged_onto(&current)?;
    let profile = store::profiles::update(work.tx(), call.organization_id(), id, &values).await?;
    work.record(
        work.audit_record("profile.update", "profile", id).with_details(json!({
            "old": { "product": current.product, "name": current.name, "description": current.description },
            "new": { "product": profile.product, "name": profile.name, "description": profile.description },
        })),
    );
    work.commit().await?;
    Ok(profile)
}

pub async fn delete_profile(call: &Call, id: Uuid) -> Result<(), DomainError> {
    let mut work = call.begin().await?;
    let current = find_changeable(&mut work, id).await?;
    store::profiles::delete(work.tx(), call.organization_id(), id).await?;
    work.record(
        work.audit_record("profile.delete", "profile", id)
            .with_details(json!({ "product": current.product, "name": current.name })),
    );
    work.commit().await?;
    Ok(())
}
