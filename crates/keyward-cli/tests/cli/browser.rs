//! The web console in a real browser: Debian's Chromium, driven over WebDriver (its
//! `chromedriver`) by fantoccini, against a real `keyward serve` on port 0, on SQLite and on
//! PostgreSQL. It walks the "Provider Credentials" admin guide by clicking and typing as a
//! person would, and scans every page it renders for the keys it planted.
//!
//! Without `chromium` and `chromedriver` on PATH the suite is skipped, unless
//! `KEYWARD_TEST_REQUIRE_BROWSER=1` (CI) makes that a failure. With `KEYWARD_SCREENSHOT_DIR`
//! set, it saves screenshots of the main pages there (`docs/screenshots/` holds the last ones).
//! With `KEYWARD_TEST_AXE` naming axe-core's `axe.min.js` (npm `axe-core`; CI installs it),
//! every page it renders is audited by axe-core and a critical or serious violation fails the
//! test; with `KEYWARD_TEST_REQUIRE_BROWSER=1` the file must be there.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use keyward_testkit::{MockProvider, MockUsage, Reply};

use crate::gateway::Server;
use crate::sandbox::Sandbox;

/// The key planted through the console (its hint is `sk-...WXYZ`).
const CANARY: &str = "sk-proj-BROWSERCANARY0123456789abcdefWXYZ";
/// The key planted through the CLI, in another organization.
const CANARY_CLI: &str = "sk-proj-CLICANARY00112233445566778899wxQR";

/// Chromium's flags for a headless run in a container, and a profile of the run's own.
fn flags(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,860",
    ]
    .iter()
    .map(|f| (*f).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// axe-core's script, when `KEYWARD_TEST_AXE` names it (required with a required browser).
fn axe_source() -> Option<String> {
    static AXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let required = std::env::var("KEYWARD_TEST_REQUIRE_BROWSER").as_deref() == Ok("1");
        match std::env::var_os("KEYWARD_TEST_AXE") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("KEYWARD_TEST_AXE={}: {e}", path.to_string_lossy())),
            ),
            None => {
                assert!(
                    !required,
                    "KEYWARD_TEST_REQUIRE_BROWSER=1 but KEYWARD_TEST_AXE does not name axe-core's \
                     axe.min.js (npm install axe-core)"
                );
                None
            }
        }
    })
    .clone()
}

/// axe-core's audit of the page `c` shows (WCAG 2 A and AA rules), when `KEYWARD_TEST_AXE`
/// names it: no critical or serious violation.
pub(crate) async fn accessible(c: &Client) {
    let Some(axe) = axe_source() else { return };
    c.execute(&axe, vec![]).await.unwrap();
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then(r => done(r.violations
                 .filter(v => v.impact === 'critical' || v.impact === 'serious')
                 .map(v => v.impact + ' ' + v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(found, json!([]), "axe-core on {}", url.path());
}

/// A Chromium under WebDriver; the driver process ends with it.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` means "skip": no browser here, and none required.
    pub(crate) async fn start() -> Option<Self> {
        let (Some(chromium), Some(driver)) = (on_path("chromium"), on_path("chromedriver")) else {
            assert!(
                std::env::var("KEYWARD_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "KEYWARD_TEST_REQUIRE_BROWSER=1 but chromium or chromedriver is not on PATH \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping the browser suite: chromium or chromedriver is not on PATH");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own, which the Chromium it starts joins: dropping the
        // browser ends them all.
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": flags(profile.path()) }),
        );
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Some(Self {
                        client,
                        driver,
                        _profile: profile,
                    });
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start Chromium: {last:?}");
    }
}

/// Killing chromedriver alone would leave its Chromium running: the whole group goes.
impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A `keyward serve` of the sandbox under a new master key, on a port of its own (stopped
/// when dropped), and the admin token it printed. It runs an audit policy, as production
/// does: its events (the policy set, each gateway request) are on the pages walked.
fn serve(s: &mut Sandbox) -> (Server, String) {
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let server = Server::start(
        s,
        &["--audit-retention-days", "365", "--audit-log-all-access"],
        &[],
    );
    let admin = server.admin.clone().expect("serve printed an admin token");
    (server, admin)
}

/// A provider on 127.0.0.1 that knows one key, and a page of another site that posts a form
/// to the console (a cross-site request forgery): the mock, and its address as another site
/// than the console's 127.0.0.1.
async fn provider_and_attacker(console: &str, target: &str) -> (MockProvider, String) {
    let form = format!(
        "<!doctype html><form id=f method=post action=\"{console}/ui/credentials/{target}/deactivate\"></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    // Answers report enough tokens that their cost shows in the console's spend charts.
    let mock = MockProvider::builder()
        .key(CANARY)
        .usage(MockUsage {
            input: 120_000,
            output: 30_000,
            cached: 20_000,
        })
        .start()
        .await;
    mock.on_path("/evil", Reply::ok().html(form));
    let site = format!("http://localhost:{}", mock.addr().port());
    (mock, site)
}

/// The console as one person sees it: a browser, and the pages it has rendered.
struct Person<'a> {
    b: &'a Browser,
    base: String,
    shots: Option<PathBuf>,
    pages: usize,
}

impl Person<'_> {
    fn c(&self) -> &Client {
        &self.b.client
    }

    async fn go(&mut self, path: &str) {
        self.c()
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
        self.scan().await;
    }

    /// The page now shown must hold no planted key: not in its markup, not in a form value;
    /// and axe-core must find nothing critical or serious on it.
    async fn scan(&mut self) {
        let html = self.c().source().await.unwrap();
        for secret in [CANARY, CANARY_CLI, "BROWSERCANARY", "CLICANARY"] {
            assert!(!html.contains(secret), "a key on a page: {html}");
        }
        self.pages += 1;
        self.accessible().await;
    }

    /// Nothing on the page is wider than the window lets it be: every scrolling region and
    /// the page itself show all their columns without a horizontal scroll.
    async fn fits_the_window(&self, path: &str) {
        let wide = self
            .c()
            .execute(
                "const out = [];
                 const check = (el, what) => { if (el.scrollWidth > el.clientWidth + 1) out.push(what + ' ' + el.scrollWidth + '>' + el.clientWidth); };
                 check(document.documentElement, 'page');
                 document.querySelectorAll('main, .scroll').forEach((el, i) => check(el, el.tagName + '#' + i + (el.getAttribute('aria-label') || '')));
                 return out;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(wide, json!([]), "{path} overflows at this width");
    }

    /// axe-core's audit of the page shown: no critical or serious violation.
    async fn accessible(&self) {
        accessible(self.c()).await;
    }

    async fn text(&self, css: &str) -> String {
        self.c()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn body(&mut self) -> String {
        self.scan().await;
        self.text("body").await
    }

    async fn click(&mut self, css: &str) {
        self.c()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks what leads to another page, and waits until the old page is gone.
    async fn submit(&mut self, css: &str) {
        let old = self.c().find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                self.c()
                    .wait()
                    .at_most(Duration::from_secs(10))
                    .for_element(Locator::Css("body"))
                    .await
                    .unwrap();
                self.scan().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{css} led nowhere");
    }

    async fn type_in(&self, css: &str, text: &str) {
        let field = self.c().find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn value(&self, css: &str) -> String {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn exists(&self, css: &str) -> bool {
        !self
            .c()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Waits for the browser to be on a page whose path starts with `path`.
    async fn on(&mut self, path: &str) {
        for _ in 0..100 {
            let url = self.c().current_url().await.unwrap();
            if url.path().starts_with(path) {
                self.scan().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "not on {path}: {}",
            self.c().current_url().await.unwrap().as_str()
        );
    }

    async fn screenshot(&self, name: &str) {
        if let Some(dir) = &self.shots {
            std::fs::create_dir_all(dir).unwrap();
            let png = self.c().screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// A screenshot of one element (`css`), when screenshots are kept.
    async fn screenshot_of(&self, css: &str, name: &str) {
        if let Some(dir) = &self.shots {
            let el = self.c().find(Locator::Css(css)).await.unwrap();
            let png = el.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    async fn sign_in(&mut self, token: &str) {
        self.go("/ui/").await;
        self.on("/ui/login").await;
        self.type_in("#token", token).await;
        self.submit("button[type=submit]").await;
        self.on("/ui/credentials").await;
    }

    async fn sign_out(&mut self) {
        self.submit("nav form[action='/ui/logout'] button").await;
        self.on("/ui/login").await;
    }

    /// The row of the credential named `name`.
    fn row(name: &str) -> String {
        format!("tr[data-credential='{name}']")
    }
}

/// A GET with a cookie, outside the browser; the status (redirects not followed).
pub(crate) async fn status_with_cookie(url: &str, cookie: &str) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn walk_the_admin_guide(mut s: Sandbox) {
    let Some(browser) = Browser::start().await else {
        s.cleanup().await;
        return;
    };
    let (server, admin) = serve(&mut s);
    s.ok(&["org", "create", "acme"]);
    s.ok(&["org", "create", "globex"]);
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "globex",
            "--provider",
            "openai",
            "--name",
            "globex-prod",
        ],
        &format!("{CANARY_CLI}\n"),
        &[],
    );
    let viewer = s.json(&[
        "token", "create", "--role", "viewer", "--org", "acme", "--name", "auditor", "--json",
    ])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut me = Person {
        b: &browser,
        base: server.url.clone(),
        shots: std::env::var_os("KEYWARD_SCREENSHOT_DIR").map(PathBuf::from),
        pages: 0,
    };

    // Sign in with the printed admin token.
    me.go("/ui/credentials").await;
    me.on("/ui/login").await;
    me.screenshot("login").await;
    me.sign_in(&admin).await;
    assert!(me.body().await.contains("Provider Credentials"));

    // Add Provider Credential, as the guide shows: first a key in the wrong format.
    me.submit("a[href^='/ui/credentials/new']").await;
    me.on("/ui/credentials/new").await;
    me.c()
        .find(Locator::Css("#choose select[name=org]"))
        .await
        .unwrap()
        .select_by_value("acme")
        .await
        .unwrap();
    // Choosing reloads the form for that organization (the page's script submits it).
    for _ in 0..100 {
        if me.value("#credential-form input[name=org]").await == "acme" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me.value("#credential-form input[name=org]").await, "acme");
    let (_provider, mock) = provider_and_attacker(&server.url, "pending").await;
    me.type_in("#name", "openai-prod").await;
    me.type_in("#api_key", "not-an-openai-key-at-all").await;
    me.type_in("#base_url", &format!("{mock}/v1")).await;
    me.submit("#credential-form button[type=submit]").await;
    let page = me.body().await;
    assert!(page.contains("Store it anyway"), "{page}");
    assert!(me.exists(".field-error").await, "{page}");
    // What was typed is kept, except the key.
    assert_eq!(me.value("#name").await, "openai-prod");
    assert_eq!(me.value("#api_key").await, "");
    me.screenshot("add-credential-error").await;
    me.type_in("#api_key", CANARY).await;
    me.submit("#credential-form button[type=submit]").await;
    me.on("/ui/credentials/").await;
    let page = me.body().await;
    assert!(
        page.contains("encrypted and will never be displayed again"),
        "{page}"
    );
    assert!(page.contains("sk-...WXYZ"), "{page}");
    let id = me
        .c()
        .current_url()
        .await
        .unwrap()
        .path()
        .trim_start_matches("/ui/credentials/")
        .to_owned();

    // Test, against the provider on 127.0.0.1.
    me.submit("form[action$='/test'] button").await;
    me.on(&format!("/ui/credentials/{id}")).await;
    assert_eq!(me.text(".test-result strong").await, "ok");
    me.screenshot("credential").await;
    // Models: the provider's own list, through the credential's base URL.
    me.submit("form[action$='/models'] button").await;
    me.on(&format!("/ui/credentials/{id}/models")).await;
    assert!(me.text("ul.models").await.contains("gpt-4o-mini"));
    assert!(!me.body().await.contains(CANARY));
    me.screenshot("credential-models").await;

    // A gateway token made in the console, shown once with the SDK snippet; requests through
    // the gateway then show which key served them, and a chart.
    me.go("/ui/gateway-tokens?org=acme").await;
    me.type_in("#gname", "notebook").await;
    me.c()
        .find(Locator::Css("#gorg"))
        .await
        .unwrap()
        .select_by_value("acme")
        .await
        .unwrap();
    me.submit("form[action='/ui/gateway-tokens'] button[type=submit]")
        .await;
    let gateway_token = me.text("#made-token").await;
    assert!(gateway_token.starts_with("kwg_"), "{gateway_token}");
    assert!(
        me.text("#made-snippet")
            .await
            .contains("/gateway/openai/v1")
    );
    me.screenshot("gateway-token").await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let resp = http
            .get(format!("{}/gateway/openai/models", server.url))
            .bearer_auth(&gateway_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-keyward-credential"].to_str().unwrap(),
            id.as_str()
        );
    }
    // Two chat completions (at $0.0345 each), and a budget of $1 a month for acme.
    for _ in 0..2 {
        let resp = http
            .post(format!("{}/gateway/openai/v1/chat/completions", server.url))
            .bearer_auth(&gateway_token)
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let set = http
        .post(format!("{}/api/v1/orgs/acme/budgets", server.url))
        .bearer_auth(&admin)
        .json(&json!({"limit_usd": "1.00", "period": "month"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    let mut usage = String::new();
    for _ in 0..100 {
        me.go("/ui/usage?org=acme").await;
        usage = me.body().await;
        if usage.contains("openai-prod") && usage.contains("$0.069000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        usage.contains("openai-prod") && usage.contains("notebook"),
        "{usage}"
    );
    assert!(me.exists("svg rect.ok").await);
    // Spend: this month's cost by model against the budget's line, tokens by day, the table.
    assert!(me.exists("#spend svg rect.s0").await, "the spend chart");
    assert!(
        me.exists("#spend svg line.budget").await,
        "the budget's line"
    );
    assert!(
        usage.contains("of the monthly budget of $1.00 used (6%)"),
        "{usage}"
    );
    assert!(
        usage.contains("gpt-4o-mini") && usage.contains("$0.069000"),
        "{usage}"
    );
    me.screenshot("usage").await;
    me.screenshot_of("#spend", "spend").await;
    // The table sorts by a column's link, and downloads as CSV.
    me.click("#spend th[aria-sort] a[href*='sort=requests']")
        .await;
    assert_eq!(
        me.c()
            .find(Locator::Css("#spend th[aria-sort=descending]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "REQUESTS ↓"
    );
    let csv_href = me
        .c()
        .find(Locator::Css("#spend a[download]"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let cookie = me.c().get_named_cookie("kw_session").await.unwrap();
    let csv = http
        .get(format!("{}{csv_href}", server.url))
        .header("cookie", format!("kw_session={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("day,provider,model,requests,")
            && csv.contains(",openai,gpt-4o-mini,2,240000,60000,40000,0,0.069000,0,0"),
        "{csv}"
    );
    me.go(&format!("/ui/credentials/{id}")).await;
    assert!(me.exists("svg rect.ok").await, "the credential's own chart");
    // Revoking asks first; cancelling keeps the token, confirming ends it at once.
    me.go("/ui/gateway-tokens?org=acme").await;
    let token_row = "tr[data-token='notebook']";
    me.click(&format!("{token_row} form[data-confirm] button"))
        .await;
    assert_eq!(me.text("#confirm h2").await, "Revoke gateway token?");
    me.click("#confirm button[value=cancel]").await;
    assert!(me.exists(&format!("{token_row} .badge.active")).await);
    me.click(&format!("{token_row} form[data-confirm] button"))
        .await;
    me.submit("#confirm button.danger").await;
    assert_eq!(me.text(&format!("{token_row} .badge")).await, "revoked");
    let resp = http
        .get(format!("{}/gateway/openai/models", server.url))
        .bearer_auth(&gateway_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    me.go("/ui/events").await;
    // The page does not read the whole log; the chain is verified on request.
    assert!(me.text("#verify").await.contains("not been verified"));
    me.submit(".verify-row button").await;
    me.on("/ui/events").await;
    assert!(me.text("#verify").await.contains("verified up to event #"));
    assert!(me.body().await.contains("The audit chain verifies"));
    me.screenshot("audit-log").await;
    me.go(&format!("/ui/credentials/{id}")).await;

    // Edit: the key field is empty and says how to keep it.
    me.submit("a[href$='/edit']").await;
    me.on(&format!("/ui/credentials/{id}/edit")).await;
    assert_eq!(me.value("#api_key").await, "");
    assert!(
        me.body()
            .await
            .contains("Leave empty to keep the current key; a new key must be given in full.")
    );
    me.type_in("#priority", "5").await;
    me.submit("#credential-form button[type=submit]").await;
    me.on(&format!("/ui/credentials/{id}")).await;
    assert!(me.body().await.contains("Credential updated."));
    assert!(me.body().await.contains("5 / 1"));
    // A stale form: someone else changes the credential meanwhile.
    me.go(&format!("/ui/credentials/{id}/edit")).await;
    s.ok(&["cred", "update", &id, "--priority", "7"]);
    me.type_in("#priority", "9").await;
    me.submit("#credential-form button[type=submit]").await;
    let page = me.body().await;
    assert!(page.contains("changed since you opened"), "{page}");
    assert_eq!(
        me.value("#priority").await,
        "7",
        "the form shows what is stored"
    );

    // Deactivate: the gray badge; Activate: the green one.
    me.go("/ui/credentials?org=acme").await;
    let row = Person::row("openai-prod");
    me.submit(&format!("{row} form[action$='/deactivate'] button"))
        .await;
    me.on("/ui/credentials").await;
    assert_eq!(me.text(&format!("{row} .badge.inactive")).await, "Inactive");
    me.submit(&format!("{row} form[action$='/activate'] button"))
        .await;
    me.on("/ui/credentials").await;
    assert_eq!(me.text(&format!("{row} .badge.active")).await, "Active");
    // The gateway's use of the key counts as its last use.
    assert_ne!(
        me.text(&format!("{row} td[title]:not(.num)")).await,
        "never"
    );
    me.screenshot("credentials").await;

    // The organization filter, kept in the URL.
    me.c()
        .find(Locator::Css(".filters select[name=org]"))
        .await
        .unwrap()
        .select_by_value("globex")
        .await
        .unwrap();
    for _ in 0..100 {
        if me
            .c()
            .current_url()
            .await
            .unwrap()
            .query()
            .is_some_and(|q| q.starts_with("org=globex&provider="))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = me.body().await;
    assert!(
        page.contains("globex-prod") && !page.contains("openai-prod"),
        "{page}"
    );

    // A form from another site is refused, and changes nothing.
    let (_attacker, attack) = provider_and_attacker(&server.url, &id).await;
    me.c().goto(&format!("{attack}/evil")).await.unwrap();
    for _ in 0..100 {
        if me
            .c()
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&server.url)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(me.body().await.contains("cross-site request refused"));
    me.go(&format!("/ui/credentials/{id}")).await;
    assert!(me.exists(".badge.active").await);

    // Delete: cancelling once keeps it; confirming deletes it.
    me.go("/ui/credentials?org=acme").await;
    me.click(&format!("{row} a[data-confirm]")).await;
    let words = me.text("#confirm .confirm-text").await;
    assert!(words.contains("openai-prod"), "{words}");
    assert!(me.text("#confirm").await.contains("Consider deactivating"));
    me.screenshot("delete-confirm").await;
    me.click("#confirm button[value=cancel]").await;
    assert!(me.exists(&row).await);
    me.click(&format!("{row} a[data-confirm]")).await;
    me.submit("#confirm button.danger").await;
    for _ in 0..100 {
        if !me.exists(&row).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(me.body().await.contains("Credential deleted."));
    assert!(!me.exists(&row).await);

    // Every page at a 1440 px window, the All view included: nothing runs off the screen
    // (no table wider than its box, no action out of sight), and axe-core passes each.
    me.c().set_window_size(1440, 900).await.unwrap();
    for path in [
        "/ui/credentials",
        "/ui/orgs",
        "/ui/variables",
        "/ui/gateway-tokens",
        "/ui/tokens",
        "/ui/usage",
        "/ui/events",
        "/ui/master-key",
        "/ui/sessions",
        "/ui/gateway",
    ] {
        me.go(path).await;
        me.fits_the_window(path).await;
        let name = format!("wide{}", path.replace('/', "-"));
        me.screenshot(&name).await;
    }
    me.c().set_window_size(1280, 860).await.unwrap();

    // A viewer sees the same pages with no write buttons, and a forged POST is refused.
    me.sign_out().await;
    let globex_id = s.json(&["cred", "list", "--org", "globex", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    me.sign_in(&viewer).await;
    assert!(!me.exists("a[href^='/ui/credentials/new']").await);
    assert!(!me.exists("form[action$='/deactivate']").await);
    me.screenshot("viewer").await;
    let forged = me
        .c()
        .execute(
            "return fetch(arguments[0], {method: 'POST'}).then(r => r.status)",
            vec![json!(format!("/ui/credentials/{globex_id}/deactivate"))],
        )
        .await
        .unwrap();
    assert_eq!(forged, json!(404), "another organization's credential");
    // Signing out ends the session: the old cookie no longer works.
    let cookie = me
        .c()
        .get_named_cookie("kw_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let cookie = format!("kw_session={cookie}");
    let url = format!("{}/ui/credentials", server.url);
    assert_eq!(status_with_cookie(&url, &cookie).await, 200);
    me.sign_out().await;
    assert_eq!(status_with_cookie(&url, &cookie).await, 303);

    assert!(me.pages > 20, "pages scanned: {}", me.pages);
    let trail = s.ok(&["events", "list", "--limit", "200"]);
    assert!(!trail.contains("BROWSERCANARY"), "{trail}");
    assert!(s.ok(&["events", "verify"]).contains("intact"));
    drop(server);
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_guide_by_clicking_in_chromium_on_sqlite() {
    walk_the_admin_guide(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_guide_by_clicking_in_chromium_on_postgres() {
    if let Some(s) = Sandbox::postgres().await {
        walk_the_admin_guide(s).await;
    }
}

/// A new install as a person meets it: no organization yet, then one, then 500 credentials
/// to find one among. The first Add Provider Credential says what to do instead of offering an
/// empty list; what was typed survives a refusal and a change of provider; search and sort
/// find one credential among 500; every page passes axe-core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_and_five_hundred_credentials_in_chromium() {
    let mut s = Sandbox::sqlite();
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (server, admin) = serve(&mut s);
    let mut me = Person {
        b: &browser,
        base: server.url.clone(),
        shots: std::env::var_os("KEYWARD_SCREENSHOT_DIR").map(PathBuf::from),
        pages: 0,
    };
    me.sign_in(&admin).await;
    me.go("/ui/credentials/new").await;
    let page = me.body().await;
    assert!(page.contains("There is no organization yet"), "{page}");
    assert!(me.exists("a[href='/ui/orgs']").await);
    me.screenshot("first-run").await;
    // Submitting anyway: the form again, with what to do and the name kept.
    me.type_in("#name", "first-key").await;
    me.type_in("#api_key", CANARY).await;
    me.submit("#credential-form button[type=submit]").await;
    let page = me.body().await;
    assert!(
        page.contains("create one on the Organizations page first"),
        "{page}"
    );
    assert_eq!(me.value("#name").await, "first-key");
    assert_eq!(me.value("#api_key").await, "", "the key is never sent back");

    // With organizations: choosing another provider keeps what was typed (not the key).
    s.ok(&["org", "create", "acme"]);
    s.ok(&["org", "create", "globex"]);
    me.go("/ui/credentials/new").await;
    me.type_in("#name", "kept-name").await;
    me.type_in("#priority", "7").await;
    me.type_in("#api_key", CANARY).await;
    me.c()
        .find(Locator::Css("#choose select[name=provider]"))
        .await
        .unwrap()
        .select_by_value("anthropic")
        .await
        .unwrap();
    for _ in 0..100 {
        if me
            .c()
            .current_url()
            .await
            .unwrap()
            .query()
            .is_some_and(|q| q.contains("provider=anthropic"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    me.scan().await;
    assert_eq!(me.value("#name").await, "kept-name");
    assert_eq!(me.value("#priority").await, "7");
    assert_eq!(me.value("#api_key").await, "");
    let url = me.c().current_url().await.unwrap();
    assert!(
        !url.as_str().contains("CANARY"),
        "the key never goes in a URL: {url}"
    );

    // 500 credentials in two organizations, imported from a LiteLLM config.
    let mut yaml = String::from("model_list:\n");
    for i in 0..500 {
        yaml.push_str(&format!(
            "- model_name: cred-{i:04}\n  litellm_params:\n    model: openai/gpt-4o\n    api_key: sk-proj-MANY{i:04}abcdefghijklmnopqrstuv\n"
        ));
    }
    let file = s.scratch().join("many.yaml");
    std::fs::write(&file, yaml).unwrap();
    for org in ["acme", "globex"] {
        let out = s.ok(&["import", "litellm", file.to_str().unwrap(), "--org", org]);
        assert!(out.contains("500 created"), "{out}");
    }
    me.c().set_window_size(1440, 900).await.unwrap();
    me.go("/ui/credentials").await;
    assert!(me.body().await.contains("of 1000"));
    me.fits_the_window("/ui/credentials").await;
    me.type_in("input[name=q]", "cred-0427").await;
    me.submit(".filters button[type=submit]").await;
    let rows = me
        .c()
        .find_all(Locator::Css("#credentials tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "one in each organization");
    assert!(me.exists(&Person::row("cred-0427")).await);
    me.screenshot("credentials-search").await;
    // By its key's last four, in one organization.
    me.go("/ui/credentials?org=globex&q=stuv&sort=name").await;
    assert!(me.body().await.contains("of 500"));
    let first = me.text("#credentials tbody tr td a").await;
    assert_eq!(first, "cred-0000");
    // A key pasted into the search box is not searched for, nor shown back.
    me.go(&format!("/ui/credentials?q={CANARY}")).await;
    assert_eq!(me.value("input[name=q]").await, "");
    // Sorted by name, the pages go on with the search and the sort kept.
    me.go("/ui/credentials?org=acme&sort=name").await;
    assert_eq!(me.text("#credentials tbody tr td a").await, "cred-0000");
    me.submit(".pager a:last-child").await;
    assert!(
        me.c()
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("sort=name")
    );
    assert_eq!(me.text("#credentials tbody tr td a").await, "cred-0050");
    drop(server);
}
