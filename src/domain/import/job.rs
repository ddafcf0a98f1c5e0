//! Import jobs (spec §4): what a job was asked to do, where it stands, and
//! the result of each of its rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::row::Action;
use crate::domain::{name::invisible_character, text_state::text_states, FieldViolation};

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
    pub mirror_user_id: Option<Uuid>,
    pub on_existing: OnExisting,
    pub send_invitations: bool,
    pub deactivated: bool,
    pub notify_requester: bool,
    pub allow_legacy_statuses: bool,
    pub file_name: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            group_ids: Vec::new(),
            mirror_user_id: None,
            on_existing: OnExisting::Fail,
            send_invitations: true,
            deactivated: false,
            notify_requester: true,
            allow_legacy_statuses: false,
            file_name: String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
