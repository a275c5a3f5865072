//! Resolution over HTTP: `POST /api/v1/resolve` (audited) and `GET /healthz` (the floor) on a
//! real server on 127.0.0.1, driven by a load generator in this process at a fixed concurrency.
//! The server runs on its own runtime thread; the generator on another.
//!
//! ```sh
//! cargo bench -p keyward-server --bench http_resolve                   # 5 s per route, 16 in flight
//! KEYWARD_BENCH_SECONDS=10 KEYWARD_BENCH_CONCURRENCY=32 cargo bench -p keyward-server --bench http_resolve
//! KEYWARD_BENCH_POSTGRES=1 KEYWARD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p keyward-server --bench http_resolve
//! ```
//!
//! Each route's line ends with how many group commits served its audited operations.

use std::time::{Duration, Instant};

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_server::Role;
use keyward_testkit::{TestServer, TestVault};
use secrecy::ExposeSecret as _;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = env_or("KEYWARD_BENCH_SECONDS", 5);
    let concurrency = env_or("KEYWARD_BENCH_CONCURRENCY", 16) as usize;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let (server, token, acme) = server_rt.block_on(async {
        // PostgreSQL in a schema of its own, or SQLite in a temporary file.
        let vault = match std::env::var("KEYWARD_BENCH_POSTGRES") {
            Ok(_) => TestVault::postgres("kw_bench")
                .await
                .expect("KEYWARD_TEST_DATABASE_URL"),
            Err(_) => TestVault::open().await,
        };
        let server = TestServer::start_on(vault, |s| s).await;
        let vault = &server.vault;
        let acme = OrgId::new("acme").expect("org");
        vault.create_org(&acme, None, "bench").await.expect("org");
        vault
            .add_credential(
                NewCredential::new(
                    acme.clone(),
                    Provider::get("openai").expect("provider"),
                    CredentialName::new("p").expect("name"),
                    Some("sk-bench-0123456789abcdefWXYZ".into()),
                ),
                "bench",
            )
            .await
            .expect("credential");
        let (token, _) = vault
            .create_token("bench", Role::Resolver, Some(&acme), None, "bench")
            .await
            .expect("token");
        (server, token.expose_secret().to_owned(), acme)
    });
    let (addr, vault) = (server.addr, server.vault.clone());

    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("load runtime");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    for (label, post) in [
        ("GET /healthz", false),
        ("POST /api/v1/resolve (audited)", true),
    ] {
        let before = vault.stats();
        let latencies = load_rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let client = client.clone();
                let token = token.clone();
                let acme = acme.to_string();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let start = Instant::now();
                        let req = if post {
                            client
                                .post(format!("http://{addr}/api/v1/resolve"))
                                .bearer_auth(&token)
                                .json(&serde_json::json!({"organization_id": acme, "provider": "openai"}))
                        } else {
                            client.get(format!("http://{addr}/healthz"))
                        };
                        let resp = req.send().await.expect("request");
                        assert!(resp.status().is_success(), "{}", resp.status());
                        let _ = resp.bytes().await.expect("body");
                        lat.push(start.elapsed());
                    }
                    lat
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all
        });
        let mut sorted = latencies;
        sorted.sort();
        let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
        let after = vault.stats();
        let batches = after.commit_batches - before.commit_batches;
        let operations = after.committed_operations - before.committed_operations;
        println!(
            "{label:>32}: {:>8.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} requests, {concurrency} in flight, {seconds} s; {batches} commits for {operations} operations)",
            sorted.len() as f64 / seconds as f64,
            pct(0.5),
            pct(0.99),
            sorted.len(),
        );
    }
    // Stopped, its vault closed and its schema (on PostgreSQL) dropped.
    server_rt.block_on(server.stop());
}
