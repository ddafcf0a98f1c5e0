//! The import session owns its job: however the job's task ends, the job
//! does not stay RUNNING.

use std::time::Duration;

use roster::domain::import::period::Period;
use tonic::Code;

use crate::{
    helpers::TestApp,
    import::{import, options},
};

#[tokio::test]
async fn a_job_whose_task_dies_ends_interrupted_at_once_and_the_stream_ends_internal() {
    // A zero heartbeat period makes the job's task panic as it starts
    // reading (tokio refuses a zero interval): a task that dies, for real.
    // Settings refuse a zero period; the test-only `unchecked` lets one through.
    let app = TestApp::spawn_with(|settings| {
        settings.import.heartbeat_every = Period::unchecked(Duration::ZERO);
        settings.import.stale_after = Period::constant(Duration::from_secs(600));
    })
    .await;

    let run = import(
        &app,
        options(),
        "first_name,last_name,email\nAna,Silva,ana@acme.com\n",
    )
    .await;

    let error = run.error.expect("the stream ends with an error");
    assert_eq!(error.code(), Code::Internal, "{error:?}");
    assert!(run.rows.is_empty());
    // Read from the table: GetImportJob would end stale jobs itself, and the
    // stale timeout is ten minutes away.
    let (status, message): (String, String) =
        sqlx::query_as("select status, failure_message from import_jobs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(status, "INTERRUPTED");
    assert_eq!(message, "an internal error stopped the job");
}
