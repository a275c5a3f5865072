//! The environment variables a resolved credential becomes, for `keyward run`, `keyward env`
//! and the library's `Command` helper. Pure: writing the Vertex key file is the caller's job.

use secrecy::{ExposeSecret as _, SecretString};

use crate::provider::{Provider, SecretKind};
use crate::resolve::Resolved;

/// The value of one variable.
#[derive(Debug, Clone)]
pub enum EnvValue {
    /// A public value (base URL, endpoint, region, ...).
    Plain(String),
    /// A secret (an API key).
    Secret(SecretString),
    /// A secret that clients read from a file (the Vertex service-account JSON): the caller
    /// writes it to a private temporary file and sets the variable to its path.
    SecretFile(SecretString),
}

/// One variable.
#[derive(Debug, Clone)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: EnvValue,
}

/// The key and base URL variable names of a provider, given a credential's fields: the
/// registry's, or `{PREFIX}_API_KEY` and `{PREFIX}_BASE_URL` / `{PREFIX}_API_BASE` for the
/// compatible providers (the prefix of the SDK they are compatible with when the credential
/// names none).
pub fn key_and_base_url_vars(
    provider: &Provider,
    fields: &std::collections::BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    if provider.is_compatible() {
        let prefix = fields
            .get("env_prefix")
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .or(provider.default_env_prefix());
        return match prefix {
            Some(p) => (
                vec![format!("{p}_API_KEY")],
                vec![format!("{p}_BASE_URL"), format!("{p}_API_BASE")],
            ),
            None => (Vec::new(), Vec::new()),
        };
    }
    let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    // A service principal's secret is not an API key: it goes where identity libraries
    // read it (AZURE_CLIENT_SECRET), beside the principal's fields.
    let secret_env = match provider.principal {
        Some(p) if provider.names_principal(fields) => p.secret_env,
        // A Bedrock credential without an access key id holds a Bedrock API key.
        _ if provider.secret == SecretKind::AwsSecretAccessKey
            && fields.get("access_key_id").is_none_or(|v| v.is_empty()) =>
        {
            &[crate::provider::BEDROCK_API_KEY_ENV]
        }
        _ => provider.secret_env,
    };
    (owned(secret_env), owned(provider.base_url_env))
}

/// The variables for one resolved credential, in a stable order: the secret, the base URL,
/// then the provider's public fields.
pub fn provider_env(resolved: &Resolved) -> Vec<EnvVar> {
    let provider = resolved.provider;
    let fields = &resolved.fields;
    let (key_vars, base_vars) = key_and_base_url_vars(provider, fields);
    let mut out = Vec::new();
    let mut push = |name: &str, value: EnvValue| {
        out.push(EnvVar {
            name: name.to_owned(),
            value,
        });
    };
    for var in &key_vars {
        match (&resolved.secret, provider.secret) {
            (Some(secret), SecretKind::ServiceAccountJson) => {
                push(var, EnvValue::SecretFile(secret.clone()));
            }
            // AWS credentials are never a Bedrock API key (a record without its access key id).
            (Some(secret), SecretKind::AwsSecretAccessKey)
                if var == crate::provider::BEDROCK_API_KEY_ENV
                    && secret.expose_secret().starts_with('{') => {}
            (Some(secret), SecretKind::AwsSecretAccessKey) => {
                let opened = crate::credential::AwsSecret::open(secret);
                push(var, EnvValue::Secret(opened.secret_access_key));
                if let Some(token) = opened.session_token {
                    push("AWS_SESSION_TOKEN", EnvValue::Secret(token));
                }
            }
            (Some(secret), _) => push(var, EnvValue::Secret(secret.clone())),
            // Resolved from Keyward's own environment: the key file's path passes through.
            (None, SecretKind::ServiceAccountJson) => {
                if let Some(path) = fields.get("credentials_file") {
                    push(var, EnvValue::Plain(path.clone()));
                }
            }
            (None, _) => {}
        }
    }
    if let Some(url) = fields.get("base_url").filter(|u| !u.is_empty()) {
        for var in &base_vars {
            push(var, EnvValue::Plain(url.clone()));
        }
    }
    for f in provider.public_fields {
        if let Some(value) = fields.get(f.name).filter(|v| !v.is_empty()) {
            for var in f.env {
                push(var, EnvValue::Plain(value.clone()));
            }
        }
    }
    for (var, value) in provider.fixed_env {
        push(var, EnvValue::Plain((*value).to_owned()));
    }
    out
}

/// The refusal when two providers of one run would write the same variable: names the
/// variable, both credentials (`the openai credential 'prod'`) and how to choose.
pub fn collision(variable: &str, earlier: (&str, &str), later: (&str, &str)) -> String {
    let compatible = [earlier.0, later.0]
        .into_iter()
        .find(|p| p.ends_with("_compatible"));
    let how = match compatible {
        Some(p) => format!(
            "name the providers you want (--provider), or give the {p} credential its own \
             variables (keyward cred update ID --set env_prefix=NAME)"
        ),
        None => "name the providers you want (--provider)".to_owned(),
    };
    format!(
        "{variable} would be set by both the {} {} and the {} {}; {how}",
        earlier.0, earlier.1, later.0, later.1
    )
}

/// Where a resolved key came from, as [`collision`] names it.
pub fn described_source(resolved: &Resolved) -> String {
    match &resolved.source {
        crate::resolve::Source::Vault { name, .. } => format!("credential '{name}'"),
        crate::resolve::Source::Environment { variable } => {
            format!("the environment's {variable}")
        }
    }
}

/// The first variable two of `resolved` (of different providers) would both write, as the
/// refusal to give.
pub fn first_collision(resolved: &[Resolved]) -> Option<String> {
    let mut writers: std::collections::HashMap<String, (&str, String)> =
        std::collections::HashMap::new();
    for r in resolved {
        let from = described_source(r);
        for var in provider_env(r) {
            match writers.get(&var.name) {
                Some((provider, earlier)) if *provider != r.provider.id => {
                    return Some(collision(
                        &var.name,
                        (provider, earlier),
                        (r.provider.id, &from),
                    ));
                }
                Some(_) => {}
                None => {
                    writers.insert(var.name, (r.provider.id, from.clone()));
                }
            }
        }
    }
    None
}

/// Whether a variable is one of Keyward's own settings (`KEYWARD_*`, in any case): the master
/// keys, the database URL, the tokens; and, in a process whose master keys a KMS keeps, the
/// variables that sign it in to that KMS ([`withhold_kms_credentials`]). No file Keyward reads
/// (an import source, an env file, a gateway target) may name one, no resolution falls back to
/// one, and a child started by `keyward run` never inherits the secret ones ([`WITHHELD`]).
/// The master key opens every organization's keys; so does the KMS's credential.
pub fn is_keyward_own(name: &str) -> bool {
    name.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("KEYWARD_"))
        || kms_credentials()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
}

static KMS_CREDENTIALS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();

/// Declares, once per process, the variables that sign it in to the KMS that keeps its master
/// keys (`VAULT_TOKEN`, `AWS_SECRET_ACCESS_KEY`, ...): from then on they are Keyward's own
/// ([`is_keyward_own`]), like `KEYWARD_*`. A later call changes nothing.
pub fn withhold_kms_credentials(names: &'static [&'static str]) {
    let _ = KMS_CREDENTIALS.set(names);
}

/// The variables [`withhold_kms_credentials`] declared (none if it was not called).
pub fn kms_credentials() -> &'static [&'static str] {
    KMS_CREDENTIALS.get().copied().unwrap_or(&[])
}

static GUARDED: std::sync::OnceLock<Vec<zeroize::Zeroizing<String>>> = std::sync::OnceLock::new();

/// Declares, once per process, the secrets the KMS that keeps the master keys is signed in with
/// (values of its variables, what its token or PIN files hold): [`holds_guarded`] finds them in
/// a text, in remote mode too, where no keyring guards them. Values shorter than 12 characters
/// are left out (they would match innocent text). A later call changes nothing.
pub fn guard_values(values: Vec<zeroize::Zeroizing<String>>) {
    let _ = GUARDED.set(
        values
            .into_iter()
            .filter(|v| v.trim().len() >= 12)
            .map(|v| zeroize::Zeroizing::new(v.trim().to_owned()))
            .collect(),
    );
}

/// Whether `text` holds one of the secrets [`guard_values`] declared.
pub fn holds_guarded(text: &str) -> bool {
    GUARDED
        .get()
        .is_some_and(|values| values.iter().any(|v| text.contains(v.as_str())))
}

/// Whether `name` is never handed to a child process: [`WITHHELD`] and the KMS's credentials.
pub fn is_withheld(name: &str) -> bool {
    WITHHELD.contains(&name) || kms_credentials().contains(&name)
}

/// Keyward's own settings that hold a secret or say where one is: never handed to a child
/// process (`keyward run`), whatever the child is.
pub const WITHHELD: [&str; 11] = [
    "KEYWARD_MASTER_KEY",
    "KEYWARD_MASTER_KEYS",
    "KEYWARD_MASTER_KEY_FILE",
    "KEYWARD_DATABASE_URL",
    "KEYWARD_TOKEN",
    "KEYWARD_TOKEN_FILE",
    "KEYWARD_ADMIN_TOKEN",
    "KEYWARD_JWT_VERIFICATION_KEYS",
    "KEYWARD_TLS_KEY",
    "KEYWARD_PKCS11_PIN",
    // Not a secret, but it names the files that hold the KMS's credentials.
    "KEYWARD_KMS",
];
