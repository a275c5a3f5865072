//! Single sign-on and workload identity through the `keyward` binary, against the real
//! `oidc-provider`: `keyward sso status` (here and against a server), a person signed in to a
//! `keyward serve` listed and ended with `keyward session list|end`, and a program resolving
//! with a Kubernetes-shaped token the provider signed (its keys fetched from the provider's
//! JWKS), with no Keyward token anywhere.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyward_testkit::oidc::{CLIENT_SECRET, Provider};
use serde_json::json;

use crate::sandbox::Sandbox;

const CANARY: &str = "sk-proj-SSOCLICANARY0123456789abcdefghij";
const ADMIN: &str = "kwt_sso_cli_admin_token_0123456789abcdefghij";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running `keyward serve`, killed when dropped.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_status_sessions_and_a_workload_token_of_the_provider() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "prod",
        ],
        CANARY,
        &[],
    );
    let listen = keyward_testkit::closed_addr();
    let secret = s.scratch().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let jwks_uri = provider.discovery().await["jwks_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let identity = s.scratch().join("identity.yaml");
    std::fs::write(
        &identity,
        format!(
            "oidc:
  issuer: {issuer}
  client_id: keyward-console
  client_secret_file: {secret}
  redirect_url: http://{listen}/ui/sso/callback
  post_logout_redirect_url: http://{listen}/ui/login
  scopes: [openid, email, groups]
  rules:
    - when: {{ groups: acme-keys }}
      grant: {{ role: org_admin, org: acme }}
workloads:
  - name: k8s
    issuer: {issuer}
    jwks_url: {jwks_uri}
    algorithm: RS256
    audience: keyward
    match: {{ sub: \"system:serviceaccount:acme:*\" }}
    role: resolver
    org: acme
",
            issuer = provider.issuer,
            secret = secret.display(),
        ),
    )
    .unwrap();
    provider
        .register_client(
            &format!("http://{listen}/ui/sso/callback"),
            &format!("http://{listen}/ui/login"),
        )
        .await;

    // `sso status` here reads the identity file and asks the provider.
    let status = s.ok_with(
        &["sso", "status"],
        "",
        &[("KEYWARD_IDENTITY_CONFIG", identity.to_str().unwrap())],
    );
    assert!(
        status.contains(&provider.issuer) && status.contains("answers"),
        "{status}"
    );
    assert!(status.contains("here and at the provider"), "{status}");
    assert!(!status.contains(CLIENT_SECRET), "{status}");

    let mut server = Serve(
        s.command(&["serve", "--listen", &listen.to_string()])
            .env("KEYWARD_IDENTITY_CONFIG", &identity)
            .env("KEYWARD_ADMIN_TOKEN", ADMIN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < until, "serve never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("http://{listen}");
    let remote = [
        ("KEYWARD_URL", base.as_str()),
        ("KEYWARD_TOKEN", ADMIN),
        ("KEYWARD_MASTER_KEY", ""),
        ("KEYWARD_DATA_DIR", "/nonexistent/keyward-data"),
    ];
    let status = s.ok_with(&["sso", "status", "--json"], "", &remote);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["configured"], true);
    assert_eq!(status["reachable"], true, "{status}");
    assert_eq!(status["rules"], 1);

    // bob signs in to the console through the provider.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = http
        .get(format!("{base}/ui/sso/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let login_cookie = start
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let auth = start.headers()["location"].to_str().unwrap().to_owned();
    let callback = provider.sign_in_by_http(&auth, "bob").await;
    let signed = http
        .get(&callback)
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);

    // The admin lists the sessions and ends bob's.
    let listed = s.ok_with(&["session", "list"], "", &remote);
    assert!(listed.contains("bob@example.test (sso)"), "{listed}");
    assert!(listed.contains("org_admin of acme"), "{listed}");
    let sessions: serde_json::Value =
        serde_json::from_str(&s.ok_with(&["session", "list", "--json"], "", &remote)).unwrap();
    let id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["actor"] == "bob@example.test (sso)")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = s.ok_with(&["session", "end", &id], "", &remote);
    assert!(ended.contains(&id), "{ended}");
    let listed = s.ok_with(&["session", "list"], "", &remote);
    assert!(!listed.contains("bob@example.test"), "{listed}");
    let again = s.fails(&["session", "end", &id], &remote);
    assert!(again.contains("no live session"), "{again}");

    // A program with a Kubernetes-shaped token the provider signed resolves acme's key; the
    // provider's key set is fetched from its JWKS.
    let token = provider
        .sign(json!({
            "iss": provider.issuer, "aud": ["keyward"], "sub": "system:serviceaccount:acme:app",
            "iat": now(), "exp": now() + 600,
            "kubernetes.io": {"namespace": "acme", "serviceaccount": {"name": "app"}}
        }))
        .await;
    let token_file = s.scratch().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let workload = [
        ("KEYWARD_URL", base.as_str()),
        ("KEYWARD_TOKEN", ""),
        ("KEYWARD_TOKEN_FILE", token_file.to_str().unwrap()),
        ("KEYWARD_MASTER_KEY", ""),
        ("KEYWARD_DATA_DIR", "/nonexistent/keyward-data"),
    ];
    let got = s.ok_with(
        &["resolve", "--org", "acme", "--provider", "openai"],
        "",
        &workload,
    );
    assert_eq!(got.trim(), CANARY);
    // One of another namespace gets nothing.
    let other = provider
        .sign(json!({
            "iss": provider.issuer, "aud": ["keyward"], "sub": "system:serviceaccount:globex:app",
            "iat": now(), "exp": now() + 600
        }))
        .await;
    std::fs::write(&token_file, &other).unwrap();
    s.fails(
        &["resolve", "--org", "acme", "--provider", "openai"],
        &workload,
    );

    // Nothing of the provider's (the client secret, the code, tokens) is in the server's log
    // or the audit log.
    let events = s.ok_with(&["events", "list", "--json"], "", &remote);
    let code = reqwest::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let _ = server.0.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut log).unwrap();
    for (what, text) in [("audit log", &events), ("server log", &log)] {
        for secret in [
            CLIENT_SECRET,
            CANARY,
            code.as_str(),
            token.as_str(),
            other.as_str(),
        ] {
            assert!(!text.contains(secret), "{what} holds a secret");
        }
    }
    assert!(events.contains("bob@example.test (sso)"));
    assert!(events.contains("workload:k8s:system:serviceaccount:acme:app"));
}
