//! The gateway against the test kit's mock provider on 127.0.0.1 (OpenAI and Anthropic shapes,
//! scripted answers, streams), and against a provider written byte by byte where HTTP itself
//! is bent.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, Millis, OrgId, Provider};
use keyward_server::{AppState, GatewayOptions};
use keyward_store::{UsageSubject, Vault, VaultOptions};
use keyward_testkit::{MockProvider, Received, Reply, TestVault, spawn_server as start};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-UPSTREAMKEY-acme-0123456789";
const GLOBEX_KEY: &str = "sk-proj-UPSTREAMKEY-globex-01234567";
const ANTHROPIC_KEY: &str = "sk-ant-api03-UPSTREAMKEY-acme-01234";

/// The key headers a request carried, as `name: value` joined by `; `: exactly the one the
/// provider takes, and no other, when the gateway swapped the token for the key.
fn seen_auth(r: &Received) -> String {
    ["authorization", "x-api-key", "x-goog-api-key", "api-key"]
        .iter()
        .filter_map(|h| r.header(h).map(|v| format!("{h}: {v}")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `needle` is anywhere in what the provider received: path, query, a header, the body.
fn carries(r: &Received, needle: &str) -> bool {
    let needle = needle.to_ascii_lowercase();
    let has = |text: &[u8]| {
        String::from_utf8_lossy(text)
            .to_ascii_lowercase()
            .contains(&needle)
    };
    has(r.path_and_query().as_bytes())
        || r.headers
            .iter()
            .any(|(n, v)| has(n.as_str().as_bytes()) || has(v.as_bytes()))
        || has(&r.body)
}

struct Setup {
    gateway: String,
    vault: Vault,
    mock: MockProvider,
    acme_token: String,
    globex_token: String,
    _vault: TestVault,
}

async fn setup() -> Setup {
    let mock = MockProvider::start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let mut tokens = Vec::new();
    for (org, key) in [("acme", OPENAI_KEY), ("globex", GLOBEX_KEY)] {
        let org = OrgId::new(org).unwrap();
        vault.create_org(&org, None, "test").await.unwrap();
        add_key(&vault, &org, "main", key, &mock.url(), 100).await;
        let (t, _) = vault
            .create_gateway_token(&org, "app", &[], None, None, "test")
            .await
            .unwrap();
        tokens.push(t.expose_secret().to_owned());
    }
    let mut a = NewCredential::new(
        OrgId::new("acme").unwrap(),
        Provider::get("anthropic").unwrap(),
        CredentialName::new("main").unwrap(),
        Some(ANTHROPIC_KEY.into()),
    );
    a.fields.insert("base_url".into(), mock.url());
    vault.add_credential(a, "test").await.unwrap();

    let addr = start(AppState::new(vault.clone())).await;
    Setup {
        gateway: format!("http://{addr}/gateway"),
        vault,
        mock,
        acme_token: tokens[0].clone(),
        globex_token: tokens[1].clone(),
        _vault: kept,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_token_is_swapped_for_the_organizations_key() {
    let s = setup().await;
    for (token, key) in [(&s.acme_token, OPENAI_KEY), (&s.globex_token, GLOBEX_KEY)] {
        let resp = client()
            .post(format!("{}/openai/v1/chat/completions", s.gateway))
            .bearer_auth(token)
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().contains_key("x-keyward-credential"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion", "the provider's answer");
        let seen = s.mock.last();
        assert_eq!(seen_auth(&seen), format!("authorization: Bearer {key}"));
        assert_eq!(seen.json()["model"], "gpt-4o-mini");
    }
    // Hop-by-hop headers (the fixed ones and those `Connection` names) stay behind; the
    // others pass, and the body keeps its length.
    let body = r#"{"model": "m"}"#;
    let resp = client()
        .post(format!("{}/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&s.acme_token)
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("expect", "100-continue")
        .header("x-api-key", "kwg_another")
        .header("openai-organization", "org-1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let received = s.mock.last();
    let seen = received.header_names();
    for gone in [
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "x-api-key",
        "expect",
    ] {
        assert!(!seen.contains(&gone), "{gone} forwarded: {seen:?}");
    }
    for kept in ["openai-organization", "content-type", "authorization"] {
        assert!(seen.contains(&kept), "{kept} dropped: {seen:?}");
    }
    assert_eq!(
        received.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(&received.body[..], body.as_bytes());
    // Anthropic: the token comes as x-api-key, the key goes as x-api-key, other headers pass.
    let body: Value = client()
        .post(format!("{}/anthropic/v1/messages", s.gateway))
        .header("x-api-key", &s.acme_token)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "message", "the provider's answer");
    let seen = s.mock.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen_auth(&seen), format!("x-api-key: {ANTHROPIC_KEY}"));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    // The upstream never saw a gateway token.
    for r in s.mock.received() {
        assert!(!carries(&r, "kwg_"), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_in_the_providers_shape_without_contacting_it() {
    let s = setup().await;
    let cases = [
        ("openai/v1/chat/completions", None, "invalid_api_key"),
        (
            "openai/v1/chat/completions",
            Some("kwg_not-a-real-token-000000000000"),
            "invalid_api_key",
        ),
        (
            "openai/v1/chat/completions",
            Some("kwt_an-api-token-is-not-a-gateway-token"),
            "invalid_api_key",
        ),
    ];
    for (path, token, code) in cases {
        let mut req = client()
            .post(format!("{}/{path}", s.gateway))
            .json(&json!({}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let body: Value = client()
        .post(format!("{}/anthropic/v1/messages", s.gateway))
        .header("x-api-key", "kwg_wrong-000000000000000000000")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(s.mock.hits(), 0, "the upstream was contacted");

    // A token limited to OpenAI may not use Anthropic; a token over its rate is told to wait.
    let acme = OrgId::new("acme").unwrap();
    let (limited, _) = s
        .vault
        .create_gateway_token(
            &acme,
            "limited",
            &[Provider::get("openai").unwrap()],
            Some(2),
            None,
            "test",
        )
        .await
        .unwrap();
    let resp = client()
        .post(format!("{}/anthropic/v1/messages", s.gateway))
        .header("x-api-key", limited.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = client()
            .post(format!("{}/openai/v1/chat/completions", s.gateway))
            .bearer_auth(limited.expose_secret())
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    // Upstream errors come back as they are.
    s.mock.on_path(
        "/v1/unauthorized",
        Reply::status(401).json(json!({"error": "upstream says no"})),
    );
    let resp = client()
        .post(format!("{}/openai/v1/unauthorized", s.gateway))
        .bearer_auth(&s.acme_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // An address that keeps guessing is slowed down: after ten failures in a minute its bad
    // tokens get 429 (in the provider's shape), while good tokens from the same address (a
    // NAT, a pod IP), checked before or never, still pass.
    let chat = |token: String| {
        client()
            .post(format!("{}/openai/v1/chat/completions", s.gateway))
            .bearer_auth(token)
            .json(&json!({"model": "m"}))
            .send()
    };
    assert_eq!(
        chat(s.globex_token.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for i in 0..12 {
        let resp = chat(format!("kwg_guess{i:040}")).await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().contains_key("retry-after"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        }
    }
    // 401s (this test failed a few times already), then only 429s.
    let first_429 = statuses.iter().position(|s| *s == 429).unwrap();
    assert!(
        statuses[..first_429].iter().all(|s| *s == 401)
            && statuses[first_429..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(
        chat(s.globex_token.clone()).await.unwrap().status(),
        StatusCode::OK,
        "an already checked token is not caught up in it"
    );
    let (fresh, _) = s
        .vault
        .create_gateway_token(&acme, "behind the same NAT", &[], None, None, "test")
        .await
        .unwrap();
    assert_eq!(
        chat(fresh.expose_secret().to_owned())
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "a good token never seen before from a guessing address is not refused"
    );
    assert_eq!(
        chat("kwg_guess_again".repeat(3)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser still is"
    );
    // Each failure is in the trail, as the API's are.
    let failures = eventually(|| async {
        let events = s
            .vault
            .list_events(&"action=authenticate,outcome=failure".parse().unwrap(), 50)
            .await
            .unwrap();
        (events.iter().filter(|e| e.target == "gateway").count() >= 10).then_some(events)
    })
    .await;
    assert!(
        failures
            .iter()
            .all(|e| !e.details.to_string().contains("kwg_guess")),
        "no guessed token in the trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_through_unbuffered() {
    let s = setup().await;
    // Two server-sent events; the second waits until the test has read the first, which it
    // could not if anything buffered the stream.
    s.mock.push(
        Reply::sse([
            "data: {\"delta\":\"hel\"}\n\n",
            "data: {\"delta\":\"lo\"}\n\ndata: [DONE]\n\n",
        ])
        .hold_after(1),
    );
    let resp = client()
        .post(format!("{}/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&s.acme_token)
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt as _;
    // The first event arrives while the upstream is still holding the second back: nothing in
    // between waits for the whole answer. (A buffering gateway would hang here; the timeout
    // turns that into a failure.)
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first event did not arrive before the stream ended")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: {\"delta\":\"hel\"}\n\n");
    assert_eq!(s.mock.last().json()["stream"], true);
    s.mock.release();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: {\"delta\":\"lo\"}\n\ndata: [DONE]\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_key_gives_a_clear_error_and_a_revoked_token_stops() {
    let s = setup().await;
    let acme = OrgId::new("acme").unwrap();
    let openai = s
        .vault
        .list_credentials(Some(&acme), Some(Provider::get("openai").unwrap()))
        .await
        .unwrap()[0]
        .id
        .clone();
    s.vault
        .set_credential_active(&openai, false, "test")
        .await
        .unwrap();
    let resp = client()
        .post(format!("{}/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&s.acme_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    // Permanent for the SDKs (no retries), and says what to do.
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_provider_key");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("organization 'acme' has no active OpenAI credential; an admin can add one (keyward cred add --org acme --provider openai)"),
        "{message}"
    );
    // Globex is untouched, and never gets acme's key.
    let body: Value = client()
        .post(format!("{}/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&s.globex_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "chat.completion", "the provider's answer");
    assert_eq!(
        seen_auth(&s.mock.last()),
        format!("authorization: Bearer {GLOBEX_KEY}")
    );
    let id = s
        .vault
        .list_gateway_tokens(Some(&OrgId::new("globex").unwrap()))
        .await
        .unwrap()[0]
        .id
        .clone();
    s.vault.revoke_gateway_token(&id, "test").await.unwrap();
    // The token cache trusts a checked token for at most a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = client()
        .post(format!("{}/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&s.globex_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_rate_limited_keys_fail_over_and_cool_down() {
    // A provider that refuses one key, rate-limits another, and serves a third.
    let mock = MockProvider::start().await;
    mock.on_key(
        "sk-revoked-at-provider-000000",
        Reply::status(401).header("retry-after", "0"),
    );
    mock.on_key(
        "sk-rate-limited-000000000000",
        Reply::status(429).header("retry-after", "120"),
    );
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let acme = OrgId::new("acme").unwrap();
    vault.create_org(&acme, None, "test").await.unwrap();
    let mut ids = Vec::new();
    for (prio, name, key) in [
        (1, "revoked", "sk-revoked-at-provider-000000"),
        (2, "busy", "sk-rate-limited-000000000000"),
        (3, "good", "sk-good-key-0000000000000000"),
    ] {
        ids.push(add_key(&vault, &acme, name, key, &mock.url(), prio).await);
    }
    let (token, _) = vault
        .create_gateway_token(&acme, "app", &[], None, None, "test")
        .await
        .unwrap();
    let addr = start(AppState::new(vault.clone())).await;
    let call = || async {
        client()
            .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
            .bearer_auth(token.expose_secret())
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
    };
    // First request: the revoked key is refused (failing, retried once on the next), the next
    // is rate-limited (cooling down, next tried), the third serves.
    let resp = call().await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-keyward-credential"], ids[2].as_str());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "the provider's answer");
    assert_eq!(
        mock.last().header("authorization"),
        Some("Bearer sk-good-key-0000000000000000")
    );
    let tried: Vec<(String, Value)> = mock
        .received()
        .iter()
        .map(|r| (r.header("authorization").unwrap().to_owned(), r.json()))
        .collect();
    assert_eq!(
        tried.len(),
        3,
        "each key tried once, the body sent again each time"
    );
    for (i, key) in [
        "sk-revoked-at-provider-000000",
        "sk-rate-limited-000000000000",
        "sk-good-key-0000000000000000",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(tried[i].0, format!("Bearer {key}"));
        assert_eq!(
            tried[i].1["messages"][0]["content"], "hi",
            "the body, again"
        );
    }
    // Second request: both set-aside keys are skipped; the good key answers at once.
    let resp = call().await;
    assert_eq!(resp.headers()["x-keyward-credential"], ids[2].as_str());
    assert_eq!(mock.hits(), 4, "no retry of keys that are cooling down");
    // The status shows which keys serve and which are set aside, and until when; to the
    // organization's own viewer as to an admin, never to another organization's.
    let globex = OrgId::new("globex").unwrap();
    vault.create_org(&globex, None, "test").await.unwrap();
    let status = |token: String, query: &'static str| async move {
        let resp = client()
            .get(format!("http://{addr}/api/v1/gateway/status{query}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    let make = |role, org: Option<OrgId>| {
        let vault = vault.clone();
        async move {
            let (t, _) = vault
                .create_token("t", role, org.as_ref(), None, "test")
                .await
                .unwrap();
            t.expose_secret().to_owned()
        }
    };
    let admin = make(keyward_server::Role::Admin, None).await;
    let viewer = make(keyward_server::Role::Viewer, Some(acme.clone())).await;
    let other = make(keyward_server::Role::OrgAdmin, Some(globex)).await;
    for token in [admin.clone(), viewer] {
        let (st, body) = status(token, "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let openai = &body["providers"][0];
        assert_eq!(
            (&openai["org"], &openai["provider"]),
            (&json!("acme"), &json!("openai"))
        );
        assert_eq!(openai["active"][0]["name"], "good");
        let aside: Vec<(&str, &str)> = openai["set_aside"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(aside, [("revoked", "failing"), ("busy", "rate_limited")]);
        assert!(openai["set_aside"][0]["until"].as_i64().unwrap() > Millis::now().0);
        assert!(!body.to_string().contains("sk-good-key"), "{body}");
    }
    let (st, body) = status(other.clone(), "").await;
    assert_eq!((st, body["providers"].clone()), (StatusCode::OK, json!([])));
    assert_eq!(status(other, "?org=acme").await.0, StatusCode::NOT_FOUND);
    // Audited beside the requests, once per key set aside (not again while it is).
    let events = eventually(|| async {
        let events = vault
            .list_events(
                &"category=secret_access,outcome=failure".parse().unwrap(),
                10,
            )
            .await
            .unwrap();
        (events.len() >= 2).then_some(events)
    })
    .await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(
        actions.contains(&"gateway_key_failing") && actions.contains(&"gateway_cooldown"),
        "{actions:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| !e.details.to_string().contains("sk-")),
        "no key in the trail"
    );
}

/// Adds an OpenAI key to `org`, pointed at the provider at `upstream` (`http://HOST:PORT`).
async fn add_key(
    vault: &Vault,
    org: &OrgId,
    name: &str,
    key: &str,
    upstream: &str,
    priority: i64,
) -> keyward_core::CredentialId {
    let mut c = NewCredential::new(
        org.clone(),
        Provider::get("openai").unwrap(),
        CredentialName::new(name).unwrap(),
        Some(key.into()),
    );
    c.priority = priority;
    c.fields.insert("base_url".into(), format!("{upstream}/v1"));
    vault.add_credential(c, "test").await.unwrap().id
}

/// A vault with organization acme, its OpenAI key (`OPENAI_KEY`) pointed at `upstream`, and a
/// gateway token of acme.
struct Acme {
    vault: Vault,
    org: OrgId,
    cred: keyward_core::CredentialId,
    token: String,
    token_id: String,
    _vault: TestVault,
}

async fn acme(upstream: &str) -> Acme {
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();
    let cred = add_key(&vault, &org, "main", OPENAI_KEY, upstream, 100).await;
    let (token, view) = vault
        .create_gateway_token(&org, "app", &[], None, None, "test")
        .await
        .unwrap();
    Acme {
        vault,
        org,
        cred,
        token: token.expose_secret().to_owned(),
        token_id: view.id,
        _vault: kept,
    }
}

/// Polls `check` every 50 ms, for at most 10 s, until it gives `Some`.
async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the condition did not come true within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_written_in_batches_and_recoveries_are_audited_and_counted() {
    let mock = MockProvider::start().await;
    let Acme {
        vault,
        org: acme,
        cred,
        token,
        token_id,
        _vault,
    } = acme(&mock.url()).await;
    let state = AppState::new(vault.clone()).with_gateway(GatewayOptions {
        usage_flush_interval: Duration::from_millis(50),
        ..GatewayOptions::default()
    });
    let addr = start(state).await;
    let call = || async {
        client()
            .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
            .bearer_auth(&token)
            .body("{}")
            .send()
            .await
            .unwrap()
    };

    // Rate-limited: the only key cools down, and the client gets the provider's 429.
    mock.push(Reply::status(429).header("retry-after", "1"));
    assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
    // The provider is happy again: the key, though cooling down, is the only one, so it is
    // tried, serves, and that is its recovery.
    for _ in 0..3 {
        assert_eq!(call().await.status(), StatusCode::OK);
    }
    assert_eq!(mock.hits(), 4);

    let recovered = eventually(|| async {
        let events = vault
            .list_events(&"action=gateway_key_recovered".parse().unwrap(), 10)
            .await
            .unwrap();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(recovered.len(), 1, "one recovery, audited once");
    assert_eq!(recovered[0].target, format!("credential:{cred}"));
    assert_eq!(recovered[0].details["was"], "rate_limited");

    let metrics = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "keyward_gateway_cooldowns_total{provider=\"openai\",reason=\"rate_limited\"} 1".to_owned(),
        "keyward_gateway_recoveries_total{provider=\"openai\",reason=\"rate_limited\"} 1"
            .to_owned(),
        "keyward_gateway_requests_total{kind=\"credential\",provider=\"openai\",status=\"200\"} 3".to_owned(),
        "keyward_gateway_requests_total{kind=\"gateway_token\",provider=\"openai\",status=\"429\"} 1".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // No organization's ids in what anyone can read.
    assert!(!metrics.contains(cred.as_str()) && !metrics.contains(&token_id));

    // The counts reach the vault in the background, without a write per request.
    let usage = eventually(|| async {
        let usage = vault.usage(&acme).await.unwrap();
        (usage.iter().map(|u| u.requests).sum::<u64>() == 8).then_some(usage)
    })
    .await;
    let of = |id: &str| usage.iter().find(|u| u.id == id).unwrap().clone();
    let c = of(cred.as_str());
    assert_eq!(c.subject, UsageSubject::Credential);
    assert_eq!(
        (c.name.as_deref(), c.provider.as_deref()),
        (Some("main"), Some("openai"))
    );
    assert_eq!(c.statuses, [("200".into(), 3), ("429".into(), 1)].into());
    let t = of(&token_id);
    assert_eq!(t.subject, UsageSubject::GatewayToken);
    assert_eq!(t.name.as_deref(), Some("app"));
    assert_eq!(t.requests, 4);
    let listed = vault.list_gateway_tokens(Some(&acme)).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(t.last_used_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stalled_providers_are_cut_off_by_the_timeouts() {
    let mock = MockProvider::start().await;
    // A stall before the headers, and a stream that stops after its first event.
    mock.on_path(
        "/v1/slow",
        Reply::ok().delay(Duration::from_secs(30)).text("too late"),
    );
    mock.on_path(
        "/v1/stall",
        Reply::sse(["data: {\"delta\":\"hel\"}\n\n"]).hold_after(1),
    );
    let Acme {
        vault,
        token,
        _vault,
        ..
    } = acme(&mock.url()).await;
    let addr = start(AppState::new(vault.clone()).with_gateway(GatewayOptions {
        first_byte_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..GatewayOptions::default()
    }))
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // No headers within the first-byte timeout: 504 in the provider's shape, long before the
    // provider's 30 s (and the client's 20 s) are up.
    let resp = client
        .post(format!("http://{addr}/gateway/openai/v1/slow"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the provider did not answer in time"
    );

    // A stream that stops sending: the first event arrives, then the stream is closed with an
    // error instead of hanging until the client gives up.
    let mut resp = client
        .post(format!("http://{addr}/gateway/openai/v1/stall"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let end = resp.chunk().await;
    match end {
        Err(e) => assert!(!e.is_timeout(), "the gateway cut it, not the client: {e}"),
        Ok(more) => panic!("the stalled stream went on: {more:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_targets_serve_fixed_routes_and_reload_without_dropping_the_running_set() {
    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let acme = OrgId::new("acme").unwrap();
    let globex = OrgId::new("globex").unwrap();
    vault.create_org(&acme, None, "test").await.unwrap();
    vault.create_org(&globex, None, "test").await.unwrap();
    let var = |n: &str| keyward_core::VarName::new(n).unwrap();
    vault
        .set_var(
            &var("OPENAI_PRIMARY"),
            Some(&acme),
            &OPENAI_KEY.into(),
            true,
            None,
            "test",
        )
        .await
        .unwrap();
    vault
        .set_var(
            &var("ANTHROPIC_MAIN"),
            Some(&acme),
            &ANTHROPIC_KEY.into(),
            true,
            None,
            "test",
        )
        .await
        .unwrap();
    let (acme_token, _) = vault
        .create_gateway_token(&acme, "app", &[], None, None, "test")
        .await
        .unwrap();
    // One request a minute: probing another organization's targets must not use it up.
    let (globex_token, _) = vault
        .create_gateway_token(&globex, "app", &[], Some(1), None, "test")
        .await
        .unwrap();
    let (admin, _) = vault
        .create_token("admin", keyward_server::Role::Admin, None, None, "test")
        .await
        .unwrap();

    let file = kept.dir.path().join("gateway.yaml");
    let write = |yaml: String| std::fs::write(&file, yaml).unwrap();
    write(format!(
        "org: acme\ntargets:\n  - id: openai-primary\n    provider: openai\n    base_url: http://{upstream}/v1\n    secret_key_ref: {{ store: OPENAI_PRIMARY }}\n  - id: claude\n    provider: anthropic\n    base_url: http://{upstream}\n    secret_key_ref: {{ store: ANTHROPIC_MAIN }}\n"
    ));
    let state = AppState::new(vault.clone()).with_gateway(GatewayOptions {
        targets_file: Some(file.clone()),
        ..GatewayOptions::default()
    });
    let loaded = state
        .reload_gateway_targets(keyward_server::LoadTrigger::Start, "serve:start")
        .await
        .unwrap();
    let ids: Vec<&str> = loaded.targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["claude", "openai-primary"]);
    let addr = start(state).await;
    let chat = |target: &'static str, token: String| {
        client()
            .post(format!(
                "http://{addr}/gateway/t/{target}/v1/chat/completions"
            ))
            .bearer_auth(token)
            .json(&json!({"model": "gpt-x"}))
            .send()
    };

    let resp = chat("openai-primary", acme_token.expose_secret().to_owned())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-keyward-target"], "openai-primary");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "the provider's answer");
    assert_eq!(
        seen_auth(&mock.last()),
        format!("authorization: Bearer {OPENAI_KEY}")
    );
    let resp = client()
        .post(format!("http://{addr}/gateway/t/claude/v1/messages"))
        .header("x-api-key", acme_token.expose_secret())
        .header("anthropic-version", "2023-06-01")
        .body("{}")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message", "the provider's answer");
    assert_eq!(
        seen_auth(&mock.last()),
        format!("x-api-key: {ANTHROPIC_KEY}")
    );

    // Another organization's token: the target does not exist for it, and its own limit is
    // untouched. Without a token, a target that exists and one that does not look the same.
    let hits = mock.hits();
    for _ in 0..2 {
        let resp = chat("claude", globex_token.expose_secret().to_owned())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let resp = chat("nope", acme_token.expose_secret().to_owned())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let anonymous = |target: &'static str| async move {
        let resp = client()
            .post(format!("http://{addr}/gateway/t/{target}/v1/messages"))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    let (known, unknown) = (anonymous("claude").await, anonymous("nope").await);
    assert_eq!(known.0, StatusCode::UNAUTHORIZED);
    assert_eq!(known, unknown);
    assert_eq!(mock.hits(), hits, "upstream untouched");

    // Reloads that fail name what is wrong, and change nothing.
    let reload = || async {
        let resp = client()
            .post(format!("http://{addr}/api/v1/gateway/reload"))
            .bearer_auth(admin.expose_secret())
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    for (yaml, says) in [
        (
            "org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: { store: MISSING_VAR }\n".to_owned(),
            "target 'a': secret_key_ref store MISSING_VAR: no config variable MISSING_VAR",
        ),
        (
            "org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: { env: KW_TEST_NO_SUCH_VARIABLE }\n".to_owned(),
            "target 'a': secret_key_ref env KW_TEST_NO_SUCH_VARIABLE: the environment variable KW_TEST_NO_SUCH_VARIABLE is not set",
        ),
        (
            "org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: { env: KEYWARD_MASTER_KEY }\n".to_owned(),
            "target 'a': secret_key_ref env KEYWARD_MASTER_KEY: Keyward's own settings (KEYWARD_*) cannot be a target's key",
        ),
        (
            "targets:\n  - id: a\n    provider: openai\n    secret_key_ref: { store: OPENAI_PRIMARY }\n".to_owned(),
            "target 'a': no org",
        ),
        (
            "org: acme\ntargets:\n  - id: a\n    provider: nope\n    secret_key_ref: { store: OPENAI_PRIMARY }\n".to_owned(),
            "target 'a': unknown provider",
        ),
        (
            "org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: { store: OPENAI_PRIMARY }\n  - id: a\n    provider: openai\n    secret_key_ref: { store: OPENAI_PRIMARY }\n".to_owned(),
            "target 'a': the id is used twice",
        ),
        (
            "org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: { store: OPENAI_PRIMARY, env: OPENAI_API_KEY }\n".to_owned(),
            "exactly one of store: VAR, env: VAR and vault: MOUNT/data/PATH#FIELD",
        ),
        (
            // A key pasted into the file by mistake is not echoed back.
            format!("org: acme\ntargets:\n  - id: a\n    provider: openai\n    api_key: \"{OPENAI_KEY}\"\n"),
            "unknown field `api_key`",
        ),
        (
            "org: acme\ntargets: [\n".to_owned(),
            "not a valid gateway config (line",
        ),
        // A key in the wrong field is refused without being quoted.
        (
            format!("org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: {{ env: \"{OPENAI_KEY}\" }}\n"),
            "target 'a': secret_key_ref env: not an environment variable name",
        ),
        (
            format!("org: acme\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: {{ store: \"{OPENAI_KEY}\" }}\n"),
            "target 'a': secret_key_ref store: not a variable name",
        ),
        (
            format!("org: acme\ntargets:\n  - id: \"{OPENAI_KEY}\"\n    provider: openai\n    secret_key_ref: {{ store: OPENAI_PRIMARY }}\n"),
            "targets[0]: the id must be",
        ),
        (
            format!("org: acme\ntargets:\n  - id: a\n    provider: \"{OPENAI_KEY}\"\n    secret_key_ref: {{ store: OPENAI_PRIMARY }}\n"),
            "target 'a': provider is not a provider id",
        ),
        (
            format!("org: acme\ntargets:\n  - id: a\n    provider: openai\n    base_url: \"{OPENAI_KEY}\"\n    secret_key_ref: {{ store: OPENAI_PRIMARY }}\n"),
            "target 'a': base_url is not an http(s) URL",
        ),
        (
            format!("org: \"{OPENAI_KEY}\"\ntargets:\n  - id: a\n    provider: openai\n    secret_key_ref: {{ store: OPENAI_PRIMARY }}\n"),
            "target 'a': org is not an organization slug",
        ),
    ] {
        write(yaml);
        let (st, body) = reload().await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail:?} should say {says:?}");
        assert!(detail.contains("the previous targets stay"), "{detail}");
        assert!(!detail.contains("UPSTREAMKEY"), "{detail}");
        let resp = chat("openai-primary", acme_token.expose_secret().to_owned())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "still served after {says}");
    }

    // Why the last load failed is the admins' to see: it names the file, other
    // organizations' targets and their references.
    let (viewer, _) = vault
        .create_token(
            "acme viewer",
            keyward_server::Role::Viewer,
            Some(&acme),
            None,
            "test",
        )
        .await
        .unwrap();
    let status = |token: String| async move {
        client()
            .get(format!("http://{addr}/api/v1/gateway/status"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let seen_by_admin = status(admin.expose_secret().to_owned()).await;
    assert!(
        seen_by_admin["last_load"]["error"]
            .as_str()
            .unwrap()
            .contains("gateway.yaml"),
        "{seen_by_admin}"
    );
    assert_eq!(seen_by_admin["last_load"]["by"], "api");
    assert_eq!(
        seen_by_admin["serving_since"]["by"], "start",
        "what is served still comes from the start"
    );
    let seen_by_viewer = status(viewer.expose_secret().to_owned()).await;
    let hidden = seen_by_viewer["last_load"]["error"].as_str().unwrap();
    assert!(
        !hidden.contains("gateway.yaml") && hidden.contains("an admin sees why"),
        "{seen_by_viewer}"
    );
    assert_eq!(seen_by_viewer["targets"][0]["org"], "acme");

    // A good file replaces the set.
    write(format!(
        "targets:\n  - id: openai-backup\n    org: acme\n    provider: openai\n    base_url: http://{upstream}/v1/\n    secret_key_ref: {{ store: OPENAI_PRIMARY }}\n"
    ));
    let (st, body) = reload().await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["targets"], json!(["openai-backup"]));
    let gone = chat("openai-primary", acme_token.expose_secret().to_owned())
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let now = chat("openai-backup", acme_token.expose_secret().to_owned())
        .await
        .unwrap();
    assert_eq!(now.status(), StatusCode::OK);

    // The shape Keeptrusts users already have: `pack:`, `providers: { targets: }`, `model`,
    // and sections Keyward does not implement, reported by name.
    write(format!(
        "pack:\n  name: secret-management-providers-2\n  version: 1.0.0\n  enabled: true\nproviders:\n  targets:\n    - id: openai-primary\n      provider: openai\n      model: gpt-4o-mini\n      org: acme\n      base_url: http://{upstream}\n      secret_key_ref:\n        store: OPENAI_PRIMARY\npolicies:\n  chain:\n    - audit-logger\n    - pii-redactor\npolicy:\n  audit-logger:\n    immutable: true\n    retention_days: 365\n"
    ));
    let (st, body) = reload().await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["targets"], json!(["openai-primary"]));
    // The audit-logger policy is Keyward's audit policy; another policy is ignored, by name.
    assert_eq!(body["ignored"], json!(["policies.chain: pii-redactor"]));
    assert_eq!(
        body["audit_policy"],
        json!({ "retention_days": 365, "immutable": true, "log_all_access": false })
    );
    let stored = vault.audit_policy().await.unwrap().unwrap();
    assert_eq!(stored.policy.retention_days, Some(365));
    assert!(stored.policy.immutable);
    assert_eq!(body["resolved"][0]["reference"], "store: OPENAI_PRIMARY");
    assert_eq!(body["resolved"][0]["model"], "gpt-4o-mini");
    let resp = chat("openai-primary", acme_token.expose_secret().to_owned())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Every load is audited with the references it resolved, by name, and what started it.
    let reloads = vault
        .list_events(&"action=gateway_reload".parse().unwrap(), 100)
        .await
        .unwrap();
    let first = reloads.last().unwrap();
    assert_eq!(first.actor, "serve:start");
    assert_eq!(first.details["by"], "start");
    assert_eq!(
        first.details["targets"][1]["reference"],
        "store: OPENAI_PRIMARY"
    );
    assert_eq!(reloads[0].details["by"], "api");
    assert_eq!(
        reloads[0].details["ignored"],
        json!(["policies.chain: pii-redactor"])
    );
    assert!(
        reloads
            .iter()
            .all(|e| !e.details.to_string().contains("UPSTREAMKEY")),
        "no key in a reload's trail"
    );

    // Reloading takes an admin.
    let resp = client()
        .post(format!("http://{addr}/api/v1/gateway/reload"))
        .bearer_auth(acme_token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Usage of a target names its provider, as a credential's does.
    let usage = eventually(|| async {
        let usage = vault.usage(&OrgId::new("acme").unwrap()).await.unwrap();
        usage
            .iter()
            .any(|u| u.subject == UsageSubject::Target)
            .then_some(usage)
    })
    .await;
    assert!(
        usage
            .iter()
            .filter(|u| u.subject == UsageSubject::Target)
            .all(|u| u.provider.as_deref() == Some("openai")
                || u.provider.as_deref() == Some("anthropic")),
        "{usage:?}"
    );

    // The trail: every load (the start's too), none with a key in it.
    let reloads = vault
        .list_events(&"action=gateway_reload".parse().unwrap(), 20)
        .await
        .unwrap();
    assert_eq!(reloads.len(), 18);
    assert_eq!(
        reloads
            .iter()
            .filter(|e| e.outcome == keyward_core::audit::Outcome::Success)
            .count(),
        3
    );
    assert!(
        reloads
            .iter()
            .all(|e| !e.details.to_string().contains("UPSTREAMKEY"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organizations_strategy_picks_the_key() {
    let mock = MockProvider::start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let acme = OrgId::new("acme").unwrap();
    vault.create_org(&acme, None, "test").await.unwrap();
    let mut ids = Vec::new();
    for (prio, name) in [(1, "first"), (2, "second")] {
        let key = format!("sk-good-{name}-0000000000000000");
        ids.push(
            add_key(&vault, &acme, name, &key, &mock.url(), prio)
                .await
                .to_string(),
        );
    }
    let (token, _) = vault
        .create_gateway_token(&acme, "app", &[], None, None, "test")
        .await
        .unwrap();
    let addr = start(AppState::new(vault.clone())).await;
    let served = || async {
        let mut by = Vec::new();
        for _ in 0..4 {
            let resp = client()
                .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
                .bearer_auth(token.expose_secret())
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            by.push(
                resp.headers()["x-keyward-credential"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        by
    };
    // Priority (the default): always the first; the second only fails over.
    assert_eq!(served().await, [&*ids[0], &ids[0], &ids[0], &ids[0]]);
    // Round robin: they take turns.
    vault
        .set_org_strategy(&acme, keyward_core::resolve::Strategy::RoundRobin, "test")
        .await
        .unwrap();
    let mut by = served().await;
    by.sort();
    let mut want = [&*ids[0], &ids[0], &ids[1], &ids[1]];
    want.sort();
    assert_eq!(by, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_the_upstream_request() {
    // An endless stream: one event every 20 ms, for as long as someone reads. The mock counts
    // the streams dropped before their end, which is what hyper does when the connection it
    // writes to goes away.
    let mock = MockProvider::start().await;
    mock.push(
        Reply::sse(["data: {\"delta\":\"x\"}\n\n"])
            .pause(Duration::from_millis(20))
            .forever(),
    );
    let Acme {
        vault,
        token,
        _vault,
        ..
    } = acme(&mock.url()).await;
    let addr = start(AppState::new(vault.clone())).await;

    let mut resp = client()
        .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"stream": true}))
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(resp.chunk().await.unwrap().is_some());
    }
    assert_eq!(mock.streams_dropped(), 0, "streaming while read");
    drop(resp);
    eventually(|| async { (mock.streams_dropped() == 1).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_provider_may_have_received_is_not_sent_again_and_big_bodies_get_413() {
    // A provider that takes a request to /v1/slow and goes quiet; it counts only requests it
    // read whole (one cut short is not one).
    let mock = MockProvider::start().await;
    mock.on_path(
        "/v1/slow",
        Reply::ok().delay(Duration::from_secs(30)).text("too late"),
    );
    let upstream = mock.url();
    let a = acme(&upstream).await;
    let addr = start(AppState::new(a.vault.clone()).with_gateway(GatewayOptions {
        first_byte_timeout: Duration::from_millis(300),
        ..GatewayOptions::default()
    }))
    .await;
    // Sent chunked, with no length declared: the limit is found while the body streams. (A
    // declared length over the limit is refused before the body is read; see
    // `a_broken_or_oversized_request_body_is_the_clients_fault_with_any_number_of_keys`.)
    let post = |path: &'static str, body: Vec<u8>| {
        let chunks = body
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>();
        client()
            .post(format!("http://{addr}/gateway/openai/v1/{path}"))
            .bearer_auth(&a.token)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
    };

    // An oversized upload answered 413 while the client still sends may reach the client as
    // a broken pipe instead (the server closes the connection rather than read the rest): a
    // race of the socket, not a different answer. Try until the answer is seen; it must be 413.
    let too_large = |path: &'static str| {
        let post = &post;
        async move {
            for _ in 0..5 {
                match post(path, vec![b'x'; 11 * 1024 * 1024]).await {
                    Ok(resp) => return resp.status(),
                    Err(e) if e.is_request() => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("five uploads and no answer seen");
        }
    };

    // One key: a body over 10 MiB is the client's fault, not the provider's.
    assert_eq!(
        too_large("chat/completions").await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // A second key to fail over to.
    add_key(
        &a.vault,
        &a.org,
        "backup",
        "sk-proj-UPSTREAMKEY-backup-012345",
        &upstream,
        200,
    )
    .await;
    // The provider took the request and went quiet: it is not sent to the next key (it could
    // be generated, and billed, twice).
    let resp = post("slow", b"{}".to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(mock.hits_on("/v1/slow"), 1, "sent once");
    // Over the limit with two keys (the body is kept for failover): 413 as well.
    assert_eq!(
        too_large("chat/completions").await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        mock.hits_on("/v1/chat/completions"),
        0,
        "nothing too big reached the provider"
    );
    assert_eq!(mock.hits(), 1, "nothing too big reached the provider");

    // A key whose provider cannot be connected to: the request never left, so the next key
    // gets it.
    let closed = keyward_testkit::closed_addr();
    add_key(
        &a.vault,
        &a.org,
        "dead",
        "sk-proj-UPSTREAMKEY-dead-0123456",
        &format!("http://{closed}"),
        0,
    )
    .await;
    let resp = post("chat/completions", b"{}".to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-keyward-credential"], a.cred.as_str());
    assert_eq!(mock.hits_on("/v1/chat/completions"), 1);
    let metrics = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "keyward_gateway_failovers_total{provider=\"openai\",reason=\"unreachable\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_goes_upstream_as_the_client_wrote_it() {
    let mock = MockProvider::start().await;
    let a = acme(&mock.url()).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let resp = client()
        .get(format!(
            "http://{addr}/gateway/openai/v1/files/a%2Cb%20c?purpose=x&key={}",
            a.token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Escapes stay escapes; the token's `key=` is gone from the query. (An encoded `/`, `?` or
    // `#` is refused: see the table of hostile paths.)
    assert_eq!(
        mock.last().path_and_query(),
        "/v1/files/a%2Cb%20c?purpose=x"
    );

    // This server has no targets file: a reload says so rather than pretend.
    let (admin, _) = a
        .vault
        .create_token("admin", keyward_server::Role::Admin, None, None, "test")
        .await
        .unwrap();
    let resp = client()
        .post(format!("http://{addr}/api/v1/gateway/reload"))
        .bearer_auth(admin.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("no gateway config to load"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_provider_does_not_downgrade_the_clients_connection() {
    // A provider that speaks HTTP/1.0, as small servers and some proxies do.
    let upstream = raw_provider(|_| {
        "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            .to_owned()
    })
    .await;
    let a = acme(&format!("http://{upstream}")).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let resp = client()
        .get(format!("http://{addr}/gateway/openai/v1/models"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.text().await.unwrap(), "{}");
}

/// Sends `head` (the request line and headers, without the blank line) and `body` as they
/// are, on a connection of its own, and returns the status and everything after the headers.
async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{head}\r\nhost: {addr}\r\nconnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    // The server may answer (and close) before it has read everything.
    let _ = tcp.write_all(&request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer));
    let _ = read.await.expect("the gateway answered within 10 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let rest = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_token_reaches_only_the_providers_api_under_the_base_url() {
    let mock = MockProvider::start().await;
    let a = acme(&mock.url()).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let auth = format!("authorization: Bearer {}", a.token);

    // One line a case: method, path after `/gateway/openai/` (the base URL is `/v1`), the
    // status the client gets. Refused ones never reach the upstream.
    let refused = [
        ("GET", "v1/../../api/v1/orgs", 400),
        ("GET", "v1/%2e%2e/%2e%2e/api/v1/orgs", 400),
        ("GET", "v1/..%2f..%2fapi/v1/orgs", 400),
        ("GET", "v1/%2e%2e%2f%2e%2e%2fapi%2fv1%2forgs", 400),
        ("GET", "v1/models%23/../../admin", 400),
        ("GET", "v1/..\\..\\admin", 400),
        ("GET", "v1/%2E%2E/admin", 400),
        ("GET", "v1/.%2e/%2e./admin", 400),
        ("GET", "v1/%252e%252e/admin", 400),
        ("GET", "v1/..;/admin", 400),
        ("GET", "v1/models/../../../admin?x=1", 400),
        ("POST", "v1/./chat/completions", 400),
        ("POST", "v1/..%5c..%5cadmin", 400),
        ("GET", "v1/a%2Fb", 400),
        ("GET", "v1/models%00", 400),
        ("GET", "v1/..%3f/x", 400),
        ("GET", "v1/%2e%2e%20/x", 400),
        ("GET", "v1/%ef%bc%8e%ef%bc%8e/x", 400),
        ("TRACE", "v1/models", 405),
        ("CONNECT", "v1/models", 405),
        ("FOO", "v1/models", 405),
        ("PROPFIND", "v1/models", 405),
        ("TRACE", "v1/../../admin", 405),
    ];
    for (method, path, want) in refused {
        let (status, body) = raw_request(
            addr,
            &format!("{method} /gateway/openai/{path} HTTP/1.1\r\n{auth}"),
            b"",
        )
        .await;
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(!body.contains(OPENAI_KEY), "{method} {path}");
        assert!(body.contains("\"error\""), "provider-shaped: {body}");
    }
    assert_eq!(mock.hits(), 0, "a refused request reached the upstream");

    // The methods provider APIs use pass, and the upstream sees paths under its base URL.
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
        let (status, body) = raw_request(
            addr,
            &format!("{method} /gateway/openai/v1/files/file-1/content HTTP/1.1\r\n{auth}\r\ncontent-length: 0"),
            b"",
        )
        .await;
        assert_eq!(status, 200, "{method}: {body}");
        let seen = mock.last();
        assert_eq!(
            (seen.method.as_str(), seen.path_and_query().as_str()),
            (method, "/v1/files/file-1/content")
        );
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
    }
    // The same checks guard static targets' routes (405 and 400 come before the target).
    for (head, want) in [
        ("TRACE /gateway/t/any/v1/models", 405),
        ("GET /gateway/t/any/v1/%2e%2e/admin", 400),
    ] {
        let (status, _) = raw_request(addr, &format!("{head} HTTP/1.1\r\n{auth}"), b"").await;
        assert_eq!(status, want, "{head}");
    }
    assert_eq!(mock.hits(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_upstream_quotes_reaches_the_client_masked() {
    // A provider that quotes the key it was sent: under `/v1/quote` a 401 with the key in its
    // text and two headers, under `/v1/quote-split` that text streamed with the key cut across
    // two chunks, and under `/v1/ok-with-header` a 200 echoing the key in a header.
    let mock = MockProvider::start().await;
    let quote =
        format!("{{\"error\":{{\"message\":\"Incorrect API key provided: {OPENAI_KEY}.\"}}}}");
    mock.on_path(
        "/v1/quote",
        Reply::status(401)
            .header("x-seen-auth", format!("Bearer {OPENAI_KEY}"))
            .header("www-authenticate", format!("Bearer realm=\"{OPENAI_KEY}\""))
            .text(quote.clone()),
    );
    let (head, tail) = quote.split_at(quote.find(OPENAI_KEY).unwrap() + 10);
    mock.on_path("/v1/quote-split", Reply::status(400).chunks([head, tail]));
    mock.on_path(
        "/v1/ok-with-header",
        Reply::ok()
            .header("x-echo", format!("got Bearer {OPENAI_KEY}"))
            .text("fine"),
    );
    let a = acme(&mock.url()).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let hint = "sk-...6789";
    // The quoting answer is a 401, so the gateway sets the key aside; the next request finds it
    // cooling down but, being the only key, still tries it.
    for path in ["quote", "quote-split", "ok-with-header"] {
        let resp = client()
            .get(format!("http://{addr}/gateway/openai/v1/{path}"))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap();
        assert_eq!(
            mock.last().header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str()),
            "the key the provider quotes is the one it was sent"
        );
        assert!(!headers.contains(OPENAI_KEY), "{path}: {headers}");
        assert!(!body.contains(OPENAI_KEY), "{path}: {body}");
        match path {
            "ok-with-header" => {
                assert!(headers.contains(&format!("got Bearer {hint}")), "{headers}")
            }
            _ => {
                assert!(
                    body.contains(&format!("Incorrect API key provided: {hint}.")),
                    "{path}: {body}"
                );
                if path == "quote" {
                    assert!(headers.contains(&format!("Bearer {hint}")), "{headers}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_oversized_request_body_is_the_clients_fault_with_any_number_of_keys() {
    let mock = MockProvider::start().await;
    let upstream = mock.url();
    let a = acme(&upstream).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let post = |extra: &str| {
        format!(
            "POST /gateway/openai/v1/chat/completions HTTP/1.1\r\nauthorization: Bearer {}\r\n{extra}",
            a.token
        )
    };
    let extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(100 * 1024));
    let cases: [(&str, &[u8], u16); 4] = [
        (
            "transfer-encoding: chunked",
            b"zz\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        ("transfer-encoding: chunked", extension.as_bytes(), 400),
        // Declared over the limit: refused before any upstream is asked, body unread.
        ("content-length: 20000000", b"{}", 413),
        ("content-length: 2", b"{}", 200),
    ];
    for keys in [1, 2] {
        if keys == 2 {
            add_key(
                &a.vault,
                &a.org,
                "second",
                "sk-proj-UPSTREAMKEY-second-01234",
                &upstream,
                200,
            )
            .await;
        }
        for (header, body, want) in &cases {
            let before = mock.hits();
            let (status, text) = raw_request(addr, &post(header), body).await;
            assert_eq!(status, *want, "{keys} key(s), {header}: {text}");
            if *want == 413 {
                assert_eq!(mock.hits(), before, "the upstream was contacted");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_needs_the_bearer_scheme_and_provider_headers_hold_the_token_alone() {
    let mock = MockProvider::start().await;
    let a = acme(&mock.url()).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let t = &a.token;
    let cases = [
        (format!("authorization: {t}"), 401),
        (format!("authorization: Basic {t}"), 401),
        (format!("authorization: Token {t}"), 401),
        (format!("authorization: Bearer{t}"), 401),
        (format!("authorization: Bearer {t}"), 200),
        (format!("authorization: bearer {t}"), 200),
        (format!("authorization: BEARER {t}"), 200),
        (format!("x-api-key: {t}"), 200),
        (format!("api-key: {t}"), 200),
        (format!("x-goog-api-key: {t}"), 200),
        (format!("x-api-key: Bearer {t}"), 401),
    ];
    for (header, want) in cases {
        let (status, _) = raw_request(
            addr,
            &format!("GET /gateway/openai/v1/models HTTP/1.1\r\n{header}"),
            b"",
        )
        .await;
        assert_eq!(status, want, "{header}");
    }
}

/// A provider written byte by byte: it reads a request's head and writes back what `answer`
/// makes of it, whatever HTTP would allow.
async fn raw_provider(answer: fn(&str) -> String) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = answer(&String::from_utf8_lossy(&seen));
                let _ = tcp.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// Answers `/v1/reason` with the key in its status line, `/v1/gzip` with a 401 marked gzip
/// (quoting the key), and anything else with 200 and the request's head in the body.
fn quoting_answer(head: &str) -> String {
    let path = head.split(' ').nth(1).unwrap_or("");
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("authorization: Bearer "))
        .unwrap_or("")
        .trim();
    match path {
        "/v1/reason" => format!("HTTP/1.1 401 Bearer {key}\r\ncontent-length: 2\r\n\r\n{{}}"),
        "/v1/gzip" | "/v1/gzip-twice" => {
            let body = format!("bad key {key}");
            let encoding = if path == "/v1/gzip" {
                "content-encoding: gzip"
            } else {
                "content-encoding: identity\r\ncontent-encoding: gzip"
            };
            format!(
                "HTTP/1.1 401 Unauthorized\r\n{encoding}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        "/v1/key-as-name" => format!(
            "HTTP/1.1 401 Unauthorized\r\nx-{}: 1\r\ncontent-length: 2\r\n\r\n{{}}",
            key.to_ascii_lowercase()
        ),
        _ => format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{head}",
            head.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_past_the_mask_in_a_status_line_or_a_compressed_error_and_no_overrides_or_tokens_forwarded()
 {
    let a = acme(&format!("http://{}", raw_provider(quoting_answer).await)).await;
    let addr = start(AppState::new(a.vault.clone())).await;
    let auth = format!("authorization: Bearer {}", a.token);
    for path in ["reason", "gzip", "gzip-twice", "key-as-name"] {
        let (status, rest) = raw_request(
            addr,
            &format!("GET /gateway/openai/v1/{path} HTTP/1.1\r\n{auth}\r\naccept-encoding: gzip"),
            b"",
        )
        .await;
        assert_eq!(status, 401, "{path}: {rest}");
        let whole = {
            let (_, full) = raw_request(
                addr,
                &format!("GET /gateway/openai/v1/{path} HTTP/1.1\r\n{auth}"),
                b"",
            )
            .await;
            full
        };
        assert!(
            !rest.to_ascii_lowercase().contains("upstreamkey")
                && !whole.to_ascii_lowercase().contains("upstreamkey"),
            "{path}: {rest}"
        );
    }
    // The status line itself: the canonical reason, not the upstream's.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /gateway/openai/v1/reason HTTP/1.1\r\nhost: x\r\n{auth}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );

    // What the provider is sent: no compression asked for, no method overrides, no gateway
    // token wherever else the client put it.
    let (status, seen) = raw_request(
        addr,
        &format!(
            "POST /gateway/openai/v1/chat?b={t}&c=1&d={enc}&e=a+{t}+b&{t}=1&f=x{t}&g={other} HTTP/1.1\r\n{auth}\r\naccept-encoding: gzip, br\r\nx-http-method-override: TRACE\r\nx-http-method: PROPFIND\r\nx-method-override: CONNECT\r\ncookie: session={t}\r\nx-mine: {t}\r\nx-other: {other}\r\ncontent-length: 0",
            t = a.token,
            enc = a.token.replacen('_', "%5F", 1),
            // Another token (another organization's, say) goes no further either.
            other = "kwg_another-organizations-token-0000000000",
        ),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    let seen = seen.to_ascii_lowercase();
    assert!(seen.starts_with("post /v1/chat?c=1 "), "{seen}");
    assert!(seen.contains("accept-encoding: identity"), "{seen}");
    for gone in [
        "method-override",
        "x-http-method",
        "cookie",
        "x-mine",
        "x-other",
        "kwg_",
        "kwg%5f",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the provider: {seen}");
    }
    // In the path, the token is refused outright.
    for path in [
        format!("models/{}", a.token),
        format!("models/{}", a.token.replacen('_', "%5F", 1)),
    ] {
        let (status, _) = raw_request(
            addr,
            &format!("GET /gateway/openai/v1/{path} HTTP/1.1\r\n{auth}"),
            b"",
        )
        .await;
        assert_eq!(status, 400, "{path}");
    }
}

/// The admin guide's "How Credentials Are Used": the organization's keys, then the
/// environment, then an error. A server falls back only where it is switched on (the server's
/// default, or the organization's own setting), and what the environment served says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_falls_back_to_its_environment_only_where_switched_on() {
    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    let env: std::collections::HashMap<String, String> = [
        (
            "OPENAI_API_KEY".to_owned(),
            "sk-proj-FROMSERVERENV-0123456789".to_owned(),
        ),
        (
            "OPENAI_BASE_URL".to_owned(),
            format!("http://{upstream}/v1"),
        ),
    ]
    .into();
    let kept = TestVault::open_with(VaultOptions {
        env: keyward_store::EnvSource::Map(Arc::new(env)),
        ..VaultOptions::default()
    })
    .await;
    let vault = kept.vault.clone();
    let mut tokens = Vec::new();
    for name in ["acme", "globex"] {
        let org = OrgId::new(name).unwrap();
        vault.create_org(&org, None, "test").await.unwrap();
        let (t, _) = vault
            .create_gateway_token(&org, "app", &[], None, None, "test")
            .await
            .unwrap();
        tokens.push(t.expose_secret().to_owned());
    }
    let (admin, _) = vault
        .create_token("admin", keyward_server::Role::Admin, None, None, "test")
        .await
        .unwrap();
    let admin = admin.expose_secret().to_owned();
    let chat = |addr: SocketAddr, token: String| async move {
        client()
            .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
            .bearer_auth(token)
            .json(&json!({"model": "m"}))
            .send()
            .await
            .unwrap()
    };
    let resolve = |addr: SocketAddr, org: &'static str| {
        let admin = admin.clone();
        async move {
            client()
                .post(format!("http://{addr}/api/v1/resolve"))
                .bearer_auth(admin)
                .json(&json!({"organization_id": org, "provider": "openai"}))
                .send()
                .await
                .unwrap()
        }
    };

    // Off by default: a server's own keys are nobody's.
    let off = start(AppState::new(vault.clone())).await;
    assert_eq!(
        chat(off, tokens[0].clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(resolve(off, "acme").await.status(), StatusCode::NOT_FOUND);

    // An admin switches it on for acme alone.
    let resp = client()
        .patch(format!("http://{off}/api/v1/orgs/acme"))
        .bearer_auth(&admin)
        .json(&json!({"env_fallback": "on"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["env_fallback"], true);
    let resp = chat(off, tokens[0].clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-keyward-credential"], "env:OPENAI_API_KEY");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "the provider's answer");
    assert_eq!(
        seen_auth(&mock.last()),
        "authorization: Bearer sk-proj-FROMSERVERENV-0123456789"
    );
    let answer: Value = resolve(off, "acme").await.json().await.unwrap();
    assert_eq!(answer["source"], "env:OPENAI_API_KEY");
    assert_eq!(answer["base_url"], format!("http://{upstream}/v1"));
    assert_eq!(
        chat(off, tokens[1].clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    // Only an admin may: it hands out the server's own keys.
    let (org_admin, _) = vault
        .create_token(
            "globex admin",
            keyward_server::Role::OrgAdmin,
            Some(&OrgId::new("globex").unwrap()),
            None,
            "test",
        )
        .await
        .unwrap();
    let resp = client()
        .patch(format!("http://{off}/api/v1/orgs/globex"))
        .bearer_auth(org_admin.expose_secret())
        .json(&json!({"env_fallback": "on"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // `--env-fallback`: on for every organization that does not say otherwise.
    let on = start(AppState::new(vault.clone()).with_env_fallback(true)).await;
    assert_eq!(chat(on, tokens[1].clone()).await.status(), StatusCode::OK);
    vault
        .set_org_env_fallback(&OrgId::new("globex").unwrap(), Some(false), "test")
        .await
        .unwrap();
    assert_eq!(
        chat(on, tokens[1].clone()).await.status(),
        StatusCode::FORBIDDEN
    );

    // The trail and the usage say the environment served.
    let answered = vault
        .list_events(&"action=resolve,outcome=success".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(answered[0].details["source"], "environment");
    assert_eq!(answered[0].details["variable"], "OPENAI_API_KEY");
    let served = eventually(|| async {
        let events = vault
            .list_events(&"action=gateway_env_fallback".parse().unwrap(), 10)
            .await
            .unwrap();
        (events.len() >= 2).then_some(events)
    })
    .await;
    assert_eq!(
        served.len(),
        2,
        "once a minute per organization and provider"
    );
    assert!(
        served
            .iter()
            .all(|e| e.details["variable"] == "OPENAI_API_KEY")
    );
    assert!(
        !serde_json::to_string(&served)
            .unwrap()
            .contains("FROMSERVERENV"),
        "never the key"
    );
    let usage = eventually(|| async {
        let usage = vault.usage(&OrgId::new("acme").unwrap()).await.unwrap();
        usage
            .iter()
            .any(|u| u.subject == keyward_store::UsageSubject::Environment)
            .then_some(usage)
    })
    .await;
    let from_env = usage
        .iter()
        .find(|u| u.subject == keyward_store::UsageSubject::Environment)
        .unwrap();
    assert_eq!(
        (from_env.name.as_deref(), from_env.provider.as_deref()),
        (Some("OPENAI_API_KEY"), Some("openai"))
    );
}

/// ElevenLabs takes its key in `xi-api-key`, Deepgram as `Authorization: Token`: their SDKs
/// send the gateway token the same way, and the provider gets its key the way it wants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_with_their_own_key_headers_get_them() {
    let mock = MockProvider::start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();
    for (provider, key) in [
        (
            "elevenlabs",
            "sk_ELEVENCANARY0123456789abcdef0123456789abcdef01",
        ),
        ("deepgram", "DEEPGRAMCANARY0123456789abcdef0123456789"),
    ] {
        let mut c = NewCredential::new(
            org.clone(),
            Provider::get(provider).unwrap(),
            CredentialName::new("main").unwrap(),
            Some(key.into()),
        );
        c.fields.insert("base_url".into(), mock.url());
        vault.add_credential(c, "test").await.unwrap();
    }
    let (token, _) = vault
        .create_gateway_token(&org, "app", &[], None, None, "test")
        .await
        .unwrap();
    let t = token.expose_secret();
    let addr = start(AppState::new(vault.clone())).await;
    for (path, header, want) in [
        (
            "elevenlabs/v1/text-to-speech/voice",
            format!("xi-api-key: {t}"),
            "xi-api-key: sk_ELEVENCANARY0123456789abcdef0123456789abcdef01",
        ),
        (
            "deepgram/v1/listen",
            format!("authorization: Token {t}"),
            "authorization: Token DEEPGRAMCANARY0123456789abcdef0123456789",
        ),
    ] {
        let resp = client()
            .post(format!("http://{addr}/gateway/{path}"))
            .header(
                header.split_once(": ").unwrap().0,
                header.split_once(": ").unwrap().1,
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let seen = mock.last();
        let (name, value) = want.split_once(": ").unwrap();
        assert!(
            seen.header(name)
                .is_some_and(|v| v.eq_ignore_ascii_case(value)),
            "{path}: {seen:?}"
        );
        assert!(
            !carries(&seen, "kwg_"),
            "the gateway token stays here: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_targets_read_keys_from_vault_kv_at_every_load_and_fail_naming_the_reference() {
    let Some(bao) = keyward_testkit::kms::Bao::start().await else {
        return;
    };
    const FIRST: &str = "sk-proj-KVCANARY-first-0123456789";
    const SECOND: &str = "sk-proj-KVCANARY-second-012345678";
    bao.kv_put("providers", json!({"openai_api_key": FIRST, "blank": ""}))
        .await;
    bao.kv_put("other", json!({"openai_api_key": FIRST})).await;
    let token = bao
        .token_with_policy(
            "keyward-kv",
            "path \"secret/data/providers\" { capabilities = [\"read\"] }\n\
             path \"secret/data/absent\" { capabilities = [\"read\"] }\n",
        )
        .await;
    let env: Vec<(String, String)> = vec![
        ("VAULT_ADDR".into(), bao.addr.clone()),
        ("VAULT_TOKEN".into(), token.clone()),
    ];
    let kv = keyward_kms::kv::LazyKvReader::new(move |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    });

    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let acme = OrgId::new("acme").unwrap();
    vault.create_org(&acme, None, "test").await.unwrap();
    let (acme_token, _) = vault
        .create_gateway_token(&acme, "app", &[], None, None, "test")
        .await
        .unwrap();
    let (admin, _) = vault
        .create_token("admin", keyward_server::Role::Admin, None, None, "test")
        .await
        .unwrap();
    let file = kept.dir.path().join("gateway.yaml");
    let target = |reference: &str| {
        format!(
            "org: acme\ntargets:\n  - id: openai-kv\n    provider: openai\n    base_url: http://{upstream}/v1\n    secret_key_ref: {reference}\n"
        )
    };
    let good = target("{ vault: \"secret/data/providers#openai_api_key\" }");
    std::fs::write(&file, &good).unwrap();
    let state = AppState::new(vault.clone()).with_gateway(GatewayOptions {
        targets_file: Some(file.clone()),
        vault_kv: Arc::new(kv),
        ..GatewayOptions::default()
    });
    let loaded = state
        .reload_gateway_targets(keyward_server::LoadTrigger::Start, "serve:start")
        .await
        .unwrap();
    assert_eq!(
        loaded.targets[0].reference.as_deref(),
        Some("vault: secret/data/providers#openai_api_key")
    );
    let addr = start(state).await;
    let chat = || {
        client()
            .post(format!(
                "http://{addr}/gateway/t/openai-kv/v1/chat/completions"
            ))
            .bearer_auth(acme_token.expose_secret())
            .json(&json!({"model": "gpt-x"}))
            .send()
    };
    let reload = || async {
        let resp = client()
            .post(format!("http://{addr}/api/v1/gateway/reload"))
            .bearer_auth(admin.expose_secret())
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    let served_with = |key: &str| {
        let mock = &mock;
        let key = key.to_owned();
        async move {
            let resp = chat().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(
                seen_auth(&mock.last()),
                format!("authorization: Bearer {key}")
            );
        }
    };
    served_with(FIRST).await;

    // The key changes in Vault: the running target keeps the key it read until a reload.
    bao.kv_put("providers", json!({"openai_api_key": SECOND, "blank": ""}))
        .await;
    served_with(FIRST).await;
    let (st, body) = reload().await;
    assert_eq!(st, StatusCode::OK, "{body}");
    served_with(SECOND).await;

    // References that cannot be read fail the reload naming them and why; the running target
    // stays, and neither a key nor the token is in any message.
    let no_kind = "secret_key_ref takes exactly one of store: VAR, env: VAR and vault:";
    for (reference, says) in [
        (
            "{ vault: \"secret/data/providers#gemini_api_key\" }".to_owned(),
            "target 'openai-kv': secret_key_ref vault secret/data/providers#gemini_api_key: the secret at secret/data/providers has no text field 'gemini_api_key'",
        ),
        (
            "{ vault: \"secret/data/providers#blank\" }".to_owned(),
            "secret_key_ref vault secret/data/providers#blank: the field 'blank' of the secret at secret/data/providers is empty",
        ),
        (
            "{ vault: \"secret/absent#openai_api_key\" }".to_owned(),
            "secret_key_ref vault secret/data/absent#openai_api_key: no secret at secret/data/absent",
        ),
        (
            "{ vault: \"secret/data/other#openai_api_key\" }".to_owned(),
            "secret_key_ref vault secret/data/other#openai_api_key: OpenBao/Vault at http://127.0.0.1",
        ),
        (
            "{ vault: \"secret/data/other#openai_api_key\" }".to_owned(),
            "refused: permission denied: the token is not valid (expired or revoked), or its policy lacks `read` on secret/data/other",
        ),
        (
            "{ vault: \"secret/data/../../sys/raw#x\" }".to_owned(),
            "secret_key_ref vault: not a Vault KV reference",
        ),
        (
            format!("{{ vault: \"{FIRST}\" }}"),
            "secret_key_ref vault: not a Vault reference (MOUNT/data/PATH#FIELD)",
        ),
        (
            format!("{{ vault: \"secret/data/providers#{FIRST}\" }}"),
            "secret_key_ref vault: not a Vault reference",
        ),
        (
            "{ vault: \"secret/data/providers#openai_api_key\", env: OPENAI_API_KEY }".to_owned(),
            no_kind,
        ),
    ] {
        std::fs::write(&file, target(&reference)).unwrap();
        let (st, body) = reload().await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail:?} should say {says:?}");
        assert!(detail.contains("the previous targets stay"), "{detail}");
        assert!(!detail.contains("KVCANARY"), "{detail}");
        assert!(!detail.contains(&token), "{detail}");
        served_with(SECOND).await;
    }

    // The token revoked: the good file no longer loads, and says why.
    bao.revoke(&token).await;
    std::fs::write(&file, &good).unwrap();
    let (st, body) = reload().await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "target 'openai-kv': secret_key_ref vault secret/data/providers#openai_api_key: OpenBao/Vault at"
        ) && detail.contains("the token is not valid (expired or revoked), or its policy lacks `read` on secret/data/providers"),
        "{detail}"
    );
    assert!(
        !detail.contains("KVCANARY") && !detail.contains(&token),
        "{detail}"
    );
    served_with(SECOND).await;

    // The trail names the reference, never a key or the token.
    let reloads = vault
        .list_events(&"action=gateway_reload".parse().unwrap(), 100)
        .await
        .unwrap();
    assert!(
        reloads.iter().any(|e| e.details["targets"][0]["reference"]
            == "vault: secret/data/providers#openai_api_key"),
        "{reloads:?}"
    );
    for e in &reloads {
        let text = e.details.to_string();
        assert!(
            !text.contains("KVCANARY") && !text.contains(&token),
            "{text}"
        );
    }
}

/// Two replicas on one PostgreSQL: a key one of them sets aside after a 429 is set aside by
/// the other within moments (the change channel carries it), so the other does not try it
/// again; both show it in their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_one_replica_sets_aside_is_set_aside_by_the_others() {
    let Some(kept) = TestVault::postgres("kw_cool").await else {
        return;
    };
    let mock = MockProvider::start().await;
    mock.on_key(
        "sk-rate-limited-000000000000",
        Reply::status(429).header("retry-after", "120"),
    );
    let url = kept.schema.as_ref().unwrap().url();
    let replica = || async {
        Vault::open(
            &keyward_store::Location::Url(url.clone()),
            keyward_testkit::keyring(),
            VaultOptions {
                listen_for_changes: true,
                ..VaultOptions::default()
            },
        )
        .await
        .unwrap()
    };
    let (a, b) = (replica().await, replica().await);
    let acme = OrgId::new("acme").unwrap();
    a.create_org(&acme, None, "test").await.unwrap();
    let busy = add_key(
        &a,
        &acme,
        "busy",
        "sk-rate-limited-000000000000",
        &mock.url(),
        1,
    )
    .await;
    let good = add_key(
        &a,
        &acme,
        "good",
        "sk-good-key-0000000000000000",
        &mock.url(),
        2,
    )
    .await;
    let (token, _) = a
        .create_gateway_token(&acme, "app", &[], None, None, "test")
        .await
        .unwrap();
    let (admin, _) = a
        .create_token("t", keyward_server::Role::Admin, None, None, "test")
        .await
        .unwrap();
    let (addr_a, addr_b) = (
        start(AppState::new(a.clone())).await,
        start(AppState::new(b.clone())).await,
    );
    let call = |addr: SocketAddr| {
        let token = token.expose_secret().to_owned();
        async move {
            client()
                .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
                .bearer_auth(token)
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
        }
    };
    let set_aside = |addr: SocketAddr| {
        let admin = admin.expose_secret().to_owned();
        async move {
            let status: Value = client()
                .get(format!("http://{addr}/api/v1/gateway/status"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            status["providers"][0]["set_aside"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap().to_owned(),
                        c["reason"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    // Both replicas are up (a replica that starts later than a note misses it, and finds out
    // from the provider itself).
    assert_eq!(set_aside(addr_a).await, []);
    assert_eq!(set_aside(addr_b).await, []);
    // Replica B serves first: the busy key is rate-limited, B sets it aside and fails over.
    assert_eq!(
        call(addr_b).await.headers()["x-keyward-credential"],
        good.as_str()
    );
    assert_eq!(
        mock.hits(),
        2,
        "B tried the busy key, which B then set aside"
    );
    // Replica A never asked the provider about the busy key: it knows because B told it.
    let expected = vec![(busy.to_string(), "rate_limited".to_owned())];
    let heard = eventually(|| async {
        let seen = set_aside(addr_a).await;
        (seen == expected).then_some(seen)
    })
    .await;
    assert_eq!(heard, expected);
    assert_eq!(set_aside(addr_b).await, expected);
    let resp = call(addr_a).await;
    assert_eq!(resp.headers()["x-keyward-credential"], good.as_str());
    assert_eq!(mock.hits(), 3, "A did not try the key B set aside");
    drop((a, b));
    kept.close().await;
}
