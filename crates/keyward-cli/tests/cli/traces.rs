//! OpenTelemetry traces (issue 26): `keyward serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` exports
//! the spans of a gateway request to an OTLP/HTTP receiver that decodes them with
//! `opentelemetry-proto` (`keyward-testkit/otlp/receiver.py`): the request's span a child of the
//! client's `traceparent`, the token check, the resolution and the upstream attempt its
//! children, the upstream given the attempt's own `traceparent`, and no secret in any attribute.
//! Off, a client's `traceparent` goes upstream as it came.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyward_testkit::MockProvider;
use serde_json::{Value, json};

use crate::gateway::Server;
use crate::sandbox::{Reaped, Sandbox};

const CANARY: &str = "sk-proj-TRACECANARY00000000000000000000000000000000";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The receiver, and the port it listens on.
fn receiver(out: &Path) -> Option<(Reaped, u16)> {
    let ok = Command::new("python3")
        .args(["-c", "import opentelemetry.proto"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("KEYWARD_TEST_REQUIRE_PYTHON_SDKS").as_deref() != Ok("1"),
            "KEYWARD_TEST_REQUIRE_PYTHON_SDKS=1 but opentelemetry-proto is missing (pip install opentelemetry-proto)"
        );
        eprintln!("skipped: no opentelemetry-proto (pip install opentelemetry-proto)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keyward-testkit/otlp/receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    Some((Reaped(child), port.trim().parse().unwrap()))
}

fn spans(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An organization with one OpenAI-compatible key at `upstream`, and a gateway token.
fn setup(s: &mut Sandbox, upstream: std::net::SocketAddr) -> String {
    s.ok(&["org", "create", "acme"]);
    let base_url = format!("http://{upstream}/v1");
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai_compatible",
            "--name",
            "local",
            "--base-url",
            &base_url,
        ],
        CANARY,
        &[],
    );
    s.ok(&["gateway-token", "create", "--org", "acme", "--name", "app"])
        .trim()
        .to_owned()
}

async fn chat(url: &str, token: &str) -> reqwest::Response {
    crate::gateway::client()
        .post(format!(
            "{url}/gateway/openai_compatible/v1/chat/completions"
        ))
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_requests_spans_reach_an_otlp_receiver_linked_and_without_secrets() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let out = s.scratch().join("spans.jsonl");
    let Some((_otlp, port)) = receiver(&out) else {
        return;
    };
    let mock = MockProvider::start().await;
    let token = setup(&mut s, mock.addr());
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server::start(
        &s,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "keyward-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let resp = chat(&server.url, &token).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    // An API request too.
    let admin = server.admin.clone().unwrap();
    let listed = crate::gateway::client()
        .get(format!("{}/api/v1/credentials", server.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(15) {
        got = spans(&out);
        let names: Vec<&str> = got.iter().filter_map(|s| s["name"].as_str()).collect();
        if names.contains(&"gateway.upstream") && names.contains(&"GET /api/v1/credentials") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let find = |name: &str| -> &Value {
        got.iter()
            .find(|s| s["name"] == name && s["trace_id"] == TRACE_ID)
            .unwrap_or_else(|| panic!("no {name} span in the client's trace: {got:#?}"))
    };
    let request = find("POST /gateway/{provider}/{*path}");
    assert_eq!(
        request["parent_span_id"], CLIENT_SPAN,
        "the client's traceparent is the parent"
    );
    assert_eq!(request["service"], "keyward-test");
    assert_eq!(request["kind"], 2, "a server span");
    assert_eq!(request["attributes"]["http.response.status_code"], 200);
    assert_eq!(
        request["attributes"]["keyward.request_id"],
        request_id.as_str()
    );
    let request_span = request["span_id"].as_str().unwrap();
    for child in ["gateway.token", "gateway.resolve", "gateway.upstream"] {
        assert_eq!(find(child)["parent_span_id"], request_span, "{child}");
    }
    let upstream = find("gateway.upstream");
    assert_eq!(upstream["kind"], 3, "a client span");
    assert_eq!(
        upstream["attributes"]["keyward.provider"],
        "openai_compatible"
    );
    assert_eq!(upstream["attributes"]["http.response.status_code"], 200);
    assert_eq!(upstream["attributes"]["keyward.outcome"], "answered");
    assert_eq!(upstream["attributes"]["keyward.attempt"], 1);
    // The provider got the attempt's own traceparent, in the client's trace.
    let sent = mock.last().header("traceparent").unwrap().to_owned();
    assert_eq!(
        sent,
        format!("00-{TRACE_ID}-{}-01", upstream["span_id"].as_str().unwrap())
    );
    // Store calls under the resolution; the API request its own trace, by route template.
    let api = got
        .iter()
        .find(|s| s["name"] == "GET /api/v1/credentials")
        .unwrap();
    assert_eq!(api["attributes"]["http.route"], "/api/v1/credentials");
    assert!(
        got.iter().any(
            |s| s["name"].as_str().is_some_and(|n| n.starts_with("store."))
                && s["trace_id"] == api["trace_id"]
        ),
        "a store call in the API request's trace: {got:#?}"
    );
    // No key or token in any span.
    let text = std::fs::read_to_string(&out).unwrap();
    for secret in [CANARY, token.as_str(), admin.as_str()] {
        assert!(!text.contains(secret), "a secret in the spans");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_a_clients_traceparent_goes_upstream_as_it_came() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = MockProvider::start().await;
    let token = setup(&mut s, mock.addr());
    let server = Server::start(&s, &[], &[]);
    assert_eq!(chat(&server.url, &token).await.status(), 200);
    assert_eq!(
        mock.last().header("traceparent"),
        Some(format!("00-{TRACE_ID}-{CLIENT_SPAN}-01").as_str())
    );
    server.stop();
}

#[test]
fn a_grpc_protocol_is_refused_at_start() {
    let mut s = Sandbox::sqlite();
    let err = s.fails(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    assert!(err.contains("http/protobuf only"), "{err}");
    // An endpoint that does not parse is refused without being quoted (it may hold a
    // password), and under --log-format json as a JSON line.
    let err = s.fails(
        &["serve", "--listen", "127.0.0.1:0", "--log-format", "json"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:pwSECRET@[bad")],
    );
    assert!(!err.contains("pwSECRET"), "{err}");
    let line: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{line}"
    );
}
