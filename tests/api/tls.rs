//! TLS on both listeners and mutual TLS on gRPC, with CAs and certificates
//! the test makes; certificates reloaded on SIGHUP.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use roster::{
    proto::{self, auth_service_client::AuthServiceClient},
    startup::{Application, ServerSettings},
    tls::TlsSettings,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::{Bearer, TestApp};

/// A certificate authority the test makes.
struct TestCa(CertifiedIssuer<'static, KeyPair>);

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for `names` and its key, both PEM.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params.extended_key_usages = vec![usage];
        let certificate = params.signed_by(&key, &self.0).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    fn server_certificate(&self) -> (String, String) {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate, as a service calling Roster would have.
    fn client_identity(&self) -> Identity {
        let (certificate, key) =
            self.issue(&["billing-service"], ExtendedKeyUsagePurpose::ClientAuth);
        Identity::from_pem(certificate, key)
    }
}

/// A CA, a certificate it signed for `localhost` and 127.0.0.1, and a client
/// CA (its PEM in `client-ca.pem`), in a temporary directory.
struct TestCertificates {
    ca: TestCa,
    ca_pem: String,
    client_ca: TestCa,
    directory: tempfile::TempDir,
}

impl TestCertificates {
    fn new() -> Self {
        let ca = TestCa::new();
        let client_ca = TestCa::new();
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("client-ca.pem"), client_ca.pem()).unwrap();
        let certificates = Self {
            ca_pem: ca.pem(),
            ca,
            client_ca,
            directory,
        };
        certificates.write_server_certificate();
        certificates
    }

    /// A new server certificate in server.pem and server.key, written as a
    /// deployment tool would: each file renamed into place whole.
    fn write_server_certificate(&self) -> CertificateDer<'static> {
        let (certificate, key) = self.ca.server_certificate();
        self.replace("server.key", &key);
        self.replace("server.pem", &certificate);
        CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap()
    }

    fn replace(&self, name: &str, contents: &str) {
        let staged = self.path(&format!("{name}.new"));
        std::fs::write(&staged, contents).unwrap();
        std::fs::rename(staged, self.path(name)).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings::new(self.path("server.pem"), self.path("server.key"))
    }

    fn mutual_settings(&self) -> TlsSettings {
        TlsSettings {
            client_ca: Some(self.path("client-ca.pem")),
            ..self.settings()
        }
    }

    /// A rustls client trusting the server's CA, presenting no certificate.
    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// The certificate a new connection to `port` is served.
    async fn served_certificate(&self, port: u16) -> CertificateDer<'static> {
        let stream = self.handshake(port).await;
        let (_, connection) = stream.get_ref();
        connection.peer_certificates().unwrap()[0].clone()
    }

    async fn handshake(&self, port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.client_config()));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("a TLS handshake")
    }

    /// WhoAmI over a new TLS connection, presenting `identity` if given.
    async fn who_am_i(
        &self,
        port: u16,
        token: &str,
        identity: Option<Identity>,
    ) -> Result<proto::WhoAmIResponse, Box<dyn std::error::Error>> {
        let channel = self.channel(port, identity).await?;
        Ok(
            AuthServiceClient::with_interceptor(channel, Bearer::token(token))
                .who_am_i(proto::WhoAmIRequest {})
                .await?
                .into_inner(),
        )
    }

    async fn channel(
        &self,
        port: u16,
        identity: Option<Identity>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        Channel::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .tls_config(tls)?
            .connect()
            .await
    }
}

async fn spawn_over_tls(certificates: &TestCertificates) -> TestApp {
    spawn_with_tls(certificates.settings()).await
}

async fn spawn_with_tls(tls: TlsSettings) -> TestApp {
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

    let me = certificates
        .who_am_i(port(&app.address), &app.admin_key, None)
        .await
        .expect("WhoAmI over TLS");

    assert_eq!(me.organization_name, "acme");
}

#[tokio::test]
async fn a_plaintext_client_is_refused_by_the_tls_listener_which_serves_on() {
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
    certificates
        .who_am_i(port(&app.address), &app.admin_key, None)
        .await
        .expect("a TLS client is served after the refusal");
}

#[tokio::test]
async fn the_password_pages_are_served_over_https_with_the_same_certificate() {
    let certificates = TestCertificates::new();
    let app = spawn_over_tls(&certificates).await;
    assert!(app.pages().starts_with("https://"), "{}", app.pages());

    assert_eq!(get_register_page(&certificates, app.pages()).await, 200);
}

/// The status of GET /register over a TLS connection without a client certificate.
async fn get_register_page(certificates: &TestCertificates, pages: &str) -> u16 {
    get_without_client_certificate(certificates, pages, "/register").await
}

/// The status of GET `path` over a TLS connection without a client certificate.
async fn get_without_client_certificate(
    certificates: &TestCertificates,
    base: &str,
    path: &str,
) -> u16 {
    let mut tls = certificates.handshake(port(base)).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"))
}

#[tokio::test]
async fn mutual_tls_serves_a_client_certificate_of_the_client_ca_and_refuses_the_others() {
    let certificates = TestCertificates::new();
    let app = spawn_with_tls(certificates.mutual_settings()).await;
    let grpc = port(&app.address);

    let call = |identity: Option<Identity>| {
        let certificates = &certificates;
        let key = &app.admin_key;
        async move {
            tokio::time::timeout(
                Duration::from_secs(15),
                certificates.who_am_i(grpc, key, identity),
            )
            .await
            .expect("answered (or refused) without waiting out the handshake timeout")
        }
    };
    let member = || Some(certificates.client_ca.client_identity());

    let me = call(member())
        .await
        .expect("a client certificate signed by the client CA is served");
    assert_eq!(me.organization_name, "acme");
    assert!(
        call(None).await.is_err(),
        "a client without a certificate was served"
    );
    let stranger = TestCa::new().client_identity();
    assert!(
        call(Some(stranger)).await.is_err(),
        "a certificate of another CA was served"
    );
    let server_ca_client = certificates.ca.client_identity();
    assert!(
        call(Some(server_ca_client)).await.is_err(),
        "a certificate of the server's CA (not the client CA) was served"
    );
    call(member())
        .await
        .expect("still serving after the refusals");
    // People open the pages from an email in a browser without a client certificate.
    assert_eq!(get_register_page(&certificates, app.pages()).await, 200);
}

#[tokio::test]
async fn a_reload_reads_the_client_ca_again_for_the_next_connection() {
    let certificates = TestCertificates::new();
    let app = spawn_with_tls(certificates.mutual_settings()).await;
    let grpc = port(&app.address);
    let successor = TestCa::new();

    certificates.replace("client-ca.pem", &successor.pem());
    app.tls().reload().expect("reload");

    certificates
        .who_am_i(grpc, &app.admin_key, Some(successor.client_identity()))
        .await
        .expect("a client of the new client CA is served");
    let former = certificates.client_ca.client_identity();
    assert!(
        certificates
            .who_am_i(grpc, &app.admin_key, Some(former))
            .await
            .is_err(),
        "a client of the former client CA was served"
    );
}

#[tokio::test]
async fn a_missing_or_empty_client_ca_refuses_to_start_naming_the_flag_and_the_file() {
    let certificates = TestCertificates::new();
    let refusal = |client_ca: PathBuf| {
        let tls = TlsSettings {
            client_ca: Some(client_ca),
            ..certificates.settings()
        };
        async move {
            let refused = build(|settings| settings.tls = Some(tls)).await;
            format!("{:#}", refused.err().expect("refused"))
        }
    };

    let missing = certificates.path("missing-ca.pem");
    let error = refusal(missing.clone()).await;
    assert!(error.contains("--tls-client-ca"), "{error}");
    assert!(error.contains(&missing.display().to_string()), "{error}");

    let error = refusal(certificates.path("server.key")).await;
    assert!(error.contains("--tls-client-ca"), "{error}");
    assert!(error.contains("no PEM certificate"), "{error}");
}

#[test]
fn tls_client_ca_without_tls_cert_is_refused_naming_the_flags() {
    let data_dir = tempfile::tempdir().unwrap();
    let stderr = serve_refused(data_dir.path(), &["--tls-client-ca", "/tmp/ca.pem"]);
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}

/// `roster serve` with these flags (and no TLS or database from the
/// environment), which must fail; its stderr.
fn serve_refused(data_dir: &std::path::Path, serve_args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .args(serve_args)
        .env_remove("DATABASE_URL")
        .env_remove("ROSTER_INSECURE_PLAINTEXT")
        .env_remove("ROSTER_TLS_CERT")
        .env_remove("ROSTER_TLS_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
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
        settings.tls = Some(TlsSettings::new(
            missing.clone(),
            certificates.path("server.key"),
        ));
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
        settings.tls = Some(TlsSettings::new(
            certificates.path("server.pem"),
            other_key.clone(),
        ));
    })
    .await;

    let error = format!("{:#}", refused.err().expect("refused"));
    assert!(error.contains("--tls-key"), "{error}");
    assert!(error.contains(&other_key.display().to_string()), "{error}");
}

#[test]
fn roster_serve_refuses_plaintext_off_loopback_before_starting_a_cluster() {
    let data_dir = tempfile::tempdir().unwrap();
    let stderr = serve_refused(data_dir.path(), &["--listen", "0.0.0.0:0"]);

    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--insecure-plaintext"), "{stderr}");
    assert!(
        std::fs::read_dir(data_dir.path()).unwrap().next().is_none(),
        "nothing was started in the data directory"
    );
}

// The server runs as a process; calls go on while the test swaps files and signals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_certificate_swapped_on_disk_to_the_next_connection_without_failing_a_call()
{
    use crate::cli::{free_port, roster, run_ok, serve};
    use nix::sys::signal::{kill, Signal};

    let Some(url) = crate::helpers::fresh_database_url().await else {
        eprintln!("skipped: the test database server is the one DATABASE_URL names");
        return;
    };
    let certificates = TestCertificates::new();
    let first = CertificateDer::from_pem_file(certificates.path("server.pem")).unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let with_url = || {
        let mut command = roster(data_dir.path());
        command.env("DATABASE_URL", &url);
        command
    };
    let port = free_port();
    let mut command = with_url();
    command
        .env("ROSTER_TLS_CERT", certificates.path("server.pem"))
        .env("ROSTER_TLS_KEY", certificates.path("server.key"))
        .env("ROSTER_HTTP_LISTEN", "127.0.0.1:0")
        .env("ROSTER_NO_DELIVERY", "true");
    let served = serve(command, port);
    let pid = nix::unistd::Pid::from_raw(served.child.id() as i32);
    run_ok(with_url().args(["org", "create", "acme"]));
    let key = run_ok(with_url().args([
        "api-key", "create", "--org", "acme", "--name", "ops", "--scope", "admin",
    ]));
    assert_eq!(certificates.served_certificate(port).await, first);

    // One connection, opened before the swap, calling all along.
    let mut client = AuthServiceClient::with_interceptor(
        certificates.channel(port, None).await.unwrap(),
        Bearer::token(key.trim()),
    );
    let (stop_calling, mut calling) = tokio::sync::watch::channel(true);
    let calls = tokio::spawn(async move {
        let mut calls = 0_u32;
        while *calling.borrow_and_update() {
            client.who_am_i(proto::WhoAmIRequest {}).await?;
            calls += 1;
        }
        Ok::<_, tonic::Status>(calls)
    });

    let second = certificates.write_server_certificate();
    assert_ne!(first, second);
    kill(pid, Signal::SIGHUP).unwrap();
    crate::helpers::eventually(
        "a new connection is served the new certificate",
        Duration::from_secs(15),
        || async { (certificates.served_certificate(port).await == second).then_some(()) },
    )
    .await;
    // The log line may still be on its way through the pipe.
    crate::helpers::eventually("the reload is logged", Duration::from_secs(5), || async {
        served.logged(&["INFO", "reloaded the TLS certificate"])
    })
    .await;

    // A file broken on disk: the reload fails and the server keeps the certificate it has.
    certificates.replace("server.pem", "not a certificate");
    kill(pid, Signal::SIGHUP).unwrap();
    let cert = certificates.path("server.pem").display().to_string();
    crate::helpers::eventually(
        "an error naming the flag and the file is logged",
        Duration::from_secs(15),
        || async { served.logged(&["ERROR", "cannot reload", "--tls-cert", &cert]) },
    )
    .await;
    assert_eq!(certificates.served_certificate(port).await, second);

    stop_calling.send(false).unwrap();
    let calls = calls
        .await
        .unwrap()
        .expect("no call failed on the connection opened before the swap");
    assert!(calls > 0, "the connection made calls");
    served.stop(Signal::SIGTERM);
}

#[tokio::test]
async fn roster_export_reaches_a_mutual_tls_server_with_the_ca_and_a_client_certificate() {
    let certificates = TestCertificates::new();
    let app = TestApp::spawn_with(|settings| {
        settings.tls = Some(certificates.mutual_settings());
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    // Prometheus scrapes over TLS without a client certificate.
    let metrics = app.metrics_url().expect("metrics served");
    assert!(metrics.starts_with("https://"), "{metrics}");
    let base = metrics.trim_end_matches("/metrics");
    let scraped = get_without_client_certificate(&certificates, base, "/metrics").await;
    assert_eq!(scraped, 200);
    let (client_cert, client_key) = certificates
        .client_ca
        .issue(&["operator"], ExtendedKeyUsagePurpose::ClientAuth);
    certificates.replace("ca.pem", &certificates.ca_pem);
    certificates.replace("client.pem", &client_cert);
    certificates.replace("client.key", &client_key);
    // The server runs on this test's runtime: the CLI is awaited, not waited for.
    let export = async |identity: &[&str]| {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
            .args([
                "export",
                "--server",
                &app.address,
                "--api-key",
                &app.admin_key,
            ])
            .arg("--ca-cert")
            .arg(certificates.path("ca.pem"))
            .args(identity)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr,
        )
    };
    let (client_pem, client_key) = (
        certificates.path("client.pem"),
        certificates.path("client.key"),
    );
    let identity = [
        "--client-cert",
        client_pem.to_str().unwrap(),
        "--client-key",
        client_key.to_str().unwrap(),
    ];

    let (served, csv, stderr) = export(&identity).await;
    assert!(served, "{stderr}");
    assert!(csv.contains("first_name"), "{csv}");
    let (served, _, stderr) = export(&[]).await;
    assert!(!served, "served without a client certificate");
    assert!(
        stderr.contains("cannot reach") || stderr.contains("error"),
        "{stderr}"
    );
}
