//! Throttling of failed sign-ins in the spirit of smart lockout (spec §2).
//!
//! An account (the typed organization and username, existing or not) has
//! two budgets: one for the addresses it signed in from successfully
//! before (familiar), one for every other address, so that guessing from
//! elsewhere never holds the owner back at a familiar address. Each address
//! has a budget of its own too, which a familiar (account, address) pair
//! never uses. A wrong password seen lately for the account is not counted
//! again against the account, but is against the address (each retype is a
//! hash check). Past its free failures a budget holds attempts back with a
//! doubling delay, never a lock. An attempt reserves its budgets before the
//! password is checked, so that concurrent guesses cannot all be checked.
//!
//! Every key is an HMAC-SHA-256 under a server-side key: fixed-size,
//! whatever was typed, and never the text itself. The key is stored in the
//! same database (`server_secrets`), so the digests do not protect against
//! a reader of a dump: with the key, guesses of addresses, usernames and
//! the wrong passwords typed lately are tested offline at HMAC speed (see
//! migration 0005).

use std::{net::IpAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::{
    domain::{password::Password, DomainError},
    metrics::SignInCounters,
    store::{self, Pool},
};

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures per account budget (familiar, or other addresses) before backoff starts.
    pub user_free: i32,
    /// Failures per address before backoff starts (offices share one).
    pub peer_free: i32,
    /// Reset requests per account before they are held back.
    pub reset_free: i32,
    /// The first hold; doubled with each further failure.
    pub base: Duration,
    pub max: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
    /// How long a wrong password is remembered, so that retyping it is not counted again.
    pub repeat_window: Duration,
    /// Familiar addresses remembered per account (the most recent).
    pub familiar_per_account: i64,
    /// A familiar address not signed in from for this long is forgotten.
    pub familiar_for: Duration,
    /// A reservation older than this belonged to a server that stopped mid-check.
    pub stale_reservation: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            user_free: 5,
            peer_free: 30,
            reset_free: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(15 * 60),
            repeat_window: Duration::from_secs(15 * 60),
            familiar_per_account: 10,
            familiar_for: Duration::from_secs(90 * 24 * 3600),
            stale_reservation: Duration::from_secs(60),
        }
    }
}

/// Which flow an attempt belongs to: each has budgets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Login,
    PasswordReset,
    ChangePassword,
    /// CompleteLogin: a second factor's code after the password.
    SecondFactor,
}

impl Flow {
    fn as_str(self) -> &'static str {
        match self {
            Flow::Login => "login",
            Flow::PasswordReset => "reset",
            Flow::ChangePassword => "change-password",
            Flow::SecondFactor => "second-factor",
        }
    }

    /// Its `flow` label in the sign-in metrics.
    fn label(self) -> &'static str {
        match self {
            Flow::Login => "login",
            Flow::PasswordReset => "password_reset",
            Flow::ChangePassword => "change_password",
            Flow::SecondFactor => "second_factor",
        }
    }
}

/// Keyed digests under the server-side key.
#[derive(Clone)]
struct Digester(Arc<Vec<u8>>);

impl Digester {
    /// HMAC-SHA-256 of the parts, each length-prefixed so that no two
    /// different lists of parts digest alike.
    fn digest(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
}

/// The network an address stands for: IPv4 addresses one by one, IPv6 by
/// /64 (what one subscriber gets, and can rotate through freely).
fn network(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// What one attempt counts against, decided before the password is checked.
pub struct Attempt {
    flow: Flow,
    account: Vec<u8>,
    address: Option<Vec<u8>>,
    /// (key, free failures) of each budget it uses.
    budgets: Vec<(Vec<u8>, i32)>,
    /// The budget a success resets.
    own_budget: Vec<u8>,
    /// The address's budget, when the pair is not familiar.
    peer_budget: Option<Vec<u8>>,
    digester: Digester,
}

pub struct Throttle {
    pool: Pool,
    settings: Arc<ThrottleSettings>,
    secret: OnceCell<Digester>,
    counters: SignInCounters,
}

impl Throttle {
    pub fn new(pool: Pool, settings: ThrottleSettings, counters: SignInCounters) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            secret: OnceCell::new(),
            counters,
        }
    }

    async fn digester(&self) -> Result<Digester, DomainError> {
        let digester = self
            .secret
            .get_or_try_init(|| async {
                store::sign_in_throttle::secret(&mut *self.pool.acquire().await?)
                    .await
                    .map(|secret| Digester(Arc::new(secret)))
            })
            .await?;
        Ok(digester.clone())
    }

    /// An attempt on the typed organization and username (existing or not)
    /// from `peer`: familiar when the account signed in from there lately.
    pub async fn attempt(
        &self,
        flow: Flow,
        organization: &str,
        username: &str,
        peer: Option<IpAddr>,
    ) -> Result<Attempt, DomainError> {
        let digester = self.digester().await?;
        let account = account_key(&digester, organization, username);
        let address = peer.map(|peer| digester.digest(&[b"address", network(peer).as_bytes()]));
        let familiar = match &address {
            Some(address) => {
                store::sign_in_throttle::is_familiar(
                    &self.pool,
                    &account,
                    address,
                    self.settings.familiar_for.as_secs_f64(),
                )
                .await?
            }
            None => false,
        };
        Ok(self.budgets(flow, account, address, familiar, digester))
    }

    /// An attempt by a signed-in user (ChangePassword): one budget, the user's.
    pub async fn session_attempt(&self, user_id: uuid::Uuid) -> Result<Attempt, DomainError> {
        self.user_attempt(Flow::ChangePassword, user_id).await
    }

    /// An attempt on a known user in `flow` (a second factor's code after
    /// the password): one budget, the user's in that flow.
    pub async fn user_attempt(
        &self,
        flow: Flow,
        user_id: uuid::Uuid,
    ) -> Result<Attempt, DomainError> {
        let digester = self.digester().await?;
        let account = digester.digest(&[b"user", user_id.as_bytes()]);
        Ok(self.budgets(flow, account, None, false, digester))
    }

    fn budgets(
        &self,
        flow: Flow,
        account: Vec<u8>,
        address: Option<Vec<u8>>,
        familiar: bool,
        digester: Digester,
    ) -> Attempt {
        let flow_name = flow.as_str().as_bytes();
        let account_free = if flow == Flow::PasswordReset {
            self.settings.reset_free
        } else {
            self.settings.user_free
        };
        let own_budget = budget_key(&digester, flow, familiar, &account);
        let mut budgets = vec![(own_budget.clone(), account_free)];
        let peer_budget = match (&address, familiar) {
            (Some(address), false) => Some(digester.digest(&[flow_name, b"peer", address])),
            _ => None,
        };
        if let Some(peer_budget) = &peer_budget {
            budgets.push((peer_budget.clone(), self.settings.peer_free));
        }
        Attempt {
            flow,
            account,
            address,
            budgets,
            own_budget,
            peer_budget,
            digester,
        }
    }

    /// Reserves one check on each budget of the attempt, or THROTTLED:
    /// at once, without a transaction, when a budget holds it back, and
    /// when another attempt holds one of its budgets' rows (never waiting
    /// for it, so that a flood cannot drain the pool behind a hot row).
    pub async fn reserve(&self, attempt: Attempt) -> Result<Reservation, DomainError> {
        let (mut tx, buckets) = self.lock_within_budgets(&attempt).await?;
        store::sign_in_throttle::reserve(&mut tx, &buckets).await?;
        tx.commit().await?;
        Ok(Reservation {
            pool: self.pool.clone(),
            settings: self.settings.clone(),
            counters: self.counters.clone(),
            attempt,
            settled: false,
        })
    }

    /// Counts a request (a password reset) on each budget of the attempt;
    /// `false`, counting nothing, when one of them holds it back.
    /// Like `reserve`, it never waits for a row another request holds.
    pub async fn count_request(&self, attempt: &Attempt) -> Result<bool, DomainError> {
        match self.count_or_refuse(attempt).await {
            Ok(()) => Ok(true),
            Err(DomainError::Throttled { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `count_request` for a caller who is told: `Throttled` when a budget
    /// holds the request back.
    pub async fn count_or_refuse(&self, attempt: &Attempt) -> Result<(), DomainError> {
        let (mut tx, _) = self.lock_within_budgets(attempt).await?;
        let (keys, free) = attempt.keys_and_free();
        store::sign_in_throttle::record_failure(&mut *tx, &self.settings, &keys, &free, false)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The attempt's budgets locked once they let it start: `Throttled`
    /// when one holds it back (read first without a lock, then again under
    /// it) or stays busy.
    async fn lock_within_budgets(
        &self,
        attempt: &Attempt,
    ) -> Result<(store::Transaction<'static>, Vec<Bucket>), DomainError> {
        let locked = self.try_lock_within_budgets(attempt).await;
        if let Err(DomainError::Throttled { .. }) = &locked {
            self.counters.throttled(attempt.flow.label());
        }
        locked
    }

    async fn try_lock_within_budgets(
        &self,
        attempt: &Attempt,
    ) -> Result<(store::Transaction<'static>, Vec<Bucket>), DomainError> {
        let seen = self.peek(attempt).await?;
        self.within_budgets(attempt, &seen)?;
        let Some((tx, buckets)) = self.lock(attempt, &seen).await? else {
            return Err(self.throttled(self.settings.base));
        };
        self.within_budgets(attempt, &buckets)?;
        Ok((tx, buckets))
    }

    /// Drops budgets, wrong passwords and familiar addresses that no longer matter.
    pub async fn forget_stale(&self) -> Result<(), DomainError> {
        let settings = &self.settings;
        store::sign_in_throttle::forget_stale(
            &self.pool,
            settings.forget_after.max(settings.max).as_secs_f64(),
            settings.repeat_window.as_secs_f64(),
            settings.familiar_for.as_secs_f64(),
        )
        .await?;
        Ok(())
    }

    /// The attempt's budgets as they stand, without a lock (missing ones are fresh).
    async fn peek(&self, attempt: &Attempt) -> Result<Vec<Bucket>, DomainError> {
        let (keys, _) = attempt.keys_and_free();
        Ok(store::sign_in_throttle::peek(
            &mut *self.pool.acquire().await?,
            &keys,
            self.settings.forget_after.as_secs_f64(),
            self.settings.stale_reservation.as_secs_f64(),
        )
        .await?)
    }

    /// The attempt's budgets locked in a transaction (those missing from
    /// `seen` created), or `None` when another attempt kept one of them
    /// busy. A reservation holds its rows for a few milliseconds, so a busy
    /// row is tried again a few times after a short pause, with no
    /// connection held meanwhile, before it counts as held back.
    async fn lock(
        &self,
        attempt: &Attempt,
        seen: &[Bucket],
    ) -> Result<Option<(store::Transaction<'static>, Vec<Bucket>)>, DomainError> {
        const TRIES: u32 = 4;
        let (keys, _) = attempt.keys_and_free();
        let missing: Vec<Vec<u8>> = keys
            .iter()
            .filter(|key| !seen.iter().any(|bucket| bucket.key == **key))
            .cloned()
            .collect();
        for tried in 1..=TRIES {
            let mut tx = self.pool.begin().await?;
            let locked = store::sign_in_throttle::lock(
                &mut tx,
                &keys,
                &missing,
                self.settings.forget_after.as_secs_f64(),
                self.settings.stale_reservation.as_secs_f64(),
            )
            .await?;
            if let Some(buckets) = locked {
                return Ok(Some((tx, buckets)));
            }
            drop(tx);
            if tried < TRIES {
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 2..10 * u64::from(tried));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
        Ok(None)
    }

    fn throttled(&self, wait: Duration) -> DomainError {
        DomainError::Throttled {
            retry_after: wait,
            message: format!(
                "too many failed attempts; try again in {} s",
                wait.as_secs().max(1)
            ),
        }
    }

    /// Whether every budget lets one more check start now: freely while its
    /// failures and the checks in flight stay under its free failures; past
    /// them, one check at a time once the backoff has passed.
    fn within_budgets(&self, attempt: &Attempt, buckets: &[Bucket]) -> Result<(), DomainError> {
        let now = Utc::now();
        let mut wait = None::<Duration>;
        for bucket in buckets {
            let free = attempt
                .budgets
                .iter()
                .find(|(key, _)| *key == bucket.key)
                .map_or(0, |(_, free)| *free);
            let held = if let Some(until) = bucket.blocked_until.filter(|until| *until > now) {
                Some((until - now).to_std().unwrap_or_default())
            } else if bucket.failures + bucket.in_flight >= free && bucket.in_flight > 0 {
                // Past the free failures with a check still running: its outcome decides.
                Some(self.settings.base)
            } else {
                None
            };
            wait = wait.max(held);
        }
        match wait {
            None => Ok(()),
            Some(wait) => Err(self.throttled(wait)),
        }
    }
}

/// An account: the typed organization and username, ignoring case.
fn account_key(digester: &Digester, organization: &str, username: &str) -> Vec<u8> {
    digester.digest(&[
        b"account",
        organization.trim().to_lowercase().as_bytes(),
        username.trim().to_lowercase().as_bytes(),
    ])
}

/// An account's budget in a flow, for its familiar addresses or the others.
fn budget_key(digester: &Digester, flow: Flow, familiar: bool, account: &[u8]) -> Vec<u8> {
    let which: &[u8] = if familiar { b"familiar" } else { b"other" };
    digester.digest(&[flow.as_str().as_bytes(), which, account])
}

/// Carries the throttle state of an organization's accounts, keyed by the
/// typed organization name, over to its new name: their familiar addresses
/// and their budgets in the flows that type it (a held-back account stays
/// held back). Wrong passwords seen lately are not carried (their digests
/// need the password): a retype soon after a rename counts again.
pub async fn carry_over(
    tx: &mut store::Transaction<'_>,
    old_name: &str,
    new_name: &str,
    usernames: &[String],
) -> Result<(), DomainError> {
    if old_name.trim().to_lowercase() == new_name.trim().to_lowercase() {
        return Ok(());
    }
    let digester = Digester(Arc::new(store::sign_in_throttle::secret(&mut **tx).await?));
    let (mut old_accounts, mut new_accounts) = (Vec::new(), Vec::new());
    let (mut old_budgets, mut new_budgets) = (Vec::new(), Vec::new());
    for username in usernames {
        let old = account_key(&digester, old_name, username);
        let new = account_key(&digester, new_name, username);
        for flow in [Flow::Login, Flow::PasswordReset] {
            for familiar in [true, false] {
                old_budgets.push(budget_key(&digester, flow, familiar, &old));
                new_budgets.push(budget_key(&digester, flow, familiar, &new));
            }
        }
        old_accounts.push(old);
        new_accounts.push(new);
    }
    store::sign_in_throttle::move_familiar_addresses(tx, &old_accounts, &new_accounts).await?;
    store::sign_in_throttle::move_budgets(tx, &old_budgets, &new_budgets).await?;
    Ok(())
}

impl Attempt {
    fn keys_and_free(&self) -> (Vec<Vec<u8>>, Vec<i32>) {
        self.budgets.iter().cloned().unzip()
    }
}

/// Budget reserved for one password check. Settle it with its outcome;
/// dropped unsettled (an error, a cancelled call) it is given back.
pub struct Reservation {
    pool: Pool,
    settings: Arc<ThrottleSettings>,
    counters: SignInCounters,
    attempt: Attempt,
    settled: bool,
}

impl Reservation {
    /// The password was right: the budget it used starts afresh and the
    /// address becomes familiar to the account.
    pub async fn succeeded(mut self) -> Result<(), DomainError> {
        let (keys, _) = self.attempt.keys_and_free();
        store::sign_in_throttle::release_and_reset(&self.pool, &keys, &self.attempt.own_budget)
            .await?;
        self.settled = true;
        if let (Flow::Login, Some(address)) = (self.attempt.flow, &self.attempt.address) {
            store::sign_in_throttle::remember_familiar(
                &self.pool,
                &self.attempt.account,
                address,
                self.settings.familiar_per_account,
            )
            .await?;
        }
        Ok(())
    }

    /// A wrong second-factor code: always counted. A code wrong now may be
    /// right at the next time step, so a repeated code is a new guess (a
    /// repeated password is not, and `failed` lets it pass).
    pub async fn failed_code(mut self) -> Result<(), DomainError> {
        self.counters.failed(self.attempt.flow.label());
        let (keys, free) = self.attempt.keys_and_free();
        self.count_failure(&keys, &free).await?;
        self.settled = true;
        Ok(())
    }

    /// The password was wrong (or the account unknown): counted. The same
    /// password tried on this account lately counts once for the account,
    /// but every time for the address (a pair that is not familiar): each
    /// retype cost a hash check, so an address cannot get unbounded checks
    /// by retyping one password on a few made-up usernames.
    pub async fn failed(mut self, password: &Password) -> Result<(), DomainError> {
        self.counters.failed(self.attempt.flow.label());
        let attempt = &self.attempt;
        let digest = attempt.digester.digest(&[
            b"wrong-password",
            &attempt.account,
            password.expose().as_bytes(),
        ]);
        let (keys, free) = attempt.keys_and_free();
        if store::sign_in_throttle::first_sighting(
            &self.pool,
            &digest,
            self.settings.repeat_window.as_secs_f64(),
        )
        .await?
        {
            self.count_failure(&keys, &free).await?;
        } else {
            let (peer, account): (Vec<_>, Vec<_>) = attempt
                .budgets
                .iter()
                .cloned()
                .partition(|(key, _)| Some(key) == attempt.peer_budget.as_ref());
            let (peer_keys, peer_free): (Vec<_>, Vec<_>) = peer.into_iter().unzip();
            let account_keys: Vec<_> = account.into_iter().map(|(key, _)| key).collect();
            if !peer_keys.is_empty() {
                self.count_failure(&peer_keys, &peer_free).await?;
            }
            store::sign_in_throttle::release(&mut *self.pool.acquire().await?, &account_keys)
                .await?;
        }
        self.settled = true;
        Ok(())
    }

    /// A failure counted on each of `keys` (`free` failures allowed each),
    /// giving back the reservation this check held on it.
    async fn count_failure(&self, keys: &[Vec<u8>], free: &[i32]) -> Result<(), DomainError> {
        let reserved = true;
        store::sign_in_throttle::record_failure(
            &mut *self.pool.acquire().await?,
            &self.settings,
            keys,
            free,
            reserved,
        )
        .await?;
        Ok(())
    }

    /// The check did not happen (the hash pool was full): nothing is counted.
    pub async fn release(mut self) -> Result<(), DomainError> {
        let (keys, _) = self.attempt.keys_and_free();
        store::sign_in_throttle::release(&mut *self.pool.acquire().await?, &keys).await?;
        self.settled = true;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (keys, _) = self.attempt.keys_and_free();
        let pool = self.pool.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let released = async {
                    store::sign_in_throttle::release(&mut *pool.acquire().await?, &keys).await
                };
                if let Err(error) = released.await {
                    tracing::warn!(error = %error, "cannot give back a sign-in reservation");
                }
            });
        }
    }
}

/// One budget as an attempt sees it: failures already forgotten when
/// `forget_after` passed, and reservations of a server that died dropped.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub key: Vec<u8>,
    pub failures: i32,
    pub in_flight: i32,
    pub blocked_until: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_subscriber_count_as_one_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        assert_eq!(network(a), network(b));
        assert_eq!(network("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_ne!(
            network("10.0.0.1".parse().unwrap()),
            network("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn digests_are_fixed_size_and_tell_parts_apart() {
        let digester = Digester(Arc::new(b"key".to_vec()));
        let long = "x".repeat(9_000);
        assert_eq!(digester.digest(&[long.as_bytes()]).len(), 32);
        assert_ne!(
            digester.digest(&[b"ab", b"c"]),
            digester.digest(&[b"a", b"bc"])
        );
    }
}
