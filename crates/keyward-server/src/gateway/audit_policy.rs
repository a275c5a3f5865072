//! The audit-logger policy as the gateway runs it: the server's own settings (`keyward serve
//! --audit-*`) and the targets file's `policy: audit-logger:`, the stricter of the two, kept in
//! the store (so that `keyward events prune` keeps it too) and, with `log_all_access`, an audit
//! event for every gateway request.
//!
//! A request's event is committed before its answer leaves (group commit shares the flush
//! with every other request and operation in flight), so an answered request is an audited
//! one, whatever happens to the process next. While the store is away the answer goes out and
//! the event is kept (up to [`MAX_KEPT`], counted beyond) for the next usage flush. Only
//! requests of a gateway token are events: a request without a valid token is audited as a
//! failed authentication, at most as often as the failure limiter lets an address try, so that
//! nobody without a token can fill an immutable log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_store::{AuditPolicy, Vault};
use serde_json::json;

use super::Gateway;

/// The most request events held for the store (about 1 KB each).
const MAX_KEPT: usize = 100_000;

/// The policy in force and the request events waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct PolicyState {
    policy: Mutex<AuditPolicy>,
    log_all: AtomicBool,
    pending: Mutex<Vec<NewEvent>>,
    /// Request events dropped because the store stayed away too long.
    dropped: AtomicU64,
}

/// One gateway request, as its audit event records it.
pub(crate) struct RequestSeen<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) duration_ms: f64,
    pub(crate) caller: Option<&'a str>,
    pub(crate) org: Option<&'a str>,
    /// What served it: `x-keyward-credential` / `x-keyward-target` of the answer.
    pub(crate) served: Option<(&'a str, &'a str)>,
}

impl Gateway {
    /// The policy in force.
    pub(crate) fn audit_policy(&self) -> AuditPolicy {
        *self.audit.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts in force the stricter of the server's settings and the targets file's policy, and
    /// records it in the store (audited when it changed).
    pub(crate) async fn apply_audit_policy(&self, vault: &Vault, actor: &str) {
        let file = self.targets().audit_policy;
        let asked = self.options.audit_policy.and(file.unwrap_or_default());
        let source = match (file, &self.options.targets_file) {
            (Some(_), Some(path)) => format!(
                "keyward serve settings and the gateway config {}",
                path.display()
            ),
            _ => "keyward serve settings".to_owned(),
        };
        // An immutable policy in the store only tightens: what it keeps stays kept.
        let policy = match vault.set_audit_policy(asked, &source, actor).await {
            Ok(in_force) => {
                if in_force != asked {
                    tracing::warn!(asked = ?asked, in_force = ?in_force, "the stored audit policy is immutable: a shorter retention or a mutable policy is not taken");
                }
                in_force
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the audit policy in the store");
                asked
            }
        };
        *self.audit.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
        self.audit
            .log_all
            .store(policy.log_all_access, Ordering::Relaxed);
    }

    /// Whether every gateway request is audited.
    pub(crate) fn logs_all_access(&self) -> bool {
        self.audit.log_all.load(Ordering::Relaxed)
    }

    /// Writes the audit event of one gateway token's request (under `log_all_access`) before
    /// its answer goes; kept for the next flush if the store cannot take it now. A request
    /// without a gateway token writes nothing here.
    pub(crate) async fn audit_request(&self, vault: &Vault, r: &RequestSeen<'_>) {
        let Some(caller) = r.caller else {
            return;
        };
        // `/gateway/{provider}/...` or `/gateway/t/{target}/...`: the provider or target, not
        // the rest of the path (no query, ever).
        let mut parts = r.path.trim_start_matches("/gateway/").split('/');
        let first = parts.next().unwrap_or_default();
        let (via, name) = if first == "t" {
            ("target", parts.next().unwrap_or_default())
        } else {
            ("provider", first)
        };
        let name = if name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            name
        } else {
            "(not a name)"
        };
        let target = match r.served {
            Some(("x-keyward-target", id)) => format!("target:{id}"),
            Some((_, id)) if id.starts_with("env:") => id.to_owned(),
            Some((_, id)) => format!("credential:{id}"),
            None => format!("{via}:{name}"),
        };
        let event = NewEvent::new(caller, Category::SecretAccess, "gateway_request", target)
            .org(r.org)
            .outcome(if r.status < 400 {
                Outcome::Success
            } else {
                Outcome::Failure
            })
            .details(json!({
                via: name,
                "method": r.method,
                "status": r.status,
                "duration_ms": (r.duration_ms * 1000.0).round() / 1000.0,
                "request_id": r.request_id,
            }));
        let Err(e) = vault.record(event.clone()).await else {
            return;
        };
        tracing::warn!(error = %e, "cannot write a gateway request's audit event; it is kept for the next try");
        let mut pending = self.audit.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_KEPT {
            self.audit.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.push(event);
    }

    /// Writes the request events queued since the last flush, in one batch; kept for the next
    /// one if the store cannot take them now.
    pub(crate) async fn flush_request_events(&self, vault: &Vault) {
        let batch =
            std::mem::take(&mut *self.audit.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        if let Err(e) = vault.record_many(batch.clone()).await {
            tracing::warn!(error = %e, events = n, "cannot write the gateway's request events; they are kept for the next try");
            let mut pending = self.audit.pending.lock().unwrap_or_else(|p| p.into_inner());
            let room = MAX_KEPT.saturating_sub(pending.len());
            let kept: Vec<NewEvent> = batch.into_iter().take(room).collect();
            self.audit
                .dropped
                .fetch_add((n - kept.len()) as u64, Ordering::Relaxed);
            // The older ones first, as they happened.
            pending.splice(0..0, kept);
        }
    }

    /// Request events dropped because the store stayed away (for `/metrics`).
    pub(crate) fn request_events_dropped(&self) -> u64 {
        self.audit.dropped.load(Ordering::Relaxed)
    }
}
