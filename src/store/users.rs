mod conditions;
pub mod rare_parts;
pub(crate) use conditions::{like_escape, push_text_comparison, push_time_comparison};
pub use rare_parts::CommonTrigrams;
use rare_parts::LastNameBound;

use std::{collections::HashMap, sync::OnceLock};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    connections::read,
    map_constraint_violation,
    paging::{
        cut_to_page, estimated_rows, estimated_total_size, start_after, total_size, FromWhere,
    },
    shared_reads::{in_slots, SLOTS},
    Pool, Transaction,
};
use crate::domain::{
    attribute::StoredAttributes,
    import::{batch::ImportedUser, decide::StoredUser},
    paging::{fingerprint, Page, PageRequest, TotalSize, EXACT_COUNT_LIMIT},
    status::StatusFacts,
    user::{
        AdminState, Credentials, InvitationTargets, LegacyStatus, LookupKey, User, UserFilter,
        UserOrder, UserStatus, UserValues,
    },
    values::{public_email_domains, Email},
    DomainError,
};

/// When a user's password expires, if it does: the time an administrator
/// set, or the organization's `password_max_age` after it was set,
/// whichever comes first (the same expression `user_query!` and
/// `credentials_query!` spell out, as their macros take literals only).
pub const PASSWORD_EXPIRE_SQL: &str = "(case when users.password_hash is not null then \
     least(users.password_expire_time, users.password_set_time + make_interval(secs => \
     (select o.password_max_age_seconds from organizations o where o.id = users.organization_id))) end)";

/// The derived status (spec §1) for the statements that filter or count by
/// it. Rows read whole carry the facts instead, and `UserStatus::derive` (the
/// same rule, checked against this one by a test) gives their status.
pub const STATUS_SQL: &str = "(case \
     when users.legacy_status is not null then users.legacy_status \
     when users.admin_state = 'INACTIVE' then 'INACTIVE' \
     when not users.onboarded then \
         case when users.invitation_expire_time <= now() then 'EXPIRED' else 'PENDING' end \
     else users.admin_state end)";

/// A checked statement reading whole users: `$head`, the columns of
/// `UserRow`, then the `$tail` literals. The status facts are read with the database's
/// `now()`, the clock STATUS_SQL uses, so a listed status agrees with a filter.
macro_rules! user_query {
    ($head:literal, $tail:literal $(+ $more:literal)* $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            UserRow,
            $head
                + " id, first_name, last_name, email, username, phone, external_id, \
                   admin_state as \"admin_state: AdminState\", \
                   legacy_status as \"legacy_status: LegacyStatus\", onboarded, \
                   invitation_expire_time, create_time, update_time, last_login_time, \
                   last_name_key, attributes, now() as \"read_time!\", \
                   (case when users.password_hash is not null then least(users.password_expire_time, \
                   users.password_set_time + make_interval(secs => (select o.password_max_age_seconds \
                   from organizations o where o.id = users.organization_id))) end) as password_expire_time, \
                   (select s.confirm_time from second_factors s where s.organization_id = users.organization_id \
                   and s.user_id = users.id) as second_factor_time "
                + $tail $(+ $more)*
            $(, $arg)*
        )
    };
}

/// The columns of `user_query!` for the statements built at run time (a
/// list's filters), without the type overrides only the macros read.
const USER_COLUMNS: &str = "users.id, users.first_name, users.last_name, users.email, \
     users.username, users.phone, users.external_id, users.admin_state, users.legacy_status, \
     users.onboarded, users.invitation_expire_time, users.create_time, users.update_time, \
     users.last_login_time, users.last_name_key, users.attributes, now() as read_time, \
     (case when users.password_hash is not null then least(users.password_expire_time, \
     users.password_set_time + make_interval(secs => (select o.password_max_age_seconds \
     from organizations o where o.id = users.organization_id))) end) as password_expire_time, \
     (select s.confirm_time from second_factors s where s.organization_id = users.organization_id \
     and s.user_id = users.id) as second_factor_time";

#[derive(FromRow)]
struct UserRow {
    id: Uuid,
    first_name: String,
    last_name: String,
    email: String,
    username: String,
    phone: Option<String>,
    external_id: Option<String>,
    admin_state: AdminState,
    legacy_status: Option<LegacyStatus>,
    onboarded: bool,
    invitation_expire_time: Option<DateTime<Utc>>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    last_login_time: Option<DateTime<Utc>>,
    last_name_key: String,
    attributes: serde_json::Value,
    read_time: DateTime<Utc>,
    password_expire_time: Option<DateTime<Utc>>,
    second_factor_time: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        let facts = StatusFacts {
            admin_state: row.admin_state,
            legacy_status: row.legacy_status,
            onboarded: row.onboarded,
            invitation_expire_time: row.invitation_expire_time,
        };
        User {
            id: row.id,
            first_name: row.first_name,
            last_name: row.last_name,
            email: row.email,
            username: row.username,
            phone: row.phone,
            external_id: row.external_id,
            status: UserStatus::derive(facts, row.read_time),
            onboarded: row.onboarded,
            invitation_expire_time: row.invitation_expire_time,
            create_time: row.create_time,
            update_time: row.update_time,
            last_login_time: row.last_login_time,
            password_expired: row
                .password_expire_time
                .is_some_and(|time| time <= row.read_time),
            password_expire_time: row.password_expire_time,
            attributes: stored_attributes(row.attributes),
            second_factor_time: row.second_factor_time,
        }
    }
}

/// The `attributes` column as a map (an object by the table's check).
fn stored_attributes(column: serde_json::Value) -> StoredAttributes {
    match column {
        serde_json::Value::Object(attributes) => attributes,
        _ => StoredAttributes::new(),
    }
}

fn map_user_uniqueness(error: sqlx::Error, field_prefix: &str) -> DomainError {
    map_constraint_violation(error, |constraint| {
        let (reason, field, message) = match constraint {
            "users_org_email_key" => ("USER_ALREADY_EXISTS", "email", "User already exists"),
            "users_org_username_key" => ("USERNAME_TAKEN", "username", "Username already taken"),
            "users_org_external_id_key" => (
                "EXTERNAL_ID_TAKEN",
                "external_id",
                "external_id already belongs to another user",
            ),
            _ => return None,
        };
        Some(DomainError::AlreadyExists {
            reason,
            field: format!("{field_prefix}{field}"),
            message: message.into(),
        })
    })
}

pub use conditions::matching;

pub async fn insert(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    values: &UserValues,
    attributes: &StoredAttributes,
    deactivated: bool,
    email_unique: bool,
) -> Result<User, DomainError> {
    let admin_state = if deactivated {
        AdminState::Inactive
    } else {
        AdminState::Active
    };
    let row = user_query!(
        "insert into users (organization_id, id, first_name, last_name, email, username, phone, \
         external_id, admin_state, email_unique, search_key, last_name_key, attributes) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) returning",
        "",
        organization_id,
        Uuid::now_v7(),
        values.first_name.as_str(),
        values.last_name.as_str(),
        values.email.as_str(),
        values.username.as_str(),
        values.phone.as_deref(),
        values.external_id.as_deref(),
        admin_state.as_str(),
        email_unique,
        values.search_key(),
        values.last_name_key(),
        serde_json::Value::Object(attributes.clone()),
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| map_user_uniqueness(error, "user."))?;
    Ok(row.into())
}

/// Replaces every value (custom attributes too); the keys follow.
pub async fn update_values(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    values: &UserValues,
    attributes: &StoredAttributes,
) -> Result<User, DomainError> {
    let row = user_query!(
        "update users set first_name = $3, last_name = $4, email = $5, username = $6, phone = $7, \
         external_id = $8, search_key = $9, last_name_key = $10, attributes = $11 \
         where organization_id = $1 and id = $2 returning",
        "",
        organization_id,
        id,
        values.first_name.as_str(),
        values.last_name.as_str(),
        values.email.as_str(),
        values.username.as_str(),
        values.phone.as_deref(),
        values.external_id.as_deref(),
        values.search_key(),
        values.last_name_key(),
        serde_json::Value::Object(attributes.clone()),
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| map_user_uniqueness(error, "user."))?;
    Ok(row.into())
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    let row = user_query!(
        "select",
        "from users where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(Into::into))
}

/// GetUser's read, shared by the calls that arrive together
/// (`shared_reads`): the users of up to `SLOTS` ids, by id.
pub fn read_shared_by_id(
    pool: &Pool,
    organization_id: Uuid,
    ids: Vec<Uuid>,
) -> BoxFuture<'_, Result<HashMap<Uuid, User>, sqlx::Error>> {
    Box::pin(async move {
        let found = read!(pool, |connection| {
            find_in_slots(connection, organization_id, &ids).await
        })?;
        Ok(found.into_iter().map(|user| (user.id, user)).collect())
    })
}

/// The users of up to `SLOTS` ids, in a statement of exactly `SLOTS`
/// parameters (one plan for any number of ids; see `shared_reads::SLOTS`).
pub async fn find_in_slots(
    connection: &mut PgConnection,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<User>, sqlx::Error> {
    if let [id] = ids {
        return Ok(find(connection, organization_id, *id)
            .await?
            .into_iter()
            .collect());
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let [a, b, c, d, e, f, g, h] = in_slots(ids);
    let rows = user_query!(
        "select",
        "from users where organization_id = $1 and id in ($2, $3, $4, $5, $6, $7, $8, $9)",
        organization_id,
        a,
        b,
        c,
        d,
        e,
        f,
        g,
        h,
    )
    .fetch_all(connection)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Reads and locks the user for the rest of the transaction.
pub async fn lock(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    let row = user_query!(
        "select",
        "from users where organization_id = $1 and id = $2 for update",
        organization_id,
        id,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn find_many<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<User>, sqlx::Error> {
    // One id reads as `find`: PostgreSQL would plan `any($2)` of one id
    // afresh on every call (see `groups::member_grant_rows!`).
    if let [id] = ids {
        return Ok(find(executor, organization_id, *id)
            .await?
            .into_iter()
            .collect());
    }
    let rows = user_query!(
        "select",
        "from users where organization_id = $1 and id = any($2)",
        organization_id,
        ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Exact matches (email and username ignoring case), oldest first.
pub async fn lookup<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    key: LookupKey<'_>,
) -> Result<Vec<User>, sqlx::Error> {
    macro_rules! matching {
        ($condition:literal, $value:expr) => {
            user_query!(
                "select",
                "from users where organization_id = $1 and "
                    + $condition
                    + " order by create_time, id limit 1000",
                organization_id,
                $value.trim(),
            )
            .fetch_all(executor)
            .await?
        };
    }
    let rows = match key {
        LookupKey::Email(email) => matching!("lower(email) = lower($2)", email),
        LookupKey::Username(username) => matching!("lower(username) = lower($2)", username),
        LookupKey::ExternalId(external_id) => matching!("external_id = $2", external_id),
    };
    Ok(rows.into_iter().map(Into::into).collect())
}

/// LookupUser's read by one kind of key (`key`), shared by the calls that
/// arrive together (`shared_reads`): the users of up to `SLOTS` values, by
/// value as asked.
pub fn read_shared_lookup(
    pool: &Pool,
    organization_id: Uuid,
    values: Vec<String>,
    key: for<'v> fn(&'v str) -> LookupKey<'v>,
) -> BoxFuture<'_, Result<HashMap<String, Vec<User>>, sqlx::Error>> {
    Box::pin(async move {
        let keys: Vec<LookupKey<'_>> = values.iter().map(|value| key(value)).collect();
        let found = read!(pool, |connection| {
            lookup_in_slots(connection, organization_id, &keys).await
        })?;
        Ok(values.into_iter().zip(found).collect())
    })
}

#[derive(FromRow)]
struct SlotUserRow {
    slot: i32,
    #[sqlx(flatten)]
    user: UserRow,
}

/// The users of up to `SLOTS` lookup keys of one kind, each key's as
/// `lookup` finds them, in the order of `keys`; in a statement of exactly
/// `SLOTS` parameters (unused slots are null and match nobody). PostgreSQL
/// tells which key each user matched: its lowercasing is the one that
/// counts, not Rust's.
pub async fn lookup_in_slots(
    connection: &mut PgConnection,
    organization_id: Uuid,
    keys: &[LookupKey<'_>],
) -> Result<Vec<Vec<User>>, sqlx::Error> {
    if let [key] = keys {
        return Ok(vec![lookup(connection, organization_id, *key).await?]);
    }
    let Some(first) = keys.first() else {
        return Ok(Vec::new());
    };
    assert!(keys.len() <= SLOTS, "{} lookup keys", keys.len());
    let mut query =
        sqlx::query_as::<_, SlotUserRow>(lookup_in_slots_sql(first)).bind(organization_id);
    for slot in 0..SLOTS {
        query = query.bind(keys.get(slot).map(|key| key.value().trim()));
    }
    let rows = query.fetch_all(connection).await?;
    let mut found: Vec<Vec<User>> = keys.iter().map(|_| Vec::new()).collect();
    for row in rows {
        // Slots count from 1, and only those of `keys` match anybody.
        found[row.slot as usize - 1].push(row.user.into());
    }
    Ok(found)
}

/// `lookup_in_slots`' statement for the kind of `key`: each slot's users
/// as `lookup` reads them (its condition, order and limit).
fn lookup_in_slots_sql(key: &LookupKey<'_>) -> &'static str {
    fn statement(condition: &str) -> String {
        let slots: Vec<String> = (1..=SLOTS)
            .map(|slot| format!("({slot}, ${}::text)", slot + 1))
            .collect();
        format!(
            "select k.slot, {USER_COLUMNS} from (values {}) as k (slot, value) \
             cross join lateral (select * from users where users.organization_id = $1 and {condition} \
             order by users.create_time, users.id limit 1000) as users \
             order by k.slot, users.create_time, users.id",
            slots.join(", ")
        )
    }
    static EMAIL: OnceLock<String> = OnceLock::new();
    static USERNAME: OnceLock<String> = OnceLock::new();
    static EXTERNAL_ID: OnceLock<String> = OnceLock::new();
    match key {
        LookupKey::Email(_) => {
            EMAIL.get_or_init(|| statement("lower(users.email) = lower(k.value)"))
        }
        LookupKey::Username(_) => {
            USERNAME.get_or_init(|| statement("lower(users.username) = lower(k.value)"))
        }
        LookupKey::ExternalId(_) => {
            EXTERNAL_ID.get_or_init(|| statement("users.external_id = k.value"))
        }
    }
}

/// Whether a user other than `except` has this email (ignoring case).
pub async fn email_used_by_other(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    email: &str,
    except: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        "select exists (select 1 from users where organization_id = $1 and lower(email) = lower($2) \
         and ($3::uuid is null or id <> $3)) as \"used!\"",
        organization_id,
        email,
        except,
    )
    .fetch_one(&mut **tx)
    .await
}

pub async fn delete(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        "delete from users where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Sets the admin state; a legacy status is left behind for good.
pub async fn set_admin_state(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    admin_state: AdminState,
) -> Result<User, sqlx::Error> {
    let row = user_query!(
        "update users set admin_state = $3, legacy_status = null \
         where organization_id = $1 and id = $2 returning",
        "",
        organization_id,
        id,
        admin_state.as_str(),
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.into())
}

/// Every user of the organization keeps a unique email from now on; fails
/// (`users_org_email_key`) while duplicates exist.
pub async fn make_emails_unique(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update users set email_unique = true where organization_id = $1 and not email_unique",
        organization_id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keyset position of a user in a list, by order.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
enum Position {
    Created(DateTime<Utc>, Uuid),
    LastName(String, Uuid),
}

/// Where a word of the search key starts: at the beginning, or after an
/// ASCII character that is not a letter or digit (`QueryTerms`' rule). The
/// trigram index answers this regular expression too: pg_trgm reads the
/// class as a word boundary, so "jo" looks up the trigrams "  j" and " jo".
const WORD_START: &str = r"(^|[\x01-/:-@[-`{-\x7f])";

/// A user's email domain, lowercased and reversed (`moc.liamg` for
/// `ana@Gmail.com`), compared byte by byte: the expression of the index
/// `users_org_email_domain_idx`, on which a domain and its subdomains are one
/// value and one range.
const REVERSED_EMAIL_DOMAIN: &str =
    r#"(reverse(lower(split_part(users.email, '@', -1))) collate "C")"#;

/// Whether a user's email is on a public mail provider's domain or a
/// subdomain of one (the rule of `Email::is_on_public_domain`), as index
/// ranges: `moc.liamg`, and from `moc.liamg.` up to `moc.liamg/` (`/`
/// follows `.`). The domains are literals, so that the planner estimates
/// each range; they come from Roster's own data file, and one holding
/// anything but letters, digits, dots and hyphens is left out rather than
/// written into SQL.
fn public_email_domain_sql() -> &'static str {
    static CONDITION: OnceLock<String> = OnceLock::new();
    CONDITION.get_or_init(|| {
        let reversed: Vec<String> = public_email_domains()
            .filter(|domain| is_plain_domain(domain))
            .map(|domain| domain.chars().rev().collect())
            .collect();
        let exact = reversed
            .iter()
            .map(|domain| format!("'{domain}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut condition = format!("({REVERSED_EMAIL_DOMAIN} in ({exact})");
        for domain in &reversed {
            condition.push_str(&format!(
                " or ({REVERSED_EMAIL_DOMAIN} >= '{domain}.' and {REVERSED_EMAIL_DOMAIN} < '{domain}/')"
            ));
        }
        condition.push(')');
        condition
    })
}

fn is_plain_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Search words the index is asked a rare piece of (`rare_parts`): the
/// piece of each.
type RareParts = HashMap<String, String>;

fn push_user_filters(
    query: &mut QueryBuilder<'static, Postgres>,
    organization_id: Uuid,
    filter: &UserFilter,
    rare: &RareParts,
) {
    push_filters(query, organization_id, filter, Some(rare));
}

/// `push_user_filters` for the planner's estimate of how many match: without
/// the conditions that only spare work (it would count them as more
/// selective, and estimate far too few).
fn push_user_filters_as_estimated(
    query: &mut QueryBuilder<'static, Postgres>,
    organization_id: Uuid,
    filter: &UserFilter,
) {
    push_filters(query, organization_id, filter, None);
}

fn push_filters(
    query: &mut QueryBuilder<'static, Postgres>,
    organization_id: Uuid,
    filter: &UserFilter,
    sparing: Option<&RareParts>,
) {
    query
        .push(" from users where users.organization_id = ")
        .push_bind(organization_id);
    push_search_terms(query, filter, sparing);
    push_state_filters(query, filter);
    push_membership_filters(query, filter);
}

/// The words of `query`: each a start of a word or a part of the search
/// key. `sparing`: with the conditions that spare work, and the rare pieces
/// of words; `None` for the planner's estimate.
fn push_search_terms(
    query: &mut QueryBuilder<'static, Postgres>,
    filter: &UserFilter,
    sparing: Option<&RareParts>,
) {
    let terms = filter.query_terms();
    for start in terms.word_starts {
        // A start holds letters and digits only: nothing to escape. The
        // LIKE of two characters, cheaper than the expression, spares it
        // most rows and leads the planner to the index (of one character
        // it spares few).
        if sparing.is_some() && start.chars().count() == 2 {
            query
                .push(" and users.search_key like ")
                .push_bind(format!("%{start}%"));
        }
        query
            .push(" and users.search_key ~ ")
            .push_bind(format!("{WORD_START}{start}"));
    }
    for part in &terms.parts {
        if let Some(piece) = sparing.and_then(|rare| rare.get(part)) {
            // The piece for the index, the whole word on the rows it finds.
            let escaped = conditions::like_escape(piece);
            query
                .push(" and users.search_key like ")
                .push_bind(format!("%{escaped}%"))
                .push(" and strpos(users.search_key, ")
                .push_bind(part.clone())
                .push(") > 0");
            continue;
        }
        let escaped = conditions::like_escape(part);
        query
            .push(" and users.search_key like ")
            .push_bind(format!("%{escaped}%"));
    }
}

/// Status, onboarding, second factor, password expiry, email domain and
/// custom attributes: conditions on the user's own row.
fn push_state_filters(query: &mut QueryBuilder<'static, Postgres>, filter: &UserFilter) {
    if !filter.statuses.is_empty() {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query
            .push(format!(" and {STATUS_SQL} = any("))
            .push_bind(statuses)
            .push(")");
    }
    if let Some(onboarded) = filter.onboarded {
        query.push(" and users.onboarded = ").push_bind(onboarded);
    }
    if let Some(enrolled) = filter.second_factor_enrolled {
        query
            .push(
                " and exists (select 1 from second_factors s where s.organization_id = users.organization_id \
                 and s.user_id = users.id and s.confirm_time is not null) = ",
            )
            .push_bind(enrolled);
    }
    match filter.password_expired {
        Some(true) => {
            query.push(format!(" and {PASSWORD_EXPIRE_SQL} <= now()"));
        }
        Some(false) => {
            query.push(format!(" and ({PASSWORD_EXPIRE_SQL} <= now()) is not true"));
        }
        None => {}
    }
    match filter.public_email_domain {
        Some(true) => {
            query.push(format!(" and {}", public_email_domain_sql()));
        }
        Some(false) => {
            query.push(format!(" and not {}", public_email_domain_sql()));
        }
        None => {}
    }
    if !filter.attributes.is_empty() {
        // The GIN index (`jsonb_path_ops`) answers a containment.
        let wanted: serde_json::Map<_, _> = filter.attributes.clone().into_iter().collect();
        query
            .push(" and users.attributes @> ")
            .push_bind(serde_json::Value::Object(wanted));
    }
}

/// A group the user is in, or a unit one of their groups covers.
fn push_membership_filters(query: &mut QueryBuilder<'static, Postgres>, filter: &UserFilter) {
    if let Some(group_id) = filter.group_id {
        query
            .push(" and exists (select 1 from memberships m where m.organization_id = users.organization_id and m.user_id = users.id and m.group_id = ")
            .push_bind(group_id)
            .push(")");
    }
    if let Some(unit_id) = filter.unit_id {
        query
            .push(
                " and exists (select 1 from memberships m join groups g on g.organization_id = m.organization_id and g.id = m.group_id \
                 where m.organization_id = users.organization_id and m.user_id = users.id and (g.unit_scope = 'ALL_UNITS' or exists \
                 (select 1 from group_units gu where gu.organization_id = g.organization_id and gu.group_id = g.id and gu.unit_id = ",
            )
            .push_bind(unit_id)
            .push(")))");
    }
}

pub async fn list(
    pool: &Pool,
    organization_id: Uuid,
    filter: &UserFilter,
    order: UserOrder,
    page: &PageRequest,
) -> Result<Page<User>, DomainError> {
    let query_fingerprint = fingerprint(&("users", filter, order));
    let after: Option<Position> = start_after(page, &query_fingerprint)?;
    // Words and public mail providers each have an index that finds their
    // matches however few they are; the planner, which estimates a domain
    // over all organizations, would walk the order's index instead.
    let searching = !filter.query_words.is_empty() || filter.public_email_domain == Some(true);
    let rare = rare_parts_of(pool, organization_id, filter);
    let (owned_filter, owned_rare) = (filter.clone(), rare.clone());
    let push_from_where = move |query: &mut QueryBuilder<'static, Postgres>| {
        push_user_filters(query, organization_id, &owned_filter, &owned_rare);
    };
    let search = (organization_id, filter, &rare);
    let sampled = sampled_search(pool, organization_id, filter, order, &after, page);
    let surely_many = match sampled.as_ref().filter(|sampled| sampled.is_surely_many()) {
        Some(many) => {
            page_of_sampled_many(pool, search, order, &after, page, &many.last_name_bound)
                .await?
                .map(|rows| (rows, many.total_size()))
        }
        None => None,
    };
    let few_matches = match surely_many {
        Some((rows, total_size)) => FewMatches::Page(rows, total_size),
        None if searching => {
            page_of_few_matches(pool, organization_id, &push_from_where, order, &after, page)
                .await?
        }
        None => FewMatches::NotTried,
    };
    let (mut rows, total_size) = match few_matches {
        FewMatches::Page(rows, total_size) => (rows, total_size),
        FewMatches::TooMany { page_bound } => {
            let total_size = total_past_the_limit(pool, organization_id, filter, &sampled).await?;
            let rows = page_past_the_limit(pool, search, order, &after, page, page_bound).await?;
            (rows, total_size)
        }
        FewMatches::NotTried => {
            // Filters without words: the planner's choice, as ever.
            let total_size = total_size(pool, &push_from_where).await?;
            let mut query = QueryBuilder::new(format!("select {USER_COLUMNS}"));
            push_from_where(&mut query);
            push_page(&mut query, order, &after, page);
            (
                query
                    .build_query_as()
                    .fetch_all(&mut *pool.acquire().await?)
                    .await?,
                total_size,
            )
        }
    };
    let next_page_token = cut_to_page(&mut rows, page, &query_fingerprint, |last| match order {
        UserOrder::CreateTimeDesc => Position::Created(last.create_time, last.id),
        UserOrder::LastName => Position::LastName(last.last_name_key.clone(), last.id),
    });
    Ok(Page {
        items: rows.into_iter().map(Into::into).collect(),
        next_page_token,
        total_size,
    })
}

/// The total of a search the collecting pass found over the exact count's
/// limit: the sample's estimate, unless the sample saw under the limit what
/// was just collected over it (words written since it was taken); else the
/// planner's.
async fn total_past_the_limit(
    pool: &Pool,
    organization_id: Uuid,
    filter: &UserFilter,
    sampled: &Option<SampledSearch>,
) -> Result<TotalSize, sqlx::Error> {
    if let Some(sampled) = sampled
        .as_ref()
        .filter(|sampled| sampled.matching > EXACT_COUNT_LIMIT as f64)
    {
        return Ok(sampled.total_size());
    }
    let estimate_filter = filter.clone();
    let push_estimated = move |query: &mut QueryBuilder<'static, Postgres>| {
        push_user_filters_as_estimated(query, organization_id, &estimate_filter);
    };
    estimated_total_size(pool, push_estimated).await
}

/// The page of a search the collecting pass found over the exact count's
/// limit; by last name, `page_bound` ends the page of the matches it
/// collected, when that page was full.
async fn page_past_the_limit(
    pool: &Pool,
    search: Searched<'_>,
    order: UserOrder,
    after: &Option<Position>,
    page: &PageRequest,
    page_bound: Option<String>,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let (organization_id, ..) = search;
    let walk = match (order, page_bound) {
        (UserOrder::CreateTimeDesc, _) => Walk::OrderIndex,
        (UserOrder::LastName, None) => Walk::AsPlanned,
        (UserOrder::LastName, Some(bound)) => {
            match far_in_last_name_order(pool, organization_id, bound).await? {
                Some(bound) => Walk::No { below: bound },
                None => Walk::OrderIndex,
            }
        }
    };
    match walk {
        Walk::No { below } => page_by_last_name_below(pool, search, after, page, below).await,
        walk => page_of_many_matches(pool, search, order, after, page, walk).await,
    }
}

enum FewMatches {
    /// The page, and how many matched in all (exact, or estimated when the
    /// sample shows many more than the limit).
    Page(Vec<UserRow>, TotalSize),
    /// More than the exact count's limit. The page of the matches
    /// collected ended at `page_bound` (by last name) when it was full: the
    /// real page ends there or before.
    TooMany { page_bound: Option<String> },
    /// Not a search; or a page after the end, which tells no count.
    NotTried,
}

#[derive(FromRow)]
struct CountedUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    matched: i64,
}

/// A search's page in one pass when at most 10,000 users match: the trigram
/// index (or the email domain's) collects the matches (up to one past the limit, to tell), they are
/// counted, and only they are ordered. Walking the order's index instead, as
/// the planner likes under a LIMIT, reads most of the table when the few
/// matches sit late in that order or are not there at all.
async fn page_of_few_matches(
    pool: &Pool,
    organization_id: Uuid,
    push_from_where: &impl FromWhere,
    order: UserOrder,
    after: &Option<Position>,
    page: &PageRequest,
) -> Result<FewMatches, sqlx::Error> {
    // The matches keep only what ordering needs; the page's users are read
    // whole afterwards.
    let mut query = QueryBuilder::new(
        "with matches as materialized (select users.id, users.create_time, users.last_name_key",
    );
    push_from_where(&mut query);
    query
        .push(" limit ")
        .push_bind(EXACT_COUNT_LIMIT + 1)
        .push(format!(
            ") select {USER_COLUMNS}, (select count(*) from matches) as matched \
             from (select * from matches as users where true"
        ));
    push_page(&mut query, order, after, page);
    query
        .push(") as page join users on users.organization_id = ")
        .push_bind(organization_id)
        .push(" and users.id = page.id")
        .push(order_by(order));
    let rows: Vec<CountedUserRow> = query
        .build_query_as()
        .persistent(false)
        .fetch_all(&mut *pool.acquire().await?)
        .await?;
    let matched = match (rows.first(), after) {
        (Some(row), _) => row.matched,
        (None, None) => 0,
        (None, Some(_)) => return Ok(FewMatches::NotTried),
    };
    if matched > EXACT_COUNT_LIMIT {
        let full = rows.len() as i64 == page.size.fetch_limit();
        let page_bound = rows
            .last()
            .filter(|_| full)
            .map(|last| last.user.last_name_key.clone());
        return Ok(FewMatches::TooMany { page_bound });
    }
    let total_size = TotalSize {
        value: matched,
        estimated: false,
    };
    Ok(FewMatches::Page(
        rows.into_iter().map(|row| row.user).collect(),
        total_size,
    ))
}

/// How the page of a search of many matches is found.
enum Walk {
    /// Walking the order's index, keeping the matches.
    OrderIndex,
    /// As the planner chooses.
    AsPlanned,
    /// Not walking: the page below a last name (`page_by_last_name_below`).
    No { below: String },
}

/// A search's page when more than 10,000 users match. Newest first, the
/// create-time index is walked and its matches kept: rows are stored in
/// about that order, and over 10,000 matches of a million meet a page within
/// a few thousand rows. By last name it is walked when a page of matches
/// is known to lie within 10,000 users of the start (`far_in_last_name_order`),
/// else the planner chooses. Sorting is turned off for a walk so the planner
/// walks even where it would sort: its estimate for a LIKE pattern shrinks
/// with the pattern's length, so a common email domain looked rare to it.
/// No parallel workers either: starting them costs more than such a page, and
/// on a busy server of two cores they are not there.
async fn page_of_many_matches(
    pool: &Pool,
    (organization_id, filter, rare): Searched<'_>,
    order: UserOrder,
    after: &Option<Position>,
    page: &PageRequest,
    walk: Walk,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!("select {USER_COLUMNS}"));
    push_user_filters(&mut query, organization_id, filter, rare);
    push_page(&mut query, order, after, page);
    let sort = match walk {
        Walk::OrderIndex => "off",
        _ => "on",
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "select set_config('enable_sort', $1, true), \
         set_config('max_parallel_workers_per_gather', '0', true)",
    )
    .bind(sort)
    .execute(&mut *tx)
    .await?;
    // Planned for its own values every time, like the searches above.
    let rows = query
        .build_query_as()
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// A search of many matches: the organization, the filter and the rare
/// pieces of its words.
type Searched<'a> = (Uuid, &'a UserFilter, &'a RareParts);

/// The rare piece of each search word that has one, where the
/// organization's common trigrams are known (`rare_parts`).
fn rare_parts_of(pool: &Pool, organization_id: Uuid, filter: &UserFilter) -> RareParts {
    let parts = filter.query_terms().parts;
    if !parts
        .iter()
        .any(|part| part.chars().any(|c| !c.is_alphanumeric()))
    {
        return RareParts::new();
    }
    let Some(common) = pool.common_trigrams().of(pool, organization_id) else {
        return RareParts::new();
    };
    parts
        .into_iter()
        .filter_map(|part| rare_parts::rare_part(&part, &common.shares).map(|piece| (part, piece)))
        .collect()
}

/// Matches past which a search need not count them: far enough over the
/// exact count's limit that a sample's error or the changes since it was
/// taken cannot bring them under it.
const SURELY_MANY: f64 = 3.0 * EXACT_COUNT_LIMIT as f64;

/// What the organization's sample tells of a search: about how many users
/// it matches and, when that is surely more than the exact count's limit,
/// where a page by last name ends.
struct SampledSearch {
    matching: f64,
    last_name_bound: Option<LastNameBound>,
}

impl SampledSearch {
    /// The page is then found without collecting 10,001 matches first (most
    /// of the cost of "silva", "a" or "jo", which many users match).
    fn is_surely_many(&self) -> bool {
        self.matching > SURELY_MANY
    }

    /// The total of a search known to match more than the exact count's
    /// limit: the sample's estimate, which counts the words as the search
    /// does, where the planner's guesses a LIKE pattern's share (twice the
    /// real count for a shared email domain).
    fn total_size(&self) -> TotalSize {
        TotalSize {
            value: (self.matching.round() as i64).max(EXACT_COUNT_LIMIT + 1),
            estimated: true,
        }
    }
}

/// The organization's sample's view of a search of words alone (no other
/// filter: the sample holds only the words); `None` without a sample.
fn sampled_search(
    pool: &Pool,
    organization_id: Uuid,
    filter: &UserFilter,
    order: UserOrder,
    after: &Option<Position>,
    page: &PageRequest,
) -> Option<SampledSearch> {
    if filter.query_words.is_empty() || !filter.is_words_only() {
        return None;
    }
    let sample = pool.common_trigrams().of(pool, organization_id)?;
    let matches = sample.matches(&filter.query_terms())?;
    let matching = matches.users();
    let last_name_bound = match (order, after) {
        _ if matching <= SURELY_MANY => None,
        (UserOrder::CreateTimeDesc, _) => None,
        (UserOrder::LastName, Some(Position::LastName(from, _))) => {
            matches.last_name_bound(Some(from.as_str()), page.size.fetch_limit())
        }
        (UserOrder::LastName, _) => matches.last_name_bound(None, page.size.fetch_limit()),
    };
    Some(SampledSearch {
        matching,
        last_name_bound,
    })
}

/// The page of a search the sample shows to match surely many users
/// (`SampledSearch::is_surely_many`); `None` when the sample cannot place
/// a page by last name, or when the page is not full: the sample placed it
/// wrong, or the matches it saw are gone since (a short page proves fewer
/// than its estimate), and the matches are then collected and counted as
/// for any search. A last page pays that count.
async fn page_of_sampled_many(
    pool: &Pool,
    search: Searched<'_>,
    order: UserOrder,
    after: &Option<Position>,
    page: &PageRequest,
    last_name_bound: &Option<LastNameBound>,
) -> Result<Option<Vec<UserRow>>, sqlx::Error> {
    let rows = match (order, last_name_bound) {
        (UserOrder::LastName, None) => return Ok(None),
        (UserOrder::LastName, Some(bound)) if bound.users_before > WALK_AT_MOST as f64 => {
            page_by_last_name_below(pool, search, after, page, bound.last_name.clone()).await?
        }
        _ => page_of_many_matches(pool, search, order, after, page, Walk::OrderIndex).await?,
    };
    Ok((rows.len() as i64 == page.size.fetch_limit()).then_some(rows))
}

/// Users sorted before the bound past which walking the last-name index
/// costs more than reading the page below the bound.
const WALK_AT_MOST: i64 = 10_000;

/// `bound_key` when the planner expects more than `WALK_AT_MOST` users of
/// the organization to sort before it: a walk of the last-name index would
/// read them all before the page (a common surname late in the order). With
/// the bound early (the matches spread over the order) the walk soon meets
/// a page, and costs less than the index of trigrams finding it again.
async fn far_in_last_name_order(
    pool: &Pool,
    organization_id: Uuid,
    bound_key: String,
) -> Result<Option<String>, sqlx::Error> {
    let key = bound_key.clone();
    let sorted_before = estimated_rows(pool, move |query: &mut QueryBuilder<'static, Postgres>| {
        query
            .push(" from users where users.organization_id = ")
            .push_bind(organization_id)
            .push(" and users.last_name_key < ")
            .push_bind(key.clone());
    })
    .await?;
    Ok((sorted_before > WALK_AT_MOST).then_some(bound_key))
}

/// A search's page by last name when more than 10,000 users match, given
/// `bound_key`: the last name of the last user of a full page among some of
/// the matches, so a page of matches sorts at or before it. The page is then the
/// first of the matches whose last name sorts before the bound's, which the
/// index of last names and trigrams finds without reading the users that
/// do not match, and of the first matches with the bound's last name, a
/// walk of the last-name index from its start. Walking that index from the
/// beginning instead reads every user sorted before the matches: two
/// seconds for a surname a tenth of a million users share.
async fn page_by_last_name_below(
    pool: &Pool,
    (organization_id, filter, rare): Searched<'_>,
    after: &Option<Position>,
    page: &PageRequest,
    bound_key: String,
) -> Result<Vec<UserRow>, sqlx::Error> {
    // Materialized: inlined, the planner walks the last-name index again.
    let mut query =
        QueryBuilder::new("with before as materialized (select users.id, users.last_name_key");
    push_user_filters(&mut query, organization_id, filter, rare);
    if let Some(Position::LastName(key, _)) = after {
        // A range the index reads; the row comparison is not one.
        query
            .push(" and users.last_name_key >= ")
            .push_bind(key.clone());
    }
    push_after(&mut query, after);
    query
        .push(" and users.last_name_key < ")
        .push_bind(bound_key.clone())
        .push("), at as not materialized (select users.id, users.last_name_key");
    push_user_filters(&mut query, organization_id, filter, rare);
    push_after(&mut query, after);
    query
        .push(" and users.last_name_key = ")
        .push_bind(bound_key)
        .push(order_by(UserOrder::LastName))
        .push(" limit ")
        .push_bind(page.size.fetch_limit())
        .push(
            "), page as (select * from before union all select * from at \
             order by last_name_key, id limit ",
        )
        .push_bind(page.size.fetch_limit())
        .push(format!(
            ") select {USER_COLUMNS} from page join users on users.organization_id = "
        ))
        .push_bind(organization_id)
        .push(" and users.id = page.id")
        .push(order_by(UserOrder::LastName));
    // Planned for its own values every time, like the searches above.
    query
        .build_query_as()
        .persistent(false)
        .fetch_all(&mut *pool.acquire().await?)
        .await
}

/// The keyset condition after `after`, the order, and the limit of a page.
fn push_page(
    query: &mut QueryBuilder<'static, Postgres>,
    order: UserOrder,
    after: &Option<Position>,
    page: &PageRequest,
) {
    push_after(query, after);
    query.push(order_by(order));
    query.push(" limit ").push_bind(page.size.fetch_limit());
}

/// The keyset condition: users after `after` in its order.
fn push_after(query: &mut QueryBuilder<'static, Postgres>, after: &Option<Position>) {
    match after.clone() {
        Some(Position::Created(time, id)) => {
            query
                .push(" and (users.create_time, users.id) < (")
                .push_bind(time)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        Some(Position::LastName(key, id)) => {
            query
                .push(" and (users.last_name_key, users.id) > (")
                .push_bind(key)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        None => {}
    }
}

fn order_by(order: UserOrder) -> &'static str {
    match order {
        UserOrder::CreateTimeDesc => " order by users.create_time desc, users.id desc",
        UserOrder::LastName => " order by users.last_name_key, users.id",
    }
}

/// Users of one status each, and how many are onboarded. Stays a built
/// statement: it groups by the status, which only STATUS_SQL computes in SQL.
pub async fn status_counts(
    pool: &Pool,
    organization_id: Uuid,
) -> Result<Vec<(UserStatus, bool, i64)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {STATUS_SQL} as status, onboarded, count(*) from users where organization_id = $1 group by 1, 2 order by 1, 2"
    ))
    .bind(organization_id)
    .fetch_all(&mut *pool.acquire().await?)
    .await
}

/// What deciding whether a user may act needs.
#[derive(Debug, Clone)]
pub struct SignInState {
    pub status: UserStatus,
}

pub async fn sign_in_state<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<SignInState>, sqlx::Error> {
    let user = find(executor, organization_id, user_id).await?;
    Ok(user.map(|user| SignInState {
        status: user.status,
    }))
}

/// Up to `limit` emails (lowercased) that several users share.
pub async fn some_duplicate_emails(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "select lower(email) as \"email!\" from users where organization_id = $1 \
         group by lower(email) having count(*) > 1 order by 1 limit $2",
        organization_id,
        limit,
    )
    .fetch_all(&mut **tx)
    .await
}

impl From<UserRow> for StoredUser {
    fn from(row: UserRow) -> Self {
        StoredUser {
            id: row.id,
            values: UserValues::from_stored(
                row.first_name,
                row.last_name,
                row.email,
                row.username,
                row.phone,
                row.external_id,
            ),
            admin_state: row.admin_state,
            legacy_status: row.legacy_status,
            attributes: stored_attributes(row.attributes),
            grants: Vec::new(),
        }
    }
}

/// The users having one of these (lowercase) emails or usernames or one of
/// these external ids; locked when the batch will change them. Their grants
/// are left for the caller to read.
pub async fn find_by_keys(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    emails: &[String],
    usernames: &[String],
    external_ids: &[String],
    lock: bool,
) -> Result<Vec<StoredUser>, sqlx::Error> {
    macro_rules! by_keys {
        ($tail:literal) => {
            user_query!(
                "select",
                "from users where organization_id = $1 \
                 and (lower(email) = any($2) or lower(username) = any($3) or external_id = any($4)) \
                 order by create_time, id"
                    + $tail,
                organization_id,
                emails,
                usernames,
                external_ids,
            )
            .fetch_all(&mut **tx)
            .await
        };
    }
    let rows = if lock {
        by_keys!(" for update")?
    } else {
        by_keys!("")?
    };
    Ok(rows.into_iter().map(StoredUser::from).collect())
}

/// The columns of an import batch, one array each for UNNEST.
struct BatchColumns {
    ids: Vec<Uuid>,
    first_names: Vec<String>,
    last_names: Vec<String>,
    emails: Vec<String>,
    usernames: Vec<String>,
    phones: Vec<Option<String>>,
    external_ids: Vec<Option<String>>,
    admin_states: Vec<&'static str>,
    legacy_statuses: Vec<Option<&'static str>>,
    search_keys: Vec<String>,
    last_name_keys: Vec<String>,
    attributes: Vec<serde_json::Value>,
}

impl BatchColumns {
    fn of(users: &[ImportedUser<'_>]) -> Self {
        let mut columns = Self {
            ids: Vec::new(),
            first_names: Vec::new(),
            last_names: Vec::new(),
            emails: Vec::new(),
            usernames: Vec::new(),
            phones: Vec::new(),
            external_ids: Vec::new(),
            admin_states: Vec::new(),
            legacy_statuses: Vec::new(),
            search_keys: Vec::new(),
            last_name_keys: Vec::new(),
            attributes: Vec::new(),
        };
        for user in users {
            let values = user.values;
            columns.ids.push(user.id);
            columns.first_names.push(values.first_name.to_string());
            columns.last_names.push(values.last_name.to_string());
            columns.emails.push(values.email.to_string());
            columns.usernames.push(values.username.to_string());
            columns
                .phones
                .push(values.phone.as_deref().map(str::to_owned));
            columns
                .external_ids
                .push(values.external_id.as_deref().map(str::to_owned));
            columns.admin_states.push(user.admin_state.as_str());
            columns
                .legacy_statuses
                .push(user.legacy_status.map(LegacyStatus::as_str));
            columns.search_keys.push(values.search_key());
            columns.last_name_keys.push(values.last_name_key());
            columns
                .attributes
                .push(serde_json::Value::Object(user.attributes.clone()));
        }
        columns
    }
}

/// Inserts users in one statement; a user that would collide with an
/// existing one (a concurrent import won the race) is left out. Returns the
/// ids inserted.
pub async fn insert_many(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    users: &[ImportedUser<'_>],
    email_unique: bool,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let columns = BatchColumns::of(users);
    // Inserted in email order, so that concurrent imports lock keys in one order.
    sqlx::query_scalar!(
        "insert into users (organization_id, id, first_name, last_name, email, username, phone, external_id, \
         admin_state, legacy_status, email_unique, search_key, last_name_key, attributes) \
         select $1, t.id, t.first_name, t.last_name, t.email, t.username, t.phone, t.external_id, t.admin_state, \
         t.legacy_status, $12, t.search_key, t.last_name_key, t.attributes \
         from unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $13::text[], $14::jsonb[]) \
         as t(id, first_name, last_name, email, username, phone, external_id, admin_state, legacy_status, search_key, \
         last_name_key, attributes) \
         order by lower(t.email), lower(t.username) \
         on conflict do nothing returning id",
        organization_id,
        &columns.ids,
        &columns.first_names as _,
        &columns.last_names as _,
        &columns.emails as _,
        &columns.usernames as _,
        &columns.phones as _,
        &columns.external_ids as _,
        &columns.admin_states as _,
        &columns.legacy_statuses as _,
        &columns.search_keys as _,
        email_unique,
        &columns.last_name_keys as _,
        &columns.attributes as _,
    )
    .fetch_all(&mut **tx)
    .await
}

/// Updates users in one statement.
pub async fn update_many(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    changes: &[ImportedUser<'_>],
) -> Result<(), DomainError> {
    let columns = BatchColumns::of(changes);
    sqlx::query!(
        "update users u set first_name = t.first_name, last_name = t.last_name, email = t.email, \
         username = t.username, phone = t.phone, external_id = t.external_id, admin_state = t.admin_state, \
         legacy_status = t.legacy_status, search_key = t.search_key, last_name_key = t.last_name_key, \
         attributes = t.attributes \
         from unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::text[], $13::jsonb[]) \
         as t(id, first_name, last_name, email, username, phone, external_id, admin_state, legacy_status, search_key, \
         last_name_key, attributes) \
         where u.organization_id = $1 and u.id = t.id",
        organization_id,
        &columns.ids,
        &columns.first_names as _,
        &columns.last_names as _,
        &columns.emails as _,
        &columns.usernames as _,
        &columns.phones as _,
        &columns.external_ids as _,
        &columns.admin_states as _,
        &columns.legacy_statuses as _,
        &columns.search_keys as _,
        &columns.last_name_keys as _,
        &columns.attributes as _,
    )
    .execute(&mut **tx)
    .await
    .map_err(|error| map_user_uniqueness(error, ""))?;
    Ok(())
}

pub async fn delete_many(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from users where organization_id = $1 and id = any($2)",
        organization_id,
        ids,
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// A user as the export writes it.
#[derive(FromRow)]
pub struct ExportRow {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub phone: Option<String>,
    pub external_id: Option<String>,
    /// The assigned status: the legacy one, else the admin state.
    pub status: UserStatus,
    pub onboarded: bool,
    /// The status every call shows (spec §1), e.g. PENDING or EXPIRED.
    pub derived_status: UserStatus,
    /// Group names, `|`-separated.
    pub groups: String,
    /// Custom attributes' values by key.
    pub attributes: serde_json::Value,
}

/// The next users matching `filter` after `after` (by id, i.e. creation order).
pub async fn export_page(
    pool: &Pool,
    organization_id: Uuid,
    filter: &UserFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ExportRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "select users.id, users.first_name, users.last_name, users.email, users.username, users.phone, \
         users.external_id, coalesce(users.legacy_status, users.admin_state) as status, \
         users.onboarded, {STATUS_SQL} as derived_status, users.attributes, \
         coalesce((select string_agg(g.name, '|' order by lower(g.name)) from memberships m \
                   join groups g on g.organization_id = m.organization_id and g.id = m.group_id \
                   where m.organization_id = users.organization_id and m.user_id = users.id), '') as groups",
    ));
    push_user_filters(&mut query, organization_id, filter, &RareParts::new());
    if let Some(after) = after {
        query.push(" and users.id > ").push_bind(after);
    }
    query.push(" order by users.id limit ").push_bind(limit);
    query
        .build_query_as()
        .fetch_all(&mut *pool.acquire().await?)
        .await
}

/// Which of `emails` belong to users of the organization (lowercased).
pub async fn emails_of_users<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    emails: &[Email],
) -> Result<Vec<String>, sqlx::Error> {
    let lowered: Vec<String> = emails.iter().map(|email| email.to_lowercase()).collect();
    sqlx::query_scalar!(
        r#"select distinct lower(email) as "email!" from users where organization_id = $1 and lower(email) = any($2)"#,
        organization_id,
        &lowered,
    )
    .fetch_all(executor)
    .await
}

/// When the user's current invitation link lapses (the status turns EXPIRED).
pub async fn set_invitation_expire_time(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    expire_time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update users set invitation_expire_time = $3 where organization_id = $1 and id = $2",
        organization_id,
        id,
        expire_time,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Removes the password: the user is not onboarded until they register
/// one again, from an invitation not sent yet.
pub async fn clear_password(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<User, DomainError> {
    let row = user_query!(
        "update users set password_hash = null, onboarded = false, invitation_expire_time = null          where organization_id = $1 and id = $2 returning",
        "",
        organization_id,
        id,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.into())
}

/// Sets (or with `None` clears) the time the user's password expires.
pub async fn set_password_expire_time(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    expire_time: Option<DateTime<Utc>>,
) -> Result<User, DomainError> {
    let row = user_query!(
        "update users set password_expire_time = $3 where organization_id = $1 and id = $2 returning",
        "",
        organization_id,
        id,
        expire_time,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.into())
}

/// Stores a new password hash; registering one makes the user onboarded.
pub async fn set_password(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update users set password_hash = $3, onboarded = true, password_set_time = now(), \
         password_expire_time = null where organization_id = $1 and id = $2",
        organization_id,
        id,
        password_hash,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A checked statement reading what signing in needs, with the status facts
/// (see `user_query!`), then `$tail`.
macro_rules! credentials_query {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            CredentialsRow,
            "select id, username, password_hash, admin_state as \"admin_state: AdminState\", \
             legacy_status as \"legacy_status: LegacyStatus\", onboarded, invitation_expire_time, \
             now() as \"read_time!\", coalesce((case when users.password_hash is not null then \
             least(users.password_expire_time, users.password_set_time + make_interval(secs => \
             (select o.password_max_age_seconds from organizations o where o.id = users.organization_id))) \
             end) <= now(), false) as \"password_expired!\", exists (select 1 from second_factors s \
             where s.organization_id = users.organization_id and s.user_id = users.id \
             and s.confirm_time is not null) as \"second_factor!\" from users where organization_id = $1 and "
                + $tail
            $(, $arg)*
        )
    };
}

pub async fn credentials_by_username(
    pool: &Pool,
    organization_id: Uuid,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    let row = credentials_query!(
        "lower(username) = lower($2)",
        organization_id,
        username.trim()
    )
    .fetch_optional(&mut *pool.acquire().await?)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn credentials_by_id(
    pool: &Pool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Credentials>, sqlx::Error> {
    let row = credentials_query!("id = $2", organization_id, id)
        .fetch_optional(&mut *pool.acquire().await?)
        .await?;
    Ok(row.map(Into::into))
}

struct CredentialsRow {
    id: Uuid,
    username: String,
    password_hash: Option<String>,
    admin_state: AdminState,
    legacy_status: Option<LegacyStatus>,
    onboarded: bool,
    invitation_expire_time: Option<DateTime<Utc>>,
    read_time: DateTime<Utc>,
    password_expired: bool,
    second_factor: bool,
}

impl From<CredentialsRow> for Credentials {
    fn from(row: CredentialsRow) -> Self {
        let facts = StatusFacts {
            admin_state: row.admin_state,
            legacy_status: row.legacy_status,
            onboarded: row.onboarded,
            invitation_expire_time: row.invitation_expire_time,
        };
        Self {
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            password_expired: row.password_expired,
            second_factor: row.second_factor,
            status: UserStatus::derive(facts, row.read_time),
        }
    }
}

pub async fn touch_last_login<'e>(
    executor: impl PgExecutor<'e>,
    organization_id: Uuid,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update users set last_login_time = now() where organization_id = $1 and id = $2",
        organization_id,
        id,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// The not-onboarded users among `targets`, locked for the transaction.
pub async fn lock_invitation_targets(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
    targets: &InvitationTargets,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let (condition, ids, job): (String, &[Uuid], Option<Uuid>) = match targets {
        InvitationTargets::Ids(ids) => ("users.id = any($2)".into(), ids, None),
        InvitationTargets::Expired => (format!("{STATUS_SQL} = 'EXPIRED'"), &[], None),
        InvitationTargets::NotOnboarded => ("true".into(), &[], None),
        InvitationTargets::ImportJob(job) => (
            "users.id in (select r.user_id from import_rows r join import_jobs j on j.id = r.job_id \
             where r.job_id = $3 and j.organization_id = $1 and r.outcome = 'CREATED')"
                .into(),
            &[],
            Some(*job),
        ),
    };
    sqlx::query_scalar(&format!(
        "select users.id from users where users.organization_id = $1 and not users.onboarded \
         and ({condition}) order by users.id for update"
    ))
    .bind(organization_id)
    .bind(ids)
    .bind(job)
    .fetch_all(&mut **tx)
    .await
}

/// The usernames of every user of the organization.
pub async fn usernames(
    tx: &mut Transaction<'_>,
    organization_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "select username from users where organization_id = $1",
        organization_id
    )
    .fetch_all(&mut **tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_domain_is_written_into_the_filter() {
        let condition = public_email_domain_sql();
        for domain in public_email_domains() {
            assert!(is_plain_domain(domain), "{domain}");
            let reversed: String = domain.chars().rev().collect();
            assert!(condition.contains(&format!("'{reversed}.'")), "{domain}");
        }
        assert!(!is_plain_domain("gmail.com' or true --"));
    }
}
