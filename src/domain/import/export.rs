//! ExportUsers (spec §3): the users matching ListUsers' filters as a CSV in
//! the import format plus `groups`, `status` and `id`, written page by page
//! so memory stays flat whatever the directory's size.

use serde_json::json;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{csv_line, header::Column, EXPORT_COLUMNS};
use crate::{
    domain::{audit::AuditRecord, caller::Caller, user::UserFilter, DomainError},
    store,
};

const PAGE: i64 = 1000;

/// Records the export, then sends the file in chunks (the first with the
/// BOM and the header) until `out` is full of it or closed.
pub async fn export_users(
    pool: PgPool,
    caller: Caller,
    request_id: String,
    filter: UserFilter,
    delimiter: char,
    out: mpsc::Sender<Result<Vec<u8>, DomainError>>,
) {
    let organization_id = caller.organization_id;
    let audited = async {
        let mut tx = pool.begin().await?;
        store::audit::record(
            &mut tx,
            &AuditRecord::new(
                organization_id,
                caller.actor(),
                "user.export",
                "organization",
                organization_id,
            )
            .with_request_id(&request_id)
            .with_details(json!({ "filter": filter })),
        )
        .await?;
        tx.commit().await
    };
    if let Err(error) = audited.await {
        let _ = out.send(Err(error.into())).await;
        return;
    }
    let mut chunk = String::from("\u{FEFF}");
    csv_line(EXPORT_COLUMNS.map(Column::name), delimiter, &mut chunk);
    let mut after: Option<Uuid> = None;
    loop {
        let rows =
            match store::users::export_page(&pool, organization_id, &filter, after, PAGE).await {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = out.send(Err(error.into())).await;
                    return;
                }
            };
        let last_page = (rows.len() as i64) < PAGE;
        after = rows.last().map(|row| row.id);
        for row in &rows {
            let id = row.id.to_string();
            let status = row.status.to_lowercase();
            csv_line(
                [
                    row.first_name.as_str(),
                    &row.last_name,
                    &row.email,
                    &row.username,
                    row.phone.as_deref().unwrap_or_default(),
                    row.external_id.as_deref().unwrap_or_default(),
                    &row.groups,
                    &status,
                    &id,
                ],
                delimiter,
                &mut chunk,
            );
        }
        if out
            .send(Ok(std::mem::take(&mut chunk).into_bytes()))
            .await
            .is_err()
            || last_page
        {
            return;
        }
    }
}
