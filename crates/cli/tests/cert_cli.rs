//! `meshward ca init` and `meshward cert inspect|verify|sign`, driving the built binary.

// Shared test functions sit outside `#[test]` fns: a panic there is a test failure, as intended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";

fn meshward(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

fn p256_csr(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            "/CN=ignored",
            "-out",
            &format!("{name}.csr"),
        ],
    );
}

#[test]
fn init_sign_inspect_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let init = ok(meshward(
        &["ca", "init", "--dir", "ca", "--intermediate"],
        dir,
    ));
    assert!(init.contains("root fingerprint:   SHA256 "), "{init}");
    assert!(init.contains("root expires:"), "{init}");
    assert!(init.contains("trust domain:       cluster.local"), "{init}");

    p256_csr(dir, "sleep");
    ok(meshward(
        &[
            "cert",
            "sign",
            "--ca-dir",
            "ca",
            "--csr",
            "sleep.csr",
            "--identity",
            ID,
            "--ttl",
            "12h",
            "--out",
            "sleep.pem",
        ],
        dir,
    ));

    let json = ok(meshward(
        &["cert", "inspect", "-o", "json", "sleep.pem"],
        dir,
    ));
    let certs: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        certs.as_array().unwrap().len(),
        3,
        "leaf, intermediate, root"
    );
    assert_eq!(certs[0]["spiffe_id"], ID);
    assert_eq!(certs[0]["is_ca"], false);
    assert_eq!(certs[0]["key_type"], "ECDSA P-256");
    assert_eq!(
        certs[0]["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    let left = certs[0]["seconds_left"].as_i64().unwrap();
    assert!((11 * 3600..=12 * 3600).contains(&left), "{left}");
    assert_eq!(certs[2]["is_ca"], true);

    let text = ok(meshward(&["cert", "inspect", "sleep.pem"], dir));
    assert!(text.contains(&format!("spiffe id:    {ID}")), "{text}");
    assert!(text.contains("left)"), "{text}");

    for side in ["client", "server"] {
        let out = ok(meshward(
            &[
                "cert",
                "verify",
                "--bundle",
                "ca/root-cert.pem",
                "--as",
                side,
                "sleep.pem",
            ],
            dir,
        ));
        assert_eq!(out.trim(), format!("accepted: {ID}"));
    }
}

/// Runs `args`, expects exit code 1 and `needle` in the output (standard output or error).
fn fails_with(dir: &Path, args: &[&str], needle: &str) {
    let out = meshward(args, dir);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
    assert!(text.contains(needle), "{args:?}: {text}");
}

#[test]
fn verify_rejects_and_names_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(meshward(&["ca", "init", "--dir", "a"], dir));
    ok(meshward(&["ca", "init", "--dir", "b"], dir));
    p256_csr(dir, "x");
    let sign = [
        "cert",
        "sign",
        "--ca-dir",
        "a",
        "--csr",
        "x.csr",
        "--identity",
        ID,
        "--out",
        "x.pem",
    ];
    ok(meshward(&sign, dir));

    let verify = |bundle: &str, extra: &[&str], chain: &str, needle: &str| {
        let mut args = vec!["cert", "verify", "--bundle", bundle];
        args.extend_from_slice(extra);
        args.push(chain);
        fails_with(dir, &args, needle);
    };
    verify(
        "b/root-cert.pem",
        &[],
        "x.pem",
        "rejected: the chain does not lead to a root",
    );
    verify(
        "a/root-cert.pem",
        &["--trust-domain", "other.local"],
        "x.pem",
        "`cluster.local` is not trusted",
    );
    // A CA certificate (which names its trust domain) is not a leaf SVID.
    verify(
        "a/root-cert.pem",
        &[],
        "a/ca-cert.pem",
        "rejected: a leaf SVID must not be a CA",
    );
}

#[test]
fn bad_input_names_the_file_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(meshward(&["ca", "init", "--dir", "ca"], dir));
    p256_csr(dir, "ok");
    fs::write(
        dir.join("bad.csr"),
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let sign = |csr: &str, ttl: &str, needle: &str| {
        let args = [
            "cert",
            "sign",
            "--ca-dir",
            "ca",
            "--csr",
            csr,
            "--identity",
            ID,
            "--ttl",
            ttl,
            "--out",
            "out.pem",
        ];
        fails_with(dir, &args, needle);
        assert!(!dir.join("out.pem").exists());
    };
    sign("bad.csr", "24h", "bad.csr: not signed");
    sign("ok.csr", "365d", "exceeds the maximum");
    sign("missing.csr", "24h", "cannot read missing.csr");

    fails_with(
        dir,
        &["ca", "init", "--dir", "ca"],
        "already exists and is not empty",
    );
    fs::write(dir.join("garbage.pem"), "hello").unwrap();
    fails_with(
        dir,
        &["cert", "inspect", "garbage.pem"],
        "garbage.pem: no PEM certificate found",
    );
}

#[test]
fn adopts_a_plugin_ca_and_refuses_a_mismatched_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // An Istio-style plug-in directory: the self-signed layout with an empty cert-chain.pem.
    let plugin = dir.join("cacerts");
    fs::create_dir(&plugin).unwrap();
    openssl(
        &plugin,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
            "-days",
            "365",
            "-subj",
            "/O=Istio/CN=Root CA",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    fs::copy(plugin.join("ca-cert.pem"), plugin.join("root-cert.pem")).unwrap();
    fs::write(plugin.join("cert-chain.pem"), "").unwrap();
    let out = ok(meshward(
        &["ca", "init", "--dir", "ca", "--plugin-certs", "cacerts"],
        dir,
    ));
    assert!(
        out.contains("root subject:       O=Istio, CN=Root CA"),
        "{out}"
    );

    openssl(
        &plugin,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca-key.pem",
        ],
    );
    fails_with(
        dir,
        &["ca", "init", "--dir", "ca2", "--plugin-certs", "cacerts"],
        "ca-key.pem: the key does not match",
    );
    assert!(!dir.join("ca2").exists());
}
