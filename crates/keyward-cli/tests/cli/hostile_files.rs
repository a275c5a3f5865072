//! Files a command reads, written by an attacker: an import source or an env file that names
//! Keyward's own variables in every syntax it might, and files built to cost time or memory.
//! The operator running the command holds the master key in its environment, as the README
//! says to.

use crate::sandbox::Sandbox;

/// A sandbox whose master key is in the environment of every command, and an organization.
fn with_master_key() -> (Sandbox, String) {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key.clone());
    s.ok(&["org", "create", "acme"]);
    // `keygen` printed it; from here on nothing may.
    s.transcript.clear();
    (s, key)
}

fn assert_nowhere(s: &Sandbox, stored: &[u8], key: &str) {
    let printed = String::from_utf8_lossy(&s.transcript);
    assert!(!printed.contains(key), "the master key was printed");
    assert!(
        !String::from_utf8_lossy(stored).contains(key),
        "the master key was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_litellm_file_cannot_import_keywards_own_variables() {
    let (mut s, master) = with_master_key();
    let file = s.scratch().join("config.yaml");
    // Directly, in another case, and under an innocent name holding the same value.
    std::fs::write(
        &file,
        "model_list:\n\
         - model_name: gpt-4o\n\
         \x20 litellm_params:\n\
         \x20   model: openai/gpt-4o\n\
         \x20   api_key: os.environ/KEYWARD_MASTER_KEY\n\
         \x20   api_base: https://collector.example\n\
         - model_name: claude\n\
         \x20 litellm_params:\n\
         \x20   model: anthropic/claude-3-5-sonnet\n\
         \x20   api_key: os.environ/keyward_master_key\n\
         - model_name: gemini\n\
         \x20 litellm_params:\n\
         \x20   model: gemini/gemini-2.0-flash\n\
         \x20   api_key: os.environ/INNOCENT\n\
         - model_name: groq\n\
         \x20 litellm_params:\n\
         \x20   model: openai/llama\n\
         \x20   api_key: \"os.environ/ KEYWARD_DATABASE_URL\"\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let args = [
        "import",
        "litellm",
        &file,
        "--org",
        "acme",
        "--no-format-check",
    ];
    let extra = [("INNOCENT", master.as_str())];
    let plan = String::from_utf8_lossy(
        &s.run_with(&[&args[..], &["--dry-run"]].concat(), "", &extra)
            .stdout,
    )
    .into_owned();
    assert!(!plan.contains("create "), "nothing may be planned: {plan}");
    for line in [
        "model_list[0]: os.environ/KEYWARD_MASTER_KEY is one of Keyward's own settings",
        "model_list[1]: os.environ/keyward_master_key is one of Keyward's own settings",
        "model_list[2]: os.environ/INNOCENT holds the value of one of Keyward's own settings",
        "model_list[3]: os.environ/KEYWARD_DATABASE_URL is one of Keyward's own settings",
    ] {
        assert!(plan.contains(line), "{line}\n{plan}");
    }
    let out = s.run_with(&args, "", &extra);
    assert!(!out.status.success(), "an import with errors fails");
    let listed = s.json(&["cred", "list", "--org", "acme", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    let stored = s.stored_bytes().await;
    assert_nowhere(&s, &stored, &master);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_litellm_plan_names_the_variables_it_reads() {
    let (mut s, _) = with_master_key();
    let file = s.scratch().join("config.yaml");
    std::fs::write(
        &file,
        "model_list:\n\
         - model_name: gpt-4o\n\
         \x20 litellm_params:\n\
         \x20   model: openai/gpt-4o\n\
         \x20   api_key: os.environ/OPENAI_API_KEY\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let plan = s.ok_with(
        &["import", "litellm", &file, "--org", "acme", "--dry-run"],
        "",
        &[("OPENAI_API_KEY", "sk-proj-HOSTILECANARY0123456789abcdWXYZ")],
    );
    assert!(
        plan.contains("model_list[0], reads os.environ/OPENAI_API_KEY"),
        "{plan}"
    );
    assert!(!plan.contains("HOSTILECANARY"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotenv_import_never_reads_the_environment() {
    let (mut s, master) = with_master_key();
    for (i, line) in [
        "LOG_FORMAT=${KEYWARD_MASTER_KEY}",
        "LOG_FORMAT=$KEYWARD_MASTER_KEY",
        "LOG_FORMAT=\"prefix ${KEYWARD_MASTER_KEY} suffix\"",
        "LOG_FORMAT=${UNSET:-${KEYWARD_MASTER_KEY}}",
        "LOG_FORMAT=${INNOCENT}",
    ]
    .iter()
    .enumerate()
    {
        let file = s.scratch().join(format!("hostile{i}.env"));
        std::fs::write(&file, format!("# a config\nLOG_LEVEL=info\n{line}\n")).unwrap();
        let file = file.display().to_string();
        let err = s.fails(
            &["import", "dotenv", &file, "--org", "acme"],
            &[("INNOCENT", &master)],
        );
        assert!(err.contains("line 3"), "{line}: {err}");
        assert!(err.contains("never reads the environment"), "{line}: {err}");
    }
    // A defaulted reference takes its default, never the environment.
    let file = s.scratch().join("defaulted.env");
    std::fs::write(&file, "LOG_FORMAT=${KEYWARD_MASTER_KEY:-json}\n").unwrap();
    let file = file.display().to_string();
    s.ok(&["import", "dotenv", &file, "--org", "acme"]);
    let got = s.ok(&["var", "get", "LOG_FORMAT", "--org", "acme"]);
    assert!(got.contains("json"), "{got}");
    let stored = s.stored_bytes().await;
    assert_nowhere(&s, &stored, &master);
}

#[test]
fn run_env_files_never_hand_keywards_own_variables_to_the_child() {
    let (mut s, master) = with_master_key();
    let file = s.scratch().join("app.env");
    std::fs::write(
        &file,
        "INNOCENT=${KEYWARD_MASTER_KEY}\nALSO=$KEYWARD_MASTER_KEY\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let err = s.fails(
        &["run", "--env-file", &file, "--", "env"],
        &[("KEYWARD_ADMIN_TOKEN", "kwt_HOSTILEADMINCANARY")],
    );
    assert!(err.contains("never reads the environment"), "{err}");
    // Without the file, the child still sees none of Keyward's secrets.
    let out = s.ok_with(
        &["run", "--", "env"],
        "",
        &[("KEYWARD_ADMIN_TOKEN", "kwt_HOSTILEADMINCANARY")],
    );
    assert!(!out.contains("KEYWARD_MASTER_KEY"), "{out}");
    assert!(!out.contains("HOSTILEADMINCANARY"), "{out}");
    // Nor with a file that names Keyward's settings itself, or holds the master key under
    // another name: those lines are dropped, with a warning, and the rest is handed over.
    let named = s.scratch().join("named.env");
    std::fs::write(
        &named,
        format!(
            "KEYWARD_TOKEN=kwt_HOSTILEFILECANARY\nKEYWARD_MASTER_KEY_FILE=/etc/keyward/master.key\nKEYWARD_DATABASE_URL=postgres://k:pw@db/k\nRENAMED={master}\nAPP_MODE=production\n"
        ),
    )
    .unwrap();
    let named = named.display().to_string();
    let out = s.ok(&["run", "--env-file", &named, "--", "env"]);
    assert!(out.contains("APP_MODE=production"), "{out}");
    for gone in [
        "KEYWARD_TOKEN=",
        "KEYWARD_MASTER_KEY_FILE=",
        "KEYWARD_DATABASE_URL=",
        "RENAMED=",
    ] {
        assert!(!out.contains(gone), "{gone} reached the child: {out}");
    }
    assert!(!out.contains("HOSTILEFILECANARY"), "{out}");
    assert!(!String::from_utf8_lossy(&s.transcript).contains(&master));
}

#[test]
fn a_dotenv_file_of_200_000_variables_imports_in_linear_time() {
    // The cost is not timed here (benchmarks do that); a quadratic reader simply does not
    // finish 200 000 lines within the test run, which is what the issue saw.
    let (mut s, _) = with_master_key();
    // A child's environment holds a few MiB at most (E2BIG), so `run` gets 20 000.
    let few = s.scratch().join("few.env");
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("VAR_{i}=value-{i}\n"));
    }
    std::fs::write(&few, &text).unwrap();
    let few = few.display().to_string();
    let out = s.ok(&[
        "run",
        "--env-file",
        &few,
        "--",
        "sh",
        "-c",
        "echo $VAR_19999",
    ]);
    assert_eq!(out.trim(), "value-19999");
    let file = s.scratch().join("many.env");
    for i in 20_000..200_000 {
        text.push_str(&format!("VAR_{i}=value-{i}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let file = file.display().to_string();
    let plan = s.ok(&["import", "dotenv", &file, "--org", "acme", "--dry-run"]);
    assert!(
        plan.contains("VAR_199999"),
        "{}",
        &plan[..200.min(plan.len())]
    );
}

/// YAML built to cost time: nesting 100 000 deep, as flow brackets, across lines, and as
/// nested block sequences, is refused at once in Keyward's words.
#[test]
fn deeply_nested_yaml_is_refused_before_it_is_parsed() {
    let (mut s, _) = with_master_key();
    let flat = format!(
        "model_list: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let lines = format!("model_list:\n{}", "[\n".repeat(100_000));
    let block = format!("model_list:\n{}x\n", "- ".repeat(100_000));
    for (i, text) in [flat, lines, block].iter().enumerate() {
        let file = s.scratch().join(format!("deep{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let err = s.fails(
            &["import", "litellm", file.to_str().unwrap(), "--org", "acme"],
            &[],
        );
        assert!(
            err.contains("nests deeper than any LiteLLM config"),
            "{i}: {err}"
        );
    }
}

/// The master key kept in a file (as the README recommends) and copied into an innocent
/// variable, whole or inside a longer value, is refused by the store whatever the import
/// source: the vault recognises its own keys in any value it is asked to keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_is_never_stored_under_another_name() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    let key_file = s.scratch().join("master.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    s.env.insert(
        "KEYWARD_MASTER_KEY_FILE".into(),
        key_file.display().to_string(),
    );
    s.ok(&["org", "create", "acme"]);
    s.transcript.clear();
    let url_safe = key.replace('+', "-").replace('/', "_");
    let yaml = s.scratch().join("config.yaml");
    std::fs::write(
        &yaml,
        "model_list:\n\
         - model_name: gpt\n\
         \x20 litellm_params:\n\
         \x20   model: openai/gpt-4o\n\
         \x20   api_key: os.environ/MY_OAI\n\
         - model_name: claude\n\
         \x20 litellm_params:\n\
         \x20   model: anthropic/claude-3-5-sonnet\n\
         \x20   api_key: os.environ/WRAPPED\n",
    )
    .unwrap();
    let wrapped = format!("sk-ant-{}", url_safe.trim_end_matches('='));
    let out = s.run_with(
        &[
            "import",
            "litellm",
            yaml.to_str().unwrap(),
            "--org",
            "acme",
            "--no-format-check",
        ],
        "",
        &[("MY_OAI", &key), ("WRAPPED", &wrapped)],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed
            .matches("holds one of Keyward's own master keys")
            .count(),
        2,
        "{printed}"
    );
    // The environment import and a .env file, the same.
    let out = s.run_with(
        &["import", "env", "--org", "acme", "--no-format-check"],
        "",
        &[("OPENAI_API_KEY", &key)],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("own master keys"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let env_file = s.scratch().join("app.env");
    std::fs::write(&env_file, format!("LOG_FORMAT=\"json {key}\"\n")).unwrap();
    let out = s.run_with(
        &[
            "import",
            "dotenv",
            env_file.to_str().unwrap(),
            "--org",
            "acme",
        ],
        "",
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("own master keys"));
    let err = s.fails(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "x",
            "--api-key-env",
            "PASTED",
            "--no-format-check",
        ],
        &[("PASTED", &key)],
    );
    assert!(err.contains("own master keys"), "{err}");
    assert_eq!(
        s.json(&["cred", "list", "--json"]).as_array().map(Vec::len),
        Some(0)
    );
    let stored = s.stored_bytes().await;
    assert_nowhere(&s, &stored, &key);
}

/// The master key is not kept in public fields either (a base URL, a description, a name),
/// and an import's plan does not print a value that holds it.
#[test]
fn the_master_key_is_not_kept_in_public_fields_nor_printed_by_a_plan() {
    let (mut s, key) = with_master_key();
    let url_safe = key.replace('+', "-").replace('/', "_");
    // Refused as Keyward's own key, or before that as anything that looks like a key (which
    // catches some keys' shapes and not others).
    let refused =
        |err: &str| err.contains("own master keys") || err.contains("looks like an API key");
    let err = s.fails(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "x",
            "--base-url",
            &format!("https://x.example/sk-{key}"),
        ],
        &[],
    );
    assert!(refused(&err), "{err}");
    let err = s.fails(
        &[
            "var",
            "set",
            "NOTE",
            "--org",
            "acme",
            "--description",
            &format!("see {url_safe}"),
        ],
        &[],
    );
    assert!(refused(&err), "{err}");
    let env_file = s.scratch().join("plain.env");
    std::fs::write(&env_file, format!("PLAIN_NOTE=\"copied {key}\"\n")).unwrap();
    let out = s.run_with(
        &[
            "import",
            "dotenv",
            env_file.to_str().unwrap(),
            "--org",
            "acme",
            "--dry-run",
        ],
        "",
        &[],
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("holds one of Keyward's own master keys"),
        "{plan}"
    );
    assert!(!String::from_utf8_lossy(&s.transcript).contains(&key));
    assert!(!String::from_utf8_lossy(&s.transcript).contains(&url_safe));
}
