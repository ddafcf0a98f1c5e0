//! Passwords: the product's policy, and Argon2id hashing on a bounded pool
//! of low-priority threads off the async runtime.

use std::sync::{mpsc, Arc, Mutex};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher as _, SaltString},
    Algorithm, Argon2, Params, PasswordVerifier, Version,
};
use thread_priority::ThreadPriority;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{DomainError, FieldViolation};

/// Longer passwords are refused: hashing them costs the same, but there is
/// no reason to accept megabytes.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A password as typed. `Debug` never prints it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// One rule of the policy, as the pages and the API list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRule {
    Uppercase,
    Lowercase,
    Special,
    Digits,
    NotUsername,
    MaxLength,
}

impl PasswordRule {
    pub const ALL: [PasswordRule; 6] = [
        PasswordRule::Uppercase,
        PasswordRule::Lowercase,
        PasswordRule::Special,
        PasswordRule::Digits,
        PasswordRule::NotUsername,
        PasswordRule::MaxLength,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PasswordRule::Uppercase => "PASSWORD_UPPERCASE",
            PasswordRule::Lowercase => "PASSWORD_LOWERCASE",
            PasswordRule::Special => "PASSWORD_SPECIAL",
            PasswordRule::Digits => "PASSWORD_DIGITS",
            PasswordRule::NotUsername => "PASSWORD_CONTAINS_USERNAME",
            PasswordRule::MaxLength => "PASSWORD_TOO_LONG",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            PasswordRule::Uppercase => "at least 2 uppercase letters",
            PasswordRule::Lowercase => "at least 4 lowercase letters",
            PasswordRule::Special => "at least 1 special character",
            PasswordRule::Digits => "at least 2 digits",
            PasswordRule::NotUsername => "must not contain the username",
            PasswordRule::MaxLength => "at most 256 characters",
        }
    }

    fn holds(self, password: &str, username: &str) -> bool {
        let count = |test: fn(&char) -> bool| password.chars().filter(test).count();
        match self {
            PasswordRule::Uppercase => count(|c| c.is_uppercase()) >= 2,
            PasswordRule::Lowercase => count(|c| c.is_lowercase()) >= 4,
            PasswordRule::Special => count(|c| !c.is_alphanumeric()) >= 1,
            PasswordRule::Digits => count(char::is_ascii_digit) >= 2,
            PasswordRule::NotUsername => {
                username.is_empty() || !password.to_lowercase().contains(&username.to_lowercase())
            }
            PasswordRule::MaxLength => password.chars().count() <= MAX_PASSWORD_CHARS,
        }
    }
}

/// Every unmet rule of the policy, as violations of `field`; empty when the
/// password is acceptable for `username`.
pub fn unmet_rules(password: &Password, username: &str, field: &str) -> Vec<FieldViolation> {
    PasswordRule::ALL
        .into_iter()
        .filter(|rule| !rule.holds(password.expose(), username))
        .map(|rule| FieldViolation::new(field, rule.code(), rule.description()))
        .collect()
}

/// Argon2id at the OWASP parameters (19 MiB, 2 passes, 1 lane) on
/// `workers` dedicated threads. At most `queue` more calls wait; beyond that
/// a call is refused rather than slowing every other call.
///
/// The threads run at the lowest scheduling priority: a hash takes tens of
/// milliseconds of CPU, and when the cores are busy it is the sign-ins that
/// should wait, not the directory reads and writes other services make.
pub struct PasswordHasher {
    /// One permit per call hashing or waiting; held until its work is done,
    /// even when the caller has gone.
    admitted: Arc<Semaphore>,
    /// Permits in all: the workers and the queue.
    places: usize,
    workers: usize,
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Verified against when the user is unknown, so that the work is the same:
/// a hash at the same parameters of a password nobody has, fixed so that
/// start-up does not pay for one.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$joQgp5Smjx15L63NQVw5cw$DhIvUyQotAPGiuhI0CNlbx+0vgcLNo4qAy+Xlhvo68s";

impl PasswordHasher {
    /// Starts the threads; they end when the hasher is dropped.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || run_jobs(&receiver))?;
        }
        Ok(Self {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            places: workers + queue,
            workers,
            jobs,
        })
    }

    /// One worker per core but one, so that hashing never takes every core
    /// from the other calls; at least one.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1)
    }

    /// Admitted checks beyond those the workers can be running: the ones waiting.
    pub fn queue_depth(&self) -> usize {
        let admitted = self.places - self.admitted.available_permits();
        admitted.saturating_sub(self.workers)
    }

    /// A place among the checks hashing or waiting, or RESOURCE_EXHAUSTED.
    /// Taken before the reads that lead to a check, so that a refusal
    /// under overload costs nothing.
    pub fn admit(&self) -> Result<Admission<'_>, DomainError> {
        let permit = self.admitted.clone().try_acquire_owned().map_err(|_| {
            DomainError::ResourceExhausted(
                "too many password checks in progress; try again in a moment".into(),
            )
        })?;
        Ok(Admission {
            jobs: &self.jobs,
            permit,
        })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, DomainError> {
        self.admit()?.hash(password).await
    }

    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, DomainError> {
        self.admit()?.verify(password, stored).await
    }
}

/// A caller's place in the hashing pool, for one hash or one verify.
pub struct Admission<'a> {
    jobs: &'a mpsc::Sender<Job>,
    permit: OwnedSemaphorePermit,
}

impl Admission<'_> {
    pub async fn hash(self, password: &Password) -> Result<String, DomainError> {
        let password = password.clone();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|error| DomainError::Internal(anyhow::anyhow!("argon2: {error}")))
        })
        .await?
    }

    /// Whether `password` matches `stored`; with no stored hash, the same
    /// work is done against a dummy and the answer is no.
    pub async fn verify(
        self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, DomainError> {
        let password = password.clone();
        let known = stored.is_some();
        let hash = stored.unwrap_or(DUMMY_HASH).to_owned();
        let matches = self
            .run(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    argon2()
                        .verify_password(password.expose().as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await?;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let permit = self.permit;
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller that went away (cancelled, timed out) needs no answer.
            if answer.is_closed() {
                return;
            }
            let result = work();
            // Freed before answering, so that a caller's next check is admitted.
            drop(permit);
            let _ = answer.send(result);
        });
        let stopped = || DomainError::Internal(anyhow::anyhow!("the password workers stopped"));
        self.jobs.send(job).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())
    }
}

/// A worker thread: lowest priority, then one job at a time until the hasher is dropped.
fn run_jobs(receiver: &Mutex<mpsc::Receiver<Job>>) {
    if let Err(error) = ThreadPriority::Min.set_for_current() {
        tracing::warn!(?error, "could not lower the priority of a password thread");
    }
    loop {
        let job = {
            let Ok(receiver) = receiver.lock() else {
                return;
            };
            receiver.recv()
        };
        match job {
            Ok(job) => job(),
            Err(mpsc::RecvError) => return,
        }
    }
}

fn argon2() -> Argon2<'static> {
    // The OWASP Password Storage Cheat Sheet's first Argon2id configuration.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(password: &str, username: &str) -> Vec<String> {
        unmet_rules(&Password::new(password), username, "password")
            .into_iter()
            .map(|v| v.code.into_owned())
            .collect()
    }

    #[test]
    fn a_password_meeting_every_rule_is_accepted() {
        assert!(codes("ExAmple@2026", "maria").is_empty());
        // The spec's own example has a single uppercase letter: the rule wins.
        assert_eq!(codes("Example@2026", "maria"), ["PASSWORD_UPPERCASE"]);
        assert!(
            codes("ÁÉxyzw 12", "maria").is_empty(),
            "any script, a space is special"
        );
    }

    #[test]
    fn every_unmet_rule_is_listed() {
        assert_eq!(
            codes("abc", ""),
            [
                "PASSWORD_UPPERCASE",
                "PASSWORD_LOWERCASE",
                "PASSWORD_SPECIAL",
                "PASSWORD_DIGITS"
            ]
        );
        assert_eq!(
            codes("XXmaria.silva@acme.com12", "Maria.Silva@acme.com"),
            ["PASSWORD_CONTAINS_USERNAME"]
        );
        let long = format!("AAbbbb!12{}", "x".repeat(300));
        assert_eq!(codes(&long, "maria"), ["PASSWORD_TOO_LONG"]);
    }

    #[test]
    fn passwords_are_never_debug_printed() {
        assert!(!format!("{:?}", Password::new("ExAmple@2026")).contains("ExAmple"));
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_an_unknown_user_never_matches() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let password = Password::new("Example@2026");
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
        let wrong = Password::new("Example@2027");
        assert!(!hasher.verify(&wrong, Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&password, None).await.unwrap());
        // The dummy has the parameters of a real hash, hence the same cost.
        assert_eq!(
            DUMMY_HASH.split('$').nth(3),
            hash.split('$').nth(3),
            "{hash}"
        );
        assert!(!hasher
            .verify(&Password::new("no user has this password"), None)
            .await
            .unwrap());
    }

    #[test]
    fn the_queue_depth_counts_the_admitted_checks_beyond_the_workers() {
        let hasher = PasswordHasher::new(2, 4).unwrap();
        let running: Vec<_> = (0..2).map(|_| hasher.admit().unwrap()).collect();
        assert_eq!(hasher.queue_depth(), 0);
        let mut waiting: Vec<_> = (0..3).map(|_| hasher.admit().unwrap()).collect();
        assert_eq!(hasher.queue_depth(), 3);
        waiting.pop();
        drop(running);
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_instead_of_waiting() {
        let hasher = Arc::new(PasswordHasher::new(1, 0).unwrap());
        let password = Password::new("Example@2026");
        let busy = {
            let (hasher, password) = (hasher.clone(), password.clone());
            tokio::spawn(async move { hasher.hash(&password).await })
        };
        tokio::task::yield_now().await;
        while hasher.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.hash(&password).await,
            Err(DomainError::ResourceExhausted(_))
        ));
        busy.await.unwrap().unwrap();
    }
}
