//! The authorization matrix, generated from the contract: every RPC of every
//! `roster.v1` service, read from the descriptor set, called by every kind of
//! caller, with the outcome derived from the scope sentence its doc comment
//! ends with. A new RPC is in the matrix the moment it is in the proto; one
//! whose comment names no known scope fails it, and so does one the server
//! does not route (UNIMPLEMENTED: the contract promises a method that is not
//! built, which no caller can tell apart from a broken one). Then another
//! organization's ADMIN key names the first organization's resources in every
//! id field of every request it may call.

mod contract;
mod raw_call;

use std::collections::HashMap;

use roster::{
    domain::caller::Scope,
    proto::{self, UnitScope},
    store,
};
use tonic::Code;
use uuid::Uuid;

use crate::{
    groups,
    helpers::{new_group, new_profile, new_unit, Bearer, CreatedId, TestApp},
    import::run_import,
};
use contract::{Contract, Required, Resource, Rpc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    NoToken,
    MalformedToken,
    UnknownToken,
    RevokedApiKey,
    RevokedUserToken,
    ExpiredApiKey,
    ExpiredUserToken,
    ViewerApiKey,
    AdminApiKey,
    OtherOrganizationsAdminApiKey,
    UserWithoutGroups,
    ViewerUser,
    /// Admin on some units only.
    UnitAdministrator,
    /// Admin on all units.
    OrganizationAdministratorUser,
}

const CALLERS: [Caller; 14] = [
    Caller::NoToken,
    Caller::MalformedToken,
    Caller::UnknownToken,
    Caller::RevokedApiKey,
    Caller::RevokedUserToken,
    Caller::ExpiredApiKey,
    Caller::ExpiredUserToken,
    Caller::ViewerApiKey,
    Caller::AdminApiKey,
    Caller::OtherOrganizationsAdminApiKey,
    Caller::UserWithoutGroups,
    Caller::ViewerUser,
    Caller::UnitAdministrator,
    Caller::OrganizationAdministratorUser,
];

/// What a caller with a valid credential holds (spec §1 "Who may do what").
struct Holds {
    user_session: bool,
    viewer: bool,
    admin: bool,
    organization_admin: bool,
}

impl Caller {
    /// `None` for a credential the server must not accept.
    fn holds(self) -> Option<Holds> {
        let holds = |user_session, viewer, admin, organization_admin| {
            Some(Holds {
                user_session,
                viewer,
                admin,
                organization_admin,
            })
        };
        match self {
            Caller::NoToken
            | Caller::MalformedToken
            | Caller::UnknownToken
            | Caller::RevokedApiKey
            | Caller::RevokedUserToken
            | Caller::ExpiredApiKey
            | Caller::ExpiredUserToken => None,
            Caller::ViewerApiKey => holds(false, true, false, false),
            Caller::AdminApiKey | Caller::OtherOrganizationsAdminApiKey => {
                holds(false, true, true, true)
            }
            Caller::UserWithoutGroups => holds(true, false, false, false),
            Caller::ViewerUser => holds(true, true, false, false),
            Caller::UnitAdministrator => holds(true, true, true, false),
            Caller::OrganizationAdministratorUser => holds(true, true, true, true),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Unauthenticated,
    PermissionDenied,
    /// Past the auth layer into a built handler. An empty request may well be
    /// INVALID_ARGUMENT or NOT_FOUND; it may not be refused as unauthorized,
    /// be unimplemented, or crash (INTERNAL/UNKNOWN).
    Served,
}

impl Expected {
    fn met_by(self, code: Code) -> bool {
        match self {
            Expected::Unauthenticated => code == Code::Unauthenticated,
            Expected::PermissionDenied => code == Code::PermissionDenied,
            Expected::Served => !matches!(
                code,
                Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::Unimplemented
                    | Code::Internal
                    | Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Unavailable
            ),
        }
    }
}

/// The outcome a caller must get from a method needing `required`, called
/// with an empty request.
fn expected(required: Required, caller: Caller) -> Expected {
    if required == Required::Public {
        return Expected::Served;
    }
    let Some(holds) = caller.holds() else {
        return Expected::Unauthenticated;
    };
    let allowed = match required {
        // OwnOrAdmin: an empty request names the caller's own (a user) or
        // is refused as incomplete (an API key), past the auth layer.
        Required::Public | Required::AnyToken | Required::OwnOrAdmin => true,
        // Spec §2: a valid token without what the method needs is
        // PERMISSION_DENIED; an API key is not a session.
        Required::SignedIn => holds.user_session,
        Required::Viewer => holds.viewer,
        Required::Admin => holds.admin,
        Required::OrganizationAdmin => holds.organization_admin,
    };
    if allowed {
        Expected::Served
    } else {
        Expected::PermissionDenied
    }
}

/// How a caller's credential is presented on each call.
enum Credential {
    Fixed(Bearer),
    /// A fresh access token per call, so that `Logout` (or anything else
    /// that ends a session) in one cell leaves every other cell as it was.
    SessionOf(Uuid),
}

/// The first organization (`acme`) with a caller of every kind and one
/// resource of every kind, and the other organization (`globex`).
struct World {
    credentials: HashMap<Caller, Credential>,
    /// One resource of each kind of `acme`, for requests the other organization sends.
    acme_resources: HashMap<Resource, String>,
    /// What no answer to the other organization may contain.
    acme_fingerprints: Vec<String>,
    globex: Globex,
}

struct Globex {
    id: Uuid,
    admin: Bearer,
    /// A review job of globex (jobs are not made per request: they take a stream).
    job_id: String,
}

async fn world(app: &TestApp) -> World {
    let org = groups::org(app).await;
    let group = |name: &'static str, profile: &str, scope: UnitScope, units: Vec<String>| {
        let profile = profile.to_owned();
        async move {
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            groups::group(app, name, &profile, scope, &units).await
        }
    };
    let admins_everywhere = group(
        "Admins everywhere",
        &org.admin_profile,
        UnitScope::AllUnits,
        vec![],
    )
    .await;
    let viewers_everywhere = group(
        "Viewers everywhere",
        &org.viewer_profile,
        UnitScope::AllUnits,
        vec![],
    )
    .await;
    let admins_south = group(
        "Admins of South",
        &org.admin_profile,
        UnitScope::Units,
        vec![org.south.clone()],
    )
    .await;
    let cashiers_south = group(
        "Cashiers of South",
        &org.cashier_profile,
        UnitScope::Units,
        vec![org.south.clone()],
    )
    .await;

    let user_id = |user: proto::User| -> Uuid { user.id.parse().expect("a user id") };
    let without_groups = user_id(app.signed_in_user("nobody@acme.test").await.0);
    let viewer = user_id(
        groups::holder(app, "viewer@acme.test", &[&viewers_everywhere])
            .await
            .0,
    );
    let unit_admin = user_id(
        groups::holder(
            app,
            "south.admin@acme.test",
            &[&admins_south, &cashiers_south],
        )
        .await
        .0,
    );
    let org_admin = user_id(
        groups::holder(app, "org.admin@acme.test", &[&admins_everywhere])
            .await
            .0,
    );
    // Sessions of an organization administrator, so that only their being
    // expired or revoked can be what refuses them.
    let signed_out = user_id(
        groups::holder(app, "signed.out@acme.test", &[&admins_everywhere])
            .await
            .0,
    );
    let revoked_session = app
        .mint_access_token(signed_out, chrono::Duration::hours(1))
        .await;
    store::access_tokens::revoke_all_for_users(&app.pool, app.organization_id, &[signed_out])
        .await
        .expect("revoke sessions");
    let expired_session = app
        .mint_access_token(signed_out, chrono::Duration::seconds(-1))
        .await;

    let viewer_key = app
        .create_api_key(app.organization_id, "viewer", &[Scope::Viewer])
        .await;
    let revoked_key = app
        .create_api_key(app.organization_id, "revoked", &[Scope::Admin])
        .await;
    let expired_key = app
        .create_api_key(app.organization_id, "expired", &[Scope::Admin])
        .await;
    sqlx::query("update api_keys set revoke_time = now() where name = 'revoked'")
        .execute(&app.pool)
        .await
        .expect("revoke key");
    sqlx::query(
        "update api_keys set expire_time = now() - interval '1 minute' where name = 'expired'",
    )
    .execute(&app.pool)
    .await
    .expect("expire key");
    let globex_id = app.create_organization("globex").await;
    let globex_admin = Bearer::token(
        &app.create_api_key(globex_id, "admin", &[Scope::Admin])
            .await,
    );
    let globex = Globex {
        id: globex_id,
        job_id: review_job(app, globex_admin.clone(), "globex").await,
        admin: globex_admin,
    };

    // Resources of acme that the other organization will name.
    let mut employee = proto::User {
        first_name: "Ana".into(),
        last_name: "Employee".into(),
        email: "ana.employee@acme.test".into(),
        external_id: "HR-ACME-1".into(),
        ..Default::default()
    };
    employee.id = app
        .users(app.as_admin())
        .create_user(proto::CreateUserRequest {
            user: Some(employee.clone()),
            group_ids: vec![cashiers_south.clone()],
            ..Default::default()
        })
        .await
        .created_id();
    let viewer_key_id = api_key_id(app, &viewer_key).await;
    let employee_id: Uuid = employee.id.parse().expect("employee id");
    let employee_session = session_id(app, app.organization_id, employee_id).await;
    let job_id = review_job(app, app.as_admin(), "acme").await;

    let acme_resources = HashMap::from([
        (Resource::Organization, app.organization_id.to_string()),
        (Resource::User, employee.id.clone()),
        (Resource::ExternalId, employee.external_id.clone()),
        (Resource::Group, cashiers_south.clone()),
        (Resource::Unit, org.south.clone()),
        (Resource::Profile, org.cashier_profile.clone()),
        (Resource::ApiKey, viewer_key_id),
        (Resource::ImportJob, job_id),
        (Resource::Session, employee_session),
    ]);
    let mut acme_fingerprints: Vec<String> = acme_resources.values().cloned().collect();
    acme_fingerprints.extend(
        [
            "acme".to_owned(),
            org.admin_profile,
            org.viewer_profile,
            org.west,
            admins_everywhere,
            viewers_everywhere,
            admins_south,
        ]
        .into_iter()
        .chain(
            [without_groups, viewer, unit_admin, org_admin, signed_out]
                .iter()
                .map(Uuid::to_string),
        ),
    );

    let unknown = format!("rst_key_{}", "b".repeat(43));
    let credentials = HashMap::from([
        (Caller::NoToken, Credential::Fixed(Bearer::none())),
        (
            Caller::MalformedToken,
            Credential::Fixed(Bearer::token("not-a-roster-token")),
        ),
        (
            Caller::UnknownToken,
            Credential::Fixed(Bearer::token(&unknown)),
        ),
        (
            Caller::RevokedApiKey,
            Credential::Fixed(Bearer::token(&revoked_key)),
        ),
        (
            Caller::RevokedUserToken,
            Credential::Fixed(Bearer::token(&revoked_session)),
        ),
        (
            Caller::ExpiredApiKey,
            Credential::Fixed(Bearer::token(&expired_key)),
        ),
        (
            Caller::ExpiredUserToken,
            Credential::Fixed(Bearer::token(&expired_session)),
        ),
        (
            Caller::ViewerApiKey,
            Credential::Fixed(Bearer::token(&viewer_key)),
        ),
        (Caller::AdminApiKey, Credential::Fixed(app.as_admin())),
        (
            Caller::OtherOrganizationsAdminApiKey,
            Credential::Fixed(globex.admin.clone()),
        ),
        (
            Caller::UserWithoutGroups,
            Credential::SessionOf(without_groups),
        ),
        (Caller::ViewerUser, Credential::SessionOf(viewer)),
        (Caller::UnitAdministrator, Credential::SessionOf(unit_admin)),
        (
            Caller::OrganizationAdministratorUser,
            Credential::SessionOf(org_admin),
        ),
    ]);
    World {
        credentials,
        acme_resources,
        acme_fingerprints,
        globex,
    }
}

/// The id of a finished review job of one row.
async fn review_job(app: &TestApp, bearer: Bearer, domain: &str) -> String {
    let file = format!("first_name,last_name,email\nBia,Review,bia.review@{domain}.test\n");
    let review = run_import(
        app,
        bearer,
        true,
        proto::ImportOptions::default(),
        file.as_bytes(),
        1024,
    )
    .await;
    review.summary.expect("a review summary").job_id
}

/// A fresh resource of each kind in globex, named by `serial`: a request
/// that changes or deletes one leaves the others' checks as they were.
async fn globex_resources(
    app: &TestApp,
    globex: &Globex,
    serial: usize,
) -> HashMap<Resource, String> {
    let mut groups = app.groups(globex.admin.clone());
    let unit_name = format!("Globex unit {serial}");
    let unit_request = new_unit(unit_name, proto::UnitKind::Branch);
    let unit = groups.create_unit(unit_request).await.created_id();
    let profile_request = new_profile("Globex", format!("Profile {serial}"));
    let profile = groups.create_profile(profile_request).await.created_id();
    let group_name = format!("Globex group {serial}");
    let group_request = new_group(group_name, &profile, UnitScope::Units, &[&unit]);
    let group = groups.create_group(group_request).await.created_id();
    let external_id = format!("HR-GLOBEX-{serial}");
    let user = app
        .users(globex.admin.clone())
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                first_name: "Gil".into(),
                last_name: format!("Member {serial}"),
                email: format!("member.{serial}@globex.test"),
                external_id: external_id.clone(),
                ..Default::default()
            }),
            group_ids: vec![group.clone()],
            ..Default::default()
        })
        .await
        .created_id();
    let key = app
        .create_api_key(globex.id, &format!("key-{serial}"), &[Scope::Viewer])
        .await;
    HashMap::from([
        (Resource::Organization, globex.id.to_string()),
        (Resource::ExternalId, external_id),
        (Resource::Group, group),
        (Resource::Unit, unit),
        (Resource::Profile, profile),
        (Resource::ApiKey, api_key_id(app, &key).await),
        (Resource::ImportJob, globex.job_id.clone()),
        (
            Resource::Session,
            session_id(app, globex.id, user.parse().expect("user id")).await,
        ),
        (Resource::User, user),
    ])
}

/// The id of a new session of a user.
async fn session_id(app: &TestApp, organization_id: Uuid, user_id: Uuid) -> String {
    let secret =
        roster::domain::token::Secret::generate(roster::domain::token::TokenKind::AccessToken);
    store::access_tokens::insert(
        &app.pool,
        organization_id,
        user_id,
        &secret.hash(),
        chrono::Utc::now() + chrono::Duration::hours(1),
        &Default::default(),
    )
    .await
    .expect("a session")
    .to_string()
}

async fn api_key_id(app: &TestApp, secret: &str) -> String {
    let me = app
        .who_am_i(Bearer::token(secret))
        .await
        .expect("who am i")
        .into_inner();
    match me.principal {
        Some(proto::who_am_i_response::Principal::ApiKey(key)) => key.id,
        other => panic!("expected an API key principal, got {other:?}"),
    }
}

/// One cell that did not hold.
struct Miss {
    method: String,
    caller: String,
    expected: String,
    got: String,
}

#[tokio::test]
async fn every_rpc_of_the_contract_answers_every_kind_of_caller_as_its_scope_comment_says() {
    let app = TestApp::spawn().await;
    let world = world(&app).await;
    let contract = Contract::load();
    assert!(
        contract.rpcs.len() >= 53,
        "the contract read from the descriptors has only {} RPCs",
        contract.rpcs.len()
    );
    let mut misses = Vec::new();
    let mut cells = 0;
    // Makes the names of what the checks create unique.
    let mut serial = 0;
    for rpc in &contract.rpcs {
        let required = match &rpc.required {
            Ok(required) => *required,
            Err(why) => {
                misses.push(Miss {
                    method: rpc.name.clone(),
                    caller: "-".into(),
                    expected: "a scope comment".into(),
                    got: why.clone(),
                });
                continue;
            }
        };
        for caller in CALLERS {
            cells += 1;
            let expected = expected(required, caller);
            let bearer = match &world.credentials[&caller] {
                Credential::Fixed(bearer) => bearer.clone(),
                Credential::SessionOf(user) => Bearer::token(
                    &app.mint_access_token(*user, chrono::Duration::hours(1))
                        .await,
                ),
            };
            let answer = raw_call::call(&app.channel, bearer, rpc, Vec::new()).await;
            if !expected.met_by(answer.code) {
                misses.push(miss(
                    rpc,
                    &format!("{caller:?}"),
                    format!("{expected:?}"),
                    &answer,
                ));
            }
            if caller == Caller::OtherOrganizationsAdminApiKey {
                check_nothing_of_acme_in(rpc, &answer, &[], &world, &mut misses);
            }
        }
        if expected(required, Caller::OtherOrganizationsAdminApiKey) == Expected::Served {
            cells +=
                another_organizations_ids(&app, &world, &contract, rpc, &mut serial, &mut misses)
                    .await;
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {cells} cells do not hold:\n{}",
        misses.len(),
        table(&misses)
    );
}

/// Methods that read a collection (AIP-132/231): an id in their filter that
/// exists nowhere may be "no match" rather than NOT_FOUND.
fn reads_a_collection(rpc: &Rpc) -> bool {
    let method = rpc.name.rsplit('/').next().unwrap_or_default();
    ["List", "BatchGet", "Lookup", "Export"]
        .iter()
        .any(|verb| method.starts_with(verb))
}

/// globex's ADMIN key names acme's resource in each id field of `rpc`'s
/// request in turn, every other id field naming globex's own. The answer must
/// be NOT_FOUND; for a collection read or a batch (a repeated id field, whose
/// items may be reported one by one) it must be exactly the answer for an id
/// that exists nowhere. No answer may hold anything of acme.
///
/// A control call with globex's own ids proves that the request gets past
/// validation to the lookup (or that ids are looked up first: own ids pass
/// to a later refusal while acme's and nowhere's are NOT_FOUND); when it does
/// not with the other id fields filled, the field is tried alone. Returns the
/// number of cells checked.
async fn another_organizations_ids(
    app: &TestApp,
    world: &World,
    contract: &Contract,
    rpc: &Rpc,
    serial: &mut usize,
    misses: &mut Vec<Miss>,
) -> usize {
    let caller_naming = |path: &str| format!("globex's ADMIN key naming acme's {path}");
    let id_fields = match contract.id_fields(rpc) {
        Ok(fields) => fields,
        Err(why) => {
            misses.push(Miss {
                method: rpc.name.clone(),
                caller: caller_naming("ids"),
                expected: "id fields of known kinds".into(),
                got: why,
            });
            return 0;
        }
    };
    let mut cells = 0;
    for field in &id_fields {
        cells += 1;
        *serial += 1;
        let serial = *serial;
        let own = globex_resources(app, &world.globex, serial).await;
        let mut control = None;
        for alone in [false, true] {
            let request = |named: String, serial: usize| {
                contract.request(
                    rpc,
                    &|path, resource| {
                        if path == field.path {
                            Some(named.clone())
                        } else if alone {
                            None
                        } else {
                            own.get(&resource).cloned()
                        }
                    },
                    &field.path,
                    serial,
                )
            };
            let call = |named: String, serial: usize| {
                let body = request(named, serial);
                async move {
                    match body {
                        Ok(body) => {
                            let answer = raw_call::call(
                                &app.channel,
                                world.globex.admin.clone(),
                                rpc,
                                body.clone(),
                            )
                            .await;
                            (body, answer)
                        }
                        Err(why) => panic!("{}: {why}", rpc.name),
                    }
                }
            };
            let attempt = serial * 10 + if alone { 5 } else { 0 };
            let (_, own_answer) = call(own[&field.resource].clone(), attempt + 1).await;
            let acme_id = world.acme_resources[&field.resource].clone();
            let (acme_request, acme) = call(acme_id.clone(), attempt + 2).await;
            // As long as acme's, so the answers compare byte for byte.
            let nowhere_id = match field.resource {
                Resource::ExternalId => "Z".repeat(acme_id.len()),
                _ => Uuid::now_v7().to_string(),
            };
            let (_, nowhere) = call(nowhere_id.clone(), attempt + 3).await;
            // With globex's own ids the request passed validation to the
            // lookup, or the ids were looked up before the rest was checked.
            let reached = !matches!(own_answer.code, Code::InvalidArgument | Code::NotFound)
                || (acme.code == Code::NotFound && nowhere.code == Code::NotFound);
            if !reached {
                control = Some(own_answer);
                continue;
            }
            control = None;
            let caller = caller_naming(&field.path);
            let as_for_nowhere = field.repeated || reads_a_collection(rpc);
            let held = if as_for_nowhere {
                acme.code == nowhere.code
                    && matches!(acme.code, Code::Ok | Code::NotFound)
                    && same_answer(
                        &without_clock(rpc, &acme),
                        &acme_id,
                        &without_clock(rpc, &nowhere),
                        &nowhere_id,
                    )
            } else {
                acme.code == Code::NotFound
            };
            if !held {
                let expected = if as_for_nowhere {
                    format!(
                        "{:?} and the answer for an id that exists nowhere",
                        nowhere.code
                    )
                } else {
                    "NotFound".into()
                };
                misses.push(miss(rpc, &caller, expected, &acme));
            }
            check_nothing_of_acme_in(rpc, &acme, &acme_request, world, misses);
            break;
        }
        if let Some(control) = control {
            misses.push(miss(
                rpc,
                &caller_naming(&field.path),
                "a request that reaches the lookup".into(),
                &raw_call::Answer {
                    message: format!("with globex's own ids: {}", control.message),
                    ..control
                },
            ));
        }
    }
    cells
}

/// The answer without what differs by the time it was given: a change
/// stream's heartbeats carry the time they were sent.
fn without_clock(rpc: &Rpc, answer: &raw_call::Answer) -> raw_call::Answer {
    use prost::Message;
    let responses = answer
        .responses
        .iter()
        .map(|response| {
            if !rpc.path.ends_with("/WatchChanges") {
                return response.clone();
            }
            let mut decoded = proto::WatchChangesResponse::decode(response.as_slice())
                .expect("a WatchChanges response");
            if let Some(proto::watch_changes_response::Event::Heartbeat(heartbeat)) =
                &mut decoded.event
            {
                heartbeat.time = None;
            }
            decoded.encode_to_vec()
        })
        .collect();
    raw_call::Answer {
        responses,
        code: answer.code,
        message: answer.message.clone(),
    }
}

/// Whether two answers are the same once the id each named is swapped.
fn same_answer(
    answer: &raw_call::Answer,
    id: &str,
    other: &raw_call::Answer,
    other_id: &str,
) -> bool {
    let swapped: Vec<Vec<u8>> = answer
        .responses
        .iter()
        .map(|response| replace(response, id.as_bytes(), other_id.as_bytes()))
        .collect();
    swapped == other.responses
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            out.extend_from_slice(with);
            rest = &rest[needle.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

fn check_nothing_of_acme_in(
    rpc: &Rpc,
    answer: &raw_call::Answer,
    request: &[u8],
    world: &World,
    misses: &mut Vec<Miss>,
) {
    // What the request itself named may come back (`not_found_user_ids`).
    let fingerprints: Vec<&String> = world
        .acme_fingerprints
        .iter()
        .filter(|fingerprint| !contains(request, fingerprint))
        .collect();
    if let Some(disclosed) = fingerprints.iter().find(|fingerprint| {
        answer
            .responses
            .iter()
            .any(|response| contains(response, fingerprint))
    }) {
        misses.push(miss(
            rpc,
            "globex's ADMIN key",
            "nothing of acme".into(),
            &raw_call::Answer {
                code: answer.code,
                message: format!("disclosed {disclosed}"),
                responses: Vec::new(),
            },
        ));
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn miss(rpc: &Rpc, caller: &str, expected: String, answer: &raw_call::Answer) -> Miss {
    let message: String = answer.message.chars().take(100).collect();
    Miss {
        method: rpc.name.clone(),
        caller: caller.to_owned(),
        expected,
        got: format!("{:?} {message}", answer.code),
    }
}

fn table(misses: &[Miss]) -> String {
    let width = |column: fn(&Miss) -> &str, header: &str| {
        misses
            .iter()
            .map(|m| column(m).len())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let (m, c, e) = (
        width(|m| &m.method, "method"),
        width(|m| &m.caller, "caller"),
        width(|m| &m.expected, "expected"),
    );
    let mut out = format!("{:m$}  {:c$}  {:e$}  got\n", "method", "caller", "expected");
    for miss in misses {
        out.push_str(&format!(
            "{:m$}  {:c$}  {:e$}  {}\n",
            miss.method, miss.caller, miss.expected, miss.got
        ));
    }
    out
}

/// The auth layer's table (src/grpc/access.rs) requires what each RPC's doc
/// comment says it requires; a method missing from either side, or listed
/// twice in the table, fails it too. The matrix above checks the behaviour;
/// this names the disagreeing line at once, without a server.
#[test]
fn the_scope_table_requires_what_every_rpc_comment_says() {
    use roster::grpc::access::{Access, METHOD_ACCESS};

    let required_by_table = |access: Access| match access {
        Access::Public => Required::Public,
        Access::AnyToken => Required::AnyToken,
        Access::SignedIn => Required::SignedIn,
        Access::Scope(Scope::Viewer) => Required::Viewer,
        Access::Scope(Scope::Admin) => Required::Admin,
        Access::OrganizationAdmin => Required::OrganizationAdmin,
        Access::OwnOrAdmin => Required::OwnOrAdmin,
    };
    let contract = Contract::load();
    let mut disagreements = Vec::new();
    for rpc in &contract.rpcs {
        let rows: Vec<Access> = METHOD_ACCESS
            .iter()
            .filter(|(path, _)| *path == rpc.path)
            .map(|(_, access)| *access)
            .collect();
        match (rows.as_slice(), &rpc.required) {
            ([], _) => disagreements.push(format!("{}: not in the table", rpc.path)),
            ([access], Ok(required)) if required_by_table(*access) == *required => {}
            ([access], commented) => disagreements.push(format!(
                "{}: the table requires {access:?}, the comment {commented:?}",
                rpc.path
            )),
            (_, _) => {
                disagreements.push(format!("{}: in the table {} times", rpc.path, rows.len()))
            }
        }
    }
    for (path, _) in METHOD_ACCESS {
        if !contract.rpcs.iter().any(|rpc| rpc.path == *path) {
            disagreements.push(format!("{path}: in the table, not in the contract"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
