//! A condition on users built from a caller's expression (a SCIM filter):
//! a tree of comparisons on the user's own values, which the store turns
//! into SQL with every value bound.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::User;
use crate::{
    domain::DomainError,
    store::{self, connections::read, Pool},
};

#[derive(Debug, Clone, PartialEq)]
pub enum UserCondition {
    /// Every user (`true`) or none (`false`).
    Always(bool),
    And(Box<UserCondition>, Box<UserCondition>),
    Or(Box<UserCondition>, Box<UserCondition>),
    Not(Box<UserCondition>),
    Text {
        field: TextField,
        op: TextOp,
        value: String,
    },
    /// The value is set (and not empty).
    Present(TextField),
    Time {
        field: TimeField,
        op: TimeOp,
        value: DateTime<Utc>,
    },
    /// Whether the admin state is ACTIVE (no legacy status).
    Active(bool),
    Id(Uuid),
}

/// A user's text values; all but the external id compare ignoring case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Username,
    Email,
    ExternalId,
    FirstName,
    LastName,
    Phone,
}

impl TextField {
    pub fn case_exact(self) -> bool {
        self == Self::ExternalId
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    Created,
    LastModified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOp {
    Equals,
    NotEquals,
    After,
    AtOrAfter,
    Before,
    AtOrBefore,
}

/// One page of the users matching, oldest first, and how many match in all.
#[derive(Debug, Clone)]
pub struct MatchingUsers {
    pub users: Vec<User>,
    pub total: i64,
}

/// The users matching `condition`, skipping `offset` of them (oldest
/// first), at most `limit`.
pub async fn users_matching(
    pool: &Pool,
    organization_id: Uuid,
    condition: &UserCondition,
    offset: i64,
    limit: i64,
) -> Result<MatchingUsers, DomainError> {
    let (users, total) = read!(pool, |connection| {
        store::users::matching(connection, organization_id, condition, offset, limit).await
    })?;
    Ok(MatchingUsers { users, total })
}
