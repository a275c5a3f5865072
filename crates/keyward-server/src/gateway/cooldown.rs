//! Keys set aside: refused by the provider (401/403) or rate-limited (429), tried last until
//! they have cooled down, and recorded as recovered when they serve again. Replicas tell each
//! other (`keyward_store::KeyNote`, on the channel the caches use), so that a key one of them
//! set aside is set aside by all within milliseconds, not found out again by each.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, header};
use keyward_core::audit::Outcome;
use keyward_core::{CredentialId, Provider};
use keyward_store::{GatewayTokenView, KeyNote};
use serde_json::json;

use super::Gateway;
use super::candidates::{Served, Upstream};
use crate::AppState;

/// How long a key the provider refused (401/403) is set aside.
const FAILING_COOLDOWN: Duration = Duration::from_secs(60);

/// Why a credential is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The provider refused it (401/403).
    Failing,
    /// The provider rate-limited it (429).
    RateLimited,
}

impl Trouble {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trouble::Failing => "failing",
            Trouble::RateLimited => "rate_limited",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "failing" => Some(Trouble::Failing),
            "rate_limited" => Some(Trouble::RateLimited),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch: the clock replicas share (an `Instant` is this
/// process's own).
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Gateway {
    /// Credentials set aside now: id, why, and for how long still.
    pub(crate) fn set_aside(&self) -> Vec<(CredentialId, Trouble, Duration)> {
        let now = Instant::now();
        let cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        cooling
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(id, (until, why))| (id.clone(), *why, *until - now))
            .collect()
    }

    /// Sets a credential aside for `wait`; true if that is news (it was not already set aside
    /// for the same reason), which is when it is worth an audit event.
    pub(super) fn cool_down(
        &self,
        credential: &CredentialId,
        wait: Duration,
        why: Trouble,
    ) -> bool {
        let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let before = cooling.insert(credential.clone(), (now + wait, why));
        !matches!(before, Some((until, was)) if until > now && was == why)
    }

    /// Takes in what another replica announced: a key it set aside is set aside here until the
    /// same time (its clock and this one's agree to within their skew); a key that served
    /// there again is tried in turn here too.
    pub(crate) fn heard(&self, note: KeyNote) {
        match note {
            KeyNote::SetAside {
                credential,
                why,
                until_ms,
            } => {
                let left = until_ms.saturating_sub(unix_ms());
                if let (Some(why), Ok(left @ 1..)) = (Trouble::parse(&why), u64::try_from(left)) {
                    // Never longer than this replica would itself (an hour, for a 429).
                    let wait = Duration::from_millis(left).min(Duration::from_secs(3600));
                    self.cool_down(&credential, wait, why);
                }
            }
            KeyNote::Recovered { credential } => {
                self.recovered(&credential);
            }
        }
    }

    /// Whether a credential that just served had been set aside: if so, it has recovered.
    pub(super) fn recovered(&self, credential: &CredentialId) -> Option<Trouble> {
        let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        if cooling.is_empty() {
            return None;
        }
        cooling.remove(credential).map(|(_, why)| why)
    }

    /// Moves credentials that are cooling down behind the others (keeping each group's order).
    pub(super) fn order_by_health(&self, candidates: &mut [Upstream<'_>]) {
        let cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        if cooling.is_empty() {
            return;
        }
        let now = Instant::now();
        candidates.sort_by_key(|c| match &c.served {
            Served::Credential(id) => cooling.get(*id).is_some_and(|(until, _)| *until > now),
            Served::Target(_) | Served::Environment(_) => false,
        });
    }
}

/// Whether a 401/403 of `provider` says its key is refused.
fn refuses_key(provider: &Provider, status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
        || provider.auth != keyward_core::provider::AuthStyle::ServiceAccount
}

/// What one request's answers say about the keys that gave them: a key refused (401/403, the
/// first time in the request) or rate-limited (429) is set aside, and one set aside that serves
/// again has recovered. Both are counted and audited.
pub(super) struct KeyHealth<'a> {
    state: &'a AppState,
    provider: &'static Provider,
    view: &'a GatewayTokenView,
    /// Whether a key of this request was already refused: the request goes to the next key
    /// once, not again.
    retried_auth: bool,
}

impl<'a> KeyHealth<'a> {
    pub(super) fn new(
        state: &'a AppState,
        provider: &'static Provider,
        view: &'a GatewayTokenView,
    ) -> Self {
        Self {
            state,
            provider,
            view,
            retried_auth: false,
        }
    }

    /// Takes note of credential `id`'s answer; true when the request goes on to the next key
    /// (`more`: there is one).
    pub(super) fn after_answer(
        &mut self,
        id: &CredentialId,
        status: StatusCode,
        headers: &HeaderMap,
        more: bool,
    ) -> bool {
        let gw = &self.state.shared.gateway;
        let provider = self.provider;
        let trouble = match status.as_u16() {
            // Vertex AI answers 403 about one resource (a model not enabled, a project's
            // policy), not about the credential: only a 401 sets its key aside.
            401 | 403 if !self.retried_auth && refuses_key(provider, status) => {
                self.retried_auth = true;
                Some((Trouble::Failing, FAILING_COOLDOWN))
            }
            429 => Some((
                Trouble::RateLimited,
                Duration::from_secs(
                    headers
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(30)
                        .clamp(1, 3600),
                ),
            )),
            _ => None,
        };
        if let Some((why, wait)) = trouble {
            if gw.cool_down(id, wait, why) {
                gw.count("cooldowns", provider.id, why.as_str());
                let until_ms =
                    unix_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                self.announce(KeyNote::SetAside {
                    credential: id.clone(),
                    why: why.as_str().to_owned(),
                    until_ms,
                });
                let action = match why {
                    Trouble::RateLimited => "gateway_cooldown",
                    Trouble::Failing => "gateway_key_failing",
                };
                self.audit(
                    id.clone(),
                    action,
                    Outcome::Failure,
                    json!({ "provider": provider.id, "status": status.as_u16(), "cooldown_seconds": wait.as_secs() }),
                );
            }
            if more {
                gw.count("failovers", provider.id, why.as_str());
                return true;
            }
        } else if !status.is_server_error()
            && !matches!(status.as_u16(), 401 | 403 | 429)
            && let Some(was) = gw.recovered(id)
        {
            gw.count("recoveries", provider.id, was.as_str());
            self.announce(KeyNote::Recovered {
                credential: id.clone(),
            });
            self.audit(
                id.clone(),
                "gateway_key_recovered",
                Outcome::Success,
                json!({ "provider": provider.id, "status": status.as_u16(), "was": was.as_str() }),
            );
        }
        false
    }

    /// Tells the other replicas, beside the request, not in its way.
    fn announce(&self, note: KeyNote) {
        let vault = self.state.vault.serving().clone();
        tokio::spawn(async move { vault.announce(&note).await });
    }

    /// Audits an event about a key beside the request, not in its way (on SQLite it would
    /// queue behind every other writer).
    fn audit(
        &self,
        credential: CredentialId,
        action: &'static str,
        outcome: Outcome,
        details: serde_json::Value,
    ) {
        let vault = self.state.vault.serving().clone();
        let actor = format!("gateway_token:{}", self.view.id);
        let org = self.view.org.clone();
        tokio::spawn(async move {
            if let Err(e) = vault
                .record_gateway_event(&actor, &org, &credential, action, outcome, details)
                .await
            {
                tracing::warn!(error = %e, action, "cannot audit a gateway key event");
            }
        });
    }
}
