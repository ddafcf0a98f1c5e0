//! One call of the API as the domain sees it.

use uuid::Uuid;

use super::{caller::Caller, request::RequestId, unit_of_work::UnitOfWork, DomainError};
use crate::store::Pool;

/// The database a call works on, who makes it, and the request id its
/// changes are recorded under: what every use case of a caller starts from.
#[derive(Debug, Clone)]
pub struct Call {
    pool: Pool,
    pub caller: Caller,
    pub request_id: RequestId,
}

impl Call {
    pub fn new(pool: Pool, caller: Caller, request_id: RequestId) -> Self {
        Self {
            pool,
            caller,
            request_id,
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
        UnitOfWork::begin(&self.pool, &self.caller, &self.request_id).await
    }
}
