//! The plan: what was read compared with the organization's vault, each item to be created,
//! updated (and what changes) or left unchanged, and what storing would refuse told before
//! anything is written.

use anyhow::Result;
use keyward_core::credential::{FormatCheck, key_hint};
use keyward_core::{CredentialId, CredentialName, OrgId, VarName};
use keyward_store::Vault;
use secrecy::ExposeSecret as _;

use super::{Item, Read, Skipped};

/// What applying an item does.
pub(super) enum Action {
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
    pub(super) steps: Vec<(Item, Action)>,
    pub(super) skipped: Vec<Skipped>,
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
                why: "holds one of Keyward's own master keys (or a credential of the KMS that keeps them), which is never stored".into(),
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

pub(super) fn describe(item: &Item) -> (String, String, &str) {
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
                        // A public field is no place for a key, and the vault refuses one;
                        // the plan says so without printing it.
                        .map(|(k, v)| {
                            if keyward_core::secret_like::looks_like_secret(v) {
                                format!("{k}=(a value that looks like a key, not shown)")
                            } else {
                                format!("{k}={v}")
                            }
                        })
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
