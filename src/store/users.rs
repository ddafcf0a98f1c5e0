use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use super::Transaction;

/// What deciding whether a user may act needs: admin state, legacy status, onboarding.
#[derive(Debug, Clone, FromRow)]
pub struct SignInState {
    pub admin_state: String,
    pub legacy_status: Option<String>,
    pub onboarded: bool,
}

pub async fn sign_in_state<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<SignInState>, sqlx::Error> {
    sqlx::query_as("select admin_state, legacy_status, onboarded from users where organization_id = $1 and id = $2")
        .bind(organization_id)
        .bind(user_id)
        .fetch_optional(executor)
        .await
}

/// A user's identity as WhoAmI shows it.
#[derive(Debug, Clone, FromRow)]
pub struct UserIdentity {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub onboarded: bool,
}

pub async fn identity<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<UserIdentity>, sqlx::Error> {
    sqlx::query_as(
        "select id, first_name, last_name, email, username, onboarded from users where organization_id = $1 and id = $2",
    )
    .bind(organization_id)
    .bind(user_id)
    .fetch_optional(executor)
    .await
}

/// Up to `limit` emails (lowercased) that several users share.
pub async fn some_duplicate_emails(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select lower(email) from users where organization_id = $1 \
         group by lower(email) having count(*) > 1 order by 1 limit $2",
    )
    .bind(organization_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}
