//! The header of an import file (spec §4.1 "Header"): names matched ignoring
//! case, surrounding spaces, and space vs underscore; every problem reported
//! together, each naming its column.

use crate::domain::{
    attribute::{AttributeDefinition, AttributeSchema},
    echo, FieldViolation,
};

/// The prefix of a custom attribute's column: `attr.<key>`.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Action,
    FirstName,
    LastName,
    Email,
    Username,
    Phone,
    ExternalId,
    Groups,
    Status,
    /// Written by the export; when given, must be the id of the user a row finds.
    Id,
    /// Written by the export as facts to read; an import ignores them, so
    /// that an export imports back as it is.
    Onboarded,
    DerivedStatus,
    /// Written by `roster import` in its results file, after the file's own
    /// columns; an import ignores them, so that the failed rows, fixed,
    /// import again from that file.
    Line,
    Outcome,
    UserId,
    Errors,
    Warnings,
}

impl Column {
    /// The columns `roster import` adds to a file's own in its results file.
    pub const RESULTS: [Column; 5] = [
        Self::Line,
        Self::Outcome,
        Self::UserId,
        Self::Errors,
        Self::Warnings,
    ];

    pub const ALL: [Column; 17] = [
        Self::Action,
        Self::FirstName,
        Self::LastName,
        Self::Email,
        Self::Username,
        Self::Phone,
        Self::ExternalId,
        Self::Groups,
        Self::Status,
        Self::Id,
        Self::Onboarded,
        Self::DerivedStatus,
        Self::Line,
        Self::Outcome,
        Self::UserId,
        Self::Errors,
        Self::Warnings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::FirstName => "first_name",
            Self::LastName => "last_name",
            Self::Email => "email",
            Self::Username => "username",
            Self::Phone => "phone",
            Self::ExternalId => "external_id",
            Self::Groups => "groups",
            Self::Status => "status",
            Self::Id => "id",
            Self::Onboarded => "onboarded",
            Self::DerivedStatus => "derived_status",
            Self::Line => "line",
            Self::Outcome => "outcome",
            Self::UserId => "user_id",
            Self::Errors => "errors",
            Self::Warnings => "warnings",
        }
    }

    /// `First Name`, ` first_name `, `FIRST NAME` all name `first_name`.
    pub fn matching(raw: &str) -> Option<Self> {
        let normalized = normalize(raw);
        Self::ALL
            .into_iter()
            .find(|column| column.name() == normalized)
    }
}

/// A header cell as columns are named: trimmed, lowercase, runs of spaces as `_`.
fn normalize(raw: &str) -> String {
    raw.trim()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
}

/// The column of a custom attribute: `attr.<key>`.
pub fn attribute_column(definition: &AttributeDefinition) -> String {
    format!("{ATTRIBUTE_PREFIX}{}", definition.key.as_str())
}

/// A cell named by its 1-based position, for cells no column name fits.
pub fn position_label(index: usize) -> String {
    format!("column {}", index + 1)
}

/// Which column each cell of a record belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// `None` for the ignored empty cells at the end and attributes' cells.
    columns: Vec<Option<Column>>,
    /// The `attr.<key>` columns: cell index and the attribute's definition.
    attributes: Vec<(usize, AttributeDefinition)>,
    /// Every definition of the organization (required ones may have no column).
    schema: AttributeSchema,
}

impl Header {
    /// A header for an organization without custom attributes.
    pub fn parse(cells: &[String]) -> Result<Self, Vec<FieldViolation>> {
        Self::parse_with(cells, &AttributeSchema::default())
    }

    /// A header whose `attr.<key>` columns name attributes of `schema`.
    pub fn parse_with(
        cells: &[String],
        schema: &AttributeSchema,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut attributes: Vec<(usize, AttributeDefinition)> = Vec::new();
        let last_named = cells.iter().rposition(|cell| !cell.trim().is_empty());
        let mut columns = Vec::with_capacity(cells.len());
        for (index, cell) in cells.iter().enumerate() {
            if cell.trim().is_empty() {
                if last_named.is_some_and(|last| index < last) {
                    violations.push(FieldViolation::new(
                        position_label(index),
                        "EMPTY_COLUMN_NAME",
                        "has no name; only trailing columns may be unnamed",
                    ));
                }
                columns.push(None);
                continue;
            }
            if let Some(key) = normalize(cell).strip_prefix(ATTRIBUTE_PREFIX) {
                match attribute_at(schema, &attributes, key, cell, index) {
                    Ok(definition) => attributes.push((index, definition)),
                    Err(violation) => violations.push(violation),
                }
                columns.push(None);
                continue;
            }
            match Column::matching(cell) {
                Some(column) if columns.contains(&Some(column)) => {
                    violations.push(FieldViolation::new(
                        column.name(),
                        "DUPLICATE_COLUMN",
                        format!(
                            "{} ({}) names column `{}` again; each column may appear once",
                            echo(cell.trim()),
                            position_label(index),
                            column.name()
                        ),
                    ))
                }
                Some(column) => {
                    columns.push(Some(column));
                    continue;
                }
                // Named by its position: a cell's text is never a field's name.
                None => violations.push(FieldViolation::new(
                    position_label(index),
                    "UNKNOWN_COLUMN",
                    format!(
                        "{} is not a column; the columns are: {}, and attr.<key> for a custom attribute",
                        echo(cell.trim()),
                        Column::ALL.map(Column::name).join(", ")
                    ),
                )),
            }
            columns.push(None);
        }
        let header = Self {
            columns,
            attributes,
            schema: schema.clone(),
        };
        violations.extend(header.missing_columns());
        if violations.is_empty() {
            Ok(header)
        } else {
            Err(violations)
        }
    }

    /// The email, and the names unless an action column says which rows need them.
    fn missing_columns(&self) -> Vec<FieldViolation> {
        let mut required = vec![Column::Email];
        if !self.has(Column::Action) {
            required.extend([Column::FirstName, Column::LastName]);
        }
        required
            .into_iter()
            .filter(|column| !self.has(*column))
            .map(|column| {
                FieldViolation::new(
                    column.name(),
                    "MISSING_COLUMN",
                    format!("the file needs a `{}` column", column.name()),
                )
            })
            .collect()
    }

    /// The `attr.<key>` cells of a record, with their definitions (blank ones too).
    pub fn attribute_cells<'a>(
        &'a self,
        record: &'a [String],
    ) -> impl Iterator<Item = (&'a AttributeDefinition, &'a str)> + 'a {
        self.attributes
            .iter()
            .map(|(index, definition)| (definition, record.get(*index).map_or("", String::as_str)))
    }

    /// The organization's definitions the header was read with.
    pub fn schema(&self) -> &AttributeSchema {
        &self.schema
    }

    pub fn has(&self, column: Column) -> bool {
        self.columns.contains(&Some(column))
    }

    /// The cell of `column` in a record; missing cells (short records) are empty.
    pub fn cell<'a>(&self, record: &'a [String], column: Column) -> &'a str {
        self.columns
            .iter()
            .position(|c| *c == Some(column))
            .and_then(|index| record.get(index))
            .map_or("", String::as_str)
    }

    /// The column name of the cell at `index`, else its position (`column 7`).
    pub fn label_at(&self, index: usize) -> String {
        if let Some((_, definition)) = self.attributes.iter().find(|(at, _)| *at == index) {
            return attribute_column(definition);
        }
        match self.columns.get(index).copied().flatten() {
            Some(column) => column.name().to_owned(),
            None => position_label(index),
        }
    }

    /// The first cell beyond the header that holds something (a long record
    /// fails unless they are empty).
    pub fn first_extra_cell(&self, record: &[String]) -> Option<usize> {
        record.iter().enumerate().position(|(index, cell)| {
            let named = self.columns.get(index).is_some_and(Option::is_some)
                || self.attributes.iter().any(|(at, _)| *at == index);
            !named && !cell.trim().is_empty()
        })
    }
}

/// The definition an `attr.<key>` cell names: defined, and named once.
fn attribute_at(
    schema: &AttributeSchema,
    seen: &[(usize, AttributeDefinition)],
    key: &str,
    cell: &str,
    index: usize,
) -> Result<AttributeDefinition, FieldViolation> {
    let Some(definition) = schema.get(key) else {
        let defined: Vec<String> = schema.definitions().iter().map(attribute_column).collect();
        // Named by its position: a cell's text is never a field's name.
        return Err(FieldViolation::new(
            position_label(index),
            "UNKNOWN_ATTRIBUTE",
            format!(
                "{} is not an attribute of this organization (see ListUserAttributes); its attribute columns are: {}",
                echo(cell.trim()),
                if defined.is_empty() { "none".to_owned() } else { defined.join(", ") }
            ),
        ));
    };
    if seen.iter().any(|(_, d)| d.key == definition.key) {
        return Err(FieldViolation::new(
            attribute_column(definition),
            "DUPLICATE_COLUMN",
            format!(
                "{} ({}) names column `{}` again; each column may appear once",
                echo(cell.trim()),
                position_label(index),
                attribute_column(definition)
            ),
        ));
    }
    Ok(definition.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn names_match_loosely_and_trailing_empty_cells_are_ignored() {
        let header =
            Header::parse(&cells(&[" First Name", "LAST_NAME ", "E-mail", ""])).unwrap_err();
        assert_eq!(header[0].field, "column 3", "hyphens are not spaces");
        assert!(header[0]
            .description
            .starts_with("`E-mail` is not a column"));
        let header =
            Header::parse(&cells(&[" First Name", "LAST_NAME ", "Email", "", ""])).unwrap();
        let record = cells(&["Ana", "Silva", "ana@x.com"]);
        assert_eq!(header.cell(&record, Column::FirstName), "Ana");
        assert_eq!(header.cell(&record, Column::Phone), "");
        assert_eq!(
            header.first_extra_cell(&cells(&["a", "b", "c", "", "x"])),
            Some(4)
        );
        assert_eq!(header.label_at(4), "column 5");
    }

    #[test]
    fn every_header_problem_is_reported_together() {
        let problems =
            Header::parse(&cells(&["email", "", "Email", "nickname", "groups"])).unwrap_err();
        let reported: Vec<(&str, &str)> = problems
            .iter()
            .map(|v| (v.field.as_str(), v.code.as_ref()))
            .collect();
        assert_eq!(
            reported,
            [
                ("column 2", "EMPTY_COLUMN_NAME"),
                ("email", "DUPLICATE_COLUMN"),
                ("column 4", "UNKNOWN_COLUMN"),
                ("first_name", "MISSING_COLUMN"),
                ("last_name", "MISSING_COLUMN"),
            ]
        );
    }

    #[test]
    fn header_cells_are_named_by_position_and_echoed_as_a_short_escaped_prefix() {
        let long = "x".repeat(65);
        let problems = Header::parse(&cells(&[
            "email",
            "a\r\nb",
            "<b>x</b>",
            &long,
            "nick\u{202E}name",
            "first_name",
            "FIRST\u{b}NAME",
            "last_name",
        ]))
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields[..5],
            ["column 2", "column 3", "column 4", "column 5", "first_name"],
            "{problems:?}"
        );
        let text = |i: usize| problems[i].description.as_str();
        assert!(
            text(0).starts_with("`a\\r\\nb` is not a column"),
            "{}",
            text(0)
        );
        assert!(
            text(2).starts_with(&format!("`{}…` is not", "x".repeat(64))),
            "{}",
            text(2)
        );
        assert!(
            text(3).starts_with("`nick\\u{202e}name` is not"),
            "{}",
            text(3)
        );
        assert_eq!(problems[4].code, "DUPLICATE_COLUMN");
        assert!(
            text(4).starts_with("`FIRST\\u{b}NAME` (column 7) names column `first_name` again"),
            "{}",
            text(4)
        );
        for problem in &problems {
            assert!(
                !problem
                    .description
                    .chars()
                    .any(|c| c.is_control() || c == '\u{202E}'),
                "{problem:?}"
            );
        }
    }

    #[test]
    fn an_action_column_makes_names_optional_but_email_stays_required() {
        assert!(Header::parse(&cells(&["action", "email", "username"])).is_ok());
        let problems = Header::parse(&cells(&["action", "username"])).unwrap_err();
        assert_eq!(problems[0].field, "email");
    }
}
