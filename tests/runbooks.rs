//! The runbook folder end to end: the `docs` collector through live audits of a real
//! server (the fixture folders of tests/data/runbooks, made current and put under git),
//! D5 with a git remote and with a URL that answers, and `pgready runbooks init` on a live
//! server whose templates pass the structure rules once a review date is set.
//! The rules themselves are covered by tests/fixtures/rules (tests/rules.rs).

mod common;
#[path = "runbooks_support/mod.rs"]
mod runbooks_support;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use runbooks_support::{RunbookDir, git, today};
use serde_json::Value;

use common::{finding, status};

const NAME: &str = "rb-pg18";

/// This binary's own server (one, hardened), started once.
struct Server {
    uri: String,
    password: String,
}

fn server() -> &'static Server {
    static S: OnceLock<Result<Server, String>> = OnceLock::new();
    let s = S.get_or_init(|| {
        let pid = std::process::id().to_string();
        let out = common::sandbox(&[
            "start",
            NAME,
            "--major",
            "18",
            "--scenario",
            "hardened",
            "--owner-pid",
            &pid,
        ]);
        if !out.status.success() {
            return Err(format!(
                "pg-sandbox start {NAME} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let pw_file = common::sandbox_dir().join(NAME).join("password");
        let password = std::fs::read_to_string(&pw_file)
            .map_err(|e| format!("{}: {e}", pw_file.display()))?
            .trim()
            .to_string();
        Ok(Server { uri, password })
    });
    match s {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// Runs the real binary in `cwd` (no PG* variables but the password).
fn pgready(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgready"));
    cmd.args(args).current_dir(cwd).env("NO_COLOR", "1");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PGPASSWORD", &server().password);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run pgready: {e}"))
}

fn audit(rb: &RunbookDir, config: &Path) -> Value {
    let s = server();
    let cfg = config.display().to_string();
    let out = pgready(
        rb.tmp.path(),
        &["audit", &s.uri, "--format", "json", "--config", &cfg],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The `docs` section's data from `pgready facts`.
fn facts(rb: &RunbookDir, config: &Path) -> Value {
    let s = server();
    let cfg = config.display().to_string();
    let out = pgready(rb.tmp.path(), &["facts", &s.uri, "--config", &cfg]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("facts: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["sections"]["docs"]["data"].clone()
}

fn offenders(r: &Value, rule: &str) -> Vec<String> {
    finding(r, rule)["offenders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(str::to_string))
        .collect()
}

const RULES: &[&str] = &[
    "doc.runbooks.critical_incidents",
    "doc.runbooks.maintenance",
    "doc.architecture",
    "doc.contacts",
    "doc.reachable_offhost",
    "doc.team_trained",
    "mon.runbook",
    "bak.dr_plan",
];

#[test]
fn complete_folder_passes_every_runbook_rule() {
    let rb = runbooks_support::fixture("complete");
    let r = audit(&rb, &rb.config(None, ""));
    for rule in RULES {
        assert_eq!(status(&r, rule), "pass", "{rule}: {}", finding(&r, rule));
    }
    // The collector's view of the folder, as docs/facts.md describes it.
    let docs = &r["sections"]["docs"];
    assert_eq!(docs["collected"], true, "{docs}");
    let d = &facts(&rb, &rb.config(None, ""));
    assert_eq!(d["dir_source"], "file");
    assert_eq!(d["on_server_host"], true);
    assert_eq!(d["documents"].as_array().map(Vec::len), Some(15), "{d}");
    assert_eq!(d["other_files"][0]["file"], "README.md");
    let failover = d["documents"]
        .as_array()
        .and_then(|ds| ds.iter().find(|x| x["id"] == "failover"))
        .unwrap_or_else(|| panic!("no failover in {d}"));
    assert_eq!(
        failover["sections"],
        serde_json::json!([
            "symptoms",
            "diagnosis",
            "resolution",
            "verification",
            "escalation"
        ])
    );
    assert_eq!(failover["last_reviewed_text"], today());
    assert_eq!(d["contacts"]["entries"], 5);
    assert_eq!(d["contacts"]["phones"], 5);
    assert_eq!(d["dr_plan"]["rto_s"], 3600);
    assert_eq!(d["dr_plan"]["rpo_s"], 300);
    assert_eq!(d["training"]["members"].as_array().map(Vec::len), Some(3));
    assert_eq!(d["git"]["remotes"][0]["location"], "network");
    assert_eq!(d["git"]["remotes"][0]["host"], "git.example.com");
    assert_eq!(d["git"]["uncommitted"], 0);
    assert!(d["url"].is_null());
}

#[test]
fn each_gap_fails_naming_what_is_missing() {
    let rb = runbooks_support::fixture("missing-critical");
    let r = audit(&rb, &rb.config(None, ""));
    let o = offenders(&r, "doc.runbooks.critical_incidents");
    assert!(
        o.iter()
            .any(|x| x.starts_with("database-down: no runbook with this id")),
        "{o:?}"
    );
    assert!(
        o.iter()
            .any(|x| x.starts_with("failover: no runbook")
                && x.contains("failover.md: no front matter")),
        "{o:?}"
    );
    assert_eq!(status(&r, "doc.runbooks.maintenance"), "pass");

    let rb = runbooks_support::fixture("stale");
    let r = audit(&rb, &rb.config(None, ""));
    let o = offenders(&r, "doc.runbooks.critical_incidents");
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(
        o[0].starts_with("disk-full: last reviewed 2026-01-10, "),
        "{o:?}"
    );
    let o = offenders(&r, "doc.contacts");
    assert!(
        o[0].starts_with("contacts.md: last reviewed 2026-06-01, "),
        "{o:?}"
    );

    let rb = runbooks_support::fixture("missing-sections");
    let r = audit(&rb, &rb.config(None, ""));
    let o = offenders(&r, "doc.runbooks.critical_incidents");
    assert_eq!(
        o,
        vec![
            "disk-full.md: \"Escalation\" section is empty".to_string(),
            "failover.md: no \"Verification\" section".to_string(),
        ]
    );

    // A roster member without a training record is named.
    let rb = runbooks_support::fixture("complete");
    let cfg = rb.config(None, "");
    let text = std::fs::read_to_string(&cfg).unwrap_or_default();
    std::fs::write(&cfg, text.replace(r#""Carol"]"#, r#""Carol", "Dave"]"#))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = audit(&rb, &cfg);
    assert_eq!(
        offenders(&r, "doc.team_trained"),
        vec!["Dave: no training record in training.md".to_string()]
    );
}

#[test]
fn without_a_folder_the_rules_are_not_evaluated() {
    let rb = runbooks_support::empty();
    let cfg = rb.tmp.path().join("empty.toml");
    std::fs::write(&cfg, "").unwrap_or_else(|e| panic!("{e}"));
    let r = audit(&rb, &cfg);
    assert_eq!(r["sections"]["docs"]["collected"], false);
    for rule in RULES {
        let f = finding(&r, rule);
        assert_eq!(f["status"], "not_evaluated", "{rule}: {f}");
        assert!(
            f["reason"]
                .as_str()
                .is_some_and(|x| x.contains("no runbook folder given")),
            "{f}"
        );
    }
    // A folder that does not exist is bad input (exit 2), before any connection.
    let s = server();
    let out = pgready(
        rb.tmp.path(),
        &["audit", &s.uri, "--runbooks", "/nonexistent/runbooks"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the runbook folder /nonexistent/runbooks"),
        "{err}"
    );
    // A saved snapshot keeps the folder as it was read: --runbooks cannot change it.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules/doc.contacts/pass.json")
        .display()
        .to_string();
    let out = pgready(
        rb.tmp.path(),
        &[
            "audit",
            "--from-facts",
            &fixture,
            "--runbooks",
            &rb.dir_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn reachable_off_host_through_git() {
    let rb = runbooks_support::fixture("complete");
    let cfg = rb.config(None, "");
    assert_eq!(status(&audit(&rb, &cfg), "doc.reachable_offhost"), "pass");
    let d = rb.dir();
    // A remote on this machine, which is also the database host: not off-host.
    git(
        &d,
        &["remote", "set-url", "origin", "/srv/git/runbooks.git"],
    );
    let r = audit(&rb, &cfg);
    assert_eq!(status(&r, "doc.reachable_offhost"), "fail");
    let actual = finding(&r, "doc.reachable_offhost")["actual"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(actual.contains("(on the database host)"), "{actual}");
    // A network remote, but a local commit not pushed (as the last fetch knows it).
    git(
        &d,
        &[
            "remote",
            "set-url",
            "origin",
            "https://git.example.com/dba/runbooks.git",
        ],
    );
    git(&d, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    git(&d, &["config", "branch.main.remote", "origin"]);
    git(&d, &["config", "branch.main.merge", "refs/heads/main"]);
    assert_eq!(status(&audit(&rb, &cfg), "doc.reachable_offhost"), "pass");
    std::fs::write(d.join("new.md"), "# notes\n").unwrap_or_else(|e| panic!("{e}"));
    git(&d, &["add", "new.md"]);
    git(&d, &["commit", "-q", "-m", "notes"]);
    let r = audit(&rb, &cfg);
    assert_eq!(status(&r, "doc.reachable_offhost"), "fail");
    let actual = finding(&r, "doc.reachable_offhost")["actual"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        actual.contains("1 local commit(s) not pushed to origin/main"),
        "{actual}"
    );
    // No remote at all.
    git(&d, &["remote", "remove", "origin"]);
    let r = audit(&rb, &cfg);
    assert_eq!(status(&r, "doc.reachable_offhost"), "fail");
}

/// A one-shot HTTP server on loopback answering `status` to a single request.
fn http_once(status: u16) -> (u16, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let h = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(
            format!("HTTP/1.1 {status} OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    (port, h)
}

#[test]
fn reachable_through_a_url_is_checked_for_real() {
    // A folder that is not under git; the URL answers, but from loopback: this machine,
    // which is the database host, so D5 still fails (and says why).
    let rb = runbooks_support::empty();
    let (port, h) = http_once(200);
    let cfg = rb.config(
        None,
        &format!("url = \"http://127.0.0.1:{port}/runbooks?token=secret\""),
    );
    let url = &facts(&rb, &cfg)["url"];
    let request = h.join().unwrap_or_default();
    assert!(
        request.starts_with("HEAD /runbooks?token=secret HTTP/1.1\r\n"),
        "{request}"
    );
    assert_eq!(url["status"], 200, "{url}");
    assert_eq!(url["same_host_as_server"], true);
    // The query string (a token) is not stored.
    assert_eq!(url["url"], format!("http://127.0.0.1:{port}/runbooks?…"));
    let (port, h) = http_once(200);
    let cfg = rb.config(None, &format!("url = \"http://127.0.0.1:{port}/runbooks\""));
    let r = audit(&rb, &cfg);
    let _ = h.join();
    assert_eq!(status(&r, "doc.reachable_offhost"), "fail");
    let actual = finding(&r, "doc.reachable_offhost")["actual"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        actual.contains("answered HTTP 200 (served from the database host)"),
        "{actual}"
    );
    // Nobody listening: the error is recorded.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    let cfg = rb.config(None, &format!("url = \"http://127.0.0.1:{port}/\""));
    let url = &facts(&rb, &cfg)["url"];
    assert!(url["status"].is_null(), "{url}");
    assert!(
        url["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{url}"
    );
}

#[test]
fn runbooks_init_writes_templates_that_pass_once_reviewed() {
    let s = server();
    let rb = runbooks_support::empty();
    let d = rb.dir();
    // A draft the team already has, without front matter: never overwritten.
    std::fs::write(d.join("failover.md"), "# our failover notes\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = pgready(rb.tmp.path(), &["runbooks", "init", &rb.dir_str(), &s.uri]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("14 runbook(s) written into"), "{stdout}");
    assert!(
        stdout.contains("failover: failover.md exists without `id: failover` in its front matter (not overwritten)"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("failover.md")).unwrap_or_default(),
        "# our failover notes\n"
    );
    // Filled with this server's facts, and not pretending to be reviewed.
    let down = std::fs::read_to_string(d.join("database-down.md")).unwrap_or_default();
    let port = s
        .uri
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    assert!(down.contains(&format!("port {port}")), "{down}");
    // The sandbox folder is .sandbox in the clone, or /var/tmp/pgready-sandbox when other
    // users cannot enter the clone (.ci/run): compare with the harness's own folder.
    let data = common::sandbox_dir().join("rb-pg18/data");
    assert!(down.contains(&*data.to_string_lossy()), "{down}");
    assert!(down.contains("PostgreSQL 18."), "{down}");
    let arch = std::fs::read_to_string(d.join("architecture.md")).unwrap_or_default();
    assert!(
        arch.contains("a primary with no standby attached"),
        "{arch}"
    );
    let cfg = rb.config(None, "");
    let r = audit(&rb, &cfg);
    assert_eq!(status(&r, "doc.runbooks.critical_incidents"), "fail");
    let o = offenders(&r, "doc.runbooks.critical_incidents");
    assert!(
        o.contains(
            &"disk-full: never reviewed (last_reviewed is empty in disk-full.md)".to_string()
        ),
        "{o:?}"
    );
    // The team reviews them: a date in every front matter, the draft replaced.
    std::fs::remove_file(d.join("failover.md")).unwrap_or_else(|e| panic!("{e}"));
    let again = pgready(rb.tmp.path(), &["runbooks", "init", &rb.dir_str(), &s.uri]);
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.starts_with("1 runbook(s) written"), "{again}");
    assert!(
        again.contains("disk-full: already in disk-full.md"),
        "{again}"
    );
    for e in std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let reviewed: String = text
            .lines()
            .map(|l| {
                if l.starts_with("last_reviewed:") {
                    format!("last_reviewed: {}\n", today())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(e.path(), reviewed).unwrap_or_else(|err| panic!("{err}"));
    }
    let r = audit(&rb, &cfg);
    for rule in [
        "doc.runbooks.critical_incidents",
        "doc.runbooks.maintenance",
        "doc.architecture",
        "mon.runbook",
    ] {
        assert_eq!(status(&r, rule), "pass", "{rule}: {}", finding(&r, rule));
    }
    // What only the team can write is still missing, and said so.
    assert_eq!(status(&r, "doc.contacts"), "fail");
    let o = offenders(&r, "bak.dr_plan");
    assert!(
        o.iter()
            .any(|x| x == "dr-plan.md: RTO \"TODO\" is not a duration (e.g. RTO: 1 h)"),
        "{o:?}"
    );
    assert_eq!(status(&r, "doc.team_trained"), "fail");
}
