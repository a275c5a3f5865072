//! `keyward doctor` (issue 26): what is wrong with a deployment, each with its fix, on the store
//! and through a running server's `/api/v1/doctor` (admins only).

use serde_json::Value;

use crate::gateway::Server;
use crate::sandbox::Sandbox;

fn findings(report: &Value, check: &str) -> Vec<Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .cloned()
        .collect()
}

fn verdict(report: &Value, check: &str) -> String {
    let all = findings(report, check);
    assert!(!all.is_empty(), "no {check} finding: {report}");
    // The worst of them.
    ["fail", "warn", "ok"]
        .into_iter()
        .find(|v| all.iter().any(|f| f["verdict"] == *v))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_names_what_is_wrong_and_how_to_fix_it() {
    let mut s = Sandbox::sqlite();
    // The development key, no admin token: both fail, with their fixes.
    s.ok(&["org", "create", "acme"]);
    let out = s.run_with(&["doctor"], "", &[]);
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("FAIL master_keys") && text.contains("development key"),
        "{text}"
    );
    assert!(text.contains("keyward master-key rotate"), "{text}");
    assert!(text.contains("FAIL admin_token"), "{text}");

    // A deployment done right: a key of its own, an admin token, private files.
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
            "main",
        ],
        "sk-proj-DOCTORCANARY000000000000000000000000000000",
        &[],
    );
    s.ok(&["token", "create", "--role", "admin", "--name", "ops"]);
    let report = s.json(&["doctor", "--json"]);
    for check in [
        "master_keys",
        "records",
        "database",
        "data_dir",
        "admin_token",
        "clock",
        "audit_chain",
    ] {
        assert_eq!(verdict(&report, check), "ok", "{check}: {report}");
    }
    assert!(
        findings(&report, "master_keys")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("given by KEYWARD_MASTER_KEY"),
        "{report}"
    );
    assert!(s.ok(&["doctor"]).contains("all clear"));

    // A store file others may read; a certificate that is not one; a targets file whose
    // reference is gone.
    let db = std::fs::read_dir(s.data_dir())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".db"))
        .unwrap()
        .path();
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cert = s.scratch().join("cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let targets = s.scratch().join("targets.yaml");
    std::fs::write(
        &targets,
        "org: acme\ntargets:\n  - id: main\n    provider: openai\n    secret_key_ref: { env: KW_DOCTOR_GONE }\n",
    )
    .unwrap();
    let cert_arg = cert.display().to_string();
    let targets_arg = targets.display().to_string();
    let out = s.run_with(
        &[
            "doctor",
            "--json",
            "--tls-cert",
            &cert_arg,
            "--gateway-config",
            &targets_arg,
        ],
        "",
        &[],
    );
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict(&report, "data_dir"), "fail");
    assert!(
        findings(&report, "data_dir")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("has mode 644"),
        "{report}"
    );
    assert!(
        findings(&report, "data_dir")[0]["fix"]
            .as_str()
            .unwrap()
            .contains("chmod")
    );
    assert_eq!(verdict(&report, "tls_certificate"), "fail");
    assert_eq!(verdict(&report, "targets"), "fail");
    assert!(
        findings(&report, "targets")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("KW_DOCTOR_GONE"),
        "{report}"
    );
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    // Through the server: admins ask, others are refused.
    let server = Server::start(&s, &[], &[]);
    let admin = s.json(&[
        "token", "create", "--role", "admin", "--name", "remote", "--json",
    ])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let viewer = s.json(&[
        "token", "create", "--role", "viewer", "--org", "acme", "--name", "v", "--json",
    ])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let remote = |token: &str| {
        vec![
            ("KEYWARD_URL".to_owned(), server.url.clone()),
            ("KEYWARD_TOKEN".to_owned(), token.to_owned()),
        ]
    };
    let as_admin = remote(&admin);
    let env: Vec<(&str, &str)> = as_admin
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = s.run_with(&["doctor", "--json"], "", &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict(&report, "database"), "ok");
    assert_eq!(verdict(&report, "admin_token"), "ok");
    let as_viewer = remote(&viewer);
    let env: Vec<(&str, &str)> = as_viewer
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let refused = s.fails(&["doctor"], &env);
    assert!(
        refused.contains("403") || refused.contains("admin"),
        "{refused}"
    );
    server.stop();

    // A master key file others may read fails, with its fix.
    let key = s.env.remove("KEYWARD_MASTER_KEY").unwrap();
    let key_file = s.scratch().join("master.key");
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let key_path = key_file.display().to_string();
    let out = s.run_with(
        &["doctor", "--json"],
        "",
        &[("KEYWARD_MASTER_KEY_FILE", key_path.as_str())],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict(&report, "master_key_file"), "fail", "{report}");
    assert!(
        findings(&report, "master_key_file")[0]["fix"]
            .as_str()
            .unwrap()
            .contains("chmod 600")
    );
    // No store where it is pointed: said, and none is made.
    let nowhere = s.scratch().join("nowhere");
    let nowhere_arg = nowhere.display().to_string();
    let err = s.fails(
        &["doctor"],
        &[
            ("KEYWARD_DATA_DIR", nowhere_arg.as_str()),
            ("KEYWARD_MASTER_KEY_FILE", key_path.as_str()),
        ],
    );
    assert!(err.contains("there is no store"), "{err}");
    assert!(!nowhere.exists(), "the doctor made a data directory");
    let transcript = String::from_utf8_lossy(&s.transcript).into_owned();
    assert!(!transcript.contains("DOCTORCANARY"));
}
