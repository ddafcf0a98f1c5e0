//! The auth service's API keys, both ways.

use super::{optional_timestamp, parse_timestamp, scopes_to_proto, timestamp};
use crate::{
    domain::{
        api_key::{ApiKey, NewApiKey},
        caller::Scope,
        DomainError,
    },
    proto,
};

pub fn api_key(key: &ApiKey) -> proto::ApiKey {
    proto::ApiKey {
        id: key.id.to_string(),
        name: key.name.clone(),
        scopes: scopes_to_proto(&key.scopes),
        created_by: key.created_by.clone(),
        create_time: Some(timestamp(key.create_time)),
        expire_time: optional_timestamp(key.expire_time),
        last_used_time: optional_timestamp(key.last_used_time),
        revoke_time: optional_timestamp(key.revoke_time),
    }
}

/// `None` for an unknown or unspecified scope, which `NewApiKey` refuses by position.
fn scope_from_proto(raw: i32) -> Option<Scope> {
    match proto::Scope::try_from(raw).ok()? {
        proto::Scope::Viewer => Some(Scope::Viewer),
        proto::Scope::Admin => Some(Scope::Admin),
        proto::Scope::Unspecified => None,
    }
}

impl TryFrom<&proto::CreateApiKeyRequest> for NewApiKey {
    type Error = DomainError;

    fn try_from(body: &proto::CreateApiKeyRequest) -> Result<Self, DomainError> {
        let scopes: Vec<_> = body.scopes.iter().map(|s| scope_from_proto(*s)).collect();
        let expire_time = parse_timestamp(body.expire_time.as_ref(), "expire_time")
            .map_err(|v| DomainError::InvalidArgument(vec![v]))?;
        NewApiKey::parse(&body.name, &scopes, expire_time, &body.request_id)
    }
}
