//! `keyward import`: getting keys in from where they are today. Each source is read into
//! [`Item`]s (a credential or a config variable, with where it came from) and [`Skipped`]
//! entries (what was seen and not taken, and why); then the items are compared with the
//! organization's vault ([`plan`]): created, updated (and what changes), or unchanged. A dry
//! run prints the plan; otherwise it is applied, each imported record audited as an `import`
//! event. Nothing printed or audited holds a key: keys appear as their hints.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use keyward_core::audit::{Category, NewEvent};
use keyward_core::credential::{CredentialUpdate, FormatCheck, Modality, NewCredential, key_hint};
use keyward_core::provider::SecretKind;
use keyward_core::{CredentialId, CredentialName, OrgId, PROVIDERS, Provider, VarName};
use keyward_store::Vault;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

/// One record to import.
pub(crate) enum Item {
    Credential {
        provider: &'static Provider,
        name: CredentialName,
        secret: Option<SecretString>,
        fields: BTreeMap<String, String>,
        modalities: Vec<Modality>,
        active: bool,
        /// Where it came from, for people (`.env: OPENAI_API_KEY`, `row 3`).
        origin: String,
    },
    Variable {
        name: VarName,
        value: SecretString,
        sensitive: bool,
        origin: String,
    },
}

/// Something the source holds that is not imported, and why.
pub(crate) struct Skipped {
    pub(crate) origin: String,
    pub(crate) why: String,
    /// Whether it is an error (a row that should have imported and could not), as opposed to
    /// something deliberately left alone.
    pub(crate) error: bool,
}

/// What a source yielded.
#[derive(Default)]
pub(crate) struct Read {
    pub(crate) items: Vec<Item>,
    pub(crate) skipped: Vec<Skipped>,
}

impl Read {
    pub(crate) fn skip(&mut self, origin: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            origin: origin.into(),
            why: why.into(),
            error: false,
        });
    }

    pub(crate) fn fail(&mut self, origin: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            origin: origin.into(),
            why: why.into(),
            error: true,
        });
    }
}

/// How variables that are not a provider's are taken.
#[derive(Clone, Copy)]
pub(crate) struct VarRules {
    /// Names that look secret (`*_KEY`, `*_TOKEN`, `*_SECRET`, `*PASSWORD*`) are stored
    /// encrypted and shown as `***`.
    pub(crate) sensitive_by_name: bool,
    /// Skip them altogether: only provider credentials are imported.
    pub(crate) only_providers: bool,
}

fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["_KEY", "_TOKEN", "_SECRET"]
        .iter()
        .any(|end| upper.ends_with(end))
        || upper.contains("PASSWORD")
        || matches!(upper.as_str(), "KEY" | "TOKEN" | "SECRET")
}

/// A URL that carries a password (`postgres://app:PASSWORD@db/app`).
fn url_with_password(v: &str) -> bool {
    v.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Turns environment variables into credentials, grouped as the registry says (the key's
/// variable, with the provider's base-URL and field variables beside it), and the rest into
/// config variables. `label` names the source in origins; `dir` is where relative paths (a
/// service-account file) are read from.
pub(crate) fn from_variables(
    vars: &[(String, String)],
    label: &str,
    name: &CredentialName,
    dir: &Path,
    rules: VarRules,
) -> Read {
    let mut read = Read::default();
    let mut left: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in vars {
        left.insert(k.as_str(), v.as_str());
    }
    // Values that are not values: reported, never imported.
    let unusable: Vec<String> = left
        .iter()
        .filter(|(_, v)| v.trim().is_empty() || v.trim_start().starts_with("keyward://"))
        .map(|(k, _)| (*k).to_owned())
        .collect();
    for k in &unusable {
        let v = left.remove(k.as_str()).unwrap_or_default();
        let why = if v.trim().is_empty() {
            "empty value, not imported"
        } else {
            "a keyward:// reference (already in a vault), not imported"
        };
        read.skip(format!("{label}: {k}"), why);
    }
    for provider in PROVIDERS {
        let first = |names: &[&str], left: &BTreeMap<&str, &str>| {
            names
                .iter()
                .find_map(|n| left.get(n).map(|v| ((*n).to_owned(), (*v).to_owned())))
        };
        let key = first(provider.secret_env, &left);
        let base = first(provider.base_url_env, &left);
        let needs_key = provider.secret != SecretKind::Optional;
        if key.is_none() && (needs_key || base.is_none()) {
            continue;
        }
        let origin = format!(
            "{label}: {}",
            key.as_ref()
                .or(base.as_ref())
                .map(|(n, _)| n.as_str())
                .unwrap_or_default()
        );
        let mut fields = BTreeMap::new();
        if let Some((_, b)) = &base {
            fields.insert("base_url".to_owned(), b.trim().to_owned());
        }
        for f in provider.public_fields {
            if let Some((_, v)) = first(f.env, &left) {
                fields.insert(f.name.to_owned(), v.trim().to_owned());
            }
        }
        let secret = match (&key, provider.secret) {
            // GOOGLE_APPLICATION_CREDENTIALS names a file: its JSON is the secret.
            (Some((var, path)), SecretKind::ServiceAccountJson) => {
                let path = Path::new(path.trim());
                let path = if path.is_relative() {
                    dir.join(path)
                } else {
                    path.to_owned()
                };
                match std::fs::read_to_string(&path) {
                    Ok(json) => Some(SecretString::from(json)),
                    Err(e) => {
                        read.fail(
                            format!("{label}: {var}"),
                            format!(
                                "cannot read the service-account file {}: {e}",
                                path.display()
                            ),
                        );
                        None
                    }
                }
            }
            (Some((_, v)), _) => Some(SecretString::from(v.trim().to_owned())),
            (None, _) => None,
        };
        // Every variable of the provider is taken, read or not (the SDKs' aliases).
        let claimed: Vec<&str> = provider
            .secret_env
            .iter()
            .chain(provider.base_url_env)
            .chain(provider.public_fields.iter().flat_map(|f| f.env.iter()))
            .copied()
            .collect();
        for n in claimed {
            left.remove(n);
        }
        if key.is_some() && secret.is_none() {
            continue;
        }
        read.items.push(Item::Credential {
            provider,
            name: name.clone(),
            secret,
            fields,
            modalities: Vec::new(),
            active: true,
            origin,
        });
    }
    for (k, v) in left {
        let origin = format!("{label}: {k}");
        if rules.only_providers {
            read.skip(origin, "not a provider's variable (--only-providers)");
            continue;
        }
        match VarName::new(k) {
            Ok(name) => read.items.push(Item::Variable {
                sensitive: (rules.sensitive_by_name && (secret_name(k) || url_with_password(v)))
                    || keyward_core::secret_like::looks_like_secret(v),
                name,
                value: SecretString::from(v.to_owned()),
                origin,
            }),
            Err(e) => read.fail(origin, e.to_string()),
        }
    }
    read
}

/// What applying an item does.
enum Action {
    Create,
    Update {
        id: CredentialId,
        what: Vec<&'static str>,
    },
    Set,
    Unchanged,
}

/// The plan: each item and what it would do.
pub(crate) struct Plan {
    steps: Vec<(Item, Action)>,
    skipped: Vec<Skipped>,
}

impl Plan {
    pub(crate) fn errors(&self) -> usize {
        self.skipped.iter().filter(|s| s.error).count()
    }
}

/// Compares what was read with the organization's vault.
pub(crate) async fn plan(
    vault: &Vault,
    org: &OrgId,
    read: Read,
    check: FormatCheck,
) -> Result<Plan> {
    vault.require_org(org).await?;
    let existing = vault.list_credentials(Some(org), None).await?;
    // The organization's own variables, by name, and whether each is sensitive: a name not
    // there is created without asking the store (an import of many variables costs one read).
    let org_vars: std::collections::HashMap<VarName, bool> = vault
        .list_vars(Some(org))
        .await?
        .into_iter()
        .filter(|v| v.org.as_ref() == Some(org))
        .map(|v| (v.name, v.sensitive))
        .collect();
    let existing: std::collections::HashMap<(&str, &CredentialName), &_> = existing
        .iter()
        .map(|c| ((c.provider.as_str(), &c.name), c))
        .collect();
    let mut steps = Vec::new();
    let mut skipped = read.skipped;
    for item in read.items {
        // A value holding the vault's own master key is refused before anything about it is
        // printed (a plain variable's value would be, in the plan).
        let own_key = match &item {
            Item::Credential {
                secret,
                fields,
                origin,
                ..
            } => secret
                .iter()
                .map(|s| s.expose_secret())
                .chain(fields.values().map(String::as_str))
                .any(|v| vault.holds_master_key(v))
                .then_some(origin),
            Item::Variable { value, origin, .. } => vault
                .holds_master_key(value.expose_secret())
                .then_some(origin),
        };
        if let Some(origin) = own_key {
            skipped.push(Skipped {
                origin: origin.clone(),
                why: "holds one of Keyward's own master keys, which is never stored".into(),
                error: true,
            });
            continue;
        }
        let action = match &item {
            Item::Credential {
                provider,
                name,
                secret,
                fields,
                modalities,
                active,
                ..
            } => match existing.get(&(provider.id, name)) {
                None => Action::Create,
                Some(c) => {
                    let mut what = Vec::new();
                    if !vault.credential_secret_is(&c.id, secret.as_ref()).await? {
                        what.push("key");
                    }
                    if fields.iter().any(|(k, v)| c.fields.get(k) != Some(v)) {
                        what.push("fields");
                    }
                    if !modalities.is_empty() && c.modalities != *modalities {
                        what.push("modalities");
                    }
                    if c.active != *active {
                        what.push(if *active { "activate" } else { "deactivate" });
                    }
                    if what.is_empty() {
                        Action::Unchanged
                    } else {
                        Action::Update {
                            id: c.id.clone(),
                            what,
                        }
                    }
                }
            },
            Item::Variable {
                name,
                value,
                sensitive,
                ..
            } => {
                let same = match org_vars.get(name) {
                    None => None,
                    Some(_) => vault.var_value_is(name, Some(org), value).await?,
                };
                let was_sensitive = org_vars.get(name).copied().unwrap_or(false);
                match same {
                    None => Action::Create,
                    // A sensitive variable stays sensitive; a plain one made sensitive is set.
                    Some(true) if was_sensitive || !*sensitive => Action::Unchanged,
                    Some(_) => Action::Set,
                }
            }
        };
        // What storing would refuse is an error of the plan too, so that a dry run tells it.
        let storing_key = match &action {
            Action::Create => true,
            Action::Update { what, .. } => what.contains(&"key"),
            _ => false,
        };
        if storing_key
            && let Item::Credential {
                provider,
                secret,
                origin,
                ..
            } = &item
            && let Err(e) = keyward_store::check_secret(provider, secret.as_ref(), check)
        {
            let hint = match e {
                keyward_store::VaultError::KeyFormat(_) => {
                    " (--no-format-check to store it anyway)"
                }
                _ => "",
            };
            skipped.push(Skipped {
                origin: format!("{origin} ({})", provider.id),
                why: format!("{e}{hint}"),
                error: true,
            });
            continue;
        }
        steps.push((item, action));
    }
    Ok(Plan { steps, skipped })
}

fn describe(item: &Item) -> (String, String, &str) {
    match item {
        Item::Credential {
            provider,
            name,
            secret,
            fields,
            origin,
            ..
        } => {
            let hint = secret
                .as_ref()
                .map_or_else(|| "no key".to_owned(), |s| key_hint(provider, s));
            let fields = if fields.is_empty() {
                String::new()
            } else {
                format!(
                    ", {}",
                    fields
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            (
                format!("credential {}/{name}", provider.id),
                format!("key {hint}{fields}"),
                origin,
            )
        }
        Item::Variable {
            name,
            value,
            sensitive,
            origin,
        } => (
            format!("variable {name}"),
            if *sensitive {
                "sensitive, ***".to_owned()
            } else {
                format!(
                    "= {}",
                    keyward_core::secret_like::shown(value.expose_secret())
                )
            },
            origin,
        ),
    }
}

/// Prints the plan (every line of it: nothing holds a key).
pub(crate) fn print(plan: &Plan) {
    for (item, action) in &plan.steps {
        let (what, detail, origin) = describe(item);
        let verb = match action {
            Action::Create => "create".to_owned(),
            Action::Update { what, .. } => format!("update ({})", what.join(", ")),
            Action::Set => "update (value)".to_owned(),
            Action::Unchanged => "unchanged".to_owned(),
        };
        say!("{verb:<22} {what}  [{detail}]  from {origin}");
    }
    for s in &plan.skipped {
        let verb = if s.error { "error" } else { "skip" };
        say!("{verb:<22} {}: {}", s.origin, s.why);
    }
}

/// Counts of an applied (or planned) import.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) created: usize,
    pub(crate) updated: usize,
    pub(crate) unchanged: usize,
    pub(crate) failed: usize,
}

/// Applies the plan: every step in order, each audited as an `import` event. A step that the
/// vault refuses (a key of the wrong format, say) is reported and the others go on.
pub(crate) async fn apply(
    vault: &Vault,
    org: &OrgId,
    plan: Plan,
    source: &str,
    format_check: FormatCheck,
    actor: &str,
) -> Result<Outcome> {
    use futures_util::StreamExt as _;
    // Up to 32 records in flight: their writes and events share the store's group commits,
    // so a file of many variables costs a few hundred commits, not two per variable.
    let results = futures_util::stream::iter(plan.steps)
        .map(|(item, action)| apply_one(vault, org, item, action, source, format_check, actor))
        .buffered(32)
        .collect::<Vec<_>>()
        .await;
    let mut out = Outcome::default();
    for (what, origin, done) in results {
        match done {
            Ok(None) => out.unchanged += 1,
            Ok(Some("created")) => out.created += 1,
            Ok(Some(_)) => out.updated += 1,
            Err(e) => {
                out.failed += 1;
                let why = keyward_core::secret_like::scrub(&format!("{e:#}"));
                say!("{:<22} {what} from {origin}: {why}", "error");
            }
        }
    }
    Ok(out)
}

/// Applies one step of a plan and records its `import` event: what it was, where it came from,
/// and the verb (`None` when nothing changed).
async fn apply_one(
    vault: &Vault,
    org: &OrgId,
    item: Item,
    action: Action,
    source: &str,
    format_check: FormatCheck,
    actor: &str,
) -> (String, String, Result<Option<&'static str>>) {
    let (what, _, origin) = describe(&item);
    let origin = origin.to_owned();
    let done: Result<Option<(&'static str, String)>> = async {
        Ok(match (item, action) {
            (_, Action::Unchanged) => None,
            (
                Item::Credential {
                    provider,
                    name,
                    secret,
                    fields,
                    modalities,
                    active,
                    ..
                },
                Action::Create,
            ) => {
                let mut new = NewCredential::new(org.clone(), provider, name, secret);
                new.fields = fields;
                new.modalities = modalities;
                new.active = active;
                new.format_check = format_check;
                let view = vault.add_credential(new, actor).await?;
                Some(("created", format!("credential:{}", view.id)))
            }
            (
                Item::Credential {
                    secret,
                    fields,
                    modalities,
                    active,
                    ..
                },
                Action::Update { id, what },
            ) => {
                let update = CredentialUpdate {
                    secret: if what.contains(&"key") { secret } else { None },
                    format_check: Some(format_check),
                    fields,
                    modalities: (!modalities.is_empty()).then_some(modalities),
                    active: Some(active),
                    ..CredentialUpdate::default()
                };
                vault.update_credential(&id, None, update, actor).await?;
                Some(("updated", format!("credential:{id}")))
            }
            (
                Item::Variable {
                    name,
                    value,
                    sensitive,
                    ..
                },
                action,
            ) => {
                vault
                    .set_var(&name, Some(org), &value, sensitive, None, actor)
                    .await?;
                let verb = if matches!(action, Action::Create) {
                    "created"
                } else {
                    "updated"
                };
                Some((verb, format!("variable:{org}/{name}")))
            }
            (Item::Credential { .. }, Action::Set) => None,
        })
    }
    .await;
    let done = match done {
        Ok(Some((verb, target))) => vault
            .record(
                NewEvent::new(actor, Category::SecretManagement, "import", target)
                    .org(Some(org.as_str()))
                    .details(json!({ "source": source, "from": origin, "result": verb })),
            )
            .await
            .context("the import event")
            .map(|()| Some(verb)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    (what, origin, done)
}

// ----- Fernet: Open Notebook and the admin guide's platform -------------------------------

/// Open Notebook's derivations of a Fernet key from `OPEN_NOTEBOOK_ENCRYPTION_KEY`
/// (`open_notebook/utils/encryption.py`): PBKDF2-HMAC-SHA256 over a fixed salt for values
/// marked `pbkdf2v1:`, bare SHA-256 for older unmarked ones.
pub(crate) struct OpenNotebookKeys {
    current: fernet::Fernet,
    legacy: fernet::Fernet,
}

/// Open Notebook's marker on values written under the PBKDF2 derivation.
const PBKDF2_MARKER: &str = "pbkdf2v1:";
/// Its fixed application salt and cost.
const PBKDF2_SALT: &[u8] = b"open-notebook-credential-v1";
const PBKDF2_ROUNDS: u32 = 600_000;

fn urlsafe(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

impl OpenNotebookKeys {
    pub(crate) fn new(passphrase: &str) -> Result<Self> {
        use sha2_10::Digest as _;
        let mut derived = zeroize::Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<sha2_10::Sha256>(
            passphrase.as_bytes(),
            PBKDF2_SALT,
            PBKDF2_ROUNDS,
            derived.as_mut(),
        );
        let legacy = sha2_10::Sha256::digest(passphrase.as_bytes());
        let fernet = |key: &[u8]| {
            fernet::Fernet::new(&urlsafe(key))
                .ok_or_else(|| anyhow::anyhow!("cannot make a Fernet key from the passphrase"))
        };
        Ok(Self {
            current: fernet(derived.as_ref())?,
            legacy: fernet(&legacy)?,
        })
    }

    /// Open Notebook's `decrypt_value`: a marked value under PBKDF2 only; an unmarked one
    /// under the legacy key, else (when it does not look like a token) plain text.
    fn decrypt(&self, value: &str) -> std::result::Result<String, &'static str> {
        if let Some(token) = value.strip_prefix(PBKDF2_MARKER) {
            return open(&self.current, token)
                .ok_or("does not decrypt under the given encryption key (pbkdf2v1 value)");
        }
        match open(&self.legacy, value) {
            Some(plain) => Ok(plain),
            None if looks_like_fernet_token(value) => {
                Err("looks encrypted but does not decrypt under the given encryption key")
            }
            // Never encrypted (older Open Notebook versions stored some keys plain).
            None => Ok(value.to_owned()),
        }
    }
}

fn open(key: &fernet::Fernet, token: &str) -> Option<String> {
    key.decrypt(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Open Notebook's `looks_like_fernet_token`.
fn looks_like_fernet_token(s: &str) -> bool {
    use base64::Engine as _;
    if s.len() < 100 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .is_ok_and(|d| d.len() >= 73 && (d.len() - 1 - 8 - 16 - 32) % 16 == 0)
}

fn text<'a>(row: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    row.get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The rows of Open Notebook's `credential` table (a JSON array, as `SELECT * FROM credential`
/// in SurrealDB prints it), their keys decrypted as Open Notebook does.
pub(crate) fn open_notebook(json: &str, keys: &OpenNotebookKeys) -> Result<Read> {
    let value: serde_json::Value = serde_json::from_str(json).context("the export is not JSON")?;
    // The rows as `surreal sql --json` prints them (an array per statement, `[[...]]`), as the
    // HTTP `/sql` endpoint answers (`[{"result": [...], "status": "OK"}]`), or a plain array.
    let rows = match value {
        serde_json::Value::Array(a)
            if !a.is_empty() && a.iter().all(serde_json::Value::is_array) =>
        {
            a.into_iter()
                .flat_map(|s| s.as_array().cloned().unwrap_or_default())
                .collect()
        }
        serde_json::Value::Array(a)
            if !a.is_empty()
                && a.iter()
                    .all(|s| s.get("result").is_some_and(serde_json::Value::is_array)) =>
        {
            a.into_iter()
                .flat_map(|s| s["result"].as_array().cloned().unwrap_or_default())
                .collect()
        }
        serde_json::Value::Array(a) => a,
        _ => anyhow::bail!(
            "the export must be JSON: the rows of `SELECT * FROM credential;` from `surreal sql --json` or the /sql endpoint"
        ),
    };
    let mut read = Read::default();
    for (i, row) in rows.iter().enumerate() {
        let origin = format!("row {}", i + 1);
        let (Some(name), Some(provider)) = (text(row, "name"), text(row, "provider")) else {
            read.fail(origin, "a row needs name and provider");
            continue;
        };
        let provider = match Provider::get(&provider.to_ascii_lowercase()) {
            Ok(p) => p,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let name = match CredentialName::new(name) {
            Ok(n) => n,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let mut secret = match text(row, "api_key") {
            None => None,
            Some(v) => match keys.decrypt(v) {
                Ok(plain) => Some(SecretString::from(plain)),
                Err(why) => {
                    read.fail(origin, format!("api_key {why}"));
                    continue;
                }
            },
        };
        let mut fields = BTreeMap::new();
        for f in [
            "base_url",
            "endpoint",
            "api_version",
            "endpoint_llm",
            "endpoint_embedding",
            "endpoint_stt",
            "endpoint_tts",
            "project",
            "location",
        ] {
            if let Some(v) = text(row, f) {
                fields.insert(f.to_owned(), v.to_owned());
            }
        }
        // Open Notebook's form puts Azure's endpoint in base_url (`to_esperanto_config`).
        if provider.id == "azure_openai"
            && !fields.contains_key("endpoint")
            && let Some(base) = fields.remove("base_url")
        {
            fields.insert("endpoint".to_owned(), base);
        }
        let unknown: Vec<String> = fields
            .keys()
            .filter(|k| *k != "base_url" && !provider.takes_public_field(k))
            .cloned()
            .collect();
        for k in unknown {
            fields.remove(&k);
            read.skip(
                format!("{origin}: {k}"),
                format!("not a field of {}", provider.display_name),
            );
        }
        // Vertex's service account: Open Notebook names a file on its host.
        if provider.secret == SecretKind::ServiceAccountJson
            && secret.is_none()
            && let Some(path) = text(row, "credentials_path")
        {
            match std::fs::read_to_string(path) {
                Ok(json) => secret = Some(SecretString::from(json)),
                Err(e) => {
                    read.fail(origin, format!("credentials_path {path}: {e}"));
                    continue;
                }
            }
        }
        let mut modalities = Vec::new();
        let mut bad = None;
        for m in row
            .get("modalities")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
        {
            match m.parse::<Modality>() {
                Ok(m) => modalities.push(m),
                Err(e) => bad = Some(e.to_string()),
            }
        }
        if let Some(why) = bad {
            read.fail(origin, why);
            continue;
        }
        modalities.sort();
        modalities.dedup();
        read.items.push(Item::Credential {
            provider,
            name,
            secret,
            fields,
            modalities,
            active: true,
            origin,
        });
    }
    Ok(read)
}

/// One row of the admin guide's platform export.
#[derive(serde::Deserialize)]
struct FernetRow {
    organization_id: Option<String>,
    provider: Option<String>,
    credential_name: Option<String>,
    api_key: Option<String>,
    api_base: Option<String>,
    is_active: Option<serde_json::Value>,
}

/// Rows of provider credentials (`organization_id, provider, credential_name, api_key,
/// api_base, is_active`, as CSV with a header or a JSON array) whose `api_key` is a Fernet
/// token under `key`. Rows of another organization than `org` are left alone.
pub(crate) fn fernet_rows(path: &Path, key: &fernet::Fernet, org: &OrgId) -> Result<Read> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows: Vec<std::result::Result<FernetRow, String>> = Vec::new();
    if raw.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(&raw).context("the file is not a JSON array")?;
        for v in values {
            rows.push(serde_json::from_value(v).map_err(|_| "malformed row".to_owned()));
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(raw.as_bytes());
        for record in reader.deserialize::<FernetRow>() {
            // The CSV error would quote the row: only its position is told.
            rows.push(record.map_err(|_| "malformed row".to_owned()));
        }
    }
    let mut read = Read::default();
    for (i, row) in rows.into_iter().enumerate() {
        let origin = format!("row {}", i + 1);
        let row = match row {
            Ok(r) => r,
            Err(why) => {
                read.fail(origin, why);
                continue;
            }
        };
        if let Some(o) = row
            .organization_id
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty())
            && o != org.as_str()
        {
            read.skip(
                origin,
                format!(
                    "a row of organization {} (import it with --org {0})",
                    keyward_core::secret_like::shown(o)
                ),
            );
            continue;
        }
        let (Some(provider), Some(name)) =
            (row.provider.as_deref(), row.credential_name.as_deref())
        else {
            read.fail(origin, "a row needs provider and credential_name");
            continue;
        };
        let provider = match Provider::get(provider.trim()) {
            Ok(p) => p,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let name = match CredentialName::new(name.trim()) {
            Ok(n) => n,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let secret = match row
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            None => None,
            Some(token) => match open(key, token) {
                Some(plain) => Some(SecretString::from(plain)),
                None => {
                    read.fail(
                        origin,
                        "api_key does not decrypt under the given key (wrong key, or the token was altered)",
                    );
                    continue;
                }
            },
        };
        let mut fields = BTreeMap::new();
        if let Some(base) = row
            .api_base
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty() && *b != "null")
        {
            fields.insert("base_url".to_owned(), base.to_owned());
        }
        let active = match &row.is_active {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_i64() != Some(0),
            Some(serde_json::Value::String(s)) => !matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "f"
            ),
            Some(_) => {
                read.fail(origin, "is_active must be true or false");
                continue;
            }
        };
        read.items.push(Item::Credential {
            provider,
            name,
            secret,
            fields,
            modalities: Vec::new(),
            active,
            origin,
        });
    }
    Ok(read)
}

// ----- LiteLLM ----------------------------------------------------------------------------

/// LiteLLM's provider prefixes (`model: azure/gpt-4o`) that are not Keyward's ids.
const LITELLM_PROVIDERS: &[(&str, &str)] = &[
    ("azure", "azure_openai"),
    ("azure_ai", "azure_ai_foundry"),
    ("vertex_ai", "vertex"),
    ("vertex_ai_beta", "vertex"),
    ("gemini", "gemini"),
    ("fireworks_ai", "fireworks"),
    ("together_ai", "together"),
    ("cloudflare", "cloudflare_workers_ai"),
    ("hosted_vllm", "vllm"),
    ("lm_studio", "lm_studio"),
    ("nvidia_nim", "nvidia_nim"),
    ("ollama_chat", "ollama"),
    ("text-completion-openai", "openai"),
    ("custom_openai", "openai_compatible"),
];

/// The provider LiteLLM would call for `model`: its prefix, or for a bare model name the
/// families LiteLLM recognises.
fn litellm_provider(model: &str) -> Option<&'static Provider> {
    if let Some((prefix, _)) = model.split_once('/') {
        let id = LITELLM_PROVIDERS
            .iter()
            .find_map(|(l, k)| (*l == prefix).then_some(*k))
            .unwrap_or(prefix);
        return Provider::get(id).ok();
    }
    let family = |p: &[&str]| p.iter().any(|p| model.starts_with(p));
    let id = if family(&[
        "gpt-",
        "o1",
        "o3",
        "o4",
        "text-embedding-",
        "dall-e",
        "whisper",
        "tts-",
    ]) {
        "openai"
    } else if family(&["claude"]) {
        "anthropic"
    } else if family(&["gemini"]) {
        "gemini"
    } else {
        return None;
    };
    Provider::get(id).ok()
}

/// A LiteLLM value: literal, or `os.environ/VAR` read from this process's environment.
///
/// LiteLLM configs name their keys this way by habit, so an import reads them, with two
/// limits: never one of Keyward's own variables (`KEYWARD_*`: the process running an import
/// holds the master key), and never a value equal to one of theirs (the master key exported
/// again under an innocent name). The plan names every variable it read.
fn litellm_value(v: &serde_json::Value) -> std::result::Result<Option<String>, String> {
    let Some(s) = v.as_str().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(v.as_f64().map(|n| n.to_string()));
    };
    match s.strip_prefix("os.environ/") {
        Some(var) => environ(var.trim()).map(Some),
        None => Ok(Some(s.to_owned())),
    }
}

/// A variable an import file names, read from this process's environment (see
/// [`litellm_value`]).
fn environ(var: &str) -> std::result::Result<String, String> {
    let shown = keyward_core::secret_like::shown_name(var);
    if keyward_core::env::is_keyward_own(var) {
        return Err(format!(
            "os.environ/{shown} is one of Keyward's own settings, which no import file may read"
        ));
    }
    let value = match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => zeroize::Zeroizing::new(value),
        _ => return Err(format!("os.environ/{shown} is not set in this environment")),
    };
    let value = value.trim();
    let own = std::env::vars_os().any(|(k, v)| {
        k.to_str().is_some_and(keyward_core::env::is_keyward_own)
            && v.to_str().is_some_and(|v| {
                let v = zeroize::Zeroizing::new(v.trim().to_owned());
                !v.is_empty() && (value == v.as_str() || v.split([',', ':']).any(|p| p == value))
            })
    });
    if own {
        return Err(format!(
            "os.environ/{shown} holds the value of one of Keyward's own settings (KEYWARD_*), \
             which no import file may read"
        ));
    }
    Ok(value.to_owned())
}

/// The `os.environ/VAR` names of a LiteLLM entry's values, for the plan.
fn environ_names(values: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = values
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.as_str()?.trim().strip_prefix("os.environ/"))
        .map(|n| keyward_core::secret_like::shown_name(n.trim()).into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The largest LiteLLM config read, and how deep it may nest: real ones are a few KiB and a
/// handful of levels. A hostile file nested 100 000 deep took the YAML parser 26 s to refuse;
/// this look at its shape refuses it in one linear pass, before the parser sees it.
const MAX_YAML: usize = 16 << 20;
const MAX_YAML_DEPTH: usize = 64;

fn yaml_shape_is_sane(yaml: &str) -> Result<()> {
    if yaml.len() > MAX_YAML {
        anyhow::bail!(
            "the file is larger than {} MiB, which no LiteLLM config is",
            MAX_YAML >> 20
        );
    }
    // Flow nesting: brackets open, across lines, outside quotes (a rough count is enough: it
    // only has to stop what no config needs).
    let (mut depth, mut quote) = (0usize, None::<char>);
    for (n, line) in yaml.lines().enumerate() {
        // Block nesting: the column where the content starts, past indentation and the
        // `- ` of nested sequence items.
        let content = line.trim_start_matches([' ', '-', '\t', '?', ':']);
        let column = line.len() - content.len();
        let mut deepest = depth;
        for c in content.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if column / 2 > MAX_YAML_DEPTH * 2 || deepest > MAX_YAML_DEPTH {
            anyhow::bail!(
                "line {}: the file nests deeper than any LiteLLM config does ({MAX_YAML_DEPTH} levels); not read",
                n + 1
            );
        }
    }
    Ok(())
}

/// One credential of a LiteLLM config: provider, key, fields, name, where it was first seen.
type Group = (
    &'static Provider,
    Option<String>,
    BTreeMap<String, String>,
    String,
    String,
);

/// LiteLLM's `config.yaml`: `model_list[].litellm_params` (key, base, version, the provider
/// from the model's prefix, or a named entry of `credential_list`) and `credential_list[]`.
/// Entries that share a provider, a key and the same fields become one credential.
pub(crate) fn litellm(yaml: &str) -> Result<Read> {
    yaml_shape_is_sane(yaml)?;
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(yaml).context("the file is not YAML LiteLLM can read")?;
    let mut read = Read::default();
    // Named credentials first: models may point at them.
    let mut named: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (i, c) in doc
        .get("credential_list")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match text(c, "credential_name") {
            Some(n) => {
                named.insert(
                    n.to_owned(),
                    c.get("credential_values").cloned().unwrap_or_default(),
                );
            }
            None => read.fail(format!("credential_list[{i}]"), "no credential_name"),
        }
    }
    // (provider, key, fields) → name, origin.
    let mut groups: Vec<Group> = Vec::new();
    // What is already grouped, and the names taken with the next number to try for each base
    // name: lookups, so that a file of many models costs linear time.
    let mut grouped: std::collections::HashSet<(&'static str, Option<String>, String)> =
        Default::default();
    let mut used_names: std::collections::HashSet<(&'static str, String)> = Default::default();
    let mut next_number: std::collections::HashMap<(&'static str, String), usize> =
        Default::default();
    let mut referenced: std::collections::BTreeSet<String> = Default::default();
    for (i, m) in doc
        .get("model_list")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let origin = format!("model_list[{i}]");
        let params = m.get("litellm_params").cloned().unwrap_or_default();
        let Some(model) = text(&params, "model") else {
            read.fail(origin, "litellm_params.model is missing");
            continue;
        };
        let Some(provider) = litellm_provider(model) else {
            read.skip(
                origin,
                format!(
                    "no provider Keyward knows for model {}",
                    keyward_core::secret_like::shown(model)
                ),
            );
            continue;
        };
        // A named credential's values, under the model's own.
        let mut values = serde_json::Map::new();
        if let Some(name) = text(&params, "litellm_credential_name") {
            match named.get(name) {
                Some(serde_json::Value::Object(o)) => values.extend(o.clone()),
                _ => {
                    read.fail(
                        origin,
                        format!(
                            "litellm_credential_name {} is not in credential_list",
                            keyward_core::secret_like::shown(name)
                        ),
                    );
                    continue;
                }
            }
            referenced.insert(name.to_owned());
        }
        if let serde_json::Value::Object(o) = &params {
            values.extend(
                o.iter()
                    .filter(|(k, _)| k.as_str() != "model")
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        let values = serde_json::Value::Object(values);
        let get = |field: &str| match values.get(field).map(litellm_value) {
            None => Ok(None),
            Some(r) => r,
        };
        let (key, base, version) = match (get("api_key"), get("api_base"), get("api_version")) {
            (Ok(k), Ok(b), Ok(v)) => (k, b, v),
            (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => {
                read.fail(origin, why);
                continue;
            }
        };
        // The providers whose secret is not an `api_key`: Vertex's service account (JSON, or a
        // file naming it) and Bedrock's AWS keys, with their public fields.
        let mut fields = BTreeMap::new();
        let extra: &[(&str, &str)] = match provider.id {
            "vertex" => &[
                ("vertex_project", "project"),
                ("vertex_location", "location"),
            ],
            "bedrock" => &[
                ("aws_access_key_id", "access_key_id"),
                ("aws_region_name", "region"),
            ],
            _ => &[],
        };
        let mut failed = None;
        for (theirs, ours) in extra {
            match get(theirs) {
                Ok(Some(v)) => {
                    fields.insert((*ours).to_owned(), v);
                }
                Ok(None) => {}
                Err(why) => failed = Some(why),
            }
        }
        let special = match provider.id {
            "vertex" => get("vertex_credentials").map(|v| {
                v.map(|v| {
                    if v.trim_start().starts_with('{') {
                        Ok(v)
                    } else {
                        std::fs::read_to_string(v.trim())
                            .map_err(|e| format!("vertex_credentials names {}: {e}", v.trim()))
                    }
                })
                .transpose()
            }),
            "bedrock" => get("aws_secret_access_key").map(Ok),
            _ => Ok(Ok(None)),
        };
        let key = match special {
            Ok(Ok(Some(secret))) => Some(secret),
            Ok(Ok(None)) => key,
            Ok(Err(why)) | Err(why) => {
                read.fail(origin, why);
                continue;
            }
        };
        if let Some(why) = failed {
            read.fail(origin, why);
            continue;
        }
        if let Some(base) = base {
            let field = if provider.takes_public_field("endpoint") {
                "endpoint"
            } else {
                "base_url"
            };
            fields.insert(field.to_owned(), base);
        }
        if let Some(version) = version
            && provider.takes_public_field("api_version")
        {
            fields.insert("api_version".to_owned(), version);
        }
        if key.is_none() && provider.secret != SecretKind::Optional {
            read.fail(
                origin,
                "no api_key (literal or os.environ/VAR) for this model",
            );
            continue;
        }
        let fields_key = serde_json::to_string(&fields).unwrap_or_default();
        if !grouped.insert((provider.id, key.clone(), fields_key)) {
            continue;
        }
        let base_name = text(&params, "litellm_credential_name")
            .or_else(|| text(m, "model_name"))
            .unwrap_or(provider.id)
            .to_owned();
        let mut name = base_name.clone();
        let n = next_number
            .entry((provider.id, base_name.clone()))
            .or_insert(1);
        while used_names.contains(&(provider.id, name.clone())) {
            *n += 1;
            name = format!("{base_name}-{n}");
        }
        used_names.insert((provider.id, name.clone()));
        let read_from = environ_names(&values);
        let origin = if read_from.is_empty() {
            origin
        } else {
            format!(
                "{origin}, reads os.environ/{}",
                read_from.join(", os.environ/")
            )
        };
        groups.push((provider, key, fields, name, origin));
    }
    for name in named.keys().filter(|n| !referenced.contains(*n)) {
        read.skip(
            format!("credential_list {}", keyward_core::secret_like::shown(name)),
            "used by no model, so its provider is unknown; not imported",
        );
    }
    for (provider, key, fields, name, origin) in groups {
        match CredentialName::new(&name) {
            Ok(name) => read.items.push(Item::Credential {
                provider,
                name,
                secret: key.map(SecretString::from),
                fields,
                modalities: Vec::new(),
                active: true,
                origin,
            }),
            Err(e) => read.fail(origin, e.to_string()),
        }
    }
    Ok(read)
}
