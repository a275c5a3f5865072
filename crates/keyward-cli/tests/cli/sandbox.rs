//! A sandbox to run the real `keyward` binary in: its own data directory, database and
//! environment, and a transcript of everything it printed.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use keyward_testkit::PgSchema;

/// A sandbox: a data directory, a database, and the environment every command runs with.
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
    pub(crate) env: HashMap<String, String>,
    pg: Option<PgSchema>,
    /// Everything every command printed, to scan for canaries at the end.
    pub(crate) transcript: Vec<u8>,
}

impl Sandbox {
    pub(crate) fn sqlite() -> Self {
        Self::new(None)
    }

    pub(crate) async fn postgres() -> Option<Self> {
        Some(Self::new(Some(PgSchema::create("kw_cli").await?)))
    }

    fn new(pg: Option<PgSchema>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = HashMap::new();
        env.insert(
            "KEYWARD_DATA_DIR".to_string(),
            dir.path().join("data").display().to_string(),
        );
        env.insert("KEYWARD_ACTOR".into(), "tester".into());
        if let Some(schema) = &pg {
            env.insert("KEYWARD_DATABASE_URL".into(), schema.url());
        }
        Self {
            dir,
            env,
            pg,
            transcript: Vec::new(),
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.env["KEYWARD_DATA_DIR"])
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `keyward ARGS` with `stdin` and extra variables; returns the output.
    pub(crate) fn run_with(
        &mut self,
        args: &[&str],
        stdin: &str,
        extra: &[(&str, &str)],
    ) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        self.transcript.extend_from_slice(&out.stdout);
        self.transcript.extend_from_slice(&out.stderr);
        out
    }

    /// Runs and expects success; returns standard output.
    pub(crate) fn ok(&mut self, args: &[&str]) -> String {
        self.ok_with(args, "", &[])
    }

    pub(crate) fn ok_with(&mut self, args: &[&str], stdin: &str, extra: &[(&str, &str)]) -> String {
        let out = self.run_with(args, stdin, extra);
        assert!(
            out.status.success(),
            "keyward {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects failure; returns standard error.
    pub(crate) fn fails(&mut self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let out = self.run_with(args, "", extra);
        assert!(!out.status.success(), "keyward {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    pub(crate) fn json(&mut self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Every byte of stored data: the SQLite files, or a text dump of the PostgreSQL schema.
    pub(crate) async fn stored_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.pg {
            None => {
                for entry in std::fs::read_dir(self.data_dir()).unwrap() {
                    let path = entry.unwrap().path();
                    if path.file_name().unwrap() != "master.key" {
                        out.extend(std::fs::read(&path).unwrap());
                    }
                }
            }
            Some(schema) => out = schema.dump().await,
        }
        out
    }

    pub(crate) async fn cleanup(self) {
        if let Some(schema) = self.pg {
            schema.drop_schema().await;
        }
    }

    /// A scratch directory beside the data directory.
    pub(crate) fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A child killed when the test ends, even by a failed assertion (a server or receiver left
/// running would outlive the test run, and hold what the run holds).
pub(crate) struct Reaped(pub(crate) std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
