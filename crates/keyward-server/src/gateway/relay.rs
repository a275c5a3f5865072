//! The upstream's answer as the client gets it: on our connection's protocol version, without
//! hop-by-hop headers or the upstream's reason phrase, the key masked wherever it is quoted
//! (and an error answer that cannot be checked for it withheld), naming what served it, and
//! closed if it goes quiet for the idle timeout.

use std::time::Duration;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Version, header};
use axum::response::Response;
use keyward_core::provider::AuthStyle;
use keyward_core::{OrgId, Provider};
use secrecy::SecretString;

use super::Gateway;
use super::answers::provider_error;
use super::body;
use super::candidates::{Served, Upstream};
use super::headers::{mask_headers, masker, strip_hop_by_hop};
use super::meter::{Format, HideUsageChunk, Meter, Metered};
use super::usage::Answer;

/// Who is billed for an answer: the gateway token's organization and id, for a request whose
/// answer reports tokens (a POST; listing models costs nothing).
pub(super) struct Bill {
    pub(super) gateway: Arc<Gateway>,
    pub(super) org: OrgId,
    pub(super) token: String,
    pub(super) method: Method,
    /// What the request holds of its budgets, settled with what the answer cost.
    pub(super) ticket: super::budgets::Ticket,
    /// The gateway asked for the stream's usage: the chunk that brings it is not the client's.
    pub(super) hide_usage_chunk: bool,
    /// The model the request named, for answers that do not name theirs (Bedrock's).
    pub(super) model: Option<String>,
}

/// `response`, which `up` gave, as the client gets it (`version`: our connection's; `sent`:
/// the secret the request carried, masked wherever the answer quotes it).
pub(super) fn relay(
    response: axum::http::Response<hyper::body::Incoming>,
    up: &Upstream<'_>,
    sent: Option<&SecretString>,
    provider: &Provider,
    version: Version,
    idle_timeout: Duration,
    bill: Bill,
) -> Response {
    let status = response.status();
    let (mut head, body) = response.into_parts();
    // Our connection with the client has its own protocol version (an HTTP/1.0 upstream
    // must not make the answer to an HTTP/1.1 client a 1.0 one, which closes connections).
    head.version = version;
    strip_hop_by_hop(&mut head.headers);
    // A reason phrase of the upstream's own could quote the key; the client gets the
    // canonical one.
    head.extensions.remove::<hyper::ext::ReasonPhrase>();
    // The client holds a gateway token, not the key: an upstream that quotes the key back
    // (in a header, or an error's text) has it replaced by its hint.
    if let Some(key) = sent {
        mask_headers(&mut head.headers, provider, key);
    }
    let (name, id) = match &up.served {
        Served::Credential(id) => ("x-keyward-credential", id.as_str().to_owned()),
        Served::Target(t) => ("x-keyward-target", t.id.clone()),
        Served::Environment(var) => ("x-keyward-credential", format!("env:{var}")),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        head.headers.insert(name, v);
    }
    let body = body::IdleTimeout::new(body, idle_timeout);
    match sent {
        // Error answers are where providers quote what they were sent.
        // An error answer compressed although none was asked for cannot be checked for
        // the key: it is withheld.
        Some(_)
            if !status.is_success()
                && head
                    .headers
                    .get_all(header::CONTENT_ENCODING)
                    .iter()
                    .flat_map(|e| e.as_bytes().split(|b| *b == b','))
                    .any(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity")) =>
        {
            tracing::warn!(
                provider = provider.id,
                status = status.as_u16(),
                "withholding a compressed error answer, which cannot be checked for the key"
            );
            provider_error(
                provider,
                status,
                "the provider's error answer was compressed and could not be checked for the key, so it is withheld",
            )
        }
        Some(key) if !status.is_success() => {
            // The masked text has another length.
            head.headers.remove(header::CONTENT_LENGTH);
            let masked = body::Rewritten::new(body, masker(provider, key));
            Response::from_parts(head, Body::new(masked))
        }
        _ if status.is_success() && bill.method == Method::POST => {
            let format = match head.headers.get(header::CONTENT_TYPE) {
                Some(t) if t.as_bytes().starts_with(b"text/event-stream") => Format::Events,
                Some(t)
                    if t.as_bytes()
                        .starts_with(b"application/vnd.amazon.eventstream") =>
                {
                    Format::EventStream
                }
                _ => Format::Json,
            };
            let meter = Meter::new(format, provider.auth == AuthStyle::XApiKey);
            let hide = bill.hide_usage_chunk && format == Format::Events;
            let (kind, id) = up.served.usage_subject();
            let served_id = id.to_owned();
            let provider_id = provider.id;
            let metered = Metered::new(body, meter, move |mut reading, _ended| {
                if reading.model.is_none() {
                    reading.model = bill.model.clone();
                }
                let Bill {
                    gateway: gw,
                    org,
                    token,
                    ticket,
                    ..
                } = bill;
                let tokens = reading.tokens.map(|t| t.input.saturating_add(t.output));
                let cost = gw.usage.spent(
                    Answer {
                        org: &org,
                        token: &token,
                        served: (kind, &served_id),
                        provider: provider_id,
                        reading,
                    },
                    &gw.prices(),
                    gw.options().metrics_by_org,
                );
                ticket.settle(cost, tokens);
            });
            if hide {
                head.headers.remove(header::CONTENT_LENGTH);
                return Response::from_parts(
                    head,
                    Body::new(body::Rewritten::new(metered, HideUsageChunk::default())),
                );
            }
            Response::from_parts(head, Body::new(metered))
        }
        _ => Response::from_parts(head, Body::new(body)),
    }
}
