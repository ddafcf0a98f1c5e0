//! The derived status exists once as a rule (`UserStatus::derive`); the SQL
//! that filters and counts by it must agree with that rule on every case.

use chrono::Utc;
use roster::{
    domain::status::{every_status_case, UserStatus},
    store::users::STATUS_SQL,
};

use crate::helpers::TestApp;

#[tokio::test]
async fn the_status_sql_agrees_with_the_derived_status_rule_on_every_case() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let statement = format!(
        "select {STATUS_SQL} from (select $1::text as admin_state, $2::text as legacy_status, \
         $3::bool as onboarded, $4::timestamptz as invitation_expire_time) as users"
    );
    let mut disagreements = Vec::new();
    for facts in every_status_case(now) {
        let from_sql: UserStatus = sqlx::query_scalar(&statement)
            .bind(facts.admin_state)
            .bind(facts.legacy_status)
            .bind(facts.onboarded)
            .bind(facts.invitation_expire_time)
            .fetch_one(&app.pool)
            .await
            .expect("the status SQL yields a known status");
        let from_rule = UserStatus::derive(facts, now);
        if from_sql != from_rule {
            disagreements.push(format!("{facts:?}: SQL {from_sql}, rule {from_rule}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[tokio::test]
async fn a_stored_status_roster_does_not_know_is_an_error_not_a_default() {
    let app = TestApp::spawn().await;
    let decoded: Result<UserStatus, sqlx::Error> = sqlx::query_scalar("select 'SUSPENDED'::text")
        .fetch_one(&app.pool)
        .await;
    let error = decoded.expect_err("an unknown status must not decode");
    assert!(error.to_string().contains("SUSPENDED"), "{error}");
}
