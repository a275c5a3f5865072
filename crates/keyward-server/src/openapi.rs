//! What the OpenAPI document says besides the routes' own annotations: the bearer security
//! scheme, the problem+json error shape on every operation, and the shapes of the answers that
//! handlers assemble (`Json<Value>` built from the store's views), so that a client generated
//! from `/api/openapi.json` can parse every answer. Schemathesis checks the answers against
//! these in the test suite (`tests/openapi.py`).

use std::collections::BTreeMap;

use keyward_core::audit::AuditEvent;
use keyward_core::credential::CredentialView;
use keyward_store::{GatewayTokenView, TokenView, Usage};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// An error, as every route answers it (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The status's reason phrase.
    pub(crate) title: String,
    /// The HTTP status.
    pub(crate) status: u16,
    /// What went wrong, for people; never a secret.
    pub(crate) detail: String,
    /// `unknown` when the store went away while a write was committed.
    pub(crate) outcome: Option<String>,
    /// The record such a write was about, to look up before retrying.
    pub(crate) id: Option<String>,
    /// `no_credential` on a 404 that means the organization has no key for the provider (a
    /// client may fall back to its own environment), as opposed to no such organization;
    /// `unknown_provider` on a 400 for a provider Keyward does not know.
    pub(crate) code: Option<String>,
}

/// A page of credentials.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialPage {
    /// The credentials of this page, masked.
    pub(crate) items: Vec<CredentialView>,
    /// How many there are in all.
    pub(crate) total: u64,
    /// The offset of the next page, if there is one.
    pub(crate) next_offset: Option<u64>,
}

/// A page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventPage {
    /// The events.
    pub(crate) items: Vec<AuditEvent>,
    /// Pass as `before` for the next page; absent at the end. Present whenever older events
    /// may match, also after a page shorter than the limit (the listing read back its budget
    /// of events and stopped).
    pub(crate) next_cursor: Option<i64>,
}

/// A provider config object: the key and the public fields a client needs. Fields beyond
/// these are the provider's public fields (`endpoint`, `api_version`, ...), all strings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConfigObject {
    /// The provider's id.
    pub(crate) provider: String,
    /// The key (`null` for a provider without one).
    pub(crate) api_key: Option<String>,
    /// Where requests go.
    pub(crate) base_url: Option<String>,
    /// The credential that answered (absent when the environment did).
    pub(crate) credential_id: Option<String>,
    /// Its name.
    pub(crate) credential_name: Option<String>,
    /// What may be shown of the key (`sk-...abcd`); `null` when there is none.
    pub(crate) key_hint: Option<String>,
    /// The variables this credential becomes, in order: exactly what `keyward run` sets.
    pub(crate) env: Option<Vec<EnvEntry>>,
    /// How long the answer may be kept, in milliseconds: as long as the server keeps its own
    /// (0: not at all).
    pub(crate) cache_ttl_ms: Option<u64>,
    /// Other public fields.
    #[serde(flatten)]
    pub(crate) fields: BTreeMap<String, String>,
}

/// One variable of a resolution.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnvEntry {
    /// The variable's name.
    pub(crate) name: String,
    /// Its value, when it is public (a base URL, an endpoint).
    pub(crate) value: Option<String>,
    /// Whether it takes the key (`api_key` of the same object).
    pub(crate) secret: Option<bool>,
    /// Whether it takes the path of a private file holding the key (Vertex's
    /// `GOOGLE_APPLICATION_CREDENTIALS`).
    pub(crate) file: Option<bool>,
}

/// One provider of the registry.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderEntry {
    /// Its id.
    pub(crate) id: &'static str,
    /// Its name for people.
    pub(crate) display_name: &'static str,
    /// Other ids it is known by (Open Notebook's `google`, `azure`).
    pub(crate) aliases: Vec<&'static str>,
    /// What its secret is: `api_key`, `service_account_json`, `aws_secret_access_key`, or
    /// `optional` (a local server that needs none).
    pub(crate) secret: String,
    /// The variables holding the key, in the order the environment fallback reads them.
    pub(crate) secret_env: Vec<&'static str>,
    /// The variables holding the base URL.
    pub(crate) base_url_env: Vec<&'static str>,
    /// Where requests go when the credential names no base URL.
    pub(crate) default_base_url: Option<&'static str>,
    /// Whether a credential must name its base URL.
    pub(crate) needs_base_url: bool,
    /// The public fields it takes besides `base_url`, each with its variables.
    pub(crate) public_fields: Vec<ProviderField>,
    /// Variables set to a fixed value, as `[name, value]`.
    pub(crate) fixed_env: Vec<[&'static str; 2]>,
    /// How its API takes the key: `bearer`, `x_api_key`, `goog_api_key`, ...
    pub(crate) auth: String,
}

/// A public field of a provider.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderField {
    /// Its name (`endpoint`, `api_version`, ...).
    pub(crate) name: &'static str,
    /// The variables it sets.
    pub(crate) env: Vec<&'static str>,
    /// Whether a credential must have it.
    pub(crate) required: bool,
}

impl From<&'static keyward_core::Provider> for ProviderEntry {
    fn from(p: &'static keyward_core::Provider) -> Self {
        let word = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Self {
            id: p.id,
            display_name: p.display_name,
            aliases: p.aliases.to_vec(),
            secret: word(serde_json::json!(p.secret)),
            secret_env: p.secret_env.to_vec(),
            base_url_env: p.base_url_env.to_vec(),
            default_base_url: p.default_base_url,
            needs_base_url: p.needs_base_url,
            public_fields: p
                .public_fields
                .iter()
                .map(|f| ProviderField {
                    name: f.name,
                    env: f.env.to_vec(),
                    required: f.required,
                })
                .collect(),
            fixed_env: p.fixed_env.iter().map(|(k, v)| [*k, *v]).collect(),
            auth: word(serde_json::json!(p.auth)),
        }
    }
}

/// The provider registry.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderList {
    /// Every provider, in display order.
    pub(crate) items: Vec<ProviderEntry>,
}

/// Which providers the server's own environment could serve.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnvStatusAnswer {
    /// Whether resolutions fall back to the server's environment unless an organization says
    /// otherwise (`--env-fallback`).
    pub(crate) env_fallback_default: bool,
    /// One entry a provider, in display order.
    pub(crate) providers: Vec<crate::ops::providers::EnvStatus>,
}

/// The models a credential's key reaches.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DiscoveredModels {
    /// The credential.
    pub(crate) credential_id: String,
    /// Its provider.
    pub(crate) provider: String,
    /// The models, by name, sorted.
    pub(crate) models: Vec<String>,
}

/// The config objects of an organization's providers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnvAnswer {
    /// The organization.
    pub(crate) organization_id: String,
    /// One object a provider.
    pub(crate) providers: Vec<ConfigObject>,
}

/// A new API token: its view, and the token itself, shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenCreated {
    #[serde(flatten)]
    pub(crate) view: TokenView,
    /// The token (`kwt_...`); it is never shown again.
    pub(crate) token: String,
}

/// A new gateway token: its view, and the token itself, shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GatewayTokenCreated {
    #[serde(flatten)]
    pub(crate) view: GatewayTokenView,
    /// The token (`kwg_...`); it is never shown again.
    pub(crate) token: String,
}

/// The outcome of a key test.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyTest {
    /// Whether the provider took the key.
    pub(crate) ok: bool,
    /// What happened, in words.
    pub(crate) result: String,
    /// The credential, with the result stored on it.
    pub(crate) credential: CredentialView,
}

/// An organization's gateway usage.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageAnswer {
    /// Request counts by subject and upstream status.
    pub(crate) usage: Vec<Usage>,
}

/// The static targets now served.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TargetsReloaded {
    /// Their ids.
    pub(crate) targets: Vec<String>,
    /// Each target with the reference its key was resolved from (by name).
    pub(crate) resolved: Vec<crate::TargetSummary>,
    /// Sections of the file Keyward does not implement, ignored, by name.
    pub(crate) ignored: Vec<String>,
    /// The audit policy in force after the load, if the file has an `audit-logger` policy
    /// (the stricter of it and the server's settings; an immutable one in the store only
    /// tightens).
    pub(crate) audit_policy: Option<keyward_store::AuditPolicy>,
}

/// A credential in the gateway status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusCredential {
    pub(crate) id: String,
    pub(crate) name: String,
    /// Its key's hint (`sk-...WXYZ`), never the key.
    pub(crate) key_hint: String,
    /// Why it is set aside (`failing`, `rate_limited`); only among those set aside.
    pub(crate) reason: Option<String>,
    /// Until when (ms since the epoch); only among those set aside.
    pub(crate) until: Option<i64>,
}

/// An organization's provider in the gateway status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusProvider {
    pub(crate) org: String,
    pub(crate) provider: String,
    /// Active credentials the gateway would use.
    pub(crate) active: Vec<StatusCredential>,
    /// Active credentials set aside for now.
    pub(crate) set_aside: Vec<StatusCredential>,
}

/// What the gateway serves now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GatewayStatus {
    /// Whether the server was started with a targets file.
    pub(crate) targets_file: bool,
    pub(crate) targets: Vec<crate::TargetSummary>,
    /// Sections of the targets file Keyward ignored, by name.
    pub(crate) ignored: Vec<String>,
    /// The last load of the targets file, if any.
    pub(crate) last_load: Option<crate::LoadRecord>,
    /// The load the targets being served come from (the last that succeeded).
    pub(crate) serving_since: Option<crate::LoadRecord>,
    pub(crate) providers: Vec<StatusProvider>,
    /// The audit-logger policy in force.
    pub(crate) audit_policy: keyward_store::AuditPolicy,
    /// The audit sinks and how far behind they are (admins; empty for others).
    pub(crate) audit_sinks: Vec<crate::SinkStatus>,
}

/// Routes anyone may call: no token.
const PUBLIC: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The errors any authenticated operation may answer, besides those it declares.
const ERRORS: [(&str, &str); 8] = [
    (
        "400",
        "The request is malformed or breaks a rule; `detail` says which",
    ),
    ("401", "No valid bearer token"),
    ("403", "The token's role may not do this"),
    (
        "404",
        "No such thing (or one of another organization); `code` is `no_credential` when the organization has no key for the provider",
    ),
    (
        "409",
        "It exists already, changed meanwhile, or cannot be decrypted",
    ),
    ("413", "The body is too large"),
    (
        "429",
        "Too many failed authentications from this address (Retry-After)",
    ),
    (
        "503",
        "The store is unavailable, or a write's outcome is unknown (Retry-After)",
    ),
];

/// Adds the security scheme, the error responses and the answer shapes.
#[derive(Debug)]
pub(crate) struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let mut schemas: Vec<(String, RefOr<utoipa::openapi::schema::Schema>)> = Vec::new();
        <Problem as ToSchema>::schemas(&mut schemas);
        schemas.push((
            "Problem".into(),
            <Problem as utoipa::PartialSchema>::schema(),
        ));
        components.schemas.extend(schemas);
        let problem = || {
            ResponseBuilder::new().content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
        };
        if let Some(components) = doc.components.as_mut() {
            for schema in components.schemas.values_mut() {
                constrain_properties(schema);
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if !public {
                    op.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                }
                for param in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(param) = param
                        && let Some(RefOr::T(schema)) = param.schema.as_mut()
                    {
                        constrain(&param.name, schema);
                    }
                }
                let responses = &mut op.responses.responses;
                let errors: &[(&str, &str)] = if public {
                    &[("503", "The store is unavailable (Retry-After)")]
                } else {
                    &ERRORS
                };
                for (status, description) in errors {
                    responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem().description(*description).build().into());
                }
                // Responses declared with a description only get the problem shape too.
                for (status, response) in responses.iter_mut() {
                    if (status.starts_with('4') || status.starts_with('5'))
                        && let RefOr::T(r) = response
                        && r.content.is_empty()
                    {
                        let description = r.description.clone();
                        *r = problem().description(description).build();
                    }
                }
            }
        }
    }
}

/// The rules the server enforces on a field of a request, written into its schema so that
/// clients (and schemathesis) know them: the registry's providers, the roles, the strategies,
/// the modalities, the organization id's pattern, non-empty names, pages of at least one.
fn constrain(name: &str, schema: &mut utoipa::openapi::schema::Schema) {
    use utoipa::openapi::schema::{ArrayItems, Schema};
    let one_of =
        |values: Vec<String>| Some(values.into_iter().map(serde_json::Value::String).collect());
    let providers = || {
        one_of(
            keyward_core::PROVIDERS
                .iter()
                .map(|p| p.id.to_owned())
                .collect(),
        )
    };
    let words = |w: &[&str]| one_of(w.iter().map(|s| (*s).to_owned()).collect());
    match schema {
        Schema::Object(o) => match name {
            "provider" => o.enum_values = providers(),
            "role" => o.enum_values = words(&["admin", "org_admin", "viewer", "resolver"]),
            "strategy" => o.enum_values = words(&["priority", "round_robin", "weighted"]),
            "organization_id" => o.pattern = Some("^[a-z0-9][a-z0-9._-]{0,62}$".into()),
            "name" | "credential_name" => o.min_length = Some(1),
            "limit" => o.minimum = Some(1.into()),
            _ => {}
        },
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(items) = &mut a.items
                && let RefOr::T(Schema::Object(o)) = items.as_mut()
            {
                match name {
                    "providers" => o.enum_values = providers(),
                    "modalities" => {
                        o.enum_values =
                            serde_json::to_value(keyward_core::credential::Modality::ALL)
                                .ok()
                                .and_then(|v| v.as_array().cloned());
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// [`constrain`] on every property of an object schema.
fn constrain_properties(schema: &mut RefOr<utoipa::openapi::schema::Schema>) {
    if let RefOr::T(utoipa::openapi::schema::Schema::Object(o)) = schema {
        for (name, property) in o.properties.iter_mut() {
            if let RefOr::T(p) = property {
                constrain(name, p);
            }
        }
    }
}
