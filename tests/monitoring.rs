//! The monitoring pillar (M1, M2, M4, M5) and connection pooling (C9) against real
//! servers (PostgreSQL 18 and 16) and the real companions of Debian: postgres_exporter,
//! node_exporter, Prometheus/promtool and PgBouncer, each on a free loopback port and
//! stopped when the test ends (tests/stack).

mod common;
mod stack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use common::{finding, status};

/// A sandbox cluster of this test binary.
struct Pg {
    name: String,
    major: u32,
    uri: String,
    password: Option<String>,
    dir: PathBuf,
}

impl Pg {
    fn port(&self) -> u16 {
        let after = self.uri.rsplit_once('@').map_or("", |(_, r)| r);
        let digits: String = after
            .split_once(':')
            .map_or("", |(_, r)| r)
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|e| panic!("port of {}: {e}", self.uri))
    }

    fn dsn(&self) -> stack::Dsn {
        stack::Dsn::from_uri(&self.uri, self.password.as_deref())
    }

    /// Runs pgready (PG* variables of the test process removed; PGPASSWORD set).
    fn pgready(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgready"));
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1");
        if let Some(pw) = &self.password {
            cmd.env("PGPASSWORD", pw);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run pgready: {e}"))
    }

    /// The JSON report, with the facts it judged under `"facts"` (--save-facts).
    fn audit(&self, extra: &[&str]) -> Value {
        let tmp = tempdir();
        let facts_file = tmp.path().join("facts.json").display().to_string();
        let mut args = vec![
            "audit",
            self.uri.as_str(),
            "--format",
            "json",
            "--save-facts",
            facts_file.as_str(),
        ];
        args.extend_from_slice(extra);
        let out = self.pgready(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "pgready {args:?} exited {:?}:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
        let facts = std::fs::read_to_string(&facts_file).unwrap_or_else(|e| panic!("{e}"));
        r["facts"] = serde_json::from_str(&facts).unwrap_or_else(|e| panic!("{e}"));
        r
    }
}

/// The clusters of this binary: per major, a hardened one (the complete monitoring setup)
/// and a default one with pg_stat_statements preloaded but not created and
/// max_connections = 5000 (no pooler).
fn clusters() -> &'static HashMap<String, Result<Pg, String>> {
    static ALL: OnceLock<HashMap<String, Result<Pg, String>>> = OnceLock::new();
    ALL.get_or_init(|| {
        let plan = [
            ("mon18-hardened", 18, "hardened"),
            ("mon16-hardened", 16, "hardened"),
            ("mon18-pgss", 18, "default"),
            ("mon16-pgss", 16, "default"),
        ];
        std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .iter()
                .map(|&(name, major, scenario)| {
                    (name, s.spawn(move || start(name, major, scenario)))
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(format!("starting {name} panicked")));
                    (name.to_string(), r)
                })
                .collect()
        })
    })
}

fn cluster(name: &str) -> &'static Pg {
    match clusters().get(name) {
        Some(Ok(pg)) => pg,
        Some(Err(e)) => panic!("{e}"),
        None => panic!("no cluster {name}"),
    }
}

fn start(name: &str, major: u32, scenario: &str) -> Result<Pg, String> {
    let uri = common::start_own(name, major, scenario)?;
    if scenario == "default" {
        // pg_stat_statements preloaded but never created; far too many connections allowed.
        common::sandbox_ok(&[
            "sql",
            name,
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        ])?;
        common::sandbox_ok(&["sql", name, "ALTER SYSTEM SET max_connections = 5000"])?;
        common::sandbox_ok(&["restart", name])?;
    }
    let dir = common::sandbox_dir().join(name);
    let password = std::fs::read_to_string(dir.join("password"))
        .ok()
        .map(|p| p.trim().to_string());
    Ok(Pg {
        name: name.to_string(),
        major,
        uri,
        password,
        dir,
    })
}

fn findings(r: &Value) -> &Vec<Value> {
    r["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {r}"))
}

fn offenders(r: &Value, id: &str) -> Vec<String> {
    finding(r, id)["offenders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn rules_dir(set: &str) -> String {
    stack::data_dir().join(set).display().to_string()
}

/// The hardened scenario's evidence file plus the site's backup metric name.
fn config_with_backup_metric(pg: &Pg, dir: &Path) -> String {
    let mut text = std::fs::read_to_string(pg.dir.join("pgready.toml")).unwrap_or_default();
    text.push_str(
        "\n[monitoring.alert_metrics]\nbackup_age = [\"backup_last_success_timestamp_seconds\"]\n",
    );
    let file = dir.join("pgready.toml");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    file.display().to_string()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn promtool_accepts_the_test_rule_files() {
    for set in ["complete", "missing", "stale"] {
        let files: Vec<PathBuf> = std::fs::read_dir(stack::data_dir().join(set))
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(!files.is_empty(), "{set}");
        stack::promtool_check(&files);
    }
}

/// A complete setup — postgres_exporter with the collectors the alerts need, node_exporter,
/// a complete alert set, the evidence for what no scrape shows — passes every monitoring rule.
fn complete_setup_passes(name: &str) {
    let pg = cluster(name);
    let tmp = tempdir();
    // Debian's 0.11.1 fails its bgwriter collector on 17+ (checkpoint columns moved).
    let exporter = stack::postgres_exporter(&pg.dsn(), true, pg.major < 17, tmp.path());
    let node = stack::node_exporter(tmp.path());
    let config = config_with_backup_metric(pg, tmp.path());
    let exporter_url = format!("http://127.0.0.1:{}/metrics", exporter.port);
    let node_url = format!("http://127.0.0.1:{}/metrics", node.port);
    let rules = rules_dir("complete");
    let r = pg.audit(&[
        "--config",
        &config,
        "--exporter",
        &exporter_url,
        "--node-exporter",
        &node_url,
        "--prometheus-rules",
        &rules,
    ]);
    let bad: Vec<String> = findings(&r)
        .iter()
        .filter(|f| {
            f["rule_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("mon."))
        })
        // M8 is the runbook folder's (docs section): not part of this setup.
        .filter(|f| f["rule_id"] != "mon.runbook")
        .filter(|f| f["status"] != "pass")
        .map(|f| {
            format!(
                "{} {} {} {}",
                f["rule_id"], f["status"], f["actual"], f["reason"]
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: monitoring rules not passing:\n{}",
        bad.join("\n")
    );
    assert_eq!(status(&r, "cfg.pool.needed"), "pass");
    let exp = &r["facts"]["sections"]["exporter"];
    assert_eq!(exp["collected"], true, "{exp}");
    assert_eq!(exp["data"]["version"], "0.11.1", "{exp}");
    assert_eq!(exp["data"]["pg_up"], 1);
    let alerts = &r["facts"]["sections"]["alerts"];
    assert!(
        alerts["partial"].is_null() || alerts["partial"] == false,
        "{alerts}"
    );
    drop(exporter);
    drop(node);
}

#[test]
fn pg18_complete_monitoring_setup_passes() {
    complete_setup_passes("mon18-hardened");
}

#[test]
fn pg16_complete_monitoring_setup_passes() {
    complete_setup_passes("mon16-hardened");
}

/// An alert set without most cases, and one using names the exporter does not emit: the
/// findings name each missing case and each stale metric, with what replaced it.
fn incomplete_sets_name_what_is_missing(name: &str) {
    let pg = cluster(name);
    let tmp = tempdir();
    // As installed: default collectors, no custom queries.
    let exporter = stack::postgres_exporter(&pg.dsn(), false, true, tmp.path());
    let url = format!("http://127.0.0.1:{}/metrics", exporter.port);

    let missing = rules_dir("missing");
    let r = pg.audit(&["--exporter", &url, "--prometheus-rules", &missing]);
    assert_eq!(status(&r, "mon.alerts.critical_coverage"), "fail");
    let off = offenders(&r, "mon.alerts.critical_coverage");
    for case in [
        "replication lag or broken standby",
        "disk space",
        "transaction ID wraparound",
        "WAL archiving failing",
        "backup too old",
        "long-running transactions",
        "deadlocks",
    ] {
        assert!(
            off.iter()
                .any(|o| o.starts_with(case) && o.ends_with(": no alert rule")),
            "{case} not named in {off:#?}"
        );
    }
    assert_eq!(off.len(), 7, "{off:#?}");

    let stale = rules_dir("stale");
    let r = pg.audit(&["--exporter", &url, "--prometheus-rules", &stale]);
    assert_eq!(status(&r, "mon.alerts.metrics_exist"), "fail");
    let off = offenders(&r, "mon.alerts.metrics_exist");
    let named = |metric: &str, hint: &str| {
        assert!(
            off.iter()
                .any(|o| o.starts_with(&format!("{metric} (")) && o.contains(hint)),
            "{metric} with {hint:?} not in {off:#?}"
        );
    };
    named("pg_replication_lag", "pg_replication_lag_seconds");
    named("pg_stat_bgwriter_checkpoints_timed", "pg_stat_checkpointer");
    named("pg_database_wraparound_age_datfrozenxid_seconds", "0.14.0");
    named("pg_replication_slot_wal_status", "0.16.0");
    // A Pushgateway/pgbackrest_exporter name pgready was not pointed at: unverified, not stale.
    assert!(
        !off.iter().any(|o| o.starts_with("pgbackrest_")),
        "{off:#?}"
    );
    let unverified = r["facts"]["sections"]["alerts"]["data"]["unverified_metrics"].to_string();
    assert!(
        unverified.contains("pgbackrest_backup_since_last_completion_seconds"),
        "{unverified}"
    );
    assert_eq!(status(&r, "mon.alerts.critical_coverage"), "fail");
    let off = offenders(&r, "mon.alerts.critical_coverage");
    assert!(
        off.iter()
            .any(|o| o.starts_with("replication lag or broken standby: only alerts")),
        "{off:#?}"
    );
    assert!(
        off.iter()
            .any(|o| o.starts_with("transaction ID wraparound: only alerts")),
        "{off:#?}"
    );
    assert_eq!(status(&r, "mon.alerts.severity_routing"), "fail");
    assert!(
        offenders(&r, "mon.alerts.severity_routing")
            .iter()
            .any(|o| o == "instance down: PostgresDown has severity warning")
    );
    // The exporter as installed lacks the wraparound metric; on 17+ its bgwriter collector fails.
    assert_eq!(status(&r, "mon.exporter.collectors"), "fail");
    let off = offenders(&r, "mon.exporter.collectors");
    assert!(
        off.contains(&"pg_database_wraparound_age_datfrozenxid_seconds is not exposed".to_string()),
        "{off:#?}"
    );
    if pg.major >= 17 {
        assert!(
            off.iter()
                .any(|o| o.starts_with("collector bgwriter fails")),
            "{off:#?}"
        );
    }
    // No node_exporter given: its rule is not evaluated, with the reason.
    let node = finding(&r, "mon.exporter.node");
    assert_eq!(node["status"], "not_evaluated");
    assert!(
        node["reason"]
            .as_str()
            .unwrap_or("")
            .contains("--node-exporter URL"),
        "{node}"
    );
    drop(exporter);
}

#[test]
fn pg18_incomplete_alert_sets_name_what_is_missing() {
    incomplete_sets_name_what_is_missing("mon18-hardened");
}

#[test]
fn pg16_incomplete_alert_sets_name_what_is_missing() {
    incomplete_sets_name_what_is_missing("mon16-hardened");
}

/// The same complete set read from a running Prometheus (/api/v1/rules).
#[test]
fn pg18_rules_read_from_prometheus_api() {
    let pg = cluster("mon18-hardened");
    let tmp = tempdir();
    let exporter = stack::postgres_exporter(&pg.dsn(), true, false, tmp.path());
    let node = stack::node_exporter(tmp.path());
    let prom = stack::prometheus(&format!("{}/*.yml", rules_dir("complete")), tmp.path());
    let config = config_with_backup_metric(pg, tmp.path());
    let r = pg.audit(&[
        "--config",
        &config,
        "--exporter",
        &format!("http://127.0.0.1:{}/metrics", exporter.port),
        "--node-exporter",
        &format!("http://127.0.0.1:{}/metrics", node.port),
        "--prometheus",
        &format!("http://127.0.0.1:{}", prom.port),
    ]);
    let f = finding(&r, "mon.alerts.critical_coverage");
    assert_eq!(f["status"], "pass", "{f}");
    assert!(
        f["actual"].as_str().unwrap_or("").contains("/api/v1/rules"),
        "{f}"
    );
    // Without node_exporter, the disk alert's names cannot be verified: not evaluated.
    let r = pg.audit(&[
        "--config",
        &config,
        "--exporter",
        &format!("http://127.0.0.1:{}/metrics", exporter.port),
        "--prometheus",
        &format!("http://127.0.0.1:{}", prom.port),
    ]);
    let f = finding(&r, "mon.alerts.critical_coverage");
    assert_eq!(f["status"], "not_evaluated", "{f}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap_or("")
            .contains("node_filesystem_avail_bytes"),
        "{f}"
    );
}

/// pg_stat_statements preloaded but not created; max_connections 5000 and no pooler; then
/// PgBouncer in front, read through its admin console.
fn preloaded_not_created_and_pooling(name: &str) {
    let pg = cluster(name);
    let r = pg.audit(&[]);
    assert_eq!(status(&r, "mon.pgss.preloaded"), "pass");
    assert_eq!(status(&r, "mon.pgss.created"), "fail");
    assert!(offenders(&r, "mon.pgss.created").contains(&"postgres".to_string()));
    assert_eq!(status(&r, "mon.pgss.tracking"), "pass");
    let cap = finding(&r, "mon.pgss.capacity");
    assert_eq!(cap["status"], "not_evaluated", "{cap}");
    assert!(
        cap["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not created in database postgres"),
        "{cap}"
    );
    let needed = finding(&r, "cfg.pool.needed");
    assert_eq!(needed["status"], "fail", "{needed}");
    let actual = needed["actual"].as_str().unwrap_or("");
    assert!(actual.starts_with("max_connections 5000"), "{actual}");
    assert!(
        actual.contains("pooler: none running on the host"),
        "{actual}"
    );

    // PgBouncer in transaction mode in front: the pooler is there and sized within limits.
    let tmp = tempdir();
    let secret = "Adm1n-only-4-tests";
    let bouncer = stack::pgbouncer(pg.port(), "transaction", 20, secret, tmp.path());
    let console = format!(
        "postgresql://admin:{secret}@127.0.0.1:{}/pgbouncer",
        bouncer.port
    );
    let out = pg.pgready(&[
        "audit",
        &pg.uri,
        "--format",
        "json",
        "--pgbouncer",
        &console,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(secret), "the admin password was printed");
    let r = pg.audit(&["--pgbouncer", &console]);
    let facts = r["facts"].to_string();
    assert!(
        !facts.contains(secret),
        "the admin password is in the facts"
    );
    for id in ["cfg.pool.needed", "cfg.pool.sizing", "cfg.pool.mode"] {
        assert_eq!(status(&r, id), "pass", "{id}: {}", finding(&r, id));
    }
    let pooler = &r["facts"]["sections"]["pooling"]["data"]["pooler"];
    assert_eq!(pooler["source"], "admin console", "{pooler}");
    assert_eq!(pooler["pool_mode"], "transaction");
    assert!(
        pooler["version"]
            .as_str()
            .unwrap_or("")
            .starts_with("PgBouncer"),
        "{pooler}"
    );
    drop(bouncer);
}

#[test]
fn pg18_pgss_preloaded_not_created_and_pooling() {
    preloaded_not_created_and_pooling("mon18-pgss");
}

#[test]
fn pg16_pgss_preloaded_not_created_and_pooling() {
    preloaded_not_created_and_pooling("mon16-pgss");
}

/// A session-mode PgBouncer whose pools exceed max_connections (100 on the hardened
/// cluster): both pooling rules fail and say why; a wrong admin password is reported, never
/// printed.
#[test]
fn pg18_session_pooler_oversized() {
    let pg = cluster("mon18-hardened");
    let tmp = tempdir();
    let secret = "Sess10n-Adm1n";
    let bouncer = stack::pgbouncer(pg.port(), "session", 120, secret, tmp.path());
    let console = format!(
        "postgresql://admin:{secret}@127.0.0.1:{}/pgbouncer",
        bouncer.port
    );
    let r = pg.audit(&["--pgbouncer", &console]);
    assert_eq!(status(&r, "cfg.pool.mode"), "fail");
    assert_eq!(offenders(&r, "cfg.pool.mode"), ["pool_mode = session"]);
    let sizing = finding(&r, "cfg.pool.sizing");
    assert_eq!(sizing["status"], "fail", "{sizing}");
    assert!(
        sizing["actual"]
            .as_str()
            .unwrap_or("")
            .contains("may open 120 server connections"),
        "{sizing}"
    );

    let wrong = format!(
        "postgresql://admin:not-{secret}@127.0.0.1:{}/pgbouncer",
        bouncer.port
    );
    let out = pg.pgready(&["audit", &pg.uri, "--format", "json", "--pgbouncer", &wrong]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(&format!("not-{secret}")),
        "the password was printed"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    let pooling = &r["sections"]["pooling"];
    assert_eq!(pooling["partial"], true, "{pooling}");
    assert!(
        pooling["reason"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect to the PgBouncer admin console"),
        "{pooling}"
    );
    drop(bouncer);
}

#[test]
fn bad_monitoring_inputs_are_exit_2_before_connecting() {
    let dir = tempdir();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "groups:\n  - name: pg\n    rules: [\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--exporter".into(), "db1:9187".into()],
            "not an http:// or https:// URL",
        ),
        (
            vec!["--prometheus-rules".into(), "/nonexistent/rules".into()],
            "cannot read the alert rules",
        ),
        (
            vec!["--prometheus-rules".into(), broken.display().to_string()],
            "broken.yml:",
        ),
        (
            vec![
                "--pgbouncer".into(),
                "postgresql://admin@127.0.0.1:6432/app".into(),
            ],
            "must be `pgbouncer`",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "audit".to_string(),
            "postgresql://audit@127.0.0.1:1/postgres".to_string(),
        ];
        args.extend(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_pgready"))
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// M5 judged from what runs on the host: syslog output with no forwarding daemon fails;
/// a real rsyslogd whose configuration forwards to another host passes.
#[test]
fn pg18_syslog_forwarding_counts_as_centralised() {
    let pg = cluster("mon18-pgss");
    common::sandbox_ok(&[
        "sql",
        &pg.name,
        "ALTER SYSTEM SET log_destination = 'stderr,syslog'",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    common::sandbox_ok(&["sql", &pg.name, "SELECT pg_reload_conf()"])
        .unwrap_or_else(|e| panic!("{e}"));
    let r = pg.audit(&[]);
    let f = finding(&r, "mon.log.centralised");
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["actual"]
            .as_str()
            .unwrap_or("")
            .starts_with("no log shipper running"),
        "{f}"
    );
    let tmp = tempdir();
    let rsyslog = stack::rsyslogd(tmp.path());
    let r = pg.audit(&[]);
    let f = finding(&r, "mon.log.centralised");
    assert_eq!(f["status"], "pass", "{f}\n{}", rsyslog.log_text());
    assert!(
        f["actual"]
            .as_str()
            .unwrap_or("")
            .contains("rsyslogd forwards ("),
        "{f}"
    );
    drop(rsyslog);
}
