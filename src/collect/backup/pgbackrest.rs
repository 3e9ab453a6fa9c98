//! pgBackRest: `pgbackrest --output=json info`, `repo-ls` for WAL gaps, and the settings
//! of its configuration files (repositories, retention).
//!
//! Verified against pgBackRest's source (tags release/2.45 … 2.54, repository
//! pgbackrest/pgbackrest) and against the real 2.45 of Debian 12 in tests/backup.rs:
//! - Config files (src/config/parse.c `cfgFileLoad`): without `--config`, the file
//!   `/etc/pgbackrest/pgbackrest.conf`, else the old default `/etc/pgbackrest.conf`, plus
//!   every `*.conf` of `/etc/pgbackrest/conf.d`; with `--config FILE` only that file.
//!   Sections `[global]`, `[global:COMMAND]`, `[STANZA]`, `[STANZA:COMMAND]`; the stanza
//!   section wins over global. Environment variables `PGBACKREST_<OPTION>` win over files.
//! - Options (src/build/config/config.yaml): `repoN-type` posix (default) | cifs | s3 |
//!   gcs | azure (| sftp from 2.46); `repoN-path` (default /var/lib/pgbackrest),
//!   `repoN-host` (a repository host), `repoN-s3-bucket/-endpoint/-region`,
//!   `repoN-gcs-bucket/-endpoint`, `repoN-azure-container`, `repoN-storage-host`,
//!   `repoN-sftp-host`, `repoN-cipher-type` none | aes-256-cbc, `repoN-retention-full`
//!   (1–9999999, no default), `repoN-retention-full-type` count (default) | time (days),
//!   `repoN-retention-diff`, `repoN-retention-archive`, `repoN-retention-archive-type`
//!   full (default) | diff | incr. Deprecated spellings `repo-*`, `retention-full`, … mean
//!   repo1. Secrets (`repoN-cipher-pass`, `repoN-s3-key`, `repoN-s3-key-secret`,
//!   `repoN-s3-token`, `repoN-gcs-key`, `repoN-azure-key`, `repoN-azure-account`) are
//!   never read into the facts: only the keys listed above are kept.
//! - `info --output=json` (src/command/info/info.c): an array of stanzas `{name, status
//!   {code, message, lock}, cipher, repo[] {key, cipher, status {code, message}}, db[] {id,
//!   repo-key, system-id, version}, archive[] {id, database {id, repo-key}, min, max},
//!   backup[] {label, type, timestamp {start, stop}, info {size, delta, repository {size,
//!   delta}}, database {id, repo-key}, archive {start, stop}, error, …}}`; status codes 0
//!   ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data, 4 different
//!   across repos, 5 database mismatch across repos, 6 requested backup not found, 99
//!   other. `system-id` is a JSON integer above 2^53: read as u64, never as a float.
//! - `repo-ls --output=json PATH` (src/command/repo/ls.c): an object name → `{type, size,
//!   time}`; archived segments are `archive/STANZA/ARCHIVE-ID/TLILOG(16 hex)/SEGMENT-SHA1.EXT`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    BackupSet, Repository, Retention, ServerFacts, TOOL_TIMEOUT, ToolReport, WalRange,
    display_command, local_medium, run_tool,
};

/// pgBackRest's default configuration file, its pre-2.x location, and its include folder.
pub const DEFAULT_CONFIG: &str = "/etc/pgbackrest/pgbackrest.conf";
pub const ORIG_CONFIG: &str = "/etc/pgbackrest.conf";
pub const DEFAULT_INCLUDE: &str = "/etc/pgbackrest/conf.d";

/// Most WAL directories (4 GiB of 16 MiB segments each) listed for the gap check.
const MAX_WAL_DIRS: usize = 64;

/// An INI file as pgBackRest reads it: section → key → values (in file order).
#[derive(Debug, Default, Clone)]
pub struct Ini {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ini {
    pub fn parse(text: &str, into: &mut Ini) {
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                into.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }
}

/// The configuration pgBackRest itself would load: the files read (or why not).
#[derive(Debug, Default)]
pub struct LoadedConfig {
    pub ini: Ini,
    pub files: Vec<String>,
    /// What was looked at, for messages: `path (missing)`, `path (unreadable: …)`.
    pub looked: Vec<String>,
}

/// Load the files pgBackRest loads for `--config` (or its defaults).
pub fn load_config(explicit: Option<&Path>) -> Result<LoadedConfig, String> {
    let mut out = LoadedConfig::default();
    let read = |path: &Path, required: bool, out: &mut LoadedConfig| -> Result<bool, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Ini::parse(&text, &mut out.ini);
                out.files.push(path.display().to_string());
                out.looked.push(path.display().to_string());
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                out.looked.push(format!("{} (missing)", path.display()));
                Ok(false)
            }
            Err(e) => {
                let msg = format!(
                    "cannot read the pgBackRest configuration {}: {e}",
                    path.display()
                );
                if required {
                    Err(msg)
                } else {
                    out.looked
                        .push(format!("{} (unreadable: {e})", path.display()));
                    Ok(false)
                }
            }
        }
    };
    match explicit {
        Some(p) => {
            read(p, true, &mut out)?;
        }
        None => {
            if !read(Path::new(DEFAULT_CONFIG), false, &mut out)? {
                read(Path::new(ORIG_CONFIG), false, &mut out)?;
            }
            match std::fs::read_dir(DEFAULT_INCLUDE) {
                Ok(rd) => {
                    let mut files: Vec<PathBuf> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                        .collect();
                    files.sort();
                    if files.is_empty() {
                        out.looked.push(format!("{DEFAULT_INCLUDE} (no *.conf)"));
                    }
                    for f in files {
                        read(&f, false, &mut out)?;
                    }
                }
                Err(_) => out.looked.push(format!("{DEFAULT_INCLUDE} (missing)")),
            }
        }
    }
    Ok(out)
}

/// Option lookup with pgBackRest's precedence: environment, `[stanza:command]`,
/// `[stanza]`, `[global:command]`, `[global]`.
struct Options<'a> {
    ini: &'a Ini,
    stanza: &'a str,
    env: BTreeMap<String, String>,
}

impl<'a> Options<'a> {
    fn new(ini: &'a Ini, stanza: &'a str) -> Self {
        let env = std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("PGBACKREST_")
                    .map(|o| (o.to_ascii_lowercase().replace('_', "-"), v))
            })
            .collect();
        Options { ini, stanza, env }
    }

    /// The first of `keys` set, section by section in precedence order (a deprecated
    /// spelling in the stanza section wins over the new one in `[global]`).
    fn get_any(&self, keys: &[String], command: &str) -> Option<String> {
        if let Some(v) = keys.iter().find_map(|k| self.env.get(k)) {
            return Some(v.clone());
        }
        let s = self.stanza;
        [
            format!("{s}:{command}"),
            s.to_string(),
            format!("global:{command}"),
            "global".to_string(),
        ]
        .iter()
        .find_map(|sec| keys.iter().find_map(|k| self.ini.get(sec, k)))
        .map(str::to_string)
    }

    /// A repository option, with the deprecated repo1 spellings.
    fn repo(&self, n: i64, opt: &str, command: &str) -> Option<String> {
        let mut keys = vec![format!("repo{n}-{opt}")];
        if n == 1 {
            keys.push(format!("repo-{opt}"));
            if opt.starts_with("retention-") {
                keys.push(opt.to_string());
            }
        }
        self.get_any(&keys, command)
    }

    /// Repository numbers named anywhere in the sections that apply.
    fn repo_keys(&self) -> Vec<i64> {
        let re = regex::Regex::new(r"^repo([0-9]+)-").ok();
        let mut keys: Vec<i64> = Vec::new();
        let s = self.stanza;
        let mut names: Vec<&str> = self.env.keys().map(String::as_str).collect();
        for (sec, kv) in &self.ini.sections {
            let base = sec.split(':').next().unwrap_or("");
            if base == "global" || base == s {
                names.extend(kv.keys().map(String::as_str));
            }
        }
        for name in names {
            if let Some(n) = re
                .as_ref()
                .and_then(|re| re.captures(name))
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().parse().ok())
            {
                keys.push(n);
            } else if name.starts_with("repo-") {
                keys.push(1);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// Canonical form of a data directory path, for comparison.
fn same_path(a: &str, b: &str) -> bool {
    let canon = |p: &str| {
        std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p.trim_end_matches('/')))
    };
    canon(a) == canon(b)
}

/// The stanza (and the key) whose `pgN-path` (or the deprecated `db-path`) is `data_dir`.
pub fn stanza_for_data_dir(ini: &Ini, data_dir: &str) -> Option<(String, String)> {
    let re = regex::Regex::new(r"^(pg[0-9]*|db[0-9]*)-path$").ok()?;
    ini.sections
        .iter()
        .filter(|(sec, _)| !sec.contains(':') && sec.as_str() != "global")
        .find_map(|(sec, kv)| {
            kv.iter()
                .find(|(k, v)| re.is_match(k) && same_path(v, data_dir))
                .map(|(k, _)| (sec.clone(), k.clone()))
        })
}

/// With no tool named: the stanza of pgBackRest's default configuration whose `pgN-path`
/// is this server's data directory. Ok((stanza, what was found)); Err(what was looked at).
pub fn detect(server: &ServerFacts) -> Result<(String, String), String> {
    let hint = "name the backup tool with --pgbackrest-stanza, --barman-server or --walg-env \
                (or [backup] in pgready.toml)";
    if !server.local {
        return Err(format!(
            "no backup tool named, and the server is remote (pgready looks for a pgBackRest \
             stanza only for a server on this machine): {hint}"
        ));
    }
    let Some(data_dir) = server.data_directory.as_deref() else {
        return Err(format!(
            "no backup tool named, and the data directory is hidden from the audit role (needs \
             pg_read_all_settings), so no pgBackRest stanza can be matched to it: {hint}"
        ));
    };
    let loaded = load_config(None)?;
    if let Some((stanza, key)) = stanza_for_data_dir(&loaded.ini, data_dir) {
        return Ok((
            stanza.clone(),
            format!(
                "pgBackRest stanza {stanza} found in {}: its {key} is this server's data directory {data_dir}",
                loaded.files.join(", ")
            ),
        ));
    }
    Err(format!(
        "no backup tool named, and no pgBackRest stanza has pg1-path = {data_dir} in pgBackRest's \
         default configuration (looked at {}): {hint}",
        if loaded.looked.is_empty() {
            "nothing".to_string()
        } else {
            loaded.looked.join(", ")
        }
    ))
}

/// The common arguments of every pgBackRest call pgready makes: no log file, warnings on
/// stderr only (stdout stays pure JSON).
pub fn base_args(config: Option<&Path>) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(c) = config {
        a.push(format!("--config={}", c.display()));
    }
    a.extend(
        [
            "--log-level-console=off",
            "--log-level-stderr=warn",
            "--log-level-file=off",
        ]
        .map(String::from),
    );
    a
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_u64().map(|u| u as i64))
}

fn sysid(v: &Value) -> Option<String> {
    v.as_u64()
        .map(|u| u.to_string())
        .or_else(|| v.as_str().map(str::to_string))
}

/// `repo[]` of info: key, cipher, status code, status message.
pub type RepoStatus = (i64, Option<String>, Option<i64>, Option<String>);
/// `archive[]` of info: repo key, db id, archive id, min, max.
pub type ArchiveEntry = (i64, i64, String, Option<String>, Option<String>);

/// The parsed `info` of one stanza.
#[derive(Debug, Default)]
pub struct StanzaInfo {
    pub name: String,
    pub status_code: Option<i64>,
    pub status_message: Option<String>,
    pub backup_running: bool,
    /// repo key → (cipher, status code, status message)
    pub repos: Vec<RepoStatus>,
    /// (repo key, db id) → (system id, major)
    pub dbs: BTreeMap<(i64, i64), (Option<String>, Option<i64>)>,
    /// (repo key, db id, archive id, min, max)
    pub archives: Vec<ArchiveEntry>,
    pub backups: Vec<BackupSet>,
}

/// Parse one element of `info`'s JSON array.
pub fn parse_stanza(v: &Value) -> StanzaInfo {
    let mut s = StanzaInfo {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        status_code: int(&v["status"]["code"]),
        status_message: v["status"]["message"].as_str().map(str::to_string),
        backup_running: v["status"]["lock"]["backup"]["held"].as_bool() == Some(true),
        ..StanzaInfo::default()
    };
    for r in v["repo"].as_array().into_iter().flatten() {
        if let Some(key) = int(&r["key"]) {
            s.repos.push((
                key,
                r["cipher"].as_str().map(str::to_string),
                int(&r["status"]["code"]),
                r["status"]["message"].as_str().map(str::to_string),
            ));
        }
    }
    for d in v["db"].as_array().into_iter().flatten() {
        let (Some(id), repo) = (int(&d["id"]), int(&d["repo-key"]).unwrap_or(1)) else {
            continue;
        };
        let major = d["version"]
            .as_str()
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok());
        s.dbs.insert((repo, id), (sysid(&d["system-id"]), major));
    }
    for a in v["archive"].as_array().into_iter().flatten() {
        let (Some(id), repo) = (
            int(&a["database"]["id"]),
            int(&a["database"]["repo-key"]).unwrap_or(1),
        ) else {
            continue;
        };
        s.archives.push((
            repo,
            id,
            a["id"].as_str().unwrap_or_default().to_string(),
            a["min"].as_str().map(str::to_string),
            a["max"].as_str().map(str::to_string),
        ));
    }
    for b in v["backup"].as_array().into_iter().flatten() {
        let repo = int(&b["database"]["repo-key"]).unwrap_or(1);
        let db = int(&b["database"]["id"]);
        let (sid, major) = db
            .and_then(|id| s.dbs.get(&(repo, id)).cloned())
            .unwrap_or((None, None));
        let Some(stop) = int(&b["timestamp"]["stop"]) else {
            continue;
        };
        s.backups.push(BackupSet {
            label: b["label"].as_str().unwrap_or_default().to_string(),
            kind: b["type"].as_str().unwrap_or_default().to_string(),
            start_time: int(&b["timestamp"]["start"]),
            stop_time: stop,
            duration_s: None,
            size_bytes: int(&b["info"]["size"]),
            stored_bytes: int(&b["info"]["repository"]["delta"]),
            repo,
            error: b["error"].as_bool(),
            system_identifier: sid,
            major,
            wal_start: b["archive"]["start"].as_str().map(str::to_string),
            wal_stop: b["archive"]["stop"].as_str().map(str::to_string),
            this_cluster: None,
        });
    }
    s
}

/// Repository description from the configuration (no secret is read).
fn repository(opts: &Options<'_>, key: i64, server: &ServerFacts) -> Repository {
    let get = |o: &str| opts.repo(key, o, "info");
    let kind = get("type").unwrap_or_else(|| "posix".to_string());
    let repo_host = get("host");
    let path = get("path").or_else(|| {
        (kind != "cifs" || repo_host.is_none()).then(|| "/var/lib/pgbackrest".to_string())
    });
    let (host, bucket) = match kind.as_str() {
        "s3" => (
            get("storage-host").or_else(|| get("s3-endpoint")),
            get("s3-bucket"),
        ),
        "gcs" => (
            get("gcs-endpoint").or_else(|| Some("storage.googleapis.com".to_string())),
            get("gcs-bucket"),
        ),
        "azure" => (
            get("storage-host").or_else(|| get("azure-endpoint")),
            get("azure-container"),
        ),
        "sftp" => (get("sftp-host"), None),
        _ => (repo_host.clone(), None),
    };
    // A repository host that is this machine (repo1-host=localhost, its own name or one of
    // its addresses) is a local disk, not an off-host copy.
    let remote_host = repo_host
        .as_deref()
        .filter(|h| !crate::collect::host::names_this_machine(h));
    let (medium, off_host, fs) = match kind.as_str() {
        "s3" | "gcs" | "azure" => ("object-store".to_string(), true, None),
        "sftp" => match get("sftp-host") {
            Some(h) if crate::collect::host::names_this_machine(&h) => {
                local_medium(Path::new(path.as_deref().unwrap_or("/")), server.local)
            }
            _ => ("remote-host".to_string(), true, None),
        },
        _ if remote_host.is_some() => ("remote-host".to_string(), true, None),
        "cifs" => ("network-fs".to_string(), true, None),
        _ => match &path {
            Some(p) => local_medium(Path::new(p), server.local),
            None => ("db-host-disk".to_string(), false, None),
        },
    };
    let retention = {
        let num = |o: &str| {
            opts.repo(key, o, "backup")
                .and_then(|v| v.parse::<i64>().ok())
        };
        let full = num("retention-full");
        let full_type = opts
            .repo(key, "retention-full-type", "backup")
            .unwrap_or_else(|| "count".to_string());
        // On a dedicated repository host, backup and expire run there with that host's
        // pgbackrest.conf, which pgready cannot read from here: unless this file repeats
        // the settings, the retention is unknown, not absent.
        let unknown = full.is_none() && remote_host.is_some();
        Retention {
            defined: (!unknown).then_some(full.is_some()),
            reason: remote_host.filter(|_| unknown).map(|h| {
                format!(
                    "retention is set on the repository host {h} (repo{key}-host), whose pgbackrest.conf is not readable from here"
                )
            }),
            full,
            window_days: full.filter(|_| full_type == "time"),
            redundancy: full.filter(|_| full_type == "count"),
            full_type: Some(full_type),
            diff: num("retention-diff"),
            archive: num("retention-archive"),
            archive_type: Some(
                opts.repo(key, "retention-archive-type", "backup")
                    .unwrap_or_else(|| "full".to_string()),
            ),
            policy: None,
        }
    };
    Repository {
        key,
        kind,
        host,
        path,
        bucket,
        medium,
        off_host,
        fs_type: fs,
        cipher: get("cipher-type").or_else(|| Some("none".to_string())),
        retention,
        ..Repository::default()
    }
}

/// A WAL segment name split into (timeline, position), with `segs_per_log` segments per
/// log id (0x100000000 / wal_segment_size).
pub fn segment(name: &str, segs_per_log: u64) -> Option<(u32, u64)> {
    let n = name.get(0..24)?;
    if !n.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&n[0..8], 16).ok()?;
    let log = u64::from_str_radix(&n[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&n[16..24], 16).ok()?;
    Some((tli, log * segs_per_log + seg))
}

fn segment_name(tli: u32, pos: u64, segs_per_log: u64) -> String {
    format!(
        "{tli:08X}{:08X}{:08X}",
        pos / segs_per_log,
        pos % segs_per_log
    )
}

/// Missing positions between `from` and `to` (inclusive) given the present ones, as
/// ranges of segment names.
pub fn gaps(
    present: &std::collections::BTreeSet<u64>,
    from: u64,
    to: u64,
    tli: u32,
    spl: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut start: Option<u64> = None;
    for p in from..=to {
        match (present.contains(&p), start) {
            (false, None) => start = Some(p),
            (true, Some(s)) => {
                out.push(range_name(s, p - 1, tli, spl));
                start = None;
            }
            _ => {}
        }
        if out.len() >= 20 {
            out.push("… (more gaps not listed)".to_string());
            return out;
        }
    }
    if let Some(s) = start {
        out.push(range_name(s, to, tli, spl));
    }
    out
}

fn range_name(a: u64, b: u64, tli: u32, spl: u64) -> String {
    if a == b {
        segment_name(tli, a, spl)
    } else {
        format!(
            "{}..{}",
            segment_name(tli, a, spl),
            segment_name(tli, b, spl)
        )
    }
}

/// List the repository's WAL between `from` and `max` and name the missing segments.
/// Where a repository keeps one database history's WAL.
struct ArchiveLoc<'a> {
    config: Option<&'a Path>,
    stanza: &'a str,
    repo: i64,
    archive_id: &'a str,
}

fn check_gaps(
    loc: &ArchiveLoc<'_>,
    from: &str,
    max: &str,
    seg_size: Option<i64>,
    commands: &mut Vec<String>,
) -> (Option<Vec<String>>, Option<String>) {
    let Some(seg_size) = seg_size.filter(|s| *s > 0) else {
        return (
            None,
            Some("wal_segment_size of the server is unknown".to_string()),
        );
    };
    let spl = (1u64 << 32) / seg_size as u64;
    let (Some((_, from_pos)), Some((max_tli, max_pos))) = (segment(from, spl), segment(max, spl))
    else {
        return (
            None,
            Some(format!("cannot read WAL segment names {from} / {max}")),
        );
    };
    if from_pos > max_pos {
        return (Some(Vec::new()), None);
    }
    let ls = |path: &str, commands: &mut Vec<String>| -> Result<Value, String> {
        let mut args = base_args(loc.config);
        args.extend([
            format!("--repo={}", loc.repo),
            "--output=json".to_string(),
            "repo-ls".to_string(),
            path.to_string(),
        ]);
        commands.push(display_command("pgbackrest", &args));
        let out = run_tool("pgbackrest", &args, &[], TOOL_TIMEOUT)?;
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("`pgbackrest repo-ls {path}` did not print JSON: {e}"))
    };
    let root = format!("archive/{}/{}", loc.stanza, loc.archive_id);
    let listing = match ls(&root, commands) {
        Ok(v) => v,
        Err(e) => return (None, Some(e)),
    };
    let (from_log, max_log) = (from_pos / spl, max_pos / spl);
    let dirs: Vec<String> = listing
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, v)| name.len() == 16 && v["type"] == "path")
        .filter(|(name, _)| {
            u64::from_str_radix(&name[8..16], 16).is_ok_and(|log| log >= from_log && log <= max_log)
        })
        .map(|(name, _)| name.clone())
        .collect();
    if dirs.len() > MAX_WAL_DIRS {
        return (
            None,
            Some(format!(
                "the WAL since the newest backup spans {} directories of the archive (more than {MAX_WAL_DIRS}): not listed",
                dirs.len()
            )),
        );
    }
    let mut present = std::collections::BTreeSet::new();
    for d in dirs {
        let v = match ls(&format!("{root}/{d}"), commands) {
            Ok(v) => v,
            Err(e) => return (None, Some(e)),
        };
        for (name, _) in v.as_object().into_iter().flatten() {
            // Segments are stored as NAME-SHA1[.EXT]; NAME.partial and .backup files are not segments.
            if name.len() > 25 && name.as_bytes()[24] == b'-' {
                if let Some((_, pos)) = segment(name, spl) {
                    present.insert(pos);
                }
            }
        }
    }
    (Some(gaps(&present, from_pos, max_pos, max_tli, spl)), None)
}

/// Run `pgbackrest info` (and `repo-ls` for WAL gaps) and describe the stanza.
pub fn collect(
    stanza: Option<&str>,
    config: Option<&Path>,
    server: &ServerFacts,
) -> Result<ToolReport, String> {
    let mut commands = Vec::new();
    let version = run_tool("pgbackrest", &["version".to_string()], &[], TOOL_TIMEOUT)
        .ok()
        .and_then(|o| o.stdout.split_whitespace().nth(1).map(str::to_string));
    let mut args = base_args(config);
    args.push("--output=json".to_string());
    if let Some(s) = stanza {
        args.push(format!("--stanza={s}"));
    }
    args.push("info".to_string());
    commands.push(display_command("pgbackrest", &args));
    let out = run_tool("pgbackrest", &args, &[], TOOL_TIMEOUT)?;
    let json: Value = serde_json::from_str(&out.stdout).map_err(|e| {
        format!(
            "`{}` did not print JSON ({e}); stderr: {}",
            display_command("pgbackrest", &args),
            super::first_lines(&out.stderr, 4)
        )
    })?;
    let stanzas: Vec<StanzaInfo> = json
        .as_array()
        .into_iter()
        .flatten()
        .map(parse_stanza)
        .collect();
    let chosen = match stanza {
        Some(s) => stanzas.into_iter().find(|x| x.name == s),
        None => {
            let names: Vec<String> = stanzas.iter().map(|s| s.name.clone()).collect();
            let ours = server.system_identifier.clone();
            let found = stanzas
                .into_iter()
                .find(|s| s.dbs.values().any(|(id, _)| id.is_some() && *id == ours));
            if found.is_none() {
                return Err(format!(
                    "`{}`: no stanza holds this cluster (system identifier {}); stanzas: {}; name it with --pgbackrest-stanza",
                    display_command("pgbackrest", &args),
                    ours.as_deref().unwrap_or("unknown"),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
            found
        }
    };
    let Some(info) = chosen else {
        return Err(format!(
            "`{}` printed no stanza {}",
            display_command("pgbackrest", &args),
            stanza.unwrap_or_default()
        ));
    };
    let loaded = load_config(config)?;
    let opts = Options::new(&loaded.ini, &info.name);
    let mut keys: Vec<i64> = opts.repo_keys();
    keys.extend(info.repos.iter().map(|r| r.0));
    if keys.is_empty() {
        keys.push(1);
    }
    keys.sort_unstable();
    keys.dedup();
    let mut errors = Vec::new();
    if let Some(code) = info.status_code.filter(|c| *c != 0) {
        errors.push(format!(
            "stanza {}: {} (status code {code})",
            info.name,
            info.status_message.as_deref().unwrap_or("error")
        ));
    }
    let mut repositories = Vec::new();
    for key in keys {
        let mut repo = repository(&opts, key, server);
        if let Some((_, cipher, code, msg)) = info.repos.iter().find(|r| r.0 == key) {
            if cipher.is_some() {
                repo.cipher = cipher.clone();
            }
            repo.status_code = *code;
            repo.status_message = msg.clone();
            if code.is_some_and(|c| c != 0) {
                errors.push(format!(
                    "repo{key}: {} (status code {})",
                    msg.as_deref().unwrap_or("error"),
                    code.unwrap_or_default()
                ));
            }
        }
        // The archive of this cluster's newest database history in this repository.
        let ours = server.system_identifier.clone();
        let archive = info
            .archives
            .iter()
            .filter(|(r, id, ..)| {
                *r == key
                    && info
                        .dbs
                        .get(&(*r, *id))
                        .is_some_and(|(sid, _)| sid.is_some() && *sid == ours)
            })
            .max_by_key(|(_, id, ..)| *id);
        if let Some((_, _, archive_id, min, max)) = archive {
            let from = info
                .backups
                .iter()
                .filter(|b| {
                    b.repo == key && b.system_identifier.is_some() && b.system_identifier == ours
                })
                .max_by_key(|b| b.stop_time)
                .and_then(|b| b.wal_start.clone())
                .or_else(|| min.clone());
            let (gaps, reason) = match (&from, max) {
                (Some(f), Some(m)) => check_gaps(
                    &ArchiveLoc {
                        config,
                        stanza: &info.name,
                        repo: key,
                        archive_id,
                    },
                    f,
                    m,
                    server.wal_segment_size,
                    &mut commands,
                ),
                _ => (
                    None,
                    Some("the repository holds no WAL of this cluster".to_string()),
                ),
            };
            repo.wal = Some(WalRange {
                min: min.clone(),
                max: max.clone(),
                checked_from: from,
                gaps,
                gaps_reason: reason,
            });
        }
        repositories.push(repo);
    }
    for b in info.backups.iter().filter(|b| b.error == Some(true)) {
        errors.push(format!(
            "backup {} (repo{}) has page checksum errors (pgBackRest error flag)",
            b.label, b.repo
        ));
    }
    let status_message = info.status_message.map(|m| {
        if info.backup_running {
            format!("{m} (a backup or expire is running)")
        } else {
            m
        }
    });
    Ok(ToolReport {
        tool: "pgbackrest",
        version,
        name: info.name,
        config_files: loaded.files,
        commands,
        status_code: info.status_code,
        status_message,
        errors,
        repositories,
        backups: info.backups,
        partial: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn detection_matches_the_data_directory() {
        let mut ini = Ini::default();
        Ini::parse(
            "[global]\nrepo1-path=/r\n[global:archive-push]\npg1-path=/data/x\n[old]\npg1-path=/data/old\n\
             [main]\npg2-path=/data/other/\npg1-path=/data/main/\n",
            &mut ini,
        );
        assert_eq!(
            stanza_for_data_dir(&ini, "/data/main"),
            Some(("main".to_string(), "pg1-path".to_string()))
        );
        assert_eq!(stanza_for_data_dir(&ini, "/data/x"), None);
        assert_eq!(stanza_for_data_dir(&ini, "/elsewhere"), None);
    }

    #[test]
    fn segments_and_gaps() {
        let spl = (1u64 << 32) / 16_777_216;
        assert_eq!(spl, 256);
        assert_eq!(
            segment("000000010000000200000003", spl),
            Some((1, 2 * 256 + 3))
        );
        assert_eq!(segment("00000002.history", spl), None);
        let present: BTreeSet<u64> = [1, 2, 4, 5, 8].into_iter().collect();
        assert_eq!(
            gaps(&present, 1, 9, 1, spl),
            vec![
                "000000010000000000000003",
                "000000010000000000000006..000000010000000000000007",
                "000000010000000000000009"
            ]
        );
        assert!(gaps(&present, 4, 5, 1, spl).is_empty());
        // Crossing a log id: 0x...FF is followed by the next log's 00.
        let present: BTreeSet<u64> = [255, 256].into_iter().collect();
        assert!(gaps(&present, 255, 256, 1, spl).is_empty());
    }

    #[test]
    fn options_follow_pgbackrest_precedence() {
        let mut ini = Ini::default();
        Ini::parse(
            "[global]\nrepo1-path=/g\nrepo1-retention-full=2\nrepo2-type=s3\nrepo2-s3-bucket=b\n\
             repo2-s3-key=SECRET\nrepo2-s3-endpoint=s3.eu-west-3.amazonaws.com\n\
             [main]\npg1-path=/data\nrepo1-path=/s\n[main:backup]\nrepo1-retention-full=7\n\
             [other]\nretention-full=3\n",
            &mut ini,
        );
        let o = Options::new(&ini, "main");
        assert_eq!(o.repo(1, "path", "info").as_deref(), Some("/s"));
        assert_eq!(o.repo(1, "retention-full", "backup").as_deref(), Some("7"));
        assert_eq!(o.repo(1, "retention-full", "info").as_deref(), Some("2"));
        assert_eq!(o.repo_keys(), vec![1, 2]);
        let server = ServerFacts {
            local: true,
            ..ServerFacts::default()
        };
        let r = repository(&o, 2, &server);
        assert_eq!(r.kind, "s3");
        assert_eq!(r.medium, "object-store");
        assert!(r.off_host);
        assert_eq!(r.bucket.as_deref(), Some("b"));
        assert_eq!(r.host.as_deref(), Some("s3.eu-west-3.amazonaws.com"));
        assert_eq!(r.retention.defined, Some(false));
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(!json.contains("SECRET"), "{json}");
        // Deprecated spelling means repo1.
        let o = Options::new(&ini, "other");
        assert_eq!(o.repo(1, "retention-full", "backup").as_deref(), Some("3"));
    }

    #[test]
    fn repository_hosts_on_this_machine_are_not_off_host() {
        let mut ini = Ini::default();
        Ini::parse(
            "[global]\nrepo1-host=localhost\nrepo1-retention-full=2\n\
             repo2-host=backup-1.example.com\nrepo3-host=backup-2.example.com\n\
             repo3-retention-full=4\n[main]\npg1-path=/data\n",
            &mut ini,
        );
        let o = Options::new(&ini, "main");
        let server = ServerFacts {
            local: true,
            ..ServerFacts::default()
        };
        let local = repository(&o, 1, &server);
        assert_eq!(local.medium, "db-host-disk");
        assert!(!local.off_host);
        assert_eq!(local.retention.defined, Some(true));
        // The retention of a real repository host lives in its own configuration.
        let remote = repository(&o, 2, &server);
        assert_eq!(remote.medium, "remote-host");
        assert!(remote.off_host);
        assert_eq!(remote.host.as_deref(), Some("backup-1.example.com"));
        assert_eq!(remote.retention.defined, None);
        assert!(
            remote
                .retention
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("backup-1.example.com (repo2-host)")),
            "{:?}",
            remote.retention.reason
        );
        // Repeated in the local file: read from there.
        let repeated = repository(&o, 3, &server);
        assert_eq!(repeated.retention.defined, Some(true));
        assert_eq!(repeated.retention.redundancy, Some(4));
        assert_eq!(repeated.retention.reason, None);
        // pgready on another machine than the database: a repository on pgready's
        // machine is off the database host.
        let elsewhere = ServerFacts {
            local: false,
            ..ServerFacts::default()
        };
        let r = repository(&o, 1, &elsewhere);
        assert_eq!(r.medium, "other-host-disk");
        assert!(r.off_host);
    }
}
