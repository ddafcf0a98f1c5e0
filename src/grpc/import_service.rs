use crate::proto::import_service_server::ImportService;

/// Bulk import arrives with the import work; until then every method answers
/// UNIMPLEMENTED through the generated default stubs.
#[derive(Debug, Default)]
pub struct ImportHandler;

#[tonic::async_trait]
impl ImportService for ImportHandler {}
