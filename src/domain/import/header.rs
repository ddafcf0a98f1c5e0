//! The header of an import file (spec §4.1 "Header"): names matched ignoring
//! case, surrounding spaces, and space vs underscore; every problem reported
//! together, each naming its column.

use crate::domain::FieldViolation;

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
}

impl Column {
    pub const ALL: [Column; 10] = [
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
        }
    }

    /// `First Name`, ` first_name `, `FIRST NAME` all name `first_name`.
    fn matching(raw: &str) -> Option<Self> {
        let normalized = raw
            .trim()
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("_");
        Self::ALL
            .into_iter()
            .find(|column| column.name() == normalized)
    }
}

/// Which column each cell of a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `None` for the ignored empty cells at the end.
    columns: Vec<Option<Column>>,
}

impl Header {
    pub fn parse(cells: &[String]) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let last_named = cells.iter().rposition(|cell| !cell.trim().is_empty());
        let mut columns = Vec::with_capacity(cells.len());
        for (index, cell) in cells.iter().enumerate() {
            if cell.trim().is_empty() {
                if last_named.is_some_and(|last| index < last) {
                    violations.push(FieldViolation::new(
                        format!("column {}", index + 1),
                        "EMPTY_COLUMN_NAME",
                        "has no name; only trailing columns may be unnamed",
                    ));
                }
                columns.push(None);
                continue;
            }
            match Column::matching(cell) {
                Some(column) if columns.contains(&Some(column)) => {
                    violations.push(FieldViolation::new(
                        column.name(),
                        "DUPLICATE_COLUMN",
                        format!("column `{}` appears more than once", cell.trim()),
                    ))
                }
                Some(column) => {
                    columns.push(Some(column));
                    continue;
                }
                None => violations.push(FieldViolation::new(
                    cell.trim(),
                    "UNKNOWN_COLUMN",
                    format!(
                        "`{}` is not a column; the columns are: {}",
                        cell.trim(),
                        Column::ALL.map(Column::name).join(", ")
                    ),
                )),
            }
            columns.push(None);
        }
        let header = Self { columns };
        let mut required = vec![Column::Email];
        if !header.has(Column::Action) {
            required.extend([Column::FirstName, Column::LastName]);
        }
        for column in required {
            if !header.has(column) {
                violations.push(FieldViolation::new(
                    column.name(),
                    "MISSING_COLUMN",
                    format!("the file needs a `{}` column", column.name()),
                ));
            }
        }
        if violations.is_empty() {
            Ok(header)
        } else {
            Err(violations)
        }
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

    /// The column name of the cell at `index`, if the header names it.
    pub fn name_at(&self, index: usize) -> Option<&'static str> {
        self.columns.get(index).copied().flatten().map(Column::name)
    }

    /// Cells beyond the header that hold something (a long record fails unless they are empty).
    pub fn extra_cells(&self, record: &[String]) -> usize {
        record
            .iter()
            .enumerate()
            .filter(|(index, cell)| {
                let named = self.columns.get(*index).is_some_and(Option::is_some);
                !named && !cell.trim().is_empty()
            })
            .count()
    }
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
        assert_eq!(header[0].field, "E-mail", "hyphens are not spaces");
        let header =
            Header::parse(&cells(&[" First Name", "LAST_NAME ", "Email", "", ""])).unwrap();
        let record = cells(&["Ana", "Silva", "ana@x.com"]);
        assert_eq!(header.cell(&record, Column::FirstName), "Ana");
        assert_eq!(header.cell(&record, Column::Phone), "");
        assert_eq!(header.extra_cells(&cells(&["a", "b", "c", "", "x"])), 1);
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
                ("nickname", "UNKNOWN_COLUMN"),
                ("first_name", "MISSING_COLUMN"),
                ("last_name", "MISSING_COLUMN"),
            ]
        );
    }

    #[test]
    fn an_action_column_makes_names_optional_but_email_stays_required() {
        assert!(Header::parse(&cells(&["action", "email", "username"])).is_ok());
        let problems = Header::parse(&cells(&["action", "username"])).unwrap_err();
        assert_eq!(problems[0].field, "email");
    }
}
