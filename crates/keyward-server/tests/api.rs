//! The admin API over real HTTP: a server on 127.0.0.1 port 0, on SQLite and PostgreSQL.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use keyward_core::{Millis, OrgId};
use keyward_server::{AppState, Role};
use keyward_testkit::{TestServer, TestVault, contains};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

const CANARY: &str = "sk-proj-APICANARY0123456789abcdWXYZ";

/// The test server, and every response body it gave (for the canary scan).
struct Server {
    server: TestServer,
    /// Every response body, for the canary scan.
    seen: Vec<u8>,
}

impl std::ops::Deref for Server {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Server {
    async fn start(vault: TestVault, jwt: keyward_server::JwtKeys) -> Self {
        Self {
            server: TestServer::start_on(vault, |s| s.with_jwt_keys(jwt)).await,
            seen: Vec::new(),
        }
    }

    async fn sqlite() -> Self {
        Self::start(TestVault::open().await, keyward_server::JwtKeys::default()).await
    }

    async fn postgres() -> Option<Self> {
        let vault = TestVault::postgres("kw_api").await?;
        Some(Self::start(vault, keyward_server::JwtKeys::default()).await)
    }

    async fn token(&self, role: Role, org: Option<&str>) -> String {
        self.server.token(role, org).await.0
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

    /// Every stored byte: the SQLite files, or a text dump of the PostgreSQL schema's tables.
    async fn stored_bytes(&self) -> Vec<u8> {
        self.server.test_vault().stored_bytes().await
    }

    async fn stop(self) {
        self.server.stop().await;
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
    let events = events["items"].clone();
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
    assert!(
        failures["items"].as_array().unwrap().len() >= 4,
        "{failures}"
    );
    // A NUL in a filter value is a 400 naming the filter, on both databases (PostgreSQL would
    // refuse the query).
    for filter in ["action=%00", "actor=token:%00", "org=a%00b", "target=x%00"] {
        let (st, body) = s
            .call(
                M::GET,
                &format!("/api/v1/events?filter={filter}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{filter}: {body}");
        assert!(body.to_string().contains("control character"), "{body}");
    }
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
    let stored = s.stored_bytes().await;
    assert!(
        stored.len() > 1000 && contains(&stored, "sk-...QRST"),
        "the scan reads the data"
    );
    assert!(
        !contains(&stored, "APICANARY"),
        "a key is stored in plain text"
    );
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
    let (_, var) = s
        .call(
            M::POST,
            "/v1/config-variables",
            Some(&acme_admin),
            Some(json!({"name": "acme.secret", "value": "VARCANARY", "sensitive": true})),
        )
        .await;
    assert_eq!(var["value"], "***");
    let (gw_token, _) = s
        .vault
        .create_gateway_token(&OrgId::new("acme").unwrap(), "ui", &[], None, None, "test")
        .await
        .unwrap();
    let acme_gateway_id = s.vault.list_gateway_tokens(None).await.unwrap()[0]
        .id
        .clone();
    let acme_token_id = s
        .vault
        .list_tokens(Some(&OrgId::new("acme").unwrap()))
        .await
        .unwrap()[0]
        .id
        .clone();
    for role in [Role::OrgAdmin, Role::Viewer, Role::Resolver] {
        let foreign = s.token(role, Some("globex")).await;
        let mut walked = Vec::new();
        let routes = keyward_server::route_list();
        for (method, path) in &routes {
            let token_id = if path.starts_with("/api/v1/gateway-tokens") {
                &acme_gateway_id
            } else {
                &acme_token_id
            };
            let concrete = path
                .replace("{organization_id}", "acme")
                .replace("{credential_id}", &id)
                .replace("{name}", "acme.secret")
                .replace("{token_id}", token_id)
                .replace("{key}", "openai");
            // Routes that name the organization in the query rather than the path.
            let is_var =
                path.starts_with("/v1/config-variables/") || path.starts_with("/api/v1/variables/");
            let concrete = if is_var && method != "PUT" {
                format!("{concrete}?organization_id=acme")
            } else {
                concrete
            };
            let path = path.as_str();
            let method: Method = method.parse().unwrap();
            let body = match (method.clone(), path) {
                (M::POST, "/api/v1/resolve") => {
                    Some(json!({"organization_id": "acme", "provider": "openai"}))
                }
                (M::POST, "/api/v1/orgs") => Some(json!({"id": "initech"})),
                (M::POST, "/api/v1/env") => Some(json!({"organization_id": "acme"})),
                (M::POST, "/api/v1/gateway-tokens") => {
                    Some(json!({"organization_id": "acme", "name": "x"}))
                }
                (M::POST, "/v1/config-variables" | "/api/v1/variables") => {
                    Some(json!({"name": "x", "value": "v", "organization_id": "acme"}))
                }
                (M::PUT, "/v1/config-variables/{name}" | "/api/v1/variables/{name}") => {
                    Some(json!({"value": "HIJACK", "organization_id": "acme"}))
                }
                (M::POST, "/api/v1/credentials") => Some(
                    json!({"organization_id": "acme", "provider": "openai", "name": "x", "api_key": CANARY}),
                ),
                (M::POST, "/api/v1/tokens") => {
                    Some(json!({"name": "x", "role": "viewer", "organization_id": "acme"}))
                }
                (M::POST, "/api/provider-credentials/create") => Some(acme_body.clone()),
                (M::PUT, p) if p.ends_with("{credential_id}") => {
                    Some(json!({"api_key": "sk-proj-HIJACK0123456789abcdef"}))
                }
                (M::PATCH, "/api/v1/orgs/{organization_id}") => {
                    Some(json!({"strategy": "round_robin"}))
                }
                (M::PATCH, "/api/v1/gateway-tokens/{token_id}") => {
                    Some(json!({"rpm": 1, "models": ["x"]}))
                }
                (M::PATCH, _) => Some(json!({"api_key": "sk-proj-HIJACK0123456789abcdef"})),
                (M::POST, "/api/v1/orgs/{organization_id}/budgets") => {
                    Some(json!({"limit_usd": "0.01"}))
                }
                (M::POST, "/api/v1/prices") => Some(json!({"prices": []})),
                _ => None,
            };
            let (st, value) = s
                .call(method.clone(), &concrete, Some(&foreign), body)
                .await;
            let text = value.to_string();
            match (method.as_str(), path) {
                (_, "/healthz" | "/readyz" | "/metrics" | "/api/v1/whoami")
                | ("GET", "/api/v1/prices" | "/api/v1/providers") => {
                    assert_eq!(st, StatusCode::OK)
                }
                (
                    "GET",
                    "/api/v1/orgs"
                    | "/api/v1/events"
                    | "/api/v1/credentials"
                    | "/v1/config-variables"
                    | "/api/v1/variables"
                    | "/api/v1/tokens"
                    | "/api/v1/gateway-tokens"
                    | "/api/v1/gateway/status",
                ) => {
                    // Listings: their own organization's, or refused for the role.
                    assert!(
                        st == StatusCode::OK || st == StatusCode::FORBIDDEN,
                        "{role} {path}: {st}"
                    );
                    assert!(!text.contains("acme"), "{role} {path}: {text}");
                }
                (
                    "POST",
                    "/api/v1/orgs"
                    | "/api/v1/events/verify"
                    | "/api/v1/master-key/rotate"
                    | "/api/v1/gateway/reload"
                    | "/api/v1/prices",
                )
                | (
                    "GET",
                    "/api/v1/master-key/status"
                    | "/api/v1/sessions"
                    | "/api/v1/sso"
                    | "/api/v1/env-status"
                    | "/api/v1/doctor",
                )
                | ("DELETE", "/api/v1/sessions/{id}") => {
                    assert_eq!(st, StatusCode::FORBIDDEN, "{path}")
                }
                _ => assert_eq!(st, StatusCode::NOT_FOUND, "{role} {method} {path}: {text}"),
            }
            assert!(!text.contains("APICANARY") && !text.contains("VARCANARY"));
            walked.push((method.to_string(), path.to_string()));
        }
        assert_eq!(walked.len(), routes.len());
        assert!(
            s.vault
                .authenticate_gateway(gw_token.expose_secret())
                .await
                .unwrap()
                .is_some(),
            "acme's gateway token survived"
        );
        assert!(
            walked.len() >= 37,
            "the walk covers every route: {}",
            walked.len()
        );
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
    let (_, var) = s
        .call(
            M::GET,
            "/v1/config-variables/acme.secret?reveal=true",
            Some(&acme_admin),
            None,
        )
        .await;
    assert_eq!(var["value"], "VARCANARY", "the variable is untouched");
    assert_eq!(var["version"], 1);
    s.stop().await;
}

/// Keyward's own routes: credentials with pagination and compare-and-set, variables, tokens,
/// the External Secrets lookup, the audit cursor, master keys.
async fn v1_routes(mut s: Server) {
    use Method as M;
    let admin = s.token(Role::Admin, None).await;
    s.call(
        M::POST,
        "/api/v1/orgs",
        Some(&admin),
        Some(json!({"id": "acme"})),
    )
    .await;
    let (st, made) = s
        .call(M::POST, "/api/v1/tokens", Some(&admin), Some(json!({"name": "ops", "role": "org_admin", "organization_id": "acme", "expires_in_seconds": 3600})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let org_admin = made["token"].as_str().unwrap().to_owned();
    assert!(org_admin.starts_with("kwt_") && made["expires_at"].is_i64());
    // An organization's admin makes its own organization's tokens, but never an admin.
    let (st, r) = s
        .call(
            M::POST,
            "/api/v1/tokens",
            Some(&org_admin),
            Some(json!({"name": "app", "role": "resolver", "organization_id": "acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let resolver = r["token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            M::POST,
            "/api/v1/tokens",
            Some(&org_admin),
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, tokens) = s
        .call(M::GET, "/api/v1/tokens", Some(&org_admin), None)
        .await;
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(
        !tokens.to_string().contains(&resolver),
        "listings never hold a token"
    );

    for i in 0..5 {
        let (st, c) = s
            .call(
                M::POST,
                "/api/v1/credentials",
                Some(&org_admin),
                Some(json!({
                    "organization_id": "acme", "provider": "openai", "name": format!("k{i}"),
                    "api_key": format!("sk-proj-{i}APICANARY0123456789abcd"), "priority": 10 - i
                })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{c}");
    }
    let (_, page) = s
        .call(
            M::GET,
            "/api/v1/credentials?limit=2",
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(
        (page["total"].as_u64(), page["next_offset"].as_u64()),
        (Some(5), Some(2))
    );
    let (_, last) = s
        .call(
            M::GET,
            "/api/v1/credentials?limit=2&offset=4",
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert!(last["next_offset"].is_null());
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (st, patched) = s
        .call(
            M::PATCH,
            &format!("/api/v1/credentials/{id}"),
            Some(&org_admin),
            Some(json!({"priority": 1, "if_version": 1})),
        )
        .await;
    assert_eq!((st, patched["version"].as_i64()), (StatusCode::OK, Some(2)));
    let (st, _) = s
        .call(
            M::PATCH,
            &format!("/api/v1/credentials/{id}"),
            Some(&org_admin),
            Some(json!({"priority": 2, "if_version": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a stale version is refused");
    let (st, _) = s
        .call(
            M::POST,
            &format!("/api/v1/credentials/{id}/deactivate"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, one) = s
        .call(
            M::GET,
            &format!("/api/v1/credentials/{id}"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(one["active"], false);

    // Config variables: redacted everywhere but an audited reveal.
    let (st, v) = s
        .call(M::POST, "/v1/config-variables", Some(&org_admin), Some(json!({"name": "db.password", "value": "VARCANARY-1", "description": "db", "sensitive": true})))
        .await;
    assert_eq!(
        (st, v["value"].as_str()),
        (StatusCode::CREATED, Some("***"))
    );
    let (st, _) = s
        .call(
            M::POST,
            "/v1/config-variables",
            Some(&org_admin),
            Some(json!({"name": "db.password", "value": "again"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    s.call(
        M::POST,
        "/v1/config-variables",
        Some(&org_admin),
        Some(json!({"name": "LOG_LEVEL", "value": "debug"})),
    )
    .await;
    let (_, list) = s
        .call(M::GET, "/v1/config-variables", Some(&org_admin), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("VARCANARY") && list.to_string().contains("debug"));
    let (_, alias) = s
        .call(M::GET, "/api/v1/variables", Some(&org_admin), None)
        .await;
    assert_eq!(alias, list, "/api/v1/variables is the same collection");
    let (_, hidden) = s
        .call(
            M::GET,
            "/v1/config-variables/db.password",
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(hidden["value"], "***");
    let (_, shown) = s
        .call(
            M::GET,
            "/v1/config-variables/db.password?reveal=true",
            Some(&resolver),
            None,
        )
        .await;
    assert_eq!(shown["value"], "VARCANARY-1");
    let (st, put) = s
        .call(
            M::PUT,
            "/v1/config-variables/db.password",
            Some(&org_admin),
            Some(json!({"value": "VARCANARY-2"})),
        )
        .await;
    assert_eq!(
        (st, put["value"].as_str(), put["sensitive"].as_bool()),
        (StatusCode::OK, Some("***"), Some(true))
    );
    let (st, _) = s
        .call(
            M::PUT,
            "/v1/config-variables/nope",
            Some(&org_admin),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The External Secrets lookup.
    let (st, cfg) = s
        .call(
            M::GET,
            "/api/v1/orgs/acme/secrets/openai",
            Some(&resolver),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(cfg["api_key"].as_str().unwrap().contains("APICANARY"));
    assert_eq!(cfg["base_url"], "https://api.openai.com/v1");
    let (_, var) = s
        .call(
            M::GET,
            "/api/v1/orgs/acme/secrets/var.db.password",
            Some(&resolver),
            None,
        )
        .await;
    assert_eq!(var, json!({"value": "VARCANARY-2"}));
    for missing in ["gemini", "var.nope", "not-a-provider"] {
        let (st, _) = s
            .call(
                M::GET,
                &format!("/api/v1/orgs/acme/secrets/{missing}"),
                Some(&resolver),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{missing}");
    }
    let (st, _) = s
        .call(
            M::DELETE,
            "/v1/config-variables/db.password",
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // The audit trail, page by page with the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/v1/events?limit=4&before={c}"),
            None => "/api/v1/events?limit=4".into(),
        };
        let (_, page) = s.call(M::GET, &path, Some(&admin), None).await;
        for e in page["items"].as_array().unwrap() {
            seen.push(e["seq"].as_i64().unwrap());
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let total = seen.len() as i64;
    assert_eq!(
        seen,
        (1..=total).rev().collect::<Vec<_>>(),
        "every event once, newest first"
    );

    // Tokens: revoking stops one at once; master keys are an admin's.
    let rid = r["id"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            M::DELETE,
            &format!("/api/v1/tokens/{rid}"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::GET,
            "/api/v1/orgs/acme/secrets/openai",
            Some(&resolver),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, status) = s
        .call(M::GET, "/api/v1/master-key/status", Some(&admin), None)
        .await;
    assert_eq!(
        (st, status["primary"].as_str()),
        (StatusCode::OK, Some("k1"))
    );
    let (st, _) = s
        .call(M::GET, "/api/v1/master-key/status", Some(&org_admin), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A key test through the API: here against a port nothing listens on.
    let closed = keyward_testkit::closed_addr();
    let (_, c) = s
        .call(
            M::POST,
            "/api/v1/credentials",
            Some(&org_admin),
            Some(json!({"organization_id": "acme", "provider": "openai", "name": "down",
                        "api_key": "sk-proj-DOWN0123456789abcdefgh", "fields": {"base_url": format!("http://{closed}/v1")}})),
        )
        .await;
    let down = c["id"].as_str().unwrap().to_owned();
    let (st, tested) = s
        .call(
            M::POST,
            &format!("/api/v1/credentials/{down}/test?timeout_seconds=3"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tested}");
    assert_eq!(tested["ok"], false);
    assert!(
        tested["result"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{tested}"
    );
    assert!(
        tested["credential"]["last_test_result"]
            .as_str()
            .unwrap()
            .starts_with("unreachable")
    );

    // Gateway tokens: shown once, listed by prefix, bound to providers, revocable.
    let (st, gw) = s
        .call(
            M::POST,
            "/api/v1/gateway-tokens",
            Some(&org_admin),
            Some(json!({"organization_id": "acme", "name": "chat-ui", "providers": ["openai"], "rpm": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{gw}");
    let gw_token = gw["token"].as_str().unwrap().to_owned();
    assert!(gw_token.starts_with("kwg_"));
    let (_, gws) = s
        .call(M::GET, "/api/v1/gateway-tokens", Some(&org_admin), None)
        .await;
    assert_eq!(gws.as_array().unwrap().len(), 1);
    assert!(!gws.to_string().contains(&gw_token));
    let found = s
        .vault
        .authenticate_gateway(&gw_token)
        .await
        .unwrap()
        .unwrap();
    assert!(found.allows(keyward_core::Provider::get("openai").unwrap()));
    assert!(!found.allows(keyward_core::Provider::get("anthropic").unwrap()));
    assert_eq!(found.rpm, Some(60));
    let (st, _) = s
        .call(
            M::POST,
            "/api/v1/gateway-tokens",
            Some(&org_admin),
            Some(json!({"organization_id": "acme", "name": "x", "providers": ["openia"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let gid = gw["id"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            M::DELETE,
            &format!("/api/v1/gateway-tokens/{gid}"),
            Some(&org_admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        s.vault
            .authenticate_gateway(&gw_token)
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
    let (st, report) = s
        .call(M::POST, "/api/v1/master-key/rotate", Some(&admin), None)
        .await;
    assert_eq!(
        (st, report["remaining"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_routes_on_sqlite() {
    v1_routes(Server::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_routes_on_postgres() {
    if let Some(s) = Server::postgres().await {
        v1_routes(s).await;
    }
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
async fn guessing_tokens_slows_an_address_down_without_refusing_its_good_tokens() {
    let mut s = Server::sqlite().await;
    let admin = s.token(Role::Admin, None).await;
    for i in 0..10 {
        let (st, _) = s
            .call(
                Method::GET,
                "/api/v1/orgs",
                Some(&format!("kwt_guess{i:032}")),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // Many clients may share the address: a token that checks out still passes.
    let (st, _) = s
        .call(Method::GET, "/api/v1/orgs", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let resp = s
        .client
        .get(format!("{}/api/v1/orgs", s.base))
        .bearer_auth("kwt_guess_once_more_0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a bad one waits"
    );
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let failures = s
        .vault
        .list_events(&"action=authenticate".parse().unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(
        failures.len(),
        10,
        "every failed attempt within the allowance is audited"
    );
    // A burst of guesses at once neither floods the trail nor gets past the allowance much.
    let burst: Vec<_> = (0..40)
        .map(|i| {
            s.client
                .get(format!("{}/api/v1/orgs", s.base))
                .bearer_auth(format!("kwt_burst{i:032}"))
                .send()
        })
        .collect();
    for resp in futures_util::future::join_all(burst).await {
        let status = resp.unwrap().status();
        assert!(
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::UNAUTHORIZED,
            "{status}"
        );
    }
    let failures = s
        .vault
        .list_events(&"action=authenticate".parse().unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(
        failures.len(),
        10,
        "no more audit events past the allowance"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template_and_resolutions() {
    use Method as M;
    let mut s = Server::sqlite().await;
    let admin = s.token(Role::Admin, None).await;
    s.call(
        M::POST,
        "/api/v1/orgs",
        Some(&admin),
        Some(json!({"id": "acme"})),
    )
    .await;
    let (_, c) = s
        .call(
            M::POST,
            "/api/v1/credentials",
            Some(&admin),
            Some(json!({"organization_id": "acme", "provider": "openai", "name": "p", "api_key": CANARY})),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    s.call(
        M::GET,
        &format!("/api/v1/credentials/{id}"),
        Some(&admin),
        None,
    )
    .await;
    for _ in 0..3 {
        s.call(
            M::POST,
            "/api/v1/resolve",
            Some(&admin),
            Some(json!({"organization_id": "acme", "provider": "openai"})),
        )
        .await;
    }
    s.call(
        M::POST,
        "/api/v1/resolve",
        Some(&admin),
        Some(json!({"organization_id": "acme", "provider": "gemini"})),
    )
    .await;
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(
        "keyward_http_requests_total{route=\"/api/v1/resolve\",method=\"POST\",status=\"200\"} 3"
    ), "{text}");
    assert!(text.contains(
        "keyward_http_requests_total{route=\"/api/v1/credentials/{credential_id}\",method=\"GET\",status=\"200\"} 1"
    ), "{text}");
    assert!(text.contains("keyward_resolutions_total{outcome=\"success\"} 3"));
    assert!(text.contains("keyward_resolutions_total{outcome=\"failure\"} 1"));
    assert!(text.contains("keyward_http_request_duration_seconds_count"));
    assert!(text.contains("keyward_audit_events_total"));
    assert!(!text.contains(&id) && !text.contains("acme") && !text.contains("APICANARY"));
    s.stop().await;
}

const JWT_K1: &str = "first-jwt-secret-0123456789abcdefghij";
const JWT_K2: &str = "second-jwt-secret-0123456789abcdefghi";

fn jwt(kid: &str, secret: &str, alg: jsonwebtoken::Algorithm, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_jwts_are_accepted_with_rotating_keys_and_checked_strictly() {
    use Method as M;
    use jsonwebtoken::Algorithm::{HS256, HS512};
    let keys = keyward_server::JwtKeys::parse(&format!("k2:{JWT_K2},k1:{JWT_K1}")).unwrap();
    let mut s = Server::start(TestVault::open().await, keys).await;
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
    let exp = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600) as i64;
    let claims = |role: &str, org: Option<&str>, exp: i64| {
        let mut c = json!({"sub": "alice", "role": role, "exp": exp});
        if let Some(o) = org {
            c["org"] = json!(o);
        }
        c
    };
    // Old and new key both work; the audit log names the token's subject and key.
    for (kid, secret) in [("k1", JWT_K1), ("k2", JWT_K2)] {
        let t = jwt(kid, secret, HS256, claims("org_admin", Some("acme"), exp));
        let (st, _) = s
            .call(
                M::POST,
                "/api/v1/credentials",
                Some(&t),
                Some(json!({"organization_id": "acme", "provider": "openai", "name": format!("via-{kid}"), "api_key": CANARY})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{kid}");
    }
    let events = s
        .vault
        .list_events(&"action=create,org=acme".parse().unwrap(), 10)
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.actor == "token:jwt:k1:alice"),
        "{events:?}"
    );

    // Refused: expired, wrong secret, unknown kid, another algorithm, admin with an org,
    // an org role without one.
    let refused = [
        jwt(
            "k1",
            JWT_K1,
            HS256,
            claims("org_admin", Some("acme"), exp - 3600),
        ),
        jwt(
            "k1",
            "not-the-secret-0123456789abcdefghijkl",
            HS256,
            claims("org_admin", Some("acme"), exp),
        ),
        jwt("k9", JWT_K1, HS256, claims("org_admin", Some("acme"), exp)),
        jwt("k1", JWT_K1, HS512, claims("org_admin", Some("acme"), exp)),
        jwt("k1", JWT_K1, HS256, claims("admin", Some("acme"), exp)),
        jwt("k1", JWT_K1, HS256, claims("viewer", None, exp)),
        jwt(
            "k1",
            JWT_K1,
            HS256,
            json!({"sub": "alice", "role": "admin"}),
        ),
    ];
    for t in refused {
        let (st, _) = s.call(M::GET, "/api/v1/orgs", Some(&t), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // A JWT of another organization sees nothing of acme.
    let foreign = jwt(
        "k2",
        JWT_K2,
        HS256,
        claims("org_admin", Some("globex"), exp),
    );
    let (st, _) = s
        .call(
            M::GET,
            "/api/provider-credentials/organization/acme",
            Some(&foreign),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(keyward_server::JwtKeys::parse("k1:short").is_err());
    let err = keyward_server::JwtKeys::parse(&format!("k1:{JWT_K1},k1:{JWT_K2}")).unwrap_err();
    assert!(err.contains("twice") && !err.contains(JWT_K1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let mut s = Server::sqlite().await;
    let (st, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "Keyward");
    let mut listed = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.push((method.to_uppercase(), path.clone()));
        }
    }
    listed.sort();
    let mut routes = keyward_server::route_list();
    routes.sort();
    assert_eq!(listed, routes);
    for path in [
        "/api/provider-credentials/create",
        "/v1/config-variables/{name}",
        "/api/v1/resolve",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    // Every listed route is served (none falls through to "no such route").
    for (method, path) in &routes {
        let concrete = path
            .replace("{organization_id}", "acme")
            .replace("{credential_id}", "0193a0b4-7c1e-7d2a-9f00-0123456789ab")
            .replace("{token_id}", "t")
            .replace("{name}", "n")
            .replace("{key}", "openai");
        let (_, body) = s.call(method.parse().unwrap(), &concrete, None, None).await;
        assert_ne!(body["detail"], "no such route", "{method} {path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_a_given_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = keyward_server::load_tls_config(&cert_path, &key_path).unwrap();

    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(keyward_server::serve_tls(
        listener,
        std::sync::Arc::new(tls),
        AppState::new(vault.clone()),
        async {
            let _ = rx.await;
        },
    ));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Plain HTTP to the TLS port gets nowhere; the server keeps serving.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let resp = client
        .get(format!("https://localhost:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Files that are not a certificate and key are refused, naming the flag.
    let err = keyward_server::load_tls_config(&key_path, &cert_path).unwrap_err();
    assert!(err.contains("--tls-"), "{err}");
    let _ = tx.send(());
    server.await.unwrap().unwrap();
    vault.close().await;
}

/// Keys of several providers' formats and Keyward tokens, each marked `KEYCANARY` inside.
const MISPLACED: &[&str] = &[
    "sk-proj-Ab3dKEYCANARY9kLm2nOp5qRs8tUv1wXy4z",
    "sk-ant-api03-Xy9Zk2KEYCANARYSt0Uv2Wx4Yz6Ab8Cd0Ef2Gh",
    "AIzaSyD3x8KEYCANARYtU7vW0xY1zA4bC6dE8f",
    "gsk_8kJ2mN4pKEYCANARYvW2xY4zA6bC8dE0fG2h",
    "3f9a8b7c6d5e4f3a2b1cKEYCANARY8f7a6b5c",
    "kwt_KEYCANARY0123456789abcdef",
    "kwg_KEYCANARY0123456789abcdef",
];

/// A key pasted into a name, id, public field, path or query of any route is refused (4xx,
/// never 2xx or 5xx), never quoted back, never stored and never audited. One line a case:
/// method, path and body, `{K}` standing for the key and `{ID}` for a credential of acme.
async fn misplaced_keys_are_refused_and_never_echoed(mut s: Server) {
    use Method as M;
    let admin = s.token(Role::Admin, None).await;
    let (st, _) = s
        .call(
            M::POST,
            "/api/v1/orgs",
            Some(&admin),
            Some(json!({"id": "acme"})),
        )
        .await;
    assert!(st.is_success(), "{st}");
    let (st, cred) = s
        .call(
            M::POST,
            "/api/v1/credentials",
            Some(&admin),
            Some(json!({"organization_id": "acme", "provider": "openai", "name": "prod", "api_key": CANARY})),
        )
        .await;
    assert!(st.is_success(), "{st} {cred}");
    let id = cred["id"].as_str().unwrap().to_owned();
    let create = r#"{"organization_id": "acme", "provider": "openai", "credential_name": "n", "api_key": "sk-proj-fine0123456789abcdefXYZW"}"#;
    let cases: &[(Method, &str, &str)] = &[
        (
            M::POST,
            "/api/provider-credentials/create",
            r#"{"organization_id": "{K}", "provider": "openai", "credential_name": "n", "api_key": "sk-x"}"#,
        ),
        (
            M::POST,
            "/api/provider-credentials/create",
            r#"{"organization_id": "acme", "provider": "{K}", "credential_name": "n"}"#,
        ),
        (
            M::POST,
            "/api/provider-credentials/create",
            r#"{"organization_id": "acme", "provider": "openai", "credential_name": "{K}", "api_key": "sk-x"}"#,
        ),
        (
            M::POST,
            "/api/provider-credentials/create",
            r#"{"organization_id": "acme", "provider": "openai", "credential_name": "n", "api_key": "sk-proj-fine0123456789abcdefXYZW", "api_base": "https://h/v1?key={K}"}"#,
        ),
        (
            M::POST,
            "/api/provider-credentials/create",
            r#"{"organization_id": "acme", "provider": "openai", "credential_name": "n", "{K}": 1}"#,
        ),
        (M::GET, "/api/provider-credentials/organization/{K}", ""),
        (
            M::PUT,
            "/api/provider-credentials/{ID}",
            r#"{"credential_name": "{K}"}"#,
        ),
        (
            M::PUT,
            "/api/provider-credentials/{K}",
            r#"{"credential_name": "x"}"#,
        ),
        (M::DELETE, "/api/provider-credentials/{K}", ""),
        (M::PUT, "/api/provider-credentials/{K}/activate", ""),
        (
            M::POST,
            "/api/v1/credentials",
            r#"{"organization_id": "acme", "provider": "openai", "name": "{K}", "api_key": "sk-proj-fine0123456789abcdefXYZW"}"#,
        ),
        (
            M::POST,
            "/api/v1/credentials",
            r#"{"organization_id": "acme", "provider": "openai", "name": "n", "api_key": "sk-proj-fine0123456789abcdefXYZW", "fields": {"{K}": "x"}}"#,
        ),
        (
            M::POST,
            "/api/v1/credentials",
            r#"{"organization_id": "acme", "provider": "openai", "name": "n", "api_key": "sk-proj-fine0123456789abcdefXYZW", "fields": {"base_url": "https://u:{K}@h/v1"}}"#,
        ),
        (
            M::POST,
            "/api/v1/credentials",
            r#"{"organization_id": "acme", "provider": "openai", "name": "n", "api_key": "sk-proj-fine0123456789abcdefXYZW", "modalities": ["{K}"]}"#,
        ),
        (M::PATCH, "/api/v1/credentials/{ID}", r#"{"name": "{K}"}"#),
        (
            M::PATCH,
            "/api/v1/credentials/{ID}",
            r#"{"fields": {"base_url": "https://{K}.example.com"}}"#,
        ),
        (M::GET, "/api/v1/credentials/{K}", ""),
        (M::GET, "/api/v1/credentials?organization_id={K}", ""),
        (M::GET, "/api/v1/credentials?provider={K}", ""),
        (M::GET, "/api/v1/credentials?limit={K}", ""),
        (M::POST, "/api/v1/credentials/{K}/test", ""),
        (M::POST, "/api/v1/orgs", r#"{"id": "{K}"}"#),
        (
            M::POST,
            "/api/v1/orgs",
            r#"{"id": "neworg", "name": "{K}"}"#,
        ),
        (
            M::POST,
            "/api/v1/orgs",
            r#"{"id": "neworg2", "strategy": "{K}"}"#,
        ),
        (M::PATCH, "/api/v1/orgs/acme", r#"{"strategy": "{K}"}"#),
        (M::PATCH, "/api/v1/orgs/{K}", r#"{"strategy": "priority"}"#),
        (
            M::POST,
            "/api/v1/resolve",
            r#"{"organization_id": "acme", "provider": "openai", "credential_name": "{K}"}"#,
        ),
        (
            M::POST,
            "/api/v1/resolve",
            r#"{"organization_id": "{K}", "provider": "openai"}"#,
        ),
        (
            M::POST,
            "/api/v1/resolve",
            r#"{"organization_id": "acme", "provider": "{K}"}"#,
        ),
        (
            M::POST,
            "/api/v1/resolve",
            r#"{"organization_id": "acme", "provider": "openai", "{K}": true}"#,
        ),
        (M::POST, "/api/v1/env", r#"{"organization_id": "{K}"}"#),
        (
            M::POST,
            "/api/v1/env",
            r#"{"organization_id": "acme", "providers": ["{K}"]}"#,
        ),
        (
            M::POST,
            "/api/v1/tokens",
            r#"{"name": "{K}", "role": "viewer", "organization_id": "acme"}"#,
        ),
        (
            M::POST,
            "/api/v1/tokens",
            r#"{"name": "t", "role": "{K}", "organization_id": "acme"}"#,
        ),
        (M::DELETE, "/api/v1/tokens/{K}", ""),
        (
            M::POST,
            "/api/v1/gateway-tokens",
            r#"{"organization_id": "acme", "name": "{K}"}"#,
        ),
        (
            M::POST,
            "/api/v1/gateway-tokens",
            r#"{"organization_id": "acme", "name": "g", "providers": ["{K}"]}"#,
        ),
        (M::GET, "/api/v1/gateway-tokens?organization_id={K}", ""),
        (M::DELETE, "/api/v1/gateway-tokens/{K}", ""),
        (
            M::POST,
            "/v1/config-variables",
            r#"{"name": "{K}", "value": "v"}"#,
        ),
        (
            M::POST,
            "/v1/config-variables",
            r#"{"name": "ok.name", "value": "v", "description": "{K}"}"#,
        ),
        (
            M::POST,
            "/v1/config-variables",
            r#"{"name": "ok.name2", "value": "v", "organization_id": "{K}"}"#,
        ),
        (M::GET, "/v1/config-variables/{K}", ""),
        (M::PUT, "/v1/config-variables/{K}", r#"{"value": "v"}"#),
        (M::DELETE, "/v1/config-variables/{K}", ""),
        (M::GET, "/v1/config-variables?organization_id={K}", ""),
        (
            M::POST,
            "/api/v1/variables",
            r#"{"name": "{K}", "value": "v"}"#,
        ),
        (M::GET, "/api/v1/variables/{K}?reveal=true", ""),
        (M::GET, "/api/v1/orgs/acme/secrets/{K}", ""),
        (M::GET, "/api/v1/orgs/acme/secrets/var.{K}", ""),
        (M::GET, "/api/v1/orgs/{K}/secrets/openai", ""),
        (M::GET, "/api/v1/orgs/{K}/usage", ""),
        (M::GET, "/api/v1/events?filter=org={K}", ""),
        (M::GET, "/api/v1/events?filter={K}", ""),
        (M::GET, "/api/v1/events?limit={K}", ""),
    ];
    for key in MISPLACED {
        for (method, path, body) in cases {
            let path = path.replace("{K}", key).replace("{ID}", &id);
            let body = (!body.is_empty())
                .then(|| serde_json::from_str::<Value>(&body.replace("{K}", key)).unwrap());
            let (st, answer) = s.call(method.clone(), &path, Some(&admin), body).await;
            assert!(
                st.is_client_error(),
                "{method} {path}: {st} (a misplaced key must be refused with a 4xx)"
            );
            assert!(
                !answer.to_string().contains("KEYCANARY"),
                "{method} {path}: {answer}"
            );
        }
    }
    // The fields that look like keys were refused for that reason, and said so.
    let (_, answer) = s
        .call(
            M::POST,
            "/api/provider-credentials/create",
            Some(&admin),
            Some(
                serde_json::from_str(&create.replace("\"n\"", &format!("\"{}\"", MISPLACED[0])))
                    .unwrap(),
            ),
        )
        .await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("looks like an API key"),
        "{answer}"
    );

    let seen = String::from_utf8_lossy(&s.seen).into_owned();
    assert!(
        !seen.contains("KEYCANARY"),
        "a response quoted a misplaced key"
    );
    let events = s
        .vault
        .list_events(&Default::default(), 100_000)
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("KEYCANARY"),
        "audited"
    );
    assert!(!contains(&s.stored_bytes().await, "KEYCANARY"), "stored");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misplaced_keys_are_refused_and_never_echoed_on_sqlite() {
    misplaced_keys_are_refused_and_never_echoed(Server::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misplaced_keys_are_refused_and_never_echoed_on_postgres() {
    if let Some(s) = Server::postgres().await {
        misplaced_keys_are_refused_and_never_echoed(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_chosen_tokens_and_the_bearer_scheme_in_any_case_authenticate() {
    let s = Server::sqlite().await;
    // What `openssl rand -hex 32` gives an operator for KEYWARD_ADMIN_TOKEN.
    let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    s.vault
        .import_token(
            "operator's",
            Role::Admin,
            None,
            &secrecy::SecretString::from(hex),
            "test",
        )
        .await
        .unwrap();
    let minted = s.token(Role::Admin, None).await;
    for (scheme, token) in [
        ("Bearer", hex),
        ("bearer", hex),
        ("BEARER", minted.as_str()),
        ("bEaReR", minted.as_str()),
    ] {
        let resp = s
            .client
            .get(format!("{}/api/v1/orgs", s.base))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{scheme} with {}",
            &token[..4]
        );
    }
    for value in [format!("Basic {hex}"), hex.to_owned(), "Bearer ".to_owned()] {
        let resp = s
            .client
            .get(format!("{}/api/v1/orgs", s.base))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_env_route_refuses_two_providers_writing_one_variable_before_any_key_leaves() {
    let mut s = Server::sqlite().await;
    let admin = s.token(Role::Admin, None).await;
    s.call(
        Method::POST,
        "/api/v1/orgs",
        Some(&admin),
        Some(json!({"id": "acme"})),
    )
    .await;
    for (provider, name, key, base) in [
        ("openai", "prod", CANARY, None),
        (
            "openai_compatible",
            "local",
            "sk-local-COLLIDECANARY-0123456789",
            Some("http://127.0.0.1:9/v1"),
        ),
    ] {
        let mut body =
            json!({"organization_id": "acme", "provider": provider, "name": name, "api_key": key});
        if let Some(b) = base {
            body["fields"] = json!({ "base_url": b });
        }
        let (st, v) = s
            .call(
                Method::POST,
                "/api/v1/credentials",
                Some(&admin),
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, problem) = s
        .call(
            Method::POST,
            "/api/v1/env",
            Some(&admin),
            Some(json!({"organization_id": "acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("OPENAI_API_KEY would be set by both the openai credential 'prod' and the openai_compatible credential 'local'"),
        "{detail}"
    );
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/env",
            Some(&admin),
            Some(json!({"organization_id": "acme", "providers": ["openai"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_guides_create_route_checks_the_format_and_can_skip_it() {
    let mut s = Server::sqlite().await;
    let admin = s.token(Role::Admin, None).await;
    s.call(
        Method::POST,
        "/api/v1/orgs",
        Some(&admin),
        Some(json!({"id": "acme"})),
    )
    .await;
    // The guide's own placeholders are not keys.
    for placeholder in ["sk-...", "sk-new-key..."] {
        let (st, problem) = s
            .call(
                Method::POST,
                "/api/provider-credentials/create",
                Some(&admin),
                Some(json!({"organization_id": "acme", "provider": "openai", "credential_name": "prod", "api_key": placeholder})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{placeholder}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("not an OpenAI key") && detail.contains("\"skip_format_check\": true"),
            "{detail}"
        );
        assert!(
            !detail.contains("--no-format-check"),
            "CLI words over HTTP: {detail}"
        );
    }
    let body = |skip: bool| json!({"organization_id": "acme", "provider": "openai", "credential_name": "proxy", "api_key": "pk-proxy-issued-0123456789abcdef", "skip_format_check": skip});
    let (st, _) = s
        .call(
            Method::POST,
            "/api/provider-credentials/create",
            Some(&admin),
            Some(body(false)),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, created) = s
        .call(
            Method::POST,
            "/api/provider-credentials/create",
            Some(&admin),
            Some(body(true)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    s.stop().await;
}

/// A viewer's cheapest expensive request, looped from many connections, beside another
/// organization's requests: the viewer's listings read a bounded window (an empty page with a
/// cursor, or a 429 to retry), the other organization is answered, and the store stays ready.
async fn a_viewers_audit_loop_cannot_stall_another_tenant(mut s: Server) {
    use keyward_core::audit::{Category, NewEvent};
    for org in ["acme", "globex"] {
        s.vault
            .create_org(&OrgId::new(org).unwrap(), None, "test")
            .await
            .unwrap();
    }
    for chunk in 0..25 {
        let batch = (0..1000)
            .map(|i| {
                NewEvent::new(
                    "token:busy",
                    Category::SecretAccess,
                    "resolve",
                    format!("credential:{chunk}-{i}"),
                )
                .org(Some("acme"))
            })
            .collect();
        s.vault.record_many(batch).await.unwrap();
    }
    let viewer = s.token(Role::Viewer, Some("acme")).await;
    let other = s.token(Role::OrgAdmin, Some("globex")).await;
    let (status, page) = s
        .call(
            Method::GET,
            "/api/v1/events?filter=actor%3Dnobody",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    assert!(page["next_cursor"].as_i64().is_some(), "{page}");

    let loops: Vec<_> = (0..16)
        .map(|_| {
            let (client, base, viewer) = (s.client.clone(), s.base.clone(), viewer.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..5 {
                    let r = client
                        .get(format!("{base}/api/v1/events?filter=actor%3Dnobody"))
                        .bearer_auth(&viewer)
                        .send()
                        .await
                        .unwrap();
                    statuses.push(r.status());
                }
                statuses
            })
        })
        .collect();
    for path in ["/api/v1/events", "/api/v1/credentials", "/readyz"] {
        for _ in 0..5 {
            let (status, _) = s.call(Method::GET, path, Some(&other), None).await;
            assert_eq!(status, StatusCode::OK, "{path} for another organization");
        }
    }
    for l in loops {
        for status in l.await.unwrap() {
            assert!(
                matches!(status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS),
                "a viewer's listing got {status}"
            );
        }
    }
    let (status, _) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_audit_loop_cannot_stall_another_tenant_on_sqlite() {
    a_viewers_audit_loop_cannot_stall_another_tenant(Server::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_audit_loop_cannot_stall_another_tenant_on_postgres() {
    if let Some(s) = Server::postgres().await {
        a_viewers_audit_loop_cannot_stall_another_tenant(s).await;
    }
}

/// An operation that cannot be undone does not drop a parameter its caller relies on: every
/// documented route refuses a query parameter it does not declare, before doing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_are_refused_before_anything_happens() {
    let mut s = Server::sqlite().await;
    let admin = s.token(Role::Admin, None).await;
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/orgs",
            Some(&admin),
            Some(json!({"id": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, made) = s
        .call(
            Method::POST,
            "/api/provider-credentials/create",
            Some(&admin),
            Some(json!({"organization_id": "acme", "provider": "openai", "credential_name": "prod", "api_key": "sk-proj-QUERYCANARY0123456789abcdWXYZ"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/api/provider-credentials/{id}?migrate_to=x"),
        format!("/api/v1/credentials/{id}?force=true"),
    ] {
        let (status, body) = s.call(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("unknown query parameter"),
            "{body}"
        );
    }
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/api/v1/credentials/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "still there");
    // A declared parameter still works; a key pasted as a name is not echoed.
    let (status, _) = s
        .call(Method::GET, "/api/v1/events?limit=5", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .call(
            Method::GET,
            "/api/v1/events?sk-proj-QUERYCANARY0123456789abcdWXYZ=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("QUERYCANARY"), "{body}");
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/provider-credentials/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    s.stop().await;
}

/// The admin guide's create route, with the guide's own body, for Azure OpenAI: its `api_base`
/// is the resource endpoint, as Open Notebook and the LiteLLM import read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_through_the_admin_guides_create_route_takes_api_base_as_the_endpoint() {
    let mut s = Server::sqlite().await;
    let admin = s.token(Role::Admin, None).await;
    s.call(
        Method::POST,
        "/api/v1/orgs",
        Some(&admin),
        Some(json!({"id": "acme"})),
    )
    .await;
    for provider in ["azure_openai", "azure"] {
        let (status, made) = s
            .call(
                Method::POST,
                "/api/provider-credentials/create",
                Some(&admin),
                Some(json!({
                    "organization_id": "acme",
                    "provider": provider,
                    "credential_name": format!("eu-{provider}"),
                    "api_key": "0123456789abcdef0123456789abcdef",
                    "api_base": "https://acme-eu.openai.azure.com"
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{provider}: {made}");
        assert_eq!(
            made["fields"]["endpoint"],
            "https://acme-eu.openai.azure.com"
        );
        assert!(made["fields"].get("base_url").is_none(), "{made}");
    }
    // Without one, the message says how to give it.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/provider-credentials/create",
            Some(&admin),
            Some(json!({"organization_id": "acme", "provider": "azure_openai", "credential_name": "none", "api_key": "0123456789abcdef0123456789abcdef"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("api_base"),
        "{body}"
    );
    s.stop().await;
}
