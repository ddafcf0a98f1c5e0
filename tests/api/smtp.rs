//! Real SMTP servers for the delivery and browser tests: aiosmtpd, started
//! as a child process. Only built with the `external-tools` feature, so a
//! contributor without Python's aiosmtpd still builds and runs the rest.

use std::time::Duration;

use roster::{delivery::mailer::MailTransport, startup::ServerSettings};

use crate::helpers::{eventually, Email};

/// A real SMTP server for tests: aiosmtpd, saving each message it accepts
/// into a maildir, so that messages are counted where they arrive.
pub struct SmtpSink {
    pub port: u16,
    maildir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl SmtpSink {
    /// A port nothing listens on yet (an SMTP server that is down).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port()
    }

    pub async fn start() -> Self {
        Self::start_on(Self::free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let maildir = tempfile::tempdir().expect("maildir");
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (`python3 -m pip install aiosmtpd`, done by .ci/run)");
        let mut sink = Self {
            port,
            maildir,
            child: Some(child),
        };
        eventually(
            &format!("aiosmtpd listens on port {port}"),
            Duration::from_secs(10),
            || {
                if let Some(Ok(Some(status))) = sink.child.as_mut().map(|c| c.try_wait()) {
                    panic!("aiosmtpd exited ({status}); is it installed? `python3 -m pip install aiosmtpd`");
                }
                async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()
                        .map(drop)
                }
            },
        )
        .await;
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message the server accepted.
    pub fn messages(&self) -> Vec<Email> {
        ["new", "cur"]
            .iter()
            .flat_map(|folder| {
                std::fs::read_dir(self.maildir.path().join("mail").join(folder))
                    .map(|entries| entries.filter_map(Result::ok).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .map(|entry| Email::parse(&std::fs::read(entry.path()).expect("read message")))
            .collect()
    }

    /// Waits (up to `seconds`) until the server holds `count` messages.
    pub async fn wait_for_count(&self, count: usize, seconds: u64) -> Vec<Email> {
        eventually(
            &format!("the SMTP server holds {count} messages"),
            Duration::from_secs(seconds),
            || async {
                let messages = self.messages();
                (messages.len() >= count).then_some(messages)
            },
        )
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Server settings whose delivery worker sends to this SMTP URL.
pub fn deliver_to(settings: &mut ServerSettings, url: &str) {
    let delivery = settings.delivery.as_mut().expect("delivery settings");
    delivery.transport = MailTransport::Smtp {
        url: url.to_owned(),
    };
    delivery.retry_max = Duration::from_millis(500);
    delivery.max_attempts = 1_000;
}

/// An aiosmtpd server. `Handler` refuses `refused*` recipients for good
/// (550), `busy*` ones for now (450) and `denied*` ones as a relay it will
/// not serve (554 5.7.1), and accepts the rest; `Misconfigured` wants
/// credentials the sender does not give (530 to MAIL FROM).
pub struct RefusingSmtp {
    pub port: u16,
    child: std::process::Child,
    _handler: tempfile::TempDir,
}

impl RefusingSmtp {
    const HANDLER: &'static str = r#"
class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused"):
            return "550 5.1.1 no such mailbox here"
        if address.startswith("busy"):
            return "450 4.2.1 mailbox busy, try again later"
        if address.startswith("denied"):
            return "554 5.7.1 relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

class Misconfigured:
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        return "530 5.7.0 authentication required"
"#;

    pub async fn start() -> Self {
        Self::start_with("Handler").await
    }

    pub async fn start_with(handler_class: &str) -> Self {
        let handler = tempfile::tempdir().unwrap();
        std::fs::write(handler.path().join("refusing.py"), Self::HANDLER).unwrap();
        let port = SmtpSink::free_port();
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", &format!("refusing.{handler_class}")])
            .env("PYTHONPATH", handler.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            port,
            child,
            _handler: handler,
        }
    }
}

impl Drop for RefusingSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
