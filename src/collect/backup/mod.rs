//! The `backup` section: what the backup tool (pgBackRest, Barman or WAL-G) knows about
//! this cluster's backups, read through the tool's own JSON output (read-only commands
//! only: `pgbackrest info` / `repo-ls`, `barman list-backups` / `show-servers`,
//! `wal-g backup-list`), matched to the audited cluster by **system identifier**.
//!
//! Shape in `docs/facts.md` (`## backup`). The collector never decides pass or fail: it
//! records every backup set (this cluster's and any other cluster's under the same name),
//! the repositories with their kind, place and retention settings, the WAL range each one
//! holds and its gaps, and the tool's own status. Ages are left to the rules (`now - t`),
//! except the spread of backups over days/weeks/months, which is computed against
//! `collected_at` (the `now` of every rule), so an offline audit of the snapshot gives the
//! same findings.
//!
//! A missing tool, a failing command or an unreadable repository makes the section
//! missing, with the command that failed and its stderr.

pub mod barman;
pub mod pgbackrest;
pub mod walg;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::SourceArgs;
use crate::config::BackupConfig;
use crate::facts::{Facts, Section};

/// How long one tool command may run during an audit.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Which tool, and where its configuration is: flags win over `[backup]` of pgready.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    PgBackRest {
        stanza: Option<String>,
        config: Option<PathBuf>,
    },
    Barman {
        server: String,
        config: Option<PathBuf>,
    },
    WalG {
        env: PathBuf,
    },
}

/// Where the choice of tool came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Flag,
    File,
    Detected,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::File => "file",
            Origin::Detected => "detected",
        }
    }
}

/// The tool the user named, if any (flags first, then the file). Naming two tools is an
/// input error.
pub fn requested(
    flags: &SourceArgs,
    file: &BackupConfig,
) -> Result<Option<(Source, Origin)>, String> {
    let from =
        |f: Option<&str>, c: Option<&str>| f.map(|_| Origin::Flag).or(c.map(|_| Origin::File));
    let pick_path = |f: &Option<PathBuf>, c: &Option<PathBuf>| f.clone().or_else(|| c.clone());
    let stanza = flags
        .pgbackrest_stanza
        .clone()
        .or_else(|| file.pgbackrest_stanza.clone());
    let pgb_config = pick_path(&flags.pgbackrest_config, &file.pgbackrest_config);
    let barman = flags
        .barman_server
        .clone()
        .or_else(|| file.barman_server.clone());
    let walg = pick_path(&flags.walg_env, &file.walg_env);
    let mut chosen = Vec::new();
    if stanza.is_some() || pgb_config.is_some() {
        let origin = from(
            flags
                .pgbackrest_stanza
                .as_deref()
                .or(flags.pgbackrest_config.as_ref().and_then(|p| p.to_str())),
            file.pgbackrest_stanza
                .as_deref()
                .or(file.pgbackrest_config.as_ref().and_then(|p| p.to_str())),
        )
        .unwrap_or(Origin::Flag);
        chosen.push((
            Source::PgBackRest {
                stanza,
                config: pgb_config,
            },
            origin,
        ));
    }
    if let Some(server) = barman {
        let origin = from(
            flags.barman_server.as_deref(),
            file.barman_server.as_deref(),
        )
        .unwrap_or(Origin::Flag);
        chosen.push((
            Source::Barman {
                server,
                config: pick_path(&flags.barman_config, &file.barman_config),
            },
            origin,
        ));
    } else if flags.barman_config.is_some() || file.barman_config.is_some() {
        return Err(
            "a Barman configuration file was given without a server: add --barman-server NAME \
             (or barman_server in [backup])"
                .to_string(),
        );
    }
    if let Some(env) = walg {
        let origin = if flags.walg_env.is_some() {
            Origin::Flag
        } else {
            Origin::File
        };
        chosen.push((Source::WalG { env }, origin));
    }
    if chosen.len() > 1 {
        return Err(
            "more than one backup tool was named (pgBackRest, Barman, WAL-G): name the one that \
             backs up this server"
                .to_string(),
        );
    }
    Ok(chosen.pop())
}

/// What the collector needs to know about the audited server.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    /// `pg_control_system().system_identifier` as text.
    pub system_identifier: Option<String>,
    pub data_directory: Option<String>,
    pub major: Option<i64>,
    /// `wal_segment_size` in bytes (for WAL gap arithmetic).
    pub wal_segment_size: Option<i64>,
    /// The server runs on this machine.
    pub local: bool,
}

impl ServerFacts {
    /// Read what the PostgreSQL collector already put in `facts`.
    pub fn from_facts(facts: &Facts) -> Self {
        let server = facts
            .section("server")
            .filter(|s| s.collected)
            .map(|s| &s.data);
        let settings = facts
            .section("settings")
            .filter(|s| s.collected)
            .map(|s| &s.data);
        ServerFacts {
            system_identifier: server
                .and_then(|s| s["system_identifier"].as_str())
                .map(str::to_string),
            data_directory: server
                .and_then(|s| s["data_directory"].as_str())
                .map(str::to_string),
            major: server.and_then(|s| s["major"].as_i64()),
            wal_segment_size: settings.and_then(|s| s["wal_segment_size"].as_i64()),
            local: facts.target.local,
        }
    }
}

/// One backup set as the tool describes it (tool-neutral).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BackupSet {
    /// The tool's name for the set (pgBackRest label, Barman backup id, WAL-G backup name).
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub kind: String,
    pub start_time: Option<i64>,
    pub stop_time: i64,
    pub duration_s: Option<i64>,
    /// Size of the database when restored, in bytes.
    pub size_bytes: Option<i64>,
    /// Bytes this set takes in the repository (compressed, without the sets it references).
    pub stored_bytes: Option<i64>,
    /// Repository key (pgBackRest repo number; 1 for tools with one store).
    pub repo: i64,
    /// True when the tool found page checksum errors (pgBackRest `error`); null when unknown.
    pub error: Option<bool>,
    pub system_identifier: Option<String>,
    pub major: Option<i64>,
    /// First and last WAL segment the set needs to be consistent.
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
    /// Set by [`finish`]: the set belongs to the audited cluster.
    pub this_cluster: Option<bool>,
}

/// Retention settings of one repository, as the tool's configuration states them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Retention {
    /// Whether any retention is configured (false: the tool keeps every backup, or has no
    /// policy; null: the tool has no retention setting pgready can read, e.g. WAL-G).
    pub defined: Option<bool>,
    /// pgBackRest `repoN-retention-full` (count of full backups, or days with type time).
    pub full: Option<i64>,
    /// `count` or `time`.
    pub full_type: Option<String>,
    pub diff: Option<i64>,
    pub archive: Option<i64>,
    pub archive_type: Option<String>,
    /// How far back the settings keep backups, in days, when they say it (pgBackRest time
    /// retention, Barman `RECOVERY WINDOW`).
    pub window_days: Option<i64>,
    /// How many full backups the settings keep, when they say it (pgBackRest count
    /// retention, Barman `REDUNDANCY`).
    pub redundancy: Option<i64>,
    /// The policy as the tool writes it (Barman `retention_policy`).
    pub policy: Option<String>,
    /// Why `defined` is null although the tool has retention settings (they live on a
    /// repository host whose configuration pgready cannot read).
    pub reason: Option<String>,
}

/// The WAL archive of this cluster in one repository.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WalRange {
    pub min: Option<String>,
    pub max: Option<String>,
    /// Where the gap check started (the newest backup's first WAL segment).
    pub checked_from: Option<String>,
    /// Missing segments (ranges as `FIRST..LAST` or single names); null when not checked.
    pub gaps: Option<Vec<String>>,
    /// Why `gaps` is null.
    pub gaps_reason: Option<String>,
}

/// One repository (pgBackRest repoN, the Barman server's storage, WAL-G's storage).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Repository {
    pub key: i64,
    /// `posix`, `cifs`, `sftp`, `s3`, `gcs`, `azure`, `swift`, `ssh`, `file`, `barman`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository host or storage endpoint (never credentials).
    pub host: Option<String>,
    pub path: Option<String>,
    pub bucket: Option<String>,
    /// `db-host-disk`, `other-host-disk`, `network-fs`, `object-store`, `remote-host`.
    pub medium: String,
    /// The copy lives off the database host.
    pub off_host: bool,
    /// File system type of a local repository path (`ext4`, `nfs4`, …).
    pub fs_type: Option<String>,
    pub cipher: Option<String>,
    pub status_code: Option<i64>,
    pub status_message: Option<String>,
    pub retention: Retention,
    pub wal: Option<WalRange>,
    /// Set by [`finish`]: successful sets of this cluster in this repository.
    pub backups: i64,
    pub newest_stop_time: Option<i64>,
}

/// What one tool reported, before matching to the cluster.
#[derive(Debug, Clone, Default)]
pub struct ToolReport {
    /// `pgbackrest`, `barman`, `walg`.
    pub tool: &'static str,
    pub version: Option<String>,
    /// Stanza, Barman server, or WAL-G environment file.
    pub name: String,
    pub config_files: Vec<String>,
    pub commands: Vec<String>,
    pub status_code: Option<i64>,
    pub status_message: Option<String>,
    /// The tool's own complaints (repository status, failed checks…).
    pub errors: Vec<String>,
    pub repositories: Vec<Repository>,
    pub backups: Vec<BackupSet>,
    /// Why parts could not be read (makes the section partial).
    pub partial: Vec<String>,
}

/// A command the collector runs, and what it printed.
#[derive(Debug)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Quote an argument for display (a command the user may paste).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command line as text.
pub fn display_command(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `program args` with extra environment, bounded by `timeout`; stdout on success,
/// else a message with the command, its exit status and its stderr.
pub fn run_tool(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<ToolOutput, String> {
    run_tool_in(program, args, env, timeout, None)
}

/// [`run_tool`] in the working directory `cwd`.
pub fn run_tool_in(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
    cwd: Option<&Path>,
) -> Result<ToolOutput, String> {
    let shown = display_command(program, args);
    let mut cmd = Command::new(program);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("`{shown}` failed: {program} is not installed or not in PATH")
        } else {
            format!("`{shown}` failed: cannot start {program}: {e}")
        }
    })?;
    // Read both pipes on threads so that a chatty tool cannot block on a full pipe.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` did not finish within {} s and was stopped",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("`{shown}` failed: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let detail = first_lines(
            if stderr.trim().is_empty() {
                &stdout
            } else {
                &stderr
            },
            6,
        );
        return Err(format!(
            "`{shown}` failed ({status}){}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        ));
    }
    Ok(ToolOutput { stdout, stderr })
}

/// At most `n` non-empty lines of `s`, joined with " / ".
pub fn first_lines(s: &str, n: usize) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Epoch seconds of an RFC 3339 time (`2024-01-02T03:04:05.123Z`).
pub fn rfc3339_epoch(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The initdb time encoded in a system identifier (its upper 32 bits are the seconds of
/// `gettimeofday()` at bootstrap: `BootStrapXLOG()` in src/backend/access/transam/xlog.c,
/// `sysidentifier = ((uint64) tv.tv_sec) << 32` — unchanged 14–18).
pub fn cluster_created(system_identifier: &str) -> Option<i64> {
    system_identifier
        .parse::<u64>()
        .ok()
        .map(|id| (id >> 32) as i64)
        .filter(|t| *t > 0)
}

/// File system type and mount point of the mount holding `path` (longest prefix in
/// /proc/self/mountinfo), for a path on this machine.
pub fn fs_type(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok().or_else(|| {
        // A path that does not exist yet: its nearest existing parent.
        path.ancestors().find_map(|p| std::fs::canonicalize(p).ok())
    })?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in text.lines() {
        // id parent major:minor root mount-point options ... - fstype source super
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mount) = fields.get(4) else { continue };
        let mount = mount.replace("\\040", " ");
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let Some(fstype) = fields.get(dash + 1) else {
            continue;
        };
        if canon.starts_with(&mount) && best.as_ref().is_none_or(|(n, _)| mount.len() > *n) {
            best = Some((mount.len(), (*fstype).to_string()));
        }
    }
    best.map(|(_, t)| t)
}

/// Network file systems: a repository there is on another machine.
pub fn is_network_fs(fs: &str) -> bool {
    let fs = fs.to_ascii_lowercase();
    [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "9p",
        "afs",
        "lustre",
    ]
    .contains(&fs.as_str())
        || fs.starts_with("fuse.sshfs")
        || fs.starts_with("fuse.s3fs")
        || fs.starts_with("fuse.rclone")
        || fs.starts_with("fuse.gcsfuse")
}

/// Medium and off-host flag of a repository path that pgready reads on this machine.
pub fn local_medium(path: &Path, server_local: bool) -> (String, bool, Option<String>) {
    let fs = fs_type(path);
    if fs.as_deref().is_some_and(is_network_fs) {
        return ("network-fs".to_string(), true, fs);
    }
    if server_local {
        ("db-host-disk".to_string(), false, fs)
    } else {
        // pgready (and the repository) run on another machine than the database.
        ("other-host-disk".to_string(), true, fs)
    }
}

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// The average Gregorian month (365.2425 / 12 days).
const MONTH: i64 = 2_629_746;

/// Distinct age buckets (0 = the last `unit` seconds before `now`) of `times`, sorted.
fn buckets(times: &[i64], now: i64, unit: i64) -> Vec<i64> {
    let mut v: Vec<i64> = times
        .iter()
        .filter(|t| **t <= now)
        .map(|t| (now - t) / unit)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn set_json(b: &BackupSet) -> Value {
    serde_json::to_value(b).unwrap_or(Value::Null)
}

/// Match the sets to the cluster and build the section.
pub fn finish(
    mut r: ToolReport,
    server: &ServerFacts,
    now: i64,
    origin: Origin,
    detected: Option<String>,
) -> Section {
    let ours = server.system_identifier.clone();
    for b in &mut r.backups {
        b.this_cluster = match (&ours, &b.system_identifier) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        if b.duration_s.is_none() {
            b.duration_s = b.start_time.map(|s| (b.stop_time - s).max(0));
        }
    }
    r.backups
        .sort_by(|a, b| a.stop_time.cmp(&b.stop_time).then(a.label.cmp(&b.label)));
    let mut partial = r.partial.clone();
    if ours.is_none() {
        partial.push(
            "the server's system identifier is unknown (pg_control_system() not readable): \
             backups cannot be matched to this cluster"
                .to_string(),
        );
    } else if r.backups.iter().any(|b| b.this_cluster.is_none()) {
        partial.push(format!(
            "{} did not report the system identifier of every backup: those were not counted",
            r.tool
        ));
    }
    let mine: Vec<&BackupSet> = r
        .backups
        .iter()
        .filter(|b| b.this_cluster == Some(true))
        .collect();
    for repo in &mut r.repositories {
        let sets: Vec<&&BackupSet> = mine.iter().filter(|b| b.repo == repo.key).collect();
        repo.backups = sets.len() as i64;
        repo.newest_stop_time = sets.iter().map(|b| b.stop_time).max();
    }
    let newest = mine.last().map(|b| set_json(b));
    let newest_full = mine
        .iter()
        .rev()
        .find(|b| b.kind == "full")
        .map(|b| set_json(b));
    let times: Vec<i64> = mine.iter().map(|b| b.stop_time).collect();
    let mut others: Vec<(String, Option<i64>, i64)> = Vec::new();
    for b in r.backups.iter().filter(|b| b.this_cluster == Some(false)) {
        let id = b.system_identifier.clone().unwrap_or_default();
        match others.iter_mut().find(|o| o.0 == id) {
            Some(o) => o.2 += 1,
            None => others.push((id, b.major, 1)),
        }
    }
    let data = json!({
        "tool": r.tool,
        "version": r.version,
        "name": r.name,
        "source": origin.as_str(),
        "detected": detected,
        "config_files": r.config_files,
        "commands": r.commands,
        "system_identifier": ours,
        "cluster_created": ours.as_deref().and_then(cluster_created),
        "status": r.status_code.map(|c| json!({"code": c, "message": r.status_message})),
        "errors": r.errors,
        "backups": r.backups.iter().map(set_json).collect::<Vec<_>>(),
        "newest": newest,
        "newest_full": newest_full,
        "other_clusters": others.iter().map(|(id, major, n)| json!({
            "system_identifier": id, "major": major, "backups": n,
        })).collect::<Vec<_>>(),
        "spread": {
            "days": buckets(&times, now, DAY),
            "weeks": buckets(&times, now, WEEK),
            "months": buckets(&times, now, MONTH),
        },
        "repositories": serde_json::to_value(&r.repositories).unwrap_or(Value::Null),
    });
    if partial.is_empty() {
        Section::ok(data)
    } else {
        Section::partial(data, partial.join("; "))
    }
}

/// Collect the `backup` section.
pub fn collect(flags: &SourceArgs, file: &BackupConfig, server: &ServerFacts, now: i64) -> Section {
    let (source, origin, detected) = match requested(flags, file) {
        Err(e) => return Section::missing(e),
        Ok(Some((s, o))) => (s, o, None),
        Ok(None) => match pgbackrest::detect(server) {
            Ok((stanza, message)) => (
                Source::PgBackRest {
                    stanza: Some(stanza),
                    config: None,
                },
                Origin::Detected,
                Some(message),
            ),
            Err(message) => return Section::missing(message),
        },
    };
    let report = match &source {
        Source::PgBackRest { stanza, config } => {
            pgbackrest::collect(stanza.as_deref(), config.as_deref(), server)
        }
        Source::Barman {
            server: name,
            config,
        } => barman::collect(name, config.as_deref(), server),
        Source::WalG { env } => walg::collect(env, server),
    };
    match report {
        Ok(r) => finish(r, server, now, origin, detected),
        Err(e) => Section::missing(match detected {
            Some(d) => format!("{d}; then {e}"),
            None => e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_distinct_ages() {
        let now = 10 * DAY;
        let t = [
            now - 3600,
            now - 2 * 3600,
            now - DAY - 1,
            now - 9 * DAY,
            now + 5,
        ];
        assert_eq!(buckets(&t, now, DAY), vec![0, 1, 9]);
        assert_eq!(buckets(&t, now, WEEK), vec![0, 1]);
    }

    #[test]
    fn initdb_time_from_system_identifier() {
        // 7712147055497867617 >> 32 = 1795624162 (2026-11-25 16:29:22 UTC, the initdb of
        // the test cluster whose pgBackRest info gave this id).
        assert_eq!(cluster_created("7712147055497867617"), Some(1_795_624_162));
        assert_eq!(cluster_created("x"), None);
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(shell_quote("--stanza=main"), "--stanza=main");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            rfc3339_epoch("2024-01-02T03:04:05.123456Z"),
            Some(1_704_164_645)
        );
        assert_eq!(
            rfc3339_epoch("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645)
        );
        assert_eq!(rfc3339_epoch("yesterday"), None);
    }
}
