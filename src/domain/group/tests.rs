use std::collections::BTreeSet;

use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::domain::caller::Scope;

fn group(scope: UnitScope) -> Group {
    Group {
        id: Uuid::now_v7(),
        name: "Cashiers".into(),
        description: "Till staff".into(),
        profile_id: Uuid::now_v7(),
        external_id: None,
        product: "POS".into(),
        profile_name: "Cashier".into(),
        scope,
        unit_names: BTreeMap::new(),
        member_count: 0,
        create_time: Utc::now(),
        update_time: Utc::now(),
    }
}

fn codes(error: DomainError) -> Vec<(String, String)> {
    match error {
        DomainError::InvalidArgument(violations) => violations
            .into_iter()
            .map(|v| (v.field, v.code.to_string()))
            .collect(),
        other => panic!("not a violation: {other:?}"),
    }
}

#[test]
fn group_values_report_every_violation_in_field_order() {
    let input = GroupInput {
        name: " | ".into(),
        description: "x".repeat(MAX_DESCRIPTION + 1),
        profile_id: "nope".into(),
        scope: Some(ScopeKind::AllUnits),
        unit_ids: vec!["bad".into()],
        external_id: "x\u{7}".into(),
    };
    let found = codes(GroupValues::parse(&input).unwrap_err());
    let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "group.name",
            "group.description",
            "group.profile_id",
            "group.unit_ids[0]",
            "group.unit_ids",
            "group.external_id",
        ]
    );
    assert_eq!(found[0].1, "PIPE_IN_NAME");
}

#[test]
fn a_units_scope_needs_units_and_other_scopes_refuse_them() {
    let unit = Uuid::now_v7();
    assert_eq!(
        parse_scope(Some(ScopeKind::Units), &[unit.to_string()]),
        Ok(UnitScope::Units(BTreeSet::from([unit])))
    );
    assert_eq!(
        parse_scope(Some(ScopeKind::AllUnits), &[]),
        Ok(UnitScope::AllUnits)
    );
    let refused = |kind, ids: &[String]| parse_scope(kind, ids).unwrap_err()[0].code.to_string();
    assert_eq!(refused(Some(ScopeKind::Units), &[]), "REQUIRED");
    assert_eq!(
        refused(Some(ScopeKind::NoUnit), &[unit.to_string()]),
        "UNEXPECTED"
    );
    assert_eq!(refused(None, &[]), "REQUIRED");
}

#[test]
fn an_update_replaces_only_the_masked_fields() {
    let unit = Uuid::now_v7();
    let current = group(UnitScope::Units(BTreeSet::from([unit])));
    let update = GroupUpdate {
        fields: vec![GroupField::Name],
        input: GroupInput {
            name: "Tellers".into(),
            description: "ignored".into(),
            ..Default::default()
        },
    };
    let merged = update.merged_onto(&current);
    assert_eq!(merged.name, "Tellers");
    assert_eq!(merged.description, current.description);
    assert_eq!(merged.profile_id, current.profile_id.to_string());
    assert_eq!(merged.scope, Some(ScopeKind::Units));
    assert_eq!(merged.unit_ids, [unit.to_string()]);
}

#[test]
fn leaving_a_units_scope_drops_the_units_unless_the_mask_names_them() {
    let unit = Uuid::now_v7().to_string();
    let current = group(UnitScope::Units(BTreeSet::from([
        Uuid::parse_str(&unit).unwrap()
    ])));
    let to_all = |fields: Vec<GroupField>| GroupUpdate {
        fields,
        input: GroupInput {
            scope: Some(ScopeKind::AllUnits),
            unit_ids: vec![unit.clone()],
            ..Default::default()
        },
    };
    assert!(to_all(vec![GroupField::UnitScope])
        .merged_onto(&current)
        .unit_ids
        .is_empty());
    assert_eq!(
        to_all(vec![GroupField::UnitScope, GroupField::UnitIds])
            .merged_onto(&current)
            .unit_ids,
        std::slice::from_ref(&unit)
    );
    // Staying on UNITS keeps the current units.
    let stay = GroupUpdate {
        fields: vec![GroupField::UnitScope],
        input: GroupInput {
            scope: Some(ScopeKind::Units),
            ..Default::default()
        },
    };
    assert_eq!(stay.merged_onto(&current).unit_ids, [unit]);
}

fn profile(built_in: Option<Scope>) -> Profile {
    Profile {
        id: Uuid::now_v7(),
        product: "User Management".into(),
        name: "Admin".into(),
        description: String::new(),
        built_in,
        create_time: Utc::now(),
        update_time: Utc::now(),
    }
}

#[test]
fn a_built_in_profile_needs_a_unit_scope() {
    let admin = profile(Some(Scope::Admin));
    assert!(scope_fits_profile(&admin, &UnitScope::NoUnit).is_err());
    assert!(scope_fits_profile(&admin, &UnitScope::AllUnits).is_ok());
    assert!(scope_fits_profile(&profile(None), &UnitScope::NoUnit).is_ok());
}

#[test]
fn a_group_is_not_covered_by_a_grant_on_another_unit() {
    let profile_id = Uuid::now_v7();
    let grant = |group_id, unit| Grant {
        group_id,
        profile_id,
        scope: UnitScope::Units(BTreeSet::from([unit])),
    };
    let (north_unit, south_unit) = (Uuid::now_v7(), Uuid::now_v7());
    let south = Uuid::now_v7();
    let authority = Authority::Grants(vec![grant(Uuid::now_v7(), north_unit)]);
    assert_eq!(
        not_covered(&authority, &[("South".into(), grant(south, south_unit))]),
        [south]
    );
}

#[test]
fn unit_and_profile_changes_merge_onto_the_current_values() {
    let current = Unit {
        id: Uuid::now_v7(),
        name: "North".into(),
        kind: UnitKind::Branch,
        create_time: Utc::now(),
        update_time: Utc::now(),
    };
    let renamed = UnitChanges {
        name: Some("South".into()),
        kind: None,
    };
    let merged = renamed.merged_onto(&current).unwrap();
    assert_eq!(
        (merged.name.as_str(), merged.kind),
        ("South", UnitKind::Branch)
    );
    let unknown_kind = UnitChanges {
        name: None,
        kind: Some(None),
    };
    assert_eq!(
        codes(unknown_kind.merged_onto(&current).unwrap_err()),
        [("unit.kind".to_owned(), "UNKNOWN_VALUE".to_owned())]
    );

    let current = profile(None);
    let described = ProfileChanges {
        description: Some(" Runs the tills ".into()),
        ..Default::default()
    };
    let merged = described.merged_onto(&current).unwrap();
    assert_eq!(merged.name.as_str(), "Admin");
    assert_eq!(merged.description.as_str(), "Runs the tills");
}
