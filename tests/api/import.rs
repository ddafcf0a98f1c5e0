use roster::{
    domain::import::{
        header::Header,
        reader::{CsvStream, Limits},
        row::{parse_row, RowCommand},
    },
    proto,
};

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
