//! `keyward serve` as a user starts it: the bootstrap admin token, tokens made with the CLI,
//! and a graceful stop.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::sandbox::Sandbox;

/// A minimal HTTP/1.1 call; returns status and body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// `keyward serve` on a free port with `extra` arguments, logging at trace level: the
/// process, the thread collecting its log (standard error), and its standard output's lines.
fn talkative_serve(
    s: &Sandbox,
    extra: &[&str],
) -> (
    std::process::Child,
    std::thread::JoinHandle<String>,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut server = s
        .command(&args)
        .env("KEYWARD_LOG", "trace")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = server.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let lines = BufReader::new(server.stdout.take().unwrap()).lines();
    (server, log_reader, lines)
}

#[test]
fn serve_prints_an_admin_token_once_and_stops_gracefully() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    // The most talkative logging there is: no line of it may hold a key.
    let (mut server, log_reader, mut lines) = talkative_serve(&s, &[]);
    let mut next = || lines.next().unwrap().unwrap();
    assert!(next().starts_with("admin token (shown once"));
    let admin = next();
    assert!(admin.starts_with("kwt_") && admin.len() > 40, "{admin}");
    let _id = next();
    let listening = next();
    let addr = listening
        .strip_prefix("keyward listening on http://")
        .unwrap()
        .to_owned();

    let (status, _) = http(&addr, "POST", "/api/v1/orgs", &admin, r#"{"id":"acme"}"#);
    assert_eq!(status, 201);
    // Tokens made with the CLI, beside the running server, work at once.
    let made = s.json(&[
        "token",
        "create",
        "--role",
        "org_admin",
        "--org",
        "acme",
        "--name",
        "ci",
        "--json",
    ]);
    let org_admin = made["token"].as_str().unwrap().to_owned();
    let (status, body) = http(
        &addr,
        "POST",
        "/api/provider-credentials/create",
        &org_admin,
        r#"{"organization_id":"acme","provider":"openai","credential_name":"prod","api_key":"sk-proj-SERVECANARY0123456789wxyz"}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        body.contains("sk-...wxyz") && !body.contains("SERVECANARY"),
        "{body}"
    );
    // Another machine: no master key, no data directory, only a resolver token.
    let resolver = s.json(&[
        "token", "create", "--role", "resolver", "--org", "acme", "--name", "app", "--json",
    ]);
    let as_token = |token: &str, args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYWARD_URL", format!("http://{addr}"))
            .env("KEYWARD_TOKEN", token)
            .env("KEYWARD_DATA_DIR", "/nonexistent/keyward-data")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let resolver_token = resolver["token"].as_str().unwrap().to_owned();
    let remote = |args: &[&str]| as_token(&resolver_token, args, "");
    // The core commands against the server, as an organization's admin.
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let creds = ok(as_token(&org_admin, &["cred", "list"], ""));
    assert!(
        creds.contains("sk-...wxyz") && creds.contains("acme"),
        "{creds}"
    );
    ok(as_token(
        &org_admin,
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "anthropic",
            "--name",
            "main",
        ],
        "sk-ant-api03-REMOTECANARY0123456789",
    ));
    let listed: serde_json::Value = serde_json::from_str(&ok(as_token(
        &org_admin,
        &["cred", "list", "--provider", "anthropic", "--json"],
        "",
    )))
    .unwrap();
    let anthropic_id = listed[0]["id"].as_str().unwrap().to_owned();
    ok(as_token(
        &org_admin,
        &["cred", "deactivate", &anthropic_id],
        "",
    ));
    let shown = ok(as_token(&org_admin, &["cred", "show", &anthropic_id], ""));
    assert!(shown.contains("active") && shown.contains("no"), "{shown}");
    ok(as_token(
        &org_admin,
        &["var", "set", "db.password", "--org", "acme", "--sensitive"],
        "VARREMOTE\n",
    ));
    assert_eq!(
        ok(as_token(
            &org_admin,
            &["var", "get", "db.password", "--org", "acme"],
            ""
        ))
        .trim(),
        "***"
    );
    assert_eq!(
        ok(as_token(
            &org_admin,
            &["var", "get", "db.password", "--org", "acme", "--reveal"],
            ""
        ))
        .trim(),
        "VARREMOTE"
    );
    assert!(
        ok(as_token(&org_admin, &["var", "list", "--org", "acme"], "")).contains("db.password")
    );
    let trail = ok(as_token(
        &org_admin,
        &["events", "list", "--filter", "action=reveal"],
        "",
    ));
    assert!(trail.contains("reveal"), "{trail}");
    let orgs = ok(as_token(&admin, &["org", "list", "--json"], ""));
    assert!(orgs.contains("acme"));
    let status = ok(as_token(&admin, &["master-key", "status", "--json"], ""));
    assert!(status.contains("\"primary\": \"default\""), "{status}");
    assert!(ok(as_token(&admin, &["events", "verify"], "")).contains("intact"));
    let out = remote(&[
        "run",
        "--org",
        "acme",
        "--",
        "python3",
        "-c",
        "import os; print(os.environ['OPENAI_API_KEY'], 'KEYWARD_TOKEN' in os.environ)",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sk-...wxyz False\n",
        "masked, and the token withheld"
    );
    let out = remote(&["resolve", "--org", "acme", "--provider", "openai"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sk-proj-SERVECANARY0123456789wxyz"
    );
    // The one resolution rule against a server too: a provider the organization has no
    // active key for (its anthropic key is deactivated) takes this machine's own environment,
    // unless --no-env-fallback.
    let with_shell_key = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYWARD_URL", format!("http://{addr}"))
            .env("KEYWARD_TOKEN", &resolver_token)
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-MYSHELLKEY-0123456789")
            .output()
            .unwrap()
    };
    let out = with_shell_key(&["resolve", "--org", "acme", "--provider", "anthropic"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sk-ant-api03-MYSHELLKEY-0123456789",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_shell_key(&[
        "run",
        "--org",
        "acme",
        "--provider",
        "openai,anthropic",
        "--no-masking",
        "--",
        "python3",
        "-c",
        "import os; print(os.environ['OPENAI_API_KEY'][:12], os.environ['ANTHROPIC_API_KEY'][:18])",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sk-proj-SERV sk-ant-api03-MYSHE",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An organization the token does not see (a typo, another tenant's) is no "no key": the
    // machine's own key is not taken for it.
    for org in ["acme-typo", "globex"] {
        let out = with_shell_key(&["resolve", "--org", org, "--provider", "anthropic"]);
        assert!(!out.status.success(), "{org}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("MYSHELLKEY"),
            "{org}: fell back to the shell's key"
        );
    }
    let out = with_shell_key(&[
        "resolve",
        "--org",
        "acme",
        "--provider",
        "anthropic",
        "--no-env-fallback",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no active Anthropic credential"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = remote(&["cred", "list"]);
    assert!(
        !out.status.success(),
        "a resolver token cannot list, and the CLI says so"
    );
    assert!(!std::path::Path::new("/nonexistent/keyward-data").exists());

    let gw = s.json(&[
        "gateway-token",
        "create",
        "--org",
        "acme",
        "--name",
        "chat-ui",
        "--providers",
        "openai",
        "--rpm",
        "60",
        "--expires-in",
        "30d",
        "--json",
    ]);
    let gw_token = gw["token"].as_str().unwrap().to_owned();
    assert!(gw_token.starts_with("kwg_") && gw["rpm"] == 60 && gw["expires_at"].is_i64());
    let gws = s.ok(&["gateway-token", "list", "--org", "acme"]);
    assert!(
        gws.contains("chat-ui") && gws.contains("openai") && !gws.contains(&gw_token),
        "{gws}"
    );
    s.ok(&["gateway-token", "revoke", gw["id"].as_str().unwrap()]);
    assert!(s.ok(&["gateway-token", "list"]).contains("revoked"));

    let list = s.ok(&["token", "list"]);
    assert!(
        list.contains("bootstrap admin") && list.contains("org_admin"),
        "{list}"
    );
    assert!(!list.contains(&org_admin), "a listing shows only a prefix");
    let id = made["id"].as_str().unwrap().to_owned();
    s.ok(&["token", "revoke", &id]);
    // Revoked by another process on SQLite (no notifications): the server sees it once its
    // cached check is older than the cache's time to live (1 s).
    let revoked_at = std::time::Instant::now();
    let status = loop {
        let (status, _) = http(&addr, "GET", "/api/v1/orgs", &org_admin, "");
        if status != 200 || revoked_at.elapsed() > std::time::Duration::from_secs(3) {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status, 401, "a revoked token stops working within the TTL");

    let pid = nix::unistd::Pid::from_raw(server.id().cast_signed());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        server.wait().unwrap().success(),
        "SIGTERM stops the server cleanly"
    );
    let log = log_reader.join().unwrap();
    assert!(
        log.len() > 1000,
        "trace logging said little: {} bytes",
        log.len()
    );
    for secret in ["SERVECANARY", &admin[4..], &org_admin[4..]] {
        assert!(!log.contains(secret), "a secret is in the server's log");
    }

    // A second start finds the admin token and prints no new one.
    let mut again = s
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(again.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("keyward listening on"), "{first}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.id().cast_signed()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(again.wait().unwrap().success());
}

/// Starts `keyward serve` with `KEYWARD_ADMIN_TOKEN` set; returns its address (or `None` when
/// it exited), and its stderr once stopped.
fn serve_with_admin_token(s: &Sandbox, token: &str) -> (Option<String>, String) {
    let mut server = s
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("KEYWARD_ADMIN_TOKEN", token)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = server.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let addr = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("keyward listening on http://")
                .map(str::to_owned)
        });
    if addr.is_some() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server.id().cast_signed()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
    let _ = server.wait();
    (addr, log.join().unwrap())
}

#[test]
fn an_operator_chosen_admin_token_works_or_is_refused_at_start() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    // Too short: refused at start, with why, and nothing stored.
    let (addr, log) = serve_with_admin_token(&s, "changeme");
    assert!(addr.is_none(), "a start with a guessable admin token");
    assert!(log.contains("at least 32 characters"), "{log}");
    // `openssl rand -hex 32`: no kwt_ prefix, and it works.
    let hex = "4c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a089f86d08188";
    let mut server = s
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("KEYWARD_ADMIN_TOKEN", hex)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "admin token taken from KEYWARD_ADMIN_TOKEN"
    );
    let addr = lines.next().unwrap().unwrap();
    let addr = addr.strip_prefix("keyward listening on http://").unwrap();
    assert_eq!(http(addr, "GET", "/api/v1/orgs", hex, "").0, 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().cast_signed()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    // A later start with another token says it was not taken.
    let other = "0000000000000000000000000000000000000000000000000000000000000000";
    let (addr, log) = serve_with_admin_token(&s, other);
    assert!(addr.is_some());
    assert!(
        log.contains("KEYWARD_ADMIN_TOKEN is not a working token"),
        "{log}"
    );
    assert!(!log.contains(other), "{log}");
}

/// An expired token reads `expired` in the CLI's listings, as in the API and the console: one
/// rule decides whether a token works and what listings call it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_expired_in_the_cli_listings() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let api = s.json(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--org",
        "acme",
        "--name",
        "lapsed",
        "--expires-in",
        "1h",
        "--json",
    ]);
    let gateway = s.json(&[
        "gateway-token",
        "create",
        "--org",
        "acme",
        "--name",
        "lapsed-gw",
        "--expires-in",
        "1h",
        "--json",
    ]);
    sqlx::any::install_default_drivers();
    let db = format!("sqlite://{}", s.data_dir().join("keyward.db").display());
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    for (table, id) in [
        ("api_tokens", &api["id"]),
        ("gateway_tokens", &gateway["id"]),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET expires_at = 1 WHERE id = $1"
        )))
        .bind(id.as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let listed = s.ok(&["token", "list"]);
    let line = listed.lines().find(|l| l.contains("lapsed")).unwrap();
    assert!(line.contains("expired"), "{listed}");
    let listed = s.ok(&["gateway-token", "list"]);
    let line = listed.lines().find(|l| l.contains("lapsed-gw")).unwrap();
    assert!(line.contains("expired"), "{listed}");
    let json = s.json(&["token", "list", "--json"]);
    let lapsed = json
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lapsed")
        .unwrap();
    assert_eq!(lapsed["state"], "expired", "{lapsed}");
}

/// Whatever answers at `KEYWARD_URL` cannot make the command hold more than any Keyward answer
/// (16 MiB): a 40 MiB answer is refused, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_refused_not_held() {
    let mock = keyward_testkit::MockProvider::start().await;
    mock.on_path(
        "/huge",
        keyward_testkit::Reply::ok().body(vec![b' '; 40 << 20]),
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["resolve", "--org", "acme", "--provider", "openai"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYWARD_URL", format!("{}/huge", mock.url()))
        .env("KEYWARD_TOKEN", "kwt_0123456789abcdef0123456789abcdef")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than 16 MiB"), "{err}");
}

/// `--log-format json`: every line the server logs, at the most talkative level, under load
/// and on errors, is a JSON object; each request has one access line with its route template
/// (never the path as sent, nor its query), status, caller and request id; the id a client
/// sends comes back and lands in the audit event; no key or token is in any line.
#[test]
fn json_logs_parse_line_by_line_and_carry_request_ids() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let (mut server, log_reader, mut lines) = talkative_serve(&s, &["--log-format", "json"]);
    let mut next = || lines.next().unwrap().unwrap();
    assert!(next().starts_with("admin token (shown once"));
    let admin = next();
    let _id = next();
    let addr = next()
        .strip_prefix("keyward listening on http://")
        .unwrap()
        .to_owned();

    // A request id the client chose, on a write: back on the answer, in the audit event.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = r#"{"id":"acme"}"#;
    write!(
        stream,
        "POST /api/v1/orgs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\n\
         X-Request-Id: deploy-42.a_b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-request-id: deploy-42.a_b\r\n"),
        "{answer}"
    );
    // Load and errors: a canary key in a bearer, a canary in the path and the query, a
    // gateway token that does not exist, a request id shaped like a key (replaced).
    let canary = "sk-proj-LOGCANARY0123456789abcdefghijklmn";
    for _ in 0..20 {
        let (status, _) = http(&addr, "GET", "/api/v1/orgs", &admin, "");
        assert_eq!(status, 200);
    }
    let (status, _) = http(&addr, "GET", "/api/v1/orgs", canary, "");
    assert_eq!(status, 401);
    let (status, _) = http(
        &addr,
        "GET",
        &format!("/api/v1/orgs/{canary}?key={canary}"),
        &admin,
        "",
    );
    assert!(status >= 400);
    let (status, _) = http(
        &addr,
        "POST",
        "/gateway/openai/v1/chat/completions",
        "kwg_LOGCANARYnotatoken0123456789abcdef",
        "{}",
    );
    assert_eq!(status, 401);
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Request-Id: {canary}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(!answer.contains(canary), "{answer}");

    let events = s.json(&["events", "list", "--limit", "50", "--json"]);
    let created = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "create" && e["target"] == "org:acme")
        .unwrap();
    assert_eq!(
        created["details"]["request_id"], "deploy-42.a_b",
        "{created}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    let log = log_reader.join().unwrap();
    let mut access = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["target"] == "keyward::access" {
            access.push(v["fields"].clone());
        }
    }
    for secret in [canary, "LOGCANARY", admin.as_str()] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
    let create = access
        .iter()
        .find(|a| a["request_id"] == "deploy-42.a_b")
        .expect("the write's access line");
    assert_eq!(create["method"], "POST");
    assert_eq!(create["route"], "/api/v1/orgs");
    assert_eq!(create["status"], 201);
    assert!(create["caller"].as_str().unwrap().starts_with("token:"));
    assert!(create["duration_ms"].as_f64().is_some());
    assert!(access.len() >= 24, "{}", access.len());
    assert!(
        access
            .iter()
            .any(|a| a["route"] == "/api/v1/orgs/{organization_id}"
                && a["status"].as_u64() >= Some(400)),
        "the path's template, not the path: {access:?}"
    );
    assert!(
        access
            .iter()
            .any(|a| a["route"] == "/gateway/{provider}/{*path}" && a["status"] == 401)
    );
    assert!(
        access
            .iter()
            .all(|a| a["request_id"].as_str().is_some_and(|id| !id.is_empty())),
        "{access:?}"
    );
}
