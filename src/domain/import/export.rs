//! ExportUsers (spec §3): the users matching ListUsers' filters as a CSV in
//! the import format (`EXPORT_COLUMNS`), written page by page
//! so memory stays flat whatever the directory's size.

use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{csv_line, header::Column, EXPORT_COLUMNS};
use crate::{
    domain::{call::Call, user::UserFilter, DomainError},
    store,
};

const PAGE: i64 = 1000;

/// Records the export, then sends the file in chunks (the first with the
/// BOM and the header) until `out` is full of it or closed.
pub async fn export_users(
    call: Call,
    filter: UserFilter,
    delimiter: char,
    out: mpsc::Sender<Result<Vec<u8>, DomainError>>,
) {
    let (pool, organization_id) = (call.pool(), call.organization_id());
    if let Err(error) = record_export(&call, &filter).await {
        let _ = out.send(Err(error)).await;
        return;
    }
    let mut chunk = String::from("\u{FEFF}");
    csv_line(EXPORT_COLUMNS.map(Column::name), delimiter, &mut chunk);
    let mut after: Option<Uuid> = None;
    loop {
        let rows =
            match store::users::export_page(pool, organization_id, &filter, after, PAGE).await {
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
            let status = row.status.as_str().to_lowercase();
            let derived_status = row.derived_status.as_str().to_lowercase();
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
                    if row.onboarded { "true" } else { "false" },
                    &derived_status,
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

/// The audit record of an export, committed before any row is sent: an
/// export that cannot be recorded sends nothing.
async fn record_export(call: &Call, filter: &UserFilter) -> Result<(), DomainError> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    let record = work
        .audit_record("user.export", "organization", caller.organization_id)
        .with_details(json!({ "filter": filter }));
    work.record(record);
    work.commit().await
}
