//! What signing in as a workload or a person costs beside a static token, measured on a real
//! server on 127.0.0.1 in one run:
//!
//! - `POST /api/v1/resolve` (acme's OpenAI key) with an API token (`kwt_`), an HS256 JWT of
//!   `KEYWARD_JWT_VERIFICATION_KEYS`, and a workload's ES256 platform token checked against
//!   its issuer's published keys (served here, fetched once);
//! - the console's credentials page in a token's session and in a person's (single sign-on:
//!   the person's grants from the session row, their requests run as them for the audit log).
//!
//! Prints each case's p50, p99 and mean.
//!
//! ```sh
//! cargo bench -p keyward-server --bench identity                 # 1000 requests per case
//! KEYWARD_BENCH_REQUESTS=5000 cargo bench -p keyward-server --bench identity
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_server::identity::workloads::Workloads;
use keyward_server::{JwtKeys, Role};
use keyward_store::{Person, RoleGrant, SessionLimits};
use keyward_testkit::TestServer;
use secrecy::ExposeSecret as _;
use serde_json::json;

fn main() {
    let requests: usize = std::env::var("KEYWARD_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // The workload issuer's key and its published set, served on 127.0.0.1.
        let pair = rcgen::KeyPair::generate().expect("key");
        let raw = pair.public_key_raw();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let jwks_url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let j = jwks.clone();
                async move { axum::Json(j) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let issuer = "https://kubernetes.default.svc.cluster.local";
        let rules = Workloads::parse(&format!(
            "workloads:\n  - name: k8s\n    issuer: {issuer}\n    jwks_url: {jwks_url}\n    algorithm: ES256\n    audience: keyward\n    match: {{ sub: \"system:serviceaccount:acme:*\" }}\n    role: resolver\n    org: acme\n"
        ))
        .expect("rules");
        let hs_secret = "bench-hs256-secret-0123456789abcdef";
        let jwt_keys = JwtKeys::parse(&format!("bench:{hs_secret}")).expect("keys");
        let server = TestServer::start(|s| s.with_workloads(rules).with_jwt_keys(jwt_keys)).await;
        let vault = &server.vault;
        let acme = OrgId::new("acme").expect("org");
        vault.create_org(&acme, None, "bench").await.expect("org");
        vault
            .add_credentials(
                vec![NewCredential::new(
                    acme.clone(),
                    Provider::get("openai").expect("provider"),
                    CredentialName::new("prod").expect("name"),
                    Some("sk-proj-BENCH0123456789abcdefghijWXYZ".to_owned().into()),
                )],
                "bench",
            )
            .await
            .expect("cred");
        let (api_token, _) = vault
            .create_token("bench", Role::Resolver, Some(&acme), None, "bench")
            .await
            .expect("token");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("bench".into());
        let hs256 = jsonwebtoken::encode(
            &header,
            &json!({"sub": "ci", "role": "resolver", "org": "acme", "exp": now + 3600}),
            &jsonwebtoken::EncodingKey::from_secret(hs_secret.as_bytes()),
        )
        .expect("hs256");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        let workload = jsonwebtoken::encode(
            &header,
            &json!({"iss": issuer, "aud": ["keyward"], "sub": "system:serviceaccount:acme:app",
                    "iat": now, "exp": now + 3600}),
            &jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
        )
        .expect("es256");

        // Console sessions: an org_admin token's, and a person's with the same grant.
        let (admin_token, _) = vault
            .create_token("bench-ui", Role::OrgAdmin, Some(&acme), None, "bench")
            .await
            .expect("token");
        let signed_in = server.sign_in(admin_token.expose_secret()).await;
        let (token_cookie, _) = TestServer::session_cookie(&signed_in);
        let (person_id, _) = vault
            .create_sso_session(
                Person {
                    issuer: "https://idp.example".into(),
                    subject: "bob".into(),
                    email: Some("bob@example.test".into()),
                },
                vec![RoleGrant {
                    role: Role::OrgAdmin,
                    org: Some(acme.clone()),
                }],
                SessionLimits::default(),
                "127.0.0.1",
            )
            .await
            .expect("person");
        let person_cookie = format!("kw_session={}", person_id.expose_secret());

        let (addr, client) = (server.addr, &server.client);
        println!("identity, {requests} sequential requests per case");
        println!("{:<52} {:>9} {:>9} {:>9}", "case", "p50", "p99", "mean");
        let resolve = format!("http://{addr}/api/v1/resolve");
        let body = json!({"organization_id": "acme", "provider": "openai"});
        for (label, bearer) in [
            ("resolve, API token (kwt_)", api_token.expose_secret().to_owned()),
            ("resolve, HS256 JWT", hs256.clone()),
            ("resolve, workload token (ES256, issuer's JWKS)", workload.clone()),
        ] {
            let times = measure(requests, || {
                client.post(&resolve).bearer_auth(&bearer).json(&body).send()
            })
            .await;
            report(label, &times);
        }
        let page = format!("http://{addr}/ui/credentials?org=acme");
        for (label, cookie) in [
            ("console page, a token's session", token_cookie.as_str()),
            ("console page, a person's session (sso)", person_cookie.as_str()),
        ] {
            let times = measure(requests, || client.get(&page).header("cookie", cookie).send()).await;
            report(label, &times);
        }
    });
}

/// `requests` sequential calls (after 20 that warm the caches), each answered 200.
async fn measure<F>(requests: usize, call: impl Fn() -> F) -> Vec<Duration>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + 20 {
        let start = Instant::now();
        let resp = call().await.expect("request");
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.expect("body");
        assert!(!body.is_empty());
        if i >= 20 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times
}

fn report(label: &str, times: &[Duration]) {
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(1);
    println!(
        "{label:<52} {:>7.3}ms {:>7.3}ms {:>7.3}ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(mean)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
