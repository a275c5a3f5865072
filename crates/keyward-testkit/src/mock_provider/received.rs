//! What the mock records of a request.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, Method};
use serde_json::Value;

use super::Shape;

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
pub(super) fn mentions_stream(body: &[u8]) -> bool {
    body.windows(8).any(|w| w == b"\"stream\"")
}
