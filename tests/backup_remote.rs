//! A database host and a dedicated pgBackRest repository host, as two machines: Debian's
//! PostgreSQL 15 and pgBackRest 2.45 on this machine, the repository host in a network
//! namespace with its own address and sshd (`scripts/repo-host`), SSH both ways (backups
//! are pulled by the repository host, WAL is pushed by the database host). Its two
//! repositories are off the database host, so B5 and B6 pass from real tool output, and
//! with `pgready restore-test` (restoring through the repository host), a DR exercise on
//! record and a complete runbook folder, every backup and runbook rule passes on one
//! cluster: the checklist's "done" state for B1–B8 and D1–D6.
//!
//! Needs root (network namespaces, sshd, system users) and, as .ci/run installs:
//! postgresql-15, pgbackrest, openssh-server, iproute2, git.

mod common;
#[path = "runbooks_support/mod.rs"]
mod runbooks_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use common::{finding, is_root, ok, status};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const CLUSTER: &str = "bak-remote";
/// The account that runs the cluster: sshd lets it in (a shell, not locked), unlike the
/// sandbox's default service account.
const DB_USER: &str = "pgready-db";

struct Env {
    /// Cluster folder, repository host rig, pgready.toml files.
    root: PathBuf,
    uri: String,
    password: String,
    /// `scripts/repo-host up` output: NS, DB_ADDR, REPO_ADDR, DB_CONF, REPO_CONF, REPO_USER.
    rig: BTreeMap<String, String>,
}

fn repo_host_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/repo-host")
}

fn repo_host(args: &[&str]) -> Output {
    Command::new(repo_host_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/repo-host: {e}"))
}

fn sandbox(args: &[&str]) -> Output {
    common::sandbox_env(
        args,
        &[("PG_BIN", PG_BIN), ("PGREADY_SANDBOX_USER", DB_USER)],
    )
}

/// The rig's folder, for the atexit handler (the shared Env is never dropped).
static RIG: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn teardown() {
    // No panics here (this runs inside exit()).
    if let Some(rig) = RIG.get() {
        // The server first: at shutdown its archiver still pushes WAL to the repository host.
        let _ = sandbox(&["stop", CLUSTER]);
        let _ = repo_host(&["down", &rig.join("rh").display().to_string()]);
        let _ = std::fs::remove_dir_all(rig);
    }
}

impl Env {
    fn rig(&self, key: &str) -> &str {
        self.rig.get(key).map_or_else(
            || panic!("repo-host printed no {key}: {:?}", self.rig),
            String::as_str,
        )
    }

    /// pgBackRest on the repository host (in its namespace, as its user).
    fn on_repo_host(&self, args: &[&str]) -> String {
        let conf = format!("--config={}", self.rig("REPO_CONF"));
        let rh = self.root.join("rh").display().to_string();
        let mut all = vec!["exec", rh.as_str(), "pgbackrest", conf.as_str()];
        all.extend_from_slice(args);
        ok(
            repo_host(&all),
            &format!("pgbackrest {} (repository host)", args.join(" ")),
        )
    }

    fn sql(&self, sql: &str) -> String {
        ok(sandbox(&["sql", CLUSTER, sql]), sql)
    }

    /// The real pgready binary, with the cluster's password, in the rig's folder.
    fn pgready(&self, args: &[&str]) -> Output {
        common::run_pgready(&self.root, Some(&self.password), args)
    }

    /// `pgready audit --format json` through the database host's pgBackRest file `conf`.
    fn audit(&self, conf: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "audit",
            self.uri.as_str(),
            "--format",
            "json",
            "--pgbackrest-stanza",
            "main",
            "--pgbackrest-config",
            conf,
        ];
        args.extend_from_slice(extra);
        common::json_report(&self.pgready(&args))
    }

    /// A copy of the database host's pgbackrest.conf without the lines `drop` matches.
    fn db_conf_without(&self, name: &str, drop: impl Fn(&str) -> bool) -> String {
        let text = std::fs::read_to_string(self.rig("DB_CONF")).unwrap_or_else(|e| panic!("{e}"));
        let kept: Vec<&str> = text.lines().filter(|l| !drop(l)).collect();
        let path = self.root.join(name);
        std::fs::write(&path, kept.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
        path.display().to_string()
    }
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(setup)
}

fn setup() -> Env {
    assert!(
        is_root(),
        "tests/backup_remote.rs needs root (network namespace, sshd, system users): run it as CI does, through .ci/run"
    );
    common::require(&[
        (
            "PostgreSQL 15 (apt-get install postgresql-15)",
            &format!("{PG_BIN}/postgres"),
        ),
        (
            "pgBackRest (apt-get install pgbackrest)",
            "/usr/bin/pgbackrest",
        ),
        ("sshd (apt-get install openssh-server)", "/usr/sbin/sshd"),
    ]);
    // Under /var/tmp, not a private /tmp: the database and repository accounts enter it.
    let root = PathBuf::from(format!(
        "/var/tmp/pgready-backup-remote-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = RIG.set(root.clone());
    // SAFETY: `teardown` is an `extern "C" fn()` that never unwinds.
    assert_eq!(unsafe { libc::atexit(teardown) }, 0, "atexit failed");
    let home = root.join("home-db").display().to_string();
    ok(repo_host(&["user", DB_USER, &home]), "repo-host user");
    let owner = std::process::id().to_string();
    let uri = ok(
        sandbox(&[
            "start",
            CLUSTER,
            "--major",
            "15",
            "--scenario",
            "hardened",
            "--owner-pid",
            &owner,
            "--fresh",
        ]),
        "pg-sandbox start",
    )
    .trim()
    .to_string();
    let cluster = common::sandbox_dir().join(CLUSTER);
    let password = std::fs::read_to_string(cluster.join("password"))
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string();
    let port = uri
        .rsplit_once(':')
        .and_then(|(_, r)| r.split('/').next())
        .unwrap_or_else(|| panic!("no port in {uri}"))
        .to_string();
    let octet = (std::process::id() % 200 + 20).to_string();
    let rig_out = ok(
        repo_host(&[
            "up",
            &root.join("rh").display().to_string(),
            "--db-user",
            DB_USER,
            "--pgdata",
            &cluster.join("data").display().to_string(),
            "--pg-port",
            &port,
            "--pg-socket",
            &cluster.display().to_string(),
            "--password-file",
            &cluster.join("password").display().to_string(),
            "--octet",
            &octet,
        ]),
        "repo-host up",
    );
    let rig = rig_out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = Env {
        root,
        uri,
        password,
        rig,
    };
    // WAL pushed from the database host into both repositories on the repository host;
    // full backups pulled by the repository host into each.
    env.on_repo_host(&["--stanza=main", "stanza-create"]);
    env.sql(&format!(
        "ALTER SYSTEM SET archive_command = 'pgbackrest --config={} --stanza=main archive-push %p'",
        env.rig("DB_CONF")
    ));
    env.sql("SELECT pg_reload_conf()");
    env.on_repo_host(&["--stanza=main", "check"]);
    env.on_repo_host(&["--stanza=main", "--repo=1", "--type=full", "backup"]);
    env.sql("CREATE TABLE remote_rows AS SELECT g AS id FROM generate_series(1, 1000) g");
    env.on_repo_host(&["--stanza=main", "--repo=2", "--type=full", "backup"]);
    env.sql("INSERT INTO remote_rows VALUES (2000)");
    env.sql("SELECT pg_switch_wal()");
    common::wait_archived(|q| env.sql(q));
    env
}

fn criterion<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["verdict"]["criteria"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no criterion {id} in {}", r["verdict"]))
}

#[test]
fn every_backup_and_runbook_rule_passes_with_a_repository_host() {
    let env = env();
    // 1. The restore test, through the repository host, records B3.
    let evidence = env.root.join("restore.toml");
    let out = env.pgready(&[
        "restore-test",
        &env.uri,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        env.rig("DB_CONF"),
        "--config",
        &evidence.display().to_string(),
        "--os-user",
        DB_USER,
    ]);
    let stdout = ok(out, "pgready restore-test");
    assert!(stdout.starts_with("PASS: "), "{stdout}");
    assert!(stdout.contains("pg_amcheck --all OK"), "{stdout}");
    common::recorded_b3(&evidence, "pgBackRest stanza main, set ", 3600.0);
    // 2. A DR exercise on record and the team's complete runbook folder (git, network
    //    remote, roster trained).
    let rb = runbooks_support::fixture("complete");
    let today = runbooks_support::today();
    let config = rb.config(
        Some(&evidence),
        &format!(
            "\n[[evidence]]\nitem = \"B8\"\ndate = {today}\nby = \"DBA + SRE\"\nresult = \"pass\"\n\
             summary = \"GameDay: database host declared lost, restored from the repository host\"\n"
        ),
    );
    let config = config.display().to_string();
    let r = env.audit(env.rig("DB_CONF"), &["--config", &config]);
    // 3. Every rule of the backup and runbook pillars (and M8, the monitoring runbook).
    let rules: Vec<&Value> = r["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter(|f| {
                    f["pillar"] == "backup"
                        || f["pillar"] == "runbooks"
                        || f["rule_id"] == "mon.runbook"
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(rules.len() >= 20, "{} backup/runbook findings", rules.len());
    let not_passing: Vec<String> = rules
        .iter()
        .filter(|f| f["status"] != "pass")
        .map(|f| format!("{} {}: {}", f["rule_id"], f["status"], f))
        .collect();
    assert!(not_passing.is_empty(), "{}", not_passing.join("\n"));
    for item in [
        "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "D1", "D2", "D3", "D4", "D5", "D6",
    ] {
        assert!(
            rules.iter().any(|f| f["covers"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x == item))),
            "no rule covers {item}"
        );
    }
    for id in ["G4", "G5", "G7"] {
        assert_eq!(
            criterion(&r, id)["status"],
            "met",
            "{id}: {}",
            criterion(&r, id)
        );
    }
    // What the collector saw: both repositories on the repository host, off the database
    // host, each with a backup of this cluster and its WAL up to the present.
    let b = &r["sections"]["backup"];
    assert_eq!(b["collected"], true, "{b}");
    let facts = env.pgready(&[
        "facts",
        &env.uri,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        env.rig("DB_CONF"),
    ]);
    let facts: Value = serde_json::from_slice(&facts.stdout).unwrap_or_else(|e| panic!("{e}"));
    let repos = facts["sections"]["backup"]["data"]["repositories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(repos.len(), 2, "{repos:?}");
    for repo in &repos {
        assert_eq!(repo["medium"], "remote-host", "{repo}");
        assert_eq!(repo["off_host"], true, "{repo}");
        assert_eq!(repo["host"], env.rig("REPO_ADDR"), "{repo}");
        assert_eq!(repo["backups"], 1, "{repo}");
        assert_eq!(repo["wal"]["gaps"], serde_json::json!([]), "{repo}");
    }
}

#[test]
fn one_repository_is_two_copies_not_three_two_one() {
    let env = env();
    let conf = env.db_conf_without("db-repo1.conf", |l| l.starts_with("repo2-"));
    let r = env.audit(&conf, &[]);
    assert_eq!(status(&r, "bak.backup.three_two_one"), "fail");
    let actual = finding(&r, "bak.backup.three_two_one")["actual"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        actual.starts_with("2 copies: the database, repo1 (posix, remote-host, "),
        "{actual}"
    );
    // The one repository is still off the host and current.
    assert_eq!(status(&r, "bak.backup.offsite"), "pass");
    assert_eq!(status(&r, "bak.backup.recent"), "pass");
}

#[test]
fn retention_kept_only_on_the_repository_host_is_not_evaluated() {
    let env = env();
    let conf = env.db_conf_without("db-noretention.conf", |l| l.contains("-retention-"));
    let r = env.audit(&conf, &[]);
    let f = finding(&r, "bak.backup.retention");
    assert_eq!(f["status"], "not_evaluated", "{f}");
    let reason = f["reason"].as_str().unwrap_or("");
    let host = env.rig("REPO_ADDR");
    assert!(
        reason.contains(&format!(
            "repo1: retention is set on the repository host {host} (repo1-host)"
        )) && reason.contains(&format!(
            "repo2: retention is set on the repository host {host} (repo2-host)"
        )),
        "{reason}"
    );
    // Not "no retention set": that would be a false failure.
    assert!(f["offenders"].as_array().is_none_or(Vec::is_empty), "{f}");
}
