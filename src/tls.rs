//! TLS for both listeners: one certificate, and for gRPC optionally a client
//! CA (mutual TLS). Each listener reads its rustls configuration from a
//! swappable slot at every handshake, so a reload (SIGHUP) reaches the next
//! connection while connections already open keep theirs. The listener
//! handshakes each connection on its own task, so a slow or silent client
//! never holds up the others.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use futures::Stream;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{danger::ClientCertVerifier, ResolvesServerCert, WebPkiClientVerifier},
    sign::{CertifiedKey, SingleCertAndKey},
    RootCertStore, ServerConfig,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

/// Where the server's certificate, key and client CA are (PEM files).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `--tls-cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `--tls-key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `--tls-client-ca`: gRPC clients must present a certificate chaining
    /// to one of these CAs. The password pages never ask for one: the people
    /// who open an invitation link have no client certificate in their browser.
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Server authentication only (no client CA).
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self {
            cert,
            key,
            client_ca: None,
        }
    }
}

/// A listener's current rustls configuration, read at every handshake.
type ConfigSlot = Arc<ArcSwap<ServerConfig>>;

/// The TLS side of a server: the files, and the configuration of each listener.
#[derive(Debug, Clone)]
pub struct ServerTls {
    settings: TlsSettings,
    grpc: ConfigSlot,
    pages: ConfigSlot,
}

impl ServerTls {
    /// Reads the certificate, key and client CA; a file that is missing,
    /// unreadable or does not hold what its flag promises is an error naming
    /// the flag and the file.
    pub fn load(settings: &TlsSettings) -> Result<Self> {
        let (grpc, pages) = server_configs(settings)?;
        Ok(Self {
            settings: settings.clone(),
            grpc: Arc::new(ArcSwap::from_pointee(grpc)),
            pages: Arc::new(ArcSwap::from_pointee(pages)),
        })
    }

    /// Reads the files again; the next handshake on either listener uses
    /// them, connections already open keep theirs. On an error nothing
    /// changes: the server goes on with what it had.
    pub fn reload(&self) -> Result<()> {
        let (grpc, pages) = server_configs(&self.settings)?;
        self.grpc.store(Arc::new(grpc));
        self.pages.store(Arc::new(pages));
        Ok(())
    }

    /// [`Self::reload`], logged: info when it worked, an error naming the
    /// file when it did not (the old material is still served).
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.settings.cert.display(),
                client_ca = self.settings.client_ca.as_ref().map(|ca| ca.display().to_string()),
                "reloaded the TLS certificate; new connections get it"
            ),
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "cannot reload the TLS certificate; still serving the previous one"
            ),
        }
    }

    /// Serves gRPC over TLS on `listener` (asking for a client certificate
    /// when there is a client CA).
    pub fn grpc_listener(&self, listener: TcpListener) -> io::Result<TlsListener> {
        TlsListener::new(listener, self.grpc.clone())
    }

    /// Serves the HTTP listeners (password pages, metrics) over TLS on
    /// `listener`, never asking for a client certificate: browsers and
    /// Prometheus scrapers have none.
    pub fn http_listener(&self, listener: TcpListener) -> io::Result<TlsListener> {
        TlsListener::new(listener, self.pages.clone())
    }
}

/// The gRPC listener's configuration and the password pages'; they differ
/// only in whether they verify client certificates.
fn server_configs(settings: &TlsSettings) -> Result<(ServerConfig, ServerConfig)> {
    let provider = crypto_provider();
    let certificate: Arc<dyn ResolvesServerCert> =
        Arc::new(SingleCertAndKey::from(certified_key(settings, &provider)?));
    let grpc_clients = match &settings.client_ca {
        Some(client_ca) => client_verifier(client_ca, provider.clone())?,
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let grpc = server_config(provider.clone(), grpc_clients, certificate.clone())?;
    let pages = server_config(
        provider,
        WebPkiClientVerifier::no_client_auth(),
        certificate,
    )?;
    Ok((grpc, pages))
}

fn server_config(
    provider: Arc<CryptoProvider>,
    clients: Arc<dyn ClientCertVerifier>,
    certificate: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig> {
    // The provider is chosen here, not process-wide: lettre's TLS stack
    // and any other rustls user in the process cannot change it.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3 with the ring provider")?
        .with_client_cert_verifier(clients)
        .with_cert_resolver(certificate);
    // gRPC needs h2; the pages speak both (axum serves HTTP/1.1 and h2).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// ring: it builds with a C compiler alone (aws-lc-rs wants cmake), and
/// tonic's `tls-ring` feature uses the same.
fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(settings: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let cert = settings.cert.display();
    let chain = read_certificates(&settings.cert, "--tls-cert")?;
    let key = settings.key.display();
    let private_key = PrivateKeyDer::from_pem_file(&settings.key)
        .with_context(|| format!("cannot read a PEM private key from --tls-key {key}"))?;
    CertifiedKey::from_der(chain, private_key, provider).with_context(|| {
        format!("--tls-key {key} is not the key of the certificate --tls-cert {cert}")
    })
}

/// Verifies that a client's certificate chains to one of the CAs in `path`.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, "--tls-client-ca")? {
        roots.add(certificate).with_context(|| {
            format!("--tls-client-ca {shown} holds a certificate that is not a usable CA")
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("cannot verify client certificates with --tls-client-ca {shown}"))
}

/// The PEM certificates in the file `flag` names: at least one.
fn read_certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificates of {flag} {shown}"))?;
    if certificates.is_empty() {
        bail!("{flag} {shown} holds no PEM certificate (BEGIN CERTIFICATE)");
    }
    Ok(certificates)
}

/// A client that opens a connection and sends nothing is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const HANDSHAKEN_QUEUE: usize = 64;

/// TLS connections on a TCP listener, handshaken apart. The accepting task
/// ends when this is dropped (the server stopped accepting).
pub struct TlsListener {
    local_addr: SocketAddr,
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: ConfigSlot) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (handshaken, connections) = mpsc::channel(HANDSHAKEN_QUEUE);
        tokio::spawn(accept(listener, config, handshaken));
        Ok(Self {
            local_addr,
            connections,
        })
    }

    /// The connections as tonic's `serve_with_incoming` takes them.
    pub fn into_incoming(self) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
        ReceiverStream::new(self.connections).map(|(connection, _)| Ok(connection))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // Only when the accepting task is gone, i.e. never while serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept(
    listener: TcpListener,
    config: ConfigSlot,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            () = handshaken.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small unary answers must not wait out Nagle's algorithm against delayed ACKs.
        let _ = stream.set_nodelay(true);
        // The configuration as it is now: a reload reaches the next connection.
        let acceptor = TlsAcceptor::from(config.load_full());
        let handshaken = handshaken.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(connection)) => {
                    let _ = handshaken.send((connection, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(peer = %peer, error = %error, "tls handshake failed")
                }
                Err(_) => tracing::debug!(peer = %peer, "tls handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write_certificate(settings: &TlsSettings, name: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&settings.cert, certificate.pem()).unwrap();
        std::fs::write(&settings.key, key.serialize_pem()).unwrap();
    }

    #[test]
    fn a_reload_serves_the_new_files_and_a_failed_one_keeps_the_old() {
        let directory = tempfile::tempdir().unwrap();
        let settings = TlsSettings::new(
            directory.path().join("server.pem"),
            directory.path().join("server.key"),
        );
        write_certificate(&settings, "first");
        let tls = ServerTls::load(&settings).unwrap();
        let (first, first_pages) = (tls.grpc.load_full(), tls.pages.load_full());

        write_certificate(&settings, "second");
        tls.reload().unwrap();
        let second = tls.grpc.load_full();
        assert!(!Arc::ptr_eq(&first, &second), "a new gRPC configuration");
        assert!(
            !Arc::ptr_eq(&first_pages, &tls.pages.load_full()),
            "new pages configuration"
        );

        std::fs::write(&settings.cert, "not a certificate").unwrap();
        let error = format!("{:#}", tls.reload().unwrap_err());
        assert!(error.contains("--tls-cert"), "{error}");
        assert!(
            error.contains(&settings.cert.display().to_string()),
            "{error}"
        );
        assert!(
            Arc::ptr_eq(&tls.grpc.load_full(), &second),
            "the old one stays"
        );
    }
}
