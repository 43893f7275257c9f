//! `meshward iptables` on a real `nat` table, in a fresh network namespace of its own: install,
//! check, install again (nothing changes), install another configuration (replaced in one
//! transaction), remove, and the table is back to empty. Skipped, saying why, when not root or
//! without `ip`/iptables.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod support;

use meshward_local::netns::{Netns, owned_name};
use support::netns::can_run;
use support::{meshward, stderr, stdout};

/// Istio's sidecar flags.
const ISTIO: [&str; 10] = [
    "-p", "15001", "-z", "15006", "-u", "1337", "-i", "*", "-b", "*",
];

fn nat(ns: &Netns) -> String {
    ns.run("iptables-save", &["-t", "nat"]).unwrap()
}

/// The `nat` table without comments and counters: what a fresh namespace has.
fn rules_only(saved: &str) -> Vec<String> {
    saved
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect()
}

fn iptables(ns: &Netns, args: &[&str]) -> std::process::Output {
    ns.command(env!("CARGO_BIN_EXE_meshward"))
        .arg("iptables")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn install_check_reinstall_remove() {
    if !can_run("install_check_reinstall_remove") {
        return;
    }
    let ns = Netns::create(&owned_name("ipt")).unwrap();
    let empty = rules_only(&nat(&ns));
    let with = |extra: &[&str]| -> Vec<String> {
        ISTIO.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let args = with(&["-d", "15090,15021,15020"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // (action, flags, exit success, what stderr or stdout says)
    let steps: Vec<(&str, Vec<&str>, bool, &str)> = vec![
        (
            "check",
            args.clone(),
            false,
            "chain ISTIO_OUTPUT is missing",
        ),
        ("install", args.clone(), true, "capture installed"),
        (
            "check",
            args.clone(),
            true,
            "capture installed as configured",
        ),
        (
            "install",
            args.clone(),
            true,
            "already installed: unchanged",
        ),
        (
            "install",
            vec!["-p", "16001", "-b", "8080"],
            true,
            "capture installed",
        ),
        ("check", args.clone(), false, "--to-ports 16001"),
        ("install", args.clone(), true, "capture installed"),
        ("check", args.clone(), true, "as configured"),
    ];
    for (action, flags, success, says) in steps {
        let mut full = vec![action];
        full.extend(&flags);
        let out = iptables(&ns, &full);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.success(), success, "{full:?}: {text}");
        assert!(text.contains(says), "{full:?}: {text}");
    }

    // Installed exactly once, whatever the reinstalls before.
    let saved = nat(&ns);
    for line in [
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ] {
        assert_eq!(
            saved.lines().filter(|l| *l == line).count(),
            1,
            "{line}\n{saved}"
        );
    }

    // A rule of somebody else's survives install and remove.
    let foreign = |op: &str| {
        let rule = format!("-t nat {op} OUTPUT -d 192.0.2.1/32 -j RETURN");
        ns.run("iptables", &rule.split(' ').collect::<Vec<_>>())
            .unwrap();
    };
    foreign("-A");
    let out = iptables(&ns, &["remove"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = rules_only(&nat(&ns));
    let mut expected = empty.clone();
    let at = expected.iter().position(|l| l == "COMMIT").unwrap();
    expected.insert(at, "-A OUTPUT -d 192.0.2.1/32 -j RETURN".to_owned());
    assert_eq!(after, expected);
    foreign("-D");
    assert_eq!(rules_only(&nat(&ns)), empty);

    let out = iptables(&ns, &["remove"]);
    assert!(
        stderr(&out).contains("nothing to remove"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dry_run_prints_the_transaction_and_bad_input_is_named() {
    let out = meshward()
        .args([
            "iptables",
            "--dry-run",
            "-d",
            "15090,15021,15020",
            "-x",
            "10.96.0.0/12",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(
        script.starts_with("*nat\n:ISTIO_INBOUND - [0:0]\n"),
        "{script}"
    );
    for line in [
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
        "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ] {
        assert!(script.contains(line), "{line}: {script}");
    }
    assert!(script.ends_with("COMMIT\n"), "{script}");

    // (flags, what the error names)
    let cases: [(&[&str], &str); 4] = [
        (&["-b", "80,http"], "--inbound-ports `80,http`"),
        (&["-i", "fd00::/8"], "--outbound-ip-ranges"),
        (&["-m", "TPROXY"], "only REDIRECT"),
        (&["-u", "istio-proxy"], "--proxy-uid"),
    ];
    for (flags, says) in cases {
        let out = meshward().arg("iptables").args(flags).output().unwrap();
        assert!(!out.status.success(), "{flags:?}");
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
    }

    // Without permission (another user): a clear error, nothing changed.
    if can_run("capture without permission") {
        let ns = Netns::create(&owned_name("noperm")).unwrap();
        let out = ns
            .command("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_meshward"))
            .arg("iptables")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("`iptables-save` failed, nothing was changed")
                && err.contains("ermission"),
            "{err}"
        );
        assert!(!nat(&ns).contains("ISTIO"));
    }

    // Without the iptables tools: a clear error, nothing attempted.
    let out = meshward()
        .arg("iptables")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("`iptables-save` not found: install iptables"),
        "{}",
        stderr(&out)
    );
}
