use uuid::Uuid;

use super::Transaction;

/// Product name of Roster's own profiles.
pub const USER_MANAGEMENT: &str = "User Management";

/// Creates the two built-in profiles every organization starts with.
pub async fn insert_built_in(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into profiles (organization_id, id, product, name, description, built_in) values \
         ($1, $2, $4, 'Admin', 'Manage users, groups, units, profiles and keys of the organization.', 'ADMIN'), \
         ($1, $3, $4, 'Viewer', 'Read users, groups, units and profiles of the organization.', 'VIEWER')",
    )
    .bind(organization_id)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(USER_MANAGEMENT)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
