//! Barman: `barman -f json list-backups SERVER` and `barman -f json show-servers SERVER`,
//! plus the server's WAL catalogue (`<wals_directory>/xlog.db`) when it is readable here.
//!
//! Verified against Barman's source (EnterpriseDB/barman, tag release/3.4.0, the version of
//! Debian 12; unchanged in 3.10): `JsonOutputWriter.result_list_backup` writes
//! `{SERVER: [{backup_id, backup_name?, end_time_timestamp (epoch as a string), end_time,
//! size_bytes, wal_size_bytes, status, retention_status, tablespaces}]}` (unfinished
//! backups carry only `backup_id` and `status`); `show-servers` (alias `show-server`)
//! writes `{SERVER: {config keys…, postgres_systemid, streaming_systemid, …}}`
//! (`Server.show`: `config.to_json()` + `get_remote_status()`); `retention_policy` is the
//! text of barman.conf (`RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS` or `REDUNDANCY n`).
//! `xlog.db` lines are `NAME\tSIZE\tTIME\tCOMPRESSION` (barman/infofile.py
//! `WalFileInfo.to_xlogdb_line`). Barman refuses to back up a cluster whose system
//! identifier differs from the server's (`systemid coherence` check), so every backup of
//! a Barman server is matched through the server's system identifier; the per-backup
//! system identifier is not in list-backups. `conninfo` and other connection settings of
//! show-servers are never copied into the facts.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{
    BackupSet, Repository, Retention, ServerFacts, TOOL_TIMEOUT, ToolReport, WalRange,
    display_command, local_medium, run_tool,
};

/// Days of a Barman retention policy, or its redundancy.
pub fn parse_policy(policy: &str) -> (Option<i64>, Option<i64>) {
    let p = policy.trim().to_ascii_uppercase();
    let words: Vec<&str> = p.split_whitespace().collect();
    match words.as_slice() {
        ["REDUNDANCY", n, ..] => (None, n.parse().ok()),
        ["RECOVERY", "WINDOW", "OF", n, unit, ..] => {
            let n: Option<i64> = n.parse().ok();
            let mult = match unit.trim_end_matches('S') {
                "DAY" => 1,
                "WEEK" => 7,
                "MONTH" => 31,
                _ => 0,
            };
            (n.map(|n| n * mult).filter(|d| *d > 0), None)
        }
        _ => (None, None),
    }
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse both JSON documents into a report (no I/O besides `xlog.db`).
pub fn parse(server_name: &str, list: &Value, show: &Value, server: &ServerFacts) -> ToolReport {
    let conf = &show[server_name];
    let systemid = string(&conf["postgres_systemid"])
        .or_else(|| string(&conf["streaming_systemid"]))
        .or_else(|| {
            // The identity file Barman writes next to the backups (2.14+).
            let dir = conf["backup_directory"].as_str()?;
            let text = std::fs::read_to_string(Path::new(dir).join("identity.json")).ok()?;
            string(&serde_json::from_str::<Value>(&text).ok()?["systemid"])
        });
    let major = conf["pg_version"]
        .as_str()
        .or(conf["server_txt_version"].as_str())
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok());
    let mut errors = Vec::new();
    let mut backups = Vec::new();
    let all: Vec<&Value> = list[server_name].as_array().into_iter().flatten().collect();
    // Backup ids are start times (YYYYMMDDTHHMMSS): a failure older than the newest
    // successful backup has been superseded and is not reported.
    let newest_done = all
        .iter()
        .filter(|b| b["status"] == "DONE")
        .filter_map(|b| b["backup_id"].as_str())
        .max()
        .unwrap_or("");
    for b in all {
        let id = b["backup_id"].as_str().unwrap_or_default().to_string();
        let status = b["status"].as_str().unwrap_or_default();
        if status != "DONE" {
            if status == "FAILED" && id.as_str() > newest_done {
                errors.push(format!(
                    "backup {id} FAILED after the newest successful one"
                ));
            }
            continue;
        }
        let Some(stop) = b["end_time_timestamp"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
            .or_else(|| b["end_time_timestamp"].as_i64())
        else {
            continue;
        };
        backups.push(BackupSet {
            label: b["backup_name"]
                .as_str()
                .map_or(id.clone(), |n| format!("{id} ({n})")),
            // Barman's backups are self-contained (rsync reuse only saves space).
            kind: "full".to_string(),
            stop_time: stop,
            size_bytes: b["size_bytes"].as_i64(),
            stored_bytes: b["size_bytes"].as_i64(),
            repo: 1,
            system_identifier: systemid.clone(),
            major,
            ..BackupSet::default()
        });
    }
    let policy = conf["retention_policy"]
        .as_str()
        .map(str::to_string)
        .filter(|p| !p.is_empty() && p != "None");
    let (window_days, redundancy) = policy.as_deref().map_or((None, None), parse_policy);
    let dir = conf["backup_directory"].as_str().map(str::to_string);
    let (medium, off_host, fs) = match &dir {
        Some(d) => local_medium(Path::new(d), server.local),
        None => ("other-host-disk".to_string(), !server.local, None),
    };
    let wal = conf["wals_directory"]
        .as_str()
        .map(|d| xlog_range(Path::new(d), server.wal_segment_size, &backups));
    let repo = Repository {
        key: 1,
        kind: "barman".to_string(),
        host: None,
        path: dir,
        medium,
        off_host,
        fs_type: fs,
        retention: Retention {
            defined: Some(policy.is_some()),
            window_days,
            redundancy,
            policy,
            ..Retention::default()
        },
        wal,
        ..Repository::default()
    };
    let mut partial = Vec::new();
    if systemid.is_none() {
        partial.push(format!(
            "Barman did not report the system identifier of server {server_name} (PostgreSQL unreachable from Barman and no identity.json)"
        ));
    }
    ToolReport {
        tool: "barman",
        name: server_name.to_string(),
        errors,
        repositories: vec![repo],
        backups,
        partial,
        ..ToolReport::default()
    }
}

/// WAL range and gaps from Barman's `xlog.db`, from the newest backup on.
fn xlog_range(wals: &Path, seg_size: Option<i64>, backups: &[BackupSet]) -> WalRange {
    let path = wals.join("xlog.db");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return WalRange {
                gaps_reason: Some(format!("cannot read {}: {e}", path.display())),
                ..WalRange::default()
            };
        }
    };
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let (min, max) = (
        names.iter().min().map(|s| s.to_string()),
        names.iter().max().map(|s| s.to_string()),
    );
    let Some(spl) = seg_size.filter(|s| *s > 0).map(|s| (1u64 << 32) / s as u64) else {
        return WalRange {
            min,
            max,
            gaps_reason: Some("wal_segment_size of the server is unknown".to_string()),
            ..WalRange::default()
        };
    };
    let present: BTreeSet<u64> = names
        .iter()
        .filter_map(|n| super::pgbackrest::segment(n, spl).map(|s| s.1))
        .collect();
    // list-backups has no begin WAL: the check starts at the oldest segment not older than
    // the newest backup is unknown, so it covers the whole catalogue.
    let _ = backups;
    let (Some(from), Some(to)) = (min.as_deref(), max.as_deref()) else {
        return WalRange {
            gaps: Some(Vec::new()),
            ..WalRange::default()
        };
    };
    let (Some((_, a)), Some((tli, b))) = (
        super::pgbackrest::segment(from, spl),
        super::pgbackrest::segment(to, spl),
    ) else {
        return WalRange::default();
    };
    WalRange {
        checked_from: min.clone(),
        gaps: Some(super::pgbackrest::gaps(&present, a, b, tli, spl)),
        min,
        max,
        gaps_reason: None,
    }
}

/// The Barman backup id of a set's label (`ID`, or `ID (NAME)` as [`parse`] writes it).
pub fn backup_id(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}

/// What a recovery needs to know about one backup, from `barman -f json show-backup SERVER
/// ID` (`JsonOutputWriter.result_show_backup`, release/3.4.0: `{SERVER: {backup_id, status,
/// tablespaces: [{name, location, oid}], base_backup_information: {disk_usage_bytes,
/// disk_usage_with_wals_bytes, …}}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupDetail {
    /// (name, location on the backed-up server) of each tablespace.
    pub tablespaces: Vec<(String, String)>,
    /// The base backup plus the WAL Barman keeps after it (stored, so maybe compressed).
    pub size_with_wals: Option<i64>,
}

/// Parse the JSON of `show-backup`.
pub fn parse_show_backup(server_name: &str, v: &Value) -> BackupDetail {
    let b = &v[server_name];
    BackupDetail {
        tablespaces: b["tablespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or_default().to_string(),
                    t["location"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        size_with_wals: b["base_backup_information"]["disk_usage_with_wals_bytes"].as_i64(),
    }
}

/// Run `barman [-c CONF] -f json show-backup SERVER ID` (read-only).
pub fn show_backup(
    server_name: &str,
    config: Option<&Path>,
    backup_id: &str,
) -> Result<BackupDetail, String> {
    let mut args = Vec::new();
    if let Some(c) = config {
        args.push("-c".to_string());
        args.push(c.display().to_string());
    }
    args.extend(["-f", "json", "show-backup", server_name, backup_id].map(String::from));
    let out = run_tool("barman", &args, &[], TOOL_TIMEOUT)?;
    let v: Value = serde_json::from_str(&out.stdout).map_err(|e| {
        format!(
            "`{}` did not print JSON ({e}): {}",
            display_command("barman", &args),
            super::first_lines(&out.stderr, 4)
        )
    })?;
    Ok(parse_show_backup(server_name, &v))
}

/// Run Barman's read-only JSON commands for `server_name`.
pub fn collect(
    server_name: &str,
    config: Option<&Path>,
    server: &ServerFacts,
) -> Result<ToolReport, String> {
    let mut commands = Vec::new();
    let run = |cmd: &str, commands: &mut Vec<String>| -> Result<Value, String> {
        let mut args = Vec::new();
        if let Some(c) = config {
            args.push("-c".to_string());
            args.push(c.display().to_string());
        }
        args.extend(["-f", "json", cmd, server_name].map(String::from));
        let shown = display_command("barman", &args);
        commands.push(shown.clone());
        let out = run_tool("barman", &args, &[], TOOL_TIMEOUT)?;
        serde_json::from_str(&out.stdout).map_err(|e| {
            format!(
                "`{shown}` did not print JSON ({e}): {}",
                super::first_lines(&out.stderr, 4)
            )
        })
    };
    let list = run("list-backups", &mut commands)?;
    let show = run("show-servers", &mut commands)?;
    if list.get(server_name).is_none() {
        return Err(format!(
            "Barman knows no server {server_name} (`{}`)",
            commands[0]
        ));
    }
    let version = run_tool("barman", &["-v".to_string()], &[], TOOL_TIMEOUT)
        .ok()
        .and_then(|o| o.stdout.split_whitespace().next().map(str::to_string));
    let mut r = parse(server_name, &list, &show, server);
    r.version = version;
    r.commands = commands;
    r.config_files = config
        .map(|c| vec![c.display().to_string()])
        .unwrap_or_default();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(parse_policy("RECOVERY WINDOW OF 4 WEEKS"), (Some(28), None));
        assert_eq!(
            parse_policy("recovery window of 12 months"),
            (Some(372), None)
        );
        assert_eq!(parse_policy("REDUNDANCY 3"), (None, Some(3)));
        assert_eq!(parse_policy("whatever"), (None, None));
    }

    #[test]
    fn backup_ids_and_show_backup() {
        assert_eq!(backup_id("20261125T010001 (nightly)"), "20261125T010001");
        assert_eq!(backup_id("20261125T010001"), "20261125T010001");
        let v = serde_json::json!({"pg": {"backup_id": "20261125T010001", "status": "DONE",
            "tablespaces": [{"name": "ts1", "location": "/srv/ts1", "oid": 16390}],
            "base_backup_information": {"disk_usage_bytes": 100, "disk_usage_with_wals_bytes": 150}}});
        let d = parse_show_backup("pg", &v);
        assert_eq!(
            d.tablespaces,
            vec![("ts1".to_string(), "/srv/ts1".to_string())]
        );
        assert_eq!(d.size_with_wals, Some(150));
    }
}
