//! The Add and Edit form's model: the inputs of a provider's fields, what was typed, what is
//! stored, and where a refusal is shown.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::credential::CredentialView;
use keyward_core::provider::SecretKind;
use keyward_core::{PROVIDERS, Provider};

use crate::ApiError;
use crate::ui::{Chrome, failed};

/// One of a provider's own fields, as an input.
pub(super) struct FieldInput {
    pub(super) name: &'static str,
    pub(super) label: String,
    pub(super) value: String,
    pub(super) required: bool,
}

/// The form's secret input: a password field, or a text area for a JSON document.
pub(super) struct SecretInput {
    pub(super) label: &'static str,
    pub(super) multiline: bool,
    pub(super) required: bool,
}

pub(super) fn secret_input(provider: &Provider) -> SecretInput {
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

pub(super) fn label(field: &str) -> String {
    let words = field.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// Which credential is being edited, at which version.
pub(super) struct Editing {
    pub(super) id: String,
    pub(super) version: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credential_form.html")]
pub(super) struct FormPage {
    pub(super) chrome: Chrome,
    pub(super) editing: Option<Editing>,
    pub(super) orgs: Vec<String>,
    pub(super) org: String,
    pub(super) providers: Vec<(&'static str, &'static str)>,
    pub(super) provider: &'static str,
    pub(super) provider_name: &'static str,
    pub(super) secret: SecretInput,
    pub(super) name: String,
    pub(super) base_url: String,
    pub(super) default_base_url: String,
    pub(super) needs_base_url: bool,
    pub(super) priority: String,
    pub(super) weight: String,
    pub(super) fields: Vec<FieldInput>,
    /// A problem with the form as a whole.
    pub(super) error: Option<String>,
    pub(super) name_error: Option<String>,
    pub(super) key_error: Option<String>,
    /// The key failed its format check: offer to store it anyway.
    pub(super) offer_skip: bool,
    /// The credential changed since the form was opened.
    pub(super) stale: bool,
}

/// What was typed, by input name.
pub(super) struct Typed(pub(super) BTreeMap<String, String>);

impl Typed {
    pub(super) fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |v| v.trim())
    }

    pub(super) fn fields(&self, provider: &Provider) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([("base_url".to_owned(), self.get("base_url").to_owned())]);
        for f in provider.public_fields {
            out.insert(
                f.name.to_owned(),
                self.get(&format!("f_{}", f.name)).to_owned(),
            );
        }
        out
    }

    pub(super) fn number(&self, name: &str) -> Result<Option<i64>, String> {
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
    pub(super) fn blank(
        chrome: Chrome,
        orgs: Vec<String>,
        org: String,
        provider: &'static Provider,
    ) -> Self {
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
    pub(super) fn retyped(mut self, typed: &Typed) -> Self {
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
    pub(super) fn stored(mut self, view: &CredentialView) -> Self {
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
    pub(super) fn refused(mut self, e: ApiError) -> Response {
        match e {
            ApiError::KeyFormat(m) => {
                self.key_error = Some(m);
                self.offer_skip = true;
            }
            ApiError::AlreadyExists(m) => {
                self.name_error = Some(format!("{m}; choose another name"));
            }
            // Changing where the key is sent takes the key again (`access::key_move`).
            ApiError::Unprocessable(m) => self.key_error = Some(capitalized(&m)),
            ApiError::BadRequest(m) => self.error = Some(m),
            other => return failed(other),
        }
        (StatusCode::UNPROCESSABLE_ENTITY, self).into_response()
    }
}

/// `words` as a sentence: its first letter a capital, a full stop at its end.
fn capitalized(words: &str) -> String {
    let mut chars = words.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}
