//! Credentials: what is stored for one provider key, how a key is checked, and how it is shown.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::ids::{CredentialId, CredentialName, OrgId};
use crate::provider::{Provider, SecretKind};
use crate::{CoreError, Millis};

/// What a credential may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Chat and text generation (Open Notebook's `language`).
    #[serde(alias = "language")]
    Chat,
    /// Legacy completions.
    Completions,
    /// Embeddings (Open Notebook's `embedding`).
    #[serde(alias = "embedding")]
    Embeddings,
    /// Image generation and vision.
    Images,
    /// Speech and transcription, both ways.
    Audio,
    /// Transcription.
    SpeechToText,
    /// Speech synthesis.
    TextToSpeech,
    /// Reranking.
    Rerank,
    /// Moderation.
    Moderation,
}

impl Modality {
    /// All modalities.
    pub const ALL: [Modality; 9] = [
        Modality::Chat,
        Modality::Completions,
        Modality::Embeddings,
        Modality::Images,
        Modality::Audio,
        Modality::SpeechToText,
        Modality::TextToSpeech,
        Modality::Rerank,
        Modality::Moderation,
    ];

    /// Other names accepted for a modality: Open Notebook's.
    const ALIASES: [(&'static str, Modality); 2] = [
        ("language", Modality::Chat),
        ("embedding", Modality::Embeddings),
    ];

    /// The modality's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Chat => "chat",
            Modality::Completions => "completions",
            Modality::Embeddings => "embeddings",
            Modality::Images => "images",
            Modality::Audio => "audio",
            Modality::SpeechToText => "speech_to_text",
            Modality::TextToSpeech => "text_to_speech",
            Modality::Rerank => "rerank",
            Modality::Moderation => "moderation",
        }
    }

    /// Whether a credential for `self` serves a request for `wanted`: the same modality, or
    /// speech one way for `audio` (which is speech both ways), and the other way round.
    pub fn serves(self, wanted: Modality) -> bool {
        use Modality::{Audio, SpeechToText, TextToSpeech};
        self == wanted
            || matches!(
                (self, wanted),
                (Audio, SpeechToText | TextToSpeech) | (SpeechToText | TextToSpeech, Audio)
            )
    }

    /// Parses a comma-separated list such as `chat,embeddings`.
    pub fn parse_list(s: &str) -> Result<Vec<Modality>, CoreError> {
        let mut out: Vec<Modality> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Modality::from_str)
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl FromStr for Modality {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Modality::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .or_else(|| {
                Modality::ALIASES
                    .into_iter()
                    .find_map(|(alias, m)| (alias == s).then_some(m))
            })
            .ok_or_else(|| {
                CoreError::InvalidInput(format!(
                    "unknown modality {}; use one of {}",
                    crate::secret_like::shown(s),
                    Modality::ALL.map(Modality::as_str).join(", ")
                ))
            })
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the format check of a key runs. Skipping it is an explicit, visible choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatCheck {
    /// Refuse keys that do not look like the provider's.
    Enforce,
    /// Accept any key shape (still trimmed; control characters still refused).
    Skip,
}

/// Checks and normalises the secret of a credential of `provider`: trims surrounding whitespace,
/// refuses embedded whitespace or control characters, checks the provider's key format (unless
/// skipped), and for Vertex that the value is a service-account JSON document.
///
/// Error messages say what was expected and never quote the key.
pub fn normalize_secret(
    provider: &Provider,
    raw: &SecretString,
    check: FormatCheck,
) -> Result<SecretString, CoreError> {
    let value = raw.expose_secret().trim();
    if value.is_empty() {
        return Err(CoreError::InvalidInput(format!(
            "the {} is empty",
            secret_label(provider)
        )));
    }
    if provider.secret == SecretKind::ServiceAccountJson {
        check_service_account(value)?;
        return Ok(SecretString::from(value));
    }
    if provider.secret == SecretKind::AwsSecretAccessKey && value.starts_with('{') {
        return temporary_aws_credentials(value);
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CoreError::InvalidInput(format!(
            "the {} contains whitespace or control characters; paste the key alone",
            secret_label(provider)
        )));
    }
    if check == FormatCheck::Enforce {
        check_format(provider, value)?;
    }
    Ok(SecretString::from(value))
}

/// The format check: the provider's documented prefix, a plausible length, and no placeholder
/// (the guides' `sk-...`, `<your-key>`). Each surface says how to skip it.
fn check_format(provider: &Provider, value: &str) -> Result<(), CoreError> {
    let refused = |why: String| Err(CoreError::KeyFormat(why));
    if value.contains("...") || value.contains('\u{2026}') || value.contains(['<', '>']) {
        return refused(format!(
            "the key looks like a placeholder, not {} key",
            provider.a_name()
        ));
    }
    if !provider.key_prefixes.is_empty()
        && !provider.key_prefixes.iter().any(|p| value.starts_with(p))
    {
        return refused(format!(
            "the key does not match the {} key format: {}",
            provider.display_name,
            provider.expected_format()
        ));
    }
    if value.chars().count() < provider.min_key_len {
        return refused(format!(
            "the key is too short for {} key: {}",
            provider.a_name(),
            provider.expected_format()
        ));
    }
    Ok(())
}

fn secret_label(provider: &Provider) -> &'static str {
    match provider.secret {
        SecretKind::ServiceAccountJson => "service-account JSON",
        SecretKind::AwsSecretAccessKey => "AWS secret access key",
        SecretKind::ApiKey | SecretKind::Optional => "API key",
    }
}

/// A Bedrock credential's secret, opened: the secret access key, and the session token of
/// temporary credentials.
#[derive(Debug)]
pub struct AwsSecret {
    /// The secret access key (or, for a credential without an access key id, a Bedrock API
    /// key).
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
}

#[derive(Serialize, Deserialize)]
struct TemporaryAwsCredentials {
    #[serde(alias = "SecretAccessKey", alias = "secretAccessKey")]
    secret_access_key: String,
    #[serde(
        alias = "SessionToken",
        alias = "sessionToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    session_token: Option<String>,
}

impl AwsSecret {
    /// A stored Bedrock secret: a secret access key as it is, or temporary credentials as
    /// [`normalize_secret`] stores them (`{"secret_access_key": ..., "session_token": ...}`).
    pub fn open(secret: &SecretString) -> Self {
        let value = secret.expose_secret();
        if value.starts_with('{')
            && let Ok(t) = serde_json::from_str::<TemporaryAwsCredentials>(value)
        {
            return Self {
                secret_access_key: SecretString::from(t.secret_access_key),
                session_token: t.session_token.map(SecretString::from),
            };
        }
        Self {
            secret_access_key: secret.clone(),
            session_token: None,
        }
    }
}

/// Whether `id` is a Google Cloud project id: lower-case letters, digits and `-`, starting
/// with a letter and not ending with `-` (Google makes them 6 to 30 long; shorter ones are
/// taken, as tests and imports name them); or such an id after a domain and `:`
/// (`example.com:acme-ml`).
fn is_gcp_project(id: &str) -> bool {
    let (domain, name) = match id.split_once(':') {
        Some((d, n)) => (Some(d), n),
        None => (None, id),
    };
    let name_ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let domain_ok = domain.is_none_or(|d| {
        d.contains('.')
            && !d.starts_with(['.', '-'])
            && !d.ends_with(['.', '-'])
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    });
    name_ok && domain_ok
}

/// Temporary AWS credentials as the AWS tools print them: `aws configure export-credentials`
/// (top level) or `aws sts ...` (under `Credentials`).
fn aws_credentials_object(value: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    match v.get("Credentials") {
        Some(inner) if inner.is_object() => Some(inner.clone()),
        _ => Some(v),
    }
}

/// The fields a secret brings with it: temporary AWS credentials (JSON) name their access key
/// id, which becomes the credential's `access_key_id` (or must be the one it already has). A
/// Bedrock credential without an access key id holds a Bedrock API key, which AWS credentials
/// must never be taken for (it would be sent as it is).
pub fn fields_from_secret(
    provider: &Provider,
    raw: &SecretString,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), CoreError> {
    let value = raw.expose_secret().trim();
    if provider.secret != SecretKind::AwsSecretAccessKey || !value.starts_with('{') {
        return Ok(());
    }
    let id = aws_credentials_object(value)
        .and_then(|v| {
            ["AccessKeyId", "accessKeyId", "access_key_id"]
                .iter()
                .find_map(|k| v.get(*k))?
                .as_str()
                .map(str::to_owned)
        })
        .filter(|id| !id.is_empty());
    let field = fields.get("access_key_id").filter(|f| !f.is_empty());
    match (id, field) {
        (Some(id), Some(field)) if &id != field => Err(CoreError::InvalidInput(
            "the access_key_id field is not the AccessKeyId of the credentials given; leave the field out, it is taken from them".into(),
        )),
        (Some(id), None) => {
            if !id.bytes().all(|b| b.is_ascii_alphanumeric()) || id.len() > 128 {
                return Err(CoreError::InvalidInput(
                    "the credentials' AccessKeyId is not an AWS access key id".into(),
                ));
            }
            fields.insert("access_key_id".to_owned(), id);
            Ok(())
        }
        (None, None) => Err(CoreError::InvalidInput(
            "temporary AWS credentials need their access key id: give them with AccessKeyId, as `aws configure export-credentials` prints them, or --set access_key_id=...".into(),
        )),
        _ => Ok(()),
    }
}

/// Temporary AWS credentials given as JSON: `aws configure export-credentials`' (and
/// `aws sts`' `Credentials`: `SecretAccessKey`, `SessionToken`), or the stored form; kept as
/// the stored form. The access key id stays a field of its own (it is public).
fn temporary_aws_credentials(value: &str) -> Result<SecretString, CoreError> {
    let refused = || {
        CoreError::InvalidInput(
            "AWS credentials given as JSON need SecretAccessKey (and SessionToken, for temporary ones), as `aws configure export-credentials` prints them".into(),
        )
    };
    let t: TemporaryAwsCredentials = aws_credentials_object(value)
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(refused)?;
    let clean = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !clean(&t.secret_access_key) || t.session_token.as_deref().is_some_and(|s| !clean(s)) {
        return Err(refused());
    }
    let stored = serde_json::to_string(&t).map_err(|_| refused())?;
    Ok(SecretString::from(stored))
}

/// The fields a Google service-account key file has.
const SERVICE_ACCOUNT_FIELDS: [&str; 4] = ["type", "project_id", "private_key", "client_email"];

fn check_service_account(value: &str) -> Result<(), CoreError> {
    // serde_json's errors quote positions, never content, so the cause is safe to keep out.
    let doc: serde_json::Value = serde_json::from_str(value).map_err(|_| {
        CoreError::InvalidInput(if value.starts_with('{') {
            "the service-account JSON is not valid JSON".into()
        } else {
            "the service-account JSON is not JSON: give the key file's content (e.g. `< key.json`), not its path".into()
        })
    })?;
    let obj = doc.as_object().ok_or_else(|| {
        CoreError::InvalidInput("the service-account JSON must be an object".into())
    })?;
    let missing: Vec<&str> = SERVICE_ACCOUNT_FIELDS
        .into_iter()
        .filter(|f| !obj.get(*f).is_some_and(serde_json::Value::is_string))
        .collect();
    if !missing.is_empty() {
        return Err(CoreError::InvalidInput(format!(
            "the service-account JSON lacks {}",
            missing.join(", ")
        )));
    }
    if obj.get("type").and_then(|v| v.as_str()) != Some("service_account") {
        return Err(CoreError::InvalidInput(
            "the service-account JSON must have \"type\": \"service_account\"".into(),
        ));
    }
    // Keyward sends its assertions to Google's token endpoint whatever the file says, and a
    // file naming another would fail elsewhere as it does here; another universe (a sovereign
    // cloud) has other endpoints, which Keyward does not know.
    if let Some(uri) = obj.get("token_uri")
        && !matches!(
            uri.as_str(),
            Some(
                "https://oauth2.googleapis.com/token"
                    | "https://accounts.google.com/o/oauth2/token"
            )
        )
    {
        return Err(CoreError::InvalidInput(
            "the service-account JSON names a token_uri other than Google's (https://oauth2.googleapis.com/token); Keyward exchanges keys only there".into(),
        ));
    }
    if obj
        .get("universe_domain")
        .is_some_and(|u| u.as_str() != Some("googleapis.com"))
    {
        return Err(CoreError::InvalidInput(
            "the service-account JSON is for a universe other than googleapis.com, which Keyward does not serve".into(),
        ));
    }
    Ok(())
}

/// The hint of a credential stored without a key (a local Ollama): there is nothing to mask.
pub const NO_KEY_HINT: &str = "(no key)";

/// The masked form of a secret, computed when it is written so that listing never decrypts:
/// a recognisable prefix and the last four characters (`sk-...wxyz`). Shorter keys reveal less.
pub fn key_hint(provider: &Provider, secret: &SecretString) -> String {
    let value = secret.expose_secret();
    if provider.secret == SecretKind::ServiceAccountJson {
        // The client e-mail is public: it names the account, not its key.
        return serde_json::from_str::<serde_json::Value>(value)
            .ok()
            .and_then(|v| v.get("client_email")?.as_str().map(str::to_owned))
            .map_or_else(|| "service account".to_owned(), |e| format!("sa:{e}"));
    }
    if provider.secret == SecretKind::AwsSecretAccessKey && value.starts_with('{') {
        let opened = AwsSecret::open(secret);
        let hint = key_hint(provider, &opened.secret_access_key);
        return if opened.session_token.is_some() {
            format!("{hint} (temporary)")
        } else {
            hint
        };
    }
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let tail = |k: usize| chars[n - k..].iter().collect::<String>();
    if n < 8 {
        return "***".to_owned();
    }
    if n < 16 {
        return format!("...{}", tail(2));
    }
    let prefix = provider
        .key_prefixes
        .iter()
        .filter(|p| value.starts_with(*p))
        .max_by_key(|p| p.len())
        .map_or_else(
            || chars[..3].iter().collect::<String>(),
            |p| (*p).to_owned(),
        );
    // Never reveal more than a quarter of the key in total.
    let prefix: String = prefix.chars().take(n / 4).collect();
    format!("{prefix}...{}", tail(4))
}

/// Whether a stored credential can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    /// Its data key unwraps and its secret opens under the configured master keys.
    Ok,
    /// It cannot be opened: unknown master key id, wrong key, or tampered data.
    Undecryptable,
    /// Written in plain text by an external migration: readable, but not sealed until its
    /// next update or `keyward reencrypt`.
    LegacyPlaintext,
}

impl fmt::Display for CredentialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialStatus::Ok => "ok",
            CredentialStatus::Undecryptable => "undecryptable",
            CredentialStatus::LegacyPlaintext => "legacy_plaintext",
        })
    }
}

/// A credential as listings show it: every public field, the key hint, never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialView {
    /// Id.
    pub id: CredentialId,
    /// Owning organization.
    pub org: OrgId,
    /// Human name, unique per organization and provider.
    pub name: CredentialName,
    /// Provider id.
    pub provider: String,
    /// What it may be used for; empty means all.
    pub modalities: Vec<Modality>,
    /// Public fields (`base_url`, `endpoint`, `api_version`, `region`, ...).
    pub fields: BTreeMap<String, String>,
    /// Whether resolution may hand it out.
    pub active: bool,
    /// Lower numbers are tried first.
    pub priority: i64,
    /// Share under the `weighted` strategy.
    pub weight: i64,
    /// Masked key (`sk-...wxyz`).
    pub key_hint: String,
    /// Creation time.
    pub created_at: Millis,
    /// Who created it.
    pub created_by: String,
    /// Last update time.
    pub updated_at: Millis,
    /// Who last updated it.
    pub updated_by: String,
    /// Last time resolution handed it out.
    pub last_used_at: Option<Millis>,
    /// Incremented by every update; updates compare and set it.
    pub version: i64,
    /// The master key id that wraps its data key.
    pub kid: String,
    /// Whether it can be opened with the configured keys.
    pub status: CredentialStatus,
    /// When `keyward cred test` last checked it against the provider.
    pub last_tested_at: Option<Millis>,
    /// What that check found (`ok`, `rejected (HTTP 401)`, `rate limited`, `unreachable: ...`).
    pub last_test_result: Option<String>,
}

/// The fields of a new credential.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// Owning organization.
    pub org: OrgId,
    /// Provider.
    pub provider: &'static Provider,
    /// Human name.
    pub name: CredentialName,
    /// The secret as given; the vault normalises and checks it with [`normalize_secret`]
    /// (None only for providers whose secret is optional).
    pub secret: Option<SecretString>,
    /// Whether the key's format is checked.
    pub format_check: FormatCheck,
    /// Public fields.
    pub fields: BTreeMap<String, String>,
    /// Modalities; empty means all.
    pub modalities: Vec<Modality>,
    /// Whether it starts active.
    pub active: bool,
    /// Priority (lower first).
    pub priority: i64,
    /// Weight for the weighted strategy.
    pub weight: i64,
}

impl NewCredential {
    /// A new active credential with the defaults: format checked, no public fields, every
    /// modality, priority 100, weight 1. Change the rest with struct update syntax.
    pub fn new(
        org: OrgId,
        provider: &'static Provider,
        name: CredentialName,
        secret: Option<SecretString>,
    ) -> Self {
        Self {
            org,
            provider,
            name,
            secret,
            format_check: FormatCheck::Enforce,
            fields: BTreeMap::new(),
            modalities: Vec::new(),
            active: true,
            priority: 100,
            weight: 1,
        }
    }
}

/// A change to a credential; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct CredentialUpdate {
    /// New name.
    pub name: Option<CredentialName>,
    /// New secret (a key rotation) as given; the vault normalises and checks it.
    pub secret: Option<SecretString>,
    /// Whether the new key's format is checked.
    pub format_check: Option<FormatCheck>,
    /// Public fields to set; an empty value removes the field.
    pub fields: BTreeMap<String, String>,
    /// New modalities.
    pub modalities: Option<Vec<Modality>>,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// New priority.
    pub priority: Option<i64>,
    /// New weight.
    pub weight: Option<i64>,
}

impl CredentialUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.secret.is_none()
            && self.fields.is_empty()
            && self.modalities.is_none()
            && self.active.is_none()
            && self.priority.is_none()
            && self.weight.is_none()
    }
}

/// Checks public fields against the provider: unknown names are refused, values must be
/// printable, URLs must be http(s), and nothing that looks like a key is taken.
pub fn check_public_fields(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
) -> Result<(), CoreError> {
    for (name, value) in fields {
        if !provider.takes_public_field(name) {
            let known: Vec<&str> = std::iter::once("base_url")
                .chain(provider.public_fields.iter().map(|f| f.name))
                .collect();
            return Err(CoreError::InvalidInput(format!(
                "provider {} has no field {}; its fields are {}",
                provider.id,
                crate::secret_like::shown(name),
                known.join(", ")
            )));
        }
        // An AWS access key id is public (it names the key; the secret is separate), and is
        // shaped like one.
        if name != "access_key_id" && crate::secret_like::looks_like_secret(value) {
            return Err(crate::secret_like::refused(&format!("field {name:?}")));
        }
        if value.chars().any(char::is_control) || value.len() > 2048 {
            return Err(CoreError::InvalidInput(format!(
                "field {name:?} must be at most 2048 printable characters"
            )));
        }
        if name == "env_prefix"
            && !(value.is_empty()
                || (value.starts_with(|c: char| c.is_ascii_uppercase())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')))
        {
            return Err(CoreError::InvalidInput(
                "field \"env_prefix\" must be uppercase ASCII letters, digits and '_', starting with a letter (e.g. LOCALAI)".into(),
            ));
        }
        // A field the default base URL is built from (Cloudflare's account) is an identifier.
        let in_url = provider
            .default_base_url
            .is_some_and(|u| u.contains(&format!("{{{name}}}")));
        if in_url
            && !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CoreError::InvalidInput(format!(
                "field {name:?} must be letters, digits, '-' and '_' (it goes into the base URL)"
            )));
        }
        // These go into a host name or a token endpoint's path.
        if matches!(name.as_str(), "region" | "location")
            && !value.is_empty()
            && !crate::provider::is_cloud_region(value)
        {
            return Err(CoreError::InvalidInput(format!(
                "field {name:?} must be a region's name, such as us-east-1 or europe-west4"
            )));
        }
        if matches!(name.as_str(), "tenant_id" | "client_id")
            && !value.is_empty()
            && (value.len() > 253
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                || value.starts_with(['.', '-']))
        {
            return Err(CoreError::InvalidInput(format!(
                "field {name:?} must be letters, digits, '-' and '.' ({})",
                if name == "tenant_id" {
                    "an Entra ID tenant's id or domain"
                } else {
                    "an Entra ID application's client id"
                }
            )));
        }
        // The client credentials grant needs the app's own tenant, not a multi-tenant alias.
        if name == "tenant_id"
            && matches!(
                value.to_ascii_lowercase().as_str(),
                "common" | "organizations" | "consumers"
            )
        {
            return Err(CoreError::InvalidInput(
                "field \"tenant_id\" must be the app's own tenant (its id or domain), not common, organizations or consumers".into(),
            ));
        }
        // An AWS access key id (`AKIA...`, `ASIA...`): it goes into every signature.
        if name == "access_key_id"
            && !value.is_empty()
            && !(value.len() >= 16
                && value.len() <= 128
                && value
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        {
            return Err(CoreError::InvalidInput(
                "field \"access_key_id\" must be an AWS access key id (upper-case letters and digits, such as AKIA...)".into(),
            ));
        }
        // A Google Cloud project id (`acme-ml`, or a domain-scoped `example.com:acme`): it
        // goes into Vertex AI's paths.
        if name == "project"
            && provider.auth == crate::provider::AuthStyle::ServiceAccount
            && !value.is_empty()
            && !is_gcp_project(value)
        {
            return Err(CoreError::InvalidInput(
                "field \"project\" must be a Google Cloud project id (lower-case letters, digits and '-', e.g. acme-ml)".into(),
            ));
        }
        if (name == "base_url" || name == "endpoint" || name.starts_with("endpoint_"))
            && !value.is_empty()
            && !(value.starts_with("https://") || value.starts_with("http://"))
        {
            return Err(CoreError::InvalidInput(format!(
                "field {name:?} must be an http:// or https:// URL"
            )));
        }
    }
    Ok(())
}

/// A base URL given for a provider whose address is its `endpoint` (Azure OpenAI: the
/// resource URL) is that endpoint, as the admin guide's `api_base`, Open Notebook and LiteLLM's
/// `api_base` mean it: moved there, unless an endpoint is given too.
pub fn base_url_as_endpoint(provider: &Provider, fields: &mut BTreeMap<String, String>) {
    let takes_endpoint = provider.public_fields.iter().any(|f| f.name == "endpoint");
    if takes_endpoint
        && !fields.contains_key("endpoint")
        && let Some(base) = fields.remove("base_url")
    {
        fields.insert("endpoint".to_owned(), base);
    }
}

/// Checks that the provider's required public fields are present.
pub fn check_required_fields(
    provider: &Provider,
    fields: &BTreeMap<String, String>,
) -> Result<(), CoreError> {
    let absent = |name: &str| fields.get(name).is_none_or(|v| v.is_empty());
    let mut missing: Vec<&str> = provider
        .public_fields
        .iter()
        .filter(|f| f.required && absent(f.name))
        .map(|f| f.name)
        .collect();
    if provider.needs_base_url && absent("base_url") {
        missing.insert(0, "base_url");
    }
    // A service principal is named whole or not at all.
    if let Some(p) = provider.principal
        && provider.names_principal(fields)
    {
        missing.extend(p.fields.iter().copied().filter(|f| absent(f)));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        let how: Vec<String> = missing
            .iter()
            .map(|m| match *m {
                "base_url" => "base_url (--base-url URL, or api_base)".to_owned(),
                "endpoint" => "endpoint (--set endpoint=URL, or the base URL / api_base, \
                               which is taken as the endpoint)"
                    .to_owned(),
                other => format!("{other} (--set {other}=VALUE)"),
            })
            .collect();
        Err(CoreError::InvalidInput(format!(
            "{} credentials need the field{} {}",
            provider.display_name,
            if missing.len() == 1 { "" } else { "s" },
            how.join(", ")
        )))
    }
}
