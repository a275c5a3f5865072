//! The web console over real HTTP: sign-in and sessions, the headers every page carries,
//! cross-site forms refused, and the credentials page showing hints, never keys.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use keyward_core::credential::NewCredential;
use keyward_core::{CredentialName, OrgId, Provider};
use keyward_server::Role;
use keyward_testkit::TestServer;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;

const CANARY: &str = "sk-proj-UICANARY0123456789abcdWXYZ";

/// The test server, with organizations acme and globex and a credential in each.
async fn console() -> TestServer {
    let c = TestServer::start(|s| s).await;
    for org in ["acme", "globex"] {
        let org = OrgId::new(org).unwrap();
        c.vault.create_org(&org, None, "test").await.unwrap();
        let cred = NewCredential::new(
            org.clone(),
            Provider::get("openai").unwrap(),
            CredentialName::new(&format!("{org}-prod")).unwrap(),
            Some(CANARY.into()),
        );
        c.vault.add_credential(cred, "test").await.unwrap();
    }
    c
}

fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    TestServer::session_cookie(resp)
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

const VAR_CANARY: &str = "UIVARCANARY-5f0e1d2c3b4a";

/// A POST as a page of this origin would send it.
async fn post(c: &TestServer, path: &str, cookie: &str, body: &str) -> reqwest::Response {
    c.post(path, cookie, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_route_keeps_the_apis_roles_and_no_page_shows_a_key() {
    let c = console().await;
    let acme = OrgId::new("acme").unwrap();
    let creds = c.vault.list_credentials(None, None).await.unwrap();
    let id_of = |org: &str| {
        creds
            .iter()
            .find(|v| v.org.as_str() == org)
            .unwrap()
            .id
            .to_string()
    };
    let (acme_id, globex_id) = (id_of("acme"), id_of("globex"));
    c.vault
        .set_var(
            &keyward_core::VarName::new("OPENAI_ORG_SECRET").unwrap(),
            Some(&acme),
            &VAR_CANARY.to_owned().into(),
            true,
            None,
            "test",
        )
        .await
        .unwrap();
    let (gateway_token, _) = c
        .vault
        .create_gateway_token(&acme, "app", &[], None, None, "test")
        .await
        .unwrap();
    let mut people = Vec::new();
    for (role, org) in [
        (Role::Admin, None),
        (Role::OrgAdmin, Some("acme")),
        (Role::Viewer, Some("acme")),
    ] {
        let (token, _) = c.token(role, org).await;
        let (cookie, _) = session_cookie(&c.sign_in(&token).await);
        people.push((role, token, cookie));
    }
    let secrets = |html: &str, tokens: &[&str]| {
        assert!(!html.contains("UICANARY"), "{html}");
        assert!(!html.contains(VAR_CANARY), "{html}");
        assert!(!html.contains(gateway_token.expose_secret()), "{html}");
        for t in tokens {
            assert!(!html.contains(t), "{html}");
        }
    };
    let tokens: Vec<&str> = people.iter().map(|p| p.1.as_str()).collect();
    // What each role gets on each page: the API's rules, another organization's is 404.
    let pages: &[(&str, [u16; 3])] = &[
        ("/ui/credentials", [200, 200, 200]),
        ("/ui/credentials/new", [200, 200, 403]),
        (&format!("/ui/credentials/{acme_id}"), [200, 200, 200]),
        (&format!("/ui/credentials/{acme_id}/edit"), [200, 200, 403]),
        (
            &format!("/ui/credentials/{acme_id}/delete"),
            [200, 200, 403],
        ),
        (&format!("/ui/credentials/{globex_id}"), [200, 404, 404]),
        (
            &format!("/ui/credentials/{globex_id}/edit"),
            [200, 404, 404],
        ),
        ("/ui/orgs", [200, 200, 200]),
        ("/ui/variables", [200, 200, 200]),
        ("/ui/variables?org=globex", [200, 404, 404]),
        ("/ui/gateway-tokens", [200, 200, 200]),
        ("/ui/tokens", [200, 200, 403]),
        ("/ui/usage", [200, 200, 200]),
        ("/ui/usage?org=globex", [200, 404, 404]),
        ("/ui/events", [200, 200, 200]),
        ("/ui/events?org=globex", [200, 404, 404]),
        ("/ui/master-key", [200, 403, 403]),
        // What the gateway serves: an organization's own targets for its tokens, as
        // GET /api/v1/gateway/status answers (issue 20: one rule on both surfaces).
        ("/ui/gateway", [200, 200, 200]),
    ];
    for (path, want) in pages {
        for ((role, _, cookie), want) in people.iter().zip(want) {
            let resp = c.page(path, cookie).await;
            assert_eq!(resp.status().as_u16(), *want, "{role} {path}");
            let headers = resp.headers().clone();
            assert_eq!(headers["cache-control"], "no-store", "{path}");
            let html = resp.text().await.unwrap();
            secrets(&html, &tokens);
            // No inline script anywhere (the CSP would refuse it): only our one file.
            assert!(
                !html.contains("<script>") && !html.contains(" onclick="),
                "{path}"
            );
        }
    }
    for (asset, kind) in [
        ("/ui/static/app.css", "text/css"),
        ("/ui/static/app.js", "text/javascript"),
        ("/ui/static/icon.svg", "image/svg+xml"),
    ] {
        let resp = c.page(asset, "").await;
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{asset}"
        );
    }
    // Nothing shows a viewer a write button; the org_admin's pages do.
    let viewer = &people[2].2;
    let list = c
        .page("/ui/credentials", viewer)
        .await
        .text()
        .await
        .unwrap();
    assert!(!list.contains("/deactivate") && !list.contains("Add Provider Credential"));
    let list = c
        .page("/ui/credentials", &people[1].2)
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("/deactivate") && list.contains("Add Provider Credential"));

    // A viewer's forged POSTs are refused on the server, and change nothing.
    for (path, body) in [
        (
            format!("/ui/credentials/{acme_id}/deactivate"),
            String::new(),
        ),
        (format!("/ui/credentials/{acme_id}/delete"), String::new()),
        (format!("/ui/credentials/{acme_id}/test"), String::new()),
        (
            format!("/ui/credentials/{acme_id}/edit"),
            "version=1&name=x".to_owned(),
        ),
        (
            "/ui/credentials".to_owned(),
            format!("org=acme&provider=openai&name=x&api_key={CANARY}"),
        ),
        ("/ui/orgs".to_owned(), "id=evil".to_owned()),
        (
            "/ui/orgs/acme/strategy".to_owned(),
            "strategy=weighted".to_owned(),
        ),
        (
            "/ui/gateway-tokens".to_owned(),
            "org=acme&name=x".to_owned(),
        ),
        (
            "/ui/tokens".to_owned(),
            "role=viewer&org=acme&name=x".to_owned(),
        ),
        (
            "/ui/variables/reveal".to_owned(),
            "name=OPENAI_ORG_SECRET&org=acme".to_owned(),
        ),
        ("/ui/master-key/rotate".to_owned(), String::new()),
        ("/ui/gateway/reload".to_owned(), String::new()),
    ] {
        let resp = post(&c, &path, viewer, &body).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "viewer POST {path}");
        secrets(&resp.text().await.unwrap(), &tokens);
    }
    // An organization's admin cannot touch another's credential: it does not exist for it.
    let org_admin = &people[1].2;
    let resp = post(
        &c,
        &format!("/ui/credentials/{globex_id}/deactivate"),
        org_admin,
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Revealing is for whoever may resolve the organization's keys, as in the API
    // (`GET /v1/config-variables/{name}?reveal=true`): its org_admin may, and nobody of
    // another organization (issue 20: the console let only admins).
    let resp = post(
        &c,
        "/ui/variables/reveal",
        org_admin,
        "name=OPENAI_ORG_SECRET&org=acme",
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "an org_admin reveals its own"
    );
    assert!(resp.text().await.unwrap().contains(VAR_CANARY));
    let resp = post(
        &c,
        "/ui/variables/reveal",
        org_admin,
        "name=OPENAI_ORG_SECRET&org=globex",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "not another's");
    let still = c.vault.list_credentials(None, None).await.unwrap();
    assert_eq!(still.len(), 2);
    assert!(still.iter().all(|v| v.active));

    // The org_admin's actions are audited with its session's token as actor.
    let resp = post(
        &c,
        &format!("/ui/credentials/{acme_id}/deactivate"),
        org_admin,
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let events = c
        .vault
        .list_events(&format!("target=credential:{acme_id}").parse().unwrap(), 5)
        .await
        .unwrap();
    let org_admin_id = c
        .vault
        .list_tokens(Some(&acme))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.role == Role::OrgAdmin)
        .unwrap()
        .id;
    assert_eq!(events[0].actor, format!("token:{org_admin_id}"));

    // Pointing a stored key somewhere else takes the key again: a session cannot send it to
    // an address of its own and press Test.
    let version = c
        .vault
        .get_credential(&keyward_core::CredentialId::new(&acme_id).unwrap())
        .await
        .unwrap()
        .version;
    let moved =
        format!("version={version}&name=acme-prod&base_url=http%3A%2F%2F127.0.0.1%3A9%2Fv1");
    let resp = post(
        &c,
        &format!("/ui/credentials/{acme_id}/edit"),
        org_admin,
        &moved,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("needs the key again"), "{html}");
    secrets(&html, &tokens);
    let stored = c
        .vault
        .get_credential(&keyward_core::CredentialId::new(&acme_id).unwrap())
        .await
        .unwrap();
    assert!(!stored.fields.contains_key("base_url"));
    let resp = post(
        &c,
        &format!("/ui/credentials/{acme_id}/edit"),
        org_admin,
        &format!("{moved}&api_key={CANARY}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // The trail says where the key now goes, and where it went before.
    let moved = c
        .vault
        .list_events(&"action=update".parse().unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(
        moved[0].details["fields"]["base_url"],
        serde_json::json!({ "was": null, "now": "http://127.0.0.1:9/v1" })
    );

    // An admin reveals a sensitive value once, on an uncached page, and it is audited.
    let admin = &people[0].2;
    let resp = post(
        &c,
        "/ui/variables/reveal",
        admin,
        "name=OPENAI_ORG_SECRET&org=acme",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.text().await.unwrap().contains(VAR_CANARY));
    let reveals = c
        .vault
        .list_events(&"action=reveal".parse().unwrap(), 5)
        .await
        .unwrap();
    // Each reveal audited once: the org_admin's above, and this one.
    assert_eq!(reveals.len(), 2, "{reveals:?}");
    assert!(
        reveals
            .iter()
            .all(|e| e.target == "var:acme/OPENAI_ORG_SECRET")
    );
    // A gateway token made in the console is shown once, with the SDK snippet.
    let form = c
        .page("/ui/gateway-tokens?org=acme", admin)
        .await
        .text()
        .await
        .unwrap();
    let once = form
        .split("name=\"once\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let body = format!("org=acme&name=notebook&provider=openai&once={once}");
    let resp = post(&c, "/ui/gateway-tokens", admin, &body).await;
    let html = resp.text().await.unwrap();
    // The answer sent again (a reload) makes no second token.
    let again = post(&c, "/ui/gateway-tokens", admin, &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        again.contains("already sent") && !again.contains("made-token"),
        "{again}"
    );
    let made = c.vault.list_gateway_tokens(Some(&acme)).await.unwrap();
    assert_eq!(made.iter().filter(|t| t.name == "notebook").count(), 1);
    assert!(
        html.contains("from openai import OpenAI") && html.contains("kwg_"),
        "{html}"
    );
    let list = c
        .page("/ui/gateway-tokens?org=acme", admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("notebook") && !list.contains("api_key="),
        "{list}"
    );
    // A rotation runs in the background and the page shows how it went.
    let resp = post(&c, "/ui/master-key/rotate", admin, "").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let mut page = String::new();
    for _ in 0..100 {
        page = c.page("/ui/master-key", admin).await.text().await.unwrap();
        if page.contains("Rotation to k1 done") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        page.contains("Rotation to k1 done") && page.contains("0 remaining"),
        "{page}"
    );
    // Where each key lives: these were given to the server (the test's keyring), not kept by
    // a KMS.
    assert!(
        page.contains("<th>Lives in</th>") && page.contains("<td>test</td>"),
        "{page}"
    );
    // The audit log's page does not verify the chain on load; an admin's press does, and a
    // viewer's is refused.
    let log = c.page("/ui/events", admin).await.text().await.unwrap();
    assert!(
        log.contains("has not been verified from the console yet"),
        "{log}"
    );
    let resp = post(&c, "/ui/events/verify", viewer, "").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(&c, "/ui/events/verify", admin, "").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/ui/events?notice=chain_ok");
    let log = c
        .page("/ui/events?notice=chain_ok", admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("The audit chain verifies"), "{log}");
    assert!(log.contains("verified up to event #"), "{log}");
    secrets(&log, &tokens);
}

/// A key pasted into the wrong field of the credential form is refused, and the form that comes
/// back with the refusal does not hold it in any field's value (nor anywhere on the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_never_echoed_into_the_form() {
    let c = console().await;
    let (admin, _) = c.token(Role::Admin, None).await;
    let (cookie, _) = session_cookie(&c.sign_in(&admin).await);
    let pasted = "sk-proj-ECHOCANARY0123456789abcdefWXYZ";
    for (field, extra) in [
        ("name", String::new()),
        ("base_url", "&name=ok-name".to_owned()),
        ("f_organization", "&name=ok-name".to_owned()),
    ] {
        let body = format!(
            "org=acme&provider=openai&{field}={pasted}{extra}&api_key={}",
            "sk-proj-SECONDCANARY0123456789abcdWXYZ"
        );
        let resp = post(&c, "/ui/credentials", &cookie, &body).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let html = resp.text().await.unwrap();
        assert!(!html.contains("ECHOCANARY"), "{field} echoed: {html}");
        assert!(!html.contains("SECONDCANARY"), "{field}: the key came back");
        if !extra.is_empty() {
            // What was fine is kept, so the person does not type it again.
            assert!(html.contains("value=\"ok-name\""), "{field}: {html}");
        }
    }
}

/// A viewer's Audit Log names the tokens of its own organization; an admin's token, acting on
/// the viewer's organization, appears by its id, not by the name its owner gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_audit_log_does_not_name_admin_tokens() {
    let c = console().await;
    let (admin, _) = c.token(Role::Admin, None).await;
    let (viewer, _) = c.token(Role::Viewer, Some("acme")).await;
    let (admin_cookie, _) = session_cookie(&c.sign_in(&admin).await);
    let resp = post(
        &c,
        "/ui/credentials",
        &admin_cookie,
        "org=acme&provider=anthropic&name=by-admin&api_key=sk-ant-api03-NAMESCANARY0123456789abcdefQRST",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (viewer_cookie, _) = session_cookie(&c.sign_in(&viewer).await);
    let page = c
        .page("/ui/events", &viewer_cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("credential:"),
        "the admin's event is listed: {page}"
    );
    assert!(!page.contains("admin person"), "{page}");
    assert!(
        page.contains("viewer person"),
        "its own token is named: {page}"
    );
    let page = c
        .page("/ui/events", &admin_cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("admin person"), "an admin sees every name");
}

/// Revoking a token is one operation with one rule: the API and the console give every role the
/// same answer (done, forbidden, not found, refused), for API and gateway tokens of its own
/// organization and of another's, and for an id that looks like a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_tokens_answers_the_same_through_the_api_and_the_console() {
    let c = console().await;
    let acme = OrgId::new("acme").unwrap();
    let globex = OrgId::new("globex").unwrap();
    let callers = [
        c.token(Role::Admin, None).await.0,
        c.token(Role::OrgAdmin, Some("acme")).await.0,
        c.token(Role::Viewer, Some("acme")).await.0,
        c.token(Role::OrgAdmin, Some("globex")).await.0,
    ];
    // What each surface says, as one word.
    let word = |status: StatusCode, console: bool| match status.as_u16() {
        200 if !console => "done",
        303 if console => "done",
        400 => "refused",
        403 => "forbidden",
        404 => "not found",
        other => panic!("unexpected {other}"),
    };
    for token in &callers {
        let (cookie, _) = session_cookie(&c.sign_in(token).await);
        for target in [
            "api:acme",
            "api:globex",
            "api:admin",
            "gateway:acme",
            "gateway:globex",
            "key",
        ] {
            let mut outcomes = Vec::new();
            for console in [false, true] {
                let (kind, id) = match target {
                    "key" => ("api", CANARY.to_owned()),
                    t => {
                        let (kind, org) = t.split_once(':').unwrap();
                        let id = match (kind, org) {
                            ("api", "admin") => {
                                c.vault
                                    .create_token("other admin", Role::Admin, None, None, "test")
                                    .await
                                    .unwrap()
                                    .1
                                    .id
                            }
                            ("api", o) => {
                                let org = if o == "acme" { &acme } else { &globex };
                                c.vault
                                    .create_token("target", Role::Viewer, Some(org), None, "test")
                                    .await
                                    .unwrap()
                                    .1
                                    .id
                            }
                            (_, o) => {
                                let org = if o == "acme" { &acme } else { &globex };
                                c.vault
                                    .create_gateway_token(org, "target", &[], None, None, "test")
                                    .await
                                    .unwrap()
                                    .1
                                    .id
                            }
                        };
                        (kind, id)
                    }
                };
                let status = match (console, kind) {
                    (false, "api") => c
                        .client
                        .delete(format!("{}/api/v1/tokens/{id}", c.base))
                        .bearer_auth(token)
                        .send()
                        .await
                        .unwrap()
                        .status(),
                    (false, _) => c
                        .client
                        .delete(format!("{}/api/v1/gateway-tokens/{id}", c.base))
                        .bearer_auth(token)
                        .send()
                        .await
                        .unwrap()
                        .status(),
                    (true, "api") => post(&c, &format!("/ui/tokens/{id}/revoke"), &cookie, "")
                        .await
                        .status(),
                    (true, _) => post(&c, &format!("/ui/gateway-tokens/{id}/revoke"), &cookie, "")
                        .await
                        .status(),
                };
                outcomes.push(word(status, console));
            }
            assert_eq!(
                outcomes[0], outcomes[1],
                "API and console disagree on revoking {target}"
            );
        }
    }
}
