//! Gives every call a request id (from `x-request-id` or generated, echoed
//! back) and logs one line per RPC with method, code and latency once its
//! response has ended. Never logs metadata: the authorization header stays out.
//! When traces are exported, the call's span is its server span (see
//! `telemetry::traces`).

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use tonic::body::Body;
use tracing::Instrument;

use super::middleware::{watched, Answer, Around, CallOutcome, FrameWatch, Next};
use crate::{domain::request::RequestId, telemetry::traces};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Clone, Default)]
pub struct RequestLogLayer;

impl Around for RequestLogLayer {
    fn around<S: Next>(&self, mut request: Request<Body>, mut next: S) -> Answer<S::Error> {
        let request_id = RequestId::from_header(
            request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok()),
        );
        let method = request.uri().path().to_owned();
        request.extensions_mut().insert(request_id.clone());
        // `otel.*` are set only when traces are exported.
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            request_id = %request_id,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        traces::start_server_span(&span, request.headers(), &method, request_id.as_str());
        // Made before the call: a call dropped on the way (its deadline
        // passed, the client went away) is logged and its span ended too.
        let mut line = RpcLine {
            span: span.clone(),
            outcome: CallOutcome::start(request.headers()),
        };
        Box::pin(
            async move {
                let response = match next.call(request).await {
                    Ok(response) => response,
                    Err(error) => {
                        line.outcome.failed();
                        return Err(error);
                    }
                };
                let (mut parts, body) = response.into_parts();
                if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
                    parts.headers.insert(REQUEST_ID_HEADER, value);
                }
                line.outcome.saw(&parts.headers);
                Ok(Response::from_parts(parts, watched(body, line)))
            }
            .instrument(span),
        )
    }
}

/// The call's log line and server span, ended when its response ends.
struct RpcLine {
    span: tracing::Span,
    outcome: CallOutcome,
}

impl FrameWatch for RpcLine {
    fn frame(&mut self, frame: &Frame<Bytes>) {
        if let Some(trailers) = frame.trailers_ref() {
            self.outcome.saw(trailers);
        }
    }
}

impl Drop for RpcLine {
    fn drop(&mut self) {
        let code = tonic::Code::from(self.outcome.code());
        let latency_ms = self.outcome.clock.started.elapsed().as_secs_f64() * 1000.0;
        traces::end_server_span(&self.span, code);
        let _entered = self.span.enter();
        tracing::info!(code = ?code, latency_ms = format!("{latency_ms:.2}"), "rpc finished");
    }
}
