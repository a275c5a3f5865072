//! The console's Provider Credentials page for an organization with 1 000 credentials, rendered
//! by a real server on 127.0.0.1 and fetched one at a time by a signed-in client: the first
//! page, a page deep in the list, and a credential's own page, beside `GET /healthz` (the floor
//! of a request on this machine) in the same run. Prints each route's p50, p99 and mean.
//!
//! ```sh
//! cargo bench -p keyward-server --bench console                 # 500 requests per route
//! KEYWARD_BENCH_REQUESTS=2000 cargo bench -p keyward-server --bench console
//! ```

use std::time::{Duration, Instant};

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_server::Role;
use keyward_testkit::TestServer;
use secrecy::ExposeSecret as _;

const CREDENTIALS: usize = 1_000;

fn main() {
    let requests: usize = std::env::var("KEYWARD_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = TestServer::start(|s| s).await;
        let vault = &server.vault;
        let acme = OrgId::new("acme").expect("org");
        vault.create_org(&acme, None, "bench").await.expect("org");
        let batch = (0..CREDENTIALS)
            .map(|i| {
                NewCredential::new(
                    acme.clone(),
                    Provider::get(if i % 2 == 0 { "openai" } else { "anthropic" })
                        .expect("provider"),
                    CredentialName::new(&format!("key-{i:04}")).expect("name"),
                    Some(
                        if i % 2 == 0 {
                            format!("sk-bench-{i:04}-0123456789abcdefWXYZ")
                        } else {
                            format!("sk-ant-bench-{i:04}-0123456789abcdefWXYZ")
                        }
                        .into(),
                    ),
                )
            })
            .collect();
        let ids = vault.add_credentials(batch, "bench").await.expect("creds");
        let (token, _) = vault
            .create_token("bench", Role::OrgAdmin, Some(&acme), None, "bench")
            .await
            .expect("token");
        // Signed in as a browser on the console's origin would; a client that does not follow
        // redirects.
        let signed_in = server.sign_in(token.expose_secret()).await;
        let (cookie, _) = TestServer::session_cookie(&signed_in);
        let (addr, client) = (server.addr, &server.client);
        println!(
            "console, {CREDENTIALS} credentials in one organization, {requests} sequential requests per route"
        );
        println!("{:<44} {:>9} {:>9} {:>9}", "route", "p50", "p99", "mean");
        for path in [
            "/healthz".to_owned(),
            "/ui/credentials?org=acme".to_owned(),
            "/ui/credentials?org=acme&page=15".to_owned(),
            format!("/ui/credentials/{}", ids[500]),
        ] {
            let url = format!("http://{addr}{path}");
            let mut times = Vec::with_capacity(requests);
            for i in 0..requests + 20 {
                let start = Instant::now();
                let resp = client
                    .get(&url)
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .expect("get");
                assert_eq!(resp.status(), 200, "{path}");
                let body = resp.bytes().await.expect("body");
                assert!(!body.is_empty());
                // The first requests warm the caches.
                if i >= 20 {
                    times.push(start.elapsed());
                }
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(1);
            let label = if path.len() > 44 { &path[..44] } else { &path };
            println!(
                "{label:<44} {:>7.2}ms {:>7.2}ms {:>7.2}ms",
                ms(times[times.len() / 2]),
                ms(times[times.len() * 99 / 100]),
                ms(mean)
            );
        }
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
