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
