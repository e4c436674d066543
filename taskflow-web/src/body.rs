//! The limits on reading a request's body, enforced while it is read: a
//! deadline (a client trickling its body one byte a second fails the read,
//! 400, once it passes, and the connection's slot is freed instead of being
//! held for as long as it likes) and a size (a body over `max_bytes` fails
//! with [`TooLarge`], 413, naming the limit and how to raise it). Every
//! extractor reads through this one wrapper; `error.rs` finds these errors
//! in a rejection's causes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Buf, Bytes, Frame, SizeHint};

/// What a request body may take: time and bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) deadline: Duration,
    pub(crate) max_bytes: usize,
}

/// Wraps the request's body so reading it fails after the deadline or
/// beyond the size, and leaves the limits in the request's extensions (the
/// form page tells its script the size).
pub(crate) async fn limit(State(limits): State<BodyLimits>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(limits);
    let (parts, body) = request.into_parts();
    let body = Body::new(LimitedBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(limits.deadline)),
        limits,
        read: 0,
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body is never read: the connection cannot carry
        // another request, and a client must not reuse it (RFC 9112, 9.6).
        response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

struct LimitedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limits: BodyLimits,
    /// Bytes read so far.
    read: usize,
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}; send it faster")]
pub(crate) struct TooSlow(Duration);

/// The body is larger than the server accepts.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body is over this server's limit of {}; send a smaller body, or start the server with a larger `--max-body-bytes` (`TASKFLOW_MAX_BODY_BYTES`)",
    size(*.limit)
)]
pub(crate) struct TooLarge {
    limit: usize,
}

/// `1 MiB (1048576 bytes)`, `64 KiB (65536 bytes)`, `1000 bytes`.
pub(crate) fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB ({bytes} bytes)", bytes / MIB)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB ({bytes} bytes)", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

impl hyper::body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Counted as it arrives, not refused by its `Content-Length` before
        // a byte is read: a client still sending when the server closes the
        // connection may lose the answer (a reset), so it is read up to the
        // limit, as `http_body_util::Limited` does.
        let limit = self.limits.max_bytes;
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                let read = self.read.saturating_add(data.map_or(0, Buf::remaining));
                if read > limit {
                    return Poll::Ready(Some(Err(Box::new(TooLarge { limit }))));
                }
                self.read = read;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow(self.limits.deadline))))),
            Poll::Pending => Poll::Pending,
        }
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
    use axum::http::StatusCode;
    use axum::routing::post;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;
    use crate::error::ApiJson;

    async fn post_json(max_bytes: usize, body: Body) -> (StatusCode, Value) {
        let (status, _, value) = send(max_bytes, body).await;
        (status, value)
    }

    async fn send(max_bytes: usize, body: Body) -> (StatusCode, axum::http::HeaderMap, Value) {
        let limits = BodyLimits { deadline: Duration::from_secs(5), max_bytes };
        let app = Router::new()
            .route("/", post(|ApiJson(value): ApiJson<Value>| async move { ApiJson(value) }))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn_with_state(limits, limit));
        let request = Request::post("/").header("content-type", "application/json").body(body).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    /// A body of unknown length, sent in chunks.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_naming_the_limit_and_the_flag() {
        let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(70_000));
        // With a length (hyper's bodies carry `Content-Length`), and streamed without one.
        let chunks = big.as_bytes().chunks(1000).map(Bytes::copy_from_slice).collect();
        for body in [Body::from(big.clone()), Body::new(Chunks(chunks))] {
            let (status, headers, error) = send(64 * 1024, body).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
            // The unread rest of the body spoils the connection: closed, so
            // no client sends its next request on it.
            assert_eq!(headers.get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
            assert_eq!(error["error"]["code"], "payload_too_large");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains("64 KiB (65536 bytes)") && message.contains("--max-body-bytes"), "{message}");
        }
        let (status, echoed) = post_json(64 * 1024, Body::from(r#"{"a": 1}"#)).await;
        assert_eq!((status, echoed), (StatusCode::OK, serde_json::json!({"a": 1})));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(1024 * 1024), "1 MiB (1048576 bytes)");
        assert_eq!(size(65536), "64 KiB (65536 bytes)");
        assert_eq!(size(1000), "1000 bytes");
    }
}
