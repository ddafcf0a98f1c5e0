//! The audit trail: every change records who, what, the target, the request
//! id and the changed fields, in the same transaction as the change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    call::Via,
    caller::{Actor, ActorKind},
};
/// The organization's audit trail, newest first. A read with no rule of
/// its own: the store's query.
pub use crate::store::audit::list as list_audit_events;

/// A change to record, built by the use case that makes it.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub organization_id: Uuid,
    pub actor: Actor,
    pub via: Via,
    /// E.g. `user.create`, `api_key.revoke`.
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub request_id: String,
    pub changed_fields: Vec<String>,
    /// Old and new values, never secrets.
    pub details: serde_json::Value,
}

impl AuditRecord {
    pub fn new(
        organization_id: Uuid,
        actor: Actor,
        via: Via,
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        Self {
            organization_id,
            actor,
            via,
            action,
            target_type,
            target_id: target_id.to_string(),
            request_id: String::new(),
            changed_fields: Vec::new(),
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_request_id(mut self, request_id: &str) -> Self {
        request_id.clone_into(&mut self.request_id);
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_field_changes(self, changes: FieldChanges) -> Self {
        self.with_changes(changes.fields, serde_json::Value::Object(changes.details))
    }

    pub fn with_changes(mut self, changed_fields: Vec<String>, details: serde_json::Value) -> Self {
        self.changed_fields = changed_fields;
        self.details = details;
        self
    }
}

/// The fields whose value differs, with `{old, new}` for each: what an
/// update records. Built from (field, old, new) triples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldChanges {
    pub fields: Vec<String>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl FieldChanges {
    pub fn between<F: Into<String>>(
        pairs: impl IntoIterator<Item = (F, serde_json::Value, serde_json::Value)>,
    ) -> Self {
        let mut changes = Self::default();
        changes.extend(pairs);
        changes
    }

    /// Adds the pairs whose value differs (custom attributes' `attributes.<key>`).
    pub fn extend<F: Into<String>>(
        &mut self,
        pairs: impl IntoIterator<Item = (F, serde_json::Value, serde_json::Value)>,
    ) {
        for (field, old, new) in pairs {
            if old != new {
                let field = field.into();
                self.fields.push(field.clone());
                self.details
                    .insert(field, serde_json::json!({ "old": old, "new": new }));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// A recorded change, as read back.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: Uuid,
    pub actor_kind: ActorKind,
    pub actor_id: Option<Uuid>,
    /// `None` for changes recorded before Roster kept the door.
    pub via: Option<Via>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub request_id: String,
    pub changed_fields: Vec<String>,
    pub details: serde_json::Value,
    pub create_time: DateTime<Utc>,
}

/// Filters of `ListAuditEvents`; empty strings and `None` filter nothing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFilter {
    pub target_type: String,
    pub target_id: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}
