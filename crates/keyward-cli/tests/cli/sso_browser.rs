//! Single sign-on (issue 22) in a real browser: Debian's Chromium, driven over WebDriver by
//! fantoccini, signs in to a real `keyward serve` through the real `oidc-provider` (npm, on
//! `localhost`: another site than Keyward on 127.0.0.1) by its own login and consent pages.
//! A person of `acme-keys` adds a credential and finds their email as its actor in the audit
//! log, signs out here and at the provider; a person no rule maps is refused with a page that
//! says so.
//!
//! Every page the browser rendered (also the ones that only move it on: a script the test adds
//! to every document keeps each page's markup as it loads), every cookie it holds, everything
//! `keyward serve` logged and every audit event are scanned for the client secret, the
//! authorization codes (read from the callback URLs the browser visited) and any JWT: none may
//! appear. axe-core audits Keyward's own pages (not the provider's).
//!
//! Skipped without Node 22 and the provider's packages (`KEYWARD_TEST_REQUIRE_OIDC=1` makes
//! that a failure) or without `chromium` and `chromedriver` (`KEYWARD_TEST_REQUIRE_BROWSER=1`).
//! With `KEYWARD_SCREENSHOT_DIR` set, it saves `sso-*.png` there (`docs/screenshots/` holds the
//! last ones).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use keyward_testkit::oidc::{CLIENT_ID, CLIENT_SECRET, Provider};
use serde_json::{Value, json};

use crate::browser::{Browser, accessible, status_with_cookie};
use crate::sandbox::Sandbox;

/// The key bob adds through the console.
const CANARY: &str = "sk-proj-SSOBROWSERCANARY0123456789abcdWXYZ";

/// Where the script the test adds to every document keeps what each page was.
const SEEN: &str = "keyward-test-seen";

/// Run in every document before its own scripts: once parsed, the page's address and markup
/// go to the origin's local storage, so that a page that moves the browser on at once (the
/// callback's, sign-out's) is scanned too.
const RECORDER: &str = "document.addEventListener('DOMContentLoaded', () => {
  try {
    const seen = JSON.parse(localStorage.getItem('keyward-test-seen') || '[]');
    seen.push({ url: location.href, html: document.documentElement.outerHTML });
    localStorage.setItem('keyward-test-seen', JSON.stringify(seen));
  } catch (e) {}
});";

/// A Chrome DevTools Protocol command, through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp(Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(self.0.to_string()))
    }
}

async fn cdp(c: &Client, cmd: &str, params: Value) -> Value {
    c.issue_cmd(Cdp(json!({ "cmd": cmd, "params": params })))
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// `keyward serve` on an address chosen before it starts (the identity file names its
/// callback), with all it prints kept; killed when dropped.
struct Serve {
    child: Child,
    printed: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Serve {
    fn start(s: &Sandbox, listen: SocketAddr, identity: &std::path::Path) -> Self {
        let listen = listen.to_string();
        let mut child = s
            .command(&["serve", "--listen", &listen])
            .env("KEYWARD_LOG", "debug")
            .env("KEYWARD_IDENTITY_CONFIG", identity)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let printed: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut readers = Vec::new();
        let out = BufReader::new(child.stdout.take().unwrap());
        let err = BufReader::new(child.stderr.take().unwrap());
        for lines in [
            Box::new(out) as Box<dyn std::io::BufRead + Send>,
            Box::new(err),
        ] {
            let sink = printed.clone();
            readers.push(std::thread::spawn(move || {
                for line in lines.lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            }));
        }
        let me = Self {
            child,
            printed,
            readers,
        };
        for _ in 0..500 {
            if me.said("keyward listening on ") {
                return me;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("serve did not listen: {:?}", me.printed.lock().unwrap());
    }

    fn said(&self, text: &str) -> bool {
        self.printed
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(text))
    }

    /// Stops it with SIGTERM; answers all it printed.
    fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(self.child.wait().unwrap().success());
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        self.printed.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The identity file: the console signs in through `provider`; `acme-keys` are `org_admin` of
/// acme, `platform-admins` admins.
fn identity_yaml(provider: &Provider, base: &str, secret_file: &std::path::Path) -> String {
    format!(
        "oidc:
  issuer: {issuer}
  client_id: {CLIENT_ID}
  client_secret_file: {secret}
  redirect_url: {base}/ui/sso/callback
  post_logout_redirect_url: {base}/ui/login
  scopes: [openid, email, groups]
  id_token_algs: [RS256]
  rules:
    - when: {{ groups: platform-admins }}
      grant: admin
    - when: {{ groups: acme-keys }}
      grant: {{ role: org_admin, org: acme }}
",
        issuer = provider.issuer,
        secret = secret_file.display(),
    )
}

/// The browser's walk: where it has been and what it saw.
struct Walk<'a> {
    c: &'a Client,
    keyward: String,
    issuer: String,
    shots: Option<PathBuf>,
    /// Every page's address and markup, as WebDriver saw it.
    pages: Vec<(String, String)>,
    /// Every cookie seen, as text.
    cookies: Vec<String>,
}

impl Walk<'_> {
    /// Whether `url` is on the site whose base (scheme, host and port) is `base`.
    fn on(url: &reqwest::Url, base: &str) -> bool {
        url.as_str()
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    async fn url(&self) -> reqwest::Url {
        self.c.current_url().await.unwrap()
    }

    /// The page shown now: kept for the scan, with its cookies; audited by axe-core if it is
    /// Keyward's.
    async fn look(&mut self) {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("body"))
            .await
            .unwrap();
        let url = self.url().await;
        let html = self.c.source().await.unwrap();
        self.pages.push((url.to_string(), html));
        for cookie in self.c.get_all_cookies().await.unwrap() {
            self.cookies.push(cookie.to_string());
        }
        // Keyward's own pages pass axe-core; not the provider's, nor a page of Keyward's that
        // is already moving the browser on (the recorder keeps it for the scan).
        if Self::on(&url, &self.keyward) && !self.exists("meta[http-equiv=refresh]").await {
            accessible(self.c).await;
        }
    }

    /// Every cookie the browser holds, of every site (not only the page's).
    async fn all_cookies(&mut self) -> Vec<Value> {
        let all = cdp(self.c, "Storage.getCookies", json!({})).await;
        let all = all["cookies"].as_array().cloned().unwrap_or_default();
        self.cookies.extend(all.iter().map(Value::to_string));
        all
    }

    async fn go(&mut self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.keyward))
            .await
            .unwrap();
        self.look().await;
    }

    /// Waits (at most 15 s) until the browser is on a page `at` accepts, and looks at it.
    async fn until(&mut self, what: &str, at: impl Fn(&reqwest::Url) -> bool) {
        for _ in 0..300 {
            if let Ok(url) = self.c.current_url().await
                && at(&url)
                && self.c.find(Locator::Css("body")).await.is_ok()
            {
                self.look().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not {what}: {}", self.url().await);
    }

    /// Until the browser shows Keyward's page at `path` (the path only).
    async fn until_keyward(&mut self, path: &str) {
        let keyward = self.keyward.clone();
        self.until(&format!("on {path}"), |url| {
            Self::on(url, &keyward) && url.path() == path
        })
        .await;
    }

    async fn exists(&self, css: &str) -> bool {
        !self.c.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn type_in(&self, css: &str, text: &str) {
        let field = self.c.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks what leads to another page and waits until the old page is gone.
    async fn click_away(&mut self, css: &str) {
        let old = self.c.find(Locator::Css("html")).await.unwrap();
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
        for _ in 0..400 {
            if old.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{css} led nowhere");
    }

    async fn screenshot(&self, name: &str) {
        if let Some(dir) = &self.shots {
            std::fs::create_dir_all(dir).unwrap();
            let png = self.c.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// From Keyward's sign-in page, through the provider's login (as `user`, any password)
    /// and consent pages, until the browser is back on Keyward. `shot` names a screenshot of
    /// the provider's login page.
    async fn sign_in_at_provider(&mut self, user: &str, shot: Option<&str>) {
        self.go("/ui/login").await;
        self.click_away("a.button.sso").await;
        let issuer = self.issuer.clone();
        self.until("at the provider", |url| Self::on(url, &issuer))
            .await;
        let mut logged_in = false;
        for _ in 0..4 {
            if Self::on(&self.url().await, &self.keyward) {
                break;
            }
            if self.exists("input[name=login]").await {
                assert!(!logged_in, "the provider asks to sign in twice");
                if let Some(shot) = shot {
                    self.screenshot(shot).await;
                }
                self.type_in("input[name=login]", user).await;
                self.type_in("input[name=password]", "any password at all")
                    .await;
                logged_in = true;
            } else {
                assert!(
                    self.exists("input[name=prompt][value=consent]").await,
                    "neither a login nor a consent page: {}",
                    self.c.source().await.unwrap()
                );
            }
            self.click_away("form button[type=submit]").await;
            let (keyward, issuer) = (self.keyward.clone(), self.issuer.clone());
            self.until("on a page", |url| {
                Self::on(url, &keyward) || Self::on(url, &issuer)
            })
            .await;
        }
        assert!(logged_in, "the provider did not ask who signs in");
    }

    /// What the recorder kept on the origin of the page shown now.
    async fn recorded(&self) -> Vec<(String, String)> {
        let kept = self
            .c
            .execute(
                "return localStorage.getItem(arguments[0]) || '[]'",
                vec![json!(SEEN)],
            )
            .await
            .unwrap();
        let kept: Value = serde_json::from_str(kept.as_str().unwrap()).unwrap();
        kept.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["url"].as_str().unwrap().to_owned(),
                    p["html"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// Every JWT in `text`: three base64url segments separated by dots whose first is a JSON
/// object with an `alg` (so that `eyJ` in other words is not taken for one).
fn jwts(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("eyJ") {
        let start = from + at;
        from = start + 3;
        if start > 0 && is_b64(b[start - 1]) {
            continue;
        }
        let mut segments = Vec::new();
        let mut end = start;
        loop {
            let begin = end;
            while end < b.len() && is_b64(b[end]) {
                end += 1;
            }
            segments.push(&text[begin..end]);
            if segments.len() == 3 || end >= b.len() || b[end] != b'.' {
                break;
            }
            end += 1;
        }
        if segments.len() != 3 || segments[1].is_empty() {
            continue;
        }
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segments[0].trim_end_matches('='))
            .ok()
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok());
        if header.is_some_and(|h| h.get("alg").is_some()) {
            found.push(text[start..end].to_owned());
            from = end;
        }
    }
    found
}

/// The `code` of an authorization response's URL.
fn code_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
}

/// A person signs in through the provider's pages in Chromium, works as themselves, signs
/// out here and there; a person no rule maps is refused; nothing secret of the protocol shows
/// anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_the_identity_provider_in_chromium() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    // The scan below finds a token the provider signs, in any surroundings.
    let sample = provider.sign(json!({"sub": "bob", "aud": CLIENT_ID})).await;
    assert_eq!(
        jwts(&format!("id_token={sample}&x \"{sample}\" eyJnot.a.token")),
        vec![sample.clone(), sample]
    );

    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let listen = keyward_testkit::closed_addr();
    let base = format!("http://{listen}");
    let secret_file = s.scratch().join("oidc-client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let identity = s.scratch().join("identity.yaml");
    std::fs::write(&identity, identity_yaml(&provider, &base, &secret_file)).unwrap();
    let serve = Serve::start(&s, listen, &identity);
    provider
        .register_client(
            &format!("{base}/ui/sso/callback"),
            &format!("{base}/ui/login"),
        )
        .await;
    let c = &browser.client;
    cdp(
        c,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": RECORDER }),
    )
    .await;
    let mut w = Walk {
        c,
        keyward: base.clone(),
        issuer: provider.issuer.clone(),
        shots: std::env::var_os("KEYWARD_SCREENSHOT_DIR").map(PathBuf::from),
        pages: Vec::new(),
        cookies: Vec::new(),
    };

    // 1. The sign-in page offers single sign-on; bob signs in at the provider, on its own
    // pages, and comes back signed in: the session cookie is SameSite=Strict, and the page
    // the callback answers with moves the browser on from Keyward's own site.
    w.go("/ui/login").await;
    assert_eq!(w.text("a.button.sso").await, "Sign in with single sign-on");
    w.screenshot("sso-login").await;
    w.sign_in_at_provider("bob", Some("sso-provider-login"))
        .await;
    w.until_keyward("/ui/credentials").await;
    let who = w.text("nav .who").await;
    assert!(who.contains("bob@example.test"), "{who}");
    let session = c.get_named_cookie("kw_session").await.unwrap();
    assert_eq!(
        session.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    assert_eq!(session.http_only(), Some(true));
    let session = format!("kw_session={}", session.value());
    w.all_cookies().await;

    // 2. As org_admin of acme he adds a credential, and the audit log names him.
    w.go("/ui/credentials/new").await;
    assert_eq!(
        c.find(Locator::Css("#credential-form input[name=org]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("acme")
    );
    w.type_in("#name", "bob-made").await;
    w.type_in("#api_key", CANARY).await;
    w.click_away("#credential-form button[type=submit]").await;
    let keyward = base.clone();
    w.until("on the new credential", |url| {
        Walk::on(url, &keyward)
            && url.path().starts_with("/ui/credentials/")
            && url.path() != "/ui/credentials/new"
    })
    .await;
    let page = w.text("body").await;
    assert!(
        page.contains("encrypted and will never be displayed again") && page.contains("sk-...WXYZ"),
        "{page}"
    );
    w.go("/ui/credentials?org=acme").await;
    assert!(w.exists("tr[data-credential='bob-made']").await);
    w.screenshot("sso-signed-in").await;
    w.go("/ui/events").await;
    // Each row's cells, as shown; the actor's cell also as its title (the actor recorded).
    let rows = c
        .execute(
            "return [...document.querySelectorAll('table.events tbody tr')].map(tr => \
             [...tr.cells].map(td => td.textContent.trim()).concat([tr.cells[2].title]))",
            vec![],
        )
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    let by_bob = |action: &str| {
        rows.iter()
            .find(|r| r[3] == action && r[7] == "bob@example.test (sso)")
            .unwrap_or_else(|| panic!("no {action} by bob in the audit log: {rows:?}"))
    };
    let created = by_bob("create");
    assert!(
        created[4].as_str().unwrap().starts_with("credential:"),
        "{created}"
    );
    // The page names him by his email (his own events are shown by his name).
    assert_eq!(created[2], "bob@example.test", "{created}");
    by_bob("ui_sign_in");
    w.screenshot("sso-audit-log").await;

    // 3. Signing out ends the session here and sends the browser to the provider's
    // end-session page; it asks, he confirms, and it sends him back to the sign-in page.
    assert_eq!(
        status_with_cookie(&format!("{base}/ui/credentials"), &session).await,
        200
    );
    w.click_away("nav form[action='/ui/logout'] button").await;
    let issuer = provider.issuer.clone();
    w.until("at the provider's end-session page", |url| {
        Walk::on(url, &issuer)
    })
    .await;
    assert!(w.text("body").await.contains("Sign out"));
    w.click_away("#logout-yes").await;
    w.until_keyward("/ui/login").await;
    assert_eq!(
        status_with_cookie(&format!("{base}/ui/credentials"), &session).await,
        303,
        "the ended session's cookie no longer works"
    );
    w.go("/ui/credentials").await;
    w.until_keyward("/ui/login").await;
    assert!(
        !w.all_cookies()
            .await
            .iter()
            .any(|c| c["name"] == "kw_session"),
        "the session cookie is gone"
    );

    // 4. carol (no group any rule maps) signs in at the provider (which asks again: bob's
    // session there ended) and gets a page that says so, and no session. Her email is not
    // verified, so it names her nowhere: her subject does.
    w.sign_in_at_provider("carol", None).await;
    w.until_keyward("/ui/sso/callback").await;
    let page = w.text("main").await;
    assert!(
        page.contains("at the identity provider as carol,")
            && page.contains("no rule of this server gives that account access")
            && !page.contains("carol@example.test"),
        "{page}"
    );
    w.screenshot("sso-refused").await;
    assert!(
        !w.all_cookies()
            .await
            .iter()
            .any(|c| c["name"] == "kw_session"),
        "a refused person has no session"
    );
    w.go("/ui/credentials").await;
    w.until_keyward("/ui/login").await;

    // 5. Everything the browser saw: the recorder's pages of both sites (the ones that moved
    // on at once among them), and the callbacks' codes.
    let mut pages = w.recorded().await;
    w.c.goto(&format!(
        "{}/.well-known/openid-configuration",
        provider.issuer
    ))
    .await
    .unwrap();
    pages.extend(w.recorded().await);
    let callbacks: Vec<&String> = pages
        .iter()
        .map(|(url, _)| url)
        .filter(|url| url.starts_with(&format!("{base}/ui/sso/callback")))
        .collect();
    let codes: Vec<String> = callbacks.iter().filter_map(|u| code_of(u)).collect();
    assert_eq!(codes.len(), 2, "bob's and carol's callbacks: {callbacks:?}");
    for moved_on in [
        "Signed in. Taking you to the console.",
        "Signed out of Keyward.",
    ] {
        assert!(
            pages.iter().any(|(_, html)| html.contains(moved_on)),
            "the page that says {moved_on:?} was recorded"
        );
    }
    pages.extend(w.pages.iter().cloned());
    let cookies = w.cookies.join("\n");

    // The audit trail names the refusal too.
    let events = s.ok(&["events", "list", "--limit", "1000", "--json"]);
    let trail: Value = serde_json::from_str(&events).unwrap();
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "ui_sign_in"
                && e["actor"] == "carol (sso)"
                && e["outcome"] == "failure"),
        "{events}"
    );
    drop(browser);
    let log = serve.stop();
    let cli = String::from_utf8_lossy(&s.transcript).into_owned();

    // 6. None of the protocol's secrets (nor the key) anywhere.
    let mut places: Vec<(String, &str)> = pages
        .iter()
        .map(|(url, html)| (format!("the page {url}"), html.as_str()))
        .collect();
    places.push(("a cookie".into(), &cookies));
    places.push(("the server's log".into(), &log));
    places.push(("the audit log".into(), &events));
    places.push(("the CLI's output".into(), &cli));
    for (place, text) in &places {
        for secret in [CLIENT_SECRET, CANARY, "SSOBROWSERCANARY"]
            .into_iter()
            .chain(codes.iter().map(String::as_str))
        {
            assert!(!text.contains(secret), "{secret} in {place}:\n{text}");
        }
        let found = jwts(text);
        assert!(found.is_empty(), "a JWT in {place}: {found:?}");
    }
    assert!(pages.len() > 15, "pages scanned: {}", pages.len());
    drop(provider);
    s.cleanup().await;
}
