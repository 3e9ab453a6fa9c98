//! WAL-G: `wal-g backup-list --json --detail`, with the environment of an env file
//! (`KEY=VALUE` lines, as systemd's `EnvironmentFile` or a sourced shell file).
//!
//! Verified against WAL-G's source (wal-g/wal-g, internal/backup_time.go and
//! internal/databases/postgres/backup_sentinel_dto.go): each element of the detailed list
//! is `{backup_name, time, wal_file_name, storage_name, start_time, finish_time, date_fmt,
//! hostname, data_dir, pg_version (int, e.g. 150004), start_lsn, finish_lsn, is_permanent,
//! system_identifier (uint64 or null), uncompressed_size, compressed_size, user_data}`;
//! times are Go `time.Time` (RFC 3339). The list is sorted oldest first: the newest backup
//! is the one with the greatest `finish_time`, never element 0. Delta backups are named
//! `base_<WAL>_D_<WAL of the base>`. Storage is chosen by `WALG_S3_PREFIX` (`WALE_S3_PREFIX`),
//! `WALG_GS_PREFIX`, `WALG_AZ_PREFIX`, `WALG_SWIFT_PREFIX`, `WALG_FILE_PREFIX`,
//! `WALG_SSH_PREFIX`. WAL-G is not packaged in Debian 12: this parser is covered by
//! fixtures (tests/data/backup/walg-*.json) only. Credentials in the env file are passed to
//! wal-g and never copied into the facts. WAL-G keeps no retention setting (retention is a
//! `wal-g delete retain …` run by a scheduler), so retention is judged from the sets kept.

use std::path::Path;

use serde_json::Value;

use super::{
    BackupSet, Repository, Retention, ServerFacts, TOOL_TIMEOUT, ToolReport, WalRange,
    display_command, local_medium, rfc3339_epoch, run_tool,
};

/// Parse an env file: `KEY=VALUE`, optional `export `, optional quotes, `#` comments.
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// The storage described by the environment (never a credential).
pub fn storage(env: &[(String, String)], server: &ServerFacts) -> Repository {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let split = |url: &str| -> (Option<String>, Option<String>) {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (first, path) = rest.split_once('/').unwrap_or((rest, ""));
        (Some(first.to_string()), Some(format!("/{path}")))
    };
    let mut repo = Repository {
        key: 1,
        retention: Retention::default(),
        ..Repository::default()
    };
    if let Some(p) = get("WALG_S3_PREFIX").or_else(|| get("WALE_S3_PREFIX")) {
        let (bucket, path) = split(&p);
        repo.kind = "s3".into();
        repo.bucket = bucket;
        repo.path = path;
        repo.host = get("AWS_ENDPOINT")
            .or_else(|| get("AWS_REGION").map(|r| format!("s3.{r}.amazonaws.com")));
    } else if let Some(p) = get("WALG_GS_PREFIX").or_else(|| get("WALE_GS_PREFIX")) {
        let (bucket, path) = split(&p);
        repo.kind = "gcs".into();
        repo.bucket = bucket;
        repo.path = path;
        repo.host = Some("storage.googleapis.com".into());
    } else if let Some(p) = get("WALG_AZ_PREFIX").or_else(|| get("WALE_AZURE_PREFIX")) {
        let (bucket, path) = split(&p);
        repo.kind = "azure".into();
        repo.bucket = bucket;
        repo.path = path;
    } else if let Some(p) = get("WALG_SWIFT_PREFIX") {
        let (bucket, path) = split(&p);
        repo.kind = "swift".into();
        repo.bucket = bucket;
        repo.path = path;
    } else if let Some(p) = get("WALG_SSH_PREFIX") {
        let (host, path) = split(&p);
        repo.kind = "ssh".into();
        repo.host = get("SSH_HOST").or(host);
        repo.path = path;
    } else if let Some(p) = get("WALG_FILE_PREFIX") {
        repo.kind = "file".into();
        repo.path = Some(p);
    }
    let (medium, off_host, fs) = match repo.kind.as_str() {
        "s3" | "gcs" | "azure" | "swift" => ("object-store".to_string(), true, None),
        "ssh" => ("remote-host".to_string(), true, None),
        "file" => local_medium(Path::new(repo.path.as_deref().unwrap_or("/")), server.local),
        _ => ("unknown".to_string(), false, None),
    };
    repo.medium = medium;
    repo.off_host = off_host;
    repo.fs_type = fs;
    repo.cipher = Some(
        if get("WALG_LIBSODIUM_KEY").is_some()
            || get("WALG_LIBSODIUM_KEY_PATH").is_some()
            || get("WALG_PGP_KEY").is_some()
            || get("WALG_PGP_KEY_PATH").is_some()
        {
            "client-side".to_string()
        } else {
            "none".to_string()
        },
    );
    repo
}

/// Parse the output of `wal-g backup-list --json --detail`.
pub fn parse_list(v: &Value) -> Vec<BackupSet> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let name = b["backup_name"].as_str()?.to_string();
            let stop = b["finish_time"]
                .as_str()
                .and_then(rfc3339_epoch)
                .or_else(|| b["time"].as_str().and_then(rfc3339_epoch))?;
            let major = b["pg_version"]
                .as_i64()
                .map(|v| if v >= 100_000 { v / 10_000 } else { v / 100 });
            Some(BackupSet {
                kind: if name.contains("_D_") { "incr" } else { "full" }.to_string(),
                label: name,
                start_time: b["start_time"].as_str().and_then(rfc3339_epoch),
                stop_time: stop,
                size_bytes: b["uncompressed_size"].as_i64(),
                stored_bytes: b["compressed_size"].as_i64(),
                repo: 1,
                system_identifier: b["system_identifier"].as_u64().map(|u| u.to_string()),
                major,
                wal_start: b["wal_file_name"].as_str().map(str::to_string),
                ..BackupSet::default()
            })
        })
        .collect()
}

/// Run `wal-g backup-list --json --detail` with the env file's environment.
pub fn collect(env_file: &Path, server: &ServerFacts) -> Result<ToolReport, String> {
    let text = std::fs::read_to_string(env_file).map_err(|e| {
        format!(
            "cannot read the WAL-G environment file {}: {e} (check --walg-env)",
            env_file.display()
        )
    })?;
    let env = parse_env(&text);
    let args: Vec<String> = ["backup-list", "--json", "--detail"]
        .map(String::from)
        .to_vec();
    let shown = display_command("wal-g", &args);
    let out = run_tool("wal-g", &args, &env, TOOL_TIMEOUT)?;
    let json: Value = serde_json::from_str(&out.stdout).map_err(|e| {
        format!(
            "`{shown}` did not print JSON ({e}): {}",
            super::first_lines(&out.stderr, 4)
        )
    })?;
    let mut repo = storage(&env, server);
    repo.wal = Some(WalRange {
        gaps_reason: Some(
            "WAL-G reports no WAL range without listing the whole store (wal-g wal-verify, not run by an audit)".to_string(),
        ),
        ..WalRange::default()
    });
    Ok(ToolReport {
        tool: "walg",
        version: None,
        name: env_file.display().to_string(),
        config_files: vec![env_file.display().to_string()],
        commands: vec![shown],
        repositories: vec![repo],
        backups: parse_list(&json),
        ..ToolReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_storage_keep_no_secret() {
        let env = parse_env(
            "# wal-g\nexport WALG_S3_PREFIX=s3://prod-backups/pg/main\nAWS_SECRET_ACCESS_KEY='very-secret'\n\
             AWS_REGION=eu-west-3\nWALG_LIBSODIUM_KEY=\"k\"\n",
        );
        assert_eq!(env.len(), 4);
        let r = storage(&env, &ServerFacts::default());
        assert_eq!(r.kind, "s3");
        assert_eq!(r.bucket.as_deref(), Some("prod-backups"));
        assert_eq!(r.path.as_deref(), Some("/pg/main"));
        assert_eq!(r.host.as_deref(), Some("s3.eu-west-3.amazonaws.com"));
        assert!(r.off_host);
        assert_eq!(r.cipher.as_deref(), Some("client-side"));
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(
            !json.contains("very-secret") && !json.contains("\"k\""),
            "{json}"
        );
    }
}
