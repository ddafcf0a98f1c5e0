//! UserService requests into domain commands, and domain results into
//! responses: the one place the user service converts. Every parse reports
//! all its violations at once, then builds from the parsed parts.

use uuid::Uuid;

use crate::{
    domain::{
        caller::{Caller, Principal},
        group::{GivenGroups, GroupLabel},
        paging::PageRequest,
        request::IdempotencyKey,
        session::Session,
        user::{
            groups_of_users, AttributeMask, AuthorizableAccess, CreatedUser, GivenUser,
            InvitationTargets, LookupKey, MirrorMode, MirrorRequest, MirrorResult, NewUser,
            OnboardingStats, Origin, User, UserField, UserFilter, UserInput, UserKey,
            UserListRequest, UserOrder, UserStatus, UserUpdate, UserValues, UserView,
            MAX_USERS_PER_CALL,
        },
        DomainError, FieldViolation,
    },
    grpc::convert::{
        delimiter, field_issues, id_or_name, mask_fields, object_struct, optional_timestamp,
        parse_id, parse_ids, scopes_to_proto, struct_fields, timestamp, unit_scope_to_proto,
    },
    proto,
    store::Pool,
};

const USER_FIELDS: &str =
    "first_name, last_name, email, username, phone, external_id, attributes, attributes.<key>";

/// One refusal out of the failed parts of a request: their violations in
/// request order, or the first error that is not about the request.
fn refusal(failures: impl IntoIterator<Item = Option<DomainError>>) -> DomainError {
    let mut violations = Vec::new();
    for failure in failures.into_iter().flatten() {
        match failure {
            DomainError::InvalidArgument(found) => violations.extend(found),
            other => return other,
        }
    }
    DomainError::InvalidArgument(violations)
}

fn invalid(violation: FieldViolation) -> DomainError {
    DomainError::InvalidArgument(vec![violation])
}

pub fn user_status_to_proto(status: UserStatus) -> i32 {
    (match status {
        UserStatus::Pending => proto::UserStatus::Pending,
        UserStatus::Expired => proto::UserStatus::Expired,
        UserStatus::Active => proto::UserStatus::Active,
        UserStatus::Inactive => proto::UserStatus::Inactive,
        UserStatus::OnVacation => proto::UserStatus::OnVacation,
        UserStatus::Blocked => proto::UserStatus::Blocked,
        UserStatus::Disabled => proto::UserStatus::Disabled,
    }) as i32
}

/// `None` for USER_STATUS_UNSPECIFIED and unknown numbers.
pub fn user_status_from_proto(raw: i32) -> Option<UserStatus> {
    Some(match proto::UserStatus::try_from(raw).ok()? {
        proto::UserStatus::Unspecified => return None,
        proto::UserStatus::Pending => UserStatus::Pending,
        proto::UserStatus::Expired => UserStatus::Expired,
        proto::UserStatus::Active => UserStatus::Active,
        proto::UserStatus::Inactive => UserStatus::Inactive,
        proto::UserStatus::OnVacation => UserStatus::OnVacation,
        proto::UserStatus::Blocked => UserStatus::Blocked,
        proto::UserStatus::Disabled => UserStatus::Disabled,
    })
}

pub fn user(user: &User) -> proto::User {
    proto::User {
        id: user.id.to_string(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        email: user.email.clone(),
        username: user.username.clone(),
        phone: user.phone.clone().unwrap_or_default(),
        external_id: user.external_id.clone().unwrap_or_default(),
        status: user_status_to_proto(user.status),
        onboarded: user.onboarded,
        invitation_expire_time: optional_timestamp(user.invitation_expire_time),
        create_time: Some(timestamp(user.create_time)),
        update_time: Some(timestamp(user.update_time)),
        last_login_time: optional_timestamp(user.last_login_time),
        password_expired: user.password_expired,
        password_expire_time: optional_timestamp(user.password_expire_time),
        attributes: (!user.attributes.is_empty()).then(|| object_struct(&user.attributes)),
        // The FULL view's (users_in_view).
        groups: Vec::new(),
        second_factor_enrolled: user.second_factor_time.is_some(),
        second_factor_enroll_time: optional_timestamp(user.second_factor_time),
    }
}

fn user_input(user: Option<proto::User>) -> UserInput {
    let user = user.unwrap_or_default();
    UserInput {
        first_name: user.first_name,
        last_name: user.last_name,
        email: user.email,
        username: user.username,
        phone: user.phone,
        external_id: user.external_id,
    }
}

/// The proto fields CreateUser and CloneUser share.
struct NewUserFields {
    origin: Origin,
    user: Option<proto::User>,
    group_ids: Vec<String>,
    group_names: Vec<String>,
    source_user_id: String,
    source_user: Option<proto::UserKey>,
    deactivated: bool,
    send_invitation: Option<bool>,
    request_id: String,
}

/// CreateUser and CloneUser carry the same fields, in two proto types, but
/// for the names of the other user they name (the user a create mirrors,
/// `mirror_user`; the source of a clone, `source_user`): one `TryFrom` reads
/// both.
macro_rules! new_user_from {
    ($request:ty, $origin:expr, $source_user_id:ident, $source_user:ident) => {
        impl TryFrom<$request> for NewUser {
            type Error = DomainError;

            fn try_from(body: $request) -> Result<Self, DomainError> {
                new_user(NewUserFields {
                    origin: $origin,
                    user: body.user,
                    group_ids: body.group_ids,
                    group_names: body.group_names,
                    source_user_id: body.$source_user_id,
                    source_user: body.$source_user,
                    deactivated: body.deactivated,
                    send_invitation: body.send_invitation,
                    request_id: body.request_id,
                })
            }
        }
    };
}

new_user_from!(
    proto::CreateUserRequest,
    Origin::Create,
    mirror_user_id,
    mirror_user
);
new_user_from!(
    proto::CloneUserRequest,
    Origin::Clone,
    source_user_id,
    source_user
);

/// A new user, every violation at once; a clone names its source, a
/// create may name a user to mirror.
fn new_user(fields: NewUserFields) -> Result<NewUser, DomainError> {
    let origin = fields.origin;
    let attributes = struct_fields(fields.user.as_ref().and_then(|u| u.attributes.as_ref()));
    let values =
        UserValues::parse(&user_input(fields.user), "user.").map_err(DomainError::InvalidArgument);
    let groups = GivenGroups::parse(&fields.group_ids, &fields.group_names, "");
    let source = match origin {
        Origin::Clone => given_user(&fields.source_user_id, fields.source_user, "source_user")
            .and_then(|given| {
                given.map(Some).ok_or_else(|| {
                    DomainError::invalid(
                        "source_user_id",
                        "REQUIRED",
                        "must be set (or source_user, by id, email, username or external_id)",
                    )
                })
            }),
        Origin::Create => given_user(&fields.source_user_id, fields.source_user, "mirror_user"),
    };
    let request_id = IdempotencyKey::parse_optional(&fields.request_id).map_err(invalid);
    match (values, groups, source, request_id) {
        (Ok(values), Ok(groups), Ok(source), Ok(request_id)) => Ok(NewUser {
            origin,
            values,
            groups,
            source,
            deactivated: fields.deactivated,
            send_invitation: fields.send_invitation.unwrap_or(true),
            request_id,
            attributes,
        }),
        (values, groups, source, request_id) => Err(refusal([
            values.err(),
            groups.err(),
            source.err(),
            request_id.err(),
        ])),
    }
}

/// A user a request names by id (`<name>_id`) or by any key (`<name>`, a
/// UserKey): one of the two, or neither.
pub fn given_user(
    raw_id: &str,
    key: Option<proto::UserKey>,
    name: &str,
) -> Result<Option<GivenUser>, DomainError> {
    let id_field = format!("{name}_id");
    match (raw_id.trim().is_empty(), key) {
        (true, None) => Ok(None),
        (false, None) => Ok(Some(GivenUser::by_id(
            parse_id(raw_id.trim(), &id_field)?,
            id_field,
        ))),
        (true, Some(key)) => user_key(key, name).map(Some),
        (false, Some(_)) => Err(DomainError::invalid(
            name,
            "ONE_OF",
            format!("give {id_field} or {name}, not both"),
        )),
    }
}

/// A UserKey under `field`: exactly one of its keys, not empty.
pub fn user_key(key: proto::UserKey, field: &str) -> Result<GivenUser, DomainError> {
    use proto::user_key::Key;
    let (kind, raw) = match &key.key {
        Some(Key::Id(raw)) => ("id", raw),
        Some(Key::Email(raw)) => ("email", raw),
        Some(Key::Username(raw)) => ("username", raw),
        Some(Key::ExternalId(raw)) => ("external_id", raw),
        None => {
            return Err(DomainError::invalid(
                field,
                "REQUIRED",
                "must set one of id, email, username and external_id",
            ))
        }
    };
    let field = format!("{field}.{kind}");
    let key = UserKey::parse(kind, raw, &field).map_err(invalid)?;
    Ok(GivenUser { key, field })
}

pub fn user_key_to_proto(key: &UserKey) -> proto::UserKey {
    use proto::user_key::Key;
    proto::UserKey {
        key: Some(match key {
            UserKey::Id(id) => Key::Id(id.to_string()),
            UserKey::Email(value) => Key::Email(value.clone()),
            UserKey::Username(value) => Key::Username(value.clone()),
            UserKey::ExternalId(value) => Key::ExternalId(value.clone()),
        }),
    }
}

/// What CreateUser and CloneUser answer besides the user.
pub struct CreatedParts {
    pub user: Option<proto::User>,
    pub skipped_group_ids: Vec<String>,
    pub skipped_groups: Vec<proto::GroupRef>,
    pub warnings: Vec<proto::FieldIssue>,
}

pub fn created_parts(created: &CreatedUser) -> CreatedParts {
    CreatedParts {
        user: Some(user(&created.user)),
        skipped_group_ids: label_ids(&created.skipped_groups),
        skipped_groups: group_refs(&created.skipped_groups),
        warnings: field_issues(&created.warnings),
    }
}

pub fn label_ids(groups: &[GroupLabel]) -> Vec<String> {
    groups.iter().map(|group| group.id.to_string()).collect()
}

pub fn group_refs(groups: &[GroupLabel]) -> Vec<proto::GroupRef> {
    groups
        .iter()
        .map(|group| proto::GroupRef {
            id: group.id.to_string(),
            name: group.name.clone(),
        })
        .collect()
}

impl TryFrom<proto::MirrorUserRequest> for MirrorRequest {
    type Error = DomainError;

    fn try_from(body: proto::MirrorUserRequest) -> Result<Self, DomainError> {
        let reference = given_user(
            &body.reference_user_id,
            body.reference_user,
            "reference_user",
        )
        .and_then(|given| {
            given.ok_or_else(|| {
                DomainError::invalid(
                    "reference_user_id",
                    "REQUIRED",
                    "must be set (or reference_user, by id, email, username or external_id)",
                )
            })
        });
        let count = batch_count(body.target_user_ids.len() + body.target_users.len());
        let targets = match (
            parse_ids(&body.target_user_ids, "target_user_ids"),
            target_keys(body.target_users),
            count,
        ) {
            (Ok(ids), Ok(keys), Ok(())) => Ok(ids
                .into_iter()
                .enumerate()
                .map(|(index, id)| GivenUser::by_id(id, format!("target_user_ids[{index}]")))
                .chain(keys)
                .collect()),
            (ids, keys, count) => Err(refusal([ids.err(), keys.err(), count.err()])),
        };
        let mode = match proto::MirrorMode::try_from(body.mode) {
            Ok(proto::MirrorMode::Add) => Ok(MirrorMode::Add),
            Ok(proto::MirrorMode::Replace) => Ok(MirrorMode::Replace),
            _ => Err(DomainError::invalid(
                "mode",
                "REQUIRED",
                "must be MIRROR_MODE_ADD or MIRROR_MODE_REPLACE",
            )),
        };
        match (reference, targets, mode) {
            (Ok(reference), Ok(targets), Ok(mode)) => Ok(MirrorRequest {
                reference,
                targets,
                mode,
            }),
            (reference, targets, mode) => {
                Err(refusal([reference.err(), targets.err(), mode.err()]))
            }
        }
    }
}

/// MirrorUser's targets by key, every malformed one at once.
fn target_keys(keys: Vec<proto::UserKey>) -> Result<Vec<GivenUser>, DomainError> {
    let mut found = Vec::with_capacity(keys.len());
    let mut failures = Vec::new();
    for (index, key) in keys.into_iter().enumerate() {
        match user_key(key, &format!("target_users[{index}]")) {
            Ok(given) => found.push(given),
            Err(failure) => failures.push(Some(failure)),
        }
    }
    if failures.is_empty() {
        Ok(found)
    } else {
        Err(refusal(failures))
    }
}

fn batch_count(count: usize) -> Result<(), DomainError> {
    if count == 0 || count > MAX_USERS_PER_CALL {
        return Err(DomainError::invalid(
            "target_user_ids",
            "COUNT",
            format!("must list 1 to {MAX_USERS_PER_CALL} users (here and in target_users)"),
        ));
    }
    Ok(())
}

pub fn mirror_result(result: &MirrorResult) -> proto::MirrorTargetResult {
    let (error_code, error_message) = match &result.error {
        Some((code, message)) => ((*code).to_owned(), message.clone()),
        None => Default::default(),
    };
    proto::MirrorTargetResult {
        target_user_id: if result.target_user_id.is_nil() {
            String::new()
        } else {
            result.target_user_id.to_string()
        },
        target_user: result.target.as_ref().map(user_key_to_proto),
        applied: result.error.is_none(),
        added_group_ids: label_ids(&result.added),
        removed_group_ids: label_ids(&result.removed),
        skipped_group_ids: label_ids(&result.skipped),
        error_code,
        error_message,
        added_groups: group_refs(&result.added),
        removed_groups: group_refs(&result.removed),
        skipped_groups: group_refs(&result.skipped),
    }
}

pub fn lookup_key(request: &proto::LookupUserRequest) -> Result<LookupKey<'_>, DomainError> {
    use proto::lookup_user_request::Key;
    match &request.key {
        Some(Key::Email(email)) if !email.trim().is_empty() => Ok(LookupKey::Email(email)),
        Some(Key::Username(username)) if !username.trim().is_empty() => {
            Ok(LookupKey::Username(username))
        }
        Some(Key::ExternalId(external_id)) if !external_id.trim().is_empty() => {
            Ok(LookupKey::ExternalId(external_id))
        }
        _ => Err(DomainError::invalid(
            "key",
            "REQUIRED",
            "give one of email, username or external_id",
        )),
    }
}

/// The ids of BatchGetUsers: too many is refused before any is parsed.
pub fn batch_ids(raw: &[String]) -> Result<Vec<Uuid>, DomainError> {
    if raw.len() > MAX_USERS_PER_CALL {
        return Err(DomainError::invalid(
            "user_ids",
            "TOO_MANY",
            format!("at most {MAX_USERS_PER_CALL} ids"),
        ));
    }
    parse_ids(raw, "user_ids")
}

/// The filter fields ListUsers and ExportUsers share.
struct UserFilterFields<'a> {
    query: &'a str,
    statuses: &'a [i32],
    group_id: &'a str,
    group_name: &'a str,
    unit_id: &'a str,
    unit_name: &'a str,
    onboarded: Option<bool>,
    public_email_domain: Option<bool>,
}

/// The filter fields of a ListUsers or ExportUsers request (the same names in both).
macro_rules! filter_fields {
    ($body:expr) => {
        UserFilterFields {
            query: &$body.query,
            statuses: &$body.statuses,
            group_id: &$body.group_id,
            group_name: &$body.group_name,
            unit_id: &$body.unit_id,
            unit_name: &$body.unit_name,
            onboarded: $body.onboarded,
            public_email_domain: $body.public_email_domain,
        }
    };
}

/// The ListUsers/ExportUsers filters, every violation at once.
fn user_filter(fields: UserFilterFields<'_>) -> Result<UserFilter, DomainError> {
    let mut violations = Vec::new();
    let mut parsed_statuses = Vec::new();
    for (index, raw) in fields.statuses.iter().enumerate() {
        match user_status_from_proto(*raw) {
            Some(status) => parsed_statuses.push(status),
            None => violations.push(FieldViolation::new(
                format!("statuses[{index}]"),
                "INVALID_VALUE",
                "is not a user status",
            )),
        }
    }
    let group = id_or_name(fields.group_id, fields.group_name, "group");
    let unit = id_or_name(fields.unit_id, fields.unit_name, "unit");
    let query_length = if fields.query.chars().count() > 200 {
        Err(DomainError::invalid(
            "query",
            "TOO_LONG",
            "must be at most 200 characters",
        ))
    } else {
        Ok(())
    };
    match (DomainError::check(violations), group, unit, query_length) {
        (Ok(()), Ok((group_id, group_name)), Ok((unit_id, unit_name)), Ok(())) => Ok(UserFilter {
            query_words: UserFilter::query_words(fields.query),
            statuses: parsed_statuses,
            group_id,
            unit_id,
            group_name,
            unit_name,
            onboarded: fields.onboarded,
            public_email_domain: fields.public_email_domain,
            password_expired: None,
            attributes: Default::default(),
            second_factor_enrolled: None,
        }),
        (statuses, group, unit, query_length) => Err(refusal([
            statuses.err(),
            group.err(),
            unit.err(),
            query_length.err(),
        ])),
    }
}

impl TryFrom<proto::ListUsersRequest> for UserListRequest {
    type Error = DomainError;

    fn try_from(body: proto::ListUsersRequest) -> Result<Self, DomainError> {
        let page = PageRequest::parse(body.page_size, body.page_token).map_err(invalid);
        let order = UserOrder::parse(&body.order_by).map_err(invalid);
        let filter = user_filter(filter_fields!(body));
        let view = user_view(body.view);
        match (page, order, filter, view) {
            (Ok(page), Ok(order), Ok(filter), Ok(view)) => Ok(UserListRequest {
                filter: UserFilter {
                    password_expired: body.password_expired,
                    attributes: struct_fields(body.attributes.as_ref()),
                    second_factor_enrolled: body.second_factor_enrolled,
                    ..filter
                },
                order,
                page,
                view,
            }),
            (page, order, filter, view) => {
                Err(refusal([page.err(), order.err(), filter.err(), view.err()]))
            }
        }
    }
}

pub fn user_view(raw: i32) -> Result<UserView, DomainError> {
    match proto::UserView::try_from(raw) {
        Ok(proto::UserView::Unspecified | proto::UserView::Basic) => Ok(UserView::Basic),
        Ok(proto::UserView::Full) => Ok(UserView::Full),
        Err(_) => Err(DomainError::invalid(
            "view",
            "INVALID_ENUM",
            "must be USER_VIEW_BASIC or USER_VIEW_FULL",
        )),
    }
}

/// Users as answers show them in `view`: FULL adds each one's groups.
pub async fn users_in_view(
    pool: &Pool,
    organization_id: Uuid,
    view: UserView,
    users: &[User],
) -> Result<Vec<proto::User>, DomainError> {
    let mut shown: Vec<proto::User> = users.iter().map(user).collect();
    if view == UserView::Full {
        let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
        let mut groups = groups_of_users(pool, organization_id, &ids).await?;
        for (shown, found) in shown.iter_mut().zip(users) {
            shown.groups = group_refs(&groups.remove(&found.id).unwrap_or_default());
        }
    }
    Ok(shown)
}

/// ExportUsers: the filter and the CSV delimiter.
pub fn export_request(body: &proto::ExportUsersRequest) -> Result<(UserFilter, char), DomainError> {
    let delimiter = delimiter(&body.delimiter);
    let filter = user_filter(filter_fields!(body));
    match (delimiter, filter) {
        (Ok(delimiter), Ok(filter)) => Ok((filter, delimiter)),
        (delimiter, filter) => Err(refusal([delimiter.err(), filter.err()])),
    }
}

impl TryFrom<proto::UpdateUserRequest> for UserUpdate {
    type Error = DomainError;

    fn try_from(body: proto::UpdateUserRequest) -> Result<Self, DomainError> {
        let user_id = parse_id(
            body.user
                .as_ref()
                .map(|u| u.id.as_str())
                .unwrap_or_default(),
            "user.id",
        )?;
        let paths = mask_fields(
            body.update_mask.as_ref(),
            "user.",
            USER_FIELDS,
            MaskPath::parse,
        )?;
        let mut fields = Vec::new();
        let mut attribute_mask = AttributeMask::Untouched;
        for path in paths {
            match (path, &mut attribute_mask) {
                (MaskPath::Field(field), _) => fields.push(field),
                (MaskPath::Attributes, mask) => *mask = AttributeMask::Whole,
                (MaskPath::Attribute(key), AttributeMask::Keys(keys)) => keys.push(key),
                (MaskPath::Attribute(key), mask @ AttributeMask::Untouched) => {
                    *mask = AttributeMask::Keys(vec![key])
                }
                // The whole map already names every key.
                (MaskPath::Attribute(_), AttributeMask::Whole) => {}
            }
        }
        let attributes = struct_fields(body.user.as_ref().and_then(|u| u.attributes.as_ref()));
        Ok(UserUpdate {
            user_id,
            fields,
            input: user_input(body.user),
            attribute_mask,
            attributes,
        })
    }
}

/// A path of UpdateUser's mask: a user field, the attributes, or one of them.
enum MaskPath {
    Field(UserField),
    Attributes,
    Attribute(String),
}

impl MaskPath {
    fn parse(path: &str) -> Option<Self> {
        match path.strip_prefix("attributes") {
            Some("") => Some(Self::Attributes),
            Some(key) => key
                .strip_prefix('.')
                .filter(|key| !key.is_empty())
                .map(|key| Self::Attribute(key.to_owned())),
            None => UserField::parse(path).map(Self::Field),
        }
    }
}

/// The status SetUserStatus assigns (which ones may be is the domain's rule).
pub fn assigned_status(raw: i32) -> Result<UserStatus, DomainError> {
    user_status_from_proto(raw).ok_or_else(|| {
        DomainError::invalid(
            "status",
            "REQUIRED",
            "must be USER_STATUS_ACTIVE, USER_STATUS_INACTIVE or USER_STATUS_ON_VACATION",
        )
    })
}

/// AddUserToGroups and RemoveUserFromGroups: a user and at least one
/// group, by id or by name.
pub fn user_and_groups(
    user_id: &str,
    group_ids: &[String],
    group_names: &[String],
) -> Result<(Uuid, GivenGroups), DomainError> {
    let user_id = parse_id(user_id, "user_id")?;
    if group_ids.is_empty() && group_names.is_empty() {
        return Err(DomainError::invalid(
            "group_ids",
            "REQUIRED",
            "must list at least one group, here or by name in group_names",
        ));
    }
    Ok((user_id, GivenGroups::parse(group_ids, group_names, "")?))
}

impl TryFrom<proto::SendActivationEmailRequest> for InvitationTargets {
    type Error = DomainError;

    fn try_from(body: proto::SendActivationEmailRequest) -> Result<Self, DomainError> {
        let filter = proto::ActivationFilter::try_from(body.filter)
            .unwrap_or(proto::ActivationFilter::Unspecified);
        let given = [
            !body.user_ids.is_empty(),
            filter != proto::ActivationFilter::Unspecified,
            !body.import_job_id.is_empty(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(DomainError::invalid(
                "user_ids",
                "ONE_TARGET",
                "give exactly one of user_ids, filter and import_job_id",
            ));
        }
        if !body.user_ids.is_empty() {
            if body.user_ids.len() > MAX_USERS_PER_CALL {
                return Err(DomainError::invalid(
                    "user_ids",
                    "TOO_MANY",
                    format!("at most {MAX_USERS_PER_CALL} ids; use a filter for more"),
                ));
            }
            // Unlike other id lists, the first bad id alone is refused.
            let ids = body
                .user_ids
                .iter()
                .enumerate()
                .map(|(i, id)| parse_id(id, &format!("user_ids[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(InvitationTargets::Ids(ids));
        }
        if !body.import_job_id.is_empty() {
            let job = parse_id(&body.import_job_id, "import_job_id")?;
            return Ok(InvitationTargets::ImportJob(job));
        }
        Ok(match filter {
            proto::ActivationFilter::Expired => InvitationTargets::Expired,
            _ => InvitationTargets::NotOnboarded,
        })
    }
}

impl From<AuthorizableAccess> for proto::GetUserAccessResponse {
    fn from(access: AuthorizableAccess) -> Self {
        Self {
            status: user_status_to_proto(access.status),
            can_sign_in: AuthorizableAccess::can_sign_in(access.status),
            scopes: scopes_to_proto(&access.scopes),
            grants: access
                .grants
                .into_iter()
                .map(|named| {
                    let (unit_scope, unit_ids) = unit_scope_to_proto(&named.grant.scope);
                    proto::AccessGrant {
                        group_id: named.grant.group_id.to_string(),
                        group_name: named.group_name,
                        profile_id: named.grant.profile_id.to_string(),
                        product: named.product,
                        profile_name: named.profile_name,
                        unit_scope,
                        units: super::groups::unit_refs(&named.grant.scope, &named.unit_names),
                        unit_ids,
                    }
                })
                .collect(),
        }
    }
}

impl From<OnboardingStats> for proto::GetOnboardingStatsResponse {
    fn from(stats: OnboardingStats) -> Self {
        Self {
            onboarded_count: stats.onboarded,
            not_onboarded_count: stats.not_onboarded,
            status_counts: stats
                .by_status
                .into_iter()
                .map(|(status, count)| proto::StatusCount {
                    status: user_status_to_proto(status),
                    count,
                })
                .collect(),
        }
    }
}

/// A live session as ListUserSessions shows it; `current` when it is the
/// caller's own token.
pub fn session(session: &Session, caller: &Caller) -> proto::Session {
    let current = matches!(
        caller.principal,
        Principal::User { access_token_id, .. } if access_token_id == session.id
    );
    proto::Session {
        id: session.id.to_string(),
        create_time: Some(timestamp(session.create_time)),
        last_used_time: optional_timestamp(session.last_used_time),
        expire_time: Some(timestamp(session.expire_time)),
        peer_address: session.peer_address.clone().unwrap_or_default(),
        user_agent: session.user_agent.clone().unwrap_or_default(),
        current,
    }
}
