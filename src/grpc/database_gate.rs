//! Refuses calls UNAVAILABLE while the database does not answer: at once
//! when the watch already knows it, and as soon as it learns it for calls
//! in progress (a call waiting for a pool connection would otherwise wait
//! out the pool's acquire timeout). Health and reflection pass: they need
//! no database, and health is how a balancer learns of the outage.
//!
//! Every call is also bounded by its own deadline (`grpc-timeout`): when it
//! passes while the call waits (for a pool connection, a lock), the call is
//! answered DEADLINE_EXCEEDED, as gRPC says, and logged and counted so.
//! tonic's own timeout, outside every layer, would end it at the same moment
//! as CANCELLED "Timeout expired", unseen by the log and the metrics.

use http::Request;
use tonic::{body::Body, Status};

use super::middleware::{grpc_timeout, middleware, Answer, Around, AroundLayer, Next};
use crate::{database_watch::DatabaseWatch, domain::DomainError};

#[derive(Clone)]
pub struct DatabaseGate {
    database: DatabaseWatch,
}

/// The gate in front of every service, as a layer.
pub fn layer(database: DatabaseWatch) -> AroundLayer<DatabaseGate> {
    middleware(DatabaseGate { database })
}

impl Around for DatabaseGate {
    fn around<S: Next>(&self, request: Request<Body>, mut next: S) -> Answer<S::Error> {
        if !needs_database(request.uri().path()) {
            return Box::pin(next.call(request));
        }
        if !self.database.answers() {
            return Box::pin(async { Ok(unavailable().into_http()) });
        }
        let database = self.database.clone();
        // Taken now, before tonic's own timer starts: this answer comes first.
        let deadline =
            grpc_timeout(request.headers()).map(|timeout| tokio::time::Instant::now() + timeout);
        Box::pin(async move {
            let deadline_passes = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                response = next.call(request) => response,
                () = database.stops_answering() => Ok(unavailable().into_http()),
                () = deadline_passes => Ok(Status::deadline_exceeded(
                    "the call's deadline (grpc-timeout) passed before it was done"
                ).into_http()),
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
