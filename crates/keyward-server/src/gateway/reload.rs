//! Loading the static targets file (at start, on SIGHUP, through the API, the CLI or the
//! console): every load audited and kept as the last one for the status.

use std::sync::Arc;

use keyward_core::audit::Outcome;
use serde_json::json;

use super::Gateway;
use super::targets::{Targets, TargetsError, TargetsLoaded};

/// What started a load of the targets file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LoadTrigger {
    /// `keyward serve` starting.
    Start,
    /// SIGHUP to the server.
    Sighup,
    /// `POST /api/v1/gateway/reload`.
    Api,
    /// `keyward gateway reload` (through the API).
    Cli,
    /// The web console's Reload button.
    Console,
}

impl LoadTrigger {
    /// Its name in audit entries and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadTrigger::Start => "start",
            LoadTrigger::Sighup => "sighup",
            LoadTrigger::Api => "api",
            LoadTrigger::Cli => "cli",
            LoadTrigger::Console => "console",
        }
    }
}

/// The last load of the targets file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LoadRecord {
    /// When.
    pub at: keyward_core::Millis,
    /// What started it.
    pub by: LoadTrigger,
    /// Why it failed (the previous targets stayed), if it did.
    pub error: Option<String>,
}

impl Gateway {
    /// The static targets in use.
    pub(super) fn targets(&self) -> Arc<Targets> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// (Re)loads the static targets file; on failure the running set stays. Every load is
    /// audited (`gateway_reload`, naming the references it resolved, never a value) and kept
    /// as the last one for the status.
    pub(crate) async fn reload_targets(
        &self,
        vault: &keyward_store::Vault,
        by: LoadTrigger,
        actor: &str,
    ) -> Result<TargetsLoaded, TargetsError> {
        let Some(path) = self.options.targets_file.clone() else {
            return Err(TargetsError::NoFile);
        };
        let _one_at_a_time = self.reloading.lock().await;
        let env = |name: &str| std::env::var(name).ok();
        let outcome = Targets::load(&path, vault, &env, &self.options.vault_kv)
            .await
            .map(|loaded| {
                let report = loaded.loaded();
                *self.targets.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                report
            });
        let (outcome_kind, details) = match &outcome {
            Ok(report) => {
                self.count("reloads", "", "ok");
                tracing::info!(targets = report.targets.len(), by = by.as_str(), file = %path.display(), "gateway targets loaded");
                if !report.ignored.is_empty() {
                    tracing::warn!(sections = %report.ignored.join(", "), "gateway config: sections Keyward does not implement are ignored");
                }
                (
                    Outcome::Success,
                    json!({ "by": by.as_str(), "targets": report.targets, "ignored": report.ignored }),
                )
            }
            Err(e) => {
                self.count("reloads", "", "failed");
                if by == LoadTrigger::Start {
                    tracing::error!(error = %e, "gateway targets not loaded");
                } else {
                    tracing::error!(error = %e, "gateway targets not reloaded; the previous ones stay");
                }
                (
                    Outcome::Failure,
                    json!({ "by": by.as_str(), "error": e.to_string() }),
                )
            }
        };
        {
            let record = LoadRecord {
                at: keyward_core::Millis::now(),
                by,
                error: outcome.as_ref().err().map(ToString::to_string),
            };
            let mut loads = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
            if outcome.is_ok() {
                loads.1 = Some(record.clone());
            }
            loads.0 = Some(record);
        }
        let event = keyward_core::audit::NewEvent::new(
            actor,
            keyward_core::audit::Category::SecretManagement,
            "gateway_reload",
            "gateway:targets".to_owned(),
        )
        .outcome(outcome_kind)
        .details(details);
        if let Err(e) = vault.record(event).await {
            tracing::warn!(error = %e, "cannot audit a gateway reload");
        }
        if outcome.is_ok() {
            self.apply_audit_policy(vault, actor).await;
        }
        outcome
    }

    /// The targets served, their last load and the last successful one, for the status.
    pub(crate) fn targets_status(&self) -> (TargetsLoaded, Option<LoadRecord>, Option<LoadRecord>) {
        let (last, serving) = self
            .last_load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (self.targets().loaded(), last, serving)
    }
}
