//! The tower plumbing Roster's layers share: each says what it does around
//! the rest of the stack ([`Around`]), and [`middleware`] makes it a layer.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower::{Layer, Service};

/// The rest of the stack below a layer.
pub trait Next:
    Service<Request<Body>, Response = Response<Body>, Future: Send + 'static> + Send + 'static
{
}

impl<S> Next for S where
    S: Service<Request<Body>, Response = Response<Body>, Future: Send + 'static> + Send + 'static
{
}

/// A layer's answer to a call.
pub type Answer<E> = BoxFuture<'static, Result<Response<Body>, E>>;

/// What a layer does with a call: look at or change the request, call
/// `next` (or answer itself), look at or change the response.
pub trait Around: Clone + Send + Sync + 'static {
    fn around<S: Next>(&self, request: Request<Body>, next: S) -> Answer<S::Error>;
}

/// `around` as a tower layer.
pub fn middleware<A: Around>(around: A) -> AroundLayer<A> {
    AroundLayer(around)
}

#[derive(Clone)]
pub struct AroundLayer<A>(A);

impl<S, A: Around> Layer<S> for AroundLayer<A> {
    type Service = AroundService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            inner,
            around: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AroundService<S, A> {
    inner: S,
    around: A,
}

impl<S, A> Service<Request<Body>> for AroundService<S, A>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    A: Around,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let next = std::mem::replace(&mut self.inner, clone);
        self.around.around(request, next)
    }
}

/// The `grpc-status` of trailers, or of headers for an error answered at once.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// The code a call ends with, followed from before it is made: an error
/// answered at once carries it in the headers, a finished response in its
/// trailers; a call dropped before either (its deadline passed, the client
/// went away) gets the code of its clock.
#[derive(Debug)]
pub struct CallOutcome {
    pub clock: CallClock,
    code: Option<i32>,
}

impl CallOutcome {
    pub fn start(request_headers: &http::HeaderMap) -> Self {
        Self {
            clock: CallClock::start(request_headers),
            code: None,
        }
    }

    /// The layers below failed without an answer.
    pub fn failed(&mut self) {
        self.code = Some(tonic::Code::Unknown as i32);
    }

    /// Response headers or trailers: the status, when they carry one.
    pub fn saw(&mut self, headers: &http::HeaderMap) {
        self.code = grpc_status(headers).or(self.code);
    }

    pub fn code(&self) -> i32 {
        self.code.unwrap_or_else(|| self.clock.dropped_code())
    }
}

/// What watches the frames of a body; dropped when the body has ended or is
/// dropped, whichever comes first.
pub trait FrameWatch: Send + Unpin + 'static {
    fn frame(&mut self, frame: &Frame<Bytes>);
}

/// `inner`, its frames shown to `watch` as they pass.
pub fn watched(inner: Body, watch: impl FrameWatch) -> Body {
    Body::new(WatchedBody {
        inner,
        watch: Some(watch),
    })
}

struct WatchedBody<W> {
    inner: Body,
    watch: Option<W>,
}

impl<W: FrameWatch> HttpBody for WatchedBody<W> {
    type Data = Bytes;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(watch) = self.watch.as_mut() {
                    watch.frame(frame);
                }
            }
            Poll::Ready(None) => self.watch = None,
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

/// When a call started and the deadline its caller gave (`grpc-timeout`):
/// what decides the code of a call whose response never ended.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    pub started: Instant,
    deadline: Option<Duration>,
}

impl CallClock {
    pub fn start(headers: &http::HeaderMap) -> Self {
        Self {
            started: Instant::now(),
            deadline: grpc_timeout(headers),
        }
    }

    /// A call dropped before its status: at its deadline (DEADLINE_EXCEEDED),
    /// else the client went away (CANCELLED). The caller's clients time the
    /// deadline too, from before the request left them: their cancellation
    /// (an HTTP/2 reset) arrives up to a transit time before our own timer
    /// would fire, so a call dropped within the last tenth of its deadline
    /// (at most a second short of it) was ended by the deadline.
    pub fn dropped_code(&self) -> i32 {
        self.dropped_code_after(self.started.elapsed())
    }

    fn dropped_code_after(&self, elapsed: Duration) -> i32 {
        match self.deadline {
            Some(deadline) if elapsed + (deadline / 10).min(MAX_TRANSIT) >= deadline => {
                tonic::Code::DeadlineExceeded as i32
            }
            _ => tonic::Code::Cancelled as i32,
        }
    }
}

/// The longest a client's reset is taken to travel ahead of our own timer.
const MAX_TRANSIT: Duration = Duration::from_secs(1);

/// The call's `grpc-timeout`; a value that does not parse sets none, as in tonic.
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

/// At most 8 digits and a unit (H, M, S, m, u, n): gRPC over HTTP/2.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_nonsense_is_none() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for nonsense in ["", "m", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(nonsense), None, "{nonsense:?}");
        }
    }

    #[test]
    fn a_call_dropped_near_its_deadline_was_ended_by_it_and_one_dropped_early_was_cancelled() {
        let clock = |deadline| CallClock {
            started: Instant::now(),
            deadline,
        };
        let deadline_exceeded = tonic::Code::DeadlineExceeded as i32;
        let cancelled = tonic::Code::Cancelled as i32;
        let ms = Duration::from_millis;
        let short = clock(Some(ms(1500)));
        // The client's reset arrives a little before our timer: its deadline.
        assert_eq!(short.dropped_code_after(ms(1499)), deadline_exceeded);
        assert_eq!(short.dropped_code_after(ms(1400)), deadline_exceeded);
        assert_eq!(short.dropped_code_after(ms(2000)), deadline_exceeded);
        assert_eq!(short.dropped_code_after(ms(1000)), cancelled);
        // A long deadline: at most a second of transit.
        let long = clock(Some(Duration::from_secs(60)));
        assert_eq!(long.dropped_code_after(ms(59_500)), deadline_exceeded);
        assert_eq!(long.dropped_code_after(ms(55_000)), cancelled);
        assert_eq!(clock(None).dropped_code_after(ms(99_000)), cancelled);
    }
}
