//! Resolves a bearer token to the caller: organization, API key or user, and
//! scopes. Token validity is checked on every request (revocation and
//! logout are immediate); a user's status and scopes go through one
//! resolver with a short per-process cache.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    access::{Authority, Grant, UnitScope},
    caller::{Caller, Principal, Scope, Scopes},
    status::UserStatus,
    token::{PresentedToken, TokenKind},
    DomainError,
};
use crate::store;

/// How long a user's status and scopes may be served from memory. The spec
/// allows 30 s; a shorter window makes deactivation bite sooner.
pub const USER_ACCESS_CACHE_TTL: Duration = Duration::from_secs(10);
const USER_ACCESS_CACHE_CAPACITY: usize = 100_000;

/// What a user may do right now, as far as Roster's own API is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    pub can_sign_in: bool,
    pub scopes: Scopes,
    pub authority: Authority,
}

impl UserAccess {
    /// API scopes come from the built-in profiles: ADMIN if a group has the
    /// Admin profile (any unit scope), else VIEWER if one has the Viewer
    /// profile. Admin on all units makes an organization administrator.
    pub fn from_groups(can_sign_in: bool, groups: Vec<(Grant, Option<Scope>)>) -> Self {
        let admin = groups
            .iter()
            .any(|(_, built_in)| *built_in == Some(Scope::Admin));
        let viewer = groups
            .iter()
            .any(|(_, built_in)| *built_in == Some(Scope::Viewer));
        let organization_admin = groups.iter().any(|(grant, built_in)| {
            *built_in == Some(Scope::Admin) && grant.scope == UnitScope::AllUnits
        });
        let scopes = match (admin, viewer) {
            (true, _) => Scopes::new(vec![Scope::Admin]),
            (false, true) => Scopes::new(vec![Scope::Viewer]),
            (false, false) => Scopes::default(),
        };
        let authority = if organization_admin {
            Authority::Organization
        } else {
            Authority::Grants(groups.into_iter().map(|(grant, _)| grant).collect())
        };
        Self {
            can_sign_in,
            scopes,
            authority,
        }
    }
}

pub struct Authenticator {
    pool: PgPool,
    user_access: UserAccessResolver,
}

impl Authenticator {
    /// `access_ttl`: how long a user's resolved status and scopes are reused
    /// (changes made on any server take effect within it).
    pub fn new(pool: PgPool, access_ttl: Duration) -> Self {
        Self {
            user_access: UserAccessResolver::new(pool.clone(), access_ttl),
            pool,
        }
    }

    /// The one resolver of users' status and scopes.
    pub fn user_access(&self) -> &UserAccessResolver {
        &self.user_access
    }

    /// `bearer` is the token after `Bearer `.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, DomainError> {
        let token = PresentedToken::parse(bearer).ok_or_else(|| {
            DomainError::Unauthenticated(
                "malformed token: expected an `rst_key_…` API key or an `rst_at_…` access token"
                    .into(),
            )
        })?;
        match token.kind {
            TokenKind::ApiKey => self.authenticate_api_key(&token).await,
            TokenKind::AccessToken => self.authenticate_user(&token).await,
            // `parse` yields bearer kinds only; a link token never authenticates a call.
            TokenKind::Invitation | TokenKind::PasswordReset => Err(unknown_token()),
        }
    }

    async fn authenticate_api_key(&self, token: &PresentedToken) -> Result<Caller, DomainError> {
        let key = store::api_keys::find_by_secret_hash(&self.pool, &token.hash)
            .await?
            .ok_or_else(unknown_token)?;
        if key.revoke_time.is_some() {
            return Err(DomainError::Unauthenticated("API key revoked".into()));
        }
        if key.expire_time.is_some_and(|time| time <= Utc::now()) {
            return Err(DomainError::Unauthenticated("API key expired".into()));
        }
        let stale = key
            .last_used_time
            .is_none_or(|time| Utc::now() - time > chrono::Duration::minutes(1));
        if stale {
            // Off the request path; the statement itself enforces once a minute across replicas.
            let pool = self.pool.clone();
            tokio::spawn(async move {
                if let Err(error) =
                    store::api_keys::touch_last_used(&pool, key.organization_id, key.id).await
                {
                    tracing::warn!(error = %error, "could not record api key use");
                }
            });
        }
        // An ADMIN key administers the whole organization; a VIEWER key passes on nothing.
        let authority = if key.scopes.allows(Scope::Admin) {
            Authority::Organization
        } else {
            Authority::Grants(Vec::new())
        };
        Ok(Caller {
            organization_id: key.organization_id,
            principal: Principal::ApiKey { id: key.id },
            scopes: key.scopes,
            authority,
        })
    }

    async fn authenticate_user(&self, token: &PresentedToken) -> Result<Caller, DomainError> {
        let record = store::access_tokens::find_by_hash(&self.pool, &token.hash)
            .await?
            .ok_or_else(unknown_token)?;
        if record.revoke_time.is_some() {
            return Err(DomainError::Unauthenticated("access token revoked".into()));
        }
        if record.expire_time <= Utc::now() {
            return Err(DomainError::Unauthenticated(
                "access token expired; sign in again".into(),
            ));
        }
        let access = self
            .user_access
            .resolve(record.organization_id, record.user_id)
            .await?
            .filter(|access| access.can_sign_in)
            .ok_or_else(|| DomainError::Unauthenticated("account not active".into()))?;
        Ok(Caller {
            organization_id: record.organization_id,
            principal: Principal::User {
                id: record.user_id,
                access_token_id: record.id,
            },
            scopes: access.scopes,
            authority: access.authority,
        })
    }
}

fn unknown_token() -> DomainError {
    DomainError::Unauthenticated("unknown token".into())
}

/// The one place a user's status and scopes are resolved for authorization.
pub struct UserAccessResolver {
    pool: PgPool,
    cache: Mutex<HashMap<(Uuid, Uuid), (Instant, UserAccess)>>,
    ttl: Duration,
}

impl UserAccessResolver {
    fn new(pool: PgPool, ttl: Duration) -> Self {
        Self {
            pool,
            cache: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// `None` when the user does not exist (any more).
    pub async fn resolve(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<UserAccess>, DomainError> {
        let key = (organization_id, user_id);
        if let Some(access) = self.cached(key) {
            return Ok(Some(access));
        }
        let Some(state) = store::users::sign_in_state(&self.pool, organization_id, user_id).await?
        else {
            return Ok(None);
        };
        let groups =
            store::groups::grants_of_user_with_roles(&self.pool, organization_id, user_id).await?;
        // Only an onboarded user in admin state ACTIVE (derived status ACTIVE) may sign in.
        let access = UserAccess::from_groups(state.status == UserStatus::Active, groups);
        self.remember(key, access.clone());
        Ok(Some(access))
    }

    fn cached(&self, key: (Uuid, Uuid)) -> Option<UserAccess> {
        self.lock()
            .get(&key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, access)| access.clone())
    }

    fn remember(&self, key: (Uuid, Uuid), access: UserAccess) {
        let mut cache = self.lock();
        if cache.len() >= USER_ACCESS_CACHE_CAPACITY {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if cache.len() >= USER_ACCESS_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), access));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Uuid), (Instant, UserAccess)>> {
        // A poisoned cache is still a valid cache: every entry was written whole.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
