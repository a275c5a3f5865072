//! Costs that grow: the audit log as it lengthens (a filtered listing, `events verify`'s time
//! and memory), and gateway-token lookups as tokens and organizations multiply. SQLite in a
//! temporary directory; each figure at several sizes in one run.
//!
//! ```sh
//! cargo bench -p keyward-store --bench growth                       # up to 10 M events, 100 000 tokens
//! KEYWARD_BENCH_EVENTS=1000000 cargo bench -p keyward-store --bench growth
//! ```

use std::time::{Duration, Instant};

use keyward_core::OrgId;
use keyward_core::audit::{Category, EventFilter, NewEvent};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::keyring;
use secrecy::ExposeSecret as _;

/// This process's resident memory and its peak since the last reset, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak (`VmHWM`) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A SQLite vault in `dir`.
async fn open(dir: &std::path::Path) -> Vault {
    Vault::open(
        &Location::in_data_dir(dir),
        keyring(),
        VaultOptions::default(),
    )
    .await
    .expect("open")
}

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let max_events: u64 = std::env::var("KEYWARD_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let vault = open(dir.path()).await;

        // Gateway tokens: 1 000 organizations, 100 tokens each, looked up by hash.
        println!("gateway tokens (lookup by hash in the store; the gateway caches what checks out)");
        let mut tokens = Vec::new();
        let mut filled = 0usize;
        for target in [1_000usize, 10_000, 100_000] {
            let started = Instant::now();
            while filled < target {
                let org = OrgId::new(&format!("org-{:04}", filled / 100)).expect("org");
                if filled.is_multiple_of(100) {
                    vault.create_org(&org, None, "bench").await.expect("org");
                }
                // Twenty at a time (a fifth of an organization), so they share commits.
                let made = futures_join(&vault, &org, filled, 20).await;
                filled += made.len();
                tokens.extend(made);
            }
            let fill = started.elapsed();
            let mut lat = Vec::new();
            for i in 0..2_000 {
                let t = &tokens[(i * 7919) % tokens.len()];
                let start = Instant::now();
                let found = vault.authenticate_gateway(t).await.expect("lookup");
                lat.push(start.elapsed());
                assert!(found.is_some());
            }
            let mut missing = Vec::new();
            for i in 0..2_000 {
                let start = Instant::now();
                let found = vault
                    .authenticate_gateway(&format!("kwg_not-a-token-{i}"))
                    .await
                    .expect("lookup");
                missing.push(start.elapsed());
                assert!(found.is_none());
            }
            println!(
                "  {target:>7} tokens in {:>5} organizations: lookup p50 {:.1} us (unknown token {:.1} us); filled in {:.1} s",
                target / 100,
                p50(lat),
                p50(missing),
                fill.as_secs_f64()
            );
        }
        // What a cached token costs: the views of 100 000 tokens held as the gateway holds them.
        reset_peak();
        let (before, _) = rss();
        let mut held = std::collections::HashMap::new();
        for t in &tokens {
            let view = vault.authenticate_gateway(t).await.expect("lookup").expect("found");
            held.insert(t.clone(), (std::sync::Arc::new(view), Instant::now()));
        }
        let (after, _) = rss();
        println!(
            "  memory per cached token: {:.0} bytes ({} tokens, RSS +{} KiB)",
            (after.saturating_sub(before) * 1024) as f64 / held.len() as f64,
            held.len(),
            after.saturating_sub(before)
        );
        drop(held);

        // The audit log, grown in steps: events of 100 organizations, 20 actors and 200
        // credentials (a log concentrates on a few); one actor in a million is rare, for a
        // filter that has to look far back.
        vault.close().await;

        println!("audit log (a store of its own)");
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = open(dir.path()).await;
        let mut have = vault.audit_event_count().await.expect("count") as u64;
        let mut step = 10_000u64;
        while step <= max_events {
            let started = Instant::now();
            while have < step {
                let n = 2_000.min(step - have);
                let events = (have..have + n)
                    .map(|i| {
                        let actor = if i % 1_000_000 == 7 {
                            "token:rare".to_owned()
                        } else {
                            format!("token:t{}", i % 20)
                        };
                        NewEvent::new(
                            &actor,
                            Category::SecretAccess,
                            "resolve",
                            format!("credential:c{}", i % 200),
                        )
                        .org(Some(&format!("org-{:04}", i % 100)))
                        .details(serde_json::json!({"provider": "openai", "source": "vault"}))
                    })
                    .collect();
                vault.record_many(events).await.expect("record");
                have += n;
            }
            let fill = started.elapsed();
            let time = |f: EventFilter| {
                let vault = vault.clone();
                async move {
                    let start = Instant::now();
                    let found = vault.list_events(&f, 50).await.expect("list");
                    (start.elapsed().as_secs_f64() * 1e3, found.len())
                }
            };
            let (by_org, n_org) = time(EventFilter {
                org: Some("org-0042".into()),
                ..EventFilter::default()
            })
            .await;
            let (by_action, _) = time(EventFilter {
                action: Some("resolve".into()),
                ..EventFilter::default()
            })
            .await;
            let (by_rare_actor, n_rare) = time(EventFilter {
                actor: Some("token:rare".into()),
                ..EventFilter::default()
            })
            .await;
            let (by_target, n_target) = time(EventFilter {
                target: Some("credential:c42".into()),
                ..EventFilter::default()
            })
            .await;
            // A viewer's cheapest expensive request: its organization and an actor nobody is.
            let (by_viewer_nobody, _) = time(EventFilter {
                org: Some("org-0042".into()),
                actor: Some("token:nobody".into()),
                ..EventFilter::default()
            })
            .await;
            // The console's verification: one press, onward from the last checkpoint.
            let start = Instant::now();
            let press = vault.verify_new_events(200_000).await.expect("verify new");
            let press_ms = start.elapsed().as_secs_f64() * 1e3;
            assert!(press.ok(), "{press:?}");
            reset_peak();
            let (base, _) = rss();
            let start = Instant::now();
            let report = vault.verify_events().await.expect("verify");
            let verify = start.elapsed();
            let (_, peak) = rss();
            assert!(report.ok(), "{report:?}");
            println!(
                "  {have:>9} events: list org=… {by_org:.2} ms ({n_org}), action=resolve {by_action:.2} ms, actor=rare {by_rare_actor:.2} ms ({n_rare}, one budgeted page), target=credential:… {by_target:.2} ms ({n_target}), org=…,actor=nobody {by_viewer_nobody:.2} ms; \
                 console verify press {press_ms:.0} ms ({} events from #{}); full verify {:.2} s ({:.2} us/event), peak memory +{} KiB; filled in {:.1} s",
                press.checked,
                press.from_seq,
                verify.as_secs_f64(),
                verify.as_secs_f64() * 1e6 / have as f64,
                peak.saturating_sub(base),
                fill.as_secs_f64(),
            );
            step *= 10;
        }
        vault.close().await;
    });
}

/// Makes `n` gateway tokens for `org` at once; returns them.
async fn futures_join(vault: &Vault, org: &OrgId, from: usize, n: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (vault, org) = (vault.clone(), org.clone());
            tokio::spawn(async move {
                let (token, _) = vault
                    .create_gateway_token(&org, &format!("t{}", from + i), &[], None, None, "bench")
                    .await
                    .expect("token");
                token.expose_secret().to_owned()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}
