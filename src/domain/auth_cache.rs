//! What authentication keeps in memory: the API keys and access tokens it
//! found by hash, and users' access. Entries live until the database says
//! they changed (see `store::auth_changes`), so a revocation, a
//! deactivation or a lost Admin group made on any server reaches this one as
//! soon as the notification does. Without a listening connection nothing is
//! kept: a notification missed while it was down would leave a revoked key
//! valid.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use uuid::Uuid;

use super::{
    api_key::ApiKey,
    authentication::UserAccess,
    token::{AccessTokenRecord, TokenHash},
};
use crate::store::auth_changes::{AuthChange, AuthChanges};
use crate::store::Pool;

/// Entries of each kind kept at most; past it the oldest half is dropped.
const CAPACITY: usize = 100_000;
/// A listening connection silent this long is probed; one that does not
/// answer within it again is lost.
const ALIVE_WITHIN: Duration = Duration::from_millis(400);
/// How long to wait before listening again after a failure.
const LISTEN_RETRY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub enum Credential {
    ApiKey(Arc<ApiKey>),
    AccessToken(Arc<AccessTokenRecord>),
}

/// When a read began, as the cache counts: a read that began before a
/// change was forgotten may have seen the old row, and is not kept.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart(Option<u64>);

pub struct AuthCache {
    state: Mutex<State>,
    /// The longest an entry is reused, notification or not.
    ttl: Duration,
}

#[derive(Default)]
struct State {
    /// A connection listens to changes: entries may be kept.
    listening: bool,
    /// Bumped whenever anything is forgotten.
    generation: u64,
    credentials: Entries<TokenHash, Credential>,
    users: Entries<(Uuid, Uuid), UserAccess>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            state: Mutex::default(),
            ttl,
        }
    }

    /// Call before reading what may be kept.
    pub fn read_start(&self) -> ReadStart {
        let state = self.lock();
        ReadStart(state.listening.then_some(state.generation))
    }

    pub fn credential(&self, hash: &TokenHash) -> Option<Credential> {
        self.lock().credentials.get(hash, self.ttl)
    }

    pub fn keep_credential(&self, start: ReadStart, hash: &TokenHash, credential: Credential) {
        let mut state = self.lock();
        if state.still_current(start) {
            state.credentials.keep(hash.clone(), credential);
        }
    }

    pub fn user(&self, organization_id: Uuid, user_id: Uuid) -> Option<UserAccess> {
        self.lock().users.get(&(organization_id, user_id), self.ttl)
    }

    pub fn keep_user(
        &self,
        start: ReadStart,
        organization_id: Uuid,
        user_id: Uuid,
        access: UserAccess,
    ) {
        let mut state = self.lock();
        if state.still_current(start) {
            state.users.keep((organization_id, user_id), access);
        }
    }

    pub fn forget(&self, change: &AuthChange) {
        let mut state = self.lock();
        state.generation += 1;
        match change {
            AuthChange::Credential(hash) => state.credentials.remove(hash),
            AuthChange::User {
                organization_id,
                user_id,
            } => state.users.remove(&(*organization_id, *user_id)),
            AuthChange::Organization(organization_id) => state
                .users
                .retain(|(organization, _)| organization != organization_id),
            AuthChange::Everything => state.forget_all(),
        }
    }

    /// Listening (`true`) or not: either way what was kept is forgotten, as
    /// changes may have been missed.
    fn set_listening(&self, listening: bool) {
        let mut state = self.lock();
        state.listening = listening;
        state.forget_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned cache is still a valid cache: every entry was written whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn still_current(&self, start: ReadStart) -> bool {
        self.listening && start.0 == Some(self.generation)
    }

    fn forget_all(&mut self) {
        self.generation += 1;
        self.credentials = Entries::default();
        self.users = Entries::default();
    }
}

/// Follows the changes for as long as the server runs: keeps the cache
/// while a connection listens, and bypasses it while none does.
pub async fn follow_changes(cache: Arc<AuthCache>, pool: Pool) -> anyhow::Result<()> {
    loop {
        match AuthChanges::listen(&pool).await {
            Ok(mut changes) => {
                cache.set_listening(true);
                let lost = loop {
                    match changes.next(ALIVE_WITHIN).await {
                        Ok(change) => cache.forget(&change),
                        Err(error) => break error,
                    }
                };
                cache.set_listening(false);
                tracing::warn!(
                    error = %lost,
                    "lost the connection listening to auth changes; authenticating from the database"
                );
            }
            Err(error) => {
                tracing::debug!(error = %error, "cannot listen to auth changes yet");
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        }
    }
}

/// A bounded map of entries with the time each was kept.
struct Entries<K, V>(HashMap<K, (Instant, V)>);

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Hash + Eq, V: Clone> Entries<K, V> {
    fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        self.0
            .get(key)
            .filter(|(kept, _)| kept.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    fn keep(&mut self, key: K, value: V) {
        if self.0.len() >= CAPACITY {
            let mut times: Vec<Instant> = self.0.values().map(|(kept, _)| *kept).collect();
            let (_, median, _) = times.select_nth_unstable(CAPACITY / 2);
            let median = *median;
            self.0.retain(|_, (kept, _)| *kept > median);
        }
        self.0.insert(key, (Instant::now(), value));
    }

    fn remove(&mut self, key: &K) {
        self.0.remove(key);
    }

    fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.0.retain(|key, _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Credential {
        Credential::AccessToken(Arc::new(AccessTokenRecord {
            id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            expire_time: chrono::Utc::now(),
            revoke_time: None,
            last_used_time: None,
        }))
    }

    #[test]
    fn nothing_is_kept_while_no_connection_listens() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let hash = TokenHash(vec![1]);
        cache.keep_credential(cache.read_start(), &hash, key());
        assert!(cache.credential(&hash).is_none());
        cache.set_listening(true);
        cache.keep_credential(cache.read_start(), &hash, key());
        assert!(cache.credential(&hash).is_some());
        cache.set_listening(false);
        assert!(
            cache.credential(&hash).is_none(),
            "forgotten when the listener is lost"
        );
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_kept() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cache.set_listening(true);
        let hash = TokenHash(vec![1]);
        let start = cache.read_start();
        cache.forget(&AuthChange::Credential(TokenHash(vec![2])));
        cache.keep_credential(start, &hash, key());
        assert!(cache.credential(&hash).is_none());
    }

    #[test]
    fn a_change_forgets_its_entry_and_an_organization_change_its_users() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cache.set_listening(true);
        let hash = TokenHash(vec![1]);
        cache.keep_credential(cache.read_start(), &hash, key());
        cache.forget(&AuthChange::Credential(hash.clone()));
        assert!(cache.credential(&hash).is_none());

        let (organization, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (user, stranger) = (Uuid::new_v4(), Uuid::new_v4());
        let access = UserAccess::from_groups(true, Vec::new());
        cache.keep_user(cache.read_start(), organization, user, access.clone());
        cache.keep_user(cache.read_start(), other, stranger, access);
        cache.forget(&AuthChange::Organization(organization));
        assert!(cache.user(organization, user).is_none());
        assert!(cache.user(other, stranger).is_some());
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = AuthCache::new(Duration::from_millis(10));
        cache.set_listening(true);
        let hash = TokenHash(vec![1]);
        cache.keep_credential(cache.read_start(), &hash, key());
        std::thread::sleep(Duration::from_millis(20));
        assert!(cache.credential(&hash).is_none());
    }
}
