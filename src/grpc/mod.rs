//! Thin tonic services: decode the request, call the domain, encode the answer.

pub mod access;
pub mod auth_layer;
mod auth_service;
pub mod boundary;
mod convert;
mod group_service;
mod import_service;
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

use crate::domain::caller::Caller;
use request_log::RequestId;

/// The caller the auth layer put in the request; its absence on a method
/// that needs one is a wiring bug, answered as internal.
fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("no authenticated caller for this method"))
}

fn request_id<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}
