//! Sessions: each access token `Login` returns, with where and with what
//! client it was signed in. A user sees and ends their own; an
//! administrator those of the users they may act on (spec §1).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    call::Call,
    caller::{Caller, Principal, Scope},
    user::ensure_may_act_on,
    DomainError,
};
use crate::store::{self, Transaction};

/// The longest `user-agent` kept; clients send far less.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// Where a sign-in came from, as the server saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    pub peer_address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl SessionOrigin {
    /// The client's `user-agent` is the client's to choose: control
    /// characters are dropped and it is cut to `MAX_USER_AGENT_CHARS`.
    pub fn new(peer_address: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|raw| {
                raw.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_CHARS)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|agent| !agent.is_empty());
        Self {
            peer_address: peer_address.map(|address| address.to_canonical()),
            user_agent,
        }
    }
}

/// A live session as listed.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub create_time: DateTime<Utc>,
    pub last_used_time: Option<DateTime<Utc>>,
    pub expire_time: DateTime<Utc>,
    pub peer_address: Option<String>,
    pub user_agent: Option<String>,
}

/// The user whose sessions a call names: `user_id`, or the signed-in caller.
pub fn sessions_owner(caller: &Caller, user_id: Option<Uuid>) -> Result<Uuid, DomainError> {
    match (user_id, &caller.principal) {
        (Some(user_id), _) => Ok(user_id),
        (None, Principal::User { id, .. }) => Ok(*id),
        (None, Principal::ApiKey { .. }) => Err(DomainError::invalid(
            "user_id",
            "REQUIRED",
            "required: an API key has no sessions of its own",
        )),
    }
}

/// A user's live sessions, newest first, and the limit that applies to
/// them (`None`: no limit).
pub async fn list_user_sessions(
    call: &Call,
    user_id: Uuid,
) -> Result<(Vec<Session>, Option<i32>), DomainError> {
    let caller = &call.caller;
    let mut tx = call.pool().begin().await?;
    ensure_may_manage_sessions(&mut tx, caller, user_id).await?;
    let sessions =
        store::access_tokens::live_sessions(&mut *tx, caller.organization_id, user_id).await?;
    let limit =
        store::access_tokens::session_limit(&mut *tx, caller.organization_id, user_id).await?;
    tx.commit().await?;
    Ok((sessions, limit))
}

/// The largest session limit of a user; 0 means none.
pub const MAX_SESSIONS: i32 = super::organization::MAX_SESSIONS_PER_USER;

/// SetUserSessionLimit: a user's own limit over the organization's
/// (`None`: follow it; 0: none). An administrator's, under the rule.
pub async fn set_user_session_limit(
    call: &Call,
    user_id: Uuid,
    max_sessions: Option<i32>,
) -> Result<(), DomainError> {
    if let Some(limit) = max_sessions {
        if !(0..=MAX_SESSIONS).contains(&limit) {
            return Err(DomainError::invalid(
                "max_sessions",
                "OUT_OF_RANGE",
                format!(
                    "must be 0 (no limit) to {MAX_SESSIONS}, or unset to follow the organization"
                ),
            ));
        }
    }
    let caller = &call.caller;
    let mut work = call.begin().await?;
    ensure_may_act_on(work.tx(), caller, user_id, None).await?;
    store::access_tokens::set_user_limit(
        &mut **work.tx(),
        caller.organization_id,
        user_id,
        max_sessions,
    )
    .await?;
    work.record(
        work.audit_record("user.session_limit.set", "user", user_id)
            .with_details(json!({ "max_sessions": max_sessions })),
    );
    work.commit().await
}

/// Ends one session of a user, or all of them; returns how many were live.
/// The revocation reaches every server's cache through the database's
/// change notifications.
pub async fn revoke_user_sessions(
    call: &Call,
    user_id: Uuid,
    session_id: Option<Uuid>,
) -> Result<u64, DomainError> {
    let caller = &call.caller;
    let organization_id = caller.organization_id;
    let mut work = call.begin().await?;
    ensure_may_manage_sessions(work.tx(), caller, user_id).await?;
    let revoked = match session_id {
        Some(session_id) => {
            if !store::access_tokens::exists(&mut **work.tx(), organization_id, user_id, session_id)
                .await?
            {
                return Err(DomainError::NotFoundField {
                    field: "session_id".into(),
                    message: format!("session {session_id} of user {user_id} not found"),
                });
            }
            u64::from(
                store::access_tokens::revoke(
                    &mut **work.tx(),
                    organization_id,
                    user_id,
                    session_id,
                )
                .await?,
            )
        }
        None => {
            store::access_tokens::revoke_all_for_users(
                &mut **work.tx(),
                organization_id,
                &[user_id],
            )
            .await?
        }
    };
    work.record(
        work.audit_record("user.sessions.revoke", "user", user_id)
            .with_details(json!({ "session_id": session_id, "revoked_count": revoked })),
    );
    work.commit().await?;
    Ok(revoked)
}

/// A user manages their own sessions; anyone else needs ADMIN and the
/// who-may-do-what rule on that user. An unknown user is NOT_FOUND for all.
async fn ensure_may_manage_sessions(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    user_id: Uuid,
) -> Result<(), DomainError> {
    let own = matches!(caller.principal, Principal::User { id, .. } if id == user_id);
    if own {
        return Ok(());
    }
    if !caller.scopes.allows(Scope::Admin) {
        store::users::find(&mut **tx, caller.organization_id, user_id)
            .await?
            .ok_or_else(|| DomainError::not_found("user", user_id))?;
        return Err(DomainError::PermissionDenied(
            "only an administrator may see or end another user's sessions".into(),
        ));
    }
    ensure_may_act_on(tx, caller, user_id, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_agent_is_kept_without_control_characters_and_bounded() {
        let origin = SessionOrigin::new(None, Some(" grpcurl/1.9\u{0}\n "));
        assert_eq!(origin.user_agent.as_deref(), Some("grpcurl/1.9"));
        let long = "a".repeat(1000);
        let origin = SessionOrigin::new(None, Some(&long));
        assert_eq!(
            origin.user_agent.map(|a| a.len()),
            Some(MAX_USER_AGENT_CHARS)
        );
        assert_eq!(SessionOrigin::new(None, Some("\u{7}")).user_agent, None);
    }

    #[test]
    fn an_ipv4_peer_seen_through_ipv6_is_kept_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let origin = SessionOrigin::new(Some(mapped), None);
        assert_eq!(origin.peer_address, Some("192.0.2.7".parse().unwrap()));
    }
}
