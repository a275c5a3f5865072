//! An issuer's signing keys (its JWKS) and the verification of the tokens it signs.
//!
//! What a token may not choose: the algorithm (fixed per issuer by configuration, never taken
//! from the header, so `alg: none` and HS256-signed-with-the-public-key fail), where keys come
//! from (`jku`, `x5u` and `jwk` headers are ignored: keys come only from the configured URL or
//! set), and how often the server fetches them (an unknown `kid` refetches at most once per
//! interval, one fetch at a time; known keys never wait for a fetch, so a slow or dead endpoint
//! only delays tokens signed with a key not seen yet). A symmetric (`oct`) key in a remote set
//! is never used: it would turn a published set into a shared secret.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

/// The header of a JWT as JSON, for what `jsonwebtoken`'s header type does not keep.
fn raw_header(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let part = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The largest key set read (a real one is a few KiB).
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Why a token was refused. Messages name the check, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefused {
    /// Not a JWT, or a header this verifier does not take (including `alg: none`).
    #[error("not a usable JWT: {0}")]
    Malformed(String),
    /// Signed with another algorithm than the issuer's configured one.
    #[error("signed with {0}, not the configured algorithm")]
    Algorithm(String),
    /// No key of the issuer has this `kid` (after at most one refetch).
    #[error("no key of the issuer has this key id")]
    UnknownKey,
    /// The issuer's keys could not be fetched.
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
    /// The signature or a claim check failed.
    #[error("{0}")]
    Invalid(String),
}

/// What a verified token must say.
#[derive(Debug, Clone)]
pub struct Expect {
    /// `iss`, exactly.
    pub issuer: String,
    /// One of `aud`.
    pub audience: String,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: u64,
}

/// Where the keys come from.
#[derive(Debug)]
enum Source {
    /// Fetched from this URL (fixed by configuration or discovery).
    Url {
        http: reqwest::Client,
        url: String,
        min_refetch: Duration,
    },
    /// Given (a cluster whose JWKS endpoint needs credentials to read).
    Fixed,
}

/// An issuer's keys for one algorithm, cached.
#[derive(Debug)]
pub struct Jwks {
    alg: Algorithm,
    source: Source,
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    /// One fetch at a time, and when the last one started.
    gate: tokio::sync::Mutex<Option<Instant>>,
}

/// Whether a key of these parameters can verify `alg` (never an `oct` key).
fn family_fits(alg: Algorithm, params: &AlgorithmParameters) -> bool {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    matches!(
        (alg, params),
        (
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512,
            AlgorithmParameters::RSA(_)
        ) | (ES256 | ES384, AlgorithmParameters::EllipticCurve(_))
            | (EdDSA, AlgorithmParameters::OctetKeyPair(_))
    )
}

/// The usable keys of a set for `alg`, by `kid` (a key without one is `#INDEX`).
fn usable(alg: Algorithm, set: &JwkSet) -> HashMap<String, DecodingKey> {
    let mut out = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            continue;
        }
        if let Some(declared) = jwk.common.key_algorithm
            && Algorithm::try_from(declared).ok() != Some(alg)
        {
            continue;
        }
        if !family_fits(alg, &jwk.algorithm) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
        out.insert(kid, key);
    }
    out
}

impl Jwks {
    /// Keys fetched from `url`, verifying `alg` only; an unknown `kid` refetches at most once
    /// per `min_refetch`.
    pub fn from_url(
        http: reqwest::Client,
        url: impl Into<String>,
        alg: Algorithm,
        min_refetch: Duration,
    ) -> Self {
        Self {
            alg,
            source: Source::Url {
                http,
                url: url.into(),
                min_refetch,
            },
            keys: RwLock::new(Arc::default()),
            gate: tokio::sync::Mutex::new(None),
        }
    }

    /// A fixed set of keys (never fetched).
    pub fn fixed(set: &JwkSet, alg: Algorithm) -> Self {
        Self {
            alg,
            source: Source::Fixed,
            keys: RwLock::new(Arc::new(usable(alg, set))),
            gate: tokio::sync::Mutex::new(None),
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().map(|k| Arc::clone(&k)).unwrap_or_default();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    async fn fetch(&self, http: &reqwest::Client, url: &str) -> Result<JwkSet, JwtRefused> {
        let fail = |why: String| JwtRefused::KeysUnavailable(why);
        let mut response = http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fail(e.without_url().to_string()))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
        }
        serde_json::from_slice(&body).map_err(|_| fail("not a JWK set".into()))
    }

    /// The key for `kid`: cached, else refetched once (rate-limited, one fetch at a time).
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, JwtRefused> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let Source::Url {
            http,
            url,
            min_refetch,
        } = &self.source
        else {
            return Err(JwtRefused::UnknownKey);
        };
        let mut last = self.gate.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        if last.is_some_and(|t| t.elapsed() < *min_refetch) {
            return Err(JwtRefused::UnknownKey);
        }
        *last = Some(Instant::now());
        let set = self.fetch(http, url).await?;
        let fresh = Arc::new(usable(self.alg, &set));
        if let Ok(mut keys) = self.keys.write() {
            *keys = fresh;
        }
        self.lookup(kid).ok_or(JwtRefused::UnknownKey)
    }

    /// Verifies `token`: the configured algorithm, a key of this set, the signature, `iss`,
    /// `aud`, `exp` (required), `nbf`, and `iat` (required, not in the future). Answers the
    /// claims.
    pub async fn verify(
        &self,
        token: &str,
        expect: &Expect,
    ) -> Result<Map<String, Value>, JwtRefused> {
        // `alg: none` is no `Algorithm`: it fails here.
        let header = decode_header(token).map_err(|e| JwtRefused::Malformed(e.to_string()))?;
        // An extension the issuer marked critical must be understood (RFC 7515 §4.1.11); this
        // verifier understands none.
        if raw_header(token).is_some_and(|h| h.contains_key("crit")) {
            return Err(JwtRefused::Malformed(
                "a critical header extension (crit) that is not understood".into(),
            ));
        }
        if header.alg != self.alg {
            return Err(JwtRefused::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(self.alg);
        validation.set_issuer(&[&expect.issuer]);
        validation.set_audience(&[&expect.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = expect.leeway;
        validation.validate_nbf = true;
        let claims: Map<String, Value> = decode(token, &key, &validation)
            .map_err(|e| JwtRefused::Invalid(e.to_string()))?
            .claims;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match claims.get("iat").and_then(Value::as_u64) {
            Some(iat) if iat <= now + expect.leeway => Ok(claims),
            Some(_) => Err(JwtRefused::Invalid("issued in the future (iat)".into())),
            None => Err(JwtRefused::Invalid("iat is not a number".into())),
        }
    }
}
