//! Groups, their units, and memberships.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    connections::read,
    map_constraint_violation,
    paging::{newest_first, newest_first_page},
    profiles::BuiltInRole,
    shared_reads::in_slots,
    Pool, Transaction,
};
use crate::domain::{
    access::{Grant, UnitScope},
    caller::Scope,
    group::{FoundGroup, Group, GroupFilter, GroupValues, ScopeKind},
    paging::{fingerprint, Page, PageRequest},
    status::{AdminState, LegacyStatus, StatusFacts, UserStatus},
    user::NamedGrant,
    values::ExternalId,
    DomainError,
};

/// The columns of `queries/groups_find.sql`, for the list built at run time.
pub(super) const COLUMNS: &str = "g.id, g.name, g.description, g.profile_id, g.external_id, g.unit_scope, \
     coalesce((select array_agg(gu.unit_id order by gu.unit_id) from group_units gu \
               where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as unit_ids, \
     coalesce((select array_agg(u.name order by gu.unit_id) from group_units gu \
               join units u on u.organization_id = gu.organization_id and u.id = gu.unit_id \
               where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as unit_names, \
     (select p.product from profiles p where p.organization_id = g.organization_id and p.id = g.profile_id) as product, \
     (select p.name from profiles p where p.organization_id = g.organization_id and p.id = g.profile_id) as profile_name, \
     (select count(*) from memberships m where m.organization_id = g.organization_id and m.group_id = g.id) as member_count, \
     g.create_time, g.update_time";

#[derive(FromRow)]
pub(super) struct GroupRow {
    id: Uuid,
    name: String,
    description: String,
    profile_id: Uuid,
    external_id: Option<String>,
    unit_scope: ScopeKind,
    unit_ids: Vec<Uuid>,
    /// The names of `unit_ids`, in the same order.
    unit_names: Vec<String>,
    product: String,
    profile_name: String,
    member_count: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

newest_first!(GroupRow);

fn unit_names_by_id(unit_ids: &[Uuid], unit_names: Vec<String>) -> BTreeMap<Uuid, String> {
    unit_ids.iter().copied().zip(unit_names).collect()
}

fn scope_of(kind: ScopeKind, unit_ids: Vec<Uuid>) -> UnitScope {
    match kind {
        ScopeKind::NoUnit => UnitScope::NoUnit,
        ScopeKind::AllUnits => UnitScope::AllUnits,
        ScopeKind::Units => UnitScope::Units(unit_ids.into_iter().collect()),
    }
}

impl From<GroupRow> for Group {
    fn from(row: GroupRow) -> Self {
        Group {
            id: row.id,
            name: row.name,
            description: row.description,
            profile_id: row.profile_id,
            external_id: row.external_id,
            product: row.product,
            profile_name: row.profile_name,
            unit_names: unit_names_by_id(&row.unit_ids, row.unit_names),
            scope: scope_of(row.unit_scope, row.unit_ids),
            member_count: row.member_count,
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

fn map_group_constraints(error: sqlx::Error) -> DomainError {
    map_constraint_violation(error, |constraint| match constraint {
        "groups_org_name_key" => Some(DomainError::AlreadyExists {
            reason: "GROUP_ALREADY_EXISTS",
            field: "group.name".into(),
            message: "a group with this name already exists".into(),
        }),
        "groups_org_external_id_key" => Some(DomainError::AlreadyExists {
            reason: "EXTERNAL_ID_TAKEN",
            field: "group.external_id".into(),
            message: "this external id already belongs to another group".into(),
        }),
        "groups_profile_fkey" => Some(DomainError::NotFoundField {
            field: "group.profile_id".into(),
            message: "profile not found".into(),
        }),
        "group_units_unit_fkey" => Some(DomainError::NotFoundField {
            field: "group.unit_ids".into(),
            message: "unit not found".into(),
        }),
        _ => None,
    })
}

pub async fn insert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &GroupValues,
) -> Result<Group, DomainError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into groups (organization_id, id, name, description, profile_id, unit_scope, external_id) \
         values ($1, $2, $3, $4, $5, $6, $7)",
        organization_id,
        id,
        values.name.as_str(),
        values.description.as_str(),
        values.profile_id,
        ScopeKind::of(&values.scope) as ScopeKind,
        values.external_id.as_ref().map(ExternalId::as_str),
    )
    .execute(&mut **tx)
    .await
    .map_err(map_group_constraints)?;
    replace_units(tx, organization_id, id, &values.scope).await?;
    find(&mut **tx, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("group {id} vanished")))
}

pub async fn update(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    values: &GroupValues,
) -> Result<Group, DomainError> {
    sqlx::query!(
        "update groups set name = $3, description = $4, profile_id = $5, unit_scope = $6, \
         external_id = $7 where organization_id = $1 and id = $2",
        organization_id,
        id,
        values.name.as_str(),
        values.description.as_str(),
        values.profile_id,
        ScopeKind::of(&values.scope) as ScopeKind,
        values.external_id.as_ref().map(ExternalId::as_str),
    )
    .execute(&mut **tx)
    .await
    .map_err(map_group_constraints)?;
    replace_units(tx, organization_id, id, &values.scope).await?;
    find(&mut **tx, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("group", id))
}

async fn replace_units(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    group_id: Uuid,
    scope: &UnitScope,
) -> Result<(), DomainError> {
    sqlx::query!(
        "delete from group_units where organization_id = $1 and group_id = $2",
        organization_id,
        group_id,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "insert into group_units (organization_id, group_id, unit_id) select $1, $2, unnest($3::uuid[])",
        organization_id,
        group_id,
        &scope.unit_ids(),
    )
    .execute(&mut **tx)
    .await
    .map_err(map_group_constraints)?;
    Ok(())
}

pub async fn delete(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        "delete from groups where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Group>, sqlx::Error> {
    let row = sqlx::query_file_as!(
        GroupRow,
        "src/store/queries/groups_find.sql",
        organization_id,
        id,
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// The group, locked until the transaction ends: a membership added meanwhile
/// waits (its foreign-key check shares the row), so the members checked are
/// the members changed.
pub async fn lock(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Group>, sqlx::Error> {
    let locked = sqlx::query_scalar!(
        "select id from groups where organization_id = $1 and id = $2 for update",
        organization_id,
        id,
    )
    .fetch_optional(&mut **tx)
    .await?;
    match locked {
        Some(_) => find(&mut **tx, organization_id, id).await,
        None => Ok(None),
    }
}

/// Newest first. Built at run time: each filter adds a condition only when
/// set, which keeps every variant on its own index-friendly plan.
pub async fn list(
    pool: &Pool,
    organization_id: Uuid,
    filter: &GroupFilter,
    page: &PageRequest,
) -> Result<Page<Group>, DomainError> {
    let query_fingerprint = fingerprint(&("groups", filter));
    let filter = filter.clone();
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from groups g where g.organization_id = ")
            .push_bind(organization_id);
        if !filter.name_contains.is_empty() {
            query
                .push(" and g.name ilike ")
                .push_bind(format!("%{}%", filter.name_contains.replace('%', "\\%")));
        }
        if let Some(profile_id) = filter.profile_id {
            query.push(" and g.profile_id = ").push_bind(profile_id);
        }
        if let Some(unit_id) = filter.unit_id {
            query
                .push(" and (g.unit_scope = 'ALL_UNITS' or exists (select 1 from group_units gu where gu.organization_id = g.organization_id and gu.group_id = g.id and gu.unit_id = ")
                .push_bind(unit_id)
                .push("))");
        }
        if let Some(member_id) = filter.member_id {
            query
                .push(" and exists (select 1 from memberships m where m.organization_id = g.organization_id and m.group_id = g.id and m.user_id = ")
                .push_bind(member_id)
                .push(")");
        }
    };
    newest_first_page::<GroupRow, _>(pool, COLUMNS, push_from_where, page, &query_fingerprint).await
}

/// A row of `queries/groups_grants.sql`.
struct GrantRow {
    id: Uuid,
    name: String,
    profile_id: Uuid,
    unit_scope: ScopeKind,
    unit_ids: Vec<Uuid>,
    built_in: Option<BuiltInRole>,
}

impl GrantRow {
    fn grant(self) -> (Grant, Option<Scope>) {
        (
            Grant {
                group_id: self.id,
                profile_id: self.profile_id,
                scope: scope_of(self.unit_scope, self.unit_ids),
            },
            self.built_in.map(|role| role.0),
        )
    }
}

/// A row of `member_grant_rows!`.
struct MemberGrantRow {
    user_id: Uuid,
    id: Uuid,
    name: String,
    profile_id: Uuid,
    unit_scope: ScopeKind,
    unit_ids: Vec<Uuid>,
    built_in: Option<BuiltInRole>,
}

impl MemberGrantRow {
    fn split(self) -> (Uuid, GrantRow) {
        let grant = GrantRow {
            id: self.id,
            name: self.name,
            profile_id: self.profile_id,
            unit_scope: self.unit_scope,
            unit_ids: self.unit_ids,
            built_in: self.built_in,
        };
        (self.user_id, grant)
    }
}

/// What the groups with these ids grant (`None`: every group of the organization).
async fn grant_rows<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    ids: Option<&[Uuid]>,
) -> Result<Vec<GrantRow>, sqlx::Error> {
    sqlx::query_file_as!(
        GrantRow,
        "src/store/queries/groups_grants.sql",
        organization_id,
        ids as Option<&[Uuid]>,
    )
    .fetch_all(executor)
    .await
}

/// What the groups of the users `$users` matches grant, one row per (user,
/// group): one statement for one user (`m.user_id = $2`), another for many
/// (`any($2)`). PostgreSQL plans `any` of a parameter for ten elements, a
/// generic plan it finds dearer than the one-user plan, and so plans it
/// afresh on every call; `= $2` keeps one plan per connection.
macro_rules! member_grant_rows {
    ($users:literal, $organization_id:expr, $user_ids:expr) => {
        sqlx::query_as!(
            MemberGrantRow,
            "select m.user_id, g.id, g.name, g.profile_id, g.unit_scope as \"unit_scope: ScopeKind\",
                    p.built_in as \"built_in: BuiltInRole\",
                    coalesce((select array_agg(gu.unit_id) from group_units gu
                              where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as \"unit_ids!\"
             from groups g
             join profiles p on p.organization_id = g.organization_id and p.id = g.profile_id
             join memberships m on m.organization_id = g.organization_id and m.group_id = g.id
             where g.organization_id = $1 and "
                + $users,
            $organization_id,
            $user_ids,
        )
    };
}

impl GrantRow {
    fn found(self) -> FoundGroup {
        let name = self.name.clone();
        FoundGroup {
            name,
            grant: self.grant().0,
        }
    }
}

/// What the groups with these ids grant, with their names (missing ids are left out).
pub async fn named_grants_by_ids<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<FoundGroup>, sqlx::Error> {
    let rows = grant_rows(executor, organization_id, Some(ids)).await?;
    Ok(rows.into_iter().map(GrantRow::found).collect())
}

/// The names of the groups with these ids (missing ids are left out).
pub async fn names_by_ids<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    let rows = sqlx::query!(
        "select id, name from groups where organization_id = $1 and id = any($2)",
        organization_id,
        ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.name)).collect())
}

/// A row of `queries/groups_grants_by_name.sql`.
struct GrantByNameRow {
    position: i64,
    id: Uuid,
    name: String,
    profile_id: Uuid,
    unit_scope: ScopeKind,
    unit_ids: Vec<Uuid>,
    built_in: Option<BuiltInRole>,
}

/// (member, group id, group name) of each membership of these users, by
/// group name.
pub async fn labels_of_members<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "select m.user_id, g.id, g.name from memberships m
         join groups g on g.organization_id = m.organization_id and g.id = m.group_id
         where m.organization_id = $1 and m.user_id = any($2)
         order by lower(g.name), g.id",
        organization_id,
        user_ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.user_id, row.id, row.name))
        .collect())
}

/// The group with this name, ignoring case (names are unique so).
pub async fn id_by_name<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    name: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from groups where organization_id = $1 and lower(name) = lower($2)",
        organization_id,
        name,
    )
    .fetch_optional(executor)
    .await
}

/// The groups with these names, ignoring case, each with the index in
/// `names` of the name that found it (unknown names are left out).
pub async fn named_grants_by_names<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    names: &[String],
) -> Result<Vec<(usize, FoundGroup)>, sqlx::Error> {
    let rows = sqlx::query_file_as!(
        GrantByNameRow,
        "src/store/queries/groups_grants_by_name.sql",
        organization_id,
        names,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let index = usize::try_from(row.position - 1).unwrap_or(usize::MAX);
            let grant = GrantRow {
                id: row.id,
                name: row.name,
                profile_id: row.profile_id,
                unit_scope: row.unit_scope,
                unit_ids: row.unit_ids,
                built_in: row.built_in,
            };
            (index, grant.found())
        })
        .collect())
}

/// What a user's groups grant, with the built-in role of each group's profile.
pub async fn grants_of_user_with_roles<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<(Grant, Option<Scope>)>, sqlx::Error> {
    let rows = member_grant_rows!("m.user_id = $2", organization_id, user_id)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(|row| row.split().1.grant()).collect())
}

pub async fn grants_of_user<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<Grant>, sqlx::Error> {
    Ok(
        grants_of_user_with_roles(executor, organization_id, user_id)
            .await?
            .into_iter()
            .map(|(grant, _)| grant)
            .collect(),
    )
}

/// What the groups of each of these users grant, as (user id, grant).
pub async fn grants_of_users(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Grant>>, sqlx::Error> {
    let rows = member_grant_rows!("m.user_id = any($2)", organization_id, user_ids)
        .fetch_all(&mut **tx)
        .await?;
    let mut grants: HashMap<Uuid, Vec<Grant>> = HashMap::new();
    for row in rows {
        let (user_id, grant) = row.split();
        grants.entry(user_id).or_default().push(grant.grant().0);
    }
    Ok(grants)
}

/// Every group of the organization by name, with what it grants.
pub async fn all_named_grants(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
) -> Result<Vec<(String, Grant)>, sqlx::Error> {
    let rows = grant_rows(&mut **tx, organization_id, None).await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.name.clone(), row.grant().0))
        .collect())
}

/// One member of `group_id` (id and email) who also belongs to any of `other_group_ids`.
pub async fn member_also_in_any(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    group_id: Uuid,
    other_group_ids: &[Uuid],
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    let member = sqlx::query!(
        "select u.id, u.email from memberships m \
         join users u on u.organization_id = m.organization_id and u.id = m.user_id \
         where m.organization_id = $1 and m.group_id = $2 and exists ( \
             select 1 from memberships o where o.organization_id = m.organization_id \
             and o.user_id = m.user_id and o.group_id = any($3)) \
         order by u.id limit 1",
        organization_id,
        group_id,
        other_group_ids,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(member.map(|row| (row.id, row.email)))
}

/// Adds (user, group) memberships in one statement; existing ones are kept.
pub async fn add_many_memberships(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_ids: &[Uuid],
    group_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "insert into memberships (organization_id, user_id, group_id) \
         select $1, u, g from unnest($2::uuid[], $3::uuid[]) as t(u, g) on conflict do nothing",
        organization_id,
        user_ids,
        group_ids,
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Adds memberships; returns the groups the user was not already in.
pub async fn add_memberships(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    group_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into memberships (organization_id, user_id, group_id) select $1, $2, unnest($3::uuid[]) \
         on conflict do nothing returning group_id",
        organization_id,
        user_id,
        group_ids,
    )
    .fetch_all(&mut **tx)
    .await
}

/// Removes memberships; returns the groups the user was in.
pub async fn remove_memberships(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    group_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "delete from memberships where organization_id = $1 and user_id = $2 and group_id = any($3) \
         returning group_id",
        organization_id,
        user_id,
        group_ids,
    )
    .fetch_all(&mut **tx)
    .await
}

/// One (profile, unit scope) pair of a user's access, with names for people.
#[derive(Debug, Clone)]
struct AccessRow {
    pub user_id: Uuid,
    pub group_id: Uuid,
    pub group_name: String,
    pub profile_id: Uuid,
    pub product: String,
    pub profile_name: String,
    pub unit_scope: ScopeKind,
    pub unit_ids: Vec<Uuid>,
    pub unit_names: Vec<String>,
    pub built_in: Option<BuiltInRole>,
}

impl From<AccessRow> for NamedGrant {
    fn from(row: AccessRow) -> Self {
        NamedGrant {
            unit_names: unit_names_by_id(&row.unit_ids, row.unit_names),
            grant: Grant {
                group_id: row.group_id,
                profile_id: row.profile_id,
                scope: scope_of(row.unit_scope, row.unit_ids),
            },
            group_name: row.group_name,
            product: row.product,
            profile_name: row.profile_name,
            built_in: row.built_in.map(|role| role.0),
        }
    }
}

/// What the groups of the users `$condition` picks (on `memberships m`)
/// grant, with names for people: the select is wrapped between `$head` and
/// `$tail` (`""` and an order for a list of users; a lateral join from the
/// user for `status_and_access_of_user`).
macro_rules! access_rows {
    ($row:ident, $head:literal, $condition:literal, $tail:literal $(+ $more:literal)* $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $row,
            $head
                + "select m.user_id, g.id as group_id, g.name as group_name, p.id as profile_id, p.product,
                    p.name as profile_name, g.unit_scope as \"unit_scope: ScopeKind\",
                    p.built_in as \"built_in: BuiltInRole\",
                    coalesce((select array_agg(gu.unit_id order by gu.unit_id) from group_units gu
                              where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as \"unit_ids!\",
                    coalesce((select array_agg(u.name order by gu.unit_id) from group_units gu
                              join units u on u.organization_id = gu.organization_id and u.id = gu.unit_id
                              where gu.organization_id = g.organization_id and gu.group_id = g.id), '{}') as \"unit_names!\"
             from memberships m
             join groups g on g.organization_id = m.organization_id and g.id = m.group_id
             join profiles p on p.organization_id = g.organization_id and p.id = g.profile_id
             where "
                + $condition
                + $tail $(+ $more)*
            $(, $arg)*
        )
    };
}

/// The status facts of each user the `$tail` picks (on `users`) and what
/// their groups grant, a row per grant (one of nulls for none).
macro_rules! status_and_access_rows {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        access_rows!(
            UserAccessRow,
            "select users.id as user_id, users.admin_state as \"admin_state: AdminState\",
                    users.legacy_status as \"legacy_status: LegacyStatus\", users.onboarded,
                    users.invitation_expire_time, now() as \"read_time!\",
                    a.group_id as \"group_id?\", a.group_name as \"group_name?\", a.profile_id as \"profile_id?\",
                    a.product as \"product?\", a.profile_name as \"profile_name?\",
                    a.\"unit_scope: ScopeKind\" as \"unit_scope?: ScopeKind\",
                    a.\"built_in: BuiltInRole\" as \"built_in?: BuiltInRole\",
                    a.\"unit_ids!\" as \"unit_ids?\", a.\"unit_names!\" as \"unit_names?\"
             from users left join lateral (",
            "m.organization_id = users.organization_id and m.user_id = users.id",
            ") a on true " + $tail
            $(, $arg)*
        )
    };
}

/// A user's status facts and one of their grants (none when they hold no
/// group): a row of `status_and_access_of_user`.
struct UserAccessRow {
    user_id: Uuid,
    admin_state: AdminState,
    legacy_status: Option<LegacyStatus>,
    onboarded: bool,
    invitation_expire_time: Option<DateTime<Utc>>,
    read_time: DateTime<Utc>,
    group_id: Option<Uuid>,
    group_name: Option<String>,
    profile_id: Option<Uuid>,
    product: Option<String>,
    profile_name: Option<String>,
    unit_scope: Option<ScopeKind>,
    unit_ids: Option<Vec<Uuid>>,
    unit_names: Option<Vec<String>>,
    built_in: Option<BuiltInRole>,
}

impl UserAccessRow {
    /// Each user's status and grants, from their rows (a user's rows
    /// together, the first carrying the status facts).
    fn by_user(rows: Vec<Self>) -> HashMap<Uuid, StatusAndAccess> {
        let mut users: HashMap<Uuid, StatusAndAccess> = HashMap::new();
        for row in rows {
            let (_, grants) = users.entry(row.user_id).or_insert_with(|| {
                let facts = StatusFacts {
                    admin_state: row.admin_state,
                    legacy_status: row.legacy_status,
                    onboarded: row.onboarded,
                    invitation_expire_time: row.invitation_expire_time,
                };
                (UserStatus::derive(facts, row.read_time), Vec::new())
            });
            grants.extend(row.grant());
        }
        users
    }

    fn grant(self) -> Option<NamedGrant> {
        let row = AccessRow {
            user_id: Uuid::nil(),
            group_id: self.group_id?,
            group_name: self.group_name?,
            profile_id: self.profile_id?,
            product: self.product?,
            profile_name: self.profile_name?,
            unit_scope: self.unit_scope?,
            unit_ids: self.unit_ids.unwrap_or_default(),
            unit_names: self.unit_names.unwrap_or_default(),
            built_in: self.built_in,
        };
        Some(row.into())
    }
}

/// A user's derived status and what their groups grant.
pub type StatusAndAccess = (UserStatus, Vec<NamedGrant>);

/// GetUserAccess in one round trip: the user's derived status and what
/// their groups grant; `None` when no such user. (Whether the grants count
/// is the domain's rule: only for someone who can sign in.)
pub async fn status_and_access_of_user<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<StatusAndAccess>, sqlx::Error> {
    let rows = status_and_access_rows!(
        "where users.organization_id = $1 and users.id = $2
         order by a.product, a.profile_name, a.group_name",
        organization_id,
        user_id,
    )
    .fetch_all(executor)
    .await?;
    Ok(UserAccessRow::by_user(rows).remove(&user_id))
}

/// GetUserAccess's read, shared by the calls that arrive together
/// (`shared_reads`): the status and grants of up to `SLOTS` users, by id.
pub fn read_shared_status_and_access(
    pool: &Pool,
    organization_id: Uuid,
    user_ids: Vec<Uuid>,
) -> BoxFuture<'_, Result<HashMap<Uuid, StatusAndAccess>, sqlx::Error>> {
    Box::pin(async move {
        read!(pool, |connection| {
            status_and_access_in_slots(connection, organization_id, &user_ids).await
        })
    })
}

/// The status and grants of up to `SLOTS` users, by id, in a statement of
/// exactly `SLOTS` parameters (one plan for any number of users; see
/// `shared_reads::SLOTS`).
pub async fn status_and_access_in_slots(
    connection: &mut PgConnection,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, StatusAndAccess>, sqlx::Error> {
    if let [user_id] = user_ids[..] {
        let found = status_and_access_of_user(connection, organization_id, user_id).await?;
        return Ok(found.into_iter().map(|found| (user_id, found)).collect());
    }
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let [a, b, c, d, e, f, g, h] = in_slots(user_ids);
    let rows = status_and_access_rows!(
        "where users.organization_id = $1 and users.id in ($2, $3, $4, $5, $6, $7, $8, $9)
         order by users.id, a.product, a.profile_name, a.group_name",
        organization_id,
        a,
        b,
        c,
        d,
        e,
        f,
        g,
        h,
    )
    .fetch_all(connection)
    .await?;
    Ok(UserAccessRow::by_user(rows))
}

/// The grants of each of these users, in one statement (the change stream
/// sends the access of every user a batch of changes names).
pub async fn access_of_users<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<Vec<(Uuid, NamedGrant)>, sqlx::Error> {
    let rows = access_rows!(
        AccessRow,
        "",
        "m.organization_id = $1 and m.user_id = any($2)",
        " order by m.user_id, p.product, p.name, g.name",
        organization_id,
        user_ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.user_id, row.into()))
        .collect())
}
