//! A SoftHSM2 token of its own for each PKCS#11 test, in a temporary directory.
//!
//! SoftHSM2 finds its tokens through the file `SOFTHSM2_CONF` names, and reads that variable
//! from the process's environment once, at `C_Initialize`; a module is initialised once per
//! process. Setting the variable from inside a test would need `std::env::set_var`, which is
//! `unsafe` in edition 2024 (and `unsafe` is forbidden here). So [`SoftHsm::own_process`]
//! makes the token in the test's process with the command-line tools (each a child given
//! `SOFTHSM2_CONF` through `Command::env`), then runs the same test again in a child process of
//! the test binary (`<this binary> <test name> --exact`) with `SOFTHSM2_CONF` in that child's
//! environment from its first instruction. There the call answers the token, and the test
//! does its work; in the parent it answers `None` after the child passed, and panics with the
//! child's output if it did not. Each test thus has its own token and its own process, and
//! nothing shares a module across tests.
//!
//! Needs `softhsm2-util` and `pkcs11-tool` (Debian: `softhsm2`, `opensc`) and the module
//! (`KEYWARD_TEST_PKCS11_MODULE`, or where the distributions put it); without them the test is
//! skipped, unless `KEYWARD_TEST_REQUIRE_KMS=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::missing;

/// Set in the child: the fixture's directory.
const CHILD_VAR: &str = "KEYWARD_TEST_SOFTHSM_DIR";
/// The token's label.
const TOKEN: &str = "keyward-test";
/// The security officer's PIN (only the fixture uses it).
const SO_PIN: &str = "so-pin-7f3a9c";

/// A SoftHSM2 token made for one test.
#[derive(Debug)]
pub struct SoftHsm {
    /// The `SOFTHSM2_CONF` file that names the token directory.
    pub conf: PathBuf,
    /// The PKCS#11 module (`libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The token's slot id (SoftHSM2 picks one at random when it makes the token).
    pub slot: u64,
    /// The user PIN. A test PIN, but distinctive, so a test can look for it in messages.
    pub pin: String,
    dir: PathBuf,
    /// The directory, removed when the parent's value is dropped (the child's has none).
    _owned: Option<tempfile::TempDir>,
}

/// The SoftHSM2 module: `KEYWARD_TEST_PKCS11_MODULE`, or the first of the usual places.
fn find_module() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("KEYWARD_TEST_PKCS11_MODULE") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
        "/opt/homebrew/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn has_tool(name: &str, arg: &str) -> bool {
    Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn check(what: &str, output: std::io::Result<Output>) -> String {
    let output = output.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

impl SoftHsm {
    /// In the test's own process: makes a token, lets `setup` put keys on it, runs this test
    /// again in a child process that has `SOFTHSM2_CONF`, and answers `None` once the child
    /// passed (the test then simply returns). In that child: answers the token.
    ///
    /// Call it first thing in a test, on the test's own thread (the thread's name is the
    /// test's name, which the child is filtered to).
    ///
    /// # Panics
    ///
    /// When the tools are missing and `KEYWARD_TEST_REQUIRE_KMS=1`, when a tool fails, or
    /// when the test failed in the child (with the child's output).
    pub fn own_process(setup: impl FnOnce(&SoftHsm)) -> Option<Self> {
        if let Ok(dir) = std::env::var(CHILD_VAR) {
            return Some(Self::in_child(PathBuf::from(dir)));
        }
        let Some(module) = find_module() else {
            return missing(
                "no SoftHSM2 module (apt-get install softhsm2, or set KEYWARD_TEST_PKCS11_MODULE)",
            );
        };
        if !has_tool("softhsm2-util", "--version") {
            return missing("no softhsm2-util (apt-get install softhsm2)");
        }
        if !has_tool("pkcs11-tool", "--help") {
            return missing("no pkcs11-tool (apt-get install opensc)");
        }
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(str::to_owned)
            .expect("SoftHsm::own_process runs on the test's own thread, named after the test");
        let hsm = Self::create(module);
        setup(&hsm);
        hsm.run_child(&test);
        None
    }

    /// A token for other processes to use (the `keyward` binary, given `SOFTHSM2_CONF`): this
    /// process never loads the module. `None` means "skip".
    ///
    /// # Panics
    ///
    /// When the tools are missing and `KEYWARD_TEST_REQUIRE_KMS=1`, or when a tool fails.
    pub fn for_other_processes() -> Option<Self> {
        let Some(module) = find_module() else {
            return missing(
                "no SoftHSM2 module (apt-get install softhsm2, or set KEYWARD_TEST_PKCS11_MODULE)",
            );
        };
        if !has_tool("softhsm2-util", "--version") || !has_tool("pkcs11-tool", "--help") {
            return missing("no softhsm2-util or pkcs11-tool (apt-get install softhsm2 opensc)");
        }
        Some(Self::create(module))
    }

    /// The token in the child process, as the parent made it.
    fn in_child(dir: PathBuf) -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("the SoftHSM fixture's {name}: {e}"))
        };
        let conf = dir.join("softhsm2.conf");
        assert_eq!(
            std::env::var_os("SOFTHSM2_CONF").as_deref(),
            Some(conf.as_os_str()),
            "the child runs with the fixture's SOFTHSM2_CONF"
        );
        // Tells the parent that the test did run here (a filter that matched nothing would
        // pass too).
        std::fs::write(dir.join("ran"), b"").expect("the fixture's directory is writable");
        Self {
            conf,
            module: PathBuf::from(read("module")),
            token: TOKEN.to_owned(),
            slot: read("slot").parse().expect("a slot id"),
            pin: read("pin"),
            dir,
            _owned: None,
        }
    }

    /// A new token in a new temporary directory.
    fn create(module: PathBuf) -> Self {
        let owned = tempfile::tempdir().expect("a temporary directory");
        let dir = owned.path().to_owned();
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).expect("the token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("the SoftHSM2 configuration");
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("random bytes");
        let pin = format!(
            "pin-{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let out = check(
            "softhsm2-util --init-token",
            Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", TOKEN])
                .args(["--so-pin", SO_PIN, "--pin", &pin])
                .output(),
        );
        // "The token has been initialized and is reassigned to slot 1887227825"
        let slot: u64 = out
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("softhsm2-util said no slot: {out}"));
        std::fs::write(dir.join("module"), module.as_os_str().as_encoded_bytes())
            .expect("write the fixture");
        std::fs::write(dir.join("slot"), slot.to_string()).expect("write the fixture");
        std::fs::write(dir.join("pin"), &pin).expect("write the fixture");
        Self {
            conf,
            module,
            token: TOKEN.to_owned(),
            slot,
            pin,
            dir,
            _owned: Some(owned),
        }
    }

    /// Runs test `test` of this binary in a child with `SOFTHSM2_CONF`; panics unless it ran
    /// and passed.
    fn run_child(&self, test: &str) {
        let exe = std::env::current_exe().expect("the test binary's path");
        let output = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &self.conf)
            .env(CHILD_VAR, &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("the test binary runs again");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "{test} failed in its SoftHSM2 process ({}):\n{text}",
            output.status
        );
        assert!(
            self.dir.join("ran").exists(),
            "{test} did not run in its SoftHSM2 process (was it called off the test's thread?):\n{text}"
        );
        // Shown with --nocapture, or when the parent fails later.
        println!("{text}");
    }

    /// `pkcs11-tool` on this token, logged in as the user.
    fn tool(&self, what: &str, args: &[&str]) -> String {
        check(
            what,
            Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", &self.conf)
                .arg("--module")
                .arg(&self.module)
                .args(["--token-label", &self.token, "--login", "--pin", &self.pin])
                .args(args)
                .output(),
        )
    }

    /// Makes an AES-256 key labelled `label` with `CKA_ID` `id` (hex digits): sensitive,
    /// private, never extractable, allowed to encrypt and decrypt.
    pub fn aes_key(&self, label: &str, id: &str) {
        self.tool(
            &format!("pkcs11-tool --keygen AES:32 {label}"),
            &[
                "--keygen",
                "--key-type",
                "AES:32",
                "--label",
                label,
                "--id",
                id,
                "--sensitive",
                "--private",
            ],
        );
    }

    /// Makes a 256-bit generic secret (not an AES key) labelled `label`.
    pub fn generic_secret(&self, label: &str) {
        self.tool(
            &format!("pkcs11-tool --keygen GENERIC:32 {label}"),
            &[
                "--keygen",
                "--key-type",
                "GENERIC:32",
                "--label",
                label,
                "--sensitive",
                "--private",
            ],
        );
    }

    /// `KEYWARD_KMS` for key `key` on this token, by label.
    pub fn spec(&self, key: &str) -> String {
        format!(
            "pkcs11:module={},token={},key={key}",
            self.module.display(),
            self.token
        )
    }

    /// The fixture's directory (for files a test writes, such as a PIN file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
