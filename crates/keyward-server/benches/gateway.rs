//! The gateway against calling the provider directly, same load, same run: a mock provider on
//! 127.0.0.1, the gateway in front of it, and a load generator, each on runtime threads of
//! their own in this process. Prints requests/s and p50/p99 for both, and the added latency,
//! for each load: one request in flight (what the gateway adds to a request) and 16 in flight
//! (the machine saturated: throughput, and latency that is mostly queueing).
//!
//! ```sh
//! cargo bench -p keyward-server --bench gateway            # 5 s per side, 1 then 16 in flight
//! KEYWARD_BENCH_SECONDS=10 KEYWARD_BENCH_CONCURRENCY=4,32 cargo bench -p keyward-server --bench gateway
//! ```

use std::time::{Duration, Instant};

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_crypto::{KeyId, Keyring, MasterKey};
use keyward_server::AppState;
use keyward_store::{Location, Vault, VaultOptions};
use secrecy::ExposeSecret as _;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A one-thread runtime whose thread is named, so that a profiler can tell the three apart.
fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

const BODY: &str = r#"{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"hello"}}]}"#;

fn main() {
    let seconds = env_or("KEYWARD_BENCH_SECONDS", 5);
    let loads: Vec<usize> = std::env::var("KEYWARD_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The mock provider.
    let upstream_rt = runtime("bench-upstream");
    let upstream = upstream_rt.block_on(async {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(|| async { ([("content-type", "application/json")], BODY) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("mock") });
        addr
    });

    // The gateway, with one organization, its key and a gateway token.
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway_rt = runtime("bench-gateway");
    let (gateway, token) = gateway_rt.block_on(async {
        let keyring = Keyring::new(
            vec![MasterKey::from_bytes(
                KeyId::new("k1").expect("kid"),
                &[6; 32],
            )],
            "bench",
        )
        .expect("keyring");
        let vault = Vault::open(
            &Location::in_data_dir(dir.path()),
            keyring,
            VaultOptions::default(),
        )
        .await
        .expect("vault");
        let acme = OrgId::new("acme").expect("org");
        vault.create_org(&acme, None, "bench").await.expect("org");
        let mut c = NewCredential::new(
            acme.clone(),
            Provider::get("openai").expect("provider"),
            CredentialName::new("main").expect("name"),
            Some("sk-bench-upstream-0123456789abcdef".into()),
        );
        c.fields
            .insert("base_url".into(), format!("http://{upstream}/v1"));
        vault.add_credential(c, "bench").await.expect("credential");
        let (token, _) = vault
            .create_gateway_token(&acme, "bench", &[], None, None, "bench")
            .await
            .expect("token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(keyward_server::serve(
            listener,
            AppState::new(vault),
            std::future::pending(),
        ));
        (addr, token.expose_secret().to_owned())
    });

    let load_rt = runtime("bench-load");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(loads.iter().max().copied().unwrap_or(1) * 2)
        .build()
        .expect("client");
    let run = |url: String, bearer: String, concurrency: usize| {
        load_rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let start = Instant::now();
                        let resp = client
                            .post(&url)
                            .bearer_auth(&bearer)
                            .header("content-type", "application/json")
                            .body(r#"{"model":"m","messages":[]}"#)
                            .send()
                            .await
                            .expect("request");
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
            all.sort();
            all
        })
    };
    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let gateway_url = format!("http://{gateway}/gateway/openai/v1/chat/completions");
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let rate = |v: &[Duration]| v.len() as f64 / seconds as f64;
    for concurrency in loads {
        // Warm both paths (connections, caches), then measure direct and gateway in turn.
        let _ = run(direct_url.clone(), "sk-bench".into(), concurrency);
        let _ = run(gateway_url.clone(), token.clone(), concurrency);
        let direct = run(direct_url.clone(), "sk-bench".into(), concurrency);
        let through = run(gateway_url.clone(), token.clone(), concurrency);
        println!("{concurrency} in flight:");
        for (label, v) in [("direct", &direct), ("through the gateway", &through)] {
            println!(
                "{label:>20}: {:>8.0} req/s, p50 {:>7.1} us, p99 {:>7.1} us ({} requests, {seconds} s)",
                rate(v),
                pct(v, 0.5),
                pct(v, 0.99),
                v.len()
            );
        }
        println!(
            "       added latency: p50 {:.1} us, p99 {:.1} us; gateway throughput {:.0}% of direct",
            pct(&through, 0.5) - pct(&direct, 0.5),
            pct(&through, 0.99) - pct(&direct, 0.99),
            100.0 * rate(&through) / rate(&direct)
        );
    }
}
