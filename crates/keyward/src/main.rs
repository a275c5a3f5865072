//! `keyward`: the command line. Thin glue over `keyward-store`: parse, configure, open the
//! vault, run one command, print.

#[macro_use]
mod output;
mod backend;
mod cli;
mod commands;
mod import;
mod run;
mod serve;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Parser as _;
use keyward_core::credential::{CredentialUpdate, FormatCheck, Modality, NewCredential};
use keyward_core::resolve::{ResolveRequest, Source, Strategy};
use keyward_core::var::VarView;
use keyward_core::{CredentialId, CredentialName, OrgId, PROVIDERS, Provider, VarName};
use keyward_store::{Vault, VaultOptions};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::backend::Backend;
use crate::cli::{
    Cli, Command, CredCommand, EventsCommand, MasterKeyCommand, OrgCommand, ResolveArgs,
    SecretSource, VarCommand,
};
use crate::output::{Table, print_json, time};
use keyward::{Config, ConfigInputs};

fn main() -> ExitCode {
    // clap's own errors quote the argument they could not take (`invalid value '...'`), which
    // may be a key typed in the wrong place: they are scrubbed like every other error.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let text = keyward_core::secret_like::scrub(&e.render().to_string());
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                output::write_out(format_args!("{text}"));
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // The server wants both cores; a one-shot command is best served by one thread.
    let mut builder = if matches!(cli.command, Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Errors may name what was given (an organization, a variable); nothing that looks
            // like a key is printed.
            let hint = match e.downcast_ref::<keyward_store::VaultError>() {
                Some(keyward_store::VaultError::KeyFormat(_)) => {
                    " (to store it anyway: --no-format-check)"
                }
                _ => "",
            };
            eprintln!(
                "error: {}{hint}",
                keyward_core::secret_like::scrub(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// Who the audit log says did it.
fn actor() -> String {
    let user = std::env::var("KEYWARD_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Keygen => {
            say!("{}", keyward_crypto::generate_master_key_base64()?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Providers { json } => {
            providers(json)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // With KEYWARD_URL set, keys come from a server and no local vault is opened.
    if let Some(remote) = keyward::remote::Remote::from_env()? {
        let keys = run::Keys::Remote(remote.clone());
        let backend = Backend::Remote(remote.clone());
        return match cli.command {
            Command::Resolve(args) => resolve_remote(&remote, args).await,
            Command::Env(args) => run::env(&keys, args).await,
            Command::Run(args) => run::run(&keys, args).await,
            Command::Org(cmd) => org(&backend, cmd).await,
            Command::Cred(cmd) => cred(&backend, cmd).await,
            Command::Var(cmd) => var(&backend, cmd).await,
            Command::MasterKey(cmd) => master_key(&backend, cmd).await,
            Command::Events(cmd) => events(&backend, cmd).await,
            Command::Token(cmd) => serve::token(&backend, cmd).await,
            Command::GatewayToken(cmd) => serve::gateway_token(&backend, cmd).await,
            Command::Gateway(cmd) => serve::gateway(&backend, cmd).await,
            Command::Serve { .. } => bail!(
                "KEYWARD_URL is set: `serve` runs a server on this machine's vault; unset KEYWARD_URL"
            ),
            Command::Backup { .. }
            | Command::Restore { .. }
            | Command::Store(_)
            | Command::Reencrypt => bail!(
                "KEYWARD_URL is set: backup and restore work on this machine's store (KEYWARD_DATA_DIR or KEYWARD_DATABASE_URL); unset KEYWARD_URL"
            ),
            Command::Import(_) => bail!(
                "KEYWARD_URL is set: `import` writes into this machine's vault (KEYWARD_DATA_DIR or KEYWARD_DATABASE_URL); unset KEYWARD_URL"
            ),
            Command::Keygen | Command::Providers { .. } => Ok(ExitCode::SUCCESS),
        };
    }
    let inputs = ConfigInputs {
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        production: cli.global.production,
    };
    let config = Config::load(&inputs)?;
    // Copying stores opens both (and the copy again, to check it) with the configured keys.
    if let Command::Store(cli::StoreCommand::Copy { from, to, force }) = &cli.command {
        let keys = || Config::load(&inputs).map(|c| c.keyring);
        return commands::backup::copy(from, to, *force, (keys()?, keys()?, keys()?)).await;
    }
    // One command, one task: a single connection is all it needs. The server keeps a pool.
    let options = match &cli.command {
        Command::Serve(args) => VaultOptions {
            cache_ttl: args.cache_ttl,
            listen_for_changes: true,
            acquire_timeout: args.db_acquire_timeout,
            ..VaultOptions::default()
        },
        _ => VaultOptions {
            max_connections: Some(1),
            ..VaultOptions::default()
        },
    };
    let vault = Vault::open(&config.location, config.keyring, options)
        .await
        .context("cannot open the vault")?;
    for warning in vault.startup_warnings().await? {
        tracing::warn!("{warning}");
    }
    let actor = actor();
    let code = match cli.command {
        Command::Keygen | Command::Providers { .. } => ExitCode::SUCCESS,
        Command::Serve(args) => serve::serve(vault.clone(), args).await?,
        Command::Gateway(cmd) => serve::gateway(&local(&vault, &actor), cmd).await?,
        Command::Token(cmd) => serve::token(&local(&vault, &actor), cmd).await?,
        Command::GatewayToken(cmd) => serve::gateway_token(&local(&vault, &actor), cmd).await?,
        Command::Org(cmd) => org(&local(&vault, &actor), cmd).await?,
        Command::Cred(cmd) => cred(&local(&vault, &actor), cmd).await?,
        Command::Var(cmd) => var(&local(&vault, &actor), cmd).await?,
        Command::Resolve(args) => resolve(&vault, args, &actor).await?,
        Command::Env(args) => {
            let keys = key_provider(&vault, &actor, !args.no_env_fallback);
            run::env(&run::Keys::Local(keys), args).await?
        }
        Command::Run(args) => {
            let keys = key_provider(&vault, &actor, !args.no_env_fallback);
            run::run(&run::Keys::Local(keys), args).await?
        }
        Command::MasterKey(cmd) => master_key(&local(&vault, &actor), cmd).await?,
        Command::Events(cmd) => events(&local(&vault, &actor), cmd).await?,
        Command::Import(cmd) => commands::import::run(&vault, cmd, &actor).await?,
        Command::Backup { file } => commands::backup::backup(&vault, &file).await?,
        Command::Store(_) => ExitCode::SUCCESS,
        Command::Reencrypt => {
            let report = vault
                .reencrypt_legacy(500, &actor, |n| {
                    if n.is_multiple_of(500) {
                        say!("{n} sealed so far");
                    }
                })
                .await?;
            say!(
                "sealed {} credential(s) and {} variable(s); {} could not be (see the log)",
                report.credentials,
                report.variables,
                report.failed
            );
            if report.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Restore { file, force } => {
            let restored = commands::backup::restore(&vault, &file, force).await?;
            vault.close().await;
            // The store's audit chain key is now the backup's: open it again to check it.
            let again = Vault::open(
                &config.location,
                Config::load(&inputs)?.keyring,
                VaultOptions::default(),
            )
            .await
            .context("cannot open the restored store")?;
            let code = commands::backup::verify(&again, &restored).await?;
            again.close().await;
            return Ok(code);
        }
    };
    vault.close().await;
    Ok(code)
}

/// The local vault as the commands' backend.
fn local(vault: &Vault, actor: &str) -> Backend {
    Backend::Local {
        vault: vault.clone(),
        actor: actor.to_owned(),
    }
}

/// The library's provider over this vault, for env and run: the organization's keys, then
/// (unless `--no-env-fallback`) this process's environment, as `keyward resolve` does.
fn key_provider(vault: &Vault, actor: &str, env_fallback: bool) -> keyward::KeyProvider {
    keyward::KeyProvider::from_vault(vault.clone())
        .with_actor(actor)
        .with_env_fallback(env_fallback)
}

/// The variables `keyward run` sets for a provider's key and base URL: the registry's, and for
/// the compatible providers those of the SDK they stand in for, or `{PREFIX}_...` with an
/// `env_prefix`.
fn provider_vars(p: &Provider) -> (Vec<String>, Vec<String>) {
    let (mut key, mut base) =
        keyward_core::env::key_and_base_url_vars(p, &std::collections::BTreeMap::new());
    if p.is_compatible() {
        key.push("PREFIX_API_KEY".into());
        base.extend(["PREFIX_BASE_URL".into(), "PREFIX_API_BASE".into()]);
    }
    (key, base)
}

fn providers(json: bool) -> Result<()> {
    if json {
        let listed: Vec<serde_json::Value> = PROVIDERS
            .iter()
            .map(|p| {
                let (key, base) = provider_vars(p);
                let mut v = serde_json::json!(p);
                v["sets"] = serde_json::json!({ "key": key, "base_url": base });
                v
            })
            .collect();
        return print_json(&listed);
    }
    let mut t = Table::new(["ID", "NAME", "KEY ENV", "BASE URL ENV", "KEY FORMAT"]);
    for p in PROVIDERS {
        let (key, base) = provider_vars(p);
        let or_dash = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        t.row([
            p.id.to_owned(),
            p.display_name.to_owned(),
            or_dash(key),
            or_dash(base),
            match (p.key_prefixes.is_empty(), p.min_key_len) {
                (true, 0) => "any".to_owned(),
                (true, n) => format!("{n}+ chars"),
                (false, _) => p.key_prefixes.join(" | ") + "...",
            },
        ]);
    }
    t.print();
    if PROVIDERS.iter().any(|p| !p.aliases.is_empty()) {
        let aliases: Vec<String> = PROVIDERS
            .iter()
            .flat_map(|p| p.aliases.iter().map(move |a| format!("{a} = {}", p.id)))
            .collect();
        say!(
            "also accepted: {}, and any id in any case with '-' for '_' (openai-compatible)",
            aliases.join(", ")
        );
    }
    Ok(())
}

async fn org(backend: &Backend, cmd: OrgCommand) -> Result<ExitCode> {
    match cmd {
        OrgCommand::Create {
            slug,
            name,
            strategy,
        } => {
            let id = OrgId::new(&slug)?;
            let strategy: Option<Strategy> = strategy.as_deref().map(str::parse).transpose()?;
            let mut org = backend.create_org(&id, name.as_deref()).await?;
            if let Some(strategy) = strategy {
                org = backend.set_org_strategy(&id, strategy).await?;
            }
            say!(
                "created organization {} ({}), strategy {}",
                org.id,
                org.name,
                org.strategy
            );
        }
        OrgCommand::SetStrategy { slug, strategy } => {
            let id = OrgId::new(&slug)?;
            let org = backend.set_org_strategy(&id, strategy.parse()?).await?;
            say!("organization {} now uses {}", org.id, org.strategy);
        }
        OrgCommand::SetEnvFallback { slug, setting } => {
            let id = OrgId::new(&slug)?;
            let value = match setting.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            };
            let org = backend.set_org_env_fallback(&id, value).await?;
            say!(
                "organization {}: environment fallback {}",
                org.id,
                env_fallback_setting(org.env_fallback)
            );
        }
        OrgCommand::List { json } => {
            let orgs = backend.list_orgs().await?;
            if json {
                print_json(&orgs)?;
            } else {
                let mut t = Table::new(["ID", "NAME", "STRATEGY", "ENV FALLBACK", "CREATED", "BY"]);
                for o in orgs {
                    t.row([
                        o.id.to_string(),
                        o.name,
                        o.strategy.to_string(),
                        env_fallback_setting(o.env_fallback).to_owned(),
                        time(o.created_at),
                        o.created_by,
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An organization's environment-fallback setting as the CLI shows and takes it.
fn env_fallback_setting(setting: Option<bool>) -> &'static str {
    match setting {
        Some(true) => "on",
        Some(false) => "off",
        None => "default",
    }
}

/// Reads a secret from the named variable, or standard input (a hidden prompt on a terminal).
/// The buffers it passes through are wiped when dropped.
fn read_secret(env_var: Option<&str>, what: &str) -> Result<SecretString> {
    let value = if let Some(var) = env_var {
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

fn secret_prompt(provider: &Provider) -> String {
    format!(
        "{} {} (input hidden)",
        provider.display_name,
        provider.secret_field.replace('_', " ")
    )
}

fn format_check(s: &SecretSource) -> FormatCheck {
    if s.no_format_check {
        FormatCheck::Skip
    } else {
        FormatCheck::Enforce
    }
}

fn parse_sets(sets: &[String], base_url: Option<String>) -> Result<BTreeMap<String, String>> {
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

fn parse_modalities(list: &[String]) -> Result<Vec<Modality>> {
    Ok(Modality::parse_list(&list.join(","))?)
}

fn print_cred(c: &keyward_core::credential::CredentialView, json: bool) -> Result<()> {
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

async fn cred(backend: &Backend, cmd: CredCommand) -> Result<ExitCode> {
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

async fn var(backend: &Backend, cmd: VarCommand) -> Result<ExitCode> {
    match cmd {
        VarCommand::Set {
            name,
            org,
            sensitive,
            description,
            value_env,
        } => {
            let name = VarName::new(&name)?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let raw = read_secret(value_env.as_deref(), &format!("value of {name}"))?;
            // A value piped in usually ends with a newline that is not part of it.
            let value = SecretString::from(raw.expose_secret().trim_end_matches(['\r', '\n']));
            let view = backend
                .set_var(
                    &name,
                    org.as_ref(),
                    &value,
                    sensitive,
                    description.as_deref(),
                )
                .await?;
            say!(
                "set {}variable {}{} (version {})",
                if view.sensitive { "sensitive " } else { "" },
                view.org.map(|o| format!("{o}/")).unwrap_or_default(),
                view.name,
                view.version
            );
        }
        VarCommand::Get {
            name,
            org,
            reveal,
            json,
        } => {
            let name = VarName::new(&name)?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let (view, value) = backend.get_var(&name, org.as_ref(), reveal).await?;
            if json {
                let mut v = serde_json::to_value(view.redacted())?;
                if let Some(value) = &value {
                    v["value"] = serde_json::Value::String(value.expose_secret().to_owned());
                }
                print_json(&v)?;
            } else {
                match &value {
                    Some(value) => say!("{}", value.expose_secret()),
                    None => {
                        eprintln!("{name} is sensitive; pass --reveal to print it (audited)");
                        say!("***");
                    }
                }
            }
        }
        VarCommand::List { org, json } => {
            let org = match org.as_deref() {
                None => None,
                Some("") => Some(None),
                Some(o) => Some(Some(OrgId::new(o)?)),
            };
            let mut vars = backend
                .list_vars(org.as_ref().and_then(Option::as_ref))
                .await?;
            if let Some(None) = org {
                vars.retain(|v| v.org.is_none());
            }
            if json {
                let shown: Vec<_> = vars.iter().map(VarView::redacted).collect();
                print_json(&shown)?;
            } else {
                let mut t = Table::new(["SCOPE", "NAME", "VALUE", "SENSITIVE", "DESCRIPTION"]);
                for v in &vars {
                    t.row([
                        v.org
                            .as_ref()
                            .map_or_else(|| "(global)".to_owned(), ToString::to_string),
                        v.name.to_string(),
                        v.shown_value().to_owned(),
                        if v.sensitive { "yes" } else { "no" }.into(),
                        v.description.clone(),
                    ]);
                }
                t.print();
            }
        }
        VarCommand::Delete { name, org } => {
            let name = VarName::new(&name)?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            backend.delete_var(&name, org.as_ref()).await?;
            say!("deleted variable {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn resolve(vault: &Vault, args: ResolveArgs, actor: &str) -> Result<ExitCode> {
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
fn print_resolved(resolved: &keyward_core::resolve::Resolved, json: bool) -> Result<()> {
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
async fn resolve_remote(remote: &keyward::remote::Remote, args: ResolveArgs) -> Result<ExitCode> {
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

async fn master_key(backend: &Backend, cmd: MasterKeyCommand) -> Result<ExitCode> {
    match cmd {
        MasterKeyCommand::Status { json } => {
            let status = backend.key_status().await?;
            if json {
                print_json(&status)?;
            } else {
                let mut t = Table::new(["KID", "ROLE", "CREDENTIALS", "VARIABLES", "VAULT KEYS"]);
                for k in &status.kids {
                    let role = match (k.primary, k.configured) {
                        (true, _) => "primary",
                        (false, true) => "secondary",
                        (false, false) => "MISSING",
                    };
                    t.row([
                        k.kid.clone(),
                        role.into(),
                        k.credentials.to_string(),
                        k.variables.to_string(),
                        k.vault_keys.to_string(),
                    ]);
                }
                t.print();
                let pending = status.pending_rotation();
                if pending > 0 {
                    say!("{pending} record(s) await `keyward master-key rotate`");
                }
            }
        }
        MasterKeyCommand::Rotate { batch_size } => {
            let bar = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} rewrapping [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
                    )
                    .map_err(|e| anyhow!("progress bar template: {e}"))?
                    .progress_chars("=> "),
                );
                Some(bar)
            } else {
                None
            };
            let report = backend
                .rotate_master_key(batch_size, |p| {
                    if let Some(bar) = &bar {
                        bar.set_length(p.total);
                        bar.set_position(p.done);
                    }
                })
                .await?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            say!(
                "rewrapped {} record(s) under master key '{}'",
                report.rewrapped,
                report.primary
            );
            if report.failed > 0 {
                eprintln!(
                    "{} record(s) could not be unwrapped and were left as they are (see `keyward cred list`)",
                    report.failed
                );
            }
            if report.remaining > 0 {
                eprintln!(
                    "{} record(s) are still wrapped by an old master key: keep it configured, and run the rotation again",
                    report.remaining
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(backend: &Backend, cmd: EventsCommand) -> Result<ExitCode> {
    match cmd {
        EventsCommand::List {
            filter,
            limit,
            json,
        } => {
            let events = backend.list_events(&filter, limit).await?;
            if json {
                print_json(&events)?;
            } else {
                let mut t = Table::new([
                    "SEQ", "TIME", "ACTOR", "ORG", "CATEGORY", "ACTION", "TARGET", "OUTCOME",
                ]);
                for e in events {
                    t.row([
                        e.seq.to_string(),
                        time(e.at),
                        e.actor,
                        e.org.unwrap_or_else(|| "-".into()),
                        e.category.to_string(),
                        e.action,
                        e.target,
                        e.outcome.as_str().into(),
                    ]);
                }
                t.print();
            }
        }
        EventsCommand::Verify { json } => {
            let report = backend.verify_events().await?;
            if json {
                print_json(&report)?;
            } else if let Some((seq, problem)) = &report.problem {
                say!(
                    "audit chain BROKEN at event {seq}: {problem} ({} event(s) verified before it)",
                    report.checked
                );
            } else {
                say!("audit chain intact: {} event(s) verified", report.checked);
            }
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
