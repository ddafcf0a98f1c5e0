use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    map_constraint_violation,
    paging::{newest_first, newest_first_page},
    Pool, Transaction,
};
use crate::domain::{
    group::{Unit, UnitFilter, UnitKind, UnitValues},
    paging::{fingerprint, Page, PageRequest},
    DomainError,
};

/// The columns every statement here returns; the list, built at run time, uses this.
const COLUMNS: &str = "id, name, kind, create_time, update_time";

#[derive(FromRow)]
struct UnitRow {
    id: Uuid,
    name: String,
    kind: UnitKind,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

newest_first!(UnitRow);

impl From<UnitRow> for Unit {
    fn from(row: UnitRow) -> Self {
        Unit {
            id: row.id,
            name: row.name,
            kind: row.kind,
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

fn map_unit_constraints(error: sqlx::Error) -> DomainError {
    map_constraint_violation(error, |constraint| match constraint {
        "units_org_name_key" => Some(DomainError::AlreadyExists {
            reason: "UNIT_ALREADY_EXISTS",
            field: "unit.name".into(),
            message: "a unit with this name already exists".into(),
        }),
        "group_units_unit_fkey" => Some(DomainError::FailedPrecondition {
            reason: "UNIT_IN_USE",
            message: "groups are scoped to this unit; change or delete them first".into(),
        }),
        _ => None,
    })
}

pub async fn insert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &UnitValues,
) -> Result<Unit, DomainError> {
    let row = sqlx::query_as!(
        UnitRow,
        r#"insert into units (organization_id, id, name, kind) values ($1, $2, $3, $4)
           returning id, name, kind as "kind: UnitKind", create_time, update_time"#,
        organization_id,
        Uuid::now_v7(),
        values.name.as_str(),
        values.kind as UnitKind,
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(map_unit_constraints)?;
    Ok(row.into())
}

pub async fn update(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    values: &UnitValues,
) -> Result<Unit, DomainError> {
    let row = sqlx::query_as!(
        UnitRow,
        r#"update units set name = $3, kind = $4 where organization_id = $1 and id = $2
           returning id, name, kind as "kind: UnitKind", create_time, update_time"#,
        organization_id,
        id,
        values.name.as_str(),
        values.kind as UnitKind,
    )
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_unit_constraints)?;
    row.map(Into::into)
        .ok_or_else(|| DomainError::not_found("unit", id))
}

pub async fn delete(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, DomainError> {
    let result = sqlx::query!(
        "delete from units where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .execute(&mut **tx)
    .await
    .map_err(map_unit_constraints)?;
    Ok(result.rows_affected() == 1)
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Unit>, sqlx::Error> {
    let row = sqlx::query_as!(
        UnitRow,
        r#"select id, name, kind as "kind: UnitKind", create_time, update_time
           from units where organization_id = $1 and id = $2"#,
        organization_id,
        id,
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// The unit with this name, ignoring case (names are unique so).
pub async fn id_by_name<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    name: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from units where organization_id = $1 and lower(name) = lower($2)",
        organization_id,
        name,
    )
    .fetch_optional(executor)
    .await
}

/// The ids among `ids` that are units of the organization.
pub async fn existing_ids<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from units where organization_id = $1 and id = any($2)",
        organization_id,
        ids,
    )
    .fetch_all(executor)
    .await
}

/// Newest first. Built at run time: the name and kind filters are added
/// only when set.
pub async fn list(
    pool: &Pool,
    organization_id: Uuid,
    filter: &UnitFilter,
    page: &PageRequest,
) -> Result<Page<Unit>, DomainError> {
    let UnitFilter {
        name_contains,
        kind,
    } = filter.clone();
    let query_fingerprint = fingerprint(&("units", &name_contains, kind.map(UnitKind::as_str)));
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from units where organization_id = ")
            .push_bind(organization_id);
        if !name_contains.is_empty() {
            query
                .push(" and name ilike ")
                .push_bind(format!("%{}%", name_contains.replace('%', "\\%")));
        }
        if let Some(kind) = kind {
            query.push(" and kind = ").push_bind(kind.as_str());
        }
    };
    newest_first_page::<UnitRow, _>(pool, COLUMNS, push_from_where, page, &query_fingerprint).await
}
