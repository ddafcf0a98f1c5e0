//! The tower plumbing Roster's layers share: each says what it does around
//! the rest of the stack ([`Around`]), and [`middleware`] makes it a layer.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

/// What a layer does with a call: look at or change the request, call
/// `next` (or answer itself), look at or change the response.
pub trait Around: Clone + Send + Sync + 'static {
    fn around<S>(
        &self,
        request: Request<Body>,
        next: S,
    ) -> BoxFuture<'static, Result<Response<Body>, S::Error>>
    where
        S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
        S::Future: Send + 'static;
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
pub fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
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

    /// A call dropped before its status: past its deadline tonic ended it
    /// (DEADLINE_EXCEEDED), else the client went away (CANCELLED).
    pub fn dropped_code(&self) -> i32 {
        match self.deadline {
            Some(deadline) if self.started.elapsed() >= deadline => {
                tonic::Code::DeadlineExceeded as i32
            }
            _ => tonic::Code::Cancelled as i32,
        }
    }
}

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
}
