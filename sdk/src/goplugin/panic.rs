//! A tower layer that turns a panic in an RPC handler into a gRPC `Internal` status, so that
//! the peer sees an answer naming the panic instead of a reset HTTP/2 stream (`h2 protocol
//! error`), and the server keeps serving.
//!
//! Panics are caught where tonic runs handler code: while building the response future, while
//! polling it (the whole of a unary handler and the part of a streaming handler before it
//! returns its stream), and while polling the response body (a server stream's items). A panic
//! in the body after messages were sent ends the stream with `Internal` trailers.
//! Each caught panic is logged through `tracing` at error level.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Bytes, http};

/// A tonic server builder with [`CatchPanicLayer`], for every server a plugin runs.
pub(crate) fn server() -> tonic::transport::Server<
    tower::layer::util::Stack<CatchPanicLayer, tower::layer::util::Identity>,
> {
    tonic::transport::Server::builder().layer(CatchPanicLayer)
}

/// Wraps a service with [`CatchPanic`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CatchPanicLayer;

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// A service whose handler panics become `Internal` statuses; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct CatchPanic<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for CatchPanic<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let future = match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => future,
            Err(payload) => {
                let response = internal(&method, payload.as_ref()).into_http();
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        Box::pin(async move {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(response)) => Ok(response.map(|body| {
                    Body::new(CatchPanicBody {
                        inner: body,
                        method,
                        done: false,
                    })
                })),
                Ok(Err(err)) => Err(err),
                Err(payload) => Ok(internal(&method, payload.as_ref()).into_http()),
            }
        })
    }
}

/// A response body that ends with `Internal` trailers when polling it panics.
struct CatchPanicBody {
    inner: Body,
    method: String,
    /// A panic was turned into trailers; nothing more is polled.
    done: bool,
}

impl http_body::Body for CatchPanicBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| {
            Pin::new(&mut this.inner).poll_frame(cx)
        })) {
            Ok(poll) => poll,
            Err(payload) => {
                this.done = true;
                let status = internal(&this.method, payload.as_ref());
                let mut trailers = http::HeaderMap::new();
                Poll::Ready(Some(match status.add_header(&mut trailers) {
                    Ok(()) => Ok(Frame::trailers(trailers)),
                    Err(status) => Err(status),
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Logs a caught panic and makes the status the peer gets.
fn internal(method: &str, payload: &(dyn Any + Send)) -> Status {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    tracing::error!(method, panic = message, "RPC handler panicked");
    Status::internal(format!("handler for {method} panicked: {message}"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body::Body as _;
    use tower::{Layer as _, Service as _};

    use super::*;

    /// A service that panics where `how` says, else answers a body that panics after one frame.
    #[derive(Clone, Copy)]
    enum Panicky {
        Call,
        Awaited,
        Streamed,
    }

    struct PanickyBody {
        sent: bool,
    }

    impl http_body::Body for PanickyBody {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            if self.sent {
                panic!("stream item exploded");
            }
            self.sent = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
        }
    }

    impl tower::Service<http::Request<()>> for Panicky {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            match *self {
                Panicky::Call => panic!("call exploded"),
                Panicky::Awaited => Box::pin(async { panic!("{} exploded", "future") }),
                Panicky::Streamed => Box::pin(async {
                    Ok(http::Response::new(Body::new(PanickyBody { sent: false })))
                }),
            }
        }
    }

    async fn frame(body: &mut Body) -> Option<Result<Frame<Bytes>, Status>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    fn request() -> http::Request<()> {
        http::Request::builder()
            .uri("/pkg.Svc/Method")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn panics_before_the_response_become_internal_statuses() {
        for (how, text) in [
            (Panicky::Call, "call exploded"),
            (Panicky::Awaited, "future exploded"),
        ] {
            let mut service = CatchPanicLayer.layer(how);
            let response = service.call(request()).await.unwrap();
            let status = Status::from_header_map(response.headers()).expect("a status");
            assert_eq!(status.code(), tonic::Code::Internal);
            assert_eq!(
                status.message(),
                format!("handler for /pkg.Svc/Method panicked: {text}")
            );
        }
    }

    #[tokio::test]
    async fn a_panic_in_the_body_ends_it_with_internal_trailers() {
        let mut service = CatchPanicLayer.layer(Panicky::Streamed);
        let mut body = service.call(request()).await.unwrap().into_body();
        let first = frame(&mut body).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        let trailers = frame(&mut body)
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        let status = Status::from_header_map(&trailers).expect("a status");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().ends_with("stream item exploded"),
            "{status:?}"
        );
        assert!(frame(&mut body).await.is_none());
    }
}
