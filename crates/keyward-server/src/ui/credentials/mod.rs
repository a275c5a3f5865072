//! Provider Credentials, screen by screen as the admin guide shows them: the filtered table
//! (`list`), Add and Edit (`form` is the form's model, `edit` its handlers, compare-and-set),
//! Activate / Deactivate, Test, Models and Delete behind a confirmation (`actions`), and a
//! credential's own page (`detail`). Every action is an operation of `crate::ops::credentials`,
//! audited with the session's token as actor.

mod actions;
mod detail;
mod edit;
mod form;
mod list;

use axum::Router;
use axum::routing::{get, post};
use keyward_core::Provider;
use keyward_core::credential::{CredentialStatus, CredentialView};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/credentials", get(list::list).post(edit::create))
        .route("/ui/credentials/new", get(edit::new_form))
        .route("/ui/credentials/{id}", get(detail::detail))
        .route(
            "/ui/credentials/{id}/edit",
            get(edit::edit_form).post(edit::update),
        )
        .route("/ui/credentials/{id}/activate", post(actions::activate))
        .route("/ui/credentials/{id}/deactivate", post(actions::deactivate))
        .route("/ui/credentials/{id}/test", post(actions::test))
        .route("/ui/credentials/{id}/models", post(actions::models))
        .route(
            "/ui/credentials/{id}/delete",
            get(actions::confirm_delete).post(actions::delete),
        )
}

/// What a URL's path segment or query value may hold as is (RFC 3986's unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The status badge: its words and its class.
pub(super) fn badge(view: &CredentialView) -> (&'static str, &'static str) {
    match (view.status, view.active) {
        (CredentialStatus::Undecryptable, _) => ("Undecryptable", "undecryptable"),
        (CredentialStatus::Ok, true) => ("Active", "active"),
        (CredentialStatus::Ok, false) => ("Inactive", "inactive"),
        // Readable, but stored in plain text until `keyward reencrypt` or its next update.
        (CredentialStatus::LegacyPlaintext, true) => ("Active, not sealed", "legacy"),
        (CredentialStatus::LegacyPlaintext, false) => ("Inactive, not sealed", "legacy"),
    }
}

pub(super) fn display_name(provider: &str) -> String {
    Provider::get(provider).map_or_else(|_| provider.to_owned(), |p| p.display_name.to_owned())
}

/// The credential behind a console URL, if the session may do `op` on it; another
/// organization's is "not found", as in the API.
async fn credential(
    state: &AppState,
    session: &super::UiSession,
    id: &str,
    op: crate::access::Op,
) -> Result<CredentialView, axum::response::Response> {
    crate::ops::credentials::view(state, &session.0.principal, id, op)
        .await
        .map_err(super::failed)
}
