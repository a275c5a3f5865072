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

/// `keyward backup PATH` as a person trying it out would run it: at a device, a FIFO, a link,
/// a directory, standard output. A stream is written, never replaced; a regular file is
/// replaced whole; the rest is refused, with what was there untouched.
#[test]
fn backup_writes_streams_directly_and_never_replaces_what_is_not_a_file() {
    use std::os::unix::fs::FileTypeExt as _;
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
        KEYS[0].1,
        &[],
    );
    let dir = s.scratch();

    // A link to the null device: written through, the link and the device stay.
    let null = dir.join("null");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    s.ok(&["backup", null.to_str().unwrap()]);
    assert!(
        std::fs::symlink_metadata(&null)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );

    // Standard output: the backup itself, messages on standard error; it restores.
    let out = s.run_with(&["backup", "-"], "", &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.starts_with('{') && text.contains("\"seal\""),
        "{text:.200}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("backup written to standard output"));
    let mut fresh = Sandbox::sqlite();
    fresh.env = s.env.clone();
    fresh.env.insert(
        "KEYWARD_DATA_DIR".into(),
        dir.join("restored").display().to_string(),
    );
    let restored = fresh.ok_with(&["restore", "-"], &text, &[]);
    assert!(restored.contains("all 1 credentials open"), "{restored}");

    // /dev/stdout into a pipe: the backup alone, the message on standard error.
    let out = s.run_with(&["backup", "/dev/stdout"], "", &[]);
    assert!(out.status.success());
    let piped = String::from_utf8(out.stdout).unwrap();
    assert!(piped.trim_end().ends_with('}') && piped.contains("\"seal\""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("backup written to standard output"));
    let mut again = Sandbox::sqlite();
    again.env = s.env.clone();
    again.env.insert(
        "KEYWARD_DATA_DIR".into(),
        dir.join("restored-stdout").display().to_string(),
    );
    let restored = again.ok_with(&["restore", "-"], &piped, &[]);
    assert!(restored.contains("all 1 credentials open"), "{restored}");

    // /dev/stdout when the shell made it a file (`>>`): appended to, never replaced.
    let appended = dir.join("appended.kwb");
    std::fs::write(&appended, "kept\n").unwrap();
    let keyward = env!("CARGO_BIN_EXE_keyward");
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("{keyward} backup /dev/stdout >> {}", appended.display()),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&s.env)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&appended).unwrap();
    assert!(
        text.starts_with("kept\n{") && text.contains("\"seal\""),
        "{text:.100}"
    );

    // A FIFO: read by another process while the backup writes into it.
    let fifo = dir.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read(&fifo).unwrap()
    });
    s.ok(&["backup", fifo.to_str().unwrap()]);
    let got = reader.join().unwrap();
    assert!(got.starts_with(b"{") && contains(&got, "\"seal\""));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A regular file through a link: the file is replaced, the link kept.
    let real = dir.join("real.backup");
    std::fs::write(&real, "old").unwrap();
    let link = dir.join("link.backup");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    s.ok(&["backup", link.to_str().unwrap()]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(contains(&std::fs::read(&real).unwrap(), "\"seal\""));
    use std::os::unix::fs::PermissionsExt as _;
    let file = dir.join("plain.backup");
    s.ok(&["backup", file.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A directory and a dangling link: refused, nothing left behind.
    let err = s.fails(&["backup", dir.to_str().unwrap()], &[]);
    assert!(err.contains("is a directory"), "{err}");
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let err = s.fails(&["backup", dangling.to_str().unwrap()], &[]);
    assert!(err.contains("symbolic link to nothing"), "{err}");
    let partials = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        })
        .count();
    assert_eq!(partials, 0);

    // store copy into something that is not a database file is refused; `sqlite:PATH` works.
    let sqlite = format!("sqlite:{}", s.data_dir().join("keyward.db").display());
    let err = s.fails(
        &["store", "copy", "--from", &sqlite, "--to", "/dev/null"],
        &[],
    );
    assert!(err.contains("not a regular file"), "{err}");
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let copy = dir.join("copy.db");
    let said = s.ok(&[
        "store",
        "copy",
        "--from",
        &sqlite,
        "--to",
        copy.to_str().unwrap(),
    ]);
    assert!(said.contains("all 1 credentials open"), "{said}");
}

/// A backup-shaped file with one enormous line is refused in Keyward's own words, without
/// reading the line whole.
#[test]
fn restore_refuses_an_enormous_line_in_its_own_words() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let good = s.run_with(&["backup", "-"], "", &[]).stdout;
    let header = String::from_utf8(good)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let file = s.scratch().join("huge.backup");
    {
        use std::io::Write as _;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        writeln!(f, "{header}").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        f.write_all(b"{\"t\":\"organizations\",\"r\":{\"id\":\"")
            .unwrap();
        for _ in 0..40 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}}\n").unwrap();
    }
    let mut fresh = Sandbox::sqlite();
    fresh.env = s.env.clone();
    fresh.env.insert(
        "KEYWARD_DATA_DIR".into(),
        s.scratch().join("restored").display().to_string(),
    );
    let err = fresh.fails(&["restore", file.to_str().unwrap()], &[]);
    assert!(err.contains("line 2 is longer than 16 MiB"), "{err}");
    assert!(!err.to_lowercase().contains("sqlite"), "{err}");
}
