//! Resolves a bearer token to the caller: organization, API key or user, and
//! scopes. Credentials and users' status and scopes are served from memory
//! (`AuthCache`), which every change in the database evicts on every server
//! as it commits; expiry is checked against the clock on every call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    access::{Authority, Grant, UnitScope},
    api_key::ApiKey,
    auth_cache::{AuthCache, Credential},
    caller::{Caller, Principal, Scope, Scopes},
    status::UserStatus,
    token::{AccessTokenRecord, PresentedToken, TokenKind},
    DomainError,
};
use crate::store::Pool;
use crate::store::{self, auth_changes::AuthChange, connections::read};

/// The longest a credential or a user's access is reused from memory even
/// when no change was announced: a backstop, within the spec's 30 s, for
/// the notifications that normally evict it at once.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);
/// An API key's or a session's `last_used_time` moves at most this often
/// (as `store::api_keys::record_uses` and `store::access_tokens::record_uses`
/// also enforce across servers).
const USE_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

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
    pool: Pool,
    cache: Arc<AuthCache>,
    user_access: UserAccessResolver,
    key_uses: Uses,
    session_uses: Uses,
}

impl Authenticator {
    /// `ttl`: the longest an entry is reused without a change notification.
    pub fn new(pool: Pool, ttl: Duration) -> Self {
        let cache = Arc::new(AuthCache::new(ttl));
        Self {
            user_access: UserAccessResolver {
                pool: pool.clone(),
                cache: cache.clone(),
            },
            cache,
            pool,
            key_uses: Uses::default(),
            session_uses: Uses::default(),
        }
    }

    /// The one resolver of users' status and scopes.
    pub fn user_access(&self) -> &UserAccessResolver {
        &self.user_access
    }

    /// For the task that evicts changed entries (`auth_cache::follow_changes`).
    pub fn cache(&self) -> Arc<AuthCache> {
        self.cache.clone()
    }

    /// Forgets everything kept, after a write of this server: its
    /// notification reaches the listener a moment after the commit, and the
    /// writer's next call must not come before it.
    pub fn forget_own_writes(&self) {
        self.cache.forget(&AuthChange::Everything);
    }

    /// Writes the API key and session uses noted since the last call, in
    /// one statement each.
    pub async fn record_uses(&self) -> Result<(), sqlx::Error> {
        let due = self.key_uses.take_due();
        let keys = if due.is_empty() {
            Ok(())
        } else {
            store::api_keys::record_uses(&self.pool, &due).await
        };
        self.key_uses.settle(&due, &keys);
        let due = self.session_uses.take_due();
        let sessions = if due.is_empty() {
            Ok(())
        } else {
            store::access_tokens::record_uses(&self.pool, &due).await
        };
        self.session_uses.settle(&due, &sessions);
        keys.and(sessions)
    }

    /// `bearer` is the token after `Bearer `.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, DomainError> {
        let token = PresentedToken::parse(bearer).ok_or_else(|| {
            DomainError::Unauthenticated(
                "malformed token: expected an `rst_key_…` API key or an `rst_at_…` access token"
                    .into(),
            )
        })?;
        match self.credential(&token).await? {
            Some(Credential::ApiKey(key)) => self.authenticate_api_key(&key),
            Some(Credential::AccessToken(record)) => self.authenticate_user(&record).await,
            None => Err(unknown_token()),
        }
    }

    /// The key or token with the presented hash, from memory or else the database.
    async fn credential(&self, token: &PresentedToken) -> Result<Option<Credential>, DomainError> {
        if let Some(credential) = self.cache.credential(&token.hash) {
            return Ok(Some(credential));
        }
        let start = self.cache.read_start();
        let hash = &token.hash;
        let credential = match token.kind {
            TokenKind::ApiKey => read!(&self.pool, |connection| {
                store::api_keys::find_by_secret_hash(connection, hash).await
            })?
            .map(|key| Credential::ApiKey(Arc::new(key))),
            TokenKind::AccessToken => read!(&self.pool, |connection| {
                store::access_tokens::find_by_hash(connection, hash).await
            })?
            .map(|record| Credential::AccessToken(Arc::new(record))),
            // `parse` yields bearer kinds only; a link token never authenticates a call.
            TokenKind::Invitation | TokenKind::PasswordReset | TokenKind::LoginChallenge => None,
        };
        if let Some(credential) = &credential {
            self.cache.keep_credential(start, hash, credential.clone());
        }
        Ok(credential)
    }

    fn authenticate_api_key(&self, key: &ApiKey) -> Result<Caller, DomainError> {
        if key.revoke_time.is_some() {
            return Err(DomainError::Unauthenticated("API key revoked".into()));
        }
        let now = Utc::now();
        if key.expire_time.is_some_and(|time| time <= now) {
            return Err(DomainError::Unauthenticated("API key expired".into()));
        }
        self.key_uses
            .note(key.organization_id, key.id, key.last_used_time, now);
        // An ADMIN key administers the whole organization; a VIEWER key passes on nothing.
        let authority = if key.scopes.allows(Scope::Admin) {
            Authority::Organization
        } else {
            Authority::Grants(Vec::new())
        };
        Ok(Caller {
            organization_id: key.organization_id,
            principal: Principal::ApiKey { id: key.id },
            scopes: key.scopes.clone(),
            authority,
        })
    }

    async fn authenticate_user(&self, record: &AccessTokenRecord) -> Result<Caller, DomainError> {
        if record.revoke_time.is_some() {
            return Err(DomainError::Unauthenticated("access token revoked".into()));
        }
        let now = Utc::now();
        if record.expire_time <= now {
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
        self.session_uses.note(
            record.organization_id,
            record.id,
            record.last_used_time,
            now,
        );
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

/// The token of an `Authorization` value `Bearer <token>` (the scheme in
/// any case, RFC 7235); `None` when the value is not one. Every door (gRPC,
/// SCIM) reads its bearer token with this.
pub fn bearer_credential(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unknown_token() -> DomainError {
    DomainError::Unauthenticated("unknown token".into())
}

/// The one place a user's status and scopes are resolved for authorization.
pub struct UserAccessResolver {
    pool: Pool,
    cache: Arc<AuthCache>,
}

impl UserAccessResolver {
    /// `None` when the user does not exist (any more).
    pub async fn resolve(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<UserAccess>, DomainError> {
        if let Some(access) = self.cache.user(organization_id, user_id) {
            return Ok(Some(access));
        }
        let start = self.cache.read_start();
        let found = read!(&self.pool, |connection| {
            let Some(state) =
                store::users::sign_in_state(&mut *connection, organization_id, user_id).await?
            else {
                return Ok(None);
            };
            let groups =
                store::groups::grants_of_user_with_roles(connection, organization_id, user_id)
                    .await?;
            Ok(Some((state, groups)))
        })?;
        let Some((state, groups)) = found else {
            return Ok(None);
        };
        // Only an onboarded user in admin state ACTIVE (derived status ACTIVE) may sign in.
        let access = UserAccess::from_groups(state.status == UserStatus::Active, groups);
        self.cache
            .keep_user(start, organization_id, user_id, access.clone());
        Ok(Some(access))
    }
}

/// Uses of API keys or sessions not yet written, by (organization id, id).
/// A credential is noted when its last recorded use is over a minute old,
/// and the notes are written together by a background task: no call waits
/// for the write, and a row is written at most once a minute whatever the
/// traffic.
#[derive(Default)]
struct Uses(Mutex<HashMap<(Uuid, Uuid), Use>>);

#[derive(Debug, Clone, Copy)]
struct Use {
    time: DateTime<Utc>,
    written: bool,
}

impl Uses {
    /// `recorded`: the last use as read with the credential.
    fn note(
        &self,
        organization_id: Uuid,
        id: Uuid,
        recorded: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let mut uses = self.lock();
        let id = (organization_id, id);
        let noted = uses.get(&id).map(|noted| noted.time);
        let last = recorded.max(noted);
        if last.is_none_or(|time| now - time >= USE_RESOLUTION) {
            uses.insert(
                id,
                Use {
                    time: now,
                    written: false,
                },
            );
        }
    }

    /// After the write of `due`: a failed one is written with the next
    /// batch instead, unless a later use replaced the note.
    fn settle(&self, due: &[(Uuid, Uuid, DateTime<Utc>)], written: &Result<(), sqlx::Error>) {
        if written.is_ok() {
            return;
        }
        let mut uses = self.lock();
        for (organization_id, id, time) in due {
            if let Some(noted) = uses.get_mut(&(*organization_id, *id)) {
                noted.written &= noted.time != *time;
            }
        }
    }

    /// The notes not yet written, marked written; notes too old to matter are dropped.
    fn take_due(&self) -> Vec<(Uuid, Uuid, DateTime<Utc>)> {
        let now = Utc::now();
        let mut uses = self.lock();
        uses.retain(|_, noted| !noted.written || now - noted.time < USE_RESOLUTION);
        uses.iter_mut()
            .filter(|(_, noted)| !noted.written)
            .map(|(&(organization_id, id), noted)| {
                noted.written = true;
                (organization_id, id, noted.time)
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(Uuid, Uuid), Use>> {
        // A poisoned map is still valid: every entry was written whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_credential;

    #[test]
    fn a_bearer_value_gives_its_token_whatever_the_scheme_case() {
        assert_eq!(bearer_credential("Bearer rst_key_x"), Some("rst_key_x"));
        assert_eq!(bearer_credential("bEARER  rst_key_x "), Some("rst_key_x"));
        for refused in ["", "Bearer", "Bearer  ", "Basic abc", "rst_key_x"] {
            assert_eq!(bearer_credential(refused), None, "{refused:?}");
        }
    }
}
