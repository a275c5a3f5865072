//! The admin API over real HTTP: a server on 127.0.0.1 port 0, on SQLite and PostgreSQL.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use keyward_core::{Millis, OrgId};
use keyward_crypto::{KeyId, Keyring, MasterKey};
use keyward_server::{AppState, ROUTES, Role};
use keyward_store::{Location, Vault, VaultOptions};
use keyward_testkit::{PgSchema, contains};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

const CANARY: &str = "sk-proj-APICANARY0123456789abcdWXYZ";

/// A running server and the means to call it.
struct Server {
    base: String,
    vault: Vault,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<PgSchema>,
    /// Every response body, for the canary scan.
    seen: Vec<u8>,
}

impl Server {
    async fn start(
        location: Location,
        dir: Option<tempfile::TempDir>,
        schema: Option<PgSchema>,
    ) -> Self {
        // reqwest is built without a default TLS provider; the tests speak plain HTTP anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let keyring = Keyring::new(
            vec![MasterKey::from_bytes(KeyId::new("k1").unwrap(), &[3; 32])],
            "test",
        )
        .unwrap();
        let vault = Vault::open(&location, keyring, VaultOptions::default())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = AppState {
            vault: vault.clone(),
        };
        let task = tokio::spawn(async move {
            keyward_server::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            vault,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task,
            _dir: dir,
            schema,
            seen: Vec::new(),
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start(Location::in_data_dir(dir.path()), Some(dir), None).await
    }

    async fn postgres() -> Option<Self> {
        let schema = PgSchema::create("kw_api").await?;
        Some(Self::start(Location::Url(schema.url()), None, Some(schema)).await)
    }

    async fn token(&self, role: Role, org: Option<&str>) -> String {
        let org = org.map(|o| OrgId::new(o).unwrap());
        let (t, _) = self
            .vault
            .create_token(&format!("{role}-test"), role, org.as_ref(), None, "test")
            .await
            .unwrap();
        t.expose_secret().to_owned()
    }

    /// Calls the API; returns status and JSON body (Null when there is none).
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let is_problem = resp
            .headers()
            .get("content-type")
            .is_some_and(|c| c == "application/problem+json");
        let bytes = resp.bytes().await.unwrap();
        self.seen.extend_from_slice(&bytes);
        if status.is_client_error() || status.is_server_error() {
            assert!(is_problem, "{status} for {path} is not problem+json");
        }
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.await.unwrap();
        self.vault.close().await;
        if let Some(s) = self.schema {
            s.drop_schema().await;
        }
    }
}

/// The admin guide's flow, with every role's limits.
async fn admin_guide_flow(mut s: Server) {
    use Method as M;
    let admin = s.token(Role::Admin, None).await;
    let (st, _) = s
        .call(
            M::POST,
            "/api/v1/orgs",
            Some(&admin),
            Some(json!({"id": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let org_admin = s.token(Role::OrgAdmin, Some("acme")).await;
    let viewer = s.token(Role::Viewer, Some("acme")).await;
    let resolver = s.token(Role::Resolver, Some("acme")).await;

    let create = json!({
        "organization_id": "acme", "provider": "openai", "credential_name": "prod",
        "api_key": CANARY, "api_base": "https://api.openai.com/v1"
    });
    let (st, _) = s
        .call(
            M::POST,
            "/api/provider-credentials/create",
            Some(&viewer),
            Some(create.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a viewer cannot create");
    let (st, cred) = s
        .call(
            M::POST,
            "/api/provider-credentials/create",
            Some(&org_admin),
            Some(create.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{cred}");
    assert_eq!(cred["key_hint"], "sk-...WXYZ");
    let id = cred["id"].as_str().unwrap().to_owned();

    for token in [&org_admin, &viewer] {
        let (st, list) = s
            .call(
                M::GET,
                "/api/provider-credentials/organization/acme",
                Some(token),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 1);
    }
    let (st, _) = s
        .call(
            M::GET,
            "/api/provider-credentials/organization/acme",
            Some(&resolver),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a resolver only resolves");

    let (st, _) = s
        .call(
            M::PUT,
            &format!("/api/provider-credentials/{id}/deactivate"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let resolve = json!({"organization_id": "acme", "provider": "openai"});
    let (st, _) = s
        .call(
            M::POST,
            "/api/v1/resolve",
            Some(&resolver),
            Some(resolve.clone()),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "a deactivated key is not handed out"
    );
    let (st, _) = s
        .call(
            M::PUT,
            &format!("/api/provider-credentials/{id}/activate"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, config) = s
        .call(
            M::POST,
            "/api/v1/resolve",
            Some(&resolver),
            Some(resolve.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(config["api_key"], CANARY);
    assert_eq!(config["base_url"], "https://api.openai.com/v1");
    let (st, _) = s
        .call(
            M::POST,
            "/api/v1/resolve",
            Some(&viewer),
            Some(resolve.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a viewer reads masked only");

    let update = json!({"credential_name": "prod-2", "api_key": "sk-proj-ROTATED0123456789abcdQRST", "api_base": "https://proxy.internal/v1"});
    let (st, updated) = s
        .call(
            M::PUT,
            &format!("/api/provider-credentials/{id}"),
            Some(&org_admin),
            Some(update),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["key_hint"].as_str()),
        (Some("prod-2"), Some("sk-...QRST"))
    );

    // Bad input: a clear 4xx, nothing echoed.
    let bad = [
        json!({"organization_id": "acme", "provider": "openai", "credential_name": "x", "api_key": CANARY, "colour": 1}),
        json!({"organization_id": "acme", "provider": "openia", "credential_name": "x", "api_key": CANARY}),
        json!({"organization_id": "Not An Org", "provider": "openai", "credential_name": "x", "api_key": CANARY}),
        json!({"organization_id": "acme", "provider": "anthropic", "credential_name": "x", "api_key": CANARY}),
        json!({"organization_id": "acme", "provider": "openai", "credential_name": 7, "api_key": CANARY}),
        json!({"organization_id": "acme", "provider": "openai", "credential_name": "x", "api_key": 12345}),
    ];
    for body in bad {
        let (st, problem) = s
            .call(
                M::POST,
                "/api/provider-credentials/create",
                Some(&org_admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {problem}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    let big = json!({"organization_id": "acme", "provider": "openai", "credential_name": "x", "api_key": "x".repeat(100_000)});
    let (st, _) = s
        .call(
            M::POST,
            "/api/provider-credentials/create",
            Some(&org_admin),
            Some(big),
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);

    // Authentication failures: 401, audited.
    let (st, _) = s.call(M::GET, "/api/v1/orgs", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call(
            M::GET,
            "/api/v1/orgs",
            Some("kwt_not-a-real-token-0123456789abcdef"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let revoked = s.token(Role::Viewer, Some("acme")).await;
    let rid = s
        .vault
        .list_tokens(None)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id
        .clone();
    s.vault.revoke_token(&rid, "test").await.unwrap();
    let (st, _) = s.call(M::GET, "/api/v1/orgs", Some(&revoked), None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a revoked token stops working"
    );
    let (expired, _) = s
        .vault
        .create_token(
            "old",
            Role::Viewer,
            Some(&OrgId::new("acme").unwrap()),
            Some(Millis(Millis::now().0 - 1)),
            "test",
        )
        .await
        .unwrap();
    let (st, _) = s
        .call(M::GET, "/api/v1/orgs", Some(expired.expose_secret()), None)
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "an expired token stops working"
    );

    // The audit trail over HTTP: the organization's, with the actors' token ids.
    let (st, events) = s
        .call(
            M::GET,
            "/api/v1/events?filter=category=secret_management&limit=50",
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["create", "deactivate", "activate", "update"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["org"] == "acme")
    );
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with("token:"))
    );
    let (_, failures) = s
        .call(
            M::GET,
            "/api/v1/events?filter=action=authenticate&limit=50",
            Some(&admin),
            None,
        )
        .await;
    assert!(failures.as_array().unwrap().len() >= 4, "{failures}");
    let (st, verify) = s
        .call(M::POST, "/api/v1/events/verify", Some(&admin), None)
        .await;
    assert_eq!(
        (st, verify["problem"].clone()),
        (StatusCode::OK, Value::Null)
    );

    let (st, _) = s
        .call(
            M::DELETE,
            &format!("/api/provider-credentials/{id}"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(
            M::DELETE,
            &format!("/api/provider-credentials/{id}"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Not one response (but the resolution) held the key; nor did the audit log.
    let seen = String::from_utf8_lossy(&s.seen).replace(&format!("\"api_key\":\"{CANARY}\""), "");
    assert!(!seen.contains("APICANARY"), "a response held the key");
    let events = s
        .vault
        .list_events(&Default::default(), 10_000)
        .await
        .unwrap();
    assert!(!contains(
        serde_json::to_string(&events).unwrap().as_bytes(),
        "APICANARY"
    ));
    s.stop().await;
}

/// A token of one organization gets 404 for every object of another, on every route.
async fn foreign_tokens_see_nothing(mut s: Server) {
    use Method as M;
    let admin = s.token(Role::Admin, None).await;
    for org in ["acme", "globex"] {
        s.call(
            M::POST,
            "/api/v1/orgs",
            Some(&admin),
            Some(json!({"id": org})),
        )
        .await;
    }
    let acme_admin = s.token(Role::OrgAdmin, Some("acme")).await;
    let (_, cred) = s
        .call(
            M::POST,
            "/api/provider-credentials/create",
            Some(&acme_admin),
            Some(json!({"organization_id": "acme", "provider": "openai", "credential_name": "prod", "api_key": CANARY})),
        )
        .await;
    let id = cred["id"].as_str().unwrap().to_owned();
    let acme_body = json!({"organization_id": "acme", "provider": "openai", "credential_name": "prod", "api_key": CANARY});
    for role in [Role::OrgAdmin, Role::Viewer, Role::Resolver] {
        let foreign = s.token(role, Some("globex")).await;
        let mut walked = Vec::new();
        for (method, path) in ROUTES {
            let concrete = path
                .replace("{organization_id}", "acme")
                .replace("{credential_id}", &id);
            let method: Method = method.parse().unwrap();
            let body = match (method.clone(), *path) {
                (M::POST, "/api/v1/resolve") => {
                    Some(json!({"organization_id": "acme", "provider": "openai"}))
                }
                (M::POST, "/api/v1/orgs") => Some(json!({"id": "initech"})),
                (M::POST, _) => Some(acme_body.clone()),
                (M::PUT, p) if p.ends_with("{credential_id}") => {
                    Some(json!({"api_key": "sk-proj-HIJACK0123456789abcdef"}))
                }
                _ => None,
            };
            let (st, value) = s
                .call(method.clone(), &concrete, Some(&foreign), body)
                .await;
            let text = value.to_string();
            match *path {
                "/healthz" | "/readyz" | "/api/v1/whoami" => assert_eq!(st, StatusCode::OK),
                "/api/v1/orgs" if method == M::GET => {
                    assert_eq!(st, StatusCode::OK);
                    assert!(!text.contains("acme"), "{role}: {text}");
                }
                "/api/v1/orgs" | "/api/v1/events/verify" => {
                    assert_eq!(st, StatusCode::FORBIDDEN, "{path}")
                }
                "/api/v1/events" => {
                    // Resolvers read no trail; the others only their own.
                    assert!(
                        st == StatusCode::OK || st == StatusCode::FORBIDDEN,
                        "{path}: {st}"
                    );
                    assert!(!text.contains("acme"), "{role}: {text}");
                }
                _ => assert_eq!(st, StatusCode::NOT_FOUND, "{role} {method} {path}: {text}"),
            }
            assert!(!text.contains("APICANARY"));
            walked.push((method.to_string(), path.to_string()));
        }
        assert_eq!(walked.len(), ROUTES.len());
    }
    // Nothing of acme's changed.
    let (_, list) = s
        .call(
            M::GET,
            "/api/provider-credentials/organization/acme",
            Some(&acme_admin),
            None,
        )
        .await;
    assert_eq!(list[0]["key_hint"], "sk-...WXYZ");
    assert_eq!(list[0]["version"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_guide_flow_on_sqlite() {
    admin_guide_flow(Server::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_guide_flow_on_postgres() {
    if let Some(s) = Server::postgres().await {
        admin_guide_flow(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_tokens_see_nothing_on_sqlite() {
    foreign_tokens_see_nothing(Server::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_tokens_see_nothing_on_postgres() {
    if let Some(s) = Server::postgres().await {
        foreign_tokens_see_nothing(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_unknown_routes() {
    let mut s = Server::sqlite().await;
    assert_eq!(
        s.call(Method::GET, "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.call(Method::GET, "/readyz", None, None).await.0,
        StatusCode::OK
    );
    let (st, problem) = s.call(Method::GET, "/nope", None, None).await;
    assert_eq!(
        (st, problem["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    s.stop().await;
}
