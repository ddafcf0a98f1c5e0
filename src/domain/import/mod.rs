//! Bulk import (spec §4): the file format, its header and its rows.

pub mod batch;
pub mod decide;
pub mod export;
pub mod header;
pub mod job;
pub mod period;
pub mod reader;
pub mod row;
pub mod run;
pub mod session;

use crate::domain::attribute::{json_as_text, AttributeDefinition, AttributeSchema, AttributeType};

/// The CSV template: a header and an example row, with the given delimiter.
/// The example is flagged `example` in the action column: a review checks
/// it (VALID in a new organization: it names no group) and an import skips
/// it, so a template sent back as it came creates nobody. Each defined
/// custom attribute has its `attr.<key>` column, after the others, with an
/// example value of its type.
pub fn template(delimiter: char, schema: &AttributeSchema) -> (String, String) {
    use header::Column;
    let columns = [
        Column::Action,
        Column::FirstName,
        Column::LastName,
        Column::Email,
        Column::Username,
        Column::Phone,
        Column::ExternalId,
        Column::Groups,
        Column::Status,
    ];
    let attribute_columns = schema.definitions().iter().map(header::attribute_column);
    let header = columns
        .map(|c| c.name().to_owned())
        .into_iter()
        .chain(attribute_columns)
        .collect::<Vec<_>>()
        .join(&delimiter.to_string());
    let example_values = schema.definitions().iter().map(example_value);
    let example = [
        "example",
        "Ana",
        "Silva",
        "ana.silva@example.com",
        "ana.silva",
        "+5511999998888",
        "HR-0001",
        "",
        "active",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain(example_values)
    .collect::<Vec<_>>()
    .join(&delimiter.to_string());
    (header, example)
}

/// A value the attribute takes: its first allowed value, else one of its type.
fn example_value(definition: &AttributeDefinition) -> String {
    if let Some(allowed) = definition.allowed_values.first() {
        return json_as_text(&allowed.to_json());
    }
    match definition.value_type {
        AttributeType::String => "text",
        AttributeType::Number => "1",
        AttributeType::Boolean => "true",
        AttributeType::Date => "2026-01-31",
    }
    .to_owned()
}

/// The export's columns: the import format with `groups` and the assigned
/// `status` (what an import reads back), the read-only `onboarded` and
/// `derived_status` (PENDING, EXPIRED…, which an import ignores), and `id`.
pub const EXPORT_COLUMNS: [header::Column; 11] = [
    header::Column::FirstName,
    header::Column::LastName,
    header::Column::Email,
    header::Column::Username,
    header::Column::Phone,
    header::Column::ExternalId,
    header::Column::Groups,
    header::Column::Status,
    header::Column::Onboarded,
    header::Column::DerivedStatus,
    header::Column::Id,
];

/// Cells a spreadsheet would run as a formula get a leading `'` (the import
/// strips exactly one back, so a cell that already starts with `'` and a
/// formula character gets one more).
pub fn neutralize_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    let formula = |text: &str| text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula(cell) || cell.strip_prefix('\'').is_some_and(formula) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// One CSV line (CRLF-terminated): cells quoted when they hold the
/// delimiter, a quote or a line break.
pub fn csv_line<'a>(cells: impl IntoIterator<Item = &'a str>, delimiter: char, out: &mut String) {
    for (index, cell) in cells.into_iter().enumerate() {
        if index > 0 {
            out.push(delimiter);
        }
        let cell = neutralize_formula(cell);
        if cell.contains([delimiter, '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralized_and_quoting_is_minimal() {
        let mut out = String::new();
        csv_line(
            [
                "=SUM(A1)",
                "+5511",
                "Silva; Jr.",
                "say \"hi\"",
                "'=x",
                "plain",
                "O'Brien",
            ],
            ';',
            &mut out,
        );
        assert_eq!(
            out,
            "'=SUM(A1);'+5511;\"Silva; Jr.\";\"say \"\"hi\"\"\";''=x;plain;O'Brien\r\n"
        );
        for cell in ["=SUM(A1)", "'=x", "-5", "@home", "\tx", "O'Brien"] {
            assert_eq!(row::unescape_cell(&neutralize_formula(cell)), cell);
        }
    }
}
