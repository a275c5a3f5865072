//! Probe for Keyward issue 22: OIDC console sign-in + workload JWTs, against npm oidc-provider.
//!
//! env: NODE (default `node`), PROVIDER_JS (path to provider.mjs), LOGIN_DRIVER (login_driver.py)
//! Spawns the OP itself on 127.0.0.1:<ephemeral>, kills it on exit (kill_on_drop).

mod jwks;
#[cfg(feature = "oidc-crate")]
mod with_crate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use jwks::{Expect, JwksCache, now, verify};

pub const CLIENT_ID: &str = "keyward-console";
pub const CLIENT_SECRET: &str = "console-secret-0123456789abcdef";
pub const REDIRECT: &str = "http://127.0.0.1:8089/ui/oidc/callback";

#[derive(Deserialize, Debug)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

#[derive(Deserialize, Debug)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: String,
    token_type: String,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct IdClaims {
    sub: String,
    email: Option<String>,
    email_verified: Option<bool>,
    #[serde(default)]
    groups: Vec<String>,
}

pub fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("getrandom");
    B64.encode(b)
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}
pub fn pkce() -> Pkce {
    let verifier = random_b64(32); // 43 chars, RFC 7636 allows 43..128
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

pub fn login_via_driver(auth_url: &str, user: &str) -> Result<url::Url> {
    let driver = std::env::var("LOGIN_DRIVER").unwrap_or("../login_driver.py".into());
    let out = std::process::Command::new("python3").arg(driver).arg(auth_url).arg(user).output()?;
    ensure!(out.status.success(), "login driver: {}", String::from_utf8_lossy(&out.stderr));
    Ok(url::Url::parse(String::from_utf8(out.stdout)?.trim())?)
}

async fn start_op() -> Result<(tokio::process::Child, String)> {
    let node = std::env::var("NODE").unwrap_or("node".into());
    let js = std::env::var("PROVIDER_JS").unwrap_or("../idp/provider.mjs".into());
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(node)
        .arg(js)
        .env("OP_PORT", "0")
        .env("RP_PORT", "8089")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await??.context("OP exited")?;
    let ready: Value = serde_json::from_str(line.strip_prefix("READY ").context("no READY")?)?;
    let issuer = ready["issuer"].as_str().unwrap().to_owned();
    println!("[op] oidc-provider up at {issuer} in {:?}", t0.elapsed());
    Ok((child, issuer))
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none()) // SSRF: never follow redirects to OP/JWKS
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .build()
        .unwrap()
}

/// Hand-written code flow: discovery -> auth URL (PKCE S256 + state + nonce) -> login ->
/// callback checks -> token POST (client_secret_basic) -> ID token verified with jsonwebtoken.
async fn code_flow(client: &reqwest::Client, disc: &Discovery, cache: &JwksCache, user: &str) -> Result<(String, Value)> {
    let (state, nonce, p) = (random_b64(16), random_b64(16), pkce());
    // Keyward would keep {state, nonce, verifier, return_to, created_at} server-side or in a
    // sealed cookie; here they simply stay in this stack frame.
    let auth = url::Url::parse_with_params(&disc.authorization_endpoint, &[
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email groups"),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &p.challenge),
        ("code_challenge_method", "S256"),
    ])?;
    let cb = login_via_driver(auth.as_str(), user)?;
    let q: HashMap<_, _> = cb.query_pairs().into_owned().collect();
    if let Some(err) = q.get("error") {
        bail!("OP error {err}");
    }
    ensure!(q.get("state") == Some(&state), "state mismatch");
    ensure!(q.get("iss").is_none_or(|i| *i == disc.issuer), "RFC 9207 iss mismatch (mix-up)");
    let code = q.get("code").context("no code")?;
    let resp = client
        .post(&disc.token_endpoint)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", &p.verifier)])
        .send()
        .await?;
    ensure!(resp.status().is_success(), "token endpoint {}: {}", resp.status(), resp.text().await?);
    let tok: TokenResponse = resp.json().await?;
    ensure!(tok.token_type.eq_ignore_ascii_case("bearer"));
    let id_token = tok.id_token.context("no id_token")?;
    let e = Expect { issuer: &disc.issuer, audience: CLIENT_ID, leeway: 60, max_age: Some(600), nonce: Some(&nonce), check_azp: true, typ: None };
    let (claims, raw): (IdClaims, Value) = verify(cache, &id_token, &e).await?;
    let role = if claims.groups.iter().any(|g| g == "keyward-admins") { "admin" } else if claims.groups.iter().any(|g| g == "keyward-readers") { "viewer" } else { "none" };
    println!("  id_token ok: sub={} groups={:?} email_verified={:?} -> role {role}", claims.sub, claims.groups, claims.email_verified);
    // replay: same code again must fail
    let replay = client
        .post(&disc.token_endpoint)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", &p.verifier)])
        .send()
        .await?;
    println!("  code replay -> {} {}", replay.status(), replay.text().await?);
    let _ = tok.access_token;
    Ok((id_token, raw))
}

/// Relative, same-origin paths only ("/ui/keys?x=1"); everything else falls back to "/ui/".
fn safe_return_to(s: &str) -> &str {
    let ok = s.starts_with('/')
        && !s.starts_with("//")
        && !s.starts_with("/\\")
        && !s.chars().any(|c| c.is_control() || c == '\\')
        && s.len() < 512;
    if ok { s } else { "/ui/" }
}

#[derive(Default)]
struct TestIdp {
    jwks: RwLock<Value>,
    jwks_hits: AtomicUsize,
    evil_hits: AtomicUsize,
}

fn es256_key() -> (EncodingKey, Value, Vec<u8>) {
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePrivateKey;
    let sk = SigningKey::random(&mut rand::rngs::OsRng);
    let der = sk.to_pkcs8_der().unwrap();
    let pt = sk.verifying_key().to_encoded_point(false);
    let kid = format!("test-{}", &random_b64(6));
    let jwk = json!({"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":kid,
        "x": B64.encode(pt.x().unwrap()), "y": B64.encode(pt.y().unwrap())});
    (EncodingKey::from_ec_der(der.as_bytes()), jwk, pt.as_bytes().to_vec())
}

fn mint(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value, jku: Option<String>) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    h.jku = jku;
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

async fn workload_tests(op_issuer: &str, disc: &Discovery) -> Result<()> {
    println!("\n== workload tokens");
    let client = http_client(Duration::from_secs(5));
    // (a) JWT access token from oidc-provider (client_credentials + resource indicator)
    let tok: Value = client
        .post(&disc.token_endpoint)
        .basic_auth("ci-runner", Some("ci-runner-secret-0123456789abcdef"))
        .form(&[("grant_type", "client_credentials"), ("resource", "https://keyward.test"), ("scope", "keyward:use")])
        .send()
        .await?
        .json()
        .await?;
    let at = tok["access_token"].as_str().context("no access_token")?;
    let op_cache = JwksCache::new(client.clone(), disc.jwks_uri.clone(), Algorithm::RS256, Duration::from_secs(30));
    let e = Expect { issuer: op_issuer, audience: "https://keyward.test", leeway: 60, max_age: None, nonce: None, check_azp: false, typ: Some(&["at+jwt", "jwt"]) };
    let (_, c): (Value, Value) = verify(&op_cache, at, &e).await?;
    // operator rule: iss = op, repository = acme/app, ref = refs/heads/main  -> role user, org acme
    let rule_ok = c["repository"] == "acme/app" && c["ref"] == "refs/heads/main";
    println!("  OP client_credentials JWT ok: sub={} repository={} ref={} -> rule match {rule_ok}", c["sub"], c["repository"], c["ref"]);

    // (b) a JWKS served by the test itself (axum on 127.0.0.1:0), tokens minted by the test
    let idp = Arc::new(TestIdp::default());
    let (key, jwk, pub_sec1) = es256_key();
    let kid = jwk["kid"].as_str().unwrap().to_owned();
    *idp.jwks.write().unwrap() = json!({"keys":[jwk.clone()]});
    let app = axum::Router::new()
        .route("/jwks", axum::routing::get({
            let idp = idp.clone();
            move || async move {
                idp.jwks_hits.fetch_add(1, Ordering::Relaxed);
                axum::Json(idp.jwks.read().unwrap().clone())
            }
        }))
        .route("/slow-jwks", axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "{}"
        }))
        .route("/evil", axum::routing::get({
            let idp = idp.clone();
            move || async move {
                idp.evil_hits.fetch_add(1, Ordering::Relaxed);
                "{}"
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let iss = "https://token.actions.githubusercontent.com"; // any string; only matched exactly
    let aud = "https://keyward.test";
    let cache = JwksCache::new(http_client(Duration::from_secs(2)), format!("{base}/jwks"), Algorithm::ES256, Duration::from_secs(1));
    let e = Expect { issuer: iss, audience: aud, leeway: 30, max_age: None, nonce: None, check_azp: false, typ: None };
    let n = now();
    let good = json!({"iss":iss,"aud":aud,"sub":"repo:acme/app:ref:refs/heads/main","iat":n,"exp":n+300,"nbf":n-5,
        "repository":"acme/app","ref":"refs/heads/main","repository_owner":"acme"});
    let with = |k: &str, v: Value| { let mut c = good.clone(); c[k] = v; c };
    let without = |k: &str| { let mut c = good.clone(); c.as_object_mut().unwrap().remove(k); c };

    let mut results = Vec::new();
    let mut case = |name: &str, r: Result<(Value, Value)>, want_ok: bool| {
        let ok = r.is_ok();
        let verdict = if ok == want_ok { "as expected" } else { "UNEXPECTED" };
        let why = r.err().map(|e| e.to_string()).unwrap_or_default();
        println!("  {:<44} {:<8} {verdict:<11} {why}", name, if ok { "accepted" } else { "rejected" });
        results.push(ok == want_ok);
    };
    case("valid ES256 token", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &good, None), &e).await, true);
    let none_tok = format!("{}.{}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#), B64.encode(good.to_string()));
    case("alg none", verify(&cache, &none_tok, &e).await, false);
    let hs_pub = mint(&EncodingKey::from_secret(&pub_sec1), Algorithm::HS256, &kid, &good, None);
    case("HS256 signed with the public key (SEC1)", verify(&cache, &hs_pub, &e).await, false);
    let hs_jwk = mint(&EncodingKey::from_secret(jwk.to_string().as_bytes()), Algorithm::HS256, &kid, &good, None);
    case("HS256 signed with the public JWK JSON", verify(&cache, &hs_jwk, &e).await, false);
    case("wrong iss", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("iss", json!("https://evil.test")), None), &e).await, false);
    case("wrong aud", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("aud", json!("https://other.test")), None), &e).await, false);
    case("aud array incl. ours (workload: allowed)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("aud", json!([aud, "x"])), None), &e).await, true);
    case("expired (exp = now-120, leeway 30)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("exp", json!(n - 120)), None), &e).await, false);
    case("exp within leeway (now-10)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("exp", json!(n - 10)), None), &e).await, true);
    case("nbf in the future (now+600)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("nbf", json!(n + 600)), None), &e).await, false);
    case("iat in the future (now+600)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &with("iat", json!(n + 600)), None), &e).await, false);
    case("no exp", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &without("exp"), None), &e).await, false);
    case("no iat", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &without("iat"), None), &e).await, false);
    let (other_key, _, _) = es256_key();
    case("right kid, signed by another key", verify(&cache, &mint(&other_key, Algorithm::ES256, &kid, &good, None), &e).await, false);
    // ID-token-only rules (nonce, azp, extra audiences), on tokens minted by the test
    let eid = Expect { issuer: iss, audience: "keyward-console", leeway: 30, max_age: Some(600), nonce: Some("n-1"), check_azp: true, typ: None };
    let idt = with("aud", json!("keyward-console")); let idt = { let mut c = idt; c["nonce"] = json!("n-1"); c };
    let idw = |k: &str, v: Value| { let mut c = idt.clone(); c[k] = v; c };
    case("id_token ok (nonce n-1)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &idt, None), &eid).await, true);
    case("id_token nonce mismatch", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &idw("nonce", json!("n-2")), None), &eid).await, false);
    case("id_token 2 audiences, no azp", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &idw("aud", json!(["keyward-console", "other-rp"])), None), &eid).await, false);
    case("id_token azp = other client", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &idw("azp", json!("other-rp")), None), &eid).await, false);
    case("id_token iat 1 h old (max_age 600)", verify(&cache, &mint(&key, Algorithm::ES256, &kid, &idw("iat", json!(n - 3600)), None), &eid).await, false);

    tokio::time::sleep(Duration::from_millis(1100)).await; // let the 1 s refetch window pass
    let fetch_before = cache.fetches.load(Ordering::Relaxed);
    let evil_kid = format!("{base}/evil");
    let t = mint(&other_key, Algorithm::ES256, &evil_kid, &good, Some(format!("{base}/evil")));
    case("kid=attacker URL + jku header", verify(&cache, &t, &e).await, false);
    case("again at once (refetch rate-limited)", verify(&cache, &t, &e).await, false);
    println!("    JWKS fetches for the two unknown-kid tokens: {}, hits on /evil: {}",
        cache.fetches.load(Ordering::Relaxed) - fetch_before, idp.evil_hits.load(Ordering::Relaxed));

    // rotation at the test IdP: new key published, token with the new kid -> one refetch
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (key2, jwk2, _) = es256_key();
    let kid2 = jwk2["kid"].as_str().unwrap().to_owned();
    *idp.jwks.write().unwrap() = json!({"keys":[jwk2, jwk]});
    let f0 = cache.fetches.load(Ordering::Relaxed);
    case("after rotation: token with the new kid", verify(&cache, &mint(&key2, Algorithm::ES256, &kid2, &good, None), &e).await, true);
    println!("    fetches for the rotation: {}", cache.fetches.load(Ordering::Relaxed) - f0);

    // slow JWKS: client timeout 2 s -> fail closed, quickly; cached kids unaffected
    let slow = JwksCache::new(http_client(Duration::from_secs(2)), format!("{base}/slow-jwks"), Algorithm::ES256, Duration::from_secs(30));
    let t0 = Instant::now();
    let r = verify::<Value>(&slow, &mint(&key, Algorithm::ES256, &kid, &good, None), &e).await;
    case(&format!("slow JWKS (30 s) -> gave up after {:.1?}", t0.elapsed()), r, false);
    let down = JwksCache::new(http_client(Duration::from_secs(2)), "http://127.0.0.1:9/jwks".into(), Algorithm::ES256, Duration::from_secs(30));
    let t0 = Instant::now();
    let r = verify::<Value>(&down, &mint(&key, Algorithm::ES256, &kid, &good, None), &e).await;
    case(&format!("JWKS down (port 9) -> gave up after {:.1?}", t0.elapsed()), r, false);

    server.abort();
    ensure!(results.iter().all(|x| *x), "some workload case was unexpected");
    println!("  open redirect guard: {:?}", ["/ui/keys?x=1", "//evil.test/", "/\\evil.test", "https://evil.test/", "javascript:alert(1)"].map(|s| (s, safe_return_to(s))));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (mut op, issuer) = start_op().await?;
    let client = http_client(Duration::from_secs(5));

    println!("\n== hand-written code flow (reqwest 0.13 + jsonwebtoken 11)");
    let t0 = Instant::now();
    let disc: Discovery = client.get(format!("{issuer}/.well-known/openid-configuration")).send().await?.error_for_status()?.json().await?;
    ensure!(disc.issuer == issuer, "discovery issuer {} != configured {issuer}", disc.issuer);
    ensure!(disc.id_token_signing_alg_values_supported.iter().any(|a| a == "RS256"));
    let cache = JwksCache::new(client.clone(), disc.jwks_uri.clone(), Algorithm::RS256, Duration::from_secs(0));
    let (id_token, _) = code_flow(&client, &disc, &cache, "alice").await?;
    println!("  full flow in {:?}; JWKS fetches so far: {}", t0.elapsed(), cache.fetches.load(Ordering::Relaxed));
    let rot: Value = client.post(format!("{issuer}/__test/rotate?retire=1")).send().await?.json().await?;
    println!("  OP rotated signing keys (old retired): {rot}");
    code_flow(&client, &disc, &cache, "bob").await?;
    println!("  after rotation JWKS fetches: {} (refetched on unknown kid)", cache.fetches.load(Ordering::Relaxed));
    let logout = url::Url::parse_with_params(disc.end_session_endpoint.as_deref().context("no end_session_endpoint")?, &[
        ("id_token_hint", id_token.as_str()),
        ("post_logout_redirect_uri", "http://127.0.0.1:8089/ui/"),
        ("client_id", CLIENT_ID),
        ("state", "lo-1"),
    ])?;
    println!("  RP-initiated logout URL: {}...", &logout.as_str()[..90]);

    #[cfg(feature = "oidc-crate")]
    with_crate::run(&client, &issuer).await?;

    workload_tests(&issuer, &disc).await?;

    op.kill().await?;
    println!("\nall probe checks passed");
    let _ = anyhow!("");
    Ok(())
}
