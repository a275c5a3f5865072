//! PostgreSQL going away under gateway and admin load: a cluster of the test's own (`initdb`
//! on a free port), stopped for 5 s and then for 15 s while clients keep calling.
//!
//! What must hold: the gateway keeps serving tokens and keys it checked before (for
//! `stale_for`), a token it never saw gets a fast 503 with Retry-After, admin calls are 503s
//! with Retry-After within about 2 s (never 500), `/readyz` answers within a second without the
//! driver's words, usage counted meanwhile is written once the store is back, and no
//! acknowledged write is lost. The figures are printed (`--nocapture`).

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::OrgId;
use keyward_core::credential::NewCredential;
use keyward_server::{AppState, GatewayOptions, Role};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::{MockProvider, PgCluster, keyring, spawn_server};
use secrecy::ExposeSecret as _;
use serde_json::json;
use tokio::sync::Mutex;

const KEY: &str = "sk-proj-OUTAGEKEY-0123456789abcdef";
const STALE_FOR: Duration = Duration::from_secs(10);

/// One answer a client got: what it called, when (since the outage began), how long it took,
/// the status, and whether it carried Retry-After.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    at: Duration,
    took: Duration,
    status: u16,
    retry_after: bool,
    body: String,
}

struct Setup {
    base: String,
    vault: Vault,
    /// Another replica on the same database: its writes reach the server as notifications.
    replica: Vault,
    admin: String,
    /// Used before every outage: checked, cached.
    warm: String,
    /// The provider behind the gateway (stopped when dropped).
    _upstream: MockProvider,
}

/// A replica's vault on the cluster, listening for the others' changes.
async fn replica(cluster: &PgCluster) -> Vault {
    Vault::open(
        &Location::Url(cluster.url()),
        keyring(),
        VaultOptions {
            listen_for_changes: true,
            ..VaultOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn setup(cluster: &PgCluster) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vault = replica(cluster).await;
    let upstream = MockProvider::start().await;
    let org = OrgId::new("acme").unwrap();
    vault.create_org(&org, None, "test").await.unwrap();
    vault
        .create_org(&OrgId::new("globex").unwrap(), None, "test")
        .await
        .unwrap();
    let replica = replica(cluster).await;
    let mut c = NewCredential::new(
        org.clone(),
        keyward_core::Provider::get("openai").unwrap(),
        keyward_core::CredentialName::new("main").unwrap(),
        Some(KEY.into()),
    );
    c.fields
        .insert("base_url".into(), format!("{}/v1", upstream.url()));
    vault.add_credential(c, "test").await.unwrap();
    let (warm, _) = vault
        .create_gateway_token(&org, "warm", &[], None, None, "test")
        .await
        .unwrap();
    let (admin, _) = vault
        .create_token("admin", Role::Admin, None, None, "test")
        .await
        .unwrap();
    let state = AppState::new(vault.clone()).with_gateway(GatewayOptions {
        stale_for: STALE_FOR,
        usage_flush_interval: Duration::from_millis(200),
        ..GatewayOptions::default()
    });
    let addr = spawn_server(state).await;
    Setup {
        base: format!("http://{addr}"),
        vault,
        replica,
        admin: admin.expose_secret().to_owned(),
        warm: warm.expose_secret().to_owned(),
        _upstream: upstream,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn chat(s: &Setup, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/gateway/openai/v1/chat/completions", s.base))
        .bearer_auth(token)
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap()
}

async fn record(
    what: &'static str,
    began: Instant,
    answers: &Mutex<Vec<Answer>>,
    request: reqwest::RequestBuilder,
) -> Answer {
    let at = began.elapsed();
    let start = Instant::now();
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let body = resp.text().await.unwrap();
    let a = Answer {
        what,
        at,
        took: start.elapsed(),
        status,
        retry_after,
        body,
    };
    answers.lock().await.push(a.clone());
    a
}

/// Stops the cluster for `down`, with three clients calling all along (the gateway with the
/// warm token, the gateway with the cold one and the readiness probe, and admin writes);
/// returns every answer and the names of the credentials whose creation was acknowledged.
async fn outage(
    s: &Setup,
    cluster: &PgCluster,
    down: Duration,
    cold: &str,
) -> (Vec<Answer>, Vec<String>) {
    // Warm: the token and the key are checked and cached just before. A token checked as well,
    // then revoked: it must never be served again, stale or not.
    assert_eq!(chat(s, &s.warm).await.status(), 200);
    let acme = OrgId::new("acme").unwrap();
    let (revoked, revoked_view) = s
        .vault
        .create_gateway_token(
            &acme,
            &format!("revoked-{}", down.as_secs()),
            &[],
            None,
            None,
            "test",
        )
        .await
        .unwrap();
    let revoked = revoked.expose_secret().to_owned();
    assert_eq!(chat(s, &revoked).await.status(), 200);
    let gone = client()
        .delete(format!(
            "{}/api/v1/gateway-tokens/{}",
            s.base, revoked_view.id
        ))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    assert_eq!(chat(s, &s.warm).await.status(), 200);
    // Then writes acknowledged the moment before the store goes, none of which withdraws
    // what the warm token uses: a key added to its own organization, a variable and a key of
    // another organization, and a key added by another replica (a notification).
    let before = format!("before-{}", down.as_secs());
    let created = client()
        .post(format!("{}/api/v1/credentials", s.base))
        .bearer_auth(&s.admin)
        .json(&json!({"organization_id": "acme", "provider": "openai", "name": before, "api_key": "sk-proj-written-before-0123456789"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let globex = OrgId::new("globex").unwrap();
    s.vault
        .set_var(
            &keyward_core::VarName::new(&format!("LOG_LEVEL_{}", down.as_secs())).unwrap(),
            Some(&globex),
            &"debug".to_owned().into(),
            false,
            None,
            "test",
        )
        .await
        .unwrap();
    let seen = s.vault.generation();
    s.replica
        .add_credential(
            NewCredential::new(
                globex.clone(),
                keyward_core::Provider::get("openai").unwrap(),
                keyward_core::CredentialName::new(&format!("replica-{}", down.as_secs())).unwrap(),
                Some("sk-proj-written-by-replica-0123456789".into()),
            ),
            "test",
        )
        .await
        .unwrap();
    // The server has heard the replica's notification before the store goes.
    let heard = Instant::now();
    while s.vault.generation() == seen && heard.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_ne!(
        s.vault.generation(),
        seen,
        "the replica's write was not heard"
    );
    let began = Instant::now();
    cluster.pg_stop();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let acknowledged = Arc::new(Mutex::new(vec![before]));
    let until = began + down;
    let mut tasks = Vec::new();
    {
        let (answers, base, warm, cold, revoked) = (
            answers.clone(),
            s.base.clone(),
            s.warm.clone(),
            cold.to_owned(),
            revoked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = client();
            while Instant::now() < until {
                for (what, token) in [
                    ("gateway_warm", &warm),
                    ("gateway_cold", &cold),
                    ("gateway_revoked", &revoked),
                ] {
                    let req = c
                        .post(format!("{base}/gateway/openai/v1/chat/completions"))
                        .bearer_auth(token)
                        .json(&json!({"model": "m", "messages": []}));
                    record(what, began, &answers, req).await;
                }
                record("readyz", began, &answers, c.get(format!("{base}/readyz"))).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    {
        let (answers, acknowledged, base, admin) = (
            answers.clone(),
            acknowledged.clone(),
            s.base.clone(),
            s.admin.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let name = format!("during-{}-{n}", down.as_secs());
                let req = c
                    .post(format!("{base}/api/v1/credentials"))
                    .bearer_auth(&admin)
                    .json(&json!({"organization_id": "acme", "provider": "openai", "name": name, "api_key": "sk-proj-written-during-0123456789"}));
                let a = record("admin_write", began, &answers, req).await;
                if (200..300).contains(&a.status) {
                    acknowledged.lock().await.push(name);
                }
                let req = c
                    .get(format!("{base}/api/v1/credentials?organization_id=acme"))
                    .bearer_auth(&admin);
                record("admin_read", began, &answers, req).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    cluster.pg_start();
    let answers = answers.lock().await.clone();
    let acknowledged = acknowledged.lock().await.clone();
    (answers, acknowledged)
}

/// Polls `check` every 100 ms for at most 20 s.
async fn within_20s<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 20 s of the restart");
}

fn summary(answers: &[Answer], what: &str) -> String {
    let of: Vec<&Answer> = answers.iter().filter(|a| a.what == what).collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for a in &of {
        *statuses.entry(a.status).or_default() += 1;
    }
    let max = of.iter().map(|a| a.took).max().unwrap_or_default();
    let mut took: Vec<Duration> = of.iter().map(|a| a.took).collect();
    took.sort();
    let p50 = took.get(took.len() / 2).copied().unwrap_or_default();
    format!(
        "{what}: {} requests, statuses {statuses:?}, p50 {p50:.1?}, max {max:.1?}",
        of.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_costs_seconds_and_loses_nothing_acknowledged() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let s = setup(&cluster).await;
    let acme = OrgId::new("acme").unwrap();
    let usage_before = s.vault.usage(&acme).await.unwrap();
    let counted_before: u64 = usage_before.iter().map(|u| u.requests).sum();
    let mut warm_served = 0u64;
    let mut all_acknowledged = Vec::new();

    for down in [Duration::from_secs(5), Duration::from_secs(15)] {
        // A token the gateway has never checked.
        let (cold, _) = s
            .vault
            .create_gateway_token(
                &acme,
                &format!("cold-{}", down.as_secs()),
                &[],
                None,
                None,
                "test",
            )
            .await
            .unwrap();
        let cold = cold.expose_secret().to_owned();
        let (answers, acknowledged) = outage(&s, &cluster, down, &cold).await;
        eprintln!("--- PostgreSQL stopped for {} s", down.as_secs());
        for what in [
            "gateway_warm",
            "gateway_revoked",
            "gateway_cold",
            "readyz",
            "admin_write",
            "admin_read",
        ] {
            eprintln!("{}", summary(&answers, what));
        }
        for a in &answers {
            let ctx = format!(
                "{} at {:.1?} took {:.1?}: {} {}",
                a.what, a.at, a.took, a.status, a.body
            );
            assert_ne!(a.status, 500, "{ctx}");
            for driver_words in [
                "sqlx",
                "pool timed out",
                "Connection refused",
                "error communicating",
                "os error",
            ] {
                assert!(!a.body.contains(driver_words), "{ctx}");
            }
            match a.what {
                // Checked before the outage: served while younger than STALE_FOR (the margin
                // covers the first requests, which find out the store is away), then a 503.
                "gateway_warm" => {
                    if a.at < STALE_FOR - Duration::from_secs(1) {
                        assert_eq!(a.status, 200, "{ctx}");
                    } else if a.at > STALE_FOR + Duration::from_secs(1) {
                        assert_eq!(a.status, 503, "{ctx}");
                        assert!(a.retry_after, "{ctx}");
                    }
                    if a.status == 200 {
                        warm_served += 1;
                    }
                }
                // Revoked just before: never served again.
                "gateway_revoked" => assert!(matches!(a.status, 401 | 503), "{ctx}"),
                // Never seen: a 503 to retry, fast.
                "gateway_cold" => {
                    assert_eq!(a.status, 503, "{ctx}");
                    assert!(a.retry_after, "{ctx}");
                    assert!(a.took < Duration::from_millis(2500), "{ctx}");
                }
                "readyz" => {
                    assert_eq!(a.status, 503, "{ctx}");
                    assert!(a.took < Duration::from_millis(1200), "{ctx}");
                    assert!(a.body.contains("the store is unavailable"), "{ctx}");
                }
                // The store is away: a 503 to retry within about the pool's 2 s, saying so.
                _ => {
                    if a.status != 503 {
                        // Only a request already past the store when it stopped can succeed.
                        assert!(a.at < Duration::from_millis(500), "{ctx}");
                        continue;
                    }
                    assert!(a.retry_after, "{ctx}");
                    assert!(a.took < Duration::from_millis(2500), "{ctx}");
                    assert!(
                        a.body.contains("the store is unavailable")
                            || a.body.contains("\"outcome\":\"unknown\""),
                        "{ctx}"
                    );
                }
            }
        }
        assert!(
            answers
                .iter()
                .any(|a| a.what == "gateway_warm" && a.status == 200),
            "the warm token was never served"
        );

        // Back: readiness, the admin API and tokens never seen before recover.
        let ready = within_20s("/readyz 200", || async {
            client()
                .get(format!("{}/readyz", s.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        // And stays ready: no replica marks a recovered store down again a moment later
        // (a change listener that noticed its lost connection only after reconnecting did).
        let steady = Instant::now();
        while steady.elapsed() < Duration::from_secs(6) {
            let r = client()
                .get(format!("{}/readyz", s.base))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "/readyz failed again {:.1?} after it recovered",
                steady.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cold = within_20s("the cold token served", || async {
            chat(&s, &cold).await.status() == 200
        })
        .await;
        eprintln!(
            "after the restart: /readyz ready in {ready:.1?}, a never-seen token served in {cold:.1?}"
        );
        all_acknowledged.extend(acknowledged);
    }

    // No acknowledged write lost.
    let creds = s.vault.list_credentials(Some(&acme), None).await.unwrap();
    for name in &all_acknowledged {
        assert!(
            creds.iter().any(|c| c.name.as_str() == name),
            "acknowledged credential {name} is missing"
        );
    }
    // Usage counted while the store was away reaches it.
    within_20s("usage written", || async {
        let usage = s.vault.usage(&acme).await.unwrap();
        let counted: u64 = usage.iter().map(|u| u.requests).sum();
        counted >= counted_before + warm_served
    })
    .await;
    eprintln!(
        "acknowledged writes during the outages: {}, all present; warm-token requests served from the cache: {warm_served}",
        all_acknowledged.len()
    );
}
