//! TLS for both listeners: one rustls server configuration whose certificate
//! comes from a swappable resolver (so a reload reaches the next handshake of
//! either listener), and a listener that handshakes each connection on its own
//! task, so a slow or silent client never holds up the others.

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use futures::Stream;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

/// Where the server's certificate and key are (PEM files).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `--tls-cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `--tls-key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The TLS side of a server: the configuration both listeners share.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    certificate: Arc<CurrentCertificate>,
}

impl ServerTls {
    /// Reads the certificate and key; a file that is missing, unreadable or
    /// does not hold what its flag promises is an error naming both.
    pub fn load(settings: &TlsSettings) -> Result<Self> {
        let provider = crypto_provider();
        let certificate = Arc::new(CurrentCertificate(ArcSwap::from_pointee(certified_key(
            settings, &provider,
        )?)));
        // The provider is chosen here, not process-wide: lettre's TLS stack
        // and any other rustls user in the process cannot change it.
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS 1.2 and 1.3 with the ring provider")?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        // gRPC needs h2; the pages speak both (axum serves HTTP/1.1 and h2).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            certificate,
        })
    }

    /// Reads the certificate and key again; the next handshake on either
    /// listener uses them, connections already open keep theirs.
    pub fn reload(&self, settings: &TlsSettings) -> Result<()> {
        let key = certified_key(settings, self.config.crypto_provider())?;
        self.certificate.0.store(Arc::new(key));
        Ok(())
    }

    /// Serves TLS on `listener`.
    pub fn listener(&self, listener: TcpListener) -> io::Result<TlsListener> {
        TlsListener::new(listener, TlsAcceptor::from(self.config.clone()))
    }
}

/// ring: it builds with a C compiler alone (aws-lc-rs wants cmake), and
/// tonic's `tls-ring` feature uses the same.
fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(settings: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let cert = settings.cert.display();
    let chain = CertificateDer::pem_file_iter(&settings.cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate --tls-cert {cert}"))?;
    if chain.is_empty() {
        bail!("--tls-cert {cert} holds no PEM certificate (BEGIN CERTIFICATE)");
    }
    let key = settings.key.display();
    let private_key = PrivateKeyDer::from_pem_file(&settings.key)
        .with_context(|| format!("cannot read a PEM private key from --tls-key {key}"))?;
    CertifiedKey::from_der(chain, private_key, provider).with_context(|| {
        format!("--tls-key {key} is not the key of the certificate --tls-cert {cert}")
    })
}

/// The certificate every handshake gets, whatever name the client asks for.
#[derive(Debug)]
struct CurrentCertificate(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
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
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (handshaken, connections) = mpsc::channel(HANDSHAKEN_QUEUE);
        tokio::spawn(accept(listener, acceptor, handshaken));
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
    acceptor: TlsAcceptor,
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
        let acceptor = acceptor.clone();
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

    fn write_certificate(directory: &std::path::Path, name: &str) -> TlsSettings {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let settings = TlsSettings {
            cert: directory.join(format!("{name}.pem")),
            key: directory.join(format!("{name}.key")),
        };
        std::fs::write(&settings.cert, certificate.pem()).unwrap();
        std::fs::write(&settings.key, key.serialize_pem()).unwrap();
        settings
    }

    #[test]
    fn a_reload_serves_the_new_certificate_and_a_failed_one_keeps_the_old() {
        let directory = tempfile::tempdir().unwrap();
        let first = write_certificate(directory.path(), "first");
        let second = write_certificate(directory.path(), "second");
        let tls = ServerTls::load(&first).unwrap();
        let served = || tls.certificate.0.load().cert[0].clone();
        let first_certificate = served();

        tls.reload(&second).unwrap();
        let second_certificate = served();
        assert_ne!(first_certificate, second_certificate);

        let broken = TlsSettings {
            cert: directory.path().join("missing.pem"),
            key: second.key.clone(),
        };
        assert!(tls.reload(&broken).is_err());
        assert_eq!(served(), second_certificate);
    }
}
