//! A user a request names by whichever key a person has at hand (the id,
//! the email, the username or the external id), found in the caller's
//! organization. Names are for people; the id found is what use cases keep.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::LookupKey;
use crate::{
    domain::{echo, DomainError, FieldViolation},
    store,
};

/// One key of a user; email and username match ignoring case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKey {
    Id(Uuid),
    Email(String),
    Username(String),
    ExternalId(String),
}

impl UserKey {
    /// The key's name in a request (`email` in `mirror_user.email`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Id(_) => "id",
            Self::Email(_) => "email",
            Self::Username(_) => "username",
            Self::ExternalId(_) => "external_id",
        }
    }

    /// A key given as `kind` (`id`, `email`…) with its raw value, under
    /// `field`; a value is trimmed and must not be empty, an id must be a UUID.
    pub fn parse(kind: &str, raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(FieldViolation::new(field, "REQUIRED", "must not be empty"));
        }
        Ok(match kind {
            "id" => Self::Id(
                Uuid::parse_str(value)
                    .map_err(|_| FieldViolation::new(field, "INVALID_ID", "must be a UUID"))?,
            ),
            "email" => Self::Email(value.to_owned()),
            "username" => Self::Username(value.to_owned()),
            _ => Self::ExternalId(value.to_owned()),
        })
    }

    fn described(&self) -> String {
        match self {
            Self::Id(id) => format!("user {id}"),
            Self::Email(value) | Self::Username(value) | Self::ExternalId(value) => {
                format!("no user with {} {}", self.kind(), echo(value))
            }
        }
    }
}

/// A user a request names, and the field that named it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUser {
    pub key: UserKey,
    pub field: String,
}

impl GivenUser {
    pub fn by_id(id: Uuid, field: impl Into<String>) -> Self {
        Self {
            key: UserKey::Id(id),
            field: field.into(),
        }
    }

    /// The user's id. Nobody found is NOT_FOUND naming the field; an email
    /// several users share (where duplicates are allowed) is refused, asking
    /// for another key.
    pub async fn find(
        &self,
        connection: &mut PgConnection,
        organization_id: Uuid,
    ) -> Result<Uuid, DomainError> {
        let found: Vec<Uuid> = match &self.key {
            UserKey::Id(id) => store::users::find(&mut *connection, organization_id, *id)
                .await?
                .map(|user| user.id)
                .into_iter()
                .collect(),
            UserKey::Email(value) => {
                lookup(connection, organization_id, LookupKey::Email(value)).await?
            }
            UserKey::Username(value) => {
                lookup(connection, organization_id, LookupKey::Username(value)).await?
            }
            UserKey::ExternalId(value) => {
                lookup(connection, organization_id, LookupKey::ExternalId(value)).await?
            }
        };
        match found.as_slice() {
            [id] => Ok(*id),
            [] => Err(DomainError::NotFoundField {
                field: self.field.clone(),
                message: match &self.key {
                    UserKey::Id(_) => format!("{} not found", self.key.described()),
                    _ => self.key.described(),
                },
            }),
            several => Err(DomainError::invalid(
                self.field.clone(),
                "AMBIGUOUS_USER",
                format!(
                    "{} users share this {}: name the user by id, username or external_id",
                    several.len(),
                    self.key.kind()
                ),
            )),
        }
    }
}

async fn lookup(
    connection: &mut PgConnection,
    organization_id: Uuid,
    key: LookupKey<'_>,
) -> Result<Vec<Uuid>, DomainError> {
    let users = store::users::lookup(connection, organization_id, key).await?;
    Ok(users.into_iter().map(|user| user.id).collect())
}
