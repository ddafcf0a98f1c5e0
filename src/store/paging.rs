//! Pages of lists: newest-first keyset pages, and `total_size` as an exact
//! count up to the limit, then the planner's estimate, so counting never
//! scans a million rows.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use sqlx::{postgres::PgRow, FromRow, PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::Pool;
use crate::domain::{
    paging::{
        decode_page_token, encode_page_token, Page, PageRequest, TotalSize, EXACT_COUNT_LIMIT,
    },
    DomainError,
};

/// A list's `from ... where ...` (no order, no limit), pushed into a query.
pub trait FromWhere: Fn(&mut QueryBuilder<'static, Postgres>) {}
impl<F: Fn(&mut QueryBuilder<'static, Postgres>)> FromWhere for F {}

/// A row of a list ordered newest first, by `create_time desc, id desc`.
pub trait NewestFirst {
    fn create_time_and_id(&self) -> (DateTime<Utc>, Uuid);
}

/// Implements [`NewestFirst`] for row types with `create_time` and `id` columns.
macro_rules! newest_first {
    ($($row:ty),+) => {$(
        impl $crate::store::paging::NewestFirst for $row {
            fn create_time_and_id(&self) -> (DateTime<Utc>, Uuid) {
                (self.create_time, self.id)
            }
        }
    )+};
}
pub(crate) use newest_first;

/// One page ordered by `create_time desc, id desc`; the page token holds the
/// last item's (create_time, id) and is bound to `query_fingerprint`.
pub async fn newest_first_page<R, T>(
    pool: &Pool,
    columns: &str,
    push_from_where: impl FromWhere,
    page: &PageRequest,
    query_fingerprint: &str,
) -> Result<Page<T>, DomainError>
where
    R: for<'r> FromRow<'r, PgRow> + NewestFirst + Send + Unpin,
    T: From<R>,
{
    let after: Option<(DateTime<Utc>, Uuid)> = start_after(page, query_fingerprint)?;
    let mut query = QueryBuilder::new(format!("select {columns} "));
    push_from_where(&mut query);
    if let Some((time, id)) = after {
        query
            .push(" and (create_time, id) < (")
            .push_bind(time)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    query
        .push(" order by create_time desc, id desc limit ")
        .push_bind(page.size.fetch_limit());
    let mut rows: Vec<R> = query
        .build_query_as()
        .fetch_all(&mut *pool.acquire().await?)
        .await?;
    let next_page_token = cut_to_page(&mut rows, page, query_fingerprint, R::create_time_and_id);
    Ok(Page {
        items: rows.into_iter().map(Into::into).collect(),
        next_page_token,
        total_size: total_size(pool, push_from_where).await?,
    })
}

/// The keyset position the requested page starts after; `None` for the first page.
pub fn start_after<K: DeserializeOwned>(
    page: &PageRequest,
    query_fingerprint: &str,
) -> Result<Option<K>, DomainError> {
    decode_page_token(&page.token, query_fingerprint)
        .map_err(|violation| DomainError::InvalidArgument(vec![violation]))
}

/// Drops the one extra row fetched to learn whether a next page exists, and
/// returns that page's token: empty when this page is the last.
pub fn cut_to_page<R, K: Serialize>(
    rows: &mut Vec<R>,
    page: &PageRequest,
    query_fingerprint: &str,
    position_of: impl Fn(&R) -> K,
) -> String {
    let page_len = page.size.get() as usize;
    if rows.len() <= page_len {
        return String::new();
    }
    rows.truncate(page_len);
    rows.last()
        .map(|last| encode_page_token(&position_of(last), query_fingerprint))
        .unwrap_or_default()
}

/// How many rows `push_from_where` selects, counted exactly (SCIM's
/// `totalResults`, read before its page).
pub async fn count_matching<'a>(
    connection: &mut PgConnection,
    push_from_where: impl FnOnce(&mut QueryBuilder<'a, Postgres>),
) -> Result<i64, sqlx::Error> {
    let mut count = QueryBuilder::new("select count(*)");
    push_from_where(&mut count);
    // Planned for its own values every time, like a search's page.
    count
        .build_query_scalar()
        .persistent(false)
        .fetch_one(connection)
        .await
}

pub async fn total_size(
    pool: &Pool,
    push_from_where: impl FromWhere,
) -> Result<TotalSize, sqlx::Error> {
    let mut count_query = QueryBuilder::new("select count(*) from (select 1 ");
    push_from_where(&mut count_query);
    count_query
        .push(" limit ")
        .push_bind(EXACT_COUNT_LIMIT + 1)
        .push(") capped");
    // Planned for its own values every time, like a search's page.
    let count: i64 = count_query
        .build_query_scalar()
        .persistent(false)
        .fetch_one(&mut *pool.acquire().await?)
        .await?;
    if count <= EXACT_COUNT_LIMIT {
        return Ok(TotalSize {
            value: count,
            estimated: false,
        });
    }
    estimated_total_size(pool, push_from_where).await
}

/// The planner's estimate, for a list known to hold more than the exact
/// count's limit.
pub async fn estimated_total_size(
    pool: &Pool,
    push_from_where: impl FromWhere,
) -> Result<TotalSize, sqlx::Error> {
    let estimate = estimated_rows(pool, push_from_where).await?;
    Ok(TotalSize {
        value: estimate.max(EXACT_COUNT_LIMIT + 1),
        estimated: true,
    })
}

/// How many rows the planner expects `push_from_where` to find (it plans,
/// it does not run).
pub async fn estimated_rows(
    pool: &Pool,
    push_from_where: impl FromWhere,
) -> Result<i64, sqlx::Error> {
    let mut explain = QueryBuilder::new("explain (format json) select 1 ");
    push_from_where(&mut explain);
    let plan: serde_json::Value = explain
        .build_query_scalar()
        .fetch_one(&mut *pool.acquire().await?)
        .await?;
    Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or_default() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(size: i32) -> PageRequest {
        PageRequest::parse(size, String::new()).unwrap()
    }

    #[test]
    fn a_last_page_keeps_its_rows_and_has_no_next_token() {
        let mut rows = vec![1_u64, 2];
        assert_eq!(cut_to_page(&mut rows, &page_of(2), "q", |row| *row), "");
        assert_eq!(rows, [1, 2]);
    }

    #[test]
    fn the_extra_row_is_dropped_and_the_token_starts_after_the_last_kept() {
        let mut rows = vec![1_u64, 2, 3];
        let token = cut_to_page(&mut rows, &page_of(2), "q", |row| *row);
        assert_eq!(rows, [1, 2]);
        assert_eq!(token, encode_page_token(&2_u64, "q"));
        let next = PageRequest::parse(2, token).unwrap();
        assert_eq!(start_after::<u64>(&next, "q").unwrap(), Some(2));
        assert!(start_after::<u64>(&next, "other").is_err());
    }
}
