//! The bearer API key of a SCIM request: VIEWER keys read, ADMIN keys
//! write; user access tokens are refused (a provider acts for the
//! organization, not for a person).

use axum::{extract::FromRequestParts, http::request::Parts};

use super::{errors::ScimError, ScimState};
use crate::domain::{
    authentication::bearer_credential,
    call::{Call, Via},
    caller::{Principal, Scope},
    request::{IdempotencyKey, RequestId},
};

/// The authenticated caller of one SCIM request, as a domain `Call`, and
/// the idempotency key of a create /Bulk dispatched.
pub struct ScimCall(pub Call, Option<IdempotencyKey>);

/// The idempotency key /Bulk gives a create it dispatches. Only the server
/// puts it in a request's extensions: no client header sets it.
#[derive(Debug, Clone)]
pub struct CreateKey(pub IdempotencyKey);

impl ScimCall {
    /// Refuses a caller whose key lacks `scope` (403).
    pub fn require(&self, scope: Scope) -> Result<&Call, ScimError> {
        if self.0.caller.scopes.allows(scope) {
            Ok(&self.0)
        } else {
            Err(ScimError::forbidden(format!(
                "this API key lacks the {} scope this request needs",
                scope.as_str()
            )))
        }
    }
}

impl FromRequestParts<ScimState> for ScimCall {
    type Rejection = ScimError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ScimState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ScimError::unauthorized("missing `Authorization: Bearer <API key>` header")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer_credential)
            .ok_or_else(|| {
                ScimError::unauthorized("the Authorization header must be `Bearer <API key>`")
            })?;
        let caller = state.authenticator.authenticate(token).await?;
        if let Principal::User { .. } = caller.principal {
            return Err(ScimError::unauthorized(
                "SCIM takes an API key (`rst_key_…`), not a user's access token",
            ));
        }
        let request_id = RequestId::from_header(
            parts
                .headers
                .get("x-request-id")
                .and_then(|value| value.to_str().ok()),
        );
        let create_key = parts.extensions.get::<CreateKey>().map(|key| key.0.clone());
        Ok(Self(
            Call::new(state.pool.clone(), caller, request_id, Via::Scim),
            create_key,
        ))
    }
}

impl ScimCall {
    /// Reads need VIEWER (ADMIN includes it).
    pub fn reader(&self) -> Result<&Call, ScimError> {
        self.require(Scope::Viewer)
    }

    /// Writes need ADMIN.
    pub fn writer(&self) -> Result<&Call, ScimError> {
        self.require(Scope::Admin)
    }

    /// A retry with this key returns the first create's resource.
    pub fn create_key(&self) -> Option<IdempotencyKey> {
        self.1.clone()
    }
}
