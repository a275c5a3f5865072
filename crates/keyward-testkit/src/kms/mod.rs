//! Real key-management servers for the KMS suites, each started by the test that needs it on
//! free ports of 127.0.0.1 and stopped when dropped: an OpenBao dev server ([`Bao`]), moto as
//! AWS KMS, IAM and STS ([`Moto`]), and a SoftHSM2 token of its own for each PKCS#11 test, in a
//! process of its own ([`SoftHsm`]).
//!
//! Without the tool the suite is skipped, unless `KEYWARD_TEST_REQUIRE_KMS=1` (CI) makes the
//! missing tool a failure.

mod bao;
mod moto;
mod softhsm;

pub use bao::{Bao, ROOT_TOKEN, transit_policy};
pub use moto::{AccessKey, KmsKey, MOTO_ACCOUNT, MOTO_REGION, Moto};
pub use softhsm::SoftHsm;

use std::process::Child;
use std::time::{Duration, Instant};

/// An environment of these variables only, for code that takes its settings through an
/// `env` function (`keyward_kms::open`, the Vault KV reader).
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// An HTTP client for plain-HTTP test servers (with the process's TLS provider installed, which
/// reqwest needs even for `http://`).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Skips (returns `None`) or, when KMS suites are required, fails with `why`.
pub(crate) fn missing<T>(why: &str) -> Option<T> {
    assert!(
        std::env::var("KEYWARD_TEST_REQUIRE_KMS").as_deref() != Ok("1"),
        "KEYWARD_TEST_REQUIRE_KMS=1 but {why}"
    );
    eprintln!("skipping: {why}");
    None
}

/// A port of 127.0.0.1 free now, whose next port is free too (OpenBao's dev server takes
/// both).
pub(crate) fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = first.local_addr().expect("its address").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no pair of free ports on 127.0.0.1");
}

/// Waits until `url` answers (any status), at most 20 s.
pub(crate) async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    child: &mut Child,
    log: &std::path::Path,
) {
    let start = Instant::now();
    loop {
        if client.get(url).send().await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the server exited ({status}) before answering {url}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{url} did not answer within 20 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
