//! Identifier newtypes whose constructors enforce the naming rules ("parse, don't validate").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        pub struct $name(String);

        impl $name {
            /// Parses the value, refusing anything that breaks the naming rule or looks like
            /// a key (which is then not quoted).
            pub fn new(s: &str) -> Result<Self, CoreError> {
                let check: fn(&str) -> bool = $check;
                if crate::secret_like::looks_like_secret(s) {
                    Err(crate::secret_like::refused($what))
                } else if check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(CoreError::InvalidInput(format!(
                        concat!("invalid ", $what, " {}: {}"),
                        crate::secret_like::shown(s),
                        Self::RULE
                    )))
                }
            }

            /// Parses a value read back from the store, where [`Self::new`] accepted it: the
            /// naming rule is checked, the "looks like a key" heuristic is not (a record named
            /// before the heuristic learned a new shape must stay readable, and reading it must
            /// not pay for the heuristic).
            pub fn from_stored(s: &str) -> Result<Self, CoreError> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(CoreError::InvalidInput(format!(
                        concat!("a stored ", $what, " breaks the naming rule: {}"),
                        Self::RULE
                    )))
                }
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// An organization's id, a slug such as `acme`: `[a-z0-9][a-z0-9._-]{0,62}`.
    OrgId,
    |s| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
    },
    "organization id"
);

impl OrgId {
    const RULE: &'static str = "use 1 to 63 lowercase ASCII letters, digits, '.', '_' or '-', starting with a letter or digit";
}

string_id!(
    /// A credential's id (a UUID in text form, assigned by the store).
    CredentialId,
    |s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
    "credential id"
);

impl CredentialId {
    const RULE: &'static str = "expected an id such as 0193a0b4-7c1e-7d2a-9f00-0123456789ab";
}

string_id!(
    /// A config variable's name: ASCII letters, digits, `_`, `-` and `.`, 1 to 128 characters.
    VarName,
    |s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')),
    "variable name"
);

impl VarName {
    const RULE: &'static str = "use 1 to 128 ASCII letters, digits, '_', '-' or '.'";
}

string_id!(
    /// A credential's human name, unique per organization and provider: 1 to 100 printable
    /// characters, no control characters.
    CredentialName,
    |s| !s.trim().is_empty() && s.chars().count() <= 100 && s == s.trim() && !s.chars().any(|c| c.is_control() || hides_or_reorders_text(c)),
    "credential name"
);

impl CredentialName {
    const RULE: &'static str = "use 1 to 100 printable characters without leading or trailing spaces (no control, invisible or text-direction characters)";
}

/// Whether `s` is text a listing can show as it is: not empty, at most `max_len` bytes, no
/// control character and nothing that hides or reorders text ([`hides_or_reorders_text`]).
/// For names that come from outside (an identity provider's subject or email) and become an
/// audit log's actor.
pub fn is_plain_text(s: &str, max_len: usize) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && !s
            .chars()
            .any(|c| c.is_control() || hides_or_reorders_text(c))
}

/// Characters that reorder how text is displayed (U+061C, U+200E, U+200F, U+202A to U+202E,
/// U+2066 to U+2069), are invisible (U+200B, U+2060, U+FEFF) or break lines (U+2028, U+2029):
/// in a name they make a listing show something other than what is stored.
pub fn hides_or_reorders_text(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}
