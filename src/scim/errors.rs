//! SCIM error bodies (RFC 7644 §3.12), and the one mapping from domain
//! errors to them.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{MEDIA_TYPE, SCHEMA_ERROR};
use crate::domain::{DomainError, FieldViolation};

/// The `scimType` of a 400 or 409 (RFC 7644 Table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    TooMany,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
            Self::TooMany => "tooMany",
        }
    }
}

#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<ScimType>,
    pub detail: String,
    /// Seconds to wait before retrying (429, 503).
    retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(status: StatusCode, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 of this type.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, None, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, None, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, None, detail)
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The error body: also what /Bulk answers for a failed operation.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [SCHEMA_ERROR],
            "status": self.status.as_str(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type.as_str());
        }
        body
    }
}

impl From<DomainError> for ScimError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::InvalidArgument(violations) => {
                Self::bad(ScimType::InvalidValue, violations_detail(&violations))
            }
            DomainError::NotFound(message) => Self::not_found(message),
            DomainError::NotFoundField { field, message } => Self::bad(
                ScimType::InvalidValue,
                format!("{}: {message}", scim_attribute(&field)),
            ),
            DomainError::AlreadyExists { field, message, .. } => Self::new(
                StatusCode::CONFLICT,
                Some(ScimType::Uniqueness),
                format!("{}: {message}", scim_attribute(&field)),
            ),
            DomainError::FailedPrecondition { reason, message } => Self::new(
                StatusCode::BAD_REQUEST,
                Some(ScimType::InvalidValue),
                format!("{message} ({reason})"),
            ),
            DomainError::PermissionDenied(message) => Self::forbidden(message),
            DomainError::GroupNotCovered { message, .. } => Self::forbidden(message),
            DomainError::Unauthenticated(message) => Self::unauthorized(message),
            DomainError::ResourceExhausted(message) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, None, message).retry_after(1)
            }
            DomainError::Throttled {
                retry_after,
                message,
            } => Self::new(StatusCode::TOO_MANY_REQUESTS, None, message)
                .retry_after(retry_after.as_secs().max(1)),
            DomainError::OutOfRange { message, .. } => Self::bad(ScimType::InvalidValue, message),
            DomainError::Unavailable(_) => unavailable(),
            DomainError::Internal(cause) if crate::store::error::is_unavailable_cause(&cause) => {
                unavailable()
            }
            DomainError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "scim call failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
            }
        }
    }
}

fn unavailable() -> ScimError {
    ScimError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the service is briefly unavailable; try again in a moment",
    )
    .retry_after(1)
}

/// Every violation, each under its SCIM attribute: `name.givenName: must not be empty`.
fn violations_detail(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", scim_attribute(&v.field), v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The SCIM attribute of a domain field path (`user.first_name`).
pub fn scim_attribute(field: &str) -> String {
    let field = field.strip_prefix("user.").unwrap_or(field);
    let mapped = match field {
        "first_name" => "name.givenName",
        "last_name" => "name.familyName",
        "email" => "emails",
        "username" => "userName",
        "phone" => "phoneNumbers",
        "external_id" => "externalId",
        "attributes.employee_number" => "employeeNumber",
        other => other,
    };
    mapped.to_owned()
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
            self.body().to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"roster-scim\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_the_scim_attribute() {
        let error = ScimError::from(DomainError::InvalidArgument(vec![
            FieldViolation::new("user.first_name", "REQUIRED", "must not be empty"),
            FieldViolation::new("email", "INVALID_EMAIL", "is not an email"),
        ]));
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
        assert_eq!(
            error.detail,
            "name.givenName: must not be empty; emails: is not an email"
        );
    }

    #[test]
    fn a_taken_value_is_a_uniqueness_conflict() {
        let error = ScimError::from(DomainError::AlreadyExists {
            reason: "USERNAME_TAKEN",
            field: "user.username".into(),
            message: "Username already taken".into(),
        });
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert_eq!(error.scim_type, Some(ScimType::Uniqueness));
        assert_eq!(error.detail, "userName: Username already taken");
    }
}
