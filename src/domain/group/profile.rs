//! Profiles: what a group grants in one product.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{create_once, violations_of, CreateKind, Description};
use crate::{
    domain::{
        caller::{Caller, Scope},
        name::DisplayName,
        paging::{Page, PageRequest},
        request::{IdempotencyKey, RequestId},
        unit_of_work::UnitOfWork,
        DomainError,
    },
    store,
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
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    idempotency_key: Option<IdempotencyKey>,
    values: &ProfileValues,
) -> Result<Profile, DomainError> {
    let organization_id = caller.organization_id;
    let get = async |id| get_profile(pool, organization_id, id).await;
    let insert = async |work: &mut UnitOfWork| {
        store::profiles::insert(work.tx(), organization_id, values).await
    };
    let kind = CreateKind {
        operation: "CreateProfile",
        action: "profile.create",
        target: "profile",
    };
    let describe = |profile: &Profile| {
        (
            profile.id,
            json!({ "product": profile.product, "name": profile.name }),
        )
    };
    create_once(
        pool,
        caller,
        request_id,
        idempotency_key,
        kind,
        get,
        insert,
        describe,
    )
    .await
}

pub async fn get_profile(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Profile, DomainError> {
    store::profiles::find(pool, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("profile", id))
}

/// Newest first; an empty `product` lists every product.
pub async fn list_profiles(
    pool: &PgPool,
    organization_id: Uuid,
    product: &str,
    page: &PageRequest,
) -> Result<Page<Profile>, DomainError> {
    store::profiles::list(pool, organization_id, product, page).await
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
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    id: Uuid,
    changes: &ProfileChanges,
) -> Result<Profile, DomainError> {
    let mut work = UnitOfWork::begin(pool, caller, request_id).await?;
    let current = find_changeable(&mut work, id).await?;
    let values = changes.merged_onto(&current)?;
    let profile = store::profiles::update(work.tx(), caller.organization_id, id, &values).await?;
    work.record(
        work.audit_record("profile.update", "profile", id).with_details(json!({
            "old": { "product": current.product, "name": current.name, "description": current.description },
            "new": { "product": profile.product, "name": profile.name, "description": profile.description },
        })),
    );
    work.commit().await?;
    Ok(profile)
}

pub async fn delete_profile(
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    id: Uuid,
) -> Result<(), DomainError> {
    let mut work = UnitOfWork::begin(pool, caller, request_id).await?;
    let current = find_changeable(&mut work, id).await?;
    store::profiles::delete(work.tx(), caller.organization_id, id).await?;
    work.record(
        work.audit_record("profile.delete", "profile", id)
            .with_details(json!({ "product": current.product, "name": current.name })),
    );
    work.commit().await?;
    Ok(())
}
