//! Integration-test harness: real PostgreSQL servers from `scripts/pg-sandbox`.
//!
//! ```ignore
//! mod common;
//!
//! #[test]
//! fn audits_the_hardened_server() {
//!     let pg = common::cluster("pg18-hardened");
//!     let out = pg.pgready(&["audit", &pg.uri, "--format", "json"]);
//!     assert!(out.status.code().is_some(), "{}", String::from_utf8_lossy(&out.stderr));
//! }
//! ```
//!
//! The first call to [`cluster`] starts every scenario cluster of [`SCENARIOS`] at once (one
//! thread each); they are shared by all the tests of this test binary and stopped when the
//! process exits (an `atexit` handler, plus the sandbox's owner-pid watchdog in case the process
//! is killed). Each test binary gets new clusters (`--fresh`), except that a cluster another
//! live test process is using (two `cargo test` at once) is shared, not made anew, and stays
//! up until the last of them exits. A cluster that could not be started makes every test that
//! asks for it panic with the sandbox's stderr: a test that needs a server fails, it never
//! skips.
//!
//! Treat the shared servers as read-only: a test that changes one (roles, settings,
//! databases) changes it for every other test of the binary. A test that needs to change a
//! server starts its own with [`sandbox`]`(["start", NAME, ...])`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The shared clusters: name, PostgreSQL major, `scripts/pg-sandbox` scenario.
pub const SCENARIOS: &[(&str, u32, &str)] = &[
    ("pg18-default", 18, "default"),
    ("pg18-hardened", 18, "hardened"),
    ("pg17-default", 17, "default"),
    ("pg17-hardened", 17, "hardened"),
];

/// A running sandbox cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Cluster name, e.g. `pg18-hardened` (major and scenario).
    pub name: String,
    /// PostgreSQL major version of the server.
    pub major: u32,
    /// `default` (initdb's defaults: trust, no TLS) or `hardened`.
    pub scenario: String,
    /// Connection URI: `postgresql://postgres@127.0.0.1:PORT/postgres` (default), or
    /// `postgresql://postgres@localhost:PORT/postgres?sslmode=verify-full&sslrootcert=DIR/ca.crt`.
    pub uri: String,
    /// The password of role `postgres` (hardened only; default clusters trust loopback).
    pub password: Option<String>,
    /// The cluster folder: `data/`, `ca.crt`, `archive/`, `pgready.toml` (hardened), logs.
    pub dir: PathBuf,
}

impl Cluster {
    /// TCP port of the server (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        let after = self
            .uri
            .rsplit_once('@')
            .and_then(|(_, rest)| rest.split_once(':'))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no port in {}", self.uri));
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|e| panic!("bad port in {}: {e}", self.uri))
    }

    /// The evidence file of the scenario, if it has one (hardened).
    pub fn evidence_file(&self) -> Option<PathBuf> {
        let f = self.dir.join("pgready.toml");
        f.is_file().then_some(f)
    }

    /// Runs the real `pgready` binary with `args` and waits for it.
    ///
    /// Environment: every `PG*` variable of the test process is removed (so neither the
    /// developer's PGHOST nor PGREADY_* settings leak in), `PGPASSWORD` is set when the
    /// cluster has a password, and `NO_COLOR=1`. The working directory is the cluster
    /// folder, so the hardened scenario's `pgready.toml` (evidence) is picked up as
    /// `./pgready.toml`; use absolute paths in `args`.
    pub fn pgready(&self, args: &[&str]) -> Output {
        run_pgready(&self.dir, self.password.as_deref(), args)
    }
}

/// The shared cluster `name` (one of [`SCENARIOS`]), started on first use.
///
/// Panics if `name` is unknown or its cluster could not be started (with the sandbox's
/// stderr in the message).
pub fn cluster(name: &str) -> &'static Cluster {
    static CLUSTERS: OnceLock<HashMap<&'static str, Result<Cluster, String>>> = OnceLock::new();
    let all = CLUSTERS.get_or_init(start_all);
    match all.get(name) {
        Some(Ok(c)) => c,
        Some(Err(e)) => panic!("{e}"),
        None => panic!(
            "no sandbox cluster named {name:?}; the harness knows {:?}",
            SCENARIOS.iter().map(|s| s.0).collect::<Vec<_>>()
        ),
    }
}

/// Path of `scripts/pg-sandbox`.
pub fn sandbox_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-sandbox")
}

/// The folder that holds the sandbox clusters (`PGREADY_SANDBOX_DIR`, default `.sandbox`).
pub fn sandbox_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("PGREADY_SANDBOX_DIR") {
        Some(d) if !d.is_empty() => root.join(d), // join keeps an absolute path as it is
        _ => root.join(".sandbox"),
    }
}

/// Runs `scripts/pg-sandbox ARGS` (with the same sandbox folder as the harness).
pub fn sandbox(args: &[&str]) -> Output {
    sandbox_env(args, &[])
}

/// [`sandbox`] with extra environment variables (e.g. `PG_BIN` for Debian's binaries, or
/// `PGREADY_SANDBOX_USER` for a cluster run by another account).
pub fn sandbox_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sandbox_script());
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PGREADY_SANDBOX_DIR", sandbox_dir())
        // The cluster names promise a major: binaries from PG_BIN would break that.
        .env_remove("PG_BIN")
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", sandbox_script().display()))
}

fn clean_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

fn start_all() -> HashMap<&'static str, Result<Cluster, String>> {
    // Registered before anything starts, so that even a half-failed start is cleaned up.
    // SAFETY: `stop_all` is an `extern "C" fn()` that never unwinds.
    let rc = unsafe { libc::atexit(stop_all) };
    assert_eq!(rc, 0, "atexit failed");
    let owner = std::process::id().to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = SCENARIOS
            .iter()
            .map(|&(name, major, scenario)| {
                let owner = owner.as_str();
                (
                    name,
                    s.spawn(move || start_one(name, major, scenario, owner)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err(format!("starting {name} panicked")));
                (name, result)
            })
            .collect()
    })
}

fn start_one(name: &str, major: u32, scenario: &str, owner: &str) -> Result<Cluster, String> {
    let major_s = major.to_string();
    let out = sandbox(&[
        "start",
        name,
        "--major",
        &major_s,
        "--scenario",
        scenario,
        "--owner-pid",
        owner,
        // Every test binary starts from a known state: a new cluster, current evidence.
        "--fresh",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "scripts/pg-sandbox start {name} --major {major} --scenario {scenario} failed ({}):\n{stderr}",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let uri = stdout.trim().to_string();
    if uri.lines().count() != 1 || !uri.starts_with("postgresql://") {
        return Err(format!(
            "scripts/pg-sandbox start {name} printed no URI on stdout:\nstdout: {stdout}\nstderr: {stderr}"
        ));
    }
    let dir = sandbox_dir().join(name);
    let password = match std::fs::read_to_string(dir.join("password")) {
        Ok(p) => Some(p.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(format!(
                "cannot read {}: {e}",
                dir.join("password").display()
            ));
        }
    };
    if scenario == "hardened" && password.is_none() {
        return Err(format!(
            "{name}: the hardened scenario wrote no password file"
        ));
    }
    Ok(Cluster {
        name: name.to_string(),
        major,
        scenario: scenario.to_string(),
        uri,
        password,
        dir,
    })
}

/// atexit handler: stop every scenario cluster (idempotent for those that never started),
/// unless another live test process shares it (`pg-sandbox release` stops a cluster when its
/// last owner is done, so two `cargo test` runs at once do not pull servers from each other).
extern "C" fn stop_all() {
    let names: Vec<&str> = SCENARIOS.iter().map(|s| s.0).collect();
    let mut cmd = Command::new(sandbox_script());
    cmd.arg("release")
        .args(&names)
        .arg("--owner-pid")
        .arg(std::process::id().to_string())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PGREADY_SANDBOX_DIR", sandbox_dir())
        .stdin(Stdio::null());
    // Quiet unless it fails: cargo's summary line should stay the last thing printed.
    // No panics here (this runs inside exit()): write errors are ignored.
    let report = match cmd.output() {
        Ok(out) if out.status.success() => return,
        Ok(out) => format!(
            "pg-sandbox release {} failed ({}):\n{}",
            names.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("cannot run pg-sandbox release: {e}"),
    };
    let _ = writeln!(std::io::stderr(), "{report}");
}

/// Runs `scripts/pg-sandbox ARGS`; its stdout (trimmed) on success, else an error with its stderr.
pub fn sandbox_ok(args: &[&str]) -> Result<String, String> {
    let out = sandbox(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "pg-sandbox {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Starts a new cluster of a test's own (`--fresh`), owned by this test process so that the
/// sandbox's watchdog stops it when the process exits; returns its URI.
pub fn start_own(name: &str, major: u32, scenario: &str) -> Result<String, String> {
    let owner = std::process::id().to_string();
    let major = major.to_string();
    sandbox_ok(&[
        "start",
        name,
        "--major",
        &major,
        "--scenario",
        scenario,
        "--owner-pid",
        &owner,
        "--fresh",
    ])
}

/// The finding of `rule` in a JSON report (panics, naming the rule, when there is none).
pub fn finding<'a>(report: &'a serde_json::Value, rule: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["rule_id"] == rule))
        .unwrap_or_else(|| panic!("no finding {rule} in the report"))
}

/// The status (`pass`, `fail`, `not_evaluated`, …) of `rule` in a JSON report.
pub fn status(report: &serde_json::Value, rule: &str) -> String {
    finding(report, rule)["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// True when the tests run as root (CI does: servers then run as unprivileged accounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The stdout of a command that must have succeeded; else a panic naming `what` with its
/// status, stdout and stderr.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `sql` (a query runner on the cluster) until no completed WAL segment waits for
/// the archiver (`pg_ls_archive_statusdir()`, PostgreSQL 12+, lists archive_status/*.ready);
/// panics after 30 s.
pub fn wait_archived(sql: impl Fn(&str) -> String) {
    for _ in 0..150 {
        let n = sql("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'");
        if n.trim() == "0" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("WAL not archived within 30 s");
}

/// The newest evidence entry of the pgready.toml `cfg` (as `pgready restore-test` appends
/// it): item B3, a summary containing `summary_has`, RTO under 10 min and RPO under
/// `max_rpo_s`.
pub fn recorded_b3(cfg: &Path, summary_has: &str, max_rpo_s: f64) -> pgready::config::Evidence {
    let text = std::fs::read_to_string(cfg)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", cfg.display()));
    let c = pgready::config::Config::parse(cfg, &text).unwrap_or_else(|e| panic!("{e}"));
    let e = c
        .evidence
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no evidence in {text}"));
    assert_eq!(e.item, "B3", "{text}");
    assert_eq!(e.result, pgready::config::EvidenceResult::Pass, "{text}");
    assert!(e.summary.contains(summary_has), "{}", e.summary);
    let rto = e.metrics.get("rto_s").copied().unwrap_or(-1.0);
    let rpo = e.metrics.get("rpo_s").copied().unwrap_or(-1.0);
    assert!((0.0..600.0).contains(&rto), "rto {rto}");
    assert!((0.0..max_rpo_s).contains(&rpo), "rpo {rpo}");
    e
}

/// Panics naming the package to install when one of `tools` (what, path) is missing: a
/// test that needs a real companion fails, it never skips.
pub fn require(tools: &[(&str, &str)]) {
    for (what, path) in tools {
        assert!(
            Path::new(path).exists(),
            "{what} is needed: {path} is missing"
        );
    }
}

/// Runs the real `pgready` binary with `args` in `cwd`: every `PG*` variable of the test
/// process removed, `PGPASSWORD` set to `password` when given, `NO_COLOR=1`.
pub fn run_pgready(cwd: &Path, password: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgready"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    clean_pg_env(&mut cmd);
    cmd.env("NO_COLOR", "1");
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", env!("CARGO_BIN_EXE_pgready")))
}

/// The JSON report on stdout of a `pgready audit --format json` run (panics with stdout
/// and stderr when there is none).
pub fn json_report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
