//! SCIM resources, and what of them an answer returns
//! (`attributes` / `excludedAttributes`, RFC 7644 §3.9).

pub mod group;
pub mod user;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::user::{TextOp, TimeOp};

use super::{
    errors::{ScimError, ScimType},
    filter::{parse_path, AttrPath, CompareOp, PatchPath},
    SCHEMA_ENTERPRISE_USER, SCHEMA_PATCH, SCHEMA_ROSTER_GROUP,
};

/// A PATCH operation's `op` (RFC 7644 §3.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    Add,
    Replace,
    Remove,
}

/// Where a PATCH operation applies (RFC 7644 §3.5.2).
pub enum PatchTarget<'a> {
    /// The resource's schema extension as a whole: its URN as the path
    /// (`"path": "urn:…:enterprise:2.0:User"`), as written.
    Extension(&'a str),
    Path(PatchPath),
    /// No path: the value is an object of attributes (Okta's
    /// `{"active": false}`, `{"id": …, "displayName": …}`).
    Attributes(&'a Map<String, Value>),
}

/// Applies each operation of a PATCH body in order, with its `op` read in
/// any case (Entra sends `Add`, `Replace`, `Remove`), its target (the
/// resource's `extension` is named by its URN) and its `value`; an error
/// names the operation's index.
pub fn each_patch_operation(
    body: &Value,
    extension: &str,
    mut apply: impl FnMut(PatchOp, PatchTarget<'_>, &Value) -> Result<(), ScimError>,
) -> Result<(), ScimError> {
    let schemas_ok = body["schemas"]
        .as_array()
        .is_some_and(|schemas| schemas.iter().any(|s| s.as_str() == Some(SCHEMA_PATCH)));
    if !schemas_ok {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("schemas must hold {SCHEMA_PATCH}"),
        ));
    }
    let operations = body["Operations"].as_array().ok_or_else(|| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            "Operations must be a list of operations",
        )
    })?;
    for (index, operation) in operations.iter().enumerate() {
        let op = match operation["op"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => Ok(PatchOp::Add),
            Some("replace") => Ok(PatchOp::Replace),
            Some("remove") => Ok(PatchOp::Remove),
            _ => Err(ScimError::bad(
                ScimType::InvalidSyntax,
                "op must be add, replace or remove",
            )),
        };
        op.and_then(|op| {
            let target = patch_target(op, operation, extension)?;
            apply(op, target, &operation["value"])
        })
        .map_err(|mut error| {
            error.detail = format!("Operations[{index}]: {}", error.detail);
            error
        })?;
    }
    Ok(())
}

fn patch_target<'a>(
    op: PatchOp,
    operation: &'a Value,
    extension: &str,
) -> Result<PatchTarget<'a>, ScimError> {
    match operation["path"].as_str() {
        Some(raw) if raw.trim().eq_ignore_ascii_case(extension) => {
            Ok(PatchTarget::Extension(raw.trim()))
        }
        Some(raw) => parse_path(raw)
            .map(PatchTarget::Path)
            .map_err(|error| ScimError::bad(ScimType::InvalidPath, format!("path: {error}"))),
        None if op == PatchOp::Remove => {
            Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"))
        }
        None => operation["value"]
            .as_object()
            .map(PatchTarget::Attributes)
            .ok_or_else(|| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    "an operation without a path takes an object of attributes as its value",
                )
            }),
    }
}

/// The path a key of an object of attributes names (`name.givenName`).
pub fn attribute_path(key: &str) -> Result<PatchPath, ScimError> {
    parse_path(key).map_err(|error| {
        ScimError::bad(
            ScimType::InvalidPath,
            format!("attribute {}: {error}", crate::domain::echo(key)),
        )
    })
}

/// A filter's comparison of a text attribute: how, and with what string.
pub fn text_comparison(
    path: &AttrPath,
    op: CompareOp,
    value: &Value,
) -> Result<(TextOp, String), ScimError> {
    let op_name = op.as_str();
    let text = value
        .as_str()
        .ok_or_else(|| bad_filter(format!("{path} {op_name}: compares with a \"string\"")))?;
    let op = match op {
        CompareOp::Eq => TextOp::Equals,
        CompareOp::Ne => TextOp::NotEquals,
        CompareOp::Co => TextOp::Contains,
        CompareOp::Sw => TextOp::StartsWith,
        CompareOp::Ew => TextOp::EndsWith,
        _ => {
            return Err(bad_filter(format!(
            "{path} {op_name}: gt, ge, lt and le compare dates (meta.created, meta.lastModified)"
        )))
        }
    };
    Ok((op, text.to_owned()))
}

/// A filter's comparison of a date attribute: how, and with what time.
pub fn time_comparison(
    path: &AttrPath,
    op: CompareOp,
    value: &Value,
) -> Result<(TimeOp, DateTime<Utc>), ScimError> {
    let op_name = op.as_str();
    let time = value
        .as_str()
        .and_then(|raw| DateTime::parse_from_rfc3339(raw).ok())
        .ok_or_else(|| {
            bad_filter(format!(
                "{path} {op_name}: compares with a date-time such as \"2026-01-31T08:00:00Z\""
            ))
        })?;
    let op = match op {
        CompareOp::Eq => TimeOp::Equals,
        CompareOp::Ne => TimeOp::NotEquals,
        CompareOp::Gt => TimeOp::After,
        CompareOp::Ge => TimeOp::AtOrAfter,
        CompareOp::Lt => TimeOp::Before,
        CompareOp::Le => TimeOp::AtOrBefore,
        _ => {
            return Err(bad_filter(format!(
                "{path} {op_name}: dates take eq, ne, gt, ge, lt, le or pr"
            )))
        }
    };
    Ok((op, time.with_timezone(&Utc)))
}

fn bad_filter(detail: String) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

/// Returned whatever the request asks.
const ALWAYS_RETURNED: [&str; 2] = ["schemas", "id"];

/// An attribute named in `attributes` or `excludedAttributes`: its key in
/// the resource (an extension's URN for its attributes) and maybe a sub-key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    key: String,
    sub: Option<String>,
}

/// Which attributes an answer returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    only: Vec<Named>,
    excluded: Vec<Named>,
}

impl Projection {
    /// From the two query parameters (comma-separated attribute paths).
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        Ok(Self {
            only: parse_names(attributes, "attributes")?,
            excluded: parse_names(excluded, "excludedAttributes")?,
        })
    }

    /// Whether answers carry this top-level attribute (or some of it),
    /// so that what they leave out need not be read.
    pub fn returns(&self, key: &str) -> bool {
        let named = |n: &&Named| n.key.eq_ignore_ascii_case(key);
        let kept = self.only.is_empty() || self.only.iter().any(|n| named(&n));
        kept && !self.excluded.iter().any(|n| named(&n) && n.sub.is_none())
    }

    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(mut object) = resource else {
            return resource;
        };
        if !self.only.is_empty() {
            let mut kept = Map::new();
            for (key, value) in object {
                if ALWAYS_RETURNED.contains(&key.as_str()) {
                    kept.insert(key, value);
                    continue;
                }
                let named: Vec<&Named> = self
                    .only
                    .iter()
                    .filter(|n| n.key.eq_ignore_ascii_case(&key))
                    .collect();
                if named.iter().any(|n| n.sub.is_none()) {
                    kept.insert(key, value);
                } else if !named.is_empty() {
                    let subs: Vec<&str> = named.iter().filter_map(|n| n.sub.as_deref()).collect();
                    kept.insert(key, keep_subs(value, &subs));
                }
            }
            object = kept;
        }
        for named in &self.excluded {
            let Some(key) = object
                .keys()
                .find(|key| key.eq_ignore_ascii_case(&named.key))
                .cloned()
            else {
                continue;
            };
            if ALWAYS_RETURNED.contains(&key.as_str()) {
                continue;
            }
            match &named.sub {
                None => {
                    object.remove(&key);
                }
                Some(sub) => {
                    if let Some(value) = object.get_mut(&key) {
                        drop_sub(value, sub);
                    }
                }
            }
        }
        Value::Object(object)
    }
}

fn parse_names(raw: Option<&str>, parameter: &str) -> Result<Vec<Named>, ScimError> {
    let Some(raw) = raw.filter(|raw| !raw.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|item| {
            let path = parse_path(item.trim())
                .ok()
                .filter(|path| path.filter.is_none())
                .ok_or_else(|| {
                    ScimError::bad(
                        ScimType::InvalidValue,
                        format!(
                            "{parameter}: {} is not an attribute path",
                            crate::domain::echo(item)
                        ),
                    )
                })?;
            let attr = path.attr;
            let extension = [SCHEMA_ENTERPRISE_USER, SCHEMA_ROSTER_GROUP]
                .into_iter()
                .find(|schema| {
                    attr.uri
                        .as_deref()
                        .is_some_and(|uri| uri.eq_ignore_ascii_case(schema))
                });
            Ok(if let Some(extension) = extension {
                Named {
                    key: extension.to_owned(),
                    sub: Some(attr.name),
                }
            } else {
                Named {
                    key: attr.name,
                    sub: attr.sub,
                }
            })
        })
        .collect()
}

/// `value` (an object, or a list of them) with only these sub-attributes.
fn keep_subs(value: Value, subs: &[&str]) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(key, _)| subs.iter().any(|sub| sub.eq_ignore_ascii_case(key)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| keep_subs(item, subs))
                .collect(),
        ),
        other => other,
    }
}

fn drop_sub(value: &mut Value, sub: &str) {
    match value {
        Value::Object(object) => object.retain(|key, _| !key.eq_ignore_ascii_case(sub)),
        Value::Array(items) => items.iter_mut().for_each(|item| drop_sub(item, sub)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["s"], "id": "1", "userName": "ana",
            "name": { "givenName": "Ana", "familyName": "Lima" },
            "emails": [{ "value": "ana@x.test", "type": "work", "primary": true }],
            SCHEMA_ENTERPRISE_USER: { "employeeNumber": "7" },
            "meta": { "version": "v" },
        })
    }

    #[test]
    fn attributes_keep_the_named_and_the_always_returned() {
        let projection = Projection::parse(
            Some(&format!(
                "userName,emails.value,name.familyName,{SCHEMA_ENTERPRISE_USER}:employeeNumber"
            )),
            None,
        )
        .unwrap();
        assert_eq!(
            projection.apply(user()),
            json!({
                "schemas": ["s"], "id": "1", "userName": "ana",
                "name": { "familyName": "Lima" },
                "emails": [{ "value": "ana@x.test" }],
                SCHEMA_ENTERPRISE_USER: { "employeeNumber": "7" },
            })
        );
    }

    #[test]
    fn excluded_attributes_drop_the_named_but_never_the_id() {
        let projection = Projection::parse(None, Some("emails,name.givenName,id,meta")).unwrap();
        assert_eq!(
            projection.apply(user()),
            json!({
                "schemas": ["s"], "id": "1", "userName": "ana",
                "name": { "familyName": "Lima" },
                SCHEMA_ENTERPRISE_USER: { "employeeNumber": "7" },
            })
        );
    }

    #[test]
    fn returns_says_whether_an_attribute_is_answered() {
        let excluded = Projection::parse(None, Some("Members")).unwrap();
        assert!(!excluded.returns("members"));
        assert!(excluded.returns("displayName"));
        let partly = Projection::parse(None, Some("members.display")).unwrap();
        assert!(partly.returns("members"));
        let only = Projection::parse(Some("displayName"), None).unwrap();
        assert!(!only.returns("members"));
        assert!(Projection::default().returns("members"));
    }

    #[test]
    fn a_malformed_attribute_list_is_refused() {
        let error = Projection::parse(Some("userName,,"), None).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
    }
}
