//! Tokens and model read from the provider's answer as it passes to the client, without holding
//! back a byte: a JSON answer's `usage` (OpenAI's chat completions, completions, embeddings
//! and Responses API, Azure's, Anthropic's) or `usageMetadata` (Gemini), and a streamed
//! answer's events (OpenAI's final chunk, the Responses API's `response.completed`,
//! Anthropic's `message_start` and `message_delta`, Gemini's chunks).
//!
//! A JSON answer is not parsed whole: its first [`HEAD`] bytes and last [`TAIL`] bytes are
//! kept (all of it when it is small), and the `model` and `usage` keys are found in them, so
//! that a large answer (embeddings of a long list) costs bounded memory. A raw `"` is always
//! the edge of a JSON string (a quote inside one is escaped), so a `"usage"` followed by `:`
//! is a key, whatever the answer's text holds. A streamed answer is read line by line, each
//! `data:` line on its own. Bedrock's streams are AWS event-stream frames, each payload read
//! on its own (ConverseStream's `metadata` event; InvokeModelWithResponseStream's chunks, whose
//! `bytes` are the model's own events, base64-encoded).

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use keyward_core::prices::Tokens;
use memchr::memmem::Finder;
use serde_json::Value;

/// Searchers built once: building one costs more than most of the searches it makes.
macro_rules! finders {
    ($($name:ident = $needle:expr;)*) => {
        $(static $name: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new($needle));)*
    };
}

finders! {
    USAGE_KEY = b"\"usage\"";
    USAGE_METADATA_KEY = b"\"usageMetadata\"";
    INVOCATION_METRICS_KEY = b"\"amazon-bedrock-invocationMetrics\"";
    MODEL_KEY = b"\"model\"";
    MODEL_VERSION_KEY = b"\"modelVersion\"";
    USAGE_PREFIX = b"\"usage";
    MODEL_PREFIX = b"\"model";
    DATA = b"data:";
    INVOKE_CHUNK_BYTES = b"\"bytes\"";
    BLANK_LINE = b"\n\n";
    BLANK_CRLF = b"\r\n\r\n";
}
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The start of a JSON answer kept (where `model` usually is).
const HEAD: usize = 8 * 1024;
/// The end of a JSON answer kept (where `usage` is).
const TAIL: usize = 64 * 1024;
/// The longest event line read; longer ones pass unread.
const MAX_LINE: usize = 1024 * 1024;

/// What an answer said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    /// The model that answered, as the answer names it.
    pub(crate) model: Option<String>,
    /// The tokens it reported; `None`: it reported none.
    pub(crate) tokens: Option<Tokens>,
}

/// A usage object's counts as reported, each kept until a later event gives it again.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    /// Anthropic's shape: its `input_tokens` leaves out the cached ones.
    input_excludes_cache: bool,
}

impl Counts {
    fn merge(&mut self, later: Counts) {
        self.input = later.input.or(self.input);
        self.output = later.output.or(self.output);
        self.cache_read = later.cache_read.or(self.cache_read);
        self.cache_write = later.cache_write.or(self.cache_write);
        self.input_excludes_cache |= later.input_excludes_cache;
    }

    fn tokens(&self) -> Option<Tokens> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        let cache_read = self.cache_read.unwrap_or(0);
        let cache_write = self.cache_write.unwrap_or(0);
        let mut input = self.input.unwrap_or(0);
        if self.input_excludes_cache {
            input = input.saturating_add(cache_read).saturating_add(cache_write);
        }
        Some(Tokens {
            input,
            output: self.output.unwrap_or(0),
            cache_read: cache_read.min(input),
            cache_write,
        })
    }
}

fn n(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// The counts of a `usage` object (OpenAI's, Azure's, the Responses API's, Anthropic's,
/// Bedrock Converse's).
fn usage_counts(usage: &Value, anthropic: bool) -> Option<Counts> {
    if !usage.is_object() {
        return None;
    }
    // Bedrock's Converse: camelCase, input without the cached part.
    if usage.get("inputTokens").is_some() || usage.get("outputTokens").is_some() {
        return Some(Counts {
            input: n(usage, "inputTokens"),
            output: n(usage, "outputTokens"),
            cache_read: n(usage, "cacheReadInputTokens"),
            cache_write: n(usage, "cacheWriteInputTokens"),
            input_excludes_cache: true,
        });
    }
    let anthropic = anthropic
        || usage.get("cache_read_input_tokens").is_some()
        || usage.get("cache_creation_input_tokens").is_some();
    let details = |key: &str| usage.get(key).and_then(|d| n(d, "cached_tokens"));
    Some(Counts {
        input: n(usage, "prompt_tokens").or_else(|| n(usage, "input_tokens")),
        output: n(usage, "completion_tokens").or_else(|| n(usage, "output_tokens")),
        cache_read: n(usage, "cache_read_input_tokens")
            .or_else(|| details("prompt_tokens_details"))
            .or_else(|| details("input_tokens_details")),
        cache_write: n(usage, "cache_creation_input_tokens"),
        input_excludes_cache: anthropic,
    })
}

/// The counts of Gemini's `usageMetadata` (its prompt count holds the cached part; thinking
/// is billed as output).
fn gemini_counts(meta: &Value) -> Option<Counts> {
    if !meta.is_object() {
        return None;
    }
    let output = match (
        n(meta, "candidatesTokenCount"),
        n(meta, "thoughtsTokenCount"),
    ) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    let input = match (
        n(meta, "promptTokenCount"),
        n(meta, "toolUsePromptTokenCount"),
    ) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    Some(Counts {
        input,
        output,
        cache_read: n(meta, "cachedContentTokenCount"),
        cache_write: None,
        input_excludes_cache: false,
    })
}

/// Where each key `name` (quoted; `finder` finds it) followed by `:` starts its value in
/// `text`.
fn values_of<'a>(text: &'a [u8], finder: &'a Finder<'static>) -> impl Iterator<Item = usize> + 'a {
    let len = finder.needle().len();
    finder.find_iter(text).filter_map(move |at| {
        // An escaped quote is inside a string, not a key.
        if at > 0 && text[at - 1] == b'\\' {
            return None;
        }
        let mut i = at + len;
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        (text.get(i) == Some(&b':')).then_some(i + 1)
    })
}

/// The JSON value starting at `at` (after whitespace), if it is complete there.
fn value_at(text: &[u8], at: usize) -> Option<Value> {
    let mut values = serde_json::Deserializer::from_slice(&text[at..]).into_iter::<Value>();
    values.next()?.ok()
}

/// What one piece of answer (a JSON answer's kept text, or one event) says.
#[derive(Debug, Default)]
struct Scan {
    counts: Option<Counts>,
    model: Option<String>,
}

/// Reads `text` for usage (the last `usage` or `usageMetadata` holding counts) and the model
/// (the first `model` or `modelVersion` naming one; `last_model`: the last instead).
fn scan(text: &[u8], anthropic: bool, last_model: bool) -> Scan {
    let mut out = Scan::default();
    for (key, shape) in [
        (&*USAGE_KEY, Shape::Usage),
        (&*USAGE_METADATA_KEY, Shape::Gemini),
        (&*INVOCATION_METRICS_KEY, Shape::Bedrock),
    ] {
        let found: Vec<usize> = values_of(text, key).collect();
        for at in found.into_iter().rev() {
            let counts = value_at(text, at).and_then(|v| match shape {
                Shape::Gemini => gemini_counts(&v),
                Shape::Usage => usage_counts(&v, anthropic),
                // The total Bedrock gives at the end of an InvokeModel stream.
                Shape::Bedrock => v.is_object().then(|| Counts {
                    input: n(&v, "inputTokenCount"),
                    output: n(&v, "outputTokenCount"),
                    cache_read: n(&v, "cacheReadInputTokenCount"),
                    cache_write: n(&v, "cacheWriteInputTokenCount"),
                    input_excludes_cache: true,
                }),
            });
            if let Some(c) = counts {
                out.counts = Some(c);
                break;
            }
        }
        if out.counts.is_some() {
            break;
        }
    }
    for key in [&*MODEL_KEY, &*MODEL_VERSION_KEY] {
        let mut names = values_of(text, key)
            .filter_map(|at| value_at(text, at)?.as_str().map(str::to_owned))
            .filter(|m| is_model_name(m));
        let name = if last_model {
            names.last()
        } else {
            names.next()
        };
        if name.is_some() {
            out.model = name;
            break;
        }
    }
    out
}

/// Where a usage object was found.
#[derive(Clone, Copy)]
enum Shape {
    Usage,
    Gemini,
    Bedrock,
}

/// A model name worth keeping: short, printable, no controls or bidi overrides.
pub(crate) fn is_model_name(m: &str) -> bool {
    !m.is_empty() && keyward_core::ids::is_plain_text(m, 200)
}

/// How the answer's body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON document (or Gemini's JSON array of chunks).
    Json,
    /// Server-sent events.
    Events,
    /// AWS event-stream frames (Bedrock's streams).
    EventStream,
}

/// Reads an answer's bytes as they pass.
#[derive(Debug)]
pub(crate) struct Meter {
    format: Format,
    anthropic: bool,
    /// JSON: the first bytes; events: the line being read.
    head: Vec<u8>,
    /// JSON: the last bytes seen after the head (a ring would save a copy; this is cut back
    /// to `TAIL` when it doubles).
    tail: Vec<u8>,
    /// Whether JSON bytes were dropped between head and tail.
    gap: bool,
    /// Events: the line being read is too long and is skipped to its end.
    skipping: bool,
    /// Event-stream frames: what is left of a frame too long to read.
    frame_skip: usize,
    /// Event-stream frames: the answer is not framed as it said, and is not read further.
    unframed: bool,
    counts: Option<Counts>,
    model: Option<String>,
}

impl Meter {
    /// A meter of an answer in `format`; `anthropic`: usage in Anthropic's shape.
    pub(crate) fn new(format: Format, anthropic: bool) -> Self {
        Self {
            format,
            anthropic,
            head: Vec::new(),
            tail: Vec::new(),
            gap: false,
            skipping: false,
            frame_skip: 0,
            unframed: false,
            counts: None,
            model: None,
        }
    }

    /// Reads the next bytes.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        match self.format {
            Format::Json => self.feed_json(data),
            Format::Events => self.feed_events(data),
            Format::EventStream => self.feed_frames(data),
        }
    }

    fn feed_json(&mut self, mut data: &[u8]) {
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.is_empty() {
            return;
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
            self.gap = true;
        }
    }

    fn feed_events(&mut self, data: &[u8]) {
        let mut rest = data;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let line = &rest[..end];
            if self.skipping {
                self.skipping = false;
            } else if self.head.is_empty() {
                self.event_line(line);
            } else {
                let mut whole = std::mem::take(&mut self.head);
                whole.extend_from_slice(line);
                self.event_line(&whole);
            }
            rest = &rest[end + 1..];
        }
        if self.skipping || rest.is_empty() {
            return;
        }
        if self.head.len() + rest.len() > MAX_LINE {
            self.head.clear();
            self.skipping = true;
        } else {
            self.head.extend_from_slice(rest);
        }
    }

    /// AWS event-stream frames: `u32 total | u32 headers | u32 crc | headers | payload |
    /// u32 crc`, big-endian. A frame is kept until it is whole; one longer than [`MAX_LINE`]
    /// passes unread, and a stream that is not framed so is not read further.
    fn feed_frames(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.unframed {
            if self.frame_skip > 0 {
                let n = self.frame_skip.min(data.len());
                self.frame_skip -= n;
                data = &data[n..];
                continue;
            }
            if self.head.len() < 12 {
                let take = (12 - self.head.len()).min(data.len());
                self.head.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.head.len() < 12 {
                    return;
                }
            }
            let total = u32::from_be_bytes([self.head[0], self.head[1], self.head[2], self.head[3]])
                as usize;
            let headers =
                u32::from_be_bytes([self.head[4], self.head[5], self.head[6], self.head[7]])
                    as usize;
            if total < 16 || headers > total - 16 {
                self.head.clear();
                self.unframed = true;
                return;
            }
            if total > MAX_LINE {
                self.frame_skip = total - self.head.len();
                self.head.clear();
                continue;
            }
            let take = (total - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() == total {
                let frame = std::mem::take(&mut self.head);
                self.frame(&frame);
            }
        }
    }

    /// One whole frame: its payload read for usage.
    fn frame(&mut self, frame: &[u8]) {
        let headers = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
        let Some(payload) = frame.get(12 + headers..frame.len() - 4) else {
            return;
        };
        if let Some(found) = INVOKE_CHUNK_BYTES.find(payload).and_then(|_| {
            // InvokeModelWithResponseStream: `{"bytes": "<base64 of the model's event>"}`.
            let v: Value = serde_json::from_slice(payload).ok()?;
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(v.get("bytes")?.as_str()?)
                .ok()
        }) {
            let inner = scan(&found, true, false);
            self.take(inner);
        } else if USAGE_PREFIX.find(payload).is_some() {
            let found = scan(payload, self.anthropic, false);
            self.take(found);
        }
    }

    fn event_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Most events carry neither; only those that name one are parsed.
        if USAGE_PREFIX.find(data).is_none() && MODEL_PREFIX.find(data).is_none() {
            return;
        }
        let found = scan(data, self.anthropic, false);
        self.take(found);
    }

    fn take(&mut self, found: Scan) {
        if let Some(c) = found.counts {
            match &mut self.counts {
                Some(mine) => mine.merge(c),
                None => self.counts = Some(c),
            }
        }
        if self.model.is_none() {
            self.model = found.model;
        }
    }

    /// What the whole answer said.
    pub(crate) fn finish(mut self) -> Reading {
        match self.format {
            Format::Json => {
                let found = if self.gap {
                    // Usage from the end; the model from the start, or else the end (an
                    // embeddings answer names it after its data).
                    let mut from_tail = scan(&self.tail, self.anthropic, true);
                    let from_head = scan(&self.head, self.anthropic, false);
                    from_tail.model = from_head.model.or(from_tail.model);
                    from_tail
                } else {
                    let mut whole = std::mem::take(&mut self.head);
                    whole.extend_from_slice(&self.tail);
                    scan(&whole, self.anthropic, false)
                };
                self.take(found);
            }
            Format::EventStream => {}
            Format::Events => {
                // A last line without its newline.
                if !self.head.is_empty() && !self.skipping {
                    let line = std::mem::take(&mut self.head);
                    self.event_line(&line);
                }
            }
        }
        Reading {
            model: self.model,
            tokens: self.counts.and_then(|c| c.tokens()),
        }
    }
}

/// An answer's body that tells `done` what it read, once, when the body ends, fails or is
/// dropped (a client that went away mid-stream); every frame passes on as it came.
pub(crate) struct Metered<B> {
    inner: B,
    meter: Option<Meter>,
    done: Option<Box<dyn FnOnce(Reading, bool) + Send + Sync>>,
}

impl<B> Metered<B> {
    /// `done` gets the reading and whether the body reached its end.
    pub(crate) fn new(
        inner: B,
        meter: Meter,
        done: impl FnOnce(Reading, bool) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            meter: Some(meter),
            done: Some(Box::new(done)),
        }
    }

    fn end(&mut self, complete: bool) {
        if let (Some(meter), Some(done)) = (self.meter.take(), self.done.take()) {
            done(meter.finish(), complete);
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.end(false);
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(meter)) = (frame.data_ref(), this.meter.as_mut()) {
                    meter.feed(data);
                }
            }
            Poll::Ready(None) => this.end(true),
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Pending => {}
        }
        polled.map(|f| f.map(|f| f.map_err(Into::into)))
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
    use super::*;

    fn read(format: Format, anthropic: bool, chunks: &[&[u8]]) -> Reading {
        let mut m = Meter::new(format, anthropic);
        for c in chunks {
            m.feed(c);
        }
        m.finish()
    }

    /// The same text fed whole and one byte at a time reads the same.
    fn read_both_ways(format: Format, anthropic: bool, text: &str) -> Reading {
        let whole = read(format, anthropic, &[text.as_bytes()]);
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(read(format, anthropic, &bytes), whole, "{text}");
        whole
    }

    fn tokens(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Option<Tokens> {
        Some(Tokens {
            input,
            output,
            cache_read,
            cache_write,
        })
    }

    /// An AWS event-stream frame (the CRCs are not checked by the meter; zeros here).
    fn frame(event: &str, payload: &str) -> Vec<u8> {
        let mut headers = Vec::new();
        for (k, v) in [(":event-type", event), (":message-type", "event")] {
            headers.push(k.len() as u8);
            headers.extend_from_slice(k.as_bytes());
            headers.push(7);
            headers.extend_from_slice(&(v.len() as u16).to_be_bytes());
            headers.extend_from_slice(v.as_bytes());
        }
        let total = 12 + headers.len() + payload.len() + 4;
        let mut out = Vec::new();
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&headers);
        out.extend_from_slice(payload.as_bytes());
        out.extend_from_slice(&[0; 4]);
        out
    }

    #[test]
    fn bedrock_converse_and_its_streams() {
        let whole = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi \"usage\": {\"inputTokens\": 999}"}]}},
            "stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":5,"totalTokens":17,"cacheReadInputTokens":100}}"#;
        assert_eq!(
            read_both_ways(Format::Json, false, whole).tokens,
            tokens(112, 5, 100, 0)
        );
        let mut stream = frame("messageStart", r#"{"role":"assistant"}"#);
        stream.extend(frame(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"\"usage\":{\"inputTokens\":1}"}}"#,
        ));
        stream.extend(frame(
            "metadata",
            r#"{"usage":{"inputTokens":12,"outputTokens":5,"totalTokens":17},"metrics":{"latencyMs":9}}"#,
        ));
        let whole = read(Format::EventStream, false, &[&stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read(Format::EventStream, false, &bytes), whole);
        assert_eq!(whole.tokens, tokens(12, 5, 0, 0));

        // InvokeModelWithResponseStream: the model's own events, base64 in `bytes`.
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut stream = frame(
            "chunk",
            &format!(
                r#"{{"bytes":"{}"}}"#,
                b64(
                    r#"{"type":"message_start","message":{"model":"claude-3-haiku","usage":{"input_tokens":7,"output_tokens":1}}}"#
                )
            ),
        );
        stream.extend(frame(
            "chunk",
            &format!(
                r#"{{"bytes":"{}"}}"#,
                b64(r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":7,"outputTokenCount":4}}"#)
            ),
        ));
        let r = read(Format::EventStream, false, &[&stream]);
        assert_eq!(r.tokens, tokens(7, 4, 0, 0));
        assert_eq!(r.model.as_deref(), Some("claude-3-haiku"));
        // Not framed after all: nothing read, nothing broken.
        assert_eq!(
            read(Format::EventStream, false, &[b"{\"usage\":{}}"]).tokens,
            None
        );
    }

    #[test]
    fn openai_chat_completion() {
        let r = read_both_ways(
            Format::Json,
            false,
            r#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini-2024-07-18",
               "choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 999} \"model\": \"x\""}}],
               "usage":{"prompt_tokens":1200,"completion_tokens":345,"total_tokens":1545,
                        "prompt_tokens_details":{"cached_tokens":1024}}}"#,
        );
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(r.tokens, tokens(1200, 345, 1024, 0));
    }

    #[test]
    fn openai_stream_with_its_usage_chunk() {
        let text = "data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
                    data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
                    data: [DONE]\n\n";
        let r = read_both_ways(Format::Events, false, text);
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert_eq!(r.tokens, tokens(9, 2, 0, 0));
    }

    #[test]
    fn a_stream_without_usage_reports_none() {
        let text = "data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
        let r = read_both_ways(Format::Events, false, text);
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert_eq!(r.tokens, None);
    }

    #[test]
    fn responses_api_answer_and_stream() {
        let whole = r#"{"id":"resp_1","object":"response","model":"gpt-4.1","output":[],
            "usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":40},"output_tokens":7,"total_tokens":107}}"#;
        assert_eq!(
            read_both_ways(Format::Json, false, whole).tokens,
            tokens(100, 7, 40, 0)
        );
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":null}}\n\n\
                      event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
                      event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":100,\"output_tokens\":7}}}\n\n";
        let r = read_both_ways(Format::Events, false, stream);
        assert_eq!(r.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(r.tokens, tokens(100, 7, 0, 0));
    }

    #[test]
    fn anthropic_message_counts_cache_reads_and_writes_as_input() {
        let whole = r#"{"id":"msg","type":"message","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hi"}],
            "usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":3000,"output_tokens":50}}"#;
        let r = read_both_ways(Format::Json, true, whole);
        assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-20250514"));
        assert_eq!(r.tokens, tokens(3210, 50, 3000, 200));
    }

    #[test]
    fn anthropic_stream_takes_input_from_the_start_and_output_from_the_last_delta() {
        let text = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\r\n\r\n\
                    event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\r\n\r\n\
                    event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
                    event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
        let r = read_both_ways(Format::Events, true, text);
        assert_eq!(r.model.as_deref(), Some("claude-x"));
        assert_eq!(r.tokens, tokens(30, 15, 5, 0));
    }

    #[test]
    fn gemini_answer_array_and_events() {
        let whole = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}],
            "usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":3,"thoughtsTokenCount":4,"cachedContentTokenCount":8,"totalTokenCount":19},
            "modelVersion":"gemini-2.5-flash"}"#;
        let r = read_both_ways(Format::Json, false, whole);
        assert_eq!(r.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(r.tokens, tokens(12, 7, 8, 0));
        // streamGenerateContent without alt=sse: an array whose chunks count cumulatively.
        let array = r#"[{"candidates":[],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":1},"modelVersion":"gemini-x"},
                        {"candidates":[],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":6},"modelVersion":"gemini-x"}]"#;
        assert_eq!(
            read_both_ways(Format::Json, false, array).tokens,
            tokens(12, 6, 0, 0)
        );
        let events = "data: {\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":1},\"modelVersion\":\"gemini-x\"}\r\n\r\n\
                      data: {\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":6},\"modelVersion\":\"gemini-x\"}\r\n\r\n";
        let r = read_both_ways(Format::Events, false, events);
        assert_eq!(
            (r.model.as_deref(), r.tokens),
            (Some("gemini-x"), tokens(12, 6, 0, 0))
        );
    }

    #[test]
    fn a_large_embeddings_answer_is_read_from_its_ends() {
        let vector = vec!["0.0123456"; 200_000].join(",");
        let text = format!(
            r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{vector}]}}],
               "model":"text-embedding-3-small","usage":{{"prompt_tokens":8,"total_tokens":8}}}}"#
        );
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(16 * 1024).collect();
        let mut m = Meter::new(Format::Json, false);
        for c in &chunks {
            m.feed(c);
        }
        assert!(m.head.len() + m.tail.len() <= HEAD + 2 * TAIL);
        let r = m.finish();
        assert_eq!(r.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(r.tokens, tokens(8, 0, 0, 0));
    }

    #[test]
    fn an_answer_without_usage_or_with_a_hostile_model_name_reports_neither() {
        let r = read_both_ways(Format::Json, false, r#"{"object":"list","data":[]}"#);
        assert_eq!(r, Reading::default());
        let r = read_both_ways(
            Format::Json,
            false,
            "{\"model\":\"gpt\\u202e-4o\",\"usage\":{\"prompt_tokens\":1}}",
        );
        assert_eq!(r.model, None);
        assert_eq!(r.tokens, tokens(1, 0, 0, 0));
    }

    #[test]
    fn an_overlong_event_line_is_skipped_not_kept() {
        let mut m = Meter::new(Format::Events, false);
        m.feed(b"data: {\"model\":\"a\",");
        m.feed(&vec![b'x'; MAX_LINE + 10]);
        assert!(m.head.is_empty());
        m.feed(b"\"usage\":{\"prompt_tokens\":1}}\n\ndata: {\"model\":\"b\",\"usage\":{\"prompt_tokens\":2}}\n\n");
        let r = m.finish();
        assert_eq!(
            (r.model.as_deref(), r.tokens),
            (Some("b"), tokens(2, 0, 0, 0))
        );
    }
}

/// A streamed chat completion whose request the gateway asked for usage on, rewritten
/// (`body::Rewritten`) into the events the client would have had without that: the usage
/// chunk (`"choices":[]` with `usage`) left out and the `"usage":null` the provider adds to the
/// other chunks taken back out. Events pass whole, as soon as each is complete.
#[derive(Debug, Default)]
pub(crate) struct HideUsageChunk {
    /// The start of an event not complete yet.
    partial: Vec<u8>,
}

impl super::body::Rewrite for HideUsageChunk {
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.partial.extend_from_slice(data);
        let mut taken = 0;
        while let Some(end) = event_end(&self.partial[taken..]) {
            let event = &self.partial[taken..taken + end];
            if !is_usage_chunk(event) {
                without_null_usage(event, out);
            }
            taken += end;
        }
        self.partial.drain(..taken);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let rest = std::mem::take(&mut self.partial);
        if !is_usage_chunk(&rest) {
            without_null_usage(&rest, out);
        }
    }
}

/// Whether an event is the usage chunk the gateway asked for: its data a JSON object whose
/// `choices` is empty and whose `usage` is an object (however the provider spaces it).
fn is_usage_chunk(event: &[u8]) -> bool {
    let Some(start) = DATA.find(event) else {
        return false;
    };
    let data = &event[start + 5..];
    if USAGE_PREFIX.find(data).is_none() {
        return false;
    }
    let end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let Ok(v) = serde_json::from_slice::<Value>(data[..end].trim_ascii()) else {
        return false;
    };
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

/// `event` without the `"usage": null` members the request for usage added (with the comma
/// before each, however spaced; a `"usage"` inside a string has its quotes escaped, and is
/// not one).
fn without_null_usage(event: &[u8], out: &mut Vec<u8>) {
    let mut copied = 0;
    for at in USAGE_KEY.find_iter(event) {
        if at < copied || (at > 0 && event[at - 1] == b'\\') {
            continue;
        }
        let mut i = at + USAGE_KEY.needle().len();
        let skip = |mut i: usize| {
            while i < event.len() && event[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        };
        i = skip(i);
        if event.get(i) != Some(&b':') {
            continue;
        }
        i = skip(i + 1);
        if !event[i..].starts_with(b"null") {
            continue;
        }
        let end = i + 4;
        // The comma before the key, past any spaces.
        let mut comma = at;
        while comma > copied && event[comma - 1].is_ascii_whitespace() {
            comma -= 1;
        }
        if comma == copied || event[comma - 1] != b',' {
            continue;
        }
        out.extend_from_slice(&event[copied..comma - 1]);
        copied = end;
    }
    out.extend_from_slice(&event[copied..]);
}

/// The end of the first complete event in `buf` (past its blank line), if any.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = BLANK_LINE.find(buf).map(|i| i + 2);
    let crlf = BLANK_CRLF.find(buf).map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod hide_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt as _;

    async fn through(chunks: Vec<&'static str>) -> String {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Frame::data(Bytes::from(c)))),
        );
        let body = http_body_util::StreamBody::new(stream);
        let hidden = crate::gateway::body::Rewritten::new(body, HideUsageChunk::default());
        let bytes = hidden.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_usage_chunk_and_null_usages_are_taken_out_whatever_the_framing() {
        let stream = "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
                      data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
                      data: [DONE]\n\n";
        let want = "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(through(vec![stream]).await, want);
        let bytes: Vec<&'static str> = (0..stream.len()).map(|i| &stream[i..=i]).collect();
        assert_eq!(through(bytes).await, want);
        // A content that quotes `"usage":null` is a string: its quotes are escaped.
        let quoted =
            "data: {\"choices\":[{\"delta\":{\"content\":\"say ,\\\"usage\\\":null\"}}]}\n\n";
        assert_eq!(through(vec![quoted]).await, quoted);
    }
}
