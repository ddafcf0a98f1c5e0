use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{map_constraint_violation, Transaction};
use crate::domain::{
    organization::{Locale, Organization, PublicEmailDomainPolicy, Settings},
    DomainError,
};

struct OrganizationRow {
    id: Uuid,
    name: String,
    display_name: String,
    allow_duplicate_emails: bool,
    public_email_domain_policy: String,
    invitation_ttl_seconds: i64,
    password_reset_ttl_seconds: i64,
    access_token_ttl_seconds: i64,
    locale: String,
    max_sessions_per_user: Option<i32>,
    password_max_age_seconds: Option<i64>,
    require_second_factor: bool,
    scim_default_profile_id: Option<Uuid>,
    scim_send_invitations: bool,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

/// A checked statement reading `OrganizationRow`s: `$head` (ending in
/// `select` or `returning`), the columns, then `$tail`.
macro_rules! organization_query {
    ($head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            OrganizationRow,
            $head
                + " id, name, display_name, allow_duplicate_emails, public_email_domain_policy, \
                   invitation_ttl_seconds, password_reset_ttl_seconds, access_token_ttl_seconds, \
                   locale, max_sessions_per_user, password_max_age_seconds, require_second_factor, \
                   scim_default_profile_id, scim_send_invitations, create_time, update_time "
                + $tail
            $(, $arg)*
        )
    };
}

impl TryFrom<OrganizationRow> for Organization {
    type Error = DomainError;

    fn try_from(row: OrganizationRow) -> Result<Self, DomainError> {
        let corrupt = |what: &str| anyhow::anyhow!("organization {} has an unknown {what}", row.id);
        Ok(Organization {
            id: row.id,
            settings: Settings {
                allow_duplicate_emails: row.allow_duplicate_emails,
                public_email_domain_policy: PublicEmailDomainPolicy::parse(
                    &row.public_email_domain_policy,
                )
                .ok_or_else(|| corrupt("public email domain policy"))?,
                invitation_ttl_seconds: row.invitation_ttl_seconds,
                password_reset_ttl_seconds: row.password_reset_ttl_seconds,
                access_token_ttl_seconds: row.access_token_ttl_seconds,
                locale: Locale::parse(&row.locale).ok_or_else(|| corrupt("locale"))?,
                display_name: row.display_name,
                max_sessions_per_user: row.max_sessions_per_user,
                password_max_age_seconds: row.password_max_age_seconds,
                require_second_factor: row.require_second_factor,
                scim_default_profile_id: row.scim_default_profile_id,
                scim_send_invitations: row.scim_send_invitations,
            },
            name: row.name,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// The organization's name constraint (unique ignoring case), as the domain says it.
fn name_taken(name: &str) -> impl Fn(&str) -> Option<DomainError> + '_ {
    move |constraint| {
        (constraint == "organizations_name_key").then(|| DomainError::AlreadyExists {
            reason: "ORGANIZATION_ALREADY_EXISTS",
            field: "name".into(),
            message: format!("an organization named `{name}` already exists"),
        })
    }
}

pub async fn insert(
    tx: &mut Transaction<'_>,
    id: Uuid,
    name: &str,
) -> Result<Organization, DomainError> {
    let row = organization_query!(
        "insert into organizations (id, name) values ($1, $2) returning",
        "",
        id,
        name,
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| map_constraint_violation(error, name_taken(name)))?;
    row.try_into()
}

/// Gives the organization another name (what people type at sign-in).
pub async fn rename(
    tx: &mut Transaction<'_>,
    id: Uuid,
    name: &str,
) -> Result<Organization, DomainError> {
    let row = organization_query!(
        "update organizations set name = $2 where id = $1 returning",
        "",
        id,
        name,
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| map_constraint_violation(error, name_taken(name)))?;
    row.try_into()
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Organization>, DomainError> {
    let row = organization_query!("select", "from organizations where id = $1", id,)
        .fetch_optional(executor)
        .await?;
    row.map(TryInto::try_into).transpose()
}

/// By name, ignoring case (the "company name" typed at sign-in).
pub async fn find_by_name<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<Organization>, DomainError> {
    let row = organization_query!(
        "select",
        "from organizations where lower(name) = lower($1)",
        name.trim(),
    )
    .fetch_optional(executor)
    .await?;
    row.map(TryInto::try_into).transpose()
}

/// Reads the organization and locks it for the rest of the transaction.
pub async fn lock(tx: &mut Transaction<'_>, id: Uuid) -> Result<Option<Organization>, DomainError> {
    let row = organization_query!("select", "from organizations where id = $1 for update", id,)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(TryInto::try_into).transpose()
}

/// Reads the organization and keeps its settings from changing until commit.
pub async fn lock_shared(
    tx: &mut Transaction<'_>,
    id: Uuid,
) -> Result<Option<Organization>, DomainError> {
    let row = organization_query!("select", "from organizations where id = $1 for share", id,)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn list<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<Organization>, DomainError> {
    let rows = organization_query!("select", "from organizations order by lower(name)")
        .fetch_all(executor)
        .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub async fn update_settings(
    tx: &mut Transaction<'_>,
    id: Uuid,
    settings: &Settings,
) -> Result<Organization, DomainError> {
    let row = organization_query!(
        "update organizations set allow_duplicate_emails = $2, public_email_domain_policy = $3, \
         invitation_ttl_seconds = $4, password_reset_ttl_seconds = $5, access_token_ttl_seconds = $6, locale = $7, \
         display_name = $8, max_sessions_per_user = $9, password_max_age_seconds = $10, require_second_factor = $11, \
         scim_default_profile_id = $12, scim_send_invitations = $13 where id = $1 returning",
        "",
        id,
        settings.allow_duplicate_emails,
        settings.public_email_domain_policy.as_str(),
        settings.invitation_ttl_seconds,
        settings.password_reset_ttl_seconds,
        settings.access_token_ttl_seconds,
        settings.locale.as_str(),
        settings.display_name,
        settings.max_sessions_per_user,
        settings.password_max_age_seconds,
        settings.require_second_factor,
        settings.scim_default_profile_id,
        settings.scim_send_invitations,
    )
    .fetch_one(&mut **tx)
    .await?;
    row.try_into()
}
