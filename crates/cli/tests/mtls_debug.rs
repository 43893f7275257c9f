//! `meshward mtls debug` against the bundled lab run by `meshward up`: the path that works is
//! walked to the end, the pod without sidecar breaks at the policy step, and a name that does
//! not exist breaks at resolution.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;

use support::{stderr, stdout};

/// A `meshward up --detach` of the lab in its own state directory, stopped when dropped.
struct Lab(tempfile::TempDir);

impl Lab {
    fn start(subnet: &str) -> Self {
        let lab = Self(tempfile::tempdir().unwrap());
        let example = format!("{}/../../examples/team-app", env!("CARGO_MANIFEST_DIR"));
        let out = lab.meshward(&["up", &example, "--detach", "--subnet", subnet]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        lab
    }

    /// `meshward ARGS` with this lab's state and context, as a user's shell would have them.
    fn meshward(&self, args: &[&str]) -> Output {
        support::run_up(self.0.path(), args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.meshward(&["down"]);
    }
}

/// The line of `step` in a debug report.
fn step<'a>(report: &'a str, mark: &str, step: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{mark} {step} ")))
        .unwrap_or_else(|| panic!("no `{mark} {step}` line in\n{report}"))
}

#[test]
fn debug_walks_the_path_and_says_where_it_breaks() {
    let lab = Lab::start("127.57");

    // The client with a sidecar reaches the service over mTLS: every step passes.
    for target in [
        "httpbin-svc",
        "httpbin-svc:8080",
        "httpbin-svc.team-app.svc.cluster.local:8080",
    ] {
        let out = lab.meshward(&["mtls", "debug", "team-app", "client", target]);
        let report = stdout(&out);
        assert!(out.status.success(), "{target}: {report}{}", stderr(&out));
        let passed = report.lines().filter(|l| l.starts_with("✓ ")).count();
        assert_eq!(passed, 6, "{report}");
        assert!(
            step(&report, "✓", "resolution").contains("Service team-app/httpbin-svc"),
            "{report}"
        );
        assert!(
            step(&report, "✓", "endpoints")
                .contains("httpbin.team-app 127.57.1.2:8080 spiffe://cluster.local/ns/team-app/sa/default with sidecar"),
            "{report}"
        );
        let policy = step(&report, "✓", "policy");
        assert!(policy.contains("client sends mTLS (auto-mTLS)"), "{report}");
        assert!(
            policy.contains("is STRICT (set by namespace team-app/mutual-tls-auth)"),
            "{report}"
        );
        assert!(
            step(&report, "✓", "certificates").contains("accepted by the current bundle"),
            "{report}"
        );
        assert!(
            step(&report, "✓", "live").contains("HTTP/1.1 200 OK"),
            "{report}"
        );
        assert!(report.contains("path works: "), "{report}");
    }

    // The pod without sidecar sends plaintext to a STRICT port: the policy step says so.
    let out = lab.meshward(&["mtls", "debug", "team-app", "naked", "httpbin-svc"]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert!(
        step(&report, "✓", "client").contains("has no sidecar"),
        "{report}"
    );
    step(&report, "✓", "endpoints");
    assert!(
        step(&report, "✗", "policy").contains("client sends plaintext (client has no sidecar)"),
        "{report}"
    );
    assert!(
        report.contains("breaks at: policy: client sends plaintext but server port is STRICT"),
        "{report}"
    );
    assert!(
        report.contains("hint: give naked.team-app a sidecar"),
        "{report}"
    );
    assert!(!report.contains("✓ certificates"), "{report}");

    // A name no Service has stops at resolution, with the names that would work.
    let out = lab.meshward(&["mtls", "debug", "team-app", "client", "nope:8080"]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert!(
        step(&report, "✗", "resolution").contains("nope.team-app.svc.cluster.local"),
        "{report}"
    );
    assert!(report.contains("breaks at: resolution"), "{report}");
    assert!(report.contains("httpbin-svc"), "{report}");

    // A client that does not exist stops at the first step.
    let out = lab.meshward(&["mtls", "debug", "team-app", "ghost", "httpbin-svc"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("breaks at: client: no workload ghost"),
        "{}",
        stdout(&out)
    );
}
