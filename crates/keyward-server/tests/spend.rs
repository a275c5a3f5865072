//! Spend: the gateway reads the tokens every provider's answer reports, streamed or not, prices
//! them, and hands the client the answer it would have had from the provider itself.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, Millis, OrgId, Provider};
use keyward_server::AppState;
use keyward_store::{SpendDim, SpendQuery, SpendRow, UsageSubject, Vault};
use keyward_testkit::{MockProvider, MockUsage, TestVault, spawn_server};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

const USAGE: MockUsage = MockUsage {
    input: 1200,
    output: 345,
    cached: 200,
};

async fn add(vault: &Vault, org: &OrgId, provider: &str, key: &str, base: String) {
    let mut c = NewCredential::new(
        org.clone(),
        Provider::get(provider).unwrap(),
        CredentialName::new("main").unwrap(),
        Some(key.into()),
    );
    c.fields.insert("base_url".into(), base);
    vault.add_credential(c, "test").await.unwrap();
}

/// One request through the gateway and the same one straight to the provider.
struct Case {
    provider: &'static str,
    /// Under the provider's base URL.
    path: &'static str,
    body: Value,
    /// The model it should be counted under, and whether its answer reports tokens.
    model: &'static str,
    metered: bool,
    /// What its tokens cost at the shipped prices, worked out by hand (micro-dollars).
    cost: u64,
}

fn cases() -> Vec<Case> {
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let mut streamed_with_usage = streamed.clone();
    streamed_with_usage["stream_options"] = json!({"include_usage": true});
    let claude = json!({"model": "claude-sonnet-4-20250514", "max_tokens": 100,
                        "messages": [{"role": "user", "content": "hi"}]});
    let mut claude_streamed = claude.clone();
    claude_streamed["stream"] = json!(true);
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    // gpt-4o-mini: 1000 plain input at $0.15/M, 200 cached at $0.075/M, 345 out at $0.60/M.
    let mini = 150 + 15 + 207;
    // gpt-4.1: $2, $0.50, $8.
    let four_one = 2000 + 100 + 2760;
    // claude-sonnet-4: $3, $0.30 read, $15 out.
    let sonnet = 3000 + 60 + 5175;
    // gemini-2.5-flash: $0.30, $0.075, $2.50: 1177.5, rounded up.
    let flash = 1178;
    vec![
        Case {
            provider: "openai",
            path: "v1/chat/completions",
            body: chat,
            model: "gpt-4o-mini",
            metered: true,
            cost: mini,
        },
        Case {
            provider: "openai",
            path: "v1/chat/completions",
            body: streamed_with_usage,
            model: "gpt-4o-mini",
            metered: true,
            cost: mini,
        },
        Case {
            provider: "openai",
            path: "v1/chat/completions",
            // Streamed without asking for usage: the gateway asks, and hides the chunk it
            // brings.
            body: streamed,
            model: "gpt-4o-mini",
            metered: true,
            cost: mini,
        },
        Case {
            provider: "openai",
            path: "v1/embeddings",
            body: json!({"model": "text-embedding-3-small", "input": "hi"}),
            model: "text-embedding-3-small",
            metered: true,
            cost: 24,
        },
        Case {
            provider: "openai",
            path: "v1/responses",
            body: json!({"model": "gpt-4.1", "input": "hi"}),
            model: "gpt-4.1",
            metered: true,
            cost: four_one,
        },
        Case {
            provider: "openai",
            path: "v1/responses",
            body: json!({"model": "gpt-4.1", "input": "hi", "stream": true}),
            model: "gpt-4.1",
            metered: true,
            cost: four_one,
        },
        Case {
            provider: "anthropic",
            path: "v1/messages",
            body: claude,
            model: "claude-sonnet-4-20250514",
            metered: true,
            cost: sonnet,
        },
        Case {
            provider: "anthropic",
            path: "v1/messages",
            body: claude_streamed,
            model: "claude-sonnet-4-20250514",
            metered: true,
            cost: sonnet,
        },
        Case {
            provider: "gemini",
            path: "v1beta/models/gemini-2.5-flash:generateContent",
            body: gemini.clone(),
            model: "gemini-2.5-flash",
            metered: true,
            cost: flash,
        },
        Case {
            provider: "gemini",
            path: "v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            body: gemini.clone(),
            model: "gemini-2.5-flash",
            metered: true,
            cost: flash,
        },
        Case {
            provider: "gemini",
            path: "v1beta/models/gemini-2.5-flash:streamGenerateContent",
            body: gemini,
            model: "gemini-2.5-flash",
            metered: true,
            cost: flash,
        },
    ]
}

/// Sends `body` to `url` with `auth`; the status, content type and the body's bytes.
async fn post(url: &str, auth: (&str, String), body: &Value) -> (u16, String, Vec<u8>) {
    let mut r = reqwest::Client::new()
        .post(url)
        .header(auth.0, auth.1.as_str());
    if auth.0 == "x-api-key" {
        r = r.header("anthropic-version", "2023-06-01");
    }
    let r = r.json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn auth(provider: &str, token: &str) -> (&'static str, String) {
    match provider {
        "anthropic" => ("x-api-key", token.to_owned()),
        "gemini" => ("x-goog-api-key", token.to_owned()),
        _ => ("authorization", format!("Bearer {token}")),
    }
}

/// Polls the organization's spend by model until it counts `requests`, for at most 10 s.
async fn spend_by_model(vault: &Vault, org: &OrgId, requests: u64) -> Vec<SpendRow> {
    let q = SpendQuery {
        from: Millis(Millis::now().0 - 3_600_000),
        to: Millis(Millis::now().0 + 3_600_000),
        by: vec![SpendDim::Model],
        only: None,
    };
    for _ in 0..200 {
        let rows = vault.spend(org, &q).await.unwrap();
        if rows.iter().map(|r| r.requests).sum::<u64>() >= requests {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the spend was not written within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_providers_answer_is_metered_and_reaches_the_client_unchanged() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();
    let keys = [
        ("openai", "sk-proj-SPENDKEY-openai-0123456789"),
        ("anthropic", "sk-ant-api03-SPENDKEY-anthropic-0123"),
        ("gemini", "AIzaSPENDKEYgemini0123456789abcdefghijklmn"),
    ];
    for (provider, key) in keys {
        add(&vault, &org, provider, key, mock.url()).await;
    }
    let (token, view) = vault
        .create_gateway_token(&org, "app", &[], None, None, "test")
        .await
        .unwrap();
    let token = token.expose_secret().to_owned();
    let addr = spawn_server(AppState::new(vault.clone())).await;

    let mut want: BTreeMap<&str, SpendRow> = BTreeMap::new();
    for case in cases() {
        let through = post(
            &format!("http://{addr}/gateway/{}/{}", case.provider, case.path),
            auth(case.provider, &token),
            &case.body,
        )
        .await;
        let key = keys.iter().find(|(p, _)| *p == case.provider).unwrap().1;
        let direct = post(
            &format!("{}/{}", mock.url(), case.path),
            auth(case.provider, key),
            &case.body,
        )
        .await;
        assert_eq!(through.0, 200, "{} {}", case.provider, case.path);
        assert!(
            through.2.len() > 20,
            "a real answer: {}",
            String::from_utf8_lossy(&through.2)
        );
        assert_eq!(
            (through.1.as_str(), String::from_utf8_lossy(&through.2)),
            (direct.1.as_str(), String::from_utf8_lossy(&direct.2)),
            "the client gets what the provider sent ({} {})",
            case.provider,
            case.path
        );
        if case.body["stream"] == true
            && case.provider == "openai"
            && case.path.ends_with("completions")
        {
            // What the gateway sent (the mock's last request was the direct one).
            let received = mock.received();
            let asked = &received[received.len() - 2];
            assert_eq!(asked.json()["stream_options"]["include_usage"], true);
        }
        let row = want.entry(case.model).or_default();
        row.requests += 1;
        if case.metered {
            // An embedding reports its input alone.
            let embedding = case.path.ends_with("embeddings");
            row.input_tokens += USAGE.input;
            row.output_tokens += if embedding { 0 } else { USAGE.output };
            row.cached_tokens += if embedding { 0 } else { USAGE.cached };
            row.cost_micros += case.cost;
        } else {
            row.unmetered += 1;
        }
    }
    // And a request that costs nothing: listing models is not metered.
    let listed = reqwest::Client::new()
        .get(format!("http://{addr}/gateway/openai/v1/models"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    let total: u64 = want.values().map(|r| r.requests).sum();
    let rows = spend_by_model(&vault, &org, total).await;
    let got: BTreeMap<&str, SpendRow> = rows
        .iter()
        .map(|r| {
            let mut counts = r.clone();
            counts.provider = None;
            counts.model = None;
            (r.model.as_deref().unwrap(), counts)
        })
        .collect();
    assert_eq!(got, want);

    // By what answered, each answer counts against the credential that gave it; by token,
    // against the gateway token.
    let q = |by: SpendDim| SpendQuery {
        from: Millis(Millis::now().0 - 3_600_000),
        to: Millis(Millis::now().0 + 3_600_000),
        by: vec![by],
        only: None,
    };
    let by_cred = vault.spend(&org, &q(SpendDim::Credential)).await.unwrap();
    assert_eq!(by_cred.len(), 3, "{by_cred:?}");
    assert!(
        by_cred
            .iter()
            .all(|r| r.kind == Some(UsageSubject::Credential) && r.name.as_deref() == Some("main"))
    );
    assert_eq!(by_cred.iter().map(|r| r.requests).sum::<u64>(), total);
    let by_token = vault.spend(&org, &q(SpendDim::Token)).await.unwrap();
    assert_eq!(by_token.len(), 1);
    assert_eq!(by_token[0].id.as_deref(), Some(view.id.as_str()));
    assert_eq!(by_token[0].name.as_deref(), Some("app"));
    assert_eq!(
        by_token[0].cost_micros,
        want.values().map(|r| r.cost_micros).sum::<u64>()
    );

    // /metrics counts tokens and cost by provider and model, naming no organization.
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "keyward_gateway_cost_micros_total{{provider=\"anthropic\",model=\"claude-sonnet-4\"}} {}",
            2 * (3000 + 60 + 5175)
        )),
        "{metrics}"
    );
    assert!(metrics.contains(
        "keyward_gateway_tokens_total{provider=\"openai\",model=\"gpt-4o-mini\",kind=\"input\"} 3600"
    ));
    assert!(!metrics.contains("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_are_counted_with_unknown_cost_until_a_price_is_imported() {
    let mock = MockProvider::builder().usage(USAGE).start().await;
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();
    add(
        &vault,
        &org,
        "openai",
        "sk-proj-SPENDKEY-openai-0123456789",
        mock.url(),
    )
    .await;
    let (token, _) = vault
        .create_gateway_token(&org, "app", &[], None, None, "test")
        .await
        .unwrap();
    let state = AppState::new(vault.clone());
    let addr = spawn_server(state.clone()).await;
    let url = format!("http://{addr}/gateway/openai/v1/chat/completions");
    let body = json!({"model": "acme-ft-7", "messages": []});
    let ask = || post(&url, auth("openai", token.expose_secret()), &body);
    assert_eq!(ask().await.0, 200);
    let rows = spend_by_model(&vault, &org, 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].model.as_deref(),
            rows[0].unpriced,
            rows[0].input_tokens,
            rows[0].cost_micros
        ),
        (Some("acme-ft-7"), 1, 1200, 0)
    );

    // The operator prices it (LiteLLM's format): the next answer is priced.
    let parsed = keyward_core::prices::parse_litellm(
        r#"{"acme-ft-7": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#,
    )
    .unwrap();
    vault
        .import_prices(&parsed.prices, false, "test.json", "test")
        .await
        .unwrap();
    state.refresh_prices(false).await;
    assert_eq!(ask().await.0, 200);
    let rows = spend_by_model(&vault, &org, 2).await;
    assert_eq!(
        (rows[0].requests, rows[0].unpriced, rows[0].cost_micros),
        (2, 1, 1200 + 690)
    );
}
