//! Whether a token (an API token, a gateway token, the token behind a console session) still
//! works: the one rule every check and every listing uses.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A token's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// It works.
    Active,
    /// Its expiry has passed (at or before the moment asked about).
    Expired,
    /// It was revoked (whether or not it had also expired).
    Revoked,
}

impl TokenState {
    /// The state at `now` of a token revoked at `revoked_at` (if ever) that expires at
    /// `expires_at` (if ever). Revocation wins over expiry; an expiry equal to `now` has
    /// passed.
    pub fn of(revoked_at: Option<Millis>, expires_at: Option<Millis>, now: Millis) -> Self {
        match (revoked_at, expires_at) {
            (Some(_), _) => Self::Revoked,
            (None, Some(e)) if e <= now => Self::Expired,
            (None, _) => Self::Active,
        }
    }

    /// Whether the token works.
    pub fn is_live(self) -> bool {
        self == Self::Active
    }

    /// The word listings show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_wins_and_an_expiry_at_now_has_passed() {
        let now = Millis(1_000);
        let cases = [
            (None, None, TokenState::Active),
            (None, Some(Millis(1_001)), TokenState::Active),
            (None, Some(Millis(1_000)), TokenState::Expired),
            (None, Some(Millis(999)), TokenState::Expired),
            (Some(Millis(5)), None, TokenState::Revoked),
            (Some(Millis(5)), Some(Millis(999)), TokenState::Revoked),
            (Some(Millis(5)), Some(Millis(2_000)), TokenState::Revoked),
        ];
        for (revoked, expires, want) in cases {
            assert_eq!(
                TokenState::of(revoked, expires, now),
                want,
                "{revoked:?} {expires:?}"
            );
            assert_eq!(want.is_live(), want == TokenState::Active);
        }
    }
}
