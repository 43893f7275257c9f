//! Workloads as real hosts: one Linux network namespace per workload, each with its own address
//! on a bridge, as pods on a node. The bridge lives in a namespace of its own (which is also
//! the "node" the control plane runs on), so nothing is added to the machine's own network:
//! no interface, no route, no address.
//!
//! Everything is named `mw-<pid>-<name>`, `<pid>` being the process that owns it, so what a
//! killed run left behind is recognisable and [`reap`] removes it. Every namespace is deleted
//! when its [`Netns`] is dropped, together with its `/etc/netns/<name>/` (the `hosts` file
//! `ip netns exec` mounts over `/etc/hosts`, so service names resolve without DNS).
//!
//! Addresses are in a private /24 (10.253.x.0/24 by default), not in 127.0.0.0/8: Linux treats
//! 127.0.0.0/8 as loopback on every interface (martian on a veth even with `route_localnet`,
//! and the local route covers the whole /8), so two namespaces cannot talk over loopback
//! addresses. The bridge has no uplink, so these addresses never leave the machine.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Prefix of every namespace this module creates.
pub const PREFIX: &str = "mw-";

/// Why a namespace could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// `ip` is not installed.
    #[error("`ip` not found: install iproute2")]
    Missing,
    /// A command failed (e.g. not root).
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
    /// A file could not be written or a command run.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn check(command: &mut Command) -> Result<Output, NetnsError> {
    let line = format!("{command:?}").replace('"', "");
    let out = command.output().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => NetnsError::Missing,
        _ => NetnsError::Io {
            what: line.clone(),
            source,
        },
    })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            command: line,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    check(Command::new("ip").args(args))
}

/// The name this process gives its namespace `name`.
pub fn owned_name(name: &str) -> String {
    format!("{PREFIX}{}-{name}", std::process::id())
}

/// The node's namespace of the `meshward up --netns` running as `pid`.
pub fn node_name(pid: u32) -> String {
    format!("{PREFIX}{pid}-br")
}

/// Moves the calling thread — the whole process when no other thread runs yet, as threads
/// started afterwards inherit it — into network namespace `name`.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let path = Path::new("/run/netns").join(name);
    let io = |source| NetnsError::Io {
        what: format!("entering {}", path.display()),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io(std::io::Error::from_raw_os_error(e as i32)))
}

/// The directory whose files `ip netns exec` mounts over `/etc` for namespace `name`.
fn etc_dir(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name)
}

/// One network namespace with `lo` up, deleted (with its `/etc/netns` files) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (use [`owned_name`]); an existing one of that name is replaced.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        if ip(&["netns", "list"])?
            .stdout
            .split(|b| *b == b'\n')
            .any(|line| line.split(|b| *b == b' ').next() == Some(name.as_bytes()))
        {
            delete(name);
        }
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.run("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROGRAM`: a command that runs inside.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside; its standard output.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let out = check(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes the namespace's own `/etc/hosts` (seen by every process started inside).
    pub fn set_hosts(&self, entries: &[(Ipv4Addr, Vec<String>)]) -> Result<(), NetnsError> {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (addr, names) in entries {
            text.push_str(&format!("{addr} {}\n", names.join(" ")));
        }
        let dir = etc_dir(&self.name);
        let io = |what: String| move |source| NetnsError::Io { what, source };
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let file = dir.join("hosts");
        std::fs::write(&file, text).map_err(io(format!("writing {}", file.display())))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Deletes namespace `name` and its `/etc/netns` files; what is already gone is fine.
fn delete(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let _ = std::fs::remove_dir_all(etc_dir(name));
}

/// Deletes every `mw-<pid>-…` namespace whose owner process is gone (a killed run), and every
/// one of `owner` when given (`meshward down` for a mesh whose process died). Returns the
/// names removed.
pub fn reap(owner: Option<u32>) -> Vec<String> {
    let Ok(out) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive || owner == Some(pid) {
            delete(name);
            removed.push(name.to_owned());
        }
    }
    removed
}

/// A bridge in a namespace of its own, and hosts attached to it by veth pairs, in one /24.
#[derive(Debug)]
pub struct Network {
    /// Dropped last: the hosts' veth peers live in it.
    bridge: Netns,
    subnet: [u8; 3],
    veths: usize,
}

impl Network {
    /// A bridge named `<owner-prefix>br` holding `br0` with the subnet's `.1`, which is also
    /// every host's default gateway (so a Service's virtual address is routable, as on a
    /// node, and captured before it leaves).
    pub fn create(subnet: [u8; 3]) -> Result<Self, NetnsError> {
        let bridge = Netns::create(&node_name(std::process::id()))?;
        bridge.run("ip", &["link", "add", "br0", "type", "bridge"])?;
        bridge.run("ip", &["link", "set", "br0", "up"])?;
        let gateway = format!("{}/24", Self::addr(subnet, 1));
        bridge.run("ip", &["addr", "add", &gateway, "dev", "br0"])?;
        Ok(Self {
            bridge,
            subnet,
            veths: 0,
        })
    }

    fn addr(subnet: [u8; 3], host: u8) -> Ipv4Addr {
        Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host)
    }

    /// The bridge's address: the gateway, where the control plane listens.
    pub fn gateway(&self) -> Ipv4Addr {
        Self::addr(self.subnet, 1)
    }

    /// Host `.n` of the subnet.
    pub fn host_addr(&self, n: u8) -> Ipv4Addr {
        Self::addr(self.subnet, n)
    }

    /// The bridge's namespace (the "node").
    pub fn bridge(&self) -> &Netns {
        &self.bridge
    }

    /// A new host namespace `<owner-prefix><name>` with `eth0` at `addr`/24 on the bridge.
    pub fn host(&mut self, name: &str, addr: Ipv4Addr) -> Result<Netns, NetnsError> {
        let ns = Netns::create(&owned_name(name))?;
        self.veths += 1;
        let veth = format!("v{}", self.veths);
        self.bridge.run(
            "ip",
            &[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ],
        )?;
        self.bridge
            .run("ip", &["link", "set", &veth, "master", "br0", "up"])?;
        ns.run("ip", &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.run("ip", &["link", "set", "eth0", "up"])?;
        let gateway = self.gateway().to_string();
        ns.run("ip", &["route", "add", "default", "via", &gateway])?;
        Ok(ns)
    }
}

/// The hosts of one `meshward up --netns`: the network and a namespace per workload, with
/// service names in each one's `/etc/hosts`, the capture installed where a sidecar runs and,
/// where none runs, kube-proxy's rewrite of Service addresses to an endpoint. Dropping it
/// deletes them all.
#[derive(Debug)]
pub struct Pods {
    /// Dropped first.
    pods: Vec<Netns>,
    network: Network,
}

impl Pods {
    /// Sets up every host of `plan`. `exe` is the `meshward` binary (it installs the capture).
    pub fn create(plan: &crate::Plan, exe: &Path) -> Result<Self, NetnsError> {
        let [a, b, c, _] = crate::plan::NETNS_SUBNET_NODE;
        let mut network = Network::create([a, b, c])?;
        let mut pods = Vec::new();
        for w in &plan.workloads {
            if w.netns.is_none() {
                continue;
            }
            let ns = network.host(&w.id(), w.address)?;
            ns.set_hosts(&hosts_entries(plan, &w.namespace))?;
            if w.sidecar {
                check(
                    ns.command(exe)
                        .args(["iptables", "-d", "15090,15021,15020", "-u", ""])
                        .args(["-g", &PROXY_ID.to_string()]),
                )?;
            } else {
                for rule in kube_proxy_rules(plan) {
                    ns.run("iptables", &rule.split(' ').collect::<Vec<_>>())?;
                }
            }
            pods.push(ns);
        }
        Ok(Self { pods, network })
    }

    /// Moves this process into the node's namespace (the bridge's), where the control plane
    /// listens on the gateway address. Call before any thread is started: threads started
    /// afterwards inherit it.
    pub fn enter_node(&self) -> Result<(), NetnsError> {
        enter(self.network.bridge().name())
    }

    /// How many workload namespaces there are.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

/// The gid sidecars run with in `--netns` mode, exempt from capture (Istio's 1337). Only the
/// gid: sidecars keep root's uid (`ip netns exec` needs it), and uid rules would let their
/// connections to their own pod address skip the inbound capture.
pub const PROXY_ID: u32 = 1337;

/// kube-proxy's rules for a namespace without a sidecar: each Service address and port
/// rewritten to one of its endpoints, picked at random with equal chances (`iptables -t nat`
/// arguments).
fn kube_proxy_rules(plan: &crate::Plan) -> Vec<String> {
    let mut rules = Vec::new();
    for service in &plan.services {
        for (port, endpoints) in &service.ports {
            for (i, endpoint) in endpoints.iter().enumerate() {
                let left = endpoints.len() - i;
                let pick = if left > 1 {
                    format!(
                        "-m statistic --mode random --probability {:.11} ",
                        1.0 / left as f64
                    )
                } else {
                    String::new()
                };
                rules.push(format!(
                    "-t nat -A OUTPUT -d {}/32 -p tcp -m tcp --dport {port} {pick}-j DNAT --to-destination {endpoint}",
                    service.address
                ));
            }
        }
    }
    rules
}

/// Every Service's names as a pod in `namespace` resolves them, Kubernetes DNS style.
fn hosts_entries(plan: &crate::Plan, namespace: &str) -> Vec<(Ipv4Addr, Vec<String>)> {
    plan.services
        .iter()
        .map(|s| {
            let mut names = vec![
                s.host.clone(),
                format!("{}.{}.svc", s.name, s.namespace),
                format!("{}.{}", s.name, s.namespace),
            ];
            if s.namespace == namespace {
                names.push(s.name.clone());
            }
            (s.address, names)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_proxy_spreads_over_every_endpoint() {
        let yaml = r#"
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: a, namespace: ns, labels: {app: web}}
spec: {serviceAccount: a, sidecar: false, ports: [{port: 8080}]}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: b, namespace: ns, labels: {app: web}}
spec: {serviceAccount: b, sidecar: false, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"#;
        let plan = crate::plan_in(&[("m.yaml".into(), yaml.into())], crate::Layout::Netns).unwrap();
        assert_eq!(
            kube_proxy_rules(&plan),
            [
                "-t nat -A OUTPUT -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.253.1.2:8080",
                "-t nat -A OUTPUT -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.253.1.3:8080",
            ]
        );
        let names = hosts_entries(&plan, "ns");
        assert_eq!(
            names[0].1,
            ["web.ns.svc.cluster.local", "web.ns.svc", "web.ns", "web"]
        );
        assert_eq!(hosts_entries(&plan, "other")[0].1.len(), 3);
    }
}
