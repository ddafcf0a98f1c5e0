//! The one mapping from domain errors to gRPC statuses.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::DomainError;

/// `ErrorInfo.domain` of every error Roster returns.
const ERROR_DOMAIN: &str = "roster";

impl From<DomainError> for Status {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::InvalidArgument(violations) => {
                let message = error_message(&violations);
                let mut details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|violation| FieldViolation {
                            reason: violation.code.into_owned(),
                            ..FieldViolation::new(violation.field, violation.description)
                        })
                        .collect::<Vec<_>>(),
                );
                details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            DomainError::NotFound(message) => with_reason(Code::NotFound, message, "NOT_FOUND"),
            DomainError::NotFoundField { field, message } => {
                let mut details =
                    ErrorDetails::with_error_info("NOT_FOUND", ERROR_DOMAIN, HashMap::new());
                details.set_bad_request(vec![FieldViolation {
                    reason: "NOT_FOUND".to_owned(),
                    ..FieldViolation::new(field, message.clone())
                }]);
                Status::with_error_details(Code::NotFound, message, details)
            }
            DomainError::AlreadyExists {
                reason,
                field,
                message,
            } => {
                let mut details = ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::from([("field".to_owned(), field.clone())]),
                );
                details.set_bad_request(vec![FieldViolation {
                    reason: reason.to_owned(),
                    ..FieldViolation::new(field, message.clone())
                }]);
                Status::with_error_details(Code::AlreadyExists, message, details)
            }
            DomainError::FailedPrecondition { reason, message } => {
                with_reason(Code::FailedPrecondition, message, reason)
            }
            DomainError::PermissionDenied(message) => {
                with_reason(Code::PermissionDenied, message, "PERMISSION_DENIED")
            }
            DomainError::Unauthenticated(message) => {
                with_reason(Code::Unauthenticated, message, "UNAUTHENTICATED")
            }
            DomainError::ResourceExhausted(message) => {
                with_reason(Code::ResourceExhausted, message, "RESOURCE_EXHAUSTED")
            }
            DomainError::Throttled {
                retry_after,
                message,
            } => {
                let mut details =
                    ErrorDetails::with_error_info("THROTTLED", ERROR_DOMAIN, HashMap::new());
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            DomainError::Internal(cause) => {
                // The cause stays in the log (with the request id of the span); callers get an opaque answer.
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

fn with_reason(code: Code, message: String, reason: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
    )
}

fn error_message(violations: &[crate::domain::FieldViolation]) -> String {
    let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
    format!("invalid request: {}", listed.join("; "))
}
