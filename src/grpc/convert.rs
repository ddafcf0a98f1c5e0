//! Conversions between domain values and protobuf messages.

use chrono::{DateTime, Utc};
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use uuid::Uuid;

use crate::{
    domain::{
        api_key::ApiKey,
        caller::{Scope, Scopes},
        paging::PageSize,
        DomainError, FieldViolation,
    },
    proto,
};

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

pub fn page_size(raw: i32) -> Result<PageSize, DomainError> {
    PageSize::parse(raw).map_err(|violation| DomainError::InvalidArgument(vec![violation]))
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
pub fn scope_from_proto(raw: i32) -> Option<Scope> {
    match proto::Scope::try_from(raw).ok()? {
        proto::Scope::Viewer => Some(Scope::Viewer),
        proto::Scope::Admin => Some(Scope::Admin),
        proto::Scope::Unspecified => None,
    }
}

pub fn api_key(key: &ApiKey) -> proto::ApiKey {
    proto::ApiKey {
        id: key.id.to_string(),
        name: key.name.clone(),
        scopes: scopes_to_proto(&key.scopes),
        created_by: key.created_by.clone(),
        create_time: Some(timestamp(key.create_time)),
        expire_time: optional_timestamp(key.expire_time),
        last_used_time: optional_timestamp(key.last_used_time),
        revoke_time: optional_timestamp(key.revoke_time),
    }
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn json_struct(value: &serde_json::Value) -> Struct {
    match json_value(value).kind {
        Some(Kind::StructValue(fields)) => fields,
        _ => Struct::default(),
    }
}

fn json_value(value: &serde_json::Value) -> Value {
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
