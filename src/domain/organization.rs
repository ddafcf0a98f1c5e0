//! Organizations (tenants), their settings, and the use cases on them.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    audit::FieldChanges,
    call::{Call, Via},
    caller::Actor,
    name::DisplayName,
    sign_in,
    unit_of_work::UnitOfWork,
    DomainError, FieldViolation,
};
use crate::store;
use crate::store::Pool;

/// Organizations are created and renamed by the operator only, at the
/// command line.
const OPERATOR_DOOR: Via = Via::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicEmailDomainPolicy {
    Allow,
    Warn,
    Reject,
}

impl PublicEmailDomainPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Warn => "WARN",
            Self::Reject => "REJECT",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ALLOW" => Some(Self::Allow),
            "WARN" => Some(Self::Warn),
            "REJECT" => Some(Self::Reject),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    PtBr,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::PtBr => "pt-BR",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "en" => Some(Self::En),
            "pt-BR" => Some(Self::PtBr),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub allow_duplicate_emails: bool,
    pub public_email_domain_policy: PublicEmailDomainPolicy,
    pub invitation_ttl_seconds: i64,
    pub password_reset_ttl_seconds: i64,
    pub access_token_ttl_seconds: i64,
    pub locale: Locale,
    /// How emails name the organization; empty: by its name.
    pub display_name: String,
    /// Sessions a user may hold at once; `None`: no limit.
    pub max_sessions_per_user: Option<i32>,
    /// How long a password signs in after it is set; `None`: forever.
    pub password_max_age_seconds: Option<i64>,
    /// Every user signs in with a second factor; one without enrolls one
    /// when they set a password (registration or reset).
    pub require_second_factor: bool,
    /// The profile of a group created over SCIM without the Roster
    /// extension's `profileId`; `None`: such a create is refused.
    pub scim_default_profile_id: Option<Uuid>,
    /// Users created over SCIM get an invitation email.
    pub scim_send_invitations: bool,
}

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: Uuid,
    /// What people type at sign-in ("company"), unique ignoring case.
    pub name: String,
    pub settings: Settings,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Organization {
    /// How people read the organization's name: its display name, else its name.
    pub fn display_name(&self) -> &str {
        match self.settings.display_name.as_str() {
            "" => &self.name,
            display_name => display_name,
        }
    }
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Allowed range of each time-to-live setting, in seconds.
pub const INVITATION_TTL_RANGE: (i64, i64) = (HOUR, 90 * DAY);
pub const PASSWORD_RESET_TTL_RANGE: (i64, i64) = (5 * MINUTE, 7 * DAY);
pub const ACCESS_TOKEN_TTL_RANGE: (i64, i64) = (5 * MINUTE, 30 * DAY);
pub const PASSWORD_MAX_AGE_RANGE: (i64, i64) = (DAY, 3650 * DAY);
/// The largest session limit; 0 means none.
pub const MAX_SESSIONS_PER_USER: i32 = 1000;

/// Settings as a caller sent them, before validation. `None`: not in the mask.
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    pub allow_duplicate_emails: Option<bool>,
    /// The policy's name, or `None` inside when the caller sent an unknown or unspecified value.
    pub public_email_domain_policy: Option<Option<PublicEmailDomainPolicy>>,
    /// Seconds, or `None` inside when the duration was missing or fractional.
    pub invitation_ttl: Option<Option<i64>>,
    pub password_reset_ttl: Option<Option<i64>>,
    pub access_token_ttl: Option<Option<i64>>,
    pub locale: Option<String>,
    /// Empty (or blank) clears it.
    pub display_name: Option<String>,
    /// 0 clears it.
    pub max_sessions_per_user: Option<i32>,
    /// Seconds; `None` inside clears it; a value outside the range
    /// (a fractional duration is sent as -1) is refused.
    pub password_max_age: Option<Option<i64>>,
    pub require_second_factor: Option<bool>,
    /// A profile id; empty (or blank) clears it.
    pub scim_default_profile_id: Option<String>,
    pub scim_send_invitations: Option<bool>,
}

impl SettingsPatch {
    /// Applies the patch to `current`, reporting every invalid value at once
    /// under `settings.<name>`.
    pub fn apply(&self, current: &Settings) -> Result<Settings, DomainError> {
        let mut next = current.clone();
        if let Some(required) = self.require_second_factor {
            next.require_second_factor = required;
        }
        if let Some(send) = self.scim_send_invitations {
            next.scim_send_invitations = send;
        }
        let mut violations = Vec::new();
        self.apply_policies(&mut next, &mut violations);
        self.apply_ttls(&mut next, &mut violations);
        self.apply_presentation(&mut next, &mut violations);
        self.apply_limits(&mut next, &mut violations);
        self.apply_scim(&mut next, &mut violations);
        DomainError::check(violations)?;
        Ok(next)
    }

    /// The SCIM default profile's id (that it is a profile of the
    /// organization, `update_settings` checks).
    fn apply_scim(&self, next: &mut Settings, violations: &mut Vec<FieldViolation>) {
        let Some(raw) = &self.scim_default_profile_id else {
            return;
        };
        match raw.trim() {
            "" => next.scim_default_profile_id = None,
            raw => match Uuid::parse_str(raw) {
                Ok(id) => next.scim_default_profile_id = Some(id),
                Err(_) => violations.push(FieldViolation::new(
                    "settings.scim_default_profile_id",
                    "INVALID_ID",
                    "must be a profile id (a UUID), or empty for none",
                )),
            },
        }
    }

    /// Duplicate emails and public mail domains.
    fn apply_policies(&self, next: &mut Settings, violations: &mut Vec<FieldViolation>) {
        if let Some(value) = self.allow_duplicate_emails {
            next.allow_duplicate_emails = value;
        }
        match self.public_email_domain_policy {
            Some(Some(policy)) => next.public_email_domain_policy = policy,
            Some(None) => violations.push(FieldViolation::new(
                "settings.public_email_domain_policy",
                "INVALID_VALUE",
                "must be ALLOW, WARN or REJECT",
            )),
            None => {}
        }
    }

    /// The lifetimes of invitations, reset links and access tokens.
    fn apply_ttls(&self, next: &mut Settings, violations: &mut Vec<FieldViolation>) {
        let ttls = [
            (
                "settings.invitation_ttl",
                self.invitation_ttl,
                INVITATION_TTL_RANGE,
                &mut next.invitation_ttl_seconds,
            ),
            (
                "settings.password_reset_ttl",
                self.password_reset_ttl,
                PASSWORD_RESET_TTL_RANGE,
                &mut next.password_reset_ttl_seconds,
            ),
            (
                "settings.access_token_ttl",
                self.access_token_ttl,
                ACCESS_TOKEN_TTL_RANGE,
                &mut next.access_token_ttl_seconds,
            ),
        ];
        for (field, requested, range, target) in ttls {
            match requested {
                None => {}
                Some(Some(seconds)) if (range.0..=range.1).contains(&seconds) => *target = seconds,
                Some(_) => violations.push(FieldViolation::new(
                    field,
                    "OUT_OF_RANGE",
                    format!(
                        "must be a whole number of seconds between {} and {}",
                        describe_seconds(range.0),
                        describe_seconds(range.1)
                    ),
                )),
            }
        }
    }

    /// How emails name the organization: locale and display name.
    fn apply_presentation(&self, next: &mut Settings, violations: &mut Vec<FieldViolation>) {
        if let Some(raw) = &self.locale {
            match Locale::parse(raw) {
                Some(locale) => next.locale = locale,
                None => violations.push(FieldViolation::new(
                    "settings.locale",
                    "UNSUPPORTED_LOCALE",
                    format!("{} is not supported; use `en` or `pt-BR`", super::echo(raw)),
                )),
            }
        }
        if let Some(raw) = &self.display_name {
            match parse_display_name(raw, "settings.display_name") {
                Ok(display_name) => next.display_name = display_name,
                Err(violation) => violations.push(violation),
            }
        }
    }

    /// The session limit and the password's maximum age.
    fn apply_limits(&self, next: &mut Settings, violations: &mut Vec<FieldViolation>) {
        match self.max_sessions_per_user {
            None => {}
            Some(0) => next.max_sessions_per_user = None,
            Some(limit) if (1..=MAX_SESSIONS_PER_USER).contains(&limit) => {
                next.max_sessions_per_user = Some(limit)
            }
            Some(_) => violations.push(FieldViolation::new(
                "settings.max_sessions_per_user",
                "OUT_OF_RANGE",
                format!("must be 0 (no limit) to {MAX_SESSIONS_PER_USER}"),
            )),
        }
        match self.password_max_age {
            None => {}
            Some(None) => next.password_max_age_seconds = None,
            Some(Some(seconds))
                if (PASSWORD_MAX_AGE_RANGE.0..=PASSWORD_MAX_AGE_RANGE.1).contains(&seconds) =>
            {
                next.password_max_age_seconds = Some(seconds)
            }
            Some(Some(_)) => violations.push(FieldViolation::new(
                "settings.password_max_age",
                "OUT_OF_RANGE",
                format!(
                    "must be unset (passwords do not expire) or a whole number of seconds between {} and {}",
                    describe_seconds(PASSWORD_MAX_AGE_RANGE.0),
                    describe_seconds(PASSWORD_MAX_AGE_RANGE.1)
                ),
            )),
        }
    }
}

/// A display name as stored: a valid name, or empty for none.
fn parse_display_name(raw: &str, field: &str) -> Result<String, FieldViolation> {
    if raw.trim().is_empty() {
        return Ok(String::new());
    }
    DisplayName::parse(raw, field).map(|name| name.as_str().to_owned())
}

fn describe_seconds(seconds: i64) -> String {
    match seconds {
        s if s % DAY == 0 => format!("{} days", s / DAY),
        s if s % HOUR == 0 => format!("{} hours", s / HOUR),
        s => format!("{} minutes", s / MINUTE),
    }
}

/// Creates an organization with its two built-in User Management profiles.
pub async fn create_organization(
    pool: &Pool,
    raw_name: &str,
    actor: Actor,
) -> Result<Organization, DomainError> {
    create_named_organization(pool, raw_name, "", actor).await
}

/// Creates an organization with a display name for emails (empty: none).
pub async fn create_named_organization(
    pool: &Pool,
    raw_name: &str,
    raw_display_name: &str,
    actor: Actor,
) -> Result<Organization, DomainError> {
    let name = DisplayName::parse(raw_name, "name");
    let display_name = parse_display_name(raw_display_name, "display_name");
    let (name, display_name) = match (name, display_name) {
        (Ok(name), Ok(display_name)) => (name, display_name),
        (name, display_name) => {
            return Err(DomainError::InvalidArgument(
                [name.err(), display_name.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            ))
        }
    };
    let mut work = UnitOfWork::begin_as(pool, Uuid::now_v7(), actor, None, OPERATOR_DOOR).await?;
    let mut organization = add_organization(&mut work, &name).await?;
    if !display_name.is_empty() {
        let settings = Settings {
            display_name,
            ..organization.settings.clone()
        };
        organization =
            store::organizations::update_settings(work.tx(), organization.id, &settings).await?;
    }
    work.commit().await?;
    Ok(organization)
}

/// Gives the organization named `old_name` the name `new_name`, which
/// people type at sign-in from then on. Everything else is kept: ids,
/// users, keys, groups, links already emailed (they carry ids), and each
/// account's sign-in throttle state (familiar addresses, failures), which
/// is keyed by the typed name and carried over to the new one.
pub async fn rename_organization(
    pool: &Pool,
    old_name: &str,
    new_name: &str,
    actor: Actor,
) -> Result<Organization, DomainError> {
    let new_name = DisplayName::parse(new_name, "name")
        .map_err(|violation| DomainError::InvalidArgument(vec![violation]))?;
    let found = store::organizations::find_by_name(&mut *pool.acquire().await?, old_name)
        .await?
        .ok_or_else(|| no_organization_named(old_name))?;
    let mut work = UnitOfWork::begin_as(pool, found.id, actor, None, OPERATOR_DOOR).await?;
    // Locked, then checked again: a concurrent rename may have won.
    let current = store::organizations::lock(work.tx(), found.id)
        .await?
        .filter(|current| current.name == found.name)
        .ok_or_else(|| no_organization_named(old_name))?;
    if current.name == new_name.as_str() {
        return Ok(current);
    }
    let renamed = store::organizations::rename(work.tx(), current.id, new_name.as_str()).await?;
    let usernames = store::users::usernames(work.tx(), current.id).await?;
    sign_in::carry_throttle_over(work.tx(), &current.name, &renamed.name, &usernames).await?;
    work.record(
        work.audit_record("organization.rename", "organization", current.id)
            .with_field_changes(FieldChanges::between([(
                "name",
                json!(current.name),
                json!(renamed.name),
            )])),
    );
    work.commit().await?;
    Ok(renamed)
}

fn no_organization_named(name: &str) -> DomainError {
    DomainError::NotFound(format!("no organization named `{}`", name.trim()))
}

pub fn parse_name(raw_name: &str) -> Result<DisplayName, DomainError> {
    DisplayName::parse(raw_name, "name").map_err(|v| DomainError::InvalidArgument(vec![v]))
}

/// Creates the unit's organization (its id is the unit's) inside the unit.
pub async fn add_organization(
    work: &mut UnitOfWork,
    name: &DisplayName,
) -> Result<Organization, DomainError> {
    let id = work.organization_id();
    let organization = store::organizations::insert(work.tx(), id, name.as_str()).await?;
    store::profiles::insert_built_in(work.tx(), organization.id).await?;
    work.record(
        work.audit_record("organization.create", "organization", organization.id)
            .with_details(json!({ "name": organization.name })),
    );
    Ok(organization)
}

pub async fn get_organization(pool: &Pool, id: Uuid) -> Result<Organization, DomainError> {
    store::organizations::find(&mut *pool.acquire().await?, id)
        .await?
        .ok_or_else(|| DomainError::NotFound("organization not found".into()))
}

pub async fn find_organization_by_name(
    pool: &Pool,
    name: &str,
) -> Result<Option<Organization>, DomainError> {
    store::organizations::find_by_name(&mut *pool.acquire().await?, name).await
}

pub async fn list_organizations(pool: &Pool) -> Result<Vec<Organization>, DomainError> {
    store::organizations::list(&mut *pool.acquire().await?).await
}

/// Applies a settings patch, refusing to turn duplicate emails off while some exist.
pub async fn update_settings(
    call: &Call,
    patch: &SettingsPatch,
) -> Result<Organization, DomainError> {
    let caller = &call.caller;
    let organization_id = caller.organization_id;
    let mut work = call.begin().await?;
    let current = store::organizations::lock(work.tx(), organization_id)
        .await?
        .ok_or_else(|| DomainError::NotFound("organization not found".into()))?;
    let next = patch.apply(&current.settings)?;
    if turns_duplicate_emails_off(&current.settings, &next) {
        let duplicates = store::users::some_duplicate_emails(work.tx(), organization_id, 5).await?;
        refuse_shared_emails(&duplicates)?;
        store::users::make_emails_unique(work.tx(), organization_id).await?;
    }
    if let Some(profile_id) = next.scim_default_profile_id {
        let changed = current.settings.scim_default_profile_id != Some(profile_id);
        let found = store::profiles::find(&mut **work.tx(), organization_id, profile_id);
        if changed && found.await?.is_none() {
            return Err(DomainError::NotFoundField {
                field: "settings.scim_default_profile_id".into(),
                message: format!("profile {profile_id} not found in this organization"),
            });
        }
    }
    let changes = settings_changes(&current.settings, &next);
    if changes.is_empty() {
        return Ok(current);
    }
    let updated = store::organizations::update_settings(work.tx(), organization_id, &next).await?;
    work.record(
        work.audit_record(
            "organization.settings.update",
            "organization",
            organization_id,
        )
        .with_field_changes(changes),
    );
    work.commit().await?;
    Ok(updated)
}

fn turns_duplicate_emails_off(current: &Settings, next: &Settings) -> bool {
    current.allow_duplicate_emails && !next.allow_duplicate_emails
}

/// Emails must be unique again only once no two users share one; `shared`
/// holds a few of those that still are.
fn refuse_shared_emails(shared: &[String]) -> Result<(), DomainError> {
    if shared.is_empty() {
        return Ok(());
    }
    Err(DomainError::FailedPrecondition {
        reason: "DUPLICATE_EMAILS_EXIST",
        message: format!(
            "cannot turn off allow_duplicate_emails while several users share an email, e.g. {}",
            shared.join(", ")
        ),
    })
}

/// Every setting whose value differs, with `{old, new}`.
fn settings_changes(old: &Settings, new: &Settings) -> FieldChanges {
    FieldChanges::between([
        (
            "allow_duplicate_emails",
            json!(old.allow_duplicate_emails),
            json!(new.allow_duplicate_emails),
        ),
        (
            "public_email_domain_policy",
            json!(old.public_email_domain_policy.as_str()),
            json!(new.public_email_domain_policy.as_str()),
        ),
        (
            "invitation_ttl",
            json!(old.invitation_ttl_seconds),
            json!(new.invitation_ttl_seconds),
        ),
        (
            "password_reset_ttl",
            json!(old.password_reset_ttl_seconds),
            json!(new.password_reset_ttl_seconds),
        ),
        (
            "access_token_ttl",
            json!(old.access_token_ttl_seconds),
            json!(new.access_token_ttl_seconds),
        ),
        (
            "locale",
            json!(old.locale.as_str()),
            json!(new.locale.as_str()),
        ),
        (
            "display_name",
            json!(old.display_name),
            json!(new.display_name),
        ),
        (
            "max_sessions_per_user",
            json!(old.max_sessions_per_user),
            json!(new.max_sessions_per_user),
        ),
        (
            "password_max_age",
            json!(old.password_max_age_seconds),
            json!(new.password_max_age_seconds),
        ),
        (
            "require_second_factor",
            json!(old.require_second_factor),
            json!(new.require_second_factor),
        ),
        (
            "scim_default_profile_id",
            json!(old.scim_default_profile_id),
            json!(new.scim_default_profile_id),
        ),
        (
            "scim_send_invitations",
            json!(old.scim_send_invitations),
            json!(new.scim_send_invitations),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        Settings {
            allow_duplicate_emails: false,
            public_email_domain_policy: PublicEmailDomainPolicy::Warn,
            invitation_ttl_seconds: 7 * DAY,
            password_reset_ttl_seconds: HOUR,
            access_token_ttl_seconds: 8 * HOUR,
            locale: Locale::En,
            display_name: String::new(),
            max_sessions_per_user: None,
            password_max_age_seconds: None,
            require_second_factor: false,
            scim_default_profile_id: None,
            scim_send_invitations: true,
        }
    }

    #[test]
    fn every_invalid_setting_is_reported_with_its_path() {
        let patch = SettingsPatch {
            public_email_domain_policy: Some(None),
            invitation_ttl: Some(Some(10)),
            access_token_ttl: Some(None),
            locale: Some("fr".into()),
            ..Default::default()
        };
        let DomainError::InvalidArgument(violations) = patch.apply(&defaults()).unwrap_err() else {
            panic!("expected invalid argument");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "settings.public_email_domain_policy",
                "settings.invitation_ttl",
                "settings.access_token_ttl",
                "settings.locale"
            ]
        );
    }

    #[test]
    fn a_valid_patch_changes_only_what_it_names() {
        let patch = SettingsPatch {
            locale: Some("pt-BR".into()),
            password_reset_ttl: Some(Some(30 * MINUTE)),
            ..Default::default()
        };
        let next = patch.apply(&defaults()).unwrap();
        assert_eq!(next.locale, Locale::PtBr);
        assert_eq!(next.password_reset_ttl_seconds, 30 * MINUTE);
        assert_eq!(
            settings_changes(&defaults(), &next).fields,
            ["password_reset_ttl", "locale"]
        );
    }

    #[test]
    fn duplicate_emails_are_refused_only_while_some_are_shared() {
        let allowing = Settings {
            allow_duplicate_emails: true,
            ..defaults()
        };
        assert!(turns_duplicate_emails_off(&allowing, &defaults()));
        assert!(!turns_duplicate_emails_off(&defaults(), &allowing));
        assert!(!turns_duplicate_emails_off(&defaults(), &defaults()));
        assert!(refuse_shared_emails(&[]).is_ok());
        match refuse_shared_emails(&["a@x.test".into()]) {
            Err(DomainError::FailedPrecondition { reason, message }) => {
                assert_eq!(reason, "DUPLICATE_EMAILS_EXIST");
                assert!(message.ends_with("e.g. a@x.test"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
