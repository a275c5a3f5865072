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
use keyward_core::credential::{CredentialUpdate, FormatCheck, NewCredential, key_hint};
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
                sensitive: (rules.sensitive_by_name && secret_name(k))
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

/// The variables of `.env` files (a later file wins).
pub(crate) fn dotenv_files(files: &[std::path::PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for file in files {
        for (k, v) in crate::run::read_env_file(file)? {
            out.retain(|(n, _)| *n != k);
            out.push((k, v));
        }
    }
    Ok(out)
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
pub(crate) async fn plan(vault: &Vault, org: &OrgId, read: Read) -> Result<Plan> {
    vault.require_org(org).await?;
    let existing = vault.list_credentials(Some(org), None).await?;
    let mut steps = Vec::new();
    for item in read.items {
        let action = match &item {
            Item::Credential {
                provider,
                name,
                secret,
                fields,
                active,
                ..
            } => match existing
                .iter()
                .find(|c| c.provider == provider.id && c.name == *name)
            {
                None => Action::Create,
                Some(c) => {
                    let mut what = Vec::new();
                    if !vault.credential_secret_is(&c.id, secret.as_ref()).await? {
                        what.push("key");
                    }
                    if fields.iter().any(|(k, v)| c.fields.get(k) != Some(v)) {
                        what.push("fields");
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
                let same = vault.var_value_is(name, Some(org), value).await?;
                let was_sensitive = vault
                    .list_vars(Some(org))
                    .await?
                    .into_iter()
                    .find(|v| v.name == *name && v.org.as_ref() == Some(org))
                    .is_some_and(|v| v.sensitive);
                match same {
                    None => Action::Create,
                    // A sensitive variable stays sensitive; a plain one made sensitive is set.
                    Some(true) if was_sensitive || !*sensitive => Action::Unchanged,
                    Some(_) => Action::Set,
                }
            }
        };
        steps.push((item, action));
    }
    Ok(Plan {
        steps,
        skipped: read.skipped,
    })
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
    let mut out = Outcome::default();
    for (item, action) in plan.steps {
        let (what, _, origin) = describe(&item);
        let origin = origin.to_owned();
        let done: Result<Option<(&str, String)>> = async {
            Ok(match (item, action) {
                (_, Action::Unchanged) => None,
                (
                    Item::Credential {
                        provider,
                        name,
                        secret,
                        fields,
                        active,
                        ..
                    },
                    Action::Create,
                ) => {
                    let mut new = NewCredential::new(org.clone(), provider, name, secret);
                    new.fields = fields;
                    new.active = active;
                    new.format_check = format_check;
                    let view = vault.add_credential(new, actor).await?;
                    Some(("created", format!("credential:{}", view.id)))
                }
                (
                    Item::Credential {
                        secret,
                        fields,
                        active,
                        ..
                    },
                    Action::Update { id, what },
                ) => {
                    let update = CredentialUpdate {
                        secret: if what.contains(&"key") { secret } else { None },
                        format_check: Some(format_check),
                        fields,
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
        match done {
            Ok(None) => out.unchanged += 1,
            Ok(Some((verb, target))) => {
                if verb == "created" {
                    out.created += 1;
                } else {
                    out.updated += 1;
                }
                vault
                    .record(
                        NewEvent::new(actor, Category::SecretManagement, "import", target)
                            .org(Some(org.as_str()))
                            .details(json!({ "source": source, "from": origin, "result": verb })),
                    )
                    .await
                    .context("the import event")?;
            }
            Err(e) => {
                out.failed += 1;
                let why = keyward_core::secret_like::scrub(&format!("{e:#}"));
                say!("{:<22} {what} from {origin}: {why}", "error");
            }
        }
    }
    Ok(out)
}
