//! Users matching a `UserCondition` (a SCIM filter): the condition becomes
//! a `where` clause with every value bound, never written into the SQL.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{UserRow, USER_COLUMNS};
use crate::domain::user::{
    TextField, TextOp, TimeField, TimeOp, User, UserCondition, UserOrdering, UserSort,
};

/// A page of the matches in `ordering`, and how many match in all.
pub async fn matching(
    connection: &mut PgConnection,
    organization_id: Uuid,
    condition: &UserCondition,
    ordering: UserOrdering,
    offset: i64,
    limit: i64,
) -> Result<(Vec<User>, i64), sqlx::Error> {
    let total = crate::store::paging::count_matching(&mut *connection, |count| {
        push_from_where(count, organization_id, condition)
    })
    .await?;
    if limit == 0 || offset >= total {
        return Ok((Vec::new(), total));
    }
    let mut page = QueryBuilder::new(format!("select {USER_COLUMNS}"));
    push_from_where(&mut page, organization_id, condition);
    page.push(format!(" order by {} offset ", order_by(ordering)))
        .push_bind(offset)
        .push(" limit ")
        .push_bind(limit);
    let rows: Vec<UserRow> = page
        .build_query_as()
        .persistent(false)
        .fetch_all(&mut *connection)
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

/// The ORDER BY of a sort: the expressions of an index where there is one
/// (`lower(username)`, `lower(email)`, `last_name_key`, `create_time`, the
/// key), the id breaking ties.
fn order_by(ordering: UserOrdering) -> String {
    let direction = if ordering.descending { "desc" } else { "asc" };
    let key = match ordering.by {
        UserSort::Created => "users.create_time",
        UserSort::LastModified => "users.update_time",
        UserSort::Username => "lower(users.username)",
        UserSort::Email => "lower(users.email)",
        UserSort::ExternalId => {
            return format!("users.external_id {direction} nulls last, users.id {direction}")
        }
        UserSort::FirstName => "lower(users.first_name)",
        UserSort::LastName => "users.last_name_key",
        UserSort::Id => return format!("users.id {direction}"),
    };
    format!("{key} {direction}, users.id {direction}")
}

fn push_from_where(
    query: &mut QueryBuilder<'_, Postgres>,
    organization_id: Uuid,
    condition: &UserCondition,
) {
    query
        .push(" from users where users.organization_id = ")
        .push_bind(organization_id)
        .push(" and ");
    push_condition(query, condition);
}

/// Each comparison is never null (`coalesce`), so `not` turns exactly
/// the matches into non-matches, absent values included.
fn push_condition(query: &mut QueryBuilder<'_, Postgres>, condition: &UserCondition) {
    match condition {
        UserCondition::Always(true) => {
            query.push("true");
        }
        UserCondition::Always(false) => {
            query.push("false");
        }
        UserCondition::And(left, right) | UserCondition::Or(left, right) => {
            let joint = match condition {
                UserCondition::And(..) => " and ",
                _ => " or ",
            };
            query.push("(");
            push_condition(query, left);
            query.push(joint);
            push_condition(query, right);
            query.push(")");
        }
        UserCondition::Not(inner) => {
            query.push("not (");
            push_condition(query, inner);
            query.push(")");
        }
        UserCondition::Text { field, op, value } => push_text(query, *field, *op, value),
        UserCondition::Present(field) => {
            query.push(format!("coalesce({} <> '', false)", text_column(*field)));
        }
        UserCondition::Time { field, op, value } => {
            let column = match field {
                TimeField::Created => "users.create_time",
                TimeField::LastModified => "users.update_time",
            };
            push_time_comparison(query, column, *op, *value);
        }
        UserCondition::Active(active) => {
            query
                .push("((users.admin_state = 'ACTIVE' and users.legacy_status is null) = ")
                .push_bind(*active)
                .push(")");
        }
        UserCondition::Id(id) => {
            query.push("users.id = ").push_bind(*id);
        }
    }
}

fn text_column(field: TextField) -> &'static str {
    match field {
        TextField::Username => "users.username",
        TextField::Email => "users.email",
        TextField::ExternalId => "users.external_id",
        TextField::FirstName => "users.first_name",
        TextField::LastName => "users.last_name",
        TextField::Phone => "users.phone",
    }
}

fn push_text(query: &mut QueryBuilder<'_, Postgres>, field: TextField, op: TextOp, value: &str) {
    push_text_comparison(query, text_column(field), field.case_exact(), op, value);
}

/// A comparison of a nullable text column that is never null: an absent
/// value differs from every value and contains none.
pub(crate) fn push_text_comparison(
    query: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    case_exact: bool,
    op: TextOp,
    value: &str,
) {
    let (column, bound) = if case_exact {
        (column.to_owned(), "")
    } else {
        (format!("lower({column})"), "lower")
    };
    let (operator, bind, absent) = match op {
        TextOp::Equals => ("=", value.to_owned(), "false"),
        TextOp::NotEquals => ("<>", value.to_owned(), "true"),
        TextOp::Contains => ("like", format!("%{}%", like_escape(value)), "false"),
        TextOp::StartsWith => ("like", format!("{}%", like_escape(value)), "false"),
        TextOp::EndsWith => ("like", format!("%{}", like_escape(value)), "false"),
    };
    query
        .push(format!("coalesce({column} {operator} {bound}("))
        .push_bind(bind)
        .push(format!("), {absent})"));
}

/// A comparison of a time column (or expression) with `value`.
pub(crate) fn push_time_comparison(
    query: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    op: TimeOp,
    value: DateTime<Utc>,
) {
    let operator = match op {
        TimeOp::Equals => "=",
        TimeOp::NotEquals => "<>",
        TimeOp::After => ">",
        TimeOp::AtOrAfter => ">=",
        TimeOp::Before => "<",
        TimeOp::AtOrBefore => "<=",
    };
    query.push(format!("{column} {operator} ")).push_bind(value);
}

/// `value` matched literally by LIKE (whose escape character is `\`).
pub(crate) fn like_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
