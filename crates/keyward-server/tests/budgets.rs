//! Budgets and limits: refused before any provider is contacted, in the provider's shape,
//! saying which budget and when it resets; held across replicas on one PostgreSQL.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, Millis, OrgId, Provider};
use keyward_server::AppState;
use keyward_store::{BudgetScope, Metric, NewBudget, Period, Vault};
use keyward_testkit::{MockProvider, MockUsage, TestVault, spawn_server};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

/// gpt-4o at $2.50 in, $10 out per million: 10 000 in and 2 000 out cost $0.045.
const USAGE: MockUsage = MockUsage {
    input: 10_000,
    output: 2_000,
    cached: 0,
};
const COST: u64 = 45_000;

async fn add_openai(vault: &Vault, org: &OrgId, base: String) -> keyward_core::CredentialId {
    let mut c = NewCredential::new(
        org.clone(),
        Provider::get("openai").unwrap(),
        CredentialName::new("main").unwrap(),
        Some("sk-proj-BUDGETKEY-0123456789abcdef".into()),
    );
    c.fields.insert("base_url".into(), base);
    vault.add_credential(c, "test").await.unwrap().id
}

/// Organization acme on `vault`, with an OpenAI key pointed at `mock` and a gateway token
/// `app`: the credential's id, the token and its id.
async fn acme(
    vault: &Vault,
    mock: &MockProvider,
) -> (OrgId, keyward_core::CredentialId, String, String) {
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();
    let cred = add_openai(vault, &org, mock.url()).await;
    let (token, view) = vault
        .create_gateway_token(&org, "app", &[], None, None, "test")
        .await
        .unwrap();
    (org, cred, token.expose_secret().to_owned(), view.id)
}

fn chat(stream: bool) -> Value {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn ask(addr: std::net::SocketAddr, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `n` chat completions sent at once; their statuses.
async fn burst(addr: std::net::SocketAddr, token: &str, n: usize) -> Vec<u16> {
    let sent: Vec<_> = (0..n)
        .map(|_| {
            let token = token.to_owned();
            tokio::spawn(async move { ask(addr, &token, &chat(false)).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::with_capacity(n);
    for s in sent {
        statuses.push(s.await.unwrap());
    }
    statuses
}

/// A listener on 127.0.0.1 that keeps the JSON bodies POSTed to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn budget(org: &OrgId, scope: BudgetScope, id: &str, usd_micros: u64) -> NewBudget {
    NewBudget {
        org: org.clone(),
        scope,
        scope_id: id.to_owned(),
        metric: Metric::Usd,
        period: Period::Month,
        amount: usd_micros,
        alerts: vec![50, 100],
        webhook: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_refuses_before_the_provider_saying_which_and_when_it_resets() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let (org, _, token, token_id) = acme(&vault, &mock).await;
    let (hook, alerts) = webhook().await;
    // $0.10: three answers of $0.045 spend it (the third goes past it, being let through
    // while some was left).
    let mut b = budget(&org, BudgetScope::GatewayToken, &token_id, 100_000);
    // A webhook with a user and password is refused; one's path is shown as its origin only.
    b.webhook = Some(hook.replace("http://", "http://user:S3cret@"));
    assert!(vault.set_budget(&b, "test").await.is_err());
    b.webhook = Some(hook.clone());
    let set = vault.set_budget(&b, "test").await.unwrap();
    let shown = serde_json::to_value(&set).unwrap();
    assert_eq!(
        shown["webhook"],
        format!("{}/…", hook.trim_end_matches("/hook"))
    );
    let addr = spawn_server(AppState::new(vault.clone())).await;

    let mut served = 0;
    let refused = loop {
        let r = ask(addr, &token, &chat(false)).await;
        if r.status() != 200 {
            break r;
        }
        served += 1;
        assert!(served < 10, "the budget never refused");
    };
    assert_eq!(served, 3);
    assert_eq!(
        mock.hits(),
        3,
        "the refused request never reached the provider"
    );
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-should-retry"], "false");
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let end = Period::Month
        .end(Period::Month.start(Millis::now()))
        .unwrap();
    assert!(retry.abs_diff(u64::try_from((end - Millis::now().0) / 1000).unwrap()) < 5);
    let body: Value = refused.json().await.unwrap();
    let resets = humantime::format_rfc3339_seconds(Millis(end).to_system_time()).to_string();
    assert_eq!(
        body["error"]["message"],
        format!(
            "the monthly budget of gateway token 'app' ($0.100000) is spent; it resets at {resets}"
        )
    );
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert_eq!(body["error"]["type"], "insufficient_quota");

    // The alerts went out once each, at 50% and at 100%, and are in the audit trail.
    for _ in 0..100 {
        if alerts.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent: Vec<(u64, u64)> = alerts
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a["percent"].as_u64().unwrap(), a["limit"].as_u64().unwrap()))
        .collect();
    assert_eq!(sent, [(50, 100_000), (100, 100_000)]);
    let events = vault
        .list_events(&keyward_core::audit::EventFilter::default(), 100)
        .await
        .unwrap();
    let alerted = events.iter().filter(|e| e.action == "budget_alert").count();
    assert_eq!(alerted, 2);

    // The organization's other tokens are not held by this one's budget; an organization's
    // own budget holds them all.
    let (other, _) = vault
        .create_gateway_token(&org, "other", &[], None, None, "test")
        .await
        .unwrap();
    assert_eq!(
        ask(addr, other.expose_secret(), &chat(false))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_reached_mid_stream_lets_the_stream_finish_and_refuses_the_next_request() {
    let mock = MockProvider::builder()
        .usage(USAGE)
        .stream_pause(Duration::from_millis(30))
        .start()
        .await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let (org, _, token, _) = acme(&vault, &mock).await;
    // Less than one answer: the first stream goes through, and spends it.
    vault
        .set_budget(&budget(&org, BudgetScope::Org, "", 10_000), "test")
        .await
        .unwrap();
    let addr = spawn_server(AppState::new(vault.clone())).await;

    let streamed = ask(addr, &token, &chat(true)).await;
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    assert!(
        text.contains("\"usage\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    let next = ask(addr, &token, &chat(true)).await;
    assert_eq!(next.status(), 429);
    let body: Value = next.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "the monthly budget of organization 'acme' ($0.010000) is spent; it resets at "
        ),
        "{message}"
    );
    assert_eq!(mock.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_allow_list_and_a_credentials_budget_are_checked_before_the_provider() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let (org, cred, token, token_id) = acme(&vault, &mock).await;
    vault
        .update_gateway_token(
            &token_id,
            Some(vec!["gpt-4o".into(), "claude-*".into()]),
            None,
            None,
            "test",
        )
        .await
        .unwrap();
    let addr = spawn_server(AppState::new(vault.clone())).await;

    let mut other = chat(false);
    other["model"] = json!("o1");
    let refused = ask(addr, &token, &other).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "this gateway token may not use the model \"o1\"; it may use: gpt-4o, claude-*"
    );
    assert_eq!(mock.hits(), 0);
    // Only Gemini's, Vertex's and Azure's paths name a model: OpenAI's is the body's, whatever
    // its path holds.
    let sneaked = reqwest::Client::new()
        .post(format!(
            "http://{addr}/gateway/openai/v1/chat/completions;models/gpt-4o"
        ))
        .bearer_auth(&token)
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(sneaked.status(), 403);
    assert_eq!(mock.hits(), 0);
    // A key pasted as a model pattern is refused, not listed to viewers.
    let pasted = vault
        .update_gateway_token(
            &token_id,
            Some(vec!["sk-proj-PASTEDKEY0123456789abcdefXYZ1".into()]),
            None,
            None,
            "test",
        )
        .await;
    assert!(pasted.is_err());
    assert_eq!(ask(addr, &token, &chat(false)).await.status(), 200);

    // The credential's own budget: spent, the organization has no other key to try.
    vault
        .set_budget(
            &budget(&org, BudgetScope::Credential, cred.as_str(), 1),
            "test",
        )
        .await
        .unwrap();
    let state_reload = AppState::new(vault.clone());
    let addr = spawn_server(state_reload).await;
    assert_eq!(ask(addr, &token, &chat(false)).await.status(), 200);
    let refused = ask(addr, &token, &chat(false)).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the monthly budget of credential 'main' ($0.000001) is spent"),
        "{body}"
    );
    assert_eq!(mock.hits(), 2);
}

/// Three servers on one PostgreSQL schema.
async fn replicas(kept: &TestVault) -> Vec<std::net::SocketAddr> {
    let url = kept.schema.as_ref().unwrap().url();
    let mut addrs = vec![spawn_server(AppState::new(kept.vault.clone())).await];
    for _ in 0..2 {
        let vault = Vault::open(
            &keyward_store::Location::Url(url.clone()),
            keyward_testkit::keyring(),
            keyward_store::VaultOptions::default(),
        )
        .await
        .unwrap();
        addrs.push(spawn_server(AppState::new(vault)).await);
    }
    addrs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_hold_one_budget_and_one_rate_limit() {
    let Some(kept) = TestVault::postgres("budgets").await else {
        return;
    };
    let mock = MockProvider::builder()
        .usage(USAGE)
        .unrecorded()
        .start()
        .await;
    let vault = kept.vault.clone();
    let (org, _, token, _) = acme(&vault, &mock).await;
    // $1 for the organization: 22 answers of $0.045 leave $0.01, which one more may take.
    vault
        .set_budget(&budget(&org, BudgetScope::Org, "", 1_000_000), "test")
        .await
        .unwrap();
    let addrs = replicas(&kept).await;

    // Twelve clients, four on each replica, each until told three times running that the
    // budget is spent (`x-should-retry: false`), as an SDK would; a refusal that may pass on
    // retry (another replica holds the allowance for now) is retried, ten times running at most.
    let mut clients = Vec::new();
    for i in 0..12 {
        let addr = addrs[i % 3];
        let token = token.clone();
        clients.push(tokio::spawn(async move {
            let (mut served, mut spent_running, mut busy_running) = (0u64, 0, 0);
            for _ in 0..100 {
                let resp = ask(addr, &token, &chat(false)).await;
                match resp.status().as_u16() {
                    200 => {
                        served += 1;
                        (spent_running, busy_running) = (0, 0);
                    }
                    429 => {
                        let spent = resp
                            .headers()
                            .get("x-should-retry")
                            .is_some_and(|v| v == "false");
                        let running = if spent {
                            &mut spent_running
                        } else {
                            &mut busy_running
                        };
                        *running += 1;
                        if spent_running == 3 || busy_running == 10 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
            served
        }));
    }
    let mut served = 0;
    for c in clients {
        served += c.await.unwrap();
    }
    let spent = served * COST;
    // The documented bound: at most one answer per replica past the budget.
    assert!(
        spent <= 1_000_000 + 3 * COST,
        "{served} answers spent {spent} micro-dollars of a 1000000 budget"
    );
    // And used up, to within one answer (less than one answer's cost left may be refused:
    // a replica reserves the costliest answer it has seen for each request in flight).
    assert!(
        spent + COST >= 1_000_000,
        "the budget was not used up: {served} answers"
    );

    // 30 requests a minute for one token (of another organization, without a budget), asked
    // 60 times across the replicas in one minute.
    let globex = OrgId::new("globex").unwrap();
    vault.create_org(&globex, None, "test").await.unwrap();
    add_openai(&vault, &globex, mock.url()).await;
    let (limited, _) = vault
        .create_gateway_token(&globex, "limited", &[], Some(30), None, "test")
        .await
        .unwrap();
    keyward_testkit::room_in_this_minute(Duration::from_secs(25)).await;
    let mut calls = Vec::new();
    for i in 0..60 {
        let addr = addrs[i % 3];
        let t = limited.expose_secret().to_owned();
        calls.push(tokio::spawn(async move {
            ask(addr, &t, &chat(false)).await.status().as_u16()
        }));
    }
    let mut ok = 0;
    for c in calls {
        match c.await.unwrap() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    eprintln!("rpm: {ok} of 60 let through");
    // Never more than the limit. A burst may leave a little of it unused in one replica's
    // lease while another refuses (it comes back at the next report): most of it is used.
    assert!(
        ok <= 30,
        "{ok} let through: more than 30 a minute across three replicas"
    );
    assert!(ok >= 20, "only {ok} of 30 let through");
    kept.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_database_spends_no_more_than_its_lease() {
    let Some(cluster) = keyward_testkit::PgCluster::start() else {
        return;
    };
    let mock = MockProvider::builder()
        .usage(USAGE)
        .unrecorded()
        .start()
        .await;
    let vault = Vault::open(
        &keyward_store::Location::Url(cluster.url()),
        keyward_testkit::keyring(),
        keyward_store::VaultOptions::default(),
    )
    .await
    .unwrap();
    let (org, _, token, _) = acme(&vault, &mock).await;
    // $10: a replica asks for a twentieth ($0.50) or four answers ($0.18), whichever is more.
    vault
        .set_budget(&budget(&org, BudgetScope::Org, "", 10_000_000), "test")
        .await
        .unwrap();
    let addr = spawn_server(AppState::new(vault.clone())).await;
    // Two answers: the token and the key are cached, the replica holds a lease.
    for _ in 0..2 {
        assert_eq!(ask(addr, &token, &chat(false)).await.status(), 200);
    }
    let reported = Duration::from_millis(1500);
    tokio::time::sleep(reported).await;
    cluster.pg_stop();
    // The database is away: the replica spends what it holds, then answers 503.
    let mut served = 0u64;
    let mut last = 0;
    for _ in 0..40 {
        let r = ask(addr, &token, &chat(false)).await;
        last = r.status().as_u16();
        match last {
            200 => served += 1,
            _ => break,
        }
    }
    assert_eq!(last, 503, "past its lease the replica cannot ask for more");
    // At most the $0.50 lease held at the last report, plus one answer let through while some
    // was left.
    assert!(
        served * COST <= 500_000 + COST,
        "{served} answers (${}) spent while the database was away",
        served * COST
    );
    assert!(
        served >= 1,
        "what was leased is spent while the database is away"
    );
    cluster.pg_start();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_budget_applies_at_once_and_a_first_burst_cannot_overspend_it() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    // Slow answers: a burst's requests are all in flight at once.
    mock.on_path(
        "/v1/chat/completions",
        keyward_testkit::Reply::ok().delay(Duration::from_millis(300)),
    );
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let (org, _, token, token_id) = acme(&vault, &mock).await;
    let state = AppState::new(vault.clone());
    let addr = spawn_server(state.clone()).await;
    // $0.10 new, and ten at once: no answer's cost has been seen, so the first goes alone
    // and the others are let through against what it cost. Three answers cover $0.10.
    vault
        .set_budget(
            &budget(&org, BudgetScope::GatewayToken, &token_id, 100_000),
            "test",
        )
        .await
        .unwrap();
    state.reload_budgets().await;
    let served = burst(addr, &token, 10)
        .await
        .iter()
        .filter(|s| **s == 200)
        .count() as u64;
    assert!(
        served * COST <= 100_000 + COST,
        "{served} answers of a first burst spent {} of 100000",
        served * COST
    );
    assert!(served >= 2, "{served}");

    // Raised while spent: the next request goes through at once.
    let mut raised = budget(&org, BudgetScope::GatewayToken, &token_id, 1_000_000_000);
    raised.alerts = vec![];
    vault.set_budget(&raised, "test").await.unwrap();
    state.reload_budgets().await;
    assert_eq!(ask(addr, &token, &chat(false)).await.status(), 200);
    // "stream" spelled with an escape is "stream" to every JSON parser: its usage is asked for
    // and counted too.
    let raw = reqwest::Client::new()
        .post(format!("http://{addr}/gateway/openai/v1/chat/completions"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"model": "gpt-4o", "messages": [], "str\u0065am": true}"#)
        .send()
        .await
        .unwrap();
    let _ = raw.text().await;
    let asked = mock.last();
    assert_eq!(asked.json()["stream_options"]["include_usage"], true);

    // Lowered under what was spent while the replica holds a large lease: refused at once.
    vault
        .set_budget(
            &budget(&org, BudgetScope::GatewayToken, &token_id, 50_000),
            "test",
        )
        .await
        .unwrap();
    state.reload_budgets().await;
    assert_eq!(ask(addr, &token, &chat(false)).await.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_at_once_within_a_budget_all_go_through() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    mock.on_path(
        "/v1/chat/completions",
        keyward_testkit::Reply::ok().delay(Duration::from_millis(300)),
    );
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let (org, _, token, _) = acme(&vault, &mock).await;
    // $1, and twelve at once after one answer: $0.585 in all, well within it.
    vault
        .set_budget(&budget(&org, BudgetScope::Org, "", 1_000_000), "test")
        .await
        .unwrap();
    let addr = spawn_server(AppState::new(vault.clone())).await;
    assert_eq!(ask(addr, &token, &chat(false)).await.status(), 200);
    assert_eq!(burst(addr, &token, 12).await, vec![200; 12]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_by_one_limit_uses_up_none_of_the_others() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let (org, _, token, token_id) = acme(&vault, &mock).await;
    // The organization: 4 requests a minute. The token: 1000 tokens a minute, which one
    // answer (12 000 tokens) spends.
    let mut rpm = budget(&org, BudgetScope::Org, "", 4);
    rpm.metric = Metric::Requests;
    rpm.period = Period::Minute;
    rpm.alerts = vec![];
    vault.set_budget(&rpm, "test").await.unwrap();
    vault
        .update_gateway_token(&token_id, None, None, Some(Some(1000)), "test")
        .await
        .unwrap();
    let (other, _) = vault
        .create_gateway_token(&org, "other", &[], None, None, "test")
        .await
        .unwrap();
    let addr = spawn_server(AppState::new(vault.clone())).await;
    keyward_testkit::room_in_this_minute(Duration::from_secs(20)).await;
    assert_eq!(ask(addr, &token, &chat(false)).await.status(), 200);
    // Refused by the token's tpm: these take nothing of the organization's 4 a minute.
    for _ in 0..5 {
        assert_eq!(ask(addr, &token, &chat(false)).await.status(), 429);
    }
    for _ in 0..3 {
        assert_eq!(
            ask(addr, other.expose_secret(), &chat(false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        ask(addr, other.expose_secret(), &chat(false))
            .await
            .status(),
        429
    );
}
