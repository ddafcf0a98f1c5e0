//! Short display names (organizations, API keys, groups, units, profiles):
//! trimmed, 1–100 characters, no control characters, and nothing invisible
//! that could make a name show other text than it holds.

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

use super::FieldViolation;

/// The first character of `text` that would let it display as other text:
/// a format character (Unicode category Cf: bidirectional overrides,
/// embeddings, isolates and marks, zero-width spaces, soft hyphens, BOMs…)
/// or a line or paragraph separator. Zero-width joiners and non-joiners stay
/// allowed inside a word (between two letters or marks), where scripts such as
/// Persian and the Indic ones need them, and after a virama at a word's end
/// (Malayalam's older chillu spelling).
pub fn invisible_character(text: &str) -> Option<char> {
    let mut previous: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let refused = match c.general_category() {
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => true,
            GeneralCategory::Format if matches!(c, '\u{200C}' | '\u{200D}') => {
                let after_virama = previous
                    .is_some_and(|p| p.general_category() == GeneralCategory::NonspacingMark);
                let before_letter = chars.peek().copied().is_some_and(in_word);
                !(previous.is_some_and(in_word) && (before_letter || after_virama))
            }
            GeneralCategory::Format => true,
            _ => false,
        };
        if refused {
            return Some(c);
        }
        previous = Some(c);
    }
    None
}

fn in_word(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Mark
    )
}

/// The violation of a name or description holding an invisible character.
pub fn invisible_violation(text: &str, field: &str) -> Option<FieldViolation> {
    invisible_character(text).map(|c| {
        FieldViolation::new(
            field,
            "INVISIBLE_CHARACTER",
            format!(
                "must not contain invisible or text-direction characters (found U+{:04X})",
                u32::from(c)
            ),
        )
    })
}

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
        if let Some(violation) = invisible_violation(trimmed, field) {
            return Err(violation);
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

    #[test]
    fn refuses_direction_overrides_separators_and_other_format_characters() {
        for spoof in [
            "Admin\u{202E}nimdA",
            "\u{2066}Cashier\u{2069}",
            "South\u{200E}",
            "\u{061C}West",
            "Line\u{2028}two",
            "Para\u{2029}two",
            "zero\u{200B}width",
            "soft\u{AD}hyphen",
            "\u{FEFF}bom",
            "joiner at the end\u{200D}",
            "\u{200C}non-joiner first",
            "between spaces \u{200D} no",
        ] {
            assert_eq!(
                DisplayName::parse(spoof, "group.name").unwrap_err().code,
                "INVISIBLE_CHARACTER",
                "{spoof:?}"
            );
        }
    }

    #[test]
    fn keeps_the_joiners_real_scripts_need_inside_a_word() {
        for name in [
            "\u{645}\u{6CC}\u{200C}\u{62E}\u{648}\u{627}\u{647}\u{645}", // Persian: می‌خواهم
            "\u{915}\u{94D}\u{200D}\u{937}",                             // Devanagari: क्‍ष
            "\u{D05}\u{D35}\u{D28}\u{D4D}\u{200D}",                      // Malayalam: അവന്‍
        ] {
            assert!(DisplayName::parse(name, "name").is_ok(), "{name:?}");
        }
    }

    #[test]
    fn refuses_right_to_left_isolates_and_marks() {
        for spoof in ["\u{2067}Cashier\u{2069}", "South\u{200F}"] {
            assert_eq!(
                DisplayName::parse(spoof, "unit.name").unwrap_err().code,
                "INVISIBLE_CHARACTER",
                "{spoof:?}"
            );
        }
    }
}
