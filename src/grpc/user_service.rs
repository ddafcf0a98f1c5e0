use crate::proto::user_service_server::UserService;

/// Users, statuses, groups and access arrive with the directory; until then every method answers
/// UNIMPLEMENTED through the generated default stubs.
#[derive(Debug, Default)]
pub struct UserHandler;

#[tonic::async_trait]
impl UserService for UserHandler {}
