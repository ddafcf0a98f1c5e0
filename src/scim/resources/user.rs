//! The SCIM `User` as a Roster user: the mapping both ways, PATCH, and
//! filters as user conditions. Roster keeps one email and one phone number
//! (both of type `work`); values of other types are ignored. Of several
//! entries the `primary` one is kept; answers carry no `primary` flag (of
//! one value it tells nothing, and /Schemas declares none).
//! `employeeNumber` (enterprise extension) is the custom attribute
//! `employee_number`, which the organization defines to use it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    domain::{
        call::Call,
        group::GivenGroups,
        request::IdempotencyKey,
        user::{
            self, AdminState, AttributeMask, NewUser, Origin, TextField, TimeField, User,
            UserCondition, UserField, UserInput, UserOrdering, UserRevision, UserSort, UserStatus,
            UserUpdate, UserValues,
        },
        DomainError,
    },
    scim::{
        errors::{ScimError, ScimType},
        filter::{parse_path, AttrPath, CompareOp, Filter, PatchPath},
        resources::{
            attribute_path, each_patch_operation, text_comparison, time_comparison, PatchOp as Op,
            PatchTarget,
        },
        SCHEMA_ENTERPRISE_USER, SCHEMA_USER,
    },
};

/// The custom attribute that holds `employeeNumber`.
pub const EMPLOYEE_NUMBER_KEY: &str = "employee_number";

/// What SCIM sees of a user: the values it can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    pub user_name: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
    pub employee_number: Option<String>,
}

impl ScimUser {
    pub fn of(user: &User) -> Self {
        Self {
            user_name: user.username.clone(),
            given_name: user.first_name.clone(),
            family_name: user.last_name.clone(),
            email: user.email.clone(),
            phone: user.phone.clone(),
            external_id: user.external_id.clone(),
            active: is_active(user.status),
            employee_number: user
                .attributes
                .get(EMPLOYEE_NUMBER_KEY)
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    fn input(&self) -> UserInput {
        UserInput {
            first_name: self.given_name.clone(),
            last_name: self.family_name.clone(),
            email: self.email.clone(),
            username: self.user_name.clone(),
            phone: self
                .phone
                .as_deref()
                .map(without_tel_scheme)
                .unwrap_or_default(),
            external_id: self.external_id.clone().unwrap_or_default(),
        }
    }

    fn attributes(&self) -> user::AttributeInput {
        self.employee_number
            .iter()
            .map(|number| (EMPLOYEE_NUMBER_KEY.to_owned(), json!(number)))
            .collect()
    }
}

/// RFC 7643 suggests RFC 3966 `tel:` URIs for phone numbers
/// (`tel:+1-201-555-0123`): the number after the scheme, which Roster's
/// phone rule then normalizes (or refuses, naming the rule).
fn without_tel_scheme(raw: &str) -> String {
    let raw = raw.trim();
    match raw.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => raw[4..].to_owned(),
        _ => raw.to_owned(),
    }
}

/// SCIM's `active`: the admin state is ACTIVE (the user may be still
/// invited: PENDING, EXPIRED).
fn is_active(status: UserStatus) -> bool {
    matches!(
        status,
        UserStatus::Active | UserStatus::Pending | UserStatus::Expired
    )
}

/// The weak ETag of a user's current version: its update time.
pub fn version(user: &User) -> String {
    format!("W/\"{}\"", user.update_time.timestamp_micros())
}

fn time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The user as a SCIM resource; `base_url` ends in `/scim/v2`.
pub fn resource(user: &User, base_url: &str) -> Value {
    let scim = ScimUser::of(user);
    let mut schemas = vec![SCHEMA_USER];
    let mut body = json!({
        "id": user.id.to_string(),
        "userName": scim.user_name,
        "name": { "givenName": scim.given_name, "familyName": scim.family_name },
        "active": scim.active,
        "emails": [{ "value": scim.email, "type": "work" }],
        "meta": {
            "resourceType": "User",
            "created": time(user.create_time),
            "lastModified": time(user.update_time),
            "version": version(user),
            "location": format!("{base_url}/Users/{}", user.id),
        },
    });
    if let Some(external_id) = scim.external_id {
        body["externalId"] = json!(external_id);
    }
    if let Some(phone) = scim.phone {
        body["phoneNumbers"] = json!([{ "value": phone, "type": "work" }]);
    }
    if let Some(number) = scim.employee_number {
        schemas.push(SCHEMA_ENTERPRISE_USER);
        body[SCHEMA_ENTERPRISE_USER] = json!({ "employeeNumber": number });
    }
    body["schemas"] = json!(schemas);
    body
}

/// A POST or PUT body as the user's values; `current` gives what PUT
/// leaves alone (`active` when absent).
pub fn from_resource(body: &Value, current: Option<&ScimUser>) -> Result<ScimUser, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "the body must be a JSON object"))?;
    let mut scim = ScimUser {
        user_name: String::new(),
        given_name: String::new(),
        family_name: String::new(),
        email: String::new(),
        phone: None,
        external_id: None,
        active: current.is_none_or(|current| current.active),
        employee_number: None,
    };
    for (key, value) in object {
        // Read-only attributes in a body are ignored (RFC 7643 §2.2).
        let read_only = ["id", "meta"].iter().any(|k| k.eq_ignore_ascii_case(key));
        if value.is_null() || read_only {
            continue;
        }
        apply_key(&mut scim, Op::Replace, key, value)?;
    }
    if scim.user_name.trim().is_empty() {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "userName: is required",
        ));
    }
    Ok(scim)
}

/// Creates the user through the domain's one path, invited as over gRPC
/// unless the organization's `scim_send_invitations` is off; with a key, a
/// retry returns the user the first create made.
pub async fn create(
    call: &Call,
    scim: &ScimUser,
    request_id: Option<IdempotencyKey>,
) -> Result<User, ScimError> {
    let values = UserValues::parse(&scim.input(), "").map_err(DomainError::InvalidArgument)?;
    let new_user = NewUser {
        origin: Origin::Create,
        values,
        groups: GivenGroups::default(),
        source: None,
        deactivated: !scim.active,
        send_invitation: true,
        request_id,
        attributes: scim.attributes(),
    };
    Ok(user::create_user(call, &new_user).await?.user)
}

/// What a PUT or PATCH writes to get from `before` to `after`: the values
/// and the admin state together, so the change is one audited update.
pub fn revision(user_id: Uuid, before: &ScimUser, after: &ScimUser) -> UserRevision {
    let attribute_mask = if after.employee_number == before.employee_number {
        AttributeMask::Untouched
    } else {
        AttributeMask::Keys(vec![EMPLOYEE_NUMBER_KEY.to_owned()])
    };
    let admin_state = (after.active != before.active).then_some(if after.active {
        AdminState::Active
    } else {
        AdminState::Inactive
    });
    UserRevision {
        update: UserUpdate {
            user_id,
            fields: UserField::ALL.to_vec(),
            input: after.input(),
            attribute_mask,
            attributes: after.attributes(),
        },
        admin_state,
    }
}

/// Applies a PATCH body (RFC 7644 §3.5.2) to the user's values. An
/// operation without a path carries an object of attributes (Okta's
/// `{"active": false}`).
pub fn apply_patch(scim: &mut ScimUser, body: &Value) -> Result<(), ScimError> {
    each_patch_operation(
        body,
        SCHEMA_ENTERPRISE_USER,
        |op, target, value| match target {
            PatchTarget::Extension(urn) => apply_key(scim, op, urn, value),
            PatchTarget::Path(path) => apply_path(scim, op, &path, value),
            PatchTarget::Attributes(object) => object
                .iter()
                .try_for_each(|(key, value)| apply_key(scim, op, key, value)),
        },
    )
}

/// One attribute of a resource or of a path-less operation's value; the
/// key may be a path (`name.givenName`) or an extension's URN.
fn apply_key(scim: &mut ScimUser, op: Op, key: &str, value: &Value) -> Result<(), ScimError> {
    if key.eq_ignore_ascii_case(SCHEMA_ENTERPRISE_USER) {
        if op == Op::Remove {
            scim.employee_number = None;
            return Ok(());
        }
        let object = value.as_object().ok_or_else(|| {
            ScimError::bad(ScimType::InvalidValue, format!("{key} must be an object"))
        })?;
        for (name, value) in object {
            let path = AttrPath {
                uri: Some(SCHEMA_ENTERPRISE_USER.to_owned()),
                name: name.clone(),
                sub: None,
            };
            set(scim, op, target(&path)?, value)?;
        }
        return Ok(());
    }
    apply_path(scim, op, &attribute_path(key)?, value)
}

fn apply_path(
    scim: &mut ScimUser,
    op: Op,
    path: &PatchPath,
    value: &Value,
) -> Result<(), ScimError> {
    let target = target(&path.attr)?;
    let Some(filter) = &path.filter else {
        return set(scim, op, target, value);
    };
    let (slot, whole, single) = match target {
        Target::Emails => (json!(scim.email), Target::Emails, Target::Email),
        Target::PhoneNumbers => (json!(scim.phone), Target::PhoneNumbers, Target::Phone),
        _ => {
            return Err(ScimError::bad(
                ScimType::InvalidPath,
                format!(
                    "{}: only emails and phoneNumbers take a value filter",
                    path.attr
                ),
            ))
        }
    };
    let entry = json!({ "value": slot, "type": "work", "primary": true });
    // Another type, or another value: not one Roster keeps.
    if !entry_matches(filter, &entry)? {
        return Ok(());
    }
    match path.sub.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => set(scim, op, whole, &json!([value])),
        Some("value") => set(scim, op, single, value),
        Some(_) => Ok(()),
    }
}

/// What an attribute path changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    UserName,
    Name,
    GivenName,
    FamilyName,
    Emails,
    Email,
    PhoneNumbers,
    Phone,
    ExternalId,
    Active,
    EmployeeNumber,
    /// Part of the schema that Roster does not keep (`displayName`, `title`…).
    Ignored,
}

/// Core User and enterprise attributes Roster does not keep: accepted and ignored.
const NOT_KEPT: [&str; 20] = [
    "displayname",
    "nickname",
    "profileurl",
    "title",
    "usertype",
    "preferredlanguage",
    "locale",
    "timezone",
    "password",
    "addresses",
    "ims",
    "photos",
    "groups",
    "entitlements",
    "roles",
    "x509certificates",
    "schemas",
    "costcenter",
    "organization",
    "division",
];

fn target(path: &AttrPath) -> Result<Target, ScimError> {
    let uri = path.uri.as_deref();
    let enterprise = uri.is_some_and(|uri| uri.eq_ignore_ascii_case(SCHEMA_ENTERPRISE_USER));
    if uri.is_some_and(|uri| !enterprise && !uri.eq_ignore_ascii_case(SCHEMA_USER)) {
        return Err(unknown_attribute(path));
    }
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    if enterprise {
        return match (name.as_str(), sub) {
            ("employeenumber", None) => Ok(Target::EmployeeNumber),
            (
                "costcenter" | "organization" | "division" | "department" | "manager" | "schemas",
                _,
            ) => Ok(Target::Ignored),
            _ => Err(unknown_attribute(path)),
        };
    }
    Ok(match (name.as_str(), sub.as_deref()) {
        ("username", None) => Target::UserName,
        ("externalid", None) => Target::ExternalId,
        ("active", None) => Target::Active,
        ("name", None) => Target::Name,
        ("name", Some("givenname")) => Target::GivenName,
        ("name", Some("familyname")) => Target::FamilyName,
        ("name", Some(_)) => Target::Ignored,
        ("emails", None) => Target::Emails,
        ("emails", Some("value")) => Target::Email,
        ("phonenumbers", None) => Target::PhoneNumbers,
        ("phonenumbers", Some("value")) => Target::Phone,
        ("emails" | "phonenumbers", Some(_)) => Target::Ignored,
        ("id" | "meta", _) => {
            return Err(ScimError::bad(
                ScimType::Mutability,
                format!("{path} is read-only"),
            ))
        }
        (other, _) if NOT_KEPT.contains(&other) => Target::Ignored,
        _ => return Err(unknown_attribute(path)),
    })
}

fn unknown_attribute(path: &AttrPath) -> ScimError {
    ScimError::bad(
        ScimType::InvalidPath,
        format!("{path} is not an attribute of User"),
    )
}

fn set(scim: &mut ScimUser, op: Op, what: Target, value: &Value) -> Result<(), ScimError> {
    let remove = op == Op::Remove;
    match what {
        Target::UserName if remove => {
            return Err(required("userName"));
        }
        Target::UserName => scim.user_name = text(value, "userName")?,
        Target::GivenName => scim.given_name = text_or_empty(remove, value, "name.givenName")?,
        Target::FamilyName => scim.family_name = text_or_empty(remove, value, "name.familyName")?,
        Target::Name if remove => return Err(required("name")),
        Target::Name => {
            let object = value
                .as_object()
                .ok_or_else(|| invalid("name", "must be an object"))?;
            for (key, value) in object {
                let path = AttrPath {
                    uri: None,
                    name: "name".into(),
                    sub: Some(key.clone()),
                };
                set(scim, op, target(&path)?, value)?;
            }
        }
        Target::Email => scim.email = text_or_empty(remove, value, "emails.value")?,
        Target::Emails if remove => scim.email = String::new(),
        Target::Emails => scim.email = primary_value(value, "emails")?.unwrap_or_default(),
        Target::Phone => scim.phone = optional_text(remove, value, "phoneNumbers.value")?,
        Target::PhoneNumbers if remove => scim.phone = None,
        Target::PhoneNumbers => scim.phone = primary_value(value, "phoneNumbers")?,
        Target::ExternalId => scim.external_id = optional_text(remove, value, "externalId")?,
        Target::EmployeeNumber => {
            scim.employee_number = optional_text(remove, value, "employeeNumber")?
        }
        Target::Active if remove => return Err(required("active")),
        Target::Active => scim.active = boolean(value, "active")?,
        Target::Ignored => {}
    }
    Ok(())
}

fn invalid(attribute: &str, problem: &str) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, format!("{attribute}: {problem}"))
}

fn required(attribute: &str) -> ScimError {
    ScimError::bad(
        ScimType::Mutability,
        format!("{attribute} is required and cannot be removed"),
    )
}

fn text(value: &Value, attribute: &str) -> Result<String, ScimError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(attribute, "must be a string"))
}

fn text_or_empty(remove: bool, value: &Value, attribute: &str) -> Result<String, ScimError> {
    if remove {
        Ok(String::new())
    } else {
        text(value, attribute)
    }
}

fn optional_text(
    remove: bool,
    value: &Value,
    attribute: &str,
) -> Result<Option<String>, ScimError> {
    if remove || value.is_null() {
        return Ok(None);
    }
    let text = text(value, attribute)?;
    Ok(Some(text).filter(|text| !text.trim().is_empty()))
}

/// A boolean, or the strings `"True"` / `"False"` in any case (Entra).
fn boolean(value: &Value, attribute: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(value) => Ok(*value),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(attribute, "must be true or false")),
    }
}

/// The value of the primary entry of a multi-valued attribute (else the
/// first); a single object counts as a list of one.
fn primary_value(value: &Value, attribute: &str) -> Result<Option<String>, ScimError> {
    let entries: Vec<&Value> = match value {
        Value::Array(entries) => entries.iter().collect(),
        Value::Object(_) => vec![value],
        _ => {
            return Err(invalid(
                attribute,
                "must be a list of {\"value\": …} objects",
            ))
        }
    };
    let primary = entries
        .iter()
        .find(|entry| {
            entry
                .get("primary")
                .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
        })
        .or_else(|| entries.first());
    match primary {
        None => Ok(None),
        Some(entry) => match entry.get("value") {
            Some(Value::String(text)) => Ok(Some(text.clone())),
            _ => Err(invalid(attribute, "each entry needs a string value")),
        },
    }
}

/// Whether a value filter matches Roster's one entry (`value`, `type`
/// work, `primary` true); strings compare ignoring case.
fn entry_matches(filter: &Filter, entry: &Value) -> Result<bool, ScimError> {
    Ok(match filter {
        Filter::And(left, right) => entry_matches(left, entry)? && entry_matches(right, entry)?,
        Filter::Or(left, right) => entry_matches(left, entry)? || entry_matches(right, entry)?,
        Filter::Not(inner) => !entry_matches(inner, entry)?,
        Filter::Present(path) => !entry_field(entry, path).is_null(),
        Filter::Compare { path, op, value } => compare(entry_field(entry, path), *op, value),
        Filter::ValuePath { path, .. } => {
            return Err(ScimError::bad(
                ScimType::InvalidFilter,
                format!("{path}: value filters do not nest"),
            ))
        }
    })
}

fn entry_field<'a>(entry: &'a Value, path: &AttrPath) -> &'a Value {
    let key = path.name.to_ascii_lowercase();
    entry
        .as_object()
        .and_then(|object| object.iter().find(|(k, _)| k.to_ascii_lowercase() == key))
        .map_or(&Value::Null, |(_, value)| value)
}

/// A comparison of a known value in memory (a value filter's entry).
fn compare(actual: &Value, op: CompareOp, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(actual), Value::String(expected)) => {
            let (actual, expected) = (actual.to_lowercase(), expected.to_lowercase());
            match op {
                CompareOp::Eq => actual == expected,
                CompareOp::Ne => actual != expected,
                CompareOp::Co => actual.contains(&expected),
                CompareOp::Sw => actual.starts_with(&expected),
                CompareOp::Ew => actual.ends_with(&expected),
                CompareOp::Gt => actual > expected,
                CompareOp::Ge => actual >= expected,
                CompareOp::Lt => actual < expected,
                CompareOp::Le => actual <= expected,
            }
        }
        (actual, expected) => match op {
            CompareOp::Eq => actual == expected,
            CompareOp::Ne => actual != expected,
            _ => false,
        },
    }
}

/// The attributes a list may be sorted by.
const SORTABLE: &str = "userName, name.familyName, name.givenName, emails(.value), externalId, \
     meta.created, meta.lastModified, id";

/// `sortBy` and `sortOrder` (RFC 7644 §3.4.2.3) as the store's ordering;
/// without `sortBy`, the oldest first (or newest, when descending).
pub fn ordering(
    sort_by: Option<&str>,
    sort_order: Option<&str>,
) -> Result<UserOrdering, ScimError> {
    let descending = match sort_order.map(str::trim).filter(|o| !o.is_empty()) {
        None => false,
        Some(order) if order.eq_ignore_ascii_case("ascending") => false,
        Some(order) if order.eq_ignore_ascii_case("descending") => true,
        Some(other) => {
            return Err(invalid(
                "sortOrder",
                &format!(
                    "{} is neither ascending nor descending",
                    crate::domain::echo(other)
                ),
            ))
        }
    };
    let Some(raw) = sort_by.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(UserOrdering {
            by: UserSort::Created,
            descending,
        });
    };
    let unsortable = || {
        invalid(
            "sortBy",
            &format!(
                "{} cannot be sorted on; sortable: {SORTABLE}",
                crate::domain::echo(raw)
            ),
        )
    };
    let path = parse_path(raw)
        .ok()
        .filter(|path| path.filter.is_none())
        .ok_or_else(unsortable)?;
    let attr = path.attr;
    if attr
        .uri
        .as_deref()
        .is_some_and(|uri| !uri.eq_ignore_ascii_case(SCHEMA_USER))
    {
        return Err(unsortable());
    }
    let name = attr.name.to_ascii_lowercase();
    let sub = attr.sub.as_deref().map(str::to_ascii_lowercase);
    let by = match (name.as_str(), sub.as_deref()) {
        ("username", None) => UserSort::Username,
        ("name", Some("familyname")) => UserSort::LastName,
        ("name", Some("givenname")) => UserSort::FirstName,
        ("emails", None | Some("value")) => UserSort::Email,
        ("externalid", None) => UserSort::ExternalId,
        ("meta", Some("created")) => UserSort::Created,
        ("meta", Some("lastmodified")) => UserSort::LastModified,
        ("id", None) => UserSort::Id,
        _ => return Err(unsortable()),
    };
    Ok(UserOrdering { by, descending })
}

/// The attributes a filter may name.
const FILTERABLE: &str = "userName, name.givenName, name.familyName, emails(.value), \
     phoneNumbers(.value), externalId, active, id, meta.created, meta.lastModified";

/// What a filter's attribute is on a user.
enum Field {
    Text(TextField),
    Time(TimeField),
    Active,
    Id,
    /// Always this value (an entry's `type`, `primary`).
    Constant(Value),
}

/// A list's filter as a condition on users; anything it cannot mean is
/// refused as `invalidFilter` naming the problem.
pub fn condition(filter: &Filter) -> Result<UserCondition, ScimError> {
    condition_within(filter, None)
}

fn condition_within(filter: &Filter, parent: Option<&str>) -> Result<UserCondition, ScimError> {
    let boxed = |filter: &Filter| condition_within(filter, parent).map(Box::new);
    Ok(match filter {
        Filter::And(left, right) => UserCondition::And(boxed(left)?, boxed(right)?),
        Filter::Or(left, right) => UserCondition::Or(boxed(left)?, boxed(right)?),
        Filter::Not(inner) => UserCondition::Not(boxed(inner)?),
        Filter::Present(path) => match field(path, parent)? {
            Field::Text(field) => UserCondition::Present(field),
            Field::Time(_) | Field::Active | Field::Id => UserCondition::Always(true),
            Field::Constant(value) => UserCondition::Always(!value.is_null()),
        },
        Filter::Compare { path, op, value } => comparison(field(path, parent)?, path, *op, value)?,
        Filter::ValuePath { path, filter } => {
            if parent.is_some() {
                return Err(bad_filter(format!("{path}: value filters do not nest")));
            }
            let parent = match (
                &path.uri,
                path.name.to_ascii_lowercase().as_str(),
                &path.sub,
            ) {
                (None, "emails", None) => "emails",
                (None, "phonenumbers", None) => "phonenumbers",
                _ => {
                    return Err(bad_filter(format!(
                        "{path} takes no value filter; emails and phoneNumbers do"
                    )))
                }
            };
            condition_within(filter, Some(parent))?
        }
    })
}

fn bad_filter(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

fn field(path: &AttrPath, parent: Option<&str>) -> Result<Field, ScimError> {
    if path
        .uri
        .as_deref()
        .is_some_and(|uri| !uri.eq_ignore_ascii_case(SCHEMA_USER))
    {
        return Err(bad_filter(format!(
            "{path} cannot be filtered on; filterable: {FILTERABLE}"
        )));
    }
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    // Inside `emails[…]`, `value` is `emails.value`.
    let (name, sub) = match parent {
        Some(parent) if sub.is_none() => (parent.to_owned(), Some(name)),
        _ => (name, sub),
    };
    Ok(match (name.as_str(), sub.as_deref()) {
        ("username", None) => Field::Text(TextField::Username),
        ("externalid", None) => Field::Text(TextField::ExternalId),
        ("name", Some("givenname")) => Field::Text(TextField::FirstName),
        ("name", Some("familyname")) => Field::Text(TextField::LastName),
        ("emails", None | Some("value")) => Field::Text(TextField::Email),
        ("phonenumbers", None | Some("value")) => Field::Text(TextField::Phone),
        ("emails" | "phonenumbers", Some("type")) => Field::Constant(json!("work")),
        ("emails" | "phonenumbers", Some("primary")) => Field::Constant(json!(true)),
        ("meta", Some("lastmodified")) => Field::Time(TimeField::LastModified),
        ("meta", Some("created")) => Field::Time(TimeField::Created),
        ("active", None) => Field::Active,
        ("id", None) => Field::Id,
        _ => {
            return Err(bad_filter(format!(
                "{path} cannot be filtered on; filterable: {FILTERABLE}"
            )))
        }
    })
}

fn comparison(
    field: Field,
    path: &AttrPath,
    op: CompareOp,
    value: &Value,
) -> Result<UserCondition, ScimError> {
    let op_name = op.as_str();
    Ok(match field {
        Field::Text(field) => {
            let (op, value) = text_comparison(path, op, value)?;
            UserCondition::Text { field, op, value }
        }
        Field::Time(field) => {
            let (op, value) = time_comparison(path, op, value)?;
            UserCondition::Time { field, op, value }
        }
        Field::Active => {
            let active = boolean(value, "active").map_err(|_| {
                bad_filter(format!("{path} {op_name}: compares with true or false"))
            })?;
            match op {
                CompareOp::Eq => UserCondition::Active(active),
                CompareOp::Ne => UserCondition::Active(!active),
                _ => return Err(bad_filter(format!("{path} takes eq, ne or pr"))),
            }
        }
        Field::Id => {
            let id = value.as_str().and_then(|raw| Uuid::parse_str(raw).ok());
            let matches = id.map_or(UserCondition::Always(false), UserCondition::Id);
            match op {
                CompareOp::Eq => matches,
                CompareOp::Ne => UserCondition::Not(Box::new(matches)),
                _ => return Err(bad_filter(format!("{path} takes eq, ne or pr"))),
            }
        }
        Field::Constant(actual) => UserCondition::Always(compare(&actual, op, value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain::user::TextOp, scim::filter::parse_filter};

    fn ana() -> ScimUser {
        ScimUser {
            user_name: "ana".into(),
            given_name: "Ana".into(),
            family_name: "Lima".into(),
            email: "ana@example.com".into(),
            phone: None,
            external_id: None,
            active: true,
            employee_number: None,
        }
    }

    fn patch(scim: &mut ScimUser, operations: Value) -> Result<(), ScimError> {
        apply_patch(
            scim,
            &json!({ "schemas": [crate::scim::SCHEMA_PATCH], "Operations": operations }),
        )
    }

    #[test]
    fn entra_replaces_with_a_capitalised_op_and_a_string_boolean() {
        let mut scim = ana();
        patch(
            &mut scim,
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )
        .unwrap();
        assert!(!scim.active);
    }

    #[test]
    fn okta_replaces_without_a_path() {
        let mut scim = ana();
        patch(
            &mut scim,
            json!([{ "op": "replace", "value": { "active": false, "name.givenName": "Anna" } }]),
        )
        .unwrap();
        assert!(!scim.active);
        assert_eq!(scim.given_name, "Anna");
    }

    #[test]
    fn a_value_path_sets_the_work_email_and_ignores_other_types() {
        let mut scim = ana();
        patch(
            &mut scim,
            json!([
                { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com" },
                { "op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100" },
                { "op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0199" },
            ]),
        )
        .unwrap();
        assert_eq!(scim.email, "new@example.com");
        assert_eq!(scim.phone.as_deref(), Some("+1 555 0199"));
    }

    #[test]
    fn remove_clears_optional_values_and_refuses_required_ones() {
        let mut scim = ana();
        scim.external_id = Some("x".into());
        patch(&mut scim, json!([{ "op": "remove", "path": "externalId" }])).unwrap();
        assert_eq!(scim.external_id, None);
        let error = patch(&mut scim, json!([{ "op": "remove", "path": "userName" }])).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
        assert!(
            error.detail.starts_with("Operations[0]: userName"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn unknown_attributes_and_ops_are_refused() {
        let mut scim = ana();
        let error = patch(
            &mut scim,
            json!([{ "op": "replace", "path": "shoeSize", "value": "9" }]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
        let error = patch(
            &mut scim,
            json!([{ "op": "merge", "path": "userName", "value": "x" }]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidSyntax));
        let error = patch(&mut scim, json!([{ "op": "remove" }])).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::NoTarget));
    }

    #[test]
    fn the_enterprise_extension_carries_the_employee_number() {
        let body = json!({
            "userName": "ana", "name": { "givenName": "Ana", "familyName": "Lima" },
            "emails": [{ "value": "home@example.com", "type": "home" }, { "value": "ana@example.com", "primary": true }],
            SCHEMA_ENTERPRISE_USER: { "employeeNumber": "701984", "department": "Sales" },
            "displayName": "Ana Lima",
        });
        let scim = from_resource(&body, None).unwrap();
        assert_eq!(scim.email, "ana@example.com");
        assert_eq!(scim.employee_number.as_deref(), Some("701984"));
    }

    #[test]
    fn filters_become_user_conditions() {
        let parsed = parse_filter(
            r#"userName eq "ana" and not (emails[type eq "work" and value ew "@x.test"])"#,
        )
        .unwrap();
        let text = |field, op, value: &str| UserCondition::Text {
            field,
            op,
            value: value.into(),
        };
        assert_eq!(
            condition(&parsed).unwrap(),
            UserCondition::And(
                Box::new(text(TextField::Username, TextOp::Equals, "ana")),
                Box::new(UserCondition::Not(Box::new(UserCondition::And(
                    Box::new(UserCondition::Always(true)),
                    Box::new(text(TextField::Email, TextOp::EndsWith, "@x.test")),
                ))))
            )
        );
    }

    #[test]
    fn a_tel_uri_is_the_number_after_its_scheme() {
        let mut scim = ana();
        scim.phone = Some("TEL:+1-201-555-0123".into());
        assert_eq!(scim.input().phone, "+1-201-555-0123");
        scim.phone = Some(" +55 11 99999-8888 ".into());
        assert_eq!(scim.input().phone, "+55 11 99999-8888");
    }

    #[test]
    fn sort_by_names_a_sortable_attribute() {
        let sorted = |by: &str, order: Option<&str>| ordering(Some(by), order);
        assert_eq!(
            sorted("name.familyName", Some("Descending")).unwrap(),
            UserOrdering {
                by: UserSort::LastName,
                descending: true
            }
        );
        assert_eq!(sorted("emails.value", None).unwrap().by, UserSort::Email);
        assert_eq!(
            sorted("urn:ietf:params:scim:schemas:core:2.0:User:userName", None)
                .unwrap()
                .by,
            UserSort::Username
        );
        assert_eq!(ordering(None, None).unwrap(), UserOrdering::default());
        for (by, order, words) in [
            ("title", None, "sortBy: `title` cannot be sorted on"),
            ("emails[type eq \"work\"]", None, "sortBy"),
            ("userName", Some("up"), "sortOrder: `up` is neither"),
        ] {
            let error = sorted(by, order).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::InvalidValue), "{by}");
            assert!(error.detail.contains(words), "{by}: {}", error.detail);
        }
    }

    #[test]
    fn filters_name_what_they_cannot_mean() {
        for (filter, words) in [
            (r#"title eq "boss""#, "title cannot be filtered on"),
            (r#"userName gt "a""#, "compare dates"),
            (r#"meta.lastModified gt "yesterday""#, "date-time"),
            (r#"userName eq 3"#, "compares with a \"string\""),
            (r#"active co true"#, "eq, ne or pr"),
        ] {
            let error = condition(&parse_filter(filter).unwrap()).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{filter}");
            assert!(error.detail.contains(words), "{filter}: {}", error.detail);
        }
    }
}
