//! SCIM 2.0 (RFC 7643/7644) at `/scim/v2/` on the password pages' listener:
//! identity providers keep Roster's users and groups in step with theirs. A bearer API
//! key authenticates (VIEWER reads, ADMIN writes, the key's organization);
//! every write is a domain use case with a `Call` of that key, so the same
//! rules, audit and change stream apply as over gRPC.

mod auth;
mod bulk;
mod discovery;
mod errors;
pub mod filter;
mod groups;
mod resources;
mod routes;

use std::sync::Arc;

use crate::{domain::authentication::Authenticator, store::Pool};

pub use routes::router;

/// The SCIM media type; `application/json` is accepted too.
pub const MEDIA_TYPE: &str = "application/scim+json";
pub const SCHEMA_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const SCHEMA_ENTERPRISE_USER: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SCHEMA_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Roster's extension of Group: the profile and units a group grants.
pub const SCHEMA_ROSTER_GROUP: &str = "urn:roster:params:scim:schemas:extension:2.0:Group";
pub const SCHEMA_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCHEMA_LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const SCHEMA_PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SCHEMA_SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Where the SCIM service is mounted.
pub const BASE_PATH: &str = "/scim/v2";
/// The most resources one list answers (advertised as `filter.maxResults`).
pub const MAX_RESULTS: i64 = 200;

/// What the SCIM handlers share.
#[derive(Clone)]
pub struct ScimState {
    pool: Pool,
    authenticator: Arc<Authenticator>,
    /// `https` when the listener serves TLS: for the `meta.location` URLs.
    scheme: &'static str,
}

impl ScimState {
    pub fn new(pool: Pool, authenticator: Arc<Authenticator>, tls: bool) -> Self {
        Self {
            pool,
            authenticator,
            scheme: if tls { "https" } else { "http" },
        }
    }
}
