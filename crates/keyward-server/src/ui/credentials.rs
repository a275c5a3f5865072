//! Provider Credentials, screen by screen as the admin guide shows them: the filtered table,
//! Add, Edit (compare-and-set), Activate / Deactivate, Test, Delete behind a confirmation, and
//! a credential's own page. Every action goes through the same `Vault` calls and the same role
//! checks as the API (`routes::visible_credential`), audited with the session's token as actor.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keyward_core::audit::EventFilter;
use keyward_core::credential::{
    CredentialStatus, CredentialUpdate, CredentialView, FormatCheck, NewCredential,
};
use keyward_core::provider::SecretKind;
use keyward_core::{CredentialName, Millis, OrgId, PROVIDERS, Provider};
use keyward_store::{CredentialSort, HOUR_MS, Role, UsageSubject, VaultError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;
use serde::Deserialize;

use super::chart::{Chart, chart};
use super::{Chrome, UiSession, failed, visible_orgs, when};
use crate::AppState;
use crate::auth::Caller;
use crate::routes::visible_credential;

/// Rows per page of the table.
const PAGE: u64 = 50;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/credentials", get(list).post(create))
        .route("/ui/credentials/new", get(new_form))
        .route("/ui/credentials/{id}", get(detail))
        .route("/ui/credentials/{id}/edit", get(edit_form).post(update))
        .route("/ui/credentials/{id}/activate", post(activate))
        .route("/ui/credentials/{id}/deactivate", post(deactivate))
        .route("/ui/credentials/{id}/test", post(test))
        .route(
            "/ui/credentials/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

/// What a URL's path segment or query value may hold as is (RFC 3986's unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Whether a public field says where the key is sent (a base URL, an endpoint).
fn sends_key_to(field: &str) -> bool {
    field == "base_url" || field.ends_with("_url") || field.contains("endpoint")
}

/// The status badge: its words and its class.
fn badge(view: &CredentialView) -> (&'static str, &'static str) {
    match (view.status, view.active) {
        (CredentialStatus::Undecryptable, _) => ("Undecryptable", "undecryptable"),
        (CredentialStatus::Ok, true) => ("Active", "active"),
        (CredentialStatus::Ok, false) => ("Inactive", "inactive"),
        // Readable, but stored in plain text until `keyward reencrypt` or its next update.
        (CredentialStatus::LegacyPlaintext, true) => ("Active, not sealed", "legacy"),
        (CredentialStatus::LegacyPlaintext, false) => ("Inactive, not sealed", "legacy"),
    }
}

fn display_name(provider: &str) -> String {
    Provider::get(provider).map_or_else(|_| provider.to_owned(), |p| p.display_name.to_owned())
}

// ----- the table --------------------------------------------------------------------------

struct Row {
    id: String,
    name: String,
    org: String,
    provider: String,
    key_hint: String,
    status: &'static str,
    badge: &'static str,
    active: bool,
    priority: i64,
    weight: i64,
    last_used: String,
    /// The exact time, on hover.
    last_used_at: String,
    last_test: String,
    requests_24h: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credentials.html")]
struct ListPage {
    chrome: Chrome,
    orgs: Vec<String>,
    /// The organization filter; empty for all.
    org: String,
    providers: Vec<(&'static str, &'static str)>,
    /// The provider filter; empty for all.
    provider: String,
    /// The search text (name or key hint); the sort's word.
    search: String,
    sort: &'static str,
    rows: Vec<Row>,
    total: u64,
    /// Links to the pages before and after, with the filters kept.
    prev: Option<String>,
    next: Option<String>,
    first: u64,
    last: u64,
}

#[derive(Deserialize)]
struct ListQuery {
    org: Option<String>,
    provider: Option<String>,
    /// Only credentials whose name or key hint holds this.
    q: Option<String>,
    /// `listing` (default), `name`, `updated` or `last_used`.
    sort: Option<String>,
    page: Option<u64>,
    notice: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<ListQuery>,
) -> Response {
    let principal = &session.0.principal;
    let wanted = q.org.filter(|o| !o.is_empty());
    let org = match (&principal.org, wanted) {
        (Some(own), Some(o)) if o != own.as_str() => {
            return failed(crate::ApiError::NotFound("no such organization".into()));
        }
        (Some(own), _) => Some(own.clone()),
        (None, Some(o)) => match OrgId::new(&o) {
            Ok(o) => Some(o),
            Err(_) => {
                return failed(crate::ApiError::NotFound("no such organization".into()));
            }
        },
        (None, None) => None,
    };
    let provider = q
        .provider
        .filter(|p| !p.is_empty())
        .and_then(|p| Provider::get(&p).ok());
    let orgs = match visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let page = q.page.unwrap_or(0);
    // A key pasted into the search box is not searched for, nor shown back.
    let search =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty() && !keyward_core::secret_like::looks_like_secret(s))
            .map(|s| s.chars().take(100).collect::<String>())
            .unwrap_or_default();
    let sort = CredentialSort::parse(q.sort.as_deref().unwrap_or("")).unwrap_or_default();
    let (creds, total) = match state
        .vault
        .find_credentials(
            org.as_ref(),
            provider,
            Some(search.as_str()).filter(|s| !s.is_empty()),
            sort,
            PAGE,
            page.saturating_mul(PAGE),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let day_ago = Millis(Millis::now().0 - 24 * HOUR_MS);
    let recent = match state
        .vault
        .recent_requests(org.as_ref(), UsageSubject::Credential, day_ago)
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let now = Millis::now();
    let rows = creds
        .into_iter()
        .map(|c| {
            let (status, badge) = badge(&c);
            Row {
                requests_24h: recent.get(c.id.as_str()).copied().unwrap_or(0),
                id: c.id.to_string(),
                provider: display_name(&c.provider),
                name: c.name.to_string(),
                org: c.org.to_string(),
                key_hint: c.key_hint,
                status,
                badge,
                active: c.active,
                priority: c.priority,
                weight: c.weight,
                last_used: super::ago(c.last_used_at, now),
                last_used_at: when(c.last_used_at),
                // The outcome only (`unreachable`, not why): the why is on its own page.
                last_test: c.last_test_result.as_deref().map_or_else(
                    || "-".to_owned(),
                    |r| r.split(':').next().unwrap_or(r).to_owned(),
                ),
            }
        })
        .collect::<Vec<_>>();
    let org_s = org.map(|o| o.to_string()).unwrap_or_default();
    let provider_s = provider.map(|p| p.id.to_owned()).unwrap_or_default();
    let link = |p: u64| {
        format!(
            "/ui/credentials?org={}&provider={}&q={}&sort={}&page={p}",
            encode(&org_s),
            encode(&provider_s),
            encode(&search),
            sort.as_str()
        )
    };
    let first = page * PAGE + u64::from(!rows.is_empty());
    let last = page * PAGE + rows.len() as u64;
    ListPage {
        chrome: Chrome::new(&session.0, "credentials", q.notice.as_deref()),
        orgs,
        org: org_s.clone(),
        providers: PROVIDERS.iter().map(|p| (p.id, p.display_name)).collect(),
        provider: provider_s.clone(),
        search: search.clone(),
        sort: sort.as_str(),
        prev: (page > 0).then(|| link(page - 1)),
        next: (last < total).then(|| link(page + 1)),
        rows,
        total,
        first,
        last,
    }
    .into_response()
}

// ----- add and edit -----------------------------------------------------------------------

/// One of a provider's own fields, as an input.
struct FieldInput {
    name: &'static str,
    label: String,
    value: String,
    required: bool,
}

/// The form's secret input: a password field, or a text area for a JSON document.
struct SecretInput {
    label: &'static str,
    multiline: bool,
    required: bool,
}

fn secret_input(provider: &Provider) -> SecretInput {
    match provider.secret {
        SecretKind::ApiKey => SecretInput {
            label: "API Key",
            multiline: false,
            required: true,
        },
        SecretKind::ServiceAccountJson => SecretInput {
            label: "Service account JSON",
            multiline: true,
            required: true,
        },
        SecretKind::AwsSecretAccessKey => SecretInput {
            label: "Secret access key",
            multiline: false,
            required: true,
        },
        SecretKind::Optional => SecretInput {
            label: "API Key (optional)",
            multiline: false,
            required: false,
        },
    }
}

fn label(field: &str) -> String {
    let words = field.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// Which credential is being edited, at which version.
struct Editing {
    id: String,
    version: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credential_form.html")]
struct FormPage {
    chrome: Chrome,
    editing: Option<Editing>,
    orgs: Vec<String>,
    org: String,
    providers: Vec<(&'static str, &'static str)>,
    provider: &'static str,
    provider_name: &'static str,
    secret: SecretInput,
    name: String,
    base_url: String,
    default_base_url: String,
    needs_base_url: bool,
    priority: String,
    weight: String,
    fields: Vec<FieldInput>,
    /// A problem with the form as a whole.
    error: Option<String>,
    name_error: Option<String>,
    key_error: Option<String>,
    /// The key failed its format check: offer to store it anyway.
    offer_skip: bool,
    /// The credential changed since the form was opened.
    stale: bool,
}

/// What was typed, by input name.
struct Typed(BTreeMap<String, String>);

impl Typed {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |v| v.trim())
    }

    fn fields(&self, provider: &Provider) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([("base_url".to_owned(), self.get("base_url").to_owned())]);
        for f in provider.public_fields {
            out.insert(
                f.name.to_owned(),
                self.get(&format!("f_{}", f.name)).to_owned(),
            );
        }
        out
    }

    fn number(&self, name: &str) -> Result<Option<i64>, String> {
        let v = self.get(name);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| format!("{} must be a whole number", label(name)))
    }
}

impl FormPage {
    fn blank(chrome: Chrome, orgs: Vec<String>, org: String, provider: &'static Provider) -> Self {
        Self {
            chrome,
            editing: None,
            orgs,
            org,
            providers: PROVIDERS.iter().map(|p| (p.id, p.display_name)).collect(),
            provider: provider.id,
            provider_name: provider.display_name,
            secret: secret_input(provider),
            name: String::new(),
            base_url: String::new(),
            default_base_url: provider.default_base_url.unwrap_or("").to_owned(),
            needs_base_url: provider.needs_base_url,
            priority: String::new(),
            weight: String::new(),
            fields: provider
                .public_fields
                .iter()
                .map(|f| FieldInput {
                    name: f.name,
                    label: label(f.name),
                    value: String::new(),
                    required: f.required,
                })
                .collect(),
            error: None,
            name_error: None,
            key_error: None,
            offer_skip: false,
            stale: false,
        }
    }

    /// The form again with what was typed, except the key, and except anything that looks
    /// like a key: a key pasted into the wrong field is refused ("... is not shown") and must
    /// not come back in the page either.
    fn retyped(mut self, typed: &Typed) -> Self {
        let echo = |name: &str| {
            let v = typed.get(name);
            if keyward_core::secret_like::looks_like_secret(v) {
                String::new()
            } else {
                v.to_owned()
            }
        };
        self.name = echo("name");
        self.base_url = echo("base_url");
        self.priority = echo("priority");
        self.weight = echo("weight");
        for f in &mut self.fields {
            f.value = echo(&format!("f_{}", f.name));
        }
        self
    }

    /// The form filled from a stored credential.
    fn stored(mut self, view: &CredentialView) -> Self {
        self.editing = Some(Editing {
            id: view.id.to_string(),
            version: view.version,
        });
        self.name = view.name.to_string();
        self.base_url = view.fields.get("base_url").cloned().unwrap_or_default();
        self.priority = view.priority.to_string();
        self.weight = view.weight.to_string();
        for f in &mut self.fields {
            f.value = view.fields.get(f.name).cloned().unwrap_or_default();
        }
        self.secret.required = false;
        self
    }

    /// The form again, with a refusal where it belongs: by the key, by the name, or above
    /// the form; what the form cannot place is an error page.
    fn refused(mut self, e: VaultError) -> Response {
        match e {
            VaultError::KeyFormat(m) => {
                self.key_error = Some(m);
                self.offer_skip = true;
            }
            VaultError::AlreadyExists(_) => {
                self.name_error = Some(format!("{e}; choose another name"));
            }
            VaultError::InvalidInput(m) => self.error = Some(m),
            other => return failed(other),
        }
        (StatusCode::UNPROCESSABLE_ENTITY, self).into_response()
    }
}

#[derive(Deserialize)]
struct NewQuery {
    org: Option<String>,
    provider: Option<String>,
    /// What was typed before another organization or provider was chosen (never the key).
    #[serde(flatten)]
    typed: BTreeMap<String, String>,
}

async fn new_form(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NewQuery>,
) -> Response {
    let caller = Caller(session.0.principal.clone());
    let orgs = match visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let org = q
        .org
        .filter(|o| orgs.contains(o))
        .or_else(|| orgs.first().cloned())
        .unwrap_or_default();
    if let Ok(o) = OrgId::new(&org)
        && let Err(e) = caller.require(&o, &[Role::OrgAdmin])
    {
        return failed(e);
    }
    if !matches!(session.0.principal.role, Role::Admin | Role::OrgAdmin) {
        return failed(crate::ApiError::Forbidden(
            "a viewer token may not add credentials".into(),
        ));
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

async fn create(
    State(state): State<AppState>,
    session: UiSession,
    Form(typed): Form<Vec<(String, String)>>,
) -> Response {
    let typed = Typed(typed.into_iter().collect());
    let caller = Caller(session.0.principal.clone());
    let provider = match Provider::get(typed.get("provider")) {
        Ok(p) => p,
        Err(e) => return failed(crate::ApiError::from(VaultError::from(e))),
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
    if let Err(e) = caller.require(&org, &[Role::OrgAdmin]) {
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
    match state.vault.add_credential(new, &caller.actor()).await {
        Ok(view) => Redirect::to(&format!(
            "/ui/credentials/{}?notice=created",
            encode(view.id.as_str())
        ))
        .into_response(),
        Err(e) => form.refused(e),
    }
}

/// The credential behind a console URL, if the session may act on it with `roles`; another
/// organization's is "not found", as in the API.
async fn credential(
    state: &AppState,
    session: &UiSession,
    id: &str,
    roles: &[Role],
) -> Result<CredentialView, Response> {
    let caller = Caller(session.0.principal.clone());
    visible_credential(state, &caller, id, roles)
        .await
        .map_err(failed)
}

async fn edit_form(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
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

async fn update(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Form(typed): Form<Vec<(String, String)>>,
) -> Response {
    let typed = Typed(typed.into_iter().collect());
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
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
    // Where the key is sent is part of the secret: moving it takes the key again, so that a
    // session cannot point a stored key at an address of its own and press Test.
    let moved = fields.iter().any(|(k, v)| {
        sends_key_to(k) && view.fields.get(k).map_or("", String::as_str) != v.as_str()
    });
    if moved && key.is_empty() {
        return again(FormPage {
            key_error: Some(
                "Changing where the key is sent (the base URL or endpoint) needs the key again: give it in full to confirm."
                    .into(),
            ),
            ..form
        });
    }
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
    let actor = session.0.principal.actor();
    match state
        .vault
        .update_credential(&view.id, Some(version), update, &actor)
        .await
    {
        Ok(view) => Redirect::to(&format!(
            "/ui/credentials/{}?notice=updated",
            encode(view.id.as_str())
        ))
        .into_response(),
        // Stale: show what is stored now, and say so; never overwrite silently.
        Err(VaultError::Conflict { .. }) => {
            match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
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

// ----- the row actions --------------------------------------------------------------------

async fn set_active(state: AppState, session: UiSession, id: String, active: bool) -> Response {
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state
        .vault
        .set_credential_active(&view.id, active, &session.0.principal.actor())
        .await
    {
        Ok(view) => Redirect::to(&format!(
            "/ui/credentials?org={}&notice={}",
            encode(view.org.as_str()),
            if active { "activated" } else { "deactivated" }
        ))
        .into_response(),
        Err(e) => failed(e),
    }
}

async fn activate(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    set_active(state, session, id, true).await
}

async fn deactivate(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    set_active(state, session, id, false).await
}

async fn test(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let timeout = std::time::Duration::from_secs(10);
    let actor = session.0.principal.actor();
    if let Err(e) = crate::routes::test_credential(&state, &view.id, timeout, &actor).await {
        return failed(e);
    }
    Redirect::to(&format!(
        "/ui/credentials/{}?notice=tested",
        encode(view.id.as_str())
    ))
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

async fn confirm_delete(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
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

async fn delete(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state
        .vault
        .delete_credential(&view.id, &session.0.principal.actor())
        .await
    {
        Ok(()) => Redirect::to(&format!(
            "/ui/credentials?org={}&notice=deleted",
            encode(view.org.as_str())
        ))
        .into_response(),
        Err(e) => failed(e),
    }
}

// ----- a credential's own page ------------------------------------------------------------

/// One audit event, for people.
pub(super) struct EventRow {
    pub(super) seq: i64,
    pub(super) at: String,
    pub(super) actor: String,
    /// The actor for people: a token's name where it is known.
    pub(super) who: String,
    pub(super) action: String,
    pub(super) target: String,
    pub(super) outcome: String,
    pub(super) details: String,
    /// A key test's result (`ok`, `rejected (HTTP 401)`, ...).
    pub(super) result: String,
}

/// Token names by actor (`token:ID`), to show who acted by name.
pub(super) struct Names(std::collections::HashMap<String, String>);

impl Names {
    /// The names of the tokens `session` may see: every token for an admin, its own
    /// organization's otherwise (an admin token's name is not an organization's business).
    pub(super) async fn load(state: &AppState, session: &UiSession) -> Result<Self, VaultError> {
        let principal = &session.0.principal;
        let scope = match principal.role {
            Role::Admin => None,
            _ => match &principal.org {
                Some(org) => Some(org),
                None => return Ok(Self(Default::default())),
            },
        };
        Ok(Self(
            state
                .vault
                .list_tokens(scope)
                .await?
                .into_iter()
                .map(|t| (format!("token:{}", t.id), t.name))
                .collect(),
        ))
    }

    /// `name` for a known token, else the actor as recorded (`serve:bootstrap`, `cli:...`).
    pub(super) fn of(&self, actor: &str) -> String {
        self.0
            .get(actor)
            .cloned()
            .unwrap_or_else(|| actor.to_owned())
    }
}

impl EventRow {
    pub(super) fn new(e: keyward_core::audit::AuditEvent, names: &Names) -> Self {
        Self {
            seq: e.seq,
            at: when(Some(e.at)),
            who: names.of(&e.actor),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome.as_str().to_owned(),
            result: e.details["result"].as_str().unwrap_or_default().to_owned(),
            details: if e.details.is_null() {
                String::new()
            } else {
                e.details.to_string()
            },
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credential.html")]
struct DetailPage {
    chrome: Chrome,
    id: String,
    name: String,
    org: String,
    provider: String,
    key_hint: String,
    status: &'static str,
    badge: &'static str,
    active: bool,
    fields: Vec<(String, String)>,
    modalities: String,
    priority: i64,
    weight: i64,
    version: i64,
    kid: String,
    created: String,
    created_by: String,
    updated: String,
    updated_by: String,
    last_used: String,
    last_test: String,
    last_tested: String,
    tests: Vec<EventRow>,
    events: Vec<EventRow>,
    day: Chart,
    week: Chart,
}

#[derive(Deserialize)]
struct DetailQuery {
    notice: Option<String>,
}

async fn detail(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let view = match credential(&state, &session, &id, &[Role::OrgAdmin, Role::Viewer]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let target = format!("credential:{}", view.id);
    let about = |action: Option<&str>| EventFilter {
        target: Some(target.clone()),
        org: Some(view.org.to_string()),
        action: action.map(str::to_owned),
        ..EventFilter::default()
    };
    let now = Millis::now();
    let (test_filter, event_filter) = (about(Some("test")), about(None));
    let (tests, events, buckets, names) = match tokio::try_join!(
        state.vault.list_events(&test_filter, 10),
        state.vault.list_events(&event_filter, 50),
        state.vault.usage_hourly(
            &view.org,
            UsageSubject::Credential,
            view.id.as_str(),
            Millis(now.0 - 7 * 24 * HOUR_MS),
        ),
        Names::load(&state, &session),
    ) {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let (status, badge) = badge(&view);
    DetailPage {
        chrome: Chrome::new(&session.0, "credentials", q.notice.as_deref()),
        id: view.id.to_string(),
        name: view.name.to_string(),
        org: view.org.to_string(),
        provider: display_name(&view.provider),
        key_hint: view.key_hint.clone(),
        status,
        badge,
        active: view.active,
        fields: view
            .fields
            .iter()
            .map(|(k, v)| {
                let name = if k == "base_url" {
                    "API Base URL".to_owned()
                } else {
                    label(k)
                };
                (name, v.clone())
            })
            .collect(),
        modalities: if view.modalities.is_empty() {
            "all".to_owned()
        } else {
            view.modalities
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        priority: view.priority,
        weight: view.weight,
        version: view.version,
        kid: view.kid.clone(),
        created: when(Some(view.created_at)),
        created_by: names.of(&view.created_by),
        updated: when(Some(view.updated_at)),
        updated_by: names.of(&view.updated_by),
        last_used: when(view.last_used_at),
        last_test: view
            .last_test_result
            .clone()
            .unwrap_or_else(|| "not tested yet".to_owned()),
        last_tested: view
            .last_tested_at
            .map(|t| when(Some(t)))
            .unwrap_or_default(),
        tests: tests
            .into_iter()
            .map(|e| EventRow::new(e, &names))
            .collect(),
        events: events
            .into_iter()
            .map(|e| EventRow::new(e, &names))
            .collect(),
        day: chart("Last 24 hours", &buckets, now, 24, 1),
        week: chart("Last 7 days", &buckets, now, 7, 24),
    }
    .into_response()
}
