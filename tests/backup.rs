//! The backup section and the B rules against the real tools: Debian 12's pgBackRest 2.45
//! with Debian's PostgreSQL 15 (2.45 supports PostgreSQL up to 15), through the real
//! binary; `pgready restore-test` end to end; Debian's Barman 3.4 streaming from another
//! PostgreSQL 15 cluster. WAL-G is not packaged: its JSON is read from fixtures
//! (tests/data/backup/), as are Barman's edge cases.
//!
//! One PostgreSQL 15 cluster (`bak-a`, hardened scenario, archiving into stanza `main`
//! through `pgbackrest archive-push`) is shared by every test, plus a stopped one (`bak-b`)
//! whose offline backup sits in stanza `other`. Each test uses its own pgBackRest
//! configuration file and repositories in one temporary folder; only `main` receives WAL.
//! Needs (as .ci/run installs): postgresql-15, pgbackrest, faketime, barman.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use common::{finding, is_root, ok, status};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

struct Env {
    /// Holds the repositories and configuration files (removed at exit).
    _tmp: tempfile::TempDir,
    root: PathBuf,
    uri: String,
    password: String,
    cluster: PathBuf,
    port: u16,
}

/// scripts/pg-sandbox with Debian's PostgreSQL 15 binaries.
fn sandbox15(args: &[&str]) -> Output {
    let out = common::sandbox_env(args, &[("PG_BIN", PG_BIN)]);
    assert!(
        out.status.success(),
        "pg-sandbox {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command as the sandbox's server account (pgready) when root, in `/`.
fn as_pg(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "pgready", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.current_dir("/").stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn chown_pg(path: &Path) {
    if is_root() {
        ok(
            Command::new("chown")
                .args(["-R", "pgready:", &path.display().to_string()])
                .output()
                .unwrap_or_else(|e| panic!("{e}")),
            "chown",
        );
    }
}

fn mkdir_pg(path: &Path) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    chown_pg(path);
}

impl Env {
    /// A pgBackRest configuration for `stanza` on `data` with `repos` (`key=value` lines
    /// per repository, the path added), written to `<root>/<file>`.
    fn config(&self, file: &str, stanza: &str, data: &Path, repos: &[&str]) -> PathBuf {
        let mut text = format!(
            "[global]\nlog-path={r}/log\nlock-path={r}/lock\nspool-path={r}/spool\nlog-level-console=warn\nstart-fast=y\ncompress-type=lz4\n",
            r = self.root.display()
        );
        for (i, extra) in repos.iter().enumerate() {
            let n = i + 1;
            let path = self.root.join(format!("repo-{file}-{n}"));
            mkdir_pg(&path);
            text.push_str(&format!(
                "repo{n}-path={}\nrepo{n}-bundle=y\n",
                path.display()
            ));
            for line in extra.split_whitespace() {
                text.push_str(&format!("repo{n}-{line}\n"));
            }
        }
        text.push_str(&format!(
            "\n[{stanza}]\npg1-path={}\npg1-port={}\npg1-socket-path={}\npg1-user=postgres\n",
            data.display(),
            self.port,
            self.cluster.display()
        ));
        let path = self.root.join(format!("{file}.conf"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        chown_pg(&path);
        path
    }

    fn pgbackrest(&self, config: &Path, args: &[&str]) -> String {
        let c = format!("--config={}", config.display());
        let mut all = vec!["pgbackrest", c.as_str()];
        all.extend_from_slice(args);
        ok(
            as_pg(&all, &[("PGPASSWORD", self.password.as_str())]),
            &all.join(" "),
        )
    }

    fn sql(&self, sql: &str) -> String {
        ok(sandbox15(&["sql", "bak-a", sql]), sql)
    }

    /// The real pgready binary, with the cluster's password, from `cwd` (default: root).
    fn pgready(&self, args: &[&str]) -> Output {
        common::run_pgready(&self.root, Some(&self.password), args)
    }

    /// `pgready audit --format json` with the given extra arguments.
    fn audit(&self, extra: &[&str]) -> Value {
        let mut args = vec!["audit", self.uri.as_str(), "--format", "json"];
        args.extend_from_slice(extra);
        common::json_report(&self.pgready(&args))
    }

    fn main_conf(&self) -> PathBuf {
        self.root.join("main.conf")
    }
}

/// The temporary folder, removed at exit (the shared Env is never dropped).
static ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_root() {
    if let Some(root) = ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(setup)
}

fn setup() -> Env {
    common::require(&[
        (
            "PostgreSQL 15 (apt-get install postgresql-15)",
            &format!("{PG_BIN}/postgres"),
        ),
        (
            "pgBackRest (apt-get install pgbackrest)",
            "/usr/bin/pgbackrest",
        ),
        ("faketime (apt-get install faketime)", "/usr/bin/faketime"),
    ]);
    let owner = std::process::id().to_string();
    // Two clusters at once: the audited one and the one whose backups sit in `other`.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            sandbox15(&[
                "start",
                "bak-a",
                "--major",
                "15",
                "--scenario",
                "hardened",
                "--owner-pid",
                &owner,
                "--fresh",
            ])
        });
        let b = s.spawn(|| {
            sandbox15(&[
                "start",
                "bak-b",
                "--major",
                "15",
                "--scenario",
                "default",
                "--owner-pid",
                &owner,
                "--fresh",
            ])
        });
        (a.join(), b.join())
    });
    let (Ok(a), Ok(_b)) = (a, b) else {
        panic!("starting the PostgreSQL 15 clusters panicked")
    };
    let uri = String::from_utf8_lossy(&a.stdout).trim().to_string();
    let cluster = common::sandbox_dir().join("bak-a");
    let password = std::fs::read_to_string(cluster.join("password"))
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string();
    let port: u16 = uri
        .rsplit_once(':')
        .and_then(|(_, r)| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {uri}"));
    let tmp = tempfile::Builder::new()
        .prefix("pgready-backup-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().to_path_buf();
    let _ = ROOT.set(root.clone());
    // SAFETY: `remove_root` is an `extern "C" fn()` that never unwinds.
    unsafe { libc::atexit(remove_root) };
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for d in ["log", "lock", "spool"] {
        mkdir_pg(&root.join(d));
    }
    let env = Env {
        _tmp: tmp,
        root,
        uri,
        password,
        cluster: cluster.clone(),
        port,
    };
    // Stanza main: repo1 count retention, repo2 time retention; WAL archived into it.
    let conf = env.config(
        "main",
        "main",
        &cluster.join("data"),
        &[
            "retention-full=2",
            "retention-full-type=time retention-full=400",
        ],
    );
    env.sql(&format!(
        "ALTER SYSTEM SET archive_command = 'pgbackrest --config={} --stanza=main archive-push %p'",
        conf.display()
    ));
    env.sql("SELECT pg_reload_conf()");
    env.pgbackrest(&conf, &["--stanza=main", "stanza-create"]);
    env.pgbackrest(&conf, &["--stanza=main", "--type=full", "backup"]);
    env.pgbackrest(
        &conf,
        &["--stanza=main", "--repo=2", "--type=full", "backup"],
    );
    env.sql(
        "CREATE TABLE IF NOT EXISTS bak_rows AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    env.pgbackrest(&conf, &["--stanza=main", "--type=incr", "backup"]);
    // Some WAL after the newest backup, archived: the range the gap check walks.
    for i in 0..3 {
        env.sql(&format!("INSERT INTO bak_rows VALUES ({})", 2000 + i));
        env.sql("SELECT pg_switch_wal()");
    }
    common::wait_archived(|q| env.sql(q));
    // Stanza other: an offline backup of the stopped cluster bak-b (another system id).
    sandbox15(&["stop", "bak-b"]);
    let other = env.config(
        "other",
        "other",
        &common::sandbox_dir().join("bak-b/data"),
        &["retention-full=1"],
    );
    env.pgbackrest(&other, &["--stanza=other", "--no-online", "stanza-create"]);
    env.pgbackrest(
        &other,
        &["--stanza=other", "--no-online", "--type=full", "backup"],
    );
    env
}

fn text(r: &Value, id: &str) -> String {
    let f = finding(r, id);
    format!("{} {} {}", f["actual"], f["offenders"], f["reason"])
}

#[test]
fn fresh_backups_of_this_cluster_pass_b1_b2_b4() {
    let env = env();
    let conf = env.main_conf().display().to_string();
    let r = env.audit(&["--pgbackrest-stanza", "main", "--pgbackrest-config", &conf]);
    let b = &r["sections"]["backup"];
    assert_eq!(b["collected"], true, "{b}");
    let facts = env.pgready(&[
        "facts",
        &env.uri,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &conf,
    ]);
    let facts: Value = serde_json::from_slice(&facts.stdout).unwrap_or_else(|e| panic!("{e}"));
    let d = &facts["sections"]["backup"]["data"];
    assert_eq!(d["tool"], "pgbackrest");
    assert_eq!(d["version"], "2.45");
    assert_eq!(d["name"], "main");
    assert_eq!(d["status"]["code"], 0);
    assert_eq!(
        d["system_identifier"],
        facts["sections"]["server"]["data"]["system_identifier"]
    );
    let sets = d["backups"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(sets.len(), 3, "{d}");
    assert_eq!(sets[0]["type"], "full");
    assert_eq!(sets[1]["type"], "full");
    assert_eq!(sets[1]["repo"], 2);
    assert_eq!(sets[2]["type"], "incr");
    assert!(sets.iter().all(|s| s["this_cluster"] == true));
    assert_eq!(d["newest"]["label"], sets[2]["label"]);
    assert_eq!(d["newest_full"]["label"], sets[1]["label"]);
    assert_eq!(d["spread"]["days"], serde_json::json!([0]));
    let repos = d["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(repos.len(), 2, "{d}");
    assert_eq!(repos[0]["retention"]["full_type"], "count");
    assert_eq!(repos[0]["retention"]["redundancy"], 2);
    assert_eq!(repos[1]["retention"]["full_type"], "time");
    assert_eq!(repos[1]["retention"]["window_days"], 400);
    for repo in repos {
        assert_eq!(repo["type"], "posix");
        assert_eq!(repo["medium"], "db-host-disk");
        assert_eq!(repo["off_host"], false);
        assert_eq!(repo["wal"]["gaps"], serde_json::json!([]), "{repo}");
    }
    // The archive reaches the server's last archived segment.
    let last = facts["sections"]["stats"]["data"]["archiver"]["last_archived_wal"]
        .as_str()
        .unwrap_or_else(|| panic!("nothing archived: {facts}"));
    assert!(
        format!("{}~", repos[0]["wal"]["max"].as_str().unwrap_or("")).as_str() >= last,
        "repository WAL {} behind {last}",
        repos[0]["wal"]["max"]
    );
    for rule in [
        "bak.backup.recent",
        "bak.backup.tool_healthy",
        "bak.backup.wal_continuous",
        "bak.backup.retention",
    ] {
        assert_eq!(status(&r, rule), "pass", "{rule}: {}", text(&r, rule));
    }
    // Two repositories on this host: 3 copies, but one kind of storage and none off-host.
    assert_eq!(status(&r, "bak.backup.three_two_one"), "fail");
    let t = text(&r, "bak.backup.three_two_one");
    assert!(
        t.contains("3 copies") && t.contains("1 media") && t.contains("0 off the database host"),
        "{t}"
    );
    assert_eq!(status(&r, "bak.backup.offsite"), "fail");
    assert!(text(&r, "bak.backup.offsite").contains("db-host-disk"));
    // The facts file holds no secret of the configuration.
    assert!(!String::from_utf8_lossy(&facts.to_string().into_bytes()).contains(&env.password));
}

#[test]
fn a_repository_with_a_wal_gap_or_behind_the_server_fails_b2() {
    let env = env();
    // A copy of main's repository as it is now, then one segment removed from it.
    let copy = env.root.join("repo-gap");
    let src = env.root.join("repo-main-1");
    ok(
        Command::new("cp")
            .args([
                "-a",
                &src.display().to_string(),
                &copy.display().to_string(),
            ])
            .output()
            .unwrap_or_else(|e| panic!("{e}")),
        "cp",
    );
    let conf = env.root.join("gap.conf");
    let text_conf = std::fs::read_to_string(env.main_conf())
        .unwrap_or_else(|e| panic!("{e}"))
        .replace(&src.display().to_string(), &copy.display().to_string())
        .lines()
        .filter(|l| !l.starts_with("repo2-"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, text_conf).unwrap_or_else(|e| panic!("{e}"));
    let conf_s = conf.display().to_string();
    let facts = env.pgready(&[
        "facts",
        &env.uri,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &conf_s,
    ]);
    let facts: Value = serde_json::from_slice(&facts.stdout).unwrap_or_else(|e| panic!("{e}"));
    let d = &facts["sections"]["backup"]["data"];
    let wal = &d["repositories"][0]["wal"];
    let from = wal["checked_from"]
        .as_str()
        .unwrap_or_else(|| panic!("{d}"));
    let max = wal["max"].as_str().unwrap_or_else(|| panic!("{d}"));
    assert!(max > from, "no WAL after the newest backup: {wal}");
    // Remove the segment after `from` (one of those archived after the newest backup).
    let victim = {
        let n = u64::from_str_radix(&from[16..24], 16).unwrap_or(0) + 1;
        format!("{}{n:08X}", &from[..16])
    };
    let dir = copy.join("archive/main/15-1").join(&victim[..16]);
    let mut removed = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap_or_else(|e| panic!("{e}")).path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{victim}-")))
        {
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{e}"));
            removed += 1;
        }
    }
    assert_eq!(
        removed,
        1,
        "segment {victim} not found in {}",
        dir.display()
    );
    // And the server moves on: the copy no longer receives its WAL.
    env.sql("INSERT INTO bak_rows VALUES (9000)");
    env.sql("SELECT pg_switch_wal()");
    common::wait_archived(|q| env.sql(q));
    let r = env.audit(&[
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &conf_s,
    ]);
    assert_eq!(status(&r, "bak.backup.wal_continuous"), "fail");
    let t = text(&r, "bak.backup.wal_continuous");
    assert!(t.contains(&format!("missing WAL {victim}")), "{t}");
    assert!(
        t.contains("is older than the server's last archived"),
        "{t}"
    );
    // The real repository is still whole and current.
    let r = env.audit(&[
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &env.main_conf().display().to_string(),
    ]);
    assert_eq!(
        status(&r, "bak.backup.wal_continuous"),
        "pass",
        "{}",
        text(&r, "bak.backup.wal_continuous")
    );
}

#[test]
fn a_repository_whose_newest_backup_is_days_old_fails_b1_and_time_retention_expires() {
    let env = env();
    // Offline backups (--no-online) taken under a clock 10 and 5 days in the past: an
    // online backup would take its times from the server, whose clock stays real.
    let conf = env.config(
        "aged",
        "aged",
        &env.cluster.join("data"),
        &["retention-full-type=time retention-full=3"],
    );
    env.pgbackrest(&conf, &["--stanza=aged", "--no-online", "stanza-create"]);
    for days in ["-10d", "-5d"] {
        let c = format!("--config={}", conf.display());
        ok(
            as_pg(
                &[
                    "faketime",
                    "-f",
                    days,
                    "pgbackrest",
                    &c,
                    "--stanza=aged",
                    "--no-online",
                    "--force",
                    "--type=full",
                    "backup",
                ],
                &[],
            ),
            "faketime backup",
        );
    }
    // Time-based retention: the 10-day-old full is not needed to reach 3 days back.
    env.pgbackrest(&conf, &["--stanza=aged", "expire"]);
    let conf_s = conf.display().to_string();
    let r = env.audit(&[
        "--pgbackrest-stanza",
        "aged",
        "--pgbackrest-config",
        &conf_s,
    ]);
    let d = &r["sections"]["backup"];
    assert_eq!(d["collected"], true, "{d}");
    assert_eq!(status(&r, "bak.backup.recent"), "fail");
    let t = text(&r, "bak.backup.recent");
    assert!(
        t.contains("newest: full") && (t.contains(" 4 d ago") || t.contains(" 5 d ago")),
        "{t}"
    );
    let facts = env.pgready(&[
        "facts",
        &env.uri,
        "--pgbackrest-stanza",
        "aged",
        "--pgbackrest-config",
        &conf_s,
    ]);
    let facts: Value = serde_json::from_slice(&facts.stdout).unwrap_or_else(|e| panic!("{e}"));
    let data = &facts["sections"]["backup"]["data"];
    assert_eq!(data["backups"].as_array().map(Vec::len), Some(1), "{data}");
    let age_days = (facts["collected_at"].as_i64().unwrap_or(0)
        - data["newest"]["stop_time"].as_i64().unwrap_or(0))
        / 86_400;
    assert!(
        (4..=5).contains(&age_days),
        "newest backup {age_days} days old: {data}"
    );
    assert_eq!(data["repositories"][0]["retention"]["window_days"], 3);
    assert_eq!(status(&r, "bak.backup.retention"), "fail");
    assert!(text(&r, "bak.backup.retention").contains("retention keeps 3 days"));
}

#[test]
fn count_based_retention_expires_the_older_full() {
    let env = env();
    let conf = env.config(
        "count",
        "count",
        &env.cluster.join("data"),
        &["retention-full=1"],
    );
    env.pgbackrest(&conf, &["--stanza=count", "--no-online", "stanza-create"]);
    for _ in 0..2 {
        env.pgbackrest(
            &conf,
            &[
                "--stanza=count",
                "--no-online",
                "--force",
                "--type=full",
                "backup",
            ],
        );
    }
    let conf_s = conf.display().to_string();
    let facts = env.pgready(&[
        "facts",
        &env.uri,
        "--pgbackrest-stanza",
        "count",
        "--pgbackrest-config",
        &conf_s,
    ]);
    let facts: Value = serde_json::from_slice(&facts.stdout).unwrap_or_else(|e| panic!("{e}"));
    let d = &facts["sections"]["backup"]["data"];
    // pgBackRest expired the first full after the second (repo1-retention-full=1).
    assert_eq!(d["backups"].as_array().map(Vec::len), Some(1), "{d}");
    let r = &d["repositories"][0]["retention"];
    assert_eq!(r["defined"], true, "{r}");
    assert_eq!(r["full_type"], "count");
    assert_eq!(r["redundancy"], 1);
    assert_eq!(r["window_days"], Value::Null);
}

#[test]
fn backups_of_another_cluster_do_not_count() {
    let env = env();
    let conf = env.root.join("other.conf").display().to_string();
    let r = env.audit(&["--pgbackrest-stanza", "other", "--pgbackrest-config", &conf]);
    assert_eq!(status(&r, "bak.backup.recent"), "fail");
    let t = text(&r, "bak.backup.recent");
    assert!(t.contains("no backup of this cluster"), "{t}");
    assert!(t.contains("1 backup(s) of another cluster"), "{t}");
    assert_eq!(status(&r, "bak.backup.three_two_one"), "fail");
}

#[test]
fn a_failing_tool_or_no_tool_is_not_evaluated_with_what_failed() {
    let env = env();
    // A configuration file that does not exist: the command and pgBackRest's error.
    let r = env.audit(&[
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        "/nonexistent/pgbackrest.conf",
    ]);
    assert_eq!(r["sections"]["backup"]["collected"], false);
    assert_eq!(status(&r, "bak.backup.recent"), "not_evaluated");
    let why = finding(&r, "bak.backup.recent")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        why.contains("pgbackrest --config=/nonexistent/pgbackrest.conf"),
        "{why}"
    );
    assert!(why.contains("ERROR"), "{why}");
    // No tool named: pgready says where it looked for a stanza of this data directory.
    let r = env.audit(&[]);
    let why = finding(&r, "bak.backup.recent")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(why.contains("no backup tool named"), "{why}");
    assert!(
        why.contains(&format!(
            "pg1-path = {}",
            env.cluster.join("data").display()
        )),
        "{why}"
    );
    // Two tools at once is a mistake the section states.
    let r = env.audit(&["--pgbackrest-stanza", "main", "--barman-server", "pg"]);
    assert!(
        finding(&r, "bak.backup.recent")["reason"]
            .as_str()
            .unwrap_or("")
            .contains("more than one backup tool")
    );
}

#[test]
fn restore_test_restores_verifies_records_and_b3_passes() {
    let env = env();
    let conf = env.main_conf().display().to_string();
    let scratch = env.root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.root.join("team.toml");
    std::fs::write(
        &cfg,
        "# the team's file\n[context]\ncriticality = \"high\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg_s = cfg.display().to_string();
    let out = env.pgready(&[
        "restore-test",
        &env.uri,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &conf,
        "--config",
        &cfg_s,
        "--scratch",
        &scratch.display().to_string(),
        "--by",
        "Dana Admin",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("PASS: "), "{stdout}");
    assert!(stdout.contains("pg_amcheck --all OK"), "{stdout}");
    eprintln!("restore-test output:\n{stdout}");
    // The scratch cluster is gone.
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap_or_else(|e| panic!("{e}"))
        .collect();
    assert!(left.is_empty(), "scratch folder not cleaned: {left:?}");
    // The entry is appended; the user's text is kept as it was.
    let text_cfg = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text_cfg.starts_with("# the team's file\n[context]\ncriticality = \"high\"\n"),
        "{text_cfg}"
    );
    let e = common::recorded_b3(&cfg, "recovered to the end of the archive", 86_400.0);
    assert_eq!(e.by, "Dana Admin");
    // The next audit with that file passes B3 (and G4 is met).
    let r = env.audit(&[
        "--config",
        &cfg_s,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &conf,
    ]);
    assert_eq!(
        status(&r, "bak.evidence.restore_tested"),
        "pass",
        "{}",
        text(&r, "bak.evidence.restore_tested")
    );
    assert!(text(&r, "bak.evidence.restore_tested").contains("RTO"));
    // A given set (the first full), restored to its consistent point.
    let full = {
        let f = env.pgready(&[
            "facts",
            &env.uri,
            "--pgbackrest-stanza",
            "main",
            "--pgbackrest-config",
            &conf,
        ]);
        let f: Value = serde_json::from_slice(&f.stdout).unwrap_or_else(|e| panic!("{e}"));
        f["sections"]["backup"]["data"]["newest_full"]["label"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let out = env.pgready(&[
        "restore-test",
        &env.uri,
        "--pgbackrest-stanza",
        "main",
        "--pgbackrest-config",
        &conf,
        "--config",
        &cfg_s,
        "--scratch",
        &scratch.display().to_string(),
        "--set",
        &full,
    ]);
    let stdout = ok(out, "pgready restore-test --set");
    assert!(
        stdout.contains(&format!("set {full} recovered to its consistent point")),
        "{stdout}"
    );
    // A set of another cluster is refused before anything is restored.
    let other_label = {
        let f = env.pgready(&[
            "facts",
            &env.uri,
            "--pgbackrest-stanza",
            "other",
            "--pgbackrest-config",
            &env.root.join("other.conf").display().to_string(),
        ]);
        let f: Value = serde_json::from_slice(&f.stdout).unwrap_or_else(|e| panic!("{e}"));
        f["sections"]["backup"]["data"]["backups"][0]["label"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let out = env.pgready(&[
        "restore-test",
        &env.uri,
        "--pgbackrest-stanza",
        "other",
        "--pgbackrest-config",
        &env.root.join("other.conf").display().to_string(),
        "--config",
        &cfg_s,
        "--set",
        &other_label,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is of another cluster"), "{err}");
    // WAL-G is read by audit, not restored: refused with what to do instead, nothing written.
    let before = std::fs::read_to_string(&cfg).unwrap_or_default();
    let walg_env = env.root.join("walg.env");
    std::fs::write(&walg_env, "WALG_FILE_PREFIX=/nonexistent\n").unwrap_or_else(|e| panic!("{e}"));
    let out = env.pgready(&[
        "restore-test",
        &env.uri,
        "--walg-env",
        &walg_env.display().to_string(),
        "--config",
        &cfg_s,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("WAL-G's backups are read by `audit` but not restored")
            && err.contains("item = \"B3\""),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap_or_default(), before);
}

/// Barman 3.4 (Debian 12) backing up a PostgreSQL 15 cluster (`bak-c`) over streaming
/// replication (pg_basebackup + pg_receivewal, the default cluster's trust for local
/// replication): one `barman backup` of server `pg`, then rows written and their WAL
/// archived by Barman, so that a recovery has WAL to replay past the backup's end.
/// Shared by the Barman tests (set up once).
struct BarmanEnv {
    uri: String,
    /// Barman's configuration file (barman_home next to it, owned by the barman user).
    conf: String,
    /// The audited cluster's folder (data/ inside).
    cluster: PathBuf,
    /// The audited cluster's tablespace ts_c.
    tablespace: PathBuf,
}

fn barman_env() -> &'static BarmanEnv {
    static BARMAN: OnceLock<BarmanEnv> = OnceLock::new();
    BARMAN.get_or_init(barman_setup)
}

fn barman_setup() -> BarmanEnv {
    assert!(
        Path::new("/usr/bin/barman").exists(),
        "Barman is needed: apt-get install barman"
    );
    let env = env();
    let owner = std::process::id().to_string();
    let out = sandbox15(&[
        "start",
        "bak-c",
        "--major",
        "15",
        "--scenario",
        "default",
        "--owner-pid",
        &owner,
        "--fresh",
    ]);
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cluster = common::sandbox_dir().join("bak-c");
    let port = uri
        .rsplit_once(':')
        .and_then(|(_, r)| r.split('/').next())
        .unwrap_or_default()
        .to_string();
    let home = env.root.join("barman");
    std::fs::create_dir_all(home.join("log")).unwrap_or_else(|e| panic!("{e}"));
    let conf = home.join("barman.conf");
    std::fs::write(
        &conf,
        format!(
            "[barman]\nbarman_home = {h}\nbarman_user = barman\nlog_file = {h}/log/barman.log\n\
             compression = gzip\n\n[pg]\ndescription = \"sandbox 15\"\n\
             conninfo = host={c} port={port} user=postgres dbname=postgres\n\
             streaming_conninfo = host={c} port={port} user=postgres\nbackup_method = postgres\n\
             streaming_archiver = on\nslot_name = barman\npath_prefix = {PG_BIN}\n\
             retention_policy = RECOVERY WINDOW OF 4 WEEKS\n",
            h = home.display(),
            c = cluster.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    if is_root() {
        ok(
            Command::new("chown")
                .args(["-R", "barman:", &home.display().to_string()])
                .output()
                .unwrap_or_else(|e| panic!("{e}")),
            "chown",
        );
    }
    let c = conf.display().to_string();
    let barman = |args: &[&str]| -> Output {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "barman", "--", "barman"]);
            c
        } else {
            Command::new("barman")
        };
        cmd.args(["-c", &c])
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null());
        cmd.output().unwrap_or_else(|e| panic!("{e}"))
    };
    ok(
        barman(&["receive-wal", "--create-slot", "pg"]),
        "barman receive-wal --create-slot",
    );
    // `barman cron` starts the WAL streamer (barman receive-wal) in the background; it is
    // stopped below, and by this guard if anything in between panics.
    struct StopStreamer<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for StopStreamer<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["receive-wal", "--stop", "pg"]);
        }
    }
    let stop = StopStreamer(&barman);
    ok(barman(&["cron"]), "barman cron");
    let switch = || {
        barman(&[
            "switch-wal",
            "--force",
            "--archive",
            "--archive-timeout",
            "60",
            "pg",
        ])
    };
    // A tablespace, so that the recovery has one to relocate (it must not be written).
    let ts = env.root.join("ts-c");
    mkdir_pg(&ts);
    let sql = |q: &str| ok(sandbox15(&["sql", "bak-c", q]), q);
    sql(&format!(
        "CREATE TABLESPACE ts_c LOCATION '{}'",
        ts.display()
    ));
    sql("CREATE TABLE barman_ts TABLESPACE ts_c AS SELECT g AS id FROM generate_series(1, 100) g");
    let switched = switch();
    let backed_up = barman(&["backup", "--wait", "pg"]);
    // Commits after the backup, archived by the streamer: what a recovery to the end of
    // the archive replays.
    sql("CREATE TABLE barman_rows AS SELECT g AS id FROM generate_series(1, 1000) g");
    sql("INSERT INTO barman_rows VALUES (1001)");
    let switched_after = switch();
    drop(stop);
    ok(switched, "barman switch-wal");
    ok(backed_up, "barman backup");
    ok(switched_after, "barman switch-wal after the backup");
    BarmanEnv {
        uri,
        conf: c,
        cluster,
        tablespace: ts,
    }
}

#[test]
fn barman_backups_of_a_streaming_server() {
    let env = env();
    let BarmanEnv { uri, conf: c, .. } = barman_env();
    let out = env.pgready(&[
        "audit",
        uri,
        "--format",
        "json",
        "--barman-server",
        "pg",
        "--barman-config",
        c,
    ]);
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let d = &r["sections"]["backup"];
    assert_eq!(d["collected"], true, "{d}");
    let facts = env.pgready(&["facts", uri, "--barman-server", "pg", "--barman-config", c]);
    let facts: Value = serde_json::from_slice(&facts.stdout).unwrap_or_else(|e| panic!("{e}"));
    let b = &facts["sections"]["backup"]["data"];
    assert_eq!(b["tool"], "barman");
    assert_eq!(b["version"], "3.4.0");
    assert_eq!(b["newest"]["this_cluster"], true, "{b}");
    assert_eq!(b["repositories"][0]["retention"]["window_days"], 28);
    assert_eq!(
        b["repositories"][0]["wal"]["gaps"],
        serde_json::json!([]),
        "{b}"
    );
    assert!(
        !b.to_string().contains("dbname=postgres"),
        "conninfo copied: {b}"
    );
    assert_eq!(
        status(&r, "bak.backup.recent"),
        "pass",
        "{}",
        text(&r, "bak.backup.recent")
    );
    assert_eq!(status(&r, "bak.backup.tool_healthy"), "pass");
    assert_eq!(
        status(&r, "bak.backup.wal_continuous"),
        "pass",
        "{}",
        text(&r, "bak.backup.wal_continuous")
    );
    assert_eq!(status(&r, "bak.backup.retention"), "fail");
    assert!(text(&r, "bak.backup.retention").contains("retention keeps 28 days"));
}

/// `pgready restore-test` with Barman: `barman recover` of the newest backup into the
/// scratch folder, recovery to the end of Barman's WAL archive (past the backup: rows were
/// committed after it), verification, cleanup, evidence B3; then an unknown backup id.
#[test]
fn barman_restore_test_recovers_verifies_records_and_b3_passes() {
    let env = env();
    let b = barman_env();
    let scratch = env.root.join("scratch-barman");
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.root.join("barman-team.toml");
    let cfg_s = cfg.display().to_string();
    let pid_before = std::fs::read_to_string(b.cluster.join("data/postmaster.pid"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = || {
        ok(
            sandbox15(&["sql", "bak-c", "SELECT count(*) FROM barman_rows"]),
            "count",
        )
    };
    let rows_before = rows();
    // Everything in the audited tablespace, with its modification time.
    let listing = |dir: &Path| -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let m = e.metadata().ok();
                if m.as_ref().is_some_and(|m| m.is_dir()) {
                    stack.push(p.clone());
                }
                out.push((p, m.and_then(|m| m.modified().ok())));
            }
        }
        out.sort();
        out
    };
    let ts_before = listing(&b.tablespace);
    assert!(!ts_before.is_empty());
    let mut args = vec![
        "restore-test",
        b.uri.as_str(),
        "--barman-server",
        "pg",
        "--barman-config",
        b.conf.as_str(),
        "--config",
        cfg_s.as_str(),
        "--scratch",
    ];
    let scratch_s = scratch.display().to_string();
    args.push(&scratch_s);
    if is_root() {
        args.extend(["--os-user", "pgready"]);
    }
    let out = env.pgready(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    eprintln!("barman restore-test output:\n{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("PASS: pgready restore-test: Barman server pg, backup "),
        "{stdout}"
    );
    assert!(
        stdout.contains("recovered to the end of the archive"),
        "{stdout}"
    );
    assert!(stdout.contains("pg_amcheck --all OK"), "{stdout}");
    // Archive recovery replayed the commits made after the backup.
    assert!(stdout.contains("(last replayed commit)"), "{stdout}");
    assert!(stderr.contains("barman -c "), "{stderr}");
    assert!(stderr.contains(" recover --no-get-wal "), "{stderr}");
    // The scratch cluster is gone; the audited one runs on, untouched.
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap_or_else(|e| panic!("{e}"))
        .collect();
    assert!(left.is_empty(), "scratch folder not cleaned: {left:?}");
    let pid_after = std::fs::read_to_string(b.cluster.join("data/postmaster.pid"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pid_before.lines().next(), pid_after.lines().next());
    assert_eq!(rows(), rows_before);
    assert!(
        stderr.contains(" --tablespace=ts_c:"),
        "tablespace not relocated: {stderr}"
    );
    assert_eq!(
        listing(&b.tablespace),
        ts_before,
        "the audited tablespace changed"
    );
    // The relocated tablespace was verified with the rest (pg_amcheck --all).
    for f in ["recovery.signal", "barman_wal", ".barman-recover.info"] {
        assert!(
            !b.cluster.join("data").join(f).exists(),
            "{f} in the audited cluster"
        );
    }
    // The entry: B3, pass, the tool named, RTO and RPO.
    let e = common::recorded_b3(&cfg, "Barman server pg, backup ", 3600.0);
    // The next audit with that file passes B3.
    let out = env.pgready(&[
        "audit",
        &b.uri,
        "--format",
        "json",
        "--config",
        &cfg_s,
        "--barman-server",
        "pg",
        "--barman-config",
        &b.conf,
    ]);
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        status(&r, "bak.evidence.restore_tested"),
        "pass",
        "{}",
        text(&r, "bak.evidence.restore_tested")
    );
    let newest = e
        .summary
        .split("backup ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    // A given backup id, recovered to its consistent point (Barman's --target-immediate).
    let mut set_args = args.clone();
    set_args.extend(["--set", newest.as_str()]);
    let out = env.pgready(&set_args);
    let stdout = ok(out, "pgready restore-test --set");
    assert!(
        stdout.contains(&format!(
            "backup {newest} recovered to its consistent point"
        )),
        "{stdout}"
    );
    // An unknown backup id: exit 2 before anything is restored, with the ids there are.
    let before = std::fs::read_to_string(&cfg)
        .unwrap_or_else(|e| panic!("{e}"))
        .len();
    let out = env.pgready(&[
        "restore-test",
        &b.uri,
        "--barman-server",
        "pg",
        "--barman-config",
        &b.conf,
        "--config",
        &cfg_s,
        "--scratch",
        &scratch_s,
        "--set",
        "20000101T000000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Barman server pg has no backup 20000101T000000 in status DONE"),
        "{err}"
    );
    assert!(
        err.contains(&format!("backups of this cluster: {newest}")),
        "{err}"
    );
    let after = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        after.len(),
        before,
        "an entry was written for a refused test"
    );
}

#[test]
fn pgbackrest_barman_and_walg_json_fixtures() {
    use pgready::collect::backup::{self, Origin, ServerFacts};
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/backup");
    let read = |f: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(data.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")),
        )
        .unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    let server = ServerFacts {
        system_identifier: Some("7712147055497867617".to_string()),
        local: true,
        wal_segment_size: Some(16 << 20),
        ..ServerFacts::default()
    };
    let now = 1_795_600_000;
    // pgBackRest 2.45, captured from the real tool: system-id above 2^53 read exactly.
    let info = read("pgbackrest-2.45-info.json");
    let s = backup::pgbackrest::parse_stanza(&info[0]);
    assert_eq!(s.backups.len(), 2);
    assert_eq!(
        s.backups[0].system_identifier.as_deref(),
        Some("7712147055497867617")
    );
    assert_eq!(s.backups[1].kind, "incr");
    // Barman 3.4: DONE sets only; a failure after the newest success is an error; the
    // connection string of show-servers is not copied.
    let r = backup::barman::parse(
        "pg",
        &read("barman-3.4-list-backups.json"),
        &read("barman-3.4-show-servers.json"),
        &server,
    );
    assert_eq!(r.backups.len(), 2);
    assert_eq!(
        r.errors,
        vec!["backup 20261125T130000 FAILED after the newest successful one"]
    );
    assert_eq!(r.repositories[0].retention.window_days, Some(28));
    let sec = backup::finish(r, &server, now, Origin::Flag, None);
    let json = serde_json::to_string(&sec).unwrap_or_default();
    assert!(!json.contains("s3cret"), "{json}");
    assert_eq!(sec.data["newest"]["label"], "20261125T010001 (nightly)");
    // WAL-G: the newest is the greatest finish_time (the list is oldest first), a delta
    // is incremental, another cluster's backup is reported, not counted.
    let sets = backup::walg::parse_list(&read("walg-backup-list-detail.json"));
    assert_eq!(sets.len(), 3);
    let r = backup::ToolReport {
        tool: "walg",
        name: "/etc/wal-g.env".to_string(),
        backups: sets,
        repositories: vec![backup::walg::storage(
            &backup::walg::parse_env("WALG_S3_PREFIX=s3://b/p\nAWS_SECRET_ACCESS_KEY=xyz\n"),
            &server,
        )],
        ..backup::ToolReport::default()
    };
    let sec = backup::finish(r, &server, now, Origin::Flag, None);
    let d = &sec.data;
    assert_eq!(
        d["newest"]["label"],
        "base_000000010000000000000020_D_000000010000000000000010"
    );
    assert_eq!(d["newest"]["type"], "incr");
    assert_eq!(d["newest"]["major"], 15);
    assert_eq!(
        d["other_clusters"][0]["system_identifier"],
        "7000000000000000001"
    );
    assert_eq!(d["repositories"][0]["medium"], "object-store");
    assert_eq!(d["repositories"][0]["backups"], 2);
    assert!(!sec.data.to_string().contains("xyz"));
}
