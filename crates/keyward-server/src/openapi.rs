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
    /// Other public fields.
    #[serde(flatten)]
    pub(crate) fields: BTreeMap<String, String>,
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
    ("404", "No such thing (or one of another organization)"),
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
