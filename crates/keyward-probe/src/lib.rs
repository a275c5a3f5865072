//! Key tests and model discovery: one authenticated request to the provider, through the
//! credential's base URL, to tell whether the key works, or which models it reaches.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub mod cloud;

use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use secrecy::{ExposeSecret as _, SecretString};

/// What a key test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// The provider accepted the key.
    Ok,
    /// The provider refused it (HTTP 401 or 403).
    Rejected(u16),
    /// The provider answered 429.
    RateLimited,
    /// No usable answer: connection failure, timeout, or an unexpected status.
    Unreachable(String),
    /// Keyward cannot test this provider's keys with a plain request.
    Unsupported(&'static str),
}

impl TestOutcome {
    /// Whether the key works.
    pub fn is_ok(&self) -> bool {
        *self == TestOutcome::Ok
    }
}

impl fmt::Display for TestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestOutcome::Ok => f.write_str("ok"),
            TestOutcome::Rejected(status) => write!(f, "rejected (HTTP {status})"),
            TestOutcome::RateLimited => f.write_str("rate limited"),
            TestOutcome::Unreachable(why) => write!(f, "unreachable: {why}"),
            TestOutcome::Unsupported(why) => write!(f, "unsupported: {why}"),
        }
    }
}

/// A header of the test request.
enum Header {
    /// Carries the key after a prefix (`Authorization: Bearer KEY`, `x-api-key: KEY`).
    Key(&'static str, &'static str),
    /// A fixed value.
    Fixed(&'static str, &'static str),
}

const BEARER: Header = Header::Key("authorization", "Bearer ");

/// What a request is for: a key test asks for the cheapest authenticated answer, discovery for
/// the model list (mostly the same endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Test,
    Models,
}

/// The request a key test or a discovery makes: URL and headers.
fn probe_request(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
    secret: Option<&SecretString>,
    purpose: Purpose,
) -> Result<(String, Vec<Header>), TestOutcome> {
    let models = purpose == Purpose::Models;
    let base = || {
        fields
            .get("base_url")
            .filter(|b| !b.is_empty())
            .cloned()
            .or_else(|| provider.default_base_url_for(fields))
            .map(|b| b.trim_end_matches('/').to_owned())
            .ok_or(TestOutcome::Unsupported("the credential has no base URL"))
    };
    Ok(match (provider.id, provider.auth) {
        // An access token (Vertex, Entra ID) or a signature (Bedrock) is added by `send`.
        (_, AuthStyle::ServiceAccount) => {
            let base = fields
                .get("base_url")
                .filter(|b| !b.is_empty())
                .cloned()
                .or_else(|| provider.upstream_base_url(fields))
                .ok_or(TestOutcome::Unsupported(
                    "the credential's location is not a Google Cloud location",
                ))?;
            let base = base.trim_end_matches('/');
            if models {
                (
                    format!("{base}/v1beta1/publishers/google/models"),
                    Vec::new(),
                )
            } else {
                // The project's own models: a 200 proves the token, the project and the
                // account's access to Vertex AI in it.
                let location = fields.get("location").filter(|l| !l.is_empty()).map_or(
                    keyward_core::provider::VERTEX_DEFAULT_LOCATION,
                    String::as_str,
                );
                let project = fields.get("project").filter(|p| !p.is_empty());
                let project = match project {
                    Some(p) => p.clone(),
                    None => secret.and_then(cloud::service_account_project).ok_or(
                        TestOutcome::Unsupported(
                            "the credential names no project, nor does its service account",
                        ),
                    )?,
                };
                if !project
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
                {
                    return Err(TestOutcome::Unsupported("the project is not a project id"));
                }
                (
                    format!("{base}/v1/projects/{project}/locations/{location}/models"),
                    Vec::new(),
                )
            }
        }
        (_, AuthStyle::AwsSigV4) => {
            // Bedrock's control plane lists the foundation models the key may use.
            let base = match fields.get("base_url").filter(|b| !b.is_empty()) {
                Some(b) => b.trim_end_matches('/').to_owned(),
                None => {
                    let region = fields
                        .get("region")
                        .filter(|r| keyward_core::provider::is_cloud_region(r))
                        .ok_or(TestOutcome::Unsupported("the credential has no region"))?;
                    format!("https://bedrock.{region}.amazonaws.com")
                }
            };
            (format!("{base}/foundation-models"), Vec::new())
        }
        ("azure_openai", _) => {
            let endpoint = fields
                .get("endpoint")
                .ok_or(TestOutcome::Unsupported("the credential has no endpoint"))?;
            let version = fields
                .get("api_version")
                .map_or("2024-10-21", String::as_str);
            (
                format!(
                    "{}/openai/models?api-version={version}",
                    endpoint.trim_end_matches('/')
                ),
                // An Entra ID app's token is added by `send`; a key goes as `api-key`.
                if provider.names_principal(fields) {
                    Vec::new()
                } else {
                    vec![Header::Key("api-key", "")]
                },
            )
        }
        ("cohere", _) => (format!("{}/v1/models", base()?), vec![BEARER]),
        // OpenRouter's model list is public; this endpoint describes the key, so needs it.
        ("openrouter", _) if !models => (format!("{}/key", base()?), vec![BEARER]),
        // PayPerQ lists its chat models only, unless asked for all.
        ("ppq", _) if models => (format!("{}/models?type=all", base()?), vec![BEARER]),
        ("ollama", _) => (format!("{}/api/tags", base()?), vec![BEARER]),
        (_, AuthStyle::XApiKey) => (
            format!(
                "{}/v1/models{}",
                base()?,
                if models { "?limit=1000" } else { "" }
            ),
            vec![
                Header::Key("x-api-key", ""),
                Header::Fixed("anthropic-version", "2023-06-01"),
            ],
        ),
        (_, AuthStyle::GoogApiKey) => (
            format!(
                "{}/v1beta/models{}",
                base()?,
                if models { "?pageSize=1000" } else { "" }
            ),
            vec![Header::Key("x-goog-api-key", "")],
        ),
        // ElevenLabs: the key's own account, or its models.
        (_, AuthStyle::XiApiKey) => (
            format!("{}/v1/{}", base()?, if models { "models" } else { "user" }),
            vec![Header::Key("xi-api-key", "")],
        ),
        // Deepgram: the key's projects, or its models.
        (_, AuthStyle::Token) => (
            format!("{}/{}", base()?, if models { "models" } else { "projects" }),
            vec![Header::Key("authorization", "Token ")],
        ),
        (_, AuthStyle::Bearer) => (format!("{}/models", base()?), vec![BEARER]),
        (_, AuthStyle::ApiKeyHeader | AuthStyle::None) => {
            (format!("{}/models", base()?), Vec::new())
        }
    })
}

/// Tests a key: GET the provider's cheap authenticated endpoint (OpenAI-style `{base}/models`,
/// Anthropic `{base}/v1/models`, Gemini `{base}/v1beta/models`, Azure
/// `{endpoint}/openai/models`, Ollama `{base}/api/tags`) and classify the answer.
pub async fn test_key(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
    secret: Option<&SecretString>,
    timeout: Duration,
    endpoints: &cloud::TokenEndpoints,
) -> TestOutcome {
    match send(provider, fields, secret, timeout, endpoints, Purpose::Test).await {
        Ok(_) => TestOutcome::Ok,
        Err(outcome) => outcome,
    }
}

/// The most of a model list that is read (OpenRouter's, the longest, is about 1 MiB).
const MODEL_LIST_LIMIT: usize = 8 << 20;

/// Lists the models a key reaches, by name, sorted: the same request as [`test_key`] (the
/// provider's model list; PayPerQ's of every type, Anthropic's and Gemini's first 1000), read
/// up to 8 MiB. A name that holds the key (an upstream that echoes it, however spaced or
/// cased), or anything but printable ASCII, is left out; one that looks like a key is masked. When the list cannot be had, what a key test would have said.
pub async fn discover_models(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
    secret: Option<&SecretString>,
    timeout: Duration,
    endpoints: &cloud::TokenEndpoints,
) -> Result<Vec<String>, TestOutcome> {
    let mut resp = send(
        provider,
        fields,
        secret,
        timeout,
        endpoints,
        Purpose::Models,
    )
    .await?;
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MODEL_LIST_LIMIT => {
                body.extend_from_slice(&chunk);
            }
            Ok(Some(_)) => {
                return Err(TestOutcome::Unreachable(format!(
                    "the model list is larger than {} MiB",
                    MODEL_LIST_LIMIT >> 20
                )));
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return Err(TestOutcome::Unreachable(format!(
                    "no whole model list within {timeout:?}"
                )));
            }
            Err(e) => {
                return Err(TestOutcome::Unreachable(format!(
                    "the model list broke off: {}",
                    e.without_url()
                )));
            }
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| TestOutcome::Unreachable("the model list is not JSON".to_owned()))?;
    // The key as a name would hold it however spaced, cased or punctuated.
    let letters = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let key = letters(secret.map_or("", |s| s.expose_secret()));
    let mut names: Vec<String> = model_names(&value)
        .into_iter()
        .map(|n| {
            // Vertex AI's `publishers/google/models/gemini-2.0-flash`, Gemini's `models/...`.
            let n = match n.strip_prefix("publishers/") {
                Some(rest) => rest.split_once('/').map_or(rest, |(_, r)| r),
                None => n,
            };
            n.strip_prefix("models/").unwrap_or(n)
        })
        // Model names are printable ASCII (`gpt-4o`, `llama3:8b`, `accounts/x/models/y`): any
        // other character may disguise a key (full-width letters, tag characters) or make a
        // name look like another (joiners, variation selectors, text direction).
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 256
                && n.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                && (key.len() < 8 || !letters(n).contains(&key))
        })
        .map(keyward_core::secret_like::scrub)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The headers that authenticate a test of a credential that is exchanged or signed (none for
/// a plain key, which the request's own headers carry).
async fn cloud_auth(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
    secret: &SecretString,
    url: &str,
    client: &reqwest::Client,
    endpoints: &cloud::TokenEndpoints,
) -> Result<Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>, TestOutcome> {
    use reqwest::header::AUTHORIZATION;
    let field = |n: &str| fields.get(n).map(String::as_str).filter(|v| !v.is_empty());
    let token = match provider.auth {
        AuthStyle::ServiceAccount => {
            cloud::ServiceAccount::parse(secret)
                .map_err(grant_outcome)?
                .access_token(client, endpoints)
                .await
                .map_err(grant_outcome)?
                .token
        }
        AuthStyle::AwsSigV4 => {
            let (Some(access_key_id), Some(region)) = (field("access_key_id"), field("region"))
            else {
                // A Bedrock API key; AWS credentials without their access key id are not one.
                if secret.expose_secret().starts_with('{') {
                    return Err(TestOutcome::Unsupported(
                        "temporary AWS credentials need their access key id (the access_key_id field)",
                    ));
                }
                return Ok(vec![(AUTHORIZATION, bearer(secret.expose_secret())?)]);
            };
            let opened = keyward_core::credential::AwsSecret::open(secret);
            let key = cloud::AwsKey {
                access_key_id,
                secret: &opened.secret_access_key,
                session_token: opened.session_token.as_ref(),
                region,
            };
            return key
                .sign(
                    "bedrock",
                    "GET",
                    url,
                    &[],
                    b"",
                    std::time::SystemTime::now(),
                )
                .map_err(|_| TestOutcome::Unreachable("the request cannot be signed".into()));
        }
        _ if provider.names_principal(fields) => {
            cloud::EntraApp {
                tenant: field("tenant_id").unwrap_or(""),
                client_id: field("client_id").unwrap_or(""),
                secret,
            }
            .access_token(client, endpoints)
            .await
            .map_err(grant_outcome)?
            .token
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![(AUTHORIZATION, bearer(token.expose_secret())?)])
}

fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, TestOutcome> {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| TestOutcome::Unreachable("the key is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// A token endpoint's refusal is the credential's; any other failure leaves it untested.
fn grant_outcome(e: cloud::GrantError) -> TestOutcome {
    match e {
        cloud::GrantError::Refused { status, .. } => TestOutcome::Rejected(status),
        other => TestOutcome::Unreachable(other.to_string()),
    }
}

/// The names in a model list, in the shapes providers answer: OpenAI's `data[].id`,
/// Gemini's, Cohere's and Ollama's `models[].name`, ElevenLabs' top-level `[].model_id`,
/// Deepgram's `stt[]`/`tts[]` `.canonical_name`.
fn model_names(value: &serde_json::Value) -> Vec<&str> {
    const LISTS: [&str; 6] = [
        "data",
        "models",
        "stt",
        "tts",
        "modelSummaries",
        "publisherModels",
    ];
    const NAMES: [&str; 6] = [
        "id",
        "model_id",
        "modelId",
        "name",
        "model",
        "canonical_name",
    ];
    let items = match value {
        serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
        _ => LISTS
            .iter()
            .filter_map(|l| value.get(l)?.as_array())
            .flatten()
            .collect(),
    };
    items
        .into_iter()
        .filter_map(|item| NAMES.iter().find_map(|n| item.get(n)?.as_str()))
        .collect()
}

/// Sends the request of `purpose`: the answer when it is a success, else what it means for
/// the key.
async fn send(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
    secret: Option<&SecretString>,
    timeout: Duration,
    endpoints: &cloud::TokenEndpoints,
    purpose: Purpose,
) -> Result<reqwest::Response, TestOutcome> {
    let (url, headers) = probe_request(provider, fields, secret, purpose)?;
    // Several crates may race to install a process-wide default; any of them will do.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Never follow a redirect: custom key headers (x-api-key, x-goog-api-key, api-key) would
    // go along to whatever host it names.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TestOutcome::Unreachable(format!("cannot build an HTTP client: {e}")))?;
    let mut req = client.get(&url);
    if let Some(secret) = secret {
        for (name, value) in cloud_auth(provider, fields, secret, &url, &client, endpoints).await? {
            req = req.header(name, value);
        }
    }
    let key = secret.map_or("", |s| s.expose_secret());
    for header in headers {
        let (name, value) = match header {
            Header::Fixed(name, value) => (name, value.to_owned()),
            // A provider that needs no key (a local Ollama) is tested without one.
            Header::Key(_, _) if key.is_empty() => continue,
            Header::Key(name, prefix) => (name, format!("{prefix}{key}")),
        };
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(&value) else {
            return Err(TestOutcome::Unreachable(
                "the key is not a valid header value".into(),
            ));
        };
        // Marked sensitive so that no debug output of the request shows it.
        value.set_sensitive(true);
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            Err(match status.as_u16() {
                200..=299 => return Ok(resp),
                401 | 403 => TestOutcome::Rejected(status.as_u16()),
                // Gemini answers an invalid key with 400 API_KEY_INVALID.
                400 if provider.auth == AuthStyle::GoogApiKey => {
                    TestOutcome::Rejected(status.as_u16())
                }
                429 => TestOutcome::RateLimited,
                300..=399 => TestOutcome::Unreachable(format!(
                    "HTTP {} redirect from {url} (not followed, so the key stays with the configured host)",
                    status.as_u16()
                )),
                code => TestOutcome::Unreachable(format!("HTTP {code} from {url}")),
            })
        }
        Err(e) if e.is_timeout() => Err(TestOutcome::Unreachable(format!(
            "no answer from {url} within {timeout:?}"
        ))),
        Err(e) => {
            let e = e.without_url();
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            Err(TestOutcome::Unreachable(format!("{url}: {why}")))
        }
    }
}
