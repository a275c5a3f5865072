//! The Master Key page (admins): rows per master key id, and a rotation run in the background
//! with its progress.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Chrome, UiSession, failed, when};
use crate::{AppState, ops};

struct KidRow {
    kid: String,
    primary: bool,
    configured: bool,
    lives_in: String,
    credentials: u64,
    variables: u64,
    vault_keys: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/master_key.html")]
struct MasterKeyPage {
    chrome: Chrome,
    primary: String,
    rows: Vec<KidRow>,
    pending: u64,
    warnings: Vec<String>,
    /// The console's last rotation: running (with progress) or its outcome.
    running: Option<String>,
    result: Option<Result<String, String>>,
}

pub(super) async fn master_key(State(state): State<AppState>, session: UiSession) -> Response {
    let status = match ops::server::master_key_status(&state, &session.0.principal).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let rotation = state.shared.console.rotation();
    MasterKeyPage {
        chrome: Chrome::new(&session.0, "master-key", None),
        running: rotation.as_ref().filter(|r| r.finished.is_none()).map(|r| {
            format!(
                "Rotation started {} by {}: {} of {} rows rewrapped.",
                when(Some(r.started_at)),
                r.by,
                r.done,
                r.total
            )
        }),
        result: rotation.and_then(|r| r.finished),
        primary: status.primary.clone(),
        pending: status.pending_rotation(),
        warnings: status.warnings(),
        rows: status
            .kids
            .iter()
            .map(|k| KidRow {
                kid: k.kid.clone(),
                primary: k.primary,
                configured: k.configured,
                lives_in: k.lives_in.clone().unwrap_or_else(|| "-".into()),
                credentials: k.credentials,
                variables: k.variables,
                vault_keys: k.vault_keys,
            })
            .collect(),
    }
    .into_response()
}

/// Starts a rotation in the background (it may take a while on a large store) and shows its
/// progress on the Master Key page, which refreshes itself while it runs.
pub(super) async fn master_key_rotate(
    State(state): State<AppState>,
    session: UiSession,
) -> Response {
    let p = session.0.principal.clone();
    if let Err(e) = ops::server::may_rotate(&p) {
        return failed(e);
    }
    let Some(run) = state
        .shared
        .console
        .start_rotation(&session.0.principal.name)
    else {
        return Redirect::to("/ui/master-key").into_response();
    };
    tokio::spawn(async move {
        let progress = run.clone();
        let outcome = ops::server::rotate_master_key(&state, &p, move |p| {
            let mut r = progress.lock().unwrap_or_else(|p| p.into_inner());
            r.done = p.done;
            r.total = p.total;
        })
        .await;
        let mut r = run.lock().unwrap_or_else(|p| p.into_inner());
        r.finished = Some(match outcome {
            Ok(report) => Ok(format!(
                "Rotation to {} done: {} rewrapped, {} retried, {} failed, {} remaining.",
                report.primary, report.rewrapped, report.retried, report.failed, report.remaining
            )),
            Err(e) => {
                let why = e.words();
                tracing::warn!(error = %why, "console master-key rotation stopped");
                Err(format!(
                    "Rotation stopped: {why}. Start it again: it goes on where it stopped."
                ))
            }
        });
    });
    Redirect::to("/ui/master-key").into_response()
}
