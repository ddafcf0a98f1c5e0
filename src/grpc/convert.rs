//! Conversions between domain values and protobuf messages.
//!

//! Shared primitives (timestamps, ids, page sizes, JSON) live here; each
//! service's requests and answers convert in its own module below.

pub mod api_keys;
pub mod changes;
pub mod groups;
pub mod organizations;
pub mod users;

/// The user service lists a user's groups and access with these.
pub use groups::{group, unit_scope_to_proto};

use chrono::{DateTime, Utc};
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use uuid::Uuid;

use crate::{
    domain::{
        caller::{Scope, Scopes},
        echo,
        paging::PageRequest,
        DomainError, FieldViolation,
    },
    proto,
};
/// Other services list users too.
pub use users::{given_user, user, user_key_to_proto};

pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

pub fn optional_timestamp(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(timestamp)
}

pub fn parse_timestamp(
    value: Option<&Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    value
        .map(|ts| {
            u32::try_from(ts.nanos)
                .ok()
                .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
                .ok_or_else(|| {
                    FieldViolation::new(field, "INVALID_TIMESTAMP", "is not a valid timestamp")
                })
        })
        .transpose()
}

/// An id field: empty or not a UUID is a field violation naming it.
pub fn parse_id(raw: &str, field: &str) -> Result<Uuid, DomainError> {
    if raw.is_empty() {
        return Err(DomainError::invalid(field, "REQUIRED", "must be set"));
    }
    Uuid::parse_str(raw).map_err(|_| DomainError::invalid(field, "INVALID_ID", "must be a UUID"))
}

/// A `List*` request's `page_size` and `page_token`.
pub fn page_request(page_size: i32, page_token: String) -> Result<PageRequest, DomainError> {
    PageRequest::parse(page_size, page_token)
        .map_err(|violation| DomainError::InvalidArgument(vec![violation]))
}

pub fn scope_to_proto(scope: Scope) -> i32 {
    match scope {
        Scope::Viewer => proto::Scope::Viewer as i32,
        Scope::Admin => proto::Scope::Admin as i32,
    }
}

pub fn scopes_to_proto(scopes: &Scopes) -> Vec<i32> {
    scopes
        .as_slice()
        .iter()
        .copied()
        .map(scope_to_proto)
        .collect()
}

/// `None` for SCOPE_UNSPECIFIED and unknown numbers.
/// A JSON object as a `google.protobuf.Struct`.
pub fn json_struct(value: &serde_json::Value) -> Struct {
    match json_value(value).kind {
        Some(Kind::StructValue(fields)) => fields,
        _ => Struct::default(),
    }
}

pub fn json_value(value: &serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// A JSON object's fields as a `google.protobuf.Struct` (a user's attributes).
pub fn object_struct(object: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: object
            .iter()
            .map(|(key, value)| (key.clone(), json_value(value)))
            .collect(),
    }
}

/// A `google.protobuf.Struct` as JSON values by key; none when unset.
pub fn struct_fields(
    fields: Option<&Struct>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    fields
        .map(|s| {
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_json(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// A `google.protobuf.Value` as JSON. A number JSON cannot hold (NaN,
/// infinity) becomes its text, which no number attribute accepts.
pub fn value_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(n.to_string())),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_json).collect())
        }
        Some(Kind::StructValue(fields)) => serde_json::Value::Object(
            fields
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), value_json(v)))
                .collect(),
        ),
    }
}

pub fn field_issues(issues: &[FieldViolation]) -> Vec<proto::FieldIssue> {
    issues
        .iter()
        .map(|issue| proto::FieldIssue {
            field: issue.field.clone(),
            code: issue.code.to_string(),
            message: issue.description.clone(),
        })
        .collect()
}

/// Ids of a repeated field, each violation naming its index (`group_ids[2]`).
pub fn parse_ids(raw: &[String], field: &str) -> Result<Vec<Uuid>, DomainError> {
    let mut violations = Vec::new();
    let ids = raw
        .iter()
        .enumerate()
        .filter_map(|(index, id)| {
            Uuid::parse_str(id.trim())
                .map_err(|_| {
                    violations.push(FieldViolation::new(
                        format!("{field}[{index}]"),
                        "INVALID_ID",
                        "must be a UUID",
                    ))
                })
                .ok()
        })
        .collect();
    DomainError::check(violations)?;
    Ok(ids)
}

/// An optional id: empty means none.
/// A filter's group or unit by id (`<what>_id`) or by name (`<what>_name`):
/// one of the two, or neither.
pub fn id_or_name(
    raw_id: &str,
    raw_name: &str,
    what: &str,
) -> Result<(Option<Uuid>, Option<String>), DomainError> {
    let name = raw_name.trim();
    match (raw_id.trim().is_empty(), name.is_empty()) {
        (_, true) => Ok((parse_optional_id(raw_id, &format!("{what}_id"))?, None)),
        (true, false) => Ok((None, Some(name.to_owned()))),
        (false, false) => Err(DomainError::invalid(
            format!("{what}_name"),
            "ONE_OF",
            format!("give {what}_id or {what}_name, not both"),
        )),
    }
}

pub fn parse_optional_id(raw: &str, field: &str) -> Result<Option<Uuid>, DomainError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse_id(raw, field).map(Some)
    }
}

/// The paths of an update mask, each checked by `known`; unknown ones are
/// refused naming `update_mask.paths[i]`, and an empty mask is refused.
pub fn mask_fields<F>(
    mask: Option<&prost_types::FieldMask>,
    prefix: &str,
    allowed: &str,
    known: impl Fn(&str) -> Option<F>,
) -> Result<Vec<F>, DomainError> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Err(DomainError::invalid(
            "update_mask",
            "REQUIRED",
            format!("must name the fields to change, among: {allowed}"),
        ));
    }
    let mut violations = Vec::new();
    let mut fields = Vec::new();
    for (index, raw) in paths.iter().enumerate() {
        let path = snake_case(raw);
        let path = path.strip_prefix(prefix).unwrap_or(&path);
        match known(path) {
            Some(field) => fields.push(field),
            None => violations.push(FieldViolation::new(
                format!("update_mask.paths[{index}]"),
                "UNKNOWN_FIELD",
                format!("{} cannot be updated; use one of: {allowed}", echo(raw)),
            )),
        }
    }
    DomainError::check(violations)?;
    Ok(fields)
}

/// A mask path as the proto names it: grpcurl and the JSON answers spell
/// fields in camelCase (`firstName`), protobuf in snake_case (`first_name`);
/// both are accepted.
fn snake_case(path: &str) -> String {
    let mut snake = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// The CSV delimiter of a request: `,` (default) or `;`.
pub fn delimiter(raw: &str) -> Result<char, DomainError> {
    match raw {
        "" | "," => Ok(','),
        ";" => Ok(';'),
        _ => Err(DomainError::invalid(
            "delimiter",
            "INVALID_DELIMITER",
            "must be `,` or `;`",
        )),
    }
}
