//! A mock LLM provider on 127.0.0.1: one server that answers in the shapes of OpenAI, Anthropic,
//! Gemini and Azure OpenAI, records every request it received, can be scripted (a status, a
//! body, a delay, per call, per path or per key) and streams server-sent events.
//!
//! Which API a request speaks is told by its path and headers (see [`Shape::of`]), wherever
//! under the base URL it comes: a test can point several credentials at one mock with base URLs
//! of their own (`{url}/busy/v1`, `{url}/gemini`) and script each prefix with
//! [`MockProvider::on_path`].
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
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// OpenAI and the OpenAI-compatible: `/chat/completions`, `/models`, `Authorization: Bearer`.
    OpenAi,
    /// Anthropic: `/v1/messages`, `/v1/models`, `x-api-key` and `anthropic-version`.
    Anthropic,
    /// Google Gemini: `models/M:generateContent`, `:streamGenerateContent`, `/v1beta/models`,
    /// `x-goog-api-key` or `?key=`.
    Gemini,
    /// Azure OpenAI: `/openai/deployments/D/chat/completions?api-version=V`,
    /// `/openai/models?api-version=V`, `api-key`.
    Azure,
}

impl Shape {
    /// The API a request to `path` with `query` and `headers` speaks: Azure by its
    /// `/openai/deployments/` and `/openai/models` paths or its `api-key` header; Gemini by
    /// `:generateContent`, `/v1beta/`, `x-goog-api-key` or a `key` parameter; Anthropic by
    /// `/messages`, `anthropic-version` or `x-api-key`; anything else is OpenAI's.
    pub fn of(path: &str, query: Option<&str>, headers: &HeaderMap) -> Self {
        let key_param = query.is_some_and(|q| q.split('&').any(|p| p.starts_with("key=")));
        if path.contains("/openai/deployments/")
            || path.ends_with("/openai/models")
            || headers.contains_key("api-key")
        {
            Shape::Azure
        } else if path.contains(":generateContent")
            || path.contains(":streamGenerateContent")
            || path.contains("/v1beta/")
            || path.ends_with("/v1beta")
            || headers.contains_key("x-goog-api-key")
            || key_param
        {
            Shape::Gemini
        } else if path.ends_with("/messages")
            || headers.contains_key("anthropic-version")
            || headers.contains_key("x-api-key")
        {
            Shape::Anthropic
        } else {
            Shape::OpenAi
        }
    }
}

/// A request the mock received, whole (a request whose body was cut short is not one).
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: Method,
    /// The path, as sent (escapes stay escapes).
    pub path: String,
    /// The query, as sent, without the `?`.
    pub query: Option<String>,
    /// Every header.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Received {
    /// A header's value, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The names of the headers, sorted.
    pub fn header_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The path and the query, as sent: `/v1/files/a%2Cb?purpose=x`.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The API it speaks.
    pub fn shape(&self) -> Shape {
        Shape::of(&self.path, self.query.as_deref(), &self.headers)
    }

    /// The key it carried, where its API takes one: `Authorization: Bearer` (OpenAI; Azure's
    /// Entra tokens), `x-api-key` (Anthropic), `x-goog-api-key` or `?key=` (Gemini), `api-key`
    /// (Azure).
    pub fn key(&self) -> Option<&str> {
        let bearer = || {
            self.header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
        };
        match self.shape() {
            Shape::OpenAi => bearer(),
            Shape::Anthropic => self.header("x-api-key"),
            Shape::Gemini => self.header("x-goog-api-key").or_else(|| {
                self.query
                    .as_deref()?
                    .split('&')
                    .find_map(|p| p.strip_prefix("key="))
            }),
            Shape::Azure => self.header("api-key").or_else(bearer),
        }
    }

    /// Whether it asked for a streamed answer (`"stream": true`, Gemini's
    /// `:streamGenerateContent`).
    pub fn wants_stream(&self) -> bool {
        self.path.contains(":streamGenerateContent")
            || (mentions_stream(&self.body) && self.json()["stream"] == true)
    }
}

/// Whether `body` mentions `"stream"` at all (most do not: no need to parse them).
fn mentions_stream(body: &[u8]) -> bool {
    body.windows(8).any(|w| w == b"\"stream\"")
}

/// A scripted answer: a status, headers, a body (whole or in chunks), and when to send them.
///
/// Without a body of its own, a 2xx answer is the provider's usual one for the request (in its
/// shape, streamed if asked), and any other status an error in the provider's shape.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Payload>,
    delay: Duration,
    pause: Option<Duration>,
    hold_after: Option<usize>,
    forever: bool,
}

#[derive(Debug, Clone)]
enum Payload {
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

/// How to start a [`MockProvider`].
#[derive(Debug, Clone, Default)]
pub struct MockBuilder {
    keys: Vec<String>,
    unrecorded: bool,
    stream_pause: Duration,
    addr: Option<SocketAddr>,
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
            let (ct, p) = usual(r);
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

/// The provider's usual answer to `r`: its content type and body.
fn usual(r: &Received) -> (&'static str, Payload) {
    const JSON: &str = "application/json";
    const SSE: &str = "text/event-stream";
    let path = r.path.as_str();
    let shape = r.shape();
    let req = r.json();
    let stream = r.wants_stream();
    let whole = |v: Value| (JSON, Payload::Whole(Bytes::from(v.to_string())));
    let events = |events: Vec<String>| {
        (
            SSE,
            Payload::Chunks(events.into_iter().map(Bytes::from).collect()),
        )
    };
    match shape {
        Shape::OpenAi | Shape::Azure if path.ends_with("/chat/completions") => {
            let model = model_of(&req, path, "gpt-4o-mini");
            if stream {
                events(openai_events(&model))
            } else {
                whole(openai_completion(&model))
            }
        }
        Shape::OpenAi | Shape::Azure if path.ends_with("/models") => whole(json!({
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "mock"}],
        })),
        Shape::Anthropic if path.ends_with("/messages") => {
            let model = model_of(&req, path, "claude-x");
            if stream {
                events(anthropic_events(&model))
            } else {
                let mut full = anthropic_message(&model);
                full["content"] = json!([{"type": "text", "text": "Hello"}]);
                full["stop_reason"] = json!("end_turn");
                whole(full)
            }
        }
        Shape::Anthropic if path.ends_with("/models") => whole(json!({
            "data": [{"type": "model", "id": "claude-x", "display_name": "Claude X",
                      "created_at": "2025-01-01T00:00:00Z"}],
            "has_more": false, "first_id": "claude-x", "last_id": "claude-x",
        })),
        Shape::Gemini if path.contains(":streamGenerateContent") => {
            let parts = gemini_parts();
            let sse = r
                .query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
            if sse {
                events(parts.iter().map(|p| format!("data: {p}\r\n\r\n")).collect())
            } else {
                whole(Value::Array(parts))
            }
        }
        Shape::Gemini if path.contains(":generateContent") => whole(json!({
            "candidates": [{"content": {"parts": [{"text": "Hello"}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
            "modelVersion": model_of(&req, path, "gemini-x"),
        })),
        Shape::Gemini if path.ends_with("/models") => whole(json!({
            "models": [{"name": "models/gemini-x", "displayName": "Gemini X",
                        "supportedGenerationMethods": ["generateContent"]}],
        })),
        _ => whole(json!({})),
    }
}

/// The model asked for: in the body, or (Gemini, Azure) in the path.
fn model_of(req: &Value, path: &str, default: &str) -> String {
    if let Some(m) = req["model"].as_str() {
        return m.to_owned();
    }
    let from_path = path
        .split_once("/models/")
        .or_else(|| path.split_once("/deployments/"))
        .map(|(_, rest)| rest.split([':', '/']).next().unwrap_or_default());
    from_path
        .filter(|m| !m.is_empty())
        .unwrap_or(default)
        .to_owned()
}

fn openai_completion(model: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    })
}

/// "Hel", "lo", the end, `[DONE]`: chunks in the shape the official SDKs parse.
fn openai_events(model: &str) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                   "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    vec![
        chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("stop")),
        "data: [DONE]\n\n".to_owned(),
    ]
}

fn anthropic_message(model: &str) -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
           "content": [], "stop_reason": null, "stop_sequence": null,
           "usage": {"input_tokens": 1, "output_tokens": 1}})
}

/// The Messages API's event types, "Hel" and "lo" as two text deltas.
fn anthropic_events(model: &str) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let delta = |text: &str| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        )
    };
    vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": anthropic_message(model)}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        delta("Hel"),
        delta("lo"),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 2}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}

fn gemini_parts() -> Vec<Value> {
    let part = |text: &str, finish: Option<&str>| {
        let mut candidate =
            json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate]})
    };
    vec![part("Hel", None), part("lo", Some("STOP"))]
}

/// An error in `shape`'s form for `status`, saying `message`.
fn error_body(shape: Shape, status: u16, message: &str) -> Value {
    match shape {
        Shape::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", "invalid_api_key"),
                403 => (
                    "invalid_request_error",
                    "unsupported_country_region_territory",
                ),
                404 => ("invalid_request_error", "model_not_found"),
                429 => ("requests", "rate_limit_exceeded"),
                500.. => ("server_error", "server_error"),
                _ => ("invalid_request_error", "invalid_request"),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Shape::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500.. => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Shape::Gemini => {
            let kind = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                500.. => "INTERNAL",
                _ => "FAILED_PRECONDITION",
            };
            json!({"error": {"code": status, "message": message, "status": kind}})
        }
        Shape::Azure => json!({"error": {"code": status.to_string(), "message": message}}),
    }
}

fn error_bytes(shape: Shape, status: u16, message: &str) -> Vec<u8> {
    error_body(shape, status, message).to_string().into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
