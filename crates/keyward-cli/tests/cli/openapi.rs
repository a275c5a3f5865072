//! `/api/openapi.json` as clients use it: schemathesis against a live `keyward serve`, with
//! response-schema conformance on, and a Python client generated from the document
//! (`openapi-python-client`) that creates, lists and deletes a credential. Both tools come
//! from PyPI; CI installs them and sets `KEYWARD_TEST_REQUIRE_PYTHON_SDKS=1`, so that there a
//! missing tool is a failure.

use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::gateway::{Server, api, python_sdk_available};
use crate::sandbox::Sandbox;

const KEY: &str = "sk-proj-OPENAPICANARY0123456789abcdefWXYZ";

/// A server with an organization, a credential and a variable, taking any number of failed
/// authentications (schemathesis tries requests without the token on purpose).
async fn seeded() -> (Sandbox, Server, String) {
    let mut s = Sandbox::sqlite();
    let master = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), master);
    let server = Server::start(&s, &[], &[("KEYWARD_AUTH_FAILURES_PER_MINUTE", "1000000")]);
    let admin = server.admin.clone().unwrap();
    let url = server.url.clone();
    let (st, _) = api(
        &url,
        Method::POST,
        "/api/v1/orgs",
        &admin,
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = api(
        &url,
        Method::POST,
        "/api/v1/credentials",
        &admin,
        Some(json!({"organization_id": "acme", "provider": "openai", "name": "main", "api_key": KEY})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = api(
        &url,
        Method::POST,
        "/v1/config-variables",
        &admin,
        Some(json!({"name": "db.url", "value": "postgres://db", "organization_id": "acme"})),
    )
    .await;
    assert_eq!(st, 201);
    (s, server, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    if !python_sdk_available("schemathesis") {
        return;
    }
    let (s, server, admin) = seeded().await;
    // Bounded: a few dozen cases an operation, deterministic, each request at most 10 s. It
    // keeps a cache in its working directory: the sandbox's.
    let out = Command::new("schemathesis")
        .current_dir(s.scratch())
        .args([
            "run",
            &format!("{}/api/openapi.json", server.url),
            "-H",
            &format!("Authorization: Bearer {admin}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--phases",
            "coverage,fuzzing,stateful",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let printed = server.stop();
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("61 selected"),
        "every operation tested: {report}"
    );
    assert!(!report.contains("OPENAPICANARY") && !printed.contains("OPENAPICANARY"));
}

/// The generated client, used as its README shows.
const CLIENT_SCRIPT: &str = r#"
import os, sys
sys.path.insert(0, os.environ["GENERATED"])
from keyward_client import AuthenticatedClient
from keyward_client.api.credentials import creds_create, creds_delete, creds_list
from keyward_client.models import CredCreate, CredCreateProvider, CredentialPage, CredentialView, Problem

client = AuthenticatedClient(base_url=os.environ["URL"], token=os.environ["TOKEN"])
made = creds_create.sync(client=client, body=CredCreate(
    organization_id="acme", provider=CredCreateProvider("openai"), name="generated",
    api_key=os.environ["NEW_KEY"]))
assert isinstance(made, CredentialView), made
page = creds_list.sync(client=client, organization_id="acme")
assert isinstance(page, CredentialPage), page
assert any(c.id == made.id for c in page.items)
deleted = creds_delete.sync_detailed(made.id, client=client)
assert deleted.status_code == 204, deleted
missing = creds_delete.sync(made.id, client=client)
assert isinstance(missing, Problem) and missing.status == 404, missing
page = creds_list.sync(client=client, organization_id="acme")
assert all(c.id != made.id for c in page.items)
print("created, listed and deleted", made.key_hint, "of", page.total)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_document_creates_lists_and_deletes_a_credential() {
    if !python_sdk_available("openapi_python_client") {
        return;
    }
    let (s, server, admin) = seeded().await;
    let doc = reqwest::get(format!("{}/api/openapi.json", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = s.scratch().join("generated");
    std::fs::create_dir_all(&dir).unwrap();
    let doc_path = dir.join("openapi.json");
    std::fs::write(&doc_path, doc).unwrap();
    let generated = Command::new("openapi-python-client")
        .arg("generate")
        .arg("--path")
        .arg(&doc_path)
        .arg("--output-path")
        .arg(dir.join("keyward_client"))
        .args(["--meta", "none"])
        .output()
        .expect("openapi-python-client runs");
    assert!(
        generated.status.success(),
        "generation failed: {}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    let out = Command::new("python3")
        .args(["-c", CLIENT_SCRIPT])
        .env("GENERATED", &dir)
        .env("URL", &server.url)
        .env("TOKEN", &admin)
        .env("NEW_KEY", "sk-proj-GENERATEDCLIENT0123456789abcdef")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    server.stop();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("created, listed and deleted sk-...cdef of 1"),
        "{said}"
    );
}
