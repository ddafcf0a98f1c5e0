//! Custom user attributes (issue 19 point 6): the definitions an
//! organization keeps (key, type, allowed values, required) and the typed
//! values its users carry. One parser takes a value however it came in (a
//! JSON value over gRPC, a CSV cell in the import) and checks it against
//! its definition: CreateUser, UpdateUser, ListUsers' filter and the import
//! all go through `AttributeSchema`.

mod definitions;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{Map, Value as Json};

use super::{echo, name::invisible_violation, FieldViolation};

pub use definitions::{
    define_user_attribute, delete_user_attribute, list_user_attributes, Defined, DefinedAttribute,
};

/// How many attributes an organization may define.
pub const MAX_ATTRIBUTES: usize = 100;
/// How many allowed values a definition may list.
pub const MAX_ALLOWED_VALUES: usize = 200;
const MAX_KEY: usize = 40;
const MAX_STRING_VALUE: usize = 500;
const MAX_DESCRIPTION: usize = 500;
const DATE_FORMAT: &str = "%Y-%m-%d";

/// A stable identifier: `[a-z][a-z0-9_]{0,39}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttributeKey(String);

impl AttributeKey {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        if raw.is_empty() {
            return Err(FieldViolation::new(field, "REQUIRED", "must not be empty"));
        }
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || raw.len() > MAX_KEY {
            return Err(FieldViolation::new(
                field,
                "INVALID_KEY",
                format!(
                    "{} is not a key: a lowercase letter, then up to {} lowercase letters, digits or `_`",
                    echo(raw),
                    MAX_KEY - 1
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A key read back from the store, valid when written.
    fn from_stored(key: String) -> Self {
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "STRING",
            Self::Number => "NUMBER",
            Self::Boolean => "BOOLEAN",
            Self::Date => "DATE",
        }
    }

    pub(crate) fn from_stored(raw: &str) -> Self {
        match raw {
            "NUMBER" => Self::Number,
            "BOOLEAN" => Self::Boolean,
            "DATE" => Self::Date,
            _ => Self::String,
        }
    }

    /// What a value of this type must be, for a refusal.
    fn rule(self) -> &'static str {
        match self {
            Self::String => "must be a string",
            Self::Number => "must be a number",
            Self::Boolean => "must be a boolean (true or false)",
            Self::Date => "must be a date, YYYY-MM-DD",
        }
    }
}

/// A value as it came in: JSON (gRPC) or text (a CSV cell, `true`, `42`,
/// `2026-03-01`).
#[derive(Debug, Clone, Copy)]
pub enum RawValue<'a> {
    Json(&'a Json),
    Text(&'a str),
}

/// A value of one of the four types, valid for its type.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    String(String),
    Number(f64),
    Boolean(bool),
    Date(NaiveDate),
}

impl AttributeValue {
    /// A value of `value_type`, refused with the type's rule otherwise.
    fn parse(
        value_type: AttributeType,
        raw: RawValue<'_>,
        field: &str,
    ) -> Result<Self, FieldViolation> {
        let wrong_type = || FieldViolation::new(field, "INVALID_TYPE", value_type.rule());
        let text = match raw {
            RawValue::Json(Json::String(text)) => Some(text.as_str()),
            RawValue::Text(text) => Some(text),
            _ => None,
        };
        match (value_type, raw) {
            (AttributeType::String, _) => parse_string(text.ok_or_else(wrong_type)?, field),
            (AttributeType::Number, RawValue::Json(Json::Number(number))) => number
                .as_f64()
                .filter(|n| n.is_finite())
                .map(Self::Number)
                .ok_or_else(wrong_type),
            (AttributeType::Number, RawValue::Text(text)) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Self::Number)
                .ok_or_else(wrong_type),
            (AttributeType::Boolean, RawValue::Json(Json::Bool(value))) => {
                Ok(Self::Boolean(*value))
            }
            (AttributeType::Boolean, RawValue::Text(text)) => {
                match text.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Self::Boolean(true)),
                    "false" => Ok(Self::Boolean(false)),
                    _ => Err(wrong_type()),
                }
            }
            (AttributeType::Date, _) => text
                .map(str::trim)
                .filter(|date| date.len() == 10)
                .and_then(|date| NaiveDate::parse_from_str(date, DATE_FORMAT).ok())
                .map(Self::Date)
                .ok_or_else(wrong_type),
            _ => Err(wrong_type()),
        }
    }

    /// As stored and answered: a date as `YYYY-MM-DD`, a whole number
    /// without a fraction (so `3` and `3.0` are one value).
    pub fn to_json(&self) -> Json {
        match self {
            Self::String(text) => Json::String(text.clone()),
            Self::Number(number) => whole(*number)
                .map(Json::from)
                .unwrap_or_else(|| Json::from(*number)),
            Self::Boolean(value) => Json::Bool(*value),
            Self::Date(date) => Json::String(date.format(DATE_FORMAT).to_string()),
        }
    }
}

/// `number` as an integer when it is one (and fits exactly).
fn whole(number: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (number.fract() == 0.0 && number.abs() <= EXACT).then_some(number as i64)
}

fn parse_string(raw: &str, field: &str) -> Result<AttributeValue, FieldViolation> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(FieldViolation::new(
            field,
            "REQUIRED",
            "must not be empty (leave the attribute out for no value)",
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "CONTROL_CHARACTER",
            "must not contain control characters",
        ));
    }
    if let Some(violation) = invisible_violation(text, field) {
        return Err(violation);
    }
    if text.chars().count() > MAX_STRING_VALUE {
        return Err(FieldViolation::new(
            field,
            "TOO_LONG",
            format!("must be at most {MAX_STRING_VALUE} characters"),
        ));
    }
    Ok(AttributeValue::String(text.to_owned()))
}

/// A stored value as text: what the export writes and the import reads back.
pub fn json_as_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// An attribute's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDefinition {
    pub key: AttributeKey,
    pub value_type: AttributeType,
    /// Empty: any value of the type.
    pub allowed_values: Vec<AttributeValue>,
    /// Required on create (CreateUser, CloneUser, an import's new rows);
    /// once a user holds it, it may change but not go.
    pub required: bool,
    pub description: String,
}

/// A definition as a caller sent it; `value_type` `None` when unspecified.
#[derive(Debug, Clone, Default)]
pub struct DefinitionInput {
    pub key: String,
    pub value_type: Option<AttributeType>,
    pub allowed_values: Vec<Json>,
    pub required: bool,
    pub description: String,
}

impl AttributeDefinition {
    /// Every violation at once, under `prefix` (`attribute.`).
    pub fn parse(input: &DefinitionInput, prefix: &str) -> Result<Self, Vec<FieldViolation>> {
        let field = |name: &str| format!("{prefix}{name}");
        let mut violations = Vec::new();
        let key = AttributeKey::parse(&input.key, &field("key")).map_err(|v| violations.push(v));
        let Some(value_type) = input.value_type else {
            violations.push(FieldViolation::new(
                field("type"),
                "REQUIRED",
                "must be USER_ATTRIBUTE_TYPE_STRING, _NUMBER, _BOOLEAN or _DATE",
            ));
            return Err(violations);
        };
        if input.allowed_values.len() > MAX_ALLOWED_VALUES {
            violations.push(FieldViolation::new(
                field("allowed_values"),
                "TOO_MANY",
                format!("at most {MAX_ALLOWED_VALUES} values"),
            ));
        }
        let mut allowed_values: Vec<AttributeValue> = Vec::new();
        for (index, raw) in input.allowed_values.iter().enumerate() {
            let at = format!("{}[{index}]", field("allowed_values"));
            match AttributeValue::parse(value_type, RawValue::Json(raw), &at) {
                Ok(value) if allowed_values.contains(&value) => {
                    violations.push(FieldViolation::new(at, "DUPLICATE", "is listed twice"))
                }
                Ok(value) => allowed_values.push(value),
                Err(violation) => violations.push(violation),
            }
        }
        let description = input.description.trim();
        if description.chars().count() > MAX_DESCRIPTION
            || description.chars().any(char::is_control)
        {
            violations.push(FieldViolation::new(
                field("description"),
                "INVALID_DESCRIPTION",
                format!("must be at most {MAX_DESCRIPTION} characters, without control characters"),
            ));
        }
        match key {
            Ok(key) if violations.is_empty() => Ok(Self {
                key,
                value_type,
                allowed_values,
                required: input.required,
                description: description.to_owned(),
            }),
            _ => Err(violations),
        }
    }

    /// A value for this attribute: of its type, and one of the allowed
    /// values when it lists some.
    pub fn parse_value(
        &self,
        raw: RawValue<'_>,
        field: &str,
    ) -> Result<AttributeValue, FieldViolation> {
        let value = AttributeValue::parse(self.value_type, raw, field)?;
        if !self.allowed_values.is_empty() && !self.allowed_values.contains(&value) {
            let allowed: Vec<String> = self
                .allowed_values
                .iter()
                .map(|value| json_as_text(&value.to_json()))
                .collect();
            return Err(FieldViolation::new(
                field,
                "NOT_ALLOWED",
                format!("must be one of: {}", allowed.join(", ")),
            ));
        }
        Ok(value)
    }

    /// A definition read back from the store, written valid: its allowed
    /// values go through the parser of its type again.
    pub(crate) fn from_stored(
        key: String,
        value_type: &str,
        allowed_values: &Json,
        required: bool,
        description: String,
    ) -> Self {
        let value_type = AttributeType::from_stored(value_type);
        let allowed_values = allowed_values
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| AttributeValue::parse(value_type, RawValue::Json(v), "").ok())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            key: AttributeKey::from_stored(key),
            value_type,
            allowed_values,
            required,
            description,
        }
    }

    /// Whether a stored value still fits this definition (a changed one).
    pub fn admits(&self, stored: &Json) -> bool {
        self.parse_value(RawValue::Json(stored), "").is_ok()
    }

    /// As stored and recorded in the audit trail.
    pub fn allowed_values_json(&self) -> Json {
        Json::Array(
            self.allowed_values
                .iter()
                .map(AttributeValue::to_json)
                .collect(),
        )
    }
}

/// The values of a user, by key, as stored (JSON typed by the definitions).
pub type StoredAttributes = Map<String, Json>;

/// Values given for some keys: `Some` sets, `None` removes.
pub type AttributeChanges = BTreeMap<AttributeKey, Option<AttributeValue>>;

/// The organization's definitions: what every value is checked against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributeSchema {
    definitions: Vec<AttributeDefinition>,
}

impl AttributeSchema {
    pub fn new(definitions: Vec<AttributeDefinition>) -> Self {
        Self { definitions }
    }

    pub fn definitions(&self) -> &[AttributeDefinition] {
        &self.definitions
    }

    /// Whether `other` checks values as this one does (descriptions aside).
    pub fn same_rules(&self, other: &Self) -> bool {
        let rules = |schema: &Self| -> Vec<_> {
            schema
                .definitions
                .iter()
                .map(|d| {
                    (
                        d.key.clone(),
                        d.value_type,
                        d.allowed_values.clone(),
                        d.required,
                    )
                })
                .collect()
        };
        rules(self) == rules(other)
    }

    pub fn get(&self, key: &str) -> Option<&AttributeDefinition> {
        self.definitions.iter().find(|d| d.key.as_str() == key)
    }

    /// One value of `key`: the attribute must be defined, the value valid
    /// for it. `field` names it (`user.attributes.level`, `attr.level`).
    pub fn parse_value(
        &self,
        key: &str,
        raw: RawValue<'_>,
        field: &str,
    ) -> Result<(AttributeKey, AttributeValue), FieldViolation> {
        let definition = self.get(key).ok_or_else(|| unknown_attribute(key, field))?;
        Ok((definition.key.clone(), definition.parse_value(raw, field)?))
    }

    /// Values by key (`None`: remove), every violation at once, each under
    /// `{prefix}{key}`.
    pub fn parse_changes<'a>(
        &self,
        given: impl IntoIterator<Item = (&'a str, Option<RawValue<'a>>)>,
        prefix: &str,
    ) -> Result<AttributeChanges, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut changes = AttributeChanges::new();
        for (key, raw) in given {
            let field = format!("{prefix}{key}");
            let parsed = match raw {
                Some(raw) => self
                    .parse_value(key, raw, &field)
                    .map(|(k, v)| (k, Some(v))),
                None => self
                    .get(key)
                    .map(|d| (d.key.clone(), None))
                    .ok_or_else(|| unknown_attribute(key, &field)),
            };
            match parsed {
                Ok((key, value)) => {
                    changes.insert(key, value);
                }
                Err(violation) => violations.push(violation),
            }
        }
        if violations.is_empty() {
            Ok(changes)
        } else {
            Err(violations)
        }
    }

    /// A new user's values: every required attribute must be among them.
    pub fn check_new(&self, values: &StoredAttributes, prefix: &str) -> Vec<FieldViolation> {
        self.definitions
            .iter()
            .filter(|d| d.required && !values.contains_key(d.key.as_str()))
            .map(|d| required_violation(d, prefix))
            .collect()
    }

    /// A user's values after a change: a required attribute the user held
    /// may change but not go. (One defined required after the user was
    /// created stays missing until set: defining it invalidates no one.)
    pub fn check_change(
        &self,
        before: &StoredAttributes,
        after: &StoredAttributes,
        prefix: &str,
    ) -> Vec<FieldViolation> {
        self.definitions
            .iter()
            .filter(|d| d.required)
            .filter(|d| before.contains_key(d.key.as_str()) && !after.contains_key(d.key.as_str()))
            .map(|d| required_violation(d, prefix))
            .collect()
    }
}

fn unknown_attribute(key: &str, field: &str) -> FieldViolation {
    FieldViolation::new(
        field,
        "UNKNOWN_ATTRIBUTE",
        format!(
            "{} is not an attribute of this organization (see ListUserAttributes)",
            echo(key)
        ),
    )
}

fn required_violation(definition: &AttributeDefinition, prefix: &str) -> FieldViolation {
    FieldViolation::new(
        format!("{prefix}{}", definition.key.as_str()),
        "REQUIRED",
        "is a required attribute",
    )
}

/// `current` with `changes` applied.
pub fn apply_changes(current: &StoredAttributes, changes: &AttributeChanges) -> StoredAttributes {
    let mut next = current.clone();
    for (key, value) in changes {
        match value {
            Some(value) => next.insert(key.as_str().to_owned(), value.to_json()),
            None => next.remove(key.as_str()),
        };
    }
    next
}

/// (`attributes.<key>`, old, new) of every key whose value differs, for
/// the audit trail.
pub fn attribute_changes(
    before: &StoredAttributes,
    after: &StoredAttributes,
) -> Vec<(String, Json, Json)> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| {
            (
                format!("attributes.{key}"),
                before.get(key).cloned().unwrap_or(Json::Null),
                after.get(key).cloned().unwrap_or(Json::Null),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition(
        value_type: AttributeType,
        allowed: &[Json],
        required: bool,
    ) -> AttributeDefinition {
        AttributeDefinition::parse(
            &DefinitionInput {
                key: "level".into(),
                value_type: Some(value_type),
                allowed_values: allowed.to_vec(),
                required,
                description: String::new(),
            },
            "attribute.",
        )
        .unwrap()
    }

    fn codes(result: Result<AttributeValue, FieldViolation>) -> String {
        result.map_or_else(|v| v.code.to_string(), |_| "OK".into())
    }

    #[test]
    fn keys_are_lowercase_identifiers() {
        assert!(AttributeKey::parse("cost_center2", "k").is_ok());
        for bad in ["", "Cost", "2x", "_x", "a-b", "ação", &"a".repeat(41)] {
            assert!(AttributeKey::parse(bad, "k").is_err(), "{bad}");
        }
        assert!(AttributeKey::parse(&"a".repeat(40), "k").is_ok());
    }

    #[test]
    fn json_and_text_parse_to_the_same_typed_values() {
        let number = definition(AttributeType::Number, &[], false);
        assert_eq!(
            number.parse_value(RawValue::Json(&json!(3)), "f").unwrap(),
            AttributeValue::Number(3.0)
        );
        assert_eq!(
            number.parse_value(RawValue::Text(" 3.0 "), "f").unwrap(),
            AttributeValue::Number(3.0)
        );
        assert_eq!(AttributeValue::Number(3.0).to_json(), json!(3));
        let date = definition(AttributeType::Date, &[], false);
        assert_eq!(
            date.parse_value(RawValue::Text("2026-02-28"), "f")
                .unwrap()
                .to_json(),
            json!("2026-02-28")
        );
        let boolean = definition(AttributeType::Boolean, &[], false);
        assert_eq!(
            boolean.parse_value(RawValue::Text("TRUE"), "f").unwrap(),
            AttributeValue::Boolean(true)
        );
    }

    #[test]
    fn each_type_refuses_what_is_not_its_value() {
        let (text_three, text_true, one) = (json!("3"), json!("true"), json!(1));
        let refused = [
            (
                AttributeType::Number,
                RawValue::Json(&text_three),
                "INVALID_TYPE",
            ),
            (AttributeType::Number, RawValue::Text("NaN"), "INVALID_TYPE"),
            (
                AttributeType::Date,
                RawValue::Text("2026-02-30"),
                "INVALID_TYPE",
            ),
            (
                AttributeType::Date,
                RawValue::Text("2026-2-3"),
                "INVALID_TYPE",
            ),
            (
                AttributeType::Boolean,
                RawValue::Json(&text_true),
                "INVALID_TYPE",
            ),
            (AttributeType::String, RawValue::Json(&one), "INVALID_TYPE"),
            (AttributeType::String, RawValue::Text("  "), "REQUIRED"),
            (
                AttributeType::String,
                RawValue::Text("a\u{7}"),
                "CONTROL_CHARACTER",
            ),
        ];
        for (value_type, raw, code) in refused {
            let parsed = definition(value_type, &[], false).parse_value(raw, "f");
            assert_eq!(codes(parsed), code, "{value_type:?} {raw:?}");
        }
    }

    #[test]
    fn allowed_values_are_typed_and_enforced() {
        let level = definition(AttributeType::Number, &[json!(1), json!(2)], false);
        assert!(level.parse_value(RawValue::Text("2"), "f").is_ok());
        let refused = level.parse_value(RawValue::Text("3"), "f").unwrap_err();
        assert_eq!(
            (refused.code.as_ref(), refused.description.as_str()),
            ("NOT_ALLOWED", "must be one of: 1, 2")
        );
        let input = DefinitionInput {
            key: "level".into(),
            value_type: Some(AttributeType::Number),
            allowed_values: vec![json!(1), json!("x"), json!(1.0)],
            ..Default::default()
        };
        let fields: Vec<String> = AttributeDefinition::parse(&input, "attribute.")
            .unwrap_err()
            .into_iter()
            .map(|v| format!("{} {}", v.field, v.code))
            .collect();
        assert_eq!(
            fields,
            [
                "attribute.allowed_values[1] INVALID_TYPE",
                "attribute.allowed_values[2] DUPLICATE"
            ]
        );
    }

    #[test]
    fn a_required_attribute_is_needed_on_create_and_cannot_be_removed_once_held() {
        let schema = AttributeSchema::new(vec![definition(AttributeType::Number, &[], true)]);
        let none = StoredAttributes::new();
        let held: StoredAttributes = [("level".to_owned(), json!(1))].into_iter().collect();
        assert_eq!(
            schema.check_new(&none, "user.attributes.")[0].field,
            "user.attributes.level"
        );
        assert!(schema.check_new(&held, "").is_empty());
        assert!(schema.check_change(&none, &none, "").is_empty());
        assert_eq!(schema.check_change(&held, &none, "").len(), 1);
    }

    #[test]
    fn a_description_is_no_rule() {
        let level = definition(AttributeType::Number, &[], false);
        let described = AttributeDefinition {
            description: "how senior".into(),
            ..level.clone()
        };
        let required = AttributeDefinition {
            required: true,
            ..level.clone()
        };
        let schema = |d: &AttributeDefinition| AttributeSchema::new(vec![d.clone()]);
        assert!(schema(&level).same_rules(&schema(&described)));
        assert!(!schema(&level).same_rules(&schema(&required)));
        assert!(!schema(&level).same_rules(&AttributeSchema::default()));
    }

    #[test]
    fn unknown_keys_are_refused_under_their_field() {
        let schema = AttributeSchema::new(vec![definition(AttributeType::Number, &[], false)]);
        let refused = schema
            .parse_changes(
                [
                    ("nope", Some(RawValue::Text("1"))),
                    ("level", Some(RawValue::Text("x"))),
                ],
                "user.attributes.",
            )
            .unwrap_err();
        let fields: Vec<&str> = refused.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["user.attributes.nope", "user.attributes.level"]);
    }
}
