//! Audit events as the console's tables show them, with who acted by name (the Audit Log page
//! and a credential's own page).

use keyward_store::Principal;

use super::when;
use crate::{ApiError, AppState};

/// One audit event, for people.
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) at: String,
    pub(crate) actor: String,
    /// The actor for people: a token's name where it is known.
    pub(crate) who: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) outcome: String,
    pub(crate) details: String,
    /// A key test's result (`ok`, `rejected (HTTP 401)`, ...).
    pub(crate) result: String,
}

/// Token names by actor (`token:ID`), to show who acted by name.
pub(crate) struct Names(std::collections::HashMap<String, String>);

impl Names {
    /// The names of the tokens `p` may see: every token for an admin, its own organization's
    /// otherwise (an admin token's name is not an organization's business).
    pub(crate) async fn load(state: &AppState, p: &Principal) -> Result<Self, ApiError> {
        Ok(Self(crate::ops::tokens::names(state, p).await?))
    }

    /// `name` for a known token, else the actor as recorded (`serve:bootstrap`, `cli:...`).
    pub(crate) fn of(&self, actor: &str) -> String {
        self.0
            .get(actor)
            .cloned()
            .unwrap_or_else(|| actor.to_owned())
    }
}

impl EventRow {
    pub(crate) fn new(e: keyward_core::audit::AuditEvent, names: &Names) -> Self {
        Self {
            seq: e.seq,
            at: when(Some(e.at)),
            who: names.of(&e.actor),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome.as_str().to_owned(),
            result: e.details["result"].as_str().unwrap_or_default().to_owned(),
            details: if e.details.is_null() {
                String::new()
            } else {
                e.details.to_string()
            },
        }
    }
}
