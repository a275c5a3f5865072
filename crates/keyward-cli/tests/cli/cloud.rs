//! The clouds through the gateway, with their own SDKs: google-genai (`vertexai=True`) on a
//! Vertex AI service account, the openai SDK's `AzureOpenAI` on an Entra ID app, boto3's
//! `bedrock-runtime` (with `AWS_BEARER_TOKEN_BEDROCK` set to a gateway token) on an AWS access
//! key. Upstream is `keyward-testkit/cloud/mock_cloud.py`, which checks what Keyward sends
//! with implementations that are not Keyward's: google-auth verifies the JWT assertions,
//! botocore's signer each SigV4 signature.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway::{Server, client, python_sdk_available};
use crate::sandbox::Sandbox;

const AWS_ACCESS_KEY_ID: &str = "AKIAKEYWARDTEST0001";
const AWS_SECRET: &str = "AWSCANARYsecretKEY/0123456789abcdefghijkl";
const AWS_TEMP_KEY_ID: &str = "ASIAKEYWARDTEST0002";
const AWS_TEMP_SECRET: &str = "AWSCANARYtempSECRET/0123456789abcdefghijk";
const AWS_SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjCANARYsessionTOKEN0123456789abcdef==";
const BEDROCK_API_KEY: &str = "ABSKCANARYQmVkcm9ja0FQSUtleS0xMjM0NTY3ODkwYWJjZGVm";
const ENTRA_TENANT: &str = "8f1c2c7e-1111-4000-8000-000000000001";
const ENTRA_CLIENT: &str = "0b5e8c3a-2222-4000-8000-000000000002";
const ENTRA_SECRET: &str = "ENTRACANARY~secret.0123456789abcdef";
const SA_EMAIL: &str = "gateway@acme-ml.iam.gserviceaccount.com";

/// A mock of `keyward-testkit/cloud/`, as a child process.
pub(crate) struct MockCloud {
    child: Child,
    pub(crate) url: String,
}

impl MockCloud {
    /// Starts `script` (`mock_cloud.py`, `mock_realtime.py`) with `config`.
    pub(crate) fn start(dir: &std::path::Path, script: &str, config: &Value) -> Self {
        let path = dir.join(format!("{script}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let script = format!(
            "{}/../keyward-testkit/cloud/{script}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the mock printed its port");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// What it saw, of one kind.
    pub(crate) async fn seen(&self, kind: &str) -> Vec<Value> {
        let log: Vec<Value> = client()
            .get(format!("{}/_log", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log.into_iter().filter(|e| e["kind"] == kind).collect()
    }
}

impl Drop for MockCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a credential to `org` (its secret from the environment); its id.
fn add_to(
    s: &mut Sandbox,
    org: &str,
    provider: &str,
    name: &str,
    secret: &str,
    sets: &[&str],
) -> String {
    let mut args = vec![
        "cred",
        "add",
        "--org",
        org,
        "--provider",
        provider,
        "--name",
        name,
        "--api-key-env",
        "SECRET",
        "--json",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out: Value = serde_json::from_str(&s.ok_with(&args, "", &[("SECRET", secret)])).unwrap();
    out["id"].as_str().unwrap().to_owned()
}

/// The server's `/metrics`.
pub(crate) async fn metrics(server: &str) -> String {
    client()
        .get(format!("{server}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A fresh RSA service-account key (PKCS#8, as Google issues them) and its public key, made
/// with `cryptography`.
fn service_account(dir: &std::path::Path) -> (String, String) {
    let out = Command::new("python3")
        .args([
            "-c",
            r#"
import json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()
print(json.dumps({"private": private, "public": public}))
"#,
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sa = json!({
        "type": "service_account",
        "project_id": "acme-ml",
        "private_key_id": "kid-1",
        "private_key": keys["private"],
        "client_email": SA_EMAIL,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
        "universe_domain": "googleapis.com",
    });
    (sa.to_string(), keys["public"].as_str().unwrap().to_owned())
}

/// Runs a Python script with `env`; its standard output.
pub(crate) fn python(s: &Sandbox, script: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).current_dir(s.scratch());
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "AZURE_OPENAI_API_KEY",
        "OPENAI_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const GENAI_SCRIPT: &str = r#"
import os
from google import genai
from google.oauth2.credentials import Credentials
base = os.environ["GATEWAY"]
express = genai.Client(vertexai=True, api_key=os.environ["GW_TOKEN"], http_options={"base_url": base})
r = express.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
print("express:", r.text)
print("streamed:", "".join(c.text for c in express.models.generate_content_stream(model="gemini-2.0-flash", contents="Say hello")))
# The project form, as code that runs on Vertex with a token: the gateway puts the
# credential's project and location in place of whatever the client names.
project = genai.Client(vertexai=True, project="someone-elses", location="europe-west4",
                       credentials=Credentials(token=os.environ["GW_TOKEN"]), http_options={"base_url": base})
print("project:", project.models.generate_content(model="gemini-2.0-flash", contents="Say hello").text)
"#;

const GENAI_CONCURRENT: &str = r#"
import os, concurrent.futures
from google import genai
c = genai.Client(vertexai=True, api_key=os.environ["GW_TOKEN"], http_options={"base_url": os.environ["GATEWAY"]})
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    texts = list(pool.map(lambda _: c.models.generate_content(model="gemini-2.0-flash", contents="hi").text, range(8)))
print(sorted(set(texts)))
"#;

const GENAI_CONCURRENT_FAILING: &str = r#"
import os, concurrent.futures
from google import genai
from google.genai import errors
c = genai.Client(vertexai=True, api_key=os.environ["GW_TOKEN"], http_options={"base_url": os.environ["GATEWAY"]})
def one(_):
    try:
        c.models.generate_content(model="gemini-2.0-flash", contents="hi")
        return "ok"
    except errors.APIError as e:
        return str(e.code)
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    print(sorted(set(pool.map(one, range(8)))))
"#;

const AZURE_SCRIPT: &str = r#"
import os
from openai import AzureOpenAI, APIStatusError
client = AzureOpenAI(azure_endpoint=os.environ["GATEWAY"], api_key=os.environ["GW_TOKEN"],
                     api_version="2024-10-21", max_retries=0)
try:
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    print("azure:", r.choices[0].message.content)
except APIStatusError as e:
    print("error:", e.status_code)
"#;

const BOTO3_SCRIPT: &str = r#"
import base64, json, os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
rt = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=os.environ["GATEWAY"],
                  config=Config(retries={"max_attempts": 1}))
messages = [{"role": "user", "content": [{"text": "Say hello"}]}]
try:
    r = rt.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=messages)
except ClientError as e:
    print("error:", e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
    raise SystemExit(0)
print("converse:", r["output"]["message"]["content"][0]["text"], r["usage"]["totalTokens"])
arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
events = rt.converse_stream(modelId=arn, messages=messages)["stream"]
text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
print("converse-stream:", text)
body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
r = rt.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=body)
print("invoke:", json.loads(r["body"].read())["content"][0]["text"])
r = rt.invoke_model_with_response_stream(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=body)
kinds = [json.loads(e["chunk"]["bytes"])["type"] for e in r["body"]]
print("invoke-stream:", kinds)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertex_entra_and_bedrock_serve_their_sdks_through_the_gateway() {
    for module in ["google.genai", "openai", "boto3", "cryptography"] {
        if !python_sdk_available(module) {
            return;
        }
    }
    let mut s = Sandbox::sqlite();
    let master = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), master);
    let (sa_json, sa_public) = service_account(&s.scratch());
    let mock = MockCloud::start(
        &s.scratch(),
        "mock_cloud.py",
        &json!({
            "sa_public_pem": sa_public,
            "sa_email": SA_EMAIL,
            "project": "acme-ml",
            "location": "us-central1",
            "token_lifetime": 301,
            "entra": { "tenant": ENTRA_TENANT, "client_id": ENTRA_CLIENT, "secret": ENTRA_SECRET },
            "aws": {
                "region": "us-east-1",
                "keys": [
                    { "access_key_id": AWS_ACCESS_KEY_ID, "secret": AWS_SECRET },
                    { "access_key_id": AWS_TEMP_KEY_ID, "secret": AWS_TEMP_SECRET, "session_token": AWS_SESSION_TOKEN },
                ],
                "api_keys": [BEDROCK_API_KEY],
            },
        }),
    );
    let google_token_url = format!("{}/google/token", mock.url);
    let entra_authority = format!("{}/entra", mock.url);
    let server = Server::start(
        &s,
        &[],
        &[
            ("KEYWARD_GOOGLE_TOKEN_URL", google_token_url.as_str()),
            ("KEYWARD_ENTRA_AUTHORITY", entra_authority.as_str()),
        ],
    );
    s.env.insert("KEYWARD_URL".into(), server.url.clone());
    s.env
        .insert("KEYWARD_TOKEN".into(), server.admin.clone().unwrap());
    s.ok(&["org", "create", "acme"]);
    let add = |s: &mut Sandbox, provider: &str, name: &str, secret: &str, sets: &[&str]| {
        add_to(s, "acme", provider, name, secret, sets)
    };
    let base = format!("base_url={}", mock.url);
    let endpoint = format!("endpoint={}", mock.url);
    let vertex = add(
        &mut s,
        "vertex",
        "ml",
        &sa_json,
        &[&base, "location=us-central1"],
    );
    let azure = add(
        &mut s,
        "azure_openai",
        "entra",
        ENTRA_SECRET,
        &[
            &endpoint,
            &format!("tenant_id={ENTRA_TENANT}"),
            &format!("client_id={ENTRA_CLIENT}"),
        ],
    );
    let bedrock = add(
        &mut s,
        "bedrock",
        "aws",
        AWS_SECRET,
        &[
            &base,
            &format!("access_key_id={AWS_ACCESS_KEY_ID}"),
            "region=us-east-1",
        ],
    );
    let gw = s
        .ok(&["gateway-token", "create", "--org", "acme", "--name", "apps"])
        .trim()
        .to_owned();

    // Vertex AI: google-genai, express and project forms, plain and streamed.
    let gateway = format!("{}/gateway/vertex", server.url);
    let out = python(
        &s,
        GENAI_SCRIPT,
        &[("GATEWAY", &gateway), ("GW_TOKEN", &gw)],
    );
    assert_eq!(
        out,
        "express: Hello from Vertex\nstreamed: Hello from Vertex\nproject: Hello from Vertex\n"
    );
    let grants = mock.seen("google_token").await;
    assert_eq!(
        grants.len(),
        1,
        "one token served three requests: {grants:?}"
    );
    assert!(grants.iter().all(|g| g["ok"] == true), "{grants:?}");
    let calls = mock.seen("vertex").await;
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(call["ok"], true, "{call}");
        assert!(
            call["path"]
                .as_str()
                .unwrap()
                .starts_with("/v1beta1/projects/acme-ml/locations/us-central1/publishers/google/models/gemini-2.0-flash:"),
            "{call}"
        );
        assert!(!call["headers"].to_string().contains(&gw), "{call}");
    }

    // The token lives one second past the refresh margin: after it, eight requests at once
    // get one new token between them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = python(
        &s,
        GENAI_CONCURRENT,
        &[("GATEWAY", &gateway), ("GW_TOKEN", &gw)],
    );
    assert_eq!(out.trim(), "['Hello from Vertex']");
    let grants = mock.seen("google_token").await;
    assert_eq!(
        grants.len(),
        2,
        "one refresh for eight concurrent requests: {grants:?}"
    );

    // A service account whose key the token endpoint refuses: eight requests at once ask it
    // once between them, and get the refusal.
    let (other_key, _) = service_account(&s.scratch());
    s.ok(&["org", "create", "badsa"]);
    add_to(&mut s, "badsa", "vertex", "ml", &other_key, &[&base]);
    let bad_gw = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "badsa",
            "--name",
            "apps",
        ])
        .trim()
        .to_owned();
    let before = mock.seen("google_token").await.len();
    let out = python(
        &s,
        GENAI_CONCURRENT_FAILING,
        &[("GATEWAY", &gateway), ("GW_TOKEN", &bad_gw)],
    );
    assert_eq!(out.trim(), "['401']");
    let grants = mock.seen("google_token").await;
    assert_eq!(grants.len(), before + 1, "{grants:?}");
    assert_eq!(grants.last().unwrap()["ok"], false);

    // Azure OpenAI with an Entra ID app: the client keeps `api_key=` (its gateway token).
    let gateway = format!("{}/gateway/azure_openai", server.url);
    let out = python(
        &s,
        AZURE_SCRIPT,
        &[("GATEWAY", &gateway), ("GW_TOKEN", &gw)],
    );
    assert_eq!(out, "azure: Hello from Azure\n");
    let grants = mock.seen("entra_token").await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert!(grants[0]["ok"] == true);
    let calls = mock.seen("azure").await;
    assert!(calls.len() == 1 && calls[0]["ok"] == true, "{calls:?}");

    // Bedrock with boto3's bearer token: every request signed, as botocore checks.
    let gateway = format!("{}/gateway/bedrock", server.url);
    let out = python(
        &s,
        BOTO3_SCRIPT,
        &[("GATEWAY", &gateway), ("AWS_BEARER_TOKEN_BEDROCK", &gw)],
    );
    assert_eq!(
        out,
        "converse: Hello from Bedrock 5\n\
         converse-stream: Hello from Bedrock\n\
         invoke: Hello from Claude on Bedrock\n\
         invoke-stream: ['content_block_delta', 'message_stop']\n"
    );
    let calls = mock.seen("bedrock").await;
    assert_eq!(calls.len(), 4);
    for call in &calls {
        assert_eq!(call["ok"], true, "{call}");
        assert!(
            call["headers"]["authorization"]
                .as_str()
                .unwrap()
                .starts_with(&format!("AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY_ID}/"))
        );
    }
    assert!(
        calls[1]["path"]
            .as_str()
            .unwrap()
            .contains("inference-profile%2Fus.anthropic"),
        "the ARN's slash went upstream encoded, as signed: {}",
        calls[1]["path"]
    );

    // Temporary credentials (pasted as `aws configure export-credentials` prints them) and a
    // Bedrock API key, each in an organization of its own.
    let temporary = json!({
        "Version": 1, "AccessKeyId": AWS_TEMP_KEY_ID, "SecretAccessKey": AWS_TEMP_SECRET,
        "SessionToken": AWS_SESSION_TOKEN, "Expiration": "2099-01-01T00:00:00Z",
    })
    .to_string();
    let mut org_tokens = std::collections::HashMap::new();
    for (org, secret, sets) in [
        (
            "temp",
            temporary.as_str(),
            // The access key id comes with the credentials.
            Vec::<String>::new(),
        ),
        ("apikey", BEDROCK_API_KEY, vec![]),
    ] {
        s.ok(&["org", "create", org]);
        let mut args = vec![
            "cred",
            "add",
            "--org",
            org,
            "--provider",
            "bedrock",
            "--name",
            "aws",
            "--api-key-env",
            "SECRET",
            "--set",
            &base,
            "--set",
            "region=us-east-1",
        ];
        for set in &sets {
            args.extend(["--set", set.as_str()]);
        }
        s.ok_with(&args, "", &[("SECRET", secret)]);
        let token = s
            .ok(&["gateway-token", "create", "--org", org, "--name", "apps"])
            .trim()
            .to_owned();
        let out = python(
            &s,
            BOTO3_SCRIPT,
            &[("GATEWAY", &gateway), ("AWS_BEARER_TOKEN_BEDROCK", &token)],
        );
        assert!(
            out.starts_with("converse: Hello from Bedrock 5\n"),
            "{org}: {out}"
        );
        org_tokens.insert(org, token);
    }
    // Temporary credentials without their access key id are not taken (they would pass for
    // a Bedrock API key and go upstream as they are).
    let refused = s.fails(
        &[
            "cred",
            "add",
            "--org",
            "apikey",
            "--provider",
            "bedrock",
            "--name",
            "no-id",
            "--api-key-env",
            "SECRET",
            "--set",
            "region=us-east-1",
        ],
        &[(
            "SECRET",
            &json!({ "SecretAccessKey": AWS_TEMP_SECRET, "SessionToken": AWS_SESSION_TOKEN })
                .to_string(),
        )],
    );
    assert!(refused.contains("need their access key id"), "{refused}");
    assert!(!refused.contains(AWS_TEMP_SECRET));
    let calls = mock.seen("bedrock").await;
    assert_eq!(calls.len(), 12, "{calls:?}");
    assert!(calls.iter().all(|c| c["ok"] == true), "{calls:?}");
    assert!(
        calls[4..8]
            .iter()
            .all(|c| c["headers"]["x-amz-security-token"] == AWS_SESSION_TOKEN)
    );
    assert!(
        calls[8..]
            .iter()
            .all(|c| c["headers"]["authorization"] == format!("Bearer {BEDROCK_API_KEY}"))
    );

    // Hostile requests on the new routes: out of Bedrock's runtime, out of the base path,
    // methods no API uses, bodies over the limit; and providers quoting what they were sent
    // (an access token, a session token), masked.
    let http = client();
    let send = |method: &str, path: &str, token: &str, body: Vec<u8>| {
        let req = http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = format!("{:?}", r.headers());
            (status, headers, r.text().await.unwrap())
        }
    };
    let temp_token = org_tokens["temp"].clone();
    let cases: [(&str, &str, &str, u16); 14] = [
        (
            "POST",
            "/gateway/bedrock/model/a%2F..%2Fb/converse",
            &gw,
            400,
        ),
        (
            "POST",
            "/gateway/bedrock/model/m/converse%2F..%2F..%2Fx",
            &gw,
            400,
        ),
        ("POST", "/gateway/bedrock/x%2Fy/model/m/converse", &gw, 400),
        ("GET", "/gateway/bedrock/model/m/converse", &gw, 404),
        ("POST", "/gateway/bedrock/foundation-models", &gw, 404),
        (
            "TRACE",
            "/gateway/vertex/v1beta1/publishers/google/models",
            &gw,
            405,
        ),
        (
            "POST",
            "/gateway/vertex/v1beta1/publishers/..%5c..%5cx:generateContent",
            &gw,
            400,
        ),
        (
            "POST",
            "/gateway/vertex/v1beta1/publishers/google/models/echo:generateContent",
            &gw,
            400,
        ),
        (
            "POST",
            "/gateway/bedrock/model/echo/converse",
            &temp_token,
            400,
        ),
        (
            "POST",
            "/gateway/azure_openai/openai/deployments/echo/chat/completions?api-version=2024-10-21",
            &gw,
            400,
        ),
        ("GET", "/gateway/vertex/v1/operations", &gw, 404),
        // Vertex AI's control plane is not lent out: inference calls only.
        (
            "GET",
            "/gateway/vertex/v1/projects/someone-else/locations",
            &gw,
            404,
        ),
        (
            "DELETE",
            "/gateway/vertex/v1/projects/acme-ml/locations/us-central1/endpoints/1",
            &gw,
            404,
        ),
        (
            "POST",
            "/gateway/vertex/v1/projects/acme-ml/locations/us-central1/endpoints/1:deployModel",
            &gw,
            404,
        ),
    ];
    for (method, path, token, want) in cases {
        let (status, headers, body) = send(method, path, token, b"{}".to_vec()).await;
        assert_eq!(status, want, "{method} {path}: {body}");
        for secret in [
            "ya29.mock",
            "entra.mock",
            AWS_SESSION_TOKEN,
            AWS_SECRET,
            "kwg_",
        ] {
            assert!(
                !body.contains(secret) && !headers.contains(secret),
                "{path}: {body}"
            );
        }
    }
    // A token limited to a model: a Vertex endpoint serves what is deployed on it, whatever the
    // body names, so it is refused unless the token names the endpoint.
    let limited = s
        .ok(&[
            "gateway-token",
            "create",
            "--org",
            "acme",
            "--name",
            "limited",
            "--models",
            "gemini-2.0-flash",
        ])
        .trim()
        .to_owned();
    let (status, _, body) = send(
        "POST",
        "/gateway/vertex/v1/projects/acme-ml/locations/us-central1/endpoints/123:predict",
        &limited,
        br#"{"model":"gemini-2.0-flash","instances":[]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // The project billed is the credential's: a client's x-goog-user-project and userProject
    // stay behind.
    let r = http
        .post(format!(
            "{}/gateway/vertex/v1beta1/publishers/google/models/gemini-2.0-flash:generateContent?userProject=other&%75serProject=other",
            server.url
        ))
        .bearer_auth(&limited)
        .header("x-goog-user-project", "other")
        .header("content-type", "application/json")
        .body(r#"{"contents":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = mock.seen("vertex").await.pop().unwrap();
    assert!(
        !last["path"].as_str().unwrap().contains("serProject")
            && last["headers"].get("x-goog-user-project").is_none(),
        "{last}"
    );

    // A declared body over the limit is refused before it is read (the bytes are not sent).
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = server.url.trim_start_matches("http://").to_owned();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /gateway/bedrock/model/m/converse HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {gw}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            11 << 20
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    // The answers were metered: Vertex's usageMetadata, Azure's usage, Bedrock's camelCase
    // usage and its event-stream metadata (the model from the path, which Bedrock's answers
    // do not name).
    let metrics = metrics(&server.url).await;
    for provider in ["vertex", "azure_openai", "bedrock"] {
        let input: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("keyward_gateway_tokens_total{")
                    && l.contains(&format!("provider=\"{provider}\""))
                    && l.contains("kind=\"input\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(input > 0, "{provider}: no input tokens metered\n{metrics}");
    }

    // `cred test` and discovery, for each.
    for (id, models) in [
        (&vertex, "gemini-2.0-flash"),
        (&azure, "gpt-4o-mini"),
        (&bedrock, "anthropic.claude-3-haiku-20240307-v1:0"),
    ] {
        let tested: Value = serde_json::from_str(&s.ok(&["cred", "test", id, "--json"])).unwrap();
        assert_eq!(tested["last_test_result"], "ok", "{id}: {tested}");
        let listed = s.ok(&["cred", "models", id]);
        assert!(listed.contains(models), "{id}: {listed}");
    }

    // A wrong secret: Bedrock refuses the signature, Entra ID the client; the SDKs get a
    // refusal in their own shape, and the key is set aside.
    s.ok_with(
        &[
            "cred",
            "update",
            &bedrock,
            "--rotate-key",
            "--api-key-env",
            "SECRET",
        ],
        "",
        &[("SECRET", "AWSCANARYwrongKEY/0123456789abcdefghijklmn")],
    );
    let out = python(
        &s,
        BOTO3_SCRIPT,
        &[
            ("GATEWAY", &format!("{}/gateway/bedrock", server.url)),
            ("AWS_BEARER_TOKEN_BEDROCK", &gw),
        ],
    );
    assert_eq!(out.trim(), "error: InvalidSignatureException 403");
    s.ok_with(
        &[
            "cred",
            "update",
            &azure,
            "--rotate-key",
            "--api-key-env",
            "SECRET",
        ],
        "",
        &[("SECRET", "ENTRACANARY~wrong.0123456789abcdef")],
    );
    let out = python(
        &s,
        AZURE_SCRIPT,
        &[
            ("GATEWAY", &format!("{}/gateway/azure_openai", server.url)),
            ("GW_TOKEN", &gw),
        ],
    );
    assert_eq!(out.trim(), "error: 401");
    let status: Value = serde_json::from_str(&s.ok(&["gateway", "status", "--json"])).unwrap();
    let aside = status.to_string();
    assert!(
        aside.contains(&bedrock) && aside.contains(&azure),
        "{aside}"
    );

    // Nothing secret anywhere: not in the log, the audit trail, nor the answers the SDKs
    // printed.
    let audit = s.ok(&["events", "list", "--limit", "500", "--json"]);
    let log = server.stop();
    let private_key_line = sa_json.split("\\n").nth(3).unwrap().to_owned();
    for (what, text) in [("log", &log), ("audit", &audit)] {
        for secret in [
            AWS_SECRET,
            AWS_TEMP_SECRET,
            AWS_SESSION_TOKEN,
            BEDROCK_API_KEY,
            "AWSCANARYwrongKEY",
            ENTRA_SECRET,
            "ENTRACANARY",
            private_key_line.as_str(),
            "ya29.mock",
            "entra.mock",
            gw.as_str(),
        ] {
            assert!(!text.contains(secret), "the {what} holds {secret}");
        }
    }
}
