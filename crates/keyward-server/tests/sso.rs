//! The console's single sign-on against a real OpenID provider (`oidc-provider` from npm, on
//! `localhost`, another site than Keyward on 127.0.0.1), driven by plain HTTP through its own
//! login and consent pages: who becomes what, what the audit log says, sign-out at the
//! provider, sessions an admin ends, and the attacks of issue 22, each refused.
//!
//! Skipped without Node 22 and the provider's packages, unless `KEYWARD_TEST_REQUIRE_OIDC=1`
//! (CI) makes that a failure.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use keyward_core::audit::EventFilter;
use keyward_server::Role;
use keyward_server::identity::Identity;
use keyward_testkit::oidc::{CLIENT_ID, CLIENT_SECRET, Provider};
use keyward_testkit::{TestServer, TestVault};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

const CANARY_KEY: &str = "sk-proj-SSOCANARY0123456789abcdefWXYZ";

/// The identity file of these tests: the issue's rules.
fn identity_yaml(p: &Provider, addr: SocketAddr, secret_file: &std::path::Path) -> String {
    format!(
        r"
oidc:
  issuer: {issuer}
  client_id: {CLIENT_ID}
  client_secret_file: {secret}
  redirect_url: http://{addr}/ui/sso/callback
  post_logout_redirect_url: http://{addr}/ui/login
  scopes: [openid, email, groups]
  id_token_algs: [RS256]
  rules:
    - when: {{ groups: platform-admins }}
      grant: admin
    - when: {{ groups: acme-keys }}
      grant: {{ role: org_admin, org: acme }}
    - when: {{ groups: globex-viewers }}
      grant: {{ role: viewer, org: globex }}
",
        issuer = p.issuer,
        secret = secret_file.display(),
    )
}

struct Setup {
    provider: Provider,
    server: TestServer,
    _dir: tempfile::TempDir,
}

/// A provider, and a server whose console signs in through it.
async fn setup() -> Option<Setup> {
    let provider = Provider::start().await?;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let vault = TestVault::open().await;
    for org in ["acme", "globex"] {
        vault
            .vault
            .create_org(&keyward_core::OrgId::new(org).unwrap(), None, "test")
            .await
            .unwrap();
    }
    let yaml = std::sync::Mutex::new(String::new());
    let server = TestServer::start_at(vault, |state, addr| {
        let text = identity_yaml(&provider, addr, &secret_file);
        *yaml.lock().unwrap() = text.clone();
        let identity = Identity::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        state.with_identity(identity)
    })
    .await;
    provider
        .register_client(
            &format!("{}/ui/sso/callback", server.base),
            &format!("{}/ui/login", server.base),
        )
        .await;
    Some(Setup {
        provider,
        server,
        _dir: dir,
    })
}

/// A server whose identity file has `oidc:` with `issuer`, client `keyward` (its secret in a
/// file), its own callback, and `extra` (rules, algorithms, switches); over `vault`, with
/// `more` applied to its settings. The directory holding the secret lives as long as the
/// second value.
async fn server_for(
    issuer: &str,
    extra: &str,
    vault: TestVault,
    more: impl FnOnce(keyward_server::AppState) -> keyward_server::AppState,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, "client-secret").unwrap();
    let c = TestServer::start_at(vault, |state, addr| {
        let yaml = format!(
            "oidc:\n  issuer: {issuer}\n  client_id: keyward\n  client_secret_file: {}\n  redirect_url: http://{addr}/ui/sso/callback\n{extra}",
            secret.display()
        );
        more(state).with_identity(Identity::parse(&yaml, &|_| None).unwrap_or_else(|e| panic!("{e}")))
    })
    .await;
    (c, dir)
}

/// The value of the cookie `name` a response sets, and its attributes.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
            (pair.to_owned(), attributes.to_owned())
        })
}

/// What one sign-in gave: the callback's answer.
struct SignedIn {
    response: reqwest::Response,
    callback: String,
}

/// Starts a sign-in at the console, completes the provider's pages as `sub`, and brings the
/// provider's answer back to the console's callback with the sign-in cookie.
async fn sign_in(s: &Setup, sub: &str, return_to: Option<&str>) -> SignedIn {
    let (login_cookie, auth_url) = start(s, return_to).await;
    let callback = s.provider.sign_in_by_http(&auth_url, sub).await;
    let response = s
        .server
        .client
        .get(&callback)
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    SignedIn { response, callback }
}

/// `GET /ui/sso/login`: the sign-in cookie and where the browser is sent.
async fn start(s: &Setup, return_to: Option<&str>) -> (String, String) {
    let url = match return_to {
        Some(r) => format!("{}/ui/sso/login?return_to={}", s.server.base, urlencode(r)),
        None => format!("{}/ui/sso/login", s.server.base),
    };
    let resp = s.server.client.get(url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        resp.text().await
    );
    let (cookie, attributes) = set_cookie(&resp, "kw_sso").unwrap();
    for a in ["HttpOnly", "SameSite=Lax", "Path=/ui/sso"] {
        assert!(attributes.contains(a), "{attributes}");
    }
    let to = resp.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with(&s.provider.issuer), "{to}");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
    ] {
        assert!(to.contains(part), "{to}");
    }
    (cookie, to)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The session cookie of a successful sign-in, and the page's move-on target.
async fn session_of(signed: SignedIn) -> (String, String) {
    let resp = signed.response;
    assert_eq!(resp.status(), StatusCode::OK);
    let (cookie, attributes) = set_cookie(&resp, "kw_session").unwrap();
    assert!(attributes.contains("SameSite=Strict"), "{attributes}");
    let page = resp.text().await.unwrap();
    let to = page
        .split("url=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_by_group_acts_as_themselves_and_loses_rights_with_the_group() {
    let Some(s) = setup().await else { return };
    let c = &s.server;
    // The sign-in page offers single sign-on and, by default, the token form.
    let page = c
        .client
        .get(format!("{}/ui/login", c.base))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/ui/sso/login") && html.contains("type=\"password\""),
        "{html}"
    );

    // bob is in acme-keys: org_admin of acme, nothing of globex.
    let signed = sign_in(&s, "bob", Some("/ui/credentials?org=acme")).await;
    let callback = signed.callback.clone();
    let (cookie, to) = session_of(signed).await;
    assert_eq!(to, "/ui/credentials?org=acme");
    let page = c.page("/ui/credentials?org=acme", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("bob@example.test"),
        "who is signed in: {html}"
    );
    assert_eq!(
        c.page("/ui/credentials?org=globex", &cookie).await.status(),
        StatusCode::NOT_FOUND
    );
    // He adds a credential; the audit log names him.
    let resp = c
        .post(
            "/ui/credentials",
            &cookie,
            &format!("org=acme&provider=openai&name=bob-made&api_key={CANARY_KEY}"),
        )
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        resp.text().await
    );
    let events = c
        .vault
        .list_events(&EventFilter::default(), 10_000)
        .await
        .unwrap();
    let made = events
        .iter()
        .find(|e| e.action == "create" && e.target.starts_with("credential:"))
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(made.actor, "bob@example.test (sso)");
    // Every event a person causes names their issuer and subject, not only the sign-in.
    assert_eq!(made.details["sso"]["subject"], "bob", "{:?}", made.details);
    assert_eq!(made.details["sso"]["issuer"], s.provider.issuer.as_str());
    let signin = events
        .iter()
        .find(|e| e.action == "ui_sign_in" && e.actor == "bob@example.test (sso)")
        .unwrap();
    let details = signin.details.to_string();
    assert!(
        details.contains(&s.provider.issuer) && details.contains("\"subject\":\"bob\""),
        "{details}"
    );
    assert!(details.contains("org_admin of acme"), "{details}");

    // The same code again (a replayed callback) signs nobody in.
    let replay = c
        .client
        .get(&callback)
        .header("cookie", format!("kw_sso={}", state_of(&callback)))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie(&replay, "kw_session").is_none());

    // Removed from acme-keys at the provider: his next sign-in is refused, with a page that
    // says so, and audited.
    s.provider.set_user("bob", &[]).await;
    let refused = sign_in(&s, "bob", None).await.response;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&refused, "kw_session").is_none());
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("no rule of this server gives that account access"),
        "{html}"
    );
    let events = c
        .vault
        .list_events(&EventFilter::default(), 10_000)
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.action == "ui_sign_in"
            && e.actor == "bob@example.test (sso)"
            && e.outcome == keyward_core::audit::Outcome::Failure),
        "{events:#?}"
    );
    // His earlier session lasts only its bound; an admin ends it now.
    let (admin, _) = c.token(Role::Admin, None).await;
    let list = c
        .api(reqwest::Method::GET, "/api/v1/sessions", &admin, None)
        .await;
    assert_eq!(list.status(), StatusCode::OK);
    let list: serde_json::Value = list.json().await.unwrap();
    let bob = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["actor"] == "bob@example.test (sso)")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(bob["kind"], "sso");
    let id = bob["id"].as_str().unwrap();
    // A viewer may not list or end sessions.
    let (viewer, _) = c.token(Role::Viewer, Some("acme")).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/sessions".to_owned()),
        (reqwest::Method::DELETE, format!("/api/v1/sessions/{id}")),
    ] {
        let r = c.api(method, &path, &viewer, None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let ended = c
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.page("/ui/credentials?org=acme", &cookie).await.status(),
        StatusCode::SEE_OTHER,
        "an ended session sends the browser to sign in"
    );

    // alice (platform-admins) is an admin; dave (globex-viewers) a viewer of globex only.
    let (alice, _) = session_of(sign_in(&s, "alice", None).await).await;
    assert_eq!(
        c.page("/ui/master-key", &alice).await.status(),
        StatusCode::OK
    );
    let (dave, _) = session_of(sign_in(&s, "dave", None).await).await;
    assert_eq!(
        c.page("/ui/credentials?org=globex", &dave).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        c.page("/ui/credentials?org=acme", &dave).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.page("/ui/master-key", &dave).await.status(),
        StatusCode::FORBIDDEN
    );
    // carol matches no rule; the page lets her try another account (the provider is asked to
    // sign in again rather than reuse her session there).
    let carol = sign_in(&s, "carol", None).await.response;
    assert_eq!(carol.status(), StatusCode::FORBIDDEN);
    assert!(
        carol
            .text()
            .await
            .unwrap()
            .contains("/ui/sso/login?prompt=login")
    );
    let again = c
        .client
        .get(format!("{}/ui/sso/login?prompt=login", c.base))
        .send()
        .await
        .unwrap();
    assert!(
        again.headers()[LOCATION]
            .to_str()
            .unwrap()
            .contains("prompt=login")
    );

    // Signing out ends the session here and sends the browser to the provider's end-session
    // endpoint with our client id.
    let out = c
        .client
        .post(format!("{}/ui/logout", c.base))
        .header("cookie", &dave)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let html = out.text().await.unwrap();
    assert!(
        html.contains(&format!("{}/session/end", s.provider.issuer))
            && html.contains(&format!("client_id={CLIENT_ID}")),
        "{html}"
    );
    assert_eq!(
        c.page("/ui/credentials?org=globex", &dave).await.status(),
        StatusCode::SEE_OTHER
    );

    // Nothing the provider gave (the client secret, codes, ID tokens) is in the audit log.
    let trail = serde_json::to_string(
        &c.vault
            .list_events(&EventFilter::default(), 10_000)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(!trail.contains(CLIENT_SECRET) && !trail.contains(CANARY_KEY));
    assert!(
        !trail.contains(&code_of(&callback)),
        "the authorization code"
    );
    assert!(!trail.contains("eyJ"), "a JWT in the audit log");
    s.server.stop().await;
}

fn param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn state_of(url: &str) -> String {
    param(url, "state")
}

fn code_of(url: &str) -> String {
    param(url, "code")
}

/// A callback is refused unless it is this browser's own sign-in, with its state and the
/// provider's answer; `return_to` goes nowhere off the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_mismatched_callbacks_and_off_site_return_to_fail() {
    let Some(s) = setup().await else { return };
    let c = &s.server;
    // A callback link someone else started (login CSRF): no sign-in cookie, or another's.
    let (_, auth_url) = start(&s, None).await;
    let callback = s.provider.sign_in_by_http(&auth_url, "alice").await;
    for cookie in [None, Some("kw_sso=someone-elses-state".to_owned())] {
        let mut req = c.client.get(&callback);
        if let Some(cookie) = &cookie {
            req = req.header("cookie", cookie);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{cookie:?}");
        assert!(set_cookie(&resp, "kw_session").is_none());
    }
    // A state the server never issued, with a matching cookie.
    let forged = format!("{}/ui/sso/callback?code=abc&state=forged", c.base);
    let resp = c
        .client
        .get(&forged)
        .header("cookie", "kw_sso=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The right state with a code of another sign-in: the provider refuses the exchange
    // (the PKCE verifier and the code do not belong together), and that state is spent.
    let (cookie_a, auth_a) = start(&s, None).await;
    let (_, auth_b) = start(&s, None).await;
    let callback_b = s.provider.sign_in_by_http(&auth_b, "alice").await;
    let state_a = state_of(&s.provider.sign_in_by_http(&auth_a, "alice").await);
    let mixed = format!(
        "{}/ui/sso/callback?code={}&state={state_a}",
        c.base,
        code_of(&callback_b)
    );
    let resp = c
        .client
        .get(&mixed)
        .header("cookie", &cookie_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&resp, "kw_session").is_none());
    // A callback that names another issuer (RFC 9207 mix-up).
    let (cookie, auth) = start(&s, None).await;
    let back = s.provider.sign_in_by_http(&auth, "alice").await;
    let other = format!(
        "{}/ui/sso/callback?code={}&state={}&iss=https%3A%2F%2Fevil.test",
        c.base,
        code_of(&back),
        state_of(&back)
    );
    let resp = c
        .client
        .get(&other)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Off-site return_to: the sign-in ends on the console's own page.
    for bad in [
        "https://evil.test/",
        "//evil.test/",
        "/\\evil.test",
        "javascript:alert(1)",
        "/ui/../x",
    ] {
        let (_, to) = session_of(sign_in(&s, "alice", Some(bad)).await).await;
        assert!(
            to == "/ui/" || (to.starts_with("/ui/") && !to.contains("evil")),
            "{bad} -> {to}"
        );
    }
    s.server.stop().await;
}

/// Mistakes in the identity file stop the start, with the setting named; a client secret
/// variable that is one of Keyward's own secrets is refused (it would be sent to the provider).
#[test]
fn identity_file_mistakes_are_refused() {
    let base = "oidc:\n  issuer: https://idp.example\n  client_id: k\n  redirect_url: https://k.example/ui/sso/callback\n  rules:\n    - when: { groups: a }\n      grant: admin\n";
    let env = |name: &str| Some(format!("value-of-{name}"));
    for (extra, says) in [
        (
            "  client_secret_env: KEYWARD_MASTER_KEY\n",
            "a secret of Keyward's own",
        ),
        (
            "  client_secret_env: KEYWARD_ADMIN_TOKEN\n",
            "a secret of Keyward's own",
        ),
        (
            "  client_secret_env: AWS_SECRET_ACCESS_KEY\n",
            "a secret of Keyward's own",
        ),
        (
            "  client_secret_env: OPENAI_API_KEY\n",
            "of an LLM provider",
        ),
        ("  client_secret: inline\n", "unknown field `client_secret`"),
        (
            "  client_secret_env: S\n  id_token_algs: [HS256]\n",
            "HS256 is not accepted",
        ),
        (
            "  client_secret_env: S\n  id_token_algs: [none]\n",
            "none is not accepted",
        ),
        (
            "  client_secret_env: S\n  scopes: [email]\n",
            "scopes must include openid",
        ),
    ] {
        let text = format!("{base}{extra}");
        let e = Identity::parse(&text, &env).unwrap_err();
        assert!(e.contains(says), "{extra}: {e}");
        assert!(!e.contains("value-of-"), "{e}");
    }
    assert!(Identity::parse(&format!("{base}  client_secret_env: S\n"), &env).is_ok());
    let e = Identity::parse(&format!("{base}  client_secret_env: S\n"), &|_| None).unwrap_err();
    assert!(e.contains("S, which is not set"), "{e}");
}

/// An address that keeps sending callbacks that fail is answered 429 after its allowance,
/// and the audit log gets an event for each failure within it only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_callbacks_is_slowed_and_not_audited() {
    let (c, _dir) = server_for(
        "http://127.0.0.1:9",
        "  rules:\n    - when: { groups: a }\n      grant: admin\n",
        TestVault::open().await,
        |s| s,
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let resp = c
            .client
            .get(format!("{}/ui/sso/callback?error=x{i}", c.base))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(statuses[39], 429, "{statuses:?}");
    let events = c
        .vault
        .list_events(&"action=ui_sign_in".parse().unwrap(), 1000)
        .await
        .unwrap();
    assert!(events.len() <= 10, "{} events", events.len());
    c.stop().await;
}

/// With `token_sign_in: false` the console's token form is gone and a posted token is
/// refused, even an admin's; the API still takes tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sign_in_switched_off() {
    let (c, _dir) = server_for(
        "http://127.0.0.1:9",
        "  token_sign_in: false\n  rules:\n    - when: { groups: a }\n      grant: admin\n",
        TestVault::open().await,
        |s| s,
    )
    .await;
    let (admin, _) = c.token(Role::Admin, None).await;
    let html = c
        .client
        .get(format!("{}/ui/login", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("/ui/sso/login") && !html.contains("type=\"password\""),
        "{html}"
    );
    let resp = c.sign_in(&admin).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&resp, "kw_session").is_none());
    let r = c
        .api(reqwest::Method::GET, "/api/v1/orgs", &admin, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    c.stop().await;
}

/// The provider rotates its signing key mid-run (the old one retired): the next sign-in
/// fetches the new keys and works; the status says what the provider publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_at_the_next_sign_in() {
    let Some(s) = setup().await else { return };
    let c = &s.server;
    session_of(sign_in(&s, "alice", None).await).await;
    let (admin, _) = c.token(Role::Admin, None).await;
    let before: serde_json::Value = c
        .api(reqwest::Method::GET, "/api/v1/sso", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    s.provider.rotate(true).await;
    // Keys are fetched again for an unknown kid at most once a second.
    tokio::time::sleep(keyward_server::identity::oidc::SSO_REFETCH_EVERY).await;
    let (cookie, _) = session_of(sign_in(&s, "alice", None).await).await;
    assert_eq!(
        c.page("/ui/master-key", &cookie).await.status(),
        StatusCode::OK
    );
    let after: serde_json::Value = c
        .api(reqwest::Method::GET, "/api/v1/sso", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["configured"], true);
    assert_eq!(after["reachable"], true, "{after}");
    assert_eq!(after["logout_at_provider"], true);
    assert_ne!(before["key_ids"], after["key_ids"]);
    s.server.stop().await;
}

/// A provider that is down, or takes no notice, fails sign-in fast with a page that says so,
/// while API calls with tokens go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_provider_fails_sign_in_fast_and_nothing_else() {
    // One that refuses connections, and one that accepts and never answers.
    let dead = keyward_testkit::closed_addr();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            open.push(sock);
        }
    });
    for issuer in [format!("http://{dead}"), format!("http://{silent_addr}")] {
        let (c, _dir) = server_for(
            &issuer,
            "  rules:\n    - when: { groups: a }\n      grant: admin\n",
            TestVault::open().await,
            |s| s,
        )
        .await;
        // A client that gives up long after the server's own bound (5 s): a server that waited
        // on the provider without one fails the test here.
        let patient = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let resp = patient
            .get(format!("{}/ui/sso/login", c.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("sign-in did not fail fast: {e}"));
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{issuer}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("cannot be reached right now"), "{html}");
        let (admin, _) = c.token(Role::Admin, None).await;
        let r = c
            .api(reqwest::Method::GET, "/api/v1/orgs", &admin, None)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let status: serde_json::Value = c
            .api(reqwest::Method::GET, "/api/v1/sso", &admin, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["reachable"], false, "{status}");
        c.stop().await;
    }
}

/// A provider of the test's own (discovery, keys, a token endpoint) that answers the code
/// exchange with whatever ID token the test made: the classic attacks on ID tokens, each
/// refused at the callback, and a well-made token accepted.
mod forged_id_tokens {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    struct Key {
        kid: String,
        pair: rcgen::KeyPair,
    }

    impl Key {
        fn new(kid: &str) -> Self {
            Key {
                kid: kid.into(),
                pair: rcgen::KeyPair::generate().unwrap(),
            }
        }
        fn jwk(&self) -> Value {
            let raw = self.pair.public_key_raw();
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                   "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])})
        }
        fn sign(&self, claims: &Value, extra: impl FnOnce(&mut Header)) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(self.kid.clone());
            extra(&mut header);
            jsonwebtoken::encode(
                &header,
                claims,
                &EncodingKey::from_ec_der(&self.pair.serialize_der()),
            )
            .unwrap()
        }
    }

    /// Makes the provider's next ID token from the sign-in's nonce.
    type MakeToken = Box<dyn Fn(&str) -> String + Send>;

    fn now() -> i64 {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    /// The fake provider: its issuer, the ID token its token endpoint gives next, and the hits
    /// of its key set and of an attacker's URL.
    struct Fake {
        issuer: String,
        next: Arc<Mutex<String>>,
        jwks_hits: Arc<AtomicUsize>,
        evil_hits: Arc<AtomicUsize>,
    }

    async fn fake(key: &Key) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let next = Arc::new(Mutex::new(String::new()));
        let (jwks_hits, evil_hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let discovery = json!({
            "issuer": issuer, "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]
        });
        let jwks = json!({"keys": [key.jwk()]});
        let (n, jh, eh) = (next.clone(), jwks_hits.clone(), evil_hits.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    jh.fetch_add(1, Ordering::SeqCst);
                    let j = jwks.clone();
                    async move { axum::Json(j) }
                }),
            )
            .route(
                "/evil",
                axum::routing::get(move || {
                    eh.fetch_add(1, Ordering::SeqCst);
                    async { axum::Json(json!({"keys": []})) }
                }),
            )
            .route(
                "/token",
                axum::routing::post(move || {
                    let t = n.lock().unwrap().clone();
                    async move {
                        axum::Json(
                            json!({"access_token": "at", "token_type": "Bearer", "id_token": t}),
                        )
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake {
            issuer,
            next,
            jwks_hits,
            evil_hits,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_classic_attack_on_the_id_token_is_refused() {
        let key = Key::new("k1");
        let f = fake(&key).await;
        // Every attack is a failed sign-in from this address: more than the default allowance
        // of a minute.
        let (c, _dir) = server_for(
            &f.issuer,
            "  id_token_algs: [ES256]\n  rules:\n    - when: { groups: admins }\n      grant: admin\n",
            TestVault::open().await,
            |s| s.with_auth_failures_per_minute(100),
        )
        .await;
        // One sign-in: start it, make the provider's next ID token from its nonce, call back.
        let attempt = |make: MakeToken| {
            let c = &c;
            let f = &f;
            async move {
                let resp = c
                    .client
                    .get(format!("{}/ui/sso/login", c.base))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::SEE_OTHER);
                let (cookie, _) = set_cookie(&resp, "kw_sso").unwrap();
                let to = resp.headers()[LOCATION].to_str().unwrap().to_owned();
                *f.next.lock().unwrap() = make(&param(&to, "nonce"));
                let back = format!(
                    "{}/ui/sso/callback?code=any&state={}",
                    c.base,
                    param(&to, "state")
                );
                c.client
                    .get(back)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap()
            }
        };
        let iss = f.issuer.clone();
        let claims = move |nonce: &str| {
            json!({"iss": iss, "aud": "keyward", "sub": "mallory", "email": "m@example.test",
                   "groups": ["admins"], "nonce": nonce, "iat": now(), "exp": now() + 300})
        };
        // The well-made token works: the rest differ from it in one thing each.
        let good = {
            let claims = claims.clone();
            let key = Key {
                kid: key.kid.clone(),
                pair: rcgen::KeyPair::from_pem(&key.pair.serialize_pem()).unwrap(),
            };
            attempt(Box::new(move |n| key.sign(&claims(n), |_| {}))).await
        };
        assert_eq!(good.status(), StatusCode::OK, "{:?}", good.text().await);
        let public_jwk = key.jwk().to_string();
        let public_sec1 = key.pair.public_key_raw().to_vec();
        let with = |change: fn(&mut Value)| {
            let claims = claims.clone();
            let pem = key.pair.serialize_pem();
            let kid = key.kid.clone();
            Box::new(move |n: &str| {
                let mut c = claims(n);
                change(&mut c);
                Key {
                    kid: kid.clone(),
                    pair: rcgen::KeyPair::from_pem(&pem).unwrap(),
                }
                .sign(&c, |_| {})
            }) as MakeToken
        };
        let unsigned = {
            let claims = claims.clone();
            Box::new(move |n: &str| {
                format!(
                    "{}.{}.",
                    B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                    B64.encode(claims(n).to_string())
                )
            }) as MakeToken
        };
        let hs256_with = |secret: Vec<u8>| {
            let claims = claims.clone();
            Box::new(move |n: &str| {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("k1".into());
                jsonwebtoken::encode(&h, &claims(n), &EncodingKey::from_secret(&secret)).unwrap()
            }) as MakeToken
        };
        let other_key = {
            let claims = claims.clone();
            Box::new(move |n: &str| Key::new("k1").sign(&claims(n), |_| {})) as MakeToken
        };
        let evil = format!("{}/evil", f.issuer);
        let chosen_keys = {
            let claims = claims.clone();
            let pem = key.pair.serialize_pem();
            Box::new(move |n: &str| {
                Key {
                    kid: "attacker-kid".into(),
                    pair: rcgen::KeyPair::from_pem(&pem).unwrap(),
                }
                .sign(&claims(n), |h| h.jku = Some(evil.clone()))
            }) as MakeToken
        };
        let attacks: Vec<(&str, MakeToken)> = vec![
            ("alg none", unsigned),
            (
                "HS256 with the public JWK as the secret",
                hs256_with(public_jwk.into_bytes()),
            ),
            ("HS256 with the public key's bytes", hs256_with(public_sec1)),
            (
                "another issuer",
                with(|c| c["iss"] = json!("https://evil.test")),
            ),
            (
                "another audience",
                with(|c| c["aud"] = json!("someone-else")),
            ),
            (
                "a second, untrusted audience",
                with(|c| c["aud"] = json!(["keyward", "other"])),
            ),
            (
                "issued to another client (azp)",
                with(|c| c["azp"] = json!("other-client")),
            ),
            ("expired", with(|c| c["exp"] = json!(now() - 3600))),
            (
                "issued in the future",
                with(|c| c["iat"] = json!(now() + 3600)),
            ),
            ("issued long ago", with(|c| c["iat"] = json!(now() - 7200))),
            ("another nonce", with(|c| c["nonce"] = json!("not-the-one"))),
            (
                "no nonce",
                with(|c| {
                    c.as_object_mut().unwrap().remove("nonce");
                }),
            ),
            (
                "email_verified as text (a claim of another type)",
                with(|c| c["email_verified"] = json!("true")),
            ),
            ("signed by another key under the right kid", other_key),
            ("an unknown kid with a jku of the attacker's", chosen_keys),
        ];
        for (what, make) in attacks {
            // The key set may be fetched again at most once a second: let each attack have
            // its chance to make it fetch.
            tokio::time::sleep(keyward_server::identity::oidc::SSO_REFETCH_EVERY).await;
            let resp = attempt(make).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
            assert!(set_cookie(&resp, "kw_session").is_none(), "{what}");
            let html = resp.text().await.unwrap();
            assert!(html.contains("did not check out"), "{what}: {html}");
        }
        assert_eq!(
            f.evil_hits.load(Ordering::SeqCst),
            0,
            "a URL of the token's was fetched"
        );
        // Discovery's keys, and once more for the unknown kids (rate-bounded), never per token.
        assert!(
            f.jwks_hits.load(Ordering::SeqCst) <= 4,
            "{}",
            f.jwks_hits.load(Ordering::SeqCst)
        );
        c.stop().await;
    }

    /// A claim that names an organization gives a role there only if it exists: a person whose
    /// only grant names one that does not is refused, not let in with nothing to see.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_organization_named_by_a_claim_must_exist() {
        let key = Key::new("k1");
        let f = fake(&key).await;
        let vault = TestVault::open().await;
        vault
            .vault
            .create_org(&keyward_core::OrgId::new("acme").unwrap(), None, "test")
            .await
            .unwrap();
        let (c, _dir) = server_for(
            &f.issuer,
            "  id_token_algs: [ES256]\n  rules:\n    - when: { claim_present: keyward_org }\n      grant: { role: viewer, org_from_claim: keyward_org }\n",
            vault,
            |s| s,
        )
        .await;
        for (org, want) in [("nope", StatusCode::FORBIDDEN), ("acme", StatusCode::OK)] {
            let resp = c
                .client
                .get(format!("{}/ui/sso/login", c.base))
                .send()
                .await
                .unwrap();
            let (cookie, _) = set_cookie(&resp, "kw_sso").unwrap();
            let to = resp.headers()[LOCATION].to_str().unwrap().to_owned();
            let claims = json!({"iss": f.issuer, "aud": "keyward", "sub": "u2",
                "keyward_org": org, "nonce": param(&to, "nonce"), "iat": now(), "exp": now() + 300});
            *f.next.lock().unwrap() = key.sign(&claims, |_| {});
            let back = format!(
                "{}/ui/sso/callback?code=c&state={}",
                c.base,
                param(&to, "state")
            );
            let resp = c
                .client
                .get(back)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), want, "{org}");
            assert_eq!(
                set_cookie(&resp, "kw_session").is_some(),
                want == StatusCode::OK
            );
        }
        c.stop().await;
    }
}
