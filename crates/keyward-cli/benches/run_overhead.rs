//! `keyward run -- true` against `true` alone: whole-process wall time, interleaved in one run
//! so both see the same machine. DESIGN target: under 10 ms of overhead.
//!
//! ```sh
//! cargo bench -p keyward-cli --bench run_overhead            # 200 runs of each
//! KEYWARD_BENCH_RUNS=50 cargo bench -p keyward-cli --bench run_overhead
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd.status().expect("the command starts");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    took
}

fn main() {
    let runs: usize = std::env::var("KEYWARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let keyward = env!("CARGO_BIN_EXE_keyward");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = String::from_utf8(
        Command::new(keyward)
            .arg("keygen")
            .output()
            .expect("keygen")
            .stdout,
    )
    .expect("utf-8");
    let setup = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = Command::new(keyward)
            .args(args)
            .env("KEYWARD_DATA_DIR", dir.path())
            .env("KEYWARD_MASTER_KEY", key.trim())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("keyward runs");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(stdin.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success(), "{args:?}");
    };
    setup(&["org", "create", "acme"], "");
    setup(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "openai",
            "--name",
            "p",
        ],
        "sk-bench-0123456789abcdefWXYZ",
    );
    setup(
        &[
            "cred",
            "add",
            "--org",
            "acme",
            "--provider",
            "anthropic",
            "--name",
            "p",
        ],
        "sk-ant-bench-0123456789abcdef",
    );

    let true_bin = "true";
    let mut direct = Vec::with_capacity(runs);
    let mut via = Vec::with_capacity(runs);
    for _ in 0..runs {
        direct.push(time(Command::new(true_bin).stdout(Stdio::null())));
        via.push(time(
            Command::new(keyward)
                .args(["run", "--org", "acme", "--", true_bin])
                .env("KEYWARD_DATA_DIR", dir.path())
                .env("KEYWARD_MASTER_KEY", key.trim())
                .stdout(Stdio::null()),
        ));
    }
    direct.sort();
    via.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (name, v) in [("true", &direct), ("keyward run -- true", &via)] {
        println!(
            "{name:>22}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({runs} runs)",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.9)),
            ms(percentile(v, 0.99)),
        );
    }
    println!(
        "overhead: p50 {:.2} ms, p90 {:.2} ms (two providers resolved and audited per run)",
        ms(percentile(&via, 0.5)) - ms(percentile(&direct, 0.5)),
        ms(percentile(&via, 0.9)) - ms(percentile(&direct, 0.9)),
    );
}
