//! Network namespaces for tests that need real separate hosts: created with a unique name
//! (`mw-<pid>-<tag>`, so leftovers of a killed run are recognisable) and deleted when dropped,
//! also when the test fails.

use std::path::Path;
use std::process::{Command, Output};

/// Whether namespace tests can run here: root, with `ip` and the iptables tools. Prints why
/// not (the test then passes as skipped).
pub fn can_run(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    });
    if !root {
        eprintln!("skipping {test}: network namespaces and iptables need root");
        return false;
    }
    for tool in ["ip", "iptables-save", "iptables-restore"] {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| Path::new(&dir).join(tool).is_file())
        });
        if !found {
            eprintln!("skipping {test}: `{tool}` is not installed (Debian: iproute2, iptables)");
            return false;
        }
    }
    reap_stale();
    true
}

/// Deletes the `mw-<pid>-…` namespaces whose test process is gone (a killed run).
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("mw-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A network namespace with `lo` up, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("mw-{}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.run("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME PROGRAM …`, to configure or spawn.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` in the namespace and returns what it printed.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs `program args` in the namespace; panics when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.output(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip args` in this namespace; panics when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
