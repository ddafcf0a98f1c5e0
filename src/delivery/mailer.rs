//! Where messages go: an SMTP server (lettre; plain, STARTTLS or TLS and
//! credentials from the URL), or `.eml` files in a directory when no SMTP
//! server is configured.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host:465` (TLS).
    Smtp { url: String },
    /// One `<outbox id>.eml` file per message (development: it holds the links).
    Directory(PathBuf),
}

impl MailTransport {
    /// For logs: never the credentials of an SMTP URL.
    pub fn describe(&self) -> String {
        match self {
            MailTransport::Smtp { url } => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("smtp", url));
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
            MailTransport::Directory(path) => path.display().to_string(),
        }
    }
}

/// A delivery failure that no retry can cure: the mail server refused the
/// message or its recipient for good (an SMTP 5xx reply), or the address
/// cannot be written as an SMTP recipient at all.
#[derive(Debug, thiserror::Error)]
#[error("permanent failure: {0}")]
pub struct PermanentFailure(pub String);

impl PermanentFailure {
    /// Whether `error` (or any cause in its chain) is permanent.
    pub fn in_chain(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<PermanentFailure>())
    }
}

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Directory(PathBuf),
}

impl Mailer {
    pub fn new(transport: &MailTransport, timeout: Duration) -> Result<Self> {
        Ok(match transport {
            MailTransport::Smtp { url } => Mailer::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("invalid SMTP URL")?
                    .timeout(Some(timeout))
                    .build(),
            ),
            MailTransport::Directory(path) => Mailer::Directory(path.clone()),
        })
    }

    /// Hands the message over; `name` names its file in directory mode.
    pub async fn send(&self, message: Message, name: &str) -> Result<()> {
        match self {
            Mailer::Smtp(transport) => {
                transport.send(message).await.map_err(|error| {
                    if error.is_permanent() {
                        anyhow::Error::new(PermanentFailure(error.to_string()))
                    } else {
                        anyhow::Error::new(error)
                    }
                })?;
            }
            Mailer::Directory(directory) => {
                tokio::fs::create_dir_all(directory).await?;
                // Written aside, then renamed: a reader never sees half a message.
                let partial = directory.join(format!(".{name}.eml.partial"));
                tokio::fs::write(&partial, message.formatted()).await?;
                tokio::fs::rename(&partial, directory.join(format!("{name}.eml"))).await?;
            }
        }
        Ok(())
    }
}
