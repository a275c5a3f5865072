//! `keyward doctor` and `GET /api/v1/doctor`: what is wrong with a deployment, each finding
//! with its fix. One list of checks, run by the CLI on the store it opens and by a server on
//! its own (where it knows more: its listen certificate, its sinks' progress, its targets'
//! last load).

use std::path::{Path, PathBuf};

use keyward_core::Millis;
use keyward_core::credential::CredentialStatus;
use keyward_store::Vault;
use serde::{Deserialize, Serialize};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, but should be looked at.
    Warn,
    /// Broken, or unsafe: fix it.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// What was checked (`master_keys`, `records`, `database`, ...).
    pub check: String,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it, when something is to be done.
    pub fix: Option<String>,
}

/// Every finding, in a fixed order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing failed (warnings allowed).
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.verdict != Verdict::Fail)
    }
}

/// What the doctor is told about the deployment beside the store.
#[derive(Debug, Default)]
pub struct Deployment {
    /// The SQLite store's data directory (none on PostgreSQL).
    pub data_dir: Option<PathBuf>,
    /// The user id the server runs as (the data directory should be its own).
    pub uid: Option<u32>,
    /// The listen certificate (PEM), if the server serves TLS.
    pub tls_cert: Option<PathBuf>,
    /// Where the master keys came from (`KEYWARD_MASTER_KEYS`, a KMS, ...), said as it is.
    pub keys_from: Option<String>,
    /// The static targets: `Ok(count)` loaded, `Err(why)` not; `None` without a targets file.
    pub targets: Option<Result<usize, String>>,
    /// The file the master keys were read from (`KEYWARD_MASTER_KEY_FILE`), to check who may
    /// read it (the development key's file is in the data directory, checked with it).
    pub key_file: Option<PathBuf>,
    /// The audit sinks as this server ships to them (empty: judged by their cursors alone).
    pub sinks: Vec<crate::SinkStatus>,
}

/// How long before a certificate's end the doctor starts to warn.
const CERT_WARN_DAYS: i64 = 21;
/// How far the database's clock may be from ours before it matters (leases, periods, sessions).
const SKEW_WARN_MS: i64 = 2_000;
/// A sink that has events to take and has not moved for this long is stuck.
const SINK_STUCK_MS: i64 = 5 * 60_000;

fn found(check: &str, verdict: Verdict, detail: String, fix: Option<&str>) -> Finding {
    Finding {
        check: check.into(),
        verdict,
        detail,
        fix: fix.map(str::to_owned),
    }
}

/// Runs every check.
pub async fn examine(vault: &Vault, d: &Deployment) -> Report {
    let mut out = Vec::new();
    master_keys(vault, d.keys_from.as_deref(), &mut out).await;
    if let Some(file) = &d.key_file {
        out.push(key_file(file));
    }
    records(vault, &mut out).await;
    database(vault, &mut out).await;
    if let Some(dir) = &d.data_dir {
        out.push(data_dir(dir, d.uid));
    }
    out.push(match vault.has_admin_token().await {
        Ok(true) => found("admin_token", Verdict::Ok, "an admin token exists".into(), None),
        Ok(false) => found(
            "admin_token",
            Verdict::Fail,
            "no admin token exists: nobody can administer the server".into(),
            Some("start `keyward serve` once (it makes one, or takes KEYWARD_ADMIN_TOKEN), or `keyward token create --role admin --name NAME` on the store"),
        ),
        Err(e) => found("admin_token", Verdict::Fail, format!("cannot tell: {e}"), None),
    });
    if let Some(cert) = &d.tls_cert {
        out.push(certificate(cert, Millis::now()));
    }
    out.push(match vault.clock_skew_ms().await {
        Ok(None) => found(
            "clock",
            Verdict::Ok,
            "SQLite keeps time by this machine's clock".into(),
            None,
        ),
        Ok(Some(skew)) if skew.abs() <= SKEW_WARN_MS => found(
            "clock",
            Verdict::Ok,
            format!("the database's clock is {skew} ms from this machine's"),
            None,
        ),
        Ok(Some(skew)) => found(
            "clock",
            Verdict::Warn,
            format!(
                "the database's clock is {:.1} s from this machine's: budget periods, leases and sessions are reckoned by both",
                skew as f64 / 1000.0
            ),
            Some("synchronise both machines' clocks (NTP, chrony)"),
        ),
        Err(e) => found("clock", Verdict::Warn, format!("cannot tell: {e}"), None),
    });
    sinks(vault, &d.sinks, &mut out).await;
    match &d.targets {
        None => {}
        Some(Ok(n)) => out.push(found(
            "targets",
            Verdict::Ok,
            format!("the static targets file loads: {n} target(s), every reference resolved"),
            None,
        )),
        Some(Err(why)) => out.push(found(
            "targets",
            Verdict::Fail,
            format!("the static targets file does not load: {why}"),
            Some("fix what the message names, then `keyward gateway reload` (or SIGHUP)"),
        )),
    }
    out.push(match vault.verify_new_events(100_000).await {
        Ok(r) if r.ok() => found(
            "audit_chain",
            Verdict::Ok,
            if r.checked == 0 {
                format!("the audit chain holds (verified through event {})", r.head_seq)
            } else {
                format!(
                    "the audit chain holds (events {} to {} checked now)",
                    r.from_seq + 1,
                    r.head_seq
                )
            },
            None,
        ),
        Ok(r) => found(
            "audit_chain",
            Verdict::Fail,
            format!(
                "the audit chain is broken: {}",
                r.problem.map(|p| p.1).unwrap_or_default()
            ),
            Some("the log was changed outside Keyward: keep a copy of the database for investigation; `keyward events verify` shows where"),
        ),
        Err(e) => found("audit_chain", Verdict::Fail, format!("cannot verify: {e}"), None),
    });
    Report { findings: out }
}

async fn master_keys(vault: &Vault, from: Option<&str>, out: &mut Vec<Finding>) {
    let status = match vault.key_status().await {
        Ok(s) => s,
        Err(e) => {
            out.push(found(
                "master_keys",
                Verdict::Fail,
                format!("cannot read: {e}"),
                None,
            ));
            return;
        }
    };
    if status.primary == "dev" {
        out.push(found(
            "master_keys",
            Verdict::Fail,
            "the development key (a file in the data directory) encrypts this vault: whoever reads the data directory reads every key".into(),
            Some("make a key (`keyward keygen`), set KEYWARD_MASTER_KEYS=\"prod:NEW,dev:OLD\" (or a KMS: KEYWARD_KMS), run `keyward master-key rotate`, then drop dev"),
        ));
    } else {
        out.push(found(
            "master_keys",
            Verdict::Ok,
            match from {
                Some(from) => format!("the primary master key is '{}' ({from})", status.primary),
                None => format!("the primary master key is '{}'", status.primary),
            },
            None,
        ));
    }
    if !status.audit_chain_ok {
        out.push(found(
            "master_keys",
            Verdict::Fail,
            "the configured master keys do not open the audit chain key: every audited operation is refused".into(),
            Some("configure the key the vault was created with (KEYWARD_MASTER_KEYS keeps old keys beside the new)"),
        ));
    }
    for warning in status.warnings() {
        out.push(found(
            "master_keys",
            Verdict::Warn,
            warning,
            Some("`keyward master-key status` shows the rows per key; `keyward master-key rotate` moves them to the primary"),
        ));
    }
}

async fn records(vault: &Vault, out: &mut Vec<Finding>) {
    let creds = vault.list_credentials(None, None).await;
    let vars = vault.list_vars(None).await;
    let (Ok(creds), Ok(vars)) = (creds, vars) else {
        out.push(found(
            "records",
            Verdict::Fail,
            "cannot list the credentials and variables".into(),
            None,
        ));
        return;
    };
    let statuses = creds
        .iter()
        .map(|c| c.status)
        .chain(vars.iter().map(|v| v.status));
    let (mut shut, mut plain) = (0, 0);
    for s in statuses {
        match s {
            CredentialStatus::Undecryptable => shut += 1,
            CredentialStatus::LegacyPlaintext => plain += 1,
            _ => {}
        }
    }
    let total = creds.len() + vars.len();
    out.push(if shut > 0 {
        found(
            "records",
            Verdict::Fail,
            format!("{shut} of {total} credential(s) and variable(s) do not open with the configured master keys"),
            Some("configure the master key they were written under (KEYWARD_MASTER_KEYS=\"new:...,old:...\"); `keyward cred list` marks them undecryptable"),
        )
    } else {
        found(
            "records",
            Verdict::Ok,
            format!("all {total} credential(s) and variable(s) open"),
            None,
        )
    });
    if plain > 0 {
        out.push(found(
            "records",
            Verdict::Warn,
            format!(
                "{plain} row(s) written in plain text by an outside migration are not sealed yet"
            ),
            Some("`keyward reencrypt`"),
        ));
    }
}

async fn database(vault: &Vault, out: &mut Vec<Finding>) {
    let backend = match vault.backend() {
        keyward_store::Backend::Postgres => "PostgreSQL",
        keyward_store::Backend::Sqlite => "SQLite",
    };
    out.push(match vault.schema_version().await {
        Ok((applied, known)) if applied == known => found(
            "database",
            Verdict::Ok,
            format!("{backend} answers; schema at migration {applied}, this build's"),
            None,
        ),
        Ok((applied, known)) if applied > known => found(
            "database",
            Verdict::Warn,
            format!("{backend}: schema at migration {applied}, newer than this build's {known} (a newer Keyward migrated it)"),
            Some("run the same Keyward version on every replica"),
        ),
        Ok((applied, known)) => found(
            "database",
            Verdict::Fail,
            format!("{backend}: schema at migration {applied}, this build expects {known}"),
            Some("start `keyward serve` once: it migrates on start"),
        ),
        Err(e) => found(
            "database",
            Verdict::Fail,
            format!("{backend} does not answer: {e}"),
            Some("check KEYWARD_DATABASE_URL and that the database is up"),
        ),
    });
}

fn data_dir(dir: &Path, uid: Option<u32>) -> Finding {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return found(
            "data_dir",
            Verdict::Fail,
            format!("{} cannot be read", dir.display()),
            Some("check KEYWARD_DATA_DIR"),
        );
    };
    let mut problems = Vec::new();
    if let Some(uid) = uid
        && meta.uid() != uid
    {
        problems.push(format!(
            "it belongs to user {} while Keyward runs as {uid}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        problems.push(format!(
            "its mode is {:o} (others may enter)",
            meta.mode() & 0o777
        ));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = entry.metadata() else { continue };
        if m.is_file() && m.mode() & 0o077 != 0 {
            problems.push(format!(
                "{} has mode {:o}",
                entry.file_name().to_string_lossy(),
                m.mode() & 0o777
            ));
        }
    }
    if problems.is_empty() {
        found(
            "data_dir",
            Verdict::Ok,
            format!("{} is private to Keyward's user", dir.display()),
            None,
        )
    } else {
        found(
            "data_dir",
            Verdict::Fail,
            format!("{}: {}", dir.display(), problems.join("; ")),
            Some(
                "make it the user's the server runs as, private: chown -R THAT_USER DIR && chmod 700 DIR && chmod 600 DIR/* (under systemd's DynamicUser the directory is /var/lib/private/keyward: ask the running server, KEYWARD_URL=... keyward doctor)",
            ),
        )
    }
}

fn key_file(path: &Path) -> Finding {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata(path) {
        Ok(m) if m.mode() & 0o077 != 0 => found(
            "master_key_file",
            Verdict::Fail,
            format!(
                "{} has mode {:o}: others on this machine may read the master key",
                path.display(),
                m.mode() & 0o777
            ),
            Some(
                "chmod 600 THE_FILE (under systemd, hand it in with LoadCredential=, as dist/keyward.service does)",
            ),
        ),
        Ok(_) => found(
            "master_key_file",
            Verdict::Ok,
            format!("{} is readable by its owner only", path.display()),
            None,
        ),
        Err(e) => found(
            "master_key_file",
            Verdict::Warn,
            format!("{} cannot be examined: {e}", path.display()),
            None,
        ),
    }
}

fn certificate(path: &Path, now: Millis) -> Finding {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use x509_cert::der::Decode as _;
    if let Err(e) = std::fs::metadata(path) {
        return found(
            "tls_certificate",
            Verdict::Fail,
            format!("{} cannot be read: {e}", path.display()),
            Some("point --tls-cert (KEYWARD_TLS_CERT) at the PEM chain, leaf first"),
        );
    }
    let first = CertificateDer::pem_file_iter(path)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok);
    let Some(cert) = first.and_then(|der| x509_cert::Certificate::from_der(&der).ok()) else {
        return found(
            "tls_certificate",
            Verdict::Fail,
            format!("{} holds no certificate that can be read", path.display()),
            Some("point --tls-cert at the PEM chain, leaf first"),
        );
    };
    let end = i64::try_from(
        cert.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    let days = (end - now.0).div_euclid(86_400_000);
    let fix =
        Some("renew the certificate, then restart the server (or reload it with its new files)");
    if end <= now.0 {
        found(
            "tls_certificate",
            Verdict::Fail,
            format!("{} has expired", path.display()),
            fix,
        )
    } else if days < CERT_WARN_DAYS {
        found(
            "tls_certificate",
            Verdict::Warn,
            format!("{} expires in {days} day(s)", path.display()),
            fix,
        )
    } else {
        found(
            "tls_certificate",
            Verdict::Ok,
            format!("{} is valid for {days} more day(s)", path.display()),
            None,
        )
    }
}

async fn sinks(vault: &Vault, live: &[crate::SinkStatus], out: &mut Vec<Finding>) {
    let (Ok(cursors), Ok(head)) = (vault.sink_cursors().await, vault.audit_event_count().await)
    else {
        return;
    };
    let now = Millis::now().0;
    for c in cursors {
        let lag = head - c.seq;
        let still = now - c.updated_at.0;
        let mine = live.iter().find(|s| s.name == c.name);
        let failing = mine.and_then(|s| s.last_error.clone());
        out.push(if !live.is_empty() && mine.is_none() && lag > 0 {
            // A server knows its own sinks: this one is another replica's, or left over.
            found(
                "audit_sinks",
                Verdict::Warn,
                format!(
                    "{} is {lag} event(s) behind and this server does not ship to it",
                    c.name
                ),
                Some("if no replica ships to it any more, it holds back prunes until 7 days after it last moved; otherwise ask the replica that does"),
            )
        } else if let Some(why) = failing {
            found(
                "audit_sinks",
                Verdict::Warn,
                format!("{} is failing ({why}), {lag} event(s) behind", c.name),
                Some("bring the receiver back or fix what it refuses: the sink retries, from where it stopped"),
            )
        } else if lag > 0 && still > SINK_STUCK_MS {
            found(
                "audit_sinks",
                Verdict::Warn,
                format!(
                    "{} is {lag} event(s) behind and has not moved for {} min",
                    c.name,
                    still / 60_000
                ),
                Some("see why in `keyward gateway status` or the server's log (the sink is down, refuses, or no server ships to it any more)"),
            )
        } else {
            found(
                "audit_sinks",
                Verdict::Ok,
                format!("{} is {lag} event(s) behind", c.name),
                None,
            )
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_judged_by_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&path, cert.cert.pem()).unwrap();
        let now = Millis::now();
        assert_eq!(certificate(&path, now).verdict, Verdict::Ok);
        // rcgen's default end is 4096-01-01; a clock far past it sees it expired.
        let later = Millis(i64::MAX / 2);
        assert_eq!(certificate(&path, later).verdict, Verdict::Fail);
        std::fs::write(&path, "not a certificate").unwrap();
        assert_eq!(certificate(&path, now).verdict, Verdict::Fail);
    }

    #[test]
    fn a_shared_data_directory_fails() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.path().join("keyward.db"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("keyward.db"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(data_dir(dir.path(), None).verdict, Verdict::Ok);
        std::fs::set_permissions(
            dir.path().join("keyward.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let f = data_dir(dir.path(), None);
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.detail.contains("keyward.db has mode 644"), "{}", f.detail);
    }
}
