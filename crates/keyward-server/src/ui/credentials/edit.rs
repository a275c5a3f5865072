//! Add and Edit: the blank form, creating, the stored form, and changing (compare-and-set:
//! a stale form shows what is stored now and says so).

use std::collections::BTreeMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use keyward_core::credential::{CredentialUpdate, FormatCheck, NewCredential};
use keyward_core::{CredentialName, OrgId, PROVIDERS, Provider};
use secrecy::SecretString;
use serde::Deserialize;

use super::form::{Editing, FormPage, Typed};
use super::{credential, encode};
use crate::access::Op;
use crate::ui::{Chrome, UiSession, failed, visible_orgs};
use crate::{ApiError, AppState, ops};

#[derive(Deserialize)]
pub(super) struct NewQuery {
    org: Option<String>,
    provider: Option<String>,
    /// What was typed before another organization or provider was chosen (never the key).
    #[serde(flatten)]
    typed: BTreeMap<String, String>,
}

pub(super) async fn new_form(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NewQuery>,
) -> Response {
    let p = &session.0.principal;
    let orgs = match visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let org = q
        .org
        .filter(|o| orgs.contains(o))
        .or_else(|| orgs.first().cloned())
        .unwrap_or_default();
    let may = match OrgId::new(&org) {
        Ok(o) => ops::credentials::may_write(p, &o),
        // No organization yet: the form says so, to whoever may add credentials at all.
        Err(_) if ops::credentials::may_add(p) => Ok(()),
        Err(_) => Err(ApiError::Forbidden(format!(
            "{} may not add credentials",
            p.describe()
        ))),
    };
    if let Err(e) = may {
        return failed(e);
    }
    let provider = q
        .provider
        .and_then(|p| Provider::get(&p).ok())
        .unwrap_or(&PROVIDERS[0]);
    let mut typed = q.typed;
    typed.remove("api_key");
    FormPage::blank(
        Chrome::new(&session.0, "credentials", None),
        orgs,
        org,
        provider,
    )
    .retyped(&Typed(typed))
    .into_response()
}

pub(super) async fn create(
    State(state): State<AppState>,
    session: UiSession,
    Form(typed): Form<Vec<(String, String)>>,
) -> Response {
    let typed = Typed(typed.into_iter().collect());
    let p = &session.0.principal;
    let provider = match Provider::get(typed.get("provider")) {
        Ok(p) => p,
        Err(e) => return failed(ApiError::from(e)),
    };
    let orgs = match visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let again = |form: FormPage| (StatusCode::UNPROCESSABLE_ENTITY, form).into_response();
    // No organization chosen (none exists yet, or none was picked): the form again, with what
    // was typed and what to do, not an error page.
    let org = match OrgId::new(typed.get("org")) {
        Ok(o) => o,
        Err(_) => {
            let why = if orgs.is_empty() {
                "There is no organization yet: create one on the Organizations page first."
            } else {
                "Choose the organization this credential belongs to."
            };
            let form = FormPage::blank(
                Chrome::new(&session.0, "credentials", None),
                orgs,
                String::new(),
                provider,
            )
            .retyped(&typed);
            return again(FormPage {
                error: Some(why.to_owned()),
                ..form
            });
        }
    };
    if let Err(e) = ops::credentials::may_write(p, &org) {
        return failed(e);
    }
    let form = FormPage::blank(
        Chrome::new(&session.0, "credentials", None),
        orgs,
        org.to_string(),
        provider,
    )
    .retyped(&typed);
    let name = match CredentialName::new(typed.get("name")) {
        Ok(n) => n,
        Err(e) => {
            return again(FormPage {
                name_error: Some(e.to_string()),
                ..form
            });
        }
    };
    let (priority, weight) = match (typed.number("priority"), typed.number("weight")) {
        (Ok(p), Ok(w)) => (p, w),
        (Err(m), _) | (_, Err(m)) => {
            return again(FormPage {
                error: Some(m),
                ..form
            });
        }
    };
    let key = typed.get("api_key");
    let mut new = NewCredential::new(
        org.clone(),
        provider,
        name,
        (!key.is_empty()).then(|| SecretString::from(key.to_owned())),
    );
    new.fields = typed
        .fields(provider)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    new.priority = priority.unwrap_or(new.priority);
    new.weight = weight.unwrap_or(new.weight);
    if typed.get("skip_format_check") == "on" {
        new.format_check = FormatCheck::Skip;
    }
    match ops::credentials::create(&state, p, new).await {
        Ok(view) => Redirect::to(&format!(
            "/ui/credentials/{}?notice=created",
            encode(view.id.as_str())
        ))
        .into_response(),
        Err(e) => form.refused(e),
    }
}

pub(super) async fn edit_form(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, Op::WriteCredential).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(provider) = Provider::get(&view.provider) else {
        return failed(crate::ApiError::Conflict(
            "this credential's provider is not known to this version".into(),
        ));
    };
    FormPage::blank(
        Chrome::new(&session.0, "credentials", None),
        vec![view.org.to_string()],
        view.org.to_string(),
        provider,
    )
    .stored(&view)
    .into_response()
}

pub(super) async fn update(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Form(typed): Form<Vec<(String, String)>>,
) -> Response {
    let typed = Typed(typed.into_iter().collect());
    let view = match credential(&state, &session, &id, Op::WriteCredential).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(provider) = Provider::get(&view.provider) else {
        return failed(crate::ApiError::Conflict(
            "this credential's provider is not known to this version".into(),
        ));
    };
    let blank = || {
        FormPage::blank(
            Chrome::new(&session.0, "credentials", None),
            vec![view.org.to_string()],
            view.org.to_string(),
            provider,
        )
    };
    let form = blank().stored(&view).retyped(&typed);
    let form = FormPage {
        editing: Some(Editing {
            id: view.id.to_string(),
            version: typed.number("version").ok().flatten().unwrap_or(-1),
        }),
        ..form
    };
    let again = |form: FormPage| (StatusCode::UNPROCESSABLE_ENTITY, form).into_response();
    let name = match CredentialName::new(typed.get("name")) {
        Ok(n) => n,
        Err(e) => {
            return again(FormPage {
                name_error: Some(e.to_string()),
                ..form
            });
        }
    };
    let (priority, weight, version) = match (
        typed.number("priority"),
        typed.number("weight"),
        typed.number("version"),
    ) {
        (Ok(p), Ok(w), Ok(Some(v))) => (p, w, v),
        (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => {
            return again(FormPage {
                error: Some(m),
                ..form
            });
        }
        (_, _, Ok(None)) => {
            return again(FormPage {
                error: Some("the form lacks the version it was opened at; open it again".into()),
                ..form
            });
        }
    };
    let key = typed.get("api_key");
    let mut fields = typed.fields(provider);
    // A field neither stored nor typed is no change.
    fields.retain(|k, v| !v.is_empty() || view.fields.contains_key(k));
    let update = CredentialUpdate {
        name: Some(name),
        secret: (!key.is_empty()).then(|| SecretString::from(key.to_owned())),
        format_check: Some(if typed.get("skip_format_check") == "on" {
            FormatCheck::Skip
        } else {
            FormatCheck::Enforce
        }),
        fields,
        modalities: None,
        active: None,
        priority,
        weight,
    };
    match ops::credentials::update(&state, &session.0.principal, &id, Some(version), update).await {
        Ok(view) => Redirect::to(&format!(
            "/ui/credentials/{}?notice=updated",
            encode(view.id.as_str())
        ))
        .into_response(),
        // Stale: show what is stored now, and say so; never overwrite silently.
        Err(ApiError::Stale(_)) => {
            match credential(&state, &session, &id, Op::WriteCredential).await {
                Ok(now) => (
                    StatusCode::CONFLICT,
                    FormPage {
                        stale: true,
                        ..blank().stored(&now)
                    },
                )
                    .into_response(),
                Err(r) => r,
            }
        }
        Err(e) => form.refused(e),
    }
}
