//! The row actions: Activate, Deactivate, Test, Models (the models the key reaches), and
//! Delete behind a confirmation page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::{credential, display_name, encode};
use crate::access::Op;
use crate::ui::{Chrome, UiSession, failed};
use crate::{AppState, ops};

async fn set_active(state: AppState, session: UiSession, id: String, active: bool) -> Response {
    match ops::credentials::set_active(&state, &session.0.principal, &id, active).await {
        Ok(view) => Redirect::to(&format!(
            "/ui/credentials?org={}&notice={}",
            encode(view.org.as_str()),
            if active { "activated" } else { "deactivated" }
        ))
        .into_response(),
        Err(e) => failed(e),
    }
}

pub(super) async fn activate(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    set_active(state, session, id, true).await
}

pub(super) async fn deactivate(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    set_active(state, session, id, false).await
}

pub(super) async fn test(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let timeout = std::time::Duration::from_secs(10);
    let view = match ops::credentials::test(&state, &session.0.principal, &id, timeout).await {
        Ok((_, view)) => view,
        Err(e) => return failed(e),
    };
    Redirect::to(&format!(
        "/ui/credentials/{}?notice=tested",
        encode(view.id.as_str())
    ))
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credential_models.html")]
struct ModelsPage {
    chrome: Chrome,
    id: String,
    name: String,
    org: String,
    provider: String,
    /// The models, or why there are none to show.
    models: Result<Vec<String>, String>,
}

/// Asks the provider for the models the key reaches (audited) and shows them; a provider that
/// refuses or does not answer is said on the same page.
pub(super) async fn models(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, Op::TestCredential).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let timeout = std::time::Duration::from_secs(10);
    let models = match ops::credentials::discover(&state, &session.0.principal, &id, timeout).await
    {
        Ok((_, models)) => Ok(models),
        Err(e @ (crate::ApiError::Upstream(_) | crate::ApiError::Unprocessable(_))) => {
            Err(e.words())
        }
        Err(e) => return failed(e),
    };
    ModelsPage {
        chrome: Chrome::new(&session.0, "credentials", None),
        id: view.id.to_string(),
        name: view.name.to_string(),
        org: view.org.to_string(),
        provider: display_name(&view.provider),
        models,
    }
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/confirm_delete.html")]
struct ConfirmPage {
    chrome: Chrome,
    id: String,
    name: String,
    org: String,
    provider: String,
}

pub(super) async fn confirm_delete(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, Op::WriteCredential).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    ConfirmPage {
        chrome: Chrome::new(&session.0, "credentials", None),
        id: view.id.to_string(),
        name: view.name.to_string(),
        org: view.org.to_string(),
        provider: display_name(&view.provider),
    }
    .into_response()
}

pub(super) async fn delete(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, Op::WriteCredential).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match ops::credentials::delete(&state, &session.0.principal, &id).await {
        Ok(()) => Redirect::to(&format!(
            "/ui/credentials?org={}&notice=deleted",
            encode(view.org.as_str())
        ))
        .into_response(),
        Err(e) => failed(e),
    }
}
