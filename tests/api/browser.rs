//! The whole onboarding journey as a person lives it: an invitation arrives
//! at a real SMTP server (aiosmtpd), the register page opens in headless
//! Chromium (driven by playwright-core), a weak password shows every unmet
//! rule, a good one succeeds, Login and WhoAmI follow; then a reset does the
//! same and the old session ends.

use std::path::Path;

use roster::proto::{self, UnitScope};
use tonic::Code;

use crate::{
    groups,
    helpers::{eventually, Bearer, Email, TestApp},
    onboarding::login,
    smtp::{deliver_to, SmtpSink},
};

#[derive(Debug, serde::Deserialize)]
struct PageRun {
    who: String,
    unmet: Vec<String>,
    done: String,
    leaked: bool,
}

/// Runs the page script on `link`; fails with what to install when the tools are missing.
async fn fill_password_page(link: &str, weak: &str, good: &str) -> PageRun {
    run_page_script("password_page.mjs", &[link, weak, good]).await
}

/// Runs a page script of tests/e2e with `args` (and $ROSTER_SCREENSHOT): its JSON line.
async fn run_page_script<T: serde::de::DeserializeOwned>(script: &str, args: &[&str]) -> T {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/e2e` (done by .ci/run)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is missing: `apt-get install chromium` (done by .ci/run)"
    );
    let output = tokio::process::Command::new("node")
        .arg(e2e.join(script))
        .args(args)
        .args(std::env::var("ROSTER_SCREENSHOT").ok())
        .output()
        .await
        .expect("node");
    assert!(
        output.status.success(),
        "the page script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script's JSON line")
}

/// The message to `to` whose link goes to `page` (the maildir has no order).
async fn email_to_page(sink: &SmtpSink, to: &str, page: &str) -> Email {
    eventually(
        &format!("an email to {to} with a /{page} link arrives at the SMTP server"),
        std::time::Duration::from_secs(10),
        || async {
            sink.messages()
                .into_iter()
                .find(|m| m.to == to && m.text.contains(&format!("/{page}#token=")))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_registers_in_the_browser_signs_in_then_resets_the_password() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let pages_port = SmtpSink::free_port();
    let app = TestApp::spawn_with(|settings| {
        deliver_to(settings, &url);
        settings.http_listen = Some(format!("127.0.0.1:{pages_port}").parse().unwrap());
        settings.delivery.as_mut().unwrap().public_url =
            Some(format!("http://127.0.0.1:{pages_port}"));
    })
    .await;
    let org = groups::org(&app).await;
    let admins = groups::group(&app, "Admins", &org.admin_profile, UnitScope::AllUnits, &[]).await;
    groups::user_in(&app, "Maria", "Souza", "maria@acme.com", &[&admins]).await;

    let invitation = email_to_page(&sink, "maria@acme.com", "register").await;
    let link = invitation.link();
    assert!(link.starts_with(&format!("http://127.0.0.1:{pages_port}/register#token=")));
    let registered = fill_password_page(&link, "abc", "Maria#Souza2026x").await;
    assert!(registered.who.contains("maria@acme.com"), "{registered:?}");
    assert_eq!(
        registered.unmet,
        [
            "PASSWORD_UPPERCASE",
            "PASSWORD_LOWERCASE",
            "PASSWORD_SPECIAL",
            "PASSWORD_DIGITS"
        ]
    );
    assert!(registered.done.contains("maria@acme.com"), "{registered:?}");
    assert!(!registered.leaked, "the token left the fragment");

    let session = login(&app, "maria@acme.com", "Maria#Souza2026x")
        .await
        .unwrap();
    let me = app
        .who_am_i(Bearer::token(&session))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.scopes, [proto::Scope::Admin as i32]);
    assert!(me.organization_admin);

    app.auth(Bearer::none())
        .request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: "maria@acme.com".into(),
        })
        .await
        .unwrap();
    let reset = email_to_page(&sink, "maria@acme.com", "reset").await;
    assert!(reset.link().contains("/reset#token=rst_pwr_"));
    let done = fill_password_page(&reset.link(), "NOUPPER", "Nova#Senha2027xy").await;
    assert!(
        done.unmet.contains(&"PASSWORD_LOWERCASE".to_owned()),
        "{done:?}"
    );
    assert!(!done.leaked);

    let old = app.who_am_i(Bearer::token(&session)).await.unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated);
    login(&app, "maria@acme.com", "Nova#Senha2027xy")
        .await
        .unwrap();
}

#[derive(Debug, serde::Deserialize)]
struct EnrollmentRun {
    qr: usize,
    secret: String,
    wrong: String,
    done: String,
    recovery_codes: Vec<String>,
    leaked: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_require_second_factor_a_person_enrolls_in_the_browser_as_they_register() {
    let app = TestApp::spawn().await;
    crate::second_factor::require_second_factor(&app).await;
    app.create_user("Maria", "Souza", "maria@acme.com").await;
    let invitation = app.email("maria@acme.com", 1).await;
    let link = format!("{}/register#token={}", app.pages(), invitation.link_token());

    let run: EnrollmentRun =
        run_page_script("second_factor_page.mjs", &[&link, "Maria#Souza2026x"]).await;
    assert_eq!(run.qr, 1, "the QR code is an SVG in the page: {run:?}");
    assert!(run.wrong.contains("not the code"), "{run:?}");
    assert!(run.done.contains("maria@acme.com"), "{run:?}");
    assert_eq!(run.recovery_codes.len(), 10, "{run:?}");
    assert!(
        !run.leaked,
        "a token or challenge left the page's fragment and body"
    );

    // The password, then a code the test computes from the enrolled secret.
    let app_codes = crate::second_factor::Authenticator::new(&run.secret);
    let challenge =
        crate::second_factor::challenge_for(&app, "maria@acme.com", "Maria#Souza2026x").await;
    let token = crate::second_factor::complete(&app, &challenge, &app_codes.code(1))
        .await
        .unwrap();
    app.who_am_i(Bearer::token(&token)).await.unwrap();
    // A recovery code from the page signs in too.
    let challenge =
        crate::second_factor::challenge_for(&app, "maria@acme.com", "Maria#Souza2026x").await;
    crate::second_factor::complete(&app, &challenge, &run.recovery_codes[0])
        .await
        .unwrap();
}
