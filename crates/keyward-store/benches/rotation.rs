//! Master-key rotation at scale: fills SQLite stores with N credentials (default 100 000 and
//! 1 000 000; set KEYWARD_BENCH_ROTATION_SIZES=10000,100000 to change) and times a full
//! `rotate_master_key`, printing the figures. DESIGN §7: 1 M rewrapped in under 60 s.

use std::time::Instant;

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::keyring_of;

async fn run(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = Location::in_data_dir(dir.path());
    let vault = Vault::open(&location, keyring_of(&[("k1", 1)]), VaultOptions::default())
        .await
        .expect("open");
    let orgs: Vec<OrgId> = (0..100)
        .map(|i| OrgId::new(&format!("org-{i}")).expect("valid org"))
        .collect();
    for org in &orgs {
        vault.create_org(org, None, "bench").await.expect("org");
    }
    let openai = Provider::get("openai").expect("known provider");
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewCredential> = (i..(i + 10_000).min(n))
            .map(|j| {
                NewCredential::new(
                    orgs[j % orgs.len()].clone(),
                    openai,
                    CredentialName::new(&format!("key-{j}")).expect("valid name"),
                    Some(format!("sk-bench-{j:08}-0123456789abcdefghijkl").into()),
                )
            })
            .collect();
        i += batch.len();
        vault.add_credentials(batch, "bench").await.expect("fill");
    }
    let fill = started.elapsed();
    vault.close().await;

    let vault = Vault::open(
        &location,
        keyring_of(&[("k2", 2), ("k1", 1)]),
        VaultOptions::default(),
    )
    .await
    .expect("open");
    let started = Instant::now();
    let report = vault
        .rotate_master_key(1000, "bench", |_| {})
        .await
        .expect("rotate");
    let rotate = started.elapsed();
    assert_eq!(
        report.rewrapped as usize,
        n + 1,
        "every credential and the chain key"
    );
    assert_eq!(
        vault.key_status().await.expect("status").pending_rotation(),
        0
    );
    let db_size: u64 = std::fs::read_dir(dir.path())
        .expect("data dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "rotation n={n}: fill {:.1} s ({:.0} creds/s, audited), rotate {:.2} s ({:.0} rows/s), store {:.0} MiB",
        fill.as_secs_f64(),
        n as f64 / fill.as_secs_f64(),
        rotate.as_secs_f64(),
        report.rewrapped as f64 / rotate.as_secs_f64(),
        db_size as f64 / (1024.0 * 1024.0),
    );
    vault.close().await;
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KEYWARD_BENCH_ROTATION_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes are numbers"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in sizes {
        rt.block_on(run(n));
    }
}
