//! Who is calling, resolved from the bearer token by the auth layer.

use uuid::Uuid;

use super::{access::Authority, text_state::text_states};

/// A scope of Roster's own API. ADMIN includes VIEWER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Viewer,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Viewer => "VIEWER",
            Scope::Admin => "ADMIN",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "VIEWER" => Some(Scope::Viewer),
            "ADMIN" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The scopes a caller holds, as granted (ADMIN does not list VIEWER).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(mut scopes: Vec<Scope>) -> Self {
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    pub fn allows(&self, required: Scope) -> bool {
        self.0.iter().any(|held| *held >= required)
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    ApiKey { id: Uuid },
    User { id: Uuid, access_token_id: Uuid },
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub organization_id: Uuid,
    pub principal: Principal,
    pub scopes: Scopes,
    /// What the caller may pass on: everything for organization
    /// administrators (ADMIN API keys, Admin on all units), else the grants of
    /// their own groups.
    pub authority: Authority,
}

impl Caller {
    pub fn organization_admin(&self) -> bool {
        self.authority == Authority::Organization && self.scopes.allows(Scope::Admin)
    }

    pub fn actor(&self) -> Actor {
        match self.principal {
            Principal::ApiKey { id } => Actor::ApiKey(id),
            Principal::User { id, .. } => Actor::User(id),
        }
    }
}

/// Who made a change, as recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    ApiKey(Uuid),
    User(Uuid),
    /// The operator, through the `roster` command line.
    Operator,
    System,
}

text_states! {
    /// Who made a change, as the audit trail stores it.
    ActorKind {
        ApiKey => "API_KEY",
        User => "USER",
        Operator => "OPERATOR",
        System => "SYSTEM",
    }
}

impl Actor {
    pub fn kind(self) -> ActorKind {
        match self {
            Actor::ApiKey(_) => ActorKind::ApiKey,
            Actor::User(_) => ActorKind::User,
            Actor::Operator => ActorKind::Operator,
            Actor::System => ActorKind::System,
        }
    }

    pub fn id(self) -> Option<Uuid> {
        match self {
            Actor::ApiKey(id) | Actor::User(id) => Some(id),
            Actor::Operator | Actor::System => None,
        }
    }

    /// "api_key:<id>", "user:<id>", "operator" or "system".
    pub fn reference(self) -> String {
        match self {
            Actor::ApiKey(id) => format!("api_key:{id}"),
            Actor::User(id) => format!("user:{id}"),
            Actor::Operator => "operator".into(),
            Actor::System => "system".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_includes_viewer_but_not_the_reverse() {
        assert!(Scopes::new(vec![Scope::Admin]).allows(Scope::Viewer));
        assert!(!Scopes::new(vec![Scope::Viewer]).allows(Scope::Admin));
        assert!(!Scopes::default().allows(Scope::Viewer));
    }
}
