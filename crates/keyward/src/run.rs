//! `keyward env` and `keyward run`: an organization's provider variables, and `keyward://`
//! references, handed to a child process (or printed once), never to a file or the parent shell.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use keyward::mask::Masker;
use keyward::{EnvMap, KeyProvider, Reference};
use keyward_core::credential::CredentialStatus;
use keyward_core::env::EnvValue;
use keyward_core::{OrgId, PROVIDERS, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::cli::{EnvArgs, EnvFormat, RunArgs};

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

pub(crate) async fn env(keys: &KeyProvider, args: EnvArgs) -> Result<ExitCode> {
    let map = org_env(keys, &args.org, &args.provider).await?;
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
            for (k, v) in &pairs {
                println!("{k}=\"{}\"", dotenv_escape(v));
            }
        }
        EnvFormat::Shell => {
            for (k, v) in &pairs {
                println!("export {k}='{}'", v.replace('\'', r"'\''"));
            }
        }
        EnvFormat::Json => {
            let obj: BTreeMap<&str, &str> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            println!("{}", serde_json::to_string_pretty(&obj)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dotenv_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

/// What the child gets besides the inherited environment.
struct ChildEnv {
    /// Provider variables.
    providers: EnvMap,
    /// Variables from env files and resolved references.
    explicit: Vec<(OsString, SecretString)>,
    /// Secrets to mask, with their masks.
    secrets: Vec<(SecretString, String)>,
}

async fn child_env(keys: &KeyProvider, args: &RunArgs) -> Result<ChildEnv> {
    let mut providers = match &args.org {
        Some(org) => org_env(keys, org, &args.provider).await?,
        None if !args.provider.is_empty() => bail!("--provider needs --org"),
        None => EnvMap::new(),
    };

    // Variables from env files (later files win), then references wherever they are.
    let mut from_files: Vec<(String, String)> = Vec::new();
    for file in &args.env_file {
        let iter = dotenvy::from_path_iter(file)
            .with_context(|| format!("cannot read env file {}", file.display()))?;
        for item in iter {
            let (k, v) = item.map_err(|e| match e {
                // The parser's message quotes the line, which may hold a key.
                dotenvy::Error::LineParse(_, at) => anyhow!(
                    "cannot parse env file {}: syntax error at character {at} of a line \
                     (the line is not shown: it may hold a secret; quote values with spaces)",
                    file.display()
                ),
                other => anyhow!("cannot read env file {}: {other}", file.display()),
            })?;
            from_files.retain(|(name, _)| *name != k);
            from_files.push((k, v));
        }
    }
    let mut explicit: Vec<(OsString, SecretString)> = Vec::new();
    let mut secrets = Vec::new();
    let mut failures = Vec::new();
    let inherited = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let candidates: Vec<(String, String)> = inherited
        .filter(|(k, _)| !from_files.iter().any(|(f, _)| f == k))
        .chain(from_files.iter().cloned())
        .collect();
    for (name, value) in candidates {
        let resolved = match Reference::parse(&value) {
            None if from_files.iter().any(|(f, _)| *f == name) => SecretString::from(value),
            None => continue,
            Some(Err(e)) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
            Some(Ok(reference)) => match keys.resolve_reference(&reference).await {
                Ok(v) => {
                    if let Some(mask) = v.mask {
                        secrets.push((v.value.clone(), mask));
                    }
                    v.value
                }
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            },
        };
        explicit.push((OsString::from(name), resolved));
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
        let user_set = |name: &str| {
            std::env::var_os(name).is_some() || explicit.iter().any(|(k, _)| k == name)
        };
        providers.retain(|name| !user_set(name));
    } else {
        // Keyward's provider variables win over the same names from env files.
        explicit.retain(|(k, _)| !providers.vars().iter().any(|v| v.name.as_str() == k));
    }
    secrets.extend(providers.secrets());
    Ok(ChildEnv {
        providers,
        explicit,
        secrets,
    })
}

/// Runs the command; returns its exit code (128+N when a signal ended it).
pub(crate) async fn run(keys: &KeyProvider, args: RunArgs) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before the child exists, so a signal in between cannot kill us and orphan it.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let env = child_env(keys, &args).await?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow!("no command given"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for (k, v) in &env.explicit {
        cmd.env(k, v.expose_secret());
    }
    // The guard owns the private key files (Vertex); dropping it, on every path below,
    // deletes them.
    let guard = env.providers.apply(&mut cmd)?;
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
            pumps.push(tokio::spawn(pump(out, tokio::io::stdout(), masker())));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(err, tokio::io::stderr(), masker())));
        }
    }
    let pid = child
        .id()
        .map(|id| nix::unistd::Pid::from_raw(id.cast_signed()));
    let forward = |sig: nix::sys::signal::Signal| {
        if let Some(pid) = pid {
            // The child may have exited a moment ago; nothing to do then.
            let _ = nix::sys::signal::kill(pid, sig);
        }
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = sigint.recv() => forward(nix::sys::signal::Signal::SIGINT),
            _ = sigterm.recv() => forward(nix::sys::signal::Signal::SIGTERM),
            _ = sighup.recv() => forward(nix::sys::signal::Signal::SIGHUP),
        }
    };
    // The child is gone; drain what it wrote. A grandchild that keeps the pipes open must not
    // keep us waiting for ever.
    for p in pumps {
        if tokio::time::timeout(Duration::from_secs(2), p)
            .await
            .is_err()
        {
            tracing::warn!("output still open after the command exited; stopped copying it");
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

/// Copies `from` to `to`, masking secrets, flushing after every chunk so that interactive
/// output is not held back.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut masker: Masker,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let n = from.read(&mut buf).await?;
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
