//! Every method of the contract answers: its real answer or UNIMPLEMENTED,
//! never a panic or an internal error, for an empty request.

use prost::Message;
use prost_types::FileDescriptorSet;
use roster::grpc::access::{required_access, Access};
use tonic::{client::Grpc, Code};
use tonic_prost::ProstCodec;

use crate::helpers::TestApp;

/// Methods built so far; every other answers UNIMPLEMENTED.
const BUILT: &[&str] = &[
    "AuthService/Login",
    "AuthService/Logout",
    "AuthService/WhoAmI",
    "AuthService/ChangePassword",
    "AuthService/RegisterPassword",
    "AuthService/RequestPasswordReset",
    "AuthService/ResetPassword",
    "AuthService/CreateApiKey",
    "AuthService/ListApiKeys",
    "AuthService/RevokeApiKey",
    "AuthService/BeginTotpEnrollment",
    "AuthService/ConfirmTotpEnrollment",
    "AuthService/CompleteLogin",
    "OrganizationService/GetOrganization",
    "OrganizationService/UpdateOrganizationSettings",
    "OrganizationService/ListAuditEvents",
    "OrganizationService/DefineUserAttribute",
    "OrganizationService/ListUserAttributes",
    "OrganizationService/DeleteUserAttribute",
    "UserService/CreateUser",
    "UserService/GetUser",
    "UserService/LookupUser",
    "UserService/BatchGetUsers",
    "UserService/ListUsers",
    "UserService/UpdateUser",
    "UserService/DeleteUser",
    "UserService/SetUserStatus",
    "UserService/AddUserToGroups",
    "UserService/RemoveUserFromGroups",
    "UserService/ListUserGroups",
    "UserService/GetUserAccess",
    "UserService/GetOnboardingStats",
    "UserService/SendActivationEmail",
    "UserService/CloneUser",
    "UserService/MirrorUser",
    "UserService/ExportUsers",
    "UserService/ListUserSessions",
    "UserService/RevokeUserSessions",
    "UserService/SendPasswordReset",
    "UserService/ResetUserCredentials",
    "UserService/SetPasswordExpiry",
    "UserService/SetUserSessionLimit",
    "UserService/ResetUserSecondFactor",
    "GroupService/CreateGroup",
    "GroupService/GetGroup",
    "GroupService/ListGroups",
    "GroupService/UpdateGroup",
    "GroupService/DeleteGroup",
    "GroupService/ListGroupMembers",
    "GroupService/CreateUnit",
    "GroupService/GetUnit",
    "GroupService/ListUnits",
    "GroupService/UpdateUnit",
    "GroupService/DeleteUnit",
    "GroupService/CreateProfile",
    "GroupService/GetProfile",
    "GroupService/ListProfiles",
    "GroupService/UpdateProfile",
    "GroupService/DeleteProfile",
    "ImportService/GetImportTemplate",
    "ImportService/ValidateImport",
    "ImportService/ImportUsers",
    "ImportService/GetImportJob",
    "ImportService/ListImportJobs",
    "ImportService/ListImportRowResults",
    "ImportService/CancelImportJob",
    "ChangeService/WatchChanges",
];

#[tokio::test]
async fn every_method_answers_for_real_or_unimplemented_never_a_panic() {
    let app = TestApp::spawn().await;
    let descriptors = FileDescriptorSet::decode(roster::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut checked = 0;
    for file in descriptors
        .file
        .iter()
        .filter(|f| f.package() == "roster.v1")
    {
        for service in &file.service {
            for method in &service.method {
                let name = format!("{}/{}", service.name(), method.name());
                let code = call_with_empty_request(
                    &app,
                    format!("/roster.v1.{name}"),
                    method.client_streaming(),
                    method.server_streaming(),
                )
                .await;
                assert!(
                    !matches!(
                        code,
                        Code::Internal | Code::Unknown | Code::Cancelled | Code::Unavailable
                    ),
                    "{name} answered {code:?}"
                );
                let path = format!("/roster.v1.{name}");
                if required_access(&path) == Some(Access::SignedIn) {
                    // An API key never reaches these handlers.
                    assert_eq!(code, Code::PermissionDenied, "{name}");
                } else {
                    let is_built = BUILT.contains(&name.as_str());
                    assert_eq!(
                        code == Code::Unimplemented,
                        !is_built,
                        "{name} answered {code:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 67, "methods in the contract");
}

async fn call_with_empty_request(
    app: &TestApp,
    path: String,
    client_streaming: bool,
    server_streaming: bool,
) -> Code {
    let mut grpc = Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_maybe_shared(path).unwrap();
    let codec = ProstCodec::<(), ()>::default();
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", app.admin_key).parse().unwrap();
    let authorize = |metadata: &mut tonic::metadata::MetadataMap| {
        metadata.insert("authorization", bearer.clone());
    };
    let result = if client_streaming {
        let mut request = tonic::Request::new(tokio_stream::iter(vec![()]));
        authorize(request.metadata_mut());
        match grpc.streaming(request, path, codec).await {
            Ok(response) => response.into_inner().message().await.map(drop),
            Err(status) => Err(status),
        }
    } else if server_streaming {
        let mut request = tonic::Request::new(());
        authorize(request.metadata_mut());
        match grpc.server_streaming(request, path, codec).await {
            // A stream still open and quiet (WatchChanges waiting for a change) answered OK.
            Ok(response) => {
                let mut stream = response.into_inner();
                match tokio::time::timeout(std::time::Duration::from_secs(2), stream.message())
                    .await
                {
                    Ok(answer) => answer.map(drop),
                    Err(_quiet) => Ok(()),
                }
            }
            Err(status) => Err(status),
        }
    } else {
        let mut request = tonic::Request::new(());
        authorize(request.metadata_mut());
        grpc.unary(request, path, codec).await.map(drop)
    };
    result.err().map_or(Code::Ok, |status| status.code())
}

#[tokio::test]
async fn a_path_outside_the_access_table_is_refused() {
    let app = TestApp::spawn().await;
    let mut grpc = Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.admin_key).parse().unwrap(),
    );
    let status = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static("/roster.v1.UserService/DropEverything"),
            ProstCodec::<(), ()>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn reflection_request(
    app: &TestApp,
    request: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> Result<tonic_reflection::pb::v1::server_reflection_response::MessageResponse, tonic::Status> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    Ok(responses
        .message()
        .await?
        .unwrap()
        .message_response
        .unwrap())
}

#[tokio::test]
async fn reflection_lists_every_service_and_resolves_error_details_without_a_token() {
    use tonic_reflection::pb::v1::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = TestApp::spawn().await;
    let MessageResponse::ListServicesResponse(listed) =
        reflection_request(&app, MessageRequest::ListServices(String::new()))
            .await
            .unwrap()
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "grpc.health.v1.Health",
        "roster.v1.AuthService",
        "roster.v1.GroupService",
        "roster.v1.ImportService",
        "roster.v1.OrganizationService",
        "roster.v1.UserService",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let details = reflection_request(
        &app,
        MessageRequest::FileContainingSymbol("google.rpc.BadRequest".into()),
    )
    .await
    .unwrap();
    assert!(
        matches!(details, MessageResponse::FileDescriptorResponse(_)),
        "{details:?}"
    );
}

#[tokio::test]
async fn reflection_can_be_switched_off() {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let app = TestApp::spawn_with_reflection(false).await;
    let status = reflection_request(&app, MessageRequest::ListServices(String::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn health_is_open_and_serving() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel.clone());
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, 1, "SERVING");
    let users = health
        .check(HealthCheckRequest {
            service: "roster.v1.UserService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.status, 1, "SERVING");
}
