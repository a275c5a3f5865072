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
