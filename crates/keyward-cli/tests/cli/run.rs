//! Provisioning through the CLI: `keyward run`, `keyward env`, references, masking, signals,
//! and `keyward cred test` against a mock provider on 127.0.0.1.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use keyward_testkit::{MockProvider, Reply};

use crate::sandbox::Sandbox;

const OPENAI: &str = "sk-proj-RUNCANARY0123456789abcdWXYZ";
const AZURE: &str = "0123456789abcdef0123456789abRUNC";
const SERVICE_ACCOUNT: &str = r#"{"type":"service_account","project_id":"p1","private_key":"-----BEGIN PRIVATE KEY-----\nRUNCANARYpem\n-----END PRIVATE KEY-----\n","client_email":"runner@p1.iam.gserviceaccount.com"}"#;

/// A sandbox with a master key and organization `acme` holding OpenAI, Azure and Vertex keys.
fn provisioned() -> Sandbox {
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
        OPENAI,
        &[],
    );
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "azure_openai",
            "--name",
            "eu",
            "--set",
            "endpoint=https://acme-eu.openai.azure.com",
            "--set",
            "api_version=2024-10-21",
        ],
        AZURE,
        &[],
    );
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "vertex",
            "--name",
            "sa",
            "--api-key-env",
            "SA_JSON",
            "--set",
            "project=p1",
            "--set",
            "location=europe-west4",
        ],
        "",
        &[("SA_JSON", SERVICE_ACCOUNT)],
    );
    s
}

const PRINT_OPENAI: &str = "import os; print(os.environ['OPENAI_API_KEY'])";

#[test]
fn run_injects_keys_masked_by_default_and_plain_on_request() {
    let mut s = provisioned();
    let out = s.ok(&["run", "--org", "acme", "--", "python3", "-c", PRINT_OPENAI]);
    assert_eq!(out.trim(), "sk-...WXYZ", "the child's output is masked");
    let out = s.ok(&[
        "run",
        "--org",
        "acme",
        "--no-masking",
        "--",
        "python3",
        "-c",
        PRINT_OPENAI,
    ]);
    assert_eq!(out.trim(), OPENAI);
    // The child really had the key, masked or not.
    let check = format!("import os; print(os.environ['OPENAI_API_KEY'] == '{OPENAI}')");
    assert_eq!(
        s.ok(&["run", "--org", "acme", "--", "python3", "-c", &check])
            .trim(),
        "True"
    );
    // Only the providers asked for.
    let out = s.ok(&[
        "run",
        "--org",
        "acme",
        "--provider",
        "azure_openai",
        "--",
        "python3",
        "-c",
        "import os; print('OPENAI_API_KEY' in os.environ)",
    ]);
    assert_eq!(out.trim(), "False");
}

#[test]
fn an_azure_credential_yields_the_azure_variables() {
    let mut s = provisioned();
    let out = s.ok(&[
        "run", "--org", "acme", "--provider", "azure_openai", "--", "python3", "-c",
        "import os; [print(k, os.environ[k]) for k in ('AZURE_OPENAI_API_KEY', 'AZURE_OPENAI_ENDPOINT', 'OPENAI_API_VERSION', 'AZURE_OPENAI_API_VERSION')]",
    ]);
    assert_eq!(
        out,
        "AZURE_OPENAI_API_KEY ...RUNC\nAZURE_OPENAI_ENDPOINT https://acme-eu.openai.azure.com\n\
         OPENAI_API_VERSION 2024-10-21\nAZURE_OPENAI_API_VERSION 2024-10-21\n"
            .replace("...RUNC", "012...RUNC")
    );
}

/// A child that reports its key file and then waits; returns the path it saw.
fn vertex_child(report: &std::path::Path, wait: &str) -> Vec<String> {
    vec![
        "run".into(),
        "--org".into(),
        "acme".into(),
        "--provider".into(),
        "vertex".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "stat -c '%a' \"$GOOGLE_APPLICATION_CREDENTIALS\" > {r}.mode; \
             cp \"$GOOGLE_APPLICATION_CREDENTIALS\" {r}.copy; \
             echo \"$VERTEX_PROJECT $VERTEX_LOCATION\" > {r}.vars; \
             echo \"$GOOGLE_APPLICATION_CREDENTIALS\" > {r}; {wait}",
            r = report.display()
        ),
    ]
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn with_suffix(p: &std::path::Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", p.display()))
}

#[test]
fn vertex_key_file_is_private_and_gone_after_the_child_exits() {
    let mut s = provisioned();
    let report = s.scratch().join("vertex-report");
    let args = vertex_child(&report, "exit 0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.ok(&args);
    let key_file = PathBuf::from(read(report.clone()));
    assert_eq!(read(with_suffix(&report, ".mode")), "600");
    assert_eq!(read(with_suffix(&report, ".copy")), SERVICE_ACCOUNT);
    assert_eq!(read(with_suffix(&report, ".vars")), "p1 europe-west4");
    assert!(!key_file.exists(), "{} is still there", key_file.display());
}

#[test]
fn ctrl_c_reaches_the_child_and_the_key_file_is_still_removed() {
    let s = provisioned();
    let report = s.scratch().join("vertex-sigint");
    let args = vertex_child(&report, "exec sleep 30");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = s.command(&args).stdin(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !report.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let key_file = PathBuf::from(read(report));
    assert!(key_file.exists());
    let pid = nix::unistd::Pid::from_raw(child.id().cast_signed());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "128 + SIGINT, as a shell reports it"
    );
    assert!(!key_file.exists(), "{} survived Ctrl-C", key_file.display());
}

#[test]
fn keywards_own_configuration_is_withheld_from_the_command() {
    let mut s = provisioned();
    let out = s.ok_with(
        &[
            "run", "--org", "acme", "--", "sh", "-c",
            "echo ${KEYWARD_MASTER_KEY:-unset} ${KEYWARD_MASTER_KEYS:-unset} ${KEYWARD_DATABASE_URL:-unset} ${KEYWARD_DATA_DIR:+data-dir-set}",
        ],
        "",
        &[],
    );
    assert_eq!(out.trim(), "unset unset unset data-dir-set");
}

#[test]
fn a_vertex_reference_becomes_a_private_key_file_and_its_private_key_is_masked() {
    let mut s = provisioned();
    let report = s.scratch().join("vertex-ref");
    let script = format!(
        "stat -c '%a' \"$GOOGLE_APPLICATION_CREDENTIALS\"; echo \"$GOOGLE_APPLICATION_CREDENTIALS\" > {}; \
         python3 -c 'import json, os; print(json.load(open(os.environ[\"GOOGLE_APPLICATION_CREDENTIALS\"]))[\"private_key\"])'",
        report.display()
    );
    let out = s.ok_with(
        &["run", "--", "sh", "-c", &script],
        "",
        &[("GOOGLE_APPLICATION_CREDENTIALS", "keyward://acme/vertex")],
    );
    assert_eq!(
        out, "600\n***\n",
        "a 0600 file, and the PEM inside it masked"
    );
    assert!(!PathBuf::from(read(report)).exists());
}

#[test]
fn output_is_drained_but_a_grandchild_holding_the_pipe_does_not_hang_us() {
    let mut s = provisioned();
    let start = Instant::now();
    let out = s.ok(&[
        "run",
        "--org",
        "acme",
        "--",
        "sh",
        "-c",
        "echo before; (sleep 20 &); echo after",
    ]);
    assert_eq!(out, "before\nafter\n");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "waited for the grandchild"
    );
}

#[test]
fn exit_codes_and_stdin_pass_through() {
    let mut s = provisioned();
    let out = s.run_with(
        &["run", "--org", "acme", "--", "sh", "-c", "exit 7"],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(7));
    let out = s.run_with(
        &["run", "--org", "acme", "--", "sh", "-c", "kill -TERM $$"],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(143), "128 + SIGTERM");
    let out = s.ok_with(&["run", "--org", "acme", "--", "cat"], "piped in\n", &[]);
    assert_eq!(out, "piped in\n");
    let out = s.run_with(
        &["run", "--org", "acme", "--", "no-such-program-here"],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn a_secret_split_across_writes_is_still_masked() {
    let mut s = provisioned();
    let (a, b) = OPENAI.split_at(12);
    let script = format!(
        "import sys, time; sys.stdout.write('key: {a}'); sys.stdout.flush(); time.sleep(0.2); \
         sys.stdout.write('{b} end\\n'); sys.stderr.write('err {OPENAI}\\n')"
    );
    let out = s.run_with(
        &["run", "--org", "acme", "--", "python3", "-c", &script],
        "",
        &[],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "key: sk-...WXYZ end\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err sk-...WXYZ\n");
}

#[test]
fn env_files_and_environment_references_resolve_before_the_command_starts() {
    let mut s = provisioned();
    s.ok_with(
        &["var", "set", "db.password", "--org", "acme", "--sensitive"],
        "hunter2-RUNCANARY",
        &[],
    );
    let env_file = s.scratch().join("app.env");
    std::fs::write(
        &env_file,
        "# references and plain values\n\
         LLM_KEY=keyward://acme/openai\n\
         NAMED=keyward://acme/openai/prod\n\
         ENDPOINT=keyward://acme/azure_openai?field=endpoint\n\
         DB_PASSWORD=keyward://acme/var/db.password\n\
         PLAIN=\"just a value\"\n",
    )
    .unwrap();
    let file = env_file.display().to_string();
    let check = format!(
        "import os; e = os.environ; print(e['LLM_KEY'] == '{OPENAI}', e['NAMED'] == '{OPENAI}', \
         e['ENDPOINT'], e['DB_PASSWORD'] == 'hunter2-RUNCANARY', e['PLAIN'], e['FROM_ENV'] == '{OPENAI}')"
    );
    let out = s.ok_with(
        &["run", "--env-file", &file, "--", "python3", "-c", &check],
        "",
        &[("FROM_ENV", "keyward://acme/openai")],
    );
    assert_eq!(
        out.trim(),
        "True True https://acme-eu.openai.azure.com True just a value True"
    );
    // References are masked like injected keys.
    let out = s.ok_with(
        &[
            "run",
            "--env-file",
            &file,
            "--",
            "sh",
            "-c",
            "echo $LLM_KEY $DB_PASSWORD",
        ],
        "",
        &[],
    );
    assert_eq!(out.trim(), "sk-...WXYZ ***");

    // One bad reference: nothing runs, and the error names it.
    std::fs::write(
        &env_file,
        "GOOD=keyward://acme/openai\nBAD=keyward://acme/gemini\nTYPO=keyward://acme/var/nope\n",
    )
    .unwrap();
    let marker = s.scratch().join("ran");
    let touch = format!("touch {}", marker.display());
    let err = s.fails(&["run", "--env-file", &file, "--", "sh", "-c", &touch], &[]);
    assert!(
        !marker.exists(),
        "the command ran despite an unresolvable reference"
    );
    assert!(
        err.contains("BAD: cannot resolve keyward://acme/gemini"),
        "{err}"
    );
    assert!(
        err.contains("TYPO: cannot resolve keyward://acme/var/nope"),
        "{err}"
    );
    assert!(!err.contains("RUNCANARY"), "{err}");
    let err = s.fails(
        &["run", "--", "true"],
        &[("X", "keyward://Not An Org/openai")],
    );
    assert!(
        err.contains("X: cannot resolve keyward://Not An Org/openai"),
        "{err}"
    );
    // A malformed env file line is reported without its content (it may hold a key).
    std::fs::write(&env_file, "GOOD=1\nBROKEN='sk-RUNCANARY never closed\n").unwrap();
    let err = s.fails(&["run", "--env-file", &file, "--", "true"], &[]);
    assert!(
        err.contains("cannot read env file")
            && err.contains("line 2: a quote opened on this line is never closed")
            && !err.contains("RUNCANARY"),
        "{err}"
    );
}

#[test]
fn user_set_variables_win_only_with_no_override() {
    let mut s = provisioned();
    let mine = [("OPENAI_API_KEY", "sk-mine-0000")];
    let print = ["--", "sh", "-c", "echo $OPENAI_API_KEY"];
    let out = s.ok_with(
        &[&["run", "--org", "acme", "--no-masking"][..], &print].concat(),
        "",
        &mine,
    );
    assert_eq!(out.trim(), OPENAI, "Keyward's key by default");
    let out = s.ok_with(
        &[
            &["run", "--org", "acme", "--no-masking", "--no-override"][..],
            &print,
        ]
        .concat(),
        "",
        &mine,
    );
    assert_eq!(out.trim(), "sk-mine-0000");
}

#[test]
fn env_prints_dotenv_shell_and_json_and_is_audited() {
    let mut s = provisioned();
    let dotenv = s.ok(&["env", "--org", "acme", "--provider", "openai,azure_openai"]);
    assert!(
        dotenv.contains(&format!("OPENAI_API_KEY='{OPENAI}'")),
        "{dotenv}"
    );
    assert!(dotenv.contains("AZURE_OPENAI_ENDPOINT='https://acme-eu.openai.azure.com'"));
    let shell = s.ok(&[
        "env",
        "--org",
        "acme",
        "--provider",
        "openai",
        "--format",
        "shell",
    ]);
    assert!(
        shell.contains(&format!("export OPENAI_API_KEY='{OPENAI}'")),
        "{shell}"
    );
    let json = s.json(&["env", "--org", "acme", "--format", "json"]);
    assert_eq!(json["OPENAI_API_KEY"], OPENAI);
    assert_eq!(json["VERTEX_PROJECT"], "p1");
    assert!(
        json.get("GOOGLE_APPLICATION_CREDENTIALS").is_none(),
        "no key file from env"
    );
    let events = s.json(&["events", "list", "--filter", "action=resolve", "--json"]);
    assert_eq!(events.as_array().unwrap().len(), 2 + 1 + 3);
    let err = s.fails(&["env", "--org", "acme", "--provider", "gemini"], &[]);
    assert!(
        err.contains("organization 'acme' has no active Google Gemini credential and none of GOOGLE_API_KEY, GEMINI_API_KEY is set"),
        "{err}"
    );
}

/// A mock provider on 127.0.0.1: OpenAI-, Anthropic- and Gemini-style model listings (each
/// under a prefix of its own) that accept one key each, a rate-limited route, a redirect, and a
/// Gemini-style 400.
async fn mock_provider() -> MockProvider {
    let mock = MockProvider::builder()
        .key("sk-good-0123456789abcdef")
        .key("sk-ant-api03-good-0123456789")
        .key("AIza-good-0123456789abcdefghijklmnopqrs")
        .start()
        .await;
    mock.on_path("/busy", Reply::status(429));
    mock.on_path("/moved", Reply::status(302).header("location", "/stolen"));
    mock.on_path("/stolen", Reply::ok());
    mock.on_path("/gemini400", Reply::status(400));
    mock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cred_test_reports_ok_rejected_rate_limited_and_unreachable() {
    let mock = mock_provider().await;
    let base = mock.url();
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.ok(&["org", "create", "acme"]);
    // A port nothing listens on: bind, note, close.
    let closed = keyward_testkit::closed_addr();
    let cases = [
        (
            "openai",
            "good",
            "sk-good-0123456789abcdef",
            format!("{base}/openai/v1"),
            "ok",
        ),
        (
            "openai",
            "bad",
            "sk-bad-0123456789abcdefg",
            format!("{base}/openai/v1"),
            "rejected (HTTP 401)",
        ),
        (
            "anthropic",
            "good",
            "sk-ant-api03-good-0123456789",
            format!("{base}/anthropic"),
            "ok",
        ),
        (
            "gemini",
            "good",
            "AIza-good-0123456789abcdefghijklmnopqrs",
            format!("{base}/gemini"),
            "ok",
        ),
        (
            "gemini",
            "bad",
            "AIza-bad-01234567890abcdefghijklmnopqrs",
            format!("{base}/gemini"),
            "rejected (HTTP 401)",
        ),
        (
            "openai",
            "busy",
            "sk-busy-0123456789abcdef",
            format!("{base}/busy/v1"),
            "rate limited",
        ),
        (
            "openai",
            "down",
            "sk-down-0123456789abcdef",
            format!("http://{closed}/v1"),
            "unreachable: ",
        ),
        (
            "openai",
            "moved",
            "sk-moved-0123456789abcde",
            format!("{base}/moved/v1"),
            "unreachable: HTTP 302 redirect",
        ),
        (
            "gemini",
            "invalid",
            "AIza-invalid-012345678abcdefghijklmnopq",
            format!("{base}/gemini400"),
            "rejected (HTTP 400)",
        ),
    ];
    for (provider, name, secret, base_url, expected) in cases {
        let added = s.ok_with(
            &[
                "cred",
                "add",
                "--org",
                "acme",
                "--provider",
                provider,
                "--name",
                name,
                "--base-url",
                &base_url,
                "--json",
            ],
            secret,
            &[],
        );
        let id = serde_json::from_str::<serde_json::Value>(&added).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let out = s.run_with(&["cred", "test", &id, "--timeout", "5"], "", &[]);
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(printed.contains(expected), "{provider}/{name}: {printed}");
        assert_eq!(out.status.success(), expected == "ok", "{provider}/{name}");
        assert!(!printed.contains(secret), "{printed}");
        let shown = s.json(&["cred", "show", &id, "--json"]);
        assert!(
            shown["last_test_result"]
                .as_str()
                .unwrap()
                .starts_with(expected),
            "{shown}"
        );
        assert!(shown["last_tested_at"].is_i64());
    }
    let tests = s.json(&["events", "list", "--filter", "action=test", "--json"]);
    let outcomes: Vec<&str> = tests
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 9);
    assert_eq!(outcomes.iter().filter(|o| **o == "success").count(), 3);
    // Each test asked the listing its provider has, with the key where that provider takes it.
    for (prefix, path, key) in [
        ("/openai", "/openai/v1/models", "sk-good-0123456789abcdef"),
        (
            "/anthropic",
            "/anthropic/v1/models",
            "sk-ant-api03-good-0123456789",
        ),
        (
            "/gemini",
            "/gemini/v1beta/models",
            "AIza-good-0123456789abcdefghijklmnopqrs",
        ),
    ] {
        let asked = mock.received_on(prefix);
        assert!(
            asked.iter().all(|r| r.method == "GET" && r.path == path),
            "{asked:?}"
        );
        assert!(
            asked.iter().any(|r| r.key() == Some(key)),
            "{prefix}: {asked:?}"
        );
    }
    // A redirect was not followed: nothing with a key reached where it pointed.
    assert!(
        mock.received_on("/stolen").iter().all(|r| {
            r.header("x-api-key").is_none()
                && r.header("authorization").is_none()
                && r.header("x-goog-api-key").is_none()
        }),
        "a key followed the redirect"
    );
}

#[test]
fn two_providers_never_write_one_variable_silently() {
    let mut s = provisioned();
    s.ok_with(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai_compatible",
            "--name",
            "local",
            "--set",
            "base_url=http://127.0.0.1:9/v1",
        ],
        "sk-local-COLLISIONCANARY0123456789",
        &[],
    );
    for args in [
        &["env", "--org", "acme"][..],
        &["run", "--org", "acme", "--", "true"],
    ] {
        let err = s.fails(args, &[]);
        assert!(
            err.contains("OPENAI_API_KEY would be set by both the openai credential 'prod' and the openai_compatible credential 'local'")
                && err.contains("--provider")
                && err.contains("env_prefix"),
            "keyward {args:?}: {err}"
        );
    }
    // Choosing one provider, or a prefix of its own, resolves it.
    let out = s.ok(&["env", "--org", "acme", "--provider", "openai_compatible"]);
    assert!(out.contains("OPENAI_API_KEY='sk-local-"), "{out}");
    let list = s.json(&["cred", "list", "--provider", "openai_compatible", "--json"]);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    s.ok(&["cred", "update", &id, "--set", "env_prefix=LOCAL"]);
    let out = s.ok(&["env", "--org", "acme"]);
    assert!(
        out.contains(&format!("OPENAI_API_KEY='{OPENAI}'"))
            && out.contains("LOCAL_API_KEY='sk-local-")
            && out.contains("LOCAL_BASE_URL='http://127.0.0.1:9/v1'"),
        "{out}"
    );
}

#[test]
fn run_and_env_fall_back_to_the_environment_as_resolve_does() {
    let mut s = provisioned();
    let from_env = [(
        "ANTHROPIC_API_KEY",
        "sk-ant-api03-FROMSHELL-0123456789abcdef",
    )];
    let print = "import os; print(os.environ['ANTHROPIC_API_KEY'])";
    let args = [
        "run",
        "--org",
        "acme",
        "--provider",
        "anthropic",
        "--",
        "python3",
        "-c",
        print,
    ];
    // No anthropic credential, but the shell has the key: one rule with `resolve`.
    let out = s.ok_with(&args, "", &from_env);
    assert_eq!(
        out.trim(),
        "sk-ant-...cdef",
        "handed on, and masked like any key"
    );
    let out = s.ok_with(
        &["env", "--org", "acme", "--provider", "anthropic"],
        "",
        &from_env,
    );
    assert!(
        out.contains("ANTHROPIC_API_KEY='sk-ant-api03-FROMSHELL"),
        "{out}"
    );
    // Off on request, or by the organization's setting: then the clear error.
    let mut off = args.to_vec();
    off.insert(1, "--no-env-fallback");
    let err = s.fails(&off, &from_env);
    assert!(
        err.contains("organization 'acme' has no active Anthropic credential;"),
        "{err}"
    );
    s.ok(&["org", "set-env-fallback", "acme", "off"]);
    let err = s.fails(&args, &from_env);
    assert!(err.contains("no active Anthropic credential"), "{err}");
    let orgs = s.ok(&["org", "list"]);
    assert!(
        orgs.contains("ENV FALLBACK") && orgs.contains("off"),
        "{orgs}"
    );
    s.ok(&["org", "set-env-fallback", "acme", "default"]);
    s.ok_with(&args, "", &from_env);
}

/// What the official SDKs themselves pick up under `keyward run`, with stale values of their
/// own variables in the developer's shell: the organization's key and base URL, every time.
const SDKS_SEE: &str = r#"
from google import genai
import anthropic, openai
g = genai.Client()
print("gemini", g._api_client.api_key, g._api_client._http_options.base_url)
o = openai.OpenAI()
print("openai", o.api_key, o.base_url)
a = anthropic.Anthropic()
print("anthropic", a.api_key, a.base_url)
"#;

#[test]
fn the_official_sdks_under_keyward_run_read_the_organizations_key_and_base_url() {
    if !["google.genai", "openai", "anthropic"]
        .into_iter()
        .all(crate::gateway::python_sdk_available)
    {
        return;
    }
    let mut s = provisioned();
    let gemini = "AIzaSyORGKEY0123456789abcdefghijklmnopq";
    let anthropic = "sk-ant-api03-ORGKEY0123456789abcdef";
    for (provider, key, base) in [
        ("gemini", gemini, "http://127.0.0.1:9/gemini"),
        ("anthropic", anthropic, "http://127.0.0.1:9/anthropic"),
    ] {
        s.ok_with(
            &[
                "cred",
                "add",
                "--org",
                "acme",
                "--provider",
                provider,
                "--name",
                "main",
                "--base-url",
                base,
            ],
            key,
            &[],
        );
    }
    let stale = [
        ("GOOGLE_API_KEY", "AIzaSySTALE0123456789abcdefghijklmnopqr"),
        ("GOOGLE_GEMINI_BASE_URL", "https://stale.example"),
        ("OPENAI_BASE_URL", "https://stale.example/v1"),
        ("ANTHROPIC_BASE_URL", "https://stale.example"),
        ("ANTHROPIC_API_KEY", "sk-ant-api03-STALE0123456789abcdef"),
    ];
    let out = s.ok_with(
        &[
            "run",
            "--org",
            "acme",
            "--provider",
            "gemini,openai,anthropic",
            "--no-masking",
            "--",
            "python3",
            "-c",
            SDKS_SEE,
        ],
        "",
        &stale,
    );
    assert!(
        out.contains(&format!("gemini {gemini} http://127.0.0.1:9/gemini")),
        "{out}"
    );
    assert!(
        out.contains(&format!("openai {OPENAI} https://api.openai.com/v1/")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "anthropic {anthropic} http://127.0.0.1:9/anthropic"
        )),
        "{out}"
    );
    assert!(!out.contains("STALE") && !out.contains("stale"), "{out}");
}

#[test]
fn a_dotenv_file_from_keyward_env_runs_nothing_when_sourced() {
    let mut s = provisioned();
    let list = s.json(&["cred", "list", "--provider", "azure_openai", "--json"]);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let marker = s.scratch().join("ran");
    // An org_admin's field with a command substitution in it, of each kind.
    for hostile in [
        format!("https://x.openai.azure.com/`touch {}`", marker.display()),
        format!("https://x.openai.azure.com/$(touch {})", marker.display()),
        format!(
            "https://x.openai.azure.com/'$(touch {})'\"",
            marker.display()
        ),
    ] {
        s.ok(&[
            "cred",
            "update",
            &id,
            "--set",
            &format!("endpoint={hostile}"),
        ]);
        let dotenv = s.ok(&["env", "--org", "acme", "--provider", "azure_openai"]);
        let file = s.scratch().join("out.env");
        std::fs::write(&file, &dotenv).unwrap();
        let sourced = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "set -a; . {}; printf %s \"$AZURE_OPENAI_ENDPOINT\"",
                    file.display()
                ),
            ])
            .output()
            .unwrap();
        assert!(!marker.exists(), "sourcing ran a command: {dotenv}");
        assert_eq!(
            String::from_utf8_lossy(&sourced.stdout),
            hostile,
            "{dotenv}"
        );
        // And the same file read back as an env file gives the same value.
        let printed = s.ok(&[
            "run",
            "--env-file",
            &file.display().to_string(),
            "--",
            "printenv",
            "AZURE_OPENAI_ENDPOINT",
        ]);
        assert_eq!(printed.trim_end(), hostile);
    }
    // Quotes and a backtick together have no safe .env form: refused, not mangled.
    s.ok(&[
        "cred",
        "update",
        &id,
        "--set",
        &format!(
            "endpoint=https://x.openai.azure.com/'`touch {}`",
            marker.display()
        ),
    ]);
    let err = s.fails(&["env", "--org", "acme", "--provider", "azure_openai"], &[]);
    assert!(err.contains("use --format shell or json"), "{err}");
    assert!(!marker.exists());
}

#[test]
fn vault_references_are_read_from_openbao_before_the_command_starts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(bao) = rt.block_on(keyward_testkit::kms::Bao::start()) else {
        return;
    };
    const KV_KEY: &str = "sk-proj-KVRUNCANARY-0123456789abcd";
    rt.block_on(bao.kv_put(
        "providers",
        serde_json::json!({"openai_api_key": KV_KEY, "anthropic_api_key": "sk-ant-KVRUNCANARY-2"}),
    ));
    let token = rt.block_on(bao.token_with_policy(
        "keyward-run",
        "path \"secret/data/providers\" { capabilities = [\"read\"] }\n",
    ));
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    s.env.insert("VAULT_ADDR".into(), bao.addr.clone());
    s.env.insert("VAULT_TOKEN".into(), token.clone());

    // From an env file and from the environment, in either path form.
    let env_file = s.scratch().join("app.env");
    std::fs::write(
        &env_file,
        "OPENAI_API_KEY=keyward://vault:secret/data/providers#openai_api_key\nPLAIN=1\n",
    )
    .unwrap();
    let file = env_file.display().to_string();
    let check = format!(
        "import os; e = os.environ; print(e['OPENAI_API_KEY'] == '{KV_KEY}', \
         e['ANTHROPIC_API_KEY'] == 'sk-ant-KVRUNCANARY-2', e['PLAIN'])"
    );
    let out = s.ok_with(
        &["run", "--env-file", &file, "--", "python3", "-c", &check],
        "",
        &[(
            "ANTHROPIC_API_KEY",
            "keyward://vault:secret/providers#anthropic_api_key",
        )],
    );
    assert_eq!(out.trim(), "True True 1");
    // Masked in the command's output like any reference to a secret.
    let out = s.ok_with(
        &[
            "run",
            "--env-file",
            &file,
            "--",
            "sh",
            "-c",
            "echo $OPENAI_API_KEY",
        ],
        "",
        &[],
    );
    assert_eq!(out.trim(), "***");

    // References that cannot be read: nothing runs, and each is named with why.
    std::fs::write(
        &env_file,
        "GOOD=keyward://vault:secret/data/providers#openai_api_key\n\
         NO_FIELD=keyward://vault:secret/data/providers#gemini_api_key\n\
         NO_PATH=keyward://vault:secret/data/absent#openai_api_key\n\
         MALFORMED=keyward://vault:secret/data/providers\n",
    )
    .unwrap();
    let marker = s.scratch().join("ran");
    let touch = format!("touch {}", marker.display());
    let err = s.fails(&["run", "--env-file", &file, "--", "sh", "-c", &touch], &[]);
    assert!(!marker.exists(), "the command ran despite a bad reference");
    for says in [
        "3 reference(s) could not be resolved",
        "NO_FIELD: cannot resolve keyward://vault:secret/data/providers#gemini_api_key: the secret at secret/data/providers has no text field 'gemini_api_key'",
        // The token may not read the path: the capability to grant is named.
        "NO_PATH: cannot resolve keyward://vault:secret/data/absent#openai_api_key: OpenBao/Vault at",
        "lacks `read` on secret/data/absent",
        "MALFORMED: cannot resolve keyward://vault:secret/data/providers: not a Vault KV reference (no #FIELD)",
    ] {
        assert!(err.contains(says), "{err:?} should say {says:?}");
    }

    // A revoked token, and no server at all: refused before the command starts.
    rt.block_on(bao.revoke(&token));
    let err = s.fails(&["run", "--env-file", &file, "--", "sh", "-c", &touch], &[]);
    assert!(
        err.contains("GOOD: cannot resolve keyward://vault:secret/data/providers#openai_api_key")
            && err.contains("the token is not valid (expired or revoked)"),
        "{err}"
    );
    s.env.remove("VAULT_ADDR");
    let err = s.fails(&["run", "--env-file", &file, "--", "sh", "-c", &touch], &[]);
    assert!(err.contains("no Vault server: set VAULT_ADDR"), "{err}");
    assert!(!marker.exists());
    let printed = String::from_utf8_lossy(&s.transcript);
    assert!(
        !printed.contains("KVRUNCANARY") && !printed.contains(&token),
        "{printed}"
    );
}
