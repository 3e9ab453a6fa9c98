//! Facts about the machine PostgreSQL runs on, read locally (only used when the server
//! is on this machine: a Unix socket or a loopback address).

use serde_json::json;

use crate::facts::Section;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `MemTotal` of /proc/meminfo in bytes.
fn meminfo_total(text: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The cgroup v2 memory limit of this process, when there is one.
fn cgroup_memory_max() -> Option<i64> {
    let cg = read("/proc/self/cgroup")?;
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let v = read(&format!("/sys/fs/cgroup{path}/memory.max"))
        .or_else(|| read("/sys/fs/cgroup/memory.max"))?;
    v.parse().ok()
}

fn os_release() -> Option<String> {
    let text = read("/etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// Collect the local host section.
pub fn collect() -> Section {
    let os = std::env::consts::OS;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    if os != "linux" {
        return Section::ok(json!({
            "source": "local",
            "os": os,
            "cpus": cpus,
        }));
    }
    let Some(physical) = read("/proc/meminfo").as_deref().and_then(meminfo_total) else {
        return Section::missing("cannot read MemTotal from /proc/meminfo");
    };
    let limit = cgroup_memory_max().filter(|&l| l > 0 && l < physical);
    let mem_bytes = limit.unwrap_or(physical);
    Section::ok(json!({
        "source": "local",
        "os": os,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "os_release": os_release(),
        "hostname": read("/proc/sys/kernel/hostname"),
        "mem_bytes": mem_bytes,
        "mem_source": if limit.is_some() { "cgroup memory.max" } else { "/proc/meminfo MemTotal" },
        "physical_mem_bytes": physical,
        "cpus": cpus,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        assert_eq!(
            meminfo_total("MemTotal:       24588848 kB\nMemFree: 1 kB\n"),
            Some(24588848 * 1024)
        );
        assert_eq!(meminfo_total("nothing"), None);
    }

    #[test]
    fn local_host_has_memory_and_cpus() {
        let s = collect();
        assert!(s.collected, "{s:?}");
        assert!(s.data["cpus"].as_i64().unwrap_or(0) >= 1);
        if cfg!(target_os = "linux") {
            assert!(s.data["mem_bytes"].as_i64().unwrap_or(0) > 0);
        }
    }
}
