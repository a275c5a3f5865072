//! An issuer's keys and the tokens it signs, against a JWKS served on 127.0.0.1: the classic
//! attacks on JWT verification fail, and keys are fetched only from the configured place, at a
//! bounded rate.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use keyward_server::identity::jwks::{Expect, Jwks, JwtRefused};
use serde_json::{Value, json};

const ISS: &str = "https://issuer.example";
const AUD: &str = "keyward";

struct Signer {
    kid: String,
    pair: rcgen::KeyPair,
}

impl Signer {
    fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            pair: rcgen::KeyPair::generate().unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let raw = self.pair.public_key_raw();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
               "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        encode(
            &header,
            claims,
            &EncodingKey::from_ec_der(&self.pair.serialize_der()),
        )
        .unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "system:serviceaccount:acme:app",
           "iat": now(), "exp": now() + 600})
}

fn expect() -> Expect {
    Expect {
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway: 30,
    }
}

/// A JWKS endpoint that serves what the test puts in it and counts its requests.
struct Endpoint {
    url: String,
    set: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn endpoint(keys: Vec<Value>) -> Endpoint {
    let set = Arc::new(Mutex::new(json!({ "keys": keys })));
    let hits = Arc::new(AtomicUsize::new(0));
    let (s, h) = (set.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (s, h) = (s.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Endpoint {
        url: format!("http://{addr}/jwks"),
        set,
        hits,
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_token_of_the_issuer_verifies_and_the_classic_attacks_fail() {
    let signer = Signer::new("k1");
    let ep = endpoint(vec![signer.jwk()]).await;
    let jwks = Jwks::from_url(http(), &ep.url, Algorithm::ES256, Duration::from_secs(30));
    let good = jwks
        .verify(&signer.sign(&claims()), &expect())
        .await
        .unwrap();
    assert_eq!(good["sub"], "system:serviceaccount:acme:app");

    // alg: none, with no signature.
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(claims().to_string());
    let none = jwks.verify(&format!("{header}.{body}."), &expect()).await;
    assert!(matches!(none, Err(JwtRefused::Malformed(_))), "{none:?}");

    // HS256 "signed" with the issuer's public key (algorithm confusion).
    let public = serde_json::to_vec(&signer.jwk()).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let confused = encode(&h, &claims(), &EncodingKey::from_secret(&public)).unwrap();
    let refused = jwks.verify(&confused, &expect()).await;
    assert!(
        matches!(refused, Err(JwtRefused::Algorithm(_))),
        "{refused:?}"
    );

    // Another issuer, another audience, expired, not yet valid, issued in the future.
    let bad = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        signer.sign(&c)
    };
    for (what, token) in [
        ("iss", bad(&|c| c["iss"] = json!("https://evil.example"))),
        ("aud", bad(&|c| c["aud"] = json!("someone-else"))),
        ("exp", bad(&|c| c["exp"] = json!(now() - 120))),
        ("nbf", bad(&|c| c["nbf"] = json!(now() + 3600))),
        ("iat", bad(&|c| c["iat"] = json!(now() + 3600))),
        (
            "no exp",
            bad(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
    ] {
        let r = jwks.verify(&token, &expect()).await;
        assert!(matches!(r, Err(JwtRefused::Invalid(_))), "{what}: {r:?}");
    }
    // A critical header extension the verifier does not understand.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    let header = serde_json::to_value(&h).unwrap();
    let mut header = header.as_object().unwrap().clone();
    header.insert("crit".into(), json!(["exp-ext"]));
    header.insert("exp-ext".into(), json!(1));
    let good_token = signer.sign(&claims());
    let mut parts: Vec<String> = good_token.split('.').map(str::to_owned).collect();
    parts[0] = B64.encode(Value::Object(header).to_string());
    let r = jwks.verify(&parts.join("."), &expect()).await;
    assert!(matches!(r, Err(JwtRefused::Malformed(_))), "{r:?}");
    // A tampered payload.
    let token = signer.sign(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["sub"] = json!("system:serviceaccount:kube-system:admin");
    parts[1] = B64.encode(c.to_string());
    let r = jwks.verify(&parts.join("."), &expect()).await;
    assert!(matches!(r, Err(JwtRefused::Invalid(_))), "{r:?}");
    assert_eq!(
        ep.hits.load(Ordering::SeqCst),
        1,
        "one fetch served all of it"
    );
}

#[tokio::test]
async fn keys_come_only_from_the_configured_place_at_a_bounded_rate() {
    let signer = Signer::new("k1");
    let ep = endpoint(vec![signer.jwk()]).await;
    let attacker = endpoint(vec![]).await;
    let jwks = Jwks::from_url(http(), &ep.url, Algorithm::ES256, Duration::from_secs(30));
    jwks.verify(&signer.sign(&claims()), &expect())
        .await
        .unwrap();

    // A token naming a key URL of its own, signed by a key the issuer does not have.
    let stranger = Signer::new("k-attacker");
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k-attacker".into());
    h.jku = Some(attacker.url.clone());
    let token = encode(
        &h,
        &claims(),
        &EncodingKey::from_ec_der(&stranger.pair.serialize_der()),
    )
    .unwrap();
    for _ in 0..5 {
        let r = jwks.verify(&token, &expect()).await;
        assert_eq!(r, Err(JwtRefused::UnknownKey));
    }
    assert_eq!(
        attacker.hits.load(Ordering::SeqCst),
        0,
        "never the token's URL"
    );
    // The set was fetched a moment ago: none of the five unknown kids fetched it again (at
    // most one fetch per interval, whatever tokens name).
    assert_eq!(ep.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rotated_key_is_found_by_one_refetch() {
    let old = Signer::new("k1");
    let ep = endpoint(vec![old.jwk()]).await;
    let jwks = Jwks::from_url(http(), &ep.url, Algorithm::ES256, Duration::ZERO);
    jwks.verify(&old.sign(&claims()), &expect()).await.unwrap();
    let new = Signer::new("k2");
    *ep.set.lock().unwrap() = json!({ "keys": [new.jwk()] });
    jwks.verify(&new.sign(&claims()), &expect()).await.unwrap();
    // The retired key is gone with the refetch.
    let r = jwks.verify(&old.sign(&claims()), &expect()).await;
    assert!(r.is_err());
}

#[tokio::test]
async fn a_dead_key_endpoint_is_a_clear_refusal_and_a_symmetric_key_is_never_used() {
    let dead = format!("http://{}/jwks", keyward_testkit::closed_addr());
    let jwks = Jwks::from_url(http(), &dead, Algorithm::ES256, Duration::from_secs(30));
    let signer = Signer::new("k1");
    let r = jwks.verify(&signer.sign(&claims()), &expect()).await;
    assert!(matches!(r, Err(JwtRefused::KeysUnavailable(_))), "{r:?}");

    // A set that publishes an HMAC secret: no verifier takes it.
    let secret = b"0123456789abcdef0123456789abcdef";
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "oct", "kid": "h", "k": B64.encode(secret)}
    ]}))
    .unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("h".into());
    let token = encode(&h, &claims(), &EncodingKey::from_secret(secret)).unwrap();
    let fixed = Jwks::fixed(&set, Algorithm::HS256);
    assert_eq!(
        fixed.verify(&token, &expect()).await,
        Err(JwtRefused::UnknownKey)
    );
}

/// A program in a Kubernetes-shaped environment resolves its organization's key with its
/// projected service-account token, and no Keyward token anywhere; other namespaces, other
/// audiences and other issuers are refused.
#[tokio::test]
async fn a_workload_token_resolves_its_organizations_key_and_nothing_else() {
    use keyward_server::identity::workloads::Workloads;
    use keyward_testkit::TestServer;
    let signer = Signer::new("k1");
    let ep = endpoint(vec![signer.jwk()]).await;
    let rules = Workloads::parse(&format!(
        "workloads:\n  - name: k8s\n    issuer: {ISS}\n    jwks_url: {}\n    algorithm: ES256\n    audience: {AUD}\n    match: {{ sub: \"system:serviceaccount:acme:*\" }}\n    role: resolver\n    org: acme\n",
        ep.url
    ))
    .unwrap();
    let server = TestServer::start(|s| s.with_workloads(rules)).await;
    let (admin, _) = server.token(keyward_store::Role::Admin, None).await;
    let made = server
        .api(
            reqwest::Method::POST,
            "/api/v1/orgs",
            &admin,
            Some(json!({"id": "acme"})),
        )
        .await;
    assert_eq!(made.status(), 201);
    let made = server
        .api(
            reqwest::Method::POST,
            "/api/provider-credentials/create",
            &admin,
            Some(json!({"organization_id": "acme", "provider": "openai", "credential_name": "prod", "api_key": "sk-proj-WORKLOADCANARY0123456789abcdefgh"})),
        )
        .await;
    assert_eq!(made.status(), 201);

    let token = signer.sign(&claims());
    let who = server
        .api(reqwest::Method::GET, "/api/v1/whoami", &token, None)
        .await;
    assert_eq!(who.status(), 200);
    let who: Value = who.json().await.unwrap();
    assert_eq!(who["role"], "resolver");
    assert_eq!(who["org"], "acme");
    let resolve = |token: String| {
        let server = &server;
        async move {
            server
                .api(
                    reqwest::Method::POST,
                    "/api/v1/resolve",
                    &token,
                    Some(json!({"organization_id": "acme", "provider": "openai"})),
                )
                .await
        }
    };
    let got = resolve(token).await;
    assert_eq!(got.status(), 200);
    assert!(got.text().await.unwrap().contains("WORKLOADCANARY"));
    // The audit log names the workload.
    let events: Value = server
        .api(
            reqwest::Method::GET,
            "/api/v1/events?filter=action%3Dresolve",
            &admin,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        events
            .to_string()
            .contains("workload:k8s:system:serviceaccount:acme:app"),
        "{events}"
    );

    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        signer.sign(&c)
    };
    for (what, token) in [
        (
            "a line break in the subject",
            with(&|c| c["sub"] = json!("system:serviceaccount:acme:a\nINFO forged")),
        ),
        (
            "another namespace",
            with(&|c| c["sub"] = json!("system:serviceaccount:globex:app")),
        ),
        ("another audience", with(&|c| c["aud"] = json!("vault"))),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        ("expired", with(&|c| c["exp"] = json!(now() - 600))),
    ] {
        assert_eq!(resolve(token).await.status(), 401, "{what}");
    }
    // A token of the right shape signed by a stranger.
    let stranger = Signer::new("k1");
    assert_eq!(resolve(stranger.sign(&claims())).await.status(), 401);
    server.stop().await;
}

/// At the gateway a workload's platform token stands in for a `kwg_` token: its rule names the
/// organization, the providers and a rate; the upstream gets the organization's key, never the
/// platform token; another organization's workload, an expired token or a wrong audience get
/// nothing.
#[tokio::test]
async fn a_workload_token_uses_the_gateway_as_its_rule_allows() {
    use keyward_server::identity::workloads::Workloads;
    use keyward_testkit::{MockProvider, TestServer};
    let signer = Signer::new("k1");
    let ep = endpoint(vec![signer.jwk()]).await;
    let mock = MockProvider::start().await;
    let rules = Workloads::parse(&format!(
        "workloads:\n  - name: acme-app\n    issuer: {ISS}\n    jwks_url: {}\n    algorithm: ES256\n    audience: {AUD}\n    match: {{ sub: \"system:serviceaccount:acme:*\" }}\n    gateway: {{ org: acme, providers: [openai], rpm: 3 }}\n",
        ep.url
    ))
    .unwrap();
    let server = TestServer::start(|s| s.with_workloads(rules)).await;
    let (admin, _) = server.token(keyward_store::Role::Admin, None).await;
    let key = "sk-proj-GATEWAYWORKLOAD0123456789abcdefgh";
    for (path, body) in [
        ("/api/v1/orgs", json!({"id": "acme"})),
        (
            "/api/v1/credentials",
            json!({"organization_id": "acme", "provider": "openai", "name": "prod",
                   "api_key": key, "fields": {"base_url": format!("{}/v1", mock.url())}}),
        ),
    ] {
        let made = server
            .api(reqwest::Method::POST, path, &admin, Some(body))
            .await;
        assert_eq!(made.status(), 201, "{path}");
    }
    let call = |token: String, provider: &'static str| {
        let base = server.base.clone();
        async move {
            http()
                .post(format!("{base}/gateway/{provider}/v1/chat/completions"))
                .bearer_auth(token)
                .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
        }
    };
    let token = signer.sign(&claims());
    // The rate below counts one calendar minute.
    keyward_testkit::room_in_this_minute(Duration::from_secs(20)).await;
    let ok = call(token.clone(), "openai").await;
    assert_eq!(ok.status(), 200);
    let seen = mock.last();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(
        !format!("{seen:?}").contains(&token),
        "the platform token went upstream"
    );
    // Only the providers its rule names.
    assert_ne!(call(token.clone(), "anthropic").await.status(), 200);
    // Its rate: 3 a minute, the first call counted.
    assert_eq!(call(token.clone(), "openai").await.status(), 200);
    assert_eq!(call(token.clone(), "openai").await.status(), 200);
    assert_eq!(call(token.clone(), "openai").await.status(), 429);
    // At the API it has no role: the rule gives only the gateway.
    let who = server
        .api(reqwest::Method::GET, "/api/v1/whoami", &token, None)
        .await;
    assert_eq!(who.status(), 401);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        signer.sign(&c)
    };
    for (what, bad) in [
        (
            "another namespace",
            with(&|c| c["sub"] = json!("system:serviceaccount:globex:app")),
        ),
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(now() - 3600);
                c["iat"] = json!(now() - 7200);
            }),
        ),
        (
            "another audience",
            with(&|c| c["aud"] = json!("someone-else")),
        ),
        ("signed by another key", Signer::new("k1").sign(&claims())),
    ] {
        let r = call(bad, "openai").await;
        assert_eq!(r.status(), 401, "{what}");
    }
    assert_eq!(mock.hits(), 3, "refused calls never reached the provider");
    server.stop().await;
}

/// GitHub Actions-shaped tokens: the rule matches the repository (by id and name) and the
/// branch; another branch, a fork's repository, or a token for another audience get nothing.
#[tokio::test]
async fn a_github_actions_token_is_matched_on_repository_and_ref() {
    use keyward_server::identity::workloads::Workloads;
    const GH: &str = "https://token.actions.githubusercontent.com";
    let signer = Signer::new("gh1");
    let ep = endpoint(vec![signer.jwk()]).await;
    let rules = Workloads::parse(&format!(
        "workloads:\n  - name: github\n    issuer: {GH}\n    jwks_url: {}\n    algorithm: ES256\n    audience: https://keyward.example.com\n    match: {{ repository_id: \"123456\", repository: acme/app, ref: refs/heads/main }}\n    role: resolver\n    org: acme\n",
        ep.url
    ))
    .unwrap();
    let token = |change: &dyn Fn(&mut Value)| {
        let mut c = json!({
            "iss": GH, "aud": "https://keyward.example.com",
            "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app",
            "repository_id": "123456", "repository_owner": "acme", "repository_owner_id": "42",
            "ref": "refs/heads/main", "workflow": "deploy", "event_name": "push",
            "iat": now(), "nbf": now(), "exp": now() + 300
        });
        change(&mut c);
        signer.sign(&c)
    };
    let p = rules.authenticate(&token(&|_| {})).await.unwrap();
    assert_eq!(
        p.token_id,
        "workload:github:repo:acme/app:ref:refs/heads/main"
    );
    assert_eq!(p.grants[0].role, keyward_store::Role::Resolver);
    for (what, change) in [
        (
            "another branch",
            &(|c: &mut Value| c["ref"] = json!("refs/heads/feature")) as &dyn Fn(&mut Value),
        ),
        ("a fork with the same name", &|c: &mut Value| {
            c["repository_id"] = json!("999")
        }),
        ("another audience", &|c: &mut Value| {
            c["aud"] = json!("https://other.example")
        }),
        ("not yet valid", &|c: &mut Value| {
            c["nbf"] = json!(now() + 600)
        }),
        // A subject that would read backwards in the audit log (U+202E).
        ("a right-to-left override in sub", &|c: &mut Value| {
            c["sub"] = json!("repo:acme/app:ref:refs/heads/main\u{202e}nimda")
        }),
    ] {
        assert!(rules.authenticate(&token(change)).await.is_none(), "{what}");
    }
}
