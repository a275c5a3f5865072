//! `keyward resolve`: one key, printed (audited), from the local vault or a server.

use std::process::ExitCode;

use anyhow::{Result, bail};
use keyward_core::resolve::ResolveRequest;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_store::Vault;
use secrecy::ExposeSecret as _;

use crate::cli::ResolveArgs;
use crate::output::print_json;

pub(crate) async fn resolve(vault: &Vault, args: ResolveArgs, actor: &str) -> Result<ExitCode> {
    let mut req = ResolveRequest::new(OrgId::new(&args.org)?, Provider::get(&args.provider)?);
    req.name = args.name.as_deref().map(CredentialName::new).transpose()?;
    req.modality = args.modality.as_deref().map(str::parse).transpose()?;
    req.strategy = args.strategy.as_deref().map(str::parse).transpose()?;
    if args.no_env_fallback {
        req.env_fallback = keyward_core::resolve::EnvFallback::Off;
    }
    let resolved = vault.resolve(&req, actor).await?;
    print_resolved(&resolved, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a resolution: the key alone, or JSON with its fields and source.
pub(crate) fn print_resolved(resolved: &keyward_core::resolve::Resolved, json: bool) -> Result<()> {
    if json {
        // The shape HTTP resolution answers with, so that a script works against either.
        print_json(&resolved.config_object())
    } else {
        match &resolved.secret {
            Some(s) => say!("{}", s.expose_secret()),
            // Providers without a key (a local Ollama) answer with their base URL.
            None => say!(
                "{}",
                resolved.fields.get("base_url").cloned().unwrap_or_default()
            ),
        }
        Ok(())
    }
}

/// `keyward resolve` against a server.
pub(crate) async fn resolve_remote(
    remote: &keyward::remote::Remote,
    args: ResolveArgs,
) -> Result<ExitCode> {
    if args.modality.is_some() || args.strategy.is_some() {
        bail!("against a server, resolve takes --org, --provider and --name only");
    }
    let resolved = remote
        .resolve_or_env(
            &args.org,
            Provider::get(&args.provider)?,
            args.name.as_deref(),
            !args.no_env_fallback,
        )
        .await?;
    print_resolved(&resolved, args.json)?;
    Ok(ExitCode::SUCCESS)
}
