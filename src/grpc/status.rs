//! The one mapping from domain errors to gRPC statuses.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::DomainError;

/// `ErrorInfo.domain` of every error Roster returns.
const ERROR_DOMAIN: &str = "roster";

// Bounds of what one status carries, so that its message and details stay
// well under the 16 KB trailer limit of C-core and Java clients (about 11 KB
// at most once base64-encoded) whatever the domain put in them. A
// description fits Roster's own longest hints, not a repeated input.
const MAX_MESSAGE_BYTES: usize = 1024;
const MAX_VIOLATIONS: usize = 16;
const MAX_FIELD_BYTES: usize = 128;
const MAX_DESCRIPTION_BYTES: usize = 320;

impl From<DomainError> for Status {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::InvalidArgument(violations) => invalid_argument(violations),
            DomainError::NotFound(message) => with_reason(Code::NotFound, message, "NOT_FOUND"),
            DomainError::NotFoundField { field, message } => {
                let mut details =
                    ErrorDetails::with_error_info("NOT_FOUND", ERROR_DOMAIN, HashMap::new());
                details.set_bad_request(vec![FieldViolation {
                    reason: "NOT_FOUND".to_owned(),
                    ..field_violation(field, message.clone())
                }]);
                with_details(Code::NotFound, message, details)
            }
            DomainError::AlreadyExists {
                reason,
                field,
                message,
            } => already_exists(reason, field, message),
            DomainError::FailedPrecondition { reason, message } => {
                with_reason(Code::FailedPrecondition, message, reason)
            }
            DomainError::PermissionDenied(message) => {
                with_reason(Code::PermissionDenied, message, "PERMISSION_DENIED")
            }
            DomainError::GroupNotCovered {
                group_id,
                group_name,
                message,
            } => {
                let metadata = HashMap::from([
                    ("group_id".to_owned(), group_id.to_string()),
                    (
                        "group_name".to_owned(),
                        bounded(group_name, MAX_FIELD_BYTES),
                    ),
                ]);
                let details =
                    ErrorDetails::with_error_info("GROUP_NOT_COVERED", ERROR_DOMAIN, metadata);
                with_details(Code::PermissionDenied, message, details)
            }
            DomainError::Unauthenticated(message) => {
                with_reason(Code::Unauthenticated, message, "UNAUTHENTICATED")
            }
            DomainError::ResourceExhausted(message) => {
                with_reason(Code::ResourceExhausted, message, "RESOURCE_EXHAUSTED")
            }
            DomainError::OutOfRange { reason, message } => {
                with_reason(Code::OutOfRange, message, reason)
            }
            DomainError::Throttled {
                retry_after,
                message,
            } => {
                let mut details =
                    ErrorDetails::with_error_info("THROTTLED", ERROR_DOMAIN, HashMap::new());
                details.set_retry_info(Some(retry_after));
                with_details(Code::ResourceExhausted, message, details)
            }
            DomainError::Unavailable(cause) => unavailable(&cause),
            DomainError::Internal(cause) if crate::store::error::is_unavailable_cause(&cause) => {
                unavailable(&cause)
            }
            DomainError::Internal(cause) => {
                // The cause stays in the log (with the request id of the span); callers get an opaque answer.
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// Every violation (at most MAX_VIOLATIONS) as a BadRequest.
fn invalid_argument(violations: Vec<crate::domain::FieldViolation>) -> Status {
    let message = error_message(&violations);
    let mut details = ErrorDetails::with_bad_request(
        violations
            .into_iter()
            .take(MAX_VIOLATIONS)
            .map(|violation| FieldViolation {
                reason: violation.code.into_owned(),
                ..field_violation(violation.field, violation.description)
            })
            .collect::<Vec<_>>(),
    );
    details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new());
    with_details(Code::InvalidArgument, message, details)
}

/// The field that collided, in ErrorInfo and in a BadRequest.
fn already_exists(reason: &'static str, field: String, message: String) -> Status {
    let field = bounded(field, MAX_FIELD_BYTES);
    let mut details = ErrorDetails::with_error_info(
        reason,
        ERROR_DOMAIN,
        HashMap::from([("field".to_owned(), field.clone())]),
    );
    details.set_bad_request(vec![FieldViolation {
        reason: reason.to_owned(),
        ..field_violation(field, message.clone())
    }]);
    with_details(Code::AlreadyExists, message, details)
}

/// How long a caller is told to wait before it retries a call the database's
/// absence refused: about how often the server looks whether it is back.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// UNAVAILABLE with a retry hint: the database cannot be reached now. The
/// cause goes to the log at debug level: an outage is reported once, by the
/// database watch, not once per call.
fn unavailable(cause: &anyhow::Error) -> Status {
    tracing::debug!(error = format!("{cause:#}"), "database unavailable");
    let mut details =
        ErrorDetails::with_error_info("DATABASE_UNAVAILABLE", ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(UNAVAILABLE_RETRY_AFTER));
    with_details(
        Code::Unavailable,
        "the database is unavailable; retry in a moment".to_owned(),
        details,
    )
}

fn with_reason(code: Code, message: String, reason: &str) -> Status {
    with_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
    )
}

/// Every status leaves through here: its message is bounded.
fn with_details(code: Code, message: String, details: ErrorDetails) -> Status {
    Status::with_error_details(code, bounded(message, MAX_MESSAGE_BYTES), details)
}

fn field_violation(field: String, description: String) -> FieldViolation {
    FieldViolation::new(
        bounded(field, MAX_FIELD_BYTES),
        bounded(description, MAX_DESCRIPTION_BYTES),
    )
}

fn error_message(violations: &[crate::domain::FieldViolation]) -> String {
    let mut listed: Vec<String> = violations
        .iter()
        .take(MAX_VIOLATIONS)
        .map(|violation| {
            format!(
                "{}: {}",
                bounded(violation.field.clone(), MAX_FIELD_BYTES),
                bounded(violation.description.clone(), MAX_DESCRIPTION_BYTES)
            )
        })
        .collect();
    if violations.len() > MAX_VIOLATIONS {
        listed.push(format!("and {} more", violations.len() - MAX_VIOLATIONS));
    }
    format!("invalid request: {}", listed.join("; "))
}

/// `text` cut to at most `max_bytes` (on a character boundary), `…` marking the cut.
fn bounded(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("short".into(), 10), "short");
        let cut = bounded("é".repeat(100), 11);
        assert!(cut.len() <= 11, "{cut}");
        assert!(cut.ends_with('…'));
    }
}
