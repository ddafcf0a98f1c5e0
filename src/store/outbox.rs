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

/// Queues the invitations of many new users in one statement.
pub async fn enqueue_invitations(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = user_ids.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "insert into outbox (organization_id, id, kind, user_id) \
         select $1, t.id, 'INVITATION', t.user_id from unnest($2::uuid[], $3::uuid[]) as t(id, user_id)",
    )
    .bind(organization_id)
    .bind(&ids)
    .bind(user_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
