//! Host network facts for S1/S2, read on the database host itself (only when the server is
//! on this machine): the TCP sockets the postmaster really listens on, and what the host
//! packet filter does with a new connection to the PostgreSQL port.
//!
//! - `sockets`: LISTEN entries of `/proc/net/tcp` and `/proc/net/tcp6` on the server's port
//!   (`pg_settings.port`). When `<data_directory>/postmaster.pid` and `/proc/<pid>/fd` are
//!   readable, only the postmaster's own sockets (matched by inode) are kept; otherwise every
//!   listener on the port (`matched_by` says which).
//! - `firewall`: `nft -j list ruleset` (nftables JSON, schema 1), else `iptables-save` and
//!   `ip6tables-save`. The ruleset is modelled as chains of rules; the collector then walks
//!   the input hook chains for "a new TCP connection to the port from an address no rule
//!   names, on a non-loopback interface", per address family, and records the verdict, the
//!   rule (or policy) that decides it, and the sources accepted by source-restricted rules.
//!   Rules it cannot interpret are listed in `uncertain`, and the section is then partial,
//!   so that a rule's pass over them is "not evaluated", never a silent pass.
//!
//! PostgreSQL binds each address of `listen_addresses` separately and sets IPV6_V6ONLY on its
//! IPv6 sockets (ListenServerPort in src/backend/libpq/pqcomm.c), so an IPv6 socket never
//! carries IPv4 traffic: each socket is judged with its own family's filter.
//!
//! The collector returns data; the rules in checks/security/firewall.toml judge it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::collect::remote::HostAccess;
use crate::facts::{Facts, Section};

// ------------------------------------------------------------------ sockets

/// A LISTEN socket of /proc/net/tcp{,6}.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub address: String,
    pub ipv6: bool,
    pub port: u16,
    pub inode: u64,
}

impl Listener {
    fn loopback(&self) -> bool {
        match self.address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
            Ok(std::net::IpAddr::V6(a)) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
    }

    fn wildcard(&self) -> bool {
        self.address == "0.0.0.0" || self.address == "::"
    }
}

/// Parse /proc/net/tcp or /proc/net/tcp6 text: the LISTEN (state 0A) entries.
pub fn parse_proc_net_tcp(text: &str, ipv6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                return None;
            }
            let (addr, port) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let address = if ipv6 {
                decode_v6(addr)?
            } else {
                decode_v4(addr)?
            };
            Some(Listener {
                address,
                ipv6,
                port,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// The kernel prints each 32-bit word of the address in host byte order (little endian here).
fn word(hex: &str) -> Option<[u8; 4]> {
    let w = u32::from_str_radix(hex, 16).ok()?;
    Some(if cfg!(target_endian = "little") {
        w.to_le_bytes()
    } else {
        w.to_be_bytes()
    })
}

fn decode_v4(hex: &str) -> Option<String> {
    (hex.len() == 8).then_some(())?;
    Some(std::net::Ipv4Addr::from(word(hex)?).to_string())
}

fn decode_v6(hex: &str) -> Option<String> {
    (hex.len() == 32).then_some(())?;
    let mut b = [0u8; 16];
    for i in 0..4 {
        b[i * 4..i * 4 + 4].copy_from_slice(&word(&hex[i * 8..i * 8 + 8])?);
    }
    Some(std::net::Ipv6Addr::from(b).to_string())
}

/// The postmaster's pid from `<data_directory>/postmaster.pid` (first line), if it runs.
fn postmaster_pid(a: &dyn HostAccess, data_directory: &str) -> Result<u32, String> {
    let file = Path::new(data_directory).join("postmaster.pid");
    let text = a
        .read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let pid: u32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("{} has no pid on its first line", file.display()))?;
    if !a.exists(Path::new(&format!("/proc/{pid}"))) {
        return Err(format!(
            "{} names pid {pid}, which does not run",
            file.display()
        ));
    }
    Ok(pid)
}

/// Socket inodes held open by a process (`/proc/<pid>/fd/* -> socket:[N]`).
fn socket_inodes(a: &dyn HostAccess, pid: u32) -> Result<BTreeSet<u64>, String> {
    let dir = format!("/proc/{pid}/fd");
    let names = a
        .read_dir(Path::new(&dir))
        .map_err(|e| format!("cannot list {dir}: {e}"))?;
    Ok(names
        .iter()
        .filter_map(|n| a.read_link(&Path::new(&dir).join(n)).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().to_string();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect())
}

/// The `sockets` section from the listeners on `port`.
fn sockets_section(
    a: &dyn HostAccess,
    port: u16,
    data_directory: Option<&str>,
) -> (Section, Vec<Listener>) {
    let mut all = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        match a.read_to_string(Path::new(path)) {
            Ok(t) => all.extend(parse_proc_net_tcp(&t, v6)),
            // No IPv6 in this kernel: nothing can listen there.
            Err(_) if v6 => {}
            Err(e) => {
                return (
                    Section::missing(format!("cannot read {path}: {e}")),
                    Vec::new(),
                );
            }
        }
    }
    let on_port: Vec<Listener> = all.into_iter().filter(|l| l.port == port).collect();
    let owner = match data_directory {
        Some(d) => postmaster_pid(a, d).and_then(|pid| Ok((pid, socket_inodes(a, pid)?))),
        None => Err("data_directory is not visible to the audit role".to_string()),
    };
    let (pid, matched_by, note, kept) = match owner {
        Ok((pid, inodes)) => {
            let kept: Vec<Listener> = on_port
                .iter()
                .filter(|l| inodes.contains(&l.inode))
                .cloned()
                .collect();
            (Some(pid), "postmaster", None, kept)
        }
        Err(why) => (
            None,
            "port",
            Some(format!(
                "listeners matched by port only ({why}); {} to match the postmaster's own sockets",
                a.privilege_hint()
            )),
            on_port,
        ),
    };
    let listening: Vec<Value> = kept
        .iter()
        .map(|l| {
            json!({
                "address": l.address,
                "family": if l.ipv6 { "ipv6" } else { "ipv4" },
                "port": l.port,
                "loopback": l.loopback(),
                "wildcard": l.wildcard(),
                "inode": l.inode,
            })
        })
        .collect();
    let exposed: Vec<String> = kept
        .iter()
        .filter(|l| !l.loopback())
        .map(display_socket)
        .collect();
    let data = json!({
        "source": a.source(),
        "port": port,
        "postmaster_pid": pid,
        "matched_by": matched_by,
        "note": note,
        "listening": listening,
        "exposed": exposed,
    });
    (Section::ok(data), kept)
}

fn display_socket(l: &Listener) -> String {
    if l.ipv6 {
        format!("[{}]:{}", l.address, l.port)
    } else {
        format!("{}:{}", l.address, l.port)
    }
}

// ------------------------------------------------------------------ firewall model

/// Address family a rule or chain applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fam {
    Any,
    V4,
    V6,
}

impl Fam {
    fn admits(self, ipv6: bool) -> bool {
        match self {
            Fam::Any => true,
            Fam::V4 => !ipv6,
            Fam::V6 => ipv6,
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
    Jump(String),
    Goto(String),
    Return,
    /// No verdict (counter, log): evaluation continues.
    Continue,
}

/// A destination port condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Ports {
    Ranges(Vec<(u16, u16)>),
    /// A named set, a negation or anything else that cannot be decided from the rule.
    Unknown(String),
}

/// One rule, reduced to what decides a new TCP connection from an arbitrary source.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub fam: Fam,
    /// `Some("lo")` for a loopback-only rule; another interface name makes the rule
    /// conditional on the interface.
    pub iface: Option<String>,
    /// The rule only matches established/related (or invalid/untracked) packets.
    pub not_new: bool,
    /// The rule is restricted to a protocol other than TCP.
    pub not_tcp: bool,
    pub dports: Option<Ports>,
    /// Source restriction (`ip saddr 10.0.0.0/8`, `-s 10.0.0.0/8`), as written.
    pub saddr: Option<String>,
    /// Matches pgready cannot interpret (the rule is then only "maybe" matching).
    pub unknown: Vec<String>,
    pub verdict: Verdict,
    /// The rule as the report shows it.
    pub text: String,
}

/// A chain; `hook_input` with `policy` for base chains on the input hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub fam: Fam,
    /// `inet filter input` (nftables) or `filter INPUT` (iptables).
    pub name: String,
    pub hook_input: bool,
    pub policy: Verdict,
    pub rules: Vec<Rule>,
}

/// A parsed ruleset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ruleset {
    pub tool: String,
    pub version: Option<String>,
    /// Chains by (table key, chain name); `key` is `family table` for nftables.
    pub chains: BTreeMap<(String, String), Chain>,
}

/// How the filter treats a new TCP connection to the port from an address no rule names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judgement {
    /// `accept`, `drop`, `reject` or `unknown`.
    pub verdict: String,
    pub decided_by: String,
    pub allowed_sources: Vec<String>,
    pub uncertain: Vec<String>,
}

enum Walk {
    Final(Verdict, String),
    Fallthrough,
}

impl Rule {
    fn port_matches(&self, port: u16) -> Option<bool> {
        match &self.dports {
            None => Some(true),
            Some(Ports::Ranges(r)) => Some(r.iter().any(|(a, b)| (*a..=*b).contains(&port))),
            Some(Ports::Unknown(_)) => None,
        }
    }
}

fn walk(
    rs: &Ruleset,
    table: &str,
    chain: &Chain,
    port: u16,
    ipv6: bool,
    depth: usize,
    j: &mut Judgement,
) -> Walk {
    if depth > 16 {
        j.uncertain
            .push(format!("{}: jumps nested too deep to follow", chain.name));
        return Walk::Fallthrough;
    }
    for r in &chain.rules {
        if !r.fam.admits(ipv6) || r.not_new || r.not_tcp {
            continue;
        }
        if r.iface.as_deref() == Some("lo") {
            continue;
        }
        let Some(port_ok) = r.port_matches(port) else {
            if r.verdict == Verdict::Accept {
                j.uncertain.push(r.text.clone());
            }
            continue;
        };
        if !port_ok {
            continue;
        }
        if let Some(src) = &r.saddr {
            // The arbitrary source is not in the listed ones; remember what is let in.
            if r.verdict == Verdict::Accept && r.unknown.is_empty() {
                j.allowed_sources.push(src.clone());
            }
            continue;
        }
        let maybe = r.iface.is_some() || !r.unknown.is_empty();
        match &r.verdict {
            Verdict::Continue => {}
            Verdict::Accept if maybe => j.uncertain.push(r.text.clone()),
            Verdict::Drop | Verdict::Reject if maybe => {}
            Verdict::Accept | Verdict::Drop | Verdict::Reject => {
                return Walk::Final(r.verdict.clone(), r.text.clone());
            }
            Verdict::Return if maybe => {}
            Verdict::Return => return Walk::Fallthrough,
            Verdict::Jump(target) | Verdict::Goto(target) => {
                let Some(sub) = rs.chains.get(&(table.to_string(), target.clone())) else {
                    j.uncertain
                        .push(format!("{}: jumps to unknown chain {target}", r.text));
                    continue;
                };
                if maybe {
                    j.uncertain.push(r.text.clone());
                    continue;
                }
                if let Walk::Final(v, by) = walk(rs, table, sub, port, ipv6, depth + 1, j) {
                    return Walk::Final(v, by);
                }
                if matches!(r.verdict, Verdict::Goto(_)) {
                    return Walk::Fallthrough;
                }
            }
        }
    }
    Walk::Fallthrough
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Drop => "drop",
        Verdict::Reject => "reject",
        _ => "accept",
    }
}

/// What the input chains of `rs` do with a new TCP connection to `port` from an address no
/// rule names, for IPv4 (`ipv6` false) or IPv6.
pub fn judge(rs: &Ruleset, port: u16, ipv6: bool) -> Judgement {
    let mut result = Judgement {
        verdict: "accept".to_string(),
        decided_by: "no input filter for this address family".to_string(),
        ..Judgement::default()
    };
    let mut accepted_by = Vec::new();
    let mut unknown = false;
    for ((table, _), chain) in &rs.chains {
        if !chain.hook_input || !chain.fam.admits(ipv6) {
            continue;
        }
        let mut j = Judgement::default();
        let (v, by) = match walk(rs, table, chain, port, ipv6, 0, &mut j) {
            Walk::Final(v, by) => (v, by),
            Walk::Fallthrough => (
                chain.policy.clone(),
                format!("{}: policy {}", chain.name, verdict_word(&chain.policy)),
            ),
        };
        result.allowed_sources.extend(j.allowed_sources);
        let uncertain = !j.uncertain.is_empty();
        result.uncertain.extend(j.uncertain);
        match v {
            // Every base chain must accept; one drop is final.
            Verdict::Drop | Verdict::Reject if !uncertain => {
                result.verdict = verdict_word(&v).to_string();
                result.decided_by = by;
                result.uncertain.clear();
                unknown = false;
                accepted_by.clear();
                break;
            }
            Verdict::Drop | Verdict::Reject => {
                unknown = true;
                result.decided_by = by;
            }
            _ => accepted_by.push(by),
        }
    }
    if result.verdict == "accept" {
        if unknown {
            result.verdict = "unknown".to_string();
        } else if !accepted_by.is_empty() {
            result.decided_by = accepted_by.join("; ");
        }
    }
    result.allowed_sources.sort();
    result.allowed_sources.dedup();
    result
}

// ------------------------------------------------------------------ nftables JSON

fn nft_fam(family: &str) -> Option<Fam> {
    match family {
        "inet" => Some(Fam::Any),
        "ip" => Some(Fam::V4),
        "ip6" => Some(Fam::V6),
        // arp, bridge, netdev: not the IP input path of this host.
        _ => None,
    }
}

fn nft_value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                format!(
                    "{}/{}",
                    p.get("addr").map(nft_value_text).unwrap_or_default(),
                    p.get("len").map(nft_value_text).unwrap_or_default()
                )
            } else if let Some(r) = o.get("range").and_then(Value::as_array) {
                r.iter().map(nft_value_text).collect::<Vec<_>>().join("-")
            } else if let Some(s) = o.get("set").and_then(Value::as_array) {
                format!(
                    "{{ {} }}",
                    s.iter().map(nft_value_text).collect::<Vec<_>>().join(", ")
                )
            } else {
                Value::Object(o.clone()).to_string()
            }
        }
        Value::Array(a) => a.iter().map(nft_value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn nft_ports(v: &Value) -> Ports {
    fn one(v: &Value, out: &mut Vec<(u16, u16)>) -> bool {
        match v {
            Value::Number(n) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(p) => {
                    out.push((p, p));
                    true
                }
                None => false,
            },
            Value::Object(o) => {
                if let Some(r) = o.get("range").and_then(Value::as_array) {
                    let a = r
                        .first()
                        .and_then(Value::as_u64)
                        .and_then(|n| u16::try_from(n).ok());
                    let b = r
                        .get(1)
                        .and_then(Value::as_u64)
                        .and_then(|n| u16::try_from(n).ok());
                    if let (Some(a), Some(b)) = (a, b) {
                        out.push((a, b));
                        return true;
                    }
                    false
                } else if let Some(s) = o.get("set").and_then(Value::as_array) {
                    s.iter().all(|x| one(x, out))
                } else {
                    false
                }
            }
            Value::Array(a) => a.iter().all(|x| one(x, out)),
            _ => false,
        }
    }
    let mut out = Vec::new();
    if one(v, &mut out) {
        Ports::Ranges(out)
    } else {
        Ports::Unknown(nft_value_text(v))
    }
}

/// Reduce one nftables rule (`expr` list) to a [`Rule`].
fn nft_rule(fam: Fam, exprs: &[Value], text: String) -> Rule {
    let mut r = Rule {
        fam,
        iface: None,
        not_new: false,
        not_tcp: false,
        dports: None,
        saddr: None,
        unknown: Vec::new(),
        verdict: Verdict::Continue,
        text,
    };
    for e in exprs {
        let Some(obj) = e.as_object() else { continue };
        let Some((key, body)) = obj.iter().next() else {
            continue;
        };
        match key.as_str() {
            "match" => {
                let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
                let left = body.get("left").cloned().unwrap_or(Value::Null);
                let right = body.get("right").cloned().unwrap_or(Value::Null);
                let positive = op == "==" || op == "in";
                let payload = left.get("payload");
                let meta = left
                    .get("meta")
                    .and_then(|m| m.get("key"))
                    .and_then(Value::as_str);
                let ct = left
                    .get("ct")
                    .and_then(|m| m.get("key"))
                    .and_then(Value::as_str);
                let proto = payload
                    .and_then(|p| p.get("protocol"))
                    .and_then(Value::as_str);
                let field = payload.and_then(|p| p.get("field")).and_then(Value::as_str);
                match (proto, field, meta, ct) {
                    (Some(p @ ("tcp" | "udp" | "th" | "sctp" | "dccp")), Some("dport"), _, _) => {
                        if matches!(p, "udp" | "sctp" | "dccp") {
                            r.not_tcp = true;
                        }
                        r.dports = Some(if positive {
                            nft_ports(&right)
                        } else {
                            Ports::Unknown(format!("{op} {}", nft_value_text(&right)))
                        });
                    }
                    (Some(p @ ("ip" | "ip6")), Some("saddr"), _, _) => {
                        r.fam = if p == "ip" { Fam::V4 } else { Fam::V6 };
                        if positive {
                            r.saddr = Some(nft_value_text(&right));
                        } else {
                            r.unknown
                                .push(format!("{p} saddr {op} {}", nft_value_text(&right)));
                        }
                    }
                    (Some("ip"), Some("protocol"), _, _) | (_, _, Some("l4proto"), _) => {
                        let t = nft_value_text(&right);
                        if positive && !t.contains("tcp") {
                            r.not_tcp = true;
                        } else if !positive {
                            r.unknown.push(format!("l4proto {op} {t}"));
                        }
                    }
                    (_, _, Some("nfproto"), _) => match nft_value_text(&right).as_str() {
                        "ipv4" if positive => r.fam = Fam::V4,
                        "ipv6" if positive => r.fam = Fam::V6,
                        t => r.unknown.push(format!("meta nfproto {op} {t}")),
                    },
                    (_, _, Some("iif" | "iifname"), _) => {
                        let t = nft_value_text(&right);
                        if positive {
                            r.iface = Some(t);
                        } else {
                            r.unknown.push(format!("iifname {op} {t}"));
                        }
                    }
                    (_, _, _, Some("state")) => {
                        let t = nft_value_text(&right);
                        if positive && !t.contains("new") {
                            r.not_new = true;
                        } else if !positive {
                            r.unknown.push(format!("ct state {op} {t}"));
                        }
                    }
                    _ => r.unknown.push(format!(
                        "{} {op} {}",
                        nft_value_text(&left),
                        nft_value_text(&right)
                    )),
                }
            }
            "accept" => r.verdict = Verdict::Accept,
            "drop" => r.verdict = Verdict::Drop,
            "reject" => r.verdict = Verdict::Reject,
            "return" => r.verdict = Verdict::Return,
            "jump" => {
                r.verdict = Verdict::Jump(
                    body.get("target")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
            }
            "goto" => {
                r.verdict = Verdict::Goto(
                    body.get("target")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
            }
            // Statements that neither match nor decide.
            "counter" | "log" | "comment" => {}
            other => r.unknown.push(other.to_string()),
        }
    }
    r
}

/// A short rendering of an nftables rule for the report.
fn nft_rule_text(prefix: &str, exprs: &[Value]) -> String {
    let parts: Vec<String> = exprs
        .iter()
        .filter_map(|e| {
            let obj = e.as_object()?;
            let (key, body) = obj.iter().next()?;
            Some(match key.as_str() {
                "match" => {
                    let left = body.get("left").cloned().unwrap_or(Value::Null);
                    let l = if let Some(p) = left.get("payload") {
                        format!(
                            "{} {}",
                            p.get("protocol").and_then(Value::as_str).unwrap_or("?"),
                            p.get("field").and_then(Value::as_str).unwrap_or("?")
                        )
                    } else if let Some(m) = left.get("meta").and_then(|m| m.get("key")) {
                        format!("meta {}", nft_value_text(m))
                    } else if let Some(m) = left.get("ct").and_then(|m| m.get("key")) {
                        format!("ct {}", nft_value_text(m))
                    } else {
                        nft_value_text(&left)
                    };
                    let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
                    let op = if op == "==" || op == "in" {
                        String::new()
                    } else {
                        format!("{op} ")
                    };
                    format!(
                        "{l} {op}{}",
                        body.get("right").map(nft_value_text).unwrap_or_default()
                    )
                }
                "counter" => return None,
                "jump" | "goto" => format!(
                    "{key} {}",
                    body.get("target").and_then(Value::as_str).unwrap_or("?")
                ),
                k => k.to_string(),
            })
        })
        .collect();
    format!("{prefix}: {}", parts.join(" "))
}

/// Parse `nft -j list ruleset` output.
pub fn parse_nft_json(text: &str) -> Result<Ruleset, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("nft -j output is not JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft -j output has no \"nftables\" list")?;
    let mut rs = Ruleset {
        tool: "nftables".to_string(),
        ..Ruleset::default()
    };
    for item in items {
        if let Some(m) = item.get("metainfo") {
            rs.version = m.get("version").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(c) = item.get("chain") {
            let family = c.get("family").and_then(Value::as_str).unwrap_or("");
            let Some(fam) = nft_fam(family) else { continue };
            let table = c.get("table").and_then(Value::as_str).unwrap_or("");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let hook_input = c.get("hook").and_then(Value::as_str) == Some("input")
                && c.get("type").and_then(Value::as_str).unwrap_or("filter") == "filter";
            let policy = match c.get("policy").and_then(Value::as_str) {
                Some("drop") => Verdict::Drop,
                _ => Verdict::Accept,
            };
            rs.chains.insert(
                (format!("{family} {table}"), name.to_string()),
                Chain {
                    fam,
                    name: format!("{family} {table} {name}"),
                    hook_input,
                    policy,
                    rules: Vec::new(),
                },
            );
        }
        if let Some(r) = item.get("rule") {
            let family = r.get("family").and_then(Value::as_str).unwrap_or("");
            let Some(fam) = nft_fam(family) else { continue };
            let table = r.get("table").and_then(Value::as_str).unwrap_or("");
            let chain = r.get("chain").and_then(Value::as_str).unwrap_or("");
            let exprs = r
                .get("expr")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let handle = r.get("handle").map(nft_value_text).unwrap_or_default();
            let text = nft_rule_text(&format!("{family} {table} {chain} #{handle}"), &exprs);
            let rule = nft_rule(fam, &exprs, text);
            if let Some(c) = rs
                .chains
                .get_mut(&(format!("{family} {table}"), chain.to_string()))
            {
                c.rules.push(rule);
            }
        }
    }
    Ok(rs)
}

// ------------------------------------------------------------------ iptables-save

fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn ipt_ports(v: &str) -> Ports {
    let mut out = Vec::new();
    for part in v.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) => out.push((a, b)),
            _ => return Ports::Unknown(v.to_string()),
        }
    }
    Ports::Ranges(out)
}

/// Parse `iptables-save` (ipv6 = false) or `ip6tables-save` output into `rs` (filter table).
pub fn parse_iptables_save(text: &str, ipv6: bool, rs: &mut Ruleset) {
    let fam = if ipv6 { Fam::V6 } else { Fam::V4 };
    let tool = if ipv6 { "ip6tables" } else { "iptables" };
    let key = format!("{tool} filter");
    let mut in_filter = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            in_filter = t == "filter";
            continue;
        }
        if !in_filter {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut f = decl.split_whitespace();
            let name = f.next().unwrap_or("").to_string();
            let policy = match f.next() {
                Some("DROP") => Verdict::Drop,
                _ => Verdict::Accept,
            };
            rs.chains.insert(
                (key.clone(), name.clone()),
                Chain {
                    fam,
                    name: format!("{tool} filter {name}"),
                    hook_input: name == "INPUT",
                    policy,
                    rules: Vec::new(),
                },
            );
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let words = shell_words(rest);
        let Some(chain) = words.first().cloned() else {
            continue;
        };
        let mut r = Rule {
            fam,
            iface: None,
            not_new: false,
            not_tcp: false,
            dports: None,
            saddr: None,
            unknown: Vec::new(),
            verdict: Verdict::Continue,
            text: format!("{tool} -A {rest}"),
        };
        let mut i = 1;
        let mut negate = false;
        let mut after_target = false;
        while i < words.len() {
            let w = words[i].as_str();
            let arg = words.get(i + 1).cloned().unwrap_or_default();
            let mut takes = true;
            match w {
                "!" => {
                    negate = true;
                    i += 1;
                    continue;
                }
                "-s" | "--source" | "--src" if !negate => r.saddr = Some(arg),
                "-i" | "--in-interface" if !negate => r.iface = Some(arg),
                "-p" | "--protocol" if !negate => {
                    if arg != "tcp" && arg != "6" && arg != "all" {
                        r.not_tcp = true;
                    }
                }
                "--dport" | "--destination-port" | "--dports" | "--destination-ports"
                    if !negate =>
                {
                    r.dports = Some(ipt_ports(&arg));
                }
                "--ctstate" | "--state" if !negate => {
                    if !arg.split(',').any(|s| s.eq_ignore_ascii_case("NEW")) {
                        r.not_new = true;
                    }
                }
                "-m" | "--match" => {
                    // Module names alone decide nothing; their options follow.
                }
                "--comment" => {}
                "-j" | "--jump" => {
                    after_target = true;
                    r.verdict = match arg.as_str() {
                        "ACCEPT" => Verdict::Accept,
                        "DROP" => Verdict::Drop,
                        "REJECT" => Verdict::Reject,
                        "RETURN" => Verdict::Return,
                        "LOG" | "NFLOG" => Verdict::Continue,
                        other => Verdict::Jump(other.to_string()),
                    };
                }
                "-g" | "--goto" => {
                    after_target = true;
                    r.verdict = Verdict::Goto(arg);
                }
                // Options after the target belong to it (--reject-with, --log-prefix …).
                _ if after_target => {}
                other => {
                    // An option we do not model; its argument is swallowed when it has one.
                    let neg = if negate { "! " } else { "" };
                    if arg.starts_with('-') || arg.is_empty() {
                        r.unknown.push(format!("{neg}{other}"));
                        takes = false;
                    } else {
                        r.unknown.push(format!("{neg}{other} {arg}"));
                    }
                }
            }
            negate = false;
            i += if takes { 2 } else { 1 };
        }
        if let Some(c) = rs.chains.get_mut(&(key.clone(), chain)) {
            c.rules.push(r);
        }
    }
}

// ------------------------------------------------------------------ running the tools

/// How long a firewall tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Run a firewall tool; over SSH as another user than root, through `sudo -n` (never a
/// password prompt).
fn run(a: &dyn HostAccess, cmd: &str, args: &[&str]) -> Result<String, String> {
    let sudo_args: Vec<&str>;
    let (prog, argv) = match a.remote_user() {
        Some((_, false)) => {
            sudo_args = ["-n", cmd].iter().chain(args).copied().collect();
            ("sudo", sudo_args.as_slice())
        }
        _ => (cmd, args),
    };
    let shown = [prog]
        .iter()
        .chain(argv)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    match a.run(prog, argv, TOOL_TIMEOUT) {
        Ok(out) if out.success => Ok(String::from_utf8_lossy(&out.stdout).to_string()),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let hint = if err.contains("ermission") || err.contains("not permitted") {
                " (reading the firewall needs root or CAP_NET_ADMIN)"
            } else {
                ""
            };
            Err(format!("`{shown}` failed: {err}{hint}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(match a.remote_user() {
            Some(_) => e.to_string(),
            None => format!("{prog} is not installed"),
        }),
        Err(e) => Err(format!("cannot run {prog}: {e}")),
    }
}

/// What to do when the firewall cannot be read.
fn firewall_hint(a: &dyn HostAccess) -> String {
    match a.remote_user() {
        Some((user, false)) => format!(
            "ssh as root, or let {user} run `sudo -n nft -j list ruleset` (or iptables-save and \
             ip6tables-save) without a password"
        ),
        Some((_, true)) => "install nftables or iptables on the database host".to_string(),
        None => "install nftables or iptables, run pgready as root".to_string(),
    }
}

fn uses_xt(rs: &Ruleset) -> bool {
    rs.chains
        .values()
        .flat_map(|c| c.rules.iter())
        .any(|r| r.unknown.iter().any(|u| u == "xt"))
}

/// Read the host firewall: nftables first, then iptables-save/ip6tables-save.
///
/// Rules written by iptables-nft appear in `nft -j` with opaque `xt` matches (conntrack,
/// multiport, comment …); iptables-save prints them in full. So when the nftables ruleset
/// has such rules, the `ip filter`/`ip6 filter` tables are taken from iptables-save and
/// ip6tables-save instead, and the other nftables tables are kept.
/// Returns the ruleset and what was tried.
pub fn read_firewall(a: &dyn HostAccess) -> (Option<Ruleset>, Vec<String>) {
    let mut tried = Vec::new();
    let nft = match run(a, "nft", &["-j", "list", "ruleset"]).and_then(|t| parse_nft_json(&t)) {
        Ok(rs) => Some(rs),
        Err(e) => {
            tried.push(e);
            None
        }
    };
    if let Some(rs) = &nft
        && rs.chains.values().any(|c| c.hook_input)
        && !uses_xt(rs)
    {
        return (nft, tried);
    }
    let mut ipt = Ruleset {
        tool: "iptables".to_string(),
        ..Ruleset::default()
    };
    let mut ipt_ok = false;
    for (cmd, v6) in [("iptables-save", false), ("ip6tables-save", true)] {
        match run(a, cmd, &[]) {
            Ok(t) => {
                parse_iptables_save(&t, v6, &mut ipt);
                ipt_ok = true;
            }
            Err(e) if !tried.contains(&e) => tried.push(e),
            Err(_) => {}
        }
    }
    match nft {
        Some(mut rs) if uses_xt(&rs) && ipt_ok => {
            rs.chains
                .retain(|(table, _), _| table != "ip filter" && table != "ip6 filter");
            rs.chains.extend(ipt.chains);
            rs.tool = "nftables with iptables-nft rules (read with iptables-save)".to_string();
            (Some(rs), tried)
        }
        Some(rs) if rs.chains.values().any(|c| c.hook_input) || !ipt_ok => (Some(rs), tried),
        // nft shows no input filter: legacy iptables rules, if any, are in iptables-save.
        Some(_) | None if ipt_ok => (Some(ipt), tried),
        other => (other, tried),
    }
}

fn judgement_json(j: &Judgement) -> Value {
    json!({
        "verdict": j.verdict,
        "decided_by": j.decided_by,
        "allowed_sources": j.allowed_sources,
        "uncertain": j.uncertain,
    })
}

/// The `firewall` section for a ruleset (or the reasons it could not be read).
/// `needed` says whether PostgreSQL listens on a non-loopback address, i.e. whether the
/// filter matters: when it does not and the ruleset is unreadable, the section says so
/// without being "not collected".
pub fn firewall_section(
    ruleset: Option<&Ruleset>,
    tried: &[String],
    port: u16,
    needed: bool,
    hint: &str,
) -> Section {
    let Some(rs) = ruleset else {
        let why = if tried.is_empty() {
            "no firewall tool found".to_string()
        } else {
            tried.join("; ")
        };
        if needed {
            return Section::missing(format!("cannot read the host firewall: {why} ({hint})"));
        }
        return Section::ok(json!({
            "tool": null,
            "read": false,
            "needed": false,
            "reason": format!("PostgreSQL listens on loopback only; the firewall was not readable: {why} ({hint})"),
            "port": port,
        }));
    };
    let v4 = judge(rs, port, false);
    let v6 = judge(rs, port, true);
    let chains: Vec<Value> = rs
        .chains
        .values()
        .filter(|c| c.hook_input)
        .map(|c| json!({"name": c.name, "policy": verdict_word(&c.policy), "rules": c.rules.len()}))
        .collect();
    let port_rules: Vec<String> = rs
        .chains
        .values()
        .flat_map(|c| c.rules.iter())
        .filter(|r| r.port_matches(port) != Some(false) && r.dports.is_some())
        .map(|r| r.text.clone())
        .collect();
    let data = json!({
        "tool": rs.tool,
        "version": rs.version,
        "read": true,
        "needed": needed,
        "tried": tried,
        "port": port,
        "input_chains": chains,
        "ipv4": judgement_json(&v4),
        "ipv6": judgement_json(&v6),
        "port_rules": port_rules,
    });
    let unsure: Vec<String> = [("IPv4", &v4), ("IPv6", &v6)]
        .iter()
        .filter(|(_, j)| {
            j.verdict == "unknown" || (!j.uncertain.is_empty() && j.verdict == "accept")
        })
        .map(|(f, j)| {
            format!(
                "{f}: cannot tell whether {} accepts port {port}: {}",
                rs.tool,
                j.uncertain.join("; ")
            )
        })
        .collect();
    if needed && !unsure.is_empty() {
        Section::partial(data, unsure.join("; "))
    } else {
        Section::ok(data)
    }
}

/// Collect `sockets` and `firewall` for a local server, from what the SQL collector found
/// (the port and the data directory).
pub fn collect(facts: &Facts, a: &dyn HostAccess) -> (Section, Section) {
    let settings = facts.section("settings").filter(|s| s.collected);
    let port = settings
        .and_then(|s| s.data.get("port"))
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else {
        let why = "the server's port is unknown (settings not collected)";
        return (Section::missing(why), Section::missing(why));
    };
    let data_directory = facts
        .section("server")
        .and_then(|s| s.data.get("data_directory"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (sockets, kept) = sockets_section(a, port, data_directory.as_deref());
    if !sockets.collected {
        let why = format!(
            "the listening sockets are unknown: {}",
            sockets.reason.clone().unwrap_or_default()
        );
        return (sockets, Section::missing(why));
    }
    let needed = kept.iter().any(|l| !l.loopback());
    let (rs, tried) = read_firewall(a);
    let mut firewall = firewall_section(rs.as_ref(), &tried, port, needed, &firewall_hint(a));
    if let Value::Object(m) = &mut firewall.data {
        m.insert("source".into(), json!(a.source()));
    }
    match a.failure() {
        Some(why) => (Section::missing(why.clone()), Section::missing(why)),
        None => (sockets, firewall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 41234 1 0000000000000000 100 0 0 10 0\n   1: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 41235 1 0000000000000000 100 0 0 10 0\n   2: 0100007F:1538 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   106        0 0 1 0000000000000000 100 0 0 10 0\n";
        let l = parse_proc_net_tcp(v4, false);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].address, "127.0.0.1");
        assert_eq!(l[0].port, 5432);
        assert!(l[0].loopback());
        assert_eq!(l[1].address, "0.0.0.0");
        assert!(l[1].wildcard() && !l[1].loopback());
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 51234 1 0000000000000000 100 0 0 10 0\n   1: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 51235 1 0000000000000000 100 0 0 10 0\n";
        let l = parse_proc_net_tcp(v6, true);
        assert_eq!(l[0].address, "::1");
        assert!(l[0].loopback());
        assert_eq!(l[1].address, "::");
        assert_eq!(display_socket(&l[1]), "[::]:5432");
    }

    // Captured with iptables-save v1.8.9 (nf_tables) inside `unshare -n`, after
    // iptables -P INPUT DROP; -N pg; -A INPUT -i lo -j ACCEPT; … (Debian 12 iptables).
    const IPT: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 16:38:45 2026\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:pg - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 5432 -j pg\n-A INPUT -p tcp -m multiport --dports 22,8000:8100 -j ACCEPT\n-A pg -s 10.0.0.0/8 -j ACCEPT\n-A pg -s 192.168.1.0/24 -m comment --comment \"db clients\" -j ACCEPT\nCOMMIT\n# Completed on Wed Nov 25 16:38:45 2026\n";

    #[test]
    fn iptables_source_restricted_port() {
        let mut rs = Ruleset::default();
        parse_iptables_save(IPT, false, &mut rs);
        let j = judge(&rs, 5432, false);
        assert_eq!(j.verdict, "drop", "{j:?}");
        assert_eq!(j.allowed_sources, ["10.0.0.0/8", "192.168.1.0/24"]);
        assert!(j.uncertain.is_empty(), "{j:?}");
        // Port 8050 is in the multiport range: accepted from anywhere.
        let j = judge(&rs, 8050, false);
        assert_eq!(j.verdict, "accept");
        assert!(j.decided_by.contains("--dports 22,8000:8100"), "{j:?}");
        // No ip6tables rules were read: IPv6 has no filter.
        assert_eq!(judge(&rs, 5432, true).verdict, "accept");
    }

    #[test]
    fn iptables_policy_accept_with_a_late_drop() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.1.0.0/16 -p tcp --dport 5432 -j ACCEPT\n-A INPUT -p tcp --dport 5432 -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        let mut rs = Ruleset::default();
        parse_iptables_save(text, false, &mut rs);
        let j = judge(&rs, 5432, false);
        assert_eq!(j.verdict, "reject", "{j:?}");
        assert_eq!(j.allowed_sources, ["10.1.0.0/16"]);
        // Unmodelled options make a matching accept uncertain, never a silent decision.
        let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 5432 -m recent --rcheck -j ACCEPT\nCOMMIT\n";
        let mut rs = Ruleset::default();
        parse_iptables_save(text, false, &mut rs);
        let j = judge(&rs, 5432, false);
        assert_eq!(j.verdict, "unknown", "{j:?}");
        assert_eq!(j.uncertain.len(), 1);
    }

    #[test]
    fn shell_words_keep_quoted_comments() {
        assert_eq!(
            shell_words("INPUT -m comment --comment \"a b\" -j ACCEPT"),
            ["INPUT", "-m", "comment", "--comment", "a b", "-j", "ACCEPT"]
        );
    }
}

#[cfg(test)]
mod nft_tests {
    use super::*;

    // `nft -j list ruleset` inside `unshare -n` after the iptables commands of IPT above
    // (Debian 12: nftables 1.0.6, iptables 1.8.9 nf_tables backend).
    const IPT_NFT: &str = include_str!("../../tests/fixtures/network/iptables-nft.json");

    #[test]
    fn iptables_nft_rules_are_opaque_in_nft_json() {
        let rs = match parse_nft_json(IPT_NFT) {
            Ok(rs) => rs,
            Err(e) => panic!("{e}"),
        };
        assert!(uses_xt(&rs));
        let j = judge(&rs, 5432, false);
        // The conntrack accept cannot be read from the xt match: never a silent verdict.
        assert_eq!(j.verdict, "unknown", "{j:?}");
        assert_eq!(j.allowed_sources, ["10.0.0.0/8"]);
        assert!(!j.uncertain.is_empty());
    }
}
