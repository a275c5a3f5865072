//! The audit trail leaving the building (issue 26): `keyward serve --audit-sink` shipping to a
//! real rsyslog over TCP (RFC 5424, octet-counted), to an HTTP receiver that checks every
//! batch's HMAC with Python's own `hmac` (`keyward-testkit/audit/receiver.py`), and to a
//! JSON-lines file; with the HTTP receiver failing and then gone, rsyslog stopped, and Keyward
//! itself restarted in the middle. Every event arrives, in order, none lost; no key anywhere.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway::Server;
use crate::sandbox::{Reaped, Sandbox};

const CANARY: &str = "sk-proj-AUDITSINKCANARY0000000000000000000000000000";
const HMAC_KEY: &str = "an-hmac-key-of-the-receiver-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real rsyslogd listening where `input` says, writing each message's parsed RFC 5424 parts
/// to `out`: facility|severity|app-name|msgid|structured-data|msg.
struct Rsyslog {
    child: Child,
}

/// Where rsyslog listens.
enum Input<'a> {
    /// imtcp on 127.0.0.1.
    Tcp(u16),
    /// imuxsock on a socket of its own (not /dev/log), without its rate limit.
    Unix(&'a Path),
}

impl Rsyslog {
    fn start(dir: &Path, input: Input<'_>, out: &Path) -> Option<Self> {
        let Ok(rsyslogd) = which("rsyslogd") else {
            assert!(
                std::env::var("KEYWARD_TEST_REQUIRE_RSYSLOG").as_deref() != Ok("1"),
                "KEYWARD_TEST_REQUIRE_RSYSLOG=1 but rsyslogd is missing (apt-get install rsyslog)"
            );
            eprintln!("skipped: no rsyslogd (apt-get install rsyslog)");
            return None;
        };
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}")
{input}
template(name="parts" type="string" string="%syslogfacility%|%syslogseverity%|%app-name%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="parts")
"#,
                work = work.display(),
                out = out.display(),
                input = match &input {
                    Input::Tcp(port) => format!(
                        "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")"
                    ),
                    Input::Unix(path) => format!(
                        "module(load=\"imuxsock\" SysSock.Use=\"off\")\ninput(type=\"imuxsock\" Socket=\"{}\" RateLimit.Interval=\"0\" UseSpecialParser=\"off\" ParseHostname=\"on\")",
                        path.display()
                    ),
                }
            ),
        )
        .unwrap();
        let child = Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let listening = || match &input {
            Input::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            Input::Unix(path) => path.exists(),
        };
        while !listening() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "rsyslogd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child })
    }

    /// Stops it as a service manager would (SIGTERM), letting it write what it holds.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Result<PathBuf, ()> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(())
}

/// The Python receiver on `port`.
fn receiver(port: u16, out: &Path, mode: &Path) -> Reaped {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keyward-testkit/audit/receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--key", HMAC_KEY])
        .arg("--out")
        .arg(out)
        .arg("--mode-file")
        .arg(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    Reaped(child)
}

/// The sequence numbers in the order a sink received them.
fn received(path: &Path, seq_of: impl Fn(&str) -> Option<i64>) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(seq_of)
        .collect()
}

fn json_seq(line: &str) -> Option<i64> {
    serde_json::from_str::<Value>(line).ok()?["seq"].as_i64()
}

/// An rsyslog line's sequence number, once its parts check: facility 13 (log audit), app
/// `keyward`, the msgid the event's action, `[meta sequenceId="N"]`, and the message the event.
fn syslog_seq(line: &str) -> Option<i64> {
    let parts: Vec<&str> = line.splitn(6, '|').collect();
    assert_eq!(parts.len(), 6, "{line}");
    assert_eq!(parts[0], "13", "{line}");
    assert!(matches!(parts[1], "6" | "4"), "{line}");
    assert_eq!(parts[2], "keyward", "{line}");
    let event: Value = serde_json::from_str(parts[5].trim()).unwrap();
    assert_eq!(parts[3], event["action"].as_str().unwrap(), "{line}");
    let seq = event["seq"].as_i64().unwrap();
    assert_eq!(parts[4], format!("[meta sequenceId=\"{seq}\"]"), "{line}");
    Some(seq)
}

/// Every event 1..=head arrived, in order: each delivery is at least once, so a batch sent again
/// after a failure may repeat what came before, never skip.
fn assert_complete_in_order(what: &str, got: &[i64], head: i64) {
    let mut next = 1;
    for &seq in got {
        assert!(
            seq <= next,
            "{what}: event {seq} came before event {next}: {got:?}"
        );
        if seq == next {
            next += 1;
        }
    }
    assert_eq!(next - 1, head, "{what}: {got:?}");
}

fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn head(s: &mut Sandbox) -> i64 {
    s.json(&["events", "list", "--limit", "1", "--json"])[0]["seq"]
        .as_i64()
        .unwrap()
}

async fn metrics(url: &str) -> String {
    crate::gateway::client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_rsyslog_an_http_receiver_and_a_file_through_outages_and_a_restart() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let dir = s.scratch();
    let syslog_out = dir.join("syslog.txt");
    let http_out = dir.join("http.jsonl");
    let file_out = dir.join("audit.jsonl");
    let mode = dir.join("mode");
    let syslog_port = free_port();
    let http_port = free_port();
    let Some(rsyslog) = Rsyslog::start(&dir, Input::Tcp(syslog_port), &syslog_out) else {
        return;
    };
    // The HTTP receiver refuses everything at first.
    std::fs::write(&mode, "fail").unwrap();
    let http = receiver(http_port, &http_out, &mode);

    let tcp = format!("syslog+tcp://127.0.0.1:{syslog_port}");
    let url = format!("http://127.0.0.1:{http_port}/ingest?token=not-shown");
    let file = format!("file://{}", file_out.display());
    let args = [
        "--audit-sink",
        tcp.as_str(),
        "--audit-sink",
        url.as_str(),
        "--audit-sink",
        file.as_str(),
    ];
    let env = [("KEYWARD_AUDIT_SINK_HMAC_KEY", HMAC_KEY)];
    let server = Server::start(&s, &args, &env);

    // Audited work beside the running server: an organization, a key, its resolutions.
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
            "main",
        ],
        CANARY,
        &[],
    );
    for _ in 0..5 {
        s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    }
    let first_head = head(&mut s);
    wait_for("rsyslog and the file take every event", 30, || {
        received(&syslog_out, syslog_seq).len() as i64 >= first_head
            && received(&file_out, json_seq).len() as i64 >= first_head
    });
    // The HTTP sink is behind, and says so.
    let text = metrics(&server.url).await;
    let lag = text
        .lines()
        .find(|l| l.starts_with("keyward_audit_sink_lag_events{sink=\"http://127.0.0.1"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!lag.ends_with(" 0"), "{lag}");
    assert!(!text.contains("not-shown"), "a sink's query is not shown");
    assert!(
        text.lines().any(
            |l| l.starts_with("keyward_audit_sink_failures_total{sink=\"http")
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
    let admin = server.admin.clone().unwrap();
    let status = gateway_status(&mut s, &server, &admin);
    assert!(
        status.contains("FAILING: the receiver answered 503"),
        "{status}"
    );

    // Keyward restarts; meanwhile rsyslog stops and the receiver is gone altogether.
    server.stop();
    rsyslog.stop();
    drop(http);
    for _ in 0..3 {
        s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    }
    let server = Server::start(&s, &args, &env);
    s.ok(&["cred", "list", "--org", "acme"]);
    s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    std::thread::sleep(Duration::from_secs(2));
    // Back: rsyslog on its port, the receiver taking batches.
    let rsyslog = Rsyslog::start(&dir, Input::Tcp(syslog_port), &syslog_out).unwrap();
    std::fs::write(&mode, "ok").unwrap();
    let _http = receiver(http_port, &http_out, &mode);
    s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    let last = head(&mut s);
    assert!(last > first_head + 4);
    wait_for("every sink takes every event", 90, || {
        let done = |got: Vec<i64>| got.iter().max().copied().unwrap_or(0) >= last;
        done(received(&syslog_out, syslog_seq))
            && done(received(&http_out, json_seq))
            && done(received(&file_out, json_seq))
    });
    assert_complete_in_order("rsyslog", &received(&syslog_out, syslog_seq), last);
    assert_complete_in_order("http", &received(&http_out, json_seq), last);
    assert_complete_in_order("file", &received(&file_out, json_seq), last);

    // Each signature checked out; the events are the log's own; no key anywhere.
    let http_text = std::fs::read_to_string(&http_out).unwrap();
    assert!(
        !http_text.contains("bad_signature"),
        "every batch's HMAC checks"
    );
    let listed = s.json(&["events", "list", "--limit", "1000", "--json"]);
    let by_seq: std::collections::HashMap<i64, &Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["seq"].as_i64().unwrap(), e))
        .collect();
    for line in http_text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let stored = by_seq[&e["seq"].as_i64().unwrap()];
        for field in ["action", "actor", "target", "outcome", "at", "details"] {
            assert_eq!(e[field], stored[field], "{field} of {line}");
        }
        assert_eq!(e["link"].as_str().unwrap().len(), 64);
    }
    let file_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file_out).unwrap().permissions(),
    );
    assert_eq!(file_mode & 0o777, 0o600);
    for out in [&syslog_out, &http_out, &file_out] {
        let text = std::fs::read_to_string(out).unwrap();
        assert!(!text.contains(CANARY), "a key in {}", out.display());
        assert!(
            !text.contains(HMAC_KEY),
            "the HMAC key in {}",
            out.display()
        );
    }
    let printed = server.stop();
    assert!(!printed.contains(CANARY) && !printed.contains(HMAC_KEY));
    rsyslog.stop();
}

/// Through a Unix socket, as to /dev/log (rsyslog's imuxsock takes RFC 5424 with
/// `UseSpecialParser="off"`): more events than rsyslog's default burst (200), all
/// there, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_rsyslog_through_a_unix_socket() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let dir = s.scratch();
    let socket = dir.join("log.sock");
    let out = dir.join("syslog.txt");
    let Some(rsyslog) = Rsyslog::start(&dir, Input::Unix(&socket), &out) else {
        return;
    };
    s.ok(&["org", "create", "acme"]);
    let token = s
        .ok(&["gateway-token", "create", "--org", "acme", "--name", "app"])
        .trim()
        .to_owned();
    let spec = format!("syslog+unix://{}", socket.display());
    let server = Server::start(&s, &["--audit-sink", &spec, "--audit-log-all-access"], &[]);
    // Each request is an event (the organization has no key: each is refused, and audited).
    let client = crate::gateway::client();
    for _ in 0..300 {
        let resp = client
            .get(format!("{}/gateway/openai/v1/models", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
    }
    wait_for("the requests' events", 10, || head(&mut s) > 300);
    let last = head(&mut s);
    assert!(last > 300);
    wait_for("rsyslog takes every event", 30, || {
        received(&out, syslog_seq)
            .iter()
            .max()
            .copied()
            .unwrap_or(0)
            >= last
    });
    assert_complete_in_order("unix", &received(&out, syslog_seq), last);
    server.stop();
    rsyslog.stop();
}

#[test]
fn an_http_sink_without_a_signing_key_or_with_a_password_is_refused_at_start() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let err = s.fails(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--audit-sink",
            "https://siem.example/in",
        ],
        &[],
    );
    assert!(err.contains("needs a signing key"), "{err}");
    let err = s.fails(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--audit-sink",
            "https://user:hunter2@siem.example/in",
        ],
        &[],
    );
    assert!(err.contains("user or password is refused"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// The seed's pack, as the Keeptrusts guide writes it, with its audit-logger policy: every
/// gateway request is an audit event (its request id in the details), an early prune is
/// refused while the policy is immutable, and no API route deletes events. Another server's
/// settings (not immutable, 30 days) replace it, audited; then a prune goes through and what
/// is left verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packs_audit_logger_policy_audits_every_request_and_guards_the_log() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let mock = keyward_testkit::MockProvider::start().await;
    let upstream = mock.addr();
    s.ok(&["org", "create", "acme"]);
    let token = s
        .ok(&["gateway-token", "create", "--org", "acme", "--name", "app"])
        .trim()
        .to_owned();
    let config = s.scratch().join("pack.yaml");
    std::fs::write(
        &config,
        format!(
            "pack:\n  name: secret-management-providers-1\n  version: 1.0.0\n  enabled: true\n\
             providers:\n  targets:\n    - id: openai\n      provider: openai\n      base_url: http://{upstream}/v1\n      secret_key_ref:\n        env: OPENAI_API_KEY\n\
             policies:\n  chain:\n    - audit-logger\n\
             policy:\n  audit-logger:\n    immutable: true\n    retention_days: 365\n    log_all_access: true\n"
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let env = [("OPENAI_API_KEY", CANARY)];
    let server = Server::start(&s, &["--gateway-config", &config_arg], &env);
    assert!(
        !server_said_ignored(&server),
        "the audit-logger policy is no longer ignored"
    );
    let admin = server.admin.clone().unwrap();
    let client = crate::gateway::client();
    let chat = |bearer: String| {
        client
            .post(format!(
                "{}/gateway/t/openai/v1/chat/completions",
                server.url
            ))
            .bearer_auth(bearer)
            .header("x-request-id", "req-from-the-app-1")
            .json(
                &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
    };
    for _ in 0..3 {
        let resp = chat(token.clone()).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let refused = chat("kwg_not-a-token".into()).await.unwrap();
    assert_eq!(refused.status(), 401);

    let mut requests = Vec::new();
    // Written before each answer left: there at once.
    wait_for("three request events", 2, || {
        requests = s
            .json(&[
                "events",
                "list",
                "--filter",
                "action=gateway_request",
                "--json",
            ])
            .as_array()
            .unwrap()
            .clone();
        requests.len() >= 3
    });
    assert_eq!(
        requests.len(),
        3,
        "a request without a gateway token is no request event"
    );
    let served: Vec<&Value> = requests.iter().collect();
    for e in &served {
        assert_eq!(e["target"], "target:openai");
        assert_eq!(e["org"], "acme");
        assert!(
            e["actor"].as_str().unwrap().starts_with("gateway_token:"),
            "{e}"
        );
        assert_eq!(e["details"]["request_id"], "req-from-the-app-1");
        assert_eq!(e["details"]["status"], 200);
        assert_eq!(e["category"], "secret_access");
    }
    // The refused one is a failed authentication, as without the policy.
    let refusals = s.json(&[
        "events",
        "list",
        "--filter",
        "action=authenticate,outcome=failure",
        "--json",
    ]);
    assert_eq!(refusals.as_array().unwrap().len(), 1, "{refusals}");

    // The policy is the store's: `events prune` keeps it.
    let early = s.fails(&["events", "prune", "--older-than", "1s"], &[]);
    assert!(
        early.contains("immutable with a retention of 365 days"),
        "{early}"
    );
    let by_policy = s.ok(&["events", "prune"]);
    assert!(by_policy.contains("0 event(s) removed"), "{by_policy}");
    let remote = [
        ("KEYWARD_URL", server.url.as_str()),
        ("KEYWARD_TOKEN", admin.as_str()),
    ];
    let status = s.ok_with(&["gateway", "status"], "", &remote);
    assert!(
        status
            .contains("audit policy: retention 365 days, immutable, every gateway request audited"),
        "{status}"
    );
    let over_api = s.fails(&["events", "prune", "--older-than", "400d"], &remote);
    assert!(
        over_api.contains("no API route deletes events"),
        "{over_api}"
    );
    // No route of the API deletes (or otherwise changes) events.
    let doc: Value = client
        .get(format!("{}/api/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.contains("events") {
            for method in ["delete", "put", "patch"] {
                assert!(item.get(method).is_none(), "{method} {path}");
            }
        }
    }
    let printed = server.stop();
    assert!(!printed.contains(CANARY));

    // Looser settings later do not loosen an immutable policy: retention, immutability and
    // every request audited stay, nothing changes (no new policy event), and the early prune
    // stays refused.
    let server = Server::start(&s, &["--audit-retention-days", "30"], &[]);
    let changes = s.json(&[
        "events",
        "list",
        "--filter",
        "action=audit_policy_set",
        "--json",
    ]);
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    let status = gateway_status(&mut s, &server, &admin);
    assert!(
        status
            .contains("audit policy: retention 365 days, immutable, every gateway request audited"),
        "{status}"
    );
    let still = s.fails(&["events", "prune", "--older-than", "1s"], &[]);
    assert!(still.contains("immutable"), "{still}");
    server.stop();
    let transcript = String::from_utf8_lossy(&s.transcript).into_owned();
    assert!(!transcript.contains(CANARY));

    // A policy that is not immutable lets a prune through, and what is left verifies.
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    for i in 0..12 {
        s.ok_with(&["var", "set", &format!("V{i}"), "--org", "acme"], "v", &[]);
    }
    let server = Server::start(&s, &["--audit-retention-days", "30"], &[]);
    server.stop();
    let pruned = s.json(&["events", "prune", "--older-than", "0s", "--json"]);
    assert!(pruned["removed"].as_u64().unwrap() > 10, "{pruned}");
    let verified = s.ok(&["events", "verify"]);
    assert!(
        verified.contains("audit chain intact") && verified.contains("were pruned"),
        "{verified}"
    );
}

fn server_said_ignored(server: &Server) -> bool {
    server.printed().iter().any(|l| l.contains("ignored"))
}

/// Two replicas on one PostgreSQL database with the same sink: one ships, the other stands by,
/// and takes over when the first stops; every event arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_ship_each_event_once_and_hand_the_sink_over() {
    let Some(mut s) = Sandbox::postgres().await else {
        return;
    };
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let out = s.scratch().join("audit.jsonl");
    let spec = format!("file://{}", out.display());
    let args = ["--audit-sink", spec.as_str()];
    let a = Server::start(&s, &args, &[]);
    let b = Server::start(&s, &args, &[]);
    s.ok(&["org", "create", "acme"]);
    for i in 0..5 {
        s.ok_with(&["var", "set", &format!("V{i}"), "--org", "acme"], "v", &[]);
    }
    let first = head(&mut s);
    wait_for("the file takes every event", 20, || {
        received(&out, json_seq).iter().max().copied().unwrap_or(0) >= first
    });
    let admin = a.admin.clone().unwrap();
    let shipping = |server: &Server| {
        let status = s_status(&server.url, &admin);
        status.contains("shipping") && !status.contains("held by process")
    };
    assert!(
        shipping(&a) != shipping(&b),
        "one replica ships, the other stands by"
    );
    let (holder, other) = if shipping(&a) { (a, b) } else { (b, a) };
    holder.stop();
    for i in 5..10 {
        s.ok_with(&["var", "set", &format!("V{i}"), "--org", "acme"], "v", &[]);
    }
    let last = head(&mut s);
    wait_for("the other replica takes over", 30, || {
        received(&out, json_seq).iter().max().copied().unwrap_or(0) >= last
    });
    let got = received(&out, json_seq);
    assert_eq!(
        got,
        (1..=last).collect::<Vec<_>>(),
        "each event once, in order"
    );
    other.stop();
}

/// `keyward gateway status` against `server`, as `admin`.
fn gateway_status(s: &mut Sandbox, server: &Server, admin: &str) -> String {
    s.ok_with(
        &["gateway", "status"],
        "",
        &[
            ("KEYWARD_URL", server.url.as_str()),
            ("KEYWARD_TOKEN", admin),
        ],
    )
}

fn s_status(url: &str, admin: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["gateway", "status"])
        .env_clear()
        .env("KEYWARD_URL", url)
        .env("KEYWARD_TOKEN", admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
