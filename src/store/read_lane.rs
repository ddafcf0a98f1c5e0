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
//! is not idle for sqlx.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult, Timeouts};
use sqlx::{pool::PoolConnection, Connection, PgConnection, PgPool, Postgres};

use super::connections::idle_since_last_loss;

/// How long a connection may sit in the lane before it goes back to sqlx
/// (whose idle timeout and lifetime then apply to it again).
const KEPT_AT_MOST: Duration = Duration::from_secs(5 * 60);

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
        // sqlx's own acquire timeout bounds the wait for a new connection;
        // this one bounds the wait for a read connection to come back.
        let timeouts = Timeouts {
            wait: Some(pool.options().get_acquire_timeout()),
            ..Timeouts::default()
        };
        let lane = managed::Pool::builder(lender)
            .max_size(size)
            .timeouts(timeouts)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime for its timeouts");
        Some(Self { lane, generation })
    }

    /// A connection for one read.
    pub async fn lend(&self) -> Result<Lent, sqlx::Error> {
        match self.lane.get().await {
            Ok(object) => Ok(Lent {
                object: Some(object),
                generation: self.generation.clone(),
            }),
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
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.lane.retain(|_, _| false);
    }

    pub fn close(&self) {
        self.lane.close();
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

    /// The read ended with `result`. A result from PostgreSQL, an answer or
    /// its error, leaves the connection ready for the next statement: it
    /// goes back to the lane. Anything else (lost, a protocol or decoding
    /// error that may have left rows unread) goes to sqlx to be tested.
    pub fn ended<T>(mut self, result: &Result<T, sqlx::Error>) {
        let clean = matches!(
            result,
            Ok(_) | Err(sqlx::Error::Database(_) | sqlx::Error::RowNotFound)
        );
        let current = self.generation.load(Ordering::SeqCst);
        if clean
            && self
                .object
                .as_ref()
                .is_some_and(|object| object.generation == current)
        {
            drop(self.object.take());
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
