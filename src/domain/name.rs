//! Short display names (organizations, API keys): trimmed, 1–100 characters,
//! no control characters.

use super::FieldViolation;

pub const MAX_NAME_CHARS: usize = 100;

/// A trimmed, non-empty name of at most 100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldViolation::new(field, "REQUIRED", "must not be empty"));
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(FieldViolation::new(
                field,
                "TOO_LONG",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldViolation::new(
                field,
                "CONTROL_CHARACTER",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_any_script() {
        assert_eq!(
            DisplayName::parse("  São Paulo 김 ", "name")
                .unwrap()
                .as_str(),
            "São Paulo 김"
        );
    }

    #[test]
    fn refuses_empty_long_and_control_characters() {
        assert_eq!(
            DisplayName::parse("   ", "name").unwrap_err().code,
            "REQUIRED"
        );
        assert_eq!(
            DisplayName::parse(&"x".repeat(101), "name")
                .unwrap_err()
                .code,
            "TOO_LONG"
        );
        assert_eq!(
            DisplayName::parse("a\u{7}b", "key.name").unwrap_err().field,
            "key.name"
        );
    }
}
