//! A test server: `keyward_server` on 127.0.0.1 over a [`TestVault`], and a client that speaks
//! to it as the API's callers and the console's browsers do.

use keyward_core::OrgId;
use keyward_server::{AppState, Role};
use keyward_store::Vault;
use secrecy::ExposeSecret as _;

use crate::TestVault;

/// A running server and what a test needs to talk to it.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The vault it serves, for setting up and for looking behind the answers.
    pub vault: Vault,
    /// A client that does not follow redirects (the console answers forms with 303).
    pub client: reqwest::Client,
    _vault: TestVault,
}

impl TestServer {
    /// A server over a fresh vault, with `state` applied to its settings.
    ///
    /// # Panics
    ///
    /// When it cannot be started: the test cannot go on.
    pub async fn start(state: impl FnOnce(AppState) -> AppState) -> Self {
        let kept = TestVault::open().await;
        let vault = kept.vault.clone();
        #[allow(clippy::unwrap_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        #[allow(clippy::unwrap_used)]
        let addr = listener.local_addr().unwrap();
        tokio::spawn(keyward_server::serve(
            listener,
            state(AppState::new(vault.clone())),
            std::future::pending(),
        ));
        TestServer {
            base: format!("http://{addr}"),
            vault,
            #[allow(clippy::unwrap_used)]
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _vault: kept,
        }
    }

    /// A new API token with `role` (of `org`): the token and its id.
    ///
    /// # Panics
    ///
    /// When the vault refuses it.
    pub async fn token(&self, role: Role, org: Option<&str>) -> (String, String) {
        #[allow(clippy::unwrap_used)]
        let org = org.map(|o| OrgId::new(o).unwrap());
        let (t, view) = self
            .vault
            .create_token(&format!("{role} person"), role, org.as_ref(), None, "test")
            .await
            .unwrap_or_else(|e| panic!("cannot make a test token: {e}"));
        (t.expose_secret().to_owned(), view.id)
    }

    /// Signs in to the console as a browser on this origin would; the response.
    pub async fn sign_in(&self, token: &str) -> reqwest::Response {
        self.form(
            &self.client.post(self.url("/ui/login")),
            &format!("token={token}"),
        )
        .await
    }

    /// The console's `name=value` session cookie of a sign-in's answer, and its attributes.
    ///
    /// # Panics
    ///
    /// When the answer set no cookie.
    pub fn session_cookie(resp: &reqwest::Response) -> (String, String) {
        let set = resp.headers()["set-cookie"]
            .to_str()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_owned();
        let pair = set.split(';').next().unwrap_or_default().trim().to_owned();
        (pair, set)
    }

    /// A console page, with a session cookie.
    pub async fn page(&self, path: &str, cookie: &str) -> reqwest::Response {
        send(self.client.get(self.url(path)).header("cookie", cookie)).await
    }

    /// A console form sent from this origin, with a session cookie.
    pub async fn post(&self, path: &str, cookie: &str, body: &str) -> reqwest::Response {
        self.form(
            &self.client.post(self.url(path)).header("cookie", cookie),
            body,
        )
        .await
    }

    /// An API request with a bearer token: `method` on `path`, with a JSON body if given.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn form(&self, req: &reqwest::RequestBuilder, body: &str) -> reqwest::Response {
        #[allow(clippy::unwrap_used)]
        let req = req.try_clone().unwrap();
        send(
            req.header("sec-fetch-site", "same-origin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_owned()),
        )
        .await
    }
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send()
        .await
        .unwrap_or_else(|e| panic!("the test server did not answer: {e}"))
}
