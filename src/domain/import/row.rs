//! One data row of an import, checked on its own (spec §4.1 "Values" and
//! "Rows", the parts that need no database). Field paths are column names.

use uuid::Uuid;

use super::header::{attribute_column, Column, Header};
use crate::domain::{
    attribute::{RawValue, StoredAttributes},
    text_state::text_states,
    user::{UserInput, UserStatus, UserValues},
    values::{fold, Email, ExternalId, PersonName, Phone, Username},
    FieldViolation,
};

text_states! {
    /// What a row asks for (`import_rows.action`, "UNSPECIFIED" when unread).
    Action {
        Add => "ADD",
        Update => "UPDATE",
        Delete => "DELETE",
        /// The template's example row: checked as an add, never written.
        Example => "EXAMPLE",
    }
}

/// Values an `update` row gives; blank cells keep the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCommand {
    Add {
        values: UserValues,
        /// False when the username cell was blank (the email stands in).
        username_given: bool,
        status: Option<UserStatus>,
        groups: Vec<String>,
        id: Option<Uuid>,
        /// The `attr.<key>` cells given, as stored.
        attributes: StoredAttributes,
    },
    /// Finds the user by username when given, else by email.
    Update {
        changes: ValueChanges,
        status: Option<UserStatus>,
        groups: Vec<String>,
        id: Option<Uuid>,
        /// The `attr.<key>` cells given; blank ones keep the stored value.
        attributes: StoredAttributes,
    },
    /// Username and email must belong to the same user.
    Delete { username: String, email: String },
}

impl RowCommand {
    /// The email, username and external id the row names.
    pub fn named_values(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match self {
            RowCommand::Add { values, .. } => (
                Some(&values.email),
                Some(&values.username),
                values.external_id.as_deref(),
            ),
            RowCommand::Update { changes, .. } => (
                changes.email.as_deref(),
                changes.username.as_deref(),
                changes.external_id.as_deref(),
            ),
            RowCommand::Delete { username, email } => (Some(email), Some(username), None),
        }
    }
}

/// Cells that start with `'` followed by `=`, `+`, `-`, `@`, tab or CR lose
/// the `'` (export neutralizes formulas that way).
pub fn unescape_cell(cell: &str) -> &str {
    let formula = |text: &str| text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    match cell.strip_prefix('\'') {
        // Also `''=`: the export's escape of a cell that itself starts with `'=`.
        Some(rest) if formula(rest) || rest.strip_prefix('\'').is_some_and(formula) => rest,
        _ => cell,
    }
}

/// Group names of a `groups` cell: `|`-separated, trimmed, empty parts and
/// repeats (ignoring case) dropped.
pub fn parse_groups(cell: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for part in cell.split('|').map(str::trim).filter(|p| !p.is_empty()) {
        if !names.iter().any(|known| fold(known) == fold(part)) {
            names.push(part.to_owned());
        }
    }
    names
}

/// Legacy statuses are read here and refused later unless allowed or already
/// the user's (an exported legacy user re-imports unchanged).
pub fn legacy_status_refused() -> FieldViolation {
    FieldViolation::new(
        "status",
        "LEGACY_STATUS",
        "blocked and disabled are legacy statuses, accepted only by the operator's `roster import --legacy-statuses`",
    )
}

fn parse_status(cell: &str, allow_legacy: bool) -> Result<Option<UserStatus>, FieldViolation> {
    let status = match cell.trim().to_lowercase().as_str() {
        "" => return Ok(None),
        "active" => UserStatus::Active,
        "inactive" => UserStatus::Inactive,
        "on_vacation" | "on vacation" => UserStatus::OnVacation,
        "blocked" if allow_legacy => UserStatus::Blocked,
        "disabled" if allow_legacy => UserStatus::Disabled,
        "blocked" | "disabled" => return Err(legacy_status_refused()),
        _ => {
            return Err(FieldViolation::new(
                "status",
                "INVALID_STATUS",
                "must be active, inactive or on_vacation",
            ))
        }
    };
    Ok(Some(status))
}

pub fn parse_action(cell: &str) -> Result<Action, FieldViolation> {
    match cell.trim().to_lowercase().as_str() {
        "" | "add" => Ok(Action::Add),
        "update" => Ok(Action::Update),
        "delete" => Ok(Action::Delete),
        "example" => Ok(Action::Example),
        _ => Err(FieldViolation::new(
            "action",
            "INVALID_ACTION",
            "must be add, update or delete (or empty for add); example marks the template's example row",
        )),
    }
}

/// An optional cell checked by `parse`; blank means not given.
fn given<T>(
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, FieldViolation>,
    violations: &mut Vec<FieldViolation>,
) -> Option<T> {
    if raw.trim().is_empty() {
        return None;
    }
    parse(raw).map_err(|v| violations.push(v)).ok()
}

/// Whether an add row names a legacy status: refused unless allowed, but
/// only once the row is known not to find an existing user with that very
/// status (an exported legacy user re-imports unchanged).
pub fn names_legacy_status_on_add(header: &Header, record: &[String]) -> bool {
    let cell = |column: Column| unescape_cell(header.cell(record, column));
    matches!(parse_action(cell(Column::Action)), Ok(Action::Add))
        && matches!(
            parse_status(cell(Column::Status), true),
            Ok(Some(UserStatus::Blocked | UserStatus::Disabled))
        )
}

/// The cells of one record, by column, unescaped.
#[derive(Clone, Copy)]
struct Cells<'a> {
    header: &'a Header,
    record: &'a [String],
}

impl<'a> Cells<'a> {
    fn get(self, column: Column) -> &'a str {
        unescape_cell(self.header.cell(self.record, column))
    }
}

/// What adds and updates read besides the values: status, groups, id and
/// custom attributes.
struct RowExtras {
    status: Option<UserStatus>,
    groups: Vec<String>,
    id: Option<Uuid>,
    attributes: StoredAttributes,
}

/// The row's `attr.<key>` cells that hold something, each checked by the
/// organization's schema under its column's name (`attr.level`).
fn parse_attributes(cells: Cells<'_>, violations: &mut Vec<FieldViolation>) -> StoredAttributes {
    let mut attributes = StoredAttributes::new();
    for (definition, cell) in cells.header.attribute_cells(cells.record) {
        let field = attribute_column(definition);
        if let Some(value) = given(
            unescape_cell(cell),
            |raw| definition.parse_value(RawValue::Text(raw), &field),
            violations,
        ) {
            attributes.insert(definition.key.as_str().to_owned(), value.to_json());
        }
    }
    attributes
}

/// Checks one record: its action, every value, status and groups. Every
/// violation of the row is reported, each naming its column.
pub fn parse_row(
    header: &Header,
    record: &[String],
    allow_legacy: bool,
) -> Result<(Action, RowCommand), Vec<FieldViolation>> {
    let cells = Cells { header, record };
    let mut violations = Vec::new();
    if let Some(index) = header.first_extra_cell(record) {
        violations.push(FieldViolation::new(
            header.label_at(index),
            "TOO_MANY_CELLS",
            "has more cells than the header has columns",
        ));
    }
    let action = parse_action(cells.get(Column::Action))
        .map_err(|v| violations.push(v))
        .ok();
    let status = parse_status(
        cells.get(Column::Status),
        allow_legacy || action == Some(Action::Update),
    )
    .map_err(|v| violations.push(v))
    .ok()
    .flatten();
    let groups = parse_groups(cells.get(Column::Groups));
    let id = given(
        cells.get(Column::Id),
        |raw| {
            Uuid::parse_str(raw.trim())
                .map_err(|_| FieldViolation::new("id", "INVALID_ID", "must be a user id (UUID)"))
        },
        &mut violations,
    );
    let attributes = parse_attributes(cells, &mut violations);
    let extras = RowExtras {
        status,
        groups,
        id,
        attributes,
    };
    let command = match action {
        Some(Action::Add | Action::Example) => parse_add(cells, extras, &mut violations),
        Some(Action::Update) => Some(parse_update(cells, extras, &mut violations)),
        Some(Action::Delete) => parse_delete(cells, &mut violations),
        None => None,
    };
    match (action, command) {
        (Some(action), Some(command)) if violations.is_empty() => Ok((action, command)),
        _ => Err(violations),
    }
}

/// An add row: every value is checked as a new user's.
fn parse_add(
    cells: Cells<'_>,
    extras: RowExtras,
    violations: &mut Vec<FieldViolation>,
) -> Option<RowCommand> {
    let input = UserInput {
        first_name: cells.get(Column::FirstName).to_owned(),
        last_name: cells.get(Column::LastName).to_owned(),
        email: cells.get(Column::Email).to_owned(),
        username: cells.get(Column::Username).to_owned(),
        phone: cells.get(Column::Phone).to_owned(),
        external_id: cells.get(Column::ExternalId).to_owned(),
    };
    UserValues::parse(&input, "")
        .map_err(|found| violations.extend(found))
        .ok()
        .map(|values| RowCommand::Add {
            values,
            username_given: !input.username.trim().is_empty(),
            status: extras.status,
            groups: extras.groups,
            id: extras.id,
            attributes: extras.attributes,
        })
}

/// An update row: blank cells keep the stored value; the username or the
/// email finds the user.
fn parse_update(
    cells: Cells<'_>,
    extras: RowExtras,
    violations: &mut Vec<FieldViolation>,
) -> RowCommand {
    // A given cell is checked as the value its column holds, under its column's name.
    let mut changed = |column: Column, parse: fn(&str, &str) -> Result<String, FieldViolation>| {
        given(
            cells.get(column),
            |raw| parse(raw, column.name()),
            violations,
        )
    };
    let changes = ValueChanges {
        first_name: changed(Column::FirstName, |r, f| {
            Ok(PersonName::parse(r, f)?.as_str().into())
        }),
        last_name: changed(Column::LastName, |r, f| {
            Ok(PersonName::parse(r, f)?.as_str().into())
        }),
        email: changed(Column::Email, |r, f| {
            Ok(Email::parse(r, f)?.as_str().into())
        }),
        username: changed(Column::Username, |r, f| {
            Ok(Username::parse(r, f)?.as_str().into())
        }),
        phone: changed(Column::Phone, |r, f| {
            Ok(Phone::parse(r, f)?.as_str().into())
        }),
        external_id: changed(Column::ExternalId, |r, f| {
            Ok(ExternalId::parse(r, f)?.as_str().into())
        }),
    };
    if cells.get(Column::Email).trim().is_empty() && cells.get(Column::Username).trim().is_empty() {
        violations.push(FieldViolation::new(
            "email",
            "REQUIRED",
            "an update needs the username or the email of the user",
        ));
    }
    RowCommand::Update {
        changes,
        status: extras.status,
        groups: extras.groups,
        id: extras.id,
        attributes: extras.attributes,
    }
}

/// A delete row names the user by both username and email.
fn parse_delete(cells: Cells<'_>, violations: &mut Vec<FieldViolation>) -> Option<RowCommand> {
    let email = Email::parse(cells.get(Column::Email), "email")
        .map_err(|v| violations.push(v))
        .ok();
    let username = Username::parse(cells.get(Column::Username), "username")
        .map_err(|v| violations.push(v))
        .ok();
    email
        .zip(username)
        .map(|(email, username)| RowCommand::Delete {
            username: username.as_str().to_owned(),
            email: email.as_str().to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Header {
        Header::parse(&names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn record(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn an_add_row_gives_validated_values_status_and_groups() {
        let header = header(&[
            "first_name",
            "last_name",
            "email",
            "phone",
            "groups",
            "status",
        ]);
        let (action, command) = parse_row(
            &header,
            &record(&[
                "Ana",
                "Silva",
                "ana@x.com",
                "+55 11 99999-8888",
                " Cashiers | | cashiers|South ",
                "On_Vacation",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(action, Action::Add);
        let RowCommand::Add {
            values,
            status,
            groups,
            ..
        } = command
        else {
            panic!()
        };
        assert_eq!(values.username, "ana@x.com");
        assert_eq!(values.phone.as_deref(), Some("+5511999998888"));
        assert_eq!(status, Some(UserStatus::OnVacation));
        assert_eq!(groups, ["Cashiers", "South"]);
    }

    #[test]
    fn every_problem_of_a_row_is_reported_by_column() {
        let header = header(&["first_name", "last_name", "email", "phone", "status"]);
        let problems = parse_row(
            &header,
            &record(&["", "Silva", "nope", "5,51199E+12", "blocked", "extra"]),
            false,
        )
        .unwrap_err();
        assert_eq!(
            fields(&problems),
            ["column 6", "status", "first_name", "email", "phone"]
        );
        assert!(problems[4].description.contains("spreadsheet"));
        assert_eq!(problems[1].code, "LEGACY_STATUS");
        let ok = parse_row(
            &header,
            &record(&["A", "B", "a@x.com", "", "blocked"]),
            true,
        )
        .unwrap();
        assert!(matches!(
            ok.1,
            RowCommand::Add {
                status: Some(UserStatus::Blocked),
                ..
            }
        ));
    }

    #[test]
    fn actions_ignore_case_and_check_what_they_need() {
        let header = header(&["action", "email", "username", "first_name"]);
        let (action, command) =
            parse_row(&header, &record(&["UPDATE", "", "ana", "Ana Maria"]), false).unwrap();
        assert_eq!(action, Action::Update);
        let RowCommand::Update { changes, .. } = command else {
            panic!()
        };
        assert_eq!(changes.first_name.as_deref(), Some("Ana Maria"));
        assert_eq!(changes.email, None, "blank cells keep the stored value");
        assert_eq!(
            fields(&parse_row(&header, &record(&["update", "", "", "X"]), false).unwrap_err()),
            ["email"]
        );
        assert_eq!(
            fields(
                &parse_row(&header, &record(&["Delete", "a@x.com", "", ""]), false).unwrap_err()
            ),
            ["username"]
        );
        assert_eq!(
            fields(
                &parse_row(&header, &record(&["remove", "a@x.com", "", ""]), false).unwrap_err()
            ),
            ["action"]
        );
        assert!(
            parse_row(&header, &record(&["delete", "a@x.com", "ana"]), false).is_ok(),
            "a short record has empty cells"
        );
    }

    #[test]
    fn attribute_cells_are_checked_by_their_definitions_under_their_column() {
        use crate::domain::attribute::{
            AttributeDefinition, AttributeSchema, AttributeType, DefinitionInput,
        };
        let level = DefinitionInput {
            key: "level".into(),
            value_type: Some(AttributeType::Number),
            ..Default::default()
        };
        let schema = AttributeSchema::new(vec![AttributeDefinition::parse(&level, "").unwrap()]);
        let names = ["action", "email", "ATTR.Level", "attr.nope"].map(String::from);
        let refused = Header::parse_with(&names, &schema).unwrap_err();
        assert_eq!(
            (refused[0].field.as_str(), refused[0].code.as_ref()),
            ("column 4", "UNKNOWN_ATTRIBUTE")
        );
        let header = Header::parse_with(&names[..3], &schema).unwrap();
        assert_eq!(header.label_at(2), "attr.level");
        let (_, command) =
            parse_row(&header, &record(&["update", "a@x.com", "'-2.0"]), false).unwrap();
        let RowCommand::Update { attributes, .. } = command else {
            panic!()
        };
        assert_eq!(attributes["level"], serde_json::json!(-2));
        let (_, command) = parse_row(&header, &record(&["update", "a@x.com", " "]), false).unwrap();
        assert!(
            matches!(command, RowCommand::Update { attributes, .. } if attributes.is_empty()),
            "a blank cell gives no value"
        );
        let problems = parse_row(&header, &record(&["add", "a@x.com", "high"]), false).unwrap_err();
        assert_eq!(
            (problems[0].field.as_str(), problems[0].code.as_ref()),
            ("attr.level", "INVALID_TYPE")
        );
    }

    #[test]
    fn a_leading_quote_before_a_formula_character_is_removed() {
        assert_eq!(unescape_cell("'=SUM(A1)"), "=SUM(A1)");
        assert_eq!(unescape_cell("'+5511"), "+5511");
        assert_eq!(unescape_cell("'@home"), "@home");
        assert_eq!(unescape_cell("'quoted'"), "'quoted'");
        assert_eq!(unescape_cell("O'Brien"), "O'Brien");
    }
}
