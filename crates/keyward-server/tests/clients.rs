//! What clients of other languages (the Python package, issue 24) ask the API for: resolutions
//! that name the variables they become, a "no key" they can tell from "no such organization",
//! the provider registry, the server's environment status, and model discovery.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use keyward_server::Role;
use keyward_store::{EnvSource, VaultOptions};
use keyward_testkit::{MockProvider, Reply, TestServer, TestVault};
use reqwest::Method;
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-CLIENTCANARY0123456789abcdefWXYZ";
const SERVER_ENV_KEY: &str = "sk-proj-SERVERENVCANARY0123456789abcd";

/// A server whose environment holds an OpenAI key (fallback off, as by default), with the
/// organizations `acme` and `globex`.
async fn server() -> TestServer {
    let env: HashMap<String, String> =
        [("OPENAI_API_KEY".to_owned(), SERVER_ENV_KEY.to_owned())].into();
    let vault = TestVault::open_with(VaultOptions {
        env: EnvSource::Map(Arc::new(env)),
        ..VaultOptions::default()
    })
    .await;
    let s = TestServer::start_on(vault, |s| s).await;
    let (admin, _) = s.token(Role::Admin, None).await;
    for org in ["acme", "globex"] {
        let r = s
            .api(
                Method::POST,
                "/api/v1/orgs",
                &admin,
                Some(json!({"id": org})),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    s
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let r = s.api(method, path, token, body).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(SERVER_ENV_KEY),
        "the server's own key in an answer: {text}"
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

async fn credential(s: &TestServer, token: &str, body: Value) -> String {
    let (st, c, text) = call(s, Method::POST, "/api/v1/credentials", token, Some(body)).await;
    assert_eq!(st, 201, "{text}");
    c["id"].as_str().unwrap().to_owned()
}

/// `name → entry` of a resolution's `env` list.
fn env_of(answer: &Value) -> HashMap<String, Value> {
    answer["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_names_the_variables_it_becomes_and_how_long_to_keep_it() {
    let s = server().await;
    let (org_admin, _) = s.token(Role::OrgAdmin, Some("acme")).await;
    let (resolver, _) = s.token(Role::Resolver, Some("acme")).await;
    credential(
        &s,
        &org_admin,
        json!({"organization_id": "acme", "provider": "openai", "name": "chat", "priority": 1, "api_key": OPENAI_KEY,
               "fields": {"base_url": "http://127.0.0.1:9/v1"}, "modalities": ["chat"]}),
    )
    .await;
    credential(
        &s,
        &org_admin,
        json!({"organization_id": "acme", "provider": "openai", "name": "embed", "priority": 5,
               "api_key": "sk-proj-EMBED0123456789abcdefghijWXYZ", "modalities": ["embeddings"]}),
    )
    .await;
    credential(
        &s,
        &org_admin,
        json!({"organization_id": "acme", "provider": "azure", "name": "az", "api_key": "0123456789abcdef0123456789abcdef",
               "fields": {"endpoint": "https://acme.openai.azure.com", "api_version": "2024-10-21"}}),
    )
    .await;
    let sa = json!({"type": "service_account", "project_id": "acme-ai", "client_email": "kw@acme.iam.gserviceaccount.com",
                    "private_key": "-----BEGIN PRIVATE KEY-----\nSACANARY\n-----END PRIVATE KEY-----\n"});
    credential(
        &s,
        &org_admin,
        json!({"organization_id": "acme", "provider": "vertex", "name": "gcp", "api_key": sa.to_string(),
               "fields": {"project": "acme-ai", "location": "europe-west4"}}),
    )
    .await;

    let resolve = |provider: &str, modality: Option<&str>| {
        let mut body = json!({"organization_id": "acme", "provider": provider});
        if let Some(m) = modality {
            body["modality"] = json!(m);
        }
        body
    };
    let (st, openai, text) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(resolve("openai", None)),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(openai["api_key"], OPENAI_KEY);
    assert_eq!(openai["key_hint"], "sk-...WXYZ");
    assert_eq!(openai["cache_ttl_ms"], 1000, "the server's own TTL");
    let env = env_of(&openai);
    assert_eq!(
        env["OPENAI_API_KEY"],
        json!({"name": "OPENAI_API_KEY", "secret": true})
    );
    assert_eq!(env["OPENAI_BASE_URL"]["value"], "http://127.0.0.1:9/v1");
    assert_eq!(env["OPENAI_API_BASE"]["value"], "http://127.0.0.1:9/v1");
    // The key appears once, as `api_key`: never a second copy in the list.
    assert_eq!(text.matches(OPENAI_KEY).count(), 1, "{text}");

    // Open Notebook's modality names pick the credential for that use.
    let (_, embed, _) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(resolve("openai", Some("embedding"))),
    )
    .await;
    assert_eq!(embed["credential_name"], "embed");
    let (st, _, text) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(resolve("openai", Some("smell"))),
    )
    .await;
    assert_eq!(st, 400, "{text}");

    // Azure under Open Notebook's name: its endpoint and both version variables.
    let (_, azure, _) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(resolve("azure", None)),
    )
    .await;
    let env = env_of(&azure);
    assert_eq!(
        env["AZURE_OPENAI_ENDPOINT"]["value"],
        "https://acme.openai.azure.com"
    );
    assert_eq!(env["AZURE_OPENAI_API_VERSION"]["value"], "2024-10-21");
    assert_eq!(env["OPENAI_API_VERSION"]["value"], "2024-10-21");
    assert_eq!(env["AZURE_OPENAI_API_KEY"]["secret"], true);

    // Vertex: the service account goes to a file; its hint is the account, not the key.
    let (_, vertex, text) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(resolve("vertex", None)),
    )
    .await;
    assert_eq!(vertex["key_hint"], "sa:kw@acme.iam.gserviceaccount.com");
    let env = env_of(&vertex);
    assert_eq!(
        env["GOOGLE_APPLICATION_CREDENTIALS"],
        json!({"name": "GOOGLE_APPLICATION_CREDENTIALS", "secret": true, "file": true})
    );
    assert_eq!(env["VERTEX_PROJECT"]["value"], "acme-ai");
    assert_eq!(env["VERTEX_LOCATION"]["value"], "europe-west4");
    assert_eq!(text.matches("SACANARY").count(), 1, "{text}");

    // `/env`: the same, for every provider at once.
    let (st, all, text) = call(
        &s,
        Method::POST,
        "/api/v1/env",
        &resolver,
        Some(json!({"organization_id": "acme"})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let providers: Vec<&str> = all["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["env"].is_array() && p["cache_ttl_ms"] == 1000, "{p}");
            p["provider"].as_str().unwrap()
        })
        .collect();
    assert_eq!(providers, ["openai", "azure_openai", "vertex"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_is_told_apart_from_no_organization_and_the_registry_is_open_to_every_role() {
    let s = server().await;
    let (resolver, _) = s.token(Role::Resolver, Some("acme")).await;
    let body = |org: &str, provider: &str| json!({"organization_id": org, "provider": provider});
    // The organization has no Anthropic key: a client may fall back to its own environment.
    let (st, p, _) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(body("acme", "anthropic")),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (404, Some("no_credential")),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("no active Anthropic credential")
    );
    // Another organization, or none such: a plain 404, no code, so no client falls back on a
    // wrong setting.
    for org in ["globex", "nothere"] {
        let (st, p, _) = call(
            &s,
            Method::POST,
            "/api/v1/resolve",
            &resolver,
            Some(body(org, "openai")),
        )
        .await;
        assert_eq!(st, 404);
        assert!(p.get("code").is_none(), "{p}");
    }
    // A provider Keyward does not know: a 400 that says so, in words and in its code.
    let (st, p, _) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(body("acme", "openia")),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (400, Some("unknown_provider")),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("unknown provider")
    );
    // The server's environment holds an OpenAI key, but its fallback is off: no key, and the
    // server's own key never leaves (`call` checks every answer).
    let (st, p, _) = call(
        &s,
        Method::POST,
        "/api/v1/resolve",
        &resolver,
        Some(body("acme", "openai")),
    )
    .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("no_credential")));

    // The registry: any role, every provider, the variables of each.
    for role in [Role::Resolver, Role::Viewer, Role::OrgAdmin] {
        let (token, _) = s.token(role, Some("acme")).await;
        let (st, reg, _) = call(&s, Method::GET, "/api/v1/providers", &token, None).await;
        assert_eq!(st, 200, "{role:?}");
        let items = reg["items"].as_array().unwrap();
        assert_eq!(items.len(), keyward_core::PROVIDERS.len());
        let gemini = items.iter().find(|p| p["id"] == "gemini").unwrap();
        assert_eq!(gemini["aliases"], json!(["google"]));
        assert_eq!(
            gemini["secret_env"],
            json!(["GOOGLE_API_KEY", "GEMINI_API_KEY"])
        );
        assert_eq!(
            gemini["fixed_env"],
            json!([["GOOGLE_GENAI_USE_VERTEXAI", "false"]])
        );
        for id in ["ppq", "omlx"] {
            assert!(items.iter().any(|p| p["id"] == id), "{id}");
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_environment_status_is_for_admins_and_names_variables_only() {
    let s = server().await;
    let (admin, _) = s.token(Role::Admin, None).await;
    let (st, status, text) = call(&s, Method::GET, "/api/v1/env-status", &admin, None).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(status["env_fallback_default"], false);
    let of = |id: &str| {
        status["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        of("openai"),
        json!({"provider": "openai", "configured": true, "variable": "OPENAI_API_KEY"})
    );
    assert_eq!(of("anthropic")["configured"], false);
    for role in [Role::OrgAdmin, Role::Viewer, Role::Resolver] {
        let (token, _) = s.token(role, Some("acme")).await;
        let (st, _, _) = call(&s, Method::GET, "/api/v1/env-status", &token, None).await;
        assert_eq!(st, 403, "{role:?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_the_models_a_key_reaches_and_is_audited() {
    let mock = MockProvider::builder().key(OPENAI_KEY).start().await;
    // An upstream that echoes the key among its models, as it is, spaced out and upper case,
    // or in full-width letters: those names are left out, as are ones that reverse how text
    // shows or hide a joiner.
    let spaced = |k: &str| k.chars().map(|c| format!("{c} ")).collect::<String>();
    let full_width = |k: &str| {
        k.chars()
            .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c))
            .collect::<String>()
    };
    mock.on_path(
        "/v1/models",
        Reply::ok().json(json!({"object": "list", "data": [
            {"id": "gpt-4o-mini"}, {"id": "gpt-4o"}, {"id": format!("echo-{OPENAI_KEY}")}, {"id": "gpt-4o"},
            {"id": spaced(&OPENAI_KEY.to_uppercase())}, {"id": "\u{202E}4o-tpg"},
            {"id": full_width(OPENAI_KEY)}, {"id": "gpt-4o\u{200D}"}
        ]})),
    );
    let s = server().await;
    let (org_admin, _) = s.token(Role::OrgAdmin, Some("acme")).await;
    let id = credential(
        &s,
        &org_admin,
        json!({"organization_id": "acme", "provider": "openai", "name": "main", "api_key": OPENAI_KEY,
               "fields": {"base_url": format!("{}/v1", mock.url())}}),
    )
    .await;
    let path = format!("/api/v1/credentials/{id}/discover");
    let (st, found, text) = call(&s, Method::POST, &path, &org_admin, None).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(found["models"], json!(["gpt-4o", "gpt-4o-mini"]));
    assert_eq!(found["provider"], "openai");
    assert!(!text.contains(OPENAI_KEY), "{text}");
    assert_eq!(
        mock.last().header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );

    // The provider refuses a key: 424, saying so.
    let wrong = credential(
        &s,
        &org_admin,
        json!({"organization_id": "acme", "provider": "openai", "name": "wrong",
               "api_key": "sk-proj-WRONG0123456789abcdefghijklmn",
               "fields": {"base_url": format!("{}/other/v1", mock.url())}}),
    )
    .await;
    let (st, p, _) = call(
        &s,
        Method::POST,
        &format!("/api/v1/credentials/{wrong}/discover"),
        &org_admin,
        None,
    )
    .await;
    assert_eq!(st, 424);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("rejected (HTTP 401)"),
        "{p}"
    );

    // Who may: the organization's admins, as for a key test; the others of it are refused,
    // another organization's do not see it.
    let (resolver, _) = s.token(Role::Resolver, Some("acme")).await;
    assert_eq!(call(&s, Method::POST, &path, &resolver, None).await.0, 403);
    let (foreign, _) = s.token(Role::OrgAdmin, Some("globex")).await;
    assert_eq!(call(&s, Method::POST, &path, &foreign, None).await.0, 404);

    // Both uses of the key are in the audit log, with their outcome; neither names the key.
    let (_, events, text) = call(
        &s,
        Method::GET,
        "/api/v1/events?filter=action=discover",
        &org_admin,
        None,
    )
    .await;
    let outcomes: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failure", "success"], "{text}");
    assert!(!text.contains(OPENAI_KEY));
    s.stop().await;
}
