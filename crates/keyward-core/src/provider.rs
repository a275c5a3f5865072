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
    /// `xi-api-key: KEY` (ElevenLabs).
    XiApiKey,
    /// `Authorization: Token KEY` (Deepgram).
    Token,
    /// An OAuth token minted from a service account (Vertex AI).
    ServiceAccount,
    /// AWS Signature Version 4 (Bedrock).
    AwsSigV4,
    /// No key needed (a local Ollama, LM Studio, vLLM); one that is stored goes as Bearer.
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

/// One entry of the registry: data only, checked against the providers' own SDKs and the
/// frameworks that read their variables (LiteLLM, LangChain, Open Notebook's Esperanto).
#[derive(Debug, Serialize)]
pub struct Provider {
    /// Stable id used everywhere (`openai`, `azure_openai`, ...).
    pub id: &'static str,
    /// Name for people.
    pub display_name: &'static str,
    /// Other ids it is known by (Open Notebook's `google`, `azure`), accepted wherever an id is.
    pub aliases: &'static [&'static str],
    /// What secret the credential holds.
    pub secret: SecretKind,
    /// Field name of that secret in storage (`api_key`, `service_account_json`, ...).
    pub secret_field: &'static str,
    /// Accepted key prefixes, where the provider's keys have a documented one; empty means
    /// any.
    pub key_prefixes: &'static [&'static str],
    /// Keys shorter than this are refused by the format check (the admin guide's `sk-...` is
    /// a placeholder, not a key).
    pub min_key_len: usize,
    /// The variables holding the secret: `keyward run` sets them all, the environment
    /// fallback reads them in this order (the SDK's own precedence).
    pub secret_env: &'static [&'static str],
    /// Default API base URL; `{field}` is filled from the credential (Cloudflare's account).
    pub default_base_url: Option<&'static str>,
    /// The variables client libraries read the base URL from (all set; the first is read back).
    pub base_url_env: &'static [&'static str],
    /// Extra public fields besides `base_url`.
    pub public_fields: &'static [PublicField],
    /// Variables set to a fixed value, so that one left in the shell cannot switch the SDK to
    /// another mode (google-genai's `GOOGLE_GENAI_USE_VERTEXAI`).
    pub fixed_env: &'static [(&'static str, &'static str)],
    /// Whether a credential must name its base URL (the provider has no public one).
    pub needs_base_url: bool,
    /// How the upstream expects the key.
    pub auth: AuthStyle,
    /// A service principal a credential may hold instead of a key (Azure's Entra ID app).
    pub principal: Option<Principal>,
}

/// A service principal: a credential that names one (its `client_id` field is set) holds the
/// principal's secret instead of an API key, and the gateway exchanges it for an access token.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Principal {
    /// The fields that name the principal; all or none are set.
    pub fields: &'static [&'static str],
    /// The variables the secret is given in when the credential names a principal (the SDKs'
    /// identity libraries read them), instead of [`Provider::secret_env`].
    pub secret_env: &'static [&'static str],
}

const fn field(name: &'static str, env: &'static [&'static str], required: bool) -> PublicField {
    PublicField {
        name,
        env,
        required,
    }
}

/// What most entries share: an API key sent as Bearer; each entry says the rest.
const BASE: Provider = Provider {
    id: "",
    display_name: "",
    aliases: &[],
    secret: SecretKind::ApiKey,
    secret_field: "api_key",
    key_prefixes: &[],
    min_key_len: MIN_KEY_LEN,
    secret_env: &[],
    default_base_url: None,
    base_url_env: &[],
    public_fields: &[],
    fixed_env: &[],
    needs_base_url: false,
    auth: AuthStyle::Bearer,
    principal: None,
};

/// The variable a Bedrock API key is given in (boto3 1.39 and the AWS SDKs read it); a Bedrock
/// credential without an access key id holds such a key.
pub const BEDROCK_API_KEY_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";

/// The Vertex AI location a credential without one is served in (LiteLLM's and the Vertex
/// SDK's default).
pub const VERTEX_DEFAULT_LOCATION: &str = "us-central1";

/// Whether `name` is a cloud region or location as AWS and Google Cloud write them
/// (`us-east-1`, `us-gov-west-1`, `europe-west4`, `global`): lower-case letters and digits in
/// `-`-separated words. It goes into a host name, so nothing else is taken.
pub fn is_cloud_region(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// The shortest key any provider issues is longer than this; shorter is a placeholder.
const MIN_KEY_LEN: usize = 20;

/// A local server that needs no key (one stored is sent as Bearer).
const LOCAL: Provider = Provider {
    secret: SecretKind::Optional,
    min_key_len: 0,
    auth: AuthStyle::None,
    ..BASE
};

/// Every provider Keyward knows, in display order.
pub static PROVIDERS: &[Provider] = &[
    Provider {
        id: "openai",
        display_name: "OpenAI",
        key_prefixes: &["sk-"],
        secret_env: &["OPENAI_API_KEY"],
        default_base_url: Some("https://api.openai.com/v1"),
        // The SDKs and LiteLLM read OPENAI_BASE_URL; LangChain reads OPENAI_API_BASE first.
        base_url_env: &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
        public_fields: &[
            field("organization", &["OPENAI_ORG_ID"], false),
            field("project", &["OPENAI_PROJECT_ID"], false),
        ],
        ..BASE
    },
    Provider {
        id: "anthropic",
        display_name: "Anthropic",
        key_prefixes: &["sk-ant-"],
        secret_env: &["ANTHROPIC_API_KEY"],
        default_base_url: Some("https://api.anthropic.com"),
        // The SDKs: ANTHROPIC_BASE_URL; LiteLLM: ANTHROPIC_API_BASE; LangChain: ANTHROPIC_API_URL.
        base_url_env: &[
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_BASE",
            "ANTHROPIC_API_URL",
        ],
        auth: AuthStyle::XApiKey,
        ..BASE
    },
    Provider {
        id: "gemini",
        display_name: "Google Gemini",
        aliases: &["google"],
        key_prefixes: &["AIza"],
        min_key_len: 39,
        // google-genai prefers GOOGLE_API_KEY when both are set; both get the same key.
        secret_env: &["GOOGLE_API_KEY", "GEMINI_API_KEY"],
        default_base_url: Some("https://generativelanguage.googleapis.com"),
        // google-genai: GOOGLE_GEMINI_BASE_URL; LiteLLM: GEMINI_API_BASE; Esperanto:
        // GEMINI_API_BASE_URL; Open Notebook's provisioning: GOOGLE_API_BASE.
        base_url_env: &[
            "GOOGLE_GEMINI_BASE_URL",
            "GEMINI_API_BASE",
            "GEMINI_API_BASE_URL",
            "GOOGLE_API_BASE",
        ],
        // An API key means the Gemini API, whatever the shell says.
        fixed_env: &[("GOOGLE_GENAI_USE_VERTEXAI", "false")],
        auth: AuthStyle::GoogApiKey,
        ..BASE
    },
    Provider {
        id: "azure_openai",
        display_name: "Azure OpenAI",
        aliases: &["azure"],
        // The openai SDK and Esperanto read AZURE_OPENAI_*, LiteLLM AZURE_API_*.
        secret_env: &["AZURE_OPENAI_API_KEY", "AZURE_API_KEY"],
        public_fields: &[
            field(
                "endpoint",
                &["AZURE_OPENAI_ENDPOINT", "AZURE_API_BASE"],
                true,
            ),
            field(
                "api_version",
                &[
                    "OPENAI_API_VERSION",
                    "AZURE_OPENAI_API_VERSION",
                    "AZURE_API_VERSION",
                ],
                false,
            ),
            field("deployment", &["AZURE_OPENAI_DEPLOYMENT"], false),
            // Open Notebook's per-modality endpoints (Esperanto falls back to the endpoint).
            field("endpoint_llm", &["AZURE_OPENAI_ENDPOINT_LLM"], false),
            field(
                "endpoint_embedding",
                &["AZURE_OPENAI_ENDPOINT_EMBEDDING"],
                false,
            ),
            field("endpoint_stt", &["AZURE_OPENAI_ENDPOINT_STT"], false),
            field("endpoint_tts", &["AZURE_OPENAI_ENDPOINT_TTS"], false),
            // An Entra ID app (service principal) instead of an api-key: azure-identity's
            // EnvironmentCredential reads these, and AZURE_CLIENT_SECRET.
            field("tenant_id", &["AZURE_TENANT_ID"], false),
            field("client_id", &["AZURE_CLIENT_ID"], false),
        ],
        auth: AuthStyle::ApiKeyHeader,
        principal: Some(Principal {
            fields: &["tenant_id", "client_id"],
            secret_env: &["AZURE_CLIENT_SECRET"],
        }),
        ..BASE
    },
    Provider {
        id: "vertex",
        display_name: "Google Vertex AI",
        secret: SecretKind::ServiceAccountJson,
        secret_field: "service_account_json",
        min_key_len: 0,
        secret_env: &["GOOGLE_APPLICATION_CREDENTIALS"],
        public_fields: &[
            // Esperanto: VERTEX_*; google-genai: GOOGLE_CLOUD_*; LiteLLM: VERTEXAI_*.
            field(
                "project",
                &["VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT", "VERTEXAI_PROJECT"],
                false,
            ),
            field(
                "location",
                &[
                    "VERTEX_LOCATION",
                    "GOOGLE_CLOUD_LOCATION",
                    "VERTEXAI_LOCATION",
                ],
                false,
            ),
        ],
        auth: AuthStyle::ServiceAccount,
        ..BASE
    },
    Provider {
        id: "fireworks",
        display_name: "Fireworks AI",
        key_prefixes: &["fw"],
        secret_env: &["FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY"],
        default_base_url: Some("https://api.fireworks.ai/inference/v1"),
        base_url_env: &["FIREWORKS_BASE_URL", "FIREWORKS_API_BASE"],
        ..BASE
    },
    Provider {
        id: "ollama",
        display_name: "Ollama",
        secret_env: &["OLLAMA_API_KEY"],
        default_base_url: Some("http://127.0.0.1:11434"),
        // LiteLLM, Esperanto and Open Notebook: OLLAMA_API_BASE; the ollama client: OLLAMA_HOST.
        base_url_env: &["OLLAMA_API_BASE", "OLLAMA_HOST"],
        ..LOCAL
    },
    Provider {
        id: "mistral",
        display_name: "Mistral AI",
        secret_env: &["MISTRAL_API_KEY"],
        default_base_url: Some("https://api.mistral.ai/v1"),
        // Open Notebook (and LiteLLM) read MISTRAL_API_BASE.
        base_url_env: &["MISTRAL_BASE_URL", "MISTRAL_API_BASE"],
        ..BASE
    },
    Provider {
        id: "groq",
        display_name: "Groq",
        key_prefixes: &["gsk_"],
        min_key_len: 56,
        secret_env: &["GROQ_API_KEY"],
        default_base_url: Some("https://api.groq.com/openai/v1"),
        base_url_env: &["GROQ_BASE_URL", "GROQ_API_BASE"],
        ..BASE
    },
    Provider {
        id: "deepseek",
        display_name: "DeepSeek",
        key_prefixes: &["sk-"],
        secret_env: &["DEEPSEEK_API_KEY"],
        default_base_url: Some("https://api.deepseek.com"),
        base_url_env: &["DEEPSEEK_BASE_URL", "DEEPSEEK_API_BASE"],
        ..BASE
    },
    Provider {
        id: "xai",
        display_name: "xAI",
        key_prefixes: &["xai-"],
        secret_env: &["XAI_API_KEY"],
        default_base_url: Some("https://api.x.ai/v1"),
        base_url_env: &["XAI_BASE_URL", "XAI_API_BASE"],
        ..BASE
    },
    Provider {
        id: "openrouter",
        display_name: "OpenRouter",
        key_prefixes: &["sk-or-"],
        secret_env: &["OPENROUTER_API_KEY"],
        default_base_url: Some("https://openrouter.ai/api/v1"),
        base_url_env: &["OPENROUTER_BASE_URL", "OPENROUTER_API_BASE"],
        ..BASE
    },
    Provider {
        id: "together",
        display_name: "Together AI",
        // LiteLLM also reads TOGETHERAI_API_KEY.
        secret_env: &["TOGETHER_API_KEY", "TOGETHERAI_API_KEY"],
        default_base_url: Some("https://api.together.xyz/v1"),
        base_url_env: &["TOGETHER_BASE_URL", "TOGETHER_AI_API_BASE"],
        ..BASE
    },
    Provider {
        id: "cohere",
        display_name: "Cohere",
        // The cohere SDK reads CO_API_KEY and CO_API_URL.
        secret_env: &["COHERE_API_KEY", "CO_API_KEY"],
        default_base_url: Some("https://api.cohere.com"),
        base_url_env: &["COHERE_BASE_URL", "COHERE_API_BASE", "CO_API_URL"],
        ..BASE
    },
    Provider {
        id: "bedrock",
        display_name: "AWS Bedrock",
        secret: SecretKind::AwsSecretAccessKey,
        secret_field: "secret_access_key",
        secret_env: &["AWS_SECRET_ACCESS_KEY"],
        public_fields: &[
            // Without one, the secret is a Bedrock API key (sent as a bearer token).
            field("access_key_id", &["AWS_ACCESS_KEY_ID"], false),
            field("region", &["AWS_REGION", "AWS_DEFAULT_REGION"], true),
        ],
        auth: AuthStyle::AwsSigV4,
        ..BASE
    },
    Provider {
        id: "perplexity",
        display_name: "Perplexity",
        key_prefixes: &["pplx-"],
        // LiteLLM reads PERPLEXITYAI_API_KEY first.
        secret_env: &["PERPLEXITY_API_KEY", "PERPLEXITYAI_API_KEY"],
        default_base_url: Some("https://api.perplexity.ai"),
        base_url_env: &["PERPLEXITY_BASE_URL", "PERPLEXITY_API_BASE"],
        ..BASE
    },
    Provider {
        id: "cerebras",
        display_name: "Cerebras",
        secret_env: &["CEREBRAS_API_KEY"],
        default_base_url: Some("https://api.cerebras.ai/v1"),
        base_url_env: &["CEREBRAS_BASE_URL", "CEREBRAS_API_BASE"],
        ..BASE
    },
    Provider {
        id: "sambanova",
        display_name: "SambaNova",
        secret_env: &["SAMBANOVA_API_KEY"],
        default_base_url: Some("https://api.sambanova.ai/v1"),
        base_url_env: &["SAMBANOVA_BASE_URL", "SAMBANOVA_API_BASE"],
        ..BASE
    },
    Provider {
        id: "nvidia_nim",
        display_name: "NVIDIA NIM",
        key_prefixes: &["nvapi-"],
        secret_env: &["NVIDIA_NIM_API_KEY", "NVIDIA_API_KEY"],
        default_base_url: Some("https://integrate.api.nvidia.com/v1"),
        base_url_env: &["NVIDIA_NIM_API_BASE", "NVIDIA_BASE_URL"],
        ..BASE
    },
    Provider {
        id: "huggingface",
        display_name: "Hugging Face",
        key_prefixes: &["hf_", "api_org_"],
        // huggingface_hub and LiteLLM's chat read HF_TOKEN; LiteLLM's embeddings the other.
        secret_env: &["HF_TOKEN", "HUGGINGFACE_API_KEY"],
        default_base_url: Some("https://router.huggingface.co/v1"),
        base_url_env: &["HUGGINGFACE_API_BASE", "HF_API_BASE"],
        ..BASE
    },
    Provider {
        id: "replicate",
        display_name: "Replicate",
        key_prefixes: &["r8_"],
        // The replicate client reads REPLICATE_API_TOKEN; LiteLLM REPLICATE_API_KEY.
        secret_env: &["REPLICATE_API_TOKEN", "REPLICATE_API_KEY"],
        default_base_url: Some("https://api.replicate.com/v1"),
        base_url_env: &["REPLICATE_API_BASE"],
        ..BASE
    },
    Provider {
        id: "ai21",
        display_name: "AI21 Labs",
        secret_env: &["AI21_API_KEY"],
        default_base_url: Some("https://api.ai21.com/studio/v1"),
        base_url_env: &["AI21_API_BASE"],
        ..BASE
    },
    Provider {
        id: "cloudflare_workers_ai",
        display_name: "Cloudflare Workers AI",
        secret_env: &["CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN"],
        default_base_url: Some("https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1"),
        base_url_env: &["CLOUDFLARE_API_BASE"],
        public_fields: &[field("account_id", &["CLOUDFLARE_ACCOUNT_ID"], true)],
        ..BASE
    },
    Provider {
        id: "lm_studio",
        display_name: "LM Studio",
        secret_env: &["LM_STUDIO_API_KEY"],
        default_base_url: Some("http://127.0.0.1:1234/v1"),
        base_url_env: &["LM_STUDIO_API_BASE", "LMSTUDIO_BASE_URL"],
        ..LOCAL
    },
    Provider {
        id: "vllm",
        display_name: "vLLM",
        secret_env: &["HOSTED_VLLM_API_KEY", "VLLM_API_KEY"],
        default_base_url: Some("http://127.0.0.1:8000/v1"),
        base_url_env: &["HOSTED_VLLM_API_BASE", "VLLM_BASE_URL"],
        ..LOCAL
    },
    Provider {
        id: "azure_ai_foundry",
        display_name: "Azure AI Foundry",
        secret_env: &["AZURE_AI_API_KEY"],
        base_url_env: &["AZURE_AI_API_BASE"],
        public_fields: &[field("api_version", &["AZURE_AI_API_VERSION"], false)],
        needs_base_url: true,
        ..BASE
    },
    Provider {
        id: "voyage",
        display_name: "Voyage AI",
        secret_env: &["VOYAGE_API_KEY"],
        default_base_url: Some("https://api.voyageai.com/v1"),
        base_url_env: &["VOYAGE_API_BASE"],
        ..BASE
    },
    Provider {
        id: "elevenlabs",
        display_name: "ElevenLabs",
        secret_env: &["ELEVENLABS_API_KEY"],
        default_base_url: Some("https://api.elevenlabs.io"),
        base_url_env: &["ELEVENLABS_BASE_URL", "ELEVENLABS_API_BASE"],
        auth: AuthStyle::XiApiKey,
        ..BASE
    },
    Provider {
        id: "deepgram",
        display_name: "Deepgram",
        secret_env: &["DEEPGRAM_API_KEY"],
        default_base_url: Some("https://api.deepgram.com/v1"),
        base_url_env: &["DEEPGRAM_API_BASE"],
        auth: AuthStyle::Token,
        ..BASE
    },
    Provider {
        id: "dashscope",
        display_name: "Alibaba DashScope",
        secret_env: &["DASHSCOPE_API_KEY"],
        default_base_url: Some("https://dashscope.aliyuncs.com/compatible-mode/v1"),
        base_url_env: &["DASHSCOPE_BASE_URL", "DASHSCOPE_API_BASE"],
        ..BASE
    },
    Provider {
        id: "minimax",
        display_name: "MiniMax",
        secret_env: &["MINIMAX_API_KEY"],
        default_base_url: Some("https://api.minimax.io/v1"),
        base_url_env: &["MINIMAX_BASE_URL", "MINIMAX_API_BASE"],
        ..BASE
    },
    Provider {
        id: "novita",
        display_name: "Novita AI",
        secret_env: &["NOVITA_API_KEY"],
        default_base_url: Some("https://api.novita.ai/openai"),
        base_url_env: &["NOVITA_BASE_URL", "NOVITA_API_BASE"],
        ..BASE
    },
    Provider {
        id: "ppq",
        display_name: "PayPerQ",
        secret_env: &["PPQ_API_KEY"],
        default_base_url: Some("https://api.ppq.ai/v1"),
        base_url_env: &["PPQ_API_BASE", "PPQ_BASE_URL"],
        ..BASE
    },
    Provider {
        // Open Notebook's oMLX: an OpenAI-compatible server for Apple silicon, run locally.
        id: "omlx",
        display_name: "oMLX",
        secret_env: &["OMLX_API_KEY"],
        default_base_url: Some("http://127.0.0.1:11435/v1"),
        base_url_env: &["OMLX_API_BASE"],
        ..LOCAL
    },
    Provider {
        id: "openai_compatible",
        display_name: "OpenAI-compatible",
        min_key_len: 0,
        public_fields: &[field("env_prefix", &[], false)],
        needs_base_url: true,
        ..BASE
    },
    Provider {
        id: "anthropic_compatible",
        display_name: "Anthropic-compatible",
        min_key_len: 0,
        public_fields: &[field("env_prefix", &[], false)],
        needs_base_url: true,
        auth: AuthStyle::XApiKey,
        ..BASE
    },
];

impl Provider {
    /// Looks a provider up by id or alias (`google`, `azure`), in any case, with `-` for `_`
    /// (`openai-compatible`), as Open Notebook writes them.
    pub fn get(id: &str) -> Result<&'static Provider, CoreError> {
        let wanted = id.trim().to_ascii_lowercase().replace('-', "_");
        let found = PROVIDERS
            .iter()
            .find(|p| p.id == wanted || p.aliases.contains(&wanted.as_str()));
        found.ok_or_else(|| {
            CoreError::UnknownProvider(format!(
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

    /// The default base URL with the credential's fields filled in (`{account_id}`); `None`
    /// when there is none or a field it needs is missing.
    pub fn default_base_url_for(
        &self,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        let mut url = self.default_base_url?.to_owned();
        while let Some(start) = url.find('{') {
            let end = start + url[start..].find('}')?;
            // Only a plain identifier goes into the URL: nothing that could change its host or
            // path.
            let value = fields.get(&url[start + 1..end]).filter(|v| {
                !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })?;
            let value = value.clone();
            url.replace_range(start..=end, &value);
        }
        Some(url)
    }

    /// Where the gateway sends requests when the credential names no base URL: the default
    /// base URL with the fields filled in, or for the clouds whose host is the region's
    /// (Vertex AI's `location`, Bedrock's `region`) that host. `None` when a field it needs is
    /// missing or is not a region's name.
    pub fn upstream_base_url(
        &self,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        match self.auth {
            AuthStyle::ServiceAccount => {
                let location = fields
                    .get("location")
                    .filter(|l| !l.is_empty())
                    .map_or(VERTEX_DEFAULT_LOCATION, String::as_str);
                is_cloud_region(location).then(|| match location {
                    "global" => "https://aiplatform.googleapis.com".to_owned(),
                    "us" | "eu" => format!("https://aiplatform.{location}.rep.googleapis.com"),
                    _ => format!("https://{location}-aiplatform.googleapis.com"),
                })
            }
            AuthStyle::AwsSigV4 => {
                let region = fields.get("region")?;
                is_cloud_region(region)
                    .then(|| format!("https://bedrock-runtime.{region}.amazonaws.com"))
            }
            _ => self.default_base_url_for(fields),
        }
    }

    /// Whether a credential with these fields names a service principal instead of a key.
    pub fn names_principal(&self, fields: &std::collections::BTreeMap<String, String>) -> bool {
        self.principal.is_some_and(|p| {
            p.fields
                .iter()
                .any(|f| fields.get(*f).is_some_and(|v| !v.is_empty()))
        })
    }

    /// The display name with its indefinite article, for messages: "an OpenAI", "a Groq",
    /// "an xAI".
    pub fn a_name(&self) -> String {
        crate::with_article(self.display_name)
    }

    /// Whether `name` is a public field this provider takes (`base_url` always is).
    pub fn takes_public_field(&self, name: &str) -> bool {
        name == "base_url" || self.public_fields.iter().any(|f| f.name == name)
    }

    /// The message of a format-check failure, naming what was expected.
    pub fn expected_format(&self) -> String {
        let prefixes: Vec<String> = self.key_prefixes.iter().map(|p| format!("'{p}'")).collect();
        match (prefixes.is_empty(), self.min_key_len) {
            (true, 0) => format!("{} keys have no fixed format", self.display_name),
            (true, n) => format!("{} keys have at least {n} characters", self.display_name),
            (false, 0) => format!(
                "{} keys start with {}",
                self.display_name,
                prefixes.join(" or ")
            ),
            (false, n) => format!(
                "{} keys start with {} and have at least {n} characters",
                self.display_name,
                prefixes.join(" or ")
            ),
        }
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
