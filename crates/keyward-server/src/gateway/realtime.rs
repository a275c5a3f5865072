//! Realtime sessions: a WebSocket upgrade on a provider's realtime route (OpenAI's
//! `v1/realtime`, Azure OpenAI's `openai/realtime` and `openai/v1/realtime`, Gemini's Live API
//! `ws/...BidiGenerateContent`) is checked like any gateway request (the token, from a header,
//! `?key=` or the `openai-insecure-api-key.` subprotocol browsers use; its provider and model
//! allow-lists; its budgets), then the upstream connection is opened with the organization's
//! key, failing over between keys as requests do, and only then is the client's upgrade
//! answered: a refused key is an HTTP error in the provider's shape, not a socket that closes.
//!
//! Frames are pumped both ways until either side closes (its close code and reason passed on),
//! the session is idle too long, or it lasts too long. The key is masked in what the provider
//! sends; usage is read from its messages (`response.done`'s `usage`, Gemini's
//! `usageMetadata`) and counted when the session ends; opening and closing are audited.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts as _;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::Response;
use futures_util::{SinkExt as _, StreamExt as _};
use keyward_core::Provider;
use keyward_core::audit::{Category, NewEvent};
use keyward_core::prices::Tokens;
use keyward_store::{GatewayTokenView, UsageSubject};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};

use super::answers::provider_error;
use super::budgets::Ticket;
use super::candidates::{self, Served};
use super::cloud;
use super::cooldown::KeyHealth;
use super::meter::{Format, Meter};
use super::token::{authenticate, refusal};
use super::upstream::{Skip, unauthorized};
use super::usage::Answer;
use super::{allowance, guard, raw_tail};
use crate::AppState;

/// The largest message either side may send (OpenAI's audio appends are base64 chunks well
/// under this).
const MAX_MESSAGE: usize = 16 << 20;
/// The subprotocol browsers carry OpenAI's key in (they cannot set headers).
const KEY_PROTOCOL: &str = "openai-insecure-api-key.";

/// Whether `parts` asks to upgrade to a WebSocket.
pub(super) fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Whether `path` (after `/gateway/{provider}/`) is `provider`'s realtime route.
fn is_realtime_route(provider: &Provider, path: &str) -> bool {
    match provider.id {
        "openai" | "openai_compatible" => path.trim_start_matches("v1/") == "realtime",
        "azure_openai" => matches!(path, "openai/realtime" | "openai/v1/realtime"),
        "gemini" => {
            path.split('/').count() == 2
                && path.starts_with("ws/google.ai.generativelanguage.")
                && path.ends_with(".GenerativeService.BidiGenerateContent")
        }
        _ => false,
    }
}

/// The models a realtime request names: OpenAI's `?model=`, Azure's `?deployment=` (or its
/// GA route's `?model=`), every one of them.
fn models_in_query(query: Option<&str>) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
            matches!(k.as_ref(), "model" | "deployment").then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
        .collect()
}

/// A connection to the provider: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type UpstreamSocket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// `GET /gateway/{provider}/{realtime route}` with `Upgrade: websocket`.
pub(super) async fn forward(
    state: &AppState,
    provider: &'static Provider,
    mut parts: Parts,
    skip: usize,
) -> Response {
    let path = raw_tail(parts.uri.path(), skip).to_owned();
    if !guard::path_is_safe(&path) {
        return provider_error(provider, StatusCode::BAD_REQUEST, guard::PATH_REFUSED);
    }
    if !is_realtime_route(provider, &path) {
        return provider_error(
            provider,
            StatusCode::NOT_FOUND,
            "the gateway carries WebSocket sessions on realtime routes only: OpenAI's v1/realtime, Azure OpenAI's openai/realtime, Gemini's Live API",
        );
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, state).await {
        Ok(u) => u,
        Err(_) => {
            return provider_error(
                provider,
                StatusCode::BAD_REQUEST,
                "not a WebSocket upgrade (GET, with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a key)",
            );
        }
    };
    let offered: Vec<String> = upgrade
        .requested_protocols()
        .filter_map(|p| p.to_str().ok())
        .map(str::to_owned)
        .collect();
    // A browser's token, in its subprotocol: taken as if it were the bearer (a header the
    // client set wins).
    if !parts.headers.contains_key(header::AUTHORIZATION)
        && let Some(token) = offered.iter().find_map(|p| p.strip_prefix(KEY_PROTOCOL))
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        parts.headers.insert(header::AUTHORIZATION, v);
    }
    let view = match authenticate(state, provider, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    super::token::note_caller(&parts, &view);
    if let Some(r) = refusal(state, provider, &view) {
        return r;
    }
    // The model is named once (a second `model=` could be the one the provider reads), and
    // a token limited to some models must name it: Gemini's in its first message, the others'
    // in the URL.
    let models = models_in_query(parts.uri.query());
    if models.len() > 1 {
        return provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            "name the model once (model= or deployment=)",
        );
    }
    let model = models.into_iter().next();
    match &model {
        Some(m) if !view.allows_model(m) => {
            return provider_error(
                provider,
                StatusCode::FORBIDDEN,
                &format!(
                    "this gateway token may not use the model {}",
                    keyward_core::secret_like::shown(m)
                ),
            );
        }
        None if !view.models.is_empty() && provider.id != "gemini" => {
            return provider_error(
                provider,
                StatusCode::BAD_REQUEST,
                "this gateway token is limited to some models: name the model (model= or deployment=)",
            );
        }
        _ => {}
    }
    let mut ticket = Ticket::default();
    let Some(limits) = state.shared.gateway.budgets.for_token(&view) else {
        return super::answers::store_unavailable(
            provider,
            "the gateway has not read its budgets yet: its store is unavailable",
        );
    };
    if let Err(r) = allowance::admit(state, provider, &view, &limits, &mut ticket).await {
        return r;
    }
    let found = match candidates::lookup(state, provider, &view).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut upstreams = candidates::upstreams(state, provider, &view, &found);
    state.shared.gateway.order_by_health(&mut upstreams);
    let query: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| {
            !kv.is_empty()
                && !kv.starts_with("key=")
                && !guard::holds(kv, keyward_store::GATEWAY_TOKEN_PREFIX)
        })
        .collect();
    // What goes upstream besides the key: the subprotocols but the key's, and OpenAI's beta
    // header.
    let protocols: Vec<&str> = offered
        .iter()
        .map(String::as_str)
        .filter(|p| {
            !p.starts_with(KEY_PROTOCOL)
                && !p.starts_with("openai-organization.")
                && !p.starts_with("openai-project.")
                && !guard::holds(p, keyward_store::GATEWAY_TOKEN_PREFIX)
        })
        .collect();
    let beta = parts
        .headers
        .get("openai-beta")
        .filter(|v| {
            v.to_str()
                .is_ok_and(|v| !guard::holds(v, keyward_store::GATEWAY_TOKEN_PREFIX))
        })
        .cloned();

    let gw = &state.shared.gateway;
    let mut health = KeyHealth::new(state, provider, &view);
    let mut last = None;
    let total = upstreams.len();
    for (i, up) in upstreams.iter().enumerate() {
        let more = i + 1 < total;
        let (subject, served_id) = up.served.usage_subject();
        let url = ws_url(up.base, &path, &query);
        let mut headers = HeaderMap::new();
        let this_try = cloud::Try {
            provider,
            key: up.key,
            fields: up.fields,
            method: &Method::GET,
            url: &url,
            headers: &headers,
            body: None,
        };
        let authorized = match gw.access.authorize(&this_try).await {
            Ok(a) => a,
            Err(e) => match unauthorized(gw, provider, &view, &mut health, up, e, more) {
                Skip::Next(answer) => {
                    last = answer.or(last);
                    continue;
                }
                Skip::Stop(answer) => {
                    last = Some(answer);
                    break;
                }
            },
        };
        for (name, value) in authorized.headers {
            headers.insert(name, value);
        }
        if let Some(b) = &beta {
            headers.insert("openai-beta", b.clone());
        }
        let opened = tokio::time::timeout(
            gw.options().connect_timeout,
            connect(&url, headers, &protocols),
        )
        .await;
        let (socket, answer) = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(tungstenite::Error::Http(refused))) => {
                let status = refused.status();
                gw.usage
                    .record(subject, served_id, &view.org, provider.id, status.as_u16());
                if let Served::Credential(id) = &up.served
                    && health.after_answer(id, status, refused.headers(), more)
                {
                    continue;
                }
                last = Some(provider_error(
                    provider,
                    status,
                    &format!(
                        "the provider refused the realtime session (HTTP {})",
                        status.as_u16()
                    ),
                ));
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = provider.id, served = served_id, error = %e, "cannot open the provider's realtime session");
                gw.usage
                    .record(subject, served_id, &view.org, provider.id, 0);
                last = Some(provider_error(
                    provider,
                    StatusCode::BAD_GATEWAY,
                    "the provider's realtime session could not be opened",
                ));
                continue;
            }
            Err(_) => {
                gw.usage
                    .record(subject, served_id, &view.org, provider.id, 0);
                last = Some(provider_error(
                    provider,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the provider did not open the realtime session in time",
                ));
                continue;
            }
        };
        gw.usage
            .record(subject, served_id, &view.org, provider.id, 101);
        gw.usage.record(
            UsageSubject::GatewayToken,
            &view.id,
            &view.org,
            provider.id,
            101,
        );
        if let Served::Credential(id) = &up.served {
            health.after_answer(id, StatusCode::SWITCHING_PROTOCOLS, answer.headers(), false);
        }
        // The client gets the subprotocol the provider chose, if the client offered it.
        let chosen = answer
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .filter(|p| offered.iter().any(|o| o == p))
            .map(str::to_owned);
        let mut upgrade = upgrade
            .max_message_size(MAX_MESSAGE)
            .max_frame_size(MAX_MESSAGE);
        if let Some(p) = chosen.and_then(|p| HeaderValue::from_str(&p).ok()) {
            upgrade.set_selected_protocol(p);
        }
        let session = Session {
            state: state.clone(),
            provider,
            org: view.org.clone(),
            token: view.id.clone(),
            served: (subject, served_id.to_owned()),
            credential: match &up.served {
                Served::Credential(id) => Some(id.as_str().to_owned()),
                _ => None,
            },
            masker: authorized
                .sent
                .as_ref()
                .map(|k| super::headers::masker(provider, k)),
            model,
            ticket,
            allowed_models: (!view.models.is_empty()).then(|| view.clone()),
            setup_done: false,
        };
        return upgrade.on_upgrade(move |client| session.pump(client, socket));
    }
    state.shared.gateway.usage.record(
        UsageSubject::GatewayToken,
        &view.id,
        &view.org,
        provider.id,
        last.as_ref().map_or(502, |r| r.status().as_u16()),
    );
    last.unwrap_or_else(|| {
        provider_error(
            provider,
            StatusCode::BAD_GATEWAY,
            "no key of this organization could open the realtime session",
        )
    })
}

/// The upstream's `ws(s)://` URL for `path` under `base`.
fn ws_url(base: &str, path: &str, query: &[&str]) -> String {
    let url = super::upstream::join(base, path);
    let mut url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url
    };
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// The TLS settings of upstream sessions: the platform's roots, HTTP/1.1 (a WebSocket
/// upgrade is HTTP/1.1).
fn tls() -> Result<tokio_rustls::TlsConnector, tungstenite::Error> {
    static CONFIG: std::sync::OnceLock<Option<std::sync::Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        use rustls_platform_verifier::ConfigVerifierExt as _;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = rustls::ClientConfig::with_platform_verifier().ok()?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(std::sync::Arc::new(config))
    });
    config
        .clone()
        .map(tokio_rustls::TlsConnector::from)
        .ok_or_else(|| tungstenite::Error::Io(std::io::Error::other("no TLS roots")))
}

/// Opens the upstream session: TCP (and TLS for `wss://`), then the WebSocket handshake with
/// `headers` and the `protocols` offered.
async fn connect(
    url: &str,
    headers: HeaderMap,
    protocols: &[&str],
) -> Result<(UpstreamSocket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in &headers {
        request.headers_mut().insert(name, value.clone());
    }
    if !protocols.is_empty()
        && let Ok(v) = HeaderValue::from_str(&protocols.join(", "))
    {
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    let uri = request.uri().clone();
    let host = uri
        .host()
        .ok_or(tungstenite::Error::Url(
            tungstenite::error::UrlError::NoHostName,
        ))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let io: Box<dyn Io> = if secure {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?;
        Box::new(tls()?.connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    tokio_tungstenite::client_async_with_config(request, io, Some(config)).await
}

/// A session once both sides are open.
struct Session {
    state: AppState,
    provider: &'static Provider,
    org: keyward_core::OrgId,
    token: String,
    served: (UsageSubject, String),
    credential: Option<String>,
    /// Replaces what was sent upstream (the key, an access token) in the provider's messages.
    masker: Option<keyward_core::mask::Masker>,
    /// The model the request named, for pricing.
    model: Option<String>,
    ticket: Ticket,
    /// The token, when it limits models: a Gemini Live session names its model in its first
    /// message.
    allowed_models: Option<std::sync::Arc<GatewayTokenView>>,
    /// Whether a Gemini session's setup has been seen (and checked).
    setup_done: bool,
}

/// How a session ended.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Client(u16),
    Provider(u16),
    Idle,
    TooLong,
    Refused,
    Broken,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Client(_) => "client",
            Ended::Provider(_) => "provider",
            Ended::Idle => "idle",
            Ended::TooLong => "max_duration",
            Ended::Refused => "model_refused",
            Ended::Broken => "connection_lost",
        }
    }
}

/// A close code that may be sent (1005 and 1006 only describe a close; 1015 is TLS's).
fn sendable(code: u16) -> u16 {
    match code {
        1005 | 1006 | 1015 => 1000,
        c => c,
    }
}

impl Session {
    async fn pump(mut self, client: WebSocket, upstream: UpstreamSocket) {
        let opened = Instant::now();
        let options = self.state.shared.gateway.options().clone();
        self.audit("gateway_realtime_open", json!({}));
        let (mut to_client, mut from_client) = client.split();
        let (mut to_provider, mut from_provider) = upstream.split();
        let deadline = tokio::time::sleep(options.realtime_max_duration);
        tokio::pin!(deadline);
        let mut last_seen = Instant::now();
        let mut usage: Option<Tokens> = None;
        let mut counted = (0u64, 0u64);
        let ended = loop {
            let idle = tokio::time::sleep_until((last_seen + options.realtime_idle_timeout).into());
            tokio::select! {
                m = from_client.next() => {
                    let m = match m {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            let (code, why) = read_failure(&e.to_string(), "the client's message");
                            let _ = to_client.send(client_close(code, &why)).await;
                            let _ = to_provider.send(close(1001, "the client went away")).await;
                            break Ended::Broken;
                        }
                        None => {
                            let _ = to_provider.send(close(1001, "the client went away")).await;
                            break Ended::Broken;
                        }
                    };
                    let out = match m {
                        ws::Message::Text(t) => match self.screened(t.as_bytes()) {
                            Ok(Some(canonical)) => tungstenite::Message::Text(canonical.into()),
                            Ok(None) => tungstenite::Message::Text(t.as_str().into()),
                            Err(()) => break self.refuse_model(&mut to_client, &mut to_provider).await,
                        },
                        ws::Message::Binary(b) => match self.screened(&b) {
                            Ok(Some(canonical)) => tungstenite::Message::Binary(canonical.into()),
                            Ok(None) => tungstenite::Message::Binary(b),
                            Err(()) => break self.refuse_model(&mut to_client, &mut to_provider).await,
                        },
                        // Each side answers its own pings; they do not keep a session alive.
                        ws::Message::Ping(_) | ws::Message::Pong(_) => continue,
                        ws::Message::Close(frame) => {
                            let code = frame.as_ref().map_or(1000, |f| sendable(f.code));
                            // A reason that carries a gateway token stays here.
                            let reason = frame
                                .map(|f| f.reason.as_str().to_owned())
                                .filter(|r| !guard::holds(r, keyward_store::GATEWAY_TOKEN_PREFIX))
                                .unwrap_or_default();
                            let _ = to_provider.send(close(code, &reason)).await;
                            break Ended::Client(code);
                        }
                    };
                    last_seen = Instant::now();
                    counted.0 += 1;
                    if to_provider.send(out).await.is_err() {
                        let _ = to_client.send(client_close(1011, "the provider's connection failed")).await;
                        break Ended::Broken;
                    }
                }
                m = from_provider.next() => {
                    let m = match m {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            let (code, why) = read_failure(&e.to_string(), "the provider's message");
                            let _ = to_client.send(client_close(code, &why)).await;
                            let _ = to_provider.send(close(code, "")).await;
                            break Ended::Broken;
                        }
                        None => {
                            let _ = to_client.send(client_close(1011, "the provider's connection was lost")).await;
                            break Ended::Broken;
                        }
                    };
                    // What the provider sends is masked and read for usage, text or binary
                    // (Gemini Live sends its JSON as binary frames).
                    let out = match m {
                        tungstenite::Message::Text(t) => {
                            self.read_usage(t.as_bytes(), &mut usage);
                            match self.masker.as_ref().and_then(|m| m.mask_whole(t.as_bytes())) {
                                Some(masked) => ws::Message::Text(String::from_utf8_lossy(&masked).into_owned().into()),
                                None => ws::Message::Text(t.as_str().into()),
                            }
                        }
                        tungstenite::Message::Binary(b) => {
                            self.read_usage(&b, &mut usage);
                            match self.masker.as_ref().and_then(|m| m.mask_whole(&b)) {
                                Some(masked) => ws::Message::Binary(masked.into()),
                                None => ws::Message::Binary(b),
                            }
                        }
                        tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_) => continue,
                        tungstenite::Message::Close(frame) => {
                            let code = frame.as_ref().map_or(1000, |f| sendable(f.code.into()));
                            let reason = frame
                                .map(|f| self.masked(f.reason.as_str()))
                                .unwrap_or_default();
                            let _ = to_client.send(client_close(code, &reason)).await;
                            break Ended::Provider(code);
                        }
                    };
                    last_seen = Instant::now();
                    counted.1 += 1;
                    if to_client.send(out).await.is_err() {
                        let _ = to_provider.send(close(1001, "the client went away")).await;
                        break Ended::Broken;
                    }
                }
                () = idle => {
                    let _ = to_client.send(client_close(1001, "the session was idle too long")).await;
                    let _ = to_provider.send(close(1001, "idle")).await;
                    break Ended::Idle;
                }
                () = &mut deadline => {
                    let _ = to_client.send(client_close(1001, "the session reached its longest duration")).await;
                    let _ = to_provider.send(close(1001, "session too long")).await;
                    break Ended::TooLong;
                }
            }
        };
        // Flush the closes; a peer that does not answer is not waited for long.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = to_client.flush().await;
            let _ = to_provider.flush().await;
        })
        .await;
        let gw = self.state.shared.gateway.clone();
        let reading = super::meter::Reading {
            model: self.model.clone(),
            tokens: usage,
        };
        let tokens = usage.map(|t| t.input.saturating_add(t.output));
        let cost = gw.usage.spent(
            Answer {
                org: &self.org,
                token: &self.token,
                served: (self.served.0, &self.served.1),
                provider: self.provider.id,
                reading,
            },
            &gw.prices(),
            gw.options().metrics_by_org,
        );
        let code = match ended {
            Ended::Client(c) | Ended::Provider(c) => Some(c),
            _ => None,
        };
        self.audit(
            "gateway_realtime_close",
            json!({
                "ended_by": ended.as_str(),
                "code": code,
                "duration_ms": u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
                "messages_in": counted.0,
                "messages_out": counted.1,
                "tokens": tokens,
            }),
        );
        std::mem::take(&mut self.ticket).settle(cost, tokens);
    }

    /// A client's message, checked against the token's model allow-list: a message that names
    /// a model (Gemini's `setup.model`, OpenAI's `session.model`) must name an allowed one, and
    /// goes on as the gateway read it (`Some`: re-serialized, so that a key given twice, or
    /// escaped, cannot make the provider read another model than the one checked). A Gemini
    /// session must begin with its setup, and has one. `Err`: refused.
    fn screened(&mut self, message: &[u8]) -> Result<Option<String>, ()> {
        let Some(view) = self.allowed_models.clone() else {
            if self.provider.id == "gemini" && self.model.is_none() {
                // Only to name the session's model in its usage.
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(message)
                    && let Some(m) = v.pointer("/setup/model").and_then(|m| m.as_str())
                {
                    self.model = Some(m.rsplit("models/").next().unwrap_or(m).to_owned());
                }
            }
            return Ok(None);
        };
        let gemini = self.provider.id == "gemini";
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(message) else {
            // Not JSON: the provider cannot read a model in it either; before Gemini's setup,
            // nothing else is let through.
            return if gemini && !self.setup_done {
                Err(())
            } else {
                Ok(None)
            };
        };
        // Every place a message names a model: Gemini's setup, OpenAI's session and its
        // transcription model (beta and GA shapes).
        const MODELS: [&str; 4] = [
            "/setup/model",
            "/session/model",
            "/session/input_audio_transcription/model",
            "/session/audio/input/transcription/model",
        ];
        let named: Vec<&serde_json::Value> = MODELS.iter().filter_map(|p| v.pointer(p)).collect();
        let has_setup = v.get("setup").is_some();
        if gemini && (has_setup == self.setup_done) {
            // A message before the setup, or a second setup.
            return Err(());
        }
        if has_setup && v.pointer("/setup/model").is_none() {
            return Err(());
        }
        if named.is_empty() {
            return Ok(None);
        }
        for m in named {
            let m = m.as_str().ok_or(())?;
            let name = m.rsplit("models/").next().unwrap_or(m);
            if !view.allows_model(name) {
                return Err(());
            }
        }
        if has_setup && let Some(m) = v.pointer("/setup/model").and_then(|m| m.as_str()) {
            self.setup_done = true;
            self.model = Some(m.rsplit("models/").next().unwrap_or(m).to_owned());
        }
        serde_json::to_string(&v).map(Some).map_err(|_| ())
    }

    /// Closes both sides of a session whose client asked for a model its token may not use.
    async fn refuse_model<C, P>(&self, to_client: &mut C, to_provider: &mut P) -> Ended
    where
        C: futures_util::Sink<ws::Message> + Unpin,
        P: futures_util::Sink<tungstenite::Message> + Unpin,
    {
        let _ = to_client
            .send(client_close(
                1008,
                "this gateway token may not use that model (or the session did not name it first)",
            ))
            .await;
        let _ = to_provider.send(close(1000, "")).await;
        Ended::Refused
    }

    /// Adds what a provider's message reports to the session's usage.
    fn read_usage(&mut self, text: &[u8], usage: &mut Option<Tokens>) {
        if memchr::memmem::find(text, b"\"usage").is_none() {
            return;
        }
        let mut meter = Meter::new(Format::Json, false);
        meter.feed(text);
        let reading = meter.finish();
        if self.model.is_none() {
            self.model = reading.model;
        }
        if let Some(t) = reading.tokens {
            let sum = usage.get_or_insert(Tokens {
                input: 0,
                output: 0,
                cache_read: 0,
                cache_write: 0,
            });
            sum.input = sum.input.saturating_add(t.input);
            sum.output = sum.output.saturating_add(t.output);
            sum.cache_read = sum.cache_read.saturating_add(t.cache_read);
            sum.cache_write = sum.cache_write.saturating_add(t.cache_write);
        }
    }

    fn masked(&self, text: &str) -> String {
        match self
            .masker
            .as_ref()
            .and_then(|m| m.mask_whole(text.as_bytes()))
        {
            Some(masked) => String::from_utf8_lossy(&masked).into_owned(),
            None => text.to_owned(),
        }
    }

    /// Audits beside the session, not in its way.
    fn audit(&self, action: &'static str, mut details: serde_json::Value) {
        details["provider"] = json!(self.provider.id);
        details["served"] = json!(format!("{}:{}", self.served.0.as_str(), self.served.1));
        let event = NewEvent::new(
            &format!("gateway_token:{}", self.token),
            Category::SecretAccess,
            action,
            self.credential
                .as_ref()
                .map_or_else(|| self.served.1.clone(), |id| format!("credential:{id}")),
        )
        .org(Some(self.org.as_str()))
        .details(details);
        let vault = self.state.vault.serving().clone();
        tokio::spawn(async move {
            if let Err(e) = vault.record(event).await {
                tracing::warn!(error = %e, action, "cannot audit a realtime session");
            }
        });
    }
}

/// The close to send when a side's message could not be read: 1009 for one over the size
/// limit, 1002 otherwise.
fn read_failure(error: &str, whose: &str) -> (u16, String) {
    if error.contains("too long") || error.contains("Space limit") {
        (
            1009,
            format!("{whose} was larger than {} MiB", MAX_MESSAGE >> 20),
        )
    } else {
        (1002, format!("{whose} could not be read"))
    }
}

fn close(code: u16, reason: &str) -> tungstenite::Message {
    tungstenite::Message::Close(Some(tungstenite::protocol::CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

fn client_close(code: u16, reason: &str) -> ws::Message {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    ws::Message::Close(Some(ws::CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn realtime_routes_and_models() {
        let get = |id| Provider::get(id).unwrap();
        assert!(is_realtime_route(get("openai"), "v1/realtime"));
        assert!(is_realtime_route(get("openai"), "realtime"));
        assert!(!is_realtime_route(get("openai"), "v1/chat/completions"));
        assert!(is_realtime_route(get("azure_openai"), "openai/realtime"));
        assert!(is_realtime_route(get("azure_openai"), "openai/v1/realtime"));
        assert!(is_realtime_route(
            get("gemini"),
            "ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        ));
        assert!(!is_realtime_route(get("anthropic"), "v1/realtime"));
        assert_eq!(
            models_in_query(Some("model=gpt-realtime&x=1")),
            ["gpt-realtime"]
        );
        assert_eq!(
            models_in_query(Some("api-version=2025-04-01-preview&deployment=rt%2Dmini")),
            ["rt-mini"]
        );
        assert_eq!(models_in_query(Some("model=a&%6dodel=b")), ["a", "b"]);
        assert_eq!(
            ws_url("https://api.openai.com/v1", "v1/realtime", &["model=m"]),
            "wss://api.openai.com/v1/realtime?model=m"
        );
    }
}
