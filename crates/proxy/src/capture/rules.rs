//! The capture rules as data: what `istio-iptables` installs in the pod's `nat` table, computed
//! from its flags by a pure function, in the exact form `iptables-save` prints them back (so a
//! check compares text with text).
//!
//! Chains and order follow Istio's `tools/istio-iptables`:
//!
//! - `PREROUTING -p tcp → ISTIO_INBOUND` (when inbound ports are captured): excluded ports
//!   return, the rest (or only the listed ports) jump to `ISTIO_IN_REDIRECT`, which redirects
//!   to the inbound capture port (15006).
//! - `OUTPUT -p tcp → ISTIO_OUTPUT`: excluded outbound ports return; traffic from `127.0.0.6`
//!   on `lo` returns; for each proxy uid and then gid, the proxy's own connections to a
//!   non-`127.0.0.1` local address on `lo` go to `ISTIO_IN_REDIRECT` (an app calling itself
//!   through its Service is still inbound traffic), anybody else's traffic on `lo` returns, and
//!   the proxy's traffic returns (it is never captured again: no loop); `127.0.0.1` returns;
//!   included ports go to `ISTIO_REDIRECT`; excluded ranges return; then every range (`*`) or
//!   the listed ones go to `ISTIO_REDIRECT`, which redirects to the proxy port (15001).
//!
//! IPv4 only; Istio's inbound tunnel port (15008), DNS capture and TPROXY mode are not
//! produced (Meshward has no HBONE tunnel nor DNS proxy).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The chains the capture owns, all in the `nat` table.
pub const CHAINS: [&str; 4] = [
    "ISTIO_INBOUND",
    "ISTIO_REDIRECT",
    "ISTIO_IN_REDIRECT",
    "ISTIO_OUTPUT",
];

/// A flag value that cannot be used; names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} `{value}`: {reason}")]
pub struct FlagError {
    /// The flag, e.g. `--inbound-ports`.
    pub flag: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// All of something (`*`), or only the listed items (an empty list captures nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    /// `*`: everything.
    All,
    /// Only these.
    Only(Vec<T>),
}

impl<T> Selection<T> {
    fn is_empty(&self) -> bool {
        matches!(self, Self::Only(v) if v.is_empty())
    }
}

/// An IPv4 network in CIDR form, kept as its network address (what `iptables-save` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr/prefix` (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Some(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 address or CIDR (IPv6 is not captured)"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`{s}`: bad prefix length"))?;
        Self::new(addr, prefix).ok_or_else(|| format!("`{s}`: prefix length above 32"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Splits a comma-separated flag value: `*` is [`Selection::All`] (when `wildcard`), an empty
/// value the empty list.
fn list<T: FromStr>(
    flag: &'static str,
    value: &str,
    wildcard: bool,
) -> Result<Selection<T>, FlagError>
where
    T::Err: fmt::Display,
{
    let err = |reason: String| FlagError {
        flag,
        value: value.to_owned(),
        reason,
    };
    let value = value.trim();
    if value == "*" {
        return if wildcard {
            Ok(Selection::All)
        } else {
            Err(err("`*` is not accepted here".to_owned()))
        };
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| item.parse::<T>().map_err(|e| err(format!("`{item}`: {e}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Selection::Only)
}

/// A port list flag (`--inbound-ports`, `-d`, `-o`, `-q`); `*` allowed when `wildcard`.
pub fn ports(flag: &'static str, value: &str, wildcard: bool) -> Result<Selection<u16>, FlagError> {
    let parsed = list::<u16>(flag, value, wildcard)?;
    if let Selection::Only(ports) = &parsed
        && ports.contains(&0)
    {
        return Err(FlagError {
            flag,
            value: value.to_owned(),
            reason: "port 0 is not a port".to_owned(),
        });
    }
    Ok(parsed)
}

/// A port list flag that takes no wildcard.
pub fn port_list(flag: &'static str, value: &str) -> Result<Vec<u16>, FlagError> {
    match ports(flag, value, false)? {
        Selection::Only(ports) => Ok(ports),
        Selection::All => Ok(Vec::new()),
    }
}

/// A CIDR list flag (`-i`, `-x`); `*` allowed when `wildcard`.
pub fn cidrs(
    flag: &'static str,
    value: &str,
    wildcard: bool,
) -> Result<Selection<Cidr>, FlagError> {
    list(flag, value, wildcard)
}

/// A uid or gid list flag (`-u`, `-g`).
pub fn ids(flag: &'static str, value: &str) -> Result<Vec<u32>, FlagError> {
    match list::<u32>(flag, value, false)? {
        Selection::Only(ids) => Ok(ids),
        Selection::All => Ok(Vec::new()),
    }
}

/// Everything `meshward iptables` installs, as `istio-iptables`'s flags say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// `-p`: where outbound connections are redirected (the sidecar's 15001).
    pub proxy_port: u16,
    /// `-z`: where inbound connections are redirected (the sidecar's 15006).
    pub inbound_capture_port: u16,
    /// `-u`: users whose connections are never captured (the proxy's).
    pub proxy_uids: Vec<u32>,
    /// `-g`: groups whose connections are never captured (the proxy's).
    pub proxy_gids: Vec<u32>,
    /// `-b`: inbound ports captured.
    pub inbound_ports: Selection<u16>,
    /// `-d`: inbound ports left alone when `-b` is `*`.
    pub local_exclude_ports: Vec<u16>,
    /// `-i`: outbound destinations captured.
    pub outbound_ip_ranges: Selection<Cidr>,
    /// `-x`: outbound destinations left alone.
    pub outbound_exclude_ip_ranges: Vec<Cidr>,
    /// `-q`: outbound ports captured whatever the destination.
    pub outbound_ports: Vec<u16>,
    /// `-o`: outbound ports left alone.
    pub outbound_exclude_ports: Vec<u16>,
}

impl Default for CaptureConfig {
    /// Istio's sidecar defaults: everything captured both ways, uid and gid 1337 exempt.
    fn default() -> Self {
        Self {
            proxy_port: 15001,
            inbound_capture_port: 15006,
            proxy_uids: vec![1337],
            proxy_gids: vec![1337],
            inbound_ports: Selection::All,
            local_exclude_ports: Vec::new(),
            outbound_ip_ranges: Selection::All,
            outbound_exclude_ip_ranges: Vec::new(),
            outbound_ports: Vec::new(),
            outbound_exclude_ports: Vec::new(),
        }
    }
}

/// One rule: `-A CHAIN SPEC`, SPEC as `iptables-save` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// The chain it is appended to.
    pub chain: String,
    /// Everything after the chain name.
    pub spec: String,
}

impl Rule {
    fn new(chain: &str, spec: impl Into<String>) -> Self {
        Self {
            chain: chain.to_owned(),
            spec: spec.into(),
        }
    }

    /// Whether this rule belongs to the capture: in one of its chains, or a jump to one.
    pub fn is_capture(&self) -> bool {
        CHAINS.contains(&self.chain.as_str())
            || self
                .spec
                .rsplit_once("-j ")
                .is_some_and(|(_, target)| CHAINS.contains(&target.trim()))
    }

    /// Parses an `-A CHAIN SPEC` line of `iptables-save`.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("-A ")?;
        let (chain, spec) = rest.split_once(' ')?;
        Some(Self::new(chain, spec.trim()))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-A {} {}", self.chain, self.spec)
    }
}

/// The capture rules grouped by chain, each chain's rules in order.
pub type ByChain = BTreeMap<String, Vec<String>>;

/// Groups `rules` by chain, keeping their order.
pub fn by_chain<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> ByChain {
    let mut map = ByChain::new();
    for rule in rules {
        map.entry(rule.chain.clone())
            .or_default()
            .push(rule.spec.clone());
    }
    map
}

impl CaptureConfig {
    /// The chains this configuration needs.
    pub fn chains(&self) -> Vec<&'static str> {
        let inbound = !self.inbound_ports.is_empty();
        let outbound = !self.outbound_ip_ranges.is_empty() || !self.outbound_ports.is_empty();
        CHAINS
            .into_iter()
            .filter(|chain| match *chain {
                "ISTIO_INBOUND" => inbound,
                // The proxy's own connections on `lo` are sent back inbound from ISTIO_OUTPUT.
                "ISTIO_IN_REDIRECT" => inbound || outbound,
                _ => outbound,
            })
            .collect()
    }

    /// Every rule, in the order it is appended.
    pub fn rules(&self) -> Vec<Rule> {
        let mut rules = Vec::new();
        let chains = self.chains();
        if chains.contains(&"ISTIO_REDIRECT") {
            rules.push(Rule::new(
                "ISTIO_REDIRECT",
                format!("-p tcp -j REDIRECT --to-ports {}", self.proxy_port),
            ));
        }
        if chains.contains(&"ISTIO_IN_REDIRECT") {
            rules.push(Rule::new(
                "ISTIO_IN_REDIRECT",
                format!(
                    "-p tcp -j REDIRECT --to-ports {}",
                    self.inbound_capture_port
                ),
            ));
        }
        if chains.contains(&"ISTIO_INBOUND") {
            self.inbound_rules(&mut rules);
        }
        if chains.contains(&"ISTIO_OUTPUT") {
            self.outbound_rules(&mut rules);
        }
        rules
    }

    fn inbound_rules(&self, rules: &mut Vec<Rule>) {
        const CHAIN: &str = "ISTIO_INBOUND";
        rules.push(Rule::new("PREROUTING", "-p tcp -j ISTIO_INBOUND"));
        match &self.inbound_ports {
            Selection::All => {
                for port in &self.local_exclude_ports {
                    rules.push(Rule::new(
                        CHAIN,
                        format!("-p tcp -m tcp --dport {port} -j RETURN"),
                    ));
                }
                rules.push(Rule::new(CHAIN, "-p tcp -j ISTIO_IN_REDIRECT"));
            }
            Selection::Only(ports) => {
                for port in ports {
                    rules.push(Rule::new(
                        CHAIN,
                        format!("-p tcp -m tcp --dport {port} -j ISTIO_IN_REDIRECT"),
                    ));
                }
            }
        }
    }

    fn outbound_rules(&self, rules: &mut Vec<Rule>) {
        const CHAIN: &str = "ISTIO_OUTPUT";
        rules.push(Rule::new("OUTPUT", "-p tcp -j ISTIO_OUTPUT"));
        for port in &self.outbound_exclude_ports {
            rules.push(Rule::new(
                CHAIN,
                format!("-p tcp -m tcp --dport {port} -j RETURN"),
            ));
        }
        rules.push(Rule::new(CHAIN, "-s 127.0.0.6/32 -o lo -j RETURN"));
        let owners = self
            .proxy_uids
            .iter()
            .map(|uid| format!("--uid-owner {uid}"))
            .chain(
                self.proxy_gids
                    .iter()
                    .map(|gid| format!("--gid-owner {gid}")),
            );
        for owner in owners {
            rules.push(Rule::new(
                CHAIN,
                format!("! -d 127.0.0.1/32 -o lo -m owner {owner} -j ISTIO_IN_REDIRECT"),
            ));
            rules.push(Rule::new(
                CHAIN,
                format!("-o lo -m owner ! {owner} -j RETURN"),
            ));
            rules.push(Rule::new(CHAIN, format!("-m owner {owner} -j RETURN")));
        }
        rules.push(Rule::new(CHAIN, "-d 127.0.0.1/32 -j RETURN"));
        for port in &self.outbound_ports {
            rules.push(Rule::new(
                CHAIN,
                format!("-p tcp -m tcp --dport {port} -j ISTIO_REDIRECT"),
            ));
        }
        for cidr in &self.outbound_exclude_ip_ranges {
            rules.push(Rule::new(CHAIN, format!("-d {cidr} -j RETURN")));
        }
        match &self.outbound_ip_ranges {
            Selection::All => rules.push(Rule::new(CHAIN, "-j ISTIO_REDIRECT")),
            Selection::Only(ranges) => {
                for cidr in ranges {
                    rules.push(Rule::new(CHAIN, format!("-d {cidr} -j ISTIO_REDIRECT")));
                }
            }
        }
    }

    /// The `iptables-restore --noflush` input that installs this configuration in a `nat`
    /// table holding `existing` (the capture rules already there, e.g. from an earlier run,
    /// and `existing_chains`): in one transaction, the chains needed are (re)declared, which
    /// empties them, stale jumps and chains are removed, and every rule is appended.
    pub fn restore_script(&self, existing: &[Rule], existing_chains: &[String]) -> String {
        let needed = self.chains();
        let mut script = String::from("*nat\n");
        for chain in &needed {
            script.push_str(&format!(":{chain} - [0:0]\n"));
        }
        script.push_str(&removal(existing, existing_chains, &needed));
        for rule in self.rules() {
            script.push_str(&format!("{rule}\n"));
        }
        script.push_str("COMMIT\n");
        script
    }
}

/// `iptables-restore` lines that delete the capture's jumps from the built-in chains and
/// empty then delete its chains, except those in `keep` (already emptied by their
/// declaration).
fn removal(existing: &[Rule], existing_chains: &[String], keep: &[&str]) -> String {
    let mut lines = String::new();
    for rule in existing
        .iter()
        .filter(|r| !CHAINS.contains(&r.chain.as_str()))
    {
        lines.push_str(&format!("-D {} {}\n", rule.chain, rule.spec));
    }
    let stale: Vec<&String> = existing_chains
        .iter()
        .filter(|c| CHAINS.contains(&c.as_str()) && !keep.contains(&c.as_str()))
        .collect();
    for chain in &stale {
        lines.push_str(&format!("-F {chain}\n"));
    }
    for chain in &stale {
        lines.push_str(&format!("-X {chain}\n"));
    }
    lines
}

/// The `iptables-restore --noflush` input that removes every capture rule and chain; `None`
/// when there is nothing to remove.
pub fn removal_script(existing: &[Rule], existing_chains: &[String]) -> Option<String> {
    let lines = removal(existing, existing_chains, &[]);
    (!lines.is_empty()).then(|| format!("*nat\n{lines}COMMIT\n"))
}

/// The capture rules and chains in an `iptables-save -t nat` output.
pub fn parse_saved(saved: &str) -> (Vec<Rule>, Vec<String>) {
    let mut in_nat = false;
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    for line in saved.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        if !in_nat {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            if let Some(name) = decl.split_whitespace().next()
                && CHAINS.contains(&name)
            {
                chains.push(name.to_owned());
            }
        } else if let Some(rule) = Rule::parse(line)
            && rule.is_capture()
        {
            rules.push(rule);
        }
    }
    (rules, chains)
}

/// How the installed capture differs from `config`: one line per chain that differs, empty
/// when it is exactly installed.
pub fn differences(config: &CaptureConfig, rules: &[Rule], chains: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let needed = config.chains();
    for chain in &needed {
        if !chains.iter().any(|c| c == chain) {
            out.push(format!("chain {chain} is missing"));
        }
    }
    for chain in chains {
        if !needed.contains(&chain.as_str()) {
            out.push(format!("chain {chain} is not part of this configuration"));
        }
    }
    let want = by_chain(&config.rules());
    let have = by_chain(rules);
    let names: std::collections::BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    for name in names {
        let (w, h) = (want.get(name), have.get(name));
        if w != h {
            out.push(format!(
                "chain {name}: expected {} rule(s), found {}{}",
                w.map_or(0, Vec::len),
                h.map_or(0, Vec::len),
                first_difference(
                    w.map_or(&[][..], Vec::as_slice),
                    h.map_or(&[][..], Vec::as_slice)
                )
            ));
        }
    }
    out
}

fn first_difference(want: &[String], have: &[String]) -> String {
    let at = want.iter().zip(have).take_while(|(w, h)| w == h).count();
    match (want.get(at), have.get(at)) {
        (Some(w), Some(h)) => format!(" (rule {}: expected `{w}`, found `{h}`)", at + 1),
        (Some(w), None) => format!(" (missing `{w}`)"),
        (None, Some(h)) => format!(" (unexpected `{h}`)"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(config: &CaptureConfig) -> Vec<String> {
        config.rules().iter().map(ToString::to_string).collect()
    }

    /// Istio's sidecar injection: `-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -b '*'
    /// -d 15090,15021,15020` (gid defaults to the uid).
    fn istio_default() -> CaptureConfig {
        CaptureConfig {
            local_exclude_ports: vec![15090, 15021, 15020],
            ..CaptureConfig::default()
        }
    }

    #[test]
    fn istio_sidecar_defaults() {
        assert_eq!(
            lines(&istio_default()),
            [
                "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
                "-A PREROUTING -p tcp -j ISTIO_INBOUND",
                "-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
                "-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
                "-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
                "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
                "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
                "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
                "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
                "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
                "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
                "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
                "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
                "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
                "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
            ]
        );
    }

    #[test]
    fn include_and_exclude_lists() {
        // (configuration, rules that must appear in this order, rules that must not appear)
        let cases: Vec<(CaptureConfig, Vec<&str>, Vec<&str>)> = vec![
            (
                CaptureConfig {
                    inbound_ports: Selection::Only(vec![8080, 9000]),
                    local_exclude_ports: vec![15090],
                    ..CaptureConfig::default()
                },
                vec![
                    "-A ISTIO_INBOUND -p tcp -m tcp --dport 8080 -j ISTIO_IN_REDIRECT",
                    "-A ISTIO_INBOUND -p tcp -m tcp --dport 9000 -j ISTIO_IN_REDIRECT",
                ],
                // -d applies only to `*`, and listed ports never capture everything.
                vec![
                    "-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
                    "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
                ],
            ),
            (
                CaptureConfig {
                    inbound_ports: Selection::Only(vec![]),
                    ..CaptureConfig::default()
                },
                vec!["-A ISTIO_OUTPUT -j ISTIO_REDIRECT"],
                vec!["-A PREROUTING -p tcp -j ISTIO_INBOUND"],
            ),
            (
                CaptureConfig {
                    outbound_ip_ranges: Selection::Only(vec!["10.96.0.7/12".parse().unwrap()]),
                    outbound_exclude_ip_ranges: vec!["10.96.5.0/24".parse().unwrap()],
                    outbound_exclude_ports: vec![22],
                    outbound_ports: vec![5432],
                    ..CaptureConfig::default()
                },
                vec![
                    "-A ISTIO_OUTPUT -p tcp -m tcp --dport 22 -j RETURN",
                    "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
                    "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
                    "-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j ISTIO_REDIRECT",
                    "-A ISTIO_OUTPUT -d 10.96.5.0/24 -j RETURN",
                    "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
                ],
                vec!["-A ISTIO_OUTPUT -j ISTIO_REDIRECT"],
            ),
            (
                CaptureConfig {
                    outbound_ip_ranges: Selection::Only(vec![]),
                    ..CaptureConfig::default()
                },
                vec!["-A PREROUTING -p tcp -j ISTIO_INBOUND"],
                vec![
                    "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
                    "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                ],
            ),
            (
                CaptureConfig {
                    proxy_port: 16001,
                    inbound_capture_port: 16006,
                    proxy_uids: vec![],
                    proxy_gids: vec![7, 8],
                    ..CaptureConfig::default()
                },
                vec![
                    "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001",
                    "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006",
                    "-A ISTIO_OUTPUT -m owner --gid-owner 7 -j RETURN",
                    "-A ISTIO_OUTPUT -m owner --gid-owner 8 -j RETURN",
                ],
                vec!["-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"],
            ),
        ];
        for (config, present, absent) in cases {
            let got = lines(&config);
            let mut from = 0;
            for want in &present {
                let at = got[from..]
                    .iter()
                    .position(|l| l == want)
                    .unwrap_or_else(|| panic!("{want} missing or out of order in {got:#?}"));
                from += at + 1;
            }
            for never in &absent {
                assert!(!got.iter().any(|l| l == never), "{never} in {got:#?}");
            }
        }
    }

    #[test]
    fn flag_values() {
        assert_eq!(ports("-b", "*", true).unwrap(), Selection::All);
        assert_eq!(ports("-b", "", true).unwrap(), Selection::Only(vec![]));
        assert_eq!(
            ports("-b", "80, 443", true).unwrap(),
            Selection::Only(vec![80, 443])
        );
        assert_eq!(
            cidrs("-i", "10.1.2.3/8,192.168.0.1", true).unwrap(),
            Selection::Only(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.0.1/32".parse().unwrap()
            ])
        );
        assert_eq!(ids("-u", "1337,0").unwrap(), vec![1337, 0]);
        // (flag, value, what the error must say)
        let bad: [(&str, Result<(), FlagError>, &str); 6] = [
            ("-b", ports("-b", "80,x", true).map(drop), "`x`"),
            ("-b", ports("-b", "0", true).map(drop), "port 0"),
            ("-d", port_list("-d", "*").map(drop), "`*` is not accepted"),
            ("-i", cidrs("-i", "fd00::/8", true).map(drop), "IPv6"),
            (
                "-x",
                cidrs("-x", "10.0.0.0/33", false).map(drop),
                "above 32",
            ),
            ("-u", ids("-u", "proxy").map(drop), "`proxy`"),
        ];
        for (flag, result, says) in bad {
            let err = result.expect_err(flag).to_string();
            assert!(err.starts_with(flag) && err.contains(says), "{err}");
        }
    }

    #[test]
    fn saved_rules_round_trip_and_differences() {
        let config = istio_default();
        let mut saved = String::from(
            "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        );
        for chain in config.chains() {
            saved.push_str(&format!(":{chain} - [0:0]\n"));
        }
        saved.push_str("-A OUTPUT -d 192.0.2.1/32 -j ACCEPT\n");
        for rule in config.rules() {
            saved.push_str(&format!("{rule}\n"));
        }
        saved.push_str("COMMIT\n*filter\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n");
        let (rules, chains) = parse_saved(&saved);
        assert_eq!(rules, config.rules());
        assert!(differences(&config, &rules, &chains).is_empty());

        let other = CaptureConfig {
            proxy_port: 16001,
            ..istio_default()
        };
        let diff = differences(&other, &rules, &chains);
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(
            diff[0].contains("ISTIO_REDIRECT") && diff[0].contains("16001"),
            "{diff:?}"
        );

        let removal = removal_script(&rules, &chains).unwrap();
        assert!(removal.contains("-D PREROUTING -p tcp -j ISTIO_INBOUND\n"));
        assert!(removal.contains("-D OUTPUT -p tcp -j ISTIO_OUTPUT\n"));
        assert!(!removal.contains("192.0.2.1"));
        for chain in CHAINS {
            assert!(removal.contains(&format!("-X {chain}\n")), "{removal}");
        }
        assert_eq!(removal_script(&[], &[]), None);

        // Reinstalling over an earlier installation: jumps removed once, chains redeclared
        // (which empties them), nothing else touched.
        let script = other.restore_script(&rules, &chains);
        assert!(script.starts_with("*nat\n:ISTIO_INBOUND - [0:0]\n"));
        assert_eq!(
            script.matches("-D OUTPUT -p tcp -j ISTIO_OUTPUT").count(),
            1
        );
        assert!(!script.contains("-X "));
        assert!(script.ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n"));
    }
}
