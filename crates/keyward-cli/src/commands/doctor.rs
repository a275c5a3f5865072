//! `keyward doctor`: what is wrong with this deployment, each finding with its fix.

use std::process::ExitCode;

use anyhow::Result;
use keyward_server::doctor::{Deployment, Report, Verdict};

use crate::cli::DoctorArgs;
use crate::output::print_json;

/// Which variable gave the master keys (`given by KEYWARD_MASTER_KEYS`), if one did.
pub(crate) fn keys_given() -> Option<String> {
    [
        "KEYWARD_MASTER_KEYS",
        "KEYWARD_MASTER_KEY",
        "KEYWARD_MASTER_KEY_FILE",
    ]
    .into_iter()
    .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    .map(|v| format!("given by {v}"))
}

/// The file the master keys come from, if a file: `KEYWARD_MASTER_KEY_FILE`.
pub(crate) fn key_file() -> Option<std::path::PathBuf> {
    std::env::var_os("KEYWARD_MASTER_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

/// Examines the store this machine opens (and the files the server would read).
pub(crate) async fn local(
    vault: &keyward_store::Vault,
    args: &DoctorArgs,
    data_dir: Option<std::path::PathBuf>,
    keys_from: Option<String>,
) -> Result<ExitCode> {
    let targets = match &args.gateway_config {
        Some(path) => Some(
            keyward_server::check_targets_file(path, vault)
                .await
                .map_err(|e| e.to_string()),
        ),
        None => None,
    };
    let deployment = Deployment {
        data_dir,
        uid: Some(nix::unistd::getuid().as_raw()),
        tls_cert: args.tls_cert.clone(),
        keys_from,
        targets,
        key_file: key_file(),
        sinks: Vec::new(),
    };
    print(
        &keyward_server::doctor::examine(vault, &deployment).await,
        args.json,
    )
}

/// Asks the running server (`GET /api/v1/doctor`, admins).
pub(crate) async fn remote(
    remote: &keyward::remote::Remote,
    args: &DoctorArgs,
) -> Result<ExitCode> {
    let answer = remote
        .call(reqwest::Method::GET, "/api/v1/doctor", None)
        .await?;
    print(&serde_json::from_value(answer)?, args.json)
}

fn print(report: &Report, json: bool) -> Result<ExitCode> {
    if json {
        print_json(report)?;
    } else {
        for f in &report.findings {
            let mark = match f.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            say!("{mark} {:<15} {}", f.check, f.detail);
            if let Some(fix) = &f.fix
                && f.verdict != Verdict::Ok
            {
                say!("     {:<15} fix: {fix}", "");
            }
        }
        let (fails, warns) = report
            .findings
            .iter()
            .fold((0, 0), |(f, w), x| match x.verdict {
                Verdict::Fail => (f + 1, w),
                Verdict::Warn => (f, w + 1),
                Verdict::Ok => (f, w),
            });
        say!(
            "{}",
            match (fails, warns) {
                (0, 0) => "all clear".to_owned(),
                (0, w) => format!("no failures, {w} warning(s)"),
                (f, w) => format!("{f} failure(s), {w} warning(s)"),
            }
        );
    }
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
