use tonic::{Request, Response, Status};

use crate::{
    domain::{import, DomainError},
    proto::{self, import_service_server::ImportService},
};

/// ImportService. The import streams and job methods are being built; until
/// then they answer UNIMPLEMENTED through the generated default stubs.
#[derive(Debug, Default)]
pub struct ImportHandler;

#[tonic::async_trait]
impl ImportService for ImportHandler {
    async fn get_import_template(
        &self,
        request: Request<proto::GetImportTemplateRequest>,
    ) -> Result<Response<proto::GetImportTemplateResponse>, Status> {
        let delimiter = match request.get_ref().delimiter.as_str() {
            "" | "," => ',',
            ";" => ';',
            _ => {
                return Err(DomainError::invalid(
                    "delimiter",
                    "INVALID_DELIMITER",
                    "must be `,` or `;`",
                )
                .into())
            }
        };
        let (header, example_row) = import::template(delimiter);
        // UTF-8 with a BOM and CRLF line ends, so spreadsheets open it right.
        let csv = format!("\u{FEFF}{header}\r\n{example_row}\r\n").into_bytes();
        Ok(Response::new(proto::GetImportTemplateResponse {
            header,
            example_row,
            csv,
        }))
    }
}
