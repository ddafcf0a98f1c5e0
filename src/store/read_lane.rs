//! The connections reads run on, kept out of sqlx's pool between reads.
//! sqlx pings every connection handed back to its pool (a Sync round trip,
//! in a task of its own), and no option turns that off: for a one-statement
//! read that doubles the round trips, and the wake-ups of the server and of
//! PostgreSQL. A read's connection comes back here instead, unpinged. A read
//! that did not end cleanly (cancelled mid-way, its connection lost, a
//! protocol error) hands its connection back to sqlx, whose ping flushes it
//! or closes it.
//!
//! The lane takes its connections from sqlx's pool and holds at most half of
//! them, so that writes always have the other half: a connection idle here
//! is not idle for sqlx. A read that finds the lane's connections all lent
//! takes one from sqlx's pool as before, and a connection left idle here
//! for a minute goes back to sqlx (whose idle timeout applies again).
//!
//! A read's body runs plain statements: no transaction, no session setting
//! (a connection in a transaction is not kept, whatever the read's result).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use deadpool::managed::{self, Metrics, QueueMode, RecycleError, RecycleResult, Timeouts};
use sqlx::{pool::PoolConnection, Connection, PgConnection, PgPool, Postgres};

use super::{connections::idle_since_last_loss, error::leaves_connection_usable};

/// How long a connection may stay in the lane before it goes back to sqlx
/// (whose lifetime then applies to it again).
const KEPT_AT_MOST: Duration = Duration::from_secs(5 * 60);
/// How long a connection may sit idle in the lane.
const IDLE_AT_MOST: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct ReadLane {
    lane: managed::Pool<Lender>,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReadLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadLane")
            .field("status", &self.lane.status())
            .finish()
    }
}

impl ReadLane {
    /// A lane over `pool`, holding at most half of its connections; none
    /// (reads go through sqlx's pool) when that half is empty.
    pub fn over(pool: &PgPool) -> Option<Self> {
        let size = (pool.options().get_max_connections() / 2) as usize;
        if size == 0 {
            return None;
        }
        let generation = Arc::new(AtomicU64::new(0));
        let lender = Lender {
            pool: pool.clone(),
            generation: generation.clone(),
        };
        // A read waits for no lent connection (it goes to sqlx instead); a
        // new connection, or a test of a kept one, within sqlx's acquire timeout.
        let limit = pool.options().get_acquire_timeout();
        let lane = managed::Pool::builder(lender)
            .max_size(size)
            .queue_mode(QueueMode::Lifo)
            .timeouts(Timeouts {
                wait: Some(Duration::ZERO),
                create: Some(limit),
                recycle: Some(limit),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime for its timeouts");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(give_back_idle(lane.weak()));
        }
        Some(Self { lane, generation })
    }

    /// A connection for one read; `None` when the lane's are all lent.
    pub async fn lend(&self) -> Result<Option<Lent>, sqlx::Error> {
        match self.lane.get().await {
            Ok(object) => Ok(Some(Lent {
                object: Some(object),
                generation: self.generation.clone(),
            })),
            Err(managed::PoolError::Timeout(managed::TimeoutType::Wait)) => Ok(None),
            Err(managed::PoolError::Backend(error)) => Err(error),
            Err(managed::PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Connections kept here, idle between reads.
    pub fn idle(&self) -> usize {
        self.lane.status().available
    }

    /// The database moved to another host: the connections kept here go
    /// back to sqlx now (which closes those to the old host), those lent
    /// out when their read ends.
    pub fn forget_connections(&self) {
        let now = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.lane.retain(|kept, _| kept.generation == now);
    }

    pub fn close(&self) {
        self.lane.close();
    }
}

/// Every 10 s, the connections idle in the lane for a minute go back to
/// sqlx; ends with the lane.
async fn give_back_idle(lane: managed::WeakPool<Lender>) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        every.tick().await;
        let Some(lane) = lane.upgrade() else {
            return;
        };
        if lane.is_closed() {
            return;
        }
        let _ = lane.retain(|_, metrics| {
            metrics.last_used() < IDLE_AT_MOST && metrics.age() < KEPT_AT_MOST
        });
    }
}

/// A connection of the lane and the host generation it was taken in.
pub struct Kept {
    connection: PoolConnection<Postgres>,
    generation: u64,
}

struct Lender {
    pool: PgPool,
    generation: Arc<AtomicU64>,
}

impl managed::Manager for Lender {
    type Type = Kept;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Kept, sqlx::Error> {
        let generation = self.generation.load(Ordering::SeqCst);
        #[allow(
            clippy::disallowed_methods,
            reason = "counted by `Pool::read_connection`, which waits for the lane"
        )]
        let connection = self.pool.acquire().await?;
        Ok(Kept {
            connection,
            generation,
        })
    }

    /// Before a kept connection is lent again: one from before a move, or
    /// kept too long, goes back to sqlx; one idle since a connection was
    /// found dead is pinged.
    async fn recycle(&self, kept: &mut Kept, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if kept.generation != self.generation.load(Ordering::SeqCst) {
            return Err(RecycleError::message("the database moved to another host"));
        }
        if metrics.age() > KEPT_AT_MOST {
            return Err(RecycleError::message("kept long enough"));
        }
        if idle_since_last_loss(metrics.last_used()) {
            kept.connection
                .ping()
                .await
                .map_err(RecycleError::Backend)?;
        }
        Ok(())
    }
}

/// A connection lent for one read. Back to the lane when `ended` says the
/// read ended cleanly; otherwise, when dropped, back to sqlx.
pub struct Lent {
    object: Option<managed::Object<Lender>>,
    generation: Arc<AtomicU64>,
}

impl Lent {
    pub fn connection(&mut self) -> &mut PgConnection {
        let object = self.object.as_mut().expect("lent until dropped");
        &mut object.connection
    }

    /// The read ended with `result`. An answer from PostgreSQL, rows or an
    /// error that leaves the session usable, leaves the connection ready for
    /// the next statement: it goes back to the lane. Anything else (lost, a
    /// protocol or decoding error that may have left rows unread, a
    /// transaction left open) goes to sqlx to be tested.
    pub fn ended<T>(mut self, result: &Result<T, sqlx::Error>) {
        let clean = result.as_ref().err().is_none_or(leaves_connection_usable);
        let Some(object) = self.object.as_mut() else {
            return;
        };
        let taken_in = object.generation;
        if !clean
            || object.connection.is_in_transaction()
            || taken_in != self.generation.load(Ordering::SeqCst)
        {
            return; // dropped: to sqlx
        }
        let object = self.object.take().expect("checked above");
        let lane = managed::Object::pool(&object);
        drop(object);
        // A move between the check above and the return: not kept either.
        if let Some(lane) = lane {
            let now = self.generation.load(Ordering::SeqCst);
            if now != taken_in {
                let _ = lane.retain(|kept, _| kept.generation == now);
            }
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Out of the lane: the connection goes back to sqlx.
            drop(managed::Object::take(object));
        }
    }
}
