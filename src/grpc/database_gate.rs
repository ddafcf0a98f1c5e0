//! Refuses calls UNAVAILABLE while the database does not answer: at once
//! when the watch already knows it, and as soon as it learns it for calls
//! in progress (a call waiting for a pool connection would otherwise wait
//! out the pool's acquire timeout). Health and reflection pass: they need
//! no database, and health is how a balancer learns of the outage.
//!
//! Every call is also bounded by its own deadline: tonic's server ends a
//! call at its `grpc-timeout`, dropping whatever it waits on.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::{body::Body, Status};
use tower::{Layer, Service};

use crate::{database_watch::DatabaseWatch, domain::DomainError};

#[derive(Clone)]
pub struct DatabaseGate<S> {
    inner: S,
    database: DatabaseWatch,
}

/// The gate in front of every service, as a layer.
pub fn layer<S>(database: DatabaseWatch) -> impl Layer<S, Service = DatabaseGate<S>> + Clone {
    tower::layer::layer_fn(move |inner| DatabaseGate {
        inner,
        database: database.clone(),
    })
}

impl<S, B> Service<Request<B>> for DatabaseGate<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !needs_database(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        if !self.database.answers() {
            return Box::pin(async { Ok(unavailable().into_http()) });
        }
        let database = self.database.clone();
        Box::pin(async move {
            tokio::select! {
                response = inner.call(request) => response,
                () = database.stops_answering() => Ok(unavailable().into_http()),
            }
        })
    }
}

/// Every Roster method reads or writes the database; the standard gRPC
/// services (health, reflection) do not.
fn needs_database(path: &str) -> bool {
    !path.starts_with("/grpc.")
}

fn unavailable() -> Status {
    DomainError::Unavailable(anyhow::anyhow!(
        "the database watch finds it does not answer"
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_standard_services_pass_without_the_database() {
        assert!(!needs_database("/grpc.health.v1.Health/Check"));
        assert!(!needs_database(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(needs_database("/roster.v1.UserService/GetUser"));
    }
}
