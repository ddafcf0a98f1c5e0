//! What identifies a call: the request id that ties its log lines and audit
//! records together, and the idempotency key a create may carry.

use std::fmt;

use uuid::Uuid;

use super::FieldViolation;

/// Both ids are at most this many printable ASCII characters: they travel in
/// headers and logs, so nothing that could split a line or hide a character.
const MAX_ID_CHARS: usize = 128;

fn is_printable_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= MAX_ID_CHARS && raw.bytes().all(|b| b.is_ascii_graphic())
}

/// The correlation id of one call: the caller's `x-request-id` when it is a
/// printable id, else one generated for the call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The caller's header value, or a generated id when it is absent or unfit
    /// (a bad correlation id never fails a call).
    pub fn from_header(raw: Option<&str>) -> Self {
        raw.filter(|raw| is_printable_id(raw))
            .map(|raw| Self(raw.to_owned()))
            .unwrap_or_else(Self::generate)
    }

    /// Time-ordered, so generated ids sort as the calls came.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `request_id` field of a create: a retry with the same key by the same
/// caller returns the first result instead of creating twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// An empty value means the create is not idempotent.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, FieldViolation> {
        if raw.is_empty() {
            return Ok(None);
        }
        if !is_printable_id(raw) {
            return Err(FieldViolation::new(
                "request_id",
                "INVALID_VALUE",
                "must be at most 128 printable ASCII characters",
            ));
        }
        Ok(Some(Self(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_header_is_kept_only_when_it_is_a_printable_id() {
        assert_eq!(
            RequestId::from_header(Some("trace-42")).as_str(),
            "trace-42"
        );
        for unfit in ["", "with space", "tab\there", &"x".repeat(129), "ünï"] {
            let generated = RequestId::from_header(Some(unfit));
            assert_ne!(generated.as_str(), unfit);
            assert!(Uuid::parse_str(generated.as_str()).is_ok());
        }
        assert!(Uuid::parse_str(RequestId::from_header(None).as_str()).is_ok());
    }

    #[test]
    fn an_idempotency_key_is_optional_and_printable() {
        assert_eq!(IdempotencyKey::parse_optional("").unwrap(), None);
        assert_eq!(
            IdempotencyKey::parse_optional("k-1")
                .unwrap()
                .unwrap()
                .as_str(),
            "k-1"
        );
        assert_eq!(
            IdempotencyKey::parse_optional(&"x".repeat(128))
                .unwrap()
                .unwrap()
                .as_str()
                .len(),
            128
        );
        for bad in ["a b", "\u{0}", &"x".repeat(129)] {
            let violation = IdempotencyKey::parse_optional(bad).unwrap_err();
            assert_eq!(violation.field, "request_id");
            assert_eq!(violation.code, "INVALID_VALUE");
        }
    }
}
