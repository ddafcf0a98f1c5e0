//! The zero-configuration first start: organization `default` and one
//! ADMIN API key, created once per database.

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    api_key::{self, NewApiKey},
    caller::{Actor, Scope, Scopes},
    name::DisplayName,
    organization::{self, Organization},
    token::Secret,
    unit_of_work::UnitOfWork,
    DomainError,
};
use crate::store;

pub const DEFAULT_ORGANIZATION: &str = "default";
const MARKER: &str = "bootstrap";

/// Creates `default` and its bootstrap key on the very first start; `None`
/// on every later start, even if the key was revoked since.
pub async fn first_start(pool: &PgPool) -> Result<Option<(Organization, Secret)>, DomainError> {
    // Read before the unit because the unit is bound to its organization: an
    // operator creating `default` in between makes the insert fail on the
    // name, and the next start succeeds.
    let existing = organization::find_organization_by_name(pool, DEFAULT_ORGANIZATION).await?;
    let organization_id = existing
        .as_ref()
        .map_or_else(Uuid::now_v7, |found| found.id);
    let mut work = UnitOfWork::begin_as(pool, organization_id, Actor::System, None).await?;
    if !store::meta::claim_marker(work.tx(), MARKER).await? {
        return Ok(None);
    }
    let organization = match existing {
        Some(existing) => existing,
        None => {
            let name = organization::parse_name(DEFAULT_ORGANIZATION)?;
            organization::add_organization(&mut work, &name).await?
        }
    };
    let new_key = NewApiKey {
        name: DisplayName::parse("bootstrap", "name")
            .map_err(|v| DomainError::InvalidArgument(vec![v]))?,
        scopes: Scopes::new(vec![Scope::Admin]),
        expire_time: None,
        idempotency_key: None,
    };
    let (_, secret) = api_key::add_api_key(&mut work, &new_key, None).await?;
    work.commit().await?;
    Ok(Some((organization, secret)))
}
