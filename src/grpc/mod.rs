//! Thin tonic services: decode the request, call the domain, encode the answer.

pub mod access;
pub mod auth_layer;
mod auth_service;
mod change_service;
pub use change_service::ChangeHandler;
pub mod boundary;
mod convert;
pub mod database_gate;
mod group_service;
mod import_service;
pub mod metrics_layer;
pub mod middleware;
mod organization_service;
pub mod request_log;
mod status;
mod user_service;

pub use auth_service::AuthHandler;
pub use group_service::GroupHandler;
pub use import_service::{ImportHandler, JOB_ID_HEADER};
pub use organization_service::OrganizationHandler;
pub use user_service::UserHandler;

use tonic::{Request, Status};

use crate::domain::{
    call::{Call, Via},
    caller::Caller,
};
use crate::domain::{
    request::{IdempotencyKey, RequestId},
    DomainError,
};
use crate::store::Pool;

/// The caller the auth layer put in the request; its absence on a method
/// that needs one is a wiring bug, answered as internal.
fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("no authenticated caller for this method"))
}

/// The call as the domain sees it: the pool, the caller and the request id.
fn call_of<T>(pool: &Pool, request: &Request<T>) -> Result<Call, Status> {
    Ok(Call::new(
        pool.clone(),
        caller(request)?,
        request_id_of(request),
        Via::Grpc,
    ))
}

/// The request id the request log layer gave the call (a fresh one if the
/// layer is not in front, as in some tests).
fn request_id_of<T>(request: &Request<T>) -> RequestId {
    request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate)
}

/// The optional `request_id` field of a create, refused with its rule when unfit.
fn idempotency_key(raw: &str) -> Result<Option<IdempotencyKey>, Status> {
    IdempotencyKey::parse_optional(raw)
        .map_err(|violation| DomainError::InvalidArgument(vec![violation]).into())
}
