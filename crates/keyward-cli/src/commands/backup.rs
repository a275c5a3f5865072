//! `keyward backup` and `keyward restore`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use keyward_store::{BackupHeader, Vault};

use super::out_file::OutFile;

/// Writes the snapshot to FILE as [`OutFile`] says: a regular file (or none) through a private
/// temporary file moved into place only when whole; a stream (`-`, a FIFO, `/dev/stdout`)
/// directly; anything else refused.
pub(crate) async fn backup(
    vault: &Vault,
    file: &Path,
    include_plaintext: bool,
) -> Result<ExitCode> {
    let plain = vault.legacy_plaintext_count().await?;
    if plain > 0 && !include_plaintext {
        bail!(
            "{plain} record(s) of this store are in plain text (legacy rows): a backup would hold them as they are; run `keyward reencrypt` first, or pass --include-plaintext"
        );
    }
    let mut target = OutFile::create(file)?;
    let mut out = std::io::BufWriter::new(&mut target);
    // On an error the temporary file is removed when `target` is dropped.
    let header = vault.backup(&mut out).await?;
    out.flush()?;
    drop(out);
    let to_stream = target.is_stream();
    let name = target.name();
    target.finish()?;
    let report = format!(
        "backup written to {name}: {} (secrets sealed under master key(s) {}; keep those keys to restore it)",
        counts(&header),
        header.kids.join(", ")
    );
    // Standard output may carry the backup itself (`-`, `/dev/stdout`): messages about a
    // stream go to standard error.
    if to_stream {
        eprintln!("{report}");
    } else {
        say!("{report}");
    }
    if plain > 0 {
        eprintln!(
            "warning: {plain} legacy record(s) are in this file in plain text, as they are in the store (--include-plaintext); run `keyward reencrypt`"
        );
    }
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
    // `-` is standard input (a backup piped from `gpg -d` or an object-store download).
    let input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        )
    };
    let header = vault
        .restore(std::io::BufReader::new(input), force)
        .await
        .context("restore refused; nothing was changed")?;
    say!("restored {}: {}", file.display(), counts(&header));
    Ok(header)
}

/// The master keys a backup file carries wrapped by a KMS, if any (`None` for a backup of a
/// store whose keys were given to it).
pub(crate) fn kms_keys_of(file: &Path) -> Result<Option<Vec<keyward_store::StoredMasterKey>>> {
    if file.as_os_str() == "-" {
        bail!(
            "KEYWARD_KMS is set: restore from a file, not standard input (the master keys the backup carries are read before the restore)"
        );
    }
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = keyward_store::master_keys_in_backup(std::io::BufReader::new(input))?;
    Ok((!rows.is_empty()).then_some(rows))
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

/// A store named on the command line: a database URL, or a SQLite file (a path, or
/// `sqlite:PATH`).
pub(crate) fn location(s: &str) -> keyward_store::Location {
    if s.contains("://") {
        keyward_store::Location::Url(s.to_owned())
    } else {
        keyward_store::Location::SqliteFile(s.strip_prefix("sqlite:").unwrap_or(s).into())
    }
}

/// `keyward store copy`: a backup of the source piped into a restore of the target, with a
/// progress bar, then the target checked.
pub(crate) async fn copy(
    from: &str,
    to: &str,
    force: bool,
    keyrings: (
        keyward_crypto::Keyring,
        keyward_crypto::Keyring,
        keyward_crypto::Keyring,
    ),
) -> Result<ExitCode> {
    let (source_keys, target_keys, check_keys) = keyrings;
    let options = keyward_store::VaultOptions {
        max_connections: Some(2),
        ..keyward_store::VaultOptions::default()
    };
    let source = Vault::open(&location(from), source_keys, options.clone())
        .await
        .context("cannot open the source store")?;
    let started = std::time::Instant::now();
    let mut snapshot = Vec::new();
    let header = source.backup(&mut snapshot).await?;
    source.close().await;
    let total: u64 = header.tables.values().sum();
    // A new SQLite target is this user's alone, like the data directory (SQLite gives its
    // journal the main file's mode).
    if let keyward_store::Location::SqliteFile(path) = location(to)
        && let Ok(meta) = std::fs::metadata(&path)
        && !meta.is_file()
    {
        // A database is a regular file; SQLite would write its journal beside a device node.
        bail!(
            "{} is not a regular file: name a new or existing SQLite database file",
            path.display()
        );
    }
    if let keyward_store::Location::SqliteFile(path) = location(to)
        && !path.exists()
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    let target = Vault::open(&location(to), target_keys, options.clone())
        .await
        .context("cannot open the target store")?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let copied = target
        .restore_with_progress(std::io::Cursor::new(snapshot), force, |done, _| {
            bar.set_position(done);
        })
        .await
        .context("copy refused; the target was not changed")?;
    bar.finish_and_clear();
    target.close().await;
    say!(
        "copied {total} rows in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        counts(&copied)
    );
    let check = Vault::open(&location(to), check_keys, options)
        .await
        .context("cannot open the copy")?;
    let mut again = Vec::new();
    let now = check.backup(&mut again).await?;
    for (table, n) in &header.tables {
        let got = now.tables.get(table).copied().unwrap_or(0);
        if got != *n {
            bail!("table {table}: {got} rows in the copy, {n} in the source");
        }
    }
    let code = verify(&check, &copied).await?;
    check.close().await;
    Ok(code)
}
