//! Key tests: one cheap authenticated request to the provider, through the credential's base
//! URL, to tell whether the key works.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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

/// The request a key test makes: URL and headers.
fn probe_request(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
) -> Result<(String, Vec<Header>), TestOutcome> {
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
                vec![Header::Key("api-key", "")],
            )
        }
        ("cohere", _) => (format!("{}/v1/models", base()?), vec![BEARER]),
        // OpenRouter's model list is public; this endpoint describes the key, so needs it.
        ("openrouter", _) => (format!("{}/key", base()?), vec![BEARER]),
        ("ollama", _) => (format!("{}/api/tags", base()?), vec![BEARER]),
        (_, AuthStyle::XApiKey) => (
            format!("{}/v1/models", base()?),
            vec![
                Header::Key("x-api-key", ""),
                Header::Fixed("anthropic-version", "2023-06-01"),
            ],
        ),
        (_, AuthStyle::GoogApiKey) => (
            format!("{}/v1beta/models", base()?),
            vec![Header::Key("x-goog-api-key", "")],
        ),
        // ElevenLabs: the key's own account.
        (_, AuthStyle::XiApiKey) => (
            format!("{}/v1/user", base()?),
            vec![Header::Key("xi-api-key", "")],
        ),
        // Deepgram: the key's projects.
        (_, AuthStyle::Token) => (
            format!("{}/projects", base()?),
            vec![Header::Key("authorization", "Token ")],
        ),
        (_, AuthStyle::Bearer) => (format!("{}/models", base()?), vec![BEARER]),
        (_, AuthStyle::ServiceAccount) => {
            return Err(TestOutcome::Unsupported(
                "Vertex keys need an OAuth token exchange; test them with gcloud",
            ));
        }
        (_, AuthStyle::AwsSigV4) => {
            return Err(TestOutcome::Unsupported(
                "Bedrock keys need AWS request signing; test them with the AWS CLI",
            ));
        }
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
) -> TestOutcome {
    let (url, headers) = match probe_request(provider, fields) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    // Several crates may race to install a process-wide default; any of them will do.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Never follow a redirect: custom key headers (x-api-key, x-goog-api-key, api-key) would
    // go along to whatever host it names.
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return TestOutcome::Unreachable(format!("cannot build an HTTP client: {e}")),
    };
    let mut req = client.get(&url);
    let key = secret.map_or("", |s| s.expose_secret());
    for header in headers {
        let (name, value) = match header {
            Header::Fixed(name, value) => (name, value.to_owned()),
            // A provider that needs no key (a local Ollama) is tested without one.
            Header::Key(_, _) if key.is_empty() => continue,
            Header::Key(name, prefix) => (name, format!("{prefix}{key}")),
        };
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(&value) else {
            return TestOutcome::Unreachable("the key is not a valid header value".into());
        };
        // Marked sensitive so that no debug output of the request shows it.
        value.set_sensitive(true);
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            match status.as_u16() {
                200..=299 => TestOutcome::Ok,
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
            }
        }
        Err(e) if e.is_timeout() => {
            TestOutcome::Unreachable(format!("no answer from {url} within {timeout:?}"))
        }
        Err(e) => {
            let e = e.without_url();
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            TestOutcome::Unreachable(format!("{url}: {why}"))
        }
    }
}
