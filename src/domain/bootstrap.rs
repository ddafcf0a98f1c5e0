//! The zero-configuration first start: organization `default` and one
//! ADMIN API key, created once per database.

use uuid::Uuid;

use super::{
    api_key::{self, NewApiKey},
    call::Via,
    caller::{Actor, Scope, Scopes},
    name::DisplayName,
    organization::{self, Organization},
    token::Secret,
    unit_of_work::UnitOfWork,
    DomainError,
};
use crate::store;
use crate::store::Pool;

pub const DEFAULT_ORGANIZATION: &str = "default";
const MARKER: &str = "bootstrap";

/// Creates `default` and its bootstrap key on the very first start; `None`
/// on every later start, even if the key was revoked since.
pub async fn first_start(pool: &Pool) -> Result<Option<(Organization, Secret)>, DomainError> {
    let mut work =
        UnitOfWork::begin_as(pool, Uuid::now_v7(), Actor::System, None, Via::System).await?;
    if !store::meta::claim_marker(work.tx(), MARKER).await? {
        return Ok(None);
    }
    // Read under the marker, as before the unit existed: an operator may have
    // created `default` already, and then the key goes to that organization.
    let existing =
        store::organizations::find_by_name(&mut **work.tx(), DEFAULT_ORGANIZATION).await?;
    let organization = match existing {
        Some(existing) => {
            work.rebind_organization(existing.id);
            existing
        }
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
