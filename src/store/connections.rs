//! How calls get their connection. The pool hands connections out without
//! pinging them first (a round trip per statement saved on the hot path), so
//! a connection that died while idle — the database restarted, its backend
//! was terminated — is found by the statement that uses it. A read that
//! finds one runs once more on a tested connection; a write is never rerun
//! here (it may have committed).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use sqlx::{pool::PoolConnectionMetadata, Connection, PgConnection};

use super::error::is_connection_lost;

/// `read!(pool, |connection| body)`: runs `body` (an async block's body
/// giving a `Result<_, sqlx::Error>`, with `connection: &mut PgConnection`)
/// on one pooled connection, and once more on another when the first turns
/// out to be dead (see `is_connection_lost`). A macro, not a function taking
/// a closure: the body borrows its arguments, which a closure returning a
/// `Send` future cannot express.
macro_rules! read {
    ($pool:expr, |$connection:ident| $body:expr) => {{
        let pool: &sqlx::PgPool = $pool;
        let mut retried = false;
        loop {
            let result: Result<_, sqlx::Error> = match pool.acquire().await {
                Ok(mut pooled) => {
                    let $connection: &mut sqlx::PgConnection = &mut pooled;
                    async { $body }.await
                }
                Err(error) => Err(error),
            };
            match result {
                Err(error) if !retried && $crate::store::connections::found_dead(&error) => {
                    retried = true;
                }
                result => break result,
            }
        }
    }};
}
pub(crate) use read;

/// Whether a read failed because its connection was dead; if so, the
/// connections idle since are tested before they are handed out again.
pub fn found_dead(error: &sqlx::Error) -> bool {
    let dead = is_connection_lost(error);
    if dead {
        tracing::debug!(error = %error, "a pooled connection was dead; reading again");
        note_connection_lost();
    }
    dead
}

/// The pool's `before_acquire` test: a connection idle since before the
/// last connection was found dead may be dead too, and is pinged; any other
/// is handed out untested.
pub fn test_if_idle_since_a_loss(
    connection: &mut PgConnection,
    meta: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if idle_since_last_loss(meta.idle_for) {
            connection.ping().await?;
        }
        Ok(true)
    })
}

/// Nanoseconds from `epoch()` to the last connection found dead; 0 for never.
static LAST_LOSS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn note_connection_lost() {
    let since_epoch = epoch().elapsed().as_nanos().max(1);
    LAST_LOSS.store(
        u64::try_from(since_epoch).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

fn idle_since_last_loss(idle_for: Duration) -> bool {
    match LAST_LOSS.load(Ordering::Relaxed) {
        0 => false,
        loss => {
            let since_loss = epoch().elapsed().saturating_sub(Duration::from_nanos(loss));
            idle_for >= since_loss
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_loss_only_connections_idle_since_before_it_are_tested() {
        note_connection_lost();
        std::thread::sleep(Duration::from_millis(20));
        assert!(idle_since_last_loss(Duration::from_secs(1)));
        assert!(!idle_since_last_loss(Duration::from_millis(1)));
    }
}
