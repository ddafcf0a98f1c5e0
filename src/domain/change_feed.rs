//! Serves the change stream to many watchers at the database's cost of one.
//!
//! Positions are gapless per organization (`store::changes::publish`), so
//! a watcher needs only its last position: the next change is that plus one,
//! and a hole means the change it wants was pruned (OUT_OF_RANGE). Each
//! organization with watchers has a tail in memory: the recent changes with
//! the access of the users they name, read once by whichever watcher gets
//! there first when a commit is announced (or a second has passed, in case
//! an announcement was lost). A watcher behind the tail reads the database
//! at its own pace; one that sends slowly holds back only itself, because it
//! reads no further than what it has sent.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock, Weak,
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;
use uuid::Uuid;

use super::{
    changes::{Change, Cursor, DeliveredChange, WatchStart},
    user::AuthorizableAccess,
    DomainError,
};
use crate::store::{self, connections::read, Pool};

/// How the stream is kept and paced.
#[derive(Debug, Clone)]
pub struct ChangeSettings {
    /// Changes older than this are pruned; a cursor before them is OUT_OF_RANGE.
    pub retention: Duration,
    /// An idle stream sends a heartbeat this often.
    pub heartbeat: Duration,
    /// Recent changes kept in memory per watched organization.
    pub recent: usize,
    /// Open streams this server serves at most; more are RESOURCE_EXHAUSTED.
    pub max_streams: usize,
}

impl Default for ChangeSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            heartbeat: Duration::from_secs(10),
            recent: 4096,
            max_streams: 10_000,
        }
    }
}

/// How often a caught-up tail reads the database though nothing was announced.
const POLL: Duration = Duration::from_secs(1);
/// Changes read from the database at once.
const READ_BATCH: i64 = 500;

pub struct ChangeFeed {
    pool: Pool,
    settings: ChangeSettings,
    tails: Mutex<HashMap<Uuid, Weak<Tail>>>,
    /// Watchers alive now (each gives its slot back when dropped).
    open: AtomicUsize,
}

impl ChangeFeed {
    pub fn new(pool: Pool, settings: ChangeSettings) -> Self {
        Self {
            pool,
            settings,
            tails: Mutex::default(),
            open: AtomicUsize::new(0),
        }
    }

    pub fn settings(&self) -> &ChangeSettings {
        &self.settings
    }

    /// A watcher of the organization from `start`, or OUT_OF_RANGE when
    /// that start is no longer (or not yet) in the stream.
    pub async fn watch(
        self: &Arc<Self>,
        organization_id: Uuid,
        start: WatchStart,
    ) -> Result<Watcher, DomainError> {
        let slot = self.take_slot()?;
        let (last, first) = read!(&self.pool, |connection| {
            store::changes::bounds(connection, organization_id).await
        })?;
        let position = match start {
            WatchStart::Now => last,
            WatchStart::Beginning => first.map_or(last, |first| first - 1),
            WatchStart::After(cursor) if cursor.position > last => {
                return Err(out_of_range(
                    "after_cursor is ahead of every change of this organization",
                ))
            }
            WatchStart::After(cursor) => cursor.position,
        };
        Ok(Watcher {
            tail: self.tail(organization_id, last),
            organization_id,
            position,
            slot,
        })
    }

    /// One of the open streams this server allows.
    fn take_slot(self: &Arc<Self>) -> Result<Slot, DomainError> {
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.clone());
        if open >= self.settings.max_streams {
            return Err(DomainError::ResourceExhausted(format!(
                "this server serves {} WatchChanges streams, its most: retry later or on another replica",
                self.settings.max_streams
            )));
        }
        Ok(slot)
    }

    fn tail(&self, organization_id: Uuid, last: i64) -> Arc<Tail> {
        let mut tails = self.tails.lock().expect("tails lock");
        if let Some(tail) = tails.get(&organization_id).and_then(Weak::upgrade) {
            return tail;
        }
        tails.retain(|_, tail| tail.strong_count() > 0);
        let tail = Arc::new(Tail::new(organization_id, last));
        tails.insert(organization_id, Arc::downgrade(&tail));
        tail
    }

    /// A commit announced by a notification: wakes the organization's watchers.
    pub fn announce(&self, organization_id: Uuid, position: i64) {
        let tail = self
            .tails
            .lock()
            .expect("tails lock")
            .get(&organization_id)
            .and_then(Weak::upgrade);
        if let Some(tail) = tail {
            tail.announced.send_if_modified(|announced| {
                let newer = position > *announced;
                *announced = (*announced).max(position);
                newer
            });
        }
    }

    /// Follows the numbering commits for as long as the server runs. While
    /// no connection listens, tails still poll every second.
    pub async fn follow_notifications(self: Arc<Self>) -> anyhow::Result<()> {
        const ALIVE_WITHIN: Duration = Duration::from_secs(10);
        loop {
            match store::changes::listen(&self.pool).await {
                Ok(mut notifications) => loop {
                    match notifications.next(ALIVE_WITHIN).await {
                        Ok(payload) => match store::changes::parse_notice(&payload) {
                            Some((organization_id, position)) => {
                                self.announce(organization_id, position)
                            }
                            None => tracing::warn!(payload, "ignoring an unknown change notice"),
                        },
                        Err(error) => {
                            tracing::warn!(error = %error, "lost the connection listening to changes; polling");
                            break;
                        }
                    }
                },
                Err(error) => {
                    tracing::debug!(error = %error, "cannot listen to changes yet");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Deletes the changes past the retention window.
    pub async fn prune_expired(&self) -> Result<(), sqlx::Error> {
        let retention =
            chrono::Duration::from_std(self.settings.retention).unwrap_or(chrono::Duration::MAX);
        let deleted = store::changes::prune(&self.pool, chrono::Utc::now() - retention).await?;
        if deleted > 0 {
            tracing::info!(deleted, "pruned changes past the retention window");
        }
        Ok(())
    }

    /// Changes after `position` from the database, a batch at a time, with
    /// the access of the users they name.
    async fn read_after(
        &self,
        organization_id: Uuid,
        position: i64,
    ) -> Result<Vec<Arc<DeliveredChange>>, DomainError> {
        let changes = read!(&self.pool, |connection| {
            store::changes::after(connection, organization_id, position, READ_BATCH).await
        })?;
        let mut user_ids: Vec<Uuid> = changes.iter().filter_map(Change::user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let accesses = if user_ids.is_empty() {
            HashMap::new()
        } else {
            access_of_users(&self.pool, organization_id, &user_ids).await?
        };
        Ok(changes
            .into_iter()
            .map(|change| {
                let user_access = change.user_id().and_then(|id| accesses.get(&id).cloned());
                Arc::new(DeliveredChange {
                    change,
                    user_access,
                })
            })
            .collect())
    }
}

/// Each user's status and, when they can sign in, grants (GetUserAccess's answer).
async fn access_of_users(
    pool: &Pool,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, AuthorizableAccess>, DomainError> {
    let (users, mut grants) = read!(pool, |connection| {
        let users = store::users::find_many(&mut *connection, organization_id, user_ids).await?;
        let signing_in: Vec<Uuid> = users
            .iter()
            .filter(|user| AuthorizableAccess::can_sign_in(user.status))
            .map(|user| user.id)
            .collect();
        let grants =
            store::groups::access_of_users(&mut *connection, organization_id, &signing_in).await?;
        Ok((users, grants))
    })?;
    let mut by_user: HashMap<Uuid, Vec<_>> = HashMap::new();
    for (user_id, grant) in grants.drain(..) {
        by_user.entry(user_id).or_default().push(grant);
    }
    Ok(users
        .into_iter()
        .map(|user| {
            let grants = by_user.remove(&user.id).unwrap_or_default();
            (user.id, AuthorizableAccess::of(user.status, grants))
        })
        .collect())
}

/// What a watcher wanted next was pruned.
fn pruned() -> DomainError {
    out_of_range("the changes after this cursor are past the retention window")
}

fn out_of_range(why: &str) -> DomainError {
    DomainError::OutOfRange {
        reason: "CURSOR_OUT_OF_RANGE",
        message: format!("{why}: resynchronize (list what you keep again, then watch from now)"),
    }
}

/// The recent changes of one organization, shared by its watchers.
struct Tail {
    organization_id: Uuid,
    /// The highest position a notification announced.
    announced: watch::Sender<i64>,
    recent: RwLock<Recent>,
    /// One reader of the database at a time; the others then find its result.
    fetching: tokio::sync::Mutex<Instant>,
}

/// Contiguous changes: positions `base + 1 ..= base + changes.len()`.
struct Recent {
    base: i64,
    changes: VecDeque<Arc<DeliveredChange>>,
}

impl Recent {
    fn last(&self) -> i64 {
        self.base + self.changes.len() as i64
    }
}

impl Tail {
    fn new(organization_id: Uuid, last: i64) -> Self {
        Self {
            organization_id,
            announced: watch::Sender::new(last),
            recent: RwLock::new(Recent {
                base: last,
                changes: VecDeque::new(),
            }),
            fetching: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// What the tail holds after `position`; `None` when it starts later.
    fn after(&self, position: i64) -> Option<Vec<Arc<DeliveredChange>>> {
        let recent = self.recent.read().expect("recent lock");
        if position < recent.base {
            return None;
        }
        let skip = (position - recent.base) as usize;
        Some(recent.changes.iter().skip(skip).cloned().collect())
    }

    fn last(&self) -> i64 {
        self.recent.read().expect("recent lock").last()
    }

    /// Reads what committed after the tail when something was announced
    /// past it, or when `poll` and nobody read for a while.
    async fn fetch(&self, feed: &ChangeFeed, poll: bool) -> Result<(), DomainError> {
        let mut last_read = self.fetching.lock().await;
        let behind = *self.announced.borrow() > self.last();
        let poll_due = poll && last_read.elapsed() >= POLL;
        if !(behind || poll_due) {
            return Ok(());
        }
        *last_read = Instant::now();
        let fresh = feed.read_after(self.organization_id, self.last()).await?;
        let mut recent = self.recent.write().expect("recent lock");
        if let Some(first) = fresh.first() {
            if first.change.position != recent.last() + 1 {
                // Pruned past the tail (idle for the whole window): start over from here.
                recent.base = first.change.position - 1;
                recent.changes.clear();
            }
        }
        recent.changes.extend(fresh);
        while recent.changes.len() > feed.settings.recent {
            recent.changes.pop_front();
            recent.base += 1;
        }
        let last = recent.last();
        drop(recent);
        self.announced.send_if_modified(|announced| {
            let newer = last > *announced;
            *announced = (*announced).max(last);
            newer
        });
        Ok(())
    }
}

/// An open stream's place in the server's count; given back when dropped.
struct Slot(Arc<ChangeFeed>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One consumer's place in its organization's stream.
pub struct Watcher {
    tail: Arc<Tail>,
    organization_id: Uuid,
    position: i64,
    slot: Slot,
}

impl Watcher {
    fn feed(&self) -> &ChangeFeed {
        &self.slot.0
    }

    /// Where the watcher stands: after every change `next_batch` returned.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            organization_id: self.organization_id,
            position: self.position,
        }
    }

    /// The next changes, waiting for a commit when there are none; `None`
    /// when `quiet` passed first (the caller sends a heartbeat). The
    /// watcher's position moves past what it returns.
    pub async fn next_batch(
        &mut self,
        quiet: Duration,
    ) -> Result<Option<Vec<Arc<DeliveredChange>>>, DomainError> {
        let deadline = tokio::time::Instant::now() + quiet;
        let mut announced = self.tail.announced.subscribe();
        loop {
            let batch = match self.tail.after(self.position) {
                Some(batch) => batch,
                None => {
                    let read = self
                        .feed()
                        .read_after(self.organization_id, self.position)
                        .await?;
                    if read
                        .first()
                        .is_some_and(|first| first.change.position != self.position + 1)
                    {
                        return Err(pruned());
                    }
                    read
                }
            };
            if let Some(last) = batch.last() {
                self.position = last.change.position;
                return Ok(Some(batch));
            }
            if self.position < self.tail.recent.read().expect("recent lock").base {
                // Behind the tail and nothing read: what it wanted was pruned.
                return Err(pruned());
            }
            if *self.tail.announced.borrow() > self.tail.last() {
                // Announced past what the tail holds (a batch larger than one
                // read, or an announcement made while this watcher was
                // sending): read on now rather than at the next one.
                self.tail.fetch(self.feed(), false).await?;
                continue;
            }
            let poll = tokio::select! {
                changed = announced.changed() => {
                    changed.expect("the tail outlives its watchers");
                    false
                }
                _ = tokio::time::sleep(POLL) => true,
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            };
            self.tail.fetch(self.feed(), poll).await?;
        }
    }
}
