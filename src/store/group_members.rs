//! Groups with their members as one whole (SCIM's Group resource): groups
//! matching a condition, their members, and a group's members changed at
//! once. Statements are built at run time (the condition is a tree).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    groups::{GroupRow, COLUMNS},
    users::{like_escape, push_text_comparison, push_time_comparison},
    Transaction,
};
use crate::domain::{
    group::{GroupCondition, GroupMember, TrackedGroup},
    user::{TextOp, TimeField},
};

/// When a member last joined the group `g`.
const LAST_JOIN_TIME: &str = "(select max(m.create_time) from memberships m \
     where m.organization_id = g.organization_id and m.group_id = g.id)";

#[derive(FromRow)]
struct TrackedRow {
    #[sqlx(flatten)]
    group: GroupRow,
    last_join_time: Option<DateTime<Utc>>,
}

impl From<TrackedRow> for TrackedGroup {
    fn from(row: TrackedRow) -> Self {
        TrackedGroup {
            group: row.group.into(),
            last_join_time: row.last_join_time,
        }
    }
}

fn select_tracked() -> QueryBuilder<'static, Postgres> {
    QueryBuilder::new(format!(
        "select {COLUMNS}, {LAST_JOIN_TIME} as last_join_time"
    ))
}

/// The groups matching, oldest first: `offset` skipped, at most `limit`,
/// and how many match in all.
pub async fn matching(
    connection: &mut PgConnection,
    organization_id: Uuid,
    condition: &GroupCondition,
    offset: i64,
    limit: i64,
) -> Result<(Vec<TrackedGroup>, i64), sqlx::Error> {
    let total = crate::store::paging::count_matching(&mut *connection, |count| {
        push_from_where(count, organization_id, condition)
    })
    .await?;
    if limit == 0 || offset >= total {
        return Ok((Vec::new(), total));
    }
    let mut page = select_tracked();
    push_from_where(&mut page, organization_id, condition);
    page.push(" order by g.create_time, g.id offset ")
        .push_bind(offset)
        .push(" limit ")
        .push_bind(limit);
    let rows: Vec<TrackedRow> = page
        .build_query_as()
        .persistent(false)
        .fetch_all(&mut *connection)
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<TrackedGroup>, sqlx::Error> {
    let mut query = select_tracked();
    push_from_where(&mut query, organization_id, &GroupCondition::Id(id));
    let row: Option<TrackedRow> = query.build_query_as().fetch_optional(executor).await?;
    Ok(row.map(Into::into))
}

fn push_from_where(
    query: &mut QueryBuilder<'_, Postgres>,
    organization_id: Uuid,
    condition: &GroupCondition,
) {
    query
        .push(" from groups g where g.organization_id = ")
        .push_bind(organization_id)
        .push(" and ");
    push_condition(query, condition);
}

/// Each comparison is never null, so `not` turns exactly the matches into
/// non-matches.
fn push_condition(query: &mut QueryBuilder<'_, Postgres>, condition: &GroupCondition) {
    match condition {
        GroupCondition::Always(always) => {
            query.push(if *always { "true" } else { "false" });
        }
        GroupCondition::And(left, right) | GroupCondition::Or(left, right) => {
            let joint = match condition {
                GroupCondition::And(..) => " and ",
                _ => " or ",
            };
            query.push("(");
            push_condition(query, left);
            query.push(joint);
            push_condition(query, right);
            query.push(")");
        }
        GroupCondition::Not(inner) => {
            query.push("not (");
            push_condition(query, inner);
            query.push(")");
        }
        GroupCondition::Name { op, value } => {
            let (operator, bind) = match op {
                TextOp::Equals => ("=", value.clone()),
                TextOp::NotEquals => ("<>", value.clone()),
                TextOp::Contains => ("like", format!("%{}%", like_escape(value))),
                TextOp::StartsWith => ("like", format!("{}%", like_escape(value))),
                TextOp::EndsWith => ("like", format!("%{}", like_escape(value))),
            };
            query
                .push(format!("lower(g.name) {operator} lower("))
                .push_bind(bind)
                .push(")");
        }
        GroupCondition::Id(id) => {
            query.push("g.id = ").push_bind(*id);
        }
        GroupCondition::ExternalId { op, value } => {
            push_text_comparison(query, "g.external_id", true, *op, value);
        }
        GroupCondition::HasExternalId => {
            query.push("g.external_id is not null");
        }
        GroupCondition::Member(user_id) => {
            query
                .push("exists (select 1 from memberships m where m.organization_id = g.organization_id and m.group_id = g.id and m.user_id = ")
                .push_bind(*user_id)
                .push(")");
        }
        GroupCondition::Time { field, op, value } => {
            let column = match field {
                TimeField::Created => "g.create_time".to_owned(),
                TimeField::LastModified => format!("greatest(g.update_time, {LAST_JOIN_TIME})"),
            };
            push_time_comparison(query, &column, *op, *value);
        }
    }
}

#[derive(FromRow)]
struct MemberRow {
    group_id: Uuid,
    user_id: Uuid,
}

/// The members of these groups, by group then user id.
pub async fn members_of(
    connection: &mut PgConnection,
    organization_id: Uuid,
    group_ids: &[Uuid],
) -> Result<Vec<GroupMember>, sqlx::Error> {
    let rows: Vec<MemberRow> = sqlx::query_as(
        "select m.group_id, m.user_id from memberships m \
         where m.organization_id = $1 and m.group_id = any($2) order by m.group_id, m.user_id",
    )
    .bind(organization_id)
    .bind(group_ids)
    .fetch_all(connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| GroupMember {
            group_id: row.group_id,
            user_id: row.user_id,
        })
        .collect())
}

/// The ids of a group's members.
pub async fn member_ids(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    group_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select user_id from memberships where organization_id = $1 and group_id = $2",
    )
    .bind(organization_id)
    .bind(group_id)
    .fetch_all(&mut **tx)
    .await
}

/// Those of `ids` that are users of the organization.
pub async fn existing_user_ids(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("select id from users where organization_id = $1 and id = any($2)")
        .bind(organization_id)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await
}

/// Makes these users members of the group (those already in stay).
pub async fn add(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    group_id: Uuid,
    user_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into memberships (organization_id, user_id, group_id) \
         select $1, unnest($2::uuid[]), $3 on conflict do nothing",
    )
    .bind(organization_id)
    .bind(user_ids)
    .bind(group_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn remove(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    group_id: Uuid,
    user_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "delete from memberships where organization_id = $1 and group_id = $2 and user_id = any($3)",
    )
    .bind(organization_id)
    .bind(group_id)
    .bind(user_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
