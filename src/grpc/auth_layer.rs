//! The authentication and authorization layer: resolves
//! `authorization: Bearer <token>` to a `Caller`, checks the method table,
//! and hands the caller to handlers through the request extensions.

use std::sync::Arc;

use http::{HeaderValue, Request};
use tonic::{body::Body, Status};

use super::{
    access::{required_access, Access},
    middleware::{Answer, Around, Next},
};
use crate::domain::{
    authentication::{bearer_credential, Authenticator},
    caller::{Caller, Scope},
    DomainError,
};

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl Around for AuthLayer {
    fn around<S: Next>(&self, mut request: Request<Body>, mut next: S) -> Answer<S::Error> {
        let authenticator = self.authenticator.clone();
        // Only owned parts cross the await: the body need not be `Sync`.
        let path = request.uri().path().to_owned();
        let access = required_access(&path);
        let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
        Box::pin(async move {
            let answer =
                match authorize(&authenticator, &path, access, authorization.as_ref()).await {
                    Ok(Some(caller)) => {
                        request.extensions_mut().insert(caller);
                        next.call(request).await
                    }
                    Ok(None) => next.call(request).await,
                    Err(status) => return Ok(status.into_http()),
                };
            if may_write(&path, access) {
                // This server's own writes (a logout, a revoked key, a
                // deactivation) bite on its next call, not when their
                // notification comes back.
                authenticator.forget_own_writes();
            }
            answer
        })
    }
}

/// The caller when the method (of `access`, `None` when not in the table)
/// needs one, `None` for public methods.
async fn authorize(
    authenticator: &Authenticator,
    path: &str,
    access: Option<Access>,
    authorization: Option<&HeaderValue>,
) -> Result<Option<Caller>, Status> {
    let access = access.ok_or_else(|| {
        Status::permission_denied(format!(
            "method {} is not in the access table",
            crate::domain::echo(path)
        ))
    })?;
    if access == Access::Public {
        return Ok(None);
    }
    let bearer = bearer_token(authorization)?;
    let caller = authenticator
        .authenticate(bearer)
        .await
        .map_err(Status::from)?;
    let allowed = match access {
        Access::Public | Access::AnyToken | Access::OwnOrAdmin => true,
        Access::SignedIn => matches!(
            caller.principal,
            crate::domain::caller::Principal::User { .. }
        ),
        Access::Scope(scope) => caller.scopes.allows(scope),
        Access::OrganizationAdmin => caller.organization_admin(),
    };
    if !allowed {
        return Err(DomainError::PermissionDenied(denial(access)).into());
    }
    Ok(Some(caller))
}

/// Every method but the reads of the VIEWER scope, WhoAmI, health and reflection.
fn may_write(path: &str, access: Option<Access>) -> bool {
    let reads = matches!(
        access,
        Some(Access::Scope(Scope::Viewer) | Access::AnyToken)
    );
    !reads && !path.starts_with("/grpc.")
}

fn bearer_token(authorization: Option<&HeaderValue>) -> Result<&str, Status> {
    let header = authorization.ok_or_else(|| {
        Status::unauthenticated("missing `authorization: Bearer <token>` metadata")
    })?;
    header
        .to_str()
        .ok()
        .and_then(bearer_credential)
        .ok_or_else(|| {
            Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`")
        })
}

/// Runs this layer's check again for a call that stays open (a WatchChanges
/// stream): the same token against the method's access, as they stand now.
pub(super) async fn authorize_again(
    authenticator: &Authenticator,
    path: &str,
    authorization: Option<&HeaderValue>,
) -> Result<(), Status> {
    authorize(authenticator, path, required_access(path), authorization)
        .await
        .map(drop)
}

fn denial(access: Access) -> String {
    match access {
        Access::SignedIn => "this method needs a user access token from Login, not an API key".into(),
        Access::Scope(scope) => format!("this method requires the {} scope", scope.as_str()),
        Access::OrganizationAdmin => {
            "this method is for organization administrators (an ADMIN API key or Admin on all units)".into()
        }
        Access::Public | Access::AnyToken | Access::OwnOrAdmin => "denied".into(),
    }
}
