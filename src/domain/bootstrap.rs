//! The zero-configuration first start: organization `default` and one
//! ADMIN API key, created once per database.

use sqlx::PgPool;

use super::{
    api_key::{self, NewApiKey},
    caller::{Actor, Scope, Scopes},
    name::DisplayName,
    organization::{self, Organization},
    token::Secret,
    DomainError,
};
use crate::store;

pub const DEFAULT_ORGANIZATION: &str = "default";
const MARKER: &str = "bootstrap";

/// Creates `default` and its bootstrap key on the very first start; `None`
/// on every later start, even if the key was revoked since.
pub async fn first_start(pool: &PgPool) -> Result<Option<(Organization, Secret)>, DomainError> {
    let mut tx = pool.begin().await?;
    if !store::meta::claim_marker(&mut tx, MARKER).await? {
        return Ok(None);
    }
    let organization = match store::organizations::find_by_name(&mut *tx, DEFAULT_ORGANIZATION)
        .await?
    {
        Some(existing) => existing,
        None => {
            organization::insert_organization(&mut tx, DEFAULT_ORGANIZATION, Actor::System).await?
        }
    };
    let new_key = NewApiKey {
        name: DisplayName::parse("bootstrap", "name")
            .map_err(|v| DomainError::InvalidArgument(vec![v]))?,
        scopes: Scopes::new(vec![Scope::Admin]),
        expire_time: None,
        request_id: None,
    };
    let (_, secret) =
        api_key::insert_api_key(&mut tx, organization.id, Actor::System, "", &new_key).await?;
    tx.commit().await?;
    Ok(Some((organization, secret)))
}
