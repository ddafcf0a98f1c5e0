//! Issue 12, import: hostile cells and headers, any chunking, the field each
//! row error names, file names, and the limits on running jobs and kept
//! review results.

use std::time::Duration;

use futures::StreamExt;
use roster::{
    domain::{caller::Scope, import::period::Period},
    proto::{self, RowOutcome},
};
use tonic::Code;

use crate::{
    helpers::{error_reason, eventually, Answered, Bearer, TestApp},
    import::{collect, import, open_import, open_stream, options, run_import, ImportRun},
};

/// (field, reason) of every field violation of a status.
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.reason))
                .collect()
        })
        .unwrap_or_default()
}

fn import_request(message: proto::import_users_request::Message) -> proto::ImportUsersRequest {
    proto::ImportUsersRequest {
        message: Some(message),
    }
}

fn review_request(
    message: proto::validate_import_request::Message,
) -> proto::ValidateImportRequest {
    proto::ValidateImportRequest {
        message: Some(message),
    }
}

/// Streams `options` then each chunk as its own message, pausing after each
/// so that the client's transport sends every message in a DATA frame of its
/// own (as grpcurl and most clients do), rather than coalescing them.
async fn import_in_messages(
    app: &TestApp,
    bearer: Bearer,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> ImportRun {
    use proto::import_users_request::Message;
    let messages = std::iter::once(Message::Options(options()))
        .chain(chunks.map(Message::Chunk))
        .map(import_request);
    let paced = futures::stream::iter(messages).then(|message| async {
        tokio::task::yield_now().await;
        message
    });
    let response = app.imports(bearer).import_users(paced).await;
    collect(response, |m| match m.message.unwrap() {
        proto::import_users_response::Message::Row(row) => Ok(row),
        proto::import_users_response::Message::Summary(s) => Err(s),
    })
    .await
}

/// A row as compared: line, outcome, (field, code) of its errors.
type RowSeen = (i64, RowOutcome, Vec<(String, String)>);

fn rows_seen(run: &ImportRun) -> Vec<RowSeen> {
    run.rows
        .iter()
        .map(|r| {
            (
                r.line,
                RowOutcome::try_from(r.outcome).unwrap(),
                r.errors
                    .iter()
                    .map(|e| (e.field.clone(), e.code.clone()))
                    .collect(),
            )
        })
        .collect()
}

/// 20,000 people; every 1,000th has an invalid email, and the last repeats line 2's.
fn twenty_thousand_people() -> Vec<u8> {
    let mut csv = String::from("first_name,last_name,email\n");
    for n in 0..20_000 {
        let email = match n {
            19_999 => "person0@acme.com".to_owned(),
            n if n % 1000 == 500 => format!("person{n}-at-acme.com"),
            n => format!("person{n}@acme.com"),
        };
        csv.push_str(&format!("Person,Number {n},{email}\n"));
    }
    csv.into_bytes()
}

#[tokio::test]
async fn a_20000_row_file_sent_in_1_byte_1_line_or_64_kib_messages_gives_the_same_results() {
    // A small read-ahead makes the server pause reading often, with the
    // client's small frames waiting: what used to end in GOAWAY.
    let app =
        TestApp::spawn_with(|settings| settings.import.inbound_buffer_bytes = 16 * 1024).await;
    let file = twenty_thousand_people();
    let mut seen = Vec::new();
    for chunking in ["64 KiB", "1 line", "1 byte"] {
        let organization = app
            .create_organization(&format!("chunks-{}", chunking.replace(' ', "-")))
            .await;
        let admin = Bearer::token(
            &app.create_api_key(organization, "admin", &[Scope::Admin])
                .await,
        );
        let chunks: Vec<Vec<u8>> = match chunking {
            "64 KiB" => file.chunks(64 * 1024).map(<[u8]>::to_vec).collect(),
            "1 line" => file
                .split_inclusive(|byte| *byte == b'\n')
                .map(<[u8]>::to_vec)
                .collect(),
            _ => file.iter().map(|byte| vec![*byte]).collect(),
        };
        let run = import_in_messages(&app, admin, chunks.into_iter()).await;
        assert!(run.error.is_none(), "{chunking}: {:?}", run.error);
        let counts = run.counts();
        assert_eq!(
            (counts.rows, counts.created, counts.failed),
            (20_000, 19_979, 21),
            "{chunking}"
        );
        seen.push((chunking, rows_seen(&run)));
    }
    let (_, first) = &seen[0];
    assert_eq!(
        first[19_999].2,
        [("email".to_owned(), "DUPLICATE_IN_FILE".to_owned())]
    );
    for (chunking, rows) in &seen[1..] {
        assert!(rows == first, "{chunking} differs from 64 KiB chunks");
    }
}

async fn job_status(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("select status from import_jobs order by create_time")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_nul_byte_in_a_cell_fails_that_row_naming_the_column_and_the_rest_of_the_batch_is_created(
) {
    let app = TestApp::spawn().await;
    let file = "first_name,last_name,email,groups\n\
                Ana,Silva,ana@acme.com,\n\
                Bruno,Sou\0za,bruno@acme.com,\n\
                Carla,Dias,carla\0@acme.com,\n\
                Davi,Lima,davi@acme.com,Cash\0iers\n\
                Eva,Reis,eva@acme.com,\n";
    for validate in [true, false] {
        let run = run_import(
            &app,
            app.as_admin(),
            validate,
            options(),
            file.as_bytes(),
            64 * 1024,
        )
        .await;
        assert!(run.error.is_none(), "{:?}", run.error);
        assert_eq!(
            run.errors(),
            [
                (3, "last_name".into(), "NUL_CHARACTER".into()),
                (4, "email".into(), "NUL_CHARACTER".into()),
                (5, "groups".into(), "NUL_CHARACTER".into()),
            ]
        );
        let counts = run.counts();
        assert_eq!((counts.rows, counts.failed), (5, 3));
        assert_eq!(
            run.summary().status,
            proto::ImportJobStatus::Succeeded as i32
        );
    }
    let users = app.count("select count(*) from users").await;
    assert_eq!(users, 2, "Ana and Eva");
    assert_eq!(job_status(&app).await, ["SUCCEEDED", "SUCCEEDED"]);
}

#[tokio::test]
async fn a_nul_or_bad_bytes_in_the_header_refuse_the_file_naming_the_column_and_the_job_ends() {
    let app = TestApp::spawn().await;
    let headers: [(&[u8], &str, &str); 4] = [
        (
            b"first_name,last\0_name,email\n",
            "column 2",
            "NUL_CHARACTER",
        ),
        (
            b"first_name;last_name;e\x81mail\r\n",
            "column 3",
            "INVALID_ENCODING",
        ),
        (
            b"first_name,last_name,email,\"<b>x\r\ny</b>\"\n",
            "column 4",
            "UNKNOWN_COLUMN",
        ),
        (
            b"first_name,last_name,email,\"note\0\"\n",
            "column 4",
            "NUL_CHARACTER",
        ),
    ];
    for (header, field, code) in headers {
        let mut file = header.to_vec();
        file.extend_from_slice(b"Ana,Silva,ana@acme.com\n");
        let run = run_import(&app, app.as_admin(), false, options(), &file, 3).await;
        let status = run.error.expect("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            violations(&status),
            [(field.to_owned(), code.to_owned())],
            "{status:?}"
        );
        assert!(run.rows.is_empty());
    }
    // Every job ended FAILED at once: none is left RUNNING for the stale sweep.
    assert_eq!(job_status(&app).await, ["FAILED"; 4]);
}

/// A trigger that raises `message` with `errcode` when a user with `email`
/// is inserted.
async fn refuse_inserting(app: &TestApp, email: &str, errcode: &str, message: &str) {
    sqlx::raw_sql(&format!(
        "create function refuse_insert() returns trigger language plpgsql as $$ \
         begin if new.email = '{email}' then \
         raise exception '{message}' using errcode = '{errcode}'; \
         end if; return new; end $$; \
         create trigger refuse_insert before insert on users for each row execute function refuse_insert();"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_database_error_that_is_no_row_s_fault_ends_the_job_instead_of_failing_rows() {
    let app = TestApp::spawn().await;
    // A trigger's own exception: the rows are not at fault. (A read-only
    // node after a failover is UNAVAILABLE instead: see database_restart.)
    refuse_inserting(
        &app,
        "carla@acme.com",
        "raise_exception",
        "the audit service is down",
    )
    .await;
    let run = import(
        &app,
        options(),
        "first_name,last_name,email\nAna,Silva,ana@acme.com\nCarla,Dias,carla@acme.com\n",
    )
    .await;
    assert_eq!(
        run.error.as_ref().map(tonic::Status::code),
        Some(Code::Internal),
        "{run:?}"
    );
    assert!(
        run.rows
            .iter()
            .all(|row| row.outcome() != RowOutcome::Failed),
        "no row is blamed: {:?}",
        run.rows
    );
    let (status, message, failed, created, users, carla): (String, String, i64, i64, i64, i64) =
        sqlx::query_as(
            "select status, failure_message, failed, created, \
             (select count(*) from users where email = 'ana@acme.com'), \
             (select count(*) from users where email = 'carla@acme.com') from import_jobs",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "INTERRUPTED", "{message}");
    assert_eq!(message, "an internal error stopped the job");
    assert_eq!((failed, carla), (0, 0));
    assert_eq!(created, users, "the counts are exact");
}

#[tokio::test]
async fn a_row_the_database_refuses_fails_alone_and_the_job_goes_on() {
    let app = TestApp::spawn().await;
    // Stands for any value the checks before the batch would miss.
    refuse_inserting(&app, "boom@acme.com", "check_violation", "refused").await;
    let run = import(
        &app,
        options(),
        "first_name,last_name,email\nAna,Silva,ana@acme.com\nBo,Om,boom@acme.com\nCarla,Dias,carla@acme.com\n",
    )
    .await;
    run.assert_outcomes(&[RowOutcome::Created, RowOutcome::Failed, RowOutcome::Created]);
    assert_eq!(run.errors(), [(3, "row".into(), "ROW_NOT_WRITTEN".into())]);
    assert_eq!(
        run.summary().status,
        proto::ImportJobStatus::Succeeded as i32
    );
}

#[tokio::test]
async fn row_errors_name_the_field_that_decided() {
    let app = TestApp::spawn().await;
    app.allow_duplicate_emails().await;
    let header = "first_name,last_name,email,username\n";
    let first = import(
        &app,
        options(),
        &format!("{header}Front,Desk,desk@acme.com,front\n"),
    )
    .await;
    assert_eq!(first.counts().created, 1);
    // The username matched; the email is another one.
    let again = import(
        &app,
        options(),
        &format!("{header}Front,Desk,other@acme.com,front\nJos\u{e9},Bad,jose@acme.com,jose\n"),
    )
    .await;
    assert_eq!(
        again.errors(),
        [(2, "username".into(), "USER_ALREADY_EXISTS".into())]
    );
    // An undefined Windows-1252 byte is named by its column, and extra cells by position.
    let mut file = header.as_bytes().to_vec();
    file.extend_from_slice(
        b"Ana,Sil\x81va\xE9,ana@acme.com,ana\nBia,Reis,bia@acme.com,bia,,extra\n",
    );
    let run = run_import(&app, app.as_admin(), true, options(), &file, 64 * 1024).await;
    assert_eq!(
        run.errors(),
        [
            (2, "last_name".into(), "INVALID_ENCODING".into()),
            (3, "column 6".into(), "TOO_MANY_CELLS".into()),
        ]
    );
}

#[tokio::test]
async fn a_file_name_with_line_breaks_markup_or_invisible_characters_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let file = b"first_name,last_name,email\nAna,Silva,ana@acme.com\n";
    // The characters refused are unit tests of `parse_file_name`; here one
    // of them, the NUL the gRPC boundary refuses first, and the length limit.
    for (name, code) in [
        ("people.csv\r\nBcc: x@evil.test", "INVALID_CHARACTER"),
        ("people\0.csv", "INVALID_CHARACTER"),
        (&"x".repeat(256), "TOO_LONG"),
    ] {
        let options = proto::ImportOptions {
            file_name: name.to_owned(),
            ..options()
        };
        let run = run_import(&app, app.as_admin(), false, options, file, 64 * 1024).await;
        let status = run.error.expect("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert_eq!(
            violations(&status),
            [("options.file_name".to_owned(), code.to_owned())],
            "{name:?}"
        );
    }
    let count = app.count("select count(*) from import_jobs").await;
    assert_eq!(count, 0, "no job starts with a refused name");
    let options = proto::ImportOptions {
        file_name: "  Funcionários março.csv ".into(),
        ..options()
    };
    let run = run_import(&app, app.as_admin(), false, options, file, 64 * 1024).await;
    let stored: String = sqlx::query_scalar("select file_name from import_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "Funcionários março.csv");
    assert_eq!(run.counts().created, 1);
}

/// A review whose file is still arriving; the job runs until the sender is dropped.
async fn start_unfinished_review(
    app: &TestApp,
    bearer: Bearer,
) -> Result<
    (
        tokio::sync::mpsc::Sender<proto::ValidateImportRequest>,
        tonic::Streaming<proto::ValidateImportResponse>,
    ),
    tonic::Status,
> {
    use proto::validate_import_request::Message;
    let chunk = b"first_name,last_name,email\nAna,Silva,ana@acme.com\n".to_vec();
    let (requests, mut stream) = open_review(
        app,
        bearer,
        vec![
            review_request(Message::Options(options())),
            review_request(Message::Chunk(chunk)),
        ],
    )
    .await?;
    stream.message().await.unwrap().expect("the first row");
    Ok((requests, stream))
}

/// An import by an administrator whose file is still arriving.
async fn start_unfinished_import(
    app: &TestApp,
) -> Result<
    (
        tokio::sync::mpsc::Sender<proto::ImportUsersRequest>,
        tonic::Streaming<proto::ImportUsersResponse>,
    ),
    tonic::Status,
> {
    use proto::import_users_request::Message;
    open_import(app, vec![import_request(Message::Options(options()))]).await
}

/// A review as `bearer` whose file is still arriving (`first` sent).
async fn open_review(
    app: &TestApp,
    bearer: Bearer,
    first: Vec<proto::ValidateImportRequest>,
) -> Result<
    (
        tokio::sync::mpsc::Sender<proto::ValidateImportRequest>,
        tonic::Streaming<proto::ValidateImportResponse>,
    ),
    tonic::Status,
> {
    open_stream(first, |requests| async move {
        app.imports(bearer).validate_import(requests).await
    })
    .await
}

/// A third job of a kind (`reviews`, `imports`) refused: 2 may run.
fn assert_two_may_run(refused: &tonic::Status, jobs: &str) {
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains(&format!("2 {jobs}")) && refused.message().contains("2 may run"),
        "{}",
        refused.message()
    );
}

/// A review that sent its options and then nothing.
async fn start_silent_review(
    app: &TestApp,
    bearer: Bearer,
) -> (
    tokio::sync::mpsc::Sender<proto::ValidateImportRequest>,
    tonic::Streaming<proto::ValidateImportResponse>,
) {
    use proto::validate_import_request::Message;
    open_review(
        app,
        bearer,
        vec![review_request(Message::Options(options()))],
    )
    .await
    .unwrap()
}

/// The summary a review stream ends with, reading past its rows; fails if it
/// takes longer than `within`.
async fn review_summary(
    stream: &mut tonic::Streaming<proto::ValidateImportResponse>,
    within: Duration,
) -> proto::ImportSummary {
    use proto::validate_import_response::Message;
    tokio::time::timeout(within, async {
        loop {
            match stream.message().await.unwrap().expect("a summary") {
                proto::ValidateImportResponse {
                    message: Some(Message::Summary(summary)),
                } => return summary,
                _ => continue,
            }
        }
    })
    .await
    .expect("the silent client's job was not ended")
}

#[tokio::test]
async fn a_silent_client_s_job_ends_after_the_idle_timeout_and_frees_its_place() {
    let app = TestApp::spawn_with(|settings| {
        settings.import.idle_timeout = Duration::from_millis(600);
        // Beats well inside the timeout: they must not keep the job alive.
        settings.import.heartbeat_every = Period::constant(Duration::from_millis(100));
        settings.import.max_running_jobs_per_organization = 1;
    })
    .await;
    let viewer = Bearer::token(
        &app.create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
            .await,
    );

    // Options, then nothing.
    let (_sender, mut stream) = start_silent_review(&app, viewer.clone()).await;
    let summary = review_summary(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(summary.status(), proto::ImportJobStatus::Interrupted);
    assert!(
        summary
            .failure_message
            .contains("the client sent no data for 0.6 seconds"),
        "{}",
        summary.failure_message
    );
    let status: String = sqlx::query_scalar("select status from import_jobs where id::text = $1")
        .bind(&summary.job_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "INTERRUPTED");

    // Some rows, then nothing: the job ends too, keeping the rows it wrote;
    // its start shows that the silent job's place was free.
    let (_sender, mut stream) = start_unfinished_review(&app, viewer.clone()).await.unwrap();
    let summary = review_summary(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(summary.status(), proto::ImportJobStatus::Interrupted);
    assert_eq!(summary.counts.unwrap().valid, 1);

    // A slow client that keeps sending is not cut off.
    let (requests, mut stream) = start_silent_review(&app, viewer).await;
    let lines = std::iter::once("first_name,last_name,email\n".to_owned())
        .chain((0..5).map(|i| format!("Ana,Silva,ana{i}@acme.com\n")));
    for line in lines {
        tokio::time::sleep(Duration::from_millis(300)).await;
        requests
            .send(review_request(
                proto::validate_import_request::Message::Chunk(line.into_bytes()),
            ))
            .await
            .unwrap();
    }
    drop(requests);
    let summary = review_summary(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        summary.status(),
        proto::ImportJobStatus::Succeeded,
        "{}",
        summary.failure_message
    );
    assert_eq!(summary.counts.unwrap().valid, 5);
}

#[tokio::test]
async fn stalled_reviews_by_a_viewer_do_not_keep_an_administrator_from_importing() {
    let app = TestApp::spawn().await;
    let viewer = Bearer::token(
        &app.create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
            .await,
    );
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(start_silent_review(&app, viewer.clone()).await);
    }
    let refused = start_unfinished_review(&app, viewer)
        .await
        .expect_err("a fifth review is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("4 reviews"),
        "{}",
        refused.message()
    );

    let file = b"first_name,last_name,email\nAna,Silva,ana@acme.com\n";
    let import = run_import(&app, app.as_admin(), false, options(), file, 64).await;
    assert_eq!(import.counts().created, 1, "{:?}", import.error);
}

#[tokio::test]
async fn running_imports_and_reviews_are_capped_per_organization() {
    let app = TestApp::spawn_with(|settings| {
        settings.import.max_running_jobs_per_organization = 2;
    })
    .await;
    let viewer = Bearer::token(
        &app.create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
            .await,
    );
    let (first, mut first_stream) = start_unfinished_review(&app, viewer.clone()).await.unwrap();
    let _second = start_unfinished_review(&app, viewer.clone()).await.unwrap();

    let refused = start_unfinished_review(&app, viewer.clone())
        .await
        .expect_err("a third review is refused");
    assert_two_may_run(&refused, "reviews");
    let file = b"first_name,last_name,email\nAna,Silva,ana@acme.com\n";
    let import = run_import(&app, app.as_admin(), false, options(), file, 64).await;
    assert_eq!(
        import.counts().created,
        1,
        "reviews do not take imports' places"
    );
    let _imports = [
        start_unfinished_import(&app).await.unwrap(),
        start_unfinished_import(&app).await.unwrap(),
    ];
    let refused = start_unfinished_import(&app)
        .await
        .expect_err("a third import is refused");
    assert_two_may_run(&refused, "imports");

    // Another organization is not held back.
    let other = app.create_organization("other").await;
    let other_admin = Bearer::token(&app.create_api_key(other, "admin", &[Scope::Admin]).await);
    let run = run_import(&app, other_admin, false, options(), file, 64).await;
    assert_eq!(run.counts().created, 1);

    // Once a job ends, its place is free.
    drop(first);
    while first_stream.message().await.unwrap().is_some() {}
    let (_third, _) = start_unfinished_review(&app, viewer).await.unwrap();
}

/// The file the retention tests review: a valid row and a failed one.
const TWO_ROWS: &[u8] = b"first_name,last_name,email\nAna,Silva,ana@acme.com\nBia,,bia@acme.com\n";

/// A server whose retention sweep runs `every`.
async fn sweeping_reviews_every(every: Duration) -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.import.retention_sweep_every = Period::constant(every);
    })
    .await
}

/// A review of `TWO_ROWS` by the admin key.
async fn review(app: &TestApp) -> ImportRun {
    run_import(app, app.as_admin(), true, options(), TWO_ROWS, 64).await
}

#[tokio::test]
async fn a_review_past_its_retention_loses_its_row_results_and_keeps_its_summary() {
    let app = sweeping_reviews_every(Duration::from_millis(100)).await;
    let old_review = review(&app).await;
    let recent_review = review(&app).await;
    let old_import = run_import(&app, app.as_admin(), false, options(), TWO_ROWS, 64).await;
    let old_ids = [
        old_review.summary().job_id.clone(),
        old_import.summary().job_id.clone(),
    ];
    sqlx::query(
        "update import_jobs set end_time = now() - interval '8 days' where id::text = any($1)",
    )
    .bind(&old_ids[..])
    .execute(&app.pool)
    .await
    .unwrap();

    let rows = |job_id: String| {
        let mut client = app.imports(app.as_admin());
        async move {
            client
                .list_import_row_results(proto::ListImportRowResultsRequest {
                    job_id,
                    ..Default::default()
                })
                .await
                .map(|response| response.into_inner().rows.len())
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let expired = loop {
        match rows(old_ids[0].clone()).await {
            Err(status) => break status,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => panic!("the old review's rows were never deleted"),
        }
    };
    assert_eq!(expired.code(), Code::FailedPrecondition, "{expired:?}");
    assert_eq!(
        error_reason(&expired).as_deref(),
        Some("ROW_RESULTS_EXPIRED")
    );
    // The API answers so from the end of the retention; the sweep deletes the
    // rows and records when.
    eventually(
        "the old review's rows are deleted and the deletion recorded",
        Duration::from_secs(20),
        || async {
            let (left, marked): (i64, bool) = sqlx::query_as(
                "select (select count(*) from import_rows where job_id = j.id), \
                 row_results_expired_time is not null from import_jobs j where id::text = $1",
            )
            .bind(&old_ids[0])
            .fetch_one(&app.pool)
            .await
            .unwrap();
            (left == 0 && marked).then_some(())
        },
    )
    .await;

    let job = app
        .imports(app.as_admin())
        .get_import_job(proto::GetImportJobRequest {
            job_id: old_ids[0].clone(),
        })
        .await
        .answered();
    let counts = job.counts.unwrap();
    assert_eq!((counts.rows, counts.valid, counts.failed), (2, 1, 1));

    assert_eq!(
        rows(old_ids[1].clone()).await.unwrap(),
        2,
        "imports keep theirs"
    );
    assert_eq!(
        rows(recent_review.summary().job_id.clone()).await.unwrap(),
        2,
        "a recent review keeps its rows"
    );
}

#[tokio::test]
async fn a_review_past_its_retention_answers_expired_at_once_and_its_rows_are_deleted_in_batches() {
    // The server's own sweep runs once, at start; this test sweeps itself.
    let app = sweeping_reviews_every(Duration::from_secs(3600)).await;
    let review = review(&app).await;
    let job_id = review.summary().job_id.clone();
    sqlx::query("update import_jobs set end_time = now() - interval '8 days' where id::text = $1")
        .bind(&job_id)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into import_rows (job_id, line, action, outcome) \
         select id, 100 + g, 'ADD', 'VALID' from import_jobs, generate_series(1, 2500) g \
         where id::text = $1",
    )
    .bind(&job_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let left = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from import_rows where job_id::text = $1")
            .bind(&job_id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(left().await, 2502);

    // Not swept yet: its rows are past their retention all the same.
    let expired = app
        .imports(app.as_admin())
        .list_import_row_results(proto::ListImportRowResultsRequest {
            job_id: job_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("past its retention");
    assert_eq!(expired.code(), Code::FailedPrecondition, "{expired:?}");
    assert_eq!(
        error_reason(&expired).as_deref(),
        Some("ROW_RESULTS_EXPIRED")
    );

    let jobs = roster::domain::import::run::Jobs {
        pool: app.store.clone(),
        settings: std::sync::Arc::new(roster::domain::import::run::ImportSettings {
            retention_delete_rows: 1000,
            ..Default::default()
        }),
        owner: uuid::Uuid::now_v7(),
        rows_decided: roster::metrics::Metrics::new().unwrap().import_rows,
    };
    assert_eq!(jobs.expire_review_row_results().await.unwrap(), 1);
    assert_eq!(left().await, 0);
    let marked: bool = sqlx::query_scalar(
        "select row_results_expired_time is not null from import_jobs where id::text = $1",
    )
    .bind(&job_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(marked);
    assert_eq!(jobs.expire_review_row_results().await.unwrap(), 0);
}
