//! SCIM resources, and what of them an answer returns
//! (`attributes` / `excludedAttributes`, RFC 7644 §3.9).

pub mod group;
pub mod user;

use serde_json::{Map, Value};

use super::{
    errors::{ScimError, ScimType},
    filter::parse_path,
    SCHEMA_ENTERPRISE_USER, SCHEMA_ROSTER_GROUP,
};

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
