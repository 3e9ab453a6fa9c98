//! `pgready runbooks init DIR [CONNINFO]`: a first runbook folder written from this
//! server's facts, so that a team starts from its own system, not from a blank page.
//!
//! The templates are data (`templates/runbooks/*.md`, embedded): Markdown with YAML front
//! matter and `{{name}}` placeholders filled from a facts snapshot collected as
//! `pgready facts` does. `last_reviewed` is left empty: the D rules treat the pages as
//! never reviewed until the team reviews them. Existing files are never overwritten.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use crate::app::Failure;
use crate::cli::{ContextArgs, RunbooksCommand, RunbooksInitArgs};
use crate::config::Config;
use crate::facts::Facts;

// Verified for PostgreSQL 14–18 (docs, system_views.sql, release notes): pg_promote(wait)
// (12+); pg_stat_replication write/flush/replay_lag (10+); pg_stat_wal_receiver sender_host,
// sender_port (11+); pg_replication_slots.wal_status (13+); pg_stat_activity.backend_type
// (10+); pg_blocking_pids (9.6+); pg_ls_waldir (10+, pg_monitor); pg_stat_progress_vacuum
// phase/heap_blks_* (9.6+, unchanged by 17's dead-tuple columns); reserved_connections and
// pg_use_reserved_connections (16+, rendered only when the setting exists);
// pg_reload_conf() reloads the SSL files (10+); pg_verifybackup (13+); pg_amcheck (14+);
// vacuumdb --missing-stats-only and pg_upgrade's optimizer statistics (18+).
// pgBackRest (reference.xml of pgbackrest/pgbackrest): restore --type=time --target
// --target-action --set, --pg1-path, check, info; verify is public from 2.39.
/// The embedded templates: (id, text). `generic` serves the ids without a template of their own.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "database-down",
        include_str!("../templates/runbooks/database-down.md"),
    ),
    (
        "disk-full",
        include_str!("../templates/runbooks/disk-full.md"),
    ),
    (
        "replication-lag",
        include_str!("../templates/runbooks/replication-lag.md"),
    ),
    (
        "connection-saturation",
        include_str!("../templates/runbooks/connection-saturation.md"),
    ),
    (
        "restore-pitr",
        include_str!("../templates/runbooks/restore-pitr.md"),
    ),
    (
        "failover",
        include_str!("../templates/runbooks/failover.md"),
    ),
    (
        "vacuum-bloat",
        include_str!("../templates/runbooks/vacuum-bloat.md"),
    ),
    (
        "upgrade-minor-major",
        include_str!("../templates/runbooks/upgrade-minor-major.md"),
    ),
    (
        "certificate-rotation",
        include_str!("../templates/runbooks/certificate-rotation.md"),
    ),
    (
        "backup-verification",
        include_str!("../templates/runbooks/backup-verification.md"),
    ),
    (
        "monitoring",
        include_str!("../templates/runbooks/monitoring.md"),
    ),
    ("dr-plan", include_str!("../templates/runbooks/dr-plan.md")),
    (
        "architecture",
        include_str!("../templates/runbooks/architecture.md"),
    ),
    (
        "contacts",
        include_str!("../templates/runbooks/contacts.md"),
    ),
    (
        "training",
        include_str!("../templates/runbooks/training.md"),
    ),
];
const GENERIC: &str = include_str!("../templates/runbooks/generic.md");
const HEADER: &str = include_str!("../templates/runbooks/_header.md");

/// Run a `runbooks` subcommand.
pub fn run(cmd: &RunbooksCommand) -> Result<ExitCode, Failure> {
    match cmd {
        RunbooksCommand::Init(a) => init(a),
    }
}

/// The ids `init` writes: the required runbooks, then the special documents.
pub fn planned_ids(config: &Config) -> Vec<String> {
    let r = &config.runbooks.required;
    let mut ids: Vec<String> = Vec::new();
    for id in r
        .critical
        .iter()
        .chain(&r.maintenance)
        .chain(&r.monitoring)
        .map(String::as_str)
        .chain(["dr-plan", "architecture", "contacts", "training"])
    {
        if !ids.iter().any(|x| x == id) {
            ids.push(id.to_string());
        }
    }
    ids
}

fn init(a: &RunbooksInitArgs) -> Result<ExitCode, Failure> {
    if a.sources.runbooks.is_some() {
        return Err(Failure::Input(
            "runbooks init takes the folder as its DIR argument; leave out --runbooks".into(),
        ));
    }
    // Everything the user wrote is validated before any connection.
    let pack = crate::rules::load(&[])?;
    let config = Config::load(a.config.as_deref())?;
    config.validate(&pack)?;
    let dir = &a.dir;
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Failure::Input(format!(
                "{} exists and is not a folder",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Failure::Input(format!(
                "cannot open {}: {e}",
                dir.display()
            )));
        }
    }
    let facts =
        crate::app::collect_live(&a.conn, &config, &ContextArgs::default(), &a.sources, &[])?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Input(format!("cannot create the folder {}: {e}", dir.display())))?;
    let existing = crate::collect::docs::read_folder(dir).map_err(Failure::Input)?;
    let vars = variables(&facts);
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for id in planned_ids(&config) {
        if let Some(d) = existing.documents.iter().find(|d| d.id == id) {
            skipped.push(format!("{id}: already in {}", d.file));
            continue;
        }
        let file = format!("{id}.md");
        let path = dir.join(&file);
        let text = render(template(&id), &id, &vars);
        // create_new: never overwrite, even a file that appeared meanwhile.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(text.as_bytes())
                    .map_err(|e| Failure::Input(format!("cannot write {}: {e}", path.display())))?;
                written.push(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                skipped.push(format!(
                    "{id}: {file} exists without `id: {id}` in its front matter (not overwritten)"
                ));
            }
            Err(e) => {
                return Err(Failure::Input(format!(
                    "cannot write {}: {e}",
                    path.display()
                )));
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} runbook(s) written into {} from {} (PostgreSQL {}):",
        written.len(),
        dir.display(),
        facts.target.display,
        vars.get("version").map_or("?", String::as_str)
    );
    for f in &written {
        let _ = writeln!(out, "  {f}");
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "Skipped (never overwritten):");
        for s in &skipped {
            let _ = writeln!(out, "  {s}");
        }
    }
    let _ = writeln!(
        out,
        "Next: complete every TODO (contacts.md, the RTO/RPO lines of dr-plan.md, training.md), have a\n\
         second person review each page and set `last_reviewed: YYYY-MM-DD` in its front matter, put the\n\
         folder under git with a remote off the database host, then:\n  \
         pgready audit … --runbooks {}",
        dir.display()
    );
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn template(id: &str) -> &'static str {
    TEMPLATES
        .iter()
        .find(|(t, _)| *t == id)
        .map_or(GENERIC, |(_, text)| text)
}

/// Replace every `{{name}}`; an unknown name is left visible (a unit test keeps the
/// templates and the variables in step).
pub fn render(template: &str, id: &str, vars: &BTreeMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        match name {
            "id" => out.push_str(id),
            "header" => out.push_str(&render(HEADER, id, vars)),
            _ => match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("{{");
                    out.push_str(name);
                    out.push_str("}}");
                }
            },
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn section<'a>(facts: &'a Facts, name: &str) -> Option<&'a Value> {
    facts.section(name).filter(|s| s.collected).map(|s| &s.data)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The template variables, from a facts snapshot. Anything the snapshot lacks says so.
pub fn variables(facts: &Facts) -> BTreeMap<&'static str, String> {
    let server = section(facts, "server");
    let settings = section(facts, "settings");
    let setting = |k: &str| settings.and_then(|s| s.get(k));
    let unknown = |what: &str| format!("unknown ({what} not readable by the audit role)");
    let mut v: BTreeMap<&'static str, String> = BTreeMap::new();
    let date = time::OffsetDateTime::from_unix_timestamp(facts.collected_at)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    v.insert("generated", date);
    v.insert("server", facts.target.display.clone());
    let version = text(server.and_then(|s| s.get("version"))).unwrap_or_else(|| "?".into());
    let major = server
        .and_then(|s| s.get("major"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    v.insert("version", version);
    v.insert("major", major.to_string());
    let standby = server
        .and_then(|s| s.get("in_recovery"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    v.insert(
        "role",
        if standby { "standby" } else { "primary" }.to_string(),
    );
    let host = section(facts, "host")
        .and_then(|h| text(h.get("hostname")))
        .or_else(|| {
            // postgresql://user@HOST:PORT/db…
            let d = &facts.target.display;
            let rest = d.split_once("://").map_or(d.as_str(), |(_, r)| r);
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            let h = rest.split(['/', '?']).next().unwrap_or("");
            let h = h.rsplit_once(':').map_or(h, |(h, _)| h);
            (!h.is_empty()).then(|| h.to_string())
        })
        .unwrap_or_else(|| "localhost".into());
    v.insert("host", host);
    v.insert(
        "port",
        text(setting("port")).unwrap_or_else(|| "5432".into()),
    );
    let data_dir = text(server.and_then(|s| s.get("data_directory")))
        .or_else(|| text(setting("data_directory")))
        .unwrap_or_else(|| unknown("data_directory"));
    v.insert("data_directory", data_dir);
    let plain = |k: &'static str, v: &mut BTreeMap<&'static str, String>| {
        let val = match setting(k) {
            Some(Value::String(s)) if s.is_empty() => "(empty)".to_string(),
            Some(x) => text(Some(x)).unwrap_or_else(|| x.to_string()),
            None => unknown(k),
        };
        v.insert(k, val);
    };
    for k in [
        "archive_mode",
        "archive_command",
        "max_connections",
        "autovacuum",
        "autovacuum_max_workers",
        "autovacuum_freeze_max_age",
        "ssl",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_ca_file",
        "listen_addresses",
    ] {
        plain(k, &mut v);
    }
    let bytes = |k: &str| match setting(k).and_then(Value::as_i64) {
        Some(n) => crate::rules::expr::human_bytes(n),
        None => unknown(k),
    };
    let ms = |k: &str| match setting(k).and_then(Value::as_i64) {
        Some(0) => "0 (off)".to_string(),
        Some(n) => crate::rules::expr::human_ms(n),
        None => unknown(k),
    };
    v.insert("wal_keep_size", bytes("wal_keep_size"));
    v.insert("max_wal_size", bytes("max_wal_size"));
    v.insert("archive_timeout", ms("archive_timeout"));
    v.insert(
        "idle_in_transaction_session_timeout",
        ms("idle_in_transaction_session_timeout"),
    );
    let mut reserved = format!(
        "superuser_reserved_connections = {}",
        text(setting("superuser_reserved_connections")).unwrap_or_else(|| "?".into())
    );
    // reserved_connections exists from PostgreSQL 16 (with pg_use_reserved_connections).
    if let Some(r) = text(setting("reserved_connections")) {
        let _ = write!(
            reserved,
            ", reserved_connections = {r} (for pg_use_reserved_connections)"
        );
    }
    v.insert("reserved_connections", reserved);
    v.insert(
        "checksums",
        text(setting("data_checksums")).unwrap_or_else(|| "unknown".into()),
    );
    let log = match (
        text(setting("logging_collector")),
        text(setting("log_directory")),
        text(setting("log_destination")),
    ) {
        (Some(c), Some(d), dest) if c == "on" => format!(
            "logging_collector = on, log_directory = `{d}` (relative paths are under the data directory){}",
            dest.map(|d| format!(", log_destination = {d}"))
                .unwrap_or_default()
        ),
        (_, _, Some(dest)) => format!(
            "log_destination = {dest} without the logging collector: the service manager's journal or the file given to pg_ctl -l"
        ),
        _ => unknown("the log settings"),
    };
    v.insert("log_location", log);
    let (replication, slots, hint) = replication_text(section(facts, "replication"), standby);
    v.insert("replication", replication);
    v.insert("slots", slots);
    v.insert("replication_hint", hint);
    v.insert("databases", databases_text(section(facts, "databases")));
    backup_text(facts, &mut v);
    v
}

fn replication_text(repl: Option<&Value>, standby: bool) -> (String, String, String) {
    let Some(r) = repl else {
        return (
            "unknown (replication facts not collected)".into(),
            "unknown".into(),
            "Check `pg_stat_replication` for standbys before deciding on a failover.".into(),
        );
    };
    let list = |k: &str| {
        r.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let standbys = list("standbys");
    let slots = list("slots");
    let slot_text = if slots.is_empty() {
        "no replication slot".to_string()
    } else {
        slots
            .iter()
            .map(|s| {
                format!(
                    "`{}` ({}, {})",
                    s["slot_name"].as_str().unwrap_or("?"),
                    s["slot_type"].as_str().unwrap_or("?"),
                    if s["active"].as_bool() == Some(true) {
                        "active"
                    } else {
                        "inactive"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut t = String::new();
    if standby {
        let recv = r.get("receiver").filter(|x| !x.is_null());
        match recv {
            Some(x) => {
                let _ = write!(
                    t,
                    "this server is a standby streaming from {}:{} ({})",
                    text(x.get("sender_host")).unwrap_or_else(|| "?".into()),
                    text(x.get("sender_port")).unwrap_or_else(|| "?".into()),
                    text(x.get("status")).unwrap_or_else(|| "?".into())
                );
            }
            None => t.push_str("this server is a standby with no WAL receiver running"),
        }
    } else if standbys.is_empty() {
        t.push_str("a primary with no standby attached when pgready looked");
    } else {
        let _ = write!(t, "a primary with {} standby(s): ", standbys.len());
        let s: Vec<String> = standbys
            .iter()
            .map(|s| {
                format!(
                    "`{}` from {} ({}, {})",
                    s["application_name"].as_str().unwrap_or("?"),
                    s["client_addr"].as_str().unwrap_or("a local socket"),
                    s["state"].as_str().unwrap_or("?"),
                    s["sync_state"].as_str().unwrap_or("?")
                )
            })
            .collect();
        t.push_str(&s.join(", "));
    }
    let _ = write!(t, "; {slot_text}");
    let hint = if !standby && standbys.is_empty() {
        "No standby is attached: if the host or its data is lost, the way back is a restore \
         ([restore-pitr](restore-pitr.md)), within the RTO of [dr-plan](dr-plan.md)."
            .to_string()
    } else {
        "A standby exists: if the primary will not come back quickly, see [failover](failover.md)."
            .to_string()
    };
    (t, slot_text, hint)
}

fn databases_text(dbs: Option<&Value>) -> String {
    let Some(list) = dbs.and_then(Value::as_array) else {
        return "TODO: the databases (not collected by pgready).".into();
    };
    let mut out = String::from(
        "| database | size | owner (TODO) | applications (TODO) |\n|---|---|---|---|\n",
    );
    for d in list
        .iter()
        .filter(|d| d["is_template"].as_bool() != Some(true))
    {
        let size = d["size_bytes"]
            .as_i64()
            .map_or_else(|| "?".to_string(), crate::rules::expr::human_bytes);
        let _ = writeln!(
            out,
            "| {} | {size} | TODO | TODO |",
            d["name"].as_str().unwrap_or("?")
        );
    }
    out.trim_end().to_string()
}

fn backup_text(facts: &Facts, v: &mut BTreeMap<&'static str, String>) {
    let b = section(facts, "backup");
    let tool = b.and_then(|b| b.get("tool")).and_then(Value::as_str);
    let name = b
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("NAME");
    let (desc, info, restore, verify) = match tool {
        Some("pgbackrest") => (
            format!("pgBackRest, stanza `{name}`"),
            format!("```sh\npgbackrest --stanza={name} info\n```"),
            format!(
                "```sh\n# the newest backup, replayed up to the target time, into a new data directory:\n\
                 pgbackrest --stanza={name} --pg1-path=NEW_DATADIR --type=time \\\n  \
                 \"--target=YYYY-MM-DD HH:MM:SS+00\" --target-action=promote restore\n\
                 # or a given backup: --set=LABEL (labels from `pgbackrest --stanza={name} info`)\n```"
            ),
            format!(
                "```sh\npgbackrest --stanza={name} info      # newest backups and the archived WAL range\n\
                 pgbackrest --stanza={name} check     # archiving works end to end\n\
                 pgbackrest --stanza={name} verify    # checksums of the repository's files (pgBackRest 2.39+)\n```"
            ),
        ),
        Some("barman") => (
            format!("Barman, server `{name}`"),
            format!("```sh\nbarman list-backups {name}\nbarman show-server {name}\n```"),
            format!(
                "```sh\n# on the Barman host, into a new data directory on the target host:\n\
                 barman recover --target-time \"YYYY-MM-DD HH:MM:SS+00\" --target-action promote \\\n  \
                 --remote-ssh-command \"ssh postgres@TARGET_HOST\" {name} latest NEW_DATADIR\n```"
            ),
            format!("```sh\nbarman check {name}\nbarman list-backups {name}\n```"),
        ),
        Some("walg") => (
            "WAL-G".to_string(),
            "```sh\nwal-g backup-list --detail\n```".to_string(),
            "```sh\nwal-g backup-fetch NEW_DATADIR LATEST\n\
             # then in NEW_DATADIR/postgresql.auto.conf:\n\
             #   restore_command = 'wal-g wal-fetch %f %p'\n\
             #   recovery_target_time = 'YYYY-MM-DD HH:MM:SS+00'\n\
             #   recovery_target_action = 'promote'\n\
             touch NEW_DATADIR/recovery.signal\n```"
                .to_string(),
            "```sh\nwal-g backup-list --detail\nwal-g wal-verify integrity timeline\n```"
                .to_string(),
        ),
        _ => {
            (
                "TODO: the backup tool, its schedule and repository (pgready found none: see the \
                 `backup` section of `pgready facts`)"
                    .to_string(),
                "TODO: how to list the backups and the archived WAL range.".to_string(),
                "```sh\n# TODO: the backup tool's restore command. With a pg_basebackup copy in NEW_DATADIR:\n\
                 # postgresql.auto.conf: restore_command = '…' (the inverse of archive_command),\n\
                 #                       recovery_target_time = 'YYYY-MM-DD HH:MM:SS+00',\n\
                 #                       recovery_target_action = 'promote'\n\
                 touch NEW_DATADIR/recovery.signal\n```"
                    .to_string(),
                "```sh\npg_verifybackup BACKUP_DIR    # a pg_basebackup backup with its manifest (PostgreSQL 13+)\n```\nTODO: the backup tool's own check.".to_string(),
            )
        }
    };
    v.insert("backup", desc);
    v.insert("backup_info", info);
    v.insert("restore_steps", restore);
    v.insert("verify_steps", verify);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Section, TargetInfo};
    use serde_json::json;

    fn sample() -> Facts {
        let mut f = Facts::new(
            1_795_600_000,
            TargetInfo {
                display: "postgresql://postgres@127.0.0.1:5432/postgres".into(),
                local: true,
            },
        );
        f.insert(
            "server",
            Section::ok(json!({"version": "18.1", "major": 18, "in_recovery": false, "data_directory": "/var/lib/postgresql/18/main"})),
        );
        f.insert(
            "settings",
            Section::ok(json!({"port": 5432, "archive_mode": "on", "archive_command": "pgbackrest --stanza=main archive-push %p",
                "max_connections": 100, "superuser_reserved_connections": 3, "reserved_connections": 0,
                "wal_keep_size": 0, "max_wal_size": 1073741824, "archive_timeout": 60000,
                "idle_in_transaction_session_timeout": 0, "autovacuum": true, "autovacuum_max_workers": 3,
                "autovacuum_freeze_max_age": 200000000, "ssl": true, "ssl_cert_file": "server.crt",
                "ssl_key_file": "server.key", "ssl_ca_file": "", "listen_addresses": "localhost",
                "data_checksums": true, "logging_collector": true, "log_directory": "log", "log_destination": "stderr"})),
        );
        f.insert(
            "replication",
            Section::ok(json!({"is_standby": false, "standbys": [{"application_name": "replica1", "client_addr": "10.0.0.2", "state": "streaming", "sync_state": "async"}],
                "slots": [{"slot_name": "replica1", "slot_type": "physical", "active": true}], "receiver": null})),
        );
        f.insert(
            "backup",
            Section::ok(json!({"tool": "pgbackrest", "name": "main"})),
        );
        f
    }

    #[test]
    fn every_placeholder_is_known() {
        let vars = variables(&sample());
        for (id, t) in TEMPLATES.iter().copied().chain([("custom-id", GENERIC)]) {
            let out = render(t, id, &vars);
            assert!(!out.contains("{{"), "{id}: unknown placeholder in\n{out}");
            let doc = crate::collect::docs::parse_doc(&format!("{id}.md"), &out)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(doc.id, id);
            assert_eq!(doc.last_reviewed, None, "{id}: must not look reviewed");
        }
    }

    #[test]
    fn templates_carry_the_server_facts() {
        let vars = variables(&sample());
        let restore = render(template("restore-pitr"), "restore-pitr", &vars);
        assert!(restore.contains("pgbackrest --stanza=main"), "{restore}");
        assert!(restore.contains("/var/lib/postgresql/18/main"));
        let failover = render(template("failover"), "failover", &vars);
        assert!(
            failover.contains("`replica1` from 10.0.0.2 (streaming, async)"),
            "{failover}"
        );
        let conn = render(
            template("connection-saturation"),
            "connection-saturation",
            &vars,
        );
        assert!(conn.contains("reserved_connections = 0"), "{conn}");
    }

    #[test]
    fn incident_templates_have_the_five_sections() {
        let vars = variables(&sample());
        for id in [
            "database-down",
            "disk-full",
            "replication-lag",
            "connection-saturation",
            "restore-pitr",
            "failover",
            "vacuum-bloat",
            "upgrade-minor-major",
            "certificate-rotation",
            "backup-verification",
            "monitoring",
            "dr-plan",
        ] {
            let doc = crate::collect::docs::parse_doc(id, &render(template(id), id, &vars))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            for s in [
                "symptoms",
                "diagnosis",
                "resolution",
                "verification",
                "escalation",
            ] {
                assert!(
                    doc.sections.iter().any(|x| x == s),
                    "{id}: {s} missing: {doc:?}"
                );
            }
        }
        // A custom id gets only placeholders: its sections count as empty.
        let doc = crate::collect::docs::parse_doc("x", &render(GENERIC, "x", &vars))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(doc.sections.is_empty(), "{doc:?}");
    }
}
