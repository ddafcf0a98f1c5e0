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

/// What a list of matching users is sorted by. Each is an index of the
/// store's or a cheap sort of one organization's users; ties (a shared
/// email, a time) fall back to the id so pages do not overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    /// Oldest first: the order of a list that names none.
    #[default]
    Created,
    LastModified,
    /// Ignoring case.
    Username,
    /// Ignoring case.
    Email,
    /// As stored (case-exact); users without one come last.
    ExternalId,
    /// Ignoring case.
    FirstName,
    /// Ignoring case and accents, as ListUsers' `last_name` order.
    LastName,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserOrdering {
    pub by: UserSort,
    pub descending: bool,
}

/// One page of the users matching, in the order asked, and how many match in all.
#[derive(Debug, Clone)]
pub struct MatchingUsers {
    pub users: Vec<User>,
    pub total: i64,
}

/// The users matching `condition` in `ordering`, skipping `offset` of
/// them, at most `limit`.
pub async fn users_matching(
    pool: &Pool,
    organization_id: Uuid,
    condition: &UserCondition,
    ordering: UserOrdering,
    offset: i64,
    limit: i64,
) -> Result<MatchingUsers, DomainError> {
    let (users, total) = read!(pool, |connection| {
        store::users::matching(
            connection,
            organization_id,
            condition,
            ordering,
            offset,
            limit,
        )
        .await
    })?;
    Ok(MatchingUsers { users, total })
}
