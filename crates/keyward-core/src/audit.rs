//! Audit events: who did what to which secret, when, with what outcome. Never a secret value.
//!
//! Events are chained: each stores `link = HMAC(chain_key, prev_link || payload)`, where
//! `payload` is [`AuditEvent::payload`]. Editing, inserting or deleting an event in the middle
//! breaks every later link; `keyward events verify` recomputes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Millis};

/// Broad kind of an event. `secret_management` is also the umbrella a filter asks for: every
/// secret operation, as the config-variable guide's `events list --filter
/// 'category=secret_management'` expects (variable changes, master-key rotation, gateway reloads,
/// failed resolutions); `secret_access` and `key_management` refine it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Creating, changing or deleting credentials, variables and organizations.
    SecretManagement,
    /// Handing a secret out: resolution, reveal.
    SecretAccess,
    /// Master-key operations.
    KeyManagement,
}

impl Category {
    /// The stored categories a filter on this one matches: itself, and for the umbrella
    /// `secret_management` the two that refine it.
    pub fn covers(self) -> &'static [Category] {
        match self {
            Category::SecretManagement => &[
                Category::SecretManagement,
                Category::SecretAccess,
                Category::KeyManagement,
            ],
            Category::SecretAccess => &[Category::SecretAccess],
            Category::KeyManagement => &[Category::KeyManagement],
        }
    }

    /// The category's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SecretManagement => "secret_management",
            Category::SecretAccess => "secret_access",
            Category::KeyManagement => "key_management",
        }
    }
}

impl FromStr for Category {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        [
            Category::SecretManagement,
            Category::SecretAccess,
            Category::KeyManagement,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "unknown category {}; use secret_management, secret_access or key_management",
                crate::secret_like::shown(s)
            ))
        })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the operation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did.
    Success,
    /// It did not; `details` says why.
    Failure,
}

impl Outcome {
    /// The outcome's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

impl FromStr for Outcome {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            _ => Err(CoreError::InvalidInput(format!(
                "unknown outcome {}",
                crate::secret_like::shown(s)
            ))),
        }
    }
}

/// An event about to be written.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Who did it (`cli:alice`, `token:ci-deploy`, ...).
    pub actor: String,
    /// The organization concerned, if any.
    pub org: Option<String>,
    /// Broad kind.
    pub category: Category,
    /// What was done: `create`, `update`, `delete`, `activate`, `deactivate`, `resolve`,
    /// `reveal`, `rotate`, ...
    pub action: String,
    /// What it was done to (`credential:ID`, `var:NAME`, `org:SLUG`, `master_key`).
    pub target: String,
    /// Whether it worked.
    pub outcome: Outcome,
    /// Further facts (never a secret): names, kids, counts, error messages.
    pub details: serde_json::Value,
}

impl NewEvent {
    /// A successful event with no organization and no details; the builders below add them.
    pub fn new(actor: &str, category: Category, action: &str, target: String) -> Self {
        Self {
            actor: actor.to_owned(),
            org: None,
            category,
            action: action.to_owned(),
            target,
            outcome: Outcome::Success,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The organization concerned.
    #[must_use]
    pub fn org(mut self, org: Option<&str>) -> Self {
        self.org = org.map(str::to_owned);
        self
    }

    /// Further facts (never a secret).
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The outcome, when it is not a success.
    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: Millis,
    /// Who.
    pub actor: String,
    /// Which organization.
    pub org: Option<String>,
    /// Broad kind.
    pub category: Category,
    /// What.
    pub action: String,
    /// To what.
    pub target: String,
    /// With what outcome.
    pub outcome: Outcome,
    /// Further facts.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// The bytes the chain authenticates: every field, in a fixed order, length-prefixed, with
    /// `details` exactly as stored (`details_text`), so that verification never depends on how
    /// JSON is re-serialised.
    pub fn payload(&self, details_text: &str) -> Vec<u8> {
        // A missing organization and any organization string encode differently.
        let org = match &self.org {
            None => vec![0u8],
            Some(o) => [&[1u8][..], o.as_bytes()].concat(),
        };
        let parts: [&[u8]; 9] = [
            &self.seq.to_be_bytes(),
            &self.at.0.to_be_bytes(),
            self.actor.as_bytes(),
            &org,
            self.category.as_str().as_bytes(),
            self.action.as_bytes(),
            self.target.as_bytes(),
            self.outcome.as_str().as_bytes(),
            details_text.as_bytes(),
        ];
        let mut out = Vec::with_capacity(128 + details_text.len());
        for p in parts {
            out.extend_from_slice(&(p.len() as u64).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }
}

/// A filter for listing events: `category=secret_management,org=acme,action=resolve`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this category.
    pub category: Option<Category>,
    /// Only this organization.
    pub org: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only events about this target (a credential's id, a token's id, ...).
    pub target: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Millis>,
    /// Only events before this sequence number (a cursor: pass the last one seen).
    pub before: Option<i64>,
}

impl FromStr for EventFilter {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let mut f = EventFilter::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                CoreError::InvalidInput(format!(
                    "filter {} must have the form KEY=VALUE",
                    crate::secret_like::shown(part)
                ))
            })?;
            let v = v.trim();
            if crate::secret_like::looks_like_secret(v) {
                return Err(crate::secret_like::refused("filter value"));
            }
            if v.chars().any(char::is_control) {
                return Err(CoreError::InvalidInput(format!(
                    "filter {} has a control character in its value",
                    crate::secret_like::shown(k.trim())
                )));
            }
            match k.trim() {
                "category" => f.category = Some(v.parse()?),
                "org" => f.org = Some(v.to_owned()),
                "action" => f.action = Some(v.to_owned()),
                "outcome" => f.outcome = Some(v.parse()?),
                "actor" => f.actor = Some(v.to_owned()),
                "target" => f.target = Some(v.to_owned()),
                other => {
                    return Err(CoreError::InvalidInput(format!(
                        "unknown filter key {}; use category, org, action, outcome, actor or target",
                        crate::secret_like::shown(other)
                    )));
                }
            }
        }
        Ok(f)
    }
}
