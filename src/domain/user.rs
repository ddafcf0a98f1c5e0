//! Users: the status model, validated values and the use cases on them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    access::{Authority, Grant},
    audit::{AuditRecord, FieldChanges},
    caller::{Caller, Principal},
    organization::PublicEmailDomainPolicy,
    request::{IdempotencyKey, RequestId},
    unit_of_work::{IdempotentCreate, UnitOfWork},
    values::{fold, Email, ExternalId, PersonName, Phone, Username},
    DomainError, FieldViolation,
};
use crate::store::{self, Transaction};

pub use super::status::{AdminState, LegacyStatus, UserStatus};

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

/// A user's values, every one valid, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserValues {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub phone: Option<String>,
    pub external_id: Option<String>,
}

impl UserValues {
    /// Every violation at once, under `prefix` (`user.`). An empty username
    /// becomes the email; an empty phone or external id means none.
    pub fn parse(input: &UserInput, prefix: &str) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let field = |name: &str| format!("{prefix}{name}");
        let first_name = PersonName::parse(&input.first_name, &field("first_name"))
            .map_err(|v| violations.push(v))
            .ok();
        let last_name = PersonName::parse(&input.last_name, &field("last_name"))
            .map_err(|v| violations.push(v))
            .ok();
        let email = Email::parse(&input.email, &field("email"))
            .map_err(|v| violations.push(v))
            .ok();
        let username = if input.username.trim().is_empty() {
            email.as_ref().map(Username::from_email)
        } else {
            Username::parse(&input.username, &field("username"))
                .map_err(|v| violations.push(v))
                .ok()
        };
        let phone = optional(&input.phone, |raw| {
            Phone::parse(raw, &field("phone")).map(|p| p.as_str().to_owned())
        })
        .map_err(|v| violations.push(v))
        .ok()
        .flatten();
        let external_id = optional(&input.external_id, |raw| {
            ExternalId::parse(raw, &field("external_id")).map(|e| e.as_str().to_owned())
        })
        .map_err(|v| violations.push(v))
        .ok()
        .flatten();
        match (first_name, last_name, email, username) {
            (Some(first_name), Some(last_name), Some(email), Some(username))
                if violations.is_empty() =>
            {
                Ok(Self {
                    first_name: first_name.as_str().to_owned(),
                    last_name: last_name.as_str().to_owned(),
                    email: email.as_str().to_owned(),
                    username: username.as_str().to_owned(),
                    phone,
                    external_id,
                })
            }
            _ => Err(violations),
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

    fn of(user: &User) -> Self {
        Self {
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            email: user.email.clone(),
            username: user.username.clone(),
            phone: user.phone.clone(),
            external_id: user.external_id.clone(),
        }
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

/// Filters of ListUsers (and ExportUsers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserFilter {
    /// Folded words; each must match part of the search key.
    pub query_words: Vec<String>,
    pub statuses: Vec<UserStatus>,
    pub group_id: Option<Uuid>,
    pub unit_id: Option<Uuid>,
    pub onboarded: Option<bool>,
}

impl UserFilter {
    pub fn query_words(query: &str) -> Vec<String> {
        fold(query).split_whitespace().map(str::to_owned).collect()
    }
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
    /// The request field naming the user whose groups are copied.
    fn source_field(self) -> &'static str {
        match self {
            Origin::Create => "mirror_user_id",
            Origin::Clone => "source_user_id",
        }
    }

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
    pub group_ids: Vec<Uuid>,
    /// The mirrored user (CreateUser) or the clone's source (CloneUser).
    pub mirror_user_id: Option<Uuid>,
    pub deactivated: bool,
    pub send_invitation: bool,
    pub request_id: Option<IdempotencyKey>,
}

#[derive(Debug, Clone)]
pub struct CreatedUser {
    pub user: User,
    pub skipped_group_ids: Vec<Uuid>,
    pub warnings: Vec<Warning>,
}

#[derive(Serialize, serde::Deserialize)]
struct StoredCreateResponse {
    skipped_group_ids: Vec<Uuid>,
    warnings: Vec<(String, String, String)>,
}

/// Checks the email against the organization's public-domain policy.
pub(crate) fn public_domain_check(
    email: &str,
    policy: PublicEmailDomainPolicy,
    field: &str,
) -> Result<Option<Warning>, DomainError> {
    let Ok(email) = Email::parse(email, field) else {
        return Ok(None);
    };
    if !email.is_on_public_domain() {
        return Ok(None);
    }
    let message = format!(
        "{} is a public mail provider, not a company address",
        email.domain()
    );
    match policy {
        PublicEmailDomainPolicy::Allow => Ok(None),
        PublicEmailDomainPolicy::Warn => {
            Ok(Some(Warning::new(field, "PUBLIC_EMAIL_DOMAIN", message)))
        }
        PublicEmailDomainPolicy::Reject => Err(DomainError::invalid(
            field,
            "PUBLIC_EMAIL_DOMAIN",
            format!("{message}; the organization refuses such addresses"),
        )),
    }
}

fn user_already_exists() -> DomainError {
    DomainError::AlreadyExists {
        reason: "USER_ALREADY_EXISTS",
        field: "user.email".into(),
        message: "User already exists".into(),
    }
}

/// Where duplicate emails are allowed, a shared email cannot also be a login.
async fn check_shared_email_login(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &UserValues,
    except: Option<Uuid>,
    field_prefix: &str,
) -> Result<(), DomainError> {
    if values.username.eq_ignore_ascii_case(&values.email)
        && store::users::email_used_by_other(tx, organization_id, &values.email, except).await?
    {
        return Err(DomainError::invalid(
            format!("{field_prefix}username"),
            "SHARED_EMAIL_AS_USERNAME",
            "another user already has this email, so give this user a username different from it",
        ));
    }
    Ok(())
}

/// Creates a user with explicit groups and/or a mirrored user's groups, and
/// queues the invitation, in one transaction. Uncovered explicit groups are
/// refused; uncovered groups of the mirrored user are skipped and reported.
pub async fn create_user(
    pool: &PgPool,
    caller: &Caller,
    request_id: &RequestId,
    new_user: &NewUser,
) -> Result<CreatedUser, DomainError> {
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
    let mut work = UnitOfWork::begin(pool, caller, request_id).await?;
    let tx = work.tx();
    let organization = store::organizations::lock_shared(tx, organization_id)
        .await?
        .ok_or_else(|| DomainError::not_found("organization", organization_id))?;
    let mut warnings = Vec::new();
    warnings.extend(public_domain_check(
        &new_user.values.email,
        organization.settings.public_email_domain_policy,
        "user.email",
    )?);
    check_given_groups(tx, caller, &new_user.group_ids, "group_ids").await?;
    let (mirrored, skipped) = match new_user.mirror_user_id {
        Some(source) => {
            if new_user.origin == Origin::Clone && is_self(caller, source) {
                return Err(DomainError::PermissionDenied(
                    "you cannot clone yourself".into(),
                ));
            }
            mirrored_grants(tx, caller, source, new_user.origin.source_field()).await?
        }
        None => (Vec::new(), Vec::new()),
    };
    let allow_duplicates = organization.settings.allow_duplicate_emails;
    if allow_duplicates {
        check_shared_email_login(tx, organization_id, &new_user.values, None, "user.").await?;
    } else if store::users::email_used_by_other(tx, organization_id, &new_user.values.email, None)
        .await?
    {
        // The same email is the same person, whatever else collides (the defaulted username).
        return Err(user_already_exists());
    }
    let user = store::users::insert(
        tx,
        organization_id,
        &new_user.values,
        new_user.deactivated,
        !allow_duplicates,
    )
    .await?;
    let mut group_ids: Vec<Uuid> = new_user.group_ids.clone();
    group_ids.extend(mirrored.iter().map(|g| g.group_id));
    group_ids.sort();
    group_ids.dedup();
    store::groups::add_memberships(tx, organization_id, user.id, &group_ids).await?;
    if new_user.send_invitation {
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
                "send_invitation": new_user.send_invitation,
            })),
    );
    let created = CreatedUser {
        user,
        skipped_group_ids: skipped,
        warnings,
    };
    if let Some(create) = &create {
        work.remember(create, created.user.id, &StoredCreateResponse::of(&created))
            .await?;
    }
    work.commit().await?;
    Ok(created)
}

async fn replay_create(
    pool: &PgPool,
    caller: &Caller,
    create: &IdempotentCreate,
) -> Result<Option<CreatedUser>, DomainError> {
    let Some((user_id, stored)) = create.earlier::<StoredCreateResponse>(pool).await? else {
        return Ok(None);
    };
    let user = store::users::find(pool, caller.organization_id, user_id)
        .await?
        .ok_or_else(|| DomainError::not_found("user", user_id))?;
    Ok(Some(CreatedUser {
        user,
        skipped_group_ids: stored.skipped_group_ids,
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
            skipped_group_ids: created.skipped_group_ids.clone(),
            warnings: created
                .warnings
                .iter()
                .map(|w| (w.field.clone(), w.code.to_string(), w.description.clone()))
                .collect(),
        }
    }
}

/// Refuses groups to give that do not exist (`field[index]`) or that the
/// caller does not cover.
pub(crate) async fn check_given_groups(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    group_ids: &[Uuid],
    field: &str,
) -> Result<(), DomainError> {
    let found = store::groups::grants_by_ids(&mut **tx, caller.organization_id, group_ids).await?;
    for (index, id) in group_ids.iter().enumerate() {
        let Some(grant) = found.iter().find(|g| g.group_id == *id) else {
            return Err(DomainError::NotFoundField {
                field: format!("{field}[{index}]"),
                message: format!("group {id} not found"),
            });
        };
        if !caller.authority.covers(grant) {
            return Err(DomainError::PermissionDenied(format!(
                "you may not give group {id}: it grants more than you hold"
            )));
        }
    }
    Ok(())
}

/// The groups of `source` the caller covers, and the ids of those skipped.
pub(crate) async fn mirrored_grants(
    tx: &mut Transaction<'_>,
    caller: &Caller,
    source: Uuid,
    field: &str,
) -> Result<(Vec<Grant>, Vec<Uuid>), DomainError> {
    if store::users::find(&mut **tx, caller.organization_id, source)
        .await?
        .is_none()
    {
        return Err(DomainError::NotFoundField {
            field: field.to_owned(),
            message: format!("user {source} not found"),
        });
    }
    let grants = store::groups::grants_of_user(&mut **tx, caller.organization_id, source).await?;
    let (covered, skipped): (Vec<Grant>, Vec<Grant>) =
        grants.into_iter().partition(|g| caller.authority.covers(g));
    Ok((covered, skipped.into_iter().map(|g| g.group_id).collect()))
}

pub async fn get_user(pool: &PgPool, organization_id: Uuid, id: Uuid) -> Result<User, DomainError> {
    store::users::find(pool, organization_id, id)
        .await?
        .ok_or_else(|| DomainError::not_found("user", id))
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
    if let (Some(action), Principal::User { id, .. }) = (self_action, &caller.principal) {
        if *id == user_id {
            return Err(DomainError::PermissionDenied(format!(
                "you cannot {action} yourself"
            )));
        }
    }
    let grants = store::groups::grants_of_user(&mut **tx, caller.organization_id, user_id).await?;
    may_act_on(&caller.authority, user_id, &grants)
        .map_err(|refusal| DomainError::PermissionDenied(refusal.to_string()))?;
    Ok(user)
}

/// Why a caller may not act on a user: the user holds a group the caller's
/// authority does not cover. Every path that acts on a user (single calls,
/// re-invitations, import rows) refuses with this one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "user {user_id} holds group {group_id}, which you do not cover, so you may not act on them"
)]
pub(crate) struct NotCovered {
    pub user_id: Uuid,
    pub group_id: Uuid,
}

/// Whether `authority` may act on the user `user_id` holding `grants`: it
/// must cover every one of them; a refusal names the first it does not.
pub(crate) fn may_act_on(
    authority: &Authority,
    user_id: Uuid,
    grants: &[Grant],
) -> Result<(), NotCovered> {
    match grants.iter().find(|grant| !authority.covers(grant)) {
        Some(uncovered) => Err(NotCovered {
            user_id,
            group_id: uncovered.group_id,
        }),
        None => Ok(()),
    }
}

/// SendActivationEmail: queues a new invitation for every targeted user who
/// has not registered a password (the worker revokes the previous link when
/// it sends). A unit administrator re-invites only users whose groups they
/// all cover: named users they do not cover are refused, filtered ones are
/// left out. Returns how many were queued.
pub async fn send_activation_emails(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    targets: &store::users::InvitationTargets,
) -> Result<u64, DomainError> {
    if let store::users::InvitationTargets::Ids(named) = targets {
        let existing = store::users::find_many(pool, caller.organization_id, named).await?;
        if let Some(missing) = named
            .iter()
            .find(|id| !existing.iter().any(|u| u.id == **id))
        {
            return Err(DomainError::NotFoundField {
                field: "user_ids".into(),
                message: format!("user {missing} not found"),
            });
        }
    }
    // A job of another organization, or of none, is not "no users to invite".
    if let store::users::InvitationTargets::ImportJob(job_id) = targets {
        if store::imports::find_job(pool, caller.organization_id, *job_id)
            .await?
            .is_none()
        {
            return Err(DomainError::NotFoundField {
                field: "import_job_id".into(),
                message: format!("import job {job_id} not found"),
            });
        }
    }
    let mut tx = pool.begin().await?;
    let mut ids =
        store::users::lock_invitation_targets(&mut tx, caller.organization_id, targets).await?;
    if !matches!(caller.authority, Authority::Organization) {
        let grants = store::groups::grants_of_users(&mut tx, caller.organization_id, &ids).await?;
        let may_invite = |id: &Uuid| {
            may_act_on(
                &caller.authority,
                *id,
                grants.get(id).map_or(&[][..], Vec::as_slice),
            )
        };
        if matches!(targets, store::users::InvitationTargets::Ids(_)) {
            if let Some(refusal) = ids.iter().find_map(|id| may_invite(id).err()) {
                return Err(DomainError::PermissionDenied(refusal.to_string()));
            }
        }
        ids.retain(|id| may_invite(id).is_ok());
    }
    store::outbox::enqueue_invitations(&mut tx, caller.organization_id, &ids).await?;
    let audits: Vec<AuditRecord> = ids
        .iter()
        .map(|id| {
            AuditRecord::new(
                caller.organization_id,
                caller.actor(),
                "user.invite",
                "user",
                id,
            )
            .with_request_id(request_id)
        })
        .collect();
    store::audit::record_many(&mut tx, &audits).await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
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

/// The outcome of mirroring onto one target.
#[derive(Debug, Clone, Default)]
pub struct MirrorResult {
    pub target_user_id: Uuid,
    pub added: Vec<Uuid>,
    pub removed: Vec<Uuid>,
    pub skipped: Vec<Uuid>,
    /// Why nothing was applied to this target: a stable code (`NOT_FOUND`,
    /// `PERMISSION_DENIED`) and a message.
    pub error: Option<(&'static str, String)>,
}

/// Gives each target the reference user's groups the caller covers; each
/// target is changed in its own transaction and reported on its own.
pub async fn mirror_user(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    reference: Uuid,
    targets: &[Uuid],
    mode: MirrorMode,
) -> Result<Vec<MirrorResult>, DomainError> {
    let mut reference_tx = pool.begin().await?;
    let (covered, skipped) =
        mirrored_grants(&mut reference_tx, caller, reference, "reference_user_id").await?;
    reference_tx.commit().await?;
    let wanted: Vec<Uuid> = covered.iter().map(|g| g.group_id).collect();
    let mut results = Vec::with_capacity(targets.len());
    for &target in targets {
        let mut result = MirrorResult {
            target_user_id: target,
            skipped: skipped.clone(),
            ..Default::default()
        };
        match mirror_onto(pool, caller, request_id, reference, target, &wanted, mode).await {
            Ok((added, removed)) => {
                result.added = added;
                result.removed = removed;
            }
            Err(DomainError::NotFound(message)) => result.error = Some(("NOT_FOUND", message)),
            Err(DomainError::PermissionDenied(message)) => {
                result.error = Some(("PERMISSION_DENIED", message))
            }
            Err(other) => return Err(other),
        }
        results.push(result);
    }
    Ok(results)
}

async fn mirror_onto(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    reference: Uuid,
    target: Uuid,
    wanted: &[Uuid],
    mode: MirrorMode,
) -> Result<(Vec<Uuid>, Vec<Uuid>), DomainError> {
    let mut tx = pool.begin().await?;
    ensure_may_act_on(&mut tx, caller, target, None).await?;
    let removed = match mode {
        MirrorMode::Add => Vec::new(),
        MirrorMode::Replace => {
            // Every group of the target is covered (checked above), so REPLACE may drop any not wanted.
            let current =
                store::groups::grants_of_user(&mut *tx, caller.organization_id, target).await?;
            let unwanted: Vec<Uuid> = current
                .iter()
                .map(|g| g.group_id)
                .filter(|id| !wanted.contains(id))
                .collect();
            store::groups::remove_memberships(&mut tx, caller.organization_id, target, &unwanted)
                .await?
        }
    };
    let added =
        store::groups::add_memberships(&mut tx, caller.organization_id, target, wanted).await?;
    if !added.is_empty() || !removed.is_empty() {
        store::audit::record(
            &mut tx,
            &AuditRecord::new(
                caller.organization_id,
                caller.actor(),
                "user.mirror",
                "user",
                target,
            )
            .with_request_id(request_id)
            .with_changes(
                vec!["groups".into()],
                json!({ "reference_user_id": reference, "added": added, "removed": removed }),
            ),
        )
        .await?;
    }
    tx.commit().await?;
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

/// Applies the named fields of `input` to a user. Changing the email revokes
/// the user's access tokens (and, with onboarding, their links).
pub async fn update_user(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    user_id: Uuid,
    fields: &[UserField],
    input: &UserInput,
) -> Result<(User, Vec<Warning>), DomainError> {
    let mut tx = pool.begin().await?;
    let organization = store::organizations::lock_shared(&mut tx, caller.organization_id)
        .await?
        .ok_or_else(|| DomainError::not_found("organization", caller.organization_id))?;
    let current = ensure_may_act_on(&mut tx, caller, user_id, None).await?;
    // Start from the stored values, take the named fields from the input, validate the whole.
    let mut merged = UserInput {
        first_name: current.first_name.clone(),
        last_name: current.last_name.clone(),
        email: current.email.clone(),
        username: current.username.clone(),
        phone: current.phone.clone().unwrap_or_default(),
        external_id: current.external_id.clone().unwrap_or_default(),
    };
    for field in fields {
        match field {
            UserField::FirstName => merged.first_name.clone_from(&input.first_name),
            UserField::LastName => merged.last_name.clone_from(&input.last_name),
            UserField::Email => merged.email.clone_from(&input.email),
            UserField::Username => merged.username.clone_from(&input.username),
            UserField::Phone => merged.phone.clone_from(&input.phone),
            UserField::ExternalId => merged.external_id.clone_from(&input.external_id),
        }
    }
    if fields.contains(&UserField::Username) && input.username.trim().is_empty() {
        return Err(DomainError::invalid(
            "user.username",
            "REQUIRED",
            "must not be empty",
        ));
    }
    let values = UserValues::parse(&merged, "user.").map_err(DomainError::InvalidArgument)?;
    let before = UserValues::of(&current);
    if values == before {
        return Ok((current, Vec::new()));
    }
    let email_changed = !values.email.eq_ignore_ascii_case(&before.email);
    let mut warnings = Vec::new();
    if email_changed {
        warnings.extend(public_domain_check(
            &values.email,
            organization.settings.public_email_domain_policy,
            "user.email",
        )?);
        if organization.settings.allow_duplicate_emails {
            check_shared_email_login(
                &mut tx,
                caller.organization_id,
                &values,
                Some(user_id),
                "user.",
            )
            .await?;
        }
    }
    let updated =
        store::users::update_values(&mut tx, caller.organization_id, user_id, &values).await?;
    if email_changed {
        // Links and sessions were given to the old address.
        store::access_tokens::revoke_all_for_user(&mut *tx, caller.organization_id, user_id)
            .await?;
        store::onboarding_tokens::revoke(
            &mut tx,
            caller.organization_id,
            &[user_id],
            &store::onboarding_tokens::ALL_PURPOSES,
        )
        .await?;
    }
    let changes = value_changes(&before, &values);
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "user.update",
            "user",
            user_id,
        )
        .with_request_id(request_id)
        .with_field_changes(changes),
    )
    .await?;
    tx.commit().await?;
    Ok((updated, warnings))
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

pub async fn delete_user(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    user_id: Uuid,
) -> Result<(), DomainError> {
    let mut tx = pool.begin().await?;
    let user = ensure_may_act_on(&mut tx, caller, user_id, Some("delete")).await?;
    store::users::delete(&mut tx, caller.organization_id, user_id).await?;
    store::audit::record(
        &mut tx,
        &AuditRecord::new(
            caller.organization_id,
            caller.actor(),
            "user.delete",
            "user",
            user_id,
        )
        .with_request_id(request_id)
        .with_details(json!({ "email": user.email, "username": user.username })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets the admin state; any state but ACTIVE revokes the user's access tokens.
pub async fn set_user_status(
    pool: &PgPool,
    caller: &Caller,
    request_id: &str,
    user_id: Uuid,
    status: UserStatus,
) -> Result<User, DomainError> {
    let admin_state = status
        .assignable()
        .map_err(|v| DomainError::InvalidArgument(vec![v]))?;
    let mut tx = pool.begin().await?;
    let before = ensure_may_act_on(&mut tx, caller, user_id, Some("change the status of")).await?;
    let user = store::users::set_admin_state(&mut tx, caller.organization_id, user_id, admin_state)
        .await?;
    if admin_state != AdminState::Active {
        store::access_tokens::revoke_all_for_user(&mut *tx, caller.organization_id, user_id)
            .await?;
    }
    store::audit::record(
        &mut tx,
        &AuditRecord::new(caller.organization_id, caller.actor(), "user.status.set", "user", user_id)
            .with_request_id(request_id)
            .with_changes(
                vec!["status".into()],
                json!({ "status": { "old": before.status.as_str(), "new": user.status.as_str() }, "admin_state": admin_state.as_str() }),
            ),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Onboarded vs not, and users per status.
#[derive(Debug, Clone, Default)]
pub struct OnboardingStats {
    pub onboarded: i64,
    pub not_onboarded: i64,
    pub by_status: Vec<(UserStatus, i64)>,
}

pub async fn onboarding_stats(
    pool: &PgPool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::UnitScope;

    #[test]
    fn acting_on_a_user_needs_every_group_covered_and_the_refusal_names_one() {
        let cashier = Uuid::new_v4();
        let south = Uuid::new_v4();
        let west = Uuid::new_v4();
        let grant = |unit: Uuid| Grant {
            group_id: Uuid::new_v4(),
            profile_id: cashier,
            scope: UnitScope::Units([unit].into()),
        };
        let (on_south, on_west) = (grant(south), grant(west));
        let south_admin = Authority::Grants(vec![grant(south)]);
        let user = Uuid::new_v4();

        assert_eq!(may_act_on(&south_admin, user, &[]), Ok(()));
        assert_eq!(
            may_act_on(&south_admin, user, std::slice::from_ref(&on_south)),
            Ok(())
        );
        let refusal =
            may_act_on(&south_admin, user, &[on_south.clone(), on_west.clone()]).unwrap_err();
        assert_eq!(
            refusal,
            NotCovered {
                user_id: user,
                group_id: on_west.group_id
            }
        );
        let message = refusal.to_string();
        assert!(message.contains(&user.to_string()), "{message}");
        assert!(message.contains(&on_west.group_id.to_string()), "{message}");
        assert_eq!(
            may_act_on(&Authority::Organization, user, &[on_south, on_west]),
            Ok(())
        );
    }

    #[test]
    fn every_invalid_value_is_reported_under_its_path() {
        let input = UserInput {
            first_name: " ".into(),
            last_name: "Silva".into(),
            email: "not-an-email".into(),
            username: "x".into(),
            phone: "123".into(),
            external_id: String::new(),
        };
        let violations = UserValues::parse(&input, "user.").unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
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
        let input = UserInput {
            first_name: "João".into(),
            last_name: "Silva".into(),
            email: "Joao@Acme.com".into(),
            ..Default::default()
        };
        let values = UserValues::parse(&input, "user.").unwrap();
        assert_eq!(values.username, "Joao@Acme.com");
        assert_eq!(values.phone, None);
        assert_eq!(
            values.search_key(),
            "joao silva joao@acme.com joao@acme.com"
        );
    }
}
