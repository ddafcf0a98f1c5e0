//! Signing in and passwords (spec §2): Login, Logout, ChangePassword, and
//! redeeming invitation and reset links, plus asking for a reset link.
//! Unknown organization, unknown user and wrong password are one answer
//! after the same work; failures are throttled per (organization, typed
//! username) and per peer with backoff, never a hard lock.

use std::{net::IpAddr, sync::Arc, time::Duration};

use super::{
    audit::AuditRecord,
    authentication::Authenticator,
    caller::{Actor, Caller, Principal, Scopes},
    organization::Organization,
    password::{unmet_rules, Password, PasswordHasher},
    token::{PresentedToken, Secret, TokenKind},
    DomainError, FieldViolation,
};
use crate::store::{self, onboarding_tokens::TokenRecord};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures per (organization, username) before backoff starts.
    pub user_free: i32,
    /// Failures per peer address before backoff starts (offices share one).
    pub peer_free: i32,
    /// Reset requests per (organization, username) before they are held back.
    pub reset_free: i32,
    /// The first hold; doubled with each further failure.
    pub base: Duration,
    pub max: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
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
        }
    }
}

/// A successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    pub access_token: Secret,
    pub expire_time: DateTime<Utc>,
    pub scopes: Scopes,
}

/// Whose password a redeemed link set.
#[derive(Debug)]
pub struct PasswordSet {
    pub organization: String,
    pub username: String,
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
    pool: PgPool,
    hasher: Arc<PasswordHasher>,
    authenticator: Arc<Authenticator>,
    throttle: ThrottleSettings,
}

impl SignIn {
    pub fn new(
        pool: PgPool,
        hasher: Arc<PasswordHasher>,
        authenticator: Arc<Authenticator>,
        throttle: ThrottleSettings,
    ) -> Self {
        Self {
            pool,
            hasher,
            authenticator,
            throttle,
        }
    }

    pub async fn login(
        &self,
        organization: &str,
        username: &str,
        password: &Password,
        peer: Option<IpAddr>,
    ) -> Result<SignedIn, DomainError> {
        DomainError::check(required(&[
            ("organization", organization),
            ("username", username),
            ("password", password.expose()),
        ]))?;
        // A place for the hash first: under overload a refusal reads nothing.
        let admission = self.hasher.admit()?;
        let keys = ThrottleKeys::new("login", organization, username, peer);
        self.check_throttle(&keys.all()).await?;

        let found = self.find_account(organization, username).await?;
        // Unknown users are checked against a dummy hash: the same work, the same answer.
        let stored = found
            .as_ref()
            .and_then(|(_, user)| user.password_hash.as_deref());
        let matches = admission.verify(password, stored).await?;
        let (organization, user) = match found {
            Some(found) if matches => found,
            _ => {
                self.record_failures(&keys, self.throttle.user_free).await?;
                return Err(DomainError::Unauthenticated(WRONG_CREDENTIALS.into()));
            }
        };
        store::sign_in_failures::forget(&self.pool, &keys.user).await?;
        if user.status != "ACTIVE" {
            return Err(account_not_active(&user.status));
        }
        let access_token = Secret::generate(TokenKind::AccessToken);
        let expire_time =
            Utc::now() + chrono::Duration::seconds(organization.settings.access_token_ttl_seconds);
        // One commit for the session and the sign-in time.
        let mut tx = self.pool.begin().await?;
        store::access_tokens::insert(
            &mut *tx,
            organization.id,
            user.id,
            &access_token.hash(),
            expire_time,
        )
        .await?;
        store::users::touch_last_login(&mut *tx, organization.id, user.id).await?;
        tx.commit().await?;
        let scopes = self
            .authenticator
            .user_access()
            .resolve(organization.id, user.id)
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
            access_token_id, ..
        } = caller.principal
        else {
            return Err(not_signed_in(
                "Logout ends a user's session; revoke API keys with RevokeApiKey",
            ));
        };
        store::access_tokens::revoke(&self.pool, caller.organization_id, access_token_id).await?;
        Ok(())
    }

    /// Checks the current password, sets the new one and revokes the user's
    /// other access tokens (this one stays valid).
    pub async fn change_password(
        &self,
        caller: &Caller,
        request_id: &str,
        current: &Password,
        new: &Password,
    ) -> Result<(), DomainError> {
        let Principal::User {
            id: user_id,
            access_token_id,
        } = caller.principal
        else {
            return Err(not_signed_in("an API key has no password"));
        };
        DomainError::check(required(&[
            ("current_password", current.expose()),
            ("new_password", new.expose()),
        ]))?;
        let key = format!("password:{user_id}");
        self.check_throttle(std::slice::from_ref(&key)).await?;
        let user = store::users::credentials_by_id(&self.pool, caller.organization_id, user_id)
            .await?
            .ok_or_else(|| DomainError::not_found("user", user_id))?;
        if !self
            .hasher
            .verify(current, user.password_hash.as_deref())
            .await?
        {
            self.record_failure(&key, self.throttle.user_free).await?;
            return Err(DomainError::invalid(
                "current_password",
                "WRONG_PASSWORD",
                "the current password is not right",
            ));
        }
        DomainError::check(unmet_rules(new, &user.username, "new_password"))?;
        let hash = self.hasher.hash(new).await?;
        let mut tx = self.pool.begin().await?;
        store::users::set_password(&mut tx, caller.organization_id, user_id, &hash).await?;
        store::access_tokens::revoke_others(
            &mut tx,
            caller.organization_id,
            user_id,
            access_token_id,
        )
        .await?;
        store::onboarding_tokens::revoke(
            &mut tx,
            caller.organization_id,
            &[user_id],
            &["PASSWORD_RESET"],
        )
        .await?;
        store::audit::record(
            &mut tx,
            &AuditRecord::new(
                caller.organization_id,
                caller.actor(),
                "user.password.change",
                "user",
                user_id,
            )
            .with_request_id(request_id),
        )
        .await?;
        tx.commit().await?;
        store::sign_in_failures::forget(&self.pool, &key).await?;
        Ok(())
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
        let Some(token) = PresentedToken::parse_as(raw_token.trim(), &[kind]) else {
            return Ok(info);
        };
        let Some(record) = store::onboarding_tokens::find_by_hash(&self.pool, &token.hash).await?
        else {
            return Ok(info);
        };
        info.locale = Some(record.organization_locale.clone());
        info.state = match check_record(&record, kind) {
            Ok(()) => LinkState::Valid,
            Err(state) => state,
        };
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
        request_id: &str,
    ) -> Result<PasswordSet, DomainError> {
        // Checked first without a lock, so that the slow hash holds none.
        let link = self.link_info(raw_token, kind).await?;
        let (LinkState::Valid, Some(username)) = (link.state, link.username) else {
            return Err(link_error(link.state, kind));
        };
        let token = PresentedToken::parse_as(raw_token.trim(), &[kind])
            .ok_or_else(|| link_error(LinkState::Invalid, kind))?;
        DomainError::check(unmet_rules(password, &username, password_field))?;
        let hash = self.hasher.hash(password).await?;

        let mut tx = self.pool.begin().await?;
        let record = store::onboarding_tokens::lock_by_hash(&mut tx, &token.hash)
            .await?
            .ok_or_else(|| link_error(LinkState::Invalid, kind))?;
        check_record(&record, kind).map_err(|state| link_error(state, kind))?;
        if record.username != username {
            // The username changed meanwhile: check the rule against the new one.
            DomainError::check(unmet_rules(password, &record.username, password_field))?;
        }
        let (organization_id, user_id) = (record.organization_id, record.user_id);
        store::users::set_password(&mut tx, organization_id, user_id, &hash).await?;
        store::onboarding_tokens::mark_used(&mut tx, organization_id, record.id).await?;
        store::onboarding_tokens::revoke(
            &mut tx,
            organization_id,
            &[user_id],
            &store::onboarding_tokens::ALL_PURPOSES,
        )
        .await?;
        let action = if kind == TokenKind::Invitation {
            "user.password.register"
        } else {
            store::access_tokens::revoke_all_for_user(&mut *tx, organization_id, user_id).await?;
            "user.password.reset"
        };
        store::audit::record(
            &mut tx,
            &AuditRecord::new(
                organization_id,
                Actor::User(user_id),
                action,
                "user",
                user_id,
            )
            .with_request_id(request_id),
        )
        .await?;
        tx.commit().await?;
        Ok(PasswordSet {
            organization: record.organization_name,
            username: record.username,
        })
    }

    /// Queues a reset link for an existing onboarded user; answers the same
    /// whatever exists. Requests are held back per (organization, username)
    /// and per peer, silently: the answer must not differ.
    pub async fn request_password_reset(
        &self,
        organization: &str,
        username: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), DomainError> {
        DomainError::check(required(&[
            ("organization", organization),
            ("username", username),
        ]))?;
        let keys = ThrottleKeys::new("reset", organization, username, peer);
        if store::sign_in_failures::blocked_until(&self.pool, &keys.all())
            .await?
            .is_some()
        {
            tracing::info!("password reset request held back by throttling");
            return Ok(());
        }
        self.record_failures(&keys, self.throttle.reset_free)
            .await?;
        if let Some((org, user)) = self.find_account(organization, username).await? {
            if user.password_hash.is_some() {
                store::outbox::enqueue(&self.pool, org.id, user.id, "PASSWORD_RESET").await?;
            }
        }
        Ok(())
    }

    /// The user a typed organization and username name, if both exist.
    async fn find_account(
        &self,
        organization: &str,
        username: &str,
    ) -> Result<Option<(Organization, store::users::Credentials)>, DomainError> {
        let Some(org) = store::organizations::find_by_name(&self.pool, organization).await? else {
            return Ok(None);
        };
        Ok(
            store::users::credentials_by_username(&self.pool, org.id, username)
                .await?
                .map(|user| (org, user)),
        )
    }

    /// One failure against the typed (organization, username), allowed
    /// `user_free` before backoff, and against the peer.
    async fn record_failures(
        &self,
        keys: &ThrottleKeys,
        user_free: i32,
    ) -> Result<(), DomainError> {
        self.record_failure(&keys.user, user_free).await?;
        if let Some(peer) = &keys.peer {
            self.record_failure(peer, self.throttle.peer_free).await?;
        }
        Ok(())
    }

    async fn check_throttle(&self, keys: &[String]) -> Result<(), DomainError> {
        if let Some(until) = store::sign_in_failures::blocked_until(&self.pool, keys).await? {
            let wait = (until - Utc::now()).to_std().unwrap_or_default();
            return Err(DomainError::Throttled {
                retry_after: wait,
                message: format!(
                    "too many failed attempts; try again in {} s",
                    wait.as_secs().max(1)
                ),
            });
        }
        Ok(())
    }

    async fn record_failure(&self, key: &str, free: i32) -> Result<(), DomainError> {
        store::sign_in_failures::record_failure(
            &self.pool,
            key,
            free,
            self.throttle.base.as_secs_f64(),
            self.throttle.max.as_secs_f64(),
            self.throttle.forget_after.as_secs_f64(),
        )
        .await?;
        Ok(())
    }
}

/// What one attempt counts against: the typed organization and username,
/// whether or not they exist, and the peer's address.
struct ThrottleKeys {
    user: String,
    peer: Option<String>,
}

impl ThrottleKeys {
    fn new(prefix: &str, organization: &str, username: &str, peer: Option<IpAddr>) -> Self {
        Self {
            user: format!(
                "{prefix}:{}:{}",
                organization.trim().to_lowercase(),
                username.trim().to_lowercase()
            ),
            peer: peer.map(|address| format!("{prefix}-peer:{address}")),
        }
    }

    fn all(&self) -> Vec<String> {
        std::iter::once(self.user.clone())
            .chain(self.peer.clone())
            .collect()
    }
}

fn required(fields: &[(&str, &str)]) -> Vec<FieldViolation> {
    fields
        .iter()
        .filter(|(_, value)| value.trim().is_empty())
        .map(|(field, _)| FieldViolation::new(*field, "REQUIRED", "required"))
        .collect()
}

fn check_record(record: &TokenRecord, kind: TokenKind) -> Result<(), LinkState> {
    if Some(record.purpose.as_str()) != kind.link_purpose()
        || record.used_time.is_some()
        || record.revoke_time.is_some()
    {
        return Err(LinkState::Invalid);
    }
    if record.expire_time <= Utc::now() {
        return Err(LinkState::Expired);
    }
    // A reset link of a user who is no longer onboarded (cannot happen today) is void.
    if kind == TokenKind::PasswordReset && !record.onboarded {
        return Err(LinkState::Invalid);
    }
    Ok(())
}

fn link_error(state: LinkState, kind: TokenKind) -> DomainError {
    match state {
        LinkState::Expired => DomainError::FailedPrecondition {
            reason: "TOKEN_EXPIRED",
            message: if kind == TokenKind::Invitation {
                "this link expired; ask your administrator for a new one".into()
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

fn account_not_active(status: &str) -> DomainError {
    let why = match status {
        "PENDING" | "EXPIRED" => "you have not registered a password yet",
        "ON_VACATION" => "it is marked on vacation",
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
