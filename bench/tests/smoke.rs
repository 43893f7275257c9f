//! The proxy benchmark (`bench/mesh/run.sh`) in its shortest mode: every contender starts,
//! carries traffic, and appears in the table; and the traffic-policy benchmark
//! (`bench/mesh/policy.sh`, on 127.214.0.0/16) measures both of its meshes with every request
//! answered. No figure is checked: this machine's timings say nothing in a test.
//!
//! Needs haproxy, nginx (with its stream module), wrk, curl and openssl (`.ci/run` installs
//! them). The harness runs its servers on 127.212.0.0/16 only, bounds each with `timeout`, and
//! stops them by PID when it ends; this test stops the harness if it fails or hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a failed unwrap is a failed test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The whole smoke run takes about half a minute; this bounds it on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// Stops the harness (SIGTERM, so that it stops its own processes) when dropped.
struct Harness(Child);

impl Drop for Harness {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end && matches!(self.0.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The `meshward` binary of this build profile. `cargo nextest run --workspace` builds it (the
/// CLI's own tests need it); when it is missing, it is built here.
fn meshward_binary(workspace: &Path) -> PathBuf {
    // This test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("meshward");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .current_dir(workspace)
            .args(["build", "--quiet", "-p", "meshward", "--bin", "meshward"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p meshward failed");
    }
    assert!(bin.exists(), "{} not found", bin.display());
    bin
}

#[test]
fn harness_prints_the_table_with_every_contender() {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = bench.parent().unwrap();
    let meshward = meshward_binary(workspace);
    let child = Command::new("bash")
        .arg(bench.join("mesh/run.sh"))
        .args(["--smoke", "--no-install", "--net", "127.212"])
        .arg("--meshward")
        .arg(&meshward)
        .arg("--load")
        .arg(env!("CARGO_BIN_EXE_meshward-load"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bench/mesh/run.sh");
    let mut harness = Harness(child);
    let mut stdout = harness.0.stdout.take().unwrap();
    let mut stderr = harness.0.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = harness.0.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    // On a timeout the guard stops the harness, which closes the pipes.
    drop(harness);
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let status =
        status.unwrap_or_else(|| panic!("harness still running after {DEADLINE:?}\n{err}"));
    assert!(status.success(), "harness failed: {status}\n{err}\n{out}");

    assert!(
        out.contains("| metric | direct | haproxy | nginx | meshward |"),
        "no table with every contender:\n{out}\n{err}"
    );
    for row in [
        "latency p99 at 1 000 req/s",
        "latency p99.9 at 5 000 req/s",
        "max req/s",
        "new connections/s",
        "bulk download (MB/s)",
        "CPU of the pair",
        "RSS idle, server-side proxy",
        "RSS under load, client-side proxy",
        "RSS per idle connection, server-side proxy",
        "failed requests",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("| {row}")))
            .unwrap_or_else(|| panic!("no row `{row}`:\n{out}"));
        // Every contender has a figure in the latency and throughput rows.
        if !row.contains("RSS") && !row.contains("CPU") {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert!(
                cells[2..6]
                    .iter()
                    .all(|c| c.chars().next().is_some_and(|ch| ch.is_ascii_digit())),
                "a contender has no figure: {line}"
            );
        }
    }
    assert!(
        out.contains("| target | meshward | best peer | needed | verdict |"),
        "no targets table:\n{out}"
    );
    // No request may fail, even in the shortest run: the harness must measure working pairs.
    let errors = out
        .lines()
        .find(|l| l.starts_with("| failed requests"))
        .unwrap();
    assert!(
        errors
            .split('|')
            .skip(2)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .all(|c| c.parse::<f64>() == Ok(0.0)),
        "failed requests: {errors}"
    );
}

#[test]
fn policy_harness_measures_the_mesh_with_and_without_traffic_policy() {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = bench.parent().unwrap();
    let meshward = meshward_binary(workspace);
    let child = Command::new("bash")
        .arg(bench.join("mesh/policy.sh"))
        .args(["--seconds", "1", "--connections", "4", "--net", "127.214"])
        .arg("--meshward")
        .arg(&meshward)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bench/mesh/policy.sh");
    let mut harness = Harness(child);
    let mut stdout = harness.0.stdout.take().unwrap();
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    let status = harness.0.wait().unwrap();
    assert!(status.success(), "policy.sh failed:\n{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| mesh"))
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    for row in rows {
        // Every request answered 2xx, with and without the policy.
        assert!(row.trim_end().ends_with("| 0 |"), "{row}");
    }
}
