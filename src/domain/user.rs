//! Users: their values, parsed once; the use cases that change them (each
//! one unit of work: fetch, ask the rules, write); the reads and the rules
//! live in `reads` and `rules`.

mod condition;
mod key;
mod reads;
mod rules;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{
    access::Grant,
    attribute::{
        apply_changes, attribute_changes, AttributeChanges, AttributeSchema, RawValue,
        StoredAttributes,
    },
    audit::FieldChanges,
    call::Call,
    caller::{Caller, Principal},
    group::{ensure_covered, found_ids, labels, GivenGroups, GroupLabel},
    organization::Settings,
    request::IdempotencyKey,
    token::LinkPurpose,
    unit_of_work::{IdempotentCreate, UnitOfWork},
    values::{fold, Email, ExternalId, PersonName, Phone, Username},
    DomainError, FieldViolation,
};
use crate::store::Pool;
use crate::store::{self, Transaction};

pub use super::status::{AdminState, LegacyStatus, UserStatus};
pub use condition::{
    users_matching, MatchingUsers, TextField, TextOp, TimeField, TimeOp, UserCondition,
    UserOrdering, UserSort,
};
pub use key::{GivenUser, UserKey};
pub use reads::{
    batch_get_users, get_user, groups_of_users, list_user_groups, list_users, lookup_users,
    onboarding_stats, user_access, OnboardingStats, UserListRequest, UserView,
};
use rules::{
    granted_group_ids, invitable, merge_update, shared_email_login, split_covered, unwanted_groups,
};
pub(crate) use rules::{may_act_on, public_domain_check};
pub use rules::{AuthorizableAccess, NamedGrant};

/// How many users one call may name (BatchGetUsers, MirrorUser,
/// SendActivationEmail): more is a filter's job.
pub const MAX_USERS_PER_CALL: usize = 1000;

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub phone: Option<String>,
    pub external_id: Option<String>,
    pub status: UserStatus,
    pub onboarded: bool,
    pub invitation_expire_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub last_login_time: Option<DateTime<Utc>>,
    /// When the password expires (set by an administrator, or the
    /// organization's `password_max_age`), if it does.
    pub password_expire_time: Option<DateTime<Utc>>,
    pub password_expired: bool,
    /// Custom attributes' values by key, typed by their definitions.
    pub attributes: StoredAttributes,
    /// When the user confirmed their second factor, if they have one.
    pub second_factor_time: Option<DateTime<Utc>>,
}

/// A user's values as a caller sent them.
#[derive(Debug, Clone, Default)]
pub struct UserInput {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub phone: String,
    pub external_id: String,
}

/// A user's values, every one parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserValues {
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub email: Email,
    pub username: Username,
    pub phone: Option<Phone>,
    pub external_id: Option<ExternalId>,
}

impl UserValues {
    /// Every violation at once, under `prefix` (`user.`). An empty username
    /// becomes the email; an empty phone or external id means none.
    pub fn parse(input: &UserInput, prefix: &str) -> Result<Self, Vec<FieldViolation>> {
        let field = |name: &str| format!("{prefix}{name}");
        let first_name = PersonName::parse(&input.first_name, &field("first_name"));
        let last_name = PersonName::parse(&input.last_name, &field("last_name"));
        let email = Email::parse(&input.email, &field("email"));
        // `None`: the username defaults to the email.
        let username = optional(&input.username, |raw| {
            Username::parse(raw, &field("username"))
        });
        let phone = optional(&input.phone, |raw| Phone::parse(raw, &field("phone")));
        let external_id = optional(&input.external_id, |raw| {
            ExternalId::parse(raw, &field("external_id"))
        });
        match (first_name, last_name, email, username, phone, external_id) {
            (
                Ok(first_name),
                Ok(last_name),
                Ok(email),
                Ok(username),
                Ok(phone),
                Ok(external_id),
            ) => Ok(Self {
                username: username.unwrap_or_else(|| Username::from_email(&email)),
                first_name,
                last_name,
                email,
                phone,
                external_id,
            }),
            (first_name, last_name, email, username, phone, external_id) => Err([
                first_name.err(),
                last_name.err(),
                email.err(),
                username.err(),
                phone.err(),
                external_id.err(),
            ]
            .into_iter()
            .flatten()
            .collect()),
        }
    }

    /// Values read back from the users table (see `from_stored`).
    pub(crate) fn from_stored(
        first_name: String,
        last_name: String,
        email: String,
        username: String,
        phone: Option<String>,
        external_id: Option<String>,
    ) -> Self {
        Self {
            first_name: PersonName::from_stored(first_name),
            last_name: PersonName::from_stored(last_name),
            email: Email::from_stored(email),
            username: Username::from_stored(username),
            phone: phone.map(Phone::from_stored),
            external_id: external_id.map(ExternalId::from_stored),
        }
    }

    /// Folded first name, last name, email and username: what `query` words match.
    pub fn search_key(&self) -> String {
        fold(&format!(
            "{} {} {} {}",
            self.first_name, self.last_name, self.email, self.username
        ))
    }

    pub fn last_name_key(&self) -> String {
        fold(&self.last_name)
    }

    /// Whether the user signs in with their email (the shared-email rule).
    pub fn username_is_email(&self) -> bool {
        self.username.eq_ignore_ascii_case(&self.email)
    }
}

impl User {
    /// The stored values, for comparing with an update.
    pub fn values(&self) -> UserValues {
        UserValues::from_stored(
            self.first_name.clone(),
            self.last_name.clone(),
            self.email.clone(),
            self.username.clone(),
            self.phone.clone(),
            self.external_id.clone(),
        )
    }
}

fn optional<T>(
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, FieldViolation>,
) -> Result<Option<T>, FieldViolation> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(raw).map(Some)
    }
}

/// A user found by an exact key (LookupUser).
#[derive(Debug, Clone, Copy)]
pub enum LookupKey<'a> {
    Email(&'a str),
    Username(&'a str),
    ExternalId(&'a str),
}

impl<'a> LookupKey<'a> {
    /// The value looked up, as asked.
    pub fn value(&self) -> &'a str {
        match self {
            Self::Email(value) | Self::Username(value) | Self::ExternalId(value) => value,
        }
    }
}

/// What signing in needs of a user.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: Uuid,
    pub username: String,
    pub password_hash: Option<String>,
    pub status: UserStatus,
    /// The password still proves who the person is, but does not sign in.
    pub password_expired: bool,
    /// A confirmed second factor: the password alone does not sign in.
    pub second_factor: bool,
}

/// Whom a new invitation may go to: users who have not registered a password.
#[derive(Debug, Clone)]
pub enum InvitationTargets {
    Ids(Vec<Uuid>),
    /// Not onboarded and the invitation lapsed (status EXPIRED).
    Expired,
    NotOnboarded,
    /// Created by this import job.
    ImportJob(Uuid),
}

/// Filters of ListUsers (and ExportUsers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserFilter {
    /// Folded words; each must match part of the search key.
    pub query_words: Vec<String>,
    pub statuses: Vec<UserStatus>,
    pub group_id: Option<Uuid>,
    pub unit_id: Option<Uuid>,
    /// The group and the unit by name (`group_name`, `unit_name`): found,
    /// into `group_id` and `unit_id`, by `find_named` before the store reads
    /// the filter.
    pub group_name: Option<String>,
    pub unit_name: Option<String>,
    pub onboarded: Option<bool>,
    /// Whether the email is on a public mail provider (or a subdomain of one).
    pub public_email_domain: Option<bool>,
    pub password_expired: Option<bool>,
    /// Custom attribute values every user found holds (ListUsers checks
    /// them against the definitions first).
    pub attributes: AttributeInput,
    /// Whether the user confirmed a second factor.
    pub second_factor_enrolled: Option<bool>,
}

impl UserFilter {
    pub fn query_words(query: &str) -> Vec<String> {
        fold(query).split_whitespace().map(str::to_owned).collect()
    }

    /// Whether the filter is the query words alone.
    pub fn is_words_only(&self) -> bool {
        // Every field named, so that a new filter is weighed here.
        let Self {
            query_words: _,
            statuses,
            group_id,
            unit_id,
            group_name,
            unit_name,
            onboarded,
            public_email_domain,
            password_expired,
            attributes,
            second_factor_enrolled,
        } = self;
        statuses.is_empty()
            && group_id.is_none()
            && unit_id.is_none()
            && group_name.is_none()
            && unit_name.is_none()
            && onboarded.is_none()
            && public_email_domain.is_none()
            && password_expired.is_none()
            && attributes.is_empty()
            && second_factor_enrolled.is_none()
    }

    /// How the query words match (spec §3): a word of one or two characters
    /// matches the start of a word only ("jo" finds "João", not "Bijou"),
    /// longer words any part of the search key.
    pub fn query_terms(&self) -> QueryTerms {
        let mut terms = QueryTerms::default();
        for word in &self.query_words {
            if word.chars().count() > 2 {
                terms.parts.push(word.clone());
            } else {
                // "j." is the start "j": split like the key's words are.
                terms.word_starts.extend(
                    word.split(is_word_separator)
                        .filter(|start| !start.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        terms
    }
}

/// The query words of a [`UserFilter`], by how they match.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueryTerms {
    /// Each must be the start of a word of the search key.
    pub word_starts: Vec<String>,
    /// Each must be part of the search key.
    pub parts: Vec<String>,
}

impl QueryTerms {
    /// Whether a user's folded search key holds every term: spec §3's rule,
    /// which the store's SQL conditions (`push_search_terms`) also write.
    pub fn match_key(&self, search_key: &str) -> bool {
        self.parts
            .iter()
            .all(|part| search_key.contains(part.as_str()))
            && self
                .word_starts
                .iter()
                .all(|start| starts_a_word(search_key, start))
    }
}

/// Whether a word of `search_key` starts with `start`.
fn starts_a_word(search_key: &str, start: &str) -> bool {
    search_key.match_indices(start).any(|(at, _)| {
        search_key[..at]
            .chars()
            .next_back()
            .is_none_or(is_word_separator)
    })
}

/// What splits the folded search key into words: an ASCII character that is
/// not a letter or digit (the store's `WORD_START` expression says the same).
fn is_word_separator(character: char) -> bool {
    character.is_ascii() && !character.is_ascii_alphanumeric()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UserOrder {
    CreateTimeDesc,
    LastName,
}

impl UserOrder {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        match raw.trim() {
            "" | "create_time desc" => Ok(Self::CreateTimeDesc),
            "last_name" => Ok(Self::LastName),
            other => Err(FieldViolation::new(
                "order_by",
                "INVALID_ORDER",
                format!(
                    "{} is not supported; use `create_time desc` or `last_name`",
                    super::echo(other)
                ),
            )),
        }
    }
}

/// Remarks that do not stop a change, e.g. `PUBLIC_EMAIL_DOMAIN`.
pub type Warning = FieldViolation;

/// Whether a new user is created plainly (with an optional mirrored user)
/// or cloned from a source user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Create,
    Clone,
}

impl Origin {
    /// The operation a `request_id` is remembered under.
    fn operation(self) -> &'static str {
        match self {
            Origin::Create => "CreateUser",
            Origin::Clone => "CloneUser",
        }
    }
}

/// A validated CreateUser or CloneUser.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub origin: Origin,
    pub values: UserValues,
    /// Groups given explicitly, by id or name; each must be covered.
    pub groups: GivenGroups,
    /// The mirrored user (CreateUser) or the clone's source (CloneUser).
    pub source: Option<GivenUser>,
    pub deactivated: bool,
    pub send_invitation: bool,
    pub request_id: Option<IdempotencyKey>,
    /// Custom attributes by key, as sent (checked against the definitions
    /// inside the transaction).
    pub attributes: AttributeInput,
}

/// Custom attribute values by key as a caller sent them (JSON).
pub type AttributeInput = std::collections::BTreeMap<String, serde_json::Value>;

/// Where the prefix of an attribute's field path is, for a caller's request.
const ATTRIBUTES_FIELD: &str = "user.attributes.";

/// A new user's attributes: each defined and valid, every required one given.
fn new_user_attributes(
    schema: &AttributeSchema,
    given: &AttributeInput,
) -> Result<StoredAttributes, DomainError> {
    let changes = schema
        .parse_changes(
            given
                .iter()
                .map(|(key, value)| (key.as_str(), Some(RawValue::Json(value)))),
            ATTRIBUTES_FIELD,
        )
        .map_err(DomainError::InvalidArgument)?;
    let attributes = apply_changes(&StoredAttributes::new(), &changes);
    DomainError::check(schema.check_new(&attributes, ATTRIBUTES_FIELD))?;
    Ok(attributes)
}

#[derive(Debug, Clone)]
pub struct CreatedUser {
    pub user: User,
    /// Groups of the mirrored user (or the clone's source) the caller does not cover.
    pub skipped_groups: Vec<GroupLabel>,
    pub warnings: Vec<Warning>,
}

#[derive(Serialize, serde::Deserialize)]
struct StoredCreateResponse {
    skipped_group_ids: Vec<Uuid>,
    warnings: Vec<(String, String, String)>,
}

fn user_already_exists() -> DomainError {
    DomainError::AlreadyExists {
        reason: "USER_ALREADY_EXISTS",
        field: "user.email".into(),
        message: "User already exists".into(),
    }
}

/// Where duplicate emails are allowed, a shared email cannot also be a login
/// (`rules::shared_email_login`); asks the store only when it matters.
async fn check_shared_email_login(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &UserValues,
    except: Option<Uuid>,
) -> Result<(), DomainError> {
    if !values.username_is_email() {
        return Ok(());
    }
    let used =
        store::users::email_used_by_other(tx, organization_id, &values.email, except).await?;
    shared_email_login(values, used, "user.")
}

/// A new user's email is free: where duplicates are allowed, only as a login
/// (above); elsewhere the same email is the same person, whatever else
/// collides (the defaulted username).
async fn check_new_email(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &UserValues,
    allow_duplicates: bool,
) -> Result<(), DomainError> {
    if allow_duplicates {
        return check_shared_email_login(tx, organization_id, values, None).await;
    }
    if store::users::email_used_by_other(tx, organization_id, &values.email, None).await? {
        return Err(user_already_exists());
    }
    Ok(())
}

/// Creates a user with explicit groups and/or a mirrored user's groups, and
/// queues the invitation, in one transaction. Uncovered explicit groups are
/// refused; uncovered groups of the mirrored user are skipped and reported.
pub async fn create_user(call: &Call, new_user: &NewUser) -> Result<CreatedUser, DomainError> {
    let (pool, caller) = (call.pool(), &call.caller);
    let organization_id = caller.organization_id;
    let create = new_user
        .request_id
        .clone()
        .map(|key| IdempotentCreate::new(caller, new_user.origin.operation(), key));
    if let Some(create) = &create {
        if let Some(previous) = replay_create(pool, caller, create).await? {
            return Ok(previous);
        }
    }
    let mut work = call.begin().await?;
    let tx = work.tx();
    let settings = store::organizations::lock_shared(tx, organization_id)
        .await?
        .ok_or_else(|| DomainError::not_found("organization", organization_id))?
        .settings;
    let warnings: Vec<Warning> = public_domain_check(
        &new_user.values.email,
        settings.public_email_domain_policy,
        "user.email",
    )?
    .into_iter()
    .collect();
    let given = new_user.groups.find(tx, organization_id).await?;
    ensure_covered(&caller.authority, "give", &given)?;
    let (mirrored, skipped) = source_grants(tx, caller, new_user).await?;
    let schema = store::attributes::schema(&mut **tx, organization_id).await?;
    let attributes = new_user_attributes(&schema, &new_user.attributes)?;
    let allow_duplicates = settings.allow_duplicate_emails;
    check_new_email(tx, organization_id, &new_user.values, allow_duplicates).await?;
    let user = store::users::insert(
        tx,
        organization_id,
        &new_user.values,
        &attributes,
        new_user.deactivated,
        !allow_duplicates,
    )
    .await?;
    let group_ids = granted_group_ids(&found_ids(&given), &mirrored);
    let skipped_groups = labels(&mut **tx, organization_id, &skipped).await?;
    store::groups::add_memberships(tx, organization_id, user.id, &group_ids).await?;
    // Identity providers that onboard people themselves turn SCIM's off.
    let send_invitation = new_user.send_invitation
        && (call.via != super::call::Via::Scim || settings.scim_send_invitations);
    if send_invitation {
        store::outbox::enqueue_invitation(tx, organization_id, user.id).await?;
    }
    work.record(
        work.audit_record("user.create", "user", user.id)
            .with_details(json!({
                "email": user.email,
                "username": user.username,
                "group_ids": group_ids,
                "skipped_group_ids": skipped,
                "deactivated": new_user.deactivated,
                "send_invitation": send_invitation,
                "attributes": attributes,
            })),
    );
    let created = CreatedUser {
        user,
        skipped_groups,
        warnings,
    };
    if let Some(create) = &create {
        work.remember(create, created.user.id, &StoredCreateResponse::of(&created))
            .await?;
    }
    work.commit().await?;
    Ok(created)
}

/// The covered groups of the mirrored user (or the clone's source) and the
/// skipped ones; no one clones themselves.
async fn source_grants(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    new_user: &NewUser,
) -> Result<(Vec<Grant>, Vec<Uuid>), DomainError> {
    let Some(given) = &new_user.source else {
        return Ok((Vec::new(), Vec::new()));
    };
    let source = given.find(tx, caller.organization_id).await?;
    if new_user.origin == Origin::Clone && is_self(caller, source) {
        return Err(DomainError::PermissionDenied(
            "you cannot clone yourself".into(),
        ));
    }
    mirrored_grants(tx, caller, source).await
}

async fn replay_create(
    pool: &Pool,
    caller: &Caller,
    create: &IdempotentCreate,
) -> Result<Option<CreatedUser>, DomainError> {
    let Some((user_id, stored)) = create.earlier::<StoredCreateResponse>(pool).await? else {
        return Ok(None);
    };
    let user = get_user(pool, caller.organization_id, user_id).await?;
    let skipped_groups = labels(
        &mut *pool.acquire().await?,
        caller.organization_id,
        &stored.skipped_group_ids,
    )
    .await?;
    Ok(Some(CreatedUser {
        user,
        skipped_groups,
        warnings: stored
            .warnings
            .into_iter()
            .map(|(field, code, message)| Warning::new(field, code, message))
            .collect(),
    }))
}

impl StoredCreateResponse {
    fn of(created: &CreatedUser) -> Self {
        Self {
            skipped_group_ids: created.skipped_groups.iter().map(|g| g.id).collect(),
            warnings: created
                .warnings
                .iter()
                .map(|w| (w.field.clone(), w.code.to_string(), w.description.clone()))
                .collect(),
        }
    }
}

/// The groups of `source` (an existing user) the caller covers, and the
/// ids of those skipped.
pub(crate) async fn mirrored_grants(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    source: Uuid,
) -> Result<(Vec<Grant>, Vec<Uuid>), DomainError> {
    let grants = store::groups::grants_of_user(&mut **tx, caller.organization_id, source).await?;
    Ok(split_covered(&caller.authority, grants))
}

/// Refuses acting on oneself (`self_action` names the action) and on a user
/// holding a group the caller does not cover: every use case that changes a
/// user (or who they are, or what they hold) passes here first.
pub(crate) async fn ensure_may_act_on(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    user_id: Uuid,
    self_action: Option<&str>,
) -> Result<User, DomainError> {
    let user = store::users::lock(tx, caller.organization_id, user_id)
        .await?
        .ok_or_else(|| DomainError::not_found("user", user_id))?;
    if let Some(action) = self_action {
        if is_self(caller, user_id) {
            return Err(DomainError::PermissionDenied(format!(
                "you cannot {action} yourself"
            )));
        }
    }
    let grants = store::groups::grants_of_user(&mut **tx, caller.organization_id, user_id).await?;
    if let Err(refusal) = may_act_on(&caller.authority, user_id, &grants) {
        let group = labels(&mut **tx, caller.organization_id, &[refusal.group_id]).await?;
        let name = group.first().map_or("", |g| g.name.as_str());
        return Err(DomainError::PermissionDenied(format!(
            "user {} ({user_id}) holds group `{name}` ({}), which you do not cover, so you may not act on them",
            user.email, refusal.group_id
        )));
    }
    Ok(user)
}

/// SendActivationEmail: queues a new invitation for every targeted user who
/// has not registered a password (the worker revokes the previous link when
/// it sends); `rules::invitable` says whom. Returns how many were queued.
pub async fn send_activation_emails(
    call: &Call,
    targets: &InvitationTargets,
) -> Result<u64, DomainError> {
    let (pool, caller) = (call.pool(), &call.caller);
    check_invitation_targets_exist(pool, caller, targets).await?;
    let mut work = call.begin().await?;
    let organization_id = caller.organization_id;
    let mut ids =
        store::users::lock_invitation_targets(work.tx(), organization_id, targets).await?;
    if !matches!(caller.authority, super::access::Authority::Organization) {
        let grants = store::groups::grants_of_users(work.tx(), organization_id, &ids).await?;
        let named = matches!(targets, InvitationTargets::Ids(_));
        ids = invitable(&caller.authority, named, ids, &grants)
            .map_err(|refusal| DomainError::PermissionDenied(refusal.to_string()))?;
    }
    store::outbox::enqueue_invitations(work.tx(), organization_id, &ids).await?;
    for id in &ids {
        work.record(work.audit_record("user.invite", "user", id));
    }
    work.commit().await?;
    Ok(ids.len() as u64)
}

/// Named users must exist, and a job must be of this organization: a job of
/// another organization, or of none, is not "no users to invite".
async fn check_invitation_targets_exist(
    pool: &Pool,
    caller: &Caller,
    targets: &InvitationTargets,
) -> Result<(), DomainError> {
    match targets {
        InvitationTargets::Ids(named) => {
            let (_, missing) = batch_get_users(pool, caller.organization_id, named).await?;
            if let Some(missing) = missing.first() {
                return Err(DomainError::NotFoundField {
                    field: "user_ids".into(),
                    message: format!("user {missing} not found"),
                });
            }
        }
        InvitationTargets::ImportJob(job_id) => {
            if store::imports::find_job(
                &mut *pool.acquire().await?,
                caller.organization_id,
                *job_id,
            )
            .await?
            .is_none()
            {
                return Err(DomainError::NotFoundField {
                    field: "import_job_id".into(),
                    message: format!("import job {job_id} not found"),
                });
            }
        }
        InvitationTargets::Expired | InvitationTargets::NotOnboarded => {}
    }
    Ok(())
}

fn is_self(caller: &Caller, user_id: Uuid) -> bool {
    matches!(caller.principal, Principal::User { id, .. } if id == user_id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorMode {
    /// Add the reference user's (covered) groups.
    Add,
    /// Make the target's covered groups equal to the reference user's covered groups.
    Replace,
}

/// A validated MirrorUser.
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    pub reference: GivenUser,
    pub targets: Vec<GivenUser>,
    pub mode: MirrorMode,
}

/// The outcome of mirroring onto one target.
#[derive(Debug, Clone, Default)]
pub struct MirrorResult {
    /// The target as the request named it.
    pub target: Option<UserKey>,
    /// Nil when the target was not found.
    pub target_user_id: Uuid,
    pub added: Vec<GroupLabel>,
    pub removed: Vec<GroupLabel>,
    pub skipped: Vec<GroupLabel>,
    /// Why nothing was applied to this target: a stable code (`NOT_FOUND`,
    /// `PERMISSION_DENIED`) and a message.
    pub error: Option<(&'static str, String)>,
}

/// Gives each target the reference user's groups the caller covers; each
/// target is changed in its own transaction and reported on its own.
pub async fn mirror_user(
    call: &Call,
    mirror: &MirrorRequest,
) -> Result<Vec<MirrorResult>, DomainError> {
    let (pool, caller) = (call.pool(), &call.caller);
    // Read in a transaction of its own: the reference is not changed.
    let mut reference_tx = pool.begin().await?;
    let reference = mirror
        .reference
        .find(&mut reference_tx, caller.organization_id)
        .await?;
    let (covered, skipped) = mirrored_grants(&mut reference_tx, caller, reference).await?;
    let skipped = labels(&mut *reference_tx, caller.organization_id, &skipped).await?;
    reference_tx.commit().await?;
    let wanted: Vec<Uuid> = covered.iter().map(|g| g.group_id).collect();
    // Only wanted groups are added; removed ones are named after the change.
    let wanted_labels =
        labels(&mut *pool.acquire().await?, caller.organization_id, &wanted).await?;
    let mut results = Vec::with_capacity(mirror.targets.len());
    for given in &mirror.targets {
        let mut result = MirrorResult {
            target: Some(given.key.clone()),
            skipped: skipped.clone(),
            ..Default::default()
        };
        // An id is looked up by the change itself (a target not found is
        // its NOT_FOUND); other keys are found first.
        let target = match given.key {
            UserKey::Id(id) => Ok(id),
            _ => {
                let connection = &mut *pool.acquire().await?;
                given.find(connection, caller.organization_id).await
            }
        };
        let applied = match target {
            Ok(target) => {
                result.target_user_id = target;
                mirror_onto(call, mirror.mode, reference, target, &wanted).await
            }
            Err(not_found) => Err(not_found),
        };
        match applied {
            Ok((added, removed)) => {
                result.added = labelled_from(added, &wanted_labels);
                result.removed = labels(
                    &mut *pool.acquire().await?,
                    caller.organization_id,
                    &removed,
                )
                .await?;
            }
            Err(DomainError::NotFound(message) | DomainError::NotFoundField { message, .. }) => {
                result.error = Some(("NOT_FOUND", message))
            }
            Err(DomainError::InvalidArgument(violations)) => {
                let message = violations.iter().map(|v| v.description.as_str());
                result.error = Some(("INVALID_ARGUMENT", message.collect::<Vec<_>>().join("; ")))
            }
            Err(DomainError::PermissionDenied(message)) => {
                result.error = Some(("PERMISSION_DENIED", message))
            }
            Err(other) => return Err(other),
        }
        results.push(result);
    }
    Ok(results)
}

/// The groups `ids` with the names `known` gives them (none for a group
/// not among them).
fn labelled_from(ids: Vec<Uuid>, known: &[GroupLabel]) -> Vec<GroupLabel> {
    ids.into_iter()
        .map(|id| {
            known
                .iter()
                .find(|l| l.id == id)
                .cloned()
                .unwrap_or(GroupLabel {
                    id,
                    name: String::new(),
                })
        })
        .collect()
}

async fn mirror_onto(
    call: &Call,
    mode: MirrorMode,
    reference: Uuid,
    target: Uuid,
    wanted: &[Uuid],
) -> Result<(Vec<Uuid>, Vec<Uuid>), DomainError> {
    let caller = &call.caller;
    let organization_id = caller.organization_id;
    let mut work = call.begin().await?;
    let tx = work.tx();
    ensure_may_act_on(tx, caller, target, None).await?;
    let removed = match mode {
        MirrorMode::Add => Vec::new(),
        MirrorMode::Replace => {
            // Every group of the target is covered (checked above), so REPLACE may drop any not wanted.
            let current = store::groups::grants_of_user(&mut **tx, organization_id, target).await?;
            let unwanted = unwanted_groups(&current, wanted);
            store::groups::remove_memberships(tx, organization_id, target, &unwanted).await?
        }
    };
    let added = store::groups::add_memberships(tx, organization_id, target, wanted).await?;
    if !added.is_empty() || !removed.is_empty() {
        work.record(
            work.audit_record("user.mirror", "user", target)
                .with_changes(
                    vec!["groups".into()],
                    json!({ "reference_user_id": reference, "added": added, "removed": removed }),
                ),
        );
    }
    work.commit().await?;
    Ok((added, removed))
}

/// Which user fields an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    FirstName,
    LastName,
    Email,
    Username,
    Phone,
    ExternalId,
}

impl UserField {
    pub const ALL: [UserField; 6] = [
        Self::FirstName,
        Self::LastName,
        Self::Email,
        Self::Username,
        Self::Phone,
        Self::ExternalId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::FirstName => "first_name",
            Self::LastName => "last_name",
            Self::Email => "email",
            Self::Username => "username",
            Self::Phone => "phone",
            Self::ExternalId => "external_id",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == raw)
    }
}

/// A validated UpdateUser: the user, the fields of the mask, and their new values.
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub user_id: Uuid,
    pub fields: Vec<UserField>,
    pub input: UserInput,
    /// Which custom attributes the mask names.
    pub attribute_mask: AttributeMask,
    /// Their new values by key; a key named but absent (or null) is removed.
    pub attributes: AttributeInput,
}

/// The custom attributes an update mask names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AttributeMask {
    #[default]
    Untouched,
    /// `attributes`: the whole map is replaced.
    Whole,
    /// `attributes.<key>`: these keys only.
    Keys(Vec<String>),
}

impl UserUpdate {
    /// The attribute changes the update asks for, over the user's `current` values.
    fn attribute_changes(
        &self,
        schema: &AttributeSchema,
        current: &StoredAttributes,
    ) -> Result<AttributeChanges, DomainError> {
        let given = |key: &str| {
            self.attributes
                .get(key)
                .filter(|value| !value.is_null())
                .map(RawValue::Json)
        };
        let keys: Vec<&str> = match &self.attribute_mask {
            AttributeMask::Untouched => return Ok(AttributeChanges::new()),
            AttributeMask::Whole => {
                let mut keys: Vec<&str> = self.attributes.keys().map(String::as_str).collect();
                keys.extend(current.keys().map(String::as_str));
                keys.sort_unstable();
                keys.dedup();
                keys
            }
            AttributeMask::Keys(keys) => keys.iter().map(String::as_str).collect(),
        };
        schema
            .parse_changes(
                keys.into_iter().map(|key| (key, given(key))),
                ATTRIBUTES_FIELD,
            )
            .map_err(DomainError::InvalidArgument)
    }
}

/// An update that may also set the user's admin state: SCIM's PUT and
/// PATCH, which carry both. Recorded once: `user.update` naming `status`
/// among the changed fields, or `user.status.set` when only that changed.
#[derive(Debug, Clone)]
pub struct UserRevision {
    pub update: UserUpdate,
    pub admin_state: Option<AdminState>,
}

/// Applies the named fields of an update to a user. Changing the email
/// revokes the user's access tokens and links, and queues a new invitation
/// for a user who has not registered a password (deactivated or not: a
/// deactivated user is invited when created, too).
pub async fn update_user(
    call: &Call,
    update: &UserUpdate,
) -> Result<(User, Vec<Warning>), DomainError> {
    let revision = UserRevision {
        update: update.clone(),
        admin_state: None,
    };
    revise_user(call, update.user_id, |_| Ok::<_, DomainError>(revision)).await
}

/// Changes a user in one transaction. `revise` sees the user as locked for
/// the change and says what to write, so a precondition it checks (SCIM's
/// If-Match) holds when the change commits: two writers that read the same
/// version cannot both pass it. Setting an admin state other than ACTIVE
/// revokes the user's access tokens, as `set_user_status` does.
pub async fn revise_user<E: From<DomainError>>(
    call: &Call,
    user_id: Uuid,
    revise: impl FnOnce(&User) -> Result<UserRevision, E>,
) -> Result<(User, Vec<Warning>), E> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    let settings = store::organizations::lock_shared(work.tx(), caller.organization_id)
        .await?
        .ok_or_else(|| DomainError::not_found("organization", caller.organization_id))?
        .settings;
    let current = ensure_may_act_on(work.tx(), caller, user_id, None).await?;
    let revision = revise(&current)?;
    match write_revision(&mut work, &settings, &current, &revision).await? {
        Some(revised) => {
            work.commit().await?;
            Ok(revised)
        }
        None => Ok((current, Vec::new())),
    }
}

/// The writes of a revision of the locked `current` user, with its one
/// audit record; `None` when it changes nothing.
async fn write_revision(
    work: &mut UnitOfWork,
    settings: &Settings,
    current: &User,
    revision: &UserRevision,
) -> Result<Option<(User, Vec<Warning>)>, DomainError> {
    let (organization_id, user_id) = (work.organization_id(), current.id);
    let update = &revision.update;
    let tx = work.tx();
    let values = merge_update(current, &update.fields, &update.input)?;
    let schema = store::attributes::schema(&mut **tx, organization_id).await?;
    let changes = update.attribute_changes(&schema, &current.attributes)?;
    let attributes = apply_changes(&current.attributes, &changes);
    DomainError::check(schema.check_change(&current.attributes, &attributes, ATTRIBUTES_FIELD))?;
    let before = current.values();
    let values_changed = values != before || attributes != current.attributes;
    if !values_changed && revision.admin_state.is_none() {
        return Ok(None);
    }
    let email_changed = !values.email.eq_ignore_ascii_case(&before.email);
    let mut warnings = Vec::new();
    if email_changed {
        let policy = settings.public_email_domain_policy;
        warnings.extend(public_domain_check(&values.email, policy, "user.email")?);
        if settings.allow_duplicate_emails {
            check_shared_email_login(tx, organization_id, &values, Some(user_id)).await?;
        }
        // Links and sessions were given to the old address; a user still
        // to register a password is invited again, at the new one.
        store::access_tokens::revoke_all_for_users(&mut **tx, organization_id, &[user_id]).await?;
        store::onboarding_tokens::readdress(tx, organization_id, &[user_id], true).await?;
    }
    let mut updated = current.clone();
    if values_changed {
        updated =
            store::users::update_values(tx, organization_id, user_id, &values, &attributes).await?;
    }
    if let Some(admin_state) = revision.admin_state {
        updated = store::users::set_admin_state(tx, organization_id, user_id, admin_state).await?;
        if admin_state != AdminState::Active {
            store::access_tokens::revoke_all_for_users(&mut **tx, organization_id, &[user_id])
                .await?;
        }
    }
    let status = (
        "status",
        json!(current.status.as_str()),
        json!(updated.status.as_str()),
    );
    let record = match revision.admin_state {
        // The admin state alone: recorded as SetUserStatus records it.
        Some(admin_state) if !values_changed => work
            .audit_record("user.status.set", "user", user_id)
            .with_changes(
                vec!["status".into()],
                json!({
                    "status": { "old": status.1, "new": status.2 },
                    "admin_state": admin_state.as_str(),
                }),
            ),
        _ => {
            let mut recorded = value_changes(&before, &values);
            recorded.extend(attribute_changes(&current.attributes, &attributes));
            recorded.extend([status]);
            work.audit_record("user.update", "user", user_id)
                .with_field_changes(recorded)
        }
    };
    work.record(record);
    Ok(Some((updated, warnings)))
}

fn value_changes(before: &UserValues, after: &UserValues) -> FieldChanges {
    FieldChanges::between(user_value_pairs(before, after))
}

/// (field, old, new) of every user value, for the audit trail.
pub(crate) fn user_value_pairs(
    before: &UserValues,
    after: &UserValues,
) -> [(&'static str, serde_json::Value, serde_json::Value); 6] {
    [
        (
            "first_name",
            json!(before.first_name),
            json!(after.first_name),
        ),
        ("last_name", json!(before.last_name), json!(after.last_name)),
        ("email", json!(before.email), json!(after.email)),
        ("username", json!(before.username), json!(after.username)),
        ("phone", json!(before.phone), json!(after.phone)),
        (
            "external_id",
            json!(before.external_id),
            json!(after.external_id),
        ),
    ]
}

pub async fn delete_user(call: &Call, user_id: Uuid) -> Result<(), DomainError> {
    delete_user_if(call, user_id, |_| Ok::<_, DomainError>(())).await
}

/// Deletes the user if `check` passes on the user as locked for the delete
/// (SCIM's If-Match: a version the caller read).
pub async fn delete_user_if<E: From<DomainError>>(
    call: &Call,
    user_id: Uuid,
    check: impl FnOnce(&User) -> Result<(), E>,
) -> Result<(), E> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    let tx = work.tx();
    let user = ensure_may_act_on(tx, caller, user_id, Some("delete")).await?;
    check(&user)?;
    store::users::delete(tx, caller.organization_id, user_id)
        .await
        .map_err(DomainError::from)?;
    work.record(
        work.audit_record("user.delete", "user", user_id)
            .with_details(json!({ "email": user.email, "username": user.username })),
    );
    Ok(work.commit().await?)
}

/// Sets the admin state; any state but ACTIVE revokes the user's access tokens.
pub async fn set_user_status(
    call: &Call,
    user_id: Uuid,
    status: UserStatus,
) -> Result<User, DomainError> {
    let caller = &call.caller;
    let admin_state = status
        .assignable()
        .map_err(|v| DomainError::InvalidArgument(vec![v]))?;
    let organization_id = caller.organization_id;
    let mut work = call.begin().await?;
    let tx = work.tx();
    let before = ensure_may_act_on(tx, caller, user_id, Some("change the status of")).await?;
    let user = store::users::set_admin_state(tx, organization_id, user_id, admin_state).await?;
    if admin_state != AdminState::Active {
        store::access_tokens::revoke_all_for_users(&mut **tx, organization_id, &[user_id]).await?;
    }
    work.record(
        work.audit_record("user.status.set", "user", user_id)
            .with_changes(
                vec!["status".into()],
                json!({
                    "status": { "old": before.status.as_str(), "new": user.status.as_str() },
                    "admin_state": admin_state.as_str(),
                }),
            ),
    );
    work.commit().await?;
    Ok(user)
}

/// SetPasswordExpiry: the user's password expires at `expire_time`
/// (a past time: at once), or, with `None`, only by the organization's
/// `password_max_age`. For onboarded users: others have no password.
pub async fn set_password_expiry(
    call: &Call,
    user_id: Uuid,
    expire_time: Option<DateTime<Utc>>,
) -> Result<User, DomainError> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    let tx = work.tx();
    let user = ensure_may_act_on(tx, caller, user_id, None).await?;
    ensure_onboarded(&user)?;
    let user =
        store::users::set_password_expire_time(tx, caller.organization_id, user_id, expire_time)
            .await?;
    work.record(
        work.audit_record("user.password_expiry.set", "user", user_id)
            .with_details(json!({ "expire_time": expire_time })),
    );
    work.commit().await?;
    Ok(user)
}

/// Refuses a password action on a user who has no password yet.
pub(crate) fn ensure_onboarded(user: &User) -> Result<(), DomainError> {
    if user.onboarded {
        return Ok(());
    }
    Err(DomainError::FailedPrecondition {
        reason: "USER_NOT_ONBOARDED",
        message: format!(
            "user {} has not registered a password yet: send them an invitation with SendActivationEmail",
            user.id
        ),
    })
}

/// ResetUserCredentials: the account starts over. The password goes, with
/// every session, link and second factor; the user is not onboarded any
/// more and gets a fresh invitation (the worker sends it).
pub async fn reset_user_credentials(call: &Call, user_id: Uuid) -> Result<User, DomainError> {
    let caller = &call.caller;
    let organization_id = caller.organization_id;
    let mut work = call.begin().await?;
    let tx = work.tx();
    ensure_may_act_on(tx, caller, user_id, Some("reset the credentials of")).await?;
    store::access_tokens::revoke_all_for_users(&mut **tx, organization_id, &[user_id]).await?;
    store::onboarding_tokens::revoke(tx, organization_id, &[user_id], LinkPurpose::ALL).await?;
    store::second_factors::remove(tx, organization_id, user_id).await?;
    let user = store::users::clear_password(tx, organization_id, user_id).await?;
    store::outbox::enqueue_invitation(tx, organization_id, user_id).await?;
    work.record(work.audit_record("user.credentials.reset", "user", user_id));
    work.commit().await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person with just the required fields.
    fn person(first_name: &str, last_name: &str, email: &str) -> UserInput {
        UserInput {
            first_name: first_name.into(),
            last_name: last_name.into(),
            email: email.into(),
            ..Default::default()
        }
    }

    fn refused_fields(input: &UserInput) -> Vec<String> {
        let violations = UserValues::parse(input, "user.").unwrap_err();
        violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn short_query_words_are_word_starts_and_longer_ones_parts() {
        let filter = UserFilter {
            query_words: UserFilter::query_words("Jo Á silva j. .. @a ana.sp@"),
            ..Default::default()
        };
        assert_eq!(
            filter.query_terms(),
            QueryTerms {
                word_starts: vec!["jo".into(), "a".into(), "j".into(), "a".into()],
                parts: vec!["silva".into(), "ana.sp@".into()],
            }
        );
    }

    #[test]
    fn a_key_matches_when_it_holds_every_part_and_starts_a_word_with_every_start() {
        let terms = |query: &str| {
            UserFilter {
                query_words: UserFilter::query_words(query),
                ..Default::default()
            }
            .query_terms()
        };
        let key = "joao silva-souza jo.bijou@acme.com";
        for matching in [
            "jo", "j", "so", "bi", "silva", "ilva", "acme.com", "jo si", "", "a@",
        ] {
            assert!(terms(matching).match_key(key), "{matching:?}");
        }
        for not_matching in ["ou", "ao", "cm", "silvas", "jo zz", "m"] {
            assert!(!terms(not_matching).match_key(key), "{not_matching:?}");
        }
        // A letter beyond ASCII is part of a word, as in the key's words.
        assert!(!terms("o").match_key("ção"));
    }

    #[test]
    fn every_invalid_value_is_reported_under_its_path() {
        let input = UserInput {
            username: "x".into(),
            phone: "123".into(),
            ..person(" ", "Silva", "not-an-email")
        };
        assert_eq!(
            refused_fields(&input),
            [
                "user.first_name",
                "user.email",
                "user.username",
                "user.phone"
            ]
        );
    }

    #[test]
    fn the_username_defaults_to_the_email() {
        let values = UserValues::parse(&person("João", "Silva", "Joao@Acme.com"), "user.").unwrap();
        assert_eq!(values.username, "Joao@Acme.com");
        assert_eq!(values.phone, None);
        assert_eq!(
            values.search_key(),
            "joao silva joao@acme.com joao@acme.com"
        );
    }

    #[test]
    fn an_invalid_email_is_reported_once_even_when_the_username_defaults_to_it() {
        assert_eq!(
            refused_fields(&person("Ana", "Lima", "nope")),
            ["user.email"]
        );
    }
}
