//! Facts about the machine PostgreSQL runs on, read locally (only used when the server
//! is on this machine: a Unix socket or a loopback address).
//!
//! Every fact says where it came from (`*_source`), and a fact that could not be read is
//! `null` with a `*_reason`, so that a rule can say "not evaluated" with that reason instead
//! of guessing. Facts about the server's own process (its cgroup limits, OOM score, open
//! files limit) are read for the postmaster, found through `<data_directory>/postmaster.pid`,
//! the socket lock file, or the process list; the storage and free space facts for the
//! data directory and the real location of `pg_wal`.
//!
//! Linux interfaces used (all documented in proc(5), sysfs-block and the cgroup v1/v2
//! admin guides of the kernel): /proc/meminfo, /proc/sys/vm/*, /proc/sys/kernel/*,
//! /sys/kernel/mm/transparent_hugepage/{enabled,defrag}, /proc/<pid>/{status,cgroup,limits,
//! oom_score_adj,environ,cmdline,task/<pid>/children}, /proc/self/mountinfo, /sys/dev/block/
//! MAJ:MIN, /sys/block/<dev>/{queue/rotational,slaves}, cgroup v2 memory.max and cpu.max,
//! cgroup v1 memory.limit_in_bytes and cpu.cfs_quota_us/cpu.cfs_period_us, statvfs(3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::collect::remote::{HostAccess, Local};
use crate::facts::{Facts, Section};

/// What the host collector needs to know about the server (from the facts already read).
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// `data_directory` (null without pg_read_all_settings).
    pub data_directory: Option<String>,
    /// Why `data_directory` is unknown.
    pub data_directory_reason: Option<String>,
    /// `port`.
    pub port: Option<i64>,
    /// `unix_socket_directories`, split.
    pub socket_dirs: Vec<String>,
}

impl Inputs {
    /// Read what the host collector needs from the PostgreSQL sections.
    pub fn from_facts(facts: &Facts) -> Inputs {
        let settings = facts.section("settings").filter(|s| s.collected);
        let data_directory = facts
            .section("server")
            .and_then(|s| s.data.get("data_directory"))
            .and_then(Value::as_str)
            .or_else(|| {
                settings
                    .and_then(|s| s.data.get("data_directory"))
                    .and_then(Value::as_str)
            })
            .map(str::to_string);
        let data_directory_reason = data_directory.is_none().then(|| {
            "data_directory is hidden from the audit role: grant pg_read_all_settings (or \
             pg_monitor)"
                .to_string()
        });
        let port = settings
            .and_then(|s| s.data.get("port"))
            .and_then(Value::as_i64);
        let socket_dirs = settings
            .and_then(|s| s.data.get("unix_socket_directories"))
            .and_then(Value::as_str)
            .map(|s| {
                s.split(',')
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty() && !d.starts_with('@'))
                    .collect()
            })
            .unwrap_or_default();
        Inputs {
            data_directory,
            data_directory_reason,
            port,
            socket_dirs,
        }
    }
}

fn read(a: &dyn HostAccess, path: impl AsRef<Path>) -> Option<String> {
    a.read_to_string(path.as_ref())
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_i64(a: &dyn HostAccess, path: impl AsRef<Path>) -> Option<i64> {
    read(a, path)?.parse().ok()
}

/// A `/proc/meminfo` field in bytes (`kB` fields are multiplied; counts stay counts).
fn meminfo_field(text: &str, key: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
    let mut parts = line.split(':').nth(1)?.split_whitespace();
    let n: i64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        _ => Some(n),
    }
}

/// `MemTotal` of /proc/meminfo in bytes.
fn meminfo_total(text: &str) -> Option<i64> {
    meminfo_field(text, "MemTotal")
}

/// The bracketed choice of a sysfs multiple-choice file: `always [madvise] never`.
fn bracketed(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}

/// Number of CPUs in a list such as `0-3,8,10-11`.
fn cpu_list_count(list: &str) -> Option<i64> {
    let mut n = 0i64;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: i64 = a.trim().parse().ok()?;
                let b: i64 = b.trim().parse().ok()?;
                n += b - a + 1;
            }
            None => {
                let _: i64 = part.trim().parse().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// One line of `/proc/<pid>/limits`: (soft, hard), `-1` for unlimited.
fn limit(text: &str, name: &str) -> Option<(i64, i64)> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let rest = line[name.len()..].split_whitespace().collect::<Vec<_>>();
    let parse = |s: &str| -> Option<i64> {
        if s == "unlimited" {
            Some(-1)
        } else {
            s.parse().ok()
        }
    };
    Some((parse(rest.first()?)?, parse(rest.get(1)?)?))
}

/// One mount of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    major: u64,
    minor: u64,
    root: String,
    mount_point: String,
    options: String,
    fs_type: String,
    source: String,
    super_options: String,
}

/// Undo the octal escapes of mountinfo (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            Some(Mount {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                root: unescape(f.get(3)?),
                mount_point: unescape(f.get(4)?),
                options: f.get(5)?.to_string(),
                fs_type: r.first()?.to_string(),
                source: unescape(r.get(1)?),
                super_options: r.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// glibc's `major()`/`minor()` of a `dev_t`.
fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// The mount holding `path` (whose device is `dev`): same device, longest mount point
/// that is a prefix of the path.
fn mount_of<'a>(mounts: &'a [Mount], path: &Path, dev: (u64, u64)) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| (m.major, m.minor) == dev && path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.len())
        .or_else(|| {
            mounts
                .iter()
                .filter(|m| path.starts_with(&m.mount_point))
                .max_by_key(|m| m.mount_point.len())
        })
}

/// Storage class of a block device, following partitions, device-mapper and md slaves
/// and loop devices' backing files. Returns (class, how it was found) or the reason.
fn block_class(
    a: &dyn HostAccess,
    major: u64,
    minor: u64,
    depth: u8,
) -> Result<(String, String), String> {
    if depth > 6 {
        return Err("device stack too deep".into());
    }
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let real = a
        .canonicalize(&link)
        .map_err(|e| format!("{}: {e}", link.display()))?;
    // A partition's parent folder is the whole disk.
    let disk = if a.exists(&real.join("partition")) {
        real.parent().map(Path::to_path_buf).unwrap_or(real.clone())
    } else {
        real.clone()
    };
    let name = disk
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Stacked devices (LVM, dm-crypt, md RAID): the slowest of the devices under them.
    let slaves_dir = disk.join("slaves");
    let slaves: Vec<PathBuf> = a
        .read_dir(&slaves_dir)
        .map(|names| names.iter().map(|n| slaves_dir.join(n)).collect())
        .unwrap_or_default();
    if !slaves.is_empty() {
        let mut classes = Vec::new();
        for s in slaves {
            let dev = read(a, s.join("dev")).unwrap_or_default();
            let (ma, mi) = dev
                .split_once(':')
                .ok_or_else(|| format!("{}: no dev", s.display()))?;
            let (ma, mi) = (ma.parse().unwrap_or(0), mi.parse().unwrap_or(0));
            classes.push(block_class(a, ma, mi, depth + 1)?);
        }
        let rank = |c: &str| match c {
            "hdd" => 0,
            "ssd" => 1,
            _ => 2,
        };
        classes.sort_by_key(|(c, _)| rank(c));
        let (class, how) = classes.swap_remove(0);
        return Ok((class, format!("{name} over {how}")));
    }
    if name.starts_with("loop") {
        let backing = read(a, disk.join("loop/backing_file"))
            .ok_or_else(|| format!("loop device {name} without a readable backing file"))?;
        let meta = a
            .metadata(Path::new(&backing))
            .map_err(|e| format!("backing file {backing} of {name}: {e}"))?;
        let (ma, mi) = dev_major_minor(meta.dev);
        let (class, how) = block_class(a, ma, mi, depth + 1)?;
        return Ok((class, format!("{name} (file on {how})")));
    }
    if name.starts_with("zram") || name.starts_with("ram") {
        return Err(format!("{name} is a RAM-backed device"));
    }
    let rot = read(a, disk.join("queue/rotational"))
        .ok_or_else(|| format!("{} unreadable", disk.join("queue/rotational").display()))?;
    let class = match (rot.as_str(), name.starts_with("nvme")) {
        ("1", _) => "hdd",
        ("0", true) => "nvme",
        ("0", false) => "ssd",
        (other, _) => return Err(format!("/sys/block/{name}/queue/rotational = {other}")),
    };
    Ok((
        class.to_string(),
        format!("/sys/block/{name}/queue/rotational = {rot}"),
    ))
}

/// statvfs(3) of `path`: (size, available to non-root, used %, inodes, free inodes, inode used %).
fn statvfs(a: &dyn HostAccess, path: &Path) -> Result<Map<String, Value>, String> {
    let st = a.statvfs(path)?;
    let (frsize, blocks, bfree, bavail) = (st.frsize, st.blocks, st.bfree, st.bavail);
    // Like df: used / (used + available to non-root).
    let used = blocks - bfree;
    let used_pct = if used + bavail > 0 {
        (used * 100 + (used + bavail) - 1) / (used + bavail)
    } else {
        0
    };
    let (files, ffree) = (st.files, st.ffree);
    let inode_pct = if files > 0 {
        ((files - ffree) * 100 + files - 1) / files
    } else {
        0
    };
    let mut m = Map::new();
    m.insert("size_bytes".into(), json!(blocks.saturating_mul(frsize)));
    m.insert("avail_bytes".into(), json!(bavail.saturating_mul(frsize)));
    m.insert("used_pct".into(), json!(used_pct));
    m.insert("inodes".into(), json!(files));
    m.insert("inodes_free".into(), json!(ffree));
    m.insert(
        "inodes_used_pct".into(),
        if files > 0 {
            json!(inode_pct)
        } else {
            Value::Null
        },
    );
    Ok(m)
}

/// Facts about one path that holds PostgreSQL data (`data` or `wal`).
fn path_facts(a: &dyn HostAccess, role: &str, path: &Path, mounts: &[Mount]) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), json!(role));
    m.insert("path".into(), json!(path.display().to_string()));
    let meta = match a.metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            m.insert(
                "reason".into(),
                json!(format!(
                    "cannot stat {}: {e} ({})",
                    path.display(),
                    a.privilege_hint()
                )),
            );
            return Value::Object(m);
        }
    };
    let (major, minor) = dev_major_minor(meta.dev);
    m.insert("device".into(), json!(format!("{major}:{minor}")));
    let mount = mount_of(mounts, path, (major, minor));
    m.insert(
        "mount_point".into(),
        json!(mount.map(|x| x.mount_point.clone())),
    );
    m.insert("fs_type".into(), json!(mount.map(|x| x.fs_type.clone())));
    m.insert(
        "mount_options".into(),
        json!(mount.map(|x| format!("{},{}", x.options, x.super_options))),
    );
    m.insert("source".into(), json!(mount.map(|x| x.source.clone())));
    // The block device: the file system's own device number, or (btrfs, which reports
    // an anonymous device) the mount's source device.
    let block = if major != 0 {
        Ok((major, minor))
    } else {
        match mount {
            Some(x) if x.source.starts_with("/dev/") => a
                .metadata(Path::new(&x.source))
                .map(|s| dev_major_minor(s.rdev))
                .map_err(|e| format!("{}: {e}", x.source)),
            Some(x) => Err(format!(
                "{} file system ({}): no local block device to inspect",
                x.fs_type, x.source
            )),
            None => Err("no mount found in /proc/self/mountinfo".into()),
        }
    };
    match block.and_then(|(ma, mi)| block_class(a, ma, mi, 0)) {
        Ok((class, how)) => {
            m.insert("storage".into(), json!(class));
            m.insert("storage_source".into(), json!(how));
        }
        Err(e) => {
            m.insert("storage".into(), Value::Null);
            m.insert("storage_reason".into(), json!(e));
        }
    }
    match statvfs(a, path) {
        Ok(s) => m.extend(s),
        Err(e) => {
            m.insert("reason".into(), json!(format!("statvfs: {e}")));
        }
    }
    Value::Object(m)
}

/// The postmaster's PID and how it was found, or why not.
fn find_postmaster(a: &dyn HostAccess, inputs: &Inputs) -> Result<(i64, String), String> {
    let is_postgres = |pid: i64| {
        read(a, format!("/proc/{pid}/comm")).is_some_and(|c| c == "postgres" || c == "postmaster")
    };
    let mut tried = Vec::new();
    if let Some(dd) = &inputs.data_directory {
        let f = Path::new(dd).join("postmaster.pid");
        match a.read_to_string(&f) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let pid: Option<i64> = lines.first().and_then(|l| l.trim().parse().ok());
                let port: Option<i64> = lines.get(3).and_then(|l| l.trim().parse().ok());
                match pid {
                    Some(pid) if inputs.port.is_some() && port.is_some() && port != inputs.port => {
                        tried.push(format!(
                            "{} names port {}, not the audited port",
                            f.display(),
                            port.unwrap_or(0)
                        ));
                        let _ = pid;
                    }
                    Some(pid) if is_postgres(pid) => {
                        return Ok((pid, format!("{}", f.display())));
                    }
                    _ => tried.push(format!("{} names no running postgres", f.display())),
                }
            }
            Err(e) => tried.push(format!("{}: {e}", f.display())),
        }
    }
    if let Some(port) = inputs.port {
        for dir in &inputs.socket_dirs {
            let f = Path::new(dir).join(format!(".s.PGSQL.{port}.lock"));
            match read(a, &f).and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok())) {
                Some(pid) if is_postgres(pid) => return Ok((pid, f.display().to_string())),
                _ => tried.push(format!("{} not readable", f.display())),
            }
        }
    }
    // Last resort: the process list (world-readable). A postmaster is a postgres process
    // whose parent is not one; it must name the data directory, or be the only one.
    let mut postmasters = Vec::new();
    if let Ok(names) = a.read_dir(Path::new("/proc")) {
        for name in names {
            let Ok(pid) = name.parse::<i64>() else {
                continue;
            };
            if !is_postgres(pid) {
                continue;
            }
            let ppid = read(a, format!("/proc/{pid}/status")).and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PPid:"))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            });
            if ppid.is_some_and(is_postgres) {
                continue;
            }
            let cmdline = a
                .read(Path::new(&format!("/proc/{pid}/cmdline")))
                .unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            postmasters.push((pid, args));
        }
    }
    if let Some(dd) = &inputs.data_directory
        && let Some((pid, _)) = postmasters.iter().find(|(_, args)| {
            args.iter()
                .any(|a| a.trim_end_matches('/') == dd.trim_end_matches('/'))
        })
    {
        return Ok((
            *pid,
            "process list (command line names the data directory)".into(),
        ));
    }
    if postmasters.len() == 1 {
        return Ok((
            postmasters[0].0,
            "process list (the only postmaster on this host)".into(),
        ));
    }
    tried.push(format!(
        "{} postmasters in the process list, none naming the data directory",
        postmasters.len()
    ));
    Err(format!(
        "postmaster PID unknown: {} ({})",
        tried.join("; "),
        a.privilege_hint()
    ))
}

/// The postmaster's process facts.
fn postmaster_facts(a: &dyn HostAccess, pid: i64, pid_source: &str) -> Value {
    let limits = read(a, format!("/proc/{pid}/limits")).unwrap_or_default();
    let open_files = limit(&limits, "Max open files");
    let memlock = limit(&limits, "Max locked memory");
    let environ = a.read(Path::new(&format!("/proc/{pid}/environ"))).ok();
    let oom_env = environ.as_ref().map(|e| {
        e.split(|b| *b == 0)
            .any(|kv| kv.starts_with(b"PG_OOM_ADJUST_FILE="))
    });
    let child = read(a, format!("/proc/{pid}/task/{pid}/children")).and_then(|c| {
        c.split_whitespace()
            .next()
            .and_then(|p| p.parse::<i64>().ok())
    });
    json!({
        "pid": pid,
        "pid_source": pid_source,
        "oom_score_adj": read_i64(a, format!("/proc/{pid}/oom_score_adj")),
        "child_oom_score_adj": child.and_then(|c| read_i64(a, format!("/proc/{c}/oom_score_adj"))),
        "oom_adjust_env": oom_env,
        "open_files_soft": open_files.map(|l| l.0),
        "open_files_hard": open_files.map(|l| l.1),
        "locked_memory_soft": memlock.map(|l| l.0),
        "cgroup": read(a, format!("/proc/{pid}/cgroup")).map(|c| cgroup_paths(&c)),
    })
}

/// `/proc/<pid>/cgroup` → controller ("" for v2) → path.
fn cgroup_paths(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), path.to_string());
        } else {
            for c in ctrls.split(',') {
                out.insert(c.to_string(), path.to_string());
            }
        }
    }
    out
}

/// The cgroup folder of `path` in the hierarchy mounted as `mount` (v1 controller `ctrl`,
/// or v2 when `ctrl` is empty), with its ancestors up to the mount's root.
fn cgroup_dirs(mounts: &[Mount], ctrl: &str, path: &str) -> Vec<PathBuf> {
    let m = mounts.iter().find(|m| {
        if ctrl.is_empty() {
            m.fs_type == "cgroup2"
        } else {
            m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == ctrl)
        }
    });
    let Some(m) = m else { return Vec::new() };
    let rel = path
        .strip_prefix(m.root.trim_end_matches('/'))
        .unwrap_or(path);
    let mut dirs = Vec::new();
    let mut cur = PathBuf::from(&m.mount_point).join(rel.trim_start_matches('/'));
    loop {
        dirs.push(cur.clone());
        if cur == Path::new(&m.mount_point) || !cur.pop() {
            break;
        }
        if !cur.starts_with(&m.mount_point) {
            break;
        }
    }
    dirs
}

/// The tightest cgroup memory limit over `dirs` (v2 `memory.max`, v1
/// `memory.limit_in_bytes`), with the file it came from.
fn cgroup_memory_limit(
    a: &dyn HostAccess,
    dirs_v2: &[PathBuf],
    dirs_v1: &[PathBuf],
) -> Option<(i64, String)> {
    let mut best: Option<(i64, String)> = None;
    let mut consider = |v: i64, f: PathBuf| {
        if best.as_ref().is_none_or(|(b, _)| v < *b) {
            best = Some((v, f.display().to_string()));
        }
    };
    for d in dirs_v2 {
        let f = d.join("memory.max");
        if let Some(v) = read(a, &f).and_then(|s| s.parse::<i64>().ok()) {
            consider(v, f);
        }
    }
    for d in dirs_v1 {
        let f = d.join("memory.limit_in_bytes");
        if let Some(v) = read_i64(a, &f) {
            consider(v, f);
        }
    }
    best
}

/// The tightest cgroup CPU quota over `dirs` in CPUs (v2 `cpu.max`, v1
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us`), with the file it came from.
fn cgroup_cpu_limit(
    a: &dyn HostAccess,
    dirs_v2: &[PathBuf],
    dirs_v1: &[PathBuf],
) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> = None;
    let mut consider = |v: f64, f: PathBuf| {
        if v > 0.0 && best.as_ref().is_none_or(|(b, _)| v < *b) {
            best = Some((v, f.display().to_string()));
        }
    };
    for d in dirs_v2 {
        let f = d.join("cpu.max");
        if let Some(text) = read(a, &f) {
            let mut it = text.split_whitespace();
            if let (Some(q), Some(p)) = (it.next(), it.next())
                && let (Ok(q), Ok(p)) = (q.parse::<f64>(), p.parse::<f64>())
                && p > 0.0
            {
                consider(q / p, f);
            }
        }
    }
    for d in dirs_v1 {
        let fq = d.join("cpu.cfs_quota_us");
        if let (Some(q), Some(p)) = (read_i64(a, &fq), read_i64(a, d.join("cpu.cfs_period_us")))
            && q > 0
            && p > 0
        {
            consider(q as f64 / p as f64, fq);
        }
    }
    best
}

fn os_release(a: &dyn HostAccess) -> Option<String> {
    let text = read(a, "/etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The sysctls the host rules read, `null` when absent (e.g. `kernel.io_uring_disabled`
/// before Linux 6.6).
const SYSCTLS: &[&str] = &[
    "vm.overcommit_memory",
    "vm.overcommit_ratio",
    "vm.swappiness",
    "vm.dirty_ratio",
    "vm.dirty_background_ratio",
    "vm.dirty_bytes",
    "vm.dirty_background_bytes",
    "vm.nr_hugepages",
    "kernel.io_uring_disabled",
];

/// Collect the local host section.
pub fn collect(inputs: &Inputs, a: &dyn HostAccess) -> Section {
    let os = a.os();
    if a.remote_user().is_some() && os != "linux" {
        return Section::missing(format!(
            "{} runs {os}, not Linux: its host facts are read from /proc and /sys",
            a.source()
        ));
    }
    if os != "linux" {
        let cpus = a.available_parallelism().unwrap_or(1);
        return Section::ok(json!({
            "source": "local",
            "os": os,
            "cpus": cpus,
            "cpus_source": "available parallelism",
        }));
    }
    let Some(meminfo) = read(a, "/proc/meminfo") else {
        return Section::missing(match a.failure() {
            Some(why) => format!("cannot read /proc/meminfo: {why}"),
            None => "cannot read /proc/meminfo".to_string(),
        });
    };
    let Some(physical) = meminfo_total(&meminfo) else {
        return Section::missing("cannot read MemTotal from /proc/meminfo");
    };
    let mounts = parse_mountinfo(&read(a, "/proc/self/mountinfo").unwrap_or_default());

    let mut d = Map::new();
    d.insert("source".into(), json!(a.source()));
    d.insert("os".into(), json!(os));
    let kernel = read(a, "/proc/sys/kernel/osrelease");
    d.insert(
        "kernel_version".into(),
        json!(kernel.as_deref().and_then(|k| {
            let mut it = k.split(|c: char| !c.is_ascii_digit());
            let a: i64 = it.next()?.parse().ok()?;
            let b: i64 = it.next()?.parse().ok()?;
            Some(vec![a, b])
        })),
    );
    d.insert("kernel".into(), json!(kernel));
    d.insert("os_release".into(), json!(os_release(a)));
    d.insert(
        "hostname".into(),
        json!(read(a, "/proc/sys/kernel/hostname")),
    );
    d.insert(
        "virtualized".into(),
        json!(read(a, "/proc/cpuinfo").map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "hypervisor"))
        })),
    );

    // The postmaster and its cgroups.
    let postmaster = find_postmaster(a, inputs);
    let (pm, pm_reason) = match &postmaster {
        Ok((pid, src)) => (postmaster_facts(a, *pid, src), Value::Null),
        Err(e) => (Value::Null, json!(e)),
    };
    let cg_text = match &postmaster {
        Ok((pid, _)) => read(a, format!("/proc/{pid}/cgroup")),
        Err(_) => read(a, "/proc/self/cgroup"),
    };
    let cg_owner = if postmaster.is_ok() {
        "the postmaster"
    } else {
        a.self_name()
    };
    let cg = cgroup_paths(&cg_text.unwrap_or_default());
    let v2 = cg
        .get("")
        .map(|p| cgroup_dirs(&mounts, "", p))
        .unwrap_or_default();
    let v1_mem = cg
        .get("memory")
        .map(|p| cgroup_dirs(&mounts, "memory", p))
        .unwrap_or_default();
    let v1_cpu = cg
        .get("cpu")
        .map(|p| cgroup_dirs(&mounts, "cpu", p))
        .unwrap_or_default();

    // RAM: the cgroup limit when it is below the physical memory.
    let limit = cgroup_memory_limit(a, &v2, &v1_mem).filter(|(l, _)| *l > 0 && *l < physical);
    d.insert("physical_mem_bytes".into(), json!(physical));
    d.insert(
        "mem_bytes".into(),
        json!(limit.as_ref().map_or(physical, |l| l.0)),
    );
    d.insert(
        "mem_source".into(),
        json!(match &limit {
            Some((_, f)) => format!("cgroup limit of {cg_owner} ({f})"),
            None => "/proc/meminfo MemTotal".to_string(),
        }),
    );
    d.insert(
        "mem_origin".into(),
        json!(if limit.is_some() {
            "cgroup limit"
        } else {
            "MemTotal"
        }),
    );

    // CPUs: online CPUs, the postmaster's affinity, the cgroup quota; the smallest wins.
    let online = read(a, "/sys/devices/system/cpu/online").and_then(|l| cpu_list_count(&l));
    let affinity = match &postmaster {
        Ok((pid, _)) => read(a, format!("/proc/{pid}/status")),
        Err(_) => read(a, "/proc/self/status"),
    }
    .and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(cpu_list_count)
    });
    let quota = cgroup_cpu_limit(a, &v2, &v1_cpu);
    let mut cpus: Option<(i64, String, &str)> = online.map(|n| {
        (
            n,
            "online CPUs (/sys/devices/system/cpu/online)".to_string(),
            "online CPUs",
        )
    });
    if let Some(a) = affinity
        && cpus.as_ref().is_none_or(|c| a < c.0)
    {
        cpus = Some((a, format!("CPU affinity of {cg_owner}"), "CPU affinity"));
    }
    if let Some((q, f)) = &quota {
        let n = (q.ceil() as i64).max(1);
        if cpus.as_ref().is_none_or(|c| n < c.0) {
            cpus = Some((
                n,
                format!("cgroup CPU quota of {cg_owner} ({f}: {q:.2} CPUs)"),
                "cgroup quota",
            ));
        }
    }
    let cpus = cpus.unwrap_or_else(|| {
        (
            a.available_parallelism().unwrap_or(1),
            "available parallelism".into(),
            "available parallelism",
        )
    });
    d.insert("cpus".into(), json!(cpus.0));
    d.insert("cpus_source".into(), json!(cpus.1));
    d.insert("cpus_origin".into(), json!(cpus.2));
    d.insert("online_cpus".into(), json!(online));

    // Kernel settings.
    let mut sysctl = Map::new();
    for name in SYSCTLS {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        sysctl.insert(name.to_string(), json!(read_i64(a, &path)));
    }
    d.insert("sysctl".into(), Value::Object(sysctl));
    d.insert(
        "thp".into(),
        json!({
            "enabled": read(a, "/sys/kernel/mm/transparent_hugepage/enabled").and_then(|t| bracketed(&t)),
            "defrag": read(a, "/sys/kernel/mm/transparent_hugepage/defrag").and_then(|t| bracketed(&t)),
        }),
    );
    d.insert(
        "meminfo".into(),
        json!({
            "huge_pages_total": meminfo_field(&meminfo, "HugePages_Total"),
            "huge_pages_free": meminfo_field(&meminfo, "HugePages_Free"),
            "huge_pages_rsvd": meminfo_field(&meminfo, "HugePages_Rsvd"),
            "hugepagesize_bytes": meminfo_field(&meminfo, "Hugepagesize"),
            "swap_total_bytes": meminfo_field(&meminfo, "SwapTotal"),
            "swap_free_bytes": meminfo_field(&meminfo, "SwapFree"),
            "commit_limit_bytes": meminfo_field(&meminfo, "CommitLimit"),
            "committed_as_bytes": meminfo_field(&meminfo, "Committed_AS"),
            "mem_available_bytes": meminfo_field(&meminfo, "MemAvailable"),
        }),
    );
    d.insert("postmaster".into(), pm);
    d.insert("postmaster_reason".into(), pm_reason);

    // Data directory and the real location of pg_wal.
    let mut paths = Vec::new();
    let mut paths_reason = Value::Null;
    match &inputs.data_directory {
        Some(dd) => {
            let data = PathBuf::from(dd);
            paths.push(path_facts(a, "data", &data, &mounts));
            let wal = data.join("pg_wal");
            match a.canonicalize(&wal) {
                Ok(real) => paths.push(path_facts(a, "wal", &real, &mounts)),
                Err(e) => {
                    paths_reason = json!(format!(
                        "cannot resolve {}: {e} (pg_wal lies under the 0700 data directory: {})",
                        wal.display(),
                        a.privilege_hint()
                    ));
                }
            }
        }
        None => {
            paths_reason = json!(
                inputs
                    .data_directory_reason
                    .clone()
                    .unwrap_or_else(|| "data_directory unknown".into())
            );
        }
    }
    // The storage class the cost rules use: the data directory's.
    let data_path = paths.first();
    let storage = data_path
        .and_then(|p| p.get("storage"))
        .cloned()
        .unwrap_or(Value::Null);
    d.insert("storage".into(), storage.clone());
    // Under a hypervisor the rotational flag describes the virtual disk (virtio often says
    // 1 for an SSD-backed volume): say so wherever the class is shown.
    let virtualized = d.get("virtualized") == Some(&Value::Bool(true));
    d.insert(
        "storage_source".into(),
        data_path
            .and_then(|p| p.get("storage_source"))
            .and_then(Value::as_str)
            .map(|s| {
                if virtualized {
                    json!(format!(
                        "{s}, a virtual disk: --storage gives the real medium"
                    ))
                } else {
                    json!(s)
                }
            })
            .unwrap_or(Value::Null),
    );
    d.insert(
        "storage_reason".into(),
        if storage.is_null() {
            data_path
                .and_then(|p| p.get("storage_reason").or_else(|| p.get("reason")))
                .cloned()
                .unwrap_or_else(|| paths_reason.clone())
        } else {
            Value::Null
        },
    );
    d.insert("paths".into(), Value::Array(paths));
    d.insert("paths_reason".into(), paths_reason);
    let mut data = Value::Object(d);
    crate::collect::remote::mark_sources(&mut data, a);
    match a.failure() {
        Some(why) => Section::missing(why),
        None => Section::ok(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       24588848 kB\nMemFree: 1 kB\nHugePages_Total:      12\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_total(text), Some(24588848 * 1024));
        assert_eq!(meminfo_field(text, "HugePages_Total"), Some(12));
        assert_eq!(meminfo_field(text, "Hugepagesize"), Some(2048 * 1024));
        assert_eq!(meminfo_total("nothing"), None);
    }

    #[test]
    fn parses_small_files() {
        assert_eq!(
            bracketed("always [madvise] never").as_deref(),
            Some("madvise")
        );
        assert_eq!(cpu_list_count("0-3,8,10-11"), Some(7));
        assert_eq!(cpu_list_count("0"), Some(1));
        assert_eq!(cpu_list_count("x"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n\
                      Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(limit(limits, "Max open files"), Some((1024, 524288)));
        assert_eq!(limit(limits, "Max locked memory"), Some((-1, -1)));
        let cg = cgroup_paths("4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/user.slice\n");
        assert_eq!(cg.get("memory").map(String::as_str), Some("/a/b"));
        assert_eq!(cg.get("cpuacct").map(String::as_str), Some("/c"));
        assert_eq!(cg.get("").map(String::as_str), Some("/user.slice"));
        assert_eq!(dev_major_minor(0xfe00), (254, 0));
        assert_eq!(dev_major_minor(0x10300), (259, 0)); // nvme0n1 on many hosts: 259:0
    }

    #[test]
    fn parses_mountinfo_and_cgroup_dirs() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                    50 27 0:40 / /mnt/my\\040disk rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(m[3].mount_point, "/mnt/my disk");
        let found = mount_of(&m, Path::new("/var/lib/postgresql"), (254, 0));
        assert_eq!(found.map(|x| x.mount_point.as_str()), Some("/"));
        let dirs = cgroup_dirs(&m, "memory", "/process_api/x");
        assert_eq!(
            dirs,
            [
                PathBuf::from("/sys/fs/cgroup/memory/process_api/x"),
                PathBuf::from("/sys/fs/cgroup/memory/process_api"),
                PathBuf::from("/sys/fs/cgroup/memory"),
            ]
        );
        // v2 mounted with a namespace root: the path is relative to it
        let dirs = cgroup_dirs(&m, "", "/kubepods/pod1");
        assert_eq!(dirs[0], PathBuf::from("/sys/fs/cgroup/pod1"));
    }

    #[test]
    fn local_host_has_memory_and_cpus() {
        let s = collect(&Inputs::default(), &Local);
        assert!(s.collected, "{s:?}");
        assert!(s.data["cpus"].as_i64().unwrap_or(0) >= 1);
        if cfg!(target_os = "linux") {
            assert!(s.data["mem_bytes"].as_i64().unwrap_or(0) > 0);
            assert!(s.data["sysctl"]["vm.swappiness"].is_i64());
            // No data directory given: the paths are unknown, with the reason.
            assert!(s.data["paths_reason"].is_string());
        }
    }
}

/// Whether `host` (a name or an address, as a configuration file writes it) names this
/// machine: a loopback name or address, this machine's host name (short or fully
/// qualified, /proc/sys/kernel/hostname), an address of one of its network interfaces
/// (getifaddrs(3)), or a name that /etc/hosts maps to one of those. No DNS lookup is made
/// (bounded and repeatable): a name only DNS knows counts as another machine.
pub fn names_this_machine(host: &str) -> bool {
    let h = host
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .trim_end_matches('.');
    if h.is_empty() {
        return false;
    }
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return address_is_local(ip);
    }
    let lower = h.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") || lower == "localhost.localdomain" {
        return true;
    }
    if let Some(own) = read(&Local, "/proc/sys/kernel/hostname") {
        let own = own.trim().to_ascii_lowercase();
        let short = |s: &str| s.split('.').next().unwrap_or("").to_string();
        if !own.is_empty() && (own == lower || short(&own) == lower || own == short(&lower)) {
            return true;
        }
    }
    read(&Local, "/etc/hosts").is_some_and(|text| {
        hosts_addresses(&text, &lower)
            .into_iter()
            .any(address_is_local)
    })
}

/// The addresses /etc/hosts (hosts(5): address, canonical name, aliases; `#` comments)
/// gives for the lower-case `name`.
fn hosts_addresses(text: &str, name: &str) -> Vec<std::net::IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split('#').next().unwrap_or("").split_whitespace();
            let addr = it.next()?.parse::<std::net::IpAddr>().ok()?;
            it.any(|n| n.eq_ignore_ascii_case(name)).then_some(addr)
        })
        .collect()
}

fn address_is_local(ip: std::net::IpAddr) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || interface_addresses().contains(&ip)
}

/// The addresses of this machine's network interfaces (getifaddrs(3)).
fn interface_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                    u32::from_be(sin.sin_addr.s_addr),
                )));
            } else if family == libc::AF_INET6 {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                    sin6.sin6_addr.s6_addr,
                )));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod this_machine_tests {
    use super::*;

    #[test]
    fn loopback_own_name_and_interfaces_are_this_machine() {
        for h in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(names_this_machine(h), "{h}");
        }
        if let Some(own) = read(&Local, "/proc/sys/kernel/hostname") {
            assert!(names_this_machine(own.trim()), "{own}");
        }
        for ip in interface_addresses() {
            assert!(names_this_machine(&ip.to_string()), "{ip}");
        }
        for h in ["", "backup.example.com", "192.0.2.10", "2001:db8::1"] {
            assert!(!names_this_machine(h), "{h}");
        }
    }

    #[test]
    fn hosts_file_names() {
        let text = "127.0.1.1\tdb1.example.com db1 # this host\n10.0.0.5 backup\n#10.0.0.9 db1\n";
        assert_eq!(
            hosts_addresses(text, "db1"),
            vec!["127.0.1.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(hosts_addresses(text, "backup").len(), 1);
        assert!(hosts_addresses(text, "nope").is_empty());
    }
}
