//! ExportUsers (spec §3): the users matching ListUsers' filters as a CSV in
//! the import format (`EXPORT_COLUMNS`, then one `attr.<key>` column per
//! custom attribute), written page by page so memory stays flat whatever
//! the directory's size.

use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    csv_line,
    header::{attribute_column, Column},
    EXPORT_COLUMNS,
};
use crate::{
    domain::{
        attribute::{json_as_text, AttributeSchema},
        call::Call,
        user::UserFilter,
        DomainError,
    },
    store::{self, users::ExportRow},
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
    let schema = match record_export(&call, &filter).await {
        Ok(schema) => schema,
        Err(error) => {
            let _ = out.send(Err(error)).await;
            return;
        }
    };
    let mut chunk = String::from("\u{FEFF}");
    let attribute_columns: Vec<String> =
        schema.definitions().iter().map(attribute_column).collect();
    let names = EXPORT_COLUMNS.map(Column::name);
    csv_line(
        names
            .into_iter()
            .chain(attribute_columns.iter().map(String::as_str)),
        delimiter,
        &mut chunk,
    );
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
            write_row(row, &schema, delimiter, &mut chunk);
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

/// One user's line: `EXPORT_COLUMNS`, then the attributes' values as text
/// the import reads back (`3`, `2.5`, `true`, `2026-03-01`).
fn write_row(row: &ExportRow, schema: &AttributeSchema, delimiter: char, chunk: &mut String) {
    let id = row.id.to_string();
    let status = row.status.as_str().to_lowercase();
    let derived_status = row.derived_status.as_str().to_lowercase();
    let attributes: Vec<String> = schema
        .definitions()
        .iter()
        .map(|d| {
            row.attributes
                .get(d.key.as_str())
                .map_or_else(String::new, json_as_text)
        })
        .collect();
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
        ]
        .into_iter()
        .chain(attributes.iter().map(String::as_str)),
        delimiter,
        chunk,
    );
}

/// The audit record of an export, committed before any row is sent: an
/// export that cannot be recorded sends nothing. Gives the custom
/// attributes' definitions, read in the same transaction.
async fn record_export(call: &Call, filter: &UserFilter) -> Result<AttributeSchema, DomainError> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    let schema = store::attributes::schema(&mut **work.tx(), caller.organization_id).await?;
    let record = work
        .audit_record("user.export", "organization", caller.organization_id)
        .with_details(json!({ "filter": filter }));
    work.record(record);
    work.commit().await?;
    Ok(schema)
}
