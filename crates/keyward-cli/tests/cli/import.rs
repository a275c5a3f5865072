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

/// Runs a Python script (the independent Fernet implementation: `cryptography`), or `None`
/// when Python's `cryptography` is missing and not required.
fn python(script: &str, env: &[(&str, &str)]) -> Option<String> {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("KEYWARD_TEST_REQUIRE_PYTHON_SDKS").as_deref() != Ok("1"),
            "Python's cryptography is required (pip install cryptography)"
        );
        eprintln!("skipping: Python's cryptography is not installed");
        return None;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

const FERNET_ROWS: &str = r#"
import csv, os, sys, base64
from cryptography.fernet import Fernet
key = os.environ["KEY"].encode()
good, other = Fernet(key), Fernet(Fernet.generate_key())
tampered = bytearray(base64.urlsafe_b64decode(good.encrypt(b"sk-proj-FERNETCANARYtampered0123456789ab")))
tampered[-40] ^= 1
w = csv.writer(sys.stdout)
w.writerow(["organization_id", "provider", "credential_name", "api_key", "api_base", "is_active"])
w.writerow(["acme", "openai", "Production Key", good.encrypt(b"sk-proj-FERNETCANARYgood0123456789abcdWXYZ").decode(), "", "true"])
w.writerow(["acme", "anthropic", "Claude", good.encrypt(b"sk-ant-api03-FERNETCANARYclaude0123456789QRST").decode(), "https://claude.internal", "false"])
w.writerow(["acme", "openai", "Wrong Key", other.encrypt(b"sk-proj-FERNETCANARYwrong0123456789abcdEFGH").decode(), "", "true"])
w.writerow(["acme", "openai", "Tampered", base64.urlsafe_b64encode(bytes(tampered)).decode(), "", "true"])
w.writerow(["acme", "", "No Provider", good.encrypt(b"sk-proj-FERNETCANARYnoprov0123456789abcdIJKL").decode(), "", "true"])
w.writerow(["globex", "openai", "Theirs", good.encrypt(b"sk-proj-FERNETCANARYglobex0123456789abcdMNOP").decode(), "", "true"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fernet_rows_import_per_row_with_positions_never_values_on_sqlite() {
    fernet_rows_import_per_row_with_positions_never_values(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fernet_rows_import_per_row_with_positions_never_values_on_postgres() {
    if let Some(s) = Sandbox::postgres().await {
        fernet_rows_import_per_row_with_positions_never_values(s).await;
    }
}

async fn fernet_rows_import_per_row_with_positions_never_values(mut s: Sandbox) {
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let fernet_key = "Uz4m4mMPlyVOj9iDOUjqhCHr5T2BOaVvfvYjP2fT6yI=";
    let Some(csv) = python(FERNET_ROWS, &[("KEY", fernet_key)]) else {
        return;
    };
    let file = s.scratch().join("credentials.csv");
    std::fs::write(&file, csv).unwrap();
    let file = file.display().to_string();
    let with_key = [("MASTER_KEY", fernet_key)];
    let args = ["import", "fernet", &file, "--org", "acme"];

    // --atomic: one bad row and nothing is imported.
    let mut atomic = args.to_vec();
    atomic.push("--atomic");
    let refused = s.fails(&atomic, &with_key);
    assert!(refused.contains("nothing was (--atomic)"), "{refused}");
    assert!(
        s.json(&["cred", "list", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Otherwise the good rows go in, and each bad one is named by its position.
    let out = s.run_with(&args, "", &with_key);
    assert!(!out.status.success(), "bad rows make the import fail");
    let printed = String::from_utf8_lossy(&out.stdout);
    for line in [
        "row 3: api_key does not decrypt under the given key",
        "row 4: api_key does not decrypt under the given key",
        "row 5: a row needs provider and credential_name",
        "row 6: a row of organization \"globex\"",
        "2 created",
    ] {
        assert!(printed.contains(line), "{line}\n{printed}");
    }
    let creds = s.json(&["cred", "list", "--json"]);
    let creds = creds.as_array().unwrap();
    assert_eq!(creds.len(), 2);
    let claude = creds.iter().find(|c| c["name"] == "Claude").unwrap();
    assert_eq!(claude["active"], false);
    assert_eq!(claude["fields"]["base_url"], "https://claude.internal");
    let got = s.ok(&["resolve", "--org", "acme", "--provider", "openai"]);
    assert_eq!(got.trim(), "sk-proj-FERNETCANARYgood0123456789abcdWXYZ");
    s.transcript.clear();
    // A second run changes nothing; a wrong key in the variable is refused per row.
    let again = String::from_utf8_lossy(&s.run_with(&args, "", &with_key).stdout).into_owned();
    assert!(
        again.contains("0 created, 0 updated, 2 unchanged"),
        "{again}"
    );
    let wrong = s.run_with(
        &args,
        "",
        &[("MASTER_KEY", "bm90LXRoZS1rZXktYnV0LTMyLWJ5dGVzLWxvbmctLS0=")],
    );
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("row 1: api_key does not decrypt"));
    let printed = String::from_utf8_lossy(&s.transcript).into_owned();
    assert!(!printed.contains("FERNETCANARY"), "{printed}");
    assert!(!printed.contains(fernet_key));
    s.cleanup().await;
}

const OPEN_NOTEBOOK_ROWS: &str = r#"
import base64, hashlib, json, os
from cryptography.fernet import Fernet
p = os.environ["PASSPHRASE"]
current = Fernet(base64.urlsafe_b64encode(hashlib.pbkdf2_hmac("sha256", p.encode(), b"open-notebook-credential-v1", 600_000)))
legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(p.encode()).digest()))
stranger = Fernet(Fernet.generate_key())
rows = [
  {"id": "credential:a1", "name": "Production", "provider": "openai", "modalities": ["language", "embedding"],
   "api_key": "pbkdf2v1:" + current.encrypt(b"sk-proj-ONCANARYcurrent0123456789abcdWXYZ").decode(), "base_url": None},
  {"id": "credential:a2", "name": "Old", "provider": "anthropic", "modalities": ["language"],
   "api_key": legacy.encrypt(b"sk-ant-api03-ONCANARYlegacy0123456789abQRST").decode()},
  {"id": "credential:a3", "name": "Plain", "provider": "groq", "modalities": [], "api_key": "gsk_ONCANARYplain0123456789abcdef0123456789abcdef0123EFGH"},
  {"id": "credential:a4", "name": "Azure", "provider": "azure", "modalities": ["language"],
   "api_key": "pbkdf2v1:" + current.encrypt(b"ONCANARYazure0123456789abcdef0123").decode(),
   "base_url": "https://acme.openai.azure.com", "api_version": "2024-10-21"},
  {"id": "credential:a5", "name": "Wrong", "provider": "openai", "modalities": [],
   "api_key": "pbkdf2v1:" + stranger.encrypt(b"sk-proj-ONCANARYwrong0123456789abcdIJKL").decode()},
]
print(json.dumps([rows]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_notebook_exports_decrypt_as_open_notebook_encrypts_on_sqlite() {
    open_notebook_exports_decrypt_as_open_notebook_encrypts(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_notebook_exports_decrypt_as_open_notebook_encrypts_on_postgres() {
    if let Some(s) = Sandbox::postgres().await {
        open_notebook_exports_decrypt_as_open_notebook_encrypts(s).await;
    }
}

async fn open_notebook_exports_decrypt_as_open_notebook_encrypts(mut s: Sandbox) {
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let passphrase = "a notebook passphrase, not a Fernet key";
    let Some(json) = python(OPEN_NOTEBOOK_ROWS, &[("PASSPHRASE", passphrase)]) else {
        return;
    };
    let file = s.scratch().join("credential.json");
    std::fs::write(&file, json).unwrap();
    let file = file.display().to_string();
    let with_key = [("OPEN_NOTEBOOK_ENCRYPTION_KEY", passphrase)];
    let args = ["import", "open-notebook", &file, "--org", "acme"];
    let out = s.run_with(&args, "", &with_key);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("4 created"), "{printed}");
    assert!(
        printed.contains("row 5: api_key does not decrypt under the given encryption key"),
        "{printed}"
    );
    for (provider, want) in [
        ("openai", "sk-proj-ONCANARYcurrent0123456789abcdWXYZ"),
        ("anthropic", "sk-ant-api03-ONCANARYlegacy0123456789abQRST"),
        (
            "groq",
            "gsk_ONCANARYplain0123456789abcdef0123456789abcdef0123EFGH",
        ),
        ("azure_openai", "ONCANARYazure0123456789abcdef0123"),
    ] {
        let got = s.ok(&["resolve", "--org", "acme", "--provider", provider]);
        assert_eq!(got.trim(), want, "{provider}");
    }
    let creds = s.json(&["cred", "list", "--json"]);
    let azure = creds
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "azure_openai")
        .unwrap()
        .clone();
    assert_eq!(azure["fields"]["endpoint"], "https://acme.openai.azure.com");
    assert_eq!(azure["fields"]["api_version"], "2024-10-21");
    let openai = creds
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "openai")
        .unwrap()
        .clone();
    assert_eq!(
        openai["modalities"],
        serde_json::json!(["chat", "embeddings"])
    );
    s.transcript.clear();
    let again = String::from_utf8_lossy(&s.run_with(&args, "", &with_key).stdout).into_owned();
    assert!(
        again.contains("0 created, 0 updated, 4 unchanged"),
        "{again}"
    );
    let printed = String::from_utf8_lossy(&s.transcript).into_owned();
    assert!(
        !printed.contains("ONCANARY") && !printed.contains(passphrase),
        "{printed}"
    );
    s.cleanup().await;
}

const LITELLM: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
  - model_name: gpt-4o-mini
    litellm_params:
      model: gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: "sk-ant-api03-LITELLMCANARYliteral0123456789QRST"
  - model_name: azure-gpt
    litellm_params:
      model: azure/my-deployment
      litellm_credential_name: default_azure_credential
  - model_name: local
    litellm_params:
      model: some-unknown-thing/x
  - model_name: broken
    litellm_params:
      model: groq/llama-3
      api_key: os.environ/NOT_SET_ANYWHERE
  - model_name: not-a-key
    litellm_params:
      model: openai/gpt-4.1
      api_key: "not-an-openai-key"
  - model_name: gemini-on-vertex
    litellm_params:
      model: vertex_ai/gemini-2.5-pro
      vertex_project: acme-ml
      vertex_location: europe-west4
      vertex_credentials: os.environ/VERTEX_SA_JSON
credential_list:
  - credential_name: default_azure_credential
    credential_values:
      api_key: os.environ/AZURE_API_KEY
      api_base: https://acme.openai.azure.com
      api_version: "2024-10-21"
    credential_info:
      description: "Production Azure"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_configs_import_one_credential_per_key_on_sqlite() {
    litellm_configs_import_one_credential_per_key(Sandbox::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_configs_import_one_credential_per_key_on_postgres() {
    if let Some(s) = Sandbox::postgres().await {
        litellm_configs_import_one_credential_per_key(s).await;
    }
}

async fn litellm_configs_import_one_credential_per_key(mut s: Sandbox) {
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    let file = s.scratch().join("config.yaml");
    std::fs::write(&file, LITELLM).unwrap();
    let file = file.display().to_string();
    let env = [
        (
            "OPENAI_API_KEY",
            "sk-proj-LITELLMCANARYenv0123456789abcdWXYZ",
        ),
        ("AZURE_API_KEY", "LITELLMCANARYazure0123456789abcdef01"),
        (
            "VERTEX_SA_JSON",
            r#"{"type":"service_account","project_id":"acme-ml","private_key_id":"k1","private_key":"-----BEGIN PRIVATE KEY-----\nLITELLMCANARYvertex\n-----END PRIVATE KEY-----\n","client_email":"ml@acme-ml.iam.gserviceaccount.com","client_id":"1","token_uri":"https://oauth2.googleapis.com/token"}"#,
        ),
    ];
    let args = ["import", "litellm", &file, "--org", "acme"];
    let plan = String::from_utf8_lossy(
        &s.run_with(&[&args[..], &["--dry-run"]].concat(), "", &env)
            .stdout,
    )
    .into_owned();
    for line in [
        "create                 credential openai/gpt-4o",
        "create                 credential anthropic/claude",
        "credential azure_openai/default_azure_credential  [key LIT...ef01, api_version=2024-10-21, endpoint=https://acme.openai.azure.com]",
        "model_list[4]: no provider Keyward knows",
        "model_list[5]: os.environ/NOT_SET_ANYWHERE is not set",
        "model_list[6] (openai): the key does not match the OpenAI key format",
        "credential vertex/gemini-on-vertex  [key sa:ml@acme-ml.iam.gserviceaccount.com, location=europe-west4, project=acme-ml]",
    ] {
        assert!(plan.contains(line), "{line}\n{plan}");
    }
    assert!(
        !plan.contains("gpt-4o-mini"),
        "the same key twice is one credential: {plan}"
    );
    let done = String::from_utf8_lossy(&s.run_with(&args, "", &env).stdout).into_owned();
    assert!(done.contains("4 created"), "{done}");
    let got = s.ok(&["resolve", "--org", "acme", "--provider", "azure_openai"]);
    assert_eq!(got.trim(), "LITELLMCANARYazure0123456789abcdef01");
    s.transcript.clear();
    let again = String::from_utf8_lossy(&s.run_with(&args, "", &env).stdout).into_owned();
    assert!(
        again.contains("0 created, 0 updated, 4 unchanged"),
        "{again}"
    );
    assert!(!String::from_utf8_lossy(&s.transcript).contains("LITELLMCANARY"));
    s.cleanup().await;
}
