//! The group service's messages: requests become domain commands here (each
//! refused with every violation of its part), and groups, units and profiles
//! become messages.

use std::collections::BTreeMap;

use tonic::Status;
use uuid::Uuid;

use super::{mask_fields, parse_id, timestamp};
use crate::grpc::idempotency_key;
use crate::{
    domain::{
        access::UnitScope,
        group::{
            Group, GroupField, GroupInput, GroupUpdate, GroupValues, Profile, ProfileChanges,
            ProfileValues, ScopeKind, Unit, UnitChanges, UnitKind, UnitValues,
        },
        request::IdempotencyKey,
    },
    proto,
};

const GROUP_FIELDS: &str = "name, description, profile_id, unit_scope, unit_ids";

pub fn unit_scope_to_proto(scope: &UnitScope) -> (i32, Vec<String>) {
    let kind = match scope {
        UnitScope::NoUnit => proto::UnitScope::NoUnit,
        UnitScope::AllUnits => proto::UnitScope::AllUnits,
        UnitScope::Units(_) => proto::UnitScope::Units,
    };
    (
        kind as i32,
        scope.unit_ids().iter().map(Uuid::to_string).collect(),
    )
}

pub fn group(group: &Group) -> proto::Group {
    let (unit_scope, unit_ids) = unit_scope_to_proto(&group.scope);
    proto::Group {
        id: group.id.to_string(),
        name: group.name.clone(),
        description: group.description.clone(),
        profile_id: group.profile_id.to_string(),
        unit_scope,
        member_count: group.member_count,
        create_time: Some(timestamp(group.create_time)),
        update_time: Some(timestamp(group.update_time)),
        product: group.product.clone(),
        profile_name: group.profile_name.clone(),
        units: unit_refs(&group.scope, &group.unit_names),
        unit_ids,
    }
}

/// The units of a scope, in the order of its `unit_ids`, with their names.
pub fn unit_refs(scope: &UnitScope, names: &BTreeMap<Uuid, String>) -> Vec<proto::UnitRef> {
    scope
        .unit_ids()
        .into_iter()
        .map(|id| proto::UnitRef {
            id: id.to_string(),
            name: names.get(&id).cloned().unwrap_or_default(),
        })
        .collect()
}

pub fn unit(unit: &Unit) -> proto::Unit {
    proto::Unit {
        id: unit.id.to_string(),
        name: unit.name.clone(),
        kind: (match unit.kind {
            UnitKind::Branch => proto::UnitKind::Branch,
            UnitKind::Store => proto::UnitKind::Store,
            UnitKind::Partner => proto::UnitKind::Partner,
            UnitKind::Other => proto::UnitKind::Other,
        }) as i32,
        create_time: Some(timestamp(unit.create_time)),
        update_time: Some(timestamp(unit.update_time)),
    }
}

/// An unset kind (UNIT_KIND_UNSPECIFIED) is OTHER, as most units are
/// neither branch, store nor partner; `None` for a number the proto does
/// not know.
pub fn unit_kind_from_proto(raw: i32) -> Option<UnitKind> {
    Some(match proto::UnitKind::try_from(raw).ok()? {
        proto::UnitKind::Unspecified | proto::UnitKind::Other => UnitKind::Other,
        proto::UnitKind::Branch => UnitKind::Branch,
        proto::UnitKind::Store => UnitKind::Store,
        proto::UnitKind::Partner => UnitKind::Partner,
    })
}

pub fn profile(profile: &Profile) -> proto::Profile {
    proto::Profile {
        id: profile.id.to_string(),
        product: profile.product.clone(),
        name: profile.name.clone(),
        description: profile.description.clone(),
        built_in: profile.built_in.is_some(),
        create_time: Some(timestamp(profile.create_time)),
        update_time: Some(timestamp(profile.update_time)),
    }
}

fn group_input(group: Option<&proto::Group>) -> GroupInput {
    let group = group.cloned().unwrap_or_default();
    GroupInput {
        name: group.name,
        description: group.description,
        profile_id: group.profile_id,
        scope: match proto::UnitScope::try_from(group.unit_scope) {
            Ok(proto::UnitScope::NoUnit) => Some(ScopeKind::NoUnit),
            Ok(proto::UnitScope::AllUnits) => Some(ScopeKind::AllUnits),
            Ok(proto::UnitScope::Units) => Some(ScopeKind::Units),
            _ => None,
        },
        unit_ids: group.unit_ids,
        // The proto has no external id yet: only SCIM sets it.
        external_id: String::new(),
    }
}

/// A create: the group's values first, then its idempotency key.
pub fn create_group(
    body: &proto::CreateGroupRequest,
) -> Result<(GroupValues, Option<IdempotencyKey>), Status> {
    let values = GroupValues::parse(&group_input(body.group.as_ref()))?;
    Ok((values, idempotency_key(&body.request_id)?))
}

/// The group's id, then the mask; the values are parsed once merged.
pub fn update_group(body: &proto::UpdateGroupRequest) -> Result<(Uuid, GroupUpdate), Status> {
    let id = parse_id(
        body.group
            .as_ref()
            .map(|g| g.id.as_str())
            .unwrap_or_default(),
        "group.id",
    )?;
    let fields = mask_fields(
        body.update_mask.as_ref(),
        "group.",
        GROUP_FIELDS,
        // Only SCIM sets the external id: a gRPC update leaves it.
        |path| GroupField::parse(path).filter(|field| *field != GroupField::ExternalId),
    )?;
    let input = group_input(body.group.as_ref());
    Ok((id, GroupUpdate { fields, input }))
}

/// A create: its idempotency key first, then the unit's values.
pub fn create_unit(
    body: &proto::CreateUnitRequest,
) -> Result<(UnitValues, Option<IdempotencyKey>), Status> {
    let key = idempotency_key(&body.request_id)?;
    let unit = body.unit.clone().unwrap_or_default();
    let values = UnitValues::parse(&unit.name, unit_kind_from_proto(unit.kind))?;
    Ok((values, key))
}

pub fn update_unit(body: &proto::UpdateUnitRequest) -> Result<(Uuid, UnitChanges), Status> {
    #[derive(PartialEq)]
    enum Field {
        Name,
        Kind,
    }
    let unit = body.unit.clone().unwrap_or_default();
    let id = parse_id(&unit.id, "unit.id")?;
    let fields = mask_fields(
        body.update_mask.as_ref(),
        "unit.",
        "name, kind",
        |path| match path {
            "name" => Some(Field::Name),
            "kind" => Some(Field::Kind),
            _ => None,
        },
    )?;
    let changes = UnitChanges {
        name: fields.contains(&Field::Name).then_some(unit.name),
        kind: fields
            .contains(&Field::Kind)
            .then(|| unit_kind_from_proto(unit.kind)),
    };
    Ok((id, changes))
}

/// A create: the profile's values first, then its idempotency key.
pub fn create_profile(
    body: &proto::CreateProfileRequest,
) -> Result<(ProfileValues, Option<IdempotencyKey>), Status> {
    let profile = body.profile.clone().unwrap_or_default();
    let values = ProfileValues::parse(&profile.product, &profile.name, &profile.description)?;
    Ok((values, idempotency_key(&body.request_id)?))
}

pub fn update_profile(
    body: &proto::UpdateProfileRequest,
) -> Result<(Uuid, ProfileChanges), Status> {
    let profile = body.profile.clone().unwrap_or_default();
    let id = parse_id(&profile.id, "profile.id")?;
    let fields = mask_fields(
        body.update_mask.as_ref(),
        "profile.",
        "product, name, description",
        |path| {
            ["product", "name", "description"]
                .into_iter()
                .find(|known| *known == path)
        },
    )?;
    let pick = |name: &str, value: String| fields.contains(&name).then_some(value);
    Ok((
        id,
        ProfileChanges {
            product: pick("product", profile.product),
            name: pick("name", profile.name),
            description: pick("description", profile.description),
        },
    ))
}
