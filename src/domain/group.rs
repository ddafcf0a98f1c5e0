//! Groups (a profile on some units), units, profiles and memberships.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    access::{Authority, Grant, UnitScope},
    audit::AuditRecord,
    caller::{Caller, Scope},
    name::DisplayName,
    request::{IdempotencyKey, RequestId},
    unit_of_work::{IdempotentCreate, UnitOfWork},
    user::ensure_may_act_on,
    DomainError, FieldViolation,
};
use crate::store::{self, Transaction};

const MAX_DESCRIPTION: usize = 1000;

#[derive(Debug, Clone)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub profile_id: Uuid,
    pub scope: UnitScope,
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

/// The unit scope a caller asked for, before its units are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    NoUnit,
    AllUnits,
    Units,
}

/// A group as a caller sent it.
#[derive(Debug, Clone, Default)]
pub struct GroupInput {
    pub name: String,
    pub description: String,
    pub profile_id: String,
    /// `None` for an unspecified or unknown scope.
    pub scope: Option<ScopeKind>,
    pub unit_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValues {
    pub name: String,
    pub description: String,
    pub profile_id: Uuid,
    pub scope: UnitScope,
}

fn parse_description(raw: &str, field: &str) -> Result<String, FieldViolation> {
    let description = raw.trim();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(FieldViolation::new(
            field,
            "TOO_LONG",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    // Line breaks stay allowed in a description; what hides text does not.
    if let Some(violation) = super::name::invisible_violation(description, field) {
        return Err(violation);
    }
    Ok(description.to_owned())
}

fn parse_uuid(raw: &str, field: &str) -> Result<Uuid, FieldViolation> {
    if raw.trim().is_empty() {
        return Err(FieldViolation::new(field, "REQUIRED", "must be set"));
    }
    Uuid::parse_str(raw.trim())
        .map_err(|_| FieldViolation::new(field, "INVALID_ID", "must be a UUID"))
}

impl GroupValues {
    /// Every violation at once, under `group.`.
    pub fn parse(input: &GroupInput) -> Result<Self, DomainError> {
        let mut violations = Vec::new();
        let name = DisplayName::parse(&input.name, "group.name")
            .map_err(|v| violations.push(v))
            .ok();
        if input.name.contains('|') {
            violations.push(FieldViolation::new(
                "group.name",
                "PIPE_IN_NAME",
                "must not contain `|` (it separates groups in CSV files)",
            ));
        }
        let description = parse_description(&input.description, "group.description")
            .map_err(|v| violations.push(v))
            .ok();
        let profile_id = parse_uuid(&input.profile_id, "group.profile_id")
            .map_err(|v| violations.push(v))
            .ok();
        let mut units = BTreeSet::new();
        for (index, raw) in input.unit_ids.iter().enumerate() {
            match parse_uuid(raw, &format!("group.unit_ids[{index}]")) {
                Ok(id) => {
                    units.insert(id);
                }
                Err(v) => violations.push(v),
            }
        }
        let scope = match input.scope {
            Some(ScopeKind::Units) if input.unit_ids.is_empty() => {
                violations.push(FieldViolation::new(
                    "group.unit_ids",
                    "REQUIRED",
                    "must list at least one unit for UNIT_SCOPE_UNITS",
                ));
                None
            }
            Some(ScopeKind::Units) => Some(UnitScope::Units(units)),
            Some(kind) if !input.unit_ids.is_empty() => {
                violations.push(FieldViolation::new(
                    "group.unit_ids",
                    "UNEXPECTED",
                    format!("must be empty unless unit_scope is UNIT_SCOPE_UNITS (it is {kind:?})"),
                ));
                None
            }
            Some(ScopeKind::NoUnit) => Some(UnitScope::NoUnit),
            Some(ScopeKind::AllUnits) => Some(UnitScope::AllUnits),
            None => {
                violations.push(FieldViolation::new(
                    "group.unit_scope",
                    "REQUIRED",
                    "must be UNIT_SCOPE_NO_UNIT, UNIT_SCOPE_ALL_UNITS or UNIT_SCOPE_UNITS",
                ));
                None
            }
        };
        DomainError::check(violations)?;
        match (name, description, profile_id, scope) {
            (Some(name), Some(description), Some(profile_id), Some(scope)) => Ok(Self {
                name: name.as_str().to_owned(),
                description,
                profile_id,
                scope,
            }),
            _ => Err(DomainError::Internal(anyhow::anyhow!(
                "group values validated above"
            ))),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Branch,
    Store,
    Partner,
    Other,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Branch => "BRANCH",
            Self::Store => "STORE",
            Self::Partner => "PARTNER",
            Self::Other => "OTHER",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Branch, Self::Store, Self::Partner, Self::Other]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

#[derive(Debug, Clone)]
pub struct Unit {
    pub id: Uuid,
    pub name: String,
    pub kind: UnitKind,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub id: Uuid,
    pub product: String,
    pub name: String,
    pub description: String,
    /// Set on the two built-in User Management profiles.
    pub built_in: Option<Scope>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileValues {
    pub product: String,
    pub name: String,
    pub description: String,
}

impl ProfileValues {
    pub fn parse(product: &str, name: &str, description: &str) -> Result<Self, DomainError> {
        let mut violations = Vec::new();
        let product = DisplayName::parse(product, "profile.product")
            .map_err(|v| violations.push(v))
            .ok();
        let name = DisplayName::parse(name, "profile.name")
            .map_err(|v| violations.push(v))
            .ok();
        let description = parse_description(description, "profile.description")
            .map_err(|v| violations.push(v))
            .ok();
        DomainError::check(violations)?;
        match (product, name, description) {
            (Some(product), Some(name), Some(description)) => Ok(Self {
                product: product.as_str().to_owned(),
                name: name.as_str().to_owned(),
                description,
            }),
            _ => Err(DomainError::Internal(anyhow::anyhow!(
                "profile values validated above"
            ))),
        }
    }
}

/// A create that carried an idempotency key and already ran: the id it
/// created for this same caller.
async fn earlier_create(
    pool: &PgPool,
    create: Option<&IdempotentCreate>,
) -> Result<Option<Uuid>, DomainError> {
    let Some(create) = create else {
        return Ok(None);
    };
    Ok(create
        .earlier::<serde_json::Value>(pool)
        .await?
        .map(|(id, _)| id))
}

async fn remember_create(
    work: &mut UnitOfWork,
    create: Option<&IdempotentCreate>,
    id: Uuid,
) -> Result<(), DomainError> {
    match create {
        Some(create) => work.remember(create, id, &json!({})).await,
        None => Ok(()),
    }
}

fn uncovered(what: &str) -> DomainError {
    DomainError::PermissionDenied(format!(
        "{what} grants more than you hold, so you may not change it"
    ))
}

/// A group of a built-in profile on NO_UNIT gives API scopes yet covers no
/// group: a trap for whoever reads "Admin" literally, so it is refused.
async fn check_scope_fits_profile(
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
    if profile.built_in.is_some() && values.scope == UnitScope::NoUnit {
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
    let uncovered: Vec<Uuid> = store::groups::all_named_grants(tx, caller.organization_id)
        .await?
        .into_iter()
        .filter(|(_, grant)| !caller.authority.covers(grant))
        .map(|(_, grant)| grant.group_id)
        .collect();
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

pub async fn create_group(
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    idempotency_key: Option<IdempotencyKey>,
    values: &GroupValues,
) -> Result<Group, DomainError> {
    let organization_id = caller.organization_id;
    let create = idempotency_key.map(|key| IdempotentCreate::new(caller, "CreateGroup", key));
    if let Some(id) = earlier_create(pool, create.as_ref()).await? {
        return get_group(pool, organization_id, id).await;
    }
    if !caller.authority.covers(&values.grant(Uuid::nil())) {
        return Err(uncovered("this group"));
    }
    let mut work = UnitOfWork::begin(pool, caller, request_id).await?;
    check_scope_fits_profile(work.tx(), organization_id, values).await?;
    check_units_exist(work.tx(), organization_id, &values.scope).await?;
    let group = store::groups::insert(work.tx(), organization_id, values).await?;
    remember_create(&mut work, create.as_ref(), group.id).await?;
    work.record(
        work.audit_record("group.create", "group", group.id)
            .with_details(group_details(&group)),
    );
    work.commit().await?;
    Ok(group)
}

fn group_details(group: &Group) -> serde_json::Value {
    json!({
        "name": group.name,
        "profile_id": group.profile_id,
        "unit_scope": group.scope.kind(),
        "unit_ids": group.scope.unit_ids(),
    })
}

async fn check_units_exist(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    scope: &UnitScope,
) -> Result<(), DomainError> {
    let wanted = scope.unit_ids();
    let found = store::units::existing_ids(&mut **tx, organization_id, &wanted).await?;
    if let Some(missing) = wanted.iter().find(|id| !found.contains(id)) {
        return Err(DomainError::NotFoundField {
            field: "group.unit_ids".into(),
            message: format!("unit {missing} not found"),
        });
    }
    Ok(())
}

pub async fn get_group(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Group, DomainError> {
    store::groups::find(pool, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))
}

/// Which group fields an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupField {
    Name,
    Description,
    ProfileId,
    UnitScope,
    UnitIds,
}

impl GroupField {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "name" => Some(Self::Name),
            "description" => Some(Self::Description),
            "profile_id" => Some(Self::ProfileId),
            "unit_scope" => Some(Self::UnitScope),
            "unit_ids" => Some(Self::UnitIds),
            _ => None,
        }
    }
}

/// Changes a group the caller covers before and after the change, when the
/// caller may act on every member.
pub async fn update_group(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    id: Uuid,
    fields: &[GroupField],
    input: &GroupInput,
) -> Result<Group, DomainError> {
    let mut tx = pool.begin().await?;
    let current = store::groups::lock(&mut tx, caller.organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))?;
    if !caller.authority.covers(&current.grant()) {
        return Err(uncovered("this group"));
    }
    let mut merged = GroupInput {
        name: current.name.clone(),
        description: current.description.clone(),
        profile_id: current.profile_id.to_string(),
        scope: Some(match current.scope {
            UnitScope::NoUnit => ScopeKind::NoUnit,
            UnitScope::AllUnits => ScopeKind::AllUnits,
            UnitScope::Units(_) => ScopeKind::Units,
        }),
        unit_ids: current
            .scope
            .unit_ids()
            .iter()
            .map(Uuid::to_string)
            .collect(),
    };
    for field in fields {
        match field {
            GroupField::Name => merged.name.clone_from(&input.name),
            GroupField::Description => merged.description.clone_from(&input.description),
            GroupField::ProfileId => merged.profile_id.clone_from(&input.profile_id),
            GroupField::UnitScope => {
                merged.scope = input.scope;
                if !fields.contains(&GroupField::UnitIds) && input.scope != Some(ScopeKind::Units) {
                    merged.unit_ids.clear();
                }
            }
            GroupField::UnitIds => merged.unit_ids.clone_from(&input.unit_ids),
        }
    }
    let values = GroupValues::parse(&merged)?;
    if !caller.authority.covers(&values.grant(id)) {
        return Err(uncovered("the changed group"));
    }
    check_scope_fits_profile(&mut tx, caller.organization_id, &values).await?;
    check_units_exist(&mut tx, caller.organization_id, &values.scope).await?;
    ensure_may_act_on_members(&mut tx, caller, id).await?;
    let updated = store::groups::update(&mut tx, caller.organization_id, id, &values).await?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "group.update",
            "group",
            id,
        )
        .with_request_id(request_id)
        .with_changes(
            fields.iter().map(|f| format!("{f:?}")).collect(),
            json!({ "old": group_details(&current), "new": group_details(&updated) }),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(updated)
}

/// Deletes a covered group whose members the caller may all act on; its
/// memberships go with it.
pub async fn delete_group(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    id: Uuid,
) -> Result<(), DomainError> {
    let mut tx = pool.begin().await?;
    let group = store::groups::lock(&mut tx, caller.organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))?;
    if !caller.authority.covers(&group.grant()) {
        return Err(uncovered("this group"));
    }
    ensure_may_act_on_members(&mut tx, caller, id).await?;
    store::groups::delete(&mut tx, caller.organization_id, id).await?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "group.delete",
            "group",
            id,
        )
        .with_request_id(request_id)
        .with_details(group_details(&group)),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives a user groups; every one must exist and be covered (refused naming the first that is not).
pub async fn add_user_to_groups(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    user_id: Uuid,
    group_ids: &[Uuid],
) -> Result<Vec<Uuid>, DomainError> {
    change_memberships(pool, caller, request_id, user_id, group_ids, true).await
}

pub async fn remove_user_from_groups(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    user_id: Uuid,
    group_ids: &[Uuid],
) -> Result<Vec<Uuid>, DomainError> {
    change_memberships(pool, caller, request_id, user_id, group_ids, false).await
}

async fn change_memberships(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    user_id: Uuid,
    group_ids: &[Uuid],
    add: bool,
) -> Result<Vec<Uuid>, DomainError> {
    let organization_id = caller.organization_id;
    let mut tx = pool.begin().await?;
    ensure_may_act_on(&mut tx, caller, user_id, None).await?;
    let grants = store::groups::grants_by_ids(&mut *tx, organization_id, group_ids).await?;
    for (index, id) in group_ids.iter().enumerate() {
        let Some(grant) = grants.iter().find(|g| g.group_id == *id) else {
            return Err(DomainError::NotFoundField {
                field: format!("group_ids[{index}]"),
                message: format!("group {id} not found"),
            });
        };
        if !caller.authority.covers(grant) {
            return Err(DomainError::PermissionDenied(format!(
                "you may not {} group {id}: it grants more than you hold",
                if add { "give" } else { "remove" }
            )));
        }
    }
    let changed = if add {
        store::groups::add_memberships(&mut tx, organization_id, user_id, group_ids).await?
    } else {
        store::groups::remove_memberships(&mut tx, organization_id, user_id, group_ids).await?
    };
    if !changed.is_empty() {
        store::audit::record(
            &mut tx,
            &AuditRecord::new(
                organization_id,
                caller.actor(),
                if add {
                    "user.groups.add"
                } else {
                    "user.groups.remove"
                },
                "user",
                user_id,
            )
            .with_request_id(request_id)
            .with_changes(vec!["groups".into()], json!({ "group_ids": changed })),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

pub async fn create_unit(
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    idempotency_key: Option<IdempotencyKey>,
    name: &str,
    kind: Option<UnitKind>,
) -> Result<Unit, DomainError> {
    let organization_id = caller.organization_id;
    let create = idempotency_key.map(|key| IdempotentCreate::new(caller, "CreateUnit", key));
    if let Some(id) = earlier_create(pool, create.as_ref()).await? {
        return get_unit(pool, organization_id, id).await;
    }
    let (name, kind) = parse_unit(name, kind)?;
    let mut work = UnitOfWork::begin(pool, caller, request_id).await?;
    let unit = store::units::insert(work.tx(), organization_id, name.as_str(), kind).await?;
    remember_create(&mut work, create.as_ref(), unit.id).await?;
    work.record(
        work.audit_record("unit.create", "unit", unit.id)
            .with_details(json!({ "name": unit.name, "kind": unit.kind.as_str() })),
    );
    work.commit().await?;
    Ok(unit)
}

fn parse_unit(name: &str, kind: Option<UnitKind>) -> Result<(DisplayName, UnitKind), DomainError> {
    let mut violations = Vec::new();
    let name = DisplayName::parse(name, "unit.name")
        .map_err(|v| violations.push(v))
        .ok();
    if kind.is_none() {
        violations.push(FieldViolation::new(
            "unit.kind",
            "REQUIRED",
            "must be BRANCH, STORE, PARTNER or OTHER",
        ));
    }
    DomainError::check(violations)?;
    match (name, kind) {
        (Some(name), Some(kind)) => Ok((name, kind)),
        _ => Err(DomainError::Internal(anyhow::anyhow!(
            "unit validated above"
        ))),
    }
}

pub async fn get_unit(pool: &PgPool, organization_id: Uuid, id: Uuid) -> Result<Unit, DomainError> {
    store::units::find(pool, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("unit", id))
}

/// `name`/`kind` are `None` when not in the mask.
pub async fn update_unit(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    id: Uuid,
    name: Option<&str>,
    kind: Option<Option<UnitKind>>,
) -> Result<Unit, DomainError> {
    let mut tx = pool.begin().await?;
    let current = store::units::find(&mut *tx, caller.organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("unit", id))?;
    let (name, kind) = parse_unit(
        name.unwrap_or(&current.name),
        kind.unwrap_or(Some(current.kind)),
    )?;
    let unit =
        store::units::update(&mut tx, caller.organization_id, id, name.as_str(), kind).await?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "unit.update",
            "unit",
            id,
        )
        .with_request_id(request_id)
        .with_details(json!({
            "old": { "name": current.name, "kind": current.kind.as_str() },
            "new": { "name": unit.name, "kind": unit.kind.as_str() },
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(unit)
}

pub async fn delete_unit(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    id: Uuid,
) -> Result<(), DomainError> {
    let mut tx = pool.begin().await?;
    if !store::units::delete(&mut tx, caller.organization_id, id).await? {
        return Err(DomainError::not_found("unit", id));
    }
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "unit.delete",
            "unit",
            id,
        )
        .with_request_id(request_id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn create_profile(
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    idempotency_key: Option<IdempotencyKey>,
    values: &ProfileValues,
) -> Result<Profile, DomainError> {
    let organization_id = caller.organization_id;
    let create = idempotency_key.map(|key| IdempotentCreate::new(caller, "CreateProfile", key));
    if let Some(id) = earlier_create(pool, create.as_ref()).await? {
        return get_profile(pool, organization_id, id).await;
    }
    let mut work = UnitOfWork::begin(pool, caller, request_id).await?;
    let profile = store::profiles::insert(work.tx(), organization_id, values).await?;
    remember_create(&mut work, create.as_ref(), profile.id).await?;
    work.record(
        work.audit_record("profile.create", "profile", profile.id)
            .with_details(json!({ "product": profile.product, "name": profile.name })),
    );
    work.commit().await?;
    Ok(profile)
}

pub async fn get_profile(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Profile, DomainError> {
    store::profiles::find(pool, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("profile", id))
}

fn built_in_refusal() -> DomainError {
    DomainError::FailedPrecondition {
        reason: "BUILT_IN_PROFILE",
        message: "the built-in User Management profiles cannot be changed or deleted".into(),
    }
}

/// `product`/`name`/`description` are `None` when not in the mask.
pub async fn update_profile(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    id: Uuid,
    product: Option<&str>,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<Profile, DomainError> {
    let mut tx = pool.begin().await?;
    let current = store::profiles::find(&mut *tx, caller.organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("profile", id))?;
    if current.built_in.is_some() {
        return Err(built_in_refusal());
    }
    let values = ProfileValues::parse(
        product.unwrap_or(&current.product),
        name.unwrap_or(&current.name),
        description.unwrap_or(&current.description),
    )?;
    let profile = store::profiles::update(&mut tx, caller.organization_id, id, &values).await?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(caller.organization_id, caller.actor(), "profile.update", "profile", id)
            .with_request_id(request_id)
            .with_details(json!({
                "old": { "product": current.product, "name": current.name, "description": current.description },
                "new": { "product": profile.product, "name": profile.name, "description": profile.description },
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(profile)
}

pub async fn delete_profile(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    id: Uuid,
) -> Result<(), DomainError> {
    let mut tx = pool.begin().await?;
    let current = store::profiles::find(&mut *tx, caller.organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("profile", id))?;
    if current.built_in.is_some() {
        return Err(built_in_refusal());
    }
    store::profiles::delete(&mut tx, caller.organization_id, id).await?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "profile.delete",
            "profile",
            id,
        )
        .with_request_id(request_id)
        .with_details(json!({ "product": current.product, "name": current.name })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
