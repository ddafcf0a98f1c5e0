//! One-off markers of the installation.

use super::Transaction;

/// Sets a marker; true only for the transaction that set it first.
pub async fn claim_marker(tx: &mut Transaction<'_>, key: &str) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into roster_meta (key) values ($1) on conflict (key) do nothing",
        key,
    )
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
