//! Gives every call a request id (from `x-request-id` or generated, echoed
//! back) and logs one line per RPC with method, code and latency once its
//! response has ended. Never logs metadata: the authorization header stays out.
//! When traces are exported, the call's span is its server span (see
//! `telemetry::traces`).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use super::middleware::{grpc_status, Around, CallClock};
use crate::{domain::request::RequestId, telemetry::traces};
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower::Service;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Clone, Default)]
pub struct RequestLogLayer;

impl Around for RequestLogLayer {
    fn around<S>(
        &self,
        mut request: Request<Body>,
        mut next: S,
    ) -> BoxFuture<'static, Result<Response<Body>, S::Error>>
    where
        S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
    {
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
            clock: CallClock::start(request.headers()),
            code: None,
        };
        Box::pin(
            async move {
                let response = match next.call(request).await {
                    Ok(response) => response,
                    Err(error) => {
                        line.code.replace(tonic::Code::Unknown as i32); // read when `line` drops
                        return Err(error);
                    }
                };
                let (mut parts, body) = response.into_parts();
                if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
                    parts.headers.insert(REQUEST_ID_HEADER, value);
                }
                // Errors answered before any message carry the status in the headers.
                line.code = grpc_status(&parts.headers);
                let logged = LoggedBody {
                    inner: body,
                    line: Some(line),
                };
                Ok(Response::from_parts(parts, Body::new(logged)))
            }
            .instrument(span),
        )
    }
}

struct RpcLine {
    span: tracing::Span,
    clock: CallClock,
    code: Option<i32>,
}

impl Drop for RpcLine {
    fn drop(&mut self) {
        let code = self.code.unwrap_or_else(|| self.clock.dropped_code());
        let code = tonic::Code::from(code);
        let latency_ms = self.clock.started.elapsed().as_secs_f64() * 1000.0;
        traces::end_server_span(&self.span, code);
        let _entered = self.span.enter();
        tracing::info!(code = ?code, latency_ms = format!("{latency_ms:.2}"), "rpc finished");
    }
}

/// The response body, watched for the trailers that carry the final status;
/// the line is logged when the body is finished or dropped.
struct LoggedBody {
    inner: Body,
    line: Option<RpcLine>,
}

impl HttpBody for LoggedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(line)) = (frame.trailers_ref(), self.line.as_mut()) {
                    line.code = grpc_status(trailers).or(line.code);
                }
            }
            Poll::Ready(None) => self.line = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
