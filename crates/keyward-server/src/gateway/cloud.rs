//! How each try authenticates upstream when the credential is not a key sent as it is: a
//! Vertex AI service account and an Azure Entra ID app are exchanged for an access token
//! (cached per credential until shortly before it expires, fetched once for concurrent
//! requests), an AWS access key signs the request (SigV4). Also Vertex's paths, which name
//! the credential's project and location.
//!
//! The secret the credential holds never goes upstream: only the access token (Vertex, Entra)
//! or a signature (AWS) does, and that is what the answer is masked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use keyward_probe::cloud::{AwsKey, EntraApp, GrantError, ServiceAccount, TokenEndpoints};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use super::headers::auth_header;

/// A token is fetched again this long before it expires (google-auth: 3 min 45 s).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The longest wait for a token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Above this many cached tokens, expired ones are dropped when another is added.
const PRUNE_ABOVE: usize = 1024;

/// Access tokens by credential: the key is a digest of what the token was minted from (the
/// service-account file, or the tenant, app and secret), so a rotated secret gets a token of
/// its own and never another's.
pub(super) struct AccessTokens {
    client: reqwest::Client,
    endpoints: TokenEndpoints,
    map: Mutex<HashMap<[u8; 32], Slot>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

enum Cached {
    Token {
        token: SecretString,
        refresh_at: Instant,
    },
    /// The last fetch failed: requests until `until` get the same failure instead of asking
    /// again (one after another, each waiting for the endpoint).
    Failed { error: GrantError, until: Instant },
}

/// How long a failed token fetch is answered from memory.
const FAILURE_HOLD: Duration = Duration::from_secs(5);

impl AccessTokens {
    pub(super) fn new(endpoints: TokenEndpoints) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A token endpoint that redirects is not followed: the assertion or the client secret
        // would go along.
        let client = reqwest::Client::builder()
            .timeout(TOKEN_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            endpoints,
            map: Mutex::default(),
        }
    }

    fn slot(&self, key: [u8; 32]) -> Slot {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > PRUNE_ABOVE && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, slot| {
                slot.try_lock().map_or(true, |c| match c.as_ref() {
                    Some(Cached::Token { refresh_at, .. }) => *refresh_at > now,
                    Some(Cached::Failed { until, .. }) => *until > now,
                    None => false,
                })
            });
        }
        map.entry(key).or_default().clone()
    }

    /// The token for `grant`: the cached one while it is fresh, else a new one, fetched once
    /// however many requests ask at the same time.
    async fn token(&self, grant: &Grant<'_>) -> Result<SecretString, GrantError> {
        let slot = self.slot(grant.cache_key());
        let mut cached = slot.lock().await;
        let now = Instant::now();
        match cached.as_ref() {
            Some(Cached::Token { token, refresh_at }) if *refresh_at > now => {
                return Ok(token.clone());
            }
            Some(Cached::Failed { error, until }) if *until > now => return Err(error.clone()),
            _ => {}
        }
        let fetched = match grant {
            Grant::Google(sa) => match ServiceAccount::parse(sa) {
                Ok(sa) => sa.access_token(&self.client, &self.endpoints).await,
                Err(e) => Err(e),
            },
            Grant::Entra(app) => app.access_token(&self.client, &self.endpoints).await,
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(error) => {
                // Logged once a fetch; requests answered from the memory of it are not.
                tracing::warn!(error = %error, "no access token");
                *cached = Some(Cached::Failed {
                    error: error.clone(),
                    until: Instant::now() + FAILURE_HOLD,
                });
                return Err(error);
            }
        };
        let fresh_for = match fetched.lifetime.saturating_sub(REFRESH_MARGIN) {
            Duration::ZERO => fetched.lifetime / 2,
            d => d,
        };
        *cached = Some(Cached::Token {
            token: fetched.token.clone(),
            refresh_at: Instant::now() + fresh_for,
        });
        Ok(fetched.token)
    }

    /// Drops the token of `grant` (the provider refused it): the next request fetches one.
    fn forget(&self, grant: &Grant<'_>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&grant.cache_key());
    }
}

/// What an access token is minted from.
enum Grant<'a> {
    Google(&'a SecretString),
    Entra(EntraApp<'a>),
}

impl Grant<'_> {
    fn cache_key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            Grant::Google(sa) => {
                h.update(b"google\0");
                h.update(sa.expose_secret().as_bytes());
            }
            Grant::Entra(app) => {
                for part in [
                    "entra",
                    app.tenant,
                    app.client_id,
                    app.secret.expose_secret(),
                ] {
                    h.update(part.as_bytes());
                    h.update(b"\0");
                }
            }
        }
        h.finalize().into()
    }
}

/// The headers one try is authenticated with, and the secret they carry (what the answer is
/// masked for; `None` when nothing secret went: a signature, or no key).
pub(super) struct Authorized {
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) sent: Option<SecretString>,
}

/// Why a try could not be authenticated.
pub(super) enum Unauthorized {
    /// The credential cannot be used as stored (logged; the next is tried).
    Unusable(String),
    /// The token endpoint refused it: counted like a key the provider refused.
    Refused(GrantError),
    /// The token endpoint did not answer: like a provider that cannot be reached.
    Unreachable(GrantError),
}

/// What a try needs to be authenticated: the credential's key and fields, and the request as
/// it goes (for SigV4, which signs it).
pub(super) struct Try<'a> {
    pub(super) provider: &'static Provider,
    pub(super) key: Option<&'a SecretString>,
    pub(super) fields: Option<&'a BTreeMap<String, String>>,
    pub(super) method: &'a Method,
    pub(super) url: &'a str,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: Option<&'a [u8]>,
}

impl Try<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields?
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn grant(&self) -> Option<Grant<'_>> {
        let key = self.key?;
        if self.provider.auth == AuthStyle::ServiceAccount {
            return Some(Grant::Google(key));
        }
        let names = self
            .fields
            .is_some_and(|f| self.provider.names_principal(f));
        names.then(|| {
            Grant::Entra(EntraApp {
                tenant: self.field("tenant_id").unwrap_or(""),
                client_id: self.field("client_id").unwrap_or(""),
                secret: key,
            })
        })
    }
}

impl AccessTokens {
    /// The headers that authenticate `t`.
    pub(super) async fn authorize(&self, t: &Try<'_>) -> Result<Authorized, Unauthorized> {
        let Some(key) = t.key else {
            return Ok(Authorized {
                headers: Vec::new(),
                sent: None,
            });
        };
        if let Some(grant) = t.grant() {
            let token = self.token(&grant).await.map_err(|e| match e {
                GrantError::Invalid(why) => Unauthorized::Unusable(why),
                refused @ GrantError::Refused { .. } => Unauthorized::Refused(refused),
                other => Unauthorized::Unreachable(other),
            })?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| Unauthorized::Unusable("the access token is not a header".into()))?;
            value.set_sensitive(true);
            return Ok(Authorized {
                headers: vec![(header::AUTHORIZATION, value)],
                sent: Some(token),
            });
        }
        if t.provider.auth == AuthStyle::AwsSigV4
            && let (Some(access_key_id), Some(region)) =
                (t.field("access_key_id"), t.field("region"))
        {
            return sign_aws(t, key, access_key_id, region);
        }
        // A Bedrock API key, and every provider's plain key. AWS credentials whose access key
        // id is missing are not a Bedrock API key: they are never sent as they are.
        if t.provider.auth == AuthStyle::AwsSigV4 && key.expose_secret().starts_with('{') {
            return Err(Unauthorized::Unusable(
                "temporary AWS credentials without their access key id".into(),
            ));
        }
        let (name, value) = if t.provider.auth == AuthStyle::AwsSigV4 {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| Unauthorized::Unusable("the key cannot be sent in a header".into()))?;
            v.set_sensitive(true);
            (header::AUTHORIZATION, v)
        } else {
            auth_header(t.provider, key)
                .map_err(|()| Unauthorized::Unusable("the key cannot be sent in a header".into()))?
        };
        Ok(Authorized {
            headers: vec![(name, value)],
            sent: Some(key.clone()),
        })
    }

    /// Drops the access token `t` was sent with, after the provider said it is not valid
    /// (401; a 403 is about what the token may do, not the token).
    pub(super) fn refused(&self, t: &Try<'_>) {
        if let Some(grant) = t.grant() {
            self.forget(&grant);
        }
    }
}

/// The headers SigV4 signs besides `host`: those the request carries that AWS reads.
const SIGNED: [&str; 2] = ["content-type", "accept"];

fn sign_aws(
    t: &Try<'_>,
    secret: &SecretString,
    access_key_id: &str,
    region: &str,
) -> Result<Authorized, Unauthorized> {
    let signed: Vec<(&str, &str)> = t
        .headers
        .iter()
        .filter(|(n, _)| SIGNED.contains(&n.as_str()) || n.as_str().starts_with("x-amz-"))
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let opened = keyward_core::credential::AwsSecret::open(secret);
    let key = AwsKey {
        access_key_id,
        secret: &opened.secret_access_key,
        session_token: opened.session_token.as_ref(),
        region,
    };
    let headers = key
        .sign(
            "bedrock",
            t.method.as_str(),
            t.url,
            &signed,
            t.body.unwrap_or_default(),
            SystemTime::now(),
        )
        .map_err(|_| Unauthorized::Unusable("the request cannot be signed".into()))?;
    // The secret key never leaves: a signature does. A session token goes as it is.
    Ok(Authorized {
        headers,
        sent: opened.session_token,
    })
}

/// The path of a Vertex AI request for a credential of `project` and `location`: the
/// project-less form google-genai sends with an API key (`v1beta1/publishers/google/models/M:
/// generateContent`) gets the credential's `projects/{p}/locations/{l}/` in front, and a path
/// naming a project (and a location) has them replaced by the credential's, so a token is
/// only ever used inside its own project. Listing the publisher's models, or reading one,
/// stays as it is. Any other path is none of Vertex AI's (`screen` refuses it first).
pub(super) fn vertex_path(path: &str, project: &str, location: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let version = segments.first().copied().unwrap_or("");
    // A segment's name replaced, any `:method` after it kept.
    let named = |segment: &str, name: &str| match segment.split_once(':') {
        Some((_, method)) => format!("{name}:{method}"),
        None => name.to_owned(),
    };
    match segments.get(1).copied() {
        Some("projects") => {
            let mut out: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
            if let Some(p) = out.get_mut(2) {
                *p = named(segments[2], project);
            }
            if segments.get(3) == Some(&"locations")
                && let Some(l) = out.get_mut(4)
            {
                *l = named(segments[4], location);
            }
            out.join("/")
        }
        // A model's method (`models/M:generateContent`), not the list nor one model's card.
        Some("publishers")
            if segments.len() >= 5 && segments.last().is_some_and(|s| s.contains(':')) =>
        {
            format!(
                "{version}/projects/{project}/locations/{location}/{}",
                segments[1..].join("/")
            )
        }
        _ => path.to_owned(),
    }
}

/// The project and location a Vertex credential serves: its fields, else the service
/// account's own project and the default location.
pub(super) fn vertex_scope(
    fields: Option<&BTreeMap<String, String>>,
    key: Option<&SecretString>,
) -> Option<(String, String)> {
    let field = |n: &str| fields.and_then(|f| f.get(n)).filter(|v| !v.is_empty());
    let project = field("project")
        .cloned()
        .or_else(|| keyward_probe::cloud::service_account_project(key?))?;
    let location = field("location").map_or(
        keyward_core::provider::VERTEX_DEFAULT_LOCATION.to_owned(),
        Clone::clone,
    );
    // Both go into the path: names only.
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    (plain(&project) && keyward_core::provider::is_cloud_region(&location))
        .then_some((project, location))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::vertex_path;

    #[test]
    fn vertex_paths_name_the_credentials_project_and_location() {
        let cases = [
            (
                "v1beta1/publishers/google/models/gemini-2.0-flash:generateContent",
                "v1beta1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent",
            ),
            (
                "v1beta1/projects/other/locations/europe-west4/publishers/google/models/g:streamGenerateContent",
                "v1beta1/projects/p1/locations/us-central1/publishers/google/models/g:streamGenerateContent",
            ),
            (
                "v1beta1/publishers/google/models",
                "v1beta1/publishers/google/models",
            ),
            (
                "v1/publishers/google/models/gemini-2.0-flash",
                "v1/publishers/google/models/gemini-2.0-flash",
            ),
            (
                "v1/projects/x/locations/y/endpoints/e1:predict",
                "v1/projects/p1/locations/us-central1/endpoints/e1:predict",
            ),
            ("v1/projects/other/locations", "v1/projects/p1/locations"),
            ("v1/projects/other", "v1/projects/p1"),
            (
                "v1/projects/other:getIamPolicy",
                "v1/projects/p1:getIamPolicy",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(vertex_path(path, "p1", "us-central1"), want, "{path}");
        }
    }
}
