//! The gateway against calling the provider directly and against the floor, same load, same
//! run: a mock provider on 127.0.0.1; the floor, a minimal reverse proxy built from the same
//! hyper client and axum server with no authentication and no key swap (what any Rust gateway
//! pays); Keyward's gateway; and a load generator, each on runtime threads of their own in this
//! process. Prints requests/s and p50/p99 for each, the latency added over direct, and the CPU
//! time per request of the floor and of Keyward (from their threads' own CPU clocks), for each
//! load: one request in flight (what a proxy adds to a request) and 16 in flight (the machine
//! saturated: throughput, and latency that is mostly queueing). The answers report their usage,
//! which Keyward reads and prices as they pass (spend is always on); a second gateway token
//! has a monthly budget and a per-minute limit too (both held by leases). And the clouds'
//! paths, same mock: Vertex AI (a service account's access token, cached), Azure OpenAI on an
//! Entra ID app (likewise) and Bedrock (the body read whole and signed with SigV4 each time).
//! Last, the gateway with OpenTelemetry traces off (a server's logging as shipped: warnings and
//! the access line) and on (every span exported over OTLP/HTTP to the mock), same run.
//!
//! ```sh
//! cargo bench -p keyward-server --bench gateway            # 5 s per side, 1 then 16 in flight
//! KEYWARD_BENCH_SECONDS=10 KEYWARD_BENCH_CONCURRENCY=4,32 cargo bench -p keyward-server --bench gateway
//! ```

use std::time::{Duration, Instant};

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_testkit::{MockProvider, Reply, TestServer};
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

/// The CPU time (user and system) the threads named `name` have used, from
/// `/proc/self/task/*/stat` (in clock ticks of 10 ms, Linux's usual USER_HZ).
fn thread_cpu(name: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // After "pid (comm) ": state is field 3, utime 14 and stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_millis(ticks * 10)
}

const BODY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}"#;

fn main() {
    let seconds = env_or("KEYWARD_BENCH_SECONDS", 5);
    let loads: Vec<usize> = std::env::var("KEYWARD_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Logging as `keyward serve` ships it (to nowhere), and a slot for the traces' layer with
    // its filter (a filter cannot be added later, only changed: it starts enabling nothing).
    type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
    let (traces_slot, traces) = tracing_subscriber::reload::Layer::new(None::<Boxed>);
    let (traces_filter, traced) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::filter::Targets::new());
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(traces_slot.with_filter(traces_filter))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new(
                        "warn,keyward::access=info",
                    )),
            )
            .init();
    }

    // The mock provider: one fixed answer, nothing recorded (the record would only grow).
    let upstream_rt = runtime("bench-upstream");
    let mock = upstream_rt.block_on(async {
        let mock = MockProvider::builder().unrecorded().start().await;
        for path in [
            "/v1/chat/completions",
            "/openai/deployments/gpt-4o/chat/completions",
            "/v1beta1/projects/acme-ml/locations/us-central1/publishers/google/models",
            "/model/amazon.titan-text-express-v1/converse",
        ] {
            mock.on_path(
                path,
                Reply::ok()
                    .header("content-type", "application/json")
                    .text(BODY),
            );
        }
        // Where the traces go when they are on.
        mock.on_path("/v1/traces", Reply::ok());
        // The token endpoints (each asked once: the tokens live an hour).
        for path in ["/google/token", "/entra"] {
            mock.on_path(
                path,
                Reply::ok()
                    .header("content-type", "application/json")
                    .text(r#"{"access_token":"bench-access-token","expires_in":3600,"token_type":"Bearer"}"#),
            );
        }
        mock
    });
    let upstream = mock.addr();

    // The gateway, with one organization, its key and a gateway token.
    let gateway_rt = runtime("bench-gateway");
    let mut clouds = Vec::new();
    let (server, token, budgeted) = gateway_rt.block_on(async {
        // Set up before the server starts, which reads the budgets then.
        let kept = keyward_testkit::TestVault::open().await;
        let vault = &kept.vault.clone();
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
        // A token under a budget ($1M a month, never reached) and a per-minute limit.
        let (budgeted, view) = vault
            .create_gateway_token(&acme, "budgeted", &[], None, None, "bench")
            .await
            .expect("token");
        vault
            .update_gateway_token(&view.id, None, Some(Some(1_000_000_000)), None, "bench")
            .await
            .expect("its limit");
        vault
            .set_budget(
                &keyward_store::NewBudget {
                    org: acme.clone(),
                    scope: keyward_store::BudgetScope::GatewayToken,
                    scope_id: view.id.clone(),
                    metric: keyward_store::Metric::Usd,
                    period: keyward_store::Period::Month,
                    amount: 1_000_000_000_000,
                    alerts: vec![],
                    webhook: None,
                },
                "bench",
            )
            .await
            .expect("budget");
        // The clouds, each in an organization of its own.
        for (org, provider, secret, fields) in [
            (
                "vertex",
                "vertex",
                service_account(),
                vec![
                    ("base_url", format!("http://{upstream}")),
                    ("project", "acme-ml".into()),
                ],
            ),
            (
                "entra",
                "azure_openai",
                "entra-bench-client-secret".to_owned(),
                vec![
                    ("endpoint", format!("http://{upstream}")),
                    ("tenant_id", "bench-tenant".into()),
                    ("client_id", "bench-client".into()),
                ],
            ),
            (
                "bedrock",
                "bedrock",
                "bench/Secret+Access+Key0123456789abcdefgh".to_owned(),
                vec![
                    ("base_url", format!("http://{upstream}")),
                    ("access_key_id", "AKIABENCH00000000001".into()),
                    ("region", "us-east-1".into()),
                ],
            ),
        ] {
            let id = OrgId::new(org).expect("org");
            vault.create_org(&id, None, "bench").await.expect("org");
            let mut c = NewCredential::new(
                id.clone(),
                Provider::get(provider).expect("provider"),
                CredentialName::new("main").expect("name"),
                Some(secret.into()),
            );
            for (k, v) in fields {
                c.fields.insert(k.into(), v);
            }
            vault.add_credential(c, "bench").await.expect("credential");
            let (t, _) = vault
                .create_gateway_token(&id, "bench", &[], None, None, "bench")
                .await
                .expect("token");
            clouds.push(t.expose_secret().to_owned());
        }
        let endpoints = keyward_probe::cloud::TokenEndpoints {
            google: format!("http://{upstream}/google/token"),
            entra: format!("http://{upstream}/entra"),
        };
        let server = TestServer::start_on(kept, |s| {
            s.with_gateway(keyward_server::GatewayOptions {
                token_endpoints: endpoints,
                ..Default::default()
            })
        })
        .await;
        (
            server,
            token.expose_secret().to_owned(),
            budgeted.expose_secret().to_owned(),
        )
    });
    let gateway = server.addr;

    // The floor: forward every request to the provider as it came, nothing else.
    let floor_rt = runtime("bench-floor");
    let floor = floor_rt.block_on(async move {
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::TokioExecutor;
        let client: Client<_, axum::body::Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let client = client.clone();
            async move {
                use axum::response::IntoResponse as _;
                let (mut parts, body) = req.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                parts.uri = format!("http://{upstream}{path}").parse().expect("uri");
                parts.headers.remove(axum::http::header::HOST);
                match client
                    .request(axum::http::Request::from_parts(parts, body))
                    .await
                {
                    Ok(resp) => resp.map(axum::body::Body::new).into_response(),
                    Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("floor") });
        addr
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
    let floor_url = format!("http://{floor}/v1/chat/completions");
    let gateway_url = format!("http://{gateway}/gateway/openai/v1/chat/completions");
    let cloud_urls = [
        (
            "Keyward, Vertex AI",
            format!(
                "http://{gateway}/gateway/vertex/v1beta1/publishers/google/models/gemini-2.0-flash:generateContent"
            ),
        ),
        (
            "Keyward, Entra ID",
            format!(
                "http://{gateway}/gateway/azure_openai/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
            ),
        ),
        (
            "Keyward, Bedrock",
            format!("http://{gateway}/gateway/bedrock/model/amazon.titan-text-express-v1/converse"),
        ),
    ];
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let rate = |v: &[Duration]| v.len() as f64 / seconds as f64;
    // A run and the CPU time the proxy's thread spent on it, per request.
    let measured = |url: &String, bearer: &String, concurrency: usize, thread: &str| {
        let before = thread_cpu(thread);
        let v = run(url.clone(), bearer.clone(), concurrency);
        let cpu = thread_cpu(thread).saturating_sub(before);
        let per = cpu.as_secs_f64() * 1e6 / v.len().max(1) as f64;
        (v, per)
    };
    let mut traces_off = Vec::new();
    for &concurrency in &loads {
        // Warm every path (connections, caches), then measure each in turn.
        let _ = run(direct_url.clone(), "sk-bench".into(), concurrency);
        let _ = run(floor_url.clone(), "sk-bench".into(), concurrency);
        let _ = run(gateway_url.clone(), token.clone(), concurrency);
        let _ = run(gateway_url.clone(), budgeted.clone(), concurrency);
        for ((_, url), token) in cloud_urls.iter().zip(&clouds) {
            let _ = run(url.clone(), token.clone(), concurrency);
        }
        let direct = run(direct_url.clone(), "sk-bench".into(), concurrency);
        let (floor_v, floor_cpu) = measured(
            &floor_url,
            &"sk-bench".to_owned(),
            concurrency,
            "bench-floor",
        );
        let (through, keyward_cpu) = measured(&gateway_url, &token, concurrency, "bench-gateway");
        traces_off.push((concurrency, through.clone(), keyward_cpu));
        let (held, held_cpu) = measured(&gateway_url, &budgeted, concurrency, "bench-gateway");
        let cloud_runs: Vec<(&str, Vec<Duration>, f64)> = cloud_urls
            .iter()
            .zip(&clouds)
            .map(|((label, url), token)| {
                let (v, cpu) = measured(url, token, concurrency, "bench-gateway");
                (*label, v, cpu)
            })
            .collect();
        println!("{concurrency} in flight:");
        let mut rows = vec![
            ("direct", &direct),
            ("floor (bare proxy)", &floor_v),
            ("Keyward gateway", &through),
            ("Keyward, budgeted", &held),
        ];
        rows.extend(cloud_runs.iter().map(|(l, v, _)| (*l, v)));
        for (label, v) in rows {
            println!(
                "{label:>20}: {:>8.0} req/s, p50 {:>7.1} us, p99 {:>7.1} us ({} requests, {seconds} s)",
                rate(v),
                pct(v, 0.5),
                pct(v, 0.99),
                v.len()
            );
        }
        let mut rows = vec![
            ("floor", &floor_v),
            ("Keyward", &through),
            ("Keyward, budgeted", &held),
        ];
        rows.extend(cloud_runs.iter().map(|(l, v, _)| (*l, v)));
        for (label, v) in rows {
            println!(
                "{label:>20}: added over direct p50 {:.1} us, p99 {:.1} us; throughput {:.0}% of direct",
                pct(v, 0.5) - pct(&direct, 0.5),
                pct(v, 0.99) - pct(&direct, 0.99),
                100.0 * rate(v) / rate(&direct)
            );
        }
        println!(
            "    CPU per request: floor {floor_cpu:.1} us, Keyward {keyward_cpu:.1} us ({:.2}x the floor), budgeted {held_cpu:.1} us ({:.2}x)",
            keyward_cpu / floor_cpu.max(f64::MIN_POSITIVE),
            held_cpu / floor_cpu.max(f64::MIN_POSITIVE)
        );
        for (label, _, cpu) in &cloud_runs {
            println!(
                "    CPU per request, {label}: {cpu:.1} us ({:.2}x the floor)",
                cpu / floor_cpu.max(f64::MIN_POSITIVE)
            );
        }
    }

    // Traces on: the OTLP exporter (its client on a thread of its own) sending to the mock.
    let telemetry =
        keyward_server::Telemetry::with_endpoint(&format!("http://{upstream}")).expect("telemetry");
    traces
        .modify(|slot| *slot = Some(Box::new(telemetry.layer())))
        .expect("the traces' layer");
    traced
        .modify(|filter| {
            *filter = tracing_subscriber::filter::Targets::new()
                .with_target("keyward_server", tracing::Level::INFO)
                .with_target("keyward_store", tracing::Level::INFO);
        })
        .expect("the traces' filter");
    println!("OpenTelemetry traces off and on (same run, the gateway above):");
    for (concurrency, off, off_cpu) in traces_off {
        let _ = run(gateway_url.clone(), token.clone(), concurrency);
        let (on, on_cpu) = measured(&gateway_url, &token, concurrency, "bench-gateway");
        println!(
            "    {concurrency} in flight: off {:.0} req/s, p50 {:.1} us, CPU {off_cpu:.1} us/req; on {:.0} req/s, p50 {:.1} us, CPU {on_cpu:.1} us/req ({:+.1} us a request)",
            rate(&off),
            pct(&off, 0.5),
            rate(&on),
            pct(&on, 0.5),
            on_cpu - off_cpu
        );
    }
    drop(load_rt);
    telemetry.shutdown();
}

/// A throwaway service account with a fresh RSA key (PKCS#8, as Google issues them), made by
/// `openssl`.
fn service_account() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl genpkey");
    assert!(out.status.success(), "openssl genpkey failed");
    serde_json::json!({
        "type": "service_account",
        "project_id": "acme-ml",
        "private_key_id": "bench",
        "private_key": String::from_utf8(out.stdout).expect("PEM"),
        "client_email": "bench@acme-ml.iam.gserviceaccount.com",
    })
    .to_string()
}
