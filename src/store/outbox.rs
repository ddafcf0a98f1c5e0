use uuid::Uuid;

use super::Transaction;

/// Queues "invite user X" in the transaction that creates or re-invites the
/// user; the delivery worker creates the token when it sends.
pub async fn enqueue_invitation(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into outbox (organization_id, id, kind, user_id) values ($1, $2, 'INVITATION', $3)",
    )
    .bind(organization_id)
    .bind(Uuid::now_v7())
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
