//! The development mail folder: files named `<time>-<recipient>-<kind>.eml`,
//! a log line that names the recipient's domain and the kind, and
//! `roster mail list|show|links`, which read it.

use std::{process::Command, time::Duration};

use roster::proto::{self, user_service_client::UserServiceClient};

use crate::{
    cli::{acme_and_its_ops_key, roster, run_ok, serve_with_pages},
    helpers::{eventually, fresh_database_url, Bearer, TestApp},
    onboarding::{register, registered_user, GOOD_PASSWORD},
    users::new_user,
};

fn file_names(app: &TestApp) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(app.mail.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    names.sort();
    names
}

/// The time a file name starts with, checked to be near now.
fn assert_recent_time_prefix(name: &str) {
    let (time, _) = name.split_once('-').unwrap();
    let time = chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.6fZ")
        .unwrap_or_else(|error| panic!("{name}: {error}"))
        .and_utc();
    let age = chrono::Utc::now() - time;
    assert!(
        age >= chrono::Duration::zero() && age < chrono::Duration::minutes(5),
        "{name}"
    );
}

#[tokio::test]
async fn development_mail_files_are_named_by_time_recipient_and_kind() {
    let app = TestApp::spawn().await;
    registered_user(&app, "Ana.Souza@Acme.test").await;
    app.auth(Bearer::none())
        .request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: "ana.souza@acme.test".into(),
        })
        .await
        .unwrap();
    app.email("ana.souza@acme.test", 2).await;

    let names = file_names(&app);
    assert_eq!(names.len(), 2, "{names:?}");
    // Sorted by name is sorted by time: the invitation came first.
    assert!(
        names[0].ends_with("-ana.souza@acme.test-invitation.eml"),
        "{names:?}"
    );
    assert!(
        names[1].ends_with("-ana.souza@acme.test-password-reset.eml"),
        "{names:?}"
    );
    for name in &names {
        assert_recent_time_prefix(name);
    }
}

fn mail(app: &TestApp, args: &[&str]) -> Command {
    let mut command = roster(app.mail.data_dir());
    command.arg("mail").args(args);
    command
}

fn columns(line: &str) -> Vec<&str> {
    line.split('\t').collect()
}

// The binary runs while this test waits on it: the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_mail_lists_shows_and_prints_the_links_of_the_latest_messages() {
    let app = TestApp::spawn().await;
    app.create_named_user("Ana", "Souza", "ana.souza", "ana@acme.test")
        .await;
    let invitation = app.email("ana@acme.test", 1).await;
    app.create_named_user("Bia", "Lima", "bia", "bia@acme.test")
        .await;
    app.email("bia@acme.test", 1).await;

    let listed = run_ok(&mut mail(&app, &["list"]));
    let lines: Vec<Vec<&str>> = listed.lines().map(columns).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    // Newest first: time, to, kind, subject, file.
    assert_eq!(
        lines[0][1..4],
        [
            "bia@acme.test",
            "invitation",
            "Welcome to acme — register your password"
        ]
    );
    assert_eq!(lines[1][1], "ana@acme.test");
    assert!(lines[0][0] >= lines[1][0], "{listed}");
    assert!(
        lines[0][0].ends_with('Z') && lines[0][0].contains('T'),
        "{listed}"
    );
    assert!(
        lines[0][4].ends_with("-bia@acme.test-invitation.eml"),
        "{listed}"
    );

    let to_ana = run_ok(&mut mail(&app, &["list", "--to", "ANA@acme.test"]));
    assert_eq!(to_ana.lines().count(), 1, "{to_ana}");
    assert_eq!(columns(to_ana.trim_end())[1], "ana@acme.test");
    assert_eq!(
        run_ok(&mut mail(&app, &["list", "--limit", "1"]))
            .lines()
            .count(),
        1
    );

    let shown = run_ok(&mut mail(
        &app,
        &["show", "--latest", "--to", "ana@acme.test"],
    ));
    assert!(shown.contains("To: Ana Souza <ana@acme.test>"), "{shown}");
    assert!(
        shown.contains("Subject: Welcome to acme — register your password"),
        "{shown}"
    );
    assert!(
        shown.contains("Company: acme · Username: ana.souza"),
        "{shown}"
    );
    let by_file = run_ok(&mut mail(&app, &["show", lines[0][4]]));
    assert!(
        by_file.contains("To: Bia Lima <bia@acme.test>"),
        "{by_file}"
    );
    assert_eq!(run_ok(&mut mail(&app, &["show"])), by_file, "the newest");

    // An administrator follows the invitation without an SMTP server.
    let links = run_ok(&mut mail(
        &app,
        &["links", "--to", "ana@acme.test", "--latest"],
    ));
    let link_lines: Vec<Vec<&str>> = links.lines().map(columns).collect();
    assert_eq!(link_lines.len(), 1, "{links}");
    assert_eq!(link_lines[0][1..3], ["ana@acme.test", "invitation"]);
    assert_eq!(link_lines[0][3], invitation.link());
    let token = link_lines[0][3].split("#token=").nth(1).unwrap();
    register(&app, token, GOOD_PASSWORD).await.unwrap();
    let every_link = run_ok(&mut mail(&app, &["links"]));
    assert_eq!(every_link.lines().count(), 2, "{every_link}");

    let missing = mail(&app, &["show", "--latest", "--to", "nobody@acme.test"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no message to nobody@acme.test"),
        "{missing:?}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let no_folder = roster(elsewhere.path())
        .args(["mail", "list"])
        .output()
        .unwrap();
    assert!(!no_folder.status.success());
    let stderr = String::from_utf8_lossy(&no_folder.stderr);
    assert!(
        stderr.contains(&format!(
            "no mail folder at {}",
            elsewhere.path().join("mail").display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_written_email_is_logged_with_its_kind_and_the_recipient_domain_never_the_address() {
    let Some(url) = fresh_database_url().await else {
        eprintln!("skipped: the test database server is the one DATABASE_URL names");
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let operator = |args: &[&str]| {
        let mut command = roster(data_dir.path());
        command.env("DATABASE_URL", &url).args(args);
        command
    };
    let key = acme_and_its_ops_key(operator);
    let (served, channel) = serve_with_pages(operator(&[])).await;
    UserServiceClient::with_interceptor(channel, Bearer::token(&key))
        .create_user(new_user("Ana", "Souza", "ana.souza@acme.test"))
        .await
        .unwrap();

    let sent = eventually(
        "the invitation is logged",
        Duration::from_secs(15),
        || async { served.logged(&["email sent"]) },
    )
    .await;
    assert!(
        sent.contains("acme.test") && sent.contains("invitation"),
        "{sent}"
    );
    assert_eq!(served.logged_all(&["ana.souza"]), Vec::<String>::new());

    // `roster mail` reads where `roster serve` writes: <data dir>/mail/.
    let links = run_ok(roster(data_dir.path()).args(["mail", "links", "--latest"]));
    assert!(
        links.starts_with(&format!("{}", chrono::Utc::now().format("%Y-")))
            && links.contains("\tana.souza@acme.test\tinvitation\thttp")
            && links.contains("/register#token="),
        "{links}"
    );
    served.stop(nix::sys::signal::Signal::SIGTERM);
}
