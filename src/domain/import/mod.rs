//! Bulk import (spec §4): the file format, its header and its rows.

pub mod decide;
pub mod header;
pub mod job;
pub mod reader;
pub mod row;
pub mod run;

/// The CSV template: a header and an example row, with the given delimiter.
pub fn template(delimiter: char) -> (String, String) {
    use header::Column;
    let columns = [
        Column::FirstName,
        Column::LastName,
        Column::Email,
        Column::Username,
        Column::Phone,
        Column::ExternalId,
        Column::Groups,
        Column::Status,
    ];
    let header = columns.map(Column::name).join(&delimiter.to_string());
    let example = [
        "Ana",
        "Silva",
        "ana.silva@example.com",
        "",
        "+5511999998888",
        "HR-0001",
        "Cashiers|South Zone",
        "active",
    ]
    .join(&delimiter.to_string());
    (header, example)
}
