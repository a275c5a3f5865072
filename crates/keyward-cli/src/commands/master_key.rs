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
                let mut t = Table::new([
                    "KID",
                    "ROLE",
                    "LIVES IN",
                    "CREDENTIALS",
                    "VARIABLES",
                    "STORE KEYS",
                ]);
                for k in &status.kids {
                    let role = match (k.primary, k.configured) {
                        (true, _) => "primary",
                        (false, true) => "secondary",
                        (false, false) => "MISSING",
                    };
                    t.row([
                        k.kid.clone(),
                        role.into(),
                        k.lives_in.clone().unwrap_or_else(|| "-".into()),
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
        MasterKeyCommand::New { .. }
        | MasterKeyCommand::Retire { .. }
        | MasterKeyCommand::RewrapKms
        | MasterKeyCommand::AdoptKms
        | MasterKeyCommand::LeaveKms { .. } => anyhow::bail!(
            "the KMS commands of master-key run on the vault's machine, with KEYWARD_KMS set (unset KEYWARD_URL)"
        ),
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
    let kid = match kid {
        Some(k) => keyward_crypto::KeyId::new(k)?,
        None => keyward::kms::new_kid()?,
    };
    let key = keyward_crypto::KeyMaterial::generate(kid)?;
    write_key_file(path, std::slice::from_ref(&key))?;
    Ok(key.master_key())
}

/// Writes `keys` to `path` as `KID:BASE64[,KID:BASE64...]` (the form KEYWARD_MASTER_KEY_FILE
/// reads), creating it with mode 0600, syncing it and its directory, and reading it back.
pub(crate) fn write_key_file(
    path: &std::path::Path,
    keys: &[keyward_crypto::KeyMaterial],
) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut text = zeroize::Zeroizing::new(String::new());
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&key.to_line());
    }
    text.push('\n');
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow!("cannot create the key file {shown}: it exists already, and must not exist (name a new file)")
            }
            _ => anyhow!("cannot create the key file {shown}: {e}"),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow!("cannot write the key file {shown}: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| anyhow!("cannot sync the directory of {shown}: {e}"))?;
    }
    drop(file);
    let back = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read back the key file {shown}: {e}"))?,
    );
    if back.as_str() != text.as_str() {
        anyhow::bail!("the key file {shown} does not read back as written");
    }
    Ok(())
}

fn kms_table(rows: &[keyward_store::StoredMasterKey]) {
    let mut t = Table::new(["KID", "KMS KEY", "VERSION"]);
    for r in rows {
        t.row([
            r.kid.clone(),
            format!("{}:{}", r.kms, r.kms_key),
            r.key_version.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print();
}

/// The master-key commands that need the KMS: `new`, `rewrap-kms`, `leave-kms`
/// (`adopt-kms` opens the vault with the given keys, see [`adopt_kms`]).
pub(crate) async fn kms_command(
    vault: &keyward_store::Vault,
    kms: &dyn keyward_kms::Kms,
    cmd: MasterKeyCommand,
    actor: &str,
) -> Result<ExitCode> {
    match cmd {
        MasterKeyCommand::New { kid } => {
            let row = keyward::kms::new_primary(vault, kms, kid.as_deref(), actor).await?;
            let version = row
                .key_version
                .as_deref()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default();
            say!(
                "new primary master key '{}', wrapped by {}{version}. Restart servers so they \
                 use it, then run `keyward master-key rotate` to rewrap the data keys under it.",
                row.kid,
                kms.describe(),
            );
        }
        MasterKeyCommand::Retire { kid } => {
            vault.retire_master_key(&kid, actor).await?;
            say!(
                "retired master key '{kid}': it wraps nothing and is no longer listed. It stays \
                 wrapped in the store, so whatever a server started before the change still wraps \
                 under it stays readable; restart servers, then `keyward master-key rotate` moves \
                 anything that did"
            );
        }
        MasterKeyCommand::RewrapKms => {
            let rows = keyward::kms::rewrap_all(vault, kms, actor).await?;
            kms_table(&rows);
            say!(
                "rewrapped {} master key(s) under {}",
                rows.len(),
                kms.describe()
            );
        }
        MasterKeyCommand::LeaveKms { key_file } => {
            let stored = vault.master_keys().await?;
            if stored.is_empty() {
                anyhow::bail!("this store keeps no master key in a KMS; nothing to leave");
            }
            let keys = keyward::kms::unwrap_all(kms, &stored).await?;
            write_key_file(&key_file, &keys)?;
            let kids: Vec<String> = stored.iter().map(|k| k.kid.clone()).collect();
            vault.leave_kms(&kids, actor).await?;
            say!(
                "wrote {} master key(s) to {path} and stopped keeping them in the KMS. From now \
                 on set KEYWARD_MASTER_KEY_FILE={path} and unset KEYWARD_KMS; keep a copy of \
                 the file in your secret manager.",
                keys.len(),
                path = key_file.display()
            );
        }
        other => anyhow::bail!("{other:?} does not use the KMS"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyward master-key adopt-kms`: wraps the keys given now with the KMS and stores them.
pub(crate) async fn adopt_kms(
    vault: &keyward_store::Vault,
    kms: &dyn keyward_kms::Kms,
    given: &[keyward_crypto::KeyMaterial],
    actor: &str,
) -> Result<ExitCode> {
    let done = keyward::kms::adopt(vault, kms, given, actor).await?;
    kms_table(&done.kept);
    if !done.already.is_empty() {
        say!(
            "already kept by the KMS (the same key): {}",
            done.already.join(", ")
        );
    }
    say!(
        "adopted {} master key(s); the KMS ({}) keeps {} in all. Start Keyward with KEYWARD_KMS \
         alone: unset KEYWARD_MASTER_KEY(S) and KEYWARD_MASTER_KEY_FILE.",
        done.adopted.len(),
        kms.describe(),
        done.kept.len()
    );
    Ok(ExitCode::SUCCESS)
}
