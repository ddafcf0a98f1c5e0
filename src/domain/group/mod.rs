//! Groups (a profile on some units) and memberships; units and profiles live
//! in their own modules and are re-exported here.

mod given;
mod members;
mod profile;
mod unit;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

pub(crate) use self::given::{ensure_covered, id_named, labels, NamedKind};
pub use self::{
    given::{ids as found_ids, labels_of, FoundGroup, GivenGroups, GroupLabel},
    members::{
        change_group, create_group_with_members, delete_group_if, groups_matching,
        members_of_groups, GroupCondition, GroupMember, MatchingGroups, MemberChange, TrackedGroup,
    },
    profile::{
        create_profile, delete_profile, get_profile, list_profiles, update_profile, Profile,
        ProfileChanges, ProfileValues,
    },
    unit::{
        create_unit, delete_unit, get_unit, list_units, update_unit, Unit, UnitChanges, UnitFilter,
        UnitKind, UnitValues,
    },
};
use super::{
    access::{Authority, Grant, UnitScope},
    call::Call,
    caller::Caller,
    name::DisplayName,
    paging::{Page, PageRequest},
    request::IdempotencyKey,
    text_state::text_states,
    unit_of_work::{IdempotentCreate, UnitOfWork},
    user::{ensure_may_act_on, User, UserFilter, UserOrder},
    values::ExternalId,
    DomainError, FieldViolation,
};
use crate::store::Pool;
use crate::store::{self, Transaction};

const MAX_DESCRIPTION: usize = 1000;

#[derive(Debug, Clone)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub profile_id: Uuid,
    /// The id an identity provider gave the group (SCIM `externalId`).
    pub external_id: Option<String>,
    /// The profile's product and name, for people.
    pub product: String,
    pub profile_name: String,
    pub scope: UnitScope,
    /// The names of the scope's units, for people.
    pub unit_names: BTreeMap<Uuid, String>,
    pub member_count: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Group {
    pub fn grant(&self) -> Grant {
        Grant {
            group_id: self.id,
            profile_id: self.profile_id,
            scope: self.scope.clone(),
        }
    }
}

/// Which groups a list shows; empty or `None` filters nothing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupFilter {
    pub name_contains: String,
    pub profile_id: Option<Uuid>,
    pub unit_id: Option<Uuid>,
    /// The unit by name (ListGroups' `unit_name`); `list_groups` finds it.
    pub unit_name: Option<String>,
    pub member_id: Option<Uuid>,
}

/// Newest first; a unit the filter names by name is found first.
pub async fn list_groups(
    pool: &Pool,
    organization_id: Uuid,
    filter: &GroupFilter,
    page: &PageRequest,
) -> Result<Page<Group>, DomainError> {
    let mut filter = filter.clone();
    if let Some(name) = filter.unit_name.take() {
        let connection = &mut *pool.acquire().await?;
        let unit = id_named(
            connection,
            organization_id,
            NamedKind::Unit,
            &name,
            "unit_name",
        );
        filter.unit_id = Some(unit.await?);
    }
    store::groups::list(pool, organization_id, &filter, page).await
}

text_states! {
    /// The unit scope a caller asked for, before its units are checked, and
    /// the kind of scope a group stores (`groups.unit_scope`).
    ScopeKind {
        NoUnit => "NO_UNIT",
        AllUnits => "ALL_UNITS",
        Units => "UNITS",
    }
}

impl ScopeKind {
    pub fn of(scope: &UnitScope) -> Self {
        match scope {
            UnitScope::NoUnit => Self::NoUnit,
            UnitScope::AllUnits => Self::AllUnits,
            UnitScope::Units(_) => Self::Units,
        }
    }
}

/// A group as a caller sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInput {
    pub name: String,
    pub description: String,
    pub profile_id: String,
    /// `None` for an unspecified or unknown scope.
    pub scope: Option<ScopeKind>,
    pub unit_ids: Vec<String>,
    /// Empty: none (only SCIM sets it).
    pub external_id: String,
}

/// A trimmed description of at most 1000 characters; line breaks stay
/// allowed, what hides text does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let description = raw.trim();
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(FieldViolation::new(
                field,
                "TOO_LONG",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
        if let Some(violation) = super::name::invisible_violation(description, field) {
            return Err(violation);
        }
        Ok(Self(description.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The violations of every part that failed, in the order given.
fn violations_of<const N: usize>(parts: [Option<Vec<FieldViolation>>; N]) -> DomainError {
    DomainError::InvalidArgument(parts.into_iter().flatten().flatten().collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValues {
    pub name: DisplayName,
    pub description: Description,
    pub profile_id: Uuid,
    pub scope: UnitScope,
    pub external_id: Option<ExternalId>,
}

fn parse_uuid(raw: &str, field: &str) -> Result<Uuid, FieldViolation> {
    if raw.trim().is_empty() {
        return Err(FieldViolation::new(field, "REQUIRED", "must be set"));
    }
    Uuid::parse_str(raw.trim())
        .map_err(|_| FieldViolation::new(field, "INVALID_ID", "must be a UUID"))
}

fn parse_group_name(raw: &str) -> Result<DisplayName, Vec<FieldViolation>> {
    let name = DisplayName::parse(raw, "group.name");
    let mut violations: Vec<FieldViolation> = name.clone().err().into_iter().collect();
    if raw.contains('|') {
        violations.push(FieldViolation::new(
            "group.name",
            "PIPE_IN_NAME",
            "must not contain `|` (it separates groups in CSV files)",
        ));
    }
    match name {
        Ok(name) if violations.is_empty() => Ok(name),
        _ => Err(violations),
    }
}

/// The unit ids (each violation naming its index) and how they fit the kind.
fn parse_scope(
    kind: Option<ScopeKind>,
    unit_ids: &[String],
) -> Result<UnitScope, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut units = BTreeSet::new();
    for (index, raw) in unit_ids.iter().enumerate() {
        match parse_uuid(raw, &format!("group.unit_ids[{index}]")) {
            Ok(id) => {
                units.insert(id);
            }
            Err(v) => violations.push(v),
        }
    }
    let scope = match kind {
        Some(ScopeKind::Units) if unit_ids.is_empty() => Err(FieldViolation::new(
            "group.unit_ids",
            "REQUIRED",
            "must list at least one unit for UNIT_SCOPE_UNITS",
        )),
        Some(ScopeKind::Units) => Ok(UnitScope::Units(units)),
        Some(kind) if !unit_ids.is_empty() => Err(FieldViolation::new(
            "group.unit_ids",
            "UNEXPECTED",
            format!(
                "must be empty unless unit_scope is UNIT_SCOPE_UNITS (it is UNIT_SCOPE_{kind})"
            ),
        )),
        Some(ScopeKind::NoUnit) => Ok(UnitScope::NoUnit),
        Some(ScopeKind::AllUnits) => Ok(UnitScope::AllUnits),
        None => Err(FieldViolation::new(
            "group.unit_scope",
            "REQUIRED",
            "must be set: UNIT_SCOPE_NO_UNIT (a profile with no unit, such as a product-wide \
             role), UNIT_SCOPE_ALL_UNITS, or UNIT_SCOPE_UNITS with unit_ids; Roster does not \
             guess which",
        )),
    };
    match scope {
        Ok(scope) if violations.is_empty() => Ok(scope),
        Ok(_) => Err(violations),
        Err(violation) => {
            violations.push(violation);
            Err(violations)
        }
    }
}

impl GroupValues {
    /// Every violation at once, under `group.`.
    pub fn parse(input: &GroupInput) -> Result<Self, DomainError> {
        let name = parse_group_name(&input.name);
        let description =
            Description::parse(&input.description, "group.description").map_err(|v| vec![v]);
        let profile_id = parse_uuid(&input.profile_id, "group.profile_id").map_err(|v| vec![v]);
        let scope = parse_scope(input.scope, &input.unit_ids);
        let external_id = match input.external_id.trim() {
            "" => Ok(None),
            raw => ExternalId::parse(raw, "group.external_id")
                .map(Some)
                .map_err(|v| vec![v]),
        };
        match (name, description, profile_id, scope, external_id) {
            (Ok(name), Ok(description), Ok(profile_id), Ok(scope), Ok(external_id)) => Ok(Self {
                name,
                description,
                profile_id,
                scope,
                external_id,
            }),
            (name, description, profile_id, scope, external_id) => Err(violations_of([
                name.err(),
                description.err(),
                profile_id.err(),
                scope.err(),
                external_id.err(),
            ])),
        }
    }

    fn grant(&self, group_id: Uuid) -> Grant {
        Grant {
            group_id,
            profile_id: self.profile_id,
            scope: self.scope.clone(),
        }
    }
}

text_states! {
    /// Which group fields an update changes, named as their `update_mask`
    /// paths (also what the audit record lists).
    GroupField {
        Name => "name",
        Description => "description",
        ProfileId => "profile_id",
        UnitScope => "unit_scope",
        UnitIds => "unit_ids",
        ExternalId => "external_id",
    }
}

/// An update: the fields of its mask, taken from `input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUpdate {
    pub fields: Vec<GroupField>,
    pub input: GroupInput,
}

impl GroupUpdate {
    /// The group as it would be: the current values with the masked fields
    /// replaced. Changing the scope away from UNITS without naming unit_ids
    /// drops the current units, so the result is parsed as a whole.
    pub fn merged_onto(&self, current: &Group) -> GroupInput {
        let mut merged = GroupInput {
            name: current.name.clone(),
            description: current.description.clone(),
            profile_id: current.profile_id.to_string(),
            scope: Some(ScopeKind::of(&current.scope)),
            unit_ids: current
                .scope
                .unit_ids()
                .iter()
                .map(Uuid::to_string)
                .collect(),
            external_id: current.external_id.clone().unwrap_or_default(),
        };
        let input = &self.input;
        for field in &self.fields {
            match field {
                GroupField::Name => merged.name.clone_from(&input.name),
                GroupField::Description => merged.description.clone_from(&input.description),
                GroupField::ProfileId => merged.profile_id.clone_from(&input.profile_id),
                GroupField::UnitScope => {
                    merged.scope = input.scope;
                    if !self.fields.contains(&GroupField::UnitIds)
                        && input.scope != Some(ScopeKind::Units)
                    {
                        merged.unit_ids.clear();
                    }
                }
                GroupField::UnitIds => merged.unit_ids.clone_from(&input.unit_ids),
                GroupField::ExternalId => merged.external_id.clone_from(&input.external_id),
            }
        }
        merged
    }

    fn changed_fields(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.as_str().to_owned()).collect()
    }
}

/// What groups, units and profiles share on creation: the operation their
/// idempotency keys are scoped to, the audit action and target type, what
/// the audit record says of one, and how a replay reads the first one.
trait Created: Sized {
    const OPERATION: &'static str;
    const ACTION: &'static str;
    const TARGET: &'static str;

    fn id(&self) -> Uuid;

    fn details(&self) -> serde_json::Value;

    async fn get(call: &Call, id: Uuid) -> Result<Self, DomainError>;
}

/// `Created` for an aggregate: its operation, audit action and target, the
/// function that describes one and the read a replay answers with.
macro_rules! created {
    ($aggregate:ty, $operation:literal, $action:literal, $target:literal, $details:path, $get:path) => {
        impl $crate::domain::group::Created for $aggregate {
            const OPERATION: &'static str = $operation;
            const ACTION: &'static str = $action;
            const TARGET: &'static str = $target;

            fn id(&self) -> Uuid {
                self.id
            }

            fn details(&self) -> serde_json::Value {
                $details(self)
            }

            async fn get(call: &Call, id: Uuid) -> Result<Self, DomainError> {
                $get(call.pool(), call.organization_id(), id).await
            }
        }
    };
}
use created;

/// A replay of the caller's idempotency key gets the first resource; else
/// `insert` makes it in a unit of work that remembers its id for replays and
/// records its creation.
async fn create_once<T: Created>(
    call: &Call,
    idempotency_key: Option<IdempotencyKey>,
    insert: impl AsyncFnOnce(&mut UnitOfWork) -> Result<T, DomainError>,
) -> Result<T, DomainError> {
    let create = idempotency_key.map(|key| IdempotentCreate::new(&call.caller, T::OPERATION, key));
    if let Some(create) = &create {
        if let Some((id, _)) = create.earlier::<serde_json::Value>(call.pool()).await? {
            return T::get(call, id).await;
        }
    }
    let mut work = call.begin().await?;
    let created = insert(&mut work).await?;
    if let Some(create) = &create {
        work.remember(create, created.id(), &json!({})).await?;
    }
    let audit = work.audit_record(T::ACTION, T::TARGET, created.id());
    work.record(audit.with_details(created.details()));
    work.commit().await?;
    Ok(created)
}

fn uncovered(what: &str) -> DomainError {
    DomainError::PermissionDenied(format!(
        "{what} grants more than you hold, so you may not change it"
    ))
}

/// A group of a built-in profile on NO_UNIT gives API scopes yet covers no
/// group: a trap for whoever reads "Admin" literally, so it is refused.
fn scope_fits_profile(profile: &Profile, scope: &UnitScope) -> Result<(), DomainError> {
    if profile.built_in.is_some() && *scope == UnitScope::NoUnit {
        return Err(DomainError::invalid(
            "group.unit_scope",
            "BUILT_IN_PROFILE_NEEDS_UNITS",
            format!(
                "a group of the built-in {} {} profile cannot be UNIT_SCOPE_NO_UNIT: it would give API scopes but cover no unit; \
                 use UNIT_SCOPE_ALL_UNITS (Admin on all units is an organization administrator) or UNIT_SCOPE_UNITS with its units",
                profile.product, profile.name
            ),
        ));
    }
    Ok(())
}

/// The group's profile and units exist, and its scope fits the profile.
async fn check_references(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &GroupValues,
) -> Result<(), DomainError> {
    let profile = store::profiles::find(&mut **tx, organization_id, values.profile_id)
        .await?
        .ok_or_else(|| DomainError::NotFoundField {
            field: "group.profile_id".into(),
            message: format!("profile {} not found", values.profile_id),
        })?;
    scope_fits_profile(&profile, &values.scope)?;
    let wanted = values.scope.unit_ids();
    let found = store::units::existing_ids(&mut **tx, organization_id, &wanted).await?;
    if let Some(missing) = wanted.iter().find(|id| !found.contains(id)) {
        return Err(DomainError::NotFoundField {
            field: "group.unit_ids".into(),
            message: format!("unit {missing} not found"),
        });
    }
    Ok(())
}

/// The groups among `grants` that `authority` does not cover.
fn not_covered(authority: &Authority, grants: &[(String, Grant)]) -> Vec<Uuid> {
    grants
        .iter()
        .filter(|(_, grant)| !authority.covers(grant))
        .map(|(_, grant)| grant.group_id)
        .collect()
}

/// Changing or deleting a group changes what every member holds, so a unit
/// administrator must be allowed to act on each of them.
async fn ensure_may_act_on_members(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    group_id: Uuid,
) -> Result<(), DomainError> {
    if caller.authority == Authority::Organization {
        return Ok(());
    }
    let all = store::groups::all_named_grants(tx, caller.organization_id).await?;
    let uncovered = not_covered(&caller.authority, &all);
    if uncovered.is_empty() {
        return Ok(());
    }
    if let Some((member_id, email)) =
        store::groups::member_also_in_any(tx, caller.organization_id, group_id, &uncovered).await?
    {
        return Err(DomainError::PermissionDenied(format!(
            "member {email} (user {member_id}) of this group holds groups you do not cover, \
             so you may not change or delete the group"
        )));
    }
    Ok(())
}

fn group_details(group: &Group) -> serde_json::Value {
    json!({
        "name": group.name,
        "profile_id": group.profile_id,
        "unit_scope": group.scope.kind(),
        "unit_ids": group.scope.unit_ids(),
        "external_id": group.external_id,
    })
}

pub async fn create_group(
    call: &Call,
    idempotency_key: Option<IdempotencyKey>,
    values: &GroupValues,
) -> Result<Group, DomainError> {
    create_once(call, idempotency_key, async |work: &mut UnitOfWork| {
        insert_group(work, &call.caller, values).await
    })
    .await
}

/// Inserts a group the caller covers, of an existing profile and units.
async fn insert_group(
    work: &mut UnitOfWork,
    caller: &Caller,
    values: &GroupValues,
) -> Result<Group, DomainError> {
    if !caller.authority.covers(&values.grant(Uuid::nil())) {
        return Err(uncovered("this group"));
    }
    check_references(work.tx(), caller.organization_id, values).await?;
    store::groups::insert(work.tx(), caller.organization_id, values).await
}

created!(
    Group,
    "CreateGroup",
    "group.create",
    "group",
    group_details,
    get_group
);

pub async fn get_group(pool: &Pool, organization_id: Uuid, id: Uuid) -> Result<Group, DomainError> {
    store::groups::find(&mut *pool.acquire().await?, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))
}

/// The members of an existing group, by last name.
pub async fn list_members(
    pool: &Pool,
    organization_id: Uuid,
    group_id: Uuid,
    page: &PageRequest,
) -> Result<Page<User>, DomainError> {
    get_group(pool, organization_id, group_id).await?;
    let filter = UserFilter {
        group_id: Some(group_id),
        ..Default::default()
    };
    store::users::list(pool, organization_id, &filter, UserOrder::LastName, page).await
}

/// Changes a group the caller covers before and after the change, when the
/// caller may act on every member.
pub async fn update_group(
    call: &Call,
    id: Uuid,
    update: &GroupUpdate,
) -> Result<Group, DomainError> {
    let mut work = call.begin().await?;
    let updated = update_locked(&mut work, &call.caller, id, update).await?;
    work.commit().await?;
    Ok(updated)
}

/// The group, locked in the unit of work, when the caller covers it.
async fn lock_covered(
    work: &mut UnitOfWork,
    caller: &Caller,
    id: Uuid,
) -> Result<Group, DomainError> {
    let current = store::groups::lock(work.tx(), caller.organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))?;
    if !caller.authority.covers(&current.grant()) {
        return Err(uncovered("this group"));
    }
    Ok(current)
}

/// `update_group` in the caller's unit of work.
async fn update_locked(
    work: &mut UnitOfWork,
    caller: &Caller,
    id: Uuid,
    update: &GroupUpdate,
) -> Result<Group, DomainError> {
    let organization_id = caller.organization_id;
    let current = lock_covered(work, caller, id).await?;
    let values = GroupValues::parse(&update.merged_onto(&current))?;
    if !caller.authority.covers(&values.grant(id)) {
        return Err(uncovered("the changed group"));
    }
    check_references(work.tx(), organization_id, &values).await?;
    ensure_may_act_on_members(work.tx(), caller, id).await?;
    let updated = store::groups::update(work.tx(), organization_id, id, &values).await?;
    work.record(work.audit_record("group.update", "group", id).with_changes(
        update.changed_fields(),
        json!({ "old": group_details(&current), "new": group_details(&updated) }),
    ));
    Ok(updated)
}

/// Deletes a covered group whose members the caller may all act on; its
/// memberships go with it.
pub async fn delete_group(call: &Call, id: Uuid) -> Result<(), DomainError> {
    delete_locked(call.begin().await?, &call.caller, id).await
}

/// Locks the group (the caller must cover it and its members) and deletes it.
async fn delete_locked(mut work: UnitOfWork, caller: &Caller, id: Uuid) -> Result<(), DomainError> {
    let group = lock_covered(&mut work, caller, id).await?;
    ensure_may_act_on_members(work.tx(), caller, id).await?;
    store::groups::delete(work.tx(), caller.organization_id, id).await?;
    work.record(
        work.audit_record("group.delete", "group", id)
            .with_details(group_details(&group)),
    );
    work.commit().await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MembershipChange {
    Add,
    Remove,
}

impl MembershipChange {
    fn audit_action(self) -> &'static str {
        match self {
            Self::Add => "user.groups.add",
            Self::Remove => "user.groups.remove",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Add => "give",
            Self::Remove => "remove",
        }
    }
}

/// Gives a user groups; every one must exist and be covered (refused naming the first that is not).
pub async fn add_user_to_groups(
    call: &Call,
    user_id: Uuid,
    groups: &GivenGroups,
) -> Result<Vec<GroupLabel>, DomainError> {
    let change = MembershipChange::Add;
    change_memberships(call, user_id, groups, change).await
}

pub async fn remove_user_from_groups(
    call: &Call,
    user_id: Uuid,
    groups: &GivenGroups,
) -> Result<Vec<GroupLabel>, DomainError> {
    let change = MembershipChange::Remove;
    change_memberships(call, user_id, groups, change).await
}

/// The groups changed: those the user was not in (add) or was in (remove).
async fn change_memberships(
    call: &Call,
    user_id: Uuid,
    groups: &GivenGroups,
    change: MembershipChange,
) -> Result<Vec<GroupLabel>, DomainError> {
    let (caller, organization_id) = (&call.caller, call.organization_id());
    let mut work = call.begin().await?;
    ensure_may_act_on(work.tx(), caller, user_id, None).await?;
    let found = groups.find(work.tx(), organization_id).await?;
    ensure_covered(&caller.authority, change.verb(), &found)?;
    let group_ids = found_ids(&found);
    let tx = work.tx();
    let changed = match change {
        MembershipChange::Add => {
            store::groups::add_memberships(tx, organization_id, user_id, &group_ids).await?
        }
        MembershipChange::Remove => {
            store::groups::remove_memberships(tx, organization_id, user_id, &group_ids).await?
        }
    };
    if !changed.is_empty() {
        work.record(
            work.audit_record(change.audit_action(), "user", user_id)
                .with_changes(vec!["groups".into()], json!({ "group_ids": changed })),
        );
    }
    work.commit().await?;
    Ok(labels_of(&found, &changed))
}

#[cfg(test)]
mod tests;
