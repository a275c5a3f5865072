//! The Config Variables page: variables (sensitive values as `***`), and revealing one.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Response};
use keyward_core::{OrgId, VarName};
use secrecy::ExposeSecret as _;

use super::form::{OrgQuery, Typed, named_org, typed};
use super::{Chrome, UiSession, failed, when};
use crate::access::{On, Op};
use crate::{ApiError, AppState, ops};

struct VarRow {
    name: String,
    org: String,
    value: String,
    sensitive: bool,
    description: String,
    updated: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/variables.html")]
struct VariablesPage {
    chrome: Chrome,
    org: String,
    rows: Vec<VarRow>,
    /// Whether the session may reveal sensitive values here.
    reveal: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/revealed.html")]
struct RevealedPage {
    chrome: Chrome,
    name: String,
    org: String,
    value: String,
}

pub(super) async fn variables(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OrgQuery>,
) -> Response {
    let p = &session.0.principal;
    let org = match named_org(q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    // An organization's page shows its own variables; an admin's page without one, every
    // scope's.
    let on = crate::access::scope_of(p, org.as_ref(), On::Everywhere);
    let vars = match ops::variables::list(&state, p, on).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let reveal = ops::may(p, Op::RevealVariable, on);
    let rows = vars
        .into_iter()
        .map(|v| VarRow {
            value: v.shown_value().to_owned(),
            name: v.name.to_string(),
            org: v
                .org
                .as_ref()
                .map_or_else(|| "(global)".to_owned(), ToString::to_string),
            sensitive: v.sensitive,
            description: v.description,
            updated: when(Some(v.updated_at)),
        })
        .collect();
    VariablesPage {
        chrome: Chrome::new(&session.0, "variables", q.notice.as_deref()),
        org: org.map(|o| o.to_string()).unwrap_or_default(),
        rows,
        reveal,
    }
    .into_response()
}

/// Shows one sensitive value, once, on a page that is not cached (every console page is
/// `no-store`). Whoever may resolve the organization's keys (admins, org_admins), as in the
/// API; audited as the API's reveal is.
pub(super) async fn variable_reveal(
    State(state): State<AppState>,
    session: UiSession,
    Form(form): Form<Typed>,
) -> Response {
    let name = match VarName::new(typed(&form, "name")) {
        Ok(n) => n,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    let org = match typed(&form, "org") {
        "" | "(global)" => None,
        o => match OrgId::new(o) {
            Ok(o) => Some(o),
            Err(_) => return failed(ApiError::NotFound("no such organization".into())),
        },
    };
    let p = &session.0.principal;
    let on = ops::variables::scope(p, org.as_ref());
    match ops::variables::read(&state, p, on, &name, true).await {
        Ok(got) => RevealedPage {
            chrome: Chrome::new(&session.0, "variables", None),
            name: name.to_string(),
            org: org.map_or_else(|| "(global)".to_owned(), |o| o.to_string()),
            value: got
                .value
                .map(|v| v.expose_secret().to_owned())
                .or(got.view.value)
                .unwrap_or_default(),
        }
        .into_response(),
        Err(e) => failed(e),
    }
}
