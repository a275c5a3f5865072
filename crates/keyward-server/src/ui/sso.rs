//! The console's single sign-on: `/ui/sso/login` sends the browser to the identity provider,
//! `/ui/sso/callback` takes it back, checks what it brings (`crate::identity::oidc`), applies
//! the operator's rules, and opens a session for the person.
//!
//! Two cookies: `kw_sso` binds a sign-in under way to the browser that started it (so that a
//! callback link someone else started cannot sign you in as them); it is `SameSite=Lax`, since
//! the provider's redirect back is a cross-site navigation. The session cookie stays `Strict`,
//! so the callback answers with a page that moves on (a redirect would arrive without it).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::{LoginPage, failed};
use crate::AppState;
use crate::auth::console;
use crate::identity::oidc::{SsoError, safe_return_to};

/// The cookie of a sign-in under way.
const LOGIN_COOKIE: &str = "kw_sso";

/// A page that moves the browser on (and says where, for a browser that does not).
#[derive(Template, WebTemplate)]
#[template(path = "ui/moving_on.html")]
pub(super) struct MovingOn {
    pub(super) title: &'static str,
    pub(super) said: &'static str,
    pub(super) to: String,
}

#[derive(Deserialize)]
pub(super) struct Start {
    return_to: Option<String>,
    /// `login`: the provider signs the person in again (another account after a refusal).
    prompt: Option<String>,
}

/// The sign-in page again, with why.
fn refused(state: &AppState, status: StatusCode, why: String) -> Response {
    (
        status,
        LoginPage {
            error: Some(why),
            sso: state.sso().map(|s| s.display_name().to_owned()),
            // After a refusal the provider may still hold the refused account's session: the
            // next try asks it to sign in again, so another account can be used.
            sso_again: true,
            token_sign_in: state.token_sign_in(),
        },
    )
        .into_response()
}

/// `GET /ui/sso/login`: a sign-in begins at the provider.
pub(super) async fn start(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<crate::ClientAddr>,
    Query(q): Query<Start>,
) -> Response {
    let Some(sso) = state.sso() else {
        return refused(
            &state,
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured on this server.".into(),
        );
    };
    // Each start keeps a row until its callback or for five minutes; the store keeps the
    // newest `SSO_LOGINS_KEPT`, so a flood of starts cannot grow it without bound, and an
    // address starts at most `SSO_STARTS_PER_MINUTE`.
    if !state.shared.sso_starts.0.failed(addr.0.ip()) {
        return refused(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins started from this address; wait a minute.".into(),
        );
    }
    let return_to = safe_return_to(q.return_to.as_deref());
    let ask_again = q.prompt.as_deref() == Some("login");
    match console::sso_begin(&state, sso, &return_to, ask_again).await {
        Ok((url, login_state)) => {
            let cookie = Cookie::build((LOGIN_COOKIE, login_state))
                .path("/ui/sso")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(state.shared.secure_cookies)
                .build();
            (CookieJar::new().add(cookie), Redirect::to(&url)).into_response()
        }
        Err(e) => sso_failed(&state, e),
    }
}

/// The page of a sign-in that did not work.
fn sso_failed(state: &AppState, e: SsoError) -> Response {
    let e = match e {
        SsoError::Store(e) => return failed(e),
        other => other,
    };
    let status = match &e {
        SsoError::Unreachable(..) => StatusCode::BAD_GATEWAY,
        SsoError::Refused(_) | SsoError::Invalid(_) => StatusCode::UNAUTHORIZED,
        SsoError::UnknownState => StatusCode::BAD_REQUEST,
        SsoError::NoRule(..) => StatusCode::FORBIDDEN,
        SsoError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let why = match &e {
        SsoError::NoRule(_, who) => format!(
            "Signed in at the identity provider as {who}, but no rule of this server gives that account access. Ask an administrator to add you to a group it maps."
        ),
        other => {
            let mut s = other.to_string();
            if let Some(first) = s.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{s}.")
        }
    };
    refused(state, status, why)
}

#[derive(Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// `GET /ui/sso/callback`: the provider sends the browser back with a code.
pub(super) async fn callback(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<crate::ClientAddr>,
    jar: CookieJar,
    Query(q): Query<Callback>,
) -> Response {
    let Some(sso) = state.sso() else {
        return refused(
            &state,
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured on this server.".into(),
        );
    };
    let ip = addr.0.ip();
    let from = ip.to_string();
    // The sign-in must be this browser's own: its cookie names the same state.
    let browser_state = jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned());
    let gone = Cookie::build((LOGIN_COOKIE, "")).path("/ui/sso").build();
    let jar = jar.remove(gone);
    // An address that keeps failing here is answered 429 at once, and not audited again: a
    // burst of forged callbacks must not flood the trail (as for guessed tokens).
    if state.shared.limiter.blocked(ip).is_some() {
        return (
            jar,
            refused(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins from this address; wait a minute.".into(),
            ),
        )
            .into_response();
    }
    let refuse = async |person: Option<&keyward_store::Person>, e: SsoError| {
        if state.shared.limiter.failed(ip) {
            console::sso_refused(&state, person, &from, &e.to_string()).await;
        }
        sso_failed(&state, e)
    };
    if let Some(error) = q.error.as_deref() {
        // The provider's error code only (a word from RFC 6749), shown as text.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        let e = SsoError::Refused(if code.is_empty() {
            "an error".into()
        } else {
            code
        });
        return (jar, refuse(None, e).await).into_response();
    }
    let (Some(code), Some(login_state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return (jar, refuse(None, SsoError::UnknownState).await).into_response();
    };
    if browser_state.as_deref() != Some(login_state) {
        return (jar, refuse(None, SsoError::UnknownState).await).into_response();
    }
    let (person, grants, return_to) =
        match console::sso_finish(&state, sso, code, login_state, q.iss.as_deref()).await {
            Ok(found) => found,
            Err(SsoError::NoRule(person, who)) => {
                let e = SsoError::NoRule(person.clone(), who);
                return (jar, refuse(Some(&person), e).await).into_response();
            }
            Err(e) => return (jar, refuse(None, e).await).into_response(),
        };
    // A grant in an organization that does not exist gives nothing (and would give it,
    // silently, once someone made one of that name).
    let grants = match console::existing_orgs(&state, grants).await {
        Ok(g) => g,
        Err(e) => return (jar, failed(e)).into_response(),
    };
    if grants.is_empty() {
        let who = person
            .email
            .clone()
            .unwrap_or_else(|| person.subject.clone());
        let e = SsoError::NoRule(Box::new(person.clone()), who);
        return (jar, refuse(Some(&person), e).await).into_response();
    }
    let made = console::sso_sign_in(&state, person, grants, &from).await;
    match made {
        Ok((id, _)) => {
            let cookie = super::session_cookie(&state, &id);
            // A page, not a redirect: the browser sends a Strict cookie on the next request
            // only if that request does not continue the provider's cross-site redirect.
            (
                jar.add(cookie),
                MovingOn {
                    title: "Signed in",
                    said: "Signed in. Taking you to the console.",
                    to: return_to,
                },
            )
                .into_response()
        }
        Err(e) => (jar, failed(e)).into_response(),
    }
}
