//! What to do with each row of a batch (spec §4.1 "Rows"), decided in file
//! order against the users, groups and in-file claims read for the batch.
//!
//! Claims are checked before anything else: every key a successful row
//! touches (emails, usernames, external ids and the user itself, before and
//! after) is claimed, so a later row sharing one fails naming the first line,
//! and no row depends on a change made earlier in the same batch. That makes
//! each decision independent of where the batches are cut.

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    batch::ImportedUser,
    header::ATTRIBUTE_PREFIX,
    job::{ImportOptions, JobKind, OnExisting, Outcome},
    row::{legacy_status_refused, Action, RowCommand, ValueChanges},
};
use crate::domain::{
    access::Grant,
    attribute::{AttributeSchema, StoredAttributes},
    caller::{Caller, Principal},
    echo,
    group::GroupLabel,
    organization::Settings,
    user::{
        public_domain_check, AdminState, LegacyStatus, UserInput, UserStatus, UserValues, Warning,
    },
    DomainError, FieldViolation,
};

/// A user the batch's rows name, as stored, with what their groups grant.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub id: Uuid,
    pub values: UserValues,
    pub admin_state: AdminState,
    pub legacy_status: Option<LegacyStatus>,
    /// Custom attributes' values, as stored.
    pub attributes: StoredAttributes,
    /// Read apart from the user (`store::users::find_by_keys` leaves it
    /// empty, the batch's grants query fills it).
    pub grants: Vec<Grant>,
}

/// A user the batch creates, as later rows of the batch see it: nothing
/// read yet of what its groups grant.
impl From<ImportedUser<'_>> for StoredUser {
    fn from(created: ImportedUser<'_>) -> Self {
        Self {
            id: created.id,
            values: created.values.clone(),
            admin_state: created.admin_state,
            legacy_status: created.legacy_status,
            attributes: created.attributes.clone(),
            grants: Vec::new(),
        }
    }
}

impl StoredUser {
    /// The status an import row compares with: the legacy one, else the admin state.
    fn assigned_status(&self) -> UserStatus {
        UserStatus::assigned(self.admin_state, self.legacy_status)
    }
}

/// The states a row's status stores: an admin state, or a legacy status
/// over ACTIVE (whether a legacy one is allowed is the caller's check).
fn states_of(status: UserStatus) -> (AdminState, Option<LegacyStatus>) {
    match status.assignable() {
        Ok(state) => (state, None),
        Err(_) => (AdminState::Active, status.legacy()),
    }
}

/// A group a `groups` cell may name.
#[derive(Debug, Clone)]
pub struct NamedGroup {
    pub name: String,
    pub grant: Grant,
}

/// Everything the decisions of one batch read.
pub struct BatchContext<'a> {
    pub caller: &'a Caller,
    pub kind: JobKind,
    pub options: &'a ImportOptions,
    pub settings: &'a Settings,
    /// The custom attributes' definitions the file's header was read with.
    pub schema: &'a AttributeSchema,
    /// Groups for every created user: the options' groups and the covered
    /// groups of the mirrored user.
    pub option_group_ids: &'a [Uuid],
    /// The mirrored user's groups the caller does not cover.
    pub mirror_skipped: &'a [GroupLabel],
    pub users: Users,
    /// By lowercase name.
    pub groups: HashMap<String, NamedGroup>,
    /// Key → line of the row that claimed it (earlier batches and this one).
    pub claims: HashMap<String, u64>,
}

/// A row as read from the file.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub line: u64,
    pub action: Option<Action>,
    pub email: String,
    pub command: Result<RowCommand, Vec<FieldViolation>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per row of a bounded batch
pub enum Plan {
    Failed(Vec<FieldViolation>),
    Create {
        /// Chosen now, so later rows of the batch can name the new user.
        user_id: Uuid,
        values: UserValues,
        admin_state: AdminState,
        legacy_status: Option<LegacyStatus>,
        group_ids: Vec<Uuid>,
        attributes: StoredAttributes,
    },
    Update {
        user_id: Uuid,
        before: UserValues,
        after: UserValues,
        attributes_before: StoredAttributes,
        attributes_after: StoredAttributes,
        /// The assigned status before (legacy status, else admin state).
        status_before: UserStatus,
        /// Admin state and legacy status after the row.
        admin_state: AdminState,
        legacy_status: Option<LegacyStatus>,
        add_group_ids: Vec<Uuid>,
        /// Email changed or the account is no longer ACTIVE: sessions end.
        revoke_tokens: bool,
        /// Links sent to the old address stop working too.
        email_changed: bool,
    },
    Unchanged {
        user_id: Uuid,
    },
    Skipped {
        user_id: Uuid,
    },
    /// The template's example row (action `example`): its values are checked
    /// as an add's, and it is never written, so a template imported as it
    /// came creates nobody.
    Example,
    Delete {
        user_id: Uuid,
        values: UserValues,
    },
}

impl Plan {
    pub fn outcome(&self, kind: JobKind) -> Outcome {
        match (self, kind) {
            (Plan::Failed(_), _) => Outcome::Failed,
            (_, JobKind::Validate) => Outcome::Valid,
            (Plan::Create { .. }, _) => Outcome::Created,
            (Plan::Update { .. }, _) => Outcome::Updated,
            (Plan::Unchanged { .. }, _) => Outcome::Unchanged,
            (Plan::Skipped { .. } | Plan::Example, _) => Outcome::Skipped,
            (Plan::Delete { .. }, _) => Outcome::Deleted,
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Plan::Failed(_) | Plan::Example => None,
            Plan::Create { user_id, .. }
            | Plan::Update { user_id, .. }
            | Plan::Unchanged { user_id }
            | Plan::Skipped { user_id }
            | Plan::Delete { user_id, .. } => Some(*user_id),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub line: u64,
    pub action: Option<Action>,
    pub email: String,
    pub plan: Plan,
    pub warnings: Vec<Warning>,
    /// Keys this row claims when it succeeds.
    pub claims: Vec<String>,
}

/// Decides every row of a batch, in file order.
pub fn decide_batch(context: &mut BatchContext<'_>, candidates: Vec<Candidate>) -> Vec<Decision> {
    candidates
        .into_iter()
        .map(|candidate| {
            let mut warnings = Vec::new();
            let (plan, claims) = match candidate.command {
                Err(errors) => (Plan::Failed(errors), Vec::new()),
                Ok(_) if candidate.action == Some(Action::Example) => {
                    warnings.push(example_row());
                    (Plan::Example, Vec::new())
                }
                Ok(command) => match decide(context, candidate.line, &command, &mut warnings) {
                    Ok((plan, claims)) => {
                        for key in &claims {
                            context.claims.insert(key.clone(), candidate.line);
                        }
                        context.remember(&plan);
                        (plan, claims)
                    }
                    Err(errors) => (Plan::Failed(errors), Vec::new()),
                },
            };
            if matches!(plan, Plan::Failed(_)) {
                warnings.clear();
            }
            Decision {
                line: candidate.line,
                action: candidate.action,
                email: candidate.email,
                plan,
                warnings,
                claims,
            }
        })
        .collect()
}

/// Said of the template's example row, in the review and in the import.
fn example_row() -> Warning {
    FieldViolation::new(
        "action",
        "EXAMPLE_ROW",
        "the template's example row is never imported: replace it with your people's rows \
         (or set its action to add to import it)",
    )
}

type Decided = Result<(Plan, Vec<String>), Vec<FieldViolation>>;

fn violation(field: &str, code: &'static str, message: impl Into<String>) -> Vec<FieldViolation> {
    vec![FieldViolation::new(field, code, message)]
}

/// What a row asks for besides its values: a status, groups, the user's
/// id, custom attributes.
#[derive(Clone, Copy)]
struct Requested<'a> {
    status: Option<UserStatus>,
    groups: &'a [String],
    /// When given, the user found must have this id.
    id: Option<Uuid>,
    /// The values the row gives; the others stay as stored.
    attributes: &'a StoredAttributes,
}

fn decide(
    context: &BatchContext<'_>,
    line: u64,
    command: &RowCommand,
    warnings: &mut Vec<Warning>,
) -> Decided {
    // The row's own values first: a value an earlier row claimed fails this
    // one the same way wherever the batches are cut.
    context.check_claims(&context.own_keys(command), line)?;
    match command {
        RowCommand::Add {
            values,
            username_given,
            status,
            groups,
            id,
            attributes,
        } => {
            let requested = Requested {
                status: *status,
                groups,
                id: *id,
                attributes,
            };
            decide_add(context, line, values, *username_given, requested, warnings)
        }
        RowCommand::Update {
            changes,
            status,
            groups,
            id,
            attributes,
        } => {
            let user = context.user_to_update(changes)?;
            let requested = Requested {
                status: *status,
                groups,
                id: *id,
                attributes,
            };
            decide_update(context, line, user, changes, requested, warnings)
        }
        RowCommand::Delete { username, email } => decide_delete(context, line, username, email),
    }
}

/// An add row creates the user, or meets the existing one as the options say.
fn decide_add(
    context: &BatchContext<'_>,
    line: u64,
    values: &UserValues,
    username_given: bool,
    requested: Requested<'_>,
    warnings: &mut Vec<Warning>,
) -> Decided {
    let existing = if context.settings.allow_duplicate_emails {
        context.user_by_username(&values.username)
    } else {
        context.user_by_email(&values.email)
    };
    let Some(existing) = existing else {
        return decide_create(context, line, values, requested, warnings);
    };
    if let Some(other) = context.user_by_username(&values.username) {
        if other.id != existing.id && username_given {
            return Err(username_taken());
        }
    }
    match context.options.on_existing {
        // Named after the value that matched the existing user.
        OnExisting::Fail => Err(violation(
            if context.settings.allow_duplicate_emails {
                "username"
            } else {
                "email"
            },
            "USER_ALREADY_EXISTS",
            "User already exists",
        )),
        OnExisting::Skip => {
            let claims = context.keys_of(existing, None);
            context.check_claims(&claims, line)?;
            Ok((
                Plan::Skipped {
                    user_id: existing.id,
                },
                claims,
            ))
        }
        OnExisting::Update => {
            let changes = ValueChanges {
                first_name: Some(values.first_name.to_string()),
                last_name: Some(values.last_name.to_string()),
                email: Some(values.email.to_string()),
                username: username_given.then(|| values.username.to_string()),
                phone: values.phone.as_deref().map(str::to_owned),
                external_id: values.external_id.as_deref().map(str::to_owned),
            };
            decide_update(context, line, existing, &changes, requested, warnings)
        }
    }
}

fn decide_delete(context: &BatchContext<'_>, line: u64, username: &str, email: &str) -> Decided {
    let user = context
        .user_by_username(username)
        .ok_or_else(|| violation("username", "USER_NOT_FOUND", "no user has this username"))?;
    if !user.values.email.eq_ignore_ascii_case(email) {
        return Err(violation(
            "email",
            "EMAIL_MISMATCH",
            "the user with this username has another email; a delete needs both of the same user",
        ));
    }
    context.ensure_may_act_on(user, Some("delete"))?;
    let claims = context.keys_of(user, None);
    context.check_claims(&claims, line)?;
    Ok((
        Plan::Delete {
            user_id: user.id,
            values: user.values.clone(),
        },
        claims,
    ))
}

fn username_taken() -> Vec<FieldViolation> {
    violation("username", "USERNAME_TAKEN", "Username already taken")
}

fn decide_create(
    context: &BatchContext<'_>,
    line: u64,
    values: &UserValues,
    requested: Requested<'_>,
    warnings: &mut Vec<Warning>,
) -> Decided {
    let (status, groups) = (requested.status, requested.groups);
    let claims = context.keys_of_values(values, None);
    context.check_claims(&claims, line)?;
    let mut errors = Vec::new();
    if context.user_by_username(&values.username).is_some() {
        errors.extend(username_taken());
    }
    if let Some(external_id) = &values.external_id {
        if context.user_by_external_id(external_id).is_some() {
            errors.extend(external_id_taken());
        }
    }
    if context.settings.allow_duplicate_emails
        && values.username.eq_ignore_ascii_case(&values.email)
        && context.users_by_email(&values.email).next().is_some()
    {
        errors.extend(violation(
            "username",
            "SHARED_EMAIL_AS_USERNAME",
            "another user already has this email, so give this user a username different from it",
        ));
    }
    context.check_email_domain(&values.email, warnings, &mut errors);
    errors.extend(
        context
            .schema
            .check_new(requested.attributes, ATTRIBUTE_PREFIX),
    );
    if status.is_some_and(|s| s.assignable().is_err()) && !context.options.allow_legacy_statuses {
        errors.push(legacy_status_refused());
    }
    let (admin_state, legacy_status) = match status {
        None if context.options.deactivated => (AdminState::Inactive, None),
        None => (AdminState::Active, None),
        Some(status) => states_of(status),
    };
    let row_groups = context.resolve_groups(groups).unwrap_or_else(|found| {
        errors.extend(found);
        Vec::new()
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut group_ids = context.option_group_ids.to_vec();
    for id in row_groups {
        if !group_ids.contains(&id) {
            group_ids.push(id);
        }
    }
    warnings.extend(context.mirror_skipped.iter().map(|group| {
        FieldViolation::new(
            "groups",
            "GROUP_SKIPPED",
            format!(
                "group `{}` ({}) of the mirrored user was not given: it grants more than you hold",
                group.name, group.id
            ),
        )
    }));
    Ok((
        Plan::Create {
            user_id: Uuid::now_v7(),
            values: values.clone(),
            admin_state,
            legacy_status,
            group_ids,
            attributes: requested.attributes.clone(),
        },
        claims,
    ))
}

fn external_id_taken() -> Vec<FieldViolation> {
    violation(
        "external_id",
        "EXTERNAL_ID_TAKEN",
        "external_id already belongs to another user",
    )
}

fn decide_update(
    context: &BatchContext<'_>,
    line: u64,
    user: &StoredUser,
    changes: &ValueChanges,
    requested: Requested<'_>,
    warnings: &mut Vec<Warning>,
) -> Decided {
    if requested.id.is_some_and(|id| id != user.id) {
        return Err(violation(
            "id",
            "ID_MISMATCH",
            format!("the user found by username or email has id {}", user.id),
        ));
    }
    let before = &user.values;
    let after = UserValues::parse(&merged_input(before, changes), "")?;
    let claims = context.keys_of(user, Some(&after));
    context.check_claims(&claims, line)?;
    let email_changed = !after.email.eq_ignore_ascii_case(&before.email);
    let status_change = match requested.status {
        None => None,
        Some(wanted) if wanted == user.assigned_status() => None,
        Some(wanted) => Some(wanted),
    };
    context.ensure_may_act_on(user, status_change.map(|_| "change the status of"))?;
    let mut errors = Vec::new();
    context.check_new_values(user, &after, warnings, &mut errors);
    let status = status_change.and_then(|wanted| context.status_after(wanted, &mut errors));
    let held: Vec<Uuid> = user.grants.iter().map(|g| g.group_id).collect();
    let add_group_ids: Vec<Uuid> = context
        .resolve_groups(requested.groups)
        .unwrap_or_else(|found| {
            errors.extend(found);
            Vec::new()
        })
        .into_iter()
        .filter(|id| !held.contains(id))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut attributes_after = user.attributes.clone();
    attributes_after.extend(requested.attributes.clone());
    if after == *before
        && attributes_after == user.attributes
        && status.is_none()
        && add_group_ids.is_empty()
    {
        warnings.clear();
        return Ok((Plan::Unchanged { user_id: user.id }, claims));
    }
    let revoke_tokens = email_changed
        || status.is_some_and(|(state, legacy)| state != AdminState::Active || legacy.is_some());
    let (admin_state, legacy_status) = status.unwrap_or((user.admin_state, user.legacy_status));
    Ok((
        Plan::Update {
            user_id: user.id,
            before: before.clone(),
            after,
            attributes_before: user.attributes.clone(),
            attributes_after,
            status_before: user.assigned_status(),
            admin_state,
            legacy_status,
            add_group_ids,
            revoke_tokens,
            email_changed,
        },
        claims,
    ))
}

/// The stored values with the row's changes over them.
fn merged_input(before: &UserValues, changes: &ValueChanges) -> UserInput {
    let or_before =
        |change: &Option<String>, stored: &str| change.clone().unwrap_or_else(|| stored.to_owned());
    let or_before_optional = |change: &Option<String>, stored: Option<&str>| {
        change
            .clone()
            .or_else(|| stored.map(str::to_owned))
            .unwrap_or_default()
    };
    UserInput {
        first_name: or_before(&changes.first_name, &before.first_name),
        last_name: or_before(&changes.last_name, &before.last_name),
        email: or_before(&changes.email, &before.email),
        username: or_before(&changes.username, &before.username),
        phone: or_before_optional(&changes.phone, before.phone.as_deref()),
        external_id: or_before_optional(&changes.external_id, before.external_id.as_deref()),
    }
}

impl BatchContext<'_> {
    /// The user an update row means: by username when given, else by email,
    /// which must then be one user's.
    fn user_to_update(&self, changes: &ValueChanges) -> Result<&StoredUser, Vec<FieldViolation>> {
        if let Some(username) = &changes.username {
            return self.user_by_username(username).ok_or_else(|| {
                violation("username", "USER_NOT_FOUND", "no user has this username")
            });
        }
        let email = changes.email.as_deref().unwrap_or_default();
        let mut found = self.users_by_email(email);
        match (found.next(), found.next()) {
            (Some(user), None) => Ok(user),
            (None, _) => Err(violation(
                "email",
                "USER_NOT_FOUND",
                "no user has this email",
            )),
            (Some(_), Some(_)) => Err(violation(
                "email",
                "AMBIGUOUS_EMAIL",
                "several users have this email (ambiguous, give the username)",
            )),
        }
    }

    /// An updated user's new email, username and external id must not be
    /// another user's; a new email meets the public-domain policy.
    fn check_new_values(
        &self,
        user: &StoredUser,
        after: &UserValues,
        warnings: &mut Vec<Warning>,
        errors: &mut Vec<FieldViolation>,
    ) {
        let before = &user.values;
        let others = |found: Option<&StoredUser>| found.is_some_and(|other| other.id != user.id);
        if !after.email.eq_ignore_ascii_case(&before.email) {
            if self.settings.allow_duplicate_emails {
                if after.username.eq_ignore_ascii_case(&after.email)
                    && self
                        .users_by_email(&after.email)
                        .any(|other| other.id != user.id)
                {
                    errors.extend(violation(
                        "username",
                        "SHARED_EMAIL_AS_USERNAME",
                        "another user already has this email, so give this user a username different from it",
                    ));
                }
            } else if others(self.user_by_email(&after.email)) {
                errors.extend(violation(
                    "email",
                    "EMAIL_TAKEN",
                    "this email belongs to another user",
                ));
            }
            self.check_email_domain(&after.email, warnings, errors);
        }
        if !after.username.eq_ignore_ascii_case(&before.username)
            && others(self.user_by_username(&after.username))
        {
            errors.extend(username_taken());
        }
        if after.external_id != before.external_id {
            if let Some(external_id) = &after.external_id {
                if others(self.user_by_external_id(external_id)) {
                    errors.extend(external_id_taken());
                }
            }
        }
    }

    /// The admin state and legacy status a wanted status sets; a legacy one
    /// only where the options allow it.
    fn status_after(
        &self,
        wanted: UserStatus,
        errors: &mut Vec<FieldViolation>,
    ) -> Option<(AdminState, Option<LegacyStatus>)> {
        if wanted.assignable().is_err() && !self.options.allow_legacy_statuses {
            errors.push(legacy_status_refused());
            return None;
        }
        Some(states_of(wanted))
    }

    /// The organization's public-domain policy on a row's email: a warning,
    /// or an error under REJECT.
    fn check_email_domain(
        &self,
        email: &str,
        warnings: &mut Vec<Warning>,
        errors: &mut Vec<FieldViolation>,
    ) {
        match public_domain_check(email, self.settings.public_email_domain_policy, "email") {
            Ok(warning) => warnings.extend(warning),
            Err(DomainError::InvalidArgument(found)) => errors.extend(found),
            Err(_) => {}
        }
    }

    /// Later rows of the batch see the users as this row leaves them, as
    /// they would from a later batch.
    fn remember(&mut self, plan: &Plan) {
        if let Some(created) = plan.new_user() {
            self.users.insert(StoredUser::from(created));
        }
        match plan {
            Plan::Update {
                user_id,
                after,
                attributes_after,
                admin_state,
                legacy_status,
                ..
            } => {
                if let Some(mut user) = self.users.remove(*user_id) {
                    user.values = after.clone();
                    user.attributes = attributes_after.clone();
                    user.admin_state = *admin_state;
                    user.legacy_status = *legacy_status;
                    self.users.insert(user);
                }
            }
            Plan::Delete { user_id, .. } => {
                self.users.remove(*user_id);
            }
            Plan::Create { .. }
            | Plan::Failed(_)
            | Plan::Unchanged { .. }
            | Plan::Skipped { .. }
            | Plan::Example => {}
        }
    }

    /// The claim keys of the values a row gives.
    fn own_keys(&self, command: &RowCommand) -> Vec<String> {
        let (email, mut username, external_id) = command.named_values();
        // A username that only stands in for the email adds nothing where emails are unique.
        if let RowCommand::Add {
            username_given: false,
            ..
        } = command
        {
            if !self.settings.allow_duplicate_emails {
                username = None;
            }
        }
        let mut keys = Vec::with_capacity(3);
        if !self.settings.allow_duplicate_emails {
            keys.extend(email.map(|e| format!("email:{}", e.to_lowercase())));
        }
        keys.extend(username.map(|u| format!("username:{}", u.to_lowercase())));
        keys.extend(external_id.map(|x| format!("external_id:{x}")));
        keys
    }

    /// Every claim key the candidates may touch: their own values and those
    /// of the stored users they may name.
    pub fn candidate_keys(&self, candidates: &[Candidate]) -> Vec<String> {
        let mut keys = Vec::new();
        for candidate in candidates {
            if let Ok(command) = &candidate.command {
                keys.extend(self.own_keys(command));
            }
        }
        for user in self.users.iter() {
            keys.extend(self.keys_of(user, None));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    fn user_by_username(&self, username: &str) -> Option<&StoredUser> {
        self.users.by_username(username)
    }

    fn users_by_email(&self, email: &str) -> impl Iterator<Item = &StoredUser> + '_ {
        self.users.by_email(email)
    }

    /// The user with this email where emails are unique.
    fn user_by_email(&self, email: &str) -> Option<&StoredUser> {
        self.users_by_email(email).next()
    }

    fn user_by_external_id(&self, external_id: &str) -> Option<&StoredUser> {
        self.users.by_external_id(external_id)
    }

    /// Keys of a user's values (and of its new values), for the in-file claims.
    fn keys_of_values(&self, values: &UserValues, user_id: Option<Uuid>) -> Vec<String> {
        let mut keys = Vec::with_capacity(4);
        if !self.settings.allow_duplicate_emails {
            keys.push(format!("email:{}", values.email.to_lowercase()));
        }
        keys.push(format!("username:{}", values.username.to_lowercase()));
        if let Some(external_id) = &values.external_id {
            keys.push(format!("external_id:{external_id}"));
        }
        if let Some(id) = user_id {
            keys.push(format!("user:{id}"));
        }
        keys
    }

    fn keys_of(&self, user: &StoredUser, after: Option<&UserValues>) -> Vec<String> {
        let mut keys = self.keys_of_values(&user.values, Some(user.id));
        if let Some(after) = after {
            for key in self.keys_of_values(after, None) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// Fails a row sharing a key with an earlier successful row, naming its line.
    fn check_claims(&self, keys: &[String], line: u64) -> Result<(), Vec<FieldViolation>> {
        let mut errors: Vec<FieldViolation> = Vec::new();
        for key in keys {
            let Some(first) = self.claims.get(key).filter(|first| **first != line) else {
                continue;
            };
            let (kind, _) = key.split_once(':').unwrap_or((key, ""));
            let (field, what) = match kind {
                "email" => ("email", "the same email as"),
                "username" => ("username", "the same username as"),
                "external_id" => ("external_id", "the same external_id as"),
                _ => ("row", "the same user as"),
            };
            if errors.iter().any(|e| e.field == field) {
                continue;
            }
            errors.push(FieldViolation::new(
                field,
                "DUPLICATE_IN_FILE",
                format!("{what} line {first}"),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Refuses rows on users holding groups the caller does not cover, and
    /// `self_action` on the caller's own user.
    fn ensure_may_act_on(
        &self,
        user: &StoredUser,
        self_action: Option<&str>,
    ) -> Result<(), Vec<FieldViolation>> {
        if let (Some(action), Principal::User { id, .. }) = (self_action, &self.caller.principal) {
            if *id == user.id {
                return Err(violation(
                    "row",
                    "SELF",
                    format!("you cannot {action} yourself"),
                ));
            }
        }
        crate::domain::user::may_act_on(&self.caller.authority, user.id, &user.grants)
            .map_err(|refusal| violation("row", "NOT_COVERED", refusal.to_string()))
    }

    /// The ids of the groups a `groups` cell names; unknown and uncovered
    /// names fail the row.
    fn resolve_groups(&self, names: &[String]) -> Result<Vec<Uuid>, Vec<FieldViolation>> {
        let mut ids = Vec::with_capacity(names.len());
        let mut errors = Vec::new();
        for name in names {
            match self.groups.get(&name.to_lowercase()) {
                None => errors.push(FieldViolation::new(
                    "groups",
                    "GROUP_NOT_FOUND",
                    format!("there is no group {}", echo(name)),
                )),
                Some(group) if !self.caller.authority.covers(&group.grant) => {
                    errors.push(FieldViolation::new(
                        "groups",
                        "GROUP_NOT_COVERED",
                        format!(
                            "you may not give group `{}`: it grants more than you hold",
                            group.name
                        ),
                    ))
                }
                Some(group) => ids.push(group.grant.group_id),
            }
        }
        if errors.is_empty() {
            Ok(ids)
        } else {
            Err(errors)
        }
    }
}

/// The users a batch reads, found by username, email (several where
/// duplicates are allowed) or external id without scanning.
#[derive(Default)]
pub struct Users {
    slots: Vec<Option<StoredUser>>,
    by_id: HashMap<Uuid, usize>,
    by_username: HashMap<String, usize>,
    by_email: HashMap<String, Vec<usize>>,
    by_external_id: HashMap<String, usize>,
}

impl Users {
    pub fn new(users: impl IntoIterator<Item = StoredUser>) -> Self {
        let mut index = Self::default();
        for user in users {
            index.insert(user);
        }
        index
    }

    fn insert(&mut self, user: StoredUser) {
        let slot = self.slots.len();
        self.by_id.insert(user.id, slot);
        self.by_username
            .insert(user.values.username.to_lowercase(), slot);
        self.by_email
            .entry(user.values.email.to_lowercase())
            .or_default()
            .push(slot);
        if let Some(external_id) = &user.values.external_id {
            self.by_external_id.insert(external_id.to_string(), slot);
        }
        self.slots.push(Some(user));
    }

    fn remove(&mut self, id: Uuid) -> Option<StoredUser> {
        let slot = self.by_id.remove(&id)?;
        let user = self.slots.get_mut(slot)?.take()?;
        self.by_username
            .remove(&user.values.username.to_lowercase());
        if let Some(slots) = self.by_email.get_mut(&user.values.email.to_lowercase()) {
            slots.retain(|s| *s != slot);
        }
        if let Some(external_id) = &user.values.external_id {
            self.by_external_id.remove(external_id.as_str());
        }
        Some(user)
    }

    fn at(&self, slot: usize) -> Option<&StoredUser> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn by_username(&self, username: &str) -> Option<&StoredUser> {
        self.by_username
            .get(&username.to_lowercase())
            .and_then(|slot| self.at(*slot))
    }

    fn by_email(&self, email: &str) -> impl Iterator<Item = &StoredUser> + '_ {
        self.by_email
            .get(&email.to_lowercase())
            .into_iter()
            .flatten()
            .filter_map(|slot| self.at(*slot))
    }

    fn by_external_id(&self, external_id: &str) -> Option<&StoredUser> {
        self.by_external_id
            .get(external_id)
            .and_then(|slot| self.at(*slot))
    }

    fn iter(&self) -> impl Iterator<Item = &StoredUser> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_status_stores_an_admin_state_or_a_legacy_status_over_active() {
        let cases = [
            (UserStatus::Active, (AdminState::Active, None)),
            (UserStatus::Inactive, (AdminState::Inactive, None)),
            (UserStatus::OnVacation, (AdminState::OnVacation, None)),
            (
                UserStatus::Blocked,
                (AdminState::Active, Some(LegacyStatus::Blocked)),
            ),
            (
                UserStatus::Disabled,
                (AdminState::Active, Some(LegacyStatus::Disabled)),
            ),
        ];
        for (status, states) in cases {
            assert_eq!(states_of(status), states, "{status}");
            assert_eq!(UserStatus::assigned(states.0, states.1), status);
        }
    }
}
