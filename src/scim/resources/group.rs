//! The SCIM `Group` as a Roster group: `displayName` is its name, `members`
//! its memberships (users only: Roster groups do not nest), and Roster's
//! extension (`SCHEMA_ROSTER_GROUP`) the profile and units it grants. A group
//! created without the extension's `profileId` takes the organization's
//! `scim_default_profile_id`, on all units unless `unitIds` names some.
//! `externalId` is the id the provider gave the group, unique in the
//! organization.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{
    domain::{
        group::{
            Group, GroupCondition, GroupField, GroupInput, GroupMember, GroupUpdate, MemberChange,
            ScopeKind, TrackedGroup,
        },
        organization::Settings,
        user::TimeField,
        DomainError, FieldViolation,
    },
    scim::{
        errors::{ScimError, ScimType},
        filter::{AttrPath, CompareOp, Filter, PatchPath},
        resources::{
            attribute_path, each_patch_operation, text_comparison, time_comparison, PatchOp as Op,
            PatchTarget,
        },
        SCHEMA_GROUP, SCHEMA_ROSTER_GROUP,
    },
};

/// The weak ETag of a group and its members: when either last changed
/// (a join moves it on) and how many members it has (a leave lowers it).
pub fn version(tracked: &TrackedGroup) -> String {
    format!(
        "W/\"{}-{}\"",
        tracked.last_modified().timestamp_micros(),
        tracked.group.member_count
    )
}

fn time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The group as a SCIM resource; `members` is `None` when the answer
/// leaves them out (they were not read). `base_url` ends in `/scim/v2`.
pub fn resource(tracked: &TrackedGroup, members: Option<&[GroupMember]>, base_url: &str) -> Value {
    let group = &tracked.group;
    let mut body = json!({
        "schemas": [SCHEMA_GROUP, SCHEMA_ROSTER_GROUP],
        "id": group.id.to_string(),
        "displayName": group.name,
        SCHEMA_ROSTER_GROUP: {
            "profileId": group.profile_id.to_string(),
            "unitScope": ScopeKind::of(&group.scope).as_str(),
            "unitIds": group.scope.unit_ids().iter().map(Uuid::to_string).collect::<Vec<_>>(),
        },
        "meta": {
            "resourceType": "Group",
            "created": time(group.create_time),
            "lastModified": time(tracked.last_modified()),
            "version": version(tracked),
            "location": format!("{base_url}/Groups/{}", group.id),
        },
    });
    if let Some(external_id) = &group.external_id {
        body["externalId"] = json!(external_id);
    }
    if let Some(members) = members {
        body["members"] = members
            .iter()
            .map(|member| {
                json!({
                    "value": member.user_id.to_string(),
                    "$ref": format!("{base_url}/Users/{}", member.user_id),
                    "type": "User",
                })
            })
            .collect();
    }
    body
}

/// What a POST, PUT or PATCH says of a group; `None`: not said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    pub display_name: Option<String>,
    pub profile_id: Option<String>,
    pub unit_scope: Option<String>,
    /// The units replaced (PUT, PATCH replace, a remove of them all).
    pub unit_ids: Option<Vec<String>>,
    /// Units a PATCH adds or removes, in order, on top of the group's own
    /// (or of `unit_ids` when replaced in the same PATCH).
    pub unit_edits: Vec<UnitEdit>,
    /// Empty: removed.
    pub external_id: Option<String>,
    /// The extension's profile was removed: the organization's
    /// `scim_default_profile_id` again.
    pub default_profile: bool,
    pub members: Vec<MemberChange>,
}

/// A PATCH's `add` or `remove` of some units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitEdit {
    Add(Vec<String>),
    Remove(Vec<String>),
}

impl GroupChanges {
    fn touches_units(&self) -> bool {
        self.unit_ids.is_some() || !self.unit_edits.is_empty()
    }

    /// The units once these changes are made on `current`'s.
    fn units_after(&self, current: Vec<String>) -> Vec<String> {
        let mut ids = self.unit_ids.clone().unwrap_or(current);
        for edit in &self.unit_edits {
            match edit {
                UnitEdit::Add(added) => {
                    for id in added {
                        if !ids.iter().any(|held| held.eq_ignore_ascii_case(id)) {
                            ids.push(id.clone());
                        }
                    }
                }
                UnitEdit::Remove(removed) => {
                    ids.retain(|held| !removed.iter().any(|id| id.eq_ignore_ascii_case(held)))
                }
            }
        }
        ids
    }
}

/// A POST or PUT body. Its `members` and `externalId` replace the group's
/// (absent: none).
pub fn from_resource(body: &Value) -> Result<GroupChanges, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "the body must be a JSON object"))?;
    let mut changes = GroupChanges {
        members: vec![MemberChange::Replace(Vec::new())],
        external_id: Some(String::new()),
        ..GroupChanges::default()
    };
    set_attributes(&mut changes, Op::Replace, object)?;
    if changes
        .display_name
        .as_deref()
        .is_none_or(|name| name.trim().is_empty())
    {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "displayName: is required",
        ));
    }
    Ok(changes)
}

/// The values of a group to create: the extension's profile and units, else
/// the organization's default profile on all units.
pub fn new_group(changes: &GroupChanges, settings: &Settings) -> Result<GroupInput, ScimError> {
    let profile_id = match &changes.profile_id {
        Some(given) => given.clone(),
        None => default_profile(Some(settings))?,
    };
    let unit_ids = changes.units_after(Vec::new());
    Ok(GroupInput {
        name: changes.display_name.clone().unwrap_or_default(),
        description: String::new(),
        profile_id,
        scope: scope_kind(changes.unit_scope.as_deref(), &unit_ids)?,
        unit_ids,
        external_id: changes.external_id.clone().unwrap_or_default(),
    })
}

/// The organization's `scim_default_profile_id`, which a group takes when
/// none is given (`settings`: the organization's, when read).
fn default_profile(settings: Option<&Settings>) -> Result<String, ScimError> {
    match settings.and_then(|settings| settings.scim_default_profile_id) {
        Some(default) => Ok(default.to_string()),
        None => Err(ScimError::bad(
            ScimType::InvalidValue,
            format!(
                "{SCHEMA_ROSTER_GROUP}:profileId: a Roster group grants a profile, and none is set: \
                 give the group's profileId in this extension, or set the organization's \
                 scim_default_profile_id (UpdateOrganizationSettings) for every group created over SCIM"
            ),
        )),
    }
}

/// `unitScope` as given, else UNITS when units are named, else ALL_UNITS.
fn scope_kind(given: Option<&str>, unit_ids: &[String]) -> Result<Option<ScopeKind>, ScimError> {
    match given {
        Some(raw) => ScopeKind::parse(&raw.trim().to_ascii_uppercase())
            .map(Some)
            .ok_or_else(|| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    format!(
                        "{SCHEMA_ROSTER_GROUP}:unitScope: {} is not ALL_UNITS, UNITS or NO_UNIT",
                        crate::domain::echo(raw)
                    ),
                )
            }),
        None if unit_ids.is_empty() => Ok(Some(ScopeKind::AllUnits)),
        None => Ok(Some(ScopeKind::Units)),
    }
}

/// The update of `current`'s values these changes make; `None` when they
/// change none (members only, or the same name again, as Okta's PUT sends
/// it). Units named without a scope make the scope UNITS; a scope other than
/// UNITS drops the units.
/// `settings` (the organization's) are needed when the profile goes back to
/// the default.
pub fn update(
    changes: &GroupChanges,
    current: &Group,
    settings: Option<&Settings>,
) -> Result<Option<GroupUpdate>, ScimError> {
    let mut fields = Vec::new();
    let mut input = GroupInput::default();
    if let Some(name) = &changes.display_name {
        fields.push(GroupField::Name);
        input.name.clone_from(name);
    }
    if changes.default_profile {
        fields.push(GroupField::ProfileId);
        input.profile_id = default_profile(settings)?;
    } else if let Some(profile_id) = &changes.profile_id {
        fields.push(GroupField::ProfileId);
        input.profile_id.clone_from(profile_id);
    }
    if changes.touches_units() {
        fields.push(GroupField::UnitIds);
        let held = current
            .scope
            .unit_ids()
            .iter()
            .map(Uuid::to_string)
            .collect();
        input.unit_ids = changes.units_after(held);
    }
    if let Some(external_id) = &changes.external_id {
        fields.push(GroupField::ExternalId);
        input.external_id.clone_from(external_id);
    }
    if changes.unit_scope.is_some() || changes.touches_units() {
        fields.push(GroupField::UnitScope);
        input.scope = match changes.unit_scope.as_deref() {
            Some(given) => scope_kind(Some(given), &input.unit_ids)?,
            None if !input.unit_ids.is_empty() => Some(ScopeKind::Units),
            // Units taken away never widen the scope: a group on some units
            // left with none is refused, any other keeps its scope.
            None => match ScopeKind::of(&current.scope) {
                ScopeKind::Units => {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        format!(
                            "{SCHEMA_ROSTER_GROUP}:unitIds: this leaves the group on no unit; \
                             give unitScope ALL_UNITS or NO_UNIT to say which"
                        ),
                    ))
                }
                kept => Some(kept),
            },
        };
    }
    let update = GroupUpdate { fields, input };
    let unchanged = GroupUpdate {
        fields: Vec::new(),
        input: GroupInput::default(),
    };
    let changes_something = update.merged_onto(current) != unchanged.merged_onto(current);
    Ok(changes_something.then_some(update))
}

/// A domain error about a group, its fields named as SCIM attributes.
pub fn scim_error(error: DomainError) -> ScimError {
    let rename = |field: &str| -> String {
        let (name, rest) = field
            .split_once('[')
            .map_or((field, String::new()), |(name, rest)| {
                (name, format!("[{rest}"))
            });
        let scim = match name {
            "group.name" => "displayName".to_owned(),
            "group.profile_id" => format!("{SCHEMA_ROSTER_GROUP}:profileId"),
            "group.unit_ids" => format!("{SCHEMA_ROSTER_GROUP}:unitIds"),
            "group.unit_scope" => format!("{SCHEMA_ROSTER_GROUP}:unitScope"),
            "group.external_id" => "externalId".to_owned(),
            other => other.to_owned(),
        };
        format!("{scim}{rest}")
    };
    let error = match error {
        DomainError::InvalidArgument(violations) => DomainError::InvalidArgument(
            violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: rename(&v.field),
                    ..v
                })
                .collect(),
        ),
        DomainError::NotFoundField { field, message } => DomainError::NotFoundField {
            field: rename(&field),
            message,
        },
        DomainError::AlreadyExists {
            reason,
            field,
            message,
        } => DomainError::AlreadyExists {
            reason,
            field: rename(&field),
            message,
        },
        other => other,
    };
    ScimError::from(error)
}

/// Applies a PATCH body (RFC 7644 §3.5.2). An operation without a path
/// carries an object of attributes (Okta's `{"id": …, "displayName": …}`).
pub fn patch(body: &Value) -> Result<GroupChanges, ScimError> {
    let mut changes = GroupChanges::default();
    each_patch_operation(
        body,
        SCHEMA_ROSTER_GROUP,
        |op, target, value| match target {
            PatchTarget::Extension(_) => set_extension(&mut changes, op, value),
            PatchTarget::Path(path) => apply_path(&mut changes, op, &path, value),
            PatchTarget::Attributes(object) => set_attributes(&mut changes, op, object),
        },
    )?;
    Ok(changes)
}

/// The attributes of a resource or of a path-less operation's value.
fn set_attributes(
    changes: &mut GroupChanges,
    op: Op,
    object: &Map<String, Value>,
) -> Result<(), ScimError> {
    for (key, value) in object {
        // Read-only attributes in a body are ignored (RFC 7643 §2.2).
        let read_only = ["id", "meta", "schemas"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key));
        if value.is_null() || read_only {
            continue;
        }
        if key.eq_ignore_ascii_case(SCHEMA_ROSTER_GROUP) {
            set_extension(changes, op, value)?;
            continue;
        }
        apply_path(changes, op, &attribute_path(key)?, value)?;
    }
    Ok(())
}

/// The extension as a whole: an object of its attributes.
fn set_extension(changes: &mut GroupChanges, op: Op, value: &Value) -> Result<(), ScimError> {
    if op == Op::Remove {
        // The extension removed: the defaults of a group created without it.
        changes.default_profile = true;
        changes.profile_id = None;
        changes.unit_scope = Some("ALL_UNITS".to_owned());
        changes.unit_ids = Some(Vec::new());
        changes.unit_edits.clear();
        return Ok(());
    }
    let object = value.as_object().ok_or_else(|| {
        ScimError::bad(
            ScimType::InvalidValue,
            format!("{SCHEMA_ROSTER_GROUP} must be an object"),
        )
    })?;
    for (name, value) in object {
        // An extension object may carry its `schemas` (read-only, ignored).
        if name.eq_ignore_ascii_case("schemas") || value.is_null() {
            continue;
        }
        let path = AttrPath {
            uri: Some(SCHEMA_ROSTER_GROUP.to_owned()),
            name: name.clone(),
            sub: None,
        };
        set(changes, op, &path, value)?;
    }
    Ok(())
}

fn apply_path(
    changes: &mut GroupChanges,
    op: Op,
    path: &PatchPath,
    value: &Value,
) -> Result<(), ScimError> {
    let Some(filter) = &path.filter else {
        return set(changes, op, &path.attr, value);
    };
    // `members[value eq "…"]`: only removing the members it names.
    let is_members = path.attr.uri.is_none()
        && path.attr.name.eq_ignore_ascii_case("members")
        && path.sub.is_none();
    if !is_members {
        return Err(ScimError::bad(
            ScimType::InvalidPath,
            format!(
                "{}: only members takes a value filter (members[value eq \"…\"])",
                path.attr
            ),
        ));
    }
    if op != Op::Remove {
        return Err(ScimError::bad(
            ScimType::InvalidPath,
            "members[…] takes remove; add members with the path members and a list of {\"value\": user id}",
        ));
    }
    let mut ids = Vec::new();
    member_values(filter, &mut ids)?;
    changes.members.push(MemberChange::Remove(ids));
    Ok(())
}

/// The user ids a members value filter names: `value eq "…"`, joined by `or`.
fn member_values(filter: &Filter, ids: &mut Vec<Uuid>) -> Result<(), ScimError> {
    match filter {
        Filter::Or(left, right) => {
            member_values(left, ids)?;
            member_values(right, ids)
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(raw),
        } if path.uri.is_none()
            && path.sub.is_none()
            && path.name.eq_ignore_ascii_case("value") =>
        {
            // An id that is no UUID is no member: nothing to remove.
            ids.extend(Uuid::parse_str(raw.trim()).ok());
            Ok(())
        }
        _ => Err(ScimError::bad(
            ScimType::InvalidFilter,
            "members[…] takes value eq \"user id\" (several joined by or)",
        )),
    }
}

/// One attribute set, added to or removed.
fn set(
    changes: &mut GroupChanges,
    op: Op,
    path: &AttrPath,
    value: &Value,
) -> Result<(), ScimError> {
    let uri = path.uri.as_deref();
    let extension = uri.is_some_and(|uri| uri.eq_ignore_ascii_case(SCHEMA_ROSTER_GROUP));
    if uri.is_some_and(|uri| !extension && !uri.eq_ignore_ascii_case(SCHEMA_GROUP)) {
        return Err(unknown_attribute(path));
    }
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    match (extension, name.as_str(), sub.as_deref()) {
        (false, "displayname", None) => {
            if op == Op::Remove {
                return Err(ScimError::bad(
                    ScimType::Mutability,
                    "displayName is required: replace it instead",
                ));
            }
            let name = value.as_str().ok_or_else(|| {
                ScimError::bad(ScimType::InvalidValue, "displayName must be a string")
            })?;
            changes.display_name = Some(name.to_owned());
        }
        (false, "members", None) => {
            let change = match op {
                Op::Remove if value.is_null() => MemberChange::Replace(Vec::new()),
                Op::Remove => MemberChange::Remove(member_ids(value)?),
                Op::Add => MemberChange::Add(member_ids(value)?),
                Op::Replace => MemberChange::Replace(member_ids(value)?),
            };
            changes.members.push(change);
        }
        (false, "externalid", None) => {
            changes.external_id = Some(match op {
                Op::Remove => String::new(),
                _ => text(value, path)?,
            });
        }
        (false, "id" | "meta", _) => {
            return Err(ScimError::bad(
                ScimType::Mutability,
                format!("{path} is read-only"),
            ))
        }
        (true, "profileid", None) if op != Op::Remove => {
            changes.profile_id = Some(text(value, path)?);
            changes.default_profile = false;
        }
        (true, "unitscope", None) if op != Op::Remove => {
            changes.unit_scope = Some(text(value, path)?);
        }
        (true, "unitids", None) => set_unit_ids(changes, op, path, value)?,
        // Removed, each goes back to what a group created without it takes.
        (true, "profileid", None) => {
            changes.default_profile = true;
            changes.profile_id = None;
        }
        (true, "unitscope", None) => {
            changes.unit_scope = Some("ALL_UNITS".to_owned());
            changes.unit_ids = Some(Vec::new());
            changes.unit_edits.clear();
        }
        _ => return Err(unknown_attribute(path)),
    }
    Ok(())
}

/// The group's units, given one id or several.
fn set_unit_ids(
    changes: &mut GroupChanges,
    op: Op,
    path: &AttrPath,
    value: &Value,
) -> Result<(), ScimError> {
    let ids = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|item| text(item, path))
            .collect::<Result<_, _>>()?,
        _ => vec![text(value, path)?],
    };
    match op {
        // A remove without a value removes them all.
        Op::Remove if value.is_null() => {
            changes.unit_ids = Some(Vec::new());
            changes.unit_edits.clear();
        }
        Op::Remove => changes.unit_edits.push(UnitEdit::Remove(ids)),
        Op::Add => changes.unit_edits.push(UnitEdit::Add(ids)),
        Op::Replace => {
            changes.unit_ids = Some(ids);
            changes.unit_edits.clear();
        }
    }
    Ok(())
}

fn text(value: &Value, path: &AttrPath) -> Result<String, ScimError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, format!("{path} must be a string")))
}

fn unknown_attribute(path: &AttrPath) -> ScimError {
    ScimError::bad(
        ScimType::InvalidPath,
        format!("{path} is not an attribute of Group (displayName, members, externalId, {SCHEMA_ROSTER_GROUP}:profileId, unitScope, unitIds)"),
    )
}

/// The user ids of a `members` value: a list of `{"value": id}` (one
/// object alone is taken too). Each must be a user's id; `type` may only
/// be `User` (Roster groups do not nest).
fn member_ids(value: &Value) -> Result<Vec<Uuid>, ScimError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "members must be a list of {\"value\": user id}",
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("User");
            if !kind.eq_ignore_ascii_case("User") {
                return Err(ScimError::bad(
                    ScimType::InvalidValue,
                    format!(
                        "members[{index}].type: {} members are not kept: Roster groups hold users, not groups",
                        crate::domain::echo(kind)
                    ),
                ));
            }
            let raw = item.get("value").and_then(Value::as_str).ok_or_else(|| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    format!("members[{index}].value: is required (a user id)"),
                )
            })?;
            Uuid::parse_str(raw.trim()).map_err(|_| {
                ScimError::bad(
                    ScimType::InvalidValue,
                    format!(
                        "members[{index}].value: {} is not a user of this organization (user ids are UUIDs)",
                        crate::domain::echo(raw)
                    ),
                )
            })
        })
        .collect()
}

/// The attributes a filter may name.
const FILTERABLE: &str =
    "displayName, id, externalId, members(.value), meta.created, meta.lastModified";

fn bad_filter(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

/// A list's filter as a condition on groups; anything it cannot mean is
/// refused as `invalidFilter` naming the problem.
pub fn condition(filter: &Filter) -> Result<GroupCondition, ScimError> {
    condition_within(filter, false)
}

fn condition_within(filter: &Filter, in_members: bool) -> Result<GroupCondition, ScimError> {
    let boxed = |filter: &Filter| condition_within(filter, in_members).map(Box::new);
    Ok(match filter {
        Filter::And(left, right) => GroupCondition::And(boxed(left)?, boxed(right)?),
        Filter::Or(left, right) => GroupCondition::Or(boxed(left)?, boxed(right)?),
        Filter::Not(inner) => GroupCondition::Not(boxed(inner)?),
        Filter::Present(path) => match field(path, in_members)? {
            Field::ExternalId => GroupCondition::HasExternalId,
            Field::Members => {
                return Err(bad_filter(format!(
                    "{path} pr: members take eq with a user id (members[value eq \"…\"])"
                )))
            }
            _ => GroupCondition::Always(true),
        },
        Filter::Compare { path, op, value } => {
            comparison(field(path, in_members)?, path, *op, value)?
        }
        Filter::ValuePath { path, filter } => {
            let members = path.uri.is_none()
                && path.sub.is_none()
                && path.name.eq_ignore_ascii_case("members");
            if in_members || !members {
                return Err(bad_filter(format!(
                    "{path}[…]: only members takes a value filter, and they do not nest"
                )));
            }
            condition_within(filter, true)?
        }
    })
}

/// What a filter's attribute is on a group.
enum Field {
    DisplayName,
    Id,
    ExternalId,
    Members,
    Time(TimeField),
}

fn field(path: &AttrPath, in_members: bool) -> Result<Field, ScimError> {
    let unknown = || {
        bad_filter(format!(
            "{path} cannot be filtered on; filterable: {FILTERABLE}"
        ))
    };
    if path
        .uri
        .as_deref()
        .is_some_and(|uri| !uri.eq_ignore_ascii_case(SCHEMA_GROUP))
    {
        return Err(unknown());
    }
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    if in_members {
        return match (name.as_str(), sub) {
            ("value", None) => Ok(Field::Members),
            _ => Err(bad_filter(format!(
                "members[{path} …]: members take value eq \"user id\""
            ))),
        };
    }
    Ok(match (name.as_str(), sub.as_deref()) {
        ("displayname", None) => Field::DisplayName,
        ("id", None) => Field::Id,
        ("externalid", None) => Field::ExternalId,
        ("members", None | Some("value")) => Field::Members,
        ("meta", Some("created")) => Field::Time(TimeField::Created),
        ("meta", Some("lastmodified")) => Field::Time(TimeField::LastModified),
        _ => return Err(unknown()),
    })
}

fn comparison(
    field: Field,
    path: &AttrPath,
    op: CompareOp,
    value: &Value,
) -> Result<GroupCondition, ScimError> {
    let eq_or_ne = |matches: GroupCondition| match op {
        CompareOp::Eq => Ok(matches),
        CompareOp::Ne => Ok(GroupCondition::Not(Box::new(matches))),
        _ => Err(bad_filter(format!("{path} takes eq, ne or pr"))),
    };
    let id = || {
        value
            .as_str()
            .and_then(|raw| Uuid::parse_str(raw.trim()).ok())
    };
    Ok(match field {
        Field::DisplayName => {
            let (op, value) = text_comparison(path, op, value)?;
            GroupCondition::Name { op, value }
        }
        Field::ExternalId => {
            let (op, value) = text_comparison(path, op, value)?;
            GroupCondition::ExternalId { op, value }
        }
        Field::Id => eq_or_ne(id().map_or(GroupCondition::Always(false), GroupCondition::Id))?,
        Field::Members => {
            eq_or_ne(id().map_or(GroupCondition::Always(false), GroupCondition::Member))?
        }
        Field::Time(field) => {
            let (op, value) = time_comparison(path, op, value)?;
            GroupCondition::Time { field, op, value }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain::user::TextOp, scim::filter::parse_filter};

    const ANA: &str = "0192a1b2-0000-7000-8000-000000000001";
    const BO: &str = "0192a1b2-0000-7000-8000-000000000002";

    fn id(raw: &str) -> Uuid {
        Uuid::parse_str(raw).unwrap()
    }

    fn patch_of(operations: Value) -> Result<GroupChanges, ScimError> {
        patch(&json!({ "schemas": [crate::scim::SCHEMA_PATCH], "Operations": operations }))
    }

    #[test]
    fn entra_adds_and_removes_members_with_capitalised_ops() {
        let changes = patch_of(json!([
            { "op": "Add", "path": "members", "value": [{ "value": ANA }] },
            { "op": "Remove", "path": "members", "value": [{ "value": BO }] },
        ]))
        .unwrap();
        assert_eq!(
            changes.members,
            [
                MemberChange::Add(vec![id(ANA)]),
                MemberChange::Remove(vec![id(BO)])
            ]
        );
    }

    #[test]
    fn okta_removes_by_value_filter_and_renames_without_a_path() {
        let changes = patch_of(json!([
            { "op": "remove", "path": format!("members[value eq \"{ANA}\"]") },
            { "op": "replace", "value": { "id": "x", "displayName": "Sales" } },
        ]))
        .unwrap();
        assert_eq!(changes.members, [MemberChange::Remove(vec![id(ANA)])]);
        assert_eq!(changes.display_name.as_deref(), Some("Sales"));
    }

    #[test]
    fn members_must_be_user_ids() {
        let error = patch_of(json!([
            { "op": "add", "path": "members", "value": [{ "value": ANA }, { "value": "bob" }] },
        ]))
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
        assert!(
            error.detail.contains("members[1].value: `bob`"),
            "{}",
            error.detail
        );
        let error = from_resource(&json!({
            "displayName": "G", "members": [{ "value": ANA, "type": "Group" }],
        }))
        .unwrap_err();
        assert!(
            error.detail.contains("hold users, not groups"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn a_put_replaces_the_members_and_needs_a_display_name() {
        let changes = from_resource(&json!({ "displayName": "G", "externalId": "e" })).unwrap();
        assert_eq!(changes.members, [MemberChange::Replace(vec![])]);
        let error = from_resource(&json!({ "members": [] })).unwrap_err();
        assert_eq!(error.detail, "displayName: is required");
    }

    #[test]
    fn the_extension_sets_the_profile_and_units() {
        let unit = "0192a1b2-0000-7000-8000-0000000000aa";
        let changes = from_resource(&json!({
            "displayName": "G",
            SCHEMA_ROSTER_GROUP: { "profileId": ANA, "unitIds": [unit] },
        }))
        .unwrap();
        let input = new_group(&changes, &settings(None)).unwrap();
        assert_eq!(
            (input.profile_id.as_str(), input.scope, input.unit_ids),
            (ANA, Some(ScopeKind::Units), vec![unit.to_owned()])
        );
    }

    fn settings(profile: Option<Uuid>) -> Settings {
        Settings {
            allow_duplicate_emails: false,
            public_email_domain_policy: crate::domain::organization::PublicEmailDomainPolicy::Allow,
            invitation_ttl_seconds: 1,
            password_reset_ttl_seconds: 1,
            access_token_ttl_seconds: 1,
            locale: crate::domain::organization::Locale::En,
            display_name: String::new(),
            max_sessions_per_user: None,
            password_max_age_seconds: None,
            require_second_factor: false,
            scim_default_profile_id: profile,
            scim_send_invitations: true,
        }
    }

    #[test]
    fn without_a_profile_anywhere_the_create_names_the_setting() {
        let changes = from_resource(&json!({ "displayName": "G" })).unwrap();
        let error = new_group(&changes, &settings(None)).unwrap_err();
        assert!(
            error.detail.contains("scim_default_profile_id"),
            "{}",
            error.detail
        );
        let input = new_group(&changes, &settings(Some(id(BO)))).unwrap();
        assert_eq!(
            (input.profile_id.as_str(), input.scope),
            (BO, Some(ScopeKind::AllUnits))
        );
    }

    #[test]
    fn filters_become_group_conditions() {
        let parsed = parse_filter(&format!(
            "displayName eq \"Sales\" and members[value eq \"{ANA}\"] and externalId pr"
        ))
        .unwrap();
        assert_eq!(
            condition(&parsed).unwrap(),
            GroupCondition::And(
                Box::new(GroupCondition::And(
                    Box::new(GroupCondition::Name {
                        op: TextOp::Equals,
                        value: "Sales".into()
                    }),
                    Box::new(GroupCondition::Member(id(ANA))),
                )),
                Box::new(GroupCondition::HasExternalId),
            )
        );
        for (filter, words) in [
            (r#"title eq "x""#, "cannot be filtered on"),
            (r#"displayName gt "a""#, "compare dates"),
            (r#"members[display eq "a"]"#, "value eq"),
        ] {
            let error = condition(&parse_filter(filter).unwrap()).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{filter}");
            assert!(error.detail.contains(words), "{filter}: {}", error.detail);
        }
    }
}
