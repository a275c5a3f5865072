//! `keyward`: the command line. Thin glue over `keyward-store`: parse, configure, open the
//! vault, run one command, print.

#[macro_use]
mod output;
mod backend;
mod cli;
mod commands;
mod import;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use keyward_store::{Vault, VaultOptions};

use crate::backend::Backend;
use crate::cli::{Cli, Command};
use crate::commands::cred::cred;
use crate::commands::events::events;
use crate::commands::master_key::master_key;
use crate::commands::org::org;
use crate::commands::providers::providers;
use crate::commands::resolve::{resolve, resolve_remote};
use crate::commands::var::var;
use crate::commands::{run, serve, spend};
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
    // A server writes one access line a request (at info) unless told otherwise.
    let default_filter = if matches!(cli.command, Command::Serve { .. }) {
        "warn,keyward::access=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Traces (OpenTelemetry, OTLP/HTTP) when a server is given an endpoint; made before the
    // runtime, since the exporter's client runs on a thread of its own.
    let telemetry = if matches!(cli.command, Command::Serve { .. }) {
        match keyward_server::Telemetry::from_env() {
            Ok(t) => t,
            Err(e) => {
                // Before the log is set up: a JSON line by hand when JSON was asked for.
                let message = keyward_core::secret_like::scrub(&e);
                if matches!(cli.global.log_format, cli::LogFormat::Json) {
                    eprintln!(
                        "{}",
                        serde_json::json!({
                            "level": "ERROR",
                            "target": "keyward",
                            "fields": { "message": message },
                        })
                    );
                } else {
                    eprintln!("error: {message}");
                }
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
        let logs: Boxed = match cli.global.log_format {
            cli::LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .without_time()
                .with_filter(filter)
                .boxed(),
            // One JSON object a line, with its time and target: what collectors parse.
            cli::LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_current_span(false)
                .with_span_list(false)
                .with_filter(filter)
                .boxed(),
        };
        // The spans traces are made of: Keyward's own, at info.
        let mut layers = vec![logs];
        layers.extend(telemetry.as_ref().map(|t| {
            t.layer()
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("keyward_server", tracing::Level::INFO)
                        .with_target("keyward_store", tracing::Level::INFO),
                )
                .boxed()
        }));
        tracing_subscriber::registry().with(layers).init();
    }
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
    let json_logs = matches!(cli.global.log_format, cli::LogFormat::Json);
    let result = runtime.block_on(run(cli));
    drop(runtime);
    if let Some(t) = telemetry {
        t.shutdown();
    }
    match result {
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
            let message = format!(
                "{}{hint}",
                keyward_core::secret_like::scrub(&format!("{e:#}"))
            );
            // Under --log-format json every line of standard error is a JSON object.
            if json_logs {
                tracing::error!("{message}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Who the audit log says did it: `KEYWARD_ACTOR`, else the login name (`$USER`, `$LOGNAME`,
/// or the system's name for this process's user, as under cron or systemd where neither is
/// set), else the user id.
fn actor() -> String {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let user = set("KEYWARD_ACTOR")
        .or_else(|| set("USER"))
        .or_else(|| set("LOGNAME"))
        .or_else(|| {
            let uid = nix::unistd::getuid();
            Some(match nix::unistd::User::from_uid(uid) {
                Ok(Some(u)) => u.name,
                _ => format!("uid:{uid}"),
            })
        })
        .unwrap_or_default();
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
        Command::Healthcheck { listen, tls_cert } => {
            return commands::serve::healthcheck(listen, tls_cert.is_some()).await;
        }
        // Made from the argument definitions themselves: they cannot drift from them.
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "keyward",
                &mut out,
            );
            output::write_out(format_args!("{}", String::from_utf8_lossy(&out)));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
            output::write_out(format_args!("{}", String::from_utf8_lossy(&out)));
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // With KEYWARD_URL set, keys come from a server and no local vault is opened.
    // Before anything reads the environment: with a KMS, the variables that sign in to it are
    // Keyward's own (in remote mode too, where this machine's KEYWARD_KMS may still be set).
    if let Some(spec) = cli.global.kms.as_deref().filter(|k| !k.trim().is_empty()) {
        keyward_core::env::withhold_kms_credentials(keyward_kms::credential_variables(spec));
        keyward_core::env::guard_values(keyward_kms::guarded_secrets_of(
            spec,
            &keyward_kms::process_env,
        ));
    }
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
            Command::MasterKey(cli::MasterKeyCommand::Rotate {
                new_key_file: Some(_),
                ..
            }) => bail!(
                "KEYWARD_URL is set: --new-key-file writes a key for this machine's vault; rotate on the server's machine, or unset KEYWARD_URL"
            ),
            Command::MasterKey(cmd) => master_key(&backend, cmd).await,
            Command::Events(cmd) => events(&backend, cmd).await,
            Command::Doctor(args) => commands::doctor::remote(&remote, &args).await,
            Command::Token(cmd) => serve::token(&backend, cmd).await,
            Command::Session(cmd) => serve::session(&backend, cmd).await,
            Command::Sso(cmd) => serve::sso(Some(&backend), cmd).await,
            Command::GatewayToken(cmd) => serve::gateway_token(&backend, cmd).await,
            Command::Gateway(cmd) => serve::gateway(&backend, cmd).await,
            Command::Spend(args) => spend::spend(&backend, args).await,
            Command::Prices(cmd) => spend::prices(&backend, cmd).await,
            Command::Budget(cmd) => spend::budget(&backend, cmd).await,
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
            Command::Keygen
            | Command::Providers { .. }
            | Command::Healthcheck { .. }
            | Command::Completions { .. }
            | Command::Man => Ok(ExitCode::SUCCESS),
        };
    }
    // `sso status` here reads the identity file and asks its provider: no vault is opened
    // (nor made).
    if let Command::Sso(cmd) = cli.command {
        return serve::sso(None, cmd).await;
    }
    let inputs = ConfigInputs {
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        production: cli.global.production,
        kms: cli.global.kms.clone().filter(|k| !k.trim().is_empty()),
    };
    if let Command::MasterKey(cli::MasterKeyCommand::AdoptKms) = &cli.command {
        return adopt_kms(&inputs).await;
    }
    // The doctor examines a store; it makes none (nor its directory, nor a development key)
    // where there is none.
    if matches!(cli.command, Command::Doctor(_))
        && inputs.database_url.as_deref().is_none_or(str::is_empty)
    {
        let file = keyward_store::Location::in_data_dir(&inputs.data_dir);
        if let keyward_store::Location::SqliteFile(file) = file
            && !file.exists()
        {
            bail!(
                "there is no store at {}: set KEYWARD_DATA_DIR (or KEYWARD_DATABASE_URL) to the server's",
                file.display()
            );
        }
    }
    let config = Config::load(&inputs)?;
    let location = config.location.clone();
    let kms = config.kms().cloned();
    match (&cli.command, &kms) {
        (
            Command::MasterKey(
                cli::MasterKeyCommand::New { .. }
                | cli::MasterKeyCommand::Retire { .. }
                | cli::MasterKeyCommand::RewrapKms
                | cli::MasterKeyCommand::LeaveKms { .. },
            ),
            None,
        ) => bail!(
            "this command works on master keys kept by a KMS: set KEYWARD_KMS (or --kms) to the KMS that keeps them"
        ),
        (
            Command::MasterKey(cli::MasterKeyCommand::Rotate {
                new_key_file: Some(_),
                ..
            }),
            Some(_),
        ) => bail!(
            "KEYWARD_KMS is set: the KMS keeps the master keys, so a new one is not written to a file. Make it with `keyward master-key new`, then run `keyward master-key rotate`"
        ),
        _ => {}
    }
    // Copying stores opens both (and the copy again, to check it) with the source's keys.
    if let Command::Store(cli::StoreCommand::Copy { from, to, force }) = &cli.command {
        let keys = async || -> Result<keyward_crypto::Keyring> {
            Ok(match &kms {
                Some(kms) => {
                    keyward::kms::keyring(kms.as_ref(), &commands::backup::location(from)).await?
                }
                None => Config::load(&inputs)?.keyring().await?,
            })
        };
        return commands::backup::copy(
            from,
            to,
            *force,
            (keys().await?, keys().await?, keys().await?),
        )
        .await;
    }
    let mut keyring = match (&cli.command, &kms) {
        // A server waits for its KMS (answering /readyz meanwhile); a command says why not.
        (Command::Serve(args), Some(kms)) => {
            serve::wait_for_keys(kms.as_ref(), &location, args).await?
        }
        // A restore opens the backup with the master keys it carries, once the KMS unwraps them.
        (Command::Restore { file, .. }, Some(kms)) => match commands::backup::kms_keys_of(file)? {
            Some(rows) => keyward::kms::guarded(
                keyward_crypto::Keyring::new(
                    keyward::kms::unwrap_all(kms.as_ref(), &rows)
                        .await
                        .context("cannot open the backup's master keys")?
                        .iter()
                        .map(keyward_crypto::KeyMaterial::master_key)
                        .collect(),
                    "KEYWARD_KMS",
                )?,
                kms.as_ref(),
            ),
            // Nothing is made in the target for a backup the KMS does not keep the keys of.
            None => bail!(
                "restore refused; nothing was changed: this backup's master keys were given to its store, not kept by a KMS. Restore it without KEYWARD_KMS, with the keys it was taken under (KEYWARD_MASTER_KEY(S) or KEYWARD_MASTER_KEY_FILE), then move them into the KMS with `keyward master-key adopt-kms`"
            ),
        },
        _ => config
            .keyring()
            .await
            .context("cannot open the master keys")?,
    };
    // A rotation's primary key: a new one written to a file first, or one the operator vouches
    // for; otherwise the store refuses a primary key given only in the environment.
    match &cli.command {
        Command::MasterKey(cli::MasterKeyCommand::Rotate {
            new_key_file: Some(path),
            kid,
            ..
        }) => {
            let key = commands::master_key::new_key_file(path, kid.as_deref())?;
            keyring = keyring.with_new_primary(key)?;
        }
        Command::MasterKey(cli::MasterKeyCommand::Rotate {
            danger_primary_key_saved_elsewhere: true,
            ..
        }) => keyring = keyring.primary_kept_on_operators_word(),
        Command::Serve(args) if args.danger_primary_key_saved_elsewhere => {
            keyring = keyring.primary_kept_on_operators_word();
        }
        _ => {}
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
    let vault = Vault::open(&location, keyring, options)
        .await
        .context("cannot open the vault")?;
    // The master-key commands are the answer to these warnings (and `status` shows them all).
    if !matches!(cli.command, Command::MasterKey(_)) {
        for warning in vault.startup_warnings().await? {
            tracing::warn!("{warning}");
        }
    }
    let actor = actor();
    let code = match cli.command {
        Command::Keygen
        | Command::Providers { .. }
        | Command::Healthcheck { .. }
        | Command::Completions { .. }
        | Command::Man => ExitCode::SUCCESS,
        Command::Serve(args) => {
            let keys_from = kms
                .as_ref()
                .map(|k| format!("unwrapped by the KMS ({}) at start", k.kind()));
            let data_dir = match &location {
                keyward_store::Location::SqliteFile(file) => file.parent().map(Into::into),
                keyward_store::Location::Url(_) => None,
            };
            serve::serve(vault.clone(), args, keys_from, data_dir).await?
        }
        Command::Doctor(args) => {
            let data_dir = match &location {
                keyward_store::Location::SqliteFile(file) => file.parent().map(Into::into),
                keyward_store::Location::Url(_) => None,
            };
            let keys_from = match &kms {
                Some(k) => Some(format!(
                    "kept in the store, wrapped by the KMS ({})",
                    k.kind()
                )),
                None => commands::doctor::keys_given(),
            };
            commands::doctor::local(&vault, &args, data_dir, keys_from).await?
        }
        Command::Gateway(cmd) => serve::gateway(&local(&vault, &actor), cmd).await?,
        Command::Spend(args) => spend::spend(&local(&vault, &actor), args).await?,
        Command::Prices(cmd) => spend::prices(&local(&vault, &actor), cmd).await?,
        Command::Budget(cmd) => spend::budget(&local(&vault, &actor), cmd).await?,
        Command::Token(cmd) => serve::token(&local(&vault, &actor), cmd).await?,
        Command::Session(cmd) => serve::session(&local(&vault, &actor), cmd).await?,
        // Answered above, before the vault is opened.
        Command::Sso(cmd) => serve::sso(None, cmd).await?,
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
        Command::MasterKey(
            cmd @ (cli::MasterKeyCommand::New { .. }
            | cli::MasterKeyCommand::Retire { .. }
            | cli::MasterKeyCommand::RewrapKms
            | cli::MasterKeyCommand::LeaveKms { .. }),
        ) => {
            let kms = kms.as_ref().context("KEYWARD_KMS is not set")?;
            commands::master_key::kms_command(&vault, kms.as_ref(), cmd, &actor).await?
        }
        Command::MasterKey(cmd) => master_key(&local(&vault, &actor), cmd).await?,
        Command::Events(cmd) => events(&local(&vault, &actor), cmd).await?,
        Command::Import(cmd) => commands::import::run(&vault, cmd, &actor).await?,
        Command::Backup {
            file,
            include_plaintext,
        } => commands::backup::backup(&vault, &file, include_plaintext).await?,
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
                &location,
                Config::load(&inputs)?.keyring().await?,
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

/// `keyward master-key adopt-kms`: the vault opened with the keys given now, which the KMS
/// then wraps and the store keeps.
async fn adopt_kms(inputs: &ConfigInputs) -> Result<ExitCode> {
    let spec = inputs.kms.as_deref().context(
        "adopt-kms moves the master keys given now into a KMS: set KEYWARD_KMS (or --kms) to it",
    )?;
    keyward_core::env::withhold_kms_credentials(keyward_kms::credential_variables(spec));
    let kms = keyward_kms::open(spec, &keyward_kms::process_env)?;
    let given = keyward::config::given_keys(&inputs.data_dir, inputs.production)?;
    let keyring = keyward_crypto::Keyring::new(
        given
            .keys
            .iter()
            .map(keyward_crypto::KeyMaterial::master_key)
            .collect(),
        &given.source,
    )?;
    let keyring = keyward::kms::guarded(keyring, kms.as_ref());
    let options = VaultOptions {
        max_connections: Some(1),
        ..VaultOptions::default()
    };
    let vault = Vault::open(&inputs.location()?, keyring, options)
        .await
        .context("cannot open the vault")?;
    let code = commands::master_key::adopt_kms(&vault, kms.as_ref(), &given.keys, &actor()).await?;
    vault.close().await;
    // The development key sits beside the data, which the KMS is there to prevent: the KMS has
    // it now (adopt unwrapped it back before storing), so the file goes.
    if let Some(path) = &given.dev_key_file {
        std::fs::remove_file(path).with_context(|| {
            format!("cannot remove the development key file {}", path.display())
        })?;
        say!(
            "removed the development key file {}: the KMS keeps the key now",
            path.display()
        );
    }
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
