//! The one error type of the domain; `grpc::status` maps it to `tonic::Status`.

use std::{borrow::Cow, fmt};

/// One invalid field of a request, with the request field path (`user.email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    /// Stable machine-readable code, e.g. `TOO_LONG`.
    pub code: Cow<'static, str>,
    pub description: String,
}

impl FieldViolation {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<Cow<'static, str>>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            description: description.into(),
        }
    }
}

/// How many characters of a caller's input an error may repeat.
pub const ECHO_CHARS: usize = 64;

/// A caller's input quoted for an error, cut to a short prefix and with
/// control and invisible characters escaped: errors never carry the input
/// itself (a 20 KB value once made a status exceed clients' 16 KB limit).
pub fn echo(input: &str) -> String {
    let mut chars = input.chars();
    let prefix: String = chars.by_ref().take(ECHO_CHARS).collect();
    let more = if chars.next().is_some() { "…" } else { "" };
    format!("`{}{more}`", prefix.escape_debug())
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Every violation found, reported together.
    #[error("invalid request: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    /// A referenced id in a request field that does not exist (in this organization).
    #[error("{message}")]
    NotFoundField { field: String, message: String },
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        field: String,
        message: String,
    },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    PermissionDenied(String),
    /// A group given or removed that the caller does not cover: refused
    /// naming the group, for people (the message) and programs (the details).
    #[error("{message}")]
    GroupNotCovered {
        group_id: uuid::Uuid,
        group_name: String,
        message: String,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A position outside what is kept (a change-stream cursor past the
    /// retention window): the caller must start over another way.
    #[error("{message}")]
    OutOfRange {
        reason: &'static str,
        message: String,
    },
    /// Held back by throttling; the caller may retry after the delay.
    #[error("{message}")]
    Throttled {
        retry_after: std::time::Duration,
        message: String,
    },
    /// The database cannot be reached now (`store::error::is_unavailable`);
    /// the same call may succeed in a moment. The cause is for the log.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl DomainError {
    pub fn invalid(
        field: impl Into<String>,
        code: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, code, description)])
    }

    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} {id} not found"))
    }

    /// `Ok(())` when nothing was found wrong.
    pub fn check(violations: Vec<FieldViolation>) -> Result<(), DomainError> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::InvalidArgument(violations))
        }
    }
}

impl From<sqlx::Error> for DomainError {
    fn from(error: sqlx::Error) -> Self {
        Self::of_database(&error)(error.into())
    }
}

/// The error of a statement several calls shared (`store::shared_reads`):
/// each call's error tells the same.
impl From<std::sync::Arc<sqlx::Error>> for DomainError {
    fn from(error: std::sync::Arc<sqlx::Error>) -> Self {
        match std::sync::Arc::try_unwrap(error) {
            Ok(error) => error.into(),
            Err(shared) => Self::of_database(&shared)(anyhow::Error::new(shared)),
        }
    }
}

impl DomainError {
    /// What a failed statement is to a caller: unavailable (retry later)
    /// or internal.
    fn of_database(error: &sqlx::Error) -> fn(anyhow::Error) -> Self {
        let kind = crate::store::error::classify(error);
        if kind == crate::store::error::DbErrorKind::Unavailable {
            Self::Unavailable
        } else {
            Self::Internal
        }
    }
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_repeats_a_short_escaped_prefix() {
        assert_eq!(echo("locale"), "`locale`");
        let long = echo(&"x".repeat(5000));
        assert_eq!(long.chars().count(), ECHO_CHARS + 3);
        assert!(long.ends_with("…`"));
        assert_eq!(echo("a\u{202E}b\n"), "`a\\u{202e}b\\n`");
    }
}
