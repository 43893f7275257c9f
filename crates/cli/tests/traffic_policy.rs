//! DestinationRule traffic policy end to end, with a control plane, a client sidecar and a
//! service of two endpoints: outlier detection ejects the failing endpoint and lets it back,
//! a full connection pool answers 503 with Envoy's `UO` flag, and a consistent hash keeps a
//! user on one endpoint.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use support::{ControlPlane, Running, meshward, stderr, stdout, wait_for};

const NET: &str = "127.47";

fn manifests() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: t, labels: {{istio-injection: enabled}}}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: cli, namespace: t, labels: {{app: cli}}}}
spec: {{serviceAccount: cli, address: "{NET}.1.1"}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: web-a, namespace: t, labels: {{app: web}}}}
spec: {{serviceAccount: web, address: "{NET}.1.2", ports: [{{port: 8080, protocol: HTTP}}]}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: web-b, namespace: t, labels: {{app: web}}}}
spec: {{serviceAccount: web, address: "{NET}.1.3", ports: [{{port: 8080, protocol: HTTP}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: t}}
spec: {{selector: {{app: web}}, ports: [{{port: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: sticky, namespace: t}}
spec: {{selector: {{app: web}}, ports: [{{port: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: small, namespace: t}}
spec: {{selector: {{app: web}}, ports: [{{port: 8080}}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: t}}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 50}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: sticky, namespace: t}}
spec:
  host: sticky
  trafficPolicy:
    loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: by-query, namespace: t}}
spec: {{selector: {{app: web}}, ports: [{{port: 8080}}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: by-query, namespace: t}}
spec:
  host: by-query
  trafficPolicy:
    loadBalancer: {{consistentHash: {{httpQueryParameterName: user}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: quiet, namespace: t}}
spec: {{selector: {{app: web}}, ports: [{{port: 8080}}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: quiet, namespace: t}}
spec:
  host: quiet
  trafficPolicy:
    connectionPool:
      tcp: {{idleTimeout: 1s}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: small, namespace: t}}
spec:
  host: small
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 1, connectTimeout: 300ms}}
      http: {{http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}
"#
    )
}

/// The demo httpbin of endpoint `{net}.2.{host}`, telling who it is in `/env`.
fn app(net: &str, host: &str) -> Running {
    Running(
        meshward()
            .args([
                "demo",
                "httpbin",
                "--listen",
                &format!("{net}.2.{host}:8080"),
            ])
            .env("POD_NAME", format!("web-{host}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The sidecar of workload `name.t` (service account `account`) at `{net}.1.{host}`.
fn sidecar(cp: &ControlPlane, net: &str, name: &str, account: &str, host: &str) -> Running {
    let mut command = cp.sidecar(
        &format!("{name}.t"),
        account,
        &format!("{net}.1.{host}"),
        &format!("{net}.2.{host}"),
    );
    Running(command.spawn().unwrap())
}

/// `curl` through the client's sidecar: status and body.
fn get(url: &str, headers: &[&str]) -> (String, String) {
    curl(&["-x", &format!("http://{NET}.1.1:15001"), url], headers)
}

/// `curl` straight to `url` (a sidecar's own port).
fn direct(url: &str) -> (String, String) {
    curl(&[url], &[])
}

/// A CONNECT tunnel to `target` through the forward proxy at `proxy`, its answer read.
fn connect(proxy: &str, target: &str) -> TcpStream {
    let mut tunnel = TcpStream::connect(proxy).unwrap();
    tunnel
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        tunnel,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut tunnel);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel
}

/// An HTTP answer's head, up to and with the blank line, read a byte at a time.
fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `curl -d` a body through the sidecar at `proxy`: status and answer.
fn post(proxy: &str, url: &str, body: &str) -> (String, String) {
    curl(&["-x", proxy, "--data-binary", body, url], &[])
}

fn curl(args: &[&str], headers: &[&str]) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args);
    for header in headers {
        cmd.args(["-H", header]);
    }
    let text = stdout(&cmd.output().unwrap());
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

/// Which endpoint answered `/env` (`web-2` or `web-3`), or the status when none did.
fn who(url: &str, headers: &[&str]) -> String {
    let (code, body) = get(url, headers);
    ["web-2", "web-3"]
        .into_iter()
        .find(|pod| body.contains(pod))
        .map_or(code, str::to_owned)
}

#[test]
fn destination_rule_traffic_policy_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &format!("{NET}.0.1"), &[]);
    cp.apply(dir.path(), &manifests());
    // Endpoint 3's app is down: its sidecar answers 503.
    let _a = app(NET, "2");
    let _sidecars = [
        sidecar(&cp, NET, "cli", "cli", "1"),
        sidecar(&cp, NET, "web-a", "web", "2"),
        sidecar(&cp, NET, "web-b", "web", "3"),
    ];
    for host in ["1", "2", "3"] {
        wait_for(
            || direct(&format!("http://{NET}.1.{host}:15021/healthz/ready")).0 == "200",
            "sidecar ready",
        );
    }

    // No VirtualService: Istio's default retry policy (two retries on 503, to another
    // endpoint) hides endpoint 3's 503s, for requests with a body too, while outlier detection
    // counts them: two in a row eject endpoint 3.
    let body = "x".repeat(3000);
    for _ in 0..6 {
        let (code, answer) = post(
            &format!("http://{NET}.1.1:15001"),
            "http://web:8080/post",
            &body,
        );
        assert_eq!(code, "200", "{answer}");
        assert!(
            answer.contains(&body),
            "the body reached the app whole: {answer}"
        );
    }
    wait_for(
        || (0..6).all(|_| who("http://web:8080/env", &[]) == "web-2"),
        "the failing endpoint to be ejected",
    );
    let metrics = direct(&format!("http://{NET}.1.1:15090/stats/prometheus")).1;
    assert!(
        metrics.contains("event=\"ejection\"")
            && metrics.contains("event=\"retry\"")
            && metrics.contains("outbound|8080||web.t.svc.cluster.local"),
        "{metrics}"
    );
    // proxy-config shows the policy and the ejection.
    let out = cp.cli(&["proxy-config", "endpoints", "cli.t"]);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.contains(&format!("{NET}.1.3:8080"))
            && l.contains("FAILED")
            && l.contains("outbound|8080||web.t")),
        "{text}{}",
        stderr(&out)
    );
    let out = cp.cli(&["proxy-config", "clusters", "cli.t"]);
    let text = stdout(&out);
    assert!(
        text.contains("maxConnections=1 http1MaxPendingRequests=1")
            && text.contains("outlier(5xx=2,gateway=0)")
            && text.contains("HASH(x-user)")
            && text.contains("HASH(?user)"),
        "{text}{}",
        stderr(&out)
    );
    // Its app comes up; when its ejection ends, it gets traffic again.
    let _b = app(NET, "3");
    wait_for(
        || who("http://web:8080/env", &[]) == "web-3",
        "the ejected endpoint to come back",
    );

    // Consistent hash on a header: a user stays on one endpoint.
    for user in ["alice", "bob", "carol", "dave"] {
        let header = format!("x-user: {user}");
        let first = who("http://sticky:8080/env", &[&header]);
        assert!(first.starts_with("web-"), "{first}");
        for _ in 0..5 {
            assert_eq!(who("http://sticky:8080/env", &[&header]), first, "{user}");
        }
        // The same on a query parameter.
        let url = format!("http://by-query:8080/env?user={user}");
        let first = who(&url, &[]);
        assert!(first.starts_with("web-"), "{first}");
        for _ in 0..5 {
            assert_eq!(who(&url, &[]), first, "{user}");
        }
    }

    // `connectionPool.tcp.idleTimeout`: a tunnel that carries a request every 300 ms lives
    // past the 1 s idle timeout; once silent, the sidecar closes it.
    let mut tunnel = connect(&format!("{NET}.1.1:15001"), "quiet:8080");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        write!(
            tunnel,
            "GET /get HTTP/1.1\r\nHost: quiet\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut tunnel);
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "the busy tunnel is open: {head}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0u8; length];
        tunnel.read_exact(&mut body).unwrap();
    }
    tunnel
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Silence: the next read ends at the sidecar's close (a hang would time out and fail).
    let mut rest = Vec::new();
    tunnel.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let out = cp.cli(&["proxy-config", "clusters", "cli.t"]);
    assert!(
        stdout(&out).contains("tcpIdleTimeout=1000ms"),
        "{}",
        stdout(&out)
    );

    // Connection pool: a tunnel holds the one connection `maxConnections: 1` allows...
    let tunnel = connect(&format!("{NET}.1.1:15001"), "small:8080");
    // ...so a second tunnel overflows at once, and a request waits in the pending queue until
    // the connect timeout, then overflows too: 503 with Envoy's UO.
    let (code, body) = get("http://small:8080/get", &[]);
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("overflow"), "{body}");
    let out = Command::new("curl")
        .args([
            "-s",
            "-p",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
        ])
        .args([
            "-x",
            &format!("http://{NET}.1.1:15001"),
            "http://small:8080/get",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "503", "CONNECT over maxConnections");
    let metrics = direct(&format!("http://{NET}.1.1:15090/stats/prometheus")).1;
    assert!(metrics.contains("response_flags=\"UO\""), "{metrics}");
    // Once the tunnel closes, requests flow again (each on its own connection:
    // maxRequestsPerConnection 1).
    drop(tunnel);
    wait_for(
        || get("http://small:8080/get", &[]).0 == "200",
        "the pool to free up",
    );
    for _ in 0..3 {
        assert_eq!(get("http://small:8080/get", &[]).0, "200");
    }
}

const VS_NET: &str = "127.49";

fn vs_manifests() -> String {
    let workload = |name: &str, host: &str, labels: &str| {
        format!(
            "---\napiVersion: meshward.io/v1alpha1\nkind: Workload\nmetadata: {{name: {name}, namespace: t, labels: {{{labels}}}}}\nspec: {{serviceAccount: {name}, address: \"{VS_NET}.1.{host}\", ports: [{{port: 8080, protocol: HTTP}}]}}\n"
        )
    };
    let service = |name: &str, selector: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: t}}\nspec: {{selector: {{{selector}}}, ports: [{{port: 8080}}]}}\n"
        )
    };
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: t, labels: {istio-injection: enabled}}\n".to_owned(),
        format!("---\napiVersion: meshward.io/v1alpha1\nkind: Workload\nmetadata: {{name: cli, namespace: t, labels: {{app: cli}}}}\nspec: {{serviceAccount: cli, address: \"{VS_NET}.1.1\"}}\n"),
        workload("web-v1", "2", "app: web, version: v1, flaky: 'yes'"),
        workload("web-v2", "3", "app: web, version: v2"),
        workload("down", "4", "flaky: 'yes'"),
        workload("slow", "5", "app: slow"),
        service("web", "app: web"),
        service("flaky", "flaky: 'yes'"),
        service("slow", "app: slow"),
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: t}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: t}
spec:
  hosts: [web]
  http:
  - match: [{headers: {x-canary: {exact: "yes"}}}]
    route: [{destination: {host: web, subset: v2}}]
  - match: [{uri: {exact: /teapot}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - match: [{queryParams: {canary: {exact: "1"}}}]
    route:
    - destination: {host: web, subset: v2}
      headers: {request: {set: {x-canary: "yes"}}, response: {add: {x-subset: v2}}}
  - match: [{sourceNamespace: elsewhere, uri: {prefix: /env}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /get, redirectCode: 302}
  - match: [{uri: {exact: /maintenance}}]
    directResponse: {status: 503, body: {string: "down for maintenance"}}
    headers: {response: {set: {retry-after: "120"}}}
  - match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /anything/}
    headers:
      request: {set: {x-team: blue}, remove: [x-drop]}
      response: {set: {x-served-by: mesh}}
    route: [{destination: {host: web, subset: v1}}]
  - route:
    - {destination: {host: web, subset: v1}, weight: 80}
    - {destination: {host: web, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: t}
spec:
  hosts: [flaky]
  http:
  - match: [{uri: {prefix: /once}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 0}
  - route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: 5xx}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slow, namespace: t}
spec:
  hosts: [slow]
  http:
  - route: [{destination: {host: slow}}]
    timeout: 300ms
"#
        .to_owned(),
    ]
    .concat()
}

/// The whole answer, head and body, in lower case, through the client's sidecar.
fn vs_answer(url: &str, headers: &[&str]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-D", "-"])
        .args(["-x", &format!("http://{VS_NET}.1.1:15001")]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    stdout(&cmd.arg(url).output().unwrap()).to_ascii_lowercase()
}

fn vs_get(url: &str, headers: &[&str]) -> (String, String) {
    curl(&["-x", &format!("http://{VS_NET}.1.1:15001"), url], headers)
}

#[test]
fn virtual_service_routes_split_retry_time_out_and_inject_faults() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &format!("{VS_NET}.0.1"), &[]);
    cp.apply(dir.path(), &vs_manifests());
    let _apps = [app(VS_NET, "2"), app(VS_NET, "3")];
    // The slow app accepts and never answers.
    let _slow = Running(
        Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{VS_NET}.2.5',8080))\ns.listen()\nheld=[]\nwhile True:\n    c,_=s.accept()\n    held.append(c)\n"
                ),
            ])
            .spawn()
            .unwrap(),
    );
    let _sidecars: Vec<Running> = [
        ("cli", "1"),
        ("web-v1", "2"),
        ("web-v2", "3"),
        ("down", "4"),
        ("slow", "5"),
    ]
    .into_iter()
    .map(|(name, host)| sidecar(&cp, VS_NET, name, name, host))
    .collect();
    for host in ["1", "2", "3", "4", "5"] {
        wait_for(
            || direct(&format!("http://{VS_NET}.1.{host}:15021/healthz/ready")).0 == "200",
            "sidecar ready",
        );
    }
    let who = |headers: &[&str]| {
        let (code, body) = vs_get("http://web:8080/env", headers);
        ["web-2", "web-3"]
            .into_iter()
            .find(|pod| body.contains(pod))
            .map_or(code, str::to_owned)
    };

    // A header match sends the canary to subset v2, always.
    for _ in 0..10 {
        assert_eq!(who(&["x-canary: yes"]), "web-3");
    }
    // A query parameter match sends the canary to v2; a route for clients of another
    // namespace (`sourceNamespace`) never applies to this one.
    for _ in 0..10 {
        let (code, body) = vs_get("http://web:8080/env?canary=1", &[]);
        assert!(body.contains("web-3"), "{code} {body}");
    }
    // The drawn destination's headers: its request and response changes.
    let answer = vs_answer("http://web:8080/anything?canary=1", &[]);
    assert!(answer.contains("x-subset: v2"), "{answer}");
    assert!(answer.contains(r#""x-canary": "yes""#), "{answer}");
    // The default route splits 80/20 between the subsets.
    let total = 200;
    let v2 = (0..total).filter(|_| who(&[]) == "web-3").count();
    let share = v2 as f64 / f64::from(total);
    assert!(
        (0.1..=0.3).contains(&share),
        "v2 got {v2} of {total} requests"
    );
    // rewrite and headers: the app sees /anything/… with the route's request headers, the
    // client the route's response header.
    let answer = vs_answer(
        "http://web:8080/api/items?a=1",
        &["x-drop: secret", "x-team: red"],
    );
    assert!(answer.contains("x-served-by: mesh"), "{answer}");
    assert!(
        answer.contains(r#""url": "/anything/items?a=1""#),
        "{answer}"
    );
    assert!(answer.contains(r#""x-team": "blue""#), "{answer}");
    assert!(!answer.contains("secret"), "{answer}");

    // redirect and directResponse: the sidecar answers itself.
    let answer = vs_answer("http://web:8080/old?a=1", &[]);
    assert!(answer.starts_with("http/1.1 302"), "{answer}");
    assert!(
        answer.contains("location: http://web:8080/get?a=1"),
        "{answer}"
    );
    let answer = vs_answer("http://web:8080/maintenance", &[]);
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 120"), "{answer}");
    assert!(answer.ends_with("down for maintenance"), "{answer}");

    // Fault injection: an abort answers without reaching the app.
    assert_eq!(vs_get("http://web:8080/teapot", &[]).0, "418");

    // Retries on 5xx: the endpoint whose app is down never shows through.
    for _ in 0..20 {
        let (code, body) = vs_get("http://flaky:8080/get", &[]);
        assert_eq!(code, "200", "{body}");
    }
    // A request with a body is retried with its body.
    let body = "y".repeat(5000);
    for _ in 0..6 {
        let proxy = format!("http://{VS_NET}.1.1:15001");
        let (code, answer) = post(&proxy, "http://flaky:8080/post", &body);
        assert_eq!(code, "200", "{answer}");
        assert!(
            answer.contains(&body),
            "the body reached the app whole: {answer}"
        );
    }
    let metrics = direct(&format!("http://{VS_NET}.1.1:15090/stats/prometheus")).1;
    assert!(metrics.contains("event=\"retry\""), "{metrics}");
    // `attempts: 0` turns retries off: the endpoint whose app is down shows through.
    let codes: Vec<String> = (0..6)
        .map(|_| vs_get("http://flaky:8080/once", &[]).0)
        .collect();
    assert!(codes.iter().any(|c| c == "503"), "{codes:?}");

    // proxy-config routes shows the VirtualService's routes as the sidecar holds them.
    let out = cp.cli(&["proxy-config", "routes", "cli.t"]);
    let text = stdout(&out);
    assert!(
        text.contains("header x-canary=exact:yes")
            && text.contains("web|v1 80, web|v2 20")
            && text.contains("fault abort 418")
            && text.contains("rewrite /anything/, request headers, response headers")
            && text.contains("redirect 302")
            && text.contains("direct response 503, response headers")
            && text.contains("retries 3")
            && text.contains("timeout 300ms")
            && text.contains("t/web"),
        "{text}{}",
        stderr(&out)
    );

    // A route timeout: 504 with Envoy's UT.
    let (code, body) = vs_get("http://slow:8080/get", &[]);
    assert_eq!(code, "504", "{body}");
    let metrics = direct(&format!("http://{VS_NET}.1.1:15090/stats/prometheus")).1;
    assert!(metrics.contains("response_flags=\"UT\""), "{metrics}");
}
