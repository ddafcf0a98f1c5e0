//! One transaction of a use case, with what every change commits alongside
//! it: the audit records of who did what under which request, and for an
//! idempotent create, its first result. A use case begins one, makes its
//! changes through `tx()`, records, and commits; dropping it rolls back.

use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use super::{
    audit::AuditRecord,
    call::Via,
    caller::{Actor, Caller},
    request::{IdempotencyKey, RequestId},
    DomainError,
};
use crate::store::Pool;
use crate::store::{self, Transaction};

pub struct UnitOfWork {
    tx: Transaction<'static>,
    organization_id: Uuid,
    actor: Actor,
    via: Via,
    request_id: Option<RequestId>,
    audits: Vec<AuditRecord>,
}

impl UnitOfWork {
    /// A change by an authenticated caller, under the request that asked for it.
    pub async fn begin(
        pool: &Pool,
        caller: &Caller,
        request_id: &RequestId,
        via: Via,
    ) -> Result<Self, DomainError> {
        Self::begin_as(
            pool,
            caller.organization_id,
            caller.actor(),
            Some(request_id.clone()),
            via,
        )
        .await
    }

    /// A change by the operator or the system, which may have no request.
    pub async fn begin_as(
        pool: &Pool,
        organization_id: Uuid,
        actor: Actor,
        request_id: Option<RequestId>,
        via: Via,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            tx: pool.begin().await?,
            organization_id,
            actor,
            via,
            request_id,
            audits: Vec::new(),
        })
    }

    /// The organization turned out to be an existing one, found inside the
    /// unit (the bootstrap's `default`): only before anything is recorded.
    pub fn rebind_organization(&mut self, organization_id: Uuid) {
        debug_assert!(
            self.audits.is_empty(),
            "records already name the old organization"
        );
        self.organization_id = organization_id;
    }

    pub fn tx(&mut self) -> &mut Transaction<'static> {
        &mut self.tx
    }

    pub fn organization_id(&self) -> Uuid {
        self.organization_id
    }

    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// A record of this unit's organization, actor and request; give it to
    /// `record` once its details are filled in.
    pub fn audit_record(
        &self,
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> AuditRecord {
        let record = AuditRecord::new(
            self.organization_id,
            self.actor,
            self.via,
            action,
            target_type,
            target_id,
        );
        match &self.request_id {
            Some(request_id) => record.with_request_id(request_id.as_str()),
            None => record,
        }
    }

    /// Written when the unit commits, so a change that fails leaves no record.
    pub fn record(&mut self, record: AuditRecord) {
        self.audits.push(record);
    }

    /// Stores the first result of an idempotent create at once: a concurrent
    /// twin of the request waits on this row and is then refused
    /// (`REQUEST_IN_PROGRESS`) instead of creating a second resource.
    pub async fn remember(
        &mut self,
        create: &IdempotentCreate,
        resource_id: Uuid,
        response: &impl Serialize,
    ) -> Result<(), DomainError> {
        let response = serde_json::to_value(response).map_err(anyhow::Error::from)?;
        store::idempotency::insert(&mut self.tx, create, resource_id, &response).await
    }

    pub async fn commit(mut self) -> Result<(), DomainError> {
        // One statement when every record shares who, the door and the request (it
        // takes them from the first), as records of `audit_record` do.
        let shared = self.audits.windows(2).all(|pair| {
            pair[0].organization_id == pair[1].organization_id
                && pair[0].actor == pair[1].actor
                && pair[0].via == pair[1].via
                && pair[0].request_id == pair[1].request_id
        });
        if shared {
            store::audit::record_many(&mut self.tx, &self.audits).await?;
        } else {
            for record in &self.audits {
                store::audit::record(&mut self.tx, record).await?;
            }
        }
        // Last: it numbers the changes in commit order by holding a lock to the end.
        store::changes::publish(&mut self.tx, &self.audits).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// A create that carried an idempotency key, scoped to the caller (API key
/// or user) and the operation: a replay by another caller never sees it.
#[derive(Debug, Clone)]
pub struct IdempotentCreate {
    pub organization_id: Uuid,
    /// `Actor::reference()`: "api_key:<id>", "user:<id>" or "operator".
    pub caller: String,
    pub operation: &'static str,
    pub key: IdempotencyKey,
}

impl IdempotentCreate {
    pub fn new(caller: &Caller, operation: &'static str, key: IdempotencyKey) -> Self {
        Self::by(caller.organization_id, caller.actor(), operation, key)
    }

    pub fn by(
        organization_id: Uuid,
        actor: Actor,
        operation: &'static str,
        key: IdempotencyKey,
    ) -> Self {
        Self {
            organization_id,
            caller: actor.reference(),
            operation,
            key,
        }
    }

    /// The resource and the response the first call of this create committed.
    pub async fn earlier<R: DeserializeOwned>(
        &self,
        pool: &Pool,
    ) -> Result<Option<(Uuid, R)>, DomainError> {
        let Some((resource_id, response)) = store::idempotency::find(pool, self).await? else {
            return Ok(None);
        };
        let response = serde_json::from_value(response).map_err(anyhow::Error::from)?;
        Ok(Some((resource_id, response)))
    }
}
