//! The provider registry: one static table that says, for every provider Keyward knows, how its
//! keys look, where its API lives, how it authenticates, and which environment variables its
//! client libraries read.

use std::fmt;

use serde::Serialize;

use crate::CoreError;

/// How the upstream API expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: KEY` (Gemini).
    GoogApiKey,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKeyHeader,
    /// An OAuth token minted from a service account (Vertex AI).
    ServiceAccount,
    /// AWS Signature Version 4 (Bedrock).
    AwsSigV4,
    /// No key at all (a local Ollama).
    None,
}

/// A public (non-secret) field a provider takes, and the variable its clients read it from.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PublicField {
    /// Field name as stored and as given to `--set FIELD=VALUE`.
    pub name: &'static str,
    /// Environment variables client libraries read it from (`keyward run` sets them all; the
    /// environment fallback of resolution reads the first).
    pub env: &'static [&'static str],
    /// Whether a credential of this provider must have it.
    pub required: bool,
}

/// The secret a provider's credential carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// An API key string.
    ApiKey,
    /// A Google service-account JSON document.
    ServiceAccountJson,
    /// An AWS secret access key (the access key id is a public field).
    AwsSecretAccessKey,
    /// The provider needs no secret (but one may still be stored).
    Optional,
}

/// One entry of the registry.
#[derive(Debug, Serialize)]
pub struct Provider {
    /// Stable id used everywhere (`openai`, `azure_openai`, ...).
    pub id: &'static str,
    /// Name for people.
    pub display_name: &'static str,
    /// What secret the credential holds.
    pub secret: SecretKind,
    /// Field name of that secret in storage (`api_key`, `service_account_json`, ...).
    pub secret_field: &'static str,
    /// Accepted key prefixes; empty means any format.
    pub key_prefixes: &'static [&'static str],
    /// The environment variable holding the secret, for `keyward run` and the env fallback.
    pub secret_env: Option<&'static str>,
    /// Default API base URL.
    pub default_base_url: Option<&'static str>,
    /// The variable client libraries read the base URL from.
    pub base_url_env: Option<&'static str>,
    /// Extra public fields besides `base_url`.
    pub public_fields: &'static [PublicField],
    /// How the upstream expects the key.
    pub auth: AuthStyle,
}

const fn field(name: &'static str, env: &'static [&'static str], required: bool) -> PublicField {
    PublicField {
        name,
        env,
        required,
    }
}

const fn simple(
    id: &'static str,
    display_name: &'static str,
    key_prefixes: &'static [&'static str],
    secret_env: &'static str,
    default_base_url: &'static str,
    base_url_env: &'static str,
    auth: AuthStyle,
) -> Provider {
    Provider {
        id,
        display_name,
        secret: SecretKind::ApiKey,
        secret_field: "api_key",
        key_prefixes,
        secret_env: Some(secret_env),
        default_base_url: Some(default_base_url),
        base_url_env: Some(base_url_env),
        public_fields: &[],
        auth,
    }
}

/// Every provider Keyward knows, in display order.
pub static PROVIDERS: &[Provider] = &[
    simple(
        "openai",
        "OpenAI",
        &["sk-"],
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
        "OPENAI_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "anthropic",
        "Anthropic",
        &["sk-ant-"],
        "ANTHROPIC_API_KEY",
        "https://api.anthropic.com",
        "ANTHROPIC_BASE_URL",
        AuthStyle::XApiKey,
    ),
    simple(
        "gemini",
        "Google Gemini",
        &["AI"],
        "GEMINI_API_KEY",
        "https://generativelanguage.googleapis.com",
        "GEMINI_BASE_URL",
        AuthStyle::GoogApiKey,
    ),
    Provider {
        id: "azure_openai",
        display_name: "Azure OpenAI",
        secret: SecretKind::ApiKey,
        secret_field: "api_key",
        key_prefixes: &[],
        secret_env: Some("AZURE_OPENAI_API_KEY"),
        default_base_url: None,
        base_url_env: None,
        public_fields: &[
            field("endpoint", &["AZURE_OPENAI_ENDPOINT"], true),
            field(
                "api_version",
                &["OPENAI_API_VERSION", "AZURE_OPENAI_API_VERSION"],
                false,
            ),
            field("deployment", &["AZURE_OPENAI_DEPLOYMENT"], false),
        ],
        auth: AuthStyle::ApiKeyHeader,
    },
    Provider {
        id: "vertex",
        display_name: "Google Vertex AI",
        secret: SecretKind::ServiceAccountJson,
        secret_field: "service_account_json",
        key_prefixes: &[],
        secret_env: Some("GOOGLE_APPLICATION_CREDENTIALS"),
        default_base_url: None,
        base_url_env: None,
        public_fields: &[
            field("project", &["VERTEX_PROJECT"], false),
            field("location", &["VERTEX_LOCATION"], false),
        ],
        auth: AuthStyle::ServiceAccount,
    },
    simple(
        "fireworks",
        "Fireworks AI",
        &["fw"],
        "FIREWORKS_API_KEY",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_BASE_URL",
        AuthStyle::Bearer,
    ),
    Provider {
        id: "ollama",
        display_name: "Ollama",
        secret: SecretKind::Optional,
        secret_field: "api_key",
        key_prefixes: &[],
        secret_env: None,
        default_base_url: Some("http://127.0.0.1:11434"),
        base_url_env: Some("OLLAMA_API_BASE"),
        public_fields: &[],
        auth: AuthStyle::None,
    },
    simple(
        "mistral",
        "Mistral AI",
        &[],
        "MISTRAL_API_KEY",
        "https://api.mistral.ai/v1",
        "MISTRAL_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "groq",
        "Groq",
        &["gsk_"],
        "GROQ_API_KEY",
        "https://api.groq.com/openai/v1",
        "GROQ_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "deepseek",
        "DeepSeek",
        &["sk-"],
        "DEEPSEEK_API_KEY",
        "https://api.deepseek.com",
        "DEEPSEEK_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "xai",
        "xAI",
        &["xai-"],
        "XAI_API_KEY",
        "https://api.x.ai/v1",
        "XAI_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "openrouter",
        "OpenRouter",
        &["sk-or-"],
        "OPENROUTER_API_KEY",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "together",
        "Together AI",
        &[],
        "TOGETHER_API_KEY",
        "https://api.together.xyz/v1",
        "TOGETHER_BASE_URL",
        AuthStyle::Bearer,
    ),
    simple(
        "cohere",
        "Cohere",
        &[],
        "COHERE_API_KEY",
        "https://api.cohere.com",
        "COHERE_BASE_URL",
        AuthStyle::Bearer,
    ),
    Provider {
        id: "bedrock",
        display_name: "AWS Bedrock",
        secret: SecretKind::AwsSecretAccessKey,
        secret_field: "secret_access_key",
        key_prefixes: &[],
        secret_env: Some("AWS_SECRET_ACCESS_KEY"),
        default_base_url: None,
        base_url_env: None,
        public_fields: &[
            field("access_key_id", &["AWS_ACCESS_KEY_ID"], true),
            field("region", &["AWS_REGION", "AWS_DEFAULT_REGION"], true),
        ],
        auth: AuthStyle::AwsSigV4,
    },
    Provider {
        id: "openai_compatible",
        display_name: "OpenAI-compatible",
        secret: SecretKind::ApiKey,
        secret_field: "api_key",
        key_prefixes: &[],
        secret_env: None,
        default_base_url: None,
        base_url_env: None,
        public_fields: &[field("env_prefix", &[], false)],
        auth: AuthStyle::Bearer,
    },
    Provider {
        id: "anthropic_compatible",
        display_name: "Anthropic-compatible",
        secret: SecretKind::ApiKey,
        secret_field: "api_key",
        key_prefixes: &[],
        secret_env: None,
        default_base_url: None,
        base_url_env: None,
        public_fields: &[field("env_prefix", &[], false)],
        auth: AuthStyle::XApiKey,
    },
];

impl Provider {
    /// Looks a provider up by id.
    pub fn get(id: &str) -> Result<&'static Provider, CoreError> {
        PROVIDERS.iter().find(|p| p.id == id).ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "unknown provider {}; known providers: {}",
                crate::secret_like::shown(id),
                PROVIDERS
                    .iter()
                    .map(|p| p.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Whether this provider talks to a server the user names (the `*_compatible` ones): its
    /// variables are `{PREFIX}_API_KEY` and `{PREFIX}_BASE_URL`, and it needs a base URL.
    pub fn is_compatible(&self) -> bool {
        self.id.ends_with("_compatible")
    }

    /// The variable prefix of a compatible provider when the credential sets none: the SDK it
    /// is compatible with (`OPENAI`, `ANTHROPIC`), so that SDK works unchanged.
    pub fn default_env_prefix(&self) -> Option<&'static str> {
        match self.id {
            "openai_compatible" => Some("OPENAI"),
            "anthropic_compatible" => Some("ANTHROPIC"),
            _ => None,
        }
    }

    /// Whether `name` is a public field this provider takes (`base_url` always is).
    pub fn takes_public_field(&self, name: &str) -> bool {
        name == "base_url" || self.public_fields.iter().any(|f| f.name == name)
    }

    /// The message of a format-check failure, naming what was expected.
    pub fn expected_format(&self) -> String {
        let prefixes: Vec<String> = self.key_prefixes.iter().map(|p| format!("'{p}'")).collect();
        format!(
            "{} keys start with {}",
            self.display_name,
            prefixes.join(" or ")
        )
    }
}

/// Providers are equal when their ids are: the registry has one entry per id.
impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Provider {}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}
