//! Workload identity from outside: `keyward serve` with workload rules, and a program in remote
//! mode whose only credential is its platform's token in a file (`KEYWARD_TOKEN_FILE`), read at
//! every call because such tokens rotate.

use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;

use crate::sandbox::Sandbox;

const CANARY: &str = "sk-proj-WLCANARY0123456789abcdefghijkl";
const ISS: &str = "https://kubernetes.default.svc.cluster.local";

fn sign(pair: &rcgen::KeyPair, sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(
        &header,
        &json!({"iss": ISS, "aud": ["keyward"], "sub": sub, "iat": now, "exp": now + 600,
                "kubernetes.io": {"namespace": "acme", "serviceaccount": {"name": "app"}}}),
        &jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
    )
    .unwrap()
}

#[test]
fn a_program_resolves_with_its_projected_token_and_no_keyward_token() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let pair = rcgen::KeyPair::generate().unwrap();
    let raw = pair.public_key_raw();
    let jwks = s.scratch().join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
                         "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}]})
        .to_string(),
    )
    .unwrap();
    let rules = s.scratch().join("workloads.yaml");
    std::fs::write(
        &rules,
        format!(
            "workloads:\n  - name: k8s\n    issuer: {ISS}\n    jwks_file: {}\n    algorithm: ES256\n    audience: keyward\n    match: {{ sub: \"system:serviceaccount:acme:*\" }}\n    role: resolver\n    org: acme\n",
            jwks.display()
        ),
    )
    .unwrap();
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
    let mut server = s
        .command(&["serve", "--listen", &listen.to_string()])
        .env("KEYWARD_WORKLOAD_IDENTITY", &rules)
        .env(
            "KEYWARD_ADMIN_TOKEN",
            "kwt_workload_admin_token_0123456789abcdefghij",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < until, "serve never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let token_file = s.scratch().join("token");
    std::fs::write(&token_file, sign(&pair, "system:serviceaccount:acme:app")).unwrap();
    let remote = |s: &mut Sandbox| {
        s.run_with(
            &["resolve", "--org", "acme", "--provider", "openai"],
            "",
            &[
                ("KEYWARD_URL", &format!("http://{listen}")),
                ("KEYWARD_TOKEN_FILE", token_file.to_str().unwrap()),
                ("KEYWARD_MASTER_KEY", ""),
                ("KEYWARD_DATA_DIR", "/nonexistent/keyward-data"),
            ],
        )
    };
    let out = remote(&mut s);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), CANARY);
    // The platform rotates the token: another service account's is refused...
    std::fs::write(&token_file, sign(&pair, "system:serviceaccount:globex:app")).unwrap();
    assert!(!remote(&mut s).status.success());
    // ...and the next good one works without a restart of anything.
    std::fs::write(
        &token_file,
        sign(&pair, "system:serviceaccount:acme:worker"),
    )
    .unwrap();
    assert!(remote(&mut s).status.success());
    // A FIFO where the token should be is refused at once, not waited on.
    let fifo = s.scratch().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = s.run_with(
        &["resolve", "--org", "acme", "--provider", "openai"],
        "",
        &[
            ("KEYWARD_URL", &format!("http://{listen}")),
            ("KEYWARD_TOKEN_FILE", fifo.to_str().unwrap()),
            ("KEYWARD_MASTER_KEY", ""),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = server.kill();
    let mut err = String::new();
    let _ = server.stderr.take().unwrap().read_to_string(&mut err);
    let _ = server.wait();
    assert!(!err.contains(CANARY), "{err}");
}
