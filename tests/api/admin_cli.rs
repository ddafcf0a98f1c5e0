//! The operator's admin commands on organizations: `roster org rename`, the
//! display name, and `--init` (no new empty cluster in a mistyped folder).

use std::{path::Path, process::Command, time::Duration};

use roster::proto;
use tonic::Code;

use crate::{
    cli::{cluster_dir, data_dir_for_postgres, roster, run_ok},
    helpers::{database_url, fresh_database, Bearer, TestApp},
    onboarding::{register, registered_user, sign_in, GOOD_PASSWORD},
};

fn failed(command: &mut Command) -> String {
    let output = command.output().expect("run roster");
    assert!(
        !output.status.success(),
        "{command:?} succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn admin_commands_refuse_a_folder_without_roster_data_and_create_nothing_there() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("not-the-data-dir");
    for args in [
        vec!["org", "list"],
        vec!["org", "create", "acme"],
        vec!["org", "rename", "acme", "acme-corp"],
        vec![
            "api-key", "create", "--org", "acme", "--name", "ops", "--scope", "admin",
        ],
        vec!["migrate"],
    ] {
        let stderr = failed(roster(&data_dir).args(&args));
        assert!(
            stderr.contains(&format!("no Roster data in {}", data_dir.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("--data-dir") && stderr.contains("--init"),
            "{stderr}"
        );
        assert!(!data_dir.exists(), "{args:?} created the folder");
    }
    // A folder that exists but holds no cluster (a server's mail, say) is no Roster data either.
    std::fs::create_dir_all(data_dir.join("mail")).unwrap();
    let stderr = failed(roster(&data_dir).args(["org", "list"]));
    assert!(stderr.contains("no Roster data"), "{stderr}");
    assert!(!data_dir.join("postgres").exists());
    assert!(!data_dir.join("CLUSTER_LOCATION").exists());
}

#[test]
fn with_init_an_admin_command_creates_the_cluster_that_later_commands_use() {
    let data_dir = data_dir_for_postgres("roster-init-");
    let stderr = failed(roster(data_dir.path()).args(["org", "create", "acme"]));
    assert!(stderr.contains("no Roster data"), "{stderr}");
    let id = run_ok(roster(data_dir.path()).args([
        "--init",
        "org",
        "create",
        "acme",
        "--display-name",
        "Acme Corporation",
    ]));
    let listed = run_ok(roster(data_dir.path()).args(["org", "list"]));
    assert_eq!(listed, format!("{}\tacme\tAcme Corporation\n", id.trim()));
    remove_cluster_outside(data_dir.path());
}

/// A cluster that lives outside its data directory outlives the temporary one.
fn remove_cluster_outside(data_dir: &Path) {
    if data_dir.join("CLUSTER_LOCATION").exists() {
        std::fs::remove_dir_all(cluster_dir(data_dir)).unwrap();
    }
}

async fn organization_of(app: &TestApp) -> proto::WhoAmIResponse {
    app.who_am_i(app.as_admin()).await.unwrap().into_inner()
}

async fn familiar_addresses(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from sign_in_familiar_addresses")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

// The binary runs while this test waits on it: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_org_rename_keeps_everything_but_the_name_people_type_at_sign_in() {
    let (pool, database) = fresh_database().await;
    let Some(url) = database_url(&database) else {
        eprintln!("skipped: the test database server is the one DATABASE_URL names");
        return;
    };
    // A backoff that outlasts the test, so that what it holds back is certain.
    let app = TestApp::spawn_on(pool, |settings| {
        settings.throttle.base = Duration::from_secs(60)
    })
    .await;
    let data_dir = tempfile::tempdir().unwrap();
    let operator = |args: &[&str]| {
        let mut command = roster(data_dir.path());
        command.env("DATABASE_URL", &url).args(args);
        command
    };
    let mut auth = app.auth(Bearer::none());

    // Bia signed in from here before; Ana has an invitation in her mailbox;
    // Carol's account is held back after wrong passwords.
    registered_user(&app, "bia@acme.test").await;
    sign_in(&mut auth, "acme", "bia@acme.test", GOOD_PASSWORD)
        .await
        .unwrap();
    assert_eq!(familiar_addresses(&app).await, 1);
    app.create_user("Ana", "Souza", "ana@acme.test").await;
    let invitation = app.email("ana@acme.test", 1).await;
    registered_user(&app, "carol@acme.test").await;
    let mut held_back = false;
    for guess in 0..10 {
        // Each one new: a wrong password typed again is not counted again.
        let wrong = format!("Wrong@Password{guess}");
        match sign_in(&mut auth, "acme", "carol@acme.test", &wrong).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                held_back = true;
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated),
            Ok(_) => panic!("a wrong password signed in"),
        }
    }
    assert!(held_back, "wrong passwords are held back");
    let before = organization_of(&app).await;

    let output = operator(&["org", "rename", "acme", "acme-corp"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("people type `acme-corp` at sign-in"),
        "{output:?}"
    );

    // The same organization and key under the new name, with its users.
    let after = organization_of(&app).await;
    assert_eq!(after.organization_id, before.organization_id);
    assert_eq!(after.organization_name, "acme-corp");
    let users = app.list_users(proto::ListUsersRequest::default()).await;
    assert_eq!(users.len(), 3);
    // The link emailed before the rename still works (it carries ids, not the name).
    register(&app, &invitation.link_token(), GOOD_PASSWORD)
        .await
        .unwrap();
    sign_in(&mut auth, "ACME-Corp", "ana@acme.test", GOOD_PASSWORD)
        .await
        .unwrap();
    let old_name = sign_in(&mut auth, "acme", "ana@acme.test", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(old_name.code(), Code::Unauthenticated);
    // Bia's address stayed familiar (no second one is remembered for her),
    // and Carol stays held back under the new name.
    sign_in(&mut auth, "acme-corp", "bia@acme.test", GOOD_PASSWORD)
        .await
        .unwrap();
    assert_eq!(familiar_addresses(&app).await, 2, "Bia's and Ana's");
    let carol = sign_in(&mut auth, "acme-corp", "carol@acme.test", GOOD_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(carol.code(), Code::ResourceExhausted, "{carol:?}");

    let events = app.audit_events_of("organization.rename").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_fields, ["name"]);

    // What cannot be renamed says why.
    let stderr = failed(&mut operator(&["org", "rename", "acme", "other"]));
    assert!(stderr.contains("no organization named `acme`"), "{stderr}");
    run_ok(&mut operator(&["org", "create", "beta"]));
    let stderr = failed(&mut operator(&["org", "rename", "acme-corp", "BETA"]));
    assert!(stderr.contains("already exists"), "{stderr}");
    let stderr = failed(&mut operator(&["org", "rename", "beta", " "]));
    assert!(stderr.contains("name: must not be empty"), "{stderr}");
    let listed = run_ok(&mut operator(&["org", "list"]));
    let names: Vec<&str> = listed
        .lines()
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(names, ["acme-corp", "beta"]);
}
