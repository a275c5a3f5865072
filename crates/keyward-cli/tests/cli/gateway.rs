//! The gateway as a user runs it: `keyward serve` processes in front of a mock OpenAI-compatible
//! provider on 127.0.0.1 — two replicas on one PostgreSQL database, static targets reloaded
//! with SIGHUP and `keyward gateway reload`, and the OpenAI Python SDK pointed at the gateway.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward_testkit::MockProvider;
use serde_json::{Value, json};

use crate::sandbox::Sandbox;

/// The `Authorization` header of the last request `mock` received.
fn last_auth(mock: &MockProvider) -> String {
    mock.last()
        .header("authorization")
        .unwrap_or_default()
        .to_owned()
}

/// A running `keyward serve`: its address, the admin token it printed (first start only), and
/// everything it prints from then on. The gateway, OpenAPI and browser suites start theirs so.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) admin: Option<String>,
    /// Lines printed on standard output and standard error, as they come.
    printed: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(s: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut argv = vec!["serve", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let mut cmd = s.command(&argv);
        cmd.env("KEYWARD_LOG", "debug").stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let printed: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = printed.clone();
        let mut readers = vec![std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        })];
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin = None;
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                panic!(
                    "serve stopped before listening: {:?}",
                    printed.lock().unwrap()
                );
            };
            if line.starts_with("kwt_") {
                admin = Some(line.clone());
            }
            if let Some(url) = line.strip_prefix("keyward listening on ") {
                break url.to_owned();
            }
        };
        let sink = printed.clone();
        readers.push(std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        }));
        Self {
            child,
            url,
            admin,
            printed,
            readers,
        }
    }

    /// Every line it printed so far.
    pub(crate) fn printed(&self) -> Vec<String> {
        self.printed.lock().unwrap().clone()
    }

    /// Whether it printed a line containing `text`.
    fn said(&self, text: &str) -> bool {
        self.printed
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(text))
    }

    /// Stops it with SIGTERM; returns all it printed.
    pub(crate) fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(self.child.wait().unwrap().success());
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        self.printed.lock().unwrap().join("\n")
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

/// A server the test did not stop (it failed, or had no use for the log) is killed.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 20 ms for at most 10 s; returns how long it took to come true.
async fn within_10s(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 10 s");
}

pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An admin-API call; returns status and JSON body.
pub(crate) async fn api(
    url: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A chat completion through the gateway; returns status, the credential that served, body.
async fn chat(url: &str, route: &str, token: &str) -> (u16, Option<String>, Value) {
    let resp = client()
        .post(format!("{url}/gateway/{route}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let served = resp
        .headers()
        .get("x-keyward-credential")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, served, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_stop_using_a_changed_key_at_once() {
    let Some(mut s) = Sandbox::postgres().await else {
        return;
    };
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    // Cached keys would live an hour: only a notification can make a replica drop one.
    let long_cache = [("KEYWARD_CACHE_TTL", "1h")];
    let a = Server::start(&s, &[], &long_cache);
    let admin = a.admin.clone().unwrap();
    let b = Server::start(&s, &[], &long_cache);
    assert!(
        b.admin.is_none(),
        "the second replica finds the admin token"
    );

    let (st, _) = api(
        &a.url,
        reqwest::Method::POST,
        "/api/v1/orgs",
        &admin,
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, cred) = api(
        &a.url,
        reqwest::Method::POST,
        "/api/v1/credentials",
        &admin,
        Some(
            json!({"organization_id": "acme", "provider": "openai", "name": "main",
                    "api_key": "sk-proj-REPLICA-first-0123456789",
                    "fields": {"base_url": format!("http://{upstream}/v1")}}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{cred}");
    let id = cred["id"].as_str().unwrap().to_owned();
    let (st, gw) = api(
        &a.url,
        reqwest::Method::POST,
        "/api/v1/gateway-tokens",
        &admin,
        Some(json!({"organization_id": "acme", "name": "app"})),
    )
    .await;
    assert_eq!(st, 201, "{gw}");
    let token = gw["token"].as_str().unwrap().to_owned();

    // Replica B serves the key (and now holds it in its cache).
    let (st, served, _) = chat(&b.url, "openai", &token).await;
    assert_eq!((st, served.as_deref()), (200, Some(id.as_str())));
    assert_eq!(last_auth(&mock), "Bearer sk-proj-REPLICA-first-0123456789");

    // Rotated through A: B sends the new key.
    let (st, body) = api(
        &a.url,
        reqwest::Method::PATCH,
        &format!("/api/v1/credentials/{id}"),
        &admin,
        Some(json!({"api_key": "sk-proj-REPLICA-second-012345678"})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let took = within_10s("B sends the rotated key", async || {
        chat(&b.url, "openai", &token).await.0 == 200
            && last_auth(&mock) == "Bearer sk-proj-REPLICA-second-012345678"
    })
    .await;
    eprintln!("rotation seen by the other replica after {took:?}");

    // Deactivated through A: B stops using it.
    let (st, _) = api(
        &a.url,
        reqwest::Method::POST,
        &format!("/api/v1/credentials/{id}/deactivate"),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let took = within_10s("B stops using the deactivated key", async || {
        chat(&b.url, "openai", &token).await.0 == 403
    })
    .await;
    eprintln!("deactivation seen by the other replica after {took:?}");
    let (_, _, body) = chat(&b.url, "openai", &token).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("organization 'acme' has no active OpenAI credential"),
        "{body}"
    );

    // Activated again, then deleted through A.
    let (st, _) = api(
        &a.url,
        reqwest::Method::POST,
        &format!("/api/v1/credentials/{id}/activate"),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, 200);
    within_10s("B uses the key again", async || {
        chat(&b.url, "openai", &token).await.0 == 200
    })
    .await;
    let (st, _) = api(
        &a.url,
        reqwest::Method::DELETE,
        &format!("/api/v1/credentials/{id}"),
        &admin,
        None,
    )
    .await;
    assert!(st == 200 || st == 204, "{st}");
    let took = within_10s("B stops using the deleted key", async || {
        chat(&b.url, "openai", &token).await.0 == 403
    })
    .await;
    eprintln!("deletion seen by the other replica after {took:?}");

    // A gateway token revoked through A stops working on B.
    let (st, _) = api(
        &a.url,
        reqwest::Method::DELETE,
        &format!("/api/v1/gateway-tokens/{}", gw["id"].as_str().unwrap()),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, 200);
    within_10s("B refuses the revoked token", async || {
        chat(&b.url, "openai", &token).await.0 == 401
    })
    .await;

    let logs = a.stop() + &b.stop();
    assert!(!logs.contains("REPLICA-"), "no key in the logs");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_targets_start_checked_and_reload_on_sighup_and_on_request() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    s.ok(&["org", "create", "acme"]);
    let token = s
        .ok(&["gateway-token", "create", "--org", "acme", "--name", "app"])
        .trim()
        .to_owned();
    let config = s.scratch().join("gateway.yaml");
    let target = |id: &str, var: &str| {
        format!(
            "  - id: {id}\n    provider: openai\n    base_url: http://{upstream}/v1\n    secret_key_ref: {{ env: {var} }}\n"
        )
    };
    let config_arg = config.display().to_string();
    let env = [("KW_TEST_TARGET_KEY", "sk-proj-TARGETKEY-0123456789abcdef")];

    // A zero timeout would fail every request: refused.
    let err = s.fails(&["serve", "--gateway-idle-timeout", "0s"], &[]);
    assert!(err.contains("must be more than zero"), "{err}");

    // A reference to a variable that is not set stops the start, naming it.
    std::fs::write(
        &config,
        format!(
            "org: acme\ntargets:\n{}",
            target("primary", "KW_TEST_UNSET_KEY")
        ),
    )
    .unwrap();
    let err = s.fails(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gateway-config",
            &config_arg,
        ],
        &env,
    );
    assert!(
        err.contains("target 'primary': secret_key_ref env KW_TEST_UNSET_KEY: the environment variable KW_TEST_UNSET_KEY is not set"),
        "{err}"
    );
    assert!(
        !err.contains("previous"),
        "at start there are no previous targets: {err}"
    );

    std::fs::write(
        &config,
        format!(
            "org: acme\ntargets:\n{}",
            target("primary", "KW_TEST_TARGET_KEY")
        ),
    )
    .unwrap();
    let server = Server::start(&s, &["--gateway-config", &config_arg], &env);
    let admin = server.admin.clone().unwrap();
    let (st, _, body) = chat(&server.url, "t/primary", &token).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        last_auth(&mock),
        "Bearer sk-proj-TARGETKEY-0123456789abcdef"
    );

    // SIGHUP with a broken file: the running target stays.
    std::fs::write(
        &config,
        format!(
            "org: acme\ntargets:\n{}{}",
            target("primary", "KW_TEST_TARGET_KEY"),
            target("backup", "KW_TEST_UNSET_KEY")
        ),
    )
    .unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    within_10s("the failed reload is reported", async || {
        server.said("gateway targets not reloaded")
    })
    .await;
    let (st, _, _) = chat(&server.url, "t/primary", &token).await;
    assert_eq!(st, 200, "the previous targets stay");
    assert_eq!(chat(&server.url, "t/backup", &token).await.0, 404);

    // SIGHUP with a good file: both serve.
    std::fs::write(
        &config,
        format!(
            "org: acme\ntargets:\n{}{}",
            target("primary", "KW_TEST_TARGET_KEY"),
            target("backup", "KW_TEST_TARGET_KEY")
        ),
    )
    .unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    within_10s("SIGHUP reloads", async || {
        server.said("gateway targets reloaded: backup (env: KW_TEST_TARGET_KEY), primary (env: KW_TEST_TARGET_KEY)")
    })
    .await;
    assert_eq!(chat(&server.url, "t/backup", &token).await.0, 200);
    // Both SIGHUP reloads are in the trail, as the start is, naming the references.
    let trail = s.json(&[
        "events",
        "list",
        "--filter",
        "action=gateway_reload",
        "--json",
    ]);
    let by: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["sighup", "sighup", "start", "start"], "{trail}");
    assert_eq!(trail[0]["actor"], "serve:sighup");
    assert_eq!(trail[0]["outcome"], "success");
    assert_eq!(trail[1]["outcome"], "failure");
    assert_eq!(
        trail[0]["details"]["targets"][0]["reference"],
        "env: KW_TEST_TARGET_KEY"
    );

    // `keyward gateway reload` from another machine, with an admin token.
    std::fs::write(
        &config,
        format!(
            "org: acme\ntargets:\n{}",
            target("only", "KW_TEST_TARGET_KEY")
        ),
    )
    .unwrap();
    let remote = [
        ("KEYWARD_URL", server.url.as_str()),
        ("KEYWARD_TOKEN", admin.as_str()),
    ];
    let out = s.ok_with(&["gateway", "reload"], "", &remote);
    assert_eq!(
        out.trim(),
        "gateway targets reloaded: only (env: KW_TEST_TARGET_KEY)"
    );
    // The status says what is served, from which reference, and which load put it there.
    let status = s.ok_with(&["gateway", "status"], "", &remote);
    assert!(
        status.contains("by cli: ok")
            && status.contains("only")
            && status.contains("env: KW_TEST_TARGET_KEY")
            && status.contains(&format!("http://{upstream}/v1")),
        "{status}"
    );
    assert_eq!(chat(&server.url, "t/primary", &token).await.0, 404);
    assert_eq!(chat(&server.url, "t/only", &token).await.0, 200);
    std::fs::write(&config, "targets: [").unwrap();
    let err = s.fails(&["gateway", "reload"], &remote);
    assert!(
        err.contains("not a valid gateway config") && err.contains("the previous targets stay"),
        "{err}"
    );
    assert_eq!(chat(&server.url, "t/only", &token).await.0, 200);
    // Without a server to talk to, the command says what it needs.
    let err = s.fails(&["gateway", "reload"], &[]);
    assert!(err.contains("set KEYWARD_URL"), "{err}");

    let log = server.stop();
    assert!(
        log.contains("gateway targets not reloaded"),
        "the failed SIGHUP reload is logged"
    );
    assert!(
        !log.contains("TARGETKEY") && !String::from_utf8_lossy(&s.transcript).contains("TARGETKEY")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_target_is_read_with_the_servers_vault_settings_and_again_on_sighup() {
    let Some(bao) = keyward_testkit::kms::Bao::start().await else {
        return;
    };
    const FIRST: &str = "sk-proj-KVSERVECANARY-first-01234";
    const SECOND: &str = "sk-proj-KVSERVECANARY-second-0123";
    bao.kv_put("providers", json!({"openai_api_key": FIRST}))
        .await;
    let vault_token = bao
        .token_with_policy(
            "keyward-serve",
            "path \"secret/data/providers\" { capabilities = [\"read\"] }\n",
        )
        .await;
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    s.ok(&["org", "create", "acme"]);
    let token = s
        .ok(&["gateway-token", "create", "--org", "acme", "--name", "app"])
        .trim()
        .to_owned();
    let config = s.scratch().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "org: acme\ntargets:\n  - id: kv\n    provider: openai\n    base_url: http://{upstream}/v1\n    secret_key_ref: {{ vault: \"secret/data/providers#openai_api_key\" }}\n"
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();

    // No Vault server in the environment: the start stops, naming the reference and the fix.
    let err = s.fails(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gateway-config",
            &config_arg,
        ],
        &[],
    );
    assert!(
        err.contains("target 'kv': secret_key_ref vault secret/data/providers#openai_api_key: no Vault server: set VAULT_ADDR"),
        "{err}"
    );

    let env = [
        ("VAULT_ADDR", bao.addr.as_str()),
        ("VAULT_TOKEN", vault_token.as_str()),
    ];
    let server = Server::start(&s, &["--gateway-config", &config_arg], &env);
    let (st, _, body) = chat(&server.url, "t/kv", &token).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(last_auth(&mock), format!("Bearer {FIRST}"));

    // A new key in Vault is served after SIGHUP.
    bao.kv_put("providers", json!({"openai_api_key": SECOND}))
        .await;
    server.signal(nix::sys::signal::Signal::SIGHUP);
    within_10s("SIGHUP reads the new key", async || {
        chat(&server.url, "t/kv", &token).await.0 == 200
            && last_auth(&mock) == format!("Bearer {SECOND}")
    })
    .await;
    assert!(
        server.said("gateway targets reloaded: kv (vault: secret/data/providers#openai_api_key)")
    );

    // The Vault token revoked: the reload fails saying why, and the running key stays.
    bao.revoke(&vault_token).await;
    server.signal(nix::sys::signal::Signal::SIGHUP);
    within_10s("the failed reload is reported", async || {
        server.said("gateway targets not reloaded")
    })
    .await;
    let (st, _, _) = chat(&server.url, "t/kv", &token).await;
    assert_eq!(st, 200, "the previous targets stay");
    assert_eq!(last_auth(&mock), format!("Bearer {SECOND}"));

    let log = server.stop();
    assert!(
        log.contains("secret_key_ref vault secret/data/providers#openai_api_key")
            && log.contains("the token is not valid (expired or revoked), or its policy lacks `read` on secret/data/providers"),
        "{log}"
    );
    let printed = String::from_utf8_lossy(&s.transcript);
    for text in [log.as_str(), &printed] {
        assert!(
            !text.contains("KVSERVECANARY") && !text.contains(&vault_token),
            "a key or the Vault token was printed"
        );
    }
}

/// Whether `python3` can import `module` (an official SDK). CI installs them (`pip install
/// openai anthropic`) and sets `KEYWARD_TEST_REQUIRE_PYTHON_SDKS=1`, so that there a missing SDK
/// is a failure, not a skip.
pub(crate) fn python_sdk_available(module: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("KEYWARD_TEST_REQUIRE_PYTHON_SDKS").as_deref() != Ok("1"),
            "KEYWARD_TEST_REQUIRE_PYTHON_SDKS=1 but python3 cannot import {module} (pip install {module})"
        );
        eprintln!("skipping the {module} SDK run: python3 cannot import {module}");
    }
    found
}

/// The OpenAI Python SDK, unchanged but for its base URL and API key, against the gateway.
const SDK_SCRIPT: &str = r#"
import os, sys
from openai import OpenAI, APIStatusError
client = OpenAI(base_url=os.environ["GATEWAY"], api_key=os.environ["GW_TOKEN"], max_retries=int(os.environ.get("MAX_RETRIES", "0")), timeout=20)
messages = [{"role": "user", "content": "Say hello"}]
try:
    r = client.chat.completions.create(model="local-model", messages=messages)
    print("completion:", r.choices[0].message.content)
    stream = client.chat.completions.create(model="local-model", messages=messages, stream=True)
    print("streamed:", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))
except APIStatusError as e:
    print("error:", type(e).__name__, e.status_code, e.body["message"] if isinstance(e.body, dict) else e.body)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_through_the_gateway_as_the_readme_shows() {
    if !python_sdk_available("openai") {
        return;
    }
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = MockProvider::start().await;
    let upstream = mock.addr();
    let server = Server::start(&s, &[], &[]);
    let admin = server.admin.clone().unwrap();
    // From here on, the README's steps: the CLI talks to the server with the admin token.
    s.env.insert("KEYWARD_URL".into(), server.url.clone());
    s.env.insert("KEYWARD_TOKEN".into(), admin);
    s.ok(&["org", "create", "acme"]);
    let base_url = format!("http://{upstream}/v1");
    let added = s.ok_with(
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
            "--json",
        ],
        "sk-local-SDKKEY-0123456789\n",
        &[],
    );
    let added: Value = serde_json::from_str(&added).unwrap();
    let cred = added["id"].as_str().unwrap().to_owned();
    let gw = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "acme",
            "--name",
            "chat-ui",
        ])
        .trim()
        .to_owned();

    let sdk = |s: &Sandbox, retries: &str| {
        let out = std::process::Command::new("python3")
            .args(["-c", SDK_SCRIPT])
            .env("MAX_RETRIES", retries)
            .env(
                "GATEWAY",
                format!("{}/gateway/openai_compatible/v1", server.url),
            )
            .env("GW_TOKEN", &gw)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .current_dir(s.scratch())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = sdk(&s, "0");
    assert_eq!(out, "completion: Hello\nstreamed: Hello\n");
    let seen: Vec<String> = mock
        .received()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        seen,
        [
            "Bearer sk-local-SDKKEY-0123456789",
            "Bearer sk-local-SDKKEY-0123456789"
        ],
        "the provider saw the key, never the gateway token"
    );

    // The usage shows up within a second or two.
    let usage_shows = |s: &mut Sandbox, what: &dyn Fn(&Value) -> bool| {
        let usage: Value = serde_json::from_str(&s.ok_with(
            &["gateway", "usage", "--org", "acme", "--json"],
            "",
            &[],
        ))
        .unwrap();
        usage.as_array().unwrap().iter().any(what)
    };
    within_10s("the usage is written", async || {
        usage_shows(&mut s, &|u| {
            u["id"] == cred.as_str() && u["statuses"]["200"] == 2
        })
    })
    .await;
    let table = s.ok(&["gateway", "usage", "--org", "acme"]);
    assert!(
        table.contains("credential")
            && table.contains("local")
            && table.contains("gateway_token")
            && table.contains("chat-ui")
            && table.contains("200:2"),
        "{table}"
    );

    // Deactivated: the SDK gets a clear error that it knows to be permanent: with its
    // default retries it asks once (the gateway counts one refusal), not three times.
    s.ok(&["cred", "deactivate", &cred]);
    let out = sdk(&s, "2");
    assert_eq!(
        out.trim(),
        "error: PermissionDeniedError 403 Keyward gateway: organization 'acme' has no active OpenAI-compatible credential; an admin can add one (keyward cred add --org acme --provider openai_compatible) or activate one"
    );
    within_10s("the refusal is counted", async || {
        usage_shows(&mut s, &|u| {
            u["subject"] == "gateway_token" && u["statuses"]["403"] == 1
        })
    })
    .await;
    let log = server.stop();
    assert!(!log.contains("SDKKEY") && !log.contains(&gw));
}

const ANTHROPIC_SCRIPT: &str = r#"
import os
from anthropic import Anthropic
client = Anthropic(base_url=os.environ["GATEWAY"], api_key=os.environ["GW_TOKEN"], max_retries=0, timeout=20)
messages = [{"role": "user", "content": "Say hello"}]
m = client.messages.create(model="claude-x", max_tokens=16, messages=messages)
print("message:", m.content[0].text)
with client.messages.stream(model="claude-x", max_tokens=16, messages=messages) as stream:
    print("streamed:", "".join(stream.text_stream))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_works_through_the_gateway() {
    if !python_sdk_available("anthropic") {
        return;
    }
    const KEY: &str = "sk-ant-api03-SDKKEY-0123456789abcdef";
    let mut s = Sandbox::sqlite();
    let master = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), master);
    // Anthropic's shape, plain and streamed (the SDK's event types); it answers only to the
    // organization's key (and, as Anthropic does, only with an `anthropic-version` header).
    let mock = MockProvider::builder().key(KEY).start().await;
    let upstream = mock.addr();
    s.ok(&["org", "create", "acme"]);
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "anthropic",
            "--name",
            "main",
            "--base-url",
            &format!("http://{upstream}"),
        ],
        &format!("{KEY}\n"),
        &[],
    );
    let gw = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "acme",
            "--name",
            "app",
            "--providers",
            "anthropic",
        ])
        .trim()
        .to_owned();
    let server = Server::start(&s, &[], &[]);
    let out = std::process::Command::new("python3")
        .args(["-c", ANTHROPIC_SCRIPT])
        .env("GATEWAY", format!("{}/gateway/anthropic", server.url))
        .env("GW_TOKEN", &gw)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "message: Hello\nstreamed: Hello\n"
    );
    let received = mock.received();
    assert_eq!(received.len(), 2, "a message and a stream");
    for r in &received {
        assert_eq!(r.key(), Some(KEY));
        assert!(
            r.header("authorization").is_none(),
            "the key goes as x-api-key alone: {r:?}"
        );
    }
    let log = server.stop();
    assert!(!log.contains("SDKKEY") && !log.contains(&gw));
}
