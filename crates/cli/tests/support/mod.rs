//! Helpers for tests that drive the real `meshward` binary.

#![allow(dead_code, unreachable_pub)]

pub mod netns;

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The built binary.
pub fn meshward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
}

/// Runs `meshward ARGS` with the `meshward up` state directory and context file of `home`, as a
/// user's shell would have them.
pub fn run_up(home: &Path, args: &[&str]) -> Output {
    meshward()
        .args(args)
        .env("MESHWARD_STATE_DIR", home.join("up"))
        .env("MESHWARD_CONTEXT", home.join("context.json"))
        .output()
        .expect("run meshward")
}

/// Stops the mesh of `home` (`meshward down`) even when an assertion failed.
pub struct Down<'a>(pub &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = run_up(self.0, &["down"]);
    }
}

/// A process killed when dropped, so a failing test leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A control plane on `ip` (a loopback address of the test's own), with its data directory and
/// context file in `dir`.
pub struct ControlPlane {
    pub process: Running,
    pub context: PathBuf,
    pub data_dir: PathBuf,
    pub grpc: String,
}

impl ControlPlane {
    pub fn start(dir: &Path, ip: &str, extra: &[&str]) -> Self {
        let context = dir.join("context.json");
        let data_dir = dir.join("data");
        let grpc = format!("{ip}:15012");
        let child = meshward()
            .args(["control-plane", "--data-dir"])
            .arg(&data_dir)
            .args(["--grpc-addr", &grpc, "--http-addr", &format!("{ip}:15014")])
            .args(extra)
            .env("MESHWARD_CONTEXT", &context)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start control plane");
        let process = Running(child);
        wait_for(
            || TcpStream::connect(&grpc).is_ok() && context.exists(),
            "control plane",
        );
        Self {
            process,
            context,
            data_dir,
            grpc,
        }
    }

    /// Runs `meshward ARGS` against this control plane.
    pub fn cli(&self, args: &[&str]) -> Output {
        meshward()
            .args(args)
            .env("MESHWARD_CONTEXT", &self.context)
            .output()
            .expect("run meshward")
    }

    /// Writes `yaml` to `dir/mesh.yaml` and applies it; a refusal fails the test.
    pub fn apply(&self, dir: &Path, yaml: &str) {
        let file = dir.join("mesh.yaml");
        std::fs::write(&file, yaml).expect("write the manifest");
        let out = self.cli(&["apply", "-f", &file.to_string_lossy()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// A fresh join token for `namespace/account`, valid for `ttl`.
    pub fn token(&self, namespace: &str, account: &str, ttl: &str) -> String {
        let out = self.cli(&[
            "token",
            "create",
            "-n",
            namespace,
            "--service-account",
            account,
            "--ttl",
            ttl,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    }

    /// `meshward proxy` for `workload` (`name.namespace`) at `address`, its app at
    /// `app_address`, enrolled here with a fresh join token for `account`; stdout discarded.
    pub fn sidecar(
        &self,
        workload: &str,
        account: &str,
        address: &str,
        app_address: &str,
    ) -> Command {
        let namespace = workload.split_once('.').map_or("default", |(_, ns)| ns);
        let token = self.token(namespace, account, "5m");
        let mut command = meshward();
        command
            .args(["proxy", "--workload", workload])
            .args(["--address", address, "--app-address", app_address])
            .args(["--control-plane", &self.grpc, "--control-plane-root"])
            .arg(self.data_dir.join("admin/root-cert.pem"))
            .env("MESHWARD_JOIN_TOKEN", token)
            .stdout(Stdio::null());
        command
    }
}

/// Polls `ready` every 50 ms for up to 30 s.
pub fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `meshward ARGS` offline in `tests/fixtures/`, so fixture paths print relative.
pub fn in_fixtures(args: &[&str]) -> Output {
    meshward()
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .output()
        .expect("run meshward")
}

/// A plain HTTP GET to `addr` (one connection, closed after): the head and the body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `series` (exact name and labels) in a Prometheus scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
