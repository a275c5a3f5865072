//! `kill -9` under load: many resolvers hammer `POST /api/v1/resolve` (audited, group
//! commit) and the server is killed without warning in the middle. Every resolution a client
//! got an answer for must be in the audit log afterwards, and the chain must verify.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::sandbox::Sandbox;

const TOKENS: usize = 8;
const CLIENTS_PER_TOKEN: usize = 4;

async fn killed_under_load_loses_no_answered_resolution(mut s: Sandbox) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
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
        ],
        "sk-proj-CRASHCANARY0123456789abcdefWXYZ",
        &[],
    );
    let mut tokens = Vec::new();
    for i in 0..TOKENS {
        let made = s.json(&[
            "token",
            "create",
            "--role",
            "resolver",
            "--org",
            "acme",
            "--name",
            &format!("r{i}"),
            "--json",
        ]);
        tokens.push((
            made["token"].as_str().unwrap().to_owned(),
            made["id"].as_str().unwrap().to_owned(),
        ));
    }
    let mut server = s
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(addr) = line.strip_prefix("keyward listening on http://") {
            break addr.to_owned();
        }
    };

    // The load: each client counts the answers it got in full.
    let answered: Arc<Vec<AtomicU64>> = Arc::new((0..TOKENS).map(|_| AtomicU64::new(0)).collect());
    let killed = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (t, (token, _)) in tokens.iter().enumerate() {
        for _ in 0..CLIENTS_PER_TOKEN {
            let (token, addr) = (token.clone(), addr.clone());
            let (answered, killed) = (answered.clone(), killed.clone());
            clients.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                // Bounded: at most this many requests per client, and it ends at the kill.
                for _ in 0..20_000 {
                    let sent = client
                        .post(format!("http://{addr}/api/v1/resolve"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"organization_id": "acme", "provider": "openai"}))
                        .send()
                        .await;
                    let Ok(resp) = sent else { break };
                    let status = resp.status();
                    let Ok(body) = resp.bytes().await else { break };
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(body["api_key"], "sk-proj-CRASHCANARY0123456789abcdefWXYZ");
                    answered[t].fetch_add(1, Ordering::SeqCst);
                }
                // Whether this client was still going when the server died.
                killed.load(Ordering::SeqCst)
            }));
        }
    }
    // Kill it once the load is well under way.
    let total = || {
        answered
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .sum::<u64>()
    };
    for _ in 0..2_000 {
        if total() >= 1_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill().unwrap();
    server.wait().unwrap();
    let mut cut_off = 0;
    for c in clients {
        if c.await.unwrap() {
            cut_off += 1;
        }
    }
    assert!(total() >= 1_000, "the load never got going: {}", total());
    assert!(cut_off > 0, "no client was cut off by the kill");

    // Every answered resolution is in the log, per token.
    let events = s.json(&[
        "events",
        "list",
        "--filter",
        "action=resolve",
        "--limit",
        "1000000",
        "--json",
    ]);
    let mut logged: HashMap<String, u64> = HashMap::new();
    for e in events.as_array().unwrap() {
        assert_eq!(e["outcome"], "success", "{e}");
        *logged
            .entry(e["actor"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (t, (_, id)) in tokens.iter().enumerate() {
        let got = answered[t].load(Ordering::SeqCst);
        let have = logged.get(&format!("token:{id}")).copied().unwrap_or(0);
        assert!(have >= got, "token {t}: {got} answered, {have} in the log");
    }
    let verified = s.ok(&["events", "verify"]);
    assert!(verified.contains("intact"), "{verified}");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_under_load_loses_no_answered_resolution() {
    killed_under_load_loses_no_answered_resolution(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_under_load_loses_no_answered_resolution() {
    if let Some(s) = Sandbox::postgres().await {
        killed_under_load_loses_no_answered_resolution(s).await;
    }
}
