//! A mock LLM provider on 127.0.0.1: one server that answers in the shapes of OpenAI, Anthropic,
//! Gemini and Azure OpenAI, records every request it received, can be scripted (a status, a
//! body, a delay, per call, per path or per key) and streams server-sent events.
//!
//! Which API a request speaks is told by its path and headers (see [`Shape::of`]), wherever
//! under the base URL it comes: a test can point several credentials at one mock with base URLs
//! of their own (`{url}/busy/v1`, `{url}/gemini`) and script each prefix with
//! [`MockProvider::on_path`].
//!
//! `shapes`: the APIs it tells apart and their usual answers and errors; `received`: what it
//! records; `reply`: what a script answers.
//!
//! ```no_run
//! # async fn f() {
//! use keyward_testkit::{MockProvider, Reply};
//! let mock = MockProvider::start().await;
//! // The next call is rate-limited, the one after it served as usual.
//! mock.push(Reply::status(429).header("retry-after", "1"));
//! // ... point a credential at `format!("{}/v1", mock.url())` and call the gateway ...
//! assert_eq!(mock.last().header("authorization"), Some("Bearer sk-..."));
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::Notify;

mod received;
mod reply;
mod shapes;

pub use received::Received;
pub use reply::Reply;
pub use shapes::{MockUsage, Shape};

use reply::Payload;
use shapes::{error_body, error_bytes, usual};

/// How to start a [`MockProvider`].
#[derive(Debug, Clone, Default)]
pub struct MockBuilder {
    keys: Vec<String>,
    unrecorded: bool,
    stream_pause: Duration,
    addr: Option<SocketAddr>,
    usage: MockUsage,
}

impl MockBuilder {
    /// Accepts `key` (and the others given): a request with another key, or none, gets 401 in
    /// its provider's shape. Without any, every key is accepted.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Keeps no record of the requests, only their count (for benchmarks: the record would
    /// grow without end).
    pub fn unrecorded(mut self) -> Self {
        self.unrecorded = true;
        self
    }

    /// Waits this long between two events of the usual streamed answers.
    pub fn stream_pause(mut self, pause: Duration) -> Self {
        self.stream_pause = pause;
        self
    }

    /// Reports these tokens in its usual answers (by default 1 in, 1 out).
    pub fn usage(mut self, usage: MockUsage) -> Self {
        self.usage = usage;
        self
    }

    /// Listens on `addr` instead of a free port of 127.0.0.1 (a mock run as a program of its
    /// own, for benchmarks of other processes).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Starts the mock on a free port of 127.0.0.1 (or the address given to
    /// [`MockBuilder::bind`]), on the current runtime.
    ///
    /// # Panics
    ///
    /// When the address cannot be had.
    pub async fn start(self) -> MockProvider {
        // The clients a test builds next (reqwest without a default TLS provider) need one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let inner = Arc::new(Inner {
            options: self,
            received: Mutex::default(),
            hits: AtomicUsize::new(0),
            plan: Mutex::default(),
            paths: Mutex::default(),
            keys: Mutex::default(),
            release: Notify::new(),
            streams_dropped: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(inner.clone());
        let addr = inner
            .options
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("the mock provider cannot bind {addr}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the mock provider has no address: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockProvider { addr, inner, task }
    }
}

/// A mock provider on 127.0.0.1, stopped when dropped. See the [module](self).
#[derive(Debug)]
pub struct MockProvider {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    options: MockBuilder,
    received: Mutex<Vec<Received>>,
    hits: AtomicUsize,
    plan: Mutex<VecDeque<Reply>>,
    /// Shared, not copied per request: a bench's mock answers from here at full speed.
    paths: Mutex<Vec<(String, Arc<Reply>)>>,
    keys: Mutex<Vec<(String, Arc<Reply>)>>,
    release: Notify,
    streams_dropped: AtomicUsize,
}

/// A poisoned lock only means another test thread panicked: the data is still the record.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `path` is `prefix` or below it (`/busy` covers `/busy/v1/models`, not `/busyness`).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
        || prefix.is_empty()
}

impl MockProvider {
    /// A mock that accepts any key and records everything.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A mock with options ([`MockBuilder`]).
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to which a base URL's path is added (`{url}/v1` for OpenAI,
    /// `{url}` for Anthropic and Gemini, the endpoint for Azure).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request (to any path) gets `reply`; pushed replies are used in order, then the
    /// usual answers come again. Answers by path and by key ([`MockProvider::on_path`],
    /// [`MockProvider::on_key`]) come first.
    pub fn push(&self, reply: Reply) {
        lock(&self.inner.plan).push_back(reply);
    }

    /// The next requests get these replies, in order (as [`MockProvider::push`] each).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.inner.plan).extend(replies);
    }

    /// Every request to `path` or below it gets `reply` (the longest such path's, if several).
    pub fn on_path(&self, path: &str, reply: Reply) {
        lock(&self.inner.paths).push((path.to_owned(), Arc::new(reply)));
    }

    /// Every request carrying `key` (where its API takes it) gets `reply`.
    pub fn on_key(&self, key: &str, reply: Reply) {
        lock(&self.inner.keys).push((key.to_owned(), Arc::new(reply)));
    }

    /// Lets a stream held by [`Reply::hold_after`] go on (or the next one to reach its hold).
    pub fn release(&self) {
        self.inner.release.notify_one();
    }

    /// Every request received whole, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.received).clone()
    }

    /// Those to `path` or below it.
    pub fn received_on(&self, path: &str) -> Vec<Received> {
        lock(&self.inner.received)
            .iter()
            .filter(|r| under(&r.path, path))
            .cloned()
            .collect()
    }

    /// The last request received.
    ///
    /// # Panics
    ///
    /// When there was none.
    pub fn last(&self) -> Received {
        lock(&self.inner.received)
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("the mock provider received nothing"))
    }

    /// How many requests it received whole (recorded or not).
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// How many to `path` or below it.
    pub fn hits_on(&self, path: &str) -> usize {
        lock(&self.inner.received)
            .iter()
            .filter(|r| under(&r.path, path))
            .count()
    }

    /// How many streamed answers were dropped before their end: their client went away.
    pub fn streams_dropped(&self) -> usize {
        self.inner.streams_dropped.load(Ordering::SeqCst)
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    /// The scripted answer for `r`, if any: by path, by key, or the next in the plan.
    fn scripted(&self, r: &Received) -> Option<Arc<Reply>> {
        let by_path = lock(&self.paths)
            .iter()
            .filter(|(p, _)| under(&r.path, p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, reply)| Arc::clone(reply));
        if by_path.is_some() {
            return by_path;
        }
        if let Some(key) = r.key() {
            let by_key = lock(&self.keys)
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, reply)| Arc::clone(reply));
            if by_key.is_some() {
                return by_key;
            }
        }
        None
    }

    /// What a provider says to a request it cannot serve before looking at the plan: Anthropic
    /// without `anthropic-version`, Azure without `api-version`, a key it does not know.
    fn refusal(&self, r: &Received) -> Option<Reply> {
        let shape = r.shape();
        if shape == Shape::Anthropic && r.header("anthropic-version").is_none() {
            return Some(Reply::status(400).json(error_body(
                shape,
                400,
                "anthropic-version: header is required",
            )));
        }
        if shape == Shape::Azure
            && !r
                .query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("api-version=")))
        {
            return Some(Reply::status(404).json(error_body(shape, 404, "Resource not found")));
        }
        let keys = &self.options.keys;
        if !keys.is_empty() && !r.key().is_some_and(|k| keys.iter().any(|known| known == k)) {
            return Some(Reply::status(401));
        }
        None
    }
}

/// The handler of every request: read it whole, record it, answer as scripted or as usual.
async fn answer(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return respond_plain(StatusCode::BAD_REQUEST, "the request body was cut short");
    };
    let received = Received {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    inner.hits.fetch_add(1, Ordering::SeqCst);
    if !inner.options.unrecorded {
        lock(&inner.received).push(received.clone());
    }
    let reply = inner.scripted(&received).unwrap_or_else(|| {
        Arc::new(
            inner
                .refusal(&received)
                .or_else(|| lock(&inner.plan).pop_front())
                .unwrap_or_else(|| Reply::ok().pause(inner.options.stream_pause)),
        )
    });
    send(&reply, &received, &inner).await
}

fn respond_plain(status: StatusCode, text: &'static str) -> Response {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp
}

async fn send(reply: &Reply, r: &Received, inner: &Arc<Inner>) -> Response {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = reply.status;
    let (content_type, payload) = match &reply.body {
        Some(p) => (None, p.clone()),
        None if status.is_success() => {
            let (ct, p) = usual(r, &inner.options.usage);
            (Some(ct), p)
        }
        None if status.is_redirection() || status.is_informational() => {
            (None, Payload::Whole(Bytes::new()))
        }
        None => (
            Some("application/json"),
            Payload::Whole(Bytes::from(error_bytes(
                r.shape(),
                status.as_u16(),
                status.canonical_reason().unwrap_or("error"),
            ))),
        ),
    };
    let body = match payload {
        Payload::Whole(b) => Body::from(b),
        Payload::Chunks(chunks) => Body::from_stream(stream(Streaming {
            chunks,
            next: 0,
            sent: 0,
            pause: reply.pause.unwrap_or(inner.options.stream_pause),
            hold_after: reply.hold_after,
            held: false,
            forever: reply.forever,
            inner: inner.clone(),
            done: false,
        })),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (name, value) in &reply.headers {
        if name == header::CONTENT_TYPE {
            resp.headers_mut().insert(name, value.clone());
        } else {
            resp.headers_mut().append(name, value.clone());
        }
    }
    resp
}

/// A streamed answer on its way; counted in `streams_dropped` if dropped before its end.
struct Streaming {
    chunks: Vec<Bytes>,
    next: usize,
    sent: usize,
    pause: Duration,
    hold_after: Option<usize>,
    held: bool,
    forever: bool,
    inner: Arc<Inner>,
    done: bool,
}

impl Streaming {
    /// Marks it sent to the end: its drop is not a client gone away.
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if !self.done {
            self.inner.streams_dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn stream(
    state: Streaming,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(state, |mut s| async move {
        if !s.held && s.hold_after == Some(s.sent) {
            s.held = true;
            s.inner.release.notified().await;
        }
        if s.next == s.chunks.len() {
            if s.forever && !s.chunks.is_empty() {
                s.next = 0;
            } else {
                s.finish();
                return None;
            }
        }
        if s.sent > 0 && !s.pause.is_zero() {
            tokio::time::sleep(s.pause).await;
        }
        let chunk = s.chunks[s.next].clone();
        s.next += 1;
        s.sent += 1;
        Some((Ok(chunk), s))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderMap;
    use serde_json::{Value, json};

    use super::shapes::model_of;
    use super::*;

    #[test]
    fn under_a_path_means_at_it_or_below_it() {
        assert!(under("/busy/v1/models", "/busy"));
        assert!(under("/busy/v1/models", "/busy/"));
        assert!(under("/busy", "/busy"));
        assert!(!under("/busyness", "/busy"));
        assert!(!under("/v1/quote-split", "/v1/quote"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn shapes_are_told_by_path_and_headers() {
        let none = HeaderMap::new();
        let with = |name: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h
        };
        assert_eq!(
            Shape::of("/v1/chat/completions", None, &none),
            Shape::OpenAi
        );
        assert_eq!(Shape::of("/v1/messages", None, &none), Shape::Anthropic);
        assert_eq!(
            Shape::of("/v1/models", None, &with("anthropic-version")),
            Shape::Anthropic
        );
        assert_eq!(
            Shape::of("/v1beta/models/gemini-x:generateContent", None, &none),
            Shape::Gemini
        );
        assert_eq!(
            Shape::of("/v1/models", Some("key=AIza"), &none),
            Shape::Gemini
        );
        assert_eq!(
            Shape::of(
                "/openai/deployments/d/chat/completions",
                Some("api-version=2024-10-21"),
                &none
            ),
            Shape::Azure
        );
        assert_eq!(Shape::of("/v1/x", None, &with("api-key")), Shape::Azure);
    }

    #[test]
    fn the_model_comes_from_the_body_or_the_path() {
        assert_eq!(model_of(&json!({"model": "m"}), "/v1/x", "d"), "m");
        assert_eq!(
            model_of(&Value::Null, "/v1beta/models/gemini-2:generateContent", "d"),
            "gemini-2"
        );
        assert_eq!(
            model_of(
                &Value::Null,
                "/openai/deployments/dep/chat/completions",
                "d"
            ),
            "dep"
        );
        assert_eq!(model_of(&Value::Null, "/v1/chat/completions", "d"), "d");
    }
}
