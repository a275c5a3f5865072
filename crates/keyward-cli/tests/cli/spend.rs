//! Spend and budgets as a new user meets them: the README's commands, the official OpenAI,
//! Anthropic and Google Gen AI SDKs through the gateway (streamed and not) against the test
//! kit's mock provider, `keyward spend`, and a budget that refuses past its limit.

use std::process::Command;
use std::time::Duration;

use keyward_testkit::{MockProvider, MockUsage};
use serde_json::Value;

use crate::gateway::{Server, python_sdk_available};
use crate::sandbox::Sandbox;

/// Runs `script` with python3 and `env`; its output (and the test fails if it fails).
fn python(s: &Sandbox, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .envs(env.iter().copied())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("GOOGLE_API_KEY")
        .current_dir(s.scratch())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The OpenAI SDK as its README shows it, pointed at the gateway: one completion, one stream,
/// or the error it meets.
const OPENAI: &str = r#"
import os
from openai import OpenAI, APIStatusError
client = OpenAI(base_url=os.environ["GATEWAY"], api_key=os.environ["GW_TOKEN"], timeout=20)
messages = [{"role": "user", "content": "Say hello"}]
try:
    r = client.chat.completions.create(model="gpt-4o", messages=messages)
    print("completion:", r.choices[0].message.content, r.usage.prompt_tokens, r.usage.completion_tokens)
    stream = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    print("streamed:", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))
except APIStatusError as e:
    print("error:", type(e).__name__, e.status_code, e.body["message"] if isinstance(e.body, dict) else e.body)
"#;

/// gpt-4o at $2.50 in and $10 out per million: 400 000 in and 100 000 out cost $2.
const USAGE: MockUsage = MockUsage {
    input: 400_000,
    output: 100_000,
    cached: 0,
};

fn spend_json(s: &mut Sandbox, by: &str) -> Value {
    serde_json::from_str(&s.ok(&["spend", "--org", "acme", "--by", by, "--json"])).unwrap()
}

/// Waits until `keyward spend` counts `requests` answers.
async fn spend_counts(s: &mut Sandbox, requests: u64) -> Value {
    for _ in 0..100 {
        let v = spend_json(s, "model");
        if v["total"]["requests"].as_u64() == Some(requests) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("spend did not count {requests} answers within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_dollar_budget_on_a_gateway_token_holds_against_the_openai_sdk() {
    if !python_sdk_available("openai") {
        return;
    }
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = MockProvider::builder().usage(USAGE).start().await;
    let server = Server::start(&s, &[], &[]);
    s.env.insert("KEYWARD_URL".into(), server.url.clone());
    s.env
        .insert("KEYWARD_TOKEN".into(), server.admin.clone().unwrap());
    s.ok(&["org", "create", "acme"]);
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "prod",
            "--base-url",
            &format!("{}/v1", mock.url()),
        ],
        "sk-proj-SPENDSDKKEY-0123456789abcdef\n",
        &[],
    );
    let made: Value = serde_json::from_str(&s.ok(&[
        "gateway-token",
        "create",
        "--org",
        "acme",
        "--name",
        "app",
        "--json",
    ]))
    .unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    s.ok(&[
        "budget", "set", "--org", "acme", "--token", &id, "--usd", "5", "--period", "month",
    ]);
    let listed = s.ok(&["budget", "list", "--org", "acme"]);
    assert!(
        listed.contains("$5.000000 a month") && listed.contains(&id),
        "{listed}"
    );

    let gateway = format!("{}/gateway/openai/v1", server.url);
    let env = [("GATEWAY", gateway.as_str()), ("GW_TOKEN", token.as_str())];
    // $2 and $2: both go through, the stream with its usage asked for and not shown.
    let out = python(&s, OPENAI, &env);
    assert_eq!(out, "completion: Hello 400000 100000\nstreamed: Hello\n");
    let spent = spend_counts(&mut s, 2).await;
    assert_eq!(spent["rows"][0]["model"], "gpt-4o");
    assert_eq!(spent["rows"][0]["input_tokens"], 800_000);
    assert_eq!(spent["rows"][0]["output_tokens"], 200_000);
    assert_eq!(spent["total"]["cost_micros"], 4_000_000);
    let table = s.ok(&["spend", "--org", "acme", "--by", "model", "--since", "1d"]);
    assert!(
        table.contains("openai/gpt-4o") && table.contains("$4.000000") && table.contains("800000"),
        "{table}"
    );
    let csv = s.ok(&["spend", "--org", "acme", "--by", "token", "--csv"]);
    assert!(
        csv.starts_with("gateway token,requests,input_tokens,")
            && csv.contains(&format!("app ({id}),2,800000,200000,0,0,4.000000,0,0")),
        "{csv}"
    );
    // $4 of $5 spent: the next completion goes through ($6), the stream after it is refused,
    // with the SDK's own error, once (it does not retry a spent budget).
    let hits = mock.hits();
    let out = python(&s, OPENAI, &env);
    let first = out.lines().next().unwrap();
    assert_eq!(first, "completion: Hello 400000 100000");
    let error = out.lines().nth(1).unwrap();
    assert!(
        error.starts_with("error: RateLimitError 429 the monthly budget of gateway token 'app' ($5.000000) is spent; it resets at 20"),
        "{out}"
    );
    assert_eq!(
        mock.hits(),
        hits + 1,
        "the refused stream never reached the provider"
    );
    spend_counts(&mut s, 3).await;
    let listed: Value =
        serde_json::from_str(&s.ok(&["budget", "list", "--org", "acme", "--json"])).unwrap();
    for _ in 0..50 {
        let listed: Value =
            serde_json::from_str(&s.ok(&["budget", "list", "--org", "acme", "--json"])).unwrap();
        if listed["budgets"][0]["spent"] == 6_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = listed;
    let listed: Value =
        serde_json::from_str(&s.ok(&["budget", "list", "--org", "acme", "--json"])).unwrap();
    assert_eq!(listed["budgets"][0]["spent"], 6_000_000);
    assert_eq!(listed["budgets"][0]["percent"], 120);
    let log = server.stop();
    assert!(!log.contains("SPENDSDKKEY") && !log.contains(&token));
}

/// Anthropic's and Google's SDKs, each once whole and once streamed.
const OTHERS: &str = r#"
import os
import anthropic
from google import genai
from google.genai import types
a = anthropic.Anthropic(base_url=os.environ["GATEWAY"] + "/anthropic", api_key=os.environ["GW_TOKEN"], timeout=20)
m = a.messages.create(model="claude-sonnet-4-20250514", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
print("anthropic:", m.content[0].text, m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens)
with a.messages.stream(model="claude-sonnet-4-20250514", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
    print("anthropic streamed:", s.get_final_text())
g = genai.Client(api_key=os.environ["GW_TOKEN"], http_options=types.HttpOptions(base_url=os.environ["GATEWAY"] + "/gemini"))
r = g.models.generate_content(model="gemini-2.5-flash", contents="hi")
print("gemini:", r.text, r.usage_metadata.prompt_token_count, r.usage_metadata.candidates_token_count)
print("gemini streamed:", "".join(c.text or "" for c in g.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_and_google_sdks_are_metered_streamed_or_not() {
    if !python_sdk_available("anthropic") || !python_sdk_available("google.genai") {
        return;
    }
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let usage = MockUsage {
        input: 3000,
        output: 500,
        cached: 1000,
    };
    let mock = MockProvider::builder().usage(usage).start().await;
    let server = Server::start(&s, &[], &[]);
    s.env.insert("KEYWARD_URL".into(), server.url.clone());
    s.env
        .insert("KEYWARD_TOKEN".into(), server.admin.clone().unwrap());
    s.ok(&["org", "create", "acme"]);
    for (provider, key) in [
        ("anthropic", "sk-ant-api03-SPENDSDKKEY-0123456789abcdef"),
        ("gemini", "AIzaSPENDSDKKEY0123456789abcdefghijklmn"),
    ] {
        s.ok_with(
            &[
                "cred",
                "add",
                "--org",
                "acme",
                "--provider",
                provider,
                "--name",
                provider,
                "--base-url",
                &mock.url(),
            ],
            &format!("{key}\n"),
            &[],
        );
    }
    let token = s
        .ok(&["gateway-token", "create", "--org", "acme", "--name", "app"])
        .trim()
        .to_owned();
    let gateway = format!("{}/gateway", server.url);
    let out = python(
        &s,
        OTHERS,
        &[("GATEWAY", gateway.as_str()), ("GW_TOKEN", token.as_str())],
    );
    assert_eq!(
        out,
        "anthropic: Hello 2000 1000 500\nanthropic streamed: Hello\ngemini: Hello 3000 500\ngemini streamed: Hello\n"
    );
    let spent = spend_counts(&mut s, 4).await;
    let rows = spent["rows"].as_array().unwrap();
    let row = |model: &str| rows.iter().find(|r| r["model"] == model).unwrap().clone();
    let claude = row("claude-sonnet-4-20250514");
    // Anthropic's input leaves out what was read from the cache; Keyward counts all input.
    assert_eq!(
        (
            claude["requests"].as_u64(),
            claude["input_tokens"].as_u64(),
            claude["cached_tokens"].as_u64(),
            claude["output_tokens"].as_u64()
        ),
        (Some(2), Some(6000), Some(2000), Some(1000))
    );
    // claude-sonnet-4: 2000 at $3/M, 1000 read at $0.30/M, 500 out at $15/M, twice.
    assert_eq!(claude["cost_micros"], 2 * (6000 + 300 + 7500));
    let flash = row("gemini-2.5-flash");
    assert_eq!(
        (
            flash["requests"].as_u64(),
            flash["input_tokens"].as_u64(),
            flash["cached_tokens"].as_u64(),
            flash["output_tokens"].as_u64()
        ),
        (Some(2), Some(6000), Some(2000), Some(1000))
    );
    // gemini-2.5-flash: 2000 at $0.30/M, 1000 cached at $0.075/M, 500 out at $2.50/M.
    assert_eq!(flash["cost_micros"], 2 * (600 + 75 + 1250));
    assert_eq!(spent["total"]["unmetered"], 0);
    let log = server.stop();
    assert!(!log.contains("SPENDSDKKEY") && !log.contains(&token));
}
