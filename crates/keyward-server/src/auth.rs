//! Authentication (`Authorization: Bearer TOKEN`); what a caller may do is `crate::access`'s.

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keyward_store::Principal;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// What the audit log records.
    pub fn actor(&self) -> String {
        self.0.actor()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<crate::ClientAddr>>()
            .map(|c| c.0.0.ip());
        let from = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        // While the store is away every answer would be a 503 after the pool's wait; give it
        // at once (a watcher notices when the store is back).
        let is_jwt = |t: &str| {
            (!state.shared.jwt.is_empty() || !state.shared.workloads.is_empty())
                && t.matches('.').count() == 2
        };
        if token.is_some_and(|t| !is_jwt(t)) && !state.vault.serving().store_available() {
            return Err(ApiError::Unavailable(
                crate::error::STORE_UNAVAILABLE.to_owned(),
            ));
        }
        // An address that keeps failing has its checks slowed, not its good tokens refused.
        let (principal, over_limit) = state
            .shared
            .limiter
            .screened(
                ip,
                async {
                    match token {
                        // A token with the shape of a JWT is checked as one, if keys are configured.
                        // HS256 keys first, then the workload issuers' published keys.
                        Some(t) if is_jwt(t) => Ok(match state.shared.jwt.verify(t) {
                            Some(p) => Some(p),
                            None => state.shared.workloads.authenticate(t).await,
                        }),
                        // Everything else is looked up by its hash, whatever its prefix: operators
                        // bring their own admin token (`KEYWARD_ADMIN_TOKEN`, `openssl rand -hex 32`).
                        Some(t) => state.vault.serving().authenticate(t).await,
                        None => Ok(None),
                    }
                },
                |found| matches!(found, Ok(None)),
            )
            .await;
        let principal = principal?;
        match principal {
            Some(p) => {
                crate::request_log::note_caller(&parts.extensions, p.actor(), None);
                Ok(Caller(p))
            }
            None => {
                let why = if token.is_some() {
                    "unknown, revoked or expired token"
                } else {
                    "no bearer token"
                };
                // Beyond the allowance a failure is answered, not audited again: a burst of
                // guesses must not flood the trail.
                let within = ip.is_none_or(|ip| state.shared.limiter.failed(ip));
                if let Some(retry) = over_limit {
                    return Err(ApiError::TooManyRequests(retry));
                }
                if !within {
                    return Err(ApiError::Unauthorized);
                }
                // The request is refused either way; a failed audit write is only logged, and
                // while the store is known to be away it is not even tried (it would hold the
                // answer for the pool's whole wait).
                if !state.vault.serving().store_available() {
                    tracing::warn!(
                        from,
                        why,
                        "a failed authentication not audited: the store is unavailable"
                    );
                } else if let Err(e) = state
                    .vault
                    .serving()
                    .record_auth_failure(&from, "api", why)
                    .await
                {
                    tracing::warn!(error = %e, "cannot audit a failed authentication");
                }
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// The token of an `Authorization` value with the `Bearer` scheme, which RFC 9110 makes
/// case-insensitive (`bearer`, `BEARER`); `None` for any other scheme or an empty token.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON body whose rejections come back as problem+json like every other error (where
/// anything in the parser's message that looks like a key is cut out).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            // The detail is scrubbed on its way out, as every detail is (`error::problem`).
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Console sessions: the console's sign-in with a token, its session cookie looked up, and
/// sign-out. (What a session may do is `crate::access`'s, as for any caller.)
pub(crate) mod console {
    use keyward_store::{Person, RoleGrant, Session, SessionLimits, VaultError};
    use secrecy::SecretString;

    use crate::AppState;
    use crate::identity::oidc::{Sso, SsoError};

    /// Signs in with `token` from `from`: a new session and its cookie value, or `None` for a
    /// token that does not authenticate (audited).
    pub(crate) async fn sign_in(
        state: &AppState,
        token: &str,
        limits: SessionLimits,
        from: &str,
    ) -> Result<Option<(SecretString, Session)>, VaultError> {
        state
            .vault
            .serving()
            .create_ui_session(token, limits, from)
            .await
    }

    /// The live session of a cookie value.
    pub(crate) async fn session(state: &AppState, id: &str) -> Result<Option<Session>, VaultError> {
        state.vault.serving().ui_session(id).await
    }

    /// Ends a session.
    pub(crate) async fn sign_out(state: &AppState, id: &str) -> Result<(), VaultError> {
        state.vault.serving().end_ui_session(id).await
    }

    /// Starts a single sign-on: the provider's URL and the state to bind to the browser.
    pub(crate) async fn sso_begin(
        state: &AppState,
        sso: &Sso,
        return_to: &str,
        ask_again: bool,
    ) -> Result<(String, String), SsoError> {
        sso.begin(state.vault.serving(), return_to, ask_again).await
    }

    /// Finishes a single sign-on at its callback: the person, their grants, where to go.
    pub(crate) async fn sso_finish(
        state: &AppState,
        sso: &Sso,
        code: &str,
        login_state: &str,
        iss: Option<&str>,
    ) -> Result<(Person, Vec<RoleGrant>, String), SsoError> {
        sso.finish(state.vault.serving(), code, login_state, iss)
            .await
    }

    /// The grants among `grants` whose organization exists (an admin's names none).
    pub(crate) async fn existing_orgs(
        state: &AppState,
        grants: Vec<RoleGrant>,
    ) -> Result<Vec<RoleGrant>, VaultError> {
        let mut kept = Vec::with_capacity(grants.len());
        for g in grants {
            let exists = match &g.org {
                None => true,
                Some(o) => match state.vault.serving().require_org(o).await {
                    Ok(()) => true,
                    Err(VaultError::NotFound(_)) => false,
                    Err(e) => return Err(e),
                },
            };
            if exists {
                kept.push(g);
            }
        }
        Ok(kept)
    }

    /// A session for a person the rules let in.
    pub(crate) async fn sso_sign_in(
        state: &AppState,
        person: Person,
        grants: Vec<RoleGrant>,
        from: &str,
    ) -> Result<(SecretString, Session), VaultError> {
        state
            .vault
            .serving()
            .create_sso_session(person, grants, state.shared.ui_sessions, from)
            .await
    }

    /// Audits a refused single sign-on (a failed write is only logged: the refusal stands).
    pub(crate) async fn sso_refused(
        state: &AppState,
        person: Option<&Person>,
        from: &str,
        why: &str,
    ) {
        if let Err(e) = state
            .vault
            .serving()
            .record_sso_refusal(person, from, why)
            .await
        {
            tracing::warn!(error = %e, "cannot audit a refused single sign-on");
        }
    }
}
