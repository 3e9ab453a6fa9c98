//! `[rule.query]`: a team's own rules backed by their own read-only SQL, on a real
//! PostgreSQL 18 (the shared default cluster of this test binary), through the real binary:
//! cluster and each_database scopes, a failing query, the read-only contract, offline
//! evaluation of a saved snapshot, and the load-time checks (exit 2).

mod common;

use serde_json::Value;

use common::{finding, status};

/// A rule file with the team's rules, in a new temporary folder.
fn rules_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgready-rules-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("team.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    dir
}

const RULES: &str = r#"
[[rule]]
id = "sec.team.no_extra_logins"
pillar = "security"
title = "No login role besides postgres"
covers = ["S6"]
severity = "medium"
level = 2
rationale = "The team's own policy: applications connect through pgbouncer as app."
offenders = "rows.map(r, r.rolname + (r.super ? ' (superuser)' : ''))"
actual = "string(size(rows)) + ' other login role(s)'"
remediation = "DROP ROLE the extra login roles, or make them NOLOGIN."
references = ["https://www.postgresql.org/docs/18/role-attributes.html"]
[rule.query]
sql = """
SELECT rolname, rolsuper AS super   -- login roles other than the bootstrap one
FROM pg_catalog.pg_roles
WHERE rolcanlogin AND oid <> 10
ORDER BY 1;
"""

[[rule]]
id = "cfg.team.small_public_schemas"
pillar = "configuration"
title = "No database keeps more than 100 tables in public"
covers = ["C10"]
severity = "low"
level = 2
rationale = "The team's own convention: application tables live in their own schemas."
check = "rows.all(r, r.tables <= params.max_tables)"
actual = "rows.map(r, r.database + ': ' + string(r.tables)).join(', ')"
remediation = "Move the tables to an application schema."
references = ["https://www.postgresql.org/docs/18/ddl-schemas.html"]
[rule.params]
max_tables = 100
[rule.query]
scope = "each_database"
sql = "SELECT count(*) AS tables FROM pg_catalog.pg_tables WHERE schemaname = 'public'"

[[rule]]
id = "mon.team.broken_query"
pillar = "monitoring"
title = "A query that fails"
covers = ["M1"]
severity = "low"
level = 2
rationale = "Shows what a failing query gives."
check = "size(rows) == 0"
remediation = "Fix the query."
references = ["https://www.postgresql.org/docs/18/sql-select.html"]
[rule.query]
sql = "SELECT * FROM no_such_table"

[[rule]]
id = "bak.team.tries_to_write"
pillar = "backup"
title = "A query that tries to write"
covers = ["B1"]
severity = "low"
level = 2
rationale = "pgready's queries run read-only: a function that writes is refused by the server."
check = "size(rows) == 0"
remediation = "Rules only read."
references = ["https://www.postgresql.org/docs/18/functions-sequence.html"]
[rule.query]
sql = "SELECT pg_catalog.nextval('keep_seq') AS n"

[[rule]]
id = "bak.team.unlocks_the_session"
pillar = "backup"
title = "A query that turns the session read-write"
covers = ["B1"]
severity = "low"
level = 2
rationale = "The setting is rolled back with the query's own transaction."
check = "true"
remediation = "Rules only read."
references = ["https://www.postgresql.org/docs/18/functions-admin.html"]
[rule.query]
sql = "SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false) AS v"

[[rule]]
id = "bak.team.writes_after_unlocking"
pillar = "backup"
title = "A write tried after the unlock"
covers = ["B1"]
severity = "low"
level = 2
rationale = "Runs after bak.team.unlocks_the_session: it must still be refused."
check = "size(rows) == 0"
remediation = "Rules only read."
references = ["https://www.postgresql.org/docs/18/functions-sequence.html"]
[rule.query]
sql = "SELECT pg_catalog.nextval('keep_seq') AS n"
"#;

fn audit(pg: &common::Cluster, extra: &[&str]) -> (Value, std::process::Output) {
    let mut args = vec!["audit", "--format", "json"];
    if !extra.contains(&"--from-facts") {
        args.push(pg.uri.as_str());
    }
    args.extend_from_slice(extra);
    let out = pg.pgready(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out)
}

fn setup(pg: &common::Cluster) {
    // A database with a table in public, a table the writing rule would delete from, and
    // one extra login role.
    for sql in [
        "CREATE DATABASE crm",
        "CREATE SEQUENCE keep_seq",
        "CREATE ROLE app LOGIN",
    ] {
        common::sandbox_ok(&["sql", &pg.name, sql]).unwrap_or_else(|e| panic!("{e}"));
    }
    common::sandbox_ok(&["sql", &pg.name, "--db", "crm", "CREATE TABLE t1 (a int)"])
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn team_queries_are_judged_live_and_offline() {
    let pg = common::cluster("pg18-default");
    setup(pg);
    let dir = rules_dir(RULES);
    let rules = dir.path().display().to_string();
    let (r, out) = audit(pg, &["--rules", &rules]);
    assert!(
        out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cluster scope: one offender, named by the query's own columns
    let f = finding(&r, "sec.team.no_extra_logins");
    assert_eq!(f["status"], "fail", "{f}");
    assert_eq!(f["offenders"], serde_json::json!(["app"]));
    assert_eq!(f["actual"], "1 other login role(s)");
    // each_database scope: one row per database, with its name
    let f = finding(&r, "cfg.team.small_public_schemas");
    assert_eq!(f["status"], "pass", "{f}");
    let actual = f["actual"].as_str().unwrap_or("");
    assert!(
        actual.contains("crm: 1") && actual.contains("postgres: 0"),
        "{actual}"
    );
    // a failing query: not evaluated, with the server's error
    let f = finding(&r, "mon.team.broken_query");
    assert_eq!(f["status"], "not_evaluated", "{f}");
    let reason = f["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("relation \"no_such_table\" does not exist"),
        "{reason}"
    );
    // the read-only session refuses the write; the table keeps its row
    for id in ["bak.team.tries_to_write", "bak.team.writes_after_unlocking"] {
        let f = finding(&r, id);
        assert_eq!(f["status"], "not_evaluated", "{f}");
        let reason = f["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("cannot execute nextval() in a read-only transaction"),
            "{reason}"
        );
    }
    assert_eq!(status(&r, "bak.team.unlocks_the_session"), "pass");
    let called = common::sandbox_ok(&["sql", &pg.name, "SELECT is_called FROM keep_seq"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(called, "f", "the sequence was advanced");

    // Offline: `pgready facts --rules` keeps the rows; the snapshot gives the same findings.
    let snap = dir.path().join("facts.json");
    let snap_s = snap.display().to_string();
    common::ok(
        pg.pgready(&["facts", &pg.uri, "--rules", &rules, "-o", &snap_s]),
        "pgready facts --rules",
    );
    let (offline, _) = audit(pg, &["--from-facts", &snap_s, "--rules", &rules]);
    for id in [
        "sec.team.no_extra_logins",
        "cfg.team.small_public_schemas",
        "mon.team.broken_query",
        "bak.team.tries_to_write",
        "bak.team.writes_after_unlocking",
    ] {
        assert_eq!(status(&offline, id), status(&r, id), "{id}");
    }
    // A snapshot written without the team's rules holds no rows for them.
    let plain = dir.path().join("plain.json");
    let plain_s = plain.display().to_string();
    common::ok(
        pg.pgready(&["facts", &pg.uri, "-o", &plain_s]),
        "pgready facts",
    );
    let (offline, _) = audit(pg, &["--from-facts", &plain_s, "--rules", &rules]);
    let f = finding(&offline, "sec.team.no_extra_logins");
    assert_eq!(f["status"], "not_evaluated", "{f}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap_or("")
            .contains("hold no result of this rule's query"),
        "{f}"
    );
}

/// A rule file whose single rule has the given `[rule.query]` table and `check`.
fn one_rule(query: &str, check: &str) -> String {
    format!(
        r#"[[rule]]
id = "sec.team.x"
pillar = "security"
title = "x"
covers = ["S6"]
severity = "low"
level = 2
rationale = "x"
check = "{check}"
remediation = "x"
references = ["https://www.postgresql.org/docs/18/sql-select.html"]
{query}
"#
    )
}

/// `pgready rules list --rules DIR`, with DIR holding `text`.
fn rules_list(text: &str) -> std::process::Output {
    let dir = rules_dir(text);
    std::process::Command::new(env!("CARGO_BIN_EXE_pgready"))
        .args(["rules", "list", "--rules"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn load_error(text: &str) -> String {
    let out = rules_list(text);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn queries_that_are_not_one_read_only_query_are_refused_at_load() {
    let e = load_error(&one_rule("[rule.query]\nsql = \"DELETE FROM t\"", "true"));
    assert!(
        e.contains("team.toml:") && e.contains("query.sql must be one read-only query starting with SELECT, WITH, VALUES or TABLE, not DELETE"),
        "{e}"
    );
    let e = load_error(&one_rule(
        "[rule.query]\nsql = \"SELECT 1; DROP TABLE t\"",
        "true",
    ));
    assert!(e.contains("contains `;` outside a string"), "{e}");
    let e = load_error(&one_rule(
        "[rule.query]\nsql = \"SELECT 1\"\nscope = \"each_schema\"",
        "true",
    ));
    assert!(
        e.contains("query.scope `each_schema`: expected cluster or each_database"),
        "{e}"
    );
    let e = load_error(&one_rule("", "size(rows) == 0"));
    assert!(
        e.contains("reads `rows`, which only a rule with [rule.query] has"),
        "{e}"
    );
    // `;` inside a string or a comment is fine, and so is a trailing one.
    let out = rules_list(&one_rule(
        "[rule.query]\nsql = \"SELECT ';' AS s -- a; comment\\n;\"",
        "size(rows) == 1",
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
