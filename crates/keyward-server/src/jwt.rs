//! HS256 JWTs as bearer tokens, for deployments that mint short-lived tokens elsewhere.
//!
//! Keys come from `KEYWARD_JWT_VERIFICATION_KEYS="kid1:secret1,kid2:secret2"`; the token's
//! `kid` header picks one, so keys rotate with old tokens valid until they expire. Claims:
//! `sub` (who), `role`, `org` (every role but admin), `exp` (required).

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use keyward_core::OrgId;
use keyward_store::{Principal, Role};
use serde::Deserialize;

/// The verification keys, by key id.
#[derive(Default, Clone)]
pub struct JwtKeys {
    keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: the secrets stay out of every output.
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

impl JwtKeys {
    /// Parses `kid1:secret1,kid2:secret2`. Errors name the variable and the entry, never a
    /// secret.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (i, item) in spec.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let Some((kid, secret)) = item.split_once(':') else {
                return Err(format!(
                    "KEYWARD_JWT_VERIFICATION_KEYS: entry {} must have the form KID:SECRET",
                    i + 1
                ));
            };
            let kid = kid.trim();
            if kid.is_empty() || secret.len() < 32 {
                return Err(format!(
                    "KEYWARD_JWT_VERIFICATION_KEYS: entry {} needs a key id and a secret of at least 32 bytes",
                    i + 1
                ));
            }
            if keys
                .insert(kid.to_owned(), DecodingKey::from_secret(secret.as_bytes()))
                .is_some()
            {
                return Err(format!(
                    "KEYWARD_JWT_VERIFICATION_KEYS: key id {kid:?} appears twice"
                ));
            }
        }
        Ok(Self { keys })
    }

    /// Whether any key is configured (else JWTs are not accepted at all).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a JWT: HS256 only, a known `kid`, a valid signature, an `exp` in the future,
    /// and a role the claims may hold. `None` when any of that fails.
    pub(crate) fn verify(&self, token: &str) -> Option<Principal> {
        #[derive(Deserialize)]
        struct Claims {
            sub: String,
            role: String,
            org: Option<String>,
        }
        let header = decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let kid = header.kid?;
        let key = self.keys.get(&kid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        let claims = decode::<Claims>(token, key, &validation).ok()?.claims;
        let role: Role = claims.role.parse().ok()?;
        let org = match (role, claims.org.as_deref()) {
            (Role::Admin, None) => None,
            (Role::Admin, Some(_)) | (_, None) => return None,
            (_, Some(o)) => Some(OrgId::new(o).ok()?),
        };
        if !keyward_core::ids::is_plain_text(&claims.sub, 200) {
            return None;
        }
        Some(Principal::single(
            format!("jwt:{kid}:{}", claims.sub),
            claims.sub,
            role,
            org,
        ))
    }
}
