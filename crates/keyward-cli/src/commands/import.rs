//! `keyward import SOURCE`: read the source, plan against the organization's vault, print the
//! plan, and (without `--dry-run`) apply it.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use keyward_core::OrgId;
use keyward_core::credential::FormatCheck;
use keyward_store::Vault;

use crate::cli::{ImportArgs, ImportCommand};
use crate::import::{self, Read, VarRules};

pub(crate) async fn run(vault: &Vault, cmd: ImportCommand, actor: &str) -> Result<ExitCode> {
    let (read, source, common) = match cmd {
        ImportCommand::Dotenv {
            files,
            common,
            vars,
        } => {
            let rules = VarRules {
                sensitive_by_name: vars.sensitive_vars,
                only_providers: vars.only_providers,
            };
            let read = import::dotenv::read(&files, vars.name.as_deref(), rules)?;
            let source = format!(
                "dotenv:{}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            (read, source, common)
        }
        ImportCommand::Env {
            common,
            name,
            include_vars,
        } => {
            let read = import::env::read(std::env::vars_os(), name.as_deref(), &include_vars)?;
            (read, "env".to_owned(), common)
        }
        ImportCommand::Litellm { file, common } => {
            let yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            (
                import::litellm(&yaml)?,
                format!("litellm:{}", file.display()),
                common,
            )
        }
        ImportCommand::OpenNotebook {
            file,
            encryption_key_env,
            common,
        } => {
            let passphrase = secret_from(&encryption_key_env)?;
            let keys = import::OpenNotebookKeys::new(&passphrase)?;
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let read = import::open_notebook(&json, &keys)?;
            (read, format!("open-notebook:{}", file.display()), common)
        }
        ImportCommand::Fernet {
            file,
            key_env,
            common,
        } => {
            let key = secret_from(&key_env)?;
            let Some(fernet) = fernet::Fernet::new(key.trim()) else {
                bail!("{key_env} does not hold a Fernet key (urlsafe base64 of 32 bytes)");
            };
            let org = OrgId::new(&common.org)?;
            let read = import::fernet_rows(&file, &fernet, &org)?;
            (read, format!("fernet:{}", file.display()), common)
        }
    };
    finish(vault, read, &source, &common, actor).await
}

/// A key from the variable named: never from an argument, which `ps` would show.
fn secret_from(var: &str) -> Result<zeroize::Zeroizing<String>> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(zeroize::Zeroizing::new(v)),
        _ => bail!(
            "{var} is not set: export the key in it (its name is given with --key-env / --encryption-key-env)"
        ),
    }
}

async fn finish(
    vault: &Vault,
    read: Read,
    source: &str,
    common: &ImportArgs,
    actor: &str,
) -> Result<ExitCode> {
    let org = OrgId::new(&common.org)?;
    let check = if common.no_format_check {
        FormatCheck::Skip
    } else {
        FormatCheck::Enforce
    };
    let plan = import::plan(vault, &org, read, check).await?;
    import::print(&plan);
    let errors = plan.errors();
    if common.dry_run {
        say!("dry run: nothing was changed");
        return Ok(if errors > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    if common.atomic && errors > 0 {
        bail!("{errors} record(s) cannot be imported, so nothing was (--atomic)");
    }
    let out = import::apply(vault, &org, plan, source, check, actor).await?;
    say!(
        "imported into {org}: {} created, {} updated, {} unchanged, {} failed, {errors} not importable",
        out.created,
        out.updated,
        out.unchanged,
        out.failed
    );
    if out.created + out.updated == 0 && out.failed == 0 && errors == 0 {
        say!("nothing changed: the vault already holds this source");
    }
    Ok(if out.failed + errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
