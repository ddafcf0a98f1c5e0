//! How calls get their connection: through `Pool`, the only way to the
//! database pool, which counts the callers waiting for a connection (sqlx
//! keeps no such count; the metrics' `waiting` state reads it). The pool
//! hands connections out without pinging them first (a round trip per statement saved on the hot path), so
//! a connection that died while idle — the database restarted, its backend
//! was terminated — is found by the statement that uses it. A read that
//! finds one runs once more on a tested connection; a write is never rerun
//! here (it may have committed).

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use sqlx::{
    pool::{PoolConnection, PoolConnectionMetadata},
    postgres::PgConnectOptions,
    Connection, PgConnection, PgPool, Postgres,
};

use super::{
    error::is_connection_lost,
    read_lane::{Lent, ReadLane},
    shared_reads::SharedReads,
    users::CommonTrigrams,
    Transaction,
};
use crate::database_hosts::{place, DatabaseHosts};

/// The database pool of one server (or CLI command), counting its waiters.
/// It is no `Executor`: a statement runs on a connection from `acquire` or
/// in a transaction from `begin`, so no connection is taken uncounted.
/// Clones share the pool and the count.
#[derive(Clone, Debug)]
pub struct Pool {
    pool: PgPool,
    /// Where reads take their connection (`read!`); none for a pool too
    /// small to share.
    reads: Option<ReadLane>,
    waiting: Arc<AtomicUsize>,
    /// The point reads concurrent calls share a statement for.
    shared_reads: Arc<SharedReads>,
    /// What searches learnt of each organization's users.
    common_trigrams: Arc<CommonTrigrams>,
    /// The hosts of a multi-host DATABASE_URL, when there is a choice, and
    /// when the pool last moved between them.
    hosts: Option<(Arc<DatabaseHosts>, Arc<HostMoves>)>,
}

impl From<PgPool> for Pool {
    fn from(pool: PgPool) -> Self {
        Self {
            reads: ReadLane::over(&pool),
            pool,
            waiting: Arc::default(),
            shared_reads: Arc::default(),
            common_trigrams: Arc::default(),
            hosts: None,
        }
    }
}

impl Pool {
    /// A connection of the pool, counted as waiting until it is handed over.
    #[allow(clippy::disallowed_methods, reason = "the one counted acquire")]
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let _waiting = Waiting::start(&self.waiting);
        self.pool.acquire().await
    }

    /// A connection for one read (`read!`), counted as waiting until it is
    /// handed over.
    pub async fn read_connection(&self) -> Result<ReadConnection, sqlx::Error> {
        if let Some(lane) = &self.reads {
            let lent = {
                let _waiting = Waiting::start(&self.waiting);
                lane.lend().await?
            };
            if let Some(lent) = lent {
                return Ok(ReadConnection::Lent(lent));
            }
        }
        // No lane, or its connections are all lent: one of sqlx's.
        self.acquire().await.map(ReadConnection::Pooled)
    }

    /// A transaction on a connection from `acquire`.
    pub async fn begin(&self) -> Result<Transaction<'static>, sqlx::Error> {
        let connection = self.acquire().await?;
        // What `sqlx::Pool::begin` does with the connection it acquired.
        sqlx::Transaction::begin(connection, None).await
    }

    pub fn shared_reads(&self) -> &SharedReads {
        &self.shared_reads
    }

    pub fn common_trigrams(&self) -> &CommonTrigrams {
        &self.common_trigrams
    }

    /// Callers waiting for a connection now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Connections open, in use or idle.
    pub fn size(&self) -> u32 {
        self.pool.size()
    }

    /// Connections idle in sqlx's pool or kept for reads between them.
    pub fn num_idle(&self) -> usize {
        self.pool.num_idle() + self.reads.as_ref().map_or(0, ReadLane::idle)
    }

    pub fn max_connections(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// How the pool connects: for the connections kept outside it
    /// (the database watch, the auth-change listener).
    pub fn connect_options(&self) -> Arc<PgConnectOptions> {
        self.pool.connect_options()
    }

    pub async fn close(&self) {
        // sqlx's close waits for every connection to come back, the kept ones too.
        if let Some(lane) = &self.reads {
            lane.close();
        }
        self.pool.close().await;
    }

    /// The pool connects to one of `hosts` (a multi-host DATABASE_URL) and
    /// follows the right one with `repoint`; `moves` is what the pool's
    /// hooks were given (`HostMoves::pool_options`).
    pub fn with_hosts(self, hosts: DatabaseHosts, moves: Arc<HostMoves>) -> Self {
        Self {
            hosts: hosts.is_choice().then(|| (Arc::new(hosts), moves)),
            ..self
        }
    }

    /// Whether every session must accept writes (`target_session_attrs=read-write`).
    pub fn requires_writes(&self) -> bool {
        self.hosts
            .as_ref()
            .is_some_and(|(hosts, _)| hosts.requires_writes())
    }

    /// Finds the host to use now (after a failover, the new primary) and
    /// points new connections at it; true when it is another host than
    /// before. Without a choice of hosts, false. The connections open to the
    /// old host are closed: the idle ones now, those in use when they are
    /// released (a demoted primary, or one cut off from the others, keeps
    /// no session of ours).
    pub async fn repoint(&self) -> anyhow::Result<bool> {
        let Some((hosts, moves)) = &self.hosts else {
            return Ok(false);
        };
        let found = hosts.find().await?;
        let current = self.pool.connect_options();
        let from = place(&current);
        let to = place(&found);
        if from == to {
            return Ok(false);
        }
        self.pool.set_connect_options(found);
        moves.record();
        let closed_before = moves.closed();
        if let Some(lane) = &self.reads {
            lane.forget_connections();
        }
        let idle = self.close_idle_opened_before_move().await;
        tracing::warn!(
            from,
            to,
            idle_connections_closed = moves.closed() - closed_before,
            in_use_until_released = (self.pool.size() as usize).saturating_sub(self.pool.num_idle()),
            "the database moved to another host; new connections go there, those to the old host are closed"
        );
        tracing::debug!(idle, "idle connections handed back after the move");
        Ok(true)
    }

    /// Takes every idle connection and hands it back at once: the pool's
    /// `after_release` hook closes those opened before the move. Returns how
    /// many were taken.
    #[allow(
        clippy::disallowed_methods,
        reason = "idle connections taken to be closed, for no caller: nobody waits"
    )]
    async fn close_idle_opened_before_move(&self) -> usize {
        let mut taken = Vec::new();
        while let Some(connection) = self.pool.try_acquire() {
            taken.push(connection);
        }
        let count = taken.len();
        let returns = taken
            .iter_mut()
            .map(|connection| connection.return_to_pool());
        // A close to a host cut off could wait: the sockets go anyway when dropped.
        let _ =
            tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(returns)).await;
        count
    }
}

/// When a pool on several hosts last moved to another one. Its hooks refuse
/// (and so close) a connection opened before the move, which goes to the old
/// host: on acquire (`before_acquire`) and on release (`after_release`).
/// Ages decide, as sqlx tells hooks nothing of a connection's host: one
/// opened after the move is younger than the time since.
#[derive(Debug)]
pub struct HostMoves {
    since: Instant,
    /// Nanoseconds from `since` to the last move, plus one; 0: never moved.
    last_move: AtomicU64,
    /// Connections the hooks refused for their age.
    closed: AtomicU64,
}

impl HostMoves {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            since: Instant::now(),
            last_move: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        })
    }

    /// `options` with the hooks that close the connections opened before a move.
    pub fn pool_options(
        self: &Arc<Self>,
        options: sqlx::postgres::PgPoolOptions,
    ) -> sqlx::postgres::PgPoolOptions {
        let on_acquire = self.clone();
        let on_release = self.clone();
        options
            .before_acquire(move |connection, meta| {
                if on_acquire.refuses(meta.age) {
                    return Box::pin(async { Ok(false) });
                }
                test_if_idle_since_a_loss(connection, meta)
            })
            .after_release(move |_, meta| {
                let keep = !on_release.refuses(meta.age);
                Box::pin(async move { Ok(keep) })
            })
    }

    fn record(&self) {
        let now = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_move.store(now + 1, Ordering::SeqCst);
    }

    fn closed(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether a connection of this age was opened before the last move
    /// (counted as closed: the hooks close what they refuse).
    fn refuses(&self, age: Duration) -> bool {
        let last_move = self.last_move.load(Ordering::SeqCst);
        if last_move == 0 {
            return false;
        }
        let since_move = self
            .since
            .elapsed()
            .saturating_sub(Duration::from_nanos(last_move - 1));
        let before = age > since_move;
        if before {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
        before
    }
}

/// One caller counted in `Pool::waiting` while it lives: dropped when the
/// connection came, the acquire failed, or the caller gave up (cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `read!(pool, |connection| body)`: runs `body` (an async block's body
/// giving a `Result<_, sqlx::Error>`, with `connection: &mut PgConnection`)
/// on one pooled connection, and once more on another when the first turns
/// out to be dead (see `is_connection_lost`). A macro, not a function taking
/// a closure: the body borrows its arguments, which a closure returning a
/// `Send` future cannot express.
macro_rules! read {
    ($pool:expr, |$connection:ident| $body:expr) => {{
        let pool: &$crate::store::Pool = $pool;
        let mut retried = false;
        loop {
            let result: Result<_, sqlx::Error> = match pool.read_connection().await {
                Ok(mut lent) => {
                    let result = {
                        let $connection: &mut sqlx::PgConnection = lent.connection();
                        async { $body }.await
                    };
                    lent.ended(&result);
                    result
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

/// A read's connection: lent by the read lane, or, for a pool too small to
/// have one, from sqlx's pool.
pub enum ReadConnection {
    Lent(Lent),
    Pooled(PoolConnection<Postgres>),
}

impl ReadConnection {
    pub fn connection(&mut self) -> &mut PgConnection {
        match self {
            Self::Lent(lent) => lent.connection(),
            Self::Pooled(pooled) => pooled,
        }
    }

    /// The read ended with `result` (see `Lent::ended`).
    pub fn ended<T>(self, result: &Result<T, sqlx::Error>) {
        if let Self::Lent(lent) = self {
            lent.ended(result);
        }
    }
}

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

pub(super) fn idle_since_last_loss(idle_for: Duration) -> bool {
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

    #[tokio::test]
    async fn a_caller_is_counted_while_it_waits_and_no_longer_once_it_gives_up() {
        // Nothing listens on port 1: connecting is retried until the acquire
        // timeout, and the caller waits meanwhile.
        let pool =
            Pool::from(PgPool::connect_lazy("postgres://roster@127.0.0.1:1/none").expect("pool"));
        assert_eq!(pool.waiting(), 0);
        let waiter = pool.clone();
        let acquire = tokio::spawn(async move { waiter.acquire().await.map(drop) });
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.waiting() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.waiting(), 1);
        acquire.abort();
        assert!(acquire.await.expect_err("aborted").is_cancelled());
        assert_eq!(pool.waiting(), 0);
    }

    #[test]
    fn after_a_loss_only_connections_idle_since_before_it_are_tested() {
        note_connection_lost();
        std::thread::sleep(Duration::from_millis(20));
        assert!(idle_since_last_loss(Duration::from_secs(1)));
        assert!(!idle_since_last_loss(Duration::from_millis(1)));
    }
}
