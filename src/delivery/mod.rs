//! The delivery worker: sends what the outbox says (spec §5). It claims due
//! messages with `FOR UPDATE SKIP LOCKED` and a lease, creates the link's
//! token only when it sends (storing its hash, revoking the previous one),
//! renders the templates and hands the message to SMTP or a directory.
//! The token, the outbox row's SENT and the user's invitation expiry commit
//! together after the SMTP server accepted the message; a failure rolls
//! them back and the message is retried with backoff, keeping its
//! Message-ID. Logs name the message, its kind and the recipient's
//! domain, never the address or a link.

pub mod mail_folder;
pub mod mailer;
pub mod templates;

use std::{sync::Arc, time::Duration};

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use lettre::{
    message::{Mailbox, MultiPart},
    Message,
};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use self::{
    mailer::{MailTransport, Mailer},
    templates::{format_time, Rendered, Template, Templates},
};
use crate::{
    database_watch::DatabaseWatch,
    domain::{
        organization::Organization,
        token::{LinkPurpose, Secret, TokenKind},
        user::User,
    },
    store::{self, outbox::ClaimedMessage, Pool},
    telemetry::traces,
};

/// How many failed rows an import report lists.
const REPORT_FAILED_ROWS: i64 = 20;

/// Password reset requests resolved per round; a flood waits its turn.
const RESET_REQUESTS_PER_ROUND: i64 = 1000;

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub transport: MailTransport,
    /// The From header, e.g. `Roster <no-reply@example.com>`.
    pub from: String,
    /// Where the password pages are reached; links are built from it only.
    /// `None`: the pages' own address as bound (`Application::build` fills it).
    pub public_url: Option<String>,
    pub poll_every: Duration,
    /// How long a claim lasts; a worker that dies frees its messages after it.
    pub lease: Duration,
    pub batch: i64,
    /// Backoff after the first failed attempt, doubled each time, at most `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a message is FAILED for good.
    pub max_attempts: i32,
    pub send_timeout: Duration,
}

impl DeliverySettings {
    pub fn new(transport: MailTransport, public_url: Option<&str>) -> Self {
        Self {
            transport,
            from: "Roster <no-reply@localhost>".into(),
            public_url: public_url.map(|url| url.trim_end_matches('/').to_owned()),
            poll_every: Duration::from_secs(1),
            lease: Duration::from_secs(120),
            batch: 20,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 10,
            send_timeout: Duration::from_secs(30),
        }
    }

    /// Where links lead: the public URL (a server without pages and without
    /// one has links that lead nowhere useful).
    pub fn public_url(&self) -> &str {
        self.public_url.as_deref().unwrap_or("http://localhost")
    }

    /// The host of the public URL, for Message-IDs.
    fn domain(&self) -> &str {
        let public_url = self.public_url();
        let rest = public_url
            .split_once("://")
            .map_or(public_url, |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    }

    fn retry_after(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
        self.retry_base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.retry_max)
    }
}

pub struct DeliveryWorker {
    pool: Pool,
    settings: Arc<DeliverySettings>,
    mailer: Mailer,
    templates: Templates,
    /// This process's claims.
    owner: Uuid,
}

/// How one message ended in one attempt.
enum Delivered {
    /// To an address at this domain (logs are shared: never the address).
    Sent { recipient_domain: String },
    /// Nothing to send any more; the note says why.
    Skipped(&'static str),
}

impl DeliveryWorker {
    pub fn new(pool: Pool, settings: DeliverySettings) -> Result<Self> {
        Ok(Self {
            mailer: Mailer::new(&settings.transport, settings.send_timeout)?,
            templates: Templates::new().context("email templates")?,
            settings: Arc::new(settings),
            pool,
            owner: Uuid::now_v7(),
        })
    }

    /// Delivers until `stopping` turns true (the message in progress ends
    /// first). While `database` does not answer, rounds wait for it (one
    /// under way is dropped, its claims released by the next) instead of
    /// each waiting out the pool's acquire timeout.
    pub async fn run(self, database: DatabaseWatch, mut stopping: watch::Receiver<bool>) {
        match &self.settings.transport {
            MailTransport::Directory(path) => tracing::info!(
                directory = %path.display(),
                "no SMTP server configured: emails are written as .eml files"
            ),
            transport @ MailTransport::Smtp { .. } => {
                tracing::info!(smtp = %transport.describe(), "emails go to the SMTP server")
            }
        }
        // A round that failed may leave messages claimed and not delivered.
        let mut leases_held = false;
        loop {
            tokio::select! {
                () = database.answering() => {}
                _ = stopping.changed() => return,
            }
            let round = async {
                if leases_held {
                    let released = store::outbox::release_leases(&self.pool, self.owner).await?;
                    tracing::debug!(released, "released the leases of a failed round");
                }
                self.run_once().await
            };
            let busy = match database.while_answering(round).await {
                Some(Ok(handled)) => {
                    leases_held = false;
                    handled as i64 >= self.settings.batch
                }
                Some(Err(error)) => {
                    leases_held = true;
                    tracing::warn!(error = format!("{error:#}"), "email delivery round failed");
                    false
                }
                // A message being sent may go again: as when the commit after
                // the send fails, with the same Message-ID.
                None => {
                    leases_held = true;
                    tracing::info!("the database stopped answering: email delivery waits for it");
                    false
                }
            };
            if *stopping.borrow() {
                return;
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_every) => {}
                    _ = stopping.changed() => return,
                }
            }
        }
    }

    /// One round: queues the reports of ended imports and the reset emails
    /// of password reset requests, then claims and delivers a batch.
    /// Returns how many messages were handled. A batch is traced, in a trace
    /// of its own; the polls that find nothing are not (a trace per poll).
    pub async fn run_once(&self) -> Result<usize> {
        store::outbox::enqueue_import_reports(&self.pool).await?;
        store::password_reset_requests::resolve(&self.pool, RESET_REQUESTS_PER_ROUND).await?;
        let claimed = store::outbox::claim(
            &self.pool,
            self.owner,
            self.settings.lease.as_secs_f64(),
            self.settings.batch,
        )
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let batch = tracing::info_span!("delivery batch", messages = claimed.len());
        traces::start_background_span(&batch);
        self.deliver_batch(&claimed).instrument(batch).await?;
        Ok(claimed.len())
    }

    async fn deliver_batch(&self, claimed: &[ClaimedMessage]) -> Result<()> {
        for message in claimed {
            let kind = template_of(&message.kind).map_or("unknown", Template::kind);
            match self.deliver(message).await {
                Ok(Delivered::Sent { recipient_domain }) => tracing::info!(
                    message_id = %message.id,
                    kind,
                    recipient_domain,
                    attempt = message.attempts,
                    "email sent"
                ),
                Ok(Delivered::Skipped(why)) => tracing::info!(
                    message_id = %message.id,
                    kind,
                    reason = why,
                    "email skipped"
                ),
                // No message's fault: the round ends, the next releases the rest.
                Err(error) if store::error::is_unavailable_cause(&error) => return Err(error),
                Err(error) => self.attempt_failed(message, &error).await,
            }
        }
        Ok(())
    }

    async fn attempt_failed(&self, message: &ClaimedMessage, error: &anyhow::Error) {
        let retry = message.attempts < self.settings.max_attempts
            && !mailer::PermanentFailure::in_chain(error);
        let retry_at = retry.then(|| {
            Utc::now()
                + chrono::Duration::from_std(self.settings.retry_after(message.attempts))
                    .unwrap_or_default()
        });
        let error_text = format!("{error:#}");
        tracing::warn!(
            message_id = %message.id,
            kind = template_of(&message.kind).map_or("unknown", Template::kind),
            attempt = message.attempts,
            retry_at = ?retry_at,
            error = %error_text,
            "email not sent"
        );
        if let Err(store_error) =
            store::outbox::attempt_failed(&self.pool, message, self.owner, &error_text, retry_at)
                .await
        {
            // The lease runs out and the message is claimed again.
            tracing::warn!(error = %store_error, message_id = %message.id, "cannot record the failed attempt");
        }
    }

    async fn deliver(&self, message: &ClaimedMessage) -> Result<Delivered> {
        let template =
            template_of(&message.kind).ok_or_else(|| anyhow!("unknown kind {}", message.kind))?;
        let mut tx = self.pool.begin().await?;
        let Some(user) =
            store::users::lock(&mut tx, message.organization_id, message.user_id).await?
        else {
            return self.skip(tx, message, "the user no longer exists").await;
        };
        let organization = store::organizations::find(&mut *tx, message.organization_id)
            .await?
            .ok_or_else(|| anyhow!("organization {} not found", message.organization_id))?;
        let locale = organization.settings.locale;
        // `organization` names it for people; `company` is what they type at sign-in.
        let mut context = json!({
            "first_name": user.first_name,
            "organization": organization.display_name(),
            "company": organization.name,
            "username": user.username,
        });
        match template {
            Template::Invitation | Template::PasswordReset => {
                let invitation = template == Template::Invitation;
                if invitation && user.onboarded {
                    return self
                        .skip(tx, message, "the user already registered a password")
                        .await;
                }
                if !invitation && !user.onboarded {
                    return self
                        .skip(tx, message, "the user has no password to reset")
                        .await;
                }
                let (link, expire_time) = self
                    .new_link(&mut tx, &organization, user.id, invitation)
                    .await?;
                context["link"] = json!(link);
                context["expire_time"] = json!(format_time(expire_time, locale));
            }
            Template::ImportReport => {
                let job_id = message
                    .import_job_id
                    .ok_or_else(|| anyhow!("an import report without its job"))?;
                self.add_report(&mut context, message.organization_id, job_id)
                    .await?;
            }
        }
        let rendered = self.templates.render(template, locale, &context)?;
        let email = self.build(message, &user, rendered)?;
        let recipient_domain = user.email.rsplit('@').next().unwrap_or("").to_owned();
        tracing::debug!(
            message_id = %message.id,
            kind = template.kind(),
            recipient_domain,
            "sending email"
        );
        self.mailer
            .send(email, &user.email, template.kind())
            .await
            .context("the mail server did not take the message")?;
        if !store::outbox::finish(&mut *tx, message, self.owner, "SENT", None).await? {
            // Another worker holds it now; its token stands, ours is dropped.
            tracing::warn!(message_id = %message.id, "lease lost while sending; not recorded");
            return Ok(Delivered::Sent { recipient_domain });
        }
        tx.commit().await?;
        Ok(Delivered::Sent { recipient_domain })
    }

    async fn skip(
        &self,
        mut tx: store::Transaction<'_>,
        message: &ClaimedMessage,
        why: &'static str,
    ) -> Result<Delivered> {
        store::outbox::finish(&mut *tx, message, self.owner, "SKIPPED", Some(why)).await?;
        tx.commit().await?;
        Ok(Delivered::Skipped(why))
    }

    /// A new single-use token (the previous link stops working) and its link.
    async fn new_link(
        &self,
        tx: &mut store::Transaction<'_>,
        organization: &Organization,
        user_id: Uuid,
        invitation: bool,
    ) -> Result<(String, chrono::DateTime<Utc>)> {
        let (kind, purpose, ttl, page) = if invitation {
            (
                TokenKind::Invitation,
                LinkPurpose::Invitation,
                organization.settings.invitation_ttl_seconds,
                "register",
            )
        } else {
            (
                TokenKind::PasswordReset,
                LinkPurpose::PasswordReset,
                organization.settings.password_reset_ttl_seconds,
                "reset",
            )
        };
        let secret = Secret::generate(kind);
        let expire_time = Utc::now() + chrono::Duration::seconds(ttl);
        store::onboarding_tokens::replace(
            tx,
            organization.id,
            user_id,
            purpose,
            &secret.hash(),
            expire_time,
        )
        .await?;
        if invitation {
            store::users::set_invitation_expire_time(tx, organization.id, user_id, expire_time)
                .await?;
        }
        // In the fragment: it never reaches a server log or a Referer header.
        let link = format!(
            "{}/{page}#token={}",
            self.settings.public_url(),
            secret.expose()
        );
        Ok((link, expire_time))
    }

    async fn add_report(
        &self,
        context: &mut serde_json::Value,
        organization_id: Uuid,
        job_id: Uuid,
    ) -> Result<()> {
        let job =
            store::imports::find_job(&mut *self.pool.acquire().await?, organization_id, job_id)
                .await?
                .ok_or_else(|| anyhow!("import job {job_id} not found"))?;
        let failed =
            store::imports::rows_after(&self.pool, job_id, 0, true, REPORT_FAILED_ROWS).await?;
        let failed_rows: Vec<_> = failed
            .iter()
            .map(|row| {
                let errors: Vec<String> = row.errors.iter().map(ToString::to_string).collect();
                json!({"line": row.line, "email": row.email, "errors": errors.join("; ")})
            })
            .collect();
        context["job_id"] = json!(job.id);
        context["file_name"] = json!(job.options.file_name);
        context["status"] = json!(job.status.as_str());
        context["failure_message"] = json!(job.failure_message);
        context["counts"] = json!(job.counts);
        context["more_failed"] = json!((job.counts.failed - failed_rows.len() as i64).max(0));
        context["failed_rows"] = json!(failed_rows);
        Ok(())
    }

    fn build(&self, message: &ClaimedMessage, user: &User, rendered: Rendered) -> Result<Message> {
        let to = Mailbox::new(
            Some(format!("{} {}", user.first_name, user.last_name)),
            user.email.parse().map_err(|error| {
                mailer::PermanentFailure(format!(
                    "the recipient's address cannot be used by SMTP: {error}"
                ))
            })?,
        );
        Ok(Message::builder()
            // One Message-ID per outbox row: a resent message is recognizably the same.
            .message_id(Some(format!("<{}@{}>", message.id, self.settings.domain())))
            .date(message.create_time.into())
            .from(self.settings.from.parse().context("the From address")?)
            .to(to)
            .subject(rendered.subject)
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))?)
    }
}

fn template_of(kind: &str) -> Option<Template> {
    match kind {
        "INVITATION" => Some(Template::Invitation),
        "PASSWORD_RESET" => Some(Template::PasswordReset),
        "IMPORT_REPORT" => Some(Template::ImportReport),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_take_the_public_host_and_retries_back_off() {
        let settings = DeliverySettings::new(
            MailTransport::Directory("/tmp".into()),
            Some("https://roster.example.com:8443/"),
        );
        assert_eq!(settings.domain(), "roster.example.com");
        assert_eq!(settings.public_url(), "https://roster.example.com:8443");
        assert_eq!(settings.retry_after(1), Duration::from_secs(30));
        assert_eq!(settings.retry_after(3), Duration::from_secs(120));
        assert_eq!(settings.retry_after(40), Duration::from_secs(3600));
    }

    #[test]
    fn smtp_credentials_stay_out_of_the_logs() {
        let transport = MailTransport::Smtp {
            url: "smtps://mailer:s3cret@smtp.example.com:465".into(),
        };
        assert_eq!(transport.describe(), "smtps://smtp.example.com:465");
    }
}
