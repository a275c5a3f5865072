//! What a KMS costs at start, against an OpenBao dev server on 127.0.0.1 (Transit): one unwrap
//! call, the keyring read from the store and unwrapped (1 and 4 keys), and opening the vault
//! with it next to opening it with a key given in the environment. Requests never call the KMS,
//! so nothing else changes. Prints its figures; skips without `bao`.

use std::time::{Duration, Instant};

use keyward_crypto::{KeyId, KeyMaterial, Keyring};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::kms::{Bao, transit_policy};

const RUNS: usize = 30;

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:>7.2} ms   p90 {:>7.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3
    )
}

fn options() -> VaultOptions {
    VaultOptions {
        max_connections: Some(1),
        ..VaultOptions::default()
    }
}

#[tokio::main]
async fn main() {
    let Some(bao) = Bao::start().await else {
        eprintln!("no bao: nothing measured");
        return;
    };
    bao.transit_key("keyward-kek").await;
    let token = bao
        .token_with_policy("keyward", &transit_policy("keyward-kek"))
        .await;
    let addr = bao.addr.clone();
    let env = move |name: &str| match name {
        "VAULT_ADDR" => Some(addr.clone()),
        "VAULT_TOKEN" => Some(token.clone()),
        _ => None,
    };
    let kms = keyward_kms::open("transit:keyward-kek", &env).expect("a KMS");

    // One unwrap, over a kept-alive connection.
    let key = KeyMaterial::generate(KeyId::new("k1").expect("an id")).expect("a key");
    let wrapped = kms.wrap(&key).await.expect("wrap");
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        kms.unwrap(key.kid(), &wrapped.blob).await.expect("unwrap");
        times.push(t.elapsed());
    }
    println!(
        "one Transit unwrap (200 calls)              {}",
        summary(times)
    );

    for keys in [1usize, 4] {
        let dir = tempfile::tempdir().expect("a directory");
        let location = Location::in_data_dir(dir.path());
        // The first start makes the first key; the others are made as `master-key new` does.
        let keyring = keyward::kms::keyring(kms.as_ref(), &location)
            .await
            .expect("a keyring");
        let vault = Vault::open(&location, keyring, options())
            .await
            .expect("open");
        for i in 1..keys {
            keyward::kms::new_primary(&vault, kms.as_ref(), Some(&format!("k{i}")), "bench")
                .await
                .expect("a new key");
        }
        vault.close().await;
        let mut unwrap = Vec::new();
        let mut open = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let keyring = keyward::kms::keyring(kms.as_ref(), &location)
                .await
                .expect("a keyring");
            unwrap.push(t.elapsed());
            let vault = Vault::open(&location, keyring, options())
                .await
                .expect("open");
            open.push(t.elapsed());
            vault.close().await;
        }
        println!(
            "keyring from the KMS, {keys} key(s) ({RUNS} runs)    {}",
            summary(unwrap)
        );
        println!(
            "  and the vault opened with it                {}",
            summary(open)
        );
    }

    // The same open with a key given in the environment.
    let dir = tempfile::tempdir().expect("a directory");
    let location = Location::in_data_dir(dir.path());
    // The same key every time: keep its bytes.
    let material = KeyMaterial::generate(KeyId::new("k1").expect("an id")).expect("a key");
    Vault::open(
        &location,
        Keyring::new(vec![material.master_key()], "bench").expect("a keyring"),
        options(),
    )
    .await
    .expect("open")
    .close()
    .await;
    let mut open = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let keyring = Keyring::new(vec![material.master_key()], "bench").expect("a keyring");
        let vault = Vault::open(&location, keyring, options())
            .await
            .expect("open");
        open.push(t.elapsed());
        vault.close().await;
    }
    println!(
        "the vault opened with a given key ({RUNS} runs)  {}",
        summary(open)
    );
}
