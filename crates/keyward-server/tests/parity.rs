//! One policy, two surfaces: every admin operation the console offers, done through the REST
//! API and through the console by admin, org_admin, viewer and resolver of two organizations,
//! on things of their own organization and of the other. Both surfaces must answer alike
//! (done, refused, forbidden, not found) for every caller, operation and organization.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider, VarName};
use keyward_server::Role;
use keyward_testkit::TestServer;
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

const KEY: &str = "sk-proj-PARITYCANARY0123456789abcdWXYZ";

/// Every operation both surfaces offer.
const OPS: &[&str] = &[
    "list orgs",
    "create org",
    "change org",
    "list credentials",
    "read credential",
    "add credential",
    "edit credential",
    "move key without the key",
    "deactivate credential",
    "test credential",
    "delete credential",
    "list variables",
    "reveal variable",
    "list gateway tokens",
    "make gateway token",
    "revoke gateway token",
    "list API tokens",
    "make API token",
    "revoke API token",
    "read events",
    "verify events",
    "read usage",
    "gateway status",
    "reload gateway",
    "master key status",
    "rotate master key",
];

static FRESH: AtomicUsize = AtomicUsize::new(0);

/// A name not used before in this run.
fn fresh(prefix: &str) -> String {
    format!("{prefix}{}", FRESH.fetch_add(1, Ordering::Relaxed))
}

/// A form's one-time id (32 hex digits), never used before.
fn once() -> String {
    format!(
        "{:032x}",
        0xabc0_0000_0000_u128 + FRESH.fetch_add(1, Ordering::Relaxed) as u128
    )
}

/// What an operation acts on, made afresh for each call so that both surfaces act on a
/// thing in the same state.
struct Fixture {
    credential: String,
    version: i64,
    gateway_token: String,
    api_token: String,
    variable: String,
}

async fn fixture(c: &TestServer, org: &str) -> Fixture {
    let org = OrgId::new(org).unwrap();
    let mut new = NewCredential::new(
        org.clone(),
        Provider::get("openai").unwrap(),
        CredentialName::new(&fresh("cred-")).unwrap(),
        Some(KEY.into()),
    );
    // A key test fails fast here: nothing listens on port 9.
    new.fields
        .insert("base_url".into(), "http://127.0.0.1:9/v1".into());
    let cred = c.vault.add_credential(new, "test").await.unwrap();
    let (_, gateway) = c
        .vault
        .create_gateway_token(&org, &fresh("gw-"), &[], None, None, "test")
        .await
        .unwrap();
    let (_, api) = c
        .vault
        .create_token(&fresh("tok-"), Role::Viewer, Some(&org), None, "test")
        .await
        .unwrap();
    let variable = fresh("SECRET_");
    c.vault
        .set_var(
            &VarName::new(&variable).unwrap(),
            Some(&org),
            &"a sensitive value".to_owned().into(),
            true,
            None,
            "test",
        )
        .await
        .unwrap();
    Fixture {
        credential: cred.id.to_string(),
        version: cred.version,
        gateway_token: gateway.id,
        api_token: api.id,
        variable,
    }
}

async fn through_api(c: &TestServer, token: &str, op: &str, org: &str, f: &Fixture) -> Response {
    let (method, path, body) = match op {
        "list orgs" => (Method::GET, "/api/v1/orgs".to_owned(), None),
        "create org" => (
            Method::POST,
            "/api/v1/orgs".to_owned(),
            Some(json!({ "id": fresh("org-") })),
        ),
        "change org" => (
            Method::PATCH,
            format!("/api/v1/orgs/{org}"),
            Some(json!({ "strategy": "round_robin" })),
        ),
        "list credentials" => (
            Method::GET,
            format!("/api/v1/credentials?organization_id={org}"),
            None,
        ),
        "read credential" => (
            Method::GET,
            format!("/api/v1/credentials/{}", f.credential),
            None,
        ),
        "add credential" => (
            Method::POST,
            "/api/v1/credentials".to_owned(),
            Some(json!({
                "organization_id": org, "provider": "openai", "name": fresh("new-"), "api_key": KEY,
            })),
        ),
        "edit credential" => (
            Method::PATCH,
            format!("/api/v1/credentials/{}", f.credential),
            Some(json!({ "name": fresh("renamed-") })),
        ),
        "move key without the key" => (
            Method::PATCH,
            format!("/api/v1/credentials/{}", f.credential),
            Some(json!({ "fields": { "base_url": "https://elsewhere.example/v1" } })),
        ),
        "deactivate credential" => (
            Method::POST,
            format!("/api/v1/credentials/{}/deactivate", f.credential),
            None,
        ),
        "test credential" => (
            Method::POST,
            format!(
                "/api/v1/credentials/{}/test?timeout_seconds=1",
                f.credential
            ),
            None,
        ),
        "delete credential" => (
            Method::DELETE,
            format!("/api/v1/credentials/{}", f.credential),
            None,
        ),
        "list variables" => (
            Method::GET,
            format!("/api/v1/variables?organization_id={org}"),
            None,
        ),
        "reveal variable" => (
            Method::GET,
            format!(
                "/api/v1/variables/{}?organization_id={org}&reveal=true",
                f.variable
            ),
            None,
        ),
        "list gateway tokens" => (
            Method::GET,
            format!("/api/v1/gateway-tokens?organization_id={org}"),
            None,
        ),
        "make gateway token" => (
            Method::POST,
            "/api/v1/gateway-tokens".to_owned(),
            Some(json!({ "organization_id": org, "name": fresh("app-") })),
        ),
        "revoke gateway token" => (
            Method::DELETE,
            format!("/api/v1/gateway-tokens/{}", f.gateway_token),
            None,
        ),
        "list API tokens" => (Method::GET, "/api/v1/tokens".to_owned(), None),
        "make API token" => (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            Some(json!({ "name": fresh("t-"), "role": "viewer", "organization_id": org })),
        ),
        "revoke API token" => (
            Method::DELETE,
            format!("/api/v1/tokens/{}", f.api_token),
            None,
        ),
        "read events" => (
            Method::GET,
            format!("/api/v1/events?filter=org={org}"),
            None,
        ),
        "verify events" => (Method::POST, "/api/v1/events/verify".to_owned(), None),
        "read usage" => (Method::GET, format!("/api/v1/orgs/{org}/usage"), None),
        "gateway status" => (
            Method::GET,
            format!("/api/v1/gateway/status?org={org}"),
            None,
        ),
        "reload gateway" => (Method::POST, "/api/v1/gateway/reload".to_owned(), None),
        "master key status" => (Method::GET, "/api/v1/master-key/status".to_owned(), None),
        "rotate master key" => (Method::POST, "/api/v1/master-key/rotate".to_owned(), None),
        other => panic!("no API call for {other}"),
    };
    c.api(method, &path, token, body).await
}

async fn through_console(
    c: &TestServer,
    cookie: &str,
    op: &str,
    org: &str,
    f: &Fixture,
) -> Response {
    let id = &f.credential;
    let get = |path: String| async move { c.page(&path, cookie).await };
    let post = |path: String, body: String| async move { c.post(&path, cookie, &body).await };
    match op {
        "list orgs" => get("/ui/orgs".into()).await,
        "create org" => post("/ui/orgs".into(), format!("id={}", fresh("org-"))).await,
        "change org" => {
            post(
                format!("/ui/orgs/{org}/strategy"),
                "strategy=round_robin".into(),
            )
            .await
        }
        "list credentials" => get(format!("/ui/credentials?org={org}")).await,
        "read credential" => get(format!("/ui/credentials/{id}")).await,
        "add credential" => {
            post(
                "/ui/credentials".into(),
                format!(
                    "org={org}&provider=openai&name={}&api_key={KEY}",
                    fresh("new-")
                ),
            )
            .await
        }
        "edit credential" => {
            post(
                format!("/ui/credentials/{id}/edit"),
                format!(
                    "version={}&name={}&base_url=http%3A%2F%2F127.0.0.1%3A9%2Fv1",
                    f.version,
                    fresh("renamed-")
                ),
            )
            .await
        }
        "move key without the key" => {
            post(
                format!("/ui/credentials/{id}/edit"),
                format!(
                    "version={}&name={}&base_url=https%3A%2F%2Felsewhere.example%2Fv1",
                    f.version,
                    fresh("moved-")
                ),
            )
            .await
        }
        "deactivate credential" => {
            post(format!("/ui/credentials/{id}/deactivate"), "".into()).await
        }
        "test credential" => post(format!("/ui/credentials/{id}/test"), "".into()).await,
        "delete credential" => post(format!("/ui/credentials/{id}/delete"), "".into()).await,
        "list variables" => get(format!("/ui/variables?org={org}")).await,
        "reveal variable" => {
            post(
                "/ui/variables/reveal".into(),
                format!("name={}&org={org}", f.variable),
            )
            .await
        }
        "list gateway tokens" => get(format!("/ui/gateway-tokens?org={org}")).await,
        "make gateway token" => {
            post(
                "/ui/gateway-tokens".into(),
                format!("org={org}&name={}&once={}", fresh("app-"), once()),
            )
            .await
        }
        "revoke gateway token" => {
            post(
                format!("/ui/gateway-tokens/{}/revoke", f.gateway_token),
                "".into(),
            )
            .await
        }
        "list API tokens" => get("/ui/tokens".into()).await,
        "make API token" => {
            post(
                "/ui/tokens".into(),
                format!("name={}&role=viewer&org={org}&once={}", fresh("t-"), once()),
            )
            .await
        }
        "revoke API token" => post(format!("/ui/tokens/{}/revoke", f.api_token), "".into()).await,
        "read events" => get(format!("/ui/events?org={org}")).await,
        "verify events" => post("/ui/events/verify".into(), "".into()).await,
        "read usage" => get(format!("/ui/usage?org={org}")).await,
        "gateway status" => get(format!("/ui/gateway?org={org}")).await,
        "reload gateway" => post("/ui/gateway/reload".into(), "".into()).await,
        "master key status" => get("/ui/master-key".into()).await,
        "rotate master key" => post("/ui/master-key/rotate".into(), "".into()).await,
        other => panic!("no console call for {other}"),
    }
}

/// What an answer says, as one word. A console form that did its work answers 303 to the
/// page that shows it; one that could not answers 303 with a notice that says so, or the form
/// again with the refusal (4xx).
fn word(resp: &Response) -> &'static str {
    let status = resp.status();
    if status == StatusCode::SEE_OTHER {
        let to = resp.headers()["location"].to_str().unwrap();
        assert!(!to.starts_with("/ui/login"), "signed out: {to}");
        return if to.contains("notice=reload_failed") || to.contains("notice=chain_broken") {
            "refused"
        } else {
            "done"
        };
    }
    match status.as_u16() {
        200 | 201 | 204 => "done",
        400 | 409 | 422 => "refused",
        403 => "forbidden",
        404 => "not found",
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_alike_through_the_api_and_the_console() {
    let c = TestServer::start(|s| s).await;
    for org in ["acme", "globex"] {
        c.vault
            .create_org(&OrgId::new(org).unwrap(), None, "test")
            .await
            .unwrap();
    }
    let callers = [
        (Role::Admin, None),
        (Role::OrgAdmin, Some("acme")),
        (Role::Viewer, Some("acme")),
        (Role::Resolver, Some("acme")),
        (Role::OrgAdmin, Some("globex")),
        (Role::Viewer, Some("globex")),
        (Role::Resolver, Some("globex")),
    ];
    let mut table: BTreeMap<(String, &str, &str), &str> = BTreeMap::new();
    for (role, own) in callers {
        let (token, _) = c.token(role, own).await;
        let signed_in = c.sign_in(&token).await;
        let cookie = if role == Role::Resolver {
            // A resolver is a machine's role: it has no console (nothing of the console's is
            // resolving), and signing in says so.
            assert_eq!(signed_in.status(), StatusCode::FORBIDDEN);
            None
        } else {
            assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
            Some(TestServer::session_cookie(&signed_in).0)
        };
        let who = format!("{role} of {}", own.unwrap_or("no organization"));
        for op in OPS {
            for org in ["acme", "globex"] {
                let api = word(&through_api(&c, &token, op, org, &fixture(&c, org).await).await);
                if let Some(cookie) = &cookie {
                    let f = fixture(&c, org).await;
                    let console = word(&through_console(&c, cookie, op, org, &f).await);
                    assert_eq!(
                        api, console,
                        "{who}, {op} on {org}: the API says {api}, the console {console}"
                    );
                }
                table.insert((who.clone(), op, org), api);
            }
        }
    }
    // The walk is not vacuous: each answer occurs, and the rules' corners hold.
    let of = |who: &str, op: &'static str, org: &'static str| table[&(who.to_owned(), op, org)];
    for answer in ["done", "refused", "forbidden", "not found"] {
        assert!(table.values().any(|w| *w == answer), "no {answer} at all");
    }
    assert_eq!(
        of("admin of no organization", "rotate master key", "acme"),
        "done"
    );
    assert_eq!(of("org_admin of acme", "edit credential", "acme"), "done");
    assert_eq!(
        of("org_admin of acme", "edit credential", "globex"),
        "not found"
    );
    assert_eq!(
        of("org_admin of acme", "move key without the key", "acme"),
        "refused"
    );
    assert_eq!(of("org_admin of acme", "reveal variable", "acme"), "done");
    assert_eq!(of("viewer of acme", "reveal variable", "acme"), "forbidden");
    assert_eq!(of("viewer of acme", "gateway status", "acme"), "done");
    assert_eq!(
        of("viewer of acme", "gateway status", "globex"),
        "not found"
    );
    assert_eq!(
        of("org_admin of globex", "master key status", "globex"),
        "forbidden"
    );
    assert_eq!(of("resolver of acme", "reveal variable", "acme"), "done");
    assert_eq!(
        of("resolver of acme", "list credentials", "acme"),
        "forbidden"
    );
    assert_eq!(
        of("admin of no organization", "reload gateway", "acme"),
        "refused"
    );
    assert_eq!(table.len(), callers.len() * OPS.len() * 2);
}

/// Moving a stored key takes the key; a credential with no key (a local Ollama) has nothing to
/// move, and clearing a base URL sends the key back to the provider's own address: both pass,
/// through the API's `PATCH` and the admin guide's `PUT` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_stored_key_needs_the_key_to_move() {
    let c = TestServer::start(|s| s).await;
    let acme = OrgId::new("acme").unwrap();
    c.vault.create_org(&acme, None, "test").await.unwrap();
    let (admin, _) = c.token(Role::Admin, None).await;
    let mut ollama = NewCredential::new(
        acme.clone(),
        Provider::get("ollama").unwrap(),
        CredentialName::new("local").unwrap(),
        None,
    );
    ollama
        .fields
        .insert("base_url".into(), "http://127.0.0.1:11434".into());
    let ollama = c.vault.add_credential(ollama, "test").await.unwrap();
    let openai = fixture(&c, "acme").await.credential;
    let moved = |to: &str| json!({ "fields": { "base_url": to } });
    let status = |r: Response| r.status().as_u16();
    let patch = |id: String, body| {
        let c = &c;
        let admin = &admin;
        async move {
            c.api(
                Method::PATCH,
                &format!("/api/v1/credentials/{id}"),
                admin,
                Some(body),
            )
            .await
        }
    };
    let put = |id: String, base: &'static str| {
        let c = &c;
        let admin = &admin;
        async move {
            c.api(
                Method::PUT,
                &format!("/api/provider-credentials/{id}"),
                admin,
                Some(json!({ "api_base": base })),
            )
            .await
        }
    };
    let id = ollama.id.to_string();
    assert_eq!(
        status(patch(id.clone(), moved("http://127.0.0.1:11435")).await),
        200
    );
    assert_eq!(status(put(id, "http://127.0.0.1:11436").await), 200);
    assert_eq!(
        status(patch(openai.clone(), moved("https://elsewhere.example/v1")).await),
        422
    );
    assert_eq!(
        status(put(openai.clone(), "https://elsewhere.example/v1").await),
        422
    );
    assert_eq!(
        status(patch(openai.clone(), moved("")).await),
        200,
        "cleared"
    );
    let with_key = json!({ "api_key": KEY, "fields": { "base_url": "https://proxy.example/v1" } });
    assert_eq!(status(patch(openai, with_key).await), 200);
}

/// A listing of an organization that does not exist is "not found", for an admin as for anyone
/// (the admin guide's listing said so; the others answered an empty list), on both surfaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_no_such_organization_is_not_found_for_admins_too() {
    let c = TestServer::start(|s| s).await;
    c.vault
        .create_org(&OrgId::new("acme").unwrap(), None, "test")
        .await
        .unwrap();
    let (admin, _) = c.token(Role::Admin, None).await;
    let cookie = TestServer::session_cookie(&c.sign_in(&admin).await).0;
    for (api, console) in [
        (
            "/api/v1/credentials?organization_id=nosuch",
            "/ui/credentials?org=nosuch",
        ),
        (
            "/api/v1/gateway-tokens?organization_id=nosuch",
            "/ui/gateway-tokens?org=nosuch",
        ),
        (
            "/api/v1/variables?organization_id=nosuch",
            "/ui/variables?org=nosuch",
        ),
        ("/api/v1/events?filter=org=nosuch", "/ui/events?org=nosuch"),
        ("/api/v1/orgs/nosuch/usage", "/ui/usage?org=nosuch"),
        (
            "/api/v1/gateway/status?org=nosuch",
            "/ui/gateway?org=nosuch",
        ),
    ] {
        let got = c.api(Method::GET, api, &admin, None).await;
        assert_eq!(got.status(), StatusCode::NOT_FOUND, "{api}");
        assert!(
            got.text()
                .await
                .unwrap()
                .contains("organization 'nosuch' not found")
        );
        assert_eq!(
            c.page(console, &cookie).await.status(),
            StatusCode::NOT_FOUND,
            "{console}"
        );
        let known = api.replace("nosuch", "acme");
        assert_eq!(
            c.api(Method::GET, &known, &admin, None).await.status(),
            StatusCode::OK,
            "{known}"
        );
    }
}
