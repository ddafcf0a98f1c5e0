//! Whether the database answers, known to the whole server: a probe on a
//! connection of its own (outside the pool, so a pool full of waiting calls
//! cannot hide the answer) pings it four times a second. While the
//! database does not answer, health reports NOT_SERVING and the gRPC gate
//! (`grpc::database_gate`) refuses calls UNAVAILABLE at once instead of
//! letting them wait out the pool's acquire timeout.

use std::{future::Future, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgConnection},
    ConnectOptions, Connection,
};
use tokio::sync::watch;
use tonic_health::{server::HealthReporter, ServingStatus};

use crate::{database_hosts::accepts_writes, store::Pool};

/// How often the probe asks; also about how long a return goes unnoticed.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// A probe that takes longer than this counts as no answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server knows of the database; cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct DatabaseWatch {
    answers: watch::Receiver<bool>,
}

impl DatabaseWatch {
    /// Whether the last probe was answered.
    pub fn answers(&self) -> bool {
        *self.answers.borrow()
    }

    /// Resolves once the database is known not to answer (at once if it is
    /// known now); never if the watch has stopped.
    pub async fn stops_answering(&self) {
        self.until(false).await;
    }

    /// Resolves once the database answers (at once if it does now).
    pub async fn answering(&self) {
        self.until(true).await;
    }

    /// Runs `work` once the database answers; None when the database stops
    /// answering first (the work is dropped). Background work waits for the
    /// database this way instead of waiting out the pool's acquire timeout
    /// at each turn of an outage.
    pub async fn while_answering<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        self.answering().await;
        tokio::select! {
            done = work => Some(done),
            () = self.stops_answering() => None,
        }
    }

    async fn until(&self, answers: bool) {
        let mut receiver = self.answers.clone();
        if receiver.wait_for(|now| *now == answers).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A watch that follows `answers` (tests set it by hand).
    #[cfg(test)]
    pub(crate) fn following(answers: watch::Receiver<bool>) -> Self {
        Self { answers }
    }
}

/// The probe's side: runs for as long as the server runs.
pub struct DatabaseWatcher {
    /// Its connect options are read at each new probe connection: a pool
    /// on several hosts may be repointed after a failover.
    pool: Pool,
    answers: watch::Sender<bool>,
    health: HealthReporter,
    /// The health statuses that follow the database's: the server's ("") and
    /// those of the services that need it.
    services: Vec<&'static str>,
}

impl DatabaseWatcher {
    /// A watcher of `pool`'s database, assumed to answer at first (the server
    /// was built on an open pool); `services` are the health names it sets.
    pub fn new(
        pool: &Pool,
        health: HealthReporter,
        services: Vec<&'static str>,
    ) -> (Self, DatabaseWatch) {
        let (answers, receiver) = watch::channel(true);
        let watcher = Self {
            pool: pool.clone(),
            answers,
            health,
            services,
        };
        (watcher, DatabaseWatch { answers: receiver })
    }

    /// Probes forever, logging each change once (with the cause when the
    /// database stops answering) and setting health to follow it.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut connection: Option<PgConnection> = None;
        let mut interval = tokio::time::interval(PROBE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down_since: Option<tokio::time::Instant> = None;
        loop {
            interval.tick().await;
            // One failed probe flips: a second try on a fresh connection, made
            // while a crashed cluster restarts, waits out the restart and hid
            // the outage (calls were served 0.6 s late instead of refused).
            let writes = self.pool.requires_writes();
            match probe(&self.pool.connect_options(), writes, &mut connection).await {
                Ok(()) => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            down_ms = since.elapsed().as_millis() as u64,
                            "the database answers again; serving"
                        );
                        self.set(true).await;
                    }
                }
                Err(error) => {
                    // Several hosts: after a failover another one serves.
                    match self.pool.repoint().await {
                        Ok(true) => connection = None,
                        Ok(false) => {}
                        Err(why) => {
                            tracing::debug!(error = format!("{why:#}"), "no host to move to")
                        }
                    }
                    if down_since.is_none() {
                        down_since = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "the database does not answer; calls are refused UNAVAILABLE until it does"
                        );
                        self.set(false).await;
                    }
                }
            }
        }
    }

    async fn set(&self, answers: bool) {
        let _ = self.answers.send(answers);
        let status = if answers {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in std::iter::once("").chain(self.services.iter().copied()) {
            self.health.set_service_status(service, status).await;
        }
    }
}

/// One ping (an empty query) on the probe's connection, opening one first
/// when there is none; the connection is kept only while it answers.
async fn probe(
    options: &PgConnectOptions,
    writes: bool,
    connection: &mut Option<PgConnection>,
) -> anyhow::Result<()> {
    let kept = connection.take();
    let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut open = match kept {
            Some(open) => open,
            None => options.connect().await?,
        };
        open.ping().await?;
        let writable = !writes || accepts_writes(&mut open).await?;
        Ok::<_, sqlx::Error>((open, writable))
    })
    .await;
    match answered {
        Ok(Ok((_, false))) => Err(anyhow::anyhow!(
            "the database host is read-only (a standby, or a primary being demoted)"
        )),
        Ok(Ok((open, true))) => {
            *connection = Some(open);
            Ok(())
        }
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(anyhow::anyhow!(
            "no answer within {} ms",
            PROBE_TIMEOUT.as_millis()
        )),
    }
}
