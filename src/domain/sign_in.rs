//! Signing in and passwords (spec §2): Login, Logout, ChangePassword, and
//! redeeming invitation and reset links, plus asking for a reset link.
//! Unknown organization, unknown user and wrong password are one answer
//! after the same work; failures are throttled with backoff, never a hard
//! lock (see `throttle`). Every public input is bounded before any work.

mod throttle;

use std::{net::IpAddr, sync::Arc};

pub use self::throttle::{carry_over as carry_throttle_over, Bucket, ThrottleSettings};
use self::throttle::{Flow, Throttle};
use super::{
    authentication::Authenticator,
    call::{Call, Via},
    caller::{Actor, Caller, Principal, Scopes},
    name::MAX_NAME_CHARS,
    organization::Organization,
    password::{unmet_rules, Password, PasswordHasher, PasswordRule},
    request::RequestId,
    second_factor::{Code, Enrollment, SecondFactors},
    session::SessionOrigin,
    status::UserStatus,
    token::{LinkPurpose, LinkRecord, PresentedToken, Secret, TokenKind},
    unit_of_work::UnitOfWork,
    user::{ensure_may_act_on, ensure_onboarded},
    DomainError, FieldViolation,
};
use crate::store;
use crate::store::Pool;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    pub access_token: Secret,
    pub expire_time: DateTime<Utc>,
    pub scopes: Scopes,
}

/// What a right password of an active user gets: a session, or, for a user
/// with a second factor, a challenge CompleteLogin takes with a code.
#[derive(Debug)]
pub enum LoginOutcome {
    SignedIn(SignedIn),
    Challenged {
        challenge: Secret,
        expire_time: DateTime<Utc>,
    },
}

/// How long a password proves who a user with a second factor is.
const CHALLENGE_TTL: chrono::Duration = chrono::Duration::minutes(5);

/// Whose password a redeemed link set, and, when their organization
/// requires a second factor they do not have, its enrollment: the password
/// page shows it and confirms it with a code and the challenge.
#[derive(Debug)]
pub struct PasswordSet {
    pub organization: String,
    pub username: String,
    pub second_factor: Option<SecondFactorSetup>,
}

/// An enrollment begun for a user who just set their password.
#[derive(Debug)]
pub struct SecondFactorSetup {
    pub challenge: Secret,
    pub enrollment: Enrollment,
}

/// What a link's token stands for, for the pages before a submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Valid,
    Expired,
    Invalid,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Valid => "valid",
            LinkState::Expired => "expired",
            LinkState::Invalid => "invalid",
        }
    }
}

/// A link as its page shows it; who it is for only while it is valid.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub state: LinkState,
    /// The organization's locale when the token is known.
    pub locale: Option<String>,
    pub organization: Option<String>,
    pub username: Option<String>,
}

const WRONG_CREDENTIALS: &str = "wrong organization, username or password";

pub struct SignIn {
    pool: Pool,
    hasher: Arc<PasswordHasher>,
    authenticator: Arc<Authenticator>,
    throttle: Throttle,
    second_factors: Arc<SecondFactors>,
}

impl SignIn {
    pub fn new(
        pool: Pool,
        hasher: Arc<PasswordHasher>,
        authenticator: Arc<Authenticator>,
        throttle: ThrottleSettings,
        counters: crate::metrics::SignInCounters,
        second_factors: Arc<SecondFactors>,
    ) -> Self {
        Self {
            throttle: Throttle::new(pool.clone(), throttle, counters),
            pool,
            hasher,
            authenticator,
            second_factors,
        }
    }

    /// Enrollment of second factors, which CompleteLogin checks.
    pub fn second_factors(&self) -> &SecondFactors {
        &self.second_factors
    }

    /// Drops throttling state and login challenges that no longer matter;
    /// the server calls it now and then.
    pub async fn forget_stale(&self) -> Result<(), DomainError> {
        store::second_factors::forget_expired_challenges(&mut *self.pool.acquire().await?).await?;
        self.throttle.forget_stale().await
    }

    pub async fn login(
        &self,
        organization: &str,
        username: &str,
        password: &Password,
        origin: &SessionOrigin,
    ) -> Result<LoginOutcome, DomainError> {
        let peer = origin.peer_address;
        DomainError::check(
            [
                account_violations(organization, username),
                bounded_password("password", password),
            ]
            .concat(),
        )?;
        // The budget first, so that a flood on one account or from one
        // address cannot fill the hash queue; then a place for the hash.
        let attempt = self
            .throttle
            .attempt(Flow::Login, organization, username, peer)
            .await?;
        let reservation = self.throttle.reserve(attempt).await?;
        let admission = match self.hasher.admit() {
            Ok(admission) => admission,
            Err(refused) => {
                reservation.release().await?;
                return Err(refused);
            }
        };

        let found = self.find_account(organization, username).await?;
        // Unknown users are checked against a dummy hash: the same work, the same answer.
        let stored = found
            .as_ref()
            .and_then(|(_, user)| user.password_hash.as_deref());
        let matches = admission.verify(password, stored).await?;
        let expired = found
            .as_ref()
            .is_some_and(|(_, user)| user.password_expired);
        let second_factor = found.as_ref().is_some_and(|(_, user)| user.second_factor);
        let found = found.map(|(organization, user)| {
            let status = user.status;
            ((organization, user.id), status)
        });
        match login_verdict(found, matches) {
            LoginVerdict::WrongCredentials => {
                reservation.failed(password).await?;
                Err(DomainError::Unauthenticated(WRONG_CREDENTIALS.into()))
            }
            LoginVerdict::NotActive(status) => {
                reservation.succeeded().await?;
                Err(account_not_active(status))
            }
            LoginVerdict::SignedIn((organization, user_id)) => {
                reservation.succeeded().await?;
                let facts = (expired, second_factor);
                self.signed_in(&organization, user_id, username, facts, origin)
                    .await
            }
        }
    }

    /// The right password of an active user: a session, or a challenge for
    /// their second factor; an expired password, or a missing second factor
    /// the organization requires, gets a reset link instead.
    async fn signed_in(
        &self,
        organization: &Organization,
        user_id: Uuid,
        username: &str,
        (expired, second_factor): (bool, bool),
        origin: &SessionOrigin,
    ) -> Result<LoginOutcome, DomainError> {
        let peer = origin.peer_address;
        if expired {
            self.send_expired_password_reset(organization, username, user_id, peer)
                .await?;
            return Err(reset_link_sent(
                "PASSWORD_EXPIRED",
                "your password expired; a link to set a new one was emailed to you",
            ));
        }
        if organization.settings.require_second_factor && !second_factor {
            self.send_expired_password_reset(organization, username, user_id, peer)
                .await?;
            return Err(reset_link_sent(
                "SECOND_FACTOR_REQUIRED",
                "your organization requires a second factor: a link to set it up with your password was emailed to you",
            ));
        }
        if second_factor {
            return self.challenge(organization, user_id).await;
        }
        let signed_in = self.start_session(organization, user_id, origin).await?;
        Ok(LoginOutcome::SignedIn(signed_in))
    }

    /// A short-lived challenge for a user whose password was right and who
    /// has a second factor; only its hash is kept.
    async fn challenge(
        &self,
        organization: &Organization,
        user_id: Uuid,
    ) -> Result<LoginOutcome, DomainError> {
        let challenge = Secret::generate(TokenKind::LoginChallenge);
        let expire_time = Utc::now() + CHALLENGE_TTL;
        store::second_factors::insert_challenge(
            &mut *self.pool.acquire().await?,
            organization.id,
            user_id,
            &challenge.hash(),
            expire_time,
        )
        .await?;
        Ok(LoginOutcome::Challenged {
            challenge,
            expire_time,
        })
    }

    /// CompleteLogin: a challenge from Login with the user's current code
    /// (or a recovery code) starts the session. Wrong codes are throttled
    /// like passwords, on the user's own budget; the challenge stays usable
    /// (until it expires) for a retype, and is used once.
    pub async fn complete_login(
        &self,
        raw_challenge: &str,
        raw_code: &str,
        origin: &SessionOrigin,
    ) -> Result<SignedIn, DomainError> {
        DomainError::check(at_most_bytes("challenge", raw_challenge, MAX_TOKEN_BYTES))?;
        let code = Code::parse("code", raw_code)?;
        let record = self.find_challenge(raw_challenge).await?;
        let record = usable_challenge(record, Utc::now())?;
        let (organization_id, user_id) = (record.organization_id, record.user_id);
        // Before any code is used: a recovery code is not spent on an account
        // that may not sign in.
        let (organization, user) = self.account_of(organization_id, user_id).await?;
        if user.status != UserStatus::Active {
            return Err(account_not_active(user.status));
        }
        let attempt = self
            .throttle
            .user_attempt(Flow::SecondFactor, user_id)
            .await?;
        let reservation = self.throttle.reserve(attempt).await?;
        let mut tx = self.pool.begin().await?;
        if !self
            .second_factors
            .use_code(&mut tx, organization_id, user_id, &code)
            .await?
        {
            drop(tx);
            reservation.failed_code().await?;
            return Err(DomainError::Unauthenticated(
                "wrong code: type the code your authenticator app shows now, or an unused recovery code".into(),
            ));
        }
        if !store::second_factors::use_challenge(&mut tx, organization_id, record.id).await? {
            return Err(challenge_error(ChallengeState::Invalid));
        }
        tx.commit().await?;
        reservation.succeeded().await?;
        self.start_session(&organization, user_id, origin).await
    }

    /// A reset link for a user whose password proved who they are but
    /// expired (or who must enroll a second factor first), throttled like
    /// any reset (silently: the answer is the same).
    async fn send_expired_password_reset(
        &self,
        organization: &Organization,
        username: &str,
        user_id: Uuid,
        peer: Option<IpAddr>,
    ) -> Result<(), DomainError> {
        let attempt = self
            .throttle
            .attempt(Flow::PasswordReset, &organization.name, username, peer)
            .await?;
        if !self.throttle.count_request(&attempt).await? {
            tracing::info!("reset link for an expired password held back by throttling");
            return Ok(());
        }
        store::outbox::enqueue(
            &mut *self.pool.acquire().await?,
            organization.id,
            user_id,
            "PASSWORD_RESET",
        )
        .await?;
        Ok(())
    }

    /// A new access token (a session), and the sign-in time, in one
    /// commit; past the user's session limit (theirs, else the
    /// organization's) their oldest sessions end.
    async fn start_session(
        &self,
        organization: &Organization,
        user_id: uuid::Uuid,
        origin: &SessionOrigin,
    ) -> Result<SignedIn, DomainError> {
        let access_token = Secret::generate(TokenKind::AccessToken);
        let expire_time =
            Utc::now() + chrono::Duration::seconds(organization.settings.access_token_ttl_seconds);
        let mut tx = self.pool.begin().await?;
        // First: its row lock makes the user's concurrent sign-ins count their sessions in turn.
        store::users::touch_last_login(&mut *tx, organization.id, user_id).await?;
        store::access_tokens::insert(
            &mut *tx,
            organization.id,
            user_id,
            &access_token.hash(),
            expire_time,
            origin,
        )
        .await?;
        store::access_tokens::revoke_beyond_limit(&mut *tx, organization.id, user_id).await?;
        tx.commit().await?;
        let scopes = self
            .authenticator
            .user_access()
            .resolve(organization.id, user_id)
            .await?
            .map(|access| access.scopes)
            .unwrap_or_default();
        Ok(SignedIn {
            access_token,
            expire_time,
            scopes,
        })
    }

    /// Revokes the access token of the call.
    pub async fn logout(&self, caller: &Caller) -> Result<(), DomainError> {
        let Principal::User {
            id: user_id,
            access_token_id,
        } = caller.principal
        else {
            return Err(not_signed_in(
                "Logout ends a user's session; revoke API keys with RevokeApiKey",
            ));
        };
        store::access_tokens::revoke(
            &mut *self.pool.acquire().await?,
            caller.organization_id,
            user_id,
            access_token_id,
        )
        .await?;
        Ok(())
    }

    /// Checks the current password, sets the new one and revokes the user's
    /// other access tokens (this one stays valid).
    pub async fn change_password(
        &self,
        call: &Call,
        current: &Password,
        new: &Password,
    ) -> Result<(), DomainError> {
        let Principal::User {
            id: user_id,
            access_token_id,
        } = call.caller.principal
        else {
            return Err(not_signed_in("an API key has no password"));
        };
        DomainError::check(
            [
                bounded_password("current_password", current),
                bounded_password("new_password", new),
            ]
            .concat(),
        )?;
        let attempt = self.throttle.session_attempt(user_id).await?;
        let reservation = self.throttle.reserve(attempt).await?;
        let user = store::users::credentials_by_id(&self.pool, call.organization_id(), user_id)
            .await?
            .ok_or_else(|| DomainError::not_found("user", user_id))?;
        if !self
            .hasher
            .verify(current, user.password_hash.as_deref())
            .await?
        {
            reservation.failed(current).await?;
            return Err(DomainError::invalid(
                "current_password",
                "WRONG_PASSWORD",
                "the current password is not right",
            ));
        }
        reservation.succeeded().await?;
        DomainError::check(unmet_rules(new, &user.username, "new_password"))?;
        let hash = self.hasher.hash(new).await?;
        let organization_id = call.organization_id();
        let mut work = call.begin().await?;
        store::users::set_password(work.tx(), organization_id, user_id, &hash).await?;
        store::access_tokens::revoke_others(work.tx(), organization_id, user_id, access_token_id)
            .await?;
        store::onboarding_tokens::revoke(
            work.tx(),
            organization_id,
            &[user_id],
            &[LinkPurpose::PasswordReset],
        )
        .await?;
        work.record(work.audit_record("user.password.change", "user", user_id));
        work.commit().await
    }

    /// Whether a link's token can still be used; opening a page asks this,
    /// and it uses nothing up.
    pub async fn link_info(
        &self,
        raw_token: &str,
        kind: TokenKind,
    ) -> Result<LinkInfo, DomainError> {
        let mut info = LinkInfo {
            state: LinkState::Invalid,
            locale: None,
            organization: None,
            username: None,
        };
        let Some((_, record)) = self.find_link(raw_token, kind).await? else {
            return Ok(info);
        };
        info.locale = Some(record.organization_locale.clone());
        info.state = link_state(&record, kind, Utc::now());
        if info.state == LinkState::Valid {
            info.organization = Some(record.organization_name);
            info.username = Some(record.username);
        }
        Ok(info)
    }

    /// RegisterPassword (an invitation) or ResetPassword (a reset link):
    /// single use, the policy with every unmet rule, then the new password.
    /// A registration onboards the user; a reset revokes their access tokens.
    pub async fn redeem(
        &self,
        raw_token: &str,
        kind: TokenKind,
        password: &Password,
        password_field: &str,
        request_id: &RequestId,
        via: Via,
    ) -> Result<PasswordSet, DomainError> {
        DomainError::check(
            [
                at_most_bytes("token", raw_token, MAX_TOKEN_BYTES),
                new_password_within_bound(password_field, password),
            ]
            .concat(),
        )?;
        // Checked first without a lock, so that the slow hash holds none.
        let (token, record) = self
            .find_link(raw_token, kind)
            .await?
            .ok_or_else(|| link_error(LinkState::Invalid, kind))?;
        usable(&record, kind)?;
        DomainError::check(unmet_rules(password, &record.username, password_field))?;
        let hash = self.hasher.hash(password).await?;

        let (organization_id, user_id) = (record.organization_id, record.user_id);
        let actor = Actor::User(user_id);
        let request_id = Some(request_id.clone());
        let mut work =
            UnitOfWork::begin_as(&self.pool, organization_id, actor, request_id.clone(), via)
                .await?;
        let locked = store::onboarding_tokens::lock_by_hash(work.tx(), &token.hash)
            .await?
            .ok_or_else(|| link_error(LinkState::Invalid, kind))?;
        usable(&locked, kind)?;
        if locked.username != record.username {
            // The username changed meanwhile: check the rule against the new one.
            DomainError::check(unmet_rules(password, &locked.username, password_field))?;
        }
        store::users::set_password(work.tx(), organization_id, user_id, &hash).await?;
        store::onboarding_tokens::mark_used(work.tx(), organization_id, locked.id).await?;
        store::onboarding_tokens::revoke(work.tx(), organization_id, &[user_id], LinkPurpose::ALL)
            .await?;
        let action = if kind == TokenKind::Invitation {
            "user.password.register"
        } else {
            store::access_tokens::revoke_all_for_users(
                &mut **work.tx(),
                organization_id,
                &[user_id],
            )
            .await?;
            "user.password.reset"
        };
        work.record(work.audit_record(action, "user", user_id));
        work.commit().await?;
        // The password pages write outside the gRPC layer that does this for calls.
        self.authenticator.forget_own_writes();
        let second_factor = self
            .required_enrollment(organization_id, user_id, request_id, via)
            .await?;
        Ok(PasswordSet {
            organization: locked.organization_name,
            username: locked.username,
            second_factor,
        })
    }

    /// Under `require_second_factor`, a user without one who just set their
    /// password: an enrollment begun and a challenge to confirm it with.
    async fn required_enrollment(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
        request_id: Option<RequestId>,
        via: Via,
    ) -> Result<Option<SecondFactorSetup>, DomainError> {
        let (organization, user) = self.account_of(organization_id, user_id).await?;
        if !organization.settings.require_second_factor || user.second_factor {
            return Ok(None);
        }
        let actor = Actor::User(user_id);
        let mut work =
            UnitOfWork::begin_as(&self.pool, organization_id, actor, request_id, via).await?;
        let account = format!("{}/{}", organization.name, user.username);
        let enrollment = self
            .second_factors
            .begin_in(work.tx(), organization_id, user_id, &account)
            .await?;
        work.record(work.audit_record("user.second_factor.begin", "user", user_id));
        work.commit().await?;
        let LoginOutcome::Challenged { challenge, .. } =
            self.challenge(&organization, user_id).await?
        else {
            unreachable!("a challenge is a challenge");
        };
        Ok(Some(SecondFactorSetup {
            challenge,
            enrollment,
        }))
    }

    /// The password page's second step under `require_second_factor`: the
    /// challenge from setting the password confirms the enrollment with a
    /// code; the recovery codes, once.
    pub async fn confirm_required_enrollment(
        &self,
        raw_challenge: &str,
        raw_code: &str,
        request_id: &RequestId,
    ) -> Result<Vec<String>, DomainError> {
        DomainError::check(at_most_bytes("challenge", raw_challenge, MAX_TOKEN_BYTES))?;
        let record = self.find_challenge(raw_challenge).await?;
        let record = usable_challenge(record, Utc::now())?;
        let (organization_id, user_id) = (record.organization_id, record.user_id);
        let actor = Actor::User(user_id);
        let request_id = Some(request_id.clone());
        // Only the password page asks for this second step.
        let mut work =
            UnitOfWork::begin_as(&self.pool, organization_id, actor, request_id, Via::Pages)
                .await?;
        let codes = self
            .second_factors
            .confirm_in(work.tx(), organization_id, user_id, raw_code)
            .await?;
        if !store::second_factors::use_challenge(work.tx(), organization_id, record.id).await? {
            return Err(challenge_error(ChallengeState::Invalid));
        }
        work.record(work.audit_record("user.second_factor.enroll", "user", user_id));
        work.commit().await?;
        Ok(codes)
    }

    /// A user known by id, with their organization.
    async fn account_of(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> Result<(Organization, super::user::Credentials), DomainError> {
        let organization =
            store::organizations::find(&mut *self.pool.acquire().await?, organization_id)
                .await?
                .ok_or_else(|| DomainError::not_found("organization", organization_id))?;
        let user = store::users::credentials_by_id(&self.pool, organization_id, user_id)
            .await?
            .ok_or_else(|| DomainError::not_found("user", user_id))?;
        Ok((organization, user))
    }

    /// The stored challenge a presented one names, if any.
    async fn find_challenge(
        &self,
        raw_challenge: &str,
    ) -> Result<Option<store::second_factors::ChallengeRecord>, DomainError> {
        let Some(token) =
            PresentedToken::parse_as(raw_challenge.trim(), &[TokenKind::LoginChallenge])
        else {
            return Ok(None);
        };
        Ok(
            store::second_factors::find_challenge(&mut *self.pool.acquire().await?, &token.hash)
                .await?,
        )
    }

    /// The stored link a presented token names, if it is one of `kind`'s.
    async fn find_link(
        &self,
        raw_token: &str,
        kind: TokenKind,
    ) -> Result<Option<(PresentedToken, LinkRecord)>, DomainError> {
        let Some(token) = PresentedToken::parse_as(raw_token.trim(), &[kind]) else {
            return Ok(None);
        };
        let record =
            store::onboarding_tokens::find_by_hash(&mut *self.pool.acquire().await?, &token.hash)
                .await?;
        Ok(record.map(|record| (token, record)))
    }

    /// Asks for a reset link ("Forgot password"); answers the same, after
    /// the same work, whatever exists: the request is queued as typed and
    /// the delivery worker resolves it, sending a reset link to an onboarded
    /// user and a new invitation to an active user who never registered a
    /// password (their way back in when the first one lapsed or was lost).
    /// Requests are held back per account and per address, silently.
    pub async fn request_password_reset(
        &self,
        organization: &str,
        username: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), DomainError> {
        DomainError::check(account_violations(organization, username))?;
        let attempt = self
            .throttle
            .attempt(Flow::PasswordReset, organization, username, peer)
            .await?;
        if !self.throttle.count_request(&attempt).await? {
            tracing::info!("password reset request held back by throttling");
            return Ok(());
        }
        store::password_reset_requests::insert(&self.pool, organization.trim(), username.trim())
            .await?;
        Ok(())
    }

    /// SendPasswordReset: queues a reset link for an onboarded user the
    /// caller may act on, counted on the account's reset budget as a
    /// "Forgot password" from an unfamiliar address is (so neither can be
    /// used to flood a mailbox); a held-back request is refused, not hidden,
    /// since the administrator is told what happened.
    pub async fn send_password_reset(&self, call: &Call, user_id: Uuid) -> Result<(), DomainError> {
        let caller = &call.caller;
        let mut work = call.begin().await?;
        let user = ensure_may_act_on(work.tx(), caller, user_id, None).await?;
        ensure_onboarded(&user)?;
        let organization = store::organizations::find(&mut **work.tx(), caller.organization_id)
            .await?
            .ok_or_else(|| DomainError::not_found("organization", caller.organization_id))?;
        let attempt = self
            .throttle
            .attempt(
                Flow::PasswordReset,
                &organization.name,
                &user.username,
                None,
            )
            .await?;
        self.throttle
            .count_or_refuse(&attempt)
            .await
            .map_err(|error| match error {
                DomainError::Throttled { retry_after, .. } => DomainError::Throttled {
                    retry_after,
                    message: format!(
                        "reset links were sent to this user lately; try again in {} s",
                        retry_after.as_secs().max(1)
                    ),
                },
                other => other,
            })?;
        store::outbox::enqueue(
            &mut **work.tx(),
            caller.organization_id,
            user_id,
            "PASSWORD_RESET",
        )
        .await?;
        work.record(work.audit_record("user.password_reset.send", "user", user_id));
        work.commit().await
    }

    /// The user a typed organization and username name, if both exist.
    async fn find_account(
        &self,
        organization: &str,
        username: &str,
    ) -> Result<Option<(Organization, super::user::Credentials)>, DomainError> {
        let Some(org) =
            store::organizations::find_by_name(&mut *self.pool.acquire().await?, organization)
                .await?
        else {
            return Ok(None);
        };
        Ok(
            store::users::credentials_by_username(&self.pool, org.id, username)
                .await?
                .map(|user| (org, user)),
        )
    }
}

/// The longest organization name (what an organization may be named).
const MAX_ORGANIZATION_CHARS: usize = MAX_NAME_CHARS;
/// The longest username: an email address (§1).
const MAX_USERNAME_CHARS: usize = 254;
/// Passwords are hashed whole; nobody types more than this.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Link tokens are about 50 characters; room to spare.
const MAX_TOKEN_BYTES: usize = 128;

/// What is wrong with a typed organization and username, before any work.
fn account_violations(organization: &str, username: &str) -> Vec<FieldViolation> {
    [
        bounded("organization", organization, MAX_ORGANIZATION_CHARS),
        bounded("username", username, MAX_USERNAME_CHARS),
    ]
    .concat()
}

/// A required sign-in field of at most `max` characters around which only
/// some spaces may stand (a byte bound, four per character), without control
/// characters (PostgreSQL cannot store NUL).
fn bounded(field: &str, value: &str, max: usize) -> Vec<FieldViolation> {
    let trimmed = value.trim();
    let violation = if trimmed.is_empty() {
        Some(("REQUIRED", "required".to_owned()))
    } else if value.len() > 4 * max || trimmed.chars().count() > max {
        Some(("TOO_LONG", format!("must be at most {max} characters")))
    } else if trimmed.chars().any(char::is_control) {
        Some((
            "CONTROL_CHARACTER",
            "must not contain control characters".to_owned(),
        ))
    } else {
        None
    };
    violation
        .map(|(code, description)| FieldViolation::new(field, code, description))
        .into_iter()
        .collect()
}

/// A required password of at most `MAX_PASSWORD_BYTES`.
fn bounded_password(field: &str, password: &Password) -> Vec<FieldViolation> {
    if password.expose().trim().is_empty() {
        return vec![FieldViolation::new(field, "REQUIRED", "required")];
    }
    at_most_bytes(field, password.expose(), MAX_PASSWORD_BYTES)
}

/// A new password past `MAX_PASSWORD_BYTES` breaks the policy's length
/// rule anyway: refused early, in the policy's words (the pages mark the
/// rule). An empty or weak one is the policy's to describe, later.
fn new_password_within_bound(field: &str, password: &Password) -> Vec<FieldViolation> {
    if password.expose().len() <= MAX_PASSWORD_BYTES {
        return Vec::new();
    }
    let rule = PasswordRule::MaxLength;
    vec![FieldViolation::new(field, rule.code(), rule.description())]
}

/// `TOO_LONG` past `max` bytes; what else is wrong is for later checks to say.
fn at_most_bytes(field: &str, value: &str, max: usize) -> Vec<FieldViolation> {
    if value.len() <= max {
        return Vec::new();
    }
    vec![FieldViolation::new(
        field,
        "TOO_LONG",
        format!("must be at most {max} bytes"),
    )]
}

/// The answer to a login once the account is looked up and the password
/// checked. Only wrong credentials count as a failure for the throttle: an
/// account that is not active was still signed into with the right password.
#[derive(Debug, PartialEq, Eq)]
enum LoginVerdict<A> {
    WrongCredentials,
    NotActive(UserStatus),
    SignedIn(A),
}

/// `found` is the account with its status, `None` when the organization or
/// the user is unknown (indistinguishable from a wrong password).
fn login_verdict<A>(found: Option<(A, UserStatus)>, password_matches: bool) -> LoginVerdict<A> {
    match found {
        Some((account, UserStatus::Active)) if password_matches => LoginVerdict::SignedIn(account),
        Some((_, status)) if password_matches => LoginVerdict::NotActive(status),
        _ => LoginVerdict::WrongCredentials,
    }
}

/// What a stored link is worth at `now`: links are single use, the newest
/// of their purpose, and short-lived.
fn link_state(record: &LinkRecord, kind: TokenKind, now: DateTime<Utc>) -> LinkState {
    if Some(record.purpose) != kind.link_purpose()
        || record.used_time.is_some()
        || record.revoke_time.is_some()
    {
        return LinkState::Invalid;
    }
    if record.expire_time <= now {
        return LinkState::Expired;
    }
    // A reset link of a user who is no longer onboarded (cannot happen today) is void.
    if kind == TokenKind::PasswordReset && !record.onboarded {
        return LinkState::Invalid;
    }
    LinkState::Valid
}

fn usable(record: &LinkRecord, kind: TokenKind) -> Result<(), DomainError> {
    match link_state(record, kind, Utc::now()) {
        LinkState::Valid => Ok(()),
        state => Err(link_error(state, kind)),
    }
}

fn link_error(state: LinkState, kind: TokenKind) -> DomainError {
    match state {
        LinkState::Expired => DomainError::FailedPrecondition {
            reason: "TOKEN_EXPIRED",
            message: if kind == TokenKind::Invitation {
                "this link expired; ask for a new one with \"Forgot password\" (company and username), or ask your administrator".into()
            } else {
                "this link expired; ask for a new password reset".into()
            },
        },
        _ => DomainError::invalid(
            "token",
            "INVALID_TOKEN",
            "this link is not valid: it was already used, a newer one was sent, or it was copied incompletely",
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeState {
    Expired,
    Invalid,
}

/// A stored challenge that can still be completed at `now`.
fn usable_challenge(
    record: Option<store::second_factors::ChallengeRecord>,
    now: DateTime<Utc>,
) -> Result<store::second_factors::ChallengeRecord, DomainError> {
    match record {
        Some(record) if record.used_time.is_none() && record.expire_time > now => Ok(record),
        Some(record) if record.used_time.is_none() => Err(challenge_error(ChallengeState::Expired)),
        _ => Err(challenge_error(ChallengeState::Invalid)),
    }
}

fn challenge_error(state: ChallengeState) -> DomainError {
    match state {
        ChallengeState::Expired => DomainError::FailedPrecondition {
            reason: "CHALLENGE_EXPIRED",
            message: "this sign-in took too long; sign in again with your password".into(),
        },
        ChallengeState::Invalid => DomainError::invalid(
            "challenge",
            "INVALID_CHALLENGE",
            "not a challenge from Login, or already used; sign in again with your password",
        ),
    }
}

/// A right password that does not sign in yet; a reset link was queued.
fn reset_link_sent(reason: &'static str, message: &str) -> DomainError {
    DomainError::FailedPrecondition {
        reason,
        message: message.into(),
    }
}

fn account_not_active(status: UserStatus) -> DomainError {
    let why = match status {
        UserStatus::Pending | UserStatus::Expired => "you have not registered a password yet",
        UserStatus::OnVacation => "it is marked on vacation",
        _ => "it was deactivated",
    };
    DomainError::FailedPrecondition {
        reason: "ACCOUNT_NOT_ACTIVE",
        message: format!("your account is not active ({why}); ask your administrator"),
    }
}

fn not_signed_in(message: &str) -> DomainError {
    DomainError::FailedPrecondition {
        reason: "NOT_A_USER_SESSION",
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn invitation(now: DateTime<Utc>) -> LinkRecord {
        LinkRecord {
            organization_id: Uuid::nil(),
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            purpose: LinkPurpose::Invitation,
            expire_time: now + chrono::Duration::hours(1),
            used_time: None,
            revoke_time: None,
            organization_name: "acme".into(),
            organization_locale: "en".into(),
            username: "ada".into(),
            onboarded: false,
        }
    }

    #[test]
    fn only_the_right_password_of_an_active_account_signs_in() {
        use LoginVerdict::*;
        let cases = [
            (None, false, WrongCredentials),
            (None, true, WrongCredentials),
            (Some(UserStatus::Active), false, WrongCredentials),
            (Some(UserStatus::Pending), false, WrongCredentials),
            (Some(UserStatus::Active), true, SignedIn("ada")),
            (
                Some(UserStatus::OnVacation),
                true,
                NotActive(UserStatus::OnVacation),
            ),
            (
                Some(UserStatus::Expired),
                true,
                NotActive(UserStatus::Expired),
            ),
        ];
        for (status, matches, expected) in cases {
            let found = status.map(|status| ("ada", status));
            assert_eq!(
                login_verdict(found, matches),
                expected,
                "{status:?} {matches}"
            );
        }
    }

    #[test]
    fn a_link_is_valid_once_for_its_purpose_until_it_expires() {
        let now = Utc::now();
        let fresh = invitation(now);
        assert_eq!(
            link_state(&fresh, TokenKind::Invitation, now),
            LinkState::Valid
        );
        let cases = [
            (TokenKind::PasswordReset, fresh.clone(), LinkState::Invalid),
            (
                TokenKind::Invitation,
                LinkRecord {
                    used_time: Some(now),
                    ..fresh.clone()
                },
                LinkState::Invalid,
            ),
            (
                TokenKind::Invitation,
                LinkRecord {
                    revoke_time: Some(now),
                    ..fresh.clone()
                },
                LinkState::Invalid,
            ),
            (
                TokenKind::Invitation,
                LinkRecord {
                    expire_time: now,
                    ..fresh.clone()
                },
                LinkState::Expired,
            ),
            (
                TokenKind::PasswordReset,
                LinkRecord {
                    purpose: LinkPurpose::PasswordReset,
                    ..fresh.clone()
                },
                LinkState::Invalid,
            ),
            (
                TokenKind::PasswordReset,
                LinkRecord {
                    purpose: LinkPurpose::PasswordReset,
                    onboarded: true,
                    ..fresh.clone()
                },
                LinkState::Valid,
            ),
        ];
        for (kind, record, expected) in cases {
            assert_eq!(link_state(&record, kind, now), expected, "{record:?}");
        }
    }
}
