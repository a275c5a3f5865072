//! What the server answers before any network matters, asked of the router itself with
//! `tower::ServiceExt::oneshot` on `keyward_server::app` (as axum's own examples test): health,
//! unknown routes and methods, undeclared query parameters, refused tokens, and the gateway's
//! refusals that never reach a provider. Behaviour that needs a socket (streams, timeouts,
//! hang-ups, raw bytes) is in the other suites, over a real server.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use keyward_core::OrgId;
use keyward_server::{AppState, ClientAddr, Role};
use keyward_testkit::TestVault;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The router over a fresh vault (kept alive beside it), with organization acme.
struct App {
    router: Router,
    vault: keyward_store::Vault,
    _vault: TestVault,
}

async fn app() -> App {
    let kept = TestVault::open().await;
    let vault = kept.vault.clone();
    vault
        .create_org(&OrgId::new("acme").unwrap(), None, "test")
        .await
        .unwrap();
    App {
        router: keyward_server::app(AppState::new(vault.clone())),
        vault,
        _vault: kept,
    }
}

/// An answer: status, headers, body (as JSON where it is JSON, else as text).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// Whether it is an RFC 9457 problem of `status`.
    fn is_problem(&self, status: StatusCode) -> bool {
        self.status == status
            && self.headers["content-type"] == "application/problem+json"
            && self.body["status"] == status.as_u16()
    }
}

impl App {
    async fn token(&self, role: Role, org: Option<&str>) -> String {
        let org = org.map(|o| OrgId::new(o).unwrap());
        let (t, _) = self
            .vault
            .create_token("t", role, org.as_ref(), None, "test")
            .await
            .unwrap();
        t.expose_secret().to_owned()
    }

    /// `method` on `path` from 127.0.0.1 (as `serve` gives handlers the client's address),
    /// with `headers` and a JSON `body` if given.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(ClientAddr(([127, 0, 0, 1], 50000).into())));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.send(Method::GET, path, &headers, None).await
    }
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(
        (health.status, health.body),
        (StatusCode::OK, json!("ok\n"))
    );
    assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);
    let nope = app.get("/nope", None).await;
    assert!(nope.is_problem(StatusCode::NOT_FOUND), "{}", nope.body);
    assert_eq!(nope.body["detail"], "no such route");
    // A method a route does not take: problem+json on every route, with Allow.
    for (method, path) in [
        (Method::PUT, "/api/openapi.json"),
        (Method::DELETE, "/healthz"),
        (Method::DELETE, "/api/v1/orgs"),
        (Method::PUT, "/api/provider-credentials/create"),
    ] {
        let a = app.send(method.clone(), path, &[], None).await;
        assert!(
            a.is_problem(StatusCode::METHOD_NOT_ALLOWED),
            "{method} {path}: {} {}",
            a.status,
            a.body
        );
        assert!(a.headers.contains_key("allow"), "{method} {path}");
    }
    // The server's address opens the console; the API describes itself.
    let root = app.get("/", None).await;
    assert!(root.status.is_redirection());
    assert_eq!(root.headers["location"], "/ui/");
    let doc = app.get("/api/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body["paths"]["/api/v1/orgs"].is_object(),
        "{}",
        doc.body
    );
}

#[tokio::test]
async fn a_query_parameter_the_route_does_not_declare_is_refused_without_echoing_a_key() {
    let app = app().await;
    let admin = app.token(Role::Admin, None).await;
    let a = app.get("/api/v1/orgs?bogus=1", Some(&admin)).await;
    assert!(a.is_problem(StatusCode::BAD_REQUEST), "{}", a.body);
    assert_eq!(
        a.body["detail"],
        "unknown query parameter \"bogus\" (this route takes: none); nothing was done"
    );
    let a = app
        .get(
            "/api/v1/events?sk-proj-ROUTERCANARY0123456789abcdWXYZ=1",
            Some(&admin),
        )
        .await;
    assert!(a.is_problem(StatusCode::BAD_REQUEST), "{}", a.body);
    assert!(!a.body.to_string().contains("ROUTERCANARY"), "{}", a.body);
    // A declared one passes; an empty query is none.
    assert_eq!(
        app.get("/api/v1/events?limit=5", Some(&admin)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/orgs?", Some(&admin)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_api_refuses_missing_bad_and_underpowered_tokens_as_problems() {
    let app = app().await;
    for (what, headers) in [
        ("no token", vec![]),
        (
            "an unknown token",
            vec![("authorization", "Bearer kwt_not-a-real-token-0000000000")],
        ),
        (
            "not the bearer scheme",
            vec![("authorization", "Basic a3d0Xw==")],
        ),
        (
            "a gateway token",
            vec![(
                "authorization",
                "Bearer kwg_a-gateway-token-is-not-an-api-token",
            )],
        ),
    ] {
        let a = app.send(Method::GET, "/api/v1/orgs", &headers, None).await;
        assert!(
            a.is_problem(StatusCode::UNAUTHORIZED),
            "{what}: {} {}",
            a.status,
            a.body
        );
    }
    // A good token without the role: 403, and nothing done.
    let viewer = app.token(Role::Viewer, Some("acme")).await;
    let auth = format!("Bearer {viewer}");
    let a = app
        .send(
            Method::POST,
            "/api/v1/orgs",
            &[("authorization", &auth)],
            Some(json!({"id": "globex"})),
        )
        .await;
    assert!(a.is_problem(StatusCode::FORBIDDEN), "{}", a.body);
    assert!(
        app.vault
            .list_orgs()
            .await
            .unwrap()
            .iter()
            .all(|o| o.id.as_str() != "globex"),
        "nothing was created"
    );
    let resolver = app.token(Role::Resolver, Some("acme")).await;
    let a = app
        .get(
            "/api/provider-credentials/organization/acme",
            Some(&resolver),
        )
        .await;
    assert!(
        a.is_problem(StatusCode::FORBIDDEN),
        "a resolver only resolves: {} {}",
        a.status,
        a.body
    );
}

#[tokio::test]
async fn the_gateway_refuses_in_the_providers_shape_before_any_provider_is_asked() {
    let app = app().await;
    // No token, or an API token: 401 as OpenAI and Anthropic say it.
    let a = app
        .send(
            Method::POST,
            "/gateway/openai/v1/chat/completions",
            &[],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["error"]["code"], "invalid_api_key", "{}", a.body);
    let a = app
        .send(
            Method::POST,
            "/gateway/anthropic/v1/messages",
            &[("x-api-key", "kwt_an-api-token-is-not-a-gateway-token")],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.body["error"]["type"], "authentication_error",
        "{}",
        a.body
    );
    // Methods no provider API uses, and paths that climb out of the base URL, whatever the
    // token.
    let a = app
        .send(Method::TRACE, "/gateway/openai/v1/models", &[], None)
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.body["error"].is_object(), "{}", a.body);
    let a = app
        .send(Method::GET, "/gateway/openai/v1/%2e%2e/admin", &[], None)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"].is_object(), "{}", a.body);
}
