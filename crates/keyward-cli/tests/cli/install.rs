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
