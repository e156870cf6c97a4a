//! A response sent before its request's body was read to the end says `Connection: close`.
//!
//! A server that answers without reading the whole request body (a refused chunk, a denied
//! push, a bad digest) must close the connection after the response (RFC 9112, section 9.3):
//! the rest of the body would otherwise be read as the next request. hyper does close it, but
//! it announces that in the response head only if it noticed the unread body before writing
//! the head, which is a race. When it did not, the client keeps the connection for its next
//! request, finds it closed, and fails that request (reqwest: `IncompleteMessage`).
//!
//! [`close_if_body_unread`] removes the race: it watches the request body, and a response
//! that leaves the handler before the body ended carries `Connection: close`, which tells both
//! hyper (close after this response) and the client (do not reuse).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Middleware (`axum::middleware::from_fn`): runs the request, then marks the response
/// `Connection: close` if the request's body was not read to its end.
pub async fn close_if_body_unread(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let watched = ended.clone();
    let request = request.map(|body| Body::new(Watched { inner: body, ended: watched }));
    let mut response = next.run(request).await;
    if !ended.load(Ordering::Acquire) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A body that records when it has ended.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt as _;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/read", post(|body: Bytes| async move { body.len().to_string() }))
            .route("/ignore", post(|| async { "not read" }))
            .route(
                "/partly",
                post(|body: Body| async move {
                    let mut stream = body.into_data_stream();
                    let first = futures::StreamExt::next(&mut stream).await;
                    format!("{}", first.is_some())
                }),
            )
            .layer(axum::middleware::from_fn(close_if_body_unread))
    }

    /// A body of two frames, like a request that arrives in two reads.
    fn two_frames() -> Body {
        let frames = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("one")), Ok(Bytes::from("two"))]);
        Body::from_stream(frames)
    }

    async fn connection(path: &str, body: Body) -> Option<HeaderValue> {
        let request = Request::post(path).body(body).expect("a request");
        let response = app().oneshot(request).await.expect("a response");
        response.headers().get(header::CONNECTION).cloned()
    }

    #[tokio::test]
    async fn only_a_response_to_an_unread_body_closes_the_connection() {
        assert_eq!(connection("/read", two_frames()).await, None, "a body read to its end");
        assert_eq!(connection("/read", Body::empty()).await, None, "no body");
        assert_eq!(connection("/ignore", Body::empty()).await, None, "no body to read");
        assert_eq!(connection("/ignore", two_frames()).await.as_ref().map(HeaderValue::as_bytes), Some(&b"close"[..]));
        assert_eq!(connection("/partly", two_frames()).await.as_ref().map(HeaderValue::as_bytes), Some(&b"close"[..]));
    }
}
