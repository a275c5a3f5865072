//! Realtime (WebSocket) sessions through the gateway: the openai SDK's realtime client, a
//! browser-style connection carrying the token in a subprotocol, Azure's route and Gemini's
//! Live API, against `keyward-testkit/cloud/mock_realtime.py` (the `websockets` library),
//! which checks the key each handshake carries. Sessions are cut by either side, and by the
//! gateway's idle bound.

use serde_json::json;

use crate::cloud::{MockCloud, python};
use crate::gateway::{Server, python_sdk_available};
use crate::sandbox::Sandbox;

const OPENAI_KEY: &str = "sk-REALTIMECANARY-openai-0123456789abcdef";
const AZURE_KEY: &str = "AZURECANARYrealtime0123456789abcdef";
const GEMINI_KEY: &str = "AIzaREALTIMECANARYgemini0123456789abcde";

const OPENAI_SDK: &str = r#"
import os
from openai import OpenAI
client = OpenAI(base_url=os.environ["GATEWAY"], api_key=os.environ["GW_TOKEN"])
with client.realtime.connect(model="gpt-realtime", max_retries=0) as conn:
    first = conn.recv()
    print("first:", first.type)
    conn.send({"type": "response.create"})
    text = ""
    for event in conn:
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.done":
            print("usage:", event.response.usage.total_tokens)
            break
    print("text:", text)
"#;

/// A raw `websockets` client, as a browser or another language's SDK connects.
const RAW: &str = r#"
import asyncio, json, os, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

async def main():
    kind = os.environ["KIND"]
    url = os.environ["URL"]
    headers = json.loads(os.environ.get("HEADERS", "{}"))
    protocols = json.loads(os.environ.get("PROTOCOLS", "null"))
    sends = json.loads(os.environ.get("SENDS", "[]"))
    try:
        async with connect(url, additional_headers=headers, subprotocols=protocols, open_timeout=10) as ws:
            print("protocol:", ws.subprotocol)
            if kind == "openai":
                print("first:", json.loads(await ws.recv())["type"])
            for m in sends:
                await ws.send(m[2:].encode() if m.startswith("b:") else m)
                if m != "close-me":
                    got = await ws.recv()
                    print("got:", got.decode() if isinstance(got, bytes) else got)
            if kind == "wait":
                await ws.recv()
            if kind == "client-close":
                await ws.close(4001, "done by client")
                print("closed:", ws.close_code)
                return
            await ws.recv()
    except InvalidStatus as e:
        print("refused:", e.response.status_code)
    except ConnectionClosed as e:
        print("closed:", e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)

asyncio.run(main())
"#;

fn raw(s: &Sandbox, env: &[(&str, &str)]) -> String {
    python(s, RAW, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_sessions_pass_through_the_gateway_with_the_organizations_key() {
    for module in ["openai", "websockets"] {
        if !python_sdk_available(module) {
            return;
        }
    }
    let mut s = Sandbox::sqlite();
    let master = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), master);
    let mock = MockCloud::start(
        &s.scratch(),
        "mock_realtime.py",
        &json!({ "openai_key": OPENAI_KEY, "azure_key": AZURE_KEY, "gemini_key": GEMINI_KEY }),
    );
    let server = Server::start(&s, &["--gateway-realtime-idle-timeout", "1s"], &[]);
    s.env.insert("KEYWARD_URL".into(), server.url.clone());
    s.env
        .insert("KEYWARD_TOKEN".into(), server.admin.clone().unwrap());
    s.ok(&["org", "create", "acme"]);
    let base = format!("base_url={}/v1", mock.url);
    let endpoint = format!("endpoint={}", mock.url);
    let gemini_base = format!("base_url={}", mock.url);
    for (provider, key, set) in [
        ("openai", OPENAI_KEY, &base),
        ("azure_openai", AZURE_KEY, &endpoint),
        ("gemini", GEMINI_KEY, &gemini_base),
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
                "rt",
                "--api-key-env",
                "SECRET",
                "--set",
                set,
            ],
            "",
            &[("SECRET", key)],
        );
    }
    let gw = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "acme",
            "--name",
            "voice",
        ])
        .trim()
        .to_owned();
    let ws = server.url.replacen("http://", "ws://", 1);

    // The openai SDK's realtime client, pointed at the gateway.
    let out = python(
        &s,
        OPENAI_SDK,
        &[
            ("GATEWAY", &format!("{}/gateway/openai/v1", server.url)),
            ("GW_TOKEN", &gw),
        ],
    );
    assert_eq!(
        out,
        "first: session.created\nusage: 30\ntext: Hello from realtime\n"
    );

    // A browser's connection: the token in a subprotocol, which never goes upstream and is
    // never echoed; `realtime` is chosen. The provider quoting its key gets it masked.
    let url = format!("{ws}/gateway/openai/v1/realtime?model=gpt-realtime");
    let protocols = json!([
        "realtime",
        format!("openai-insecure-api-key.{gw}"),
        "openai-beta.realtime-v1",
        // The token again, in a subprotocol of the client's own making: not forwarded either.
        format!("carrier.{gw}")
    ])
    .to_string();
    let out = raw(
        &s,
        &[
            ("KIND", "openai"),
            ("URL", &url),
            ("PROTOCOLS", &protocols),
            (
                "SENDS",
                &json!(["echo-key", "echo-key-binary", "close-me"]).to_string(),
            ),
        ],
    );
    assert!(
        out.starts_with("protocol: realtime\nfirst: session.created\ngot: "),
        "{out}"
    );
    assert!(
        !out.contains(OPENAI_KEY)
            && out.contains("sk-...cdef")
            && out.contains("got: binary: you sent sk-...cdef"),
        "{out}"
    );
    // The provider's close, passed on with its code and reason.
    assert!(out.ends_with("closed: 4000 done by provider\n"), "{out}");

    // The client's close, passed on to the provider.
    let out = raw(
        &s,
        &[
            ("KIND", "client-close"),
            ("URL", &url),
            (
                "HEADERS",
                &json!({ "Authorization": format!("Bearer {gw}") }).to_string(),
            ),
        ],
    );
    assert_eq!(out, "protocol: None\nclosed: 4001\n");

    // Idle for longer than the bound: both sides are closed (1001).
    let out = raw(
        &s,
        &[
            ("KIND", "wait"),
            ("URL", &url),
            (
                "HEADERS",
                &json!({ "Authorization": format!("Bearer {gw}") }).to_string(),
            ),
        ],
    );
    assert_eq!(
        out,
        "protocol: None\nclosed: 1001 the session was idle too long\n"
    );

    // Azure's route, with `api-key`; Gemini Live, with `?key=`.
    let out = raw(
        &s,
        &[
            ("KIND", "openai"),
            (
                "URL",
                &format!(
                    "{ws}/gateway/azure_openai/openai/realtime?api-version=2025-04-01-preview&deployment=rt"
                ),
            ),
            ("HEADERS", &json!({ "api-key": gw }).to_string()),
            ("SENDS", &json!(["close-me"]).to_string()),
        ],
    );
    assert!(
        out.starts_with("protocol: None\n") && out.ends_with("closed: 4000 done by provider\n"),
        "{out}"
    );
    let live = "ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
    let out = raw(
        &s,
        &[
            ("KIND", "gemini"),
            ("URL", &format!("{ws}/gateway/gemini/{live}?key={gw}")),
            (
                "SENDS",
                &json!([
                    json!({"setup": {"model": "models/gemini-live-2.5-flash"}}).to_string(),
                    json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": true}}).to_string(),
                ])
                .to_string(),
            ),
        ],
    );
    assert!(
        out.contains("got: {\"setupComplete\": {}, \"note\": \"key AIza...bcde\"}")
            && out.contains("Hello from Live")
            && !out.contains(GEMINI_KEY),
        "{out}"
    );

    // The wrong token, and a provider refusing the key: HTTP errors before any upgrade.
    let bad = raw(
        &s,
        &[
            ("KIND", "openai"),
            ("URL", &url),
            (
                "HEADERS",
                &json!({ "Authorization": "Bearer kwg_not_a_token_0000000000000000" }).to_string(),
            ),
        ],
    );
    assert_eq!(bad.trim(), "refused: 401");
    // An upgrade anywhere but a realtime route is refused before anything is looked up.
    for path in [
        "openai/v1/chat/completions",
        "anthropic/v1/realtime",
        "openai/v1/realtime/../models",
    ] {
        let out = raw(
            &s,
            &[
                ("KIND", "openai"),
                ("URL", &format!("{ws}/gateway/{path}")),
                (
                    "HEADERS",
                    &json!({ "Authorization": format!("Bearer {gw}") }).to_string(),
                ),
            ],
        );
        assert!(
            out.trim() == "refused: 404" || out.trim() == "refused: 400",
            "{path}: {out}"
        );
    }
    s.ok(&["org", "create", "beta"]);
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "beta",
            "--provider",
            "openai",
            "--name",
            "stale",
            "--api-key-env",
            "SECRET",
            "--set",
            &base,
        ],
        "",
        &[("SECRET", "sk-REVOKED-openai-key-0123456789abcdef")],
    );
    let beta = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "beta",
            "--name",
            "voice",
        ])
        .trim()
        .to_owned();
    let refused = raw(
        &s,
        &[
            ("KIND", "openai"),
            ("URL", &url),
            (
                "HEADERS",
                &json!({ "Authorization": format!("Bearer {beta}") }).to_string(),
            ),
        ],
    );
    assert_eq!(
        refused.trim(),
        "refused: 401",
        "the provider's refusal, as an HTTP answer"
    );

    // Every handshake the provider saw carried the organization's key, never a gateway token.
    let handshakes = mock.seen("handshake").await;
    assert_eq!(handshakes.len(), 7, "{handshakes:?}");
    for (i, h) in handshakes.iter().enumerate() {
        assert_eq!(h["ok"], i < 6, "{h}");
        let text = h.to_string();
        assert!(!text.contains("kwg_"), "{text}");
    }
    let sessions = mock.seen("session").await;
    assert_eq!(
        sessions[2]["closed"],
        json!([4001, "done by client"]),
        "{sessions:?}"
    );

    // A token limited to some models: the URL must name one of them, once; a Gemini session
    // must begin with a setup naming one, and has only one; what the provider reads is what
    // was checked.
    let limited = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "acme",
            "--name",
            "limited",
            "--models",
            "gpt-realtime,gemini-live-2.5-flash",
        ])
        .trim()
        .to_owned();
    let bearer = json!({ "Authorization": format!("Bearer {limited}") }).to_string();
    for (query, want) in [
        (
            "?model=gpt-realtime",
            "protocol: None\nfirst: session.created\nclosed: 4000 done by provider\n",
        ),
        ("?model=gpt-4o-realtime", "refused: 403\n"),
        (
            "?model=gpt-realtime&model=gpt-4o-realtime",
            "refused: 400\n",
        ),
        ("", "refused: 400\n"),
    ] {
        let out = raw(
            &s,
            &[
                ("KIND", "openai"),
                ("URL", &format!("{ws}/gateway/openai/v1/realtime{query}")),
                ("HEADERS", &bearer),
                ("SENDS", &json!(["close-me"]).to_string()),
            ],
        );
        assert_eq!(out, want, "{query}");
    }
    // A session that asks for a transcription model the token may not use is closed.
    let out = raw(
        &s,
        &[
            ("KIND", "openai"),
            ("URL", &format!("{ws}/gateway/openai/v1/realtime?model=gpt-realtime")),
            ("HEADERS", &bearer),
            (
                "SENDS",
                &json!([json!({"type": "session.update", "session": {"input_audio_transcription": {"model": "whisper-1"}}}).to_string()])
                    .to_string(),
            ),
        ],
    );
    assert!(
        out.starts_with("protocol: None\nfirst: session.created\nclosed: 1008"),
        "{out}"
    );
    let live_url = format!("{ws}/gateway/gemini/{live}?key={limited}");
    let setup = |model: &str| json!({"setup": {"model": model}}).to_string();
    let turn = json!({"clientContent": {"turns": [], "turnComplete": true}}).to_string();
    let refused = "closed: 1008 this gateway token may not use that model (or the session did not name it first)\n";
    for sends in [
        json!([setup("models/gemini-2.5-pro")]),
        json!([format!("b:{}", setup("models/gemini-2.5-pro"))]),
        json!([turn]),
        json!([
            r#"{"setup":{"model":"models/gemini-live-2.5-flash","model":"models/gemini-2.5-pro"}}"#
        ]),
    ] {
        let out = raw(
            &s,
            &[
                ("KIND", "gemini"),
                ("URL", &live_url),
                ("SENDS", &sends.to_string()),
            ],
        );
        assert!(out.ends_with(refused), "{sends}: {out}");
        assert!(!out.contains("got:"), "{sends}: {out}");
    }
    // An allowed setup (its model given twice, the allowed one last), then a second setup.
    let out = raw(
        &s,
        &[
            ("KIND", "gemini"),
            ("URL", &live_url),
            (
                "SENDS",
                &json!([
                    r#"{"setup":{"model":"models/gemini-2.5-pro","model":"models/gemini-live-2.5-flash"}}"#,
                    setup("models/gemini-2.5-pro"),
                ])
                .to_string(),
            ),
        ],
    );
    assert!(
        out.contains("got: {\"setupComplete\"") && out.ends_with(refused),
        "{out}"
    );
    let sessions = mock.seen("session").await;
    let last = sessions.last().unwrap();
    assert_eq!(
        last["messages"],
        json!([r#"{"setup":{"model":"models/gemini-live-2.5-flash"}}"#]),
        "the provider read the model that was checked, once: {last}"
    );

    // Opening and closing are audited, and usage counted.
    let events = s.ok(&["events", "list", "--limit", "200", "--json"]);
    assert!(events.contains("gateway_realtime_open") && events.contains("gateway_realtime_close"));
    assert!(
        events.contains("\"ended_by\":\"client\"") || events.contains("\"ended_by\": \"client\""),
        "{events}"
    );
    let metrics = crate::cloud::metrics(&server.url).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("keyward_gateway_tokens_total{")
                && l.contains("provider=\"openai\"")
                && l.contains("kind=\"input\"")
                && l.ends_with(" 20")),
        "{metrics}"
    );
    let log = server.stop();
    for secret in [
        OPENAI_KEY,
        AZURE_KEY,
        GEMINI_KEY,
        "sk-REVOKED",
        gw.as_str(),
        beta.as_str(),
    ] {
        assert!(
            !log.contains(secret) && !events.contains(secret),
            "{secret} leaked"
        );
    }
}
