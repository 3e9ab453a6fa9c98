//! `--host ssh://…`: the `host`, `sockets` and `firewall` sections read over SSH are the
//! local ones (same facts, same rule statuses), and an SSH that fails only costs those
//! three sections, with the reason.
//!
//! The rig: this test's own sshd on 127.0.0.1 (a free port, its own host key and
//! authorized keys, as scripts/repo-host does), a key for root and one for an unprivileged
//! system user without sudo, and the shared hardened PostgreSQL 18 server. The sshd is
//! stopped at exit (an atexit handler), also when a test fails. Needs root (sshd, a system
//! user) and openssh-server/openssh-client, as .ci/run installs.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The unprivileged SSH user (no sudo, no access to the postmaster's /proc files).
const USER: &str = "pgready-ssh";

struct Rig {
    dir: PathBuf,
    port: u16,
}

static RIG_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn teardown() {
    // No panics here (this runs inside exit()).
    if let Some(dir) = RIG_DIR.get() {
        if let Ok(pid) = std::fs::read_to_string(dir.join("sshd.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: kill(2) on the pid of the sshd this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    common::ok(out, cmd)
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(setup)
}

fn setup() -> Rig {
    assert!(
        common::is_root(),
        "tests/host_ssh.rs needs root (its own sshd, a system user): run it as CI does, through .ci/run"
    );
    for p in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing (apt-get install openssh-server openssh-client)"
        );
    }
    let dir = PathBuf::from(format!("/var/tmp/pgready-host-ssh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let _ = RIG_DIR.set(dir.clone());
    // SAFETY: `teardown` is an `extern "C" fn()` that never unwinds.
    assert_eq!(unsafe { libc::atexit(teardown) }, 0, "atexit failed");
    let d = |f: &str| dir.join(f).display().to_string();

    // The unprivileged user: a shell, and "*" as password (key logins only), like
    // scripts/repo-host's `user`.
    let home = d("home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{home}: {e}"));
    if !Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(
            "useradd",
            &[
                "--system",
                "--user-group",
                "--home-dir",
                &home,
                "--shell",
                "/bin/sh",
                USER,
            ],
        );
    }
    run(
        "usermod",
        &[
            "--shell",
            "/bin/sh",
            "--home",
            &home,
            "--password",
            "*",
            USER,
        ],
    );

    let mut authorized = String::new();
    for k in ["id_root", "id_user", "id_other"] {
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", &d(k)],
        );
        if k != "id_other" {
            authorized
                .push_str(&std::fs::read_to_string(d(&format!("{k}.pub"))).unwrap_or_default());
        }
    }
    std::fs::write(d("authorized_keys"), authorized).unwrap_or_else(|e| panic!("{e}"));
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", &d("host_key")],
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"));
    let conf = format!(
        "ListenAddress 127.0.0.1:{port}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
         AllowUsers root {USER}\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nX11Forwarding no\n\
         AllowTcpForwarding no\nPrintMotd no\nLogLevel ERROR\n",
        d("host_key"),
        d("sshd.pid"),
        d("authorized_keys"),
    );
    std::fs::write(d("sshd_config"), conf).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("/run/sshd: {e}"));
    run(
        "/usr/sbin/sshd",
        &["-f", &d("sshd_config"), "-E", &d("sshd.log")],
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd did not listen on {port}: {}",
            std::fs::read_to_string(d("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Rig { dir, port }
}

impl Rig {
    /// The `--host` and `--ssh-option` flags for `user` with the key `key`.
    fn flags(&self, user: &str, key: &str) -> Vec<String> {
        let mut v = vec![
            "--host".to_string(),
            format!("ssh://{user}@127.0.0.1:{}", self.port),
        ];
        for o in [
            format!("IdentityFile={}", self.dir.join(key).display()),
            "IdentitiesOnly=yes".to_string(),
            "UserKnownHostsFile=/dev/null".to_string(),
            "StrictHostKeyChecking=no".to_string(),
        ] {
            v.push("--ssh-option".to_string());
            v.push(o);
        }
        v
    }
}

fn pgready(args: &[String]) -> Output {
    let pg = common::cluster("pg18-hardened");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pg.pgready(&args)
}

fn facts(extra: &[String]) -> Value {
    let pg = common::cluster("pg18-hardened");
    let mut args = vec!["facts".to_string(), pg.uri.clone()];
    args.extend_from_slice(extra);
    let out = common::ok(pgready(&args), "pgready facts");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("facts are not JSON: {e}\n{out}"))
}

fn audit(extra: &[String]) -> (Value, Option<i32>) {
    let pg = common::cluster("pg18-hardened");
    let mut args = vec![
        "audit".to_string(),
        pg.uri.clone(),
        "--format".to_string(),
        "json".to_string(),
    ];
    args.extend_from_slice(extra);
    let out = pgready(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "report is not JSON: {e}\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code())
}

fn section<'a>(facts: &'a Value, name: &str) -> &'a Value {
    &facts["sections"][name]
}

/// Values that change between two reads a second apart: (key, tolerance).
const VOLATILE: &[(&str, f64)] = &[
    ("avail_bytes", 512.0 * 1024.0 * 1024.0),
    ("used_pct", 1.0),
    ("inodes_free", 10_000.0),
    ("inodes_used_pct", 1.0),
    ("mem_available_bytes", 2.0 * 1024.0 * 1024.0 * 1024.0),
    ("committed_as_bytes", 2.0 * 1024.0 * 1024.0 * 1024.0),
    ("swap_free_bytes", 256.0 * 1024.0 * 1024.0),
    ("huge_pages_free", 1_000_000.0),
    ("huge_pages_rsvd", 1_000_000.0),
];

/// Compare `a` (local) and `b` (SSH): equal except `source`/`*_source` and the volatile
/// numbers within their tolerance. Differences are pushed to `diffs` with their path.
fn compare(path: &str, a: &Value, b: &Value, diffs: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if k.ends_with("_source") || (k == "source" && path.ends_with(".data")) {
                    continue;
                }
                let (va, vb) = (
                    &x.get(k).cloned().unwrap_or(Value::Null),
                    &y.get(k).cloned().unwrap_or(Value::Null),
                );
                if let Some((_, tol)) = VOLATILE.iter().find(|(v, _)| v == k) {
                    match (va.as_f64(), vb.as_f64()) {
                        (Some(p), Some(q)) if (p - q).abs() <= *tol => continue,
                        (None, None) if va == vb => continue,
                        _ => {}
                    }
                    diffs.push(format!("{path}.{k}: {va} vs {vb}"));
                    continue;
                }
                compare(&format!("{path}.{k}"), va, vb, diffs);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                compare(&format!("{path}[{i}]"), p, q, diffs);
            }
        }
        _ if a == b => {}
        _ => diffs.push(format!("{path}: {a} vs {b}")),
    }
}

/// The `*_source` strings of a section, with their path.
fn sources(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x {
                    Value::String(s)
                        if k.ends_with("_source") || (k == "source" && path.ends_with(".data")) =>
                    {
                        out.push((format!("{path}.{k}"), s.clone()));
                    }
                    _ => sources(x, &format!("{path}.{k}"), out),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                sources(x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

const HOST_SECTIONS: [&str; 3] = ["host", "sockets", "firewall"];

#[test]
fn ssh_host_facts_equal_the_local_ones() {
    let rig = rig();
    let local = facts(&[]);
    let started = Instant::now();
    let ssh = facts(&rig.flags("root", "id_root"));
    eprintln!("facts over SSH took {:?}", started.elapsed());
    let origin = format!("ssh://root@127.0.0.1:{}", rig.port);
    for name in HOST_SECTIONS {
        let (l, s) = (section(&local, name), section(&ssh, name));
        assert_eq!(l["collected"], Value::Bool(true), "local {name}: {l}");
        assert_eq!(s["collected"], Value::Bool(true), "SSH {name}: {s}");
        let mut diffs = Vec::new();
        compare(name, l, s, &mut diffs);
        assert!(diffs.is_empty(), "{name} differs:\n{}", diffs.join("\n"));
        // Every provenance says SSH; the local one says local.
        assert_eq!(s["data"]["source"], Value::String(origin.clone()), "{name}");
        assert_eq!(l["data"]["source"], "local", "{name}");
        let mut srcs = Vec::new();
        sources(s, name, &mut srcs);
        assert!(!srcs.is_empty(), "{name}: no source");
        for (p, v) in srcs {
            assert!(v.contains(&origin), "{p} = {v:?} does not say SSH");
        }
    }
    // Really read: the postmaster, its own sockets, the firewall.
    assert!(
        section(&ssh, "host")["data"]["postmaster"]["pid"].is_i64(),
        "{ssh}"
    );
    assert_eq!(section(&ssh, "sockets")["data"]["matched_by"], "postmaster");
    assert!(
        section(&ssh, "host")["data"]["mem_bytes"]
            .as_i64()
            .unwrap_or(0)
            > 0
    );
    // The context's RAM and CPUs come from it as they do locally.
    assert_eq!(
        section(&local, "context")["data"]["mem_bytes"],
        section(&ssh, "context")["data"]["mem_bytes"]
    );
}

/// Rule ids of the host rules (the host and firewall rule files).
fn host_rule_ids() -> Vec<String> {
    let pg = common::cluster("pg18-hardened");
    let out = common::ok(
        pg.pgready(&["rules", "list", "--format", "json"]),
        "rules list",
    );
    let rules: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    rules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["source"].as_str().is_some_and(|s| {
                s.starts_with("checks/configuration/host.toml")
                    || s.starts_with("checks/security/firewall.toml")
            })
        })
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn host_rules_judge_the_same_over_ssh() {
    let rig = rig();
    let ids = host_rule_ids();
    assert!(ids.len() >= 5, "{ids:?}");
    let (local, local_code) = audit(&[]);
    let (ssh, ssh_code) = audit(&rig.flags("root", "id_root"));
    assert_eq!(local_code, ssh_code);
    let mut judged = 0;
    for id in &ids {
        let (l, s) = (common::status(&local, id), common::status(&ssh, id));
        assert_eq!(
            l,
            s,
            "{id}: local {l}, SSH {s}: {}",
            common::finding(&ssh, id)
        );
        judged += usize::from(l == "pass" || l == "fail");
    }
    assert!(judged >= 3, "too few host rules judged: {judged}");
}

#[test]
fn a_wrong_key_costs_only_the_host_sections() {
    let rig = rig();
    let (good, good_code) = audit(&rig.flags("root", "id_root"));
    let (bad, bad_code) = audit(&rig.flags("root", "id_other"));
    assert_eq!(good_code, bad_code, "the exit code changed");
    assert!(matches!(bad_code, Some(0 | 1)), "{bad_code:?}");
    for name in HOST_SECTIONS {
        let s = &bad["sections"][name];
        assert_eq!(s["collected"], Value::Bool(false), "{name}: {s}");
        let reason = s["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("cannot reach 127.0.0.1:") && reason.contains("Permission denied"),
            "{name}: {reason}"
        );
        assert!(reason.contains("IdentityFile"), "{reason}");
    }
    // Every other section is as it was.
    let others = |r: &Value| -> Vec<String> {
        r["sections"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !HOST_SECTIONS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}: {}", v["collected"]))
            .collect()
    };
    assert_eq!(others(&good), others(&bad));
    // A finding that changed is a rule that needed the host facts: not evaluated with the
    // SSH failure as its reason.
    for f in bad["findings"].as_array().into_iter().flatten() {
        let id = f["rule_id"].as_str().unwrap_or("");
        if common::status(&good, id) != f["status"].as_str().unwrap_or("") {
            assert_eq!(f["status"], "not_evaluated", "{f}");
            let r = f["reason"].as_str().unwrap_or("");
            assert!(r.contains("cannot reach"), "{id}: {r}");
        }
    }
}

#[test]
fn a_malformed_host_is_bad_input() {
    let pg = common::cluster("pg18-hardened");
    for bad in [
        "db1",
        "ssh://root@",
        "ssh://db1:70000",
        "ssh://root:secret@db1",
    ] {
        let started = Instant::now();
        let out = pg.pgready(&["audit", &pg.uri, "--host", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("ssh://[user@]host[:port]"), "{bad}: {err}");
        assert!(!err.contains("secret"), "the password was printed: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{bad} took long"
        );
    }
    let out = pg.pgready(&[
        "facts",
        &pg.uri,
        "--host",
        "ssh://db1",
        "--ssh-option",
        "Port",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEY=VALUE"));
}

#[test]
fn an_unprivileged_ssh_user_cannot_read_the_firewall() {
    let rig = rig();
    let f = facts(&rig.flags(USER, "id_user"));
    let host = section(&f, "host");
    assert_eq!(host["collected"], Value::Bool(true), "{host}");
    // The postmaster's /proc files belong to its user: its fds cannot be listed, so the
    // sockets are matched by port, and the note says why.
    let sockets = section(&f, "sockets");
    assert_eq!(sockets["collected"], Value::Bool(true), "{sockets}");
    assert_eq!(sockets["data"]["matched_by"], "port", "{sockets}");
    assert!(
        sockets["data"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("Permission denied") && n.contains(USER)),
        "{sockets}"
    );
    let fw = section(&f, "firewall");
    eprintln!(
        "firewall over SSH as {USER}: {fw}\nsockets: {sockets}\nhost.postmaster_reason: {}",
        host["data"]["postmaster_reason"]
    );
    let reason = if fw["collected"] == Value::Bool(false) {
        fw["reason"].as_str().unwrap_or("").to_string()
    } else {
        // Loopback only: the filter does not matter, and the section says why it is unread.
        assert_eq!(fw["data"]["read"], Value::Bool(false), "{fw}");
        fw["data"]["reason"].as_str().unwrap_or("").to_string()
    };
    assert!(reason.contains("sudo"), "{reason}");
    if fw["collected"] == Value::Bool(false) {
        assert!(reason.contains("ssh as root"), "{reason}");
    }
}

#[test]
fn an_unprivileged_ssh_user_is_told_how_to_read_an_exposed_servers_firewall() {
    let rig = rig();
    // A server of this test's own that listens on every address: the firewall matters.
    let name = format!("host-ssh-open-{}", std::process::id());
    let uri = common::start_own(&name, 18, "default").unwrap_or_else(|e| panic!("{e}"));
    let stop = || {
        let _ = common::sandbox(&["stop", &name]);
    };
    let prepared = common::sandbox_ok(&["sql", &name, "ALTER SYSTEM SET listen_addresses = '*'"])
        .and_then(|_| common::sandbox_ok(&["restart", &name]));
    if let Err(e) = prepared {
        stop();
        panic!("{e}");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgready"));
    cmd.arg("facts").arg(&uri).args(rig.flags(USER, "id_user"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output();
    stop();
    let out = common::ok(out.unwrap_or_else(|e| panic!("{e}")), "pgready facts");
    let f: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let sockets = section(&f, "sockets");
    assert!(
        sockets["data"]["exposed"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{sockets}"
    );
    let fw = section(&f, "firewall");
    assert_eq!(fw["collected"], Value::Bool(false), "{fw}");
    let reason = fw["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("cannot read the host firewall")
            && reason.contains("sudo")
            && reason.contains("ssh as root")
            && reason.contains(USER),
        "{reason}"
    );
    // The other host facts are still read.
    assert_eq!(section(&f, "host")["collected"], Value::Bool(true));
}
