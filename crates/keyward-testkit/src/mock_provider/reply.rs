//! A scripted answer.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::Value;

/// A scripted answer: a status, headers, a body (whole or in chunks), and when to send them.
///
/// Without a body of its own, a 2xx answer is the provider's usual one for the request (in its
/// shape, streamed if asked), and any other status an error in the provider's shape.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: Option<Payload>,
    pub(super) delay: Duration,
    pub(super) pause: Option<Duration>,
    pub(super) hold_after: Option<usize>,
    pub(super) forever: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Payload {
    Whole(Bytes),
    Chunks(Vec<Bytes>),
}

impl Reply {
    /// 200 with the provider's usual answer.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// `code` with the provider's usual answer (2xx) or an error in its shape (any other).
    ///
    /// # Panics
    ///
    /// When `code` is not an HTTP status (100 to 999).
    pub fn status(code: u16) -> Self {
        Reply {
            status: StatusCode::from_u16(code)
                .unwrap_or_else(|_| panic!("{code} is not an HTTP status")),
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
            pause: None,
            hold_after: None,
            forever: false,
        }
    }

    /// Server-sent events, one chunk each (`"data: {...}\n\n"`, as they go on the wire): 200,
    /// `text/event-stream`.
    pub fn sse<S: Into<String>>(events: impl IntoIterator<Item = S>) -> Self {
        Self::ok()
            .header("content-type", "text/event-stream")
            .chunks(events)
    }

    /// This JSON as the body, `application/json`.
    ///
    /// # Panics
    ///
    /// Never (a `Value` always serializes).
    pub fn json(self, body: Value) -> Self {
        #[allow(clippy::unwrap_used)]
        let bytes = serde_json::to_vec(&body).unwrap();
        self.header("content-type", "application/json").body(bytes)
    }

    /// This text as the body, as it is (no content type unless one is set).
    pub fn text(self, body: impl Into<String>) -> Self {
        self.body(body.into().into_bytes())
    }

    /// This HTML page as the body, `text/html`.
    pub fn html(self, page: impl Into<String>) -> Self {
        self.header("content-type", "text/html; charset=utf-8")
            .text(page)
    }

    /// These bytes as the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(Payload::Whole(body.into()));
        self
    }

    /// The body in these chunks, each sent as it is (see [`Reply::pause`],
    /// [`Reply::hold_after`]).
    pub fn chunks<S: Into<String>>(mut self, chunks: impl IntoIterator<Item = S>) -> Self {
        self.body = Some(Payload::Chunks(
            chunks
                .into_iter()
                .map(|c| Bytes::from(c.into().into_bytes()))
                .collect(),
        ));
        self
    }

    /// A header (set after the content type, so this one wins).
    ///
    /// # Panics
    ///
    /// When `name` or `value` cannot be a header.
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        let value = value.as_ref();
        if name.eq_ignore_ascii_case("content-type") {
            self.headers.retain(|(n, _)| n != header::CONTENT_TYPE);
        }
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|e| panic!("header name {name:?}: {e}")),
            HeaderValue::from_str(value).unwrap_or_else(|e| panic!("header {name}: {e}")),
        ));
        self
    }

    /// Waits this long before answering (before the status and headers).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Waits this long between two chunks of a streamed answer.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = Some(pause);
        self
    }

    /// After `n` chunks, waits for [`MockProvider::release`] before the rest (or the end): a
    /// stream that stalls until the test says so, or for good if it never does.
    pub fn hold_after(mut self, n: usize) -> Self {
        self.hold_after = Some(n);
        self
    }

    /// Sends the chunks again and again, for as long as the client reads.
    pub fn forever(mut self) -> Self {
        self.forever = true;
        self
    }
}
