//! Groups a request names by id or by name (`group_ids`, `group_names`),
//! found in the caller's organization. Names are for people; the ids found
//! are what the use cases keep.

use uuid::Uuid;

use crate::{
    domain::{
        access::{Authority, Grant},
        echo,
        name::DisplayName,
        DomainError, FieldViolation,
    },
    store::{self, Transaction},
};

/// The groups a request names; `prefix` places its two fields in the
/// request (`options.` for an import).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenGroups {
    pub prefix: &'static str,
    pub ids: Vec<Uuid>,
    /// Trimmed; each could be a group name.
    pub names: Vec<String>,
}

/// A group a request named, with its name for messages and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundGroup {
    pub name: String,
    pub grant: Grant,
}

impl FoundGroup {
    pub fn id(&self) -> Uuid {
        self.grant.group_id
    }
}

impl GivenGroups {
    /// Every malformed id and name at once, each under its index
    /// (`group_ids[1]`, `group_names[0]`).
    pub fn parse(
        raw_ids: &[String],
        raw_names: &[String],
        prefix: &'static str,
    ) -> Result<Self, DomainError> {
        let mut violations = Vec::new();
        let mut ids = Vec::with_capacity(raw_ids.len());
        for (index, raw) in raw_ids.iter().enumerate() {
            match Uuid::parse_str(raw.trim()) {
                Ok(id) => ids.push(id),
                Err(_) => violations.push(FieldViolation::new(
                    format!("{prefix}group_ids[{index}]"),
                    "INVALID_ID",
                    "must be a UUID",
                )),
            }
        }
        let mut names = Vec::with_capacity(raw_names.len());
        for (index, raw) in raw_names.iter().enumerate() {
            match DisplayName::parse(raw, &format!("{prefix}group_names[{index}]")) {
                Ok(name) => names.push(name.as_str().to_owned()),
                Err(violation) => violations.push(violation),
            }
        }
        DomainError::check(violations)?;
        Ok(Self { prefix, ids, names })
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.names.is_empty()
    }

    /// The named groups, once each: those given by id in order, then those
    /// given by name. An unknown id is NOT_FOUND naming its field (as a
    /// foreign id is); unknown names are INVALID_ARGUMENT, each naming its
    /// field, index and the name.
    pub(crate) async fn find(
        &self,
        tx: &mut Transaction<'_>,
        organization_id: Uuid,
    ) -> Result<Vec<FoundGroup>, DomainError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let by_id = store::groups::named_grants_by_ids(&mut **tx, organization_id, &self.ids);
        let by_id = by_id.await?;
        let by_name = if self.names.is_empty() {
            Vec::new()
        } else {
            store::groups::named_grants_by_names(&mut **tx, organization_id, &self.names).await?
        };
        self.match_found(by_id, by_name)
    }

    /// `by_name` holds (index in `names`, group) for each name found.
    fn match_found(
        &self,
        by_id: Vec<FoundGroup>,
        by_name: Vec<(usize, FoundGroup)>,
    ) -> Result<Vec<FoundGroup>, DomainError> {
        let prefix = self.prefix;
        let mut found: Vec<FoundGroup> = Vec::with_capacity(self.ids.len() + self.names.len());
        let mut add = |group: &FoundGroup| {
            if !found.iter().any(|f| f.id() == group.id()) {
                found.push(group.clone());
            }
        };
        for (index, id) in self.ids.iter().enumerate() {
            let Some(group) = by_id.iter().find(|g| g.id() == *id) else {
                return Err(DomainError::NotFoundField {
                    field: format!("{prefix}group_ids[{index}]"),
                    message: format!("group {id} not found"),
                });
            };
            add(group);
        }
        let mut unknown = Vec::new();
        for (index, name) in self.names.iter().enumerate() {
            match by_name.iter().find(|(at, _)| *at == index) {
                Some((_, group)) => add(group),
                None => unknown.push(FieldViolation::new(
                    format!("{prefix}group_names[{index}]"),
                    "GROUP_NOT_FOUND",
                    format!(
                        "there is no group named {} in this organization",
                        echo(name)
                    ),
                )),
            }
        }
        DomainError::check(unknown)?;
        Ok(found)
    }
}

/// What a filter names by name: a group or a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedKind {
    Group,
    Unit,
}

/// The id of the group or unit a filter names by name (`field`); an
/// unknown name is refused naming the field, as a typo deserves (an empty
/// list would hide it).
pub(crate) async fn id_named(
    connection: &mut sqlx::PgConnection,
    organization_id: Uuid,
    kind: NamedKind,
    name: &str,
    field: &str,
) -> Result<Uuid, DomainError> {
    let (found, what) = match kind {
        NamedKind::Group => (
            store::groups::id_by_name(connection, organization_id, name).await?,
            "group",
        ),
        NamedKind::Unit => (
            store::units::id_by_name(connection, organization_id, name).await?,
            "unit",
        ),
    };
    found.ok_or_else(|| {
        DomainError::invalid(
            field,
            if kind == NamedKind::Group {
                "GROUP_NOT_FOUND"
            } else {
                "UNIT_NOT_FOUND"
            },
            format!(
                "there is no {what} named {} in this organization",
                echo(name)
            ),
        )
    })
}

/// Refuses, naming it, the first group the caller does not cover; `verb`
/// says what they tried (`give`, `remove`).
pub(crate) fn ensure_covered(
    authority: &Authority,
    verb: &str,
    groups: &[FoundGroup],
) -> Result<(), DomainError> {
    match groups.iter().find(|g| !authority.covers(&g.grant)) {
        Some(uncovered) => Err(DomainError::GroupNotCovered {
            group_id: uncovered.id(),
            group_name: uncovered.name.clone(),
            message: format!(
                "you may not {verb} group `{}` ({}): it grants more than you hold",
                uncovered.name,
                uncovered.id()
            ),
        }),
        None => Ok(()),
    }
}

/// A group as answers name it: its id (the stable key) and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLabel {
    pub id: Uuid,
    pub name: String,
}

/// The labels of these groups, in the order given; a group deleted
/// meanwhile keeps its id, with an empty name.
pub(crate) async fn labels<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<GroupLabel>, DomainError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let names = store::groups::names_by_ids(executor, organization_id, ids).await?;
    Ok(ids
        .iter()
        .map(|id| GroupLabel {
            id: *id,
            name: names.get(id).cloned().unwrap_or_default(),
        })
        .collect())
}

/// The labels of the found groups among `ids`, in the order of `ids`.
pub fn labels_of(found: &[FoundGroup], ids: &[Uuid]) -> Vec<GroupLabel> {
    ids.iter()
        .map(|id| GroupLabel {
            id: *id,
            name: found
                .iter()
                .find(|group| group.id() == *id)
                .map(|group| group.name.clone())
                .unwrap_or_default(),
        })
        .collect()
}

pub fn ids(groups: &[FoundGroup]) -> Vec<Uuid> {
    groups.iter().map(FoundGroup::id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::UnitScope;

    fn found(name: &str) -> FoundGroup {
        FoundGroup {
            name: name.into(),
            grant: Grant {
                group_id: Uuid::now_v7(),
                profile_id: Uuid::now_v7(),
                scope: UnitScope::AllUnits,
            },
        }
    }

    #[test]
    fn names_and_ids_are_parsed_together_every_violation_under_its_index() {
        let error = GivenGroups::parse(
            &["nope".into()],
            &["Cashiers".into(), "  ".into(), "a\u{0}b".into()],
            "options.",
        )
        .unwrap_err();
        let DomainError::InvalidArgument(violations) = error else {
            panic!("{error:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "options.group_ids[0]",
                "options.group_names[1]",
                "options.group_names[2]"
            ]
        );
        let given = GivenGroups::parse(&[], &[" Cashiers ".into()], "").unwrap();
        assert_eq!(given.names, ["Cashiers"]);
    }

    #[test]
    fn a_group_named_twice_or_by_id_and_name_is_found_once() {
        let (cashiers, admins) = (found("Cashiers"), found("Admins"));
        let given = GivenGroups {
            prefix: "",
            ids: vec![cashiers.id()],
            names: vec!["cashiers".into(), "Admins".into(), "ADMINS".into()],
        };
        let all = given
            .match_found(
                vec![cashiers.clone()],
                vec![
                    (0, cashiers.clone()),
                    (1, admins.clone()),
                    (2, admins.clone()),
                ],
            )
            .unwrap();
        assert_eq!(ids(&all), [cashiers.id(), admins.id()]);
    }

    #[test]
    fn unknown_names_are_each_refused_naming_index_and_name() {
        let given = GivenGroups {
            prefix: "",
            ids: Vec::new(),
            names: vec!["Ghosts".into(), "Cashiers".into(), "Nobody".into()],
        };
        let error = given
            .match_found(Vec::new(), vec![(1, found("Cashiers"))])
            .unwrap_err();
        let DomainError::InvalidArgument(violations) = error else {
            panic!("{error:?}");
        };
        let named: Vec<_> = violations
            .iter()
            .map(|v| (v.field.as_str(), v.code.as_ref(), v.description.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "group_names[0]",
                    "GROUP_NOT_FOUND",
                    "there is no group named `Ghosts` in this organization"
                ),
                (
                    "group_names[2]",
                    "GROUP_NOT_FOUND",
                    "there is no group named `Nobody` in this organization"
                ),
            ]
        );
    }

    #[test]
    fn an_uncovered_group_is_refused_by_name() {
        let west = found("Cashier on West");
        let authority = Authority::Grants(Vec::new());
        match ensure_covered(&authority, "give", std::slice::from_ref(&west)) {
            Err(DomainError::GroupNotCovered {
                group_id,
                group_name,
                message,
            }) => {
                assert_eq!(
                    (group_id, group_name.as_str()),
                    (west.id(), "Cashier on West")
                );
                assert!(message.starts_with("you may not give group `Cashier on West` ("));
            }
            other => panic!("{other:?}"),
        }
        assert!(ensure_covered(&Authority::Organization, "give", &[west]).is_ok());
    }
}
