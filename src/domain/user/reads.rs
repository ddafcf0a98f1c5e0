//! The reads of users: the gRPC layer asks here, never the store.

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    AttributeInput, AuthorizableAccess, LookupKey, User, UserFilter, UserOrder, UserStatus,
};
use crate::{
    domain::{
        attribute::{apply_changes, AttributeSchema, RawValue},
        group::{id_named, Group, GroupFilter, GroupLabel, NamedKind},
        paging::{Page, PageRequest},
        DomainError,
    },
    store::{self, connections::read, Pool},
};

pub async fn get_user(pool: &Pool, organization_id: Uuid, id: Uuid) -> Result<User, DomainError> {
    let users = &pool.shared_reads().users_by_id;
    let found = users.read(pool, organization_id, id).await?;
    found.ok_or_else(|| DomainError::not_found("user", id))
}

/// Exact matches (email and username ignoring case), oldest first.
pub async fn lookup_users(
    pool: &Pool,
    organization_id: Uuid,
    key: LookupKey<'_>,
) -> Result<Vec<User>, DomainError> {
    let reads = pool.shared_reads();
    let (shared, value) = match key {
        LookupKey::Email(value) => (&reads.users_by_email, value),
        LookupKey::Username(value) => (&reads.users_by_username, value),
        LookupKey::ExternalId(value) => (&reads.users_by_external_id, value),
    };
    let found = shared
        .read(pool, organization_id, value.trim().to_owned())
        .await?;
    Ok(found.unwrap_or_default())
}

/// The users found, in the order asked, and the ids of those not found.
pub async fn batch_get_users(
    pool: &Pool,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<(Vec<User>, Vec<Uuid>), DomainError> {
    let found = read!(pool, |connection| {
        store::users::find_many(connection, organization_id, ids).await
    })?;
    Ok(in_request_order(ids, found))
}

/// `found` in the order of `ids` (an id asked twice gets the user twice).
fn in_request_order(ids: &[Uuid], found: Vec<User>) -> (Vec<User>, Vec<Uuid>) {
    let found: HashMap<Uuid, User> = found.into_iter().map(|user| (user.id, user)).collect();
    let mut users = Vec::with_capacity(ids.len());
    let mut not_found = Vec::new();
    for id in ids {
        match found.get(id) {
            Some(user) => users.push(user.clone()),
            None => not_found.push(*id),
        }
    }
    (users, not_found)
}

/// How much of each user a read answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserView {
    #[default]
    Basic,
    /// Also each user's groups.
    Full,
}

/// A page of ListUsers: the filter, the order, where to start and the view.
#[derive(Debug, Clone)]
pub struct UserListRequest {
    pub filter: UserFilter,
    pub order: UserOrder,
    pub page: PageRequest,
    pub view: UserView,
}

pub async fn list_users(
    pool: &Pool,
    organization_id: Uuid,
    request: &UserListRequest,
) -> Result<Page<User>, DomainError> {
    let mut filter = request.filter.clone();
    filter.find_named(pool, organization_id).await?;
    if !filter.attributes.is_empty() {
        let schema =
            store::attributes::schema(&mut *pool.acquire().await?, organization_id).await?;
        filter.attributes = attribute_filter(&schema, &filter.attributes)?;
    }
    store::users::list(pool, organization_id, &filter, request.order, &request.page).await
}

impl UserFilter {
    /// Turns the group and the unit given by name into their ids; an
    /// unknown name is refused naming its field.
    pub async fn find_named(
        &mut self,
        pool: &Pool,
        organization_id: Uuid,
    ) -> Result<(), DomainError> {
        if self.group_name.is_none() && self.unit_name.is_none() {
            return Ok(());
        }
        let connection = &mut *pool.acquire().await?;
        if let Some(name) = self.group_name.take() {
            let found = id_named(
                connection,
                organization_id,
                NamedKind::Group,
                &name,
                "group_name",
            );
            self.group_id = Some(found.await?);
        }
        if let Some(name) = self.unit_name.take() {
            let found = id_named(
                connection,
                organization_id,
                NamedKind::Unit,
                &name,
                "unit_name",
            );
            self.unit_id = Some(found.await?);
        }
        Ok(())
    }
}

/// The groups of each of these users (FULL view), by name.
pub async fn groups_of_users(
    pool: &Pool,
    organization_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<GroupLabel>>, DomainError> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let memberships = read!(pool, |connection| {
        store::groups::labels_of_members(connection, organization_id, user_ids).await
    })?;
    let mut groups: HashMap<Uuid, Vec<GroupLabel>> = HashMap::new();
    for (user_id, id, name) in memberships {
        groups
            .entry(user_id)
            .or_default()
            .push(GroupLabel { id, name });
    }
    Ok(groups)
}

/// ListUsers' attribute values, each checked like a user's own and written
/// as stored (`3.0` is `3`), so that the filter is an exact containment.
fn attribute_filter(
    schema: &AttributeSchema,
    given: &AttributeInput,
) -> Result<AttributeInput, DomainError> {
    let changes = schema
        .parse_changes(
            given
                .iter()
                .map(|(key, value)| (key.as_str(), Some(RawValue::Json(value)))),
            "attributes.",
        )
        .map_err(DomainError::InvalidArgument)?;
    Ok(apply_changes(&Default::default(), &changes)
        .into_iter()
        .collect())
}

/// The groups of an existing user, a page at a time.
pub async fn list_user_groups(
    pool: &Pool,
    organization_id: Uuid,
    user_id: Uuid,
    page: &PageRequest,
) -> Result<Page<Group>, DomainError> {
    get_user(pool, organization_id, user_id).await?;
    let filter = GroupFilter {
        member_id: Some(user_id),
        ..Default::default()
    };
    store::groups::list(pool, organization_id, &filter, page).await
}

/// GetUserAccess: the user's status and, only if they can sign in, what they hold.
pub async fn user_access(
    pool: &Pool,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<AuthorizableAccess, DomainError> {
    let access = &pool.shared_reads().status_and_access;
    let found = access.read(pool, organization_id, user_id).await?;
    let (status, grants) = found.ok_or_else(|| DomainError::not_found("user", user_id))?;
    // One statement reads the grants too: `of` drops them for someone who cannot sign in.
    Ok(AuthorizableAccess::of(status, grants))
}

/// Onboarded vs not, and users per status.
#[derive(Debug, Clone, Default)]
pub struct OnboardingStats {
    pub onboarded: i64,
    pub not_onboarded: i64,
    pub by_status: Vec<(UserStatus, i64)>,
}

pub async fn onboarding_stats(
    pool: &Pool,
    organization_id: Uuid,
) -> Result<OnboardingStats, DomainError> {
    let mut stats = OnboardingStats::default();
    for (status, onboarded, count) in store::users::status_counts(pool, organization_id).await? {
        if onboarded {
            stats.onboarded += count;
        } else {
            stats.not_onboarded += count;
        }
        match stats.by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, total)) => *total += count,
            None => stats.by_status.push((status, count)),
        }
    }
    Ok(stats)
}
