//! Import jobs (spec §4): what a job was asked to do, where it stands, and
//! the result of each of its rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::row::Action;
use crate::domain::{
    name::invisible_character,
    text_state::text_states,
    user::{GivenUser, UserKey},
    values::Email,
    FieldViolation,
};

text_states! {
    /// What a job does (`import_jobs.kind`).
    JobKind {
        /// ValidateImport: only the job and its results are written.
        Validate => "VALIDATE",
        Import => "IMPORT",
    }
}

text_states! {
    /// Where a job stands (`import_jobs.status`).
    JobStatus {
        Running => "RUNNING",
        Succeeded => "SUCCEEDED",
        /// The file was refused or the row limit reached; rows before it are kept.
        Failed => "FAILED",
        Cancelled => "CANCELLED",
        /// The client went away or the server stopped.
        Interrupted => "INTERRUPTED",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnExisting {
    /// The row fails with "User already exists".
    #[default]
    Fail,
    Skip,
    Update,
}

/// The options sent first on an import stream, as the job keeps them. A
/// stored field that is missing reads as its default; one of the wrong type
/// is a decode error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportOptions {
    pub group_ids: Vec<Uuid>,
    /// Groups by name, as given (trimmed); found when the job starts.
    pub group_names: Vec<String>,
    /// The user whose groups every added user gets, as the options named
    /// them; found when the job starts.
    pub mirror_user: Option<UserKey>,
    /// Jobs stored before `mirror_user` name the user here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_user_id: Option<Uuid>,
    pub on_existing: OnExisting,
    pub send_invitations: bool,
    pub deactivated: bool,
    pub notify_requester: bool,
    pub allow_legacy_statuses: bool,
    pub file_name: String,
    /// More recipients of the report, each the email of a user of the
    /// organization (checked when the job starts).
    pub report_to: Vec<Email>,
}

impl ImportOptions {
    /// The user to mirror, however the options named them.
    pub fn mirror_user(&self) -> Option<GivenUser> {
        match (&self.mirror_user, self.mirror_user_id) {
            (Some(key), _) => Some(GivenUser {
                field: format!("options.mirror_user.{}", key.kind()),
                key: key.clone(),
            }),
            (None, Some(id)) => Some(GivenUser::by_id(id, "options.mirror_user_id")),
            (None, None) => None,
        }
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            group_ids: Vec::new(),
            group_names: Vec::new(),
            mirror_user: None,
            mirror_user_id: None,
            on_existing: OnExisting::Fail,
            send_invitations: true,
            deactivated: false,
            notify_requester: true,
            allow_legacy_statuses: false,
            file_name: String::new(),
            report_to: Vec::new(),
        }
    }
}

/// Longest file name a job keeps.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// An import's `file_name`, shown in job lists and the report email: trimmed,
/// at most 255 characters, single-line plain text (no control or invisible
/// format characters that could make it read as something else, no `<`/`>`).
/// Empty when not given.
pub fn parse_file_name(raw: &str, field: &str) -> Result<String, FieldViolation> {
    let name = raw.trim();
    let refuse = |code: &'static str, message: &str| Err(FieldViolation::new(field, code, message));
    if name.chars().count() > MAX_FILE_NAME_CHARS {
        return refuse(
            "TOO_LONG",
            &format!("must be at most {MAX_FILE_NAME_CHARS} characters"),
        );
    }
    if name.chars().any(char::is_control) || invisible_character(name).is_some() {
        return refuse(
            "INVALID_CHARACTER",
            "must be one line of visible text: no line breaks, control or invisible formatting characters",
        );
    }
    if name.contains(['<', '>']) {
        return refuse("INVALID_CHARACTER", "must not contain `<` or `>`");
    }
    Ok(name.to_owned())
}

/// Most addresses `report_to` may name: a report is for the people who run
/// the import, not a mailing list.
pub const MAX_REPORT_RECIPIENTS: usize = 10;

/// An import's `report_to`, every address checked under
/// `options.report_to[i]`; whether each is a user's email is for the job's
/// start to check (`start_job`).
pub fn parse_report_to(raw: &[String]) -> Result<Vec<Email>, Vec<FieldViolation>> {
    if raw.len() > MAX_REPORT_RECIPIENTS {
        return Err(vec![FieldViolation::new(
            "options.report_to",
            "TOO_MANY",
            format!("at most {MAX_REPORT_RECIPIENTS} addresses"),
        )]);
    }
    let mut violations = Vec::new();
    let mut addresses = Vec::with_capacity(raw.len());
    for (index, address) in raw.iter().enumerate() {
        match Email::parse(address, &format!("options.report_to[{index}]")) {
            Ok(email) => addresses.push(email),
            Err(violation) => violations.push(violation),
        }
    }
    if violations.is_empty() {
        Ok(addresses)
    } else {
        Err(violations)
    }
}

text_states! {
    /// What happened to a row (`import_rows.outcome`).
    Outcome {
        Created => "CREATED",
        Updated => "UPDATED",
        Deleted => "DELETED",
        Unchanged => "UNCHANGED",
        Skipped => "SKIPPED",
        /// Review only.
        Valid => "VALID",
        Failed => "FAILED",
    }
}

/// Which of a job's row results a list shows: only the failed ones or all,
/// from a line of the file on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSelection {
    pub failed_only: bool,
    pub from_line: u64,
}

/// What happened to one data row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowResult {
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// `None` when the row's action could not be read.
    pub action: Option<Action>,
    pub email: String,
    pub outcome: Outcome,
    pub user_id: Option<Uuid>,
    pub errors: Vec<FieldViolation>,
    pub warnings: Vec<FieldViolation>,
}

impl RowResult {
    pub fn failed(
        line: u64,
        action: Option<Action>,
        email: String,
        errors: Vec<FieldViolation>,
    ) -> Self {
        Self {
            line,
            action,
            email,
            outcome: Outcome::Failed,
            user_id: None,
            errors,
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub rows: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub valid: i64,
    pub failed: i64,
}

impl Counts {
    pub fn add(&mut self, outcome: Outcome) {
        self.rows += 1;
        *self.field(outcome) += 1;
    }

    /// The rows of one outcome.
    pub fn of_outcome(&self, outcome: Outcome) -> i64 {
        let mut counts = *self;
        *counts.field(outcome)
    }

    fn field(&mut self, outcome: Outcome) -> &mut i64 {
        match outcome {
            Outcome::Created => &mut self.created,
            Outcome::Updated => &mut self.updated,
            Outcome::Deleted => &mut self.deleted,
            Outcome::Unchanged => &mut self.unchanged,
            Outcome::Skipped => &mut self.skipped,
            Outcome::Valid => &mut self.valid,
            Outcome::Failed => &mut self.failed,
        }
    }

    pub fn of<'a>(results: impl IntoIterator<Item = &'a RowResult>) -> Self {
        let mut counts = Self::default();
        for result in results {
            counts.add(result.outcome);
        }
        counts
    }
}

/// A new job, RUNNING, owned by this process.
pub struct NewJob<'a> {
    pub organization_id: Uuid,
    pub id: Uuid,
    pub kind: JobKind,
    pub options: &'a ImportOptions,
    pub requested_by: String,
    pub owner: Uuid,
}

#[derive(Debug, Clone)]
pub struct ImportJob {
    pub id: Uuid,
    pub kind: JobKind,
    pub status: JobStatus,
    pub options: ImportOptions,
    pub counts: Counts,
    pub requested_by: String,
    pub bytes_received: i64,
    pub last_line: i64,
    pub failure_message: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    /// When a review job's row results were deleted (retention).
    pub row_results_expired_time: Option<DateTime<Utc>>,
}

impl ImportJob {
    /// Who gets the job's report email when it ends (spec §4), or why
    /// nobody does: an API key has no address, so its import reports only
    /// to `report_to`. Told in the summary so that nobody waits for a
    /// report that will not come.
    pub fn report_delivery(&self) -> String {
        if self.kind == JobKind::Validate {
            return "no report is sent for a review".into();
        }
        let options = &self.options;
        let requester = options.notify_requester && self.requested_by.starts_with("user:");
        let mut others: Vec<String> = Vec::new();
        for address in &options.report_to {
            if !others.iter().any(|seen| seen.eq_ignore_ascii_case(address)) {
                others.push(address.to_string());
            }
        }
        let others = others.join(", ");
        match (requester, others.is_empty()) {
            (true, true) => "the report is emailed to the requester".into(),
            (true, false) => format!("the report is emailed to the requester and to {others}"),
            (false, false) => format!("the report is emailed to {others}"),
            (false, true) if !options.notify_requester => {
                "no report is sent: notify_requester is false and report_to names nobody".into()
            }
            (false, true) => "no report is sent: an API key has no email address; name users in options.report_to".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended_import(requested_by: &str, options: ImportOptions) -> ImportJob {
        let now = Utc::now();
        ImportJob {
            id: Uuid::nil(),
            kind: JobKind::Import,
            status: JobStatus::Succeeded,
            options,
            counts: Counts::default(),
            requested_by: requested_by.into(),
            bytes_received: 0,
            last_line: 0,
            failure_message: String::new(),
            create_time: now,
            update_time: now,
            end_time: Some(now),
            row_results_expired_time: None,
        }
    }

    #[test]
    fn the_summary_says_who_gets_the_report_or_why_nobody_does() {
        let named = |addresses: &[&str]| ImportOptions {
            report_to: parse_report_to(
                &addresses
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
            ..ImportOptions::default()
        };
        let user = format!("user:{}", Uuid::nil());
        let key = format!("api_key:{}", Uuid::nil());
        let cases = [
            (&user, named(&[]), "the report is emailed to the requester"),
            (
                &user,
                named(&["a@acme.com", "A@ACME.com", "b@acme.com"]),
                "the report is emailed to the requester and to a@acme.com, b@acme.com",
            ),
            (&key, named(&["a@acme.com"]), "the report is emailed to a@acme.com"),
            (
                &key,
                named(&[]),
                "no report is sent: an API key has no email address; name users in options.report_to",
            ),
            (
                &user,
                ImportOptions {
                    notify_requester: false,
                    ..named(&[])
                },
                "no report is sent: notify_requester is false and report_to names nobody",
            ),
        ];
        for (requested_by, options, said) in cases {
            assert_eq!(ended_import(requested_by, options).report_delivery(), said);
        }
        let review = ImportJob {
            kind: JobKind::Validate,
            ..ended_import(&user, named(&[]))
        };
        assert_eq!(review.report_delivery(), "no report is sent for a review");
    }

    #[test]
    fn report_to_holds_a_few_addresses_each_checked_where_it_stands() {
        let refused =
            parse_report_to(&["a@acme.com".into(), "nope".into(), " ".into()]).unwrap_err();
        let fields: Vec<&str> = refused.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["options.report_to[1]", "options.report_to[2]"]);
        let many: Vec<String> = (0..=MAX_REPORT_RECIPIENTS)
            .map(|i| format!("u{i}@acme.com"))
            .collect();
        assert_eq!(parse_report_to(&many).unwrap_err()[0].code, "TOO_MANY");
        let stored = serde_json::to_value(named_options()).unwrap();
        let read: ImportOptions = serde_json::from_value(stored).unwrap();
        assert_eq!(read, named_options(), "the job keeps them");
        let older: ImportOptions = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(
            older.report_to.is_empty(),
            "jobs stored before report_to read as none"
        );
    }

    fn named_options() -> ImportOptions {
        ImportOptions {
            report_to: parse_report_to(&["Boss@Acme.com".into()]).unwrap(),
            ..ImportOptions::default()
        }
    }

    #[test]
    fn a_file_name_is_one_line_of_visible_plain_text() {
        for (given, kept) in [
            ("  people (2).csv ", "people (2).csv"),
            ("Funcionários ação.csv", "Funcionários ação.csv"),
            // Joiners inside a word, as Persian and the Indic scripts write them.
            ("می\u{200C}خواهم.csv", "می\u{200C}خواهم.csv"),
            ("क्\u{200D}ष.csv", "क्\u{200D}ष.csv"),
        ] {
            assert_eq!(parse_file_name(given, "f").unwrap(), kept);
        }
        for bad in [
            "a\r\nBcc: x.csv",
            "a\u{0}.csv",
            "<script>.csv",
            "gpj.\u{202E}exe",
            "a\u{200B}.csv",
            "a\u{2028}b.csv",
            // Format characters the names' rule knows and a hand-kept list missed.
            "a\u{0890}.csv",
            "a\u{1D179}b.csv",
            // A joiner outside a word hides nothing a script needs.
            "\u{200D}a.csv",
            "a.\u{200C}csv",
        ] {
            let refused = parse_file_name(bad, "options.file_name").unwrap_err();
            assert_eq!(refused.field, "options.file_name", "{bad:?}");
            assert_eq!(refused.code, "INVALID_CHARACTER", "{bad:?}");
        }
        assert_eq!(
            parse_file_name(&"x".repeat(256), "f").unwrap_err().code,
            "TOO_LONG"
        );
    }
}
