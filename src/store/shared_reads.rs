//! Point reads that concurrent calls share. PostgreSQL's cost of reading one
//! user by its key is mostly the statement's (a round trip, a wake-up of the
//! backend, the executor's start and end), not the row's. So while a
//! statement of one kind is running, the calls that arrive for the same kind
//! wait, and the next statement reads all their keys at once: eight
//! concurrent GetUser calls cost two or three statements instead of eight.
//! A call alone runs at once, as before.
//!
//! A call never joins a statement already sent: what it reads was committed
//! no earlier than the call began, exactly as if it had read alone.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
};

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::groups::StatusAndAccess;
use super::users::read_shared_lookup;
use super::Pool;
use crate::domain::user::{LookupKey, User};

/// Statements of one kind running at once, at least two: a call arriving
/// while this many run waits for the next. More than the cores that run
/// them would only queue in the kernel instead of here. Past the first,
/// one starts only for waiting calls the next statement cannot all take
/// (`start_runner`).
fn most_running() -> usize {
    static MOST: OnceLock<usize> = OnceLock::new();
    *MOST.get_or_init(|| std::thread::available_parallelism().map_or(2, |cores| cores.get().max(2)))
}

/// Keys one statement reads at most. The statements take exactly this many
/// (unused slots repeat a key): PostgreSQL plans a statement of `any($2)`
/// afresh for each array length it sees, but keeps one plan for a fixed
/// number of parameters.
pub const SLOTS: usize = 8;

/// Up to `SLOTS` keys as the parameters of a statement of `SLOTS` slots:
/// the unused ones repeat the first key.
pub fn in_slots<K: Copy>(keys: &[K]) -> [K; SLOTS] {
    assert!((1..=SLOTS).contains(&keys.len()), "{} keys", keys.len());
    std::array::from_fn(|index| keys.get(index).copied().unwrap_or(keys[0]))
}

/// What a shared read answers each call: its value, `None` when no row
/// has its key, or the error of the statement (shared by its calls).
pub type Answer<V> = Result<Option<V>, Arc<sqlx::Error>>;

/// The statement of one kind of read: the values of up to `SLOTS` distinct
/// keys of one organization, by key.
pub type ReadMany<K, V> =
    for<'p> fn(&'p Pool, Uuid, Vec<K>) -> BoxFuture<'p, Result<HashMap<K, V>, sqlx::Error>>;

/// One kind of read shared between concurrent calls.
pub struct SharedRead<K, V> {
    shared: Arc<Shared<K, V>>,
}

struct Shared<K, V> {
    read_many: ReadMany<K, V>,
    queue: Mutex<Queue<K, V>>,
}

struct Queue<K, V> {
    waiting: VecDeque<Waiter<K, V>>,
    running: usize,
}

struct Waiter<K, V> {
    organization_id: Uuid,
    key: K,
    answer: oneshot::Sender<Answer<V>>,
}

impl<K, V> SharedRead<K, V>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    pub fn new(read_many: ReadMany<K, V>) -> Self {
        Self {
            shared: Arc::new(Shared {
                read_many,
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    running: 0,
                }),
            }),
        }
    }

    /// The value of `key` in the organization, read by the next statement
    /// of this kind on `pool`.
    pub async fn read(&self, pool: &Pool, organization_id: Uuid, key: K) -> Answer<V> {
        let (answer, answered) = oneshot::channel();
        let start_runner = {
            let mut queue = self.shared.lock();
            queue.waiting.push_back(Waiter {
                organization_id,
                key,
                answer,
            });
            let start = start_runner(queue.running, fit_one_statement(&queue.waiting));
            if start {
                queue.running += 1;
            }
            start
        };
        if start_runner {
            // A task of its own: a caller that gives up must not strand
            // the calls waiting for the statement it would have run.
            tokio::spawn(Runner::new(self.shared.clone(), pool.clone()).run());
        }
        answered
            .await
            .unwrap_or_else(|_| Err(Arc::new(sqlx::Error::WorkerCrashed)))
    }
}

/// Whether a call that joined the waiting ones starts a statement of its
/// own beside the `running` ones. The first always; another only when the
/// waiting calls would not all fit in the next statement. Until then they
/// wait for it: each statement wakes a PostgreSQL backend that slept, which
/// costs it several times the statement's own work (`bench/read`, paced),
/// so fewer and fuller statements cost less than more running at once.
fn start_runner(running: usize, waiting_fit_one_statement: bool) -> bool {
    running == 0 || running < most_running() && !waiting_fit_one_statement
}

/// Whether one statement can read the keys of all the waiting calls: fewer
/// than `SLOTS` calls, all of one organization.
fn fit_one_statement<K, V>(waiting: &VecDeque<Waiter<K, V>>) -> bool {
    let mut organizations = waiting.iter().map(|waiter| waiter.organization_id);
    let first = organizations.next();
    waiting.len() < SLOTS && organizations.all(|organization| Some(organization) == first)
}

impl<K, V> Shared<K, V> {
    fn lock(&self) -> MutexGuard<'_, Queue<K, V>> {
        // Every change to the queue is whole: a poisoned one is still valid.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The calls one statement answers: of one organization, their distinct keys.
struct Batch<K, V> {
    organization_id: Uuid,
    keys: Vec<K>,
    waiters: Vec<Waiter<K, V>>,
}

/// Runs statements while calls wait; counted in `running` until it
/// finds none waiting (in the same lock, so no call is left without one).
struct Runner<K, V> {
    shared: Arc<Shared<K, V>>,
    pool: Pool,
    retired: bool,
}

impl<K, V> Runner<K, V>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    fn new(shared: Arc<Shared<K, V>>, pool: Pool) -> Self {
        Self {
            shared,
            pool,
            retired: false,
        }
    }

    async fn run(mut self) {
        while let Some(Batch {
            organization_id,
            keys,
            waiters,
        }) = self.next_batch()
        {
            let found = (self.shared.read_many)(&self.pool, organization_id, keys).await;
            match found {
                Ok(found) => {
                    for waiter in waiters {
                        let value = found.get(&waiter.key).cloned();
                        let _gone = waiter.answer.send(Ok(value));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for waiter in waiters {
                        let _gone = waiter.answer.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// The waiting calls of the oldest one's organization, up to `SLOTS`
    /// distinct keys, with those keys; calls whose caller gave up are dropped.
    fn next_batch(&mut self) -> Option<Batch<K, V>> {
        let mut queue = self.shared.lock();
        queue.waiting.retain(|waiter| !waiter.answer.is_closed());
        let Some(first) = queue.waiting.front() else {
            queue.running -= 1;
            self.retired = true;
            return None;
        };
        let organization_id = first.organization_id;
        let (mut keys, mut waiters) = (Vec::with_capacity(SLOTS), Vec::new());
        let mut rest = VecDeque::with_capacity(queue.waiting.len());
        for waiter in queue.waiting.drain(..) {
            let known = keys.contains(&waiter.key);
            if waiter.organization_id != organization_id || !known && keys.len() == SLOTS {
                rest.push_back(waiter);
                continue;
            }
            if !known {
                keys.push(waiter.key.clone());
            }
            waiters.push(waiter);
        }
        queue.waiting = rest;
        Some(Batch {
            organization_id,
            keys,
            waiters,
        })
    }
}

impl<K, V> Drop for Runner<K, V> {
    fn drop(&mut self) {
        if self.retired {
            return;
        }
        // A panic, or the runtime shutting down: the calls left waiting
        // would hang if no runner is left to answer them.
        let mut queue = self.shared.lock();
        queue.running -= 1;
        if queue.running == 0 {
            for waiter in queue.waiting.drain(..) {
                let _gone = waiter
                    .answer
                    .send(Err(Arc::new(sqlx::Error::WorkerCrashed)));
            }
        }
    }
}

/// The shared reads of one pool (a statement never mixes pools).
pub struct SharedReads {
    /// GetUser.
    pub users_by_id: SharedRead<Uuid, User>,
    /// GetUserAccess.
    pub status_and_access: SharedRead<Uuid, StatusAndAccess>,
    /// LookupUser, one kind of key each: the users of a value as asked
    /// (trimmed).
    pub users_by_email: SharedRead<String, Vec<User>>,
    pub users_by_username: SharedRead<String, Vec<User>>,
    pub users_by_external_id: SharedRead<String, Vec<User>>,
}

impl Default for SharedReads {
    fn default() -> Self {
        Self {
            users_by_id: SharedRead::new(super::users::read_shared_by_id),
            status_and_access: SharedRead::new(super::groups::read_shared_status_and_access),
            users_by_email: SharedRead::new(|pool, organization_id, emails| {
                read_shared_lookup(pool, organization_id, emails, |v| LookupKey::Email(v))
            }),
            users_by_username: SharedRead::new(|pool, organization_id, usernames| {
                read_shared_lookup(pool, organization_id, usernames, |v| LookupKey::Username(v))
            }),
            users_by_external_id: SharedRead::new(|pool, organization_id, external_ids| {
                read_shared_lookup(pool, organization_id, external_ids, |v| {
                    LookupKey::ExternalId(v)
                })
            }),
        }
    }
}

impl std::fmt::Debug for SharedReads {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SharedReads")
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicUsize, sync::atomic::Ordering, time::Duration};

    use futures::future::join_all;
    use sqlx::PgPool;
    use tokio::sync::Semaphore;

    use super::*;

    /// A pool that never connects: the reads below do not use it.
    fn pool() -> Pool {
        Pool::from(PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap())
    }

    /// What a fake statement was asked: its organization and keys.
    type Asked = Mutex<Vec<(Uuid, Vec<u32>)>>;

    fn note(asked: &Asked, organization_id: Uuid, keys: &[u32]) -> usize {
        let mut asked = asked.lock().unwrap();
        asked.push((organization_id, keys.to_vec()));
        asked.len()
    }

    #[test]
    fn a_second_statement_starts_only_when_the_waiting_calls_do_not_fit_the_next() {
        assert!(start_runner(0, true));
        assert!(!start_runner(1, true));
        assert!(start_runner(1, false));
        assert!(!start_runner(most_running(), false));

        let waiting = |organizations: &[Uuid]| -> VecDeque<Waiter<u32, u32>> {
            let waiter = |(key, organization_id): (usize, &Uuid)| Waiter {
                organization_id: *organization_id,
                key: key as u32,
                answer: oneshot::channel().0,
            };
            organizations.iter().enumerate().map(waiter).collect()
        };
        let (acme, globex) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(fit_one_statement(&waiting(&[acme; SLOTS - 1])));
        assert!(!fit_one_statement(&waiting(&[acme; SLOTS])));
        assert!(
            !fit_one_statement(&waiting(&[acme, globex])),
            "two organizations never share a statement"
        );
    }

    /// A fake statement of `u32` keys (a `ReadMany`) named `$name`: `$body`
    /// answers with the values by key, given the organization and the keys.
    macro_rules! statement {
        ($name:ident, |$organization_id:pat_param, $keys:ident| -> $value:ty $body:block) => {
            fn $name(
                _: &Pool,
                $organization_id: Uuid,
                $keys: Vec<u32>,
            ) -> BoxFuture<'_, Result<HashMap<u32, $value>, sqlx::Error>> {
                Box::pin(async move $body)
            }
        };
    }

    /// A read of `key` in a task of its own, to run beside the test's.
    fn spawn_read<V: Clone + Send + 'static>(
        reads: &Arc<SharedRead<u32, V>>,
        pool: &Pool,
        organization_id: Uuid,
        key: u32,
    ) -> tokio::task::JoinHandle<Answer<V>> {
        let (reads, pool) = (reads.clone(), pool.clone());
        tokio::spawn(async move { reads.read(&pool, organization_id, key).await })
    }

    #[tokio::test]
    async fn calls_that_arrive_together_share_statements_and_each_gets_its_own_value() {
        static ASKED: Asked = Mutex::new(Vec::new());
        statement!(tens_of_even_keys, |organization_id, keys| -> u32 {
            note(&ASKED, organization_id, &keys);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(keys
                .iter()
                .filter(|key| *key % 2 == 0)
                .map(|key| (*key, key * 10))
                .collect())
        });
        let (pool, organization_id) = (pool(), Uuid::new_v4());
        let reads = SharedRead::new(tens_of_even_keys);
        // 40 calls, each key asked twice.
        let keys: Vec<u32> = (0..40).map(|call| call % 20).collect();
        let answers = join_all(
            keys.iter()
                .map(|key| reads.read(&pool, organization_id, *key)),
        )
        .await;
        for (key, answer) in keys.iter().zip(answers) {
            let expected = (key % 2 == 0).then_some(key * 10);
            assert_eq!(answer.unwrap(), expected, "key {key}");
        }
        let asked = ASKED.lock().unwrap();
        assert!(
            asked.len() < keys.len() / 2,
            "{} statements: {asked:?}",
            asked.len()
        );
        for (_, keys) in asked.iter() {
            assert!(keys.len() <= SLOTS, "{keys:?}");
            let distinct: std::collections::HashSet<&u32> = keys.iter().collect();
            assert_eq!(distinct.len(), keys.len(), "a key read twice: {keys:?}");
        }
    }

    #[tokio::test]
    async fn a_call_never_joins_a_statement_already_sent() {
        static ASKED: Asked = Mutex::new(Vec::new());
        static RELEASE: Semaphore = Semaphore::const_new(0);
        // Answers each key with the number of its statement.
        statement!(numbered, |organization_id, keys| -> usize {
            let statement = note(&ASKED, organization_id, &keys);
            RELEASE.acquire().await.unwrap().forget();
            Ok(keys.into_iter().map(|key| (key, statement)).collect())
        });
        let (pool, organization_id) = (pool(), Uuid::new_v4());
        let reads = Arc::new(SharedRead::new(numbered));
        let first = spawn_read(&reads, &pool, organization_id, 7);
        while ASKED.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The same key, asked while the first statement runs.
        let second = spawn_read(&reads, &pool, organization_id, 7);
        tokio::time::sleep(Duration::from_millis(20)).await;
        RELEASE.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), Some(1));
        assert_eq!(
            second.await.unwrap().unwrap(),
            Some(2),
            "answered by a statement sent before it asked"
        );
    }

    #[tokio::test]
    async fn a_statement_reads_one_organization() {
        static ASKED: Asked = Mutex::new(Vec::new());
        statement!(organization_of_each, |organization_id, keys| -> Uuid {
            note(&ASKED, organization_id, &keys);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(keys.into_iter().map(|key| (key, organization_id)).collect())
        });
        let pool = pool();
        let organizations = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let reads = SharedRead::new(organization_of_each);
        let calls: Vec<(Uuid, u32)> = (0..30)
            .map(|call| (organizations[call % 3], call as u32 % 4))
            .collect();
        let answers = join_all(
            calls
                .iter()
                .map(|(organization, key)| reads.read(&pool, *organization, *key)),
        )
        .await;
        for ((organization, _), answer) in calls.iter().zip(answers) {
            assert_eq!(answer.unwrap(), Some(*organization));
        }
    }

    #[tokio::test]
    async fn every_call_of_a_failed_statement_gets_its_error_and_later_calls_go_on() {
        static STATEMENTS: AtomicUsize = AtomicUsize::new(0);
        statement!(failing_first, |_, keys| -> u32 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if STATEMENTS.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(sqlx::Error::PoolTimedOut);
            }
            Ok(keys.into_iter().map(|key| (key, key)).collect())
        });
        let (pool, organization_id) = (pool(), Uuid::new_v4());
        let reads = SharedRead::new(failing_first);
        let first = reads.read(&pool, organization_id, 1).await;
        let error = crate::domain::DomainError::from(first.unwrap_err());
        assert!(
            matches!(error, crate::domain::DomainError::Unavailable(_)),
            "{error:?}"
        );
        let later = join_all((0..5).map(|key| reads.read(&pool, organization_id, key))).await;
        assert!(later.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_others_answered() {
        static RELEASE: Semaphore = Semaphore::const_new(0);
        statement!(held, |_, keys| -> u32 {
            RELEASE.acquire().await.unwrap().forget();
            Ok(keys.into_iter().map(|key| (key, key)).collect())
        });
        let (pool, organization_id) = (pool(), Uuid::new_v4());
        let reads = Arc::new(SharedRead::new(held));
        // These wait for the held statements; the first callers give up.
        let given_up = join_all((0..4).map(|key| {
            tokio::time::timeout(
                Duration::from_millis(20),
                reads.read(&pool, organization_id, key),
            )
        }))
        .await;
        assert!(given_up.iter().all(Result::is_err));
        let waiting = spawn_read(&reads, &pool, organization_id, 9);
        RELEASE.add_permits(100);
        assert_eq!(waiting.await.unwrap().unwrap(), Some(9));
        assert_eq!(
            reads.read(&pool, organization_id, 3).await.unwrap(),
            Some(3)
        );
    }
}
