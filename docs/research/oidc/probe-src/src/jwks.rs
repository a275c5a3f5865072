//! JWKS cache + JWT verification on jsonwebtoken 11 (what Keyward would own if it does not
//! take the `openidconnect` crate). ~150 lines including the ID-token rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::de::DeserializeOwned;

const MAX_JWKS_BYTES: usize = 64 * 1024;

pub struct JwksCache {
    client: reqwest::Client,
    /// Fixed by configuration (or taken from discovery once); never from a token header.
    uri: String,
    alg: Algorithm,
    /// At most one network fetch per this interval, whatever kids tokens name.
    min_refetch: Duration,
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    /// Serialises refetches (single flight) and remembers when the last one started.
    fetch_gate: tokio::sync::Mutex<Option<Instant>>,
    pub fetches: AtomicUsize,
}

fn family_ok(alg: Algorithm, p: &AlgorithmParameters) -> bool {
    use Algorithm::*;
    matches!(
        (alg, p),
        (RS256 | RS384 | RS512 | PS256 | PS384 | PS512, AlgorithmParameters::RSA(_))
            | (ES256 | ES384, AlgorithmParameters::EllipticCurve(_))
            | (EdDSA, AlgorithmParameters::OctetKeyPair(_))
    ) // never AlgorithmParameters::OctetKey: a remote JWKS must not hand us an HMAC secret
}

impl JwksCache {
    pub fn new(client: reqwest::Client, uri: String, alg: Algorithm, min_refetch: Duration) -> Self {
        Self {
            client,
            uri,
            alg,
            min_refetch,
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetch_gate: tokio::sync::Mutex::new(None),
            fetches: AtomicUsize::new(0),
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap().clone();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut resp = self.client.get(&self.uri).send().await?.error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                bail!("JWKS larger than {MAX_JWKS_BYTES} bytes");
            }
        }
        let set: JwkSet = serde_json::from_slice(&body)?;
        let mut out = HashMap::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            if let Some(ka) = jwk.common.key_algorithm {
                if Algorithm::try_from(ka).ok() != Some(self.alg) {
                    continue;
                }
            }
            if !family_ok(self.alg, &jwk.algorithm) {
                continue;
            }
            let kid = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
            out.insert(kid, DecodingKey::from_jwk(jwk)?);
        }
        Ok(out)
    }

    /// Key for `kid`: cached, else (rate-limited, single-flight) refetch once, else error.
    /// Known kids never wait for a fetch, so a slow/down JWKS only hurts unknown kids.
    pub async fn key(&self, kid: Option<&str>) -> Result<DecodingKey> {
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        let mut last = self.fetch_gate.lock().await;
        if let Some(k) = self.lookup(kid) {
            return Ok(k); // another task refetched while we waited
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            bail!("unknown kid {kid:?} (JWKS refetch rate-limited)");
        }
        *last = Some(Instant::now());
        let fresh = self.fetch().await?;
        *self.keys.write().unwrap() = Arc::new(fresh);
        self.lookup(kid).ok_or_else(|| anyhow!("unknown kid {kid:?} after refetch"))
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway: u64,
    /// Reject tokens whose iat is older than this (ID tokens: minutes; workload: None).
    pub max_age: Option<u64>,
    /// Required for ID tokens: the nonce kept with the login attempt.
    pub nonce: Option<&'a str>,
    /// ID tokens: azp must equal client_id when present, and be present when aud has >1 entry.
    pub check_azp: bool,
    pub typ: Option<&'a [&'a str]>,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Full verification: fixed alg, kid-selected key from the configured JWKS only, signature,
/// iss, aud, exp, nbf, iat (present, not in the future, not too old), nonce, azp.
pub async fn verify<T: DeserializeOwned>(cache: &JwksCache, token: &str, e: &Expect<'_>) -> Result<(T, serde_json::Value)> {
    let header = decode_header(token)?; // "alg":"none" fails here: not an Algorithm variant
    if header.alg != cache.alg() {
        bail!("alg {:?} is not the configured {:?}", header.alg, cache.alg());
    }
    if let Some(allowed) = e.typ {
        let t = header.typ.as_deref().unwrap_or("");
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(t)) {
            bail!("typ {t:?} not accepted");
        }
    }
    // header.jku / x5u / jwk are ignored on purpose: keys come only from the configured URI.
    let key = cache.key(header.kid.as_deref()).await?;
    let mut v = Validation::new(cache.alg());
    v.set_issuer(&[e.issuer]);
    v.set_audience(&[e.audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.leeway = e.leeway;
    v.validate_nbf = true; // off by default in jsonwebtoken
    let raw: serde_json::Value = decode(token, &key, &v)?.claims;
    let iat = raw["iat"].as_u64().ok_or_else(|| anyhow!("iat not a number"))?;
    let n = now();
    if iat > n + e.leeway {
        bail!("iat in the future");
    }
    if let Some(max) = e.max_age {
        if iat + max + e.leeway < n {
            bail!("iat too old");
        }
    }
    if let Some(want) = e.nonce {
        let got = raw["nonce"].as_str().ok_or_else(|| anyhow!("nonce missing"))?;
        if !ct_eq(got.as_bytes(), want.as_bytes()) {
            bail!("nonce mismatch");
        }
    }
    if e.check_azp {
        let multi = raw["aud"].as_array().is_some_and(|a| a.len() > 1);
        match raw.get("azp").and_then(|v| v.as_str()) {
            Some(azp) if azp != e.audience => bail!("azp {azp:?} is not our client_id"),
            None if multi => bail!("several audiences and no azp"),
            _ => {}
        }
        if let Some(a) = raw["aud"].as_array() {
            if a.iter().any(|x| x.as_str() != Some(e.audience)) {
                bail!("untrusted extra audience"); // same default as openidconnect
            }
        }
    }
    Ok((serde_json::from_value(raw.clone())?, raw))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
