use roster::proto::UnitScope;
use roster::{
    domain::import::{
        header::{Column, Header},
        period::Period,
        reader::{CsvStream, Limits},
        row::{parse_row, Action, RowCommand},
    },
    proto::{self, RowOutcome},
};
use tonic::{Code, Status};

use crate::{
    groups,
    helpers::{eventually, violated_fields, Answered, Bearer, TestApp},
    users::builtin_profile,
};

#[tokio::test]
async fn the_template_reviews_valid_in_a_new_organization_and_imported_as_it_came_creates_nobody() {
    let app = TestApp::spawn().await;
    let viewer = Bearer::token(
        &app.create_api_key(
            app.organization_id,
            "v",
            &[roster::domain::caller::Scope::Viewer],
        )
        .await,
    );
    let users_before = app.count("select count(*) from users").await;
    for delimiter in [",", ";"] {
        let template = app
            .imports(viewer.clone())
            .get_import_template(proto::GetImportTemplateRequest {
                delimiter: delimiter.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(template.csv.starts_with(b"\xEF\xBB\xBF"), "UTF-8 with BOM");
        let mut stream = CsvStream::new(Limits::default());
        let mut records = stream.push(&template.csv).unwrap();
        records.extend(stream.finish().unwrap());
        assert_eq!(records.len(), 2);
        let header = Header::parse(records[0].fields.as_ref().unwrap()).unwrap();
        assert!(
            header.has(Column::Action),
            "{delimiter}: {}",
            template.header
        );
        let (action, command) =
            parse_row(&header, records[1].fields.as_ref().unwrap(), false).unwrap();
        assert_eq!(action, Action::Example, "{delimiter}");
        assert!(matches!(command, RowCommand::Add { .. }), "{delimiter}");

        // The review checks the example row like an add: VALID, with a word
        // on why the import will not create it.
        let review = run_import(&app, viewer.clone(), true, options(), &template.csv, 7).await;
        assert_eq!(review.outcomes(), [(2, RowOutcome::Valid)], "{delimiter}");
        let row = &review.rows[0];
        assert_eq!(row.action, proto::ImportAction::Example as i32);
        assert_eq!(
            row.warnings
                .iter()
                .map(|w| w.code.as_str())
                .collect::<Vec<_>>(),
            ["EXAMPLE_ROW"]
        );
        // Imported as it came: skipped, nobody created.
        let run = run_import(&app, app.as_admin(), false, options(), &template.csv, 64).await;
        assert_eq!(run.outcomes(), [(2, RowOutcome::Skipped)], "{delimiter}");
        assert_eq!(run.rows[0].user_id, "");
        assert_eq!(run.summary().counts.as_ref().unwrap().skipped, 1);
    }
    assert_eq!(app.count("select count(*) from users").await, users_before);

    // Flagged `example`, the row is still checked: a bad value fails it.
    let broken = "action,first_name,last_name,email\nexample,Ana,Silva,not-an-email\n";
    let run = run_import(
        &app,
        app.as_admin(),
        false,
        options(),
        broken.as_bytes(),
        64,
    )
    .await;
    assert_eq!(run.outcomes(), [(2, RowOutcome::Failed)]);
    assert_eq!(run.rows[0].errors[0].field, "email");

    let status = app
        .imports(viewer)
        .get_import_template(proto::GetImportTemplateRequest {
            delimiter: "\t".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["delimiter"]);
}

/// What one import stream answered.
#[derive(Debug)]
pub struct ImportRun {
    pub rows: Vec<proto::ImportRowResult>,
    pub summary: Option<proto::ImportSummary>,
    pub error: Option<Status>,
}

impl ImportRun {
    pub fn outcomes(&self) -> Vec<(i64, RowOutcome)> {
        self.rows
            .iter()
            .map(|r| (r.line, RowOutcome::try_from(r.outcome).unwrap()))
            .collect()
    }

    /// Asserts the outcome of every row, the rows being lines 2, 3, … of
    /// the file in order.
    pub fn assert_outcomes(&self, outcomes: &[RowOutcome]) {
        let expected: Vec<(i64, RowOutcome)> = (2..).zip(outcomes.iter().copied()).collect();
        assert_eq!(
            self.outcomes(),
            expected,
            "{:?} {:?}",
            self.rows,
            self.error
        );
    }

    pub fn summary(&self) -> &proto::ImportSummary {
        self.summary
            .as_ref()
            .unwrap_or_else(|| panic!("no summary: {:?}", self.error))
    }

    pub fn counts(&self) -> proto::ImportCounts {
        self.summary().counts.unwrap()
    }

    /// (line, field, code) of every row error.
    pub fn errors(&self) -> Vec<(i64, String, String)> {
        self.rows
            .iter()
            .flat_map(|r| {
                r.errors
                    .iter()
                    .map(|e| (r.line, e.field.clone(), e.code.clone()))
            })
            .collect()
    }
}

pub fn options() -> proto::ImportOptions {
    proto::ImportOptions::default()
}

/// Sends `options` then the file in chunks of `chunk` bytes (all of it
/// before reading anything), then reads every answer.
pub async fn run_import(
    app: &TestApp,
    bearer: Bearer,
    validate: bool,
    options: proto::ImportOptions,
    file: &[u8],
    chunk: usize,
) -> ImportRun {
    use proto::{import_users_request, validate_import_request};
    let chunks = file.chunks(chunk.max(1)).map(<[u8]>::to_vec);
    let mut client = app.imports(bearer);
    if validate {
        let messages = std::iter::once(validate_import_request::Message::Options(options))
            .chain(chunks.map(validate_import_request::Message::Chunk))
            .map(|m| proto::ValidateImportRequest { message: Some(m) })
            .collect::<Vec<_>>();
        let response = client.validate_import(tokio_stream::iter(messages)).await;
        collect(response, |m| match m.message.unwrap() {
            proto::validate_import_response::Message::Row(row) => Ok(row),
            proto::validate_import_response::Message::Summary(s) => Err(s),
        })
        .await
    } else {
        let messages = std::iter::once(import_users_request::Message::Options(options))
            .chain(chunks.map(import_users_request::Message::Chunk))
            .map(|m| proto::ImportUsersRequest { message: Some(m) })
            .collect::<Vec<_>>();
        let response = client.import_users(tokio_stream::iter(messages)).await;
        collect(response, |m| match m.message.unwrap() {
            proto::import_users_response::Message::Row(row) => Ok(row),
            proto::import_users_response::Message::Summary(s) => Err(s),
        })
        .await
    }
}

/// Reads a response stream to its end: rows (`Ok`) and the summary (`Err`).
pub async fn collect<T>(
    response: Result<tonic::Response<tonic::Streaming<T>>, Status>,
    split: impl Fn(T) -> Result<proto::ImportRowResult, proto::ImportSummary>,
) -> ImportRun {
    let mut run = ImportRun {
        rows: Vec::new(),
        summary: None,
        error: None,
    };
    let mut stream = match response {
        Ok(response) => response.into_inner(),
        Err(status) => {
            run.error = Some(status);
            return run;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(message)) => match split(message) {
                Ok(row) => run.rows.push(row),
                Err(summary) => run.summary = Some(summary),
            },
            Ok(None) => return run,
            Err(status) => {
                run.error = Some(status);
                return run;
            }
        }
    }
}

/// An import by the admin key of a file with a header and no row.
pub async fn import_no_rows(app: &TestApp, options: proto::ImportOptions) -> ImportRun {
    let header_only = b"first_name,last_name,email\n";
    run_import(app, app.as_admin(), false, options, header_only, 64).await
}

pub async fn import(app: &TestApp, options: proto::ImportOptions, file: &str) -> ImportRun {
    run_import(
        app,
        app.as_admin(),
        false,
        options,
        file.as_bytes(),
        64 * 1024,
    )
    .await
}

#[tokio::test]
async fn an_import_creates_users_with_groups_invitations_audit_and_a_durable_result_per_row() {
    let app = TestApp::spawn().await;
    let run = import(
        &app,
        options(),
        "first_name,last_name,email,username\nAna,Silva,ana@acme.com,\nBruno,Souza,bruno@acme.com,bsouza\nCarla,,carla@acme.com,\n",
    )
    .await;
    run.assert_outcomes(&[RowOutcome::Created, RowOutcome::Created, RowOutcome::Failed]);
    assert_eq!(run.errors(), [(4, "last_name".into(), "REQUIRED".into())]);
    let counts = run.counts();
    assert_eq!((counts.rows, counts.created, counts.failed), (3, 2, 1));
    let summary = run.summary();
    assert_eq!(summary.status, proto::ImportJobStatus::Succeeded as i32);

    let job = app
        .imports(app.as_admin())
        .get_import_job(proto::GetImportJobRequest {
            job_id: summary.job_id.clone(),
        })
        .await
        .answered();
    assert_eq!(job.counts, summary.counts);
    assert_eq!(job.last_line, 4);
    let stored: Vec<(String, String)> =
        sqlx::query_as("select username, email from users order by username")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        [
            ("ana@acme.com".to_owned(), "ana@acme.com".to_owned()),
            ("bsouza".to_owned(), "bruno@acme.com".to_owned())
        ]
    );
    let invitations = app
        .count("select count(*) from outbox where kind = 'INVITATION'")
        .await;
    assert_eq!(invitations, 2);
    let audited = app
        .count("select count(*) from audit_events where action = 'user.create'")
        .await;
    assert_eq!(audited, 2);
    let failed = app
        .imports(app.as_admin())
        .list_import_row_results(proto::ListImportRowResultsRequest {
            job_id: summary.job_id.clone(),
            failed_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.rows.len(), 1);
    assert_eq!(failed.rows[0].line, 4);
    assert_eq!(failed.total_size, 1);
}

/// Ways to cut a file into chunks: single bytes (splitting every multi-byte
/// character and CRLF), odd sizes, and the whole file at once.
const CHUNKINGS: [usize; 6] = [1, 2, 3, 7, 64, 1 << 20];

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/import_files/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// (line, outcome, [(field, code)] of the errors) of every row.
type Expected = [(i64, RowOutcome, &'static [(&'static str, &'static str)])];

/// A row as compared: line, outcome, sorted (field, code) errors.
type RowSeen = (i64, RowOutcome, Vec<(String, String)>);

fn assert_rows(run: &ImportRun, expected: &Expected, validate: bool, what: &str) {
    let actual: Vec<RowSeen> = run
        .rows
        .iter()
        .map(|r| {
            let mut errors: Vec<(String, String)> = r
                .errors
                .iter()
                .map(|e| (e.field.clone(), e.code.clone()))
                .collect();
            errors.sort();
            (r.line, RowOutcome::try_from(r.outcome).unwrap(), errors)
        })
        .collect();
    let expected: Vec<RowSeen> = expected
        .iter()
        .map(|(line, outcome, errors)| {
            let outcome = match outcome {
                RowOutcome::Failed => RowOutcome::Failed,
                _ if validate => RowOutcome::Valid,
                other => *other,
            };
            let mut errors: Vec<(String, String)> = errors
                .iter()
                .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
                .collect();
            errors.sort();
            (*line, outcome, errors)
        })
        .collect();
    assert_eq!(actual, expected, "{what}: {:?}", run.error);
    let counts = run.counts();
    assert_eq!(counts.rows as usize, expected.len(), "{what}");
}

/// Reviews the file in every chunking (all must agree with `expected`),
/// then imports it once and checks the same rows.
async fn review_in_every_chunking_then_import(
    app: &TestApp,
    file: &str,
    options: proto::ImportOptions,
    expected: &Expected,
) -> ImportRun {
    let bytes = corpus(file);
    for chunk in CHUNKINGS {
        let run = run_import(app, app.as_admin(), true, options.clone(), &bytes, chunk).await;
        assert_rows(
            &run,
            expected,
            true,
            &format!("review of {file} in chunks of {chunk}"),
        );
    }
    let run = run_import(app, app.as_admin(), false, options, &bytes, 5).await;
    assert_rows(&run, expected, false, &format!("import of {file}"));
    run
}

async fn cashiers_group(app: &TestApp) -> String {
    let profile = builtin_profile(app, "Viewer").await;
    groups::group(app, "Cashiers", &profile, UnitScope::AllUnits, &[]).await
}

#[tokio::test]
async fn an_excel_cp1252_semicolon_crlf_file_reads_right_in_every_chunking() {
    let app = TestApp::spawn().await;
    let cashiers = cashiers_group(&app).await;
    use RowOutcome::*;
    review_in_every_chunking_then_import(
        &app,
        "excel_cp1252_semicolon_crlf.csv",
        options(),
        &[
            (2, Created, &[]),
            (3, Failed, &[("phone", "INVALID_PHONE")]),
            (4, Created, &[]),
            (5, Failed, &[("first_name", "INVALID_ENCODING")]),
            (7, Failed, &[("email", "DUPLICATE_IN_FILE")]),
            (8, Created, &[]),
        ],
    )
    .await;
    let names: Vec<(String, String)> =
        sqlx::query_as("select first_name, last_name from users order by email")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        names,
        [
            ("Ana".to_owned(), "Lima".to_owned()),
            ("João".to_owned(), "Conceição".to_owned()),
            ("Ünï".to_owned(), "Çödé".to_owned()),
        ],
        "a late Windows-1252 record and a UTF-8 one in the same file both read right"
    );
    let members = app
        .groups(app.as_admin())
        .list_group_members(proto::ListGroupMembersRequest {
            group_id: cashiers,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        members.users.len(),
        1,
        "the groups column gave João his group"
    );
}

#[tokio::test]
async fn a_utf8_file_with_bom_quoted_line_breaks_and_every_line_ending_counts_lines_right() {
    let app = TestApp::spawn().await;
    use RowOutcome::*;
    let run = review_in_every_chunking_then_import(
        &app,
        "utf8_bom_quotes_line_ends.csv",
        options(),
        &[
            (2, Failed, &[("first_name", "CONTROL_CHARACTER")]),
            (4, Created, &[]),
            (
                5,
                Failed,
                &[
                    ("last_name", "CONTROL_CHARACTER"),
                    ("status", "LEGACY_STATUS"),
                ],
            ),
            (8, Created, &[]),
            (9, Failed, &[("row", "UNTERMINATED_QUOTE")]),
        ],
    )
    .await;
    assert_eq!(run.rows[1].email, "pedro@acme.com");
    let statuses: Vec<(String, String, String)> =
        sqlx::query_as("select email, last_name, admin_state from users order by email")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            (
                "ines@acme.com".to_owned(),
                "Sá".to_owned(),
                "ON_VACATION".to_owned()
            ),
            (
                "pedro@acme.com".to_owned(),
                "Alves, Jr.".to_owned(),
                "INACTIVE".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn every_row_rule_gives_its_outcome_line_and_field() {
    let app = TestApp::spawn().await;
    cashiers_group(&app).await;
    let keeper = app.create_user("Kim", "Keeper", "keeper@acme.com").await;
    for (first, email, username) in [
        ("Eva", "existing@acme.com", "existing"),
        ("Gil", "gone@acme.com", "gone"),
    ] {
        app.users(app.as_admin())
            .create_user(proto::CreateUserRequest {
                user: Some(proto::User {
                    first_name: first.into(),
                    last_name: "Existing".into(),
                    email: email.into(),
                    username: username.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    sqlx::query("update users set username = 'keeper' where id = $1")
        .bind(uuid::Uuid::parse_str(&keeper.id).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    use RowOutcome::*;
    let run = review_in_every_chunking_then_import(
        &app,
        "row_rules.csv",
        options(),
        &[
            (2, Created, &[]),
            (3, Failed, &[("email", "USER_ALREADY_EXISTS")]),
            (4, Failed, &[("username", "USERNAME_TAKEN")]),
            (5, Updated, &[]),
            (6, Failed, &[("username", "USER_NOT_FOUND")]),
            (7, Failed, &[("email", "DUPLICATE_IN_FILE")]),
            (8, Deleted, &[]),
            (9, Failed, &[("email", "EMAIL_MISMATCH")]),
            (10, Failed, &[("groups", "GROUP_NOT_FOUND")]),
            (11, Created, &[]),
            (12, Failed, &[("action", "INVALID_ACTION")]),
            (13, Failed, &[("column 10", "TOO_MANY_CELLS")]),
            (14, Created, &[]),
            (15, Unchanged, &[]),
            (16, Created, &[]),
            (17, Failed, &[("phone", "INVALID_PHONE")]),
            (18, Failed, &[("status", "LEGACY_STATUS")]),
            (19, Failed, &[("email", "USER_NOT_FOUND")]),
        ],
    )
    .await;
    assert!(
        run.rows[5].errors[0].message.contains("line 2"),
        "{:?}",
        run.rows[5]
    );
    assert_eq!(run.rows[14].warnings[0].code, "PUBLIC_EMAIL_DOMAIN");
    let renamed: (String, String) =
        sqlx::query_as("select last_name, admin_state from users where username = 'existing'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(renamed, ("Renamed".to_owned(), "ON_VACATION".to_owned()));
    let formula: (Option<String>, Option<String>) =
        sqlx::query_as("select phone, external_id from users where email = 'formula@acme.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        formula,
        (Some("+5511987654321".to_owned()), Some("=EXT1".to_owned())),
        "a leading ' before a formula character is removed"
    );
    let gone = app
        .count("select count(*) from users where username = 'gone'")
        .await;
    assert_eq!(gone, 0);
    let novo_groups = app.count("select count(*) from memberships m join users u on u.id = m.user_id where u.email = 'novo@acme.com'").await;
    assert_eq!(novo_groups, 1);
}

#[tokio::test]
async fn refused_files_end_the_stream_invalid_argument_before_any_row() {
    let app = TestApp::spawn().await;
    for (file, fields) in [
        ("refused_utf16.csv", &["file"][..]),
        ("refused_workbook.xlsx", &["file"]),
        ("refused_empty.csv", &["file"]),
        ("refused_whitespace.csv", &["file"]),
        (
            "refused_header.csv",
            &[
                "column 2",
                "first_name",
                "column 5",
                "column 6",
                "last_name",
            ],
        ),
    ] {
        for chunk in [1, 3, 1 << 20] {
            let run =
                run_import(&app, app.as_admin(), false, options(), &corpus(file), chunk).await;
            assert!(run.rows.is_empty(), "{file}");
            let status = run.error.unwrap_or_else(|| panic!("{file} was accepted"));
            assert_eq!(status.code(), Code::InvalidArgument, "{file}: {status:?}");
            assert_eq!(violated_fields(&status), fields, "{file}");
        }
    }
    let utf16 = run_import(
        &app,
        app.as_admin(),
        true,
        options(),
        &corpus("refused_utf16.csv"),
        4,
    )
    .await;
    assert!(utf16.error.unwrap().message().contains("CSV UTF-8"));
    let header_only = run_import(
        &app,
        app.as_admin(),
        false,
        options(),
        &corpus("header_only.csv"),
        2,
    )
    .await;
    assert_eq!(
        header_only.summary().status,
        proto::ImportJobStatus::Succeeded as i32
    );
    assert_eq!(header_only.counts().rows, 0);
    let jobs = app
        .imports(app.as_admin())
        .list_import_jobs(proto::ListImportJobsRequest {
            status: proto::ImportJobStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        jobs.jobs.len(),
        16,
        "refused files leave FAILED jobs saying why"
    );
    assert!(!jobs.jobs[0].failure_message.is_empty());
}

/// A CSV of `count` new users numbered from `from`.
fn people(from: usize, count: usize) -> String {
    let mut csv = String::from("first_name,last_name,email\n");
    for n in from..from + count {
        csv.push_str(&format!("Person,Number {n},person{n}@acme.com\n"));
    }
    csv
}

async fn job(app: &TestApp, job_id: &str) -> proto::ImportJob {
    app.imports(app.as_admin())
        .get_import_job(proto::GetImportJobRequest {
            job_id: job_id.into(),
        })
        .await
        .answered()
}

/// Sends the options and the start of a file, keeps the request stream open,
/// and returns once the first row result came back, with the job's id.
async fn start_unfinished_import(
    app: &TestApp,
    start: &[u8],
) -> (
    tokio::sync::mpsc::Sender<proto::ImportUsersRequest>,
    tonic::Streaming<proto::ImportUsersResponse>,
    String,
) {
    let (requests, mut stream) =
        open_import(app, vec![options_message(options()), chunk_message(start)])
            .await
            .unwrap();
    stream.message().await.unwrap().unwrap();
    let job_id: String = sqlx::query_scalar("select id::text from import_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    (requests, stream, job_id)
}

/// An INTERRUPTED job that wrote some of its `total` rows, whose counts are
/// exactly what the database holds.
async fn assert_interrupted_part_way_with_the_database_counts(
    app: &TestApp,
    ended: proto::ImportJob,
    total: i64,
) {
    assert_eq!(ended.status, proto::ImportJobStatus::Interrupted as i32);
    let counts = ended.counts.unwrap();
    assert!(counts.created > 0 && counts.created < total, "{counts:?}");
    assert_eq!(
        counts.created,
        app.count("select count(*) from users").await
    );
    assert_eq!(
        counts.rows,
        app.count("select count(*) from import_rows").await
    );
    assert_eq!(
        ended.last_line,
        app.count("select max(line) from import_rows").await
    );
}

/// A client stream whose messages are still arriving: `first` sent, the
/// request stream kept open; the sender and the answer stream (`call` opens
/// it: ImportUsers or ValidateImport, as whom).
pub async fn open_stream<Request, Response, Answer>(
    first: Vec<Request>,
    call: impl FnOnce(tokio_stream::wrappers::ReceiverStream<Request>) -> Answer,
) -> Result<
    (
        tokio::sync::mpsc::Sender<Request>,
        tonic::Streaming<Response>,
    ),
    Status,
>
where
    Answer:
        std::future::Future<Output = Result<tonic::Response<tonic::Streaming<Response>>, Status>>,
{
    let (requests, receiver) = tokio::sync::mpsc::channel(4);
    for message in first {
        requests.send(message).await.map_err(drop).unwrap();
    }
    let stream = call(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    Ok((requests, stream))
}

/// An import by the admin key whose file is still arriving (`first` sent).
pub async fn open_import(
    app: &TestApp,
    first: Vec<proto::ImportUsersRequest>,
) -> Result<
    (
        tokio::sync::mpsc::Sender<proto::ImportUsersRequest>,
        tonic::Streaming<proto::ImportUsersResponse>,
    ),
    Status,
> {
    open_stream(first, |requests| async move {
        app.imports(app.as_admin()).import_users(requests).await
    })
    .await
}

pub fn chunk_message(bytes: &[u8]) -> proto::ImportUsersRequest {
    proto::ImportUsersRequest {
        message: Some(proto::import_users_request::Message::Chunk(bytes.to_vec())),
    }
}

pub fn options_message(options: proto::ImportOptions) -> proto::ImportUsersRequest {
    proto::ImportUsersRequest {
        message: Some(proto::import_users_request::Message::Options(options)),
    }
}

#[tokio::test]
async fn a_client_that_sends_10000_rows_before_reading_any_result_completes() {
    let app = TestApp::spawn().await;
    let file = people(0, 10_000);
    let (requests, receiver) = tokio::sync::mpsc::channel(1);
    let mut client = app.imports(app.as_admin());
    let response = client.import_users(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let sender = tokio::spawn(async move {
        requests.send(options_message(options())).await.unwrap();
        for chunk in file.as_bytes().chunks(1000) {
            requests.send(chunk_message(chunk)).await.unwrap();
        }
    });
    let response = response.await.unwrap();
    // Every byte is handed over before a single result is read.
    tokio::time::timeout(std::time::Duration::from_secs(120), sender)
        .await
        .expect("the server kept reading the file while no result was read")
        .unwrap();
    let run = collect(Ok(response), |m| match m.message.unwrap() {
        proto::import_users_response::Message::Row(row) => Ok(row),
        proto::import_users_response::Message::Summary(s) => Err(s),
    })
    .await;
    assert_eq!(run.rows.len(), 10_000);
    assert!(
        run.rows.windows(2).all(|w| w[0].line + 1 == w[1].line),
        "file order"
    );
    assert_eq!(run.counts().created, 10_000);
    assert_eq!(app.count("select count(*) from users").await, 10_000);
    assert_eq!(app.count("select count(*) from outbox").await, 10_000);
}

// The test blocks on the client's thread: the server needs threads of its own.
#[tokio::test]
async fn a_client_killed_mid_file_leaves_an_interrupted_job_whose_counts_match_the_database() {
    let app = TestApp::spawn().await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("people.csv");
    std::fs::write(&path, people(0, 30_000)).unwrap();
    // A real client process, killed with SIGKILL as a crash would: its
    // connection closes without the file's end.
    let mut client = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("import")
        .arg(&path)
        .env("ROSTER_SERVER", &app.address)
        .env("ROSTER_API_KEY", &app.admin_key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "the import's first row results are written",
        std::time::Duration::from_secs(30),
        || async { (app.count("select count(*) from import_rows").await > 0).then_some(()) },
    )
    .await;
    client.kill().await.unwrap();
    let job_id: String = sqlx::query_scalar("select id::text from import_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let ended = eventually(
        "the killed client's job ends",
        std::time::Duration::from_secs(10),
        || async {
            let job = job(&app, &job_id).await;
            (job.status != proto::ImportJobStatus::Running as i32).then_some(job)
        },
    )
    .await;
    assert_interrupted_part_way_with_the_database_counts(&app, ended, 30_000).await;
}

#[tokio::test]
async fn two_overlapping_imports_at_once_create_each_user_once_and_a_skip_rerun_creates_nothing() {
    let app = TestApp::spawn().await;
    let (first, second) = (people(0, 1_500), people(500, 1_500));
    let (a, b) = tokio::join!(
        run_import(
            &app,
            app.as_admin(),
            false,
            options(),
            first.as_bytes(),
            700
        ),
        run_import(
            &app,
            app.as_admin(),
            false,
            options(),
            second.as_bytes(),
            900
        ),
    );
    let created = a.counts().created + b.counts().created;
    assert_eq!(created, 2_000, "{:?} {:?}", a.counts(), b.counts());
    assert_eq!(app.count("select count(*) from users").await, 2_000);
    for run in [&a, &b] {
        assert!(run
            .rows
            .iter()
            .filter(|r| r.outcome == RowOutcome::Failed as i32)
            .all(|r| r.errors[0].code == "USER_ALREADY_EXISTS"));
    }
    let skip = proto::ImportOptions {
        on_existing: proto::OnExisting::Skip as i32,
        ..options()
    };
    let rerun = run_import(&app, app.as_admin(), false, skip, first.as_bytes(), 4096).await;
    assert_eq!(rerun.counts().skipped, 1_500);
    assert_eq!(rerun.counts().created, 0);
    assert!(rerun.rows.iter().all(|r| !r.user_id.is_empty()));
    assert_eq!(app.count("select count(*) from users").await, 2_000);
}

#[tokio::test]
async fn a_100_kb_field_and_a_1_mb_line_fail_their_rows_and_the_next_row_is_read() {
    let app = TestApp::spawn().await;
    let file = format!(
        "first_name,last_name,email\n{},Over,over@acme.com\n{},Long,long@acme.com\n\"{}\",Huge,huge@acme.com\nAfter,Them,after@acme.com\n",
        "w".repeat(5 * 1024),
        "x".repeat(100 * 1024),
        "y,".repeat(512 * 1024),
    );
    let run = run_import(
        &app,
        app.as_admin(),
        false,
        options(),
        file.as_bytes(),
        64 * 1024,
    )
    .await;
    assert_eq!(
        run.errors(),
        [
            (2, "first_name".to_owned(), "FIELD_TOO_LONG".to_owned()),
            // 100 KB is past the record limit (64 KiB) too.
            (3, "row".to_owned(), "RECORD_TOO_LONG".to_owned()),
            (4, "row".to_owned(), "RECORD_TOO_LONG".to_owned())
        ]
    );
    assert_eq!(run.outcomes()[3], (5, RowOutcome::Created));
}

#[tokio::test]
async fn a_unit_administrator_cannot_give_groups_beyond_their_own_by_import() {
    let app = TestApp::spawn().await;
    let o = groups::org(&app).await;
    let groups::SouthAdmin {
        cashier_south,
        cashier_west,
        bearer: unit_admin,
        ..
    } = groups::south_admin(&app, &o).await;
    let refused = run_import(
        &app,
        unit_admin.clone(),
        false,
        proto::ImportOptions {
            group_ids: vec![cashier_west.clone()],
            ..options()
        },
        b"first_name,last_name,email\nA,B,ab@acme.com\n",
        64,
    )
    .await;
    assert_eq!(refused.error.unwrap().code(), Code::PermissionDenied);
    assert_eq!(
        app.count("select count(*) from import_jobs").await,
        0,
        "refused before any job"
    );
    let run = run_import(
        &app,
        unit_admin,
        false,
        proto::ImportOptions {
            group_ids: vec![cashier_south.clone()],
            ..options()
        },
        b"first_name,last_name,email,groups\nA,B,ab@acme.com,Cashier West\nC,D,cd@acme.com,cashier south\n",
        64,
    )
    .await;
    assert_eq!(
        run.errors(),
        [(2, "groups".to_owned(), "GROUP_NOT_COVERED".to_owned())]
    );
    assert_eq!(run.outcomes()[1], (3, RowOutcome::Created));
    assert_eq!(
        app.count("select count(*) from memberships m join users u on u.id = m.user_id where u.email = 'cd@acme.com'").await,
        1
    );
}

#[tokio::test]
async fn the_row_limit_stops_the_job_failed_naming_the_line_and_keeps_the_rows_before() {
    let app = TestApp::spawn_with(|settings| settings.import.max_rows = 5).await;
    let run = import(&app, options(), &people(0, 8)).await;
    assert_eq!(run.rows.len(), 5);
    let summary = run.summary();
    assert_eq!(summary.status, proto::ImportJobStatus::Failed as i32);
    assert!(
        summary.failure_message.contains("line 7"),
        "{}",
        summary.failure_message
    );
    assert_eq!(app.count("select count(*) from users").await, 5);
}

#[tokio::test]
async fn a_replica_leaves_a_live_job_alone_and_a_stopping_server_ends_its_job_interrupted_with_exact_counts(
) {
    let fast_heartbeat = |settings: &mut roster::startup::ServerSettings| {
        settings.import.stale_after = Period::constant(std::time::Duration::from_secs(2));
        settings.import.heartbeat_every = Period::constant(std::time::Duration::from_millis(200));
    };
    let mut app = TestApp::spawn_with(fast_heartbeat).await;
    let replica = app.replica(fast_heartbeat).await;
    let file = people(0, 3_000);
    let (requests, mut stream, job_id) =
        start_unfinished_import(&app, &file.as_bytes()[..file.len() / 2]).await;
    let admin = app.as_admin();
    let read_on_replica = |job_id: String| {
        let mut client = replica.imports(admin.clone());
        async move {
            client
                .get_import_job(proto::GetImportJobRequest { job_id })
                .await
                .answered()
        }
    };

    // Longer than the stale limit: the replica's reaper and its job reads ran.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let live = read_on_replica(job_id.clone()).await;
    assert_eq!(live.status, proto::ImportJobStatus::Running as i32);

    // The file is not finished when its server stops.
    app.stop_server().await;
    let ended = read_on_replica(job_id.clone()).await;
    assert_interrupted_part_way_with_the_database_counts(&app, ended, 3_000).await;
    // The client's stream ended: rows, then the INTERRUPTED summary or an error.
    let mut ending = None;
    while let Ok(Some(message)) = stream.message().await {
        if let Some(proto::import_users_response::Message::Summary(summary)) = message.message {
            ending = Some(summary.status);
        }
    }
    assert!(
        ending.is_none_or(|status| status == proto::ImportJobStatus::Interrupted as i32),
        "{ending:?}"
    );
    drop(requests);
}

#[tokio::test]
async fn a_cancelled_job_stops_and_a_stale_job_ends_interrupted() {
    let app = TestApp::spawn().await;
    let (requests, stream, job_id) = start_unfinished_import(&app, people(0, 10).as_bytes()).await;
    let cancelled = app
        .imports(app.as_admin())
        .cancel_import_job(proto::CancelImportJobRequest { job_id })
        .await
        .answered();
    assert_eq!(cancelled.status, proto::ImportJobStatus::Cancelled as i32);
    let run = collect(Ok(tonic::Response::new(stream)), |m| {
        match m.message.unwrap() {
            proto::import_users_response::Message::Row(row) => Ok(row),
            proto::import_users_response::Message::Summary(s) => Err(s),
        }
    })
    .await;
    assert_eq!(
        run.summary().status,
        proto::ImportJobStatus::Cancelled as i32
    );
    drop(requests);

    let stale = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into import_jobs (organization_id, id, kind, options, requested_by, notify_requester, owner, heartbeat_time, created, rows_total) \
         values ($1, $2, 'IMPORT', '{}', 'api_key:x', false, $3, now() - interval '10 minutes', 7, 7)",
    )
    .bind(app.organization_id)
    .bind(stale)
    .bind(uuid::Uuid::now_v7())
    .execute(&app.pool)
    .await
    .unwrap();
    let ended = job(&app, &stale.to_string()).await;
    assert_eq!(ended.status, proto::ImportJobStatus::Interrupted as i32);
    assert_eq!(
        ended.counts.unwrap().created,
        7,
        "counts are kept as written"
    );
}

#[tokio::test]
async fn an_update_by_a_shared_email_is_ambiguous_where_duplicate_emails_are_allowed() {
    let app = TestApp::spawn().await;
    app.allow_duplicate_emails().await;
    let run = import(
        &app,
        options(),
        "action,first_name,last_name,email,username\nadd,Front,Desk,desk@acme.com,front\nadd,Night,Desk,desk@acme.com,night\nupdate,Day,,desk@acme.com,\nupdate,Day,,,night\n",
    )
    .await;
    run.assert_outcomes(&[
        RowOutcome::Created,
        RowOutcome::Created,
        RowOutcome::Failed,
        RowOutcome::Failed,
    ]);
    assert_eq!(run.rows[2].errors[0].code, "AMBIGUOUS_EMAIL");
    assert_eq!(
        run.rows[3].errors[0].code, "DUPLICATE_IN_FILE",
        "night was created by line 3"
    );
    let rerun = import(&app, options(), "action,first_name,last_name,email,username\nupdate,Day,,desk@acme.com,\nupdate,Day,,,night\n").await;
    assert_eq!(rerun.rows[0].errors[0].code, "AMBIGUOUS_EMAIL");
    assert_eq!(rerun.outcomes()[1], (3, RowOutcome::Updated));
}

/// The whole file ExportUsers streams.
pub async fn export(app: &TestApp, request: proto::ExportUsersRequest) -> Vec<u8> {
    let mut stream = app
        .users(app.as_admin())
        .export_users(request)
        .await
        .unwrap()
        .into_inner();
    let mut file = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        file.extend(message.chunk);
    }
    file
}

#[tokio::test]
async fn export_then_import_with_update_reports_every_row_unchanged() {
    let app = TestApp::spawn().await;
    cashiers_group(&app).await;
    let uninvited = proto::ImportOptions {
        send_invitations: Some(false),
        ..options()
    };
    let run = import(
        &app,
        uninvited,
        "first_name,last_name,email,username,phone,external_id,groups,status\n\
         =cmd,\"Silva; Jr.\",ana@acme.com,,+5511999998888,'=1+1,Cashiers,\n\
         João,\"Quote \"\"Q\"\"\",joao@acme.com,jsilva,,-7,,inactive\n\
         '@Zé,Multi,ze@acme.com,,,,,on_vacation\n",
    )
    .await;
    assert_eq!(run.counts().created, 3, "{:?}", run.rows);
    sqlx::query("update users set legacy_status = 'BLOCKED' where email = 'ze@acme.com'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("update users set invitation_expire_time = now() - interval '1 day' where email = 'ana@acme.com'")
        .execute(&app.pool)
        .await
        .unwrap();
    let file = export(
        &app,
        proto::ExportUsersRequest {
            delimiter: ";".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(file.starts_with(b"\xEF\xBB\xBF"), "UTF-8 with BOM");
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(text.starts_with(
        "\u{FEFF}first_name;last_name;email;username;phone;external_id;groups;status;onboarded;derived_status;id\r\n"
    ));
    assert!(
        text.contains(
            "'=cmd;\"Silva; Jr.\";ana@acme.com;ana@acme.com;'+5511999998888;'=1+1;Cashiers;active;false;expired;"
        ),
        "{text}"
    );
    // The assigned status (what an import reads) beside the one calls show.
    assert!(text.contains(";inactive;false;inactive;"), "{text}");
    assert!(text.contains(";blocked;false;blocked;"), "{text}");
    let update = proto::ImportOptions {
        on_existing: proto::OnExisting::Update as i32,
        ..options()
    };
    let reimport = run_import(&app, app.as_admin(), false, update, &file, 7).await;
    reimport.assert_outcomes(&[
        RowOutcome::Unchanged,
        RowOutcome::Unchanged,
        RowOutcome::Unchanged,
    ]);
    let exports = app
        .count("select count(*) from audit_events where action = 'user.export'")
        .await;
    assert_eq!(exports, 1, "exports are audited");
    let filtered = export(
        &app,
        proto::ExportUsersRequest {
            query: "joao".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        String::from_utf8(filtered).unwrap().lines().count(),
        2,
        "header and João"
    );
    let viewer = Bearer::token(
        &app.create_api_key(
            app.organization_id,
            "viewer",
            &[roster::domain::caller::Scope::Viewer],
        )
        .await,
    );
    let status = app
        .users(viewer)
        .export_users(proto::ExportUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// The report email of a job to `to`, once it arrives.
async fn report_to_of(app: &TestApp, to: &str, job_id: &str) -> crate::helpers::Email {
    eventually(
        &format!("the report of {job_id} is emailed to {to}"),
        std::time::Duration::from_secs(15),
        || async {
            app.mail
                .emails()
                .into_iter()
                .find(|email| email.to.eq_ignore_ascii_case(to) && email.text.contains(job_id))
        },
    )
    .await
}

#[tokio::test]
async fn report_to_names_users_of_the_organization_only() {
    let app = TestApp::spawn().await;
    app.create_user("Bo", "Ss", "boss@acme.com").await;
    let elsewhere = app.create_organization("other").await;
    sqlx::query(
        "insert into users (organization_id, id, first_name, last_name, email, username) \
         values ($1, gen_random_uuid(), 'Out', 'Sider', 'out@other.com', 'out@other.com')",
    )
    .bind(elsewhere)
    .execute(&app.pool)
    .await
    .unwrap();
    let refused = |report_to: &[&str]| {
        let options = proto::ImportOptions {
            report_to: report_to.iter().map(|a| (*a).to_owned()).collect(),
            ..options()
        };
        async {
            let run = import_no_rows(&app, options).await;
            let status = run.error.expect("refused before any row");
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            status
        }
    };
    let strangers = refused(&["BOSS@acme.com", "anyone@example.com", "out@other.com"]).await;
    assert_eq!(
        violated_fields(&strangers),
        ["options.report_to[1]", "options.report_to[2]"]
    );
    assert!(
        strangers
            .message()
            .contains("not the email of a user of this organization"),
        "{}",
        strangers.message()
    );
    assert_eq!(
        violated_fields(&refused(&["boss@acme.com", "not an address"]).await),
        ["options.report_to[1]"]
    );
    let many: Vec<String> = (0..11).map(|i| format!("u{i}@acme.com")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        violated_fields(&refused(&many).await),
        ["options.report_to"]
    );
    assert_eq!(app.count("select count(*) from import_jobs").await, 0);
}

#[tokio::test]
async fn an_import_reports_to_report_to_and_its_summary_says_who_gets_the_report() {
    let app = TestApp::spawn().await;
    let org = groups::org(&app).await;
    let (_, requester) = groups::organization_admin(&app, &org, "lead@acme.com").await;
    app.create_user("Bo", "Ss", "boss@acme.com").await;
    let quiet = proto::ImportOptions {
        send_invitations: Some(false),
        ..options()
    };
    let csv = b"first_name,last_name,email\nAna,Good,ana.good@acme.com\n";

    // An API key has no address: without report_to nobody gets a report.
    let unreported = run_import(&app, app.as_admin(), false, quiet.clone(), csv, 64).await;
    let said = &unreported.summary().report_delivery;
    assert!(said.starts_with("no report is sent"), "{said}");
    assert!(said.contains("report_to"), "{said}");
    let ended = job(&app, &unreported.summary().job_id).await;
    assert_eq!(&ended.report_delivery, said);

    let named = proto::ImportOptions {
        report_to: vec!["Boss@Acme.com".into()],
        file_name: "people-march.csv".into(),
        ..quiet.clone()
    };
    let csv = b"first_name,last_name,email\nBia,Good,bia.good@acme.com\nBad,Row,nope\n";
    let reported = run_import(&app, app.as_admin(), false, named, csv, 64).await;
    let job_id = reported.summary().job_id.clone();
    assert_eq!(
        reported.summary().report_delivery,
        "the report is emailed to Boss@Acme.com"
    );
    let report = report_to_of(&app, "boss@acme.com", &job_id).await;
    assert!(
        report.subject.contains("people-march.csv"),
        "{}",
        report.subject
    );
    assert!(report.text.contains("people-march.csv"), "{}", report.text);
    assert!(report.html.contains("people-march.csv"));
    assert!(report.text.contains("line 3 nope"), "{}", report.text);
    // Rounds queue every ended job's report at once: the first job's is decided too.
    assert_eq!(
        app.count("select count(*) from outbox where kind = 'IMPORT_REPORT'")
            .await,
        1
    );

    // A user requester gets it as before; an address named twice, or the
    // requester's own, gets one message.
    let both = proto::ImportOptions {
        report_to: vec![
            "boss@acme.com".into(),
            "lead@acme.com".into(),
            "BOSS@acme.com".into(),
        ],
        ..quiet
    };
    let csv = b"first_name,last_name,email\nCid,Good,cid.good@acme.com\n";
    let run = run_import(&app, requester, false, both, csv, 64).await;
    let job_id = run.summary().job_id.clone();
    assert_eq!(
        run.summary().report_delivery,
        "the report is emailed to the requester and to boss@acme.com, lead@acme.com"
    );
    report_to_of(&app, "lead@acme.com", &job_id).await;
    report_to_of(&app, "boss@acme.com", &job_id).await;
    let messages: i64 = sqlx::query_scalar(
        "select count(*) from outbox where kind = 'IMPORT_REPORT' and import_job_id = $1::uuid",
    )
    .bind(&job_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(messages, 2);
}

#[tokio::test]
async fn an_import_that_changes_a_pending_users_email_invites_them_at_the_new_address() {
    let app = TestApp::spawn().await;
    let pat = app.create_user("Pat", "Typo", "pat@acme.con").await;
    let old = app.email("pat@acme.con", 1).await;
    let quinn = app.create_user("Quinn", "Typo", "quinn@acme.con").await;
    app.email("quinn@acme.con", 1).await;

    let run = import(
        &app,
        options(),
        "action,first_name,last_name,email,username\nupdate,,,pat@acme.com,pat@acme.con\n",
    )
    .await;
    assert_eq!(run.outcomes(), [(2, RowOutcome::Updated)], "{:?}", run.rows);
    let new = app.email("pat@acme.com", 1).await;
    crate::onboarding::only_the_newer_link_registers(&app, &old, &new).await;

    // An import told not to send invitations sends none, here either.
    let silent = proto::ImportOptions {
        send_invitations: Some(false),
        ..options()
    };
    let run = import(
        &app,
        silent,
        "action,first_name,last_name,email,username\nupdate,,,quinn@acme.com,quinn@acme.con\n",
    )
    .await;
    assert_eq!(run.outcomes(), [(2, RowOutcome::Updated)], "{:?}", run.rows);
    let invitations: i64 = sqlx::query_scalar(
        "select count(*) from outbox where kind = 'INVITATION' and user_id = $1::uuid",
    )
    .bind(&quinn.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(invitations, 1);
    let live_links: i64 = sqlx::query_scalar(
        "select count(*) from onboarding_tokens where user_id = $1::uuid and revoke_time is null",
    )
    .bind(&quinn.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        live_links, 0,
        "the link sent to the old address stopped working"
    );
    let _ = pat;
}
