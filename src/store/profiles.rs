use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    map_constraint_violation,
    paging::{newest_first, newest_first_page},
    Pool, Transaction,
};
use crate::domain::{
    caller::Scope,
    group::{Profile, ProfileValues},
    paging::{fingerprint, Page, PageRequest},
    DomainError,
};

/// Product name of Roster's own profiles.
pub const USER_MANAGEMENT: &str = "User Management";

/// The columns every statement here returns; the list, built at run time, uses this.
const COLUMNS: &str = "id, product, name, description, built_in, create_time, update_time";

/// `profiles.built_in`: the role a built-in profile gives. A stored value
/// Roster does not know is a decode error, never a plain profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInRole(pub Scope);

impl sqlx::Type<Postgres> for BuiltInRole {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl sqlx::Decode<'_, Postgres> for BuiltInRole {
    fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<Self, sqlx::error::BoxDynError> {
        let raw = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Scope::parse(raw)
            .map(Self)
            .ok_or_else(|| format!("stored built-in role {raw:?} is not one Roster knows").into())
    }
}

#[derive(FromRow)]
struct ProfileRow {
    id: Uuid,
    product: String,
    name: String,
    description: String,
    built_in: Option<BuiltInRole>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

newest_first!(ProfileRow);

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        Profile {
            id: row.id,
            product: row.product,
            name: row.name,
            description: row.description,
            built_in: row.built_in.map(|role| role.0),
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

fn map_profile_constraints(error: sqlx::Error) -> DomainError {
    map_constraint_violation(error, |constraint| match constraint {
        "profiles_org_product_name_key" => Some(DomainError::AlreadyExists {
            reason: "PROFILE_ALREADY_EXISTS",
            field: "profile.name".into(),
            message: "a profile with this product and name already exists".into(),
        }),
        "groups_profile_fkey" => Some(DomainError::FailedPrecondition {
            reason: "PROFILE_IN_USE",
            message: "groups use this profile; change or delete them first".into(),
        }),
        _ => None,
    })
}

/// Creates the two built-in profiles every organization starts with.
pub async fn insert_built_in(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into profiles (organization_id, id, product, name, description, built_in) values \
         ($1, $2, $4, 'Admin', 'Manage users, groups, units, profiles and keys of the organization.', 'ADMIN'), \
         ($1, $3, $4, 'Viewer', 'Read users, groups, units and profiles of the organization.', 'VIEWER')",
        organization_id,
        Uuid::now_v7(),
        Uuid::now_v7(),
        USER_MANAGEMENT,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn insert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &ProfileValues,
) -> Result<Profile, DomainError> {
    let row = sqlx::query_as!(
        ProfileRow,
        r#"insert into profiles (organization_id, id, product, name, description) values ($1, $2, $3, $4, $5)
           returning id, product, name, description, built_in as "built_in: BuiltInRole", create_time, update_time"#,
        organization_id,
        Uuid::now_v7(),
        values.product.as_str(),
        values.name.as_str(),
        values.description.as_str(),
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(map_profile_constraints)?;
    Ok(row.into())
}

pub async fn update(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    values: &ProfileValues,
) -> Result<Profile, DomainError> {
    let row = sqlx::query_as!(
        ProfileRow,
        r#"update profiles set product = $3, name = $4, description = $5
           where organization_id = $1 and id = $2 and built_in is null
           returning id, product, name, description, built_in as "built_in: BuiltInRole", create_time, update_time"#,
        organization_id,
        id,
        values.product.as_str(),
        values.name.as_str(),
        values.description.as_str(),
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(map_profile_constraints)?;
    Ok(row.into())
}

pub async fn delete(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, DomainError> {
    let result = sqlx::query!(
        "delete from profiles where organization_id = $1 and id = $2 and built_in is null",
        organization_id,
        id,
    )
    .execute(&mut **tx)
    .await
    .map_err(map_profile_constraints)?;
    Ok(result.rows_affected() == 1)
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Profile>, sqlx::Error> {
    let row = sqlx::query_as!(
        ProfileRow,
        r#"select id, product, name, description, built_in as "built_in: BuiltInRole", create_time, update_time
           from profiles where organization_id = $1 and id = $2"#,
        organization_id,
        id,
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// Newest first. Built at run time: the product filter is added only when set.
pub async fn list(
    pool: &Pool,
    organization_id: Uuid,
    product: &str,
    page: &PageRequest,
) -> Result<Page<Profile>, DomainError> {
    let query_fingerprint = fingerprint(&("profiles", product));
    let product = product.trim().to_owned();
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push("from profiles where organization_id = ")
            .push_bind(organization_id);
        if !product.is_empty() {
            query
                .push(" and lower(product) = lower(")
                .push_bind(product.clone())
                .push(")");
        }
    };
    newest_first_page::<ProfileRow, _>(pool, COLUMNS, push_from_where, page, &query_fingerprint)
        .await
}
