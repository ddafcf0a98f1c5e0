//! The one table from full method path to the access it requires. A method
//! missing from the table is refused (deny by default).

use crate::domain::caller::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: sign-in flows, health, reflection.
    Public,
    /// Any valid token, API key or user.
    AnyToken,
    /// A user access token (not an API key).
    SignedIn,
    Scope(Scope),
    /// ADMIN over the whole organization: an ADMIN API key or Admin on all units.
    OrganizationAdmin,
    /// Any token here; the handler lets a user act on themself and asks
    /// ADMIN, under the who-may-do-what rule, for acting on anyone else.
    OwnOrAdmin,
}

use Access::{AnyToken, OrganizationAdmin, OwnOrAdmin, Public, SignedIn};
const VIEWER: Access = Access::Scope(Scope::Viewer);
const ADMIN: Access = Access::Scope(Scope::Admin);

pub const METHOD_ACCESS: &[(&str, Access)] = &[
    ("/roster.v1.AuthService/Login", Public),
    ("/roster.v1.AuthService/Logout", SignedIn),
    ("/roster.v1.AuthService/WhoAmI", AnyToken),
    ("/roster.v1.AuthService/ChangePassword", SignedIn),
    ("/roster.v1.AuthService/RegisterPassword", Public),
    ("/roster.v1.AuthService/RequestPasswordReset", Public),
    ("/roster.v1.AuthService/ResetPassword", Public),
    ("/roster.v1.AuthService/CreateApiKey", OrganizationAdmin),
    ("/roster.v1.AuthService/ListApiKeys", OrganizationAdmin),
    ("/roster.v1.AuthService/RevokeApiKey", OrganizationAdmin),
    ("/roster.v1.AuthService/BeginTotpEnrollment", SignedIn),
    ("/roster.v1.AuthService/ConfirmTotpEnrollment", SignedIn),
    ("/roster.v1.AuthService/CompleteLogin", Public),
    ("/roster.v1.ChangeService/WatchChanges", VIEWER),
    ("/roster.v1.OrganizationService/GetOrganization", VIEWER),
    (
        "/roster.v1.OrganizationService/UpdateOrganizationSettings",
        OrganizationAdmin,
    ),
    ("/roster.v1.OrganizationService/ListAuditEvents", ADMIN),
    (
        "/roster.v1.OrganizationService/DefineUserAttribute",
        OrganizationAdmin,
    ),
    ("/roster.v1.OrganizationService/ListUserAttributes", VIEWER),
    (
        "/roster.v1.OrganizationService/DeleteUserAttribute",
        OrganizationAdmin,
    ),
    ("/roster.v1.UserService/CreateUser", ADMIN),
    ("/roster.v1.UserService/GetUser", VIEWER),
    ("/roster.v1.UserService/LookupUser", VIEWER),
    ("/roster.v1.UserService/BatchGetUsers", VIEWER),
    ("/roster.v1.UserService/ListUsers", VIEWER),
    ("/roster.v1.UserService/UpdateUser", ADMIN),
    ("/roster.v1.UserService/DeleteUser", ADMIN),
    ("/roster.v1.UserService/SetUserStatus", ADMIN),
    ("/roster.v1.UserService/CloneUser", ADMIN),
    ("/roster.v1.UserService/MirrorUser", ADMIN),
    ("/roster.v1.UserService/AddUserToGroups", ADMIN),
    ("/roster.v1.UserService/RemoveUserFromGroups", ADMIN),
    ("/roster.v1.UserService/ListUserGroups", VIEWER),
    ("/roster.v1.UserService/GetUserAccess", VIEWER),
    ("/roster.v1.UserService/SendActivationEmail", ADMIN),
    ("/roster.v1.UserService/GetOnboardingStats", VIEWER),
    ("/roster.v1.UserService/ExportUsers", ADMIN),
    ("/roster.v1.UserService/ListUserSessions", OwnOrAdmin),
    ("/roster.v1.UserService/RevokeUserSessions", OwnOrAdmin),
    ("/roster.v1.UserService/SendPasswordReset", ADMIN),
    ("/roster.v1.UserService/ResetUserCredentials", ADMIN),
    ("/roster.v1.UserService/SetPasswordExpiry", ADMIN),
    ("/roster.v1.UserService/SetUserSessionLimit", ADMIN),
    ("/roster.v1.UserService/ResetUserSecondFactor", ADMIN),
    ("/roster.v1.GroupService/CreateGroup", ADMIN),
    ("/roster.v1.GroupService/GetGroup", VIEWER),
    ("/roster.v1.GroupService/ListGroups", VIEWER),
    ("/roster.v1.GroupService/UpdateGroup", ADMIN),
    ("/roster.v1.GroupService/DeleteGroup", ADMIN),
    ("/roster.v1.GroupService/ListGroupMembers", VIEWER),
    ("/roster.v1.GroupService/CreateUnit", OrganizationAdmin),
    ("/roster.v1.GroupService/GetUnit", VIEWER),
    ("/roster.v1.GroupService/ListUnits", VIEWER),
    ("/roster.v1.GroupService/UpdateUnit", OrganizationAdmin),
    ("/roster.v1.GroupService/DeleteUnit", OrganizationAdmin),
    ("/roster.v1.GroupService/CreateProfile", OrganizationAdmin),
    ("/roster.v1.GroupService/GetProfile", VIEWER),
    ("/roster.v1.GroupService/ListProfiles", VIEWER),
    ("/roster.v1.GroupService/UpdateProfile", OrganizationAdmin),
    ("/roster.v1.GroupService/DeleteProfile", OrganizationAdmin),
    ("/roster.v1.ImportService/GetImportTemplate", VIEWER),
    ("/roster.v1.ImportService/ValidateImport", VIEWER),
    ("/roster.v1.ImportService/ImportUsers", ADMIN),
    ("/roster.v1.ImportService/GetImportJob", VIEWER),
    ("/roster.v1.ImportService/ListImportJobs", VIEWER),
    ("/roster.v1.ImportService/ListImportRowResults", VIEWER),
    ("/roster.v1.ImportService/CancelImportJob", ADMIN),
];

/// Standard services open to everyone, by service prefix.
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The access a method requires; `None` for a method not in the table.
pub fn required_access(path: &str) -> Option<Access> {
    if OPEN_SERVICES.iter().any(|prefix| path.starts_with(prefix)) {
        return Some(Public);
    }
    METHOD_ACCESS
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, access)| *access)
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    #[test]
    fn every_method_of_the_contract_is_in_the_table_exactly_once() {
        let descriptors = FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut contract: Vec<String> = descriptors
            .file
            .iter()
            .filter(|file| file.package() == "roster.v1")
            .flat_map(|file| {
                file.service.iter().flat_map(|service| {
                    service.method.iter().map(move |method| {
                        format!("/roster.v1.{}/{}", service.name(), method.name())
                    })
                })
            })
            .collect();
        contract.sort();
        let mut table: Vec<String> = METHOD_ACCESS
            .iter()
            .map(|(path, _)| (*path).to_owned())
            .collect();
        table.sort();
        assert_eq!(contract, table);
    }

    #[test]
    fn unknown_methods_are_denied_and_standard_services_open() {
        assert_eq!(
            required_access("/roster.v1.UserService/DropEverything"),
            None
        );
        assert_eq!(
            required_access("/grpc.health.v1.Health/Check"),
            Some(Public)
        );
        assert_eq!(
            required_access("/roster.v1.AuthService/CreateApiKey"),
            Some(OrganizationAdmin)
        );
    }
}
