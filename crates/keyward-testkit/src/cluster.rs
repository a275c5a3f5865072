//! A PostgreSQL server of a test's own, for tests that stop and start it (the shared server
//! must never be stopped under other tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A cluster made by `initdb` in a temporary directory, on a free port of 127.0.0.1, stopped
/// (immediately) when dropped.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the tools as this user (PostgreSQL refuses to run as root).
    run_as: Option<String>,
}

impl PgCluster {
    /// Makes and starts a cluster; `None` means "skip" (no PostgreSQL binaries here).
    ///
    /// # Panics
    ///
    /// When `KEYWARD_TEST_REQUIRE_POSTGRES=1` and the binaries are missing, or when a step
    /// fails: a fault test that cannot run must fail, not pass quietly.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var("KEYWARD_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KEYWARD_TEST_REQUIRE_POSTGRES=1 but no PostgreSQL binaries (initdb, pg_ctl) were found; set KEYWARD_TEST_PG_BIN"
            );
            eprintln!("skipping: no PostgreSQL binaries (initdb, pg_ctl) found");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let run_as = is_root().then(|| "postgres".to_owned());
        if run_as.is_some() {
            chown_to_postgres(dir.path());
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        let cluster = Self {
            dir,
            bin,
            port,
            run_as,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("a UTF-8 path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 100\n",
            cluster.port,
            cluster.dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("postgresql.conf written");
        cluster.pg_start();
        Some(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn pg_start(&self) {
        let log = self.dir.path().join("server.log");
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("a UTF-8 path"),
                "-l",
                log.to_str().expect("a UTF-8 path"),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server (fast: connections are closed, as in a restart or a failover).
    pub fn pg_stop(&self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("a UTF-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// One of the server's tools, run as the user that may run it.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        }
    }

    /// Runs one of the server's tools; panics if it fails. Its output goes nowhere (a
    /// postmaster that inherited a pipe would hold it open).
    fn run(&self, tool: &str, args: &[&str]) {
        let status = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(status.success(), "{tool} {args:?} failed: {status}");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data.display().to_string(), "-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `KEYWARD_TEST_PG_BIN`, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
    if let Ok(dir) = std::env::var("KEYWARD_TEST_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_tools(d));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_tools(d)) {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_tools(d))
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Gives the directory to the `postgres` user, which runs the server.
fn chown_to_postgres(dir: &Path) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("`id` runs");
        assert!(
            out.status.success(),
            "running as root needs a `postgres` user to run PostgreSQL"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g"))).expect("chown to postgres");
}
