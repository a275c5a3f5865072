//! `keyward cred`: provider credentials, and how their secrets are read (never from an argument).

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use keyward_core::credential::{CredentialUpdate, FormatCheck, Modality, NewCredential};
use keyward_core::{CredentialId, CredentialName, OrgId, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::backend::Backend;
use crate::cli::{CredCommand, SecretSource};
use crate::output::{Table, print_json, time};

/// Reads a secret from the named variable, or standard input (a hidden prompt on a terminal).
/// The buffers it passes through are wiped when dropped.
pub(crate) fn read_secret(env_var: Option<&str>, what: &str) -> Result<SecretString> {
    let value = if let Some(var) = env_var {
        if keyward_core::env::is_keyward_own(var) {
            bail!(
                "{var} is one of Keyward's own settings, which is never stored as a secret",
                var = keyward_core::secret_like::shown_name(var)
            );
        }
        Zeroizing::new(
            std::env::var(var)
                .map_err(|_| anyhow!("{} is not set", keyward_core::secret_like::shown(var)))?,
        )
    } else if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("{what}: "))
                .context("cannot read from the terminal")?,
        )
    } else {
        let mut value = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut value)
            .context("cannot read the secret from standard input")?;
        value
    };
    Ok(SecretString::from(value.as_str()))
}

pub(crate) fn secret_prompt(provider: &Provider) -> String {
    format!(
        "{} {} (input hidden)",
        provider.display_name,
        provider.secret_field.replace('_', " ")
    )
}

pub(crate) fn format_check(s: &SecretSource) -> FormatCheck {
    if s.no_format_check {
        FormatCheck::Skip
    } else {
        FormatCheck::Enforce
    }
}

pub(crate) fn parse_sets(
    sets: &[String],
    base_url: Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut fields = BTreeMap::new();
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            anyhow!(
                "--set {} must have the form FIELD=VALUE",
                keyward_core::secret_like::shown(s)
            )
        })?;
        fields.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if let Some(url) = base_url {
        fields.insert("base_url".to_owned(), url.trim().to_owned());
    }
    Ok(fields)
}

pub(crate) fn parse_modalities(list: &[String]) -> Result<Vec<Modality>> {
    Ok(Modality::parse_list(&list.join(","))?)
}

pub(crate) fn print_cred(c: &keyward_core::credential::CredentialView, json: bool) -> Result<()> {
    if json {
        return print_json(c);
    }
    let mut t = Table::new(["FIELD", "VALUE"]);
    t.row(["id".into(), c.id.to_string()]);
    t.row(["org".into(), c.org.to_string()]);
    t.row(["provider".into(), c.provider.clone()]);
    t.row(["name".into(), c.name.to_string()]);
    t.row(["key".into(), c.key_hint.clone()]);
    t.row(["status".into(), c.status.to_string()]);
    t.row(["active".into(), if c.active { "yes" } else { "no" }.into()]);
    t.row(["priority".into(), c.priority.to_string()]);
    t.row(["weight".into(), c.weight.to_string()]);
    let modalities = if c.modalities.is_empty() {
        "all".to_owned()
    } else {
        c.modalities
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    t.row(["modalities".into(), modalities]);
    for (k, v) in &c.fields {
        t.row([k.clone(), v.clone()]);
    }
    t.row([
        "created".into(),
        format!("{} by {}", time(c.created_at), c.created_by),
    ]);
    t.row([
        "updated".into(),
        format!("{} by {}", time(c.updated_at), c.updated_by),
    ]);
    t.row([
        "last used".into(),
        c.last_used_at.map_or_else(|| "never".into(), time),
    ]);
    t.row([
        "last tested".into(),
        match (&c.last_tested_at, &c.last_test_result) {
            (Some(at), Some(result)) => format!("{} ({result})", time(*at)),
            _ => "never".into(),
        },
    ]);
    t.row(["version".into(), c.version.to_string()]);
    t.row(["master key".into(), c.kid.clone()]);
    t.print();
    Ok(())
}

pub(crate) async fn cred(backend: &Backend, cmd: CredCommand) -> Result<ExitCode> {
    match cmd {
        CredCommand::Add {
            org,
            provider,
            name,
            secret,
            base_url,
            modalities,
            set,
            priority,
            weight,
            inactive,
            json,
        } => {
            let org = OrgId::new(&org)?;
            let provider = Provider::get(&provider)?;
            let name = CredentialName::new(&name)?;
            let fields = parse_sets(&set, base_url)?;
            let modalities = parse_modalities(&modalities)?;
            // Check the organization before asking for a secret that would then be refused.
            backend.require_org(&org).await?;
            let value = if secret.api_key_env.is_none()
                && provider.secret == keyward_core::provider::SecretKind::Optional
                && std::io::stdin().is_terminal()
            {
                None
            } else {
                Some(read_secret(
                    secret.api_key_env.as_deref(),
                    &secret_prompt(provider),
                )?)
            }
            .filter(|s| {
                !(provider.secret == keyward_core::provider::SecretKind::Optional
                    && s.expose_secret().trim().is_empty())
            });
            let view = backend
                .add_credential(NewCredential {
                    org,
                    provider,
                    name,
                    secret: value,
                    format_check: format_check(&secret),
                    fields,
                    modalities,
                    active: !inactive,
                    priority,
                    weight,
                })
                .await?;
            if json {
                print_json(&view)?;
            } else {
                say!(
                    "added {} credential '{}' ({}) to {}: {}",
                    view.provider,
                    view.name,
                    view.key_hint,
                    view.org,
                    view.id
                );
            }
        }
        CredCommand::List {
            org,
            provider,
            json,
        } => {
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let provider = provider.as_deref().map(Provider::get).transpose()?;
            let creds = backend.list_credentials(org.as_ref(), provider).await?;
            if json {
                print_json(&creds)?;
            } else {
                let mut t = Table::new([
                    "ID", "ORG", "PROVIDER", "NAME", "KEY", "ACTIVE", "PRIO", "STATUS", "UPDATED",
                ]);
                for c in creds {
                    t.row([
                        c.id.to_string(),
                        c.org.to_string(),
                        c.provider,
                        c.name.to_string(),
                        c.key_hint,
                        if c.active { "yes" } else { "no" }.into(),
                        c.priority.to_string(),
                        c.status.to_string(),
                        time(c.updated_at),
                    ]);
                }
                t.print();
            }
        }
        CredCommand::Show { id, json } => {
            let view = backend.get_credential(&CredentialId::new(&id)?).await?;
            print_cred(&view, json)?;
        }
        CredCommand::Update {
            id,
            name,
            rotate_key,
            secret,
            base_url,
            modalities,
            set,
            priority,
            weight,
            if_version,
            json,
        } => {
            let id = CredentialId::new(&id)?;
            let current = backend.get_credential(&id).await?;
            let provider = Provider::get(&current.provider)?;
            if secret.api_key_env.is_some() && !rotate_key {
                bail!("--api-key-env replaces the key only together with --rotate-key");
            }
            let update = CredentialUpdate {
                name: name.as_deref().map(CredentialName::new).transpose()?,
                secret: if rotate_key {
                    Some(read_secret(
                        secret.api_key_env.as_deref(),
                        &format!("new {}", secret_prompt(provider)),
                    )?)
                } else {
                    None
                },
                format_check: Some(format_check(&secret)),
                fields: parse_sets(&set, base_url)?,
                modalities: modalities.as_deref().map(parse_modalities).transpose()?,
                active: None,
                priority,
                weight,
            };
            let view = backend.update_credential(&id, if_version, update).await?;
            if json {
                print_json(&view)?;
            } else {
                say!(
                    "updated credential {} (version {}, key {})",
                    view.id,
                    view.version,
                    view.key_hint
                );
            }
        }
        CredCommand::Activate { id } => {
            let view = backend
                .set_credential_active(&CredentialId::new(&id)?, true)
                .await?;
            say!("activated credential {} ({})", view.id, view.name);
        }
        CredCommand::Deactivate { id } => {
            let view = backend
                .set_credential_active(&CredentialId::new(&id)?, false)
                .await?;
            say!("deactivated credential {} ({})", view.id, view.name);
        }
        CredCommand::Test { id, timeout, json } => {
            let id = CredentialId::new(&id)?;
            let (ok, outcome, view) = backend
                .test_credential(&id, std::time::Duration::from_secs(timeout))
                .await?;
            if json {
                print_json(&view)?;
            } else {
                say!(
                    "{} credential '{}' ({}): {outcome}",
                    view.provider,
                    view.name,
                    view.key_hint
                );
            }
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        CredCommand::Models { id, timeout, json } => {
            let id = CredentialId::new(&id)?;
            let models = backend
                .discover_models(&id, std::time::Duration::from_secs(timeout))
                .await?;
            if json {
                print_json(&models)?;
            } else {
                for m in &models {
                    say!("{m}");
                }
            }
        }
        CredCommand::Delete { id, yes } => {
            let id = CredentialId::new(&id)?;
            let view = backend.get_credential(&id).await?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    bail!("refusing to delete without confirmation: pass --yes");
                }
                eprint!(
                    "delete {} credential '{}' ({}) of {}? [y/N] ",
                    view.provider, view.name, view.key_hint, view.org
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    eprintln!("not deleted");
                    return Ok(ExitCode::FAILURE);
                }
            }
            backend.delete_credential(&id).await?;
            say!("deleted credential {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
