//! `keyward backup` and `keyward restore`: a snapshot taken while the store is written to,
//! restored into PostgreSQL with the chain verifying and every key resolving; refusals that
//! change nothing.

use keyward_testkit::contains;

use crate::sandbox::Sandbox;

const KEYS: [(&str, &str); 3] = [
    ("openai", "sk-proj-BACKUPCANARYopenai0123456789abWXYZ"),
    ("anthropic", "sk-ant-api03-BACKUPCANARYanthropic01234QRST"),
    ("mistral", "BACKUPCANARYmistral0123456789abcdEFGH"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_postgres_whole() {
    let mut from = Sandbox::sqlite();
    let key = from.ok(&["keygen"]).trim().to_owned();
    from.env.insert("KEYWARD_MASTER_KEY".into(), key.clone());
    for org in ["acme", "globex"] {
        from.ok(&["org", "create", org]);
        for (provider, secret) in KEYS {
            from.ok_with(
                &[
                    "cred",
                    "add",
                    "--org",
                    org,
                    "--provider",
                    provider,
                    "--name",
                    "prod",
                ],
                &format!("{secret}\n"),
                &[],
            );
        }
    }
    from.ok_with(
        &["var", "set", "DB_PASSWORD", "--org", "acme", "--sensitive"],
        "BACKUPCANARY-db-password\n",
        &[],
    );
    from.ok(&[
        "token", "create", "--role", "viewer", "--org", "acme", "--name", "v",
    ]);

    // Resolutions keep writing audit events while the backup is taken.
    let load: Vec<std::process::Command> = (0..20)
        .map(|i| {
            let org = if i % 2 == 0 { "acme" } else { "globex" };
            from.command(&["resolve", "--org", org, "--provider", "openai"])
        })
        .collect();
    let writer = std::thread::spawn(move || {
        load.into_iter()
            .filter(|_| true)
            .map(|mut c| c.output().unwrap().status.success())
            .filter(|ok| *ok)
            .count()
    });
    let file = from.scratch().join("store.kwb");
    let file_s = file.display().to_string();
    let said = from.ok(&["backup", &file_s]);
    assert!(
        said.contains("secrets sealed under master key(s) default"),
        "{said}"
    );
    assert_eq!(writer.join().unwrap(), 20);
    assert!(
        !contains(&std::fs::read(&file).unwrap(), "BACKUPCANARY"),
        "a backup holds secrets sealed, as stored"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let Some(mut to) = Sandbox::postgres().await else {
        return;
    };
    // Without the backup's master key: refused, nothing changed.
    let other = to.ok(&["keygen"]).trim().to_owned();
    to.env.insert("KEYWARD_MASTER_KEY".into(), other);
    let refused = to.fails(&["restore", &file_s], &[]);
    assert!(refused.contains("do not open this backup"), "{refused}");
    to.env.insert("KEYWARD_MASTER_KEY".into(), key.clone());
    // A file cut short: refused, nothing changed.
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = to.scratch().join("cut.kwb");
    std::fs::write(&cut, &text[..text.len() * 2 / 3]).unwrap();
    let cut = cut.display().to_string();
    let refused = to.fails(&["restore", &cut], &[]);
    assert!(
        refused.contains("cut short") || refused.contains("not a row"),
        "{refused}"
    );

    // An edit of a row that seals nothing (a credential switched off): found by the seal, and
    // nothing is written.
    let edited = to.scratch().join("edited.kwb");
    let off = text.replacen("\"active\":{\"i\":1}", "\"active\":{\"i\":0}", 1);
    assert_ne!(off, text);
    std::fs::write(&edited, off).unwrap();
    let edited = edited.display().to_string();
    let refused = to.fails(&["restore", &edited], &[]);
    assert!(refused.contains("the file was edited"), "{refused}");

    let restored = to.ok(&["restore", &file_s]);
    assert!(
        restored.contains("verified: audit chain intact"),
        "{restored}"
    );
    assert!(restored.contains("all 6 credentials open"), "{restored}");
    for org in ["acme", "globex"] {
        for (provider, secret) in KEYS {
            let got = to.ok(&["resolve", "--org", org, "--provider", provider]);
            assert_eq!(got.trim(), secret, "{org} {provider}");
        }
    }
    assert!(to.ok(&["events", "verify"]).contains("intact"));
    let tokens = to.json(&["token", "list", "--json"]);
    assert!(tokens.as_array().unwrap().iter().any(|t| t["name"] == "v"));
    // Into a store that holds something: refused unless --force.
    let refused = to.fails(&["restore", &file_s], &[]);
    assert!(refused.contains("not empty"), "{refused}");
    let forced = to.ok(&["restore", &file_s, "--force"]);
    assert!(forced.contains("verified"), "{forced}");
    for s in [&from, &to] {
        assert!(!String::from_utf8_lossy(&s.transcript).contains("BACKUPCANARY-db"));
    }
    to.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_sqlite_to_postgres_and_back_with_everything() {
    let mut from = Sandbox::sqlite();
    let key = from.ok(&["keygen"]).trim().to_owned();
    from.env.insert("KEYWARD_MASTER_KEY".into(), key.clone());
    from.ok(&["org", "create", "acme"]);
    for (provider, secret) in KEYS {
        from.ok_with(
            &[
                "cred",
                "add",
                "--org",
                "acme",
                "--provider",
                provider,
                "--name",
                "prod",
            ],
            &format!("{secret}\n"),
            &[],
        );
    }
    let first = from.json(&["cred", "list", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    from.ok(&["cred", "update", &first, "--priority", "5"]);
    let before = from.json(&["cred", "list", "--json"]);
    let sqlite = from.data_dir().join("keyward.db").display().to_string();
    let Some(mut to) = Sandbox::postgres().await else {
        return;
    };
    to.env.insert("KEYWARD_MASTER_KEY".into(), key.clone());
    let url = to.env["KEYWARD_DATABASE_URL"].clone();
    let said = from.ok(&["store", "copy", "--from", &sqlite, "--to", &url]);
    assert!(said.contains("verified: audit chain intact"), "{said}");
    // Ids, versions and timestamps as they were.
    let after = to.json(&["cred", "list", "--json"]);
    assert_eq!(before, after);
    for (provider, secret) in KEYS {
        let got = to.ok(&["resolve", "--org", "acme", "--provider", provider]);
        assert_eq!(got.trim(), secret);
    }
    // Into a store that holds something: refused, unless --force.
    let refused = from.fails(&["store", "copy", "--from", &sqlite, "--to", &url], &[]);
    assert!(refused.contains("not empty"), "{refused}");
    // And back, into a new SQLite file.
    let back = from.scratch().join("back.db").display().to_string();
    let said = from.ok(&["store", "copy", "--from", &url, "--to", &back]);
    assert!(said.contains("verified"), "{said}");
    to.cleanup().await;
}
