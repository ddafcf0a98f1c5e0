//! Input at the boundary (issue 12, points 10–14): every request string is
//! storable and bounded, names and emails refuse invisible tricks, errors
//! echo only a prefix, unknown enum values are refused, and the bearer
//! scheme ignores case.

use roster::proto::{self, UnitKind, UserStatus};
use tonic::{Code, Status};

use crate::{
    helpers::{mask, violated_fields, Bearer, TestApp},
    users::new_user,
};

/// The call was refused as invalid, naming exactly these fields.
fn assert_refused(result: Result<impl std::fmt::Debug, Status>, fields: &[&str]) {
    let status = result.expect_err("the request must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), fields, "{status:?}");
}

/// A new POS profile named Cashier with this description.
fn new_cashier_profile(description: &str) -> proto::CreateProfileRequest {
    proto::CreateProfileRequest {
        profile: Some(proto::Profile {
            product: "POS".into(),
            name: "Cashier".into(),
            description: description.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn new_unit(name: &str, kind: i32) -> proto::CreateUnitRequest {
    proto::CreateUnitRequest {
        unit: Some(proto::Unit {
            name: name.into(),
            kind,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_nul_in_any_request_string_is_invalid_argument_naming_the_field() {
    let app = TestApp::spawn().await;
    let mut users = app.users(app.as_admin());
    let mut groups = app.groups(app.as_admin());
    let mut organizations = app.organizations(app.as_admin());
    let user = app.create_user("Ana", "Silva", "ana@acme.test").await;

    assert_refused(
        users
            .list_users(proto::ListUsersRequest {
                query: "an\0a".into(),
                ..Default::default()
            })
            .await,
        &["query"],
    );
    assert_refused(
        users
            .lookup_user(proto::LookupUserRequest {
                key: Some(proto::lookup_user_request::Key::Email(
                    "ana@acme.test\0".into(),
                )),
            })
            .await,
        &["email"],
    );
    assert_refused(
        users
            .create_user(new_user("Bi\0a", "Souza", "bia@acme.test"))
            .await,
        &["user.first_name"],
    );
    assert_refused(
        users
            .add_user_to_groups(proto::AddUserToGroupsRequest {
                user_id: user.id.clone(),
                group_ids: vec![uuid::Uuid::nil().to_string(), "\0".into()],
                ..Default::default()
            })
            .await,
        &["group_ids[1]"],
    );
    assert_refused(
        groups
            .create_profile(new_cashier_profile("rings up\0sales"))
            .await,
        &["profile.description"],
    );
    assert_refused(
        groups
            .update_unit(proto::UpdateUnitRequest {
                unit: Some(proto::Unit::default()),
                update_mask: mask(&["name", "ki\0nd"]),
            })
            .await,
        &["update_mask.paths[1]"],
    );
    assert_refused(
        organizations
            .list_audit_events(proto::ListAuditEventsRequest {
                actor_id: "\0".into(),
                ..Default::default()
            })
            .await,
        &["actor_id"],
    );
    // A server-streaming call's request is checked the same way.
    assert_refused(
        users
            .export_users(proto::ExportUsersRequest {
                query: "\0".into(),
                ..Default::default()
            })
            .await,
        &["query"],
    );
}

#[tokio::test]
async fn an_anonymous_caller_gets_invalid_argument_not_internal_for_a_nul() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth(Bearer::none());

    assert_refused(
        auth.login(proto::LoginRequest {
            organization: "default\0".into(),
            username: "ana\0".into(),
            password: "secret".into(),
        })
        .await,
        &["organization", "username"],
    );
    assert_refused(
        auth.request_password_reset(proto::RequestPasswordResetRequest {
            organization: "acme".into(),
            username: "a\0".into(),
        })
        .await,
        &["username"],
    );
    // On a method that needs a token, the missing token is answered first.
    let status = app
        .users(Bearer::none())
        .list_users(proto::ListUsersRequest {
            query: "\0".into(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn an_over_long_string_is_refused_naming_the_field_before_any_work() {
    let app = TestApp::spawn().await;
    let mut users = app.users(app.as_admin());
    let mut groups = app.groups(app.as_admin());

    assert_refused(
        users
            .list_users(proto::ListUsersRequest {
                query: "a".repeat(1025),
                ..Default::default()
            })
            .await,
        &["query"],
    );
    assert_refused(
        groups
            .update_group(proto::UpdateGroupRequest {
                group: Some(proto::Group::default()),
                update_mask: mask(&["name", &"x".repeat(20_000), "description"]),
            })
            .await,
        &["update_mask.paths[1]"],
    );
    assert_refused(
        app.auth(Bearer::none())
            .login(proto::LoginRequest {
                organization: "o".repeat(9000),
                username: "ana".into(),
                password: "secret".into(),
            })
            .await,
        &["organization"],
    );
    // The default cap holds the longest value the domain accepts.
    groups
        .create_profile(new_cashier_profile(&"é".repeat(1000)))
        .await
        .expect("a 1,000-character description fits");
}

#[tokio::test]
async fn an_unknown_enum_value_in_any_request_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let mut groups = app.groups(app.as_admin());
    let mut users = app.users(app.as_admin());

    assert_refused(
        groups
            .list_units(proto::ListUnitsRequest {
                kind: 99,
                ..Default::default()
            })
            .await,
        &["kind"],
    );
    assert_refused(
        users
            .list_users(proto::ListUsersRequest {
                statuses: vec![UserStatus::Active as i32, 42],
                ..Default::default()
            })
            .await,
        &["statuses[1]"],
    );
    assert_refused(
        app.imports(app.as_admin())
            .list_import_jobs(proto::ListImportJobsRequest {
                status: -3,
                ..Default::default()
            })
            .await,
        &["status"],
    );
    assert_refused(
        groups.create_unit(new_unit("South", 77)).await,
        &["unit.kind"],
    );
    // Known values, UNSPECIFIED included, still pass.
    for kind in [UnitKind::Unspecified, UnitKind::Store] {
        groups
            .list_units(proto::ListUnitsRequest {
                kind: kind as i32,
                ..Default::default()
            })
            .await
            .expect("a known kind filters");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_ignoring_case() {
    let app = TestApp::spawn().await;
    let token = app.admin_key.clone();
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        app.who_am_i(Bearer::raw(&format!("{scheme} {token}")))
            .await
            .unwrap_or_else(|status| panic!("{scheme}: {status:?}"));
    }
    let refused = app
        .who_am_i(Bearer::raw(&format!("Basic {token}")))
        .await
        .expect_err("another scheme is refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

/// Bytes a status puts in the trailers: its message and its encoded details.
fn status_bytes(status: &Status) -> usize {
    status.message().len() + status.details().len()
}

#[tokio::test]
async fn errors_repeat_only_a_short_prefix_of_the_input() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(4000);

    let refused = app
        .groups(app.as_admin())
        .update_group(proto::UpdateGroupRequest {
            group: Some(proto::Group {
                id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            }),
            update_mask: mask(&[&long, &long, &long]),
        })
        .await
        .expect_err("unknown paths are refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "update_mask.paths[0]",
            "update_mask.paths[1]",
            "update_mask.paths[2]"
        ]
    );
    assert!(!refused.message().contains(&"x".repeat(65)), "{refused:?}");
    assert!(status_bytes(&refused) < 2048, "{}", status_bytes(&refused));

    let refused = app
        .update_settings(
            proto::OrganizationSettings {
                locale: long.clone(),
                ..Default::default()
            },
            &["locale"],
        )
        .await
        .expect_err("an unknown locale is refused");
    assert_eq!(violated_fields(&refused), ["settings.locale"]);
    assert!(!refused.message().contains(&"x".repeat(65)), "{refused:?}");

    let refused = app
        .users(app.as_admin())
        .list_users(proto::ListUsersRequest {
            order_by: long,
            ..Default::default()
        })
        .await
        .expect_err("an unknown order is refused");
    assert_eq!(violated_fields(&refused), ["order_by"]);
    assert!(!refused.message().contains(&"x".repeat(65)), "{refused:?}");
}

#[tokio::test]
async fn a_request_with_thousands_of_violations_gets_a_bounded_status() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ana", "Silva", "ana@acme.test").await;

    let refused = app
        .users(app.as_admin())
        .add_user_to_groups(proto::AddUserToGroupsRequest {
            user_id: user.id,
            group_ids: vec!["not-a-uuid".into(); 2000],
            ..Default::default()
        })
        .await
        .expect_err("ids must be UUIDs");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields = violated_fields(&refused);
    assert_eq!(fields.len(), 16, "{fields:?}");
    assert_eq!(fields[0], "group_ids[0]");
    assert!(refused.message().ends_with("and 1984 more"), "{refused:?}");
    // Well under the 16 KB trailer limit of C-core and Java clients.
    assert!(
        status_bytes(&refused) < 8 * 1024,
        "{}",
        status_bytes(&refused)
    );
}

/// A name that would display as other text than it holds (a right-to-left
/// override). The variants (isolates, marks, separators, zero-width and
/// joiners outside a word) are unit tests of `PersonName` and `DisplayName`;
/// here each family of RPCs shows it refuses one, naming its field.
const SPOOFED_NAME: &str = "Ana\u{202E}avliS";

#[tokio::test]
async fn every_name_field_refuses_a_direction_override_naming_the_field() {
    let app = TestApp::spawn().await;
    let mut users = app.users(app.as_admin());
    let mut groups = app.groups(app.as_admin());
    assert_refused(
        users
            .create_user(new_user("Bia", SPOOFED_NAME, "bia@acme.test"))
            .await,
        &["user.last_name"],
    );
    assert_refused(
        groups
            .create_unit(new_unit(SPOOFED_NAME, UnitKind::Branch as i32))
            .await,
        &["unit.name"],
    );
    assert_refused(
        groups
            .create_profile(new_cashier_profile(SPOOFED_NAME))
            .await,
        &["profile.description"],
    );
    assert_refused(
        app.auth(app.as_admin())
            .create_api_key(proto::CreateApiKeyRequest {
                name: SPOOFED_NAME.into(),
                scopes: vec![proto::Scope::Viewer as i32],
                ..Default::default()
            })
            .await,
        &["name"],
    );
}

#[tokio::test]
async fn names_keep_the_joiners_real_scripts_need_inside_a_word() {
    let app = TestApp::spawn().await;
    // Persian: a non-joiner between two letters. Other scripts: `PersonName`'s unit tests.
    let name = "\u{645}\u{6CC}\u{200C}\u{62E}\u{648}\u{627}\u{647}";
    let user = app.create_user(name, "Silva", "joiner@acme.test").await;
    assert_eq!(user.first_name, name);
}

#[tokio::test]
async fn an_import_row_with_a_spoofed_name_fails_with_the_same_rule() {
    let app = TestApp::spawn().await;
    let file = format!(
        "first_name,last_name,email\nAna,Silva,ana@acme.test\nBia,{},bia@acme.test\n",
        SPOOFED_NAME
    );
    let run = crate::import::import(&app, crate::import::options(), &file).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.rows.len(), 2);
    assert_eq!(run.rows[0].outcome, proto::RowOutcome::Created as i32);
    assert_eq!(run.rows[1].outcome, proto::RowOutcome::Failed as i32);
    let codes: Vec<(&str, &str)> = run.rows[1]
        .errors
        .iter()
        .map(|issue| (issue.field.as_str(), issue.code.as_str()))
        .collect();
    assert_eq!(codes, [("last_name", "INVISIBLE_CHARACTER")]);
}

/// The address rules are unit tests of `Email`; here CreateUser shows it
/// refuses one naming the field, and keeps an internationalized domain as typed.
#[tokio::test]
async fn emails_with_a_bad_domain_or_specials_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    assert_refused(
        app.users(app.as_admin())
            .create_user(new_user("Ana", "Silva", "a<b>@x.test"))
            .await,
        &["user.email"],
    );
    let user = app.create_user("Ana", "Silva", "ana@exämple.com.br").await;
    assert_eq!(user.email, "ana@exämple.com.br");
}

/// Sends `body` as it is (gRPC framing included) to `path`, as `bearer`,
/// and returns the call's status.
async fn raw_grpc(app: &TestApp, bearer: Bearer, path: &str, body: Vec<u8>) -> Status {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let channel = tonic::transport::Channel::from_shared(app.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("{}{path}", app.address))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .unwrap();
    let service = tonic::service::interceptor::InterceptedService::new(channel, bearer);
    let response = service.oneshot(request).await.unwrap();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Status::from_header_map(&trailers)
        .or_else(|| Status::from_header_map(&headers))
        .expect("a grpc-status")
}

/// One gRPC message: the uncompressed flag, its length, its bytes.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    body
}

#[tokio::test]
async fn a_malformed_body_from_an_anonymous_caller_is_invalid_argument_not_internal() {
    let app = TestApp::spawn().await;
    const LOGIN: &str = "/roster.v1.AuthService/Login";
    let login = proto::LoginRequest {
        organization: "default".into(),
        username: "ana".into(),
        password: "secret".into(),
    };
    let valid = prost::Message::encode_to_vec(&login);
    let mut compressed = framed(&valid);
    compressed[0] = 1;
    let mut too_large = vec![0];
    too_large.extend_from_slice(&(4 * 1024 * 1024 + 1_u32).to_be_bytes());
    too_large.extend_from_slice(&valid);
    let truncated = framed(&valid)[..8].to_vec();
    let two_messages = [framed(&valid), framed(&valid)].concat();
    let cases = [
        // Field 1 (`organization`, a string) sent as a varint.
        (
            "a field in the wrong wire type",
            framed(&[0x08, 0x01]),
            "MALFORMED_REQUEST",
        ),
        ("an empty body", Vec::new(), "EMPTY_REQUEST"),
        (
            "a body ending inside its message",
            truncated,
            "TRUNCATED_REQUEST",
        ),
        ("a compressed message", compressed, "COMPRESSED_REQUEST"),
        ("a message over the limit", too_large, "REQUEST_TOO_LARGE"),
        ("two messages", two_messages, "MORE_THAN_ONE_MESSAGE"),
    ];
    for (what, body, code) in cases {
        let status = raw_grpc(&app, Bearer::none(), LOGIN, body).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let details = tonic_types::StatusExt::get_details_bad_request(&status)
            .unwrap_or_else(|| panic!("{what}: no BadRequest in {status:?}"));
        assert_eq!(details.field_violations[0].reason, code, "{what}");
    }
    // The framing checks pass a well-formed call on to its handler.
    let status = raw_grpc(&app, Bearer::none(), LOGIN, framed(&valid)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn a_server_streaming_method_takes_exactly_one_message() {
    let app = TestApp::spawn().await;
    const EXPORT: &str = "/roster.v1.UserService/ExportUsers";
    let two = [framed(&[]), framed(&[])].concat();
    let status = raw_grpc(&app, app.as_admin(), EXPORT, two).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = raw_grpc(&app, app.as_admin(), EXPORT, framed(&[])).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
}
