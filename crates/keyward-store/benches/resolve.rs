//! Resolution on SQLite: from the in-process cache, from the database (read, unwrap, open), and
//! the audited path the CLI uses. DESIGN §7: cached p50 under 1 µs; uncached p50 under 50 µs.
//!
//! And one organization with 10 000 OpenAI keys: the first page of its listing (paged in SQL)
//! beside the whole listing cut afterwards, and a resolution from the database that opens the
//! one key it hands out beside one that opens them all (`resolve_candidates`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_core::credential::{FormatCheck, NewCredential};
use keyward_core::resolve::ResolveRequest;
use keyward_core::{CredentialName, OrgId, PROVIDERS, Provider};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::keyring;

/// A store with 50 organizations, each with a key for every provider that needs no field.
async fn fill(location: &Location) {
    let vault = Vault::open(location, keyring(), VaultOptions::default())
        .await
        .expect("open");
    let mut batch = Vec::new();
    for o in 0..50 {
        let org = OrgId::new(&format!("org-{o}")).expect("valid org");
        vault.create_org(&org, None, "bench").await.expect("org");
        for p in PROVIDERS
            .iter()
            .filter(|p| p.public_fields.iter().all(|f| !f.required))
        {
            batch.push(NewCredential {
                format_check: FormatCheck::Skip,
                ..NewCredential::new(
                    org.clone(),
                    p,
                    CredentialName::new("main").expect("valid name"),
                    Some(format!("key-{o}-{}-0123456789abcdefghijklmnop", p.id).into()),
                )
            });
        }
    }
    vault.add_credentials(batch, "bench").await.expect("fill");
    let big = OrgId::new("big").expect("valid org");
    vault.create_org(&big, None, "bench").await.expect("org");
    let openai = Provider::get("openai").expect("known provider");
    let batch = (0..10_000)
        .map(|i| {
            let mut c = NewCredential::new(
                big.clone(),
                openai,
                CredentialName::new(&format!("key-{i:05}")).expect("valid name"),
                Some(format!("sk-big-{i:05}-0123456789abcdefghijklmnop").into()),
            );
            c.priority = i;
            c
        })
        .collect();
    vault
        .add_credentials(batch, "bench")
        .await
        .expect("fill big");
    vault.close().await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let location = Location::in_data_dir(dir.path());
    rt.block_on(fill(&location));
    let open = |cache_capacity| {
        rt.block_on(Vault::open(
            &location,
            keyring(),
            VaultOptions {
                cache_capacity,
                ..VaultOptions::default()
            },
        ))
        .expect("open")
    };
    let cached = open(10_000);
    let uncached = open(0);
    let req = ResolveRequest::new(
        OrgId::new("org-17").expect("valid org"),
        Provider::get("openai").expect("known provider"),
    );
    rt.block_on(cached.resolve_unaudited(&req)).expect("warm");

    c.bench_function("resolve_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached.resolve_unaudited(black_box(&req)).await) })
    });
    c.bench_function("resolve_uncached_sqlite", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(uncached.resolve_unaudited(black_box(&req)).await) })
    });
    c.bench_function("resolve_audited_sqlite", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached.resolve(black_box(&req), "bench").await) })
    });

    let big = OrgId::new("big").expect("valid org");
    let openai = Provider::get("openai").expect("known provider");
    let mut group = c.benchmark_group("org_with_10000_keys");
    group.sample_size(20);
    group.bench_function("list_first_page_in_sql", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                uncached
                    .list_credentials_page(Some(&big), None, 1, 0)
                    .await
                    .expect("page"),
            )
        })
    });
    group.bench_function("list_all_then_cut", |b| {
        b.to_async(&rt).iter(|| async {
            let all = uncached
                .list_credentials(Some(&big), None)
                .await
                .expect("list");
            black_box(all.into_iter().take(1).count())
        })
    });
    let big_req = ResolveRequest::new(big.clone(), openai);
    group.bench_function("resolve_uncached_opening_one", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(uncached.resolve_unaudited(&big_req).await.expect("resolve"))
        })
    });
    group.bench_function("resolve_uncached_opening_all", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                uncached
                    .resolve_candidates(&big_req)
                    .await
                    .expect("resolve"),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
