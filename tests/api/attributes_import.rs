//! Custom user attributes through the import, the review, the export and
//! the template (issue 19 point 6): one `attr.<key>` column per attribute,
//! every value checked by the same definitions as CreateUser's.

use prost_types::value::Kind;
use roster::proto::{self, OnExisting, RowOutcome};
use tonic::Code;

use crate::{
    attributes::{define_four, held},
    helpers::{violations, TestApp},
    import::{export, import, open_import, options, run_import, ImportRun},
};

/// The same file reviewed, then imported.
async fn review_then_import(app: &TestApp, options: proto::ImportOptions, file: &str) -> ImportRun {
    let review = run_import(
        app,
        app.as_admin(),
        true,
        options.clone(),
        file.as_bytes(),
        64,
    )
    .await;
    let run = import(app, options, file).await;
    assert_eq!(
        review.errors(),
        run.errors(),
        "the review reports what the import does"
    );
    run
}

fn update_existing() -> proto::ImportOptions {
    proto::ImportOptions {
        on_existing: OnExisting::Update as i32,
        send_invitations: Some(false),
        ..options()
    }
}

#[tokio::test]
async fn an_unknown_or_repeated_attribute_column_refuses_the_header() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let run = import(
        &app,
        options(),
        "first_name,last_name,email,attr.nope,Attr.Level,attr.level\nAna,Lima,ana@acme.com,,,\n",
    )
    .await;
    let status = run.error.expect("the header is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    let found: Vec<(String, String)> = violations(&status)
        .into_iter()
        .map(|(field, code, _)| (field, code))
        .collect();
    assert_eq!(
        found,
        [
            ("column 4".to_owned(), "UNKNOWN_ATTRIBUTE".to_owned()),
            ("attr.level".to_owned(), "DUPLICATE_COLUMN".to_owned()),
        ]
    );
    assert!(run.rows.is_empty());
}

#[tokio::test]
async fn imported_values_are_checked_by_the_definitions_and_required_ones_are_needed_on_create() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let run = review_then_import(
        &app,
        options(),
        "first_name,last_name,email,attr.department,Attr.Level,attr.remote,attr.hired\n\
         Ana,Lima,ana@acme.com,sales,3,TRUE,2026-03-01\n\
         Bia,Reis,bia@acme.com,marketing,three,yes,2026-02-30\n\
         Caio,Melo,caio@acme.com,,'-2.5,,\n",
    )
    .await;
    run.assert_outcomes(&[RowOutcome::Created, RowOutcome::Failed, RowOutcome::Failed]);
    let error = |line, field: &str, code: &str| (line, field.to_owned(), code.to_owned());
    assert_eq!(
        run.errors(),
        [
            error(3, "attr.department", "NOT_ALLOWED"),
            error(3, "attr.level", "INVALID_TYPE"),
            error(3, "attr.remote", "INVALID_TYPE"),
            error(3, "attr.hired", "INVALID_TYPE"),
            error(4, "attr.department", "REQUIRED"),
        ]
    );
    let ana = app.get_user(&run.rows[0].user_id).await;
    assert_eq!(
        held(&ana),
        [
            ("department".into(), Some(Kind::StringValue("sales".into()))),
            ("hired".into(), Some(Kind::StringValue("2026-03-01".into()))),
            ("level".into(), Some(Kind::NumberValue(3.0))),
            ("remote".into(), Some(Kind::BoolValue(true))),
        ]
    );

    let without_column = import(
        &app,
        options(),
        "first_name,last_name,email\nDuda,Paz,duda@acme.com\n",
    )
    .await;
    assert_eq!(
        without_column.errors(),
        [error(2, "attr.department", "REQUIRED")],
        "a required attribute is needed even when the file has no column for it"
    );
}

#[tokio::test]
async fn an_update_row_changes_the_attributes_it_gives_and_the_audit_records_them() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let created = import(
        &app,
        options(),
        "first_name,last_name,email,attr.department,attr.level,attr.remote\n\
         Ana,Lima,ana@acme.com,sales,3,true\n",
    )
    .await;
    let ana_id = created.rows[0].user_id.clone();
    let file =
        "action,email,attr.level,attr.remote,attr.hired\nupdate,ana@acme.com,5,,2026-01-02\n";
    let run = review_then_import(&app, update_existing(), file).await;
    assert_eq!(run.outcomes(), [(2, RowOutcome::Updated)], "{:?}", run.rows);
    let ana = app.get_user(&ana_id).await;
    assert_eq!(
        held(&ana),
        [
            ("department".into(), Some(Kind::StringValue("sales".into()))),
            ("hired".into(), Some(Kind::StringValue("2026-01-02".into()))),
            ("level".into(), Some(Kind::NumberValue(5.0))),
            ("remote".into(), Some(Kind::BoolValue(true))),
        ],
        "an empty cell leaves the stored value alone"
    );
    let events = app
        .audit_events(proto::ListAuditEventsRequest {
            action: "user.update".into(),
            target_id: ana_id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].changed_fields,
        ["attributes.hired", "attributes.level"]
    );

    let again = import(&app, update_existing(), file).await;
    assert_eq!(again.outcomes(), [(2, RowOutcome::Unchanged)]);
    let bad = review_then_import(
        &app,
        update_existing(),
        "action,email,attr.level\nupdate,ana@acme.com,NaN\n",
    )
    .await;
    assert_eq!(
        bad.errors(),
        [(2, "attr.level".to_owned(), "INVALID_TYPE".to_owned())]
    );
}

#[tokio::test]
async fn an_export_has_a_column_per_attribute_and_imports_back_unchanged() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let created = import(
        &app,
        proto::ImportOptions {
            send_invitations: Some(false),
            ..options()
        },
        "first_name,last_name,email,attr.department,attr.level,attr.remote,attr.hired\n\
         Ana,Lima,ana@acme.com,sales,3.0,true,2026-03-01\n\
         Bia,Reis,bia@acme.com,engineering,'-2.5,false,\n\
         Caio,Melo,caio@acme.com,sales,,,\n",
    )
    .await;
    assert_eq!(created.counts().created, 3, "{:?}", created.rows);
    let file = export(&app, proto::ExportUsersRequest::default()).await;
    let text = String::from_utf8(file.clone()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(
        lines[0].ends_with(",id,attr.department,attr.hired,attr.level,attr.remote"),
        "{text}"
    );
    assert!(lines[1].ends_with(",sales,2026-03-01,3,true"), "{text}");
    assert!(lines[2].ends_with(",engineering,,'-2.5,false"), "{text}");
    assert!(lines[3].ends_with(",sales,,,"), "{text}");

    let reimport = run_import(
        &app,
        app.as_admin(),
        false,
        update_existing(),
        &file,
        64 * 1024,
    )
    .await;
    reimport.assert_outcomes(&[
        RowOutcome::Unchanged,
        RowOutcome::Unchanged,
        RowOutcome::Unchanged,
    ]);
}

#[tokio::test]
async fn the_template_has_a_column_per_attribute_with_an_example_value() {
    let app = TestApp::spawn().await;
    define_four(&app).await;
    let template = app
        .imports(app.as_admin())
        .get_import_template(proto::GetImportTemplateRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        template
            .header
            .ends_with(",status,attr.department,attr.hired,attr.level,attr.remote"),
        "{}",
        template.header
    );
    assert!(
        template
            .example_row
            .ends_with(",active,sales,2026-01-31,1,true"),
        "{}",
        template.example_row
    );
    let review = run_import(
        &app,
        app.as_admin(),
        true,
        options(),
        &template.csv,
        64 * 1024,
    )
    .await;
    assert!(review.errors().is_empty(), "{:?}", review.rows);
}

#[tokio::test]
async fn a_definition_changed_while_an_import_runs_ends_it_before_its_next_batch() {
    use proto::import_users_request::Message;
    let app = TestApp::spawn().await;
    let send = |message| proto::ImportUsersRequest {
        message: Some(message),
    };
    let (requests, mut stream) = open_import(
        &app,
        vec![
            send(Message::Options(options())),
            send(Message::Chunk(
                b"first_name,last_name,email\nAna,Lima,ana@acme.com\n".to_vec(),
            )),
        ],
    )
    .await
    .unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.message,
        Some(proto::import_users_response::Message::Row(ref row)) if row.line == 2
    ));
    define_four(&app).await;
    requests
        .send(send(Message::Chunk(b"Bia,Reis,bia@acme.com\n".to_vec())))
        .await
        .unwrap();
    drop(requests);
    let mut summary = None;
    while let Some(message) = stream.message().await.unwrap() {
        match message.message {
            Some(proto::import_users_response::Message::Summary(s)) => summary = Some(s),
            other => panic!("no row is written with stale definitions: {other:?}"),
        }
    }
    let summary = summary.expect("a summary");
    assert_eq!(summary.status, proto::ImportJobStatus::Failed as i32);
    assert!(
        summary.failure_message.contains("definitions changed"),
        "{}",
        summary.failure_message
    );
}
