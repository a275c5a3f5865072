//! Moving a store: fills a SQLite store with N credentials (default 100 000; set
//! KEYWARD_BENCH_COPY_SIZE) and times what `keyward store copy` does with it, into a fresh
//! schema of the PostgreSQL at KEYWARD_BENCH_DATABASE_URL (default the machine's test
//! database): the snapshot of the source, the restore into the target (one transaction), and
//! the check (counts by a second snapshot, then every credential opened). Prints the figures.

use std::time::Instant;

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::keyring;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("KEYWARD_BENCH_COPY_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let base = std::env::var("KEYWARD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Location::in_data_dir(dir.path());
    let vault = Vault::open(&source, keyring(), VaultOptions::default())
        .await
        .expect("open");
    let orgs: Vec<OrgId> = (0..100)
        .map(|i| OrgId::new(&format!("org-{i}")).expect("org"))
        .collect();
    for org in &orgs {
        vault.create_org(org, None, "bench").await.expect("org");
    }
    let openai = Provider::get("openai").expect("provider");
    let mut i = 0;
    while i < n {
        let batch: Vec<NewCredential> = (i..(i + 10_000).min(n))
            .map(|j| {
                NewCredential::new(
                    orgs[j % orgs.len()].clone(),
                    openai,
                    CredentialName::new(&format!("key-{j}")).expect("name"),
                    Some(format!("sk-bench-{j:08}-0123456789abcdefghijkl").into()),
                )
            })
            .collect();
        i += batch.len();
        vault.add_credentials(batch, "bench").await.expect("fill");
    }

    let started = Instant::now();
    let mut snapshot = Vec::new();
    let header = vault.backup(&mut snapshot).await.expect("backup");
    let read = started.elapsed();
    vault.close().await;

    let schema = format!("kw_copy_bench_{}", std::process::id());
    let admin = sqlx::AnyPool::connect(&base).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("schema");
    let url = format!("{base}?options[search_path]={schema}");
    let target = Vault::open(
        &Location::Url(url.clone()),
        keyring(),
        VaultOptions::default(),
    )
    .await
    .expect("target");
    let started = Instant::now();
    target
        .restore(std::io::Cursor::new(&snapshot), false)
        .await
        .expect("restore");
    let write = started.elapsed();
    target.close().await;
    let started = Instant::now();
    let check = Vault::open(&Location::Url(url), keyring(), VaultOptions::default())
        .await
        .expect("check");
    let mut again = Vec::new();
    let copied = check.backup(&mut again).await.expect("count");
    assert_eq!(copied.tables, header.tables);
    assert!(check.verify_events().await.expect("verify").ok());
    let creds = check.list_credentials(None, None).await.expect("list");
    for c in &creds {
        check.open_credential(&c.id).await.expect("opens");
    }
    let verify = started.elapsed();
    check.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .expect("drop");
    let rows: u64 = header.tables.values().sum();
    println!(
        "store copy, SQLite -> PostgreSQL, {n} credentials ({rows} rows, {:.0} MB snapshot)",
        snapshot.len() as f64 / 1e6
    );
    println!("  snapshot of the source  {:>7.1} s", read.as_secs_f64());
    println!("  restore into the target {:>7.1} s", write.as_secs_f64());
    println!(
        "  check (counts, chain, every credential opened) {:>7.1} s",
        verify.as_secs_f64()
    );
    println!(
        "  in all                  {:>7.1} s",
        (read + write + verify).as_secs_f64()
    );
}
