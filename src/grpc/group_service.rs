use crate::proto::group_service_server::GroupService;

/// Groups, units and profiles arrive with the directory; until then every method answers
/// UNIMPLEMENTED through the generated default stubs.
#[derive(Debug, Default)]
pub struct GroupHandler;

#[tonic::async_trait]
impl GroupService for GroupHandler {}
