use roster::{
    domain::import::{
        header::Header,
        reader::{CsvStream, Limits},
        row::{parse_row, RowCommand},
    },
    proto::{self, RowOutcome},
};
use tonic::Status;

use crate::helpers::{violated_fields, Bearer, TestApp};

#[tokio::test]
async fn the_template_is_a_file_the_importer_reads_back_as_one_valid_row() {
    let app = TestApp::spawn().await;
    let viewer = Bearer::token(
        &app.create_api_key(
            app.organization_id,
            "v",
            &[roster::domain::caller::Scope::Viewer],
        )
        .await,
    );
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
        let (_, command) = parse_row(&header, records[1].fields.as_ref().unwrap(), false).unwrap();
        assert!(matches!(command, RowCommand::Add { .. }), "{delimiter}");
        assert_eq!(template.header.split(delimiter).next(), Some("first_name"));
    }
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
    assert_eq!(
        run.outcomes(),
        [
            (2, RowOutcome::Created),
            (3, RowOutcome::Created),
            (4, RowOutcome::Failed)
        ]
    );
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
        .unwrap()
        .into_inner()
        .job
        .unwrap();
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
    let invitations: i64 =
        sqlx::query_scalar("select count(*) from outbox where kind = 'INVITATION'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(invitations, 2);
    let audited: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'user.create'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
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
