//! The web console over real HTTP: sign-in and sessions, the headers every page carries,
//! cross-site forms refused, and the credentials page showing hints, never keys.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_crypto::{KeyId, Keyring, MasterKey};
use keyward_server::{AppState, Role};
use keyward_store::{Location, Vault, VaultOptions};
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;

const CANARY: &str = "sk-proj-UICANARY0123456789abcdWXYZ";

struct Console {
    base: String,
    vault: Vault,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn console() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::new(
        vec![MasterKey::from_bytes(KeyId::new("k1").unwrap(), &[5; 32])],
        "test",
    )
    .unwrap();
    let vault = Vault::open(
        &Location::in_data_dir(dir.path()),
        keyring,
        VaultOptions::default(),
    )
    .await
    .unwrap();
    for org in ["acme", "globex"] {
        let org = OrgId::new(org).unwrap();
        vault.create_org(&org, None, "test").await.unwrap();
        let c = NewCredential::new(
            org.clone(),
            Provider::get("openai").unwrap(),
            CredentialName::new(&format!("{org}-prod")).unwrap(),
            Some(CANARY.into()),
        );
        vault.add_credential(c, "test").await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keyward_server::serve(
        listener,
        AppState::new(vault.clone()),
        std::future::pending(),
    ));
    Console {
        base: format!("http://{addr}"),
        vault,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Console {
    async fn token(&self, role: Role, org: Option<&str>) -> (String, String) {
        let org = org.map(|o| OrgId::new(o).unwrap());
        let (t, view) = self
            .vault
            .create_token(&format!("{role} person"), role, org.as_ref(), None, "test")
            .await
            .unwrap();
        (t.expose_secret().to_owned(), view.id)
    }

    /// Signs in as a browser on this origin would; the response.
    async fn sign_in(&self, token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/ui/login", self.base))
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }
}

/// The `name=value` of the session cookie a sign-in set, and its attributes.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().trim().to_owned();
    (pair, set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_a_server_side_session_and_pages_show_hints_never_keys() {
    let c = console().await;
    let (viewer, viewer_id) = c.token(Role::Viewer, Some("acme")).await;
    // Unauthenticated pages send the browser to the sign-in page.
    let resp = c.page("/ui/credentials", "").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/ui/login");
    let login = c.page("/ui/login", "").await;
    for (name, value) in [
        ("content-security-policy", "default-src 'self'"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert!(
            login.headers()[name].to_str().unwrap().contains(value),
            "{name}"
        );
    }
    assert!(
        login.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(login.text().await.unwrap().contains("type=\"password\""));

    let resp = c.sign_in(&viewer).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (cookie, attributes) = session_cookie(&resp);
    assert!(cookie.starts_with("kw_session=kws_"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    assert!(!attributes.contains(&viewer), "the token is not the cookie");
    let page = c.page("/ui/credentials", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("acme-prod") && html.contains("sk-...WXYZ"),
        "{html}"
    );
    assert!(html.contains("badge active"), "{html}");
    assert!(
        !html.contains("globex"),
        "another organization's credential: {html}"
    );
    assert!(
        !html.contains("UICANARY") && !html.contains(&viewer),
        "{html}"
    );

    // Signing out ends the session on the server: the old cookie stops working.
    let out = c
        .client
        .post(format!("{}/ui/logout", c.base))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        c.page("/ui/credentials", &cookie).await.status(),
        StatusCode::SEE_OTHER
    );
    // Revoking the token ends its sessions at once.
    let (cookie, _) = session_cookie(&c.sign_in(&viewer).await);
    assert_eq!(
        c.page("/ui/credentials", &cookie).await.status(),
        StatusCode::OK
    );
    c.vault.revoke_token(&viewer_id, "test").await.unwrap();
    assert_eq!(
        c.page("/ui/credentials", &cookie).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_machine_tokens_cannot_sign_in_and_cross_site_forms_are_refused() {
    let c = console().await;
    let (resolver, _) = c.token(Role::Resolver, Some("acme")).await;
    let (admin, _) = c.token(Role::Admin, None).await;
    let resp = c.sign_in("kwt_not-a-token-0000000000000000000000").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("unknown, revoked or expired")
    );
    // A provider key pasted where the token goes: refused, and never echoed.
    let resp = c.sign_in(CANARY).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!resp.text().await.unwrap().contains("UICANARY"));
    let resp = c.sign_in(&resolver).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("resolver token is for programs")
    );
    // A form posted from another site is refused, whatever it carries.
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let resp = c
            .client
            .post(format!("{}/ui/login", c.base))
            .header(name, value)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={admin}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(resp.headers().get("set-cookie").is_none());
    }
    // An admin sees every organization, and filters by one in the URL.
    let (cookie, _) = session_cookie(&c.sign_in(&admin).await);
    let all = c
        .page("/ui/credentials", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(all.contains("acme-prod") && all.contains("globex-prod"));
    let one = c
        .page("/ui/credentials?org=globex&provider=openai", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        one.contains("globex-prod") && !one.contains("acme-prod"),
        "{one}"
    );
    // The failures are in the trail, with no token in it.
    let events = c
        .vault
        .list_events(&"action=authenticate".parse().unwrap(), 20)
        .await
        .unwrap();
    assert!(events.iter().filter(|e| e.target == "ui").count() >= 2);
    let trail = serde_json::to_string(&events).unwrap();
    assert!(
        !trail.contains(&resolver)
            && !trail.contains("kwt_not-a-token")
            && !trail.contains("UICANARY")
    );
    // A filter that is no organization slug (`..`, encoded or not) is nothing, not a path.
    for bad in ["..", "%2e%2e", "acme%2F..%2Fglobex", CANARY] {
        let resp = c.page(&format!("/ui/credentials?org={bad}"), &cookie).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{bad}");
        assert!(!resp.text().await.unwrap().contains("UICANARY"));
    }
}
