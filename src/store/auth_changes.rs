//! The changes that authentication keeps in memory, as the triggers of the
//! migration `auth_change_notifications` announce them on commit: one
//! channel, one notification per changed row.

use std::time::Duration;

use uuid::Uuid;

use super::{notifications::Notifications, Pool};
use crate::domain::token::TokenHash;

const CHANNEL: &str = "roster_auth_changes";
/// How the listening connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "roster auth changes";

/// What a server must forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// The API key or access token with this hash.
    Credential(TokenHash),
    /// A user's status, email or groups.
    User {
        organization_id: Uuid,
        user_id: Uuid,
    },
    /// A group or profile: any user of the organization.
    Organization(Uuid),
    /// A table was emptied.
    Everything,
}

impl AuthChange {
    /// `"<kind>:<organization id>:<what>"`; `None` for anything else.
    fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(3, ':');
        let (kind, organization, what) = (parts.next()?, parts.next()?, parts.next()?);
        let organization_id = || Uuid::parse_str(organization).ok();
        match kind {
            "key" | "token" => Some(Self::Credential(TokenHash(hex::decode(what).ok()?))),
            "user" => Some(Self::User {
                organization_id: organization_id()?,
                user_id: Uuid::parse_str(what).ok()?,
            }),
            "org" => Some(Self::Organization(organization_id()?)),
            "all" => Some(Self::Everything),
            _ => None,
        }
    }
}

/// A connection listening to the changes, apart from the pool calls use.
pub struct AuthChanges {
    notifications: Notifications,
}

impl AuthChanges {
    /// Listens from now on: a change committed after this returns is heard.
    pub async fn listen(pool: &Pool) -> Result<Self, sqlx::Error> {
        let notifications = Notifications::listen(pool, CHANNEL, APPLICATION_NAME).await?;
        Ok(Self { notifications })
    }

    /// The next change. Silence longer than `alive_within` is answered by a
    /// probe of the connection; an error means the connection is lost (and
    /// changes may have been missed).
    pub async fn next(&mut self, alive_within: Duration) -> Result<AuthChange, sqlx::Error> {
        loop {
            let payload = self.notifications.next(alive_within).await?;
            match AuthChange::parse(&payload) {
                Some(change) => return Ok(change),
                None => tracing::warn!(payload, "ignoring an unknown auth change notification"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_to_what_to_forget() {
        let organization_id = Uuid::new_v4();
        let user_id = Uuid::new_v4();
        assert_eq!(
            AuthChange::parse(&format!("key:{organization_id}:00ff")),
            Some(AuthChange::Credential(TokenHash(vec![0, 255])))
        );
        assert_eq!(
            AuthChange::parse(&format!("user:{organization_id}:{user_id}")),
            Some(AuthChange::User {
                organization_id,
                user_id
            })
        );
        assert_eq!(
            AuthChange::parse(&format!("org:{organization_id}:{user_id}")),
            Some(AuthChange::Organization(organization_id))
        );
        assert_eq!(AuthChange::parse("all::"), Some(AuthChange::Everything));
        assert_eq!(AuthChange::parse("key:x:zz"), None);
        assert_eq!(AuthChange::parse("other"), None);
    }
}
