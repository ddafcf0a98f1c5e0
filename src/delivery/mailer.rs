//! Where messages go: an SMTP server (lettre; plain, STARTTLS or TLS and
//! credentials from the URL), or `.eml` files in a directory when no SMTP
//! server is configured.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use chrono::Utc;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::mail_folder;

#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host:465` (TLS).
    Smtp { url: String },
    /// One `<time>-<recipient>-<kind>.eml` file per message (development: it
    /// holds the links; `roster mail` reads it).
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
/// recipient for good (see `refuses_the_recipient`), or the address cannot be
/// written as an SMTP recipient at all. Any other failure is retried.
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

    /// Hands the message over; in directory mode its file is named after
    /// `recipient` and `kind` (see `mail_folder`).
    pub async fn send(&self, message: Message, recipient: &str, kind: &str) -> Result<()> {
        match self {
            Mailer::Smtp(transport) => {
                transport.send(message).await.map_err(|error| {
                    if refuses_the_recipient(&error) {
                        anyhow::Error::new(PermanentFailure(error.to_string()))
                    } else {
                        anyhow::Error::new(error)
                    }
                })?;
            }
            Mailer::Directory(directory) => {
                mail_folder::write(directory, Utc::now(), recipient, kind, &message.formatted())
                    .await?;
            }
        }
        Ok(())
    }
}

/// Whether an SMTP error refuses the recipient for good. A 5xx reply is not
/// enough: a wrong credential (530, 535), a relay or policy refusal (5.7.x)
/// or a server problem also answers 5xx, and would fail every queued
/// message at its first attempt; those are retried until an operator fixes
/// them. lettre does not say which command was refused, so the reply code
/// and its enhanced status code (RFC 3463) decide.
fn refuses_the_recipient(error: &lettre::transport::smtp::Error) -> bool {
    let Some(code) = error.status() else {
        return false;
    };
    let text = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    is_recipient_rejection(u16::from(code), &text)
}

/// The decision of `refuses_the_recipient` on a reply code and its text.
fn is_recipient_rejection(code: u16, text: &str) -> bool {
    if code < 500 {
        return false;
    }
    match enhanced_status(text) {
        // X.1.x is the address; 5.1.7 and 5.1.8 are the sender's, a configuration mistake.
        Some((5, 1, detail)) => !matches!(detail, 7 | 8),
        // The mailbox is disabled; a full one (5.2.2) may be emptied.
        Some((5, 2, 1)) => true,
        // An enhanced code that is only "other" says nothing: the reply code decides.
        Some((_, 0, 0)) | None => matches!(
            code,
            // Mailbox unavailable, user not local, mailbox name not allowed,
            // the recipient's domain accepts no mail (RFC 7504).
            550 | 551 | 553 | 556
        ),
        Some(_) => false,
    }
}

/// The enhanced status code (`5.1.1`) opening a reply's text, if any.
fn enhanced_status(text: &str) -> Option<(u8, u16, u16)> {
    let mut parts = text.split_whitespace().next()?.splitn(3, '.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    Some((class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::is_recipient_rejection;

    #[test]
    fn only_a_refused_recipient_fails_for_good() {
        for (code, text) in [
            (550, "5.1.1 no such mailbox here"),
            (550, "no such user"),
            (550, "5.0.0 <ana@acme.test>: user unknown"),
            (551, "user not local"),
            (553, "5.1.3 mailbox name not allowed"),
            (501, "5.1.3 bad recipient address syntax"),
            (550, "5.2.1 mailbox disabled"),
            (556, "5.1.10 domain does not accept mail"),
        ] {
            assert!(is_recipient_rejection(code, text), "{code} {text}");
        }
    }

    #[test]
    fn credentials_relay_policy_and_server_problems_are_retried() {
        for (code, text) in [
            (530, "5.7.0 authentication required"),
            (535, "5.7.8 authentication credentials invalid"),
            (535, "authentication failed"),
            (550, "5.7.1 relaying denied"),
            (554, "5.7.1 <ana@acme.test>: relay access denied"),
            (554, "no SMTP service here"),
            (553, "5.1.8 sender address rejected"),
            (550, "5.1.7 bad sender address"),
            (552, "5.2.2 mailbox full"),
            (552, "message size exceeds the limit"),
            (501, "syntax error in parameters"),
            (521, "server does not accept mail"),
            (500, "command not recognized"),
            (503, "bad sequence of commands"),
        ] {
            assert!(!is_recipient_rejection(code, text), "{code} {text}");
        }
    }
}
