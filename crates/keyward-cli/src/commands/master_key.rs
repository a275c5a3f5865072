//! `keyward master-key`: status and rotation.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::{Result, anyhow};

use crate::backend::Backend;
use crate::cli::MasterKeyCommand;
use crate::output::{Table, print_json};

pub(crate) async fn master_key(backend: &Backend, cmd: MasterKeyCommand) -> Result<ExitCode> {
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
                if status.legacy_plaintext > 0 {
                    t.row([
                        "(plain text)".to_owned(),
                        "LEGACY".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
                t.print();
                if status.legacy_plaintext > 0 {
                    say!(
                        "{} record(s) are stored in plain text (written by an external migration); run `keyward reencrypt`",
                        status.legacy_plaintext
                    );
                }
                let pending = status.pending_rotation();
                if pending > 0 {
                    say!("{pending} record(s) await `keyward master-key rotate`");
                }
            }
        }
        MasterKeyCommand::Rotate {
            batch_size,
            new_key_file,
            ..
        } => {
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
            if let Some(path) = new_key_file {
                say!(
                    "the new master key '{}' is in {path}; from now on set \
                     KEYWARD_MASTER_KEY_FILE={path} (and keep a copy in your secret manager). \
                     The old key was left where it was: remove it once you are sure.",
                    report.primary,
                    path = path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--new-key-file`: a new master key, written to `path` (created, mode 0600, synced with its
/// directory) as `KID:BASE64` and read back from the disk before anything is rewrapped under
/// it, so that a rotation can never leave the vault under a key that exists only in memory.
pub(crate) fn new_key_file(
    path: &std::path::Path,
    kid: Option<&str>,
) -> Result<keyward_crypto::MasterKey> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let kid = match kid {
        Some(k) => k.to_owned(),
        None => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            format!("k-{}", now.trim_end_matches('Z').replace([':', 'T'], "-"))
        }
    };
    let kid = keyward_crypto::KeyId::new(&kid)?;
    let b64 = zeroize::Zeroizing::new(keyward_crypto::generate_master_key_base64()?);
    let line = zeroize::Zeroizing::new(format!("{kid}:{}\n", b64.as_str()));
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            anyhow!("cannot create the new key file {shown}: {e} (it must not exist yet)")
        })?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow!("cannot write the new key file {shown}: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| anyhow!("cannot sync the directory of {shown}: {e}"))?;
    }
    drop(file);
    let back = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read back the new key file {shown}: {e}"))?,
    );
    if back.as_str() != line.as_str() {
        anyhow::bail!(
            "the new key file {shown} does not read back as written; nothing was rewrapped"
        );
    }
    Ok(keyward_crypto::MasterKey::from_base64(
        kid,
        b64.as_str(),
        "the new key file",
    )?)
}
