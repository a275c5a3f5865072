//! The root key in a KMS, as a user runs it: `KEYWARD_KMS` with a real OpenBao dev server
//! (Transit), moto as AWS KMS, and a SoftHSM2 token; from the first start to leaving the KMS,
//! with canary scans of the data, the output and the audit log.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keyward_testkit::kms::{Bao, Moto, ROOT_TOKEN, SoftHsm, transit_policy};

use crate::sandbox::{Reaped, Sandbox};

const CANARY: &str = "sk-proj-KMSCANARY0123456789abcdefghij";
const KEY: &str = "keyward-kek";

fn add_canary(s: &mut Sandbox) {
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
}

fn resolves(s: &mut Sandbox) {
    let out = s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    assert_eq!(out.trim(), CANARY);
}

fn status(s: &mut Sandbox) -> serde_json::Value {
    s.json(&["master-key", "status", "--json"])
}

/// The key ids in `status`, primary first, with where each lives.
fn kids(status: &serde_json::Value) -> Vec<(String, String)> {
    status["kids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["lives_in"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

/// Whether `needle` occurs in `hay` (raw key bytes as well as text).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// What must never be stored or printed: the master keys (raw and base64) and credentials.
fn assert_nowhere(haystacks: &[(&str, &[u8])], needles: &[(String, Vec<u8>)]) {
    for (place, hay) in haystacks {
        for (what, needle) in needles {
            assert!(!contains(hay, needle), "{what} found in {place}");
        }
    }
}

/// Master keys from a `KID:BASE64[,...]` file, as raw bytes and as base64.
fn keys_of_file(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for item in text.trim().split(',') {
        let (kid, b64) = item.split_once(':').unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw.len(), 32);
        out.push((format!("master key {kid}"), raw));
        out.push((
            format!("master key {kid} (base64)"),
            b64.as_bytes().to_vec(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_keeps_the_root_key_from_the_first_start_to_leaving() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key(KEY).await;
    let token = bao.token_with_policy("keyward", &transit_policy(KEY)).await;
    let mut s = Sandbox::sqlite();
    s.env.insert("VAULT_ADDR".into(), bao.addr.clone());
    s.env.insert("VAULT_TOKEN".into(), token.clone());
    s.env.insert("KEYWARD_KMS".into(), format!("transit:{KEY}"));
    s.env.insert("KEYWARD_PRODUCTION".into(), "1".into());

    // First start: Keyward makes its master key, the KMS wraps it, the store keeps it wrapped.
    add_canary(&mut s);
    resolves(&mut s);
    let st = status(&mut s);
    let listed = kids(&st);
    assert_eq!(listed.len(), 1, "{st}");
    let first = listed[0].0.clone();
    assert!(
        listed[0]
            .1
            .contains("KMS transit:transit/keys/keyward-kek (version 1)"),
        "{st}"
    );
    assert!(!s.data_dir().join("master.key").exists());
    let made = s.ok(&["events", "list", "--filter", "action=create_kms"]);
    assert!(made.contains(&format!("master_key:{first}")), "{made}");

    // `keyward run`: the command gets the provider's key, never the token that opens them all,
    // not even through an env file that names it.
    let env_file = s.scratch().join("app.env");
    std::fs::write(&env_file, format!("VAULT_TOKEN={token}\nGREETING=hello\n")).unwrap();
    let out = s.ok(&[
        "run",
        "--org",
        "acme",
        "--provider",
        "openai",
        "--env-file",
        env_file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo token=${VAULT_TOKEN:-none} key=${OPENAI_API_KEY:+set} $GREETING",
    ]);
    assert_eq!(out.trim(), "token=none key=set hello");

    // The token is Keyward's own, as KEYWARD_* is: no import file reads it, under its name or
    // under another, and no value holding it is stored.
    let litellm = s.scratch().join("litellm.yaml");
    std::fs::write(
        &litellm,
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/VAULT_TOKEN\n",
    )
    .unwrap();
    let import = |s: &mut Sandbox, extra: &[(&str, &str)]| {
        let out = s.run_with(
            &[
                "import",
                "litellm",
                litellm.to_str().unwrap(),
                "--org",
                "acme",
            ],
            "",
            extra,
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let said = import(&mut s, &[]);
    assert!(said.contains("Keyward's own"), "{said}");
    std::fs::write(
        &litellm,
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/MY_COPY\n",
    )
    .unwrap();
    let said = import(&mut s, &[("MY_COPY", &token)]);
    assert!(said.contains("Keyward's own"), "{said}");
    let list = s.json(&["cred", "list", "--org", "acme", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let out = s.run_with(&["var", "set", "COPY", "--org", "acme"], &token, &[]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token));

    // A new Transit key version, and the stored key rewrapped under it.
    bao.rotate_transit_key(KEY).await;
    s.ok(&["master-key", "rewrap-kms"]);
    assert!(kids(&status(&mut s))[0].1.contains("(version 2)"));
    resolves(&mut s);

    // A new master key, made by Keyward and wrapped by the KMS; a rotation moves everything.
    s.ok(&["master-key", "new", "--kid", "k2"]);
    let err = s.fails(&["master-key", "retire", &first], &[]);
    assert!(err.contains("still wraps"), "{err}");
    s.ok(&["master-key", "rotate"]);
    let st = status(&mut s);
    assert_eq!(st["primary"], "k2", "{st}");
    assert_eq!(st["kids"][0]["credentials"], 1, "{st}");
    resolves(&mut s);
    // The old key wraps nothing now: it can go; the primary cannot.
    let err = s.fails(&["master-key", "retire", "k2"], &[]);
    assert!(err.contains("primary"), "{err}");
    s.ok(&["master-key", "retire", &first]);
    assert_eq!(kids(&status(&mut s)).len(), 1);
    resolves(&mut s);

    // A backup carries the wrapped keys: it restores into a new store where the KMS answers.
    let backup = s.scratch().join("backup.jsonl");
    s.ok(&["backup", backup.to_str().unwrap()]);
    let mut t = Sandbox::sqlite();
    for name in [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "KEYWARD_KMS",
        "KEYWARD_PRODUCTION",
    ] {
        t.env.insert(name.into(), s.env[name].clone());
    }
    t.ok(&["restore", backup.to_str().unwrap()]);
    resolves(&mut t);
    assert_eq!(status(&mut t)["primary"], "k2");

    // The KMS refuses a revoked token: a clear error that names the permission, not the token.
    bao.revoke(&token).await;
    let err = s.fails(&["resolve", "--org", "acme", "--provider", "openai"], &[]);
    assert!(
        err.contains("refused") && err.contains("transit/decrypt/keyward-kek"),
        "{err}"
    );
    assert!(!err.contains(&token), "{err}");

    // Leaving: the keys go to a file of the operator's; the store forgets them.
    let token = bao
        .token_with_policy("keyward2", &transit_policy(KEY))
        .await;
    s.env.insert("VAULT_TOKEN".into(), token.clone());
    let file = s.scratch().join("keys.txt");
    s.ok(&[
        "master-key",
        "leave-kms",
        "--key-file",
        file.to_str().unwrap(),
    ]);
    let stored_keys = keys_of_file(&file);
    assert_eq!(
        stored_keys.len(),
        4,
        "k2 and the retired {first}, raw and base64"
    );
    s.env.remove("KEYWARD_KMS");
    s.env
        .insert("KEYWARD_MASTER_KEY_FILE".into(), file.display().to_string());
    resolves(&mut s);
    let st = status(&mut s);
    assert!(
        kids(&st)
            .iter()
            .all(|(_, lives)| lives == "KEYWARD_MASTER_KEY_FILE"),
        "{st}"
    );

    // Every step is in the audit log.
    let events = s.ok(&[
        "events",
        "list",
        "--filter",
        "category=key_management",
        "--limit",
        "50",
    ]);
    for action in [
        "create_kms",
        "rewrap_kms",
        "rotate",
        "retire_kms",
        "leave_kms",
    ] {
        assert!(events.contains(action), "{action} missing from:\n{events}");
    }
    // Neither the master keys nor the KMS's token are on disk, in the output or in the log.
    let stored = s.stored_bytes().await;
    let events_json = s.ok(&["events", "list", "--limit", "200", "--json"]);
    let mut needles = stored_keys;
    needles.push(("the Vault token".into(), token.into_bytes()));
    needles.push(("the root token".into(), ROOT_TOKEN.as_bytes().to_vec()));
    needles.push(("the canary".into(), CANARY.as_bytes().to_vec()));
    let transcript = std::mem::take(&mut s.transcript);
    // The transcript holds the canary where `resolve` printed it, by design: scan it for keys.
    assert_nowhere(
        &[
            ("the data directory", &stored),
            ("the audit log", events_json.as_bytes()),
        ],
        &needles,
    );
    assert_nowhere(
        &[("the output", &transcript)],
        &needles[..needles.len() - 1],
    );
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_environment_are_adopted_by_the_kms_and_everything_stays_readable() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key(KEY).await;
    let token = bao.token_with_policy("keyward", &transit_policy(KEY)).await;
    for pg in [false, true] {
        let mut s = if pg {
            match Sandbox::postgres().await {
                Some(s) => s,
                None => continue,
            }
        } else {
            Sandbox::sqlite()
        };
        let key = s.ok(&["keygen"]).trim().to_owned();
        s.env
            .insert("KEYWARD_MASTER_KEYS".into(), format!("k1:{key}"));
        add_canary(&mut s);
        s.env.insert("VAULT_ADDR".into(), bao.addr.clone());
        s.env.insert("VAULT_TOKEN".into(), token.clone());
        // Both set: only adopt-kms takes them; anything else says what to do.
        s.env.insert("KEYWARD_KMS".into(), format!("transit:{KEY}"));
        let err = s.fails(&["cred", "list"], &[]);
        assert!(err.contains("adopt-kms"), "{err}");
        // A KMS with no keys for a store that has data: refused, with the way to adopt.
        let err = s.fails(&["cred", "list"], &[("KEYWARD_MASTER_KEYS", "")]);
        assert!(err.contains("adopt-kms") && err.contains("'k1'"), "{err}");
        s.ok(&["master-key", "adopt-kms"]);
        s.env.remove("KEYWARD_MASTER_KEYS");
        resolves(&mut s);
        let st = status(&mut s);
        assert_eq!(kids(&st)[0].0, "k1");
        assert!(kids(&st)[0].1.starts_with("KMS transit:"), "{st}");
        let events = s.ok(&["events", "list", "--filter", "action=adopt_kms"]);
        assert!(events.contains("master_key:k1"), "{events}");
        let stored = s.stored_bytes().await;
        assert!(!contains(&stored, key.as_bytes()));
        // Started with another key and without the KMS: it says where the missing key lives.
        let other = s.ok(&["keygen"]).trim().to_owned();
        let out = s.run_with(
            &["cred", "list"],
            "",
            &[
                ("KEYWARD_KMS", ""),
                ("KEYWARD_MASTER_KEYS", &format!("k9:{other}")),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("master key 'k1' is not configured")
                && err.contains("KEYWARD_KMS set to the KMS that keeps it (KMS transit:"),
            "{err}"
        );
        // Started with no key at all: no development key is made for a KMS's store.
        let err = s.fails(&["cred", "list"], &[("KEYWARD_KMS", "")]);
        assert!(err.contains("KEYWARD_KMS"), "{err}");
        assert!(!s.data_dir().join("master.key").exists());
        s.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_key_is_adopted_and_leaves_the_data_directory() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key(KEY).await;
    let token = bao.token_with_policy("keyward", &transit_policy(KEY)).await;
    let mut s = Sandbox::sqlite();
    add_canary(&mut s);
    let dev_key = s.data_dir().join("master.key");
    assert!(dev_key.exists());
    s.env.insert("VAULT_ADDR".into(), bao.addr.clone());
    s.env.insert("VAULT_TOKEN".into(), token);
    s.env.insert("KEYWARD_KMS".into(), format!("transit:{KEY}"));
    let out = s.ok(&["master-key", "adopt-kms"]);
    assert!(out.contains("removed the development key file"), "{out}");
    assert!(!dev_key.exists());
    resolves(&mut s);
    // Another key under the development key's id is not adopted in its place.
    let other = s.ok(&["keygen"]).trim().to_owned();
    let err = s.fails(
        &["master-key", "adopt-kms"],
        &[("KEYWARD_MASTER_KEYS", &format!("dev:{other}"))],
    );
    assert!(
        err.contains("is another one") && err.contains("nothing was stored"),
        "{err}"
    );
    // Two new keys within one second get ids of their own.
    s.ok(&["master-key", "new"]);
    s.ok(&["master-key", "new"]);
    assert_eq!(kids(&status(&mut s)).len(), 3);
    s.cleanup().await;
}

/// A server started before `master-key new` keeps sealing under its old primary; retiring that
/// key from the command line must not lose what the server writes afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_key_still_opens_what_a_server_started_before_wrote_under_it() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key(KEY).await;
    let token = bao.token_with_policy("keyward", &transit_policy(KEY)).await;
    let mut s = Sandbox::sqlite();
    s.env.insert("VAULT_ADDR".into(), bao.addr.clone());
    s.env.insert("VAULT_TOKEN".into(), token);
    s.env.insert("KEYWARD_KMS".into(), format!("transit:{KEY}"));
    let admin = "kwt_kms_admin_token_retire_0123456789abcdefghij";
    s.env.insert("KEYWARD_ADMIN_TOKEN".into(), admin.into());
    s.ok(&["org", "create", "acme"]);
    let old = kids(&status(&mut s))[0].0.clone();
    let listen = keyward_testkit::closed_addr();
    let mut server = Reaped(
        s.command(&["serve", "--listen", &listen.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = keyward_testkit::kms::client();
    let base = format!("http://{listen}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < until, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The command line moves on; the server does not know.
    s.ok(&["master-key", "new", "--kid", "k2"]);
    s.ok(&["master-key", "rotate"]);
    s.ok(&["master-key", "retire", &old]);
    let made = client
        .post(format!("{base}/api/provider-credentials/create"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"organization_id": "acme", "provider": "openai", "credential_name": "late", "api_key": CANARY}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let _ = server.0.kill();
    let _ = server.0.wait();
    // After the restart the record opens; status lists the retired key while it wraps it,
    // and a rotation moves it.
    resolves(&mut s);
    let st = status(&mut s);
    assert!(kids(&st).iter().any(|(k, _)| k == &old), "{st}");
    s.ok(&["master-key", "rotate"]);
    let st = status(&mut s);
    assert_eq!(kids(&st).len(), 1, "{st}");
    resolves(&mut s);
}

/// The KMS's credential is Keyward's own wherever it comes from (a token file, here) and under
/// whatever name a copy of it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_credential_is_never_handed_on_or_stored_whatever_its_name() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key(KEY).await;
    let token = bao.token_with_policy("keyward", &transit_policy(KEY)).await;
    let mut s = Sandbox::sqlite();
    let token_file = s.scratch().join("vault-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    s.env.insert("VAULT_ADDR".into(), bao.addr.clone());
    s.env.insert(
        "KEYWARD_KMS".into(),
        format!("transit:{KEY},token_file={}", token_file.display()),
    );
    add_canary(&mut s);
    // Not stored, under any name.
    let out = s.run_with(
        &["var", "set", "COPY", "--org", "acme", "--sensitive"],
        &token,
        &[],
    );
    assert!(!out.status.success());
    // Not a provider key by way of the environment fallback.
    let out = s.run_with(
        &["resolve", "--org", "acme", "--provider", "mistral"],
        "",
        &[("MISTRAL_API_KEY", &token)],
    );
    assert!(!out.status.success());
    // Not handed to a command: neither a copy nor KEYWARD_KMS, which names the file.
    let out = s.ok_with(
        &[
            "run",
            "--org",
            "acme",
            "--",
            "sh",
            "-c",
            "echo copy=${MY_COPY:-none} kms=${KEYWARD_KMS:-none}",
        ],
        "",
        &[("MY_COPY", &token)],
    );
    assert_eq!(out.trim(), "copy=none kms=none");
    assert!(!contains(&s.transcript, token.as_bytes()));
    assert!(!contains(&s.stored_bytes().await, token.as_bytes()));
}

/// `keyward serve` started before its KMS: it answers `/readyz` 503 saying why and tries again;
/// once the KMS answers it serves, and it keeps serving when the KMS goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_the_kms_and_keeps_serving_without_it() {
    let port = Bao::reserve_port();
    let mut s = Sandbox::sqlite();
    s.env
        .insert("VAULT_ADDR".into(), format!("http://127.0.0.1:{port}"));
    s.env.insert("VAULT_TOKEN".into(), ROOT_TOKEN.into());
    s.env.insert("KEYWARD_KMS".into(), format!("transit:{KEY}"));
    s.env.insert(
        "KEYWARD_ADMIN_TOKEN".into(),
        "kwt_kms_admin_token_0123456789abcdefghijklmnop".into(),
    );
    let listen = keyward_testkit::closed_addr();
    let mut server = Reaped(
        s.command(&["serve", "--listen", &listen.to_string()])
            .env("KEYWARD_LOG", "debug")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = &mut server.0;
    let mut stderr = server.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let client = keyward_testkit::kms::client();
    let base = format!("http://{listen}");
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let client = client.clone();
        async move {
            match client.get(url).send().await {
                Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap())),
                Err(_) => None,
            }
        }
    };
    // Waiting: up, not ready, saying why.
    let until = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        if let Some(answer) = get("/readyz").await {
            break answer;
        }
        assert!(Instant::now() < until, "serve never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("waiting for the KMS (transit)"), "{body}");
    // The answer is public: nothing of where the KMS is.
    assert!(
        !body.contains(&port.to_string()) && !body.contains("keyward-kek"),
        "{body}"
    );
    assert_eq!(get("/healthz").await.unwrap().0, 200);
    assert_eq!(get("/api/v1/orgs").await.unwrap().0, 503);

    // The KMS comes up: the server makes its master key and becomes ready.
    let Some(mut bao) = Bao::start_at(port).await else {
        let _ = server.kill();
        let _ = server.wait();
        return;
    };
    bao.transit_key(KEY).await;
    let until = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = get("/readyz").await {
            break body;
        }
        assert!(Instant::now() < until, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains("master keys: unwrapped by the KMS (transit) at start"),
        "{body}"
    );
    let admin = s.env["KEYWARD_ADMIN_TOKEN"].clone();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    assert_eq!(
        post("/api/v1/orgs", serde_json::json!({"id": "acme"}))
            .await
            .unwrap()
            .status(),
        201
    );
    let made = post(
        "/api/provider-credentials/create",
        serde_json::json!({"organization_id": "acme", "provider": "openai", "credential_name": "prod", "api_key": CANARY}),
    )
    .await
    .unwrap();
    assert_eq!(made.status(), 201);

    // A client in remote mode on this machine, where KEYWARD_KMS is set too: its command gets
    // no KMS credential either.
    let out = s.ok_with(
        &[
            "run",
            "--org",
            "acme",
            "--",
            "sh",
            "-c",
            "echo token=${VAULT_TOKEN:-none}",
        ],
        "",
        &[
            ("KEYWARD_URL", base.as_str()),
            ("KEYWARD_TOKEN", admin.as_str()),
        ],
    );
    assert_eq!(out.trim(), "token=none");
    // Nor through an env file under another name, nor as a provider key of its environment.
    let env_file = s.scratch().join("remote.env");
    std::fs::write(&env_file, format!("OTHER={ROOT_TOKEN}\nFOO=bar\n")).unwrap();
    let remote = [
        ("KEYWARD_URL", base.as_str()),
        ("KEYWARD_TOKEN", admin.as_str()),
        ("MISTRAL_API_KEY", ROOT_TOKEN),
    ];
    let out = s.ok_with(
        &[
            "run",
            "--org",
            "acme",
            "--env-file",
            env_file.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo other=${OTHER:-none} foo=$FOO",
        ],
        "",
        &remote,
    );
    assert_eq!(out.trim(), "other=none foo=bar");
    let out = s.run_with(
        &["resolve", "--org", "acme", "--provider", "mistral"],
        "",
        &remote,
    );
    assert!(!out.status.success());
    assert!(!contains(&out.stdout, ROOT_TOKEN.as_bytes()));

    // The KMS goes away: no request needs it.
    bao.stop();
    for _ in 0..3 {
        let r = post(
            "/api/v1/resolve",
            serde_json::json!({"organization_id": "acme", "provider": "openai"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains(CANARY));
    }
    assert_eq!(get("/readyz").await.unwrap().0, 200);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stdout = {
        let mut out = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .lines()
            .for_each(|l| {
                out.push_str(&l.unwrap());
                out.push('\n');
            });
        out
    };
    assert!(server.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(
        log.contains("cannot be reached; trying again") && log.contains("cannot connect"),
        "{log}"
    );
    for text in [&log, &stdout] {
        assert!(
            !text.contains(ROOT_TOKEN) && !text.contains(CANARY),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_wraps_the_master_keys_and_a_moved_alias_is_followed_by_rewrap() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let key = moto.create_key("keyward kek").await;
    moto.create_alias("alias/keyward-kek", &key.id).await;
    moto.enable_auth().await;
    let user = moto
        .iam_user("keyward", &["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"])
        .await;
    let mut s = Sandbox::sqlite();
    for (k, v) in user.env() {
        s.env.insert(k.into(), v);
    }
    s.env.insert("AWS_REGION".into(), "us-east-1".into());
    s.env
        .insert("KEYWARD_KMS_ENDPOINT".into(), moto.endpoint.clone());
    s.env
        .insert("KEYWARD_KMS".into(), "aws-kms:alias/keyward-kek".into());
    add_canary(&mut s);
    resolves(&mut s);
    let st = status(&mut s);
    assert!(kids(&st)[0].1.contains("aws-kms"), "{st}");
    // The AWS keys Keyward signs in to its KMS with are nobody's Bedrock key: no fallback to
    // them, no import of them.
    let err = s.fails(&["resolve", "--org", "acme", "--provider", "bedrock"], &[]);
    assert!(!err.contains(&user.secret_access_key), "{err}");
    let plan = s.run_with(&["import", "env", "--org", "acme", "--dry-run"], "", &[]);
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(!plan.contains("bedrock"), "{plan}");
    assert!(kids(&st)[0].1.contains(&key.arn), "{st}");
    // The alias moves to a new KMS key: rewrap, and the new key is the one that opens it.
    let second = moto.create_key("keyward kek 2").await;
    moto.update_alias("alias/keyward-kek", &second.id).await;
    s.ok(&["master-key", "rewrap-kms"]);
    let st = status(&mut s);
    assert!(kids(&st)[0].1.contains(&second.arn), "{st}");
    resolves(&mut s);
    let stored = s.stored_bytes().await;
    assert!(!contains(&stored, user.secret_access_key.as_bytes()));
    assert!(!contains(&s.transcript, user.secret_access_key.as_bytes()));
    s.cleanup().await;
}

#[test]
fn a_pkcs11_token_wraps_the_master_keys() {
    let Some(hsm) = SoftHsm::for_other_processes() else {
        return;
    };
    hsm.aes_key("keyward-kek", "01");
    let mut s = Sandbox::sqlite();
    s.env
        .insert("SOFTHSM2_CONF".into(), hsm.conf.display().to_string());
    s.env.insert("KEYWARD_PKCS11_PIN".into(), hsm.pin.clone());
    s.env.insert("KEYWARD_KMS".into(), hsm.spec("keyward-kek"));
    add_canary(&mut s);
    resolves(&mut s);
    let st = s.json(&["master-key", "status", "--json"]);
    assert!(kids(&st)[0].1.contains("KMS pkcs11:"), "{st}");
    // A wrong PIN: refused, without the PIN.
    let err = s.fails(
        &["resolve", "--org", "acme", "--provider", "openai"],
        &[("KEYWARD_PKCS11_PIN", "999999-wrong-pin")],
    );
    assert!(
        err.contains("PIN") && !err.contains("999999-wrong-pin"),
        "{err}"
    );
    assert!(!err.contains(&hsm.pin));
    assert!(!contains(&s.transcript, hsm.pin.as_bytes()));
}
