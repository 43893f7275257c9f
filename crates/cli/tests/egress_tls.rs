//! TLS origination to hosts outside the mesh (DestinationRule `SIMPLE` / `MUTUAL` on a
//! ServiceEntry host): the app sends plain HTTP through its sidecar, the sidecar opens TLS to a
//! real `openssl s_server` with the rule's files, and refuses a server that its CA or its
//! `subjectAltNames` do not vouch for before any request byte is sent.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
};

use support::{ControlPlane, Running, stderr, stdout, wait_for};

const NET: &str = "127.44";

/// Runs `openssl ARGS` (split at spaces) in `dir`, failing the test on error.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args}: {}", stderr(&out));
}

/// A CA `name` (`name-ca.pem`, `name-ca.key`) and, under it, a leaf `leaf` with `san`.
fn pki(dir: &Path, name: &str, leaf: &str, san: &str) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 {ec} -keyout {name}-ca.key -out {name}-ca.pem -days 2 -subj /CN={name}-ca"
        ),
    );
    openssl(
        dir,
        &format!("req {ec} -keyout {leaf}.key -out {leaf}.csr -subj /CN={leaf}"),
    );
    std::fs::write(
        dir.join(format!("{leaf}.ext")),
        format!("subjectAltName={san}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in {leaf}.csr -CA {name}-ca.pem -CAkey {name}-ca.key -CAcreateserial \
             -days 1 -extfile {leaf}.ext -out {leaf}.pem"
        ),
    );
}

/// `openssl s_server -www` on `addr` with the `server` certificate; `client_ca` makes it
/// require a client certificate from that CA.
fn s_server(dir: &Path, addr: &str, client_ca: Option<&str>) -> Running {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_server",
        "-accept",
        addr,
        "-cert",
        "server.pem",
        "-key",
        "server.key",
    ])
    .args(["-www", "-naccept", "100"])
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(ca) = client_ca {
        cmd.args(["-Verify", "1", "-CAfile", ca]);
    }
    let server = Running(cmd.spawn().unwrap());
    wait_for(|| TcpStream::connect(addr).is_ok(), "s_server");
    server
}

fn manifests(dir: &Path) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio-injection: enabled}}}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: app, namespace: shop, labels: {{app: app}}}}
spec: {{serviceAccount: app, address: "{NET}.1.1"}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments, namespace: shop}}
spec:
  hosts: [api.payments.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 8443}}, {{number: 81, name: http-wrong-name, protocol: HTTP, targetPort: 8443}}, {{number: 82, name: http-wrong-ca, protocol: HTTP, targetPort: 8443}}]
  endpoints: [{{address: "{NET}.9.1"}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: payments, namespace: shop}}
spec:
  host: api.payments.test
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: "{server_ca}"}}
    portLevelSettings:
    - port: {{number: 81}}
      tls: {{mode: SIMPLE, caCertificates: "{server_ca}", subjectAltNames: [other.payments.test]}}
    - port: {{number: 82}}
      tls: {{mode: SIMPLE, caCertificates: "{client_ca}"}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ledger, namespace: shop}}
spec:
  hosts: [ledger.bank.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 8444}}]
  endpoints: [{{address: localhost}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ledger, namespace: shop}}
spec:
  host: ledger.bank.test
  trafficPolicy:
    tls:
      mode: MUTUAL
      caCertificates: "{server_ca}"
      clientCertificate: "{client_cert}"
      privateKey: "{client_key}"
      sni: api.payments.test
"#,
        server_ca = file("server-ca.pem"),
        client_ca = file("client-ca.pem"),
        client_cert = file("shop-app.pem"),
        client_key = file("shop-app.key"),
    )
}

/// `curl` through the app's sidecar: HTTP status and body.
fn request(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(["-x", &format!("http://{NET}.1.1:15001"), url])
        .output()
        .unwrap();
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

#[test]
fn sidecar_originates_simple_and_mutual_tls_to_external_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d, "server", "server", "DNS:api.payments.test");
    pki(
        d,
        "client",
        "shop-app",
        "URI:spiffe://payments.test/client/shop",
    );
    let _simple = s_server(d, &format!("{NET}.9.1:8443"), None);
    let _mutual = s_server(d, "127.0.0.1:8444", Some("client-ca.pem"));

    let cp = ControlPlane::start(d, &format!("{NET}.0.1"), &[]);
    cp.apply(d, &manifests(d));
    let mut sidecar = cp.sidecar(
        "app.shop",
        "app",
        &format!("{NET}.1.1"),
        &format!("{NET}.2.1"),
    );
    let _sidecar = Running(sidecar.spawn().unwrap());
    wait_for(
        || {
            request("http://api.payments.test/")
                .1
                .contains("no client certificate available")
        },
        "SIMPLE origination through the sidecar",
    );

    // SIMPLE: the server is verified against caCertificates for the host name, TLS 1.2+.
    let (code, body) = request("http://api.payments.test/");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("TLSv1.3"), "{body}");

    // MUTUAL: the client certificate from the rule's files is presented; the endpoint is a
    // DNS name the sidecar resolves, and `sni` names the server certificate to expect.
    let (code, body) = request("http://ledger.bank.test/");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("Client certificate"), "{body}");
    assert!(body.contains("Subject: CN=shop-app"), "{body}");

    // subjectAltNames that the server's certificate does not carry: refused (502), and the
    // reason names the certificate.
    let (code, body) = request("http://api.payments.test:81/");
    assert_eq!(code, "502", "{body}");
    assert!(body.contains("certificate"), "{body}");

    // caCertificates that did not sign the server: refused.
    let (code, body) = request("http://api.payments.test:82/");
    assert_eq!(code, "502", "{body}");
    assert!(
        body.contains("UnknownIssuer") || body.contains("unknown"),
        "{body}"
    );

    // proxy-config names the origination and the names the server must carry.
    let out = cp.cli(&["proxy-config", "endpoints", "app.shop"]);
    let text = stdout(&out);
    let line = |cluster: &str| {
        text.lines()
            .find(|l| l.contains(cluster))
            .unwrap_or_default()
            .to_owned()
    };
    let simple = line("outbound|80||api.payments.test");
    assert!(
        simple.contains("SIMPLE") && simple.contains("api.payments.test"),
        "{text}{}",
        stderr(&out)
    );
    let mutual = line("outbound|80||ledger.bank.test");
    assert!(
        mutual.contains("MUTUAL") && mutual.contains("api.payments.test"),
        "{text}"
    );

    // A ServiceEntry host answers to its exact name only.
    let (code, _) = request("http://api:80/");
    assert_eq!(code, "502");
}
