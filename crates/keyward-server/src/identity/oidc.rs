//! The console's single sign-on with OpenID Connect: the authorization code flow with PKCE,
//! `state` and `nonce`, done by the `openidconnect` crate over our own HTTP client; the ID
//! token checked by it (signature against the issuer's JWKS, `iss`, `aud`, `exp`, `nonce`, the
//! algorithms fixed by configuration) and by us where it does not (`azp`, `iat`, the RFC 9207
//! `iss` of the callback). The issuer's discovery document and keys are fetched when first
//! needed and kept; a token signed by a key not seen yet refetches the keys, at most once per
//! [`SSO_REFETCH_EVERY`], and only from the `jwks_uri` discovery named (never a URL of the token's).
//!
//! Sign-ins under way live in the store (`sso_logins`), so the callback may reach any replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keyward_store::{Person, RoleGrant, Vault};
use openidconnect::core::{
    CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndSessionUrl,
    IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    TokenResponse as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::rules::{RuleSpec, Rules};

/// A key set is fetched again for an unknown `kid` at most this often. ID tokens come over the
/// back channel from the provider's own token endpoint, not from whoever calls us, so an
/// unknown `kid` is the provider's rotation: followed at once, but never more than once a
/// second.
pub const SSO_REFETCH_EVERY: Duration = Duration::from_secs(1);
/// The discovery document is read again after this long.
const DISCOVERY_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a sign-in may take at the provider.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(300);
/// An ID token issued longer ago than this is refused (it is used at once, or not at all).
const MAX_TOKEN_AGE: i64 = 600;
/// Clock difference allowed with the provider.
const LEEWAY: i64 = 60;
/// The most any answer of the provider may be.
const MAX_BODY: usize = 1 << 20;

/// The `oidc:` section of the identity file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcSpec {
    issuer: String,
    client_id: String,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    redirect_url: String,
    post_logout_redirect_url: Option<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_algs")]
    id_token_algs: Vec<String>,
    #[serde(default)]
    token_sign_in: Option<bool>,
    display_name: Option<String>,
    rules: Vec<RuleSpec>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(str::to_owned).to_vec()
}

fn default_algs() -> Vec<String> {
    vec!["RS256".to_owned()]
}

/// What went wrong with a sign-in, in words for its page (never a code, token or secret).
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The provider did not answer, or not in time.
    #[error("the identity provider at {0} cannot be reached right now: {1}")]
    Unreachable(String, String),
    /// The provider answered with an error.
    #[error("the identity provider refused: {0}")]
    Refused(String),
    /// The sign-in's state is unknown, used, lapsed, or not this browser's.
    #[error("this sign-in is unknown, expired or was already used; start again")]
    UnknownState,
    /// The ID token did not check out.
    #[error("the identity provider's answer did not check out: {0}")]
    Invalid(String),
    /// The person's claims match no rule (the person, and how the page names them).
    #[error("no rule of this server gives {1} access")]
    NoRule(Box<Person>, String),
    /// The store could not keep the sign-in.
    #[error("{0}")]
    Store(#[from] keyward_store::VaultError),
}

/// What discovery found, with the keys.
struct Discovered {
    meta: ProviderMetadataWithLogout,
    jwks: CoreJsonWebKeySet,
    at: Instant,
    keys_at: Instant,
}

/// The console's OpenID Connect sign-in.
pub struct Sso {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: SecretString,
    redirect_url: RedirectUrl,
    post_logout: Option<PostLogoutRedirectUrl>,
    scopes: Vec<String>,
    algs: Vec<CoreJwsSigningAlgorithm>,
    token_sign_in: Option<bool>,
    display_name: String,
    rules: Rules,
    http: reqwest::Client,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
    /// The last failed discovery, and when: within [`RETRY_AFTER`] the next sign-in fails at
    /// once instead of waiting on the provider again (so a provider that takes no notice
    /// does not line sign-ins up behind each other).
    last_error: std::sync::Mutex<Option<(Instant, String)>>,
}

/// A provider that did not answer discovery is asked again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

/// What `keyward sso status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SsoStatus {
    /// Whether single sign-on is configured.
    pub configured: bool,
    /// The issuer.
    pub issuer: Option<String>,
    /// The client id.
    pub client_id: Option<String>,
    /// Where the provider sends people back.
    pub redirect_url: Option<String>,
    /// The ID-token algorithms accepted.
    pub id_token_algs: Vec<String>,
    /// How many rules map claims to roles.
    pub rules: usize,
    /// Whether discovery answered now.
    pub reachable: bool,
    /// The signing keys the provider publishes (their ids).
    pub key_ids: Vec<String>,
    /// Whether the provider offers RP-initiated logout.
    pub logout_at_provider: bool,
    /// Whether the console also takes API tokens.
    pub token_sign_in: bool,
    /// What went wrong, if discovery failed.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// Our reqwest client as `openidconnect`'s HTTP client: no redirects, short timeouts, answers
/// capped at [`MAX_BODY`].
async fn call(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let mut resp = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(describe(&e)))?;
    let mut out = openidconnect::http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError(describe(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(HttpError("the answer is too large".into()));
        }
    }
    out.body(body).map_err(|e| HttpError(e.to_string()))
}

/// A transport error in words (reqwest's own text names the URL, which is fine, but its
/// source chain says why).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        why
    }
}

/// Whether `return_to` is a path of the console (anything else becomes `/ui/`): no scheme, no
/// other host (`//evil`, `/\evil`), no control characters.
pub fn safe_return_to(return_to: Option<&str>) -> String {
    match return_to {
        Some(r)
            if r.starts_with("/ui/")
                && !r.contains("//")
                && !r.contains('\\')
                && !r.contains("..")
                && !r.to_ascii_lowercase().contains("%2e")
                && !r.to_ascii_lowercase().contains("%2f")
                && !r.to_ascii_lowercase().contains("%5c")
                && !r.chars().any(char::is_control)
                && r.len() <= 1024 =>
        {
            r.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

impl Sso {
    /// Reads and checks the `oidc:` section: the client secret from its file or variable,
    /// URLs, algorithms and rules. Errors name the setting.
    pub(crate) fn new(
        spec: OidcSpec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let bad = |why: String| format!("oidc: {why}");
        let issuer = IssuerUrl::new(spec.issuer.clone())
            .map_err(|e| bad(format!("issuer {:?}: {e}", spec.issuer)))?;
        let secret = match (&spec.client_secret_file, &spec.client_secret_env) {
            (Some(file), None) => std::fs::read_to_string(file)
                .map_err(|e| bad(format!("cannot read client_secret_file {file}: {e}")))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            // Keyward's own secrets, a KMS's credentials and the LLM providers' keys (the
            // server's environment fallback) are never a client secret: it is sent to the
            // identity provider at every sign-in.
            (None, Some(name))
                if keyward_core::env::is_withheld(name)
                    || ["AWS_", "VAULT_", "BAO_"]
                        .iter()
                        .any(|p| name.starts_with(p))
                    || keyward_core::PROVIDERS
                        .iter()
                        .any(|p| p.secret_env.contains(&name.as_str())) =>
            {
                return Err(bad(format!(
                    "client_secret_env names {name}, a secret of Keyward's own, of its KMS or of an LLM provider: it would be sent to the identity provider; give the client secret a variable of its own"
                )));
            }
            (None, Some(name)) => env(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("client_secret_env names {name}, which is not set")))?,
            _ => {
                return Err(bad(
                    "give one of client_secret_file and client_secret_env (the secret itself never goes in this file)".into(),
                ));
            }
        };
        let redirect_url = RedirectUrl::new(spec.redirect_url.clone())
            .map_err(|e| bad(format!("redirect_url: {e}")))?;
        if !redirect_url.url().path().ends_with("/ui/sso/callback") {
            return Err(bad("redirect_url must end in /ui/sso/callback".into()));
        }
        let post_logout = match spec.post_logout_redirect_url {
            Some(u) => Some(
                PostLogoutRedirectUrl::new(u)
                    .map_err(|e| bad(format!("post_logout_redirect_url: {e}")))?,
            ),
            None => None,
        };
        if !spec.scopes.iter().any(|s| s == "openid") {
            return Err(bad("scopes must include openid".into()));
        }
        let mut algs = Vec::new();
        for a in &spec.id_token_algs {
            let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(a.clone()))
                .map_err(|_| bad(format!("unknown id_token_algs entry {a:?}")))?;
            if a.starts_with("HS") || a == "none" {
                return Err(bad(format!(
                    "{a} is not accepted: ID tokens are checked against the issuer's published keys (RS256, ES256, EdDSA, ...)"
                )));
            }
            algs.push(alg);
        }
        if algs.is_empty() {
            return Err(bad("id_token_algs is empty".into()));
        }
        let rules = Rules::new(spec.rules).map_err(bad)?;
        if rules.is_empty() {
            return Err(bad("rules is empty: nobody could sign in".into()));
        }
        let http = super::http_client().map_err(bad)?;
        Ok(Sso {
            issuer,
            client_id: ClientId::new(spec.client_id),
            client_secret: SecretString::from(secret),
            redirect_url,
            post_logout,
            scopes: spec.scopes,
            algs,
            token_sign_in: spec.token_sign_in,
            display_name: spec
                .display_name
                .unwrap_or_else(|| "Sign in with single sign-on".to_owned()),
            rules,
            http,
            discovered: tokio::sync::Mutex::new(None),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// What the sign-in button says.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// Whether the file says about token sign-in (`None`: it does not).
    pub fn token_sign_in(&self) -> Option<bool> {
        self.token_sign_in
    }

    /// The discovery document and keys, fetched when missing or old.
    async fn discovered(&self) -> Result<Arc<Discovered>, SsoError> {
        let failed_lately = || {
            self.last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .filter(|(at, _)| at.elapsed() < RETRY_AFTER)
        };
        let mut slot = self.discovered.lock().await;
        if let Some(d) = slot.as_ref()
            && d.at.elapsed() < DISCOVERY_LIFETIME
        {
            return Ok(d.clone());
        }
        if let Some((_, why)) = failed_lately() {
            if let Some(d) = slot.as_ref() {
                return Ok(d.clone());
            }
            return Err(SsoError::Unreachable(self.issuer.to_string(), why));
        }
        let http = |req| call(self.http.clone(), req);
        let found = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &http).await;
        let meta = match found {
            Ok(m) => m,
            Err(e) => {
                let why = discovery_error(&e);
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), why.clone()));
                // A provider that was reachable before keeps serving with what it gave.
                if let Some(d) = slot.as_ref() {
                    return Ok(d.clone());
                }
                return Err(SsoError::Unreachable(self.issuer.to_string(), why));
            }
        };
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let jwks = meta.jwks().clone();
        let d = Arc::new(Discovered {
            meta,
            jwks,
            at: Instant::now(),
            keys_at: Instant::now(),
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    /// The keys fetched again from the `jwks_uri` discovery named, unless they were fetched
    /// within [`SSO_REFETCH_EVERY`] (then the ones held). One fetch at a time.
    async fn refetched_keys(&self, had: &Arc<Discovered>) -> Result<Arc<Discovered>, SsoError> {
        let mut slot = self.discovered.lock().await;
        let current = slot.clone().unwrap_or_else(|| had.clone());
        if current.keys_at.elapsed() < SSO_REFETCH_EVERY {
            return Ok(current);
        }
        let http = |req| call(self.http.clone(), req);
        let jwks = CoreJsonWebKeySet::fetch_async(current.meta.jwks_uri(), &http)
            .await
            .map_err(|e| SsoError::Unreachable(self.issuer.to_string(), discovery_error(&e)))?;
        let d = Arc::new(Discovered {
            meta: current.meta.clone(),
            jwks,
            at: current.at,
            keys_at: Instant::now(),
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    fn client(
        &self,
        d: &Discovered,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            d.meta.clone(),
            self.client_id.clone(),
            Some(ClientSecret::new(
                self.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and the
    /// `state` the browser's sign-in cookie binds it to. The nonce and PKCE verifier stay in
    /// the store.
    /// With `ask_again`, the provider is asked to sign the person in again even if it has a
    /// session (`prompt=login`): after a refusal, to let them sign in as someone else.
    pub async fn begin(
        &self,
        vault: &Vault,
        return_to: &str,
        ask_again: bool,
    ) -> Result<(String, String), SsoError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&d);
        let mut request = client
            .authorize_url(
                openidconnect::core::CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if ask_again {
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Login);
        }
        let (url, state, nonce) = request.url();
        vault
            .begin_sso_login(
                state.secret(),
                nonce.secret(),
                verifier.secret(),
                return_to,
                LOGIN_LIFETIME,
            )
            .await?;
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes a sign-in at the callback: the sign-in of `state` taken (once), the code
    /// exchanged, the ID token checked, and the rules applied. The person and their grants, and
    /// where the console goes next; [`SsoError::NoRule`] when no rule holds.
    pub async fn finish(
        &self,
        vault: &Vault,
        code: &str,
        state: &str,
        iss: Option<&str>,
    ) -> Result<(Person, Vec<RoleGrant>, String), SsoError> {
        let Some(login) = vault.take_sso_login(state).await? else {
            return Err(SsoError::UnknownState);
        };
        // RFC 9207: a provider that names itself in the callback must be ours (a mix-up
        // attack sends another provider's code here).
        if let Some(iss) = iss
            && iss.trim_end_matches('/') != self.issuer.as_str().trim_end_matches('/')
        {
            return Err(SsoError::Invalid(
                "the callback names another issuer".into(),
            ));
        }
        let d = self.discovered().await?;
        let http = |req| call(self.http.clone(), req);
        let response = self
            .client(&d)
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Invalid(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(
                login.verifier.expose_secret().to_owned(),
            ))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => SsoError::Refused(
                    // The error code and the provider's description, never the request.
                    match r.error_description() {
                        Some(d) => format!(
                            "{} ({})",
                            r.error(),
                            d.chars().take(200).collect::<String>()
                        ),
                        None => r.error().to_string(),
                    },
                ),
                RequestTokenError::Request(e) => {
                    SsoError::Unreachable(self.issuer.to_string(), e.to_string())
                }
                // Where the answer did not fit (a path of field names; never the answer
                // itself, which holds tokens): e.g. `email_verified` sent as a string.
                RequestTokenError::Parse(e, _) => SsoError::Invalid(match e.path().to_string() {
                    path if path != "." => {
                        format!("the token endpoint's answer cannot be read at `{path}`")
                    }
                    // Inside the ID token: its claims are read after decoding, so no path.
                    _ => "the token endpoint's answer or its ID token cannot be read: a standard claim of another type than the standard's (email_verified sent as text, say)".into(),
                }),
                RequestTokenError::Other(e) => SsoError::Invalid(e),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::Invalid("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(login.nonce);
        let mut d = d;
        let mut refetched = false;
        let claims = loop {
            let verifier = self.verifier(&d);
            match id_token.claims(&verifier, &nonce) {
                Ok(c) => break c.clone(),
                // A key not seen yet: the provider rotated. Fetch its keys again, once.
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refetched => {
                    refetched = true;
                    d = self.refetched_keys(&d).await?;
                }
                Err(e) => return Err(SsoError::Invalid(verification_error(&e))),
            }
        };
        // `azp`: when present it must be us (openidconnect does not look).
        if let Some(azp) = claims.authorized_party()
            && azp.as_str() != self.client_id.as_str()
        {
            return Err(SsoError::Invalid(
                "the ID token was issued to another client (azp)".into(),
            ));
        }
        // The signature checked out: the claims, all of them, for the rules.
        let all = payload(&id_token.to_string())
            .ok_or_else(|| SsoError::Invalid("the ID token's claims cannot be read".into()))?;
        let subject = claims.subject().as_str().to_owned();
        // An email the provider says it has not verified names nobody: the subject does.
        let email = claims
            .email()
            .filter(|_| claims.email_verified() != Some(false))
            .map(|e| e.as_str().to_owned());
        // Both become the audit log's actor: text a listing shows as it is (no control
        // character, nothing that reorders or hides text).
        if !keyward_core::ids::is_plain_text(&subject, 255)
            || email
                .as_deref()
                .is_some_and(|e| !keyward_core::ids::is_plain_text(e, 320) || !e.contains('@'))
        {
            return Err(SsoError::Invalid(
                "the subject or email is not printable text".into(),
            ));
        }
        let person = Person {
            issuer: self.issuer.to_string(),
            subject,
            email,
        };
        let grants = self.rules.grants(&all);
        if grants.is_empty() {
            let who = person
                .email
                .clone()
                .unwrap_or_else(|| person.subject.clone());
            return Err(SsoError::NoRule(Box::new(person), who));
        }
        Ok((person, grants, login.return_to))
    }

    fn verifier(&self, d: &Discovered) -> CoreIdTokenVerifier<'static> {
        CoreIdTokenVerifier::new_public_client(
            self.client_id.clone(),
            self.issuer.clone(),
            d.jwks.clone(),
        )
        .set_allowed_algs(self.algs.clone())
        .set_issue_time_verifier_fn(|iat| {
            let now = chrono_now();
            let iat = iat.timestamp();
            if iat > now + LEEWAY {
                Err("issued in the future (iat)".into())
            } else if iat < now - MAX_TOKEN_AGE {
                Err("issued too long ago (iat)".into())
            } else {
                Ok(())
            }
        })
    }

    /// Where sign-out sends the browser: the provider's end-session endpoint with our client id
    /// and where to come back, when the provider offers one (discovered now if this replica has
    /// not yet; a provider that does not answer means sign-out here only).
    pub async fn logout_url(&self) -> Option<String> {
        let d = self.discovered().await.ok()?;
        let end: EndSessionUrl = d.meta.additional_metadata().end_session_endpoint.clone()?;
        let mut request = LogoutRequest::from(end).set_client_id(self.client_id.clone());
        if let Some(back) = &self.post_logout {
            request = request.set_post_logout_redirect_uri(back.clone());
        }
        Some(request.http_get_url().to_string())
    }

    /// Whether the provider answers now, and what it publishes.
    pub async fn status(&self, token_sign_in: bool) -> SsoStatus {
        let found = self.discovered().await;
        let error = match &found {
            Ok(_) => self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .map(|(_, why)| why),
            Err(e) => Some(e.to_string()),
        };
        let (key_ids, logout) = match &found {
            Ok(d) => (
                d.jwks
                    .keys()
                    .iter()
                    .filter_map(|k| openidconnect::JsonWebKey::key_id(k).map(|id| id.to_string()))
                    .collect(),
                d.meta.additional_metadata().end_session_endpoint.is_some(),
            ),
            Err(_) => (Vec::new(), false),
        };
        SsoStatus {
            configured: true,
            issuer: Some(self.issuer.to_string()),
            client_id: Some(self.client_id.to_string()),
            redirect_url: Some(self.redirect_url.to_string()),
            id_token_algs: self
                .algs
                .iter()
                .filter_map(|a| serde_json::to_value(a).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            rules: self.rules.len(),
            reachable: found.is_ok() && error.is_none(),
            key_ids,
            logout_at_provider: logout,
            token_sign_in,
            error,
        }
    }
}

fn chrono_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

/// The claims of a JWT whose signature was checked.
fn payload(jwt: &str) -> Option<Map<String, Value>> {
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn discovery_error<E: std::error::Error>(e: &openidconnect::DiscoveryError<E>) -> String {
    match e {
        openidconnect::DiscoveryError::Request(e) => e.to_string(),
        openidconnect::DiscoveryError::Response(status, _, why) => {
            format!("it answered {status}: {why}")
        }
        openidconnect::DiscoveryError::Parse(_) => "its answer is not a discovery document".into(),
        openidconnect::DiscoveryError::Validation(why) => why.clone(),
        other => other.to_string(),
    }
}

fn verification_error(e: &ClaimsVerificationError) -> String {
    // The crate's words, which name claims and algorithms, never the token.
    match e {
        ClaimsVerificationError::SignatureVerification(s) => format!("signature: {s}"),
        other => other.to_string(),
    }
}
