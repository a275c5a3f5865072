//! Keyward's domain, free of I/O: identifiers, the provider registry, credentials and config
//! variables, the resolution rules, and audit events.
//!
//! - [`ids`]: newtypes whose constructors enforce the naming rules.
//! - [`provider`]: the registry, one static table.
//! - [`credential`]: key checks, key hints, and the shapes of credentials.
//! - [`var`]: config variables.
//! - [`resolve`]: ordering of candidates and the not-found error.
//! - [`env`]: the environment variables a resolved credential becomes.
//! - [`audit`]: events and the bytes their HMAC chain covers.
//! - [`secret_like`]: telling values that look like keys from names, for refusals and errors.
//! - [`mask`]: masking secrets in a byte stream (`keyward run`'s output, the gateway's answers).
//! - [`token`]: whether a token still works (`TokenState`), for every check and listing.
//!
//! The store crate runs these rules against a database; this crate never touches one.

pub mod audit;
pub mod credential;
pub mod env;
pub mod ids;
pub mod mask;
pub mod prices;
pub mod provider;
pub mod resolve;
pub mod secret_like;
pub mod token;
pub mod var;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use ids::{CredentialId, CredentialName, OrgId, VarName};

/// A name with its indefinite article, for messages: "an OpenAI", "a Groq", "an NVIDIA",
/// "an xAI", "an org_admin". A vowel takes "an", and so does an initialism whose first
/// letter's name starts with one.
pub fn with_article(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('x');
    let second = chars.next().unwrap_or('x');
    let vowel =
        "AEIOUaeiou".contains(first) || (second.is_uppercase() && "FHLMNRSXx".contains(first));
    format!("{} {name}", if vowel { "an" } else { "a" })
}
pub use provider::{PROVIDERS, Provider};

/// Errors of the domain rules.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// A value broke a rule; the message says which and what was expected, never quoting a
    /// secret.
    #[error("{0}")]
    InvalidInput(String),
    /// A name, id or other public field held what looks like a key; the message names the
    /// field, never the value.
    #[error("{0}")]
    LooksLikeSecret(String),
    /// A key failed its provider's format check (which the caller may choose to skip); the
    /// message says what was expected, and each surface adds how to skip it.
    #[error("{0}")]
    KeyFormat(String),
    /// A provider id (or alias) the registry does not hold; the message lists those it does.
    #[error("{0}")]
    UnknownProvider(String),
}

/// A point in time: milliseconds since the Unix epoch, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// The current time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}
