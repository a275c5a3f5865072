//! The request on its way upstream: sent to each candidate in turn until one answers, failing
//! over to the next key on a refused or rate-limited key or on no connection, and counted
//! against the gateway token.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use keyward_core::provider::AuthStyle;
use keyward_core::{OrgId, Provider};
use keyward_store::{GATEWAY_TOKEN_PREFIX, GatewayTokenView, UsageSubject};
use tracing::Instrument as _;

use super::allowance;
use super::answers::{body_fault_answer, provider_error};
use super::budgets::Ticket;
use super::candidates::{Served, Upstream};
use super::cloud::{self, Unauthorized};
use super::cooldown::KeyHealth;
use super::headers::outgoing_headers;
use super::relay::{Bill, relay};
use super::token::gateway_token;
use super::{Admitted, Gateway, MAX_BODY, body, guard, raw_tail};
use crate::AppState;

/// [`try_upstreams`], counted against the gateway token with the status its client gets.
#[allow(clippy::too_many_arguments)]
pub(super) async fn proxy(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
    upstreams: Vec<Upstream<'_>>,
    parts: axum::http::request::Parts,
    body: Body,
    skip: usize,
    admitted: Admitted,
) -> Response {
    let response = try_upstreams(
        state, provider, view, upstreams, parts, body, skip, admitted,
    )
    .await;
    state.shared.gateway.usage.record(
        UsageSubject::GatewayToken,
        &view.id,
        &view.org,
        provider.id,
        response.status().as_u16(),
    );
    response
}

/// Sends the request to each upstream in turn until one answers: on 401/403 the key is marked
/// failing and the request goes once more to the next; on 429 the key cools down for
/// Retry-After and the next is tried; when no connection can be made the next is tried. A
/// credential whose own budget is spent is passed over.
#[allow(clippy::too_many_arguments)]
async fn try_upstreams(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
    upstreams: Vec<Upstream<'_>>,
    parts: axum::http::request::Parts,
    body: Body,
    skip: usize,
    admitted: Admitted,
) -> Response {
    let Admitted {
        mut ticket,
        hide_usage_chunk,
    } = admitted;
    let gw = &state.shared.gateway;

    // The request's headers, less connection-level ones and any key; the query, less `key=`.
    let mut parts = parts;
    // The path as the client sent it, percent-escapes and all, after the route's own segments
    // (`gateway/{provider}` or `gateway/t/{target}`): decoding it would change what it means.
    let path = raw_tail(parts.uri.path(), skip);
    let presented = gateway_token(
        provider,
        &parts.headers,
        parts.uri.query(),
        state.shared.workloads.serves_gateway(),
    )
    .map(str::to_owned);
    let mut headers = outgoing_headers(std::mem::take(&mut parts.headers), presented.as_deref());
    let mut query = outgoing_query(&parts.uri);
    if provider.auth == AuthStyle::ServiceAccount {
        // Google reads these as the project billed and charged quota: the credential's
        // project is, not one the client names.
        headers.remove("x-goog-user-project");
        query.retain(|kv| {
            let name = kv.split_once('=').map_or(*kv, |(k, _)| k);
            percent_encoding::percent_decode_str(name).decode_utf8_lossy() != "userProject"
        });
    }
    if presented.as_deref().is_some_and(|t| guard::holds(path, t)) {
        return provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            "the request path holds the gateway token; send it only in the auth header",
        );
    }

    // SigV4 signs the body's digest, so a Bedrock body is read whole before it is sent.
    let keep = upstreams.len() > 1 || provider.auth == AuthStyle::AwsSigV4;
    let mut bodies = match RequestBody::new(body, keep).await {
        Ok(b) => b,
        Err(fault) => return body_fault_answer(provider, fault),
    };

    let mut health = KeyHealth::new(state, provider, view);
    let mut last: Option<Response> = None;
    let total = upstreams.len();
    for (i, up) in upstreams.into_iter().enumerate() {
        let more = i + 1 < total;
        let (subject, served_id) = up.served.usage_subject();
        // One span per attempt: which key (by id), what came of it.
        let attempt = tracing::info_span!(
            "gateway.upstream",
            otel.kind = "client",
            keyward.provider = provider.id,
            keyward.attempt = i64::try_from(i + 1).unwrap_or(i64::MAX),
            keyward.served = served_id,
            http.request.method = %parts.method,
            http.response.status_code = tracing::field::Empty,
            keyward.outcome = tracing::field::Empty,
        );
        // The credential's own budget, held for this try only.
        let mut try_ticket = Ticket::default();
        if let Served::Credential(id) = &up.served {
            let limits = gw.budgets.for_credential(id.as_str());
            if let Err(refused) =
                allowance::admit(state, provider, view, &limits, &mut try_ticket).await
            {
                last = Some(refused);
                continue;
            }
        }
        // Vertex AI's paths name the credential's project and location.
        let vertex;
        let path = if provider.auth == AuthStyle::ServiceAccount {
            let Some((project, location)) = cloud::vertex_scope(up.fields, up.key) else {
                tracing::warn!(
                    provider = provider.id,
                    served = served_id,
                    "skipping a Vertex AI credential without a project (or with a location that is not one)"
                );
                continue;
            };
            vertex = cloud::vertex_path(path, &project, &location);
            vertex.as_str()
        } else {
            path
        };
        let url = upstream_url(up.base, path, &query);
        // The last try takes the headers; earlier ones copy them.
        let mut headers = if more {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        let this_try = cloud::Try {
            provider,
            key: up.key,
            fields: up.fields,
            method: &parts.method,
            url: &url,
            headers: &headers,
            body: bodies.kept(),
        };
        let authorized = match gw.access.authorize(&this_try).await {
            Ok(a) => a,
            Err(e) => match unauthorized(gw, provider, view, &mut health, &up, e, more) {
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
        let body = bodies.next();
        let Ok(mut upstream) = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(&url)
            .body(body)
        else {
            return provider_error(
                provider,
                StatusCode::BAD_REQUEST,
                "the request path does not make a valid URL",
            );
        };
        crate::telemetry::propagate(&attempt, &mut headers);
        *upstream.headers_mut() = headers;
        let response = match gw
            .send(upstream, provider, &view.org, (subject, served_id), more)
            .instrument(attempt.clone())
            .await
        {
            Sent::Answered(r) => r,
            Sent::Unreachable(answer) => {
                attempt.record("keyward.outcome", "unreachable");
                last = Some(answer);
                continue;
            }
            Sent::Final(answer) => {
                attempt.record("keyward.outcome", "failed");
                return answer;
            }
        };
        let status = response.status();
        attempt.record("http.response.status_code", i64::from(status.as_u16()));
        gw.usage
            .record(subject, served_id, &view.org, provider.id, status.as_u16());
        if status == StatusCode::UNAUTHORIZED {
            gw.access.refused(&cloud::Try {
                provider,
                key: up.key,
                fields: up.fields,
                method: &parts.method,
                url: &url,
                headers: &HeaderMap::new(),
                body: None,
            });
        }
        if let Served::Credential(id) = &up.served
            && health.after_answer(id, status, response.headers(), more)
        {
            attempt.record("keyward.outcome", "failover");
            continue;
        }
        attempt.record("keyward.outcome", "answered");
        ticket.absorb(try_ticket);
        let bill = Bill {
            gateway: gw.clone(),
            org: view.org.clone(),
            token: view.id.clone(),
            method: parts.method.clone(),
            ticket,
            hide_usage_chunk,
            // Bedrock's answers do not name their model; its path does.
            model: (provider.auth == AuthStyle::AwsSigV4)
                .then(|| bedrock_model(path))
                .flatten(),
        };
        return relay(
            response,
            &up,
            authorized.sent.as_ref(),
            provider,
            parts.version,
            gw.options().idle_timeout,
            bill,
        );
    }
    last.unwrap_or_else(|| {
        provider_error(
            provider,
            StatusCode::BAD_GATEWAY,
            "no key of this organization could serve the request",
        )
    })
}

/// The model id of a Bedrock path (`model/{modelId}/converse`), decoded.
fn bedrock_model(path: &str) -> Option<String> {
    let id = path.strip_prefix("model/")?.split('/').next()?;
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()?;
    super::meter::is_model_name(&id).then(|| id.into_owned())
}

/// Where a try that could not be authenticated leaves the request.
pub(super) enum Skip {
    /// On to the next key; the answer to give if there is none.
    Next(Option<Response>),
    /// No further: this is the answer.
    Stop(Response),
}

/// What comes of a try whose credential could not be authenticated: one that cannot be used
/// as stored is passed over (logged); one the token endpoint refused counts as a key the
/// provider refused (set aside, and the request goes once more to the next); an endpoint that
/// cannot be reached, as a provider that cannot be.
pub(super) fn unauthorized(
    gw: &Gateway,
    provider: &'static Provider,
    view: &GatewayTokenView,
    health: &mut KeyHealth<'_>,
    up: &Upstream<'_>,
    why: Unauthorized,
    more: bool,
) -> Skip {
    let (subject, served_id) = up.served.usage_subject();
    match why {
        Unauthorized::Unusable(why) => {
            tracing::warn!(
                provider = provider.id,
                served = served_id,
                why,
                "skipping a credential that cannot authenticate a request"
            );
            Skip::Next(None)
        }
        Unauthorized::Refused(e) => {
            tracing::debug!(provider = provider.id, served = served_id, error = %e, "the token endpoint refused a credential");
            gw.usage
                .record(subject, served_id, &view.org, provider.id, 401);
            let answer = provider_error(
                provider,
                StatusCode::UNAUTHORIZED,
                "the provider's token endpoint refused this organization's credential",
            );
            match &up.served {
                Served::Credential(id)
                    if health.after_answer(
                        id,
                        StatusCode::UNAUTHORIZED,
                        &HeaderMap::new(),
                        more,
                    ) =>
                {
                    Skip::Next(Some(answer))
                }
                _ => Skip::Stop(answer),
            }
        }
        Unauthorized::Unreachable(e) => {
            tracing::debug!(provider = provider.id, served = served_id, error = %e, "no access token");
            gw.usage
                .record(subject, served_id, &view.org, provider.id, 0);
            Skip::Next(Some(provider_error(
                provider,
                StatusCode::BAD_GATEWAY,
                "the provider's token endpoint did not give a token",
            )))
        }
    }
}

/// The client's query as it goes upstream: less `key=` and any parameter carrying a gateway
/// token.
fn outgoing_query(uri: &Uri) -> Vec<&str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| {
            !kv.is_empty() && !kv.starts_with("key=") && !guard::holds(kv, GATEWAY_TOKEN_PREFIX)
        })
        .collect()
}

/// Where a try goes: `path` under the upstream's `base`, with the query.
fn upstream_url(base: &str, path: &str, query: &[&str]) -> String {
    let mut url = join(base, path);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// The client's body for each try. It streams through when there is one key to try; with
/// several, it is kept (bounded) so that it can be sent again to the next one.
enum RequestBody {
    Streamed(Option<Body>),
    Kept(bytes::Bytes),
}

impl RequestBody {
    /// The body, kept whole (`keep`: for several tries, or to be signed) or streamed through;
    /// or why it could not be read.
    async fn new(body: Body, keep: bool) -> Result<Self, Option<body::BodyFault>> {
        let streamed = body::client_body(body, MAX_BODY);
        if keep {
            match axum::body::to_bytes(streamed, usize::MAX).await {
                Ok(b) => Ok(RequestBody::Kept(b)),
                Err(e) => Err(body::body_fault(&e)),
            }
        } else {
            Ok(RequestBody::Streamed(Some(streamed)))
        }
    }

    /// The whole body, when it is kept.
    fn kept(&self) -> Option<&[u8]> {
        match self {
            RequestBody::Kept(b) => Some(b),
            RequestBody::Streamed(_) => None,
        }
    }

    /// The body for the next try (a streamed body goes once; an empty one after that).
    fn next(&mut self) -> Body {
        match self {
            RequestBody::Kept(b) => Body::from(b.clone()),
            RequestBody::Streamed(streamed) => streamed.take().unwrap_or_default(),
        }
    }
}

/// What came of one try.
enum Sent {
    /// The provider answered (whatever the status).
    Answered(axum::http::Response<hyper::body::Incoming>),
    /// No connection could be made: the next key may be tried, and this is the answer if none
    /// is left.
    Unreachable(Response),
    /// The answer to give now: the client's body broke, or the request may have reached the
    /// provider.
    Final(Response),
}

impl Gateway {
    /// Sends one try, waiting for the answer's headers at most the first-byte timeout; counts a
    /// try that got no answer against what served it (`served`: its usage subject and id).
    async fn send(
        &self,
        upstream: axum::http::Request<Body>,
        provider: &'static Provider,
        org: &OrgId,
        served: (UsageSubject, &str),
        more: bool,
    ) -> Sent {
        let (subject, served_id) = served;
        let outcome = tokio::time::timeout(
            self.options.first_byte_timeout,
            self.client.request(upstream),
        )
        .await;
        // Only a request that never reached the provider (no connection) goes on to the next
        // key: one that may have been received is not sent twice (it could be generated, and
        // billed, twice).
        match outcome {
            Ok(Ok(r)) => Sent::Answered(r),
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(provider = provider.id, served = served_id, error = %e, "cannot connect to the provider");
                self.usage.record(subject, served_id, org, provider.id, 0);
                if more {
                    self.count("failovers", provider.id, "unreachable");
                }
                Sent::Unreachable(provider_error(
                    provider,
                    StatusCode::BAD_GATEWAY,
                    "the provider could not be reached",
                ))
            }
            Ok(Err(e)) if body::body_fault(&e).is_some() => {
                Sent::Final(body_fault_answer(provider, body::body_fault(&e)))
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = provider.id, served = served_id, error = %e, "the provider's answer failed");
                self.usage.record(subject, served_id, org, provider.id, 0);
                Sent::Final(provider_error(
                    provider,
                    StatusCode::BAD_GATEWAY,
                    "the provider's answer failed",
                ))
            }
            Err(_) => {
                tracing::warn!(
                    provider = provider.id,
                    served = served_id,
                    "upstream did not answer in time"
                );
                self.usage.record(subject, served_id, org, provider.id, 0);
                Sent::Final(provider_error(
                    provider,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the provider did not answer in time",
                ))
            }
        }
    }
}

/// `{base}/{path}`, without repeating what both hold: a credential's base URL usually ends in
/// the API version (`https://api.openai.com/v1`, so that SDKs reading `OPENAI_BASE_URL` work),
/// and an SDK pointed at `/gateway/openai/v1` sends `v1/chat/completions`. The longest run of
/// path segments that ends the base and starts the path is written once.
pub(crate) fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    let base_path_start = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    let base_segments: Vec<&str> = base[base_path_start..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    let overlap = (1..=base_segments.len().min(path_segments.len()))
        .rev()
        .find(|&n| base_segments[base_segments.len() - n..] == path_segments[..n])
        .unwrap_or(0);
    let rest = path_segments[overlap..].join("/");
    if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn joining_writes_a_shared_version_segment_once() {
        let cases = [
            (
                "https://api.openai.com/v1",
                "v1/chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "https://api.openai.com/v1/",
                "chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "https://api.anthropic.com",
                "v1/messages",
                "https://api.anthropic.com/v1/messages",
            ),
            (
                "https://openrouter.ai/api/v1",
                "v1/models",
                "https://openrouter.ai/api/v1/models",
            ),
            (
                "http://127.0.0.1:11434",
                "v1/chat/completions",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
            (
                "https://x.openai.azure.com",
                "openai/deployments/d/chat/completions",
                "https://x.openai.azure.com/openai/deployments/d/chat/completions",
            ),
            ("https://h/a/b", "a/b/c", "https://h/a/b/c"),
            ("https://h/v1", "v1", "https://h/v1"),
        ];
        for (base, path, want) in cases {
            assert_eq!(join(base, path), want, "{base} + {path}");
        }
    }
}
