//! One call of the API as the domain sees it.

use uuid::Uuid;

use super::{
    caller::Caller, request::RequestId, text_state::text_states, unit_of_work::UnitOfWork,
    DomainError,
};
use crate::store::Pool;

text_states! {
    /// The door a change came through, as the audit trail stores it: the same
    /// API key may write over gRPC and over SCIM, and an administrator reading
    /// the trail wants to tell an identity provider's changes from a service's.
    Via {
        Grpc => "GRPC",
        Scim => "SCIM",
        /// The password pages a person opens from an invitation or reset link.
        Pages => "PAGES",
        /// The operator's `roster` command line.
        Cli => "CLI",
        /// Roster itself (the first start's bootstrap).
        System => "SYSTEM",
    }
}

/// The database a call works on, who makes it, through which door, and the
/// request id its changes are recorded under: what every use case of a
/// caller starts from.
#[derive(Debug, Clone)]
pub struct Call {
    pool: Pool,
    pub caller: Caller,
    pub request_id: RequestId,
    pub via: Via,
}

impl Call {
    pub fn new(pool: Pool, caller: Caller, request_id: RequestId, via: Via) -> Self {
        Self {
            pool,
            caller,
            request_id,
            via,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The caller's organization: the only one a call reads or changes.
    pub fn organization_id(&self) -> Uuid {
        self.caller.organization_id
    }

    /// A unit of work on the caller's organization, recorded under this call.
    pub async fn begin(&self) -> Result<UnitOfWork, DomainError> {
        UnitOfWork::begin(&self.pool, &self.caller, &self.request_id, self.via).await
    }
}
