//! `keyward env` and `keyward run`: an organization's provider variables, and `keyward://`
//! references, handed to a child process (or printed once), never to a file or the parent shell.

use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use keyward::mask::Masker;
use keyward::{EnvMap, KeyProvider, Reference};
use keyward_core::credential::CredentialStatus;
use keyward_core::env::EnvValue;
use keyward_core::{OrgId, PROVIDERS, Provider};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{EnvArgs, EnvFormat, RunArgs};

/// Where keys come from: the local vault, or a Keyward server (`KEYWARD_URL`).
pub(crate) enum Keys {
    Local(KeyProvider),
    Remote(keyward::remote::Remote),
}

impl Keys {
    async fn env_map(&self, org: &str, named: &[String], env_fallback: bool) -> Result<EnvMap> {
        match self {
            // The local provider was built with the fallback setting.
            Keys::Local(keys) => org_env(keys, org, named).await,
            // The server picks the providers when none are named; a named one it has no key
            // for falls back to this machine's environment.
            Keys::Remote(remote) => {
                let providers = keyward::parse_providers(named)?;
                Ok(remote
                    .env_map_fallback(org, &providers, env_fallback)
                    .await?)
            }
        }
    }

    async fn resolve_reference(
        &self,
        r: &Reference,
    ) -> Result<keyward::ReferenceValue, keyward::Error> {
        match self {
            Keys::Local(keys) => keys.resolve_reference(r).await,
            Keys::Remote(remote) => remote.resolve_reference(r).await,
        }
    }
}

/// The providers to provision: those named, or every provider with an active credential that
/// opens.
async fn providers_of(
    keys: &KeyProvider,
    org: &OrgId,
    named: &[String],
) -> Result<Vec<&'static Provider>> {
    let named = keyward::parse_providers(named)?;
    if !named.is_empty() {
        return Ok(named);
    }
    let creds = keys.vault().list_credentials(Some(org), None).await?;
    if creds.is_empty() {
        keys.vault().require_org(org).await?;
    }
    Ok(PROVIDERS
        .iter()
        .filter(|p| {
            creds
                .iter()
                .any(|c| c.provider == p.id && c.active && c.status == CredentialStatus::Ok)
        })
        .collect())
}

/// The variables of the organization's providers. The vault is the only source here: falling
/// back to this process's environment would only copy the caller's own variables.
async fn org_env(keys: &KeyProvider, org: &str, named: &[String]) -> Result<EnvMap> {
    let org = OrgId::new(org)?;
    let providers = providers_of(keys, &org, named).await?;
    Ok(keys.env_map_many(org.as_str(), &providers).await?)
}

pub(crate) async fn env(keys: &Keys, args: EnvArgs) -> Result<ExitCode> {
    let map = keys
        .env_map(&args.org, &args.provider, !args.no_env_fallback)
        .await?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    for var in map.vars() {
        match &var.value {
            EnvValue::Plain(v) => pairs.push((var.name.clone(), v.clone())),
            EnvValue::Secret(s) => pairs.push((var.name.clone(), s.expose_secret().to_owned())),
            EnvValue::SecretFile(_) => eprintln!(
                "note: {} is a key file, which `keyward env` does not write to disk; use `keyward run`",
                var.name
            ),
        }
    }
    match args.format {
        EnvFormat::Dotenv => {
            let lines = pairs
                .iter()
                .map(|(k, v)| {
                    dotenv_value(v).map(|v| format!("{k}={v}")).ok_or_else(|| {
                        anyhow!(
                            "{k} holds both a quote or a newline and a backtick, which no .env \
                             line can hold safely for a shell too; use --format shell or json"
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            for line in lines {
                say!("{line}");
            }
        }
        EnvFormat::Shell => {
            for (k, v) in &pairs {
                say!("export {k}='{}'", v.replace('\'', r"'\''"));
            }
        }
        EnvFormat::Json => {
            let obj: BTreeMap<&str, &str> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            say!("{}", serde_json::to_string_pretty(&obj)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as a `.env` line holds it, safe to `source` from a shell as well: single-quoted
/// (nothing inside is special to either) unless it holds a quote or a newline; then
/// double-quoted with `\\`, `"`, `$` and newlines escaped. A value that needs double quotes
/// and holds a backtick has no form both read alike (`\``` is not a `.env` escape): `None`.
fn dotenv_value(v: &str) -> Option<String> {
    if !v.contains(['\'', '\n', '\r']) {
        return Some(format!("'{v}'"));
    }
    if v.contains('`') {
        return None;
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    Some(out)
}

/// Whether `value` holds a master key or a credential of the KMS that keeps them (with the
/// local vault, as its keyring guards them; in remote mode, the KMS's variables' values).
fn holds_own_secret(keys: &Keys, value: &str) -> bool {
    keyward_core::env::holds_guarded(value)
        || match keys {
            Keys::Local(k) => k.vault().holds_master_key(value),
            Keys::Remote(_) => false,
        }
}

/// What the child gets besides the inherited environment, and what to mask.
struct ChildEnv {
    vars: EnvMap,
    secrets: Vec<(SecretString, String)>,
}

async fn child_env(keys: &Keys, args: &RunArgs) -> Result<ChildEnv> {
    let mut providers = match &args.org {
        Some(org) => {
            keys.env_map(org, &args.provider, !args.no_env_fallback)
                .await?
        }
        None if !args.provider.is_empty() => bail!("--provider needs --org"),
        None => EnvMap::new(),
    };

    // Variables from env files (later files win), then references wherever they are. No file
    // hands the command Keyward's own secret settings, nor a master key under another name.
    let mut from_files = keyward::dotenv::read_all(&args.env_file)?;
    from_files.retain(|(name, value)| {
        let own = keyward_core::env::is_withheld(name);
        let master_key = holds_own_secret(keys, value);
        if own || master_key {
            eprintln!(
                "warning: the env file's {} is not handed to the command ({})",
                keyward_core::secret_like::shown_name(name),
                if own {
                    "one of Keyward's own settings"
                } else {
                    "it holds one of Keyward's own secrets"
                }
            );
        }
        !(own || master_key)
    });
    let in_files: std::collections::HashSet<&str> =
        from_files.iter().map(|(k, _)| k.as_str()).collect();
    let mut explicit = EnvMap::new();
    let mut secrets = Vec::new();
    let mut failures = Vec::new();
    let inherited = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let candidates: Vec<(String, String)> = inherited
        .filter(|(k, _)| !in_files.contains(k.as_str()))
        .chain(from_files.iter().cloned())
        .collect();
    for (name, value) in candidates {
        match Reference::parse(&value) {
            None if in_files.contains(name.as_str()) => {
                explicit.insert_plain(&name, value);
            }
            None => {}
            Some(Err(e)) => failures.push(format!("{name}: {e}")),
            Some(Ok(reference)) => match keys.resolve_reference(&reference).await {
                Ok(v) => {
                    let mask = v.mask.clone().unwrap_or_default();
                    if v.is_file {
                        explicit.insert_secret_file(&name, v.value, &mask);
                    } else if v.mask.is_some() {
                        explicit.insert_secret(&name, v.value, &mask);
                    } else {
                        explicit.insert_plain(&name, v.value.expose_secret().to_owned());
                    }
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            },
        }
    }
    if !failures.is_empty() {
        bail!(
            "not starting the command: {} reference(s) could not be resolved:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }

    if args.no_override {
        // Variables the user set (in the environment or an env file) win.
        let user_set = |name: &str| std::env::var_os(name).is_some() || explicit.contains(name);
        providers.retain(|name| !user_set(name));
    }
    // Provider variables are laid over the explicit ones (after --no-override's filter).
    explicit.extend(providers);
    secrets.extend(explicit.secrets());
    Ok(ChildEnv {
        vars: explicit,
        secrets,
    })
}

/// Signals passed on to the command.
const FORWARDED: [(SignalKind, Signal, bool); 7] = [
    // (kind, signal, also sent by the terminal to the whole foreground group)
    (SignalKind::interrupt(), Signal::SIGINT, true),
    (SignalKind::quit(), Signal::SIGQUIT, true),
    (SignalKind::hangup(), Signal::SIGHUP, true),
    (SignalKind::terminate(), Signal::SIGTERM, false),
    (SignalKind::user_defined1(), Signal::SIGUSR1, false),
    (SignalKind::user_defined2(), Signal::SIGUSR2, false),
    (SignalKind::alarm(), Signal::SIGALRM, false),
];

/// Whether this process is in the foreground process group of its terminal: then the terminal
/// has already delivered Ctrl-C, Ctrl-\ and hang-ups to the command too, and forwarding them
/// would deliver them twice (a second Ctrl-C means "force quit" to many programs).
fn terminal_delivers_to_child() -> bool {
    nix::unistd::tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

/// Waits for the first of the forwarded signals; returns its index in [`FORWARDED`].
async fn next_signal(streams: &mut [tokio::signal::unix::Signal]) -> usize {
    let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
    futures_util::future::select_all(waits).await.1
}

/// Runs the command; returns its exit code (128+N when a signal ended it).
pub(crate) async fn run(keys: &Keys, args: RunArgs) -> Result<ExitCode> {
    // Listen before anything else, so a signal during setup or right after the spawn cannot
    // kill us and orphan the command with its key file.
    let mut streams = FORWARDED
        .iter()
        .map(|(kind, _, _)| signal(*kind))
        .collect::<std::io::Result<Vec<_>>>()?;

    // A signal during setup (a slow database, say) stops us before the command starts.
    let env = tokio::select! {
        env = child_env(keys, &args) => env?,
        i = next_signal(&mut streams) => {
            return Ok(ExitCode::from(128 + FORWARDED[i].1 as u8));
        }
    };
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow!("no command given"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for name in keyward_core::env::WITHHELD {
        cmd.env_remove(name);
    }
    for name in keyward_core::env::kms_credentials() {
        if std::env::var_os(name).is_some() {
            eprintln!(
                "note: {name} is not handed to the command: it signs Keyward in to the KMS that keeps its master keys (KEYWARD_KMS)"
            );
        }
        cmd.env_remove(name);
    }
    // Nor a copy of one under another name (`MYCOPY=$VAULT_TOKEN`), nor of a master key.
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if keyward_core::env::is_withheld(name) || !holds_own_secret(keys, value) {
            continue;
        }
        eprintln!(
            "note: {} is not handed to the command: it holds one of Keyward's own secrets",
            keyward_core::secret_like::shown_name(name)
        );
        cmd.env_remove(name);
    }
    // The guard owns the private key files (Vertex); dropping it, on every path below,
    // deletes them.
    let guard = env.vars.apply(&mut cmd)?;
    let masking = !args.no_masking && !env.secrets.is_empty();
    cmd.stdin(Stdio::inherit());
    if masking {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = match tokio::process::Command::from(cmd).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", program.to_string_lossy());
            drop(guard);
            return Ok(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
            ));
        }
    };
    let (exited_tx, exited) = tokio::sync::watch::channel(false);
    let mut pumps = Vec::new();
    if masking {
        let masker = || {
            Masker::new(
                env.secrets
                    .iter()
                    .map(|(s, m)| (s.expose_secret().as_bytes(), m.as_str())),
            )
        };
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(
                out,
                tokio::io::stdout(),
                masker(),
                exited.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(
                err,
                tokio::io::stderr(),
                masker(),
                exited.clone(),
            )));
        }
    }
    let pid = child.id().map(|id| Pid::from_raw(id.cast_signed()));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            i = next_signal(&mut streams) => {
                let (_, sig, from_terminal) = FORWARDED[i];
                if let Some(pid) = pid
                    && !(from_terminal && terminal_delivers_to_child())
                {
                    // The command may have exited a moment ago; nothing to do then.
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    };
    // The command is gone: the pumps drain what it wrote and stop once nothing more comes
    // (a grandchild may hold the pipes open for ever).
    let _ = exited_tx.send(true);
    for p in pumps {
        match p.await {
            // The reader went away (`| head`): the command got SIGPIPE as it would without
            // Keyward in between, and there is nobody to tell.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "copying the command's output failed"),
            _ => {}
        }
    }
    guard.close()?;
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// How long the pumps wait for more output once the command has exited.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// Copies `from` to `to`, masking secrets, flushing after every chunk so that interactive
/// output is not held back. Once `exited` turns true, it stops after [`DRAIN_IDLE`] without
/// new data; whatever the masker still holds is written either way.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut masker: Masker,
    mut exited: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut draining = false;
    loop {
        let read = if draining || *exited.borrow() {
            tokio::time::timeout(DRAIN_IDLE, from.read(&mut buf))
                .await
                .unwrap_or(Ok(0))
        } else {
            // Reading from a child's pipe is cancel-safe: nothing is lost when the exit
            // notice wins.
            tokio::select! {
                r = from.read(&mut buf) => r,
                _ = exited.changed() => {
                    // Sent, or the sender is gone: either way the command is over.
                    draining = true;
                    continue;
                }
            }
        };
        let n = read?;
        out.clear();
        if n == 0 {
            masker.finish(&mut out);
            to.write_all(&out).await?;
            return to.flush().await;
        }
        masker.push(&buf[..n], &mut out);
        to.write_all(&out).await?;
        to.flush().await?;
    }
}
