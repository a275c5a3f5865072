//! `keyward import`: keys in from where they are today, planned first, idempotent, audited,
//! never printed.

use keyward_testkit::contains;

use crate::sandbox::Sandbox;

const OPENAI: &str = "sk-proj-IMPORTCANARYopenai0123456789abWXYZ";
const ANTHROPIC: &str = "sk-ant-api03-IMPORTCANARYanthropic012345QRST";
const AZURE: &str = "IMPORTCANARYazure0123456789abcdef0123";
const GEMINI: &str = "AIzaSyIMPORTCANARYgemini0123456789abcde";
const MISTRAL: &str = "IMPORTCANARYmistral0123456789abcdEFGH";
const DB_PASSWORD: &str = "IMPORTCANARY-hunter2-correct-horse";

fn dotenv() -> String {
    format!(
        "# five providers and some settings\n\
         OPENAI_API_KEY={OPENAI}\n\
         ANTHROPIC_API_KEY=\"{ANTHROPIC}\"\n\
         AZURE_OPENAI_API_KEY={AZURE}\n\
         AZURE_OPENAI_ENDPOINT=https://acme.openai.azure.com\n\
         OPENAI_API_VERSION=2024-10-21\n\
         GEMINI_API_KEY={GEMINI}\n\
         MISTRAL_API_KEY={MISTRAL}\n\
         LOG_LEVEL=debug\n\
         DB_PASSWORD={DB_PASSWORD}\n\
         EMPTY=\n\
         FROM_VAULT=keyward://acme/openai\n"
    )
}

async fn dotenv_imports_plan_first_then_change_nothing_the_second_time(mut s: Sandbox) {
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let file = s.scratch().join(".env");
    std::fs::write(&file, dotenv()).unwrap();
    let file = file.display().to_string();

    // The plan: what would happen, with hints only; nothing is written.
    let plan = s.ok(&["import", "dotenv", &file, "--org", "acme", "--dry-run"]);
    for line in [
        "credential openai/dotenv",
        "credential anthropic/dotenv",
        "credential gemini/dotenv",
        "credential mistral/dotenv",
        "api_version=2024-10-21, endpoint=https://acme.openai.azure.com",
        "variable DB_PASSWORD  [sensitive, ***]",
        "variable LOG_LEVEL  [= \"debug\"]",
        "EMPTY: empty value",
        "FROM_VAULT: a keyward:// reference",
        "dry run: nothing was changed",
    ] {
        assert!(plan.contains(line), "{line}\n{plan}");
    }
    assert_eq!(
        plan.matches("\ncreate ").count() + usize::from(plan.starts_with("create ")),
        7,
        "{plan}"
    );
    assert!(
        s.json(&["cred", "list", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    let done = s.ok(&["import", "dotenv", &file, "--org", "acme"]);
    assert!(done.contains("7 created, 0 updated, 0 unchanged"), "{done}");
    let again = s.ok(&["import", "dotenv", &file, "--org", "acme"]);
    assert!(
        again.contains("0 created, 0 updated, 7 unchanged"),
        "{again}"
    );
    assert!(again.contains("nothing changed"), "{again}");

    // `keyward run` gives a program what the .env did.
    let out = s.run_with(
        &[
            "run",
            "--org",
            "acme",
            "--",
            "sh",
            "-c",
            "test \"$OPENAI_API_KEY\" = \"$WANT_OPENAI\" && test \"$AZURE_OPENAI_ENDPOINT\" = https://acme.openai.azure.com && test \"$OPENAI_API_VERSION\" = 2024-10-21 && test \"$ANTHROPIC_API_KEY\" = \"$WANT_ANTHROPIC\" && test \"$GEMINI_API_KEY\" = \"$WANT_GEMINI\" && echo same",
        ],
        "",
        &[
            ("WANT_OPENAI", OPENAI),
            ("WANT_ANTHROPIC", ANTHROPIC),
            ("WANT_GEMINI", GEMINI),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("same"),
        "{out:?}"
    );

    // A rotated key in the file is an update of the key, and says so.
    std::fs::write(
        &file,
        dotenv().replace(OPENAI, "sk-proj-IMPORTCANARYrotated0123456789abNEWK"),
    )
    .unwrap();
    let rotated = s.ok(&["import", "dotenv", &file, "--org", "acme"]);
    assert!(
        rotated.contains("update (key)") && rotated.contains("sk-...NEWK"),
        "{rotated}"
    );
    assert!(
        rotated.contains("0 created, 1 updated, 6 unchanged"),
        "{rotated}"
    );

    // Audited, one import event per record, with no key anywhere.
    let events = s.json(&[
        "events",
        "list",
        "--filter",
        "action=import",
        "--limit",
        "50",
        "--json",
    ]);
    assert_eq!(events.as_array().unwrap().len(), 8, "{events}");
    assert!(s.ok(&["events", "verify"]).contains("intact"));
    let printed = String::from_utf8_lossy(&s.transcript).into_owned();
    for secret in [
        OPENAI,
        ANTHROPIC,
        AZURE,
        GEMINI,
        MISTRAL,
        DB_PASSWORD,
        "IMPORTCANARY",
    ] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
    let stored = s.stored_bytes().await;
    assert!(!contains(&stored, DB_PASSWORD) && !contains(&stored, MISTRAL));
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotenv_import_on_sqlite() {
    dotenv_imports_plan_first_then_change_nothing_the_second_time(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotenv_import_on_postgres() {
    if let Some(s) = Sandbox::postgres().await {
        dotenv_imports_plan_first_then_change_nothing_the_second_time(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_import_takes_provider_variables_and_only_the_others_named() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let args = [
        "import",
        "env",
        "--org",
        "acme",
        "--include-var",
        "LOG_LEVEL",
    ];
    let extra = [
        ("OPENAI_API_KEY", OPENAI),
        ("LOG_LEVEL", "info"),
        ("UNRELATED", "left alone"),
    ];
    let done = s.ok_with(&args, "", &extra);
    assert!(done.contains("2 created"), "{done}");
    assert!(
        !done.contains("UNRELATED") && !done.contains("PATH"),
        "{done}"
    );
    let again = s.ok_with(&args, "", &extra);
    assert!(again.contains("nothing changed"), "{again}");
    assert!(!String::from_utf8_lossy(&s.transcript).contains("IMPORTCANARY"));
    // With a server named, it refuses rather than write somewhere else.
    let refused = s.fails(&args, &[("KEYWARD_URL", "http://127.0.0.1:9")]);
    assert!(refused.contains("KEYWARD_URL is set"), "{refused}");
}
