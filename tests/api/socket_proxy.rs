//! A TCP port on loopback that forwards to the test cluster's socket: a
//! second "host" of the same database, which can stop taking connections
//! and counts what clients send.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `refuse` stops new connections (those open stay, as to a primary cut off
/// or demoted); `open` counts the connections still forwarded; `syncs`
/// counts the Sync messages clients sent (one per statement of the extended
/// protocol, and one per ping).
pub struct SocketProxy {
    pub port: u16,
    refusing: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    syncs: Arc<AtomicUsize>,
}

impl SocketProxy {
    pub async fn start(socket: PathBuf) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            refusing: Default::default(),
            open: Default::default(),
            syncs: Default::default(),
        };
        let (refusing, open, syncs) = (
            proxy.refusing.clone(),
            proxy.open.clone(),
            proxy.syncs.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let (open, syncs, socket) = (open.clone(), syncs.clone(), socket.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::UnixStream::connect(&socket).await else {
                        return;
                    };
                    open.fetch_add(1, Ordering::SeqCst);
                    let (mut client_reads, mut client_writes) = client.into_split();
                    let (mut server_reads, mut server_writes) = server.into_split();
                    let upstream = async {
                        let mut messages = MessageCounter::new(syncs);
                        let mut buffer = vec![0; 16 * 1024];
                        loop {
                            match client_reads.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(read) => {
                                    messages.saw(&buffer[..read]);
                                    if server_writes.write_all(&buffer[..read]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = server_writes.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut server_reads, &mut client_writes).await;
                        let _ = client_writes.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        proxy
    }

    pub fn refuse(&self) {
        self.refusing.store(true, Ordering::SeqCst);
    }

    /// The connections forwarded, once it is `want` or after 5 s.
    pub async fn open(&self, want: usize) -> usize {
        let open = || self.open.load(Ordering::SeqCst);
        for _ in 0..50 {
            if open() == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        open()
    }

    /// Sync messages sent through the proxy so far.
    pub fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }
}

/// Follows PostgreSQL's frontend messages in a byte stream: untagged
/// requests (SSL, GSS, start-up) until the start-up message, then a type
/// byte and a length each.
struct MessageCounter {
    syncs: Arc<AtomicUsize>,
    started: bool,
    pending: Vec<u8>,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;

impl MessageCounter {
    fn new(syncs: Arc<AtomicUsize>) -> Self {
        Self {
            syncs,
            started: false,
            pending: Vec::new(),
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            let header = if self.started { 5 } else { 8 };
            if self.pending.len() < header {
                return;
            }
            let int = |at: usize| u32::from_be_bytes(self.pending[at..at + 4].try_into().unwrap());
            let whole = if self.started {
                1 + int(1) as usize
            } else {
                int(0) as usize
            };
            if self.pending.len() < whole {
                return;
            }
            if self.started {
                if self.pending[0] == b'S' {
                    self.syncs.fetch_add(1, Ordering::SeqCst);
                }
            } else if !matches!(int(4), SSL_REQUEST | GSS_REQUEST) {
                self.started = true;
            }
            self.pending.drain(..whole);
        }
    }
}
