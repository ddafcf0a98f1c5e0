//! TLS on both listeners, with a CA and a server certificate the test makes.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use roster::{
    proto::{self, auth_service_client::AuthServiceClient},
    startup::{Application, ServerSettings},
    tls::TlsSettings,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::helpers::{Bearer, TestApp};

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1, in a temporary directory.
struct TestCertificates {
    ca_pem: String,
    directory: tempfile::TempDir,
}

impl TestCertificates {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_certificate =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&server_key, &ca)
                .unwrap();
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join("server.pem"),
            server_certificate.pem(),
        )
        .unwrap();
        std::fs::write(
            directory.path().join("server.key"),
            server_key.serialize_pem(),
        )
        .unwrap();
        Self {
            ca_pem: ca.pem(),
            directory,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
        }
    }
}

async fn spawn_over_tls(certificates: &TestCertificates) -> TestApp {
    let tls = certificates.settings();
    TestApp::spawn_with(|settings| settings.tls = Some(tls)).await
}

/// A server that never reaches its database: startup refusals come first.
async fn build(adjust: impl FnOnce(&mut ServerSettings)) -> anyhow::Result<Application> {
    let mut settings = ServerSettings::new("127.0.0.1:0".parse().unwrap());
    settings.http_listen = Some("127.0.0.1:0".parse().unwrap());
    adjust(&mut settings);
    let pool = PgPool::connect_lazy("postgres://roster@127.0.0.1:1/none").unwrap();
    Application::build(&settings, pool).await
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_calls_who_am_i_over_tls() {
    let certificates = TestCertificates::new();
    let app = spawn_over_tls(&certificates).await;
    assert!(app.address.starts_with("https://"), "{}", app.address);

    let channel = Channel::from_shared(format!("https://localhost:{}", port(&app.address)))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&certificates.ca_pem)),
        )
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let me = AuthServiceClient::with_interceptor(channel, Bearer::token(&app.admin_key))
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("WhoAmI over TLS")
        .into_inner();

    assert_eq!(me.organization_name, "acme");
}

#[tokio::test]
async fn a_plaintext_client_is_refused_by_the_tls_listener() {
    let certificates = TestCertificates::new();
    let app = spawn_over_tls(&certificates).await;

    let plaintext = format!("http://127.0.0.1:{}", port(&app.address));
    let called = async {
        let channel = Channel::from_shared(plaintext)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        let answer = AuthServiceClient::with_interceptor(channel, Bearer::token(&app.admin_key))
            .who_am_i(proto::WhoAmIRequest {})
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(answer)
    };

    let result = tokio::time::timeout(Duration::from_secs(15), called)
        .await
        .expect("the refusal comes without waiting out the handshake timeout");
    assert!(
        result.is_err(),
        "a plaintext call succeeded over the TLS listener"
    );
}

#[tokio::test]
async fn the_password_pages_are_served_over_https_with_the_same_certificate() {
    let certificates = TestCertificates::new();
    let app = spawn_over_tls(&certificates).await;
    assert!(app.pages().starts_with("https://"), "{}", app.pages());

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(certificates.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port(app.pages())))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake with the pages");
    tls.write_all(b"GET /register HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn plaintext_on_an_address_that_is_not_loopback_is_refused_without_insecure_plaintext() {
    let refused = build(|settings| settings.listen = "0.0.0.0:0".parse().unwrap()).await;
    let error = format!("{:#}", refused.err().expect("refused"));
    for expected in ["0.0.0.0:0", "--tls-cert", "--insecure-plaintext"] {
        assert!(error.contains(expected), "{error}");
    }

    let refused = build(|settings| settings.http_listen = Some("0.0.0.0:0".parse().unwrap())).await;
    let error = format!("{:#}", refused.err().expect("refused"));
    assert!(error.contains("the password pages"), "{error}");

    build(|settings| {
        settings.listen = "0.0.0.0:0".parse().unwrap();
        settings.insecure_plaintext = true;
    })
    .await
    .expect("--insecure-plaintext allows it");
}

#[tokio::test]
async fn a_missing_certificate_file_refuses_to_start_naming_the_flag_and_the_file() {
    let certificates = TestCertificates::new();
    let missing = certificates.path("missing.pem");
    let refused = build(|settings| {
        settings.tls = Some(TlsSettings {
            cert: missing.clone(),
            key: certificates.path("server.key"),
        });
    })
    .await;

    let error = format!("{:#}", refused.err().expect("refused"));
    assert!(error.contains("--tls-cert"), "{error}");
    assert!(error.contains(&missing.display().to_string()), "{error}");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_refuses_to_start() {
    let certificates = TestCertificates::new();
    let other_key = certificates.path("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let refused = build(|settings| {
        settings.tls = Some(TlsSettings {
            cert: certificates.path("server.pem"),
            key: other_key.clone(),
        });
    })
    .await;

    let error = format!("{:#}", refused.err().expect("refused"));
    assert!(error.contains("--tls-key"), "{error}");
    assert!(error.contains(&other_key.display().to_string()), "{error}");
}

#[test]
fn roster_serve_refuses_plaintext_off_loopback_before_starting_a_cluster() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("DATABASE_URL")
        .env_remove("ROSTER_INSECURE_PLAINTEXT")
        .env_remove("ROSTER_TLS_CERT")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--insecure-plaintext"), "{stderr}");
    assert!(
        std::fs::read_dir(data_dir.path()).unwrap().next().is_none(),
        "nothing was started in the data directory"
    );
}
