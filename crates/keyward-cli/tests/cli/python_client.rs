//! The Python package (`clients/python`, issue 24) against this build's `keyward serve`: its
//! own pytest suite starts the server on SQLite, drives it as Open Notebook's code would, and
//! runs the package's examples.
//!
//! The interpreter is `KEYWARD_TEST_PYTHON` (CI's fresh virtualenv, where `pip install
//! ./clients/python[test]` put the package), else `python3` with the package's source on its
//! path. Without pytest it is skipped, unless `KEYWARD_TEST_REQUIRE_PYTHON_SDKS=1`.

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn the_python_package_passes_its_own_suite_against_this_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let package = root.join("clients/python");
    let (python, in_venv) = match std::env::var("KEYWARD_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => (p, true),
        _ => ("python3".to_owned(), false),
    };
    let has_pytest = Command::new(&python)
        .args(["-c", "import pytest, httpx, openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_pytest {
        assert!(
            std::env::var("KEYWARD_TEST_REQUIRE_PYTHON_SDKS").as_deref() != Ok("1"),
            "KEYWARD_TEST_REQUIRE_PYTHON_SDKS=1 but {python} cannot import pytest, httpx and openai \
             (pip install './clients/python[test]')"
        );
        eprintln!("skipping the Python package's suite: {python} has no pytest, httpx or openai");
        return;
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&package)
        .env("KEYWARD_BIN", env!("CARGO_BIN_EXE_keyward"));
    if !in_venv {
        cmd.env("PYTHONPATH", package.join("src"));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python package's suite failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "{stdout}");
}
