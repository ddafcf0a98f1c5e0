//! The tower plumbing Roster's layers share: each says what it does around
//! the rest of the stack ([`Around`]), and [`middleware`] makes it a layer.

use std::task::{Context, Poll};

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
