//! The APIs the mock tells apart, and their usual answers and errors.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::Received;
use super::reply::Payload;

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

/// The tokens the mock's usual answers report, in each provider's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockUsage {
    /// Every input token (cached ones included).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Of the input, those read from the prompt cache.
    pub cached: u64,
}

impl Default for MockUsage {
    fn default() -> Self {
        Self {
            input: 1,
            output: 1,
            cached: 0,
        }
    }
}

impl MockUsage {
    fn openai(&self) -> Value {
        json!({"prompt_tokens": self.input, "completion_tokens": self.output,
               "total_tokens": self.input + self.output,
               "prompt_tokens_details": {"cached_tokens": self.cached}})
    }

    fn responses(&self) -> Value {
        json!({"input_tokens": self.input, "input_tokens_details": {"cached_tokens": self.cached},
               "output_tokens": self.output, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": self.input + self.output})
    }

    /// Anthropic's: `input_tokens` leaves the cached ones out.
    fn anthropic(&self, output: u64) -> Value {
        json!({"input_tokens": self.input - self.cached, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": self.cached, "output_tokens": output})
    }

    fn gemini(&self, output: u64) -> Value {
        let mut v = json!({"promptTokenCount": self.input, "candidatesTokenCount": output,
                           "totalTokenCount": self.input + output});
        if self.cached > 0 {
            v["cachedContentTokenCount"] = json!(self.cached);
        }
        v
    }
}

/// The provider's usual answer to `r`: its content type and body.
pub(super) fn usual(r: &Received, usage: &MockUsage) -> (&'static str, Payload) {
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
                let mut chunks = openai_events(&model);
                // Asked for, the usage comes in a chunk of its own before the end.
                if req["stream_options"]["include_usage"] == true {
                    let last = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                                      "model": model, "choices": [], "usage": usage.openai()});
                    chunks.insert(chunks.len() - 1, format!("data: {last}\n\n"));
                }
                events(chunks)
            } else {
                let mut full = openai_completion(&model);
                full["usage"] = usage.openai();
                whole(full)
            }
        }
        Shape::OpenAi | Shape::Azure if path.ends_with("/embeddings") => whole(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
            "model": model_of(&req, path, "text-embedding-3-small"),
            "usage": {"prompt_tokens": usage.input, "total_tokens": usage.input},
        })),
        Shape::OpenAi | Shape::Azure if path.ends_with("/responses") => {
            let model = model_of(&req, path, "gpt-4.1");
            let response = |status: &str, usage: Value, text: &str| {
                json!({
                    "id": "resp_1", "object": "response", "created_at": 0, "status": status,
                    "model": model, "output": if text.is_empty() { json!([]) } else { json!([{
                        "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}]) },
                    "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
                    "usage": usage,
                })
            };
            if stream {
                let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
                events(vec![
                    event(
                        "response.created",
                        json!({"type": "response.created", "sequence_number": 0,
                        "response": response("in_progress", Value::Null, "")}),
                    ),
                    event(
                        "response.output_text.delta",
                        json!({"type": "response.output_text.delta",
                        "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0,
                        "delta": "Hello", "logprobs": []}),
                    ),
                    event(
                        "response.completed",
                        json!({"type": "response.completed", "sequence_number": 2,
                        "response": response("completed", usage.responses(), "Hello")}),
                    ),
                ])
            } else {
                whole(response("completed", usage.responses(), "Hello"))
            }
        }
        Shape::OpenAi | Shape::Azure if path.ends_with("/models") => whole(json!({
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "mock"}],
        })),
        Shape::Anthropic if path.ends_with("/messages") => {
            let model = model_of(&req, path, "claude-x");
            if stream {
                events(anthropic_events(&model, usage))
            } else {
                let mut full = anthropic_message(&model, usage.anthropic(usage.output));
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
            let parts = gemini_parts(&model_of(&req, path, "gemini-x"), usage);
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
            "usageMetadata": usage.gemini(usage.output),
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
pub(super) fn model_of(req: &Value, path: &str, default: &str) -> String {
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

fn anthropic_message(model: &str, usage: Value) -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
           "content": [], "stop_reason": null, "stop_sequence": null,
           "usage": usage})
}

/// The Messages API's event types, "Hel" and "lo" as two text deltas.
fn anthropic_events(model: &str, usage: &MockUsage) -> Vec<String> {
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
            json!({"type": "message_start", "message": anthropic_message(model, usage.anthropic(1))}),
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
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": usage.output}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}

/// Two chunks, each with the usage so far (Gemini counts cumulatively).
fn gemini_parts(model: &str, usage: &MockUsage) -> Vec<Value> {
    let part = |text: &str, finish: Option<&str>, output: u64| {
        let mut candidate =
            json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage.gemini(output), "modelVersion": model})
    };
    vec![
        part("Hel", None, usage.output.min(1)),
        part("lo", Some("STOP"), usage.output),
    ]
}

/// An error in `shape`'s form for `status`, saying `message`.
pub(super) fn error_body(shape: Shape, status: u16, message: &str) -> Value {
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

pub(super) fn error_bytes(shape: Shape, status: u16, message: &str) -> Vec<u8> {
    error_body(shape, status, message).to_string().into_bytes()
}
