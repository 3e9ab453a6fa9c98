//! Security pillar, parts hba / roles / privileges / RLS / logging and least privilege, on
//! real servers: one hardened cluster per major (18 and 16) is audited as it is (every rule
//! of these parts must pass), then a dozen independent misconfigurations are put on it and
//! each must be reported by its own rule naming its offender. Every audit runs twice: as
//! the bootstrap superuser and as a role with only pg_monitor (which includes
//! pg_read_all_settings), where whatever needs more must be "not evaluated" with the
//! privilege named — never a pass — and the security criterion G1 is never met.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use serde_json::Value;

/// The rule files of these parts: every rule in them must pass on a hardened server.
const RULE_FILES: &[&str] = &[
    "checks/security/auth.toml",
    "checks/security/network.toml",
    "checks/security/roles.toml",
    "checks/security/privileges.toml",
    "checks/security/rls.toml",
    "checks/security/logging.toml",
];

/// Sections readable only by a superuser (or an explicit GRANT): rules reading them must be
/// "not evaluated" for a pg_monitor role.
const SUPERUSER_SECTIONS: &[&str] = &["hba", "passwords", "password_checks"];

const AUDITOR: &str = "secr_auditor";
const AUDITOR_PASSWORD: &str = "Aud-7hG2-not-a-common-one";

fn rule_ids() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut ids = Vec::new();
    for f in RULE_FILES {
        let text = std::fs::read_to_string(root.join(f))
            .unwrap_or_else(|e| panic!("cannot read {f}: {e}"));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("id = \"") {
                ids.push(rest.trim_end_matches('"').to_string());
            }
        }
    }
    assert!(
        ids.len() > 40,
        "only {} rules found in {RULE_FILES:?}",
        ids.len()
    );
    ids
}

/// Rules (of the whole pack) that read a superuser-only section.
fn superuser_rules() -> Vec<String> {
    let pack = pgready::rules::load(&[]).unwrap_or_else(|e| panic!("rule pack: {e}"));
    pack.rules
        .iter()
        .filter(|r| {
            r.sections
                .iter()
                .any(|s| SUPERUSER_SECTIONS.contains(&s.as_str()))
        })
        .map(|r| r.id.clone())
        .collect()
}

struct Scenario {
    name: String,
    major: u32,
    admin: common::Cluster,
    monitor: common::Cluster,
}

fn sandbox_ok(args: &[&str]) -> String {
    let out = common::sandbox(args);
    assert!(
        out.status.success(),
        "pg-sandbox {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn sql(name: &str, db: &str, statements: &[&str]) {
    let mut args = vec!["sql", name, "--db", db];
    args.extend_from_slice(statements);
    sandbox_ok(&args);
}

fn start(name: &str, major: u32) -> Scenario {
    let pid = std::process::id().to_string();
    let m = major.to_string();
    let uri = sandbox_ok(&[
        "start",
        name,
        "--major",
        &m,
        "--scenario",
        "hardened",
        "--owner-pid",
        &pid,
        "--fresh",
    ])
    .trim()
    .to_string();
    let dir = common::sandbox_dir().join(name);
    let password = std::fs::read_to_string(dir.join("password"))
        .unwrap_or_else(|e| panic!("{name}: no password file: {e}"))
        .trim()
        .to_string();
    sql(
        name,
        "postgres",
        &[&format!(
            "CREATE ROLE {AUDITOR} LOGIN PASSWORD '{AUDITOR_PASSWORD}' IN ROLE pg_monitor"
        )],
    );
    let monitor_uri = uri.replacen("postgres@", &format!("{AUDITOR}@"), 1);
    let cluster = |uri: String, password: String| common::Cluster {
        name: name.to_string(),
        major,
        scenario: "hardened".to_string(),
        uri,
        password: Some(password),
        dir: dir.clone(),
    };
    Scenario {
        name: name.to_string(),
        major,
        admin: cluster(uri, password),
        monitor: cluster(monitor_uri, AUDITOR_PASSWORD.to_string()),
    }
}

fn audit(pg: &common::Cluster) -> Value {
    let out = pg.pgready(&["audit", &pg.uri, "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not a JSON report ({e}):\n{}\nstderr:\n{}",
            pg.uri,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn findings(report: &Value) -> BTreeMap<String, &Value> {
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {report}"))
        .iter()
        .filter_map(|f| Some((f["rule_id"].as_str()?.to_string(), f)))
        .collect()
}

fn status<'a>(f: &BTreeMap<String, &'a Value>, rule: &str) -> &'a str {
    f.get(rule)
        .and_then(|x| x["status"].as_str())
        .unwrap_or_else(|| panic!("no finding for {rule}"))
}

fn describe(f: &Value) -> String {
    format!(
        "{} {} actual={} offenders={} reason={}",
        f["rule_id"], f["status"], f["actual"], f["offenders"], f["reason"]
    )
}

/// The hardened baseline: every rule of these parts passes (or does not apply) as
/// superuser; as pg_monitor, those needing superuser are not evaluated, naming it.
fn check_baseline(s: &Scenario, ids: &[String], su_rules: &[String]) {
    let r = audit(&s.admin);
    let f = findings(&r);
    let bad: Vec<String> = ids
        .iter()
        .filter(|id| !matches!(status(&f, id), "pass" | "not_applicable"))
        .map(|id| describe(f[id.as_str()]))
        .collect();
    assert!(
        bad.is_empty(),
        "{}: rules not passing on the hardened baseline:\n{}",
        s.name,
        bad.join("\n")
    );
    let mr = audit(&s.monitor);
    let m = findings(&mr);
    for id in ids {
        let st = status(&m, id);
        if su_rules.contains(id) {
            assert_eq!(
                st,
                "not_evaluated",
                "{}: as pg_monitor {}",
                s.name,
                describe(m[id.as_str()])
            );
            let reason = m[id.as_str()]["reason"].as_str().unwrap_or("");
            assert!(
                reason.contains("superuser"),
                "{}: reason must name the privilege: {reason}",
                s.name
            );
        } else {
            assert!(
                matches!(st, "pass" | "not_applicable"),
                "{}: as pg_monitor {}",
                s.name,
                describe(m[id.as_str()])
            );
        }
    }
}

/// Independent misconfigurations, each caught by its own rule with its own offender.
fn misconfigure(s: &Scenario) {
    let n = s.name.as_str();
    sql(
        n,
        "postgres",
        &[
            "CREATE ROLE su2 SUPERUSER LOGIN PASSWORD 'Kq7-unguessable-su2'",
            "CREATE ROLE weak_name LOGIN PASSWORD 'weak_name'",
            "CREATE ROLE weak_common LOGIN PASSWORD 'changeme'",
            "SET password_encryption = 'md5'",
            "CREATE ROLE old_md5 LOGIN PASSWORD 'Zr8-long-random-md5'",
            "RESET password_encryption",
            "CREATE ROLE app_user LOGIN PASSWORD 'Vb3-long-random-app'",
            "CREATE ROLE creator LOGIN CREATEROLE PASSWORD 'Vb3-long-random-cr'",
            "CREATE ROLE escalator LOGIN PASSWORD 'Vb3-long-random-esc' IN ROLE su2",
            "CREATE ROLE bypasser LOGIN BYPASSRLS PASSWORD 'Vb3-long-random-by'",
            "CREATE ROLE rep_app LOGIN REPLICATION PASSWORD 'Vb3-long-random-rep'",
            "CREATE ROLE filegrp NOLOGIN IN ROLE pg_read_server_files",
            "CREATE ROLE filer LOGIN PASSWORD 'Vb3-long-random-fi' IN ROLE filegrp",
            "CREATE ROLE reader_all LOGIN PASSWORD 'Vb3-long-random-ra' IN ROLE pg_read_all_data",
            "CREATE ROLE killer LOGIN PASSWORD 'Vb3-long-random-ki' IN ROLE pg_signal_backend",
            "CREATE ROLE nopass LOGIN",
            "CREATE ROLE tenant_owner LOGIN PASSWORD 'Vb3-long-random-to'",
            "ALTER SYSTEM SET log_lock_waits = off",
            "ALTER SYSTEM SET log_file_mode = '0644'",
            "ALTER SYSTEM SET log_min_duration_statement = 0",
            "ALTER SYSTEM SET log_min_messages = 'error'",
            "ALTER SYSTEM SET debug_print_plan = on",
            "ALTER SYSTEM SET authentication_timeout = '5min'",
            "ALTER SYSTEM SET scram_iterations = 1000",
        ],
    );
    if s.major >= 18 {
        sql(
            n,
            "postgres",
            &["ALTER SYSTEM SET md5_password_warnings = off"],
        );
    }
    sql(
        n,
        "app",
        &[
            "GRANT CREATE ON SCHEMA public TO PUBLIC",
            "CREATE FUNCTION public.reset_pw(r text) RETURNS void LANGUAGE sql SECURITY DEFINER AS 'SELECT NULL'",
            "CREATE FUNCTION public.safe_fn() RETURNS int LANGUAGE sql SECURITY DEFINER \
             SET search_path = pg_catalog, pg_temp AS 'SELECT 1'",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
            "CREATE LANGUAGE plpgsqlu HANDLER plpgsql_call_handler INLINE plpgsql_inline_handler \
             VALIDATOR plpgsql_validator",
            "CREATE EXTENSION dblink",
            "CREATE TABLE public.invoices (tenant int, amount int)",
            "CREATE POLICY tenant_only ON public.invoices USING (tenant = 1)",
            "CREATE TABLE public.empty_rls (x int)",
            "ALTER TABLE public.empty_rls ENABLE ROW LEVEL SECURITY",
            "CREATE TABLE public.owned (tenant int)",
            "ALTER TABLE public.owned OWNER TO tenant_owner",
            "ALTER TABLE public.owned ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY own_tenant ON public.owned USING (tenant = 1)",
            "CREATE TABLE public.open_rls (x int)",
            "ALTER TABLE public.open_rls ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE public.open_rls FORCE ROW LEVEL SECURITY",
            "CREATE POLICY allow_all ON public.open_rls USING (true)",
            "CREATE TABLE public.rep_owned (x int)",
            "ALTER TABLE public.rep_owned OWNER TO rep_app",
        ],
    );
    let hba = s.admin.dir.join("data/pg_hba.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&hba)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", hba.display()));
    // Line numbers follow the sandbox's hardened file (6 lines: 2 comments, 3 rules, and
    // the comment below is line 6).
    f.write_all(
        b"# misconfigurations of tests/security_roles.rs\n\
local    all          nopass                      trust\n\
host     all          all          0.0.0.0/0      md5\n\
hostssl  app          app_user     10.1.2.0/24    md5\n\
host     replication  all          10.0.0.0/8     trust\n\
hostssl  app          app_user     192.168.0.0/16 ident\n\
hostssl  app          app_user     10.9.9.0/24    bogus\n",
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", hba.display()));
    drop(f);
    sql(n, "postgres", &["SELECT pg_reload_conf()"]);
}

/// (rule, a text one offender — or `actual` for a check rule — must contain).
fn expected_failures(major: u32) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        // hba
        (
            "sec.hba.no_trust_network",
            "pg_hba.conf:10 host replication all 10.0.0.0/8 trust",
        ),
        (
            "sec.hba.no_trust_local",
            "pg_hba.conf:7 local all nopass trust",
        ),
        (
            "sec.hba.wide_network",
            "pg_hba.conf:8 host all all 0.0.0.0/0 md5",
        ),
        (
            "sec.hba.all_all_network",
            "pg_hba.conf:8 host all all 0.0.0.0/0 md5",
        ),
        (
            "sec.hba.replication_network",
            "pg_hba.conf:10 host replication all 10.0.0.0/8 trust",
        ),
        (
            "sec.hba.errors",
            "pg_hba.conf:12 (error: invalid authentication method \"bogus\")",
        ),
        (
            "sec.hba.superuser_network",
            "pg_hba.conf:8 host all all 0.0.0.0/0 md5 admits superuser postgres, su2",
        ),
        (
            "sec.hba.no_ident_network",
            "pg_hba.conf:11 hostssl app app_user 192.168.0.0/16 ident",
        ),
        (
            "sec.tls.hba_hostssl_only",
            "pg_hba.conf:8 host all all 0.0.0.0/0 md5",
        ),
        (
            "sec.auth.hba_weak_methods",
            "pg_hba.conf:9 hostssl app app_user 10.1.2.0/24 md5 (every login role it admits has a SCRAM verifier",
        ),
        // passwords
        ("sec.auth.stored_password_hashes", "old_md5 (MD5 verifier)"),
        (
            "sec.auth.weak_passwords",
            "weak_name: the password equals the role name",
        ),
        (
            "sec.auth.weak_passwords",
            "weak_common: the password is in the list of common passwords",
        ),
        (
            "sec.auth.authentication_timeout",
            "authentication_timeout = 5 min",
        ),
        ("sec.auth.scram_iterations", "scram_iterations = 1000"),
        // roles
        ("sec.role.superusers", "su2"),
        (
            "sec.role.can_become_superuser",
            "escalator can SET ROLE to su2",
        ),
        ("sec.role.createrole", "creator"),
        ("sec.role.bypassrls", "bypasser"),
        (
            "sec.role.replication_dedicated",
            "rep_app: owns objects in app",
        ),
        (
            "sec.role.dangerous_predefined",
            "filer: pg_read_server_files",
        ),
        ("sec.role.broad_data_roles", "reader_all: pg_read_all_data"),
        ("sec.role.signal_backend", "killer: pg_signal_backend"),
        (
            "sec.role.passwordless_login",
            "nopass (no password) admitted by pg_hba.conf:7 local all nopass trust",
        ),
        // per database
        (
            "sec.role.public_schema_create",
            "app: PUBLIC has CREATE on schema public",
        ),
        (
            "sec.role.secdef_search_path",
            "app: public.reset_pw(r text) owned by postgres, executable by PUBLIC",
        ),
        (
            "sec.role.default_privs_public",
            "app: objects of type table created by postgres grant SELECT to PUBLIC",
        ),
        (
            "sec.role.untrusted_languages",
            "app: plpgsqlu (0 function(s))",
        ),
        ("sec.ext.risky_installed", "app: dblink"),
        // row-level security
        (
            "sec.rls.policies_but_disabled",
            "app.public.invoices (1 policy, RLS disabled)",
        ),
        (
            "sec.rls.enabled_no_policy",
            "app.public.empty_rls (RLS on, no policy",
        ),
        (
            "sec.rls.owner_bypass",
            "app.public.owned (owner tenant_owner bypasses its 1 policy)",
        ),
        (
            "sec.rls.permissive_true",
            "app.public.open_rls: policy allow_all is PERMISSIVE TO PUBLIC USING (true)",
        ),
        // logging
        ("sec.log.lock_waits", "log_lock_waits = off"),
        ("sec.log.file_mode", "log_file_mode = 0644"),
        (
            "sec.log.not_every_statement",
            "log_min_duration_statement = 0 ms",
        ),
        ("sec.log.min_messages", "log_min_messages = error"),
        ("sec.log.debug_prints_off", "debug_print_plan = on"),
        (
            "sec.log.replication_commands",
            "log_replication_commands = off",
        ),
    ];
    if major >= 18 {
        v.push(("sec.auth.md5_warnings", "md5_password_warnings = off"));
    }
    v
}

fn check_misconfigured(s: &Scenario, su_rules: &[String]) {
    let r = audit(&s.admin);
    let f = findings(&r);
    let mut problems = Vec::new();
    for (rule, needle) in expected_failures(s.major) {
        let x = f
            .get(rule)
            .unwrap_or_else(|| panic!("no finding for {rule}"));
        let offenders: Vec<&str> = x["offenders"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let actual = x["actual"].as_str().unwrap_or("");
        if x["status"] != "fail"
            || !(offenders.iter().any(|o| o.contains(needle)) || actual.contains(needle))
        {
            problems.push(format!(
                "expected {rule} to fail naming {needle:?}: {}",
                describe(x)
            ));
        }
    }
    assert!(problems.is_empty(), "{}:\n{}", s.name, problems.join("\n"));

    // The same server seen by pg_monitor: nothing that needs superuser passes, nothing that
    // fails for the superuser passes, and the security criterion is not met.
    let mr = audit(&s.monitor);
    let m = findings(&mr);
    for (id, x) in &f {
        let Some(y) = m.get(id) else { continue };
        let (a, b) = (
            x["status"].as_str().unwrap_or(""),
            y["status"].as_str().unwrap_or(""),
        );
        if su_rules.contains(id) {
            assert_eq!(
                b,
                "not_evaluated",
                "{}: as pg_monitor {}",
                s.name,
                describe(y)
            );
            let reason = y["reason"].as_str().unwrap_or("");
            assert!(
                reason.contains("needs superuser"),
                "{}: {id}: {reason}",
                s.name
            );
        }
        if a == "fail" {
            assert!(
                matches!(b, "fail" | "not_evaluated"),
                "{}: {id} fails as superuser but is {b} as pg_monitor",
                s.name
            );
        }
    }
    let g1 = mr["verdict"]["criteria"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "G1"))
        .unwrap_or_else(|| panic!("no G1 in {}", mr["verdict"]));
    assert_ne!(
        g1["status"], "met",
        "{}: G1 met as pg_monitor: {g1}",
        s.name
    );
    assert_ne!(mr["verdict"]["decision"], "GO");
}

fn run(major: u32) {
    let ids = rule_ids();
    let s = start(&format!("secr-t{major}"), major);
    let su_rules = superuser_rules();
    // Every rule of these parts that reads a superuser-only section is in the list.
    for must in [
        "sec.hba.errors",
        "sec.auth.weak_passwords",
        "sec.role.passwordless_login",
    ] {
        assert!(
            su_rules.iter().any(|r| r == must),
            "{must} not in {su_rules:?}"
        );
    }
    check_baseline(&s, &ids, &su_rules);
    misconfigure(&s);
    check_misconfigured(&s, &su_rules);
    let pid = std::process::id().to_string();
    common::sandbox(&["release", &s.name, "--owner-pid", &pid]);
}

/// Debian's PostgreSQL 15 with its pgaudit package: loading pgaudit alone is reported
/// (pgaudit.log defaults to none), the usual class lists are understood.
#[test]
fn pg15_debian_pgaudit_classes() {
    const BIN: &str = "/usr/lib/postgresql/15/bin";
    let name = "secr-audit15";
    let pid = std::process::id().to_string();
    let sandbox_15 = |args: &[&str]| {
        let out = std::process::Command::new(common::sandbox_script())
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PGREADY_SANDBOX_DIR", common::sandbox_dir())
            .env("PG_BIN", BIN)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg-sandbox: {e}"));
        assert!(
            out.status.success(),
            "pg-sandbox {args:?} (PG_BIN={BIN}, apt-get install postgresql-15 \
             postgresql-15-pgaudit) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let uri = sandbox_15(&[
        "start",
        name,
        "--major",
        "15",
        "--scenario",
        "hardened",
        "--owner-pid",
        &pid,
        "--fresh",
    ]);
    sql(
        name,
        "postgres",
        &["ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, pgaudit"],
    );
    sandbox_15(&["restart", name]);
    let dir = common::sandbox_dir().join(name);
    let pg = common::Cluster {
        name: name.to_string(),
        major: 15,
        scenario: "hardened".to_string(),
        uri,
        password: std::fs::read_to_string(dir.join("password"))
            .ok()
            .map(|p| p.trim().to_string()),
        dir,
    };
    for (value, expected) in [
        (None, "fail"), // loaded, pgaudit.log left at its default: none
        (Some("ddl, role"), "pass"),
        (Some("all, -misc"), "pass"),
        (Some("all, -role"), "fail"),
        (Some("write, ddl"), "fail"),
    ] {
        if let Some(v) = value {
            sql(
                name,
                "postgres",
                &[
                    &format!("ALTER SYSTEM SET pgaudit.log = '{v}'"),
                    "SELECT pg_reload_conf()",
                ],
            );
        }
        let r = audit(&pg);
        let f = findings(&r);
        assert_eq!(
            status(&f, "sec.log.pgaudit_classes"),
            expected,
            "pgaudit.log = {value:?}: {}",
            describe(f["sec.log.pgaudit_classes"])
        );
    }
    common::sandbox(&["release", name, "--owner-pid", &pid]);
}

#[test]
fn pg18_hardened_then_misconfigured() {
    run(18);
}

#[test]
fn pg16_hardened_then_misconfigured() {
    run(16);
}
