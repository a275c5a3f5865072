//! `keyward resolve`: one key, printed (audited), from the local vault or a server.

use std::process::ExitCode;

use anyhow::{Result, bail};
use keyward_core::resolve::{ResolveRequest, Source};
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
        let source = match &resolved.source {
            Source::Vault { id, name } => {
                serde_json::json!({ "kind": "vault", "id": id, "name": name })
            }
            Source::Environment { variable } => {
                serde_json::json!({ "kind": "environment", "variable": variable })
            }
        };
        print_json(&serde_json::json!({
            "provider": resolved.provider.id,
            "secret_field": resolved.provider.secret_field,
            // The name HTTP resolution gives it too.
            "api_key": resolved.secret.as_ref().map(|s| s.expose_secret()),
            "fields": resolved.fields,
            "source": source,
        }))
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
