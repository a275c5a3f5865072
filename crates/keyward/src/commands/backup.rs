//! `keyward backup` and `keyward restore`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use keyward_store::{BackupHeader, Vault};

/// Writes the snapshot beside FILE and moves it into place only when it is whole, readable
/// by this user alone.
pub(crate) async fn backup(vault: &Vault, file: &Path) -> Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = file.with_extension("partial");
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let header = match vault.backup(&mut out).await {
        Ok(h) => h,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    out.flush()?;
    out.get_ref().sync_all()?;
    drop(out);
    std::fs::rename(&partial, file)
        .with_context(|| format!("cannot move the backup to {}", file.display()))?;
    say!(
        "backup written to {}: {} (secrets sealed under master key(s) {}; keep those keys to restore it)",
        file.display(),
        counts(&header),
        header.kids.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn counts(h: &BackupHeader) -> String {
    h.tables
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| format!("{n} {}", t.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn restore(vault: &Vault, file: &Path, force: bool) -> Result<BackupHeader> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let header = vault
        .restore(std::io::BufReader::new(input), force)
        .await
        .context("restore refused; nothing was changed")?;
    say!("restored {}: {}", file.display(), counts(&header));
    Ok(header)
}

/// After a restore: the audit chain verifies and every credential opens.
pub(crate) async fn verify(vault: &Vault, header: &BackupHeader) -> Result<ExitCode> {
    let report = vault.verify_events().await?;
    if let Some((seq, why)) = &report.problem {
        bail!("the restored audit chain does not verify at event {seq}: {why}");
    }
    let mut opened = 0;
    for c in vault.list_credentials(None, None).await? {
        vault
            .open_credential(&c.id)
            .await
            .with_context(|| format!("credential {} does not open", c.id))?;
        opened += 1;
    }
    let want = header.tables.get("credentials").copied().unwrap_or(0);
    if opened != want {
        bail!("{opened} credentials restored where the backup has {want}");
    }
    say!(
        "verified: audit chain intact ({} events), all {opened} credentials open",
        report.checked
    );
    Ok(ExitCode::SUCCESS)
}
