//! The core vault through the CLI: the README tour, master keys, the development key, and a
//! rotation killed mid-way.

use std::time::{Duration, Instant};

use keyward_testkit::contains;
use sqlx::Row as _;

use crate::sandbox::Sandbox;

const CANARY_OPENAI_ACME: &str = "sk-proj-CANARYacme0penai7f3a9c1e5b2d8f4a";
const CANARY_ANTHROPIC_ACME: &str = "sk-ant-api03-CANARYacmeAnthr0pic2b4d6f8a0";
const CANARY_OPENAI_GLOBEX: &str = "sk-proj-CANARYgl0bex0penai9e8d7c6b5a4f3e";
const CANARY_ANTHROPIC_GLOBEX: &str = "sk-ant-api03-CANARYgl0bexAnthr0pic1a2b3c";

fn id_of(list: &serde_json::Value, org: &str, provider: &str) -> String {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["org"] == org && c["provider"] == provider)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The "done when" of the core vault: the README's tour, checked.
async fn readme_tour(mut s: Sandbox) {
    let first_key = s.ok(&["keygen"]).trim().to_owned();
    assert_eq!(first_key.len(), 44, "a base64 256-bit key");
    s.env.insert("KEYWARD_MASTER_KEY".into(), first_key.clone());

    s.ok(&["org", "create", "acme", "--name", "Acme Inc"]);
    s.ok(&["org", "create", "globex"]);
    let orgs = s.json(&["org", "list", "--json"]);
    assert_eq!(orgs.as_array().unwrap().len(), 2);

    // Keys from standard input and from a named variable; never as arguments.
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
        &format!("{CANARY_OPENAI_ACME}\n"),
        &[],
    );
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "anthropic",
            "--name",
            "main",
            "--api-key-env",
            "MY_KEY",
        ],
        "",
        &[("MY_KEY", CANARY_ANTHROPIC_ACME)],
    );
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "globex",
            "--provider",
            "openai",
            "--name",
            "prod",
            "--priority",
            "5",
        ],
        CANARY_OPENAI_GLOBEX,
        &[],
    );
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "globex",
            "--provider",
            "anthropic",
            "--name",
            "main",
        ],
        CANARY_ANTHROPIC_GLOBEX,
        &[],
    );
    // A key of the wrong shape is refused, saying what was expected, unless told otherwise.
    let out = s.run_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "bad",
        ],
        "not-an-openai-key-CANARYbad",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("'sk-'"), "{err}");

    // Listed masked.
    let table = s.ok(&["cred", "list"]);
    assert!(
        table.contains("sk-...8f4a") && table.contains("sk-ant-...f8a0"),
        "{table}"
    );
    let list = s.json(&["cred", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(list.as_array().unwrap().iter().all(|c| c["status"] == "ok"));

    // Deactivate one; resolve another.
    let acme_openai = id_of(&list, "acme", "openai");
    s.ok(&["cred", "deactivate", &acme_openai]);
    let err = s.fails(
        &[
            "resolve",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--no-env-fallback",
        ],
        &[],
    );
    assert!(
        err.contains("organization 'acme' has no active OpenAI credential;"),
        "{err}"
    );
    let err = s.fails(&["resolve", "--org", "acme", "--provider", "openai"], &[]);
    assert!(err.contains("OPENAI_API_KEY is not set"), "{err}");
    assert_eq!(
        s.ok(&["resolve", "--org", "globex", "--provider", "openai"])
            .trim(),
        CANARY_OPENAI_GLOBEX
    );
    let resolved = s.json(&[
        "resolve",
        "--org",
        "acme",
        "--provider",
        "anthropic",
        "--json",
    ]);
    assert_eq!(resolved["api_key"], CANARY_ANTHROPIC_ACME);
    // The same shape as HTTP resolution's config object.
    assert_eq!(resolved["source"], "vault");
    assert!(resolved["credential_id"].is_string(), "{resolved}");
    assert_eq!(resolved["base_url"], "https://api.anthropic.com");
    s.ok(&["cred", "activate", &acme_openai]);
    s.ok(&["cred", "show", &acme_openai]);

    // Variables.
    s.ok_with(
        &["var", "set", "LOG_LEVEL", "--description", "verbosity"],
        "debug\n",
        &[],
    );
    s.ok_with(
        &[
            "var",
            "set",
            "anthropic.production.key",
            "--org",
            "acme",
            "--sensitive",
        ],
        "CANARYvariable\n",
        &[],
    );
    let vars = s.ok(&["var", "list"]);
    assert!(vars.contains("debug") && vars.contains("***"), "{vars}");
    assert_eq!(s.ok(&["var", "get", "LOG_LEVEL"]).trim(), "debug");
    assert_eq!(
        s.ok(&["var", "get", "anthropic.production.key", "--org", "acme"])
            .trim(),
        "***"
    );
    assert_eq!(
        s.ok(&[
            "var",
            "get",
            "anthropic.production.key",
            "--org",
            "acme",
            "--reveal"
        ])
        .trim(),
        "CANARYvariable"
    );

    // No key in plain text in the database.
    let stored = s.stored_bytes().await;
    assert!(stored.len() > 1000);
    assert!(
        !contains(&stored, "CANARY"),
        "a secret is stored in plain text"
    );

    // Rotate the master key, then drop the old one: every key still resolves. A primary key
    // given only in a variable is refused (nothing shows it is kept); in a file it is not.
    let second_key = s.ok(&["keygen"]).trim().to_owned();
    s.env.remove("KEYWARD_MASTER_KEY");
    s.env.insert(
        "KEYWARD_MASTER_KEYS".into(),
        format!("k2:{second_key},default:{first_key}"),
    );
    let status = s.json(&["master-key", "status", "--json"]);
    assert_eq!(status["primary"], "k2");
    let refused = s.fails(&["master-key", "rotate"], &[]);
    assert!(refused.contains("--new-key-file"), "{refused}");
    let status = s.json(&["master-key", "status", "--json"]);
    assert_eq!(status["kids"][0]["credentials"], 0, "nothing was rewrapped");
    let keys_file = s.scratch().join("master.keys");
    std::fs::write(&keys_file, format!("k2:{second_key},default:{first_key}\n")).unwrap();
    s.env.remove("KEYWARD_MASTER_KEYS");
    s.env.insert(
        "KEYWARD_MASTER_KEY_FILE".into(),
        keys_file.display().to_string(),
    );
    let rotate = s.run_with(&["master-key", "rotate"], "", &[]);
    let stderr = String::from_utf8_lossy(&rotate.stderr);
    assert!(rotate.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&rotate.stdout).contains("rewrapped 6 record(s)"),
        "4 credentials, 1 variable, 1 chain key"
    );
    s.env.remove("KEYWARD_MASTER_KEY_FILE");
    s.env
        .insert("KEYWARD_MASTER_KEYS".into(), format!("k2:{second_key}"));
    for (org, provider, key) in [
        ("acme", "openai", CANARY_OPENAI_ACME),
        ("acme", "anthropic", CANARY_ANTHROPIC_ACME),
        ("globex", "openai", CANARY_OPENAI_GLOBEX),
        ("globex", "anthropic", CANARY_ANTHROPIC_GLOBEX),
    ] {
        assert_eq!(
            s.ok(&["resolve", "--org", org, "--provider", provider])
                .trim(),
            key
        );
    }
    let status = s.json(&["master-key", "status", "--json"]);
    assert_eq!(status["kids"][0]["credentials"], 4);

    // The wrong master key: undecryptable rows, a warning naming the missing key, no crash.
    let wrong = s.ok(&["keygen"]).trim().to_owned();
    let out = s.run_with(
        &["cred", "list", "--json"],
        "",
        &[("KEYWARD_MASTER_KEYS", &format!("k3:{wrong}"))],
    );
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "undecryptable")
    );
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains("master key 'k2' is not configured but wraps 4 credential(s)"),
        "{warn}"
    );
    let err = s.fails(
        &[
            "resolve",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--no-env-fallback",
        ],
        &[("KEYWARD_MASTER_KEYS", &format!("k3:{wrong}"))],
    );
    assert!(err.contains("audit log cannot be written"), "{err}");

    // The audit trail of all of it, and its chain intact.
    let events = s.json(&["events", "list", "--limit", "1000", "--json"]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "create",
        "deactivate",
        "activate",
        "resolve",
        "reveal",
        "rotate_start",
        "rotate",
    ] {
        assert!(
            actions.contains(&expected),
            "no {expected} event in {actions:?}"
        );
    }
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "cli:tester")
    );
    let filtered = s.json(&[
        "events",
        "list",
        "--filter",
        "category=key_management",
        "--json",
    ]);
    assert_eq!(filtered.as_array().unwrap().len(), 2);
    assert!(s.ok(&["events", "verify"]).contains("audit chain intact"));

    // Delete asks for --yes when it cannot ask.
    let err = s.fails(&["cred", "delete", &acme_openai], &[]);
    assert!(err.contains("--yes"), "{err}");
    s.ok(&["cred", "delete", &acme_openai, "--yes"]);

    // Not one byte of a secret in anything any command printed, except where asked for:
    // the resolve and reveal outputs, which are excluded by construction below.
    let printed = String::from_utf8_lossy(&s.transcript).to_string();
    let allowed = [
        CANARY_OPENAI_ACME,
        CANARY_ANTHROPIC_ACME,
        CANARY_OPENAI_GLOBEX,
        CANARY_ANTHROPIC_GLOBEX,
        "CANARYvariable",
    ];
    let mut scrubbed = printed.clone();
    for key in allowed {
        // Resolution printed these on purpose; count them, then look for any other trace.
        scrubbed = scrubbed.replace(key, "<resolved>");
    }
    assert!(!scrubbed.contains("CANARY"), "a secret leaked: {scrubbed}");
    assert!(!printed.contains("CANARYbad"), "a refused key was echoed");
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_on_sqlite() {
    readme_tour(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_on_postgres() {
    if let Some(s) = Sandbox::postgres().await {
        readme_tour(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_master_keys_are_refused_naming_the_variable_never_the_key() {
    let mut s = Sandbox::sqlite();
    let canary = "Q0FOQVJZLWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5";
    for (var, value) in [
        ("KEYWARD_MASTER_KEY", canary.to_string()),
        ("KEYWARD_MASTER_KEY", format!("{canary}!!")),
        ("KEYWARD_MASTER_KEYS", format!("a:{canary}")),
        (
            "KEYWARD_MASTER_KEYS",
            format!("a:{0}=,a:{0}=", "A".repeat(43)),
        ),
    ] {
        let err = s.fails(&["org", "list"], &[(var, &value)]);
        assert!(err.contains(var), "{err}");
        assert!(!err.contains(&canary[..16]), "{err}");
    }
    let err = s.fails(&["org", "list", "--production"], &[]);
    assert!(err.contains("no master key configured"), "{err}");
    assert!(!s.data_dir().join("master.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_file_is_used_and_a_shared_one_is_warned_about() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]);
    let file = s.data_dir().with_file_name("master.b64");
    std::fs::write(&file, &key).unwrap();
    let file = file.display().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = s.run_with(
            &["org", "create", "acme"],
            "",
            &[("KEYWARD_MASTER_KEY_FILE", &file)],
        );
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("readable by other users"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = s.run_with(
        &["events", "verify"],
        "",
        &[("KEYWARD_MASTER_KEY_FILE", &file)],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "no warning for a private key file"
    );
    // The same key given directly is the same key (id `default`).
    let same = s.ok_with(
        &["master-key", "status", "--json"],
        "",
        &[("KEYWARD_MASTER_KEY", key.trim())],
    );
    assert!(same.contains("\"default\""), "{same}");
    // Two sources at once are ambiguous.
    let err = s.fails(
        &["org", "list"],
        &[
            ("KEYWARD_MASTER_KEY_FILE", &file),
            ("KEYWARD_MASTER_KEY", key.trim()),
        ],
    );
    assert!(err.contains("set only one of"), "{err}");
    assert!(!err.contains(key.trim()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_key_is_created_private_with_a_warning() {
    let mut s = Sandbox::sqlite();
    let out = s.run_with(&["org", "create", "acme"], "", &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEVELOPMENT key"));
    let key = s.data_dir().join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(s.data_dir())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
    // The same key is used next time.
    assert!(s.ok(&["org", "list"]).contains("acme"));
    assert!(s.ok(&["events", "verify"]).contains("intact"));
    // A lost development key is not silently replaced by a new one.
    std::fs::remove_file(&key).unwrap();
    let err = s.fails(&["org", "list"], &[]);
    assert!(
        err.contains("holds a vault but no development key"),
        "{err}"
    );
    assert!(!key.exists());
}

/// `kill -9` in the middle of a rotation loses nothing: every record stays decryptable, and
/// running the rotation again finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_killed_mid_way_leaves_every_record_decryptable() {
    use keyward_core::credential::NewCredential;
    use keyward_core::{CredentialName, OrgId, Provider};
    use keyward_crypto::Keyring;
    use keyward_store::{Location, Vault, VaultOptions};

    let mut s = Sandbox::sqlite();
    let k1 = s.ok(&["keygen"]).trim().to_owned();
    let k2 = s.ok(&["keygen"]).trim().to_owned();
    let db_path = s.data_dir().join("keyward.db");
    let location = Location::SqliteFile(db_path.clone());
    const N: usize = 4000;
    {
        let ring = Keyring::parse_list(&format!("k1:{k1}"), "test").unwrap();
        let vault = Vault::open(&location, ring, VaultOptions::default())
            .await
            .unwrap();
        vault
            .create_org(&OrgId::new("acme").unwrap(), None, "test")
            .await
            .unwrap();
        let batch: Vec<NewCredential> = (0..N)
            .map(|i| {
                NewCredential::new(
                    OrgId::new("acme").unwrap(),
                    Provider::get("openai").unwrap(),
                    CredentialName::new(&format!("key-{i:05}")).unwrap(),
                    Some(format!("sk-bulk-{i:05}-0123456789abcdef").into()),
                )
            })
            .collect();
        vault.add_credentials(batch, "test").await.unwrap();
        vault.close().await;
    }

    s.env
        .insert("KEYWARD_MASTER_KEYS".into(), format!("k2:{k2},k1:{k1}"));
    let mut child = s
        .command(&[
            "master-key",
            "rotate",
            "--batch-size",
            "10",
            "--danger-primary-key-saved-elsewhere",
        ])
        .spawn()
        .unwrap();
    // Watch the database until the rotation is part-way, then kill it without warning.
    let watcher = sqlx::AnyPool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed_mid_way = false;
    while Instant::now() < deadline {
        let on_k2: i64 = sqlx::query("SELECT COUNT(*) AS n FROM credentials WHERE kid = 'k2'")
            .fetch_one(&watcher)
            .await
            .unwrap()
            .get("n");
        if on_k2 > 0 {
            killed_mid_way = (on_k2 as usize) < N;
            child.kill().unwrap();
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = child.wait();
    watcher.close().await;
    assert!(killed_mid_way, "the rotation was not caught part-way");

    let status = s.json(&["master-key", "status", "--json"]);
    let count = |kid: &str| {
        status["kids"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map_or(0, |k| k["credentials"].as_u64().unwrap())
    };
    assert!(count("k1") > 0 && count("k2") > 0 && count("k1") + count("k2") == N as u64);
    let list = s.json(&["cred", "list", "--json"]);
    assert!(list.as_array().unwrap().iter().all(|c| c["status"] == "ok"));

    s.ok(&[
        "master-key",
        "rotate",
        "--danger-primary-key-saved-elsewhere",
    ]);
    s.env
        .insert("KEYWARD_MASTER_KEYS".into(), format!("k2:{k2}"));
    let list = s.json(&["cred", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), N);
    assert!(list.as_array().unwrap().iter().all(|c| c["status"] == "ok"));
    assert_eq!(
        s.ok(&[
            "resolve",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "key-00042"
        ])
        .trim(),
        "sk-bulk-00042-0123456789abcdef"
    );
    assert!(s.ok(&["events", "verify"]).contains("intact"));
}

/// A key typed where a name, id or option goes is refused and never printed, stored or
/// audited, locally and through clap's own errors. One line a case, `{K}` for the key.
#[tokio::test]
async fn a_key_in_the_wrong_argument_is_refused_and_never_printed() {
    let mut s = Sandbox::sqlite();
    let master = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), master);
    s.ok(&["org", "create", "acme"]);
    const K: &str = "sk-proj-Zx8KEYCANARYNp6Qr8St0Uv2Wx4Yz6Ab8Cd";
    // One line a case, split at spaces.
    let cases = [
        "org create {K}",
        "org create neworg --name {K}",
        "cred list --org {K}",
        "cred add --org acme --provider {K} --name n",
        "cred add --org acme --provider openai --name {K} --api-key-env KEY",
        "cred add --org acme --provider openai --name n --api-key-env {K}",
        "cred add --org acme --provider openai --name n --api-key-env KEY --set {K}",
        "cred add --org acme --provider openai --name n --api-key-env KEY --base-url https://h/v1?key={K}",
        "cred add --org acme --provider openai --name n --api-key-env KEY --priority {K}",
        "cred show {K}",
        "cred delete {K}",
        "var get {K}",
        "var set {K} --value-env KEY",
        "resolve --org acme --provider openai --name {K}",
        "events list --filter org={K}",
        "{K}",
    ];
    for case in cases {
        let args: Vec<String> = case.split(' ').map(|a| a.replace("{K}", K)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = s.fails(&args, &[("KEY", "sk-proj-fine0123456789abcdefXYZW")]);
        assert!(!err.contains("KEYCANARY"), "keyward {case:?}: {err}");
    }
    assert!(!contains(&s.transcript, "KEYCANARY"), "printed");
    assert!(
        !contains(&s.stored_bytes().await, "KEYCANARY"),
        "stored or audited"
    );
    s.cleanup().await;
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    for i in 0..40 {
        s.ok_with(
            &[
                "cred",
                "add",
                "--org",
                "acme",
                "--provider",
                "openai",
                "--name",
                &format!("key-{i}"),
            ],
            &format!("sk-proj-PIPECANARY{i:04}0123456789abcdefWXYZ"),
            &[],
        );
    }
    for args in [
        &["events", "list"][..],
        &["cred", "list", "--json"],
        &["cred", "list"],
    ] {
        let mut child = s.command(args).spawn().unwrap();
        // The reader goes away before a line is written, as `| head -c 0` would.
        drop(child.stdout.take());
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "keyward {args:?}: {:?} {stderr}",
            out.status
        );
    }
}

#[test]
fn a_sensitive_value_is_shown_as_stars_in_every_listing() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok_with(
        &["var", "set", "OPENAI_API_KEY_V2", "--sensitive"],
        "sk-proj-VARSTARS0123456789abcd\n",
        &[],
    );
    s.ok_with(&["var", "set", "LOG_LEVEL"], "debug\n", &[]);
    let listed = s.json(&["var", "list", "--json"]);
    let value = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(value("OPENAI_API_KEY_V2"), "***", "the API's convention");
    assert_eq!(value("LOG_LEVEL"), "debug");
    let got = s.json(&["var", "get", "OPENAI_API_KEY_V2", "--json"]);
    assert_eq!(got["value"], "***");
    let revealed = s.json(&["var", "get", "OPENAI_API_KEY_V2", "--json", "--reveal"]);
    assert_eq!(revealed["value"], "sk-proj-VARSTARS0123456789abcd");
}

/// The README's way off the development key, pasted as it is, cannot lose the vault: the old
/// command is refused before anything is rewrapped, and `--new-key-file` writes the key to a
/// private file and reads it back before the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_development_key_cannot_lose_the_vault() {
    let mut s = Sandbox::sqlite();
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
        CANARY_OPENAI_ACME,
        &[],
    );
    let data = s.data_dir();
    // The command the README used to give, through a shell, exactly as a user pastes it.
    let keyward = env!("CARGO_BIN_EXE_keyward");
    let old_way = format!(
        "KEYWARD_MASTER_KEYS=\"prod:$({keyward} keygen),dev:$(cat {dev})\" {keyward} master-key rotate",
        dev = data.join("master.key").display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &old_way])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&s.env)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the old command must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to rewrap"), "{err}");
    // Nothing moved: the development key still opens everything.
    let resolved = s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    assert_eq!(resolved.trim(), CANARY_OPENAI_ACME);

    // The new way.
    let key_file = s.scratch().join("keyward-master.key");
    let done = s.ok(&[
        "master-key",
        "rotate",
        "--new-key-file",
        key_file.to_str().unwrap(),
        "--kid",
        "prod",
    ]);
    assert!(done.contains("KEYWARD_MASTER_KEY_FILE="), "{done}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(data.join("master.key").exists(), "the old key is kept");
    // A second run cannot overwrite the key file.
    let again = s.fails(
        &[
            "master-key",
            "rotate",
            "--new-key-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(again.contains("must not exist"), "{again}");
    // With the new key alone, everything opens.
    s.env.insert(
        "KEYWARD_MASTER_KEY_FILE".into(),
        key_file.display().to_string(),
    );
    let status = s.json(&["master-key", "status", "--json"]);
    assert_eq!(status["primary"], "prod");
    assert_eq!(status["kids"][0]["credentials"], 1);
    assert_eq!(status["kids"].as_array().unwrap().len(), 1, "{status}");
    let resolved = s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    assert_eq!(resolved.trim(), CANARY_OPENAI_ACME);
    s.ok_with(
        &["var", "set", "after", "--org", "acme"],
        "written after",
        &[],
    );
}

/// Several commands started at once on a data directory that does not exist yet all work: the
/// first start's migrations are taken in turn (the outside test saw one of three fail with
/// "table organizations already exists").
#[test]
fn first_starts_at_once_take_the_migrations_in_turn() {
    for round in 0..4 {
        let s = Sandbox::sqlite();
        let key = format!(
            "k1:{}",
            keyward_crypto::generate_master_key_base64().unwrap()
        );
        let children: Vec<_> = (0..3)
            .map(|_| {
                s.command(&["org", "list"])
                    .env("KEYWARD_MASTER_KEYS", &key)
                    .stdin(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
