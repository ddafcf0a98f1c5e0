//! Counts every call for Prometheus the way grpc-ecosystem's Go
//! interceptors do: started, handled by code, messages received and sent,
//! and the time to the end of the response. Outermost, so that calls the
//! auth and boundary layers refuse count too. The code is read from the
//! trailers when the response ends (or its headers, for an error answered
//! at once); a response dropped without one was cancelled.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Instant,
};

use anyhow::{Context as _, Result};
use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Frame;
use prometheus::{Histogram, IntCounter};
use prost_reflect::DescriptorPool;
use tonic::body::Body;

use super::middleware::{watched, Answer, Around, CallOutcome, FrameWatch, Next};
use crate::metrics::RpcFamilies;

/// `codes.Code.String()` of Go's gRPC, by code number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const UNKNOWN: usize = 2;

/// A path no service serves: one fixed label set, however many paths callers make up.
const UNKNOWN_METHOD: &str = "unknown";

#[derive(Clone)]
pub struct MetricsLayer {
    methods: Arc<MethodTable>,
}

impl MetricsLayer {
    /// The methods of the services in `descriptor_sets`, each counted from zero.
    pub fn new(families: &RpcFamilies, descriptor_sets: &[&[u8]]) -> Result<Self> {
        let mut methods = HashMap::new();
        for bytes in descriptor_sets {
            let pool = DescriptorPool::decode(*bytes).context("decode a descriptor set")?;
            for service in pool.services() {
                for method in service.methods() {
                    let grpc_type =
                        match (method.is_client_streaming(), method.is_server_streaming()) {
                            (false, false) => "unary",
                            (false, true) => "server_stream",
                            (true, false) => "client_stream",
                            (true, true) => "bidi_stream",
                        };
                    let path = format!("/{}/{}", service.full_name(), method.name());
                    let labels = [grpc_type, service.full_name(), method.name()];
                    methods.insert(path, Arc::new(MethodMetrics::new(families, labels)));
                }
            }
        }
        let unknown = MethodMetrics::new(families, ["unary", UNKNOWN_METHOD, UNKNOWN_METHOD]);
        Ok(Self {
            methods: Arc::new(MethodTable {
                methods,
                unknown: Arc::new(unknown),
            }),
        })
    }
}

struct MethodTable {
    methods: HashMap<String, Arc<MethodMetrics>>,
    unknown: Arc<MethodMetrics>,
}

impl MethodTable {
    fn of(&self, path: &str) -> Arc<MethodMetrics> {
        self.methods.get(path).unwrap_or(&self.unknown).clone()
    }
}

/// One method's series, resolved once so that a call only touches atomics.
struct MethodMetrics {
    labels: [String; 3],
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    families: RpcFamilies,
    /// By code number; made on the first call ending with that code.
    by_code: [OnceLock<(IntCounter, Histogram)>; 17],
}

impl MethodMetrics {
    fn new(families: &RpcFamilies, labels: [&str; 3]) -> Self {
        Self {
            labels: labels.map(str::to_owned),
            started: families.started.with_label_values(&labels),
            received: families.received.with_label_values(&labels),
            sent: families.sent.with_label_values(&labels),
            families: families.clone(),
            by_code: Default::default(),
        }
    }

    fn handled(&self, code: i32, started: Instant) {
        let index = usize::try_from(code)
            .ok()
            .filter(|code| *code < CODE_NAMES.len())
            .unwrap_or(UNKNOWN);
        let (handled, handling) = self.by_code[index].get_or_init(|| {
            let [grpc_type, service, method] = &self.labels;
            let labels = [
                grpc_type.as_str(),
                service.as_str(),
                method.as_str(),
                CODE_NAMES[index],
            ];
            (
                self.families.handled.with_label_values(&labels),
                self.families.handling.with_label_values(&labels),
            )
        });
        handled.inc();
        handling.observe(started.elapsed().as_secs_f64());
    }
}

impl Around for MetricsLayer {
    fn around<S: Next>(&self, request: Request<Body>, mut next: S) -> Answer<S::Error> {
        let method = self.methods.of(request.uri().path());
        method.started.inc();
        // Made before the call: a call dropped on the way (its deadline
        // passed, the client went away) is counted as handled too.
        let mut end = CallEnd {
            method: method.clone(),
            outcome: CallOutcome::start(request.headers()),
        };
        let received = Messages::counted_by(method.received.clone());
        let request = request.map(|body| watched(body, received));
        Box::pin(async move {
            let response = match next.call(request).await {
                Ok(response) => response,
                Err(error) => {
                    end.outcome.failed();
                    return Err(error);
                }
            };
            let (parts, body) = response.into_parts();
            end.outcome.saw(&parts.headers);
            let sent = Messages {
                end: Some(end),
                ..Messages::counted_by(method.sent.clone())
            };
            Ok(Response::from_parts(parts, watched(body, sent)))
        })
    }
}

/// Records the call as handled when the response ends or is dropped.
struct CallEnd {
    method: Arc<MethodMetrics>,
    outcome: CallOutcome,
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        let started = self.outcome.clock.started;
        self.method.handled(self.outcome.code(), started);
    }
}

/// Counts the gRPC messages of a request or response body as they pass; a
/// response's also carries the end of its call.
struct Messages {
    framing: MessageCounter,
    counter: IntCounter,
    end: Option<CallEnd>,
}

impl Messages {
    fn counted_by(counter: IntCounter) -> Self {
        Self {
            framing: MessageCounter::default(),
            counter,
            end: None,
        }
    }
}

impl FrameWatch for Messages {
    fn frame(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            let complete = self.framing.feed(data.chunk());
            if complete > 0 {
                self.counter.inc_by(complete);
            }
        } else if let (Some(trailers), Some(end)) = (frame.trailers_ref(), &mut self.end) {
            end.outcome.saw(trailers);
        }
    }
}

/// Follows gRPC's length-prefixed framing (a flag byte and a 4-byte
/// big-endian length before each message) across chunks of any size.
#[derive(Default)]
struct MessageCounter {
    prefix: [u8; 5],
    prefix_read: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl MessageCounter {
    /// Messages completed by `chunk`.
    fn feed(&mut self, mut chunk: &[u8]) -> u64 {
        let mut complete = 0;
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let taken = chunk.len().min(self.remaining as usize);
                self.remaining -= taken as u64;
                chunk = &chunk[taken..];
                complete += u64::from(self.remaining == 0);
                continue;
            }
            let taken = chunk.len().min(self.prefix.len() - self.prefix_read);
            self.prefix[self.prefix_read..self.prefix_read + taken]
                .copy_from_slice(&chunk[..taken]);
            self.prefix_read += taken;
            chunk = &chunk[taken..];
            if self.prefix_read == self.prefix.len() {
                self.prefix_read = 0;
                let [_, length @ ..] = self.prefix;
                self.remaining = u64::from(u32::from_be_bytes(length));
                complete += u64::from(self.remaining == 0);
            }
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(length: u32) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend(length.to_be_bytes());
        framed.extend(std::iter::repeat_n(7, length as usize));
        framed
    }

    #[test]
    fn messages_are_counted_however_the_stream_is_cut() {
        let stream: Vec<u8> = [message(3), message(0), message(300), message(1)].concat();
        for chunk_size in [1, 2, 5, 6, 7, 64, stream.len()] {
            let mut counter = MessageCounter::default();
            let counted: u64 = stream.chunks(chunk_size).map(|c| counter.feed(c)).sum();
            assert_eq!(counted, 4, "chunks of {chunk_size}");
        }
        let mut counter = MessageCounter::default();
        assert_eq!(counter.feed(&message(10)[..9]), 0, "a message half read");
    }
}
