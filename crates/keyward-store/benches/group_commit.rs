//! Audited resolutions at a fixed number in flight, in-process (no HTTP): what group commit
//! gives the store itself. Each line: throughput, latency, and how many commits served it.
//!
//! ```sh
//! cargo bench -p keyward-store --bench group_commit                      # SQLite, 1/16/64 in flight, 3 s each
//! KEYWARD_BENCH_POSTGRES=1 KEYWARD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p keyward-store --bench group_commit
//! ```

use std::time::{Duration, Instant};

use keyward_core::credential::{FormatCheck, NewCredential};
use keyward_core::resolve::ResolveRequest;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::{PgSchema, keyring};

fn main() {
    let seconds: u64 = std::env::var("KEYWARD_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // PostgreSQL in a schema of its own (dropped at the end), or SQLite in a temporary file.
        let schema = match std::env::var("KEYWARD_BENCH_POSTGRES") {
            Ok(_) => Some(PgSchema::create("kw_bench").await.expect("KEYWARD_TEST_DATABASE_URL")),
            Err(_) => None,
        };
        let location = match &schema {
            Some(schema) => Location::Url(schema.url()),
            None => Location::in_data_dir(dir.path()),
        };
        let vault = Vault::open(&location, keyring(), VaultOptions::default())
            .await
            .expect("open");
        let org = OrgId::new("acme").expect("org");
        vault.create_org(&org, None, "bench").await.expect("org");
        let openai = Provider::get("openai").expect("provider");
        vault
            .add_credential(
                NewCredential {
                    format_check: FormatCheck::Skip,
                    ..NewCredential::new(
                        org.clone(),
                        openai,
                        CredentialName::new("main").expect("name"),
                        Some("sk-bench-0123456789abcdefghijklmnop".into()),
                    )
                },
                "bench",
            )
            .await
            .expect("credential");
        let req = ResolveRequest::new(org, openai);
        for in_flight in [1usize, 16, 64] {
            let before = vault.stats();
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let tasks: Vec<_> = (0..in_flight)
                .map(|_| {
                    let vault = vault.clone();
                    let req = req.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while Instant::now() < deadline {
                            let start = Instant::now();
                            vault.resolve(&req, "bench").await.expect("resolve");
                            lat.push(start.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all.sort();
            let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
            let after = vault.stats();
            let batches = after.commit_batches - before.commit_batches;
            println!(
                "audited resolve, {in_flight:>2} in flight: {:>7.0}/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} per commit",
                all.len() as f64 / seconds as f64,
                pct(0.5),
                pct(0.99),
                all.len() as f64 / batches.max(1) as f64,
            );
        }
        vault.close().await;
        if let Some(schema) = schema {
            schema.drop_schema().await;
        }
    });
}
