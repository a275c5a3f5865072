//! A test server: `keyward_server` on 127.0.0.1 over a [`TestVault`], and a client that speaks
//! to it as the API's callers and the console's browsers do.

use std::net::SocketAddr;

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
    /// Its address, for raw connections.
    pub addr: SocketAddr,
    /// The vault it serves, for setting up and for looking behind the answers.
    pub vault: Vault,
    /// A client that does not follow redirects (the console answers forms with 303).
    pub client: reqwest::Client,
    kept: TestVault,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// A server over a fresh vault (SQLite), with `state` applied to its settings.
    ///
    /// # Panics
    ///
    /// When it cannot be started: the test cannot go on.
    pub async fn start(state: impl FnOnce(AppState) -> AppState) -> Self {
        Self::start_on(TestVault::open().await, state).await
    }

    /// A server over `vault` (on SQLite or PostgreSQL), with `state` applied to its settings.
    ///
    /// # Panics
    ///
    /// When it cannot be started: the test cannot go on.
    pub async fn start_on(vault: TestVault, state: impl FnOnce(AppState) -> AppState) -> Self {
        Self::start_at(vault, |s, _| state(s)).await
    }

    /// A server over `vault` whose settings need its own address (a redirect URL an identity
    /// provider sends browsers back to): `state` is given the address it will listen on.
    ///
    /// # Panics
    ///
    /// When it cannot be started: the test cannot go on.
    pub async fn start_at(
        vault: TestVault,
        state: impl FnOnce(AppState, SocketAddr) -> AppState,
    ) -> Self {
        // reqwest is built without a default TLS provider; the tests speak plain HTTP anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = bind().await;
        let addr = local_addr(&listener);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(keyward_server::serve(
            listener,
            state(AppState::new(vault.vault.clone()), addr),
            async {
                let _ = stop.await;
            },
        ));
        TestServer {
            base: format!("http://{addr}"),
            addr,
            vault: vault.vault.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|e| panic!("a test client: {e}")),
            kept: vault,
            shutdown,
            task,
        }
    }

    /// The test vault it serves (its files, its schema).
    pub fn test_vault(&self) -> &TestVault {
        &self.kept
    }

    /// Stops it as `keyward serve` stops (the requests in flight finished, the last usage
    /// written), then closes its vault and drops its schema.
    ///
    /// # Panics
    ///
    /// When the server failed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task
            .await
            .unwrap_or_else(|e| panic!("the test server's task: {e}"))
            .unwrap_or_else(|e| panic!("the test server: {e}"));
        self.kept.close().await;
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

/// Serves `state` on a free port of 127.0.0.1 until the test ends; its address. For a test
/// that builds its own vault (or serves one vault twice); [`TestServer`] is the rest.
///
/// # Panics
///
/// When no port can be had.
pub async fn spawn_server(state: AppState) -> SocketAddr {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = bind().await;
    let addr = local_addr(&listener);
    tokio::spawn(keyward_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    addr
}

async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

fn local_addr(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the listener's address: {e}"))
}

/// An address of 127.0.0.1 that nothing listens on (bound, noted, closed): a provider that
/// cannot be reached.
///
/// # Panics
///
/// When no port can be had.
pub fn closed_addr() -> SocketAddr {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the listener's address: {e}"))
}
