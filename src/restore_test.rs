//! `pgready restore-test`: restore a backup of the audited cluster into a scratch folder on
//! this machine, start it on a free loopback port as an unprivileged user, wait for
//! recovery to end, verify it read-only, measure the observed RTO and RPO, always stop and
//! remove the scratch cluster, and append a signed-off evidence entry B3 to pgready.toml.
//!
//! The audited server only gets one read-only session (system identifier, data directory,
//! the bootstrap superuser's name, its current WAL position). Two tools restore, each
//! with its own command, and share everything after it (start, verification, RTO/RPO,
//! cleanup, evidence):
//! - pgBackRest: `pgbackrest restore --pg1-path=SCRATCH/data
//!   --tablespace-map-all=SCRATCH/tblspc --archive-mode=off` (so neither the data
//!   directory nor a tablespace of the audited server is written, and the scratch cluster
//!   never archives into the repository);
//! - Barman: `barman recover --no-get-wal --tablespace NAME:SCRATCH/tblspc/N … SERVER ID
//!   SCRATCH/data` as Barman's user, then the folder is handed to the os-user (see
//!   `restore_barman` for ownership and how recovery reaches the end of Barman's WAL
//!   archive). WAL-G is refused (exit 2).
//!
//! Then the server is started with command-line settings, which win over every configuration
//! file (docs config-setting.html, "Parameter Interaction via the Shell"): its own port,
//! socket folder and pg_hba.conf (Unix socket only, trust, in a folder only its owner can
//! enter), no TLS, no archiving, 128 MB of shared_buffers.
//!
//! Facts relied on (PostgreSQL 14–18, docs functions-recovery-control /
//! functions-admin): `pg_is_in_recovery()`; `pg_last_xact_replay_timestamp()` and
//! `pg_last_wal_replay_lsn()` stay at the last record replayed once recovery has ended;
//! (func.sgml, recovery information functions: the text of the 2011 doc commit 0191e120,
//! unchanged in the 14–18 docs; observed on 15.18 in tests/backup.rs);
//! archive recovery without a target ends (and promotes) when the archive has no next
//! segment; `recovery_target_action = promote` is what pgBackRest's `--target-action`
//! writes. pgBackRest restore options (`--set`, `--type` default|immediate|time,
//! `--target`, `--target-action`, `--archive-mode`, `--tablespace-map-all`) are those of
//! src/build/config/config.yaml at release/2.45.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::app::Failure;
use crate::cli::RestoreTestArgs;
use crate::collect::backup::{
    self, BackupSet, ServerFacts, Source, barman, display_command, pgbackrest,
};
use crate::config::{Config, DEFAULT_FILE};
use crate::target::{SessionOptions, Target};

/// What the audited server told us.
struct Audited {
    system_identifier: String,
    data_directory: Option<String>,
    superuser: String,
    major: i64,
    wal_segment_size: Option<i64>,
    lsn: Option<u64>,
}

/// `X/Y` → bytes.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

use crate::collect::now_epoch;
use crate::report::text::utc_time as utc;

fn toml_datetime(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "1970-01-01".to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Audit(format!("cannot start the async runtime: {e}")))
}

async fn read_audited(target: &Target, opts: &SessionOptions) -> Result<Audited, Failure> {
    let client = crate::target::connect(target, opts)
        .await
        .map_err(|e| Failure::Audit(e.to_string()))?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_catalog.pg_control_system()) AS sysid, \
                    (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'data_directory') AS data_directory, \
                    (SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = 10) AS superuser, \
                    current_setting('server_version_num')::int4 / 10000 AS major, \
                    (SELECT setting::int8 FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size') AS seg, \
                    (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
                          ELSE pg_catalog.pg_current_wal_lsn() END)::text AS lsn",
            &[],
        )
        .await
        .map_err(|e| Failure::Audit(format!("reading the audited server's identity failed: {e}")))?;
    let get =
        |name: &str| -> Option<String> { row.try_get::<_, Option<String>>(name).ok().flatten() };
    let Some(system_identifier) = get("sysid") else {
        return Err(Failure::Audit(
            "the audit role may not execute pg_control_system(): the backup cannot be matched to \
             this cluster (GRANT EXECUTE ON FUNCTION pg_control_system() TO the role)"
                .to_string(),
        ));
    };
    Ok(Audited {
        system_identifier,
        data_directory: get("data_directory"),
        superuser: get("superuser").unwrap_or_else(|| "postgres".to_string()),
        major: row.try_get::<_, i32>("major").map(i64::from).unwrap_or(0),
        wal_segment_size: row.try_get::<_, Option<i64>>("seg").ok().flatten(),
        lsn: get("lsn").as_deref().and_then(parse_lsn),
    })
}

/// Free bytes for an unprivileged user on the file system of `path` (statvfs).
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a plain struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn gib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", b.div_ceil(1 << 20))
    }
}

/// Refuse (exit 2) when the file system of `parent` lacks room for the restored set: its
/// size as the tool reports it, plus 10% and 256 MiB for the WAL replayed and the server.
fn check_room(parent: &Path, set: &BackupSet) -> Result<(), Failure> {
    let size = set.size_bytes.unwrap_or(0).max(0) as u64;
    let needed = size + size / 10 + (256 << 20);
    match free_bytes(parent) {
        Some(free) if free < needed => Err(Failure::Input(format!(
            "not enough room in {}: {} free, the restore needs about {} (backup set {} restores to {} of files, \
             plus 10% and 256 MiB for WAL and the server): choose a larger --scratch",
            parent.display(),
            gib(free),
            gib(needed),
            set.label,
            gib(size)
        ))),
        Some(_) => Ok(()),
        None => Err(Failure::Input(format!(
            "cannot read the free space of {} (statvfs)",
            parent.display()
        ))),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The OS user running the restore and the scratch server.
fn os_user(flag: Option<&str>) -> Result<Option<String>, Failure> {
    if !is_root() {
        if flag.is_some() {
            return Err(Failure::Input(
                "--os-user needs pgready to run as root (otherwise the restore runs as you)"
                    .to_string(),
            ));
        }
        return Ok(None);
    }
    let user = flag.unwrap_or("pgready").to_string();
    if !user_exists(&user) {
        if flag.is_some() {
            return Err(Failure::Input(format!(
                "OS user {user} does not exist (--os-user)"
            )));
        }
        let ok = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &user,
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(Failure::Input(format!(
                "cannot create the system user {user} (PostgreSQL refuses to run as root): create it, or pass --os-user"
            )));
        }
    }
    Ok(Some(user))
}

/// Run a command as `user` (through runuser) or as ourselves, in `/`.
fn run_as(
    user: Option<&str>,
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<backup::ToolOutput, String> {
    match user {
        Some(u) => {
            let mut a = vec![
                "-u".to_string(),
                u.to_string(),
                "--".to_string(),
                program.to_string(),
            ];
            a.extend(args.iter().cloned());
            backup::run_tool_in("runuser", &a, &[], timeout, Some(Path::new("/")))
        }
        None => backup::run_tool_in(program, args, &[], timeout, Some(Path::new("/"))),
    }
}

/// Folder of the server binaries of `major`: PG_BIN, `pg_config --bindir`, Debian's layout.
fn bindir(major: i64) -> Result<PathBuf, Failure> {
    let version_major = |dir: &Path| -> Option<i64> {
        let out = Command::new(dir.join("postgres"))
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .last()?
            .split('.')
            .next()?
            .parse()
            .ok()
    };
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("PG_BIN").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    candidates.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    for c in candidates {
        match version_major(&c) {
            Some(m) if m == major => return Ok(c),
            Some(m) => tried.push(format!("{} (PostgreSQL {m})", c.display())),
            None => tried.push(format!("{} (no postgres)", c.display())),
        }
    }
    Err(Failure::Input(format!(
        "no PostgreSQL {major} server binaries found (the backup is of PostgreSQL {major}); tried {}: \
         install them (e.g. apt-get install postgresql-{major}) or set PG_BIN",
        tried.join(", ")
    )))
}

/// The scratch cluster: stopped and removed when dropped, whatever happened.
struct Scratch {
    dir: PathBuf,
    bindir: PathBuf,
    user: Option<String>,
    started: bool,
}

impl Scratch {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.started {
            let args = vec![
                "-D".to_string(),
                self.data().display().to_string(),
                "-m".to_string(),
                "immediate".to_string(),
                "-w".to_string(),
                "stop".to_string(),
            ];
            let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
            let _ = run_as(
                self.user.as_deref(),
                &pg_ctl,
                &args,
                Duration::from_secs(60),
            );
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "warning: could not remove the scratch folder {}: {e}",
                self.dir.display()
            );
        }
    }
}

fn chown(path: &Path, user: &str) -> Result<(), String> {
    let out = Command::new("chown")
        .args(["-R", &format!("{user}:"), &path.display().to_string()])
        .output()
        .map_err(|e| format!("chown: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chown -R {user}: {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The outcome of one attempt (the scratch cluster is gone once this exists).
struct Outcome {
    ok: bool,
    rto_s: Option<i64>,
    rpo_s: Option<i64>,
    rpo_bytes: Option<u64>,
    summary: String,
}

/// A path usable unquoted in pg_ctl's `-o` and in a postgres `-c` option.
fn plain_path(p: &Path) -> bool {
    p.to_str().is_some_and(|s| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    })
}

/// The tool that restores, and what it needs.
enum Tool<'a> {
    PgBackRest {
        stanza: &'a str,
        config: Option<&'a Path>,
    },
    Barman {
        server: &'a str,
        config: Option<&'a Path>,
        /// The `barman_user` of Barman's configuration, when pgready runs as root.
        user: Option<String>,
        /// Names of the backup's tablespaces, each relocated into the scratch folder.
        tablespaces: Vec<String>,
    },
}

impl Tool<'_> {
    fn describe(&self) -> String {
        match self {
            Tool::PgBackRest { stanza, .. } => format!("pgBackRest stanza {stanza}"),
            Tool::Barman { server, .. } => format!("Barman server {server}"),
        }
    }
}

struct Plan<'a> {
    tool: Tool<'a>,
    set: &'a BackupSet,
    target_time: Option<&'a str>,
    explicit_set: bool,
    audited: &'a Audited,
    timeout: Duration,
}

/// What the tool-specific restore step leaves: a data directory in `SCRATCH/data` owned
/// by the scratch server's user, ready to start.
struct Restored {
    /// What was recovered, for the summary ("set X recovered to …").
    what: String,
    /// Extra `-c` settings for the scratch server.
    settings: Vec<String>,
}

/// `pgbackrest restore` as the scratch server's user.
fn restore_pgbackrest(
    scratch: &Scratch,
    plan: &Plan<'_>,
    stanza: &str,
    config: Option<&Path>,
) -> Result<Restored, String> {
    let mut args = pgbackrest::base_args(config);
    args.extend([
        format!("--stanza={stanza}"),
        format!("--pg1-path={}", scratch.data().display()),
        format!(
            "--tablespace-map-all={}",
            scratch.dir.join("tblspc").display()
        ),
        "--archive-mode=off".to_string(),
    ]);
    let what = if let Some(t) = plan.target_time {
        args.extend([
            "--type=time".to_string(),
            format!("--target={t}"),
            "--target-action=promote".to_string(),
        ]);
        format!("recovered to {t}")
    } else if plan.explicit_set {
        args.extend([
            format!("--set={}", plan.set.label),
            "--type=immediate".to_string(),
            "--target-action=promote".to_string(),
        ]);
        format!("set {} recovered to its consistent point", plan.set.label)
    } else {
        args.push(format!("--set={}", plan.set.label));
        format!(
            "set {} ({}) recovered to the end of the archive",
            plan.set.label, plan.set.kind
        )
    };
    args.push("restore".to_string());
    eprintln!("restore-test: {}", display_command("pgbackrest", &args));
    run_as(scratch.user.as_deref(), "pgbackrest", &args, plan.timeout)
        .map_err(|e| format!("restore failed: {e}"))?;
    Ok(Restored {
        what,
        settings: Vec::new(),
    })
}

/// A program that exits 1 (a restore_command that finds nothing), as an absolute path.
fn false_program() -> &'static str {
    ["/usr/bin/false", "/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("/bin/false")
}

/// `barman recover` of one backup into SCRATCH/data (Barman 3.4, barman/cli.py `recover`
/// and barman/recovery_executor.py `RecoveryExecutor.recover`, release/3.4.0).
///
/// Ownership: Barman must run as its `barman_user` (started as root it switches to that
/// user itself, cli.py `global_config` → `drop_privileges`), the owner of barman_home; the
/// os-user cannot read the backups, and PostgreSQL refuses a data directory it does not
/// own. So the scratch folder (mode 0700, nobody else can enter it) belongs to the Barman
/// user while Barman copies into it, then `chown -R` hands all of it to the os-user
/// before the server starts.
///
/// WAL: `--no-get-wal` always (get-wal would write `restore_command = 'sudo -u barman
/// barman get-wal …'`, which the os-user may not run): Barman copies the WAL the
/// recovery needs out of its own archive (`Server.get_required_xlog_files`: every
/// segment of the backup's timeline from its begin WAL on, up to the target time if any).
/// - with a target (`--target-immediate` for `--set`, `--target-time`), Barman puts that
///   WAL in `barman_wal/` and writes `restore_command = 'cp barman_wal/%f %p'`,
///   `recovery_end_command`, the target and `recovery_target_action = 'promote'` into
///   postgresql.auto.conf, and a recovery.signal;
/// - without one (the end of the archive), Barman copies all of it into pg_wal and
///   writes no recovery configuration, which would start crash recovery: it replays the
///   same WAL but records no replay timestamp (xlogrecovery.c, PostgreSQL 15:
///   `recoveryStopsAfter`, which calls `SetLatestXTime`, returns at once when
///   `!ArchiveRecoveryRequested`), so the RPO could not be observed. pgready adds a
///   recovery.signal and `restore_command = /bin/false`: archive recovery then reads each
///   segment from pg_wal once the restore command finds none (`WaitForWALToBecomeAvailable`
///   reads with `XLogFileReadAnyTLI(…, XLOG_FROM_ANY)`: archive first, then pg_wal), ends
///   after the last archived segment and promotes, as the pgBackRest path does.
///
/// Every tablespace is relocated under SCRATCH/tblspc (`--tablespace NAME:LOCATION`),
/// else Barman would write it at its location on the audited server. Archiving stays
/// off: Barman rewrites `archive_command` to `false` in the restored configuration, and
/// the server's command line sets `archive_mode=off` anyway.
fn restore_barman(
    scratch: &Scratch,
    plan: &Plan<'_>,
    server: &str,
    config: Option<&Path>,
    barman_user: Option<&str>,
    tablespaces: &[String],
) -> Result<Restored, String> {
    if let (Some(bu), Some(_)) = (barman_user, &scratch.user) {
        chown(&scratch.dir, bu)?;
    }
    let id = barman::backup_id(&plan.set.label);
    let mut args = Vec::new();
    if let Some(c) = config {
        args.extend(["-c".to_string(), c.display().to_string()]);
    }
    args.extend([
        "recover".to_string(),
        "--no-get-wal".to_string(),
        // Used only when the base backup itself is compressed (backup_compression).
        format!(
            "--recovery-staging-path={}",
            scratch.dir.join("staging").display()
        ),
    ]);
    for (i, name) in tablespaces.iter().enumerate() {
        args.push(format!(
            "--tablespace={name}:{}",
            scratch.dir.join("tblspc").join(i.to_string()).display()
        ));
    }
    let (what, end_of_archive) = if let Some(t) = plan.target_time {
        args.extend([
            format!("--target-time={t}"),
            "--target-action=promote".to_string(),
        ]);
        (format!("backup {} recovered to {t}", plan.set.label), false)
    } else if plan.explicit_set {
        args.extend([
            "--target-immediate".to_string(),
            "--target-action=promote".to_string(),
        ]);
        (
            format!(
                "backup {} recovered to its consistent point",
                plan.set.label
            ),
            false,
        )
    } else {
        (
            format!(
                "backup {} recovered to the end of the archive",
                plan.set.label
            ),
            true,
        )
    };
    args.extend([
        server.to_string(),
        id.to_string(),
        scratch.data().display().to_string(),
    ]);
    eprintln!("restore-test: {}", display_command("barman", &args));
    let recovered = run_as(barman_user, "barman", &args, plan.timeout).map_err(|e| {
        format!(
            "barman recover failed: {e} (Barman's own log has the details; see log_file in its configuration)"
        )
    });
    // Hand the folder over even after a failure, so that the os-user's cleanup works too.
    if let Some(u) = &scratch.user {
        chown(&scratch.dir, u)?;
    }
    recovered?;
    let mut settings = Vec::new();
    if end_of_archive {
        let signal = scratch.data().join("recovery.signal");
        std::fs::write(&signal, "")
            .map_err(|e| format!("cannot write {}: {e}", signal.display()))?;
        if let Some(u) = &scratch.user {
            chown(&signal, u)?;
        }
        settings.push(format!("restore_command={}", false_program()));
    }
    Ok(Restored { what, settings })
}

async fn restore_and_verify(scratch: &mut Scratch, plan: &Plan<'_>) -> Outcome {
    let t0 = Instant::now();
    let t0_epoch = now_epoch();
    let fail = |msg: String| Outcome {
        ok: false,
        rto_s: None,
        rpo_s: None,
        rpo_bytes: None,
        summary: msg,
    };
    let user = scratch.user.clone();
    // 1. Restore, with the tool's own command.
    let restored = match &plan.tool {
        Tool::PgBackRest { stanza, config } => restore_pgbackrest(scratch, plan, stanza, *config),
        Tool::Barman {
            server,
            config,
            user,
            tablespaces,
        } => restore_barman(scratch, plan, server, *config, user.as_deref(), tablespaces),
    };
    let Restored { what, settings } = match restored {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let restored_s = t0.elapsed().as_secs();
    eprintln!("restore-test: restored in {restored_s} s; starting the scratch server");
    // 2. Start on a free loopback port, reachable only through its own socket folder.
    let hba = scratch.dir.join("pg_hba.conf");
    if let Err(e) = std::fs::write(
        &hba,
        "# pgready restore-test: the scratch cluster's only door\nlocal all all trust\n",
    ) {
        return fail(format!("cannot write {}: {e}", hba.display()));
    }
    if let Some(u) = &user
        && let Err(e) = chown(&hba, u)
    {
        return fail(e);
    }
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => return fail(format!("no free loopback port: {e}")),
    };
    let dir = scratch.dir.display().to_string();
    let opts = [
        format!("port={port}"),
        "listen_addresses=127.0.0.1".to_string(),
        format!("unix_socket_directories={dir}"),
        format!("hba_file={}", hba.display()),
        "archive_mode=off".to_string(),
        "ssl=off".to_string(),
        "logging_collector=off".to_string(),
        "shared_buffers=128MB".to_string(),
        "hot_standby=on".to_string(),
        "cluster_name=pgready-restore-test".to_string(),
    ]
    .iter()
    .chain(settings.iter())
    .map(|o| format!("-c {o}"))
    .collect::<Vec<_>>()
    .join(" ");
    let log = scratch.dir.join("server.log");
    let pg_ctl = scratch.bindir.join("pg_ctl").display().to_string();
    let start = vec![
        "-D".to_string(),
        scratch.data().display().to_string(),
        "-l".to_string(),
        log.display().to_string(),
        "-o".to_string(),
        opts,
        "-W".to_string(),
        "start".to_string(),
    ];
    scratch.started = true;
    if let Err(e) = run_as(user.as_deref(), &pg_ctl, &start, Duration::from_secs(60)) {
        return fail(format!("the restored cluster did not start: {e}"));
    }
    let log_tail = || {
        std::fs::read_to_string(&log)
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(8)..].join(" / ")
            })
            .unwrap_or_default()
    };
    // 3. Wait for the end of recovery.
    let conninfo = format!(
        "host={dir} port={port} user={} dbname=postgres sslmode=disable connect_timeout=5",
        plan.audited.superuser
    );
    let target = match Target::resolve_with(Some(&conninfo), &|_| None, None) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot address the scratch cluster: {e}")),
    };
    let sess = SessionOptions {
        statement_timeout: Duration::from_secs(600),
        ..SessionOptions::default()
    };
    let client = loop {
        if t0.elapsed() > plan.timeout {
            return fail(format!(
                "recovery did not finish within {} s; server log: {}",
                plan.timeout.as_secs(),
                log_tail()
            ));
        }
        let pid_alive = std::fs::read_to_string(scratch.data().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            // SAFETY: kill with signal 0 only checks that the process exists.
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if !pid_alive && t0.elapsed().as_secs() > restored_s + 5 {
            return fail(format!(
                "the restored cluster stopped during recovery; server log: {}",
                log_tail()
            ));
        }
        if let Ok(c) = crate::target::connect(&target, &sess).await
            && let Ok(row) = c
                .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
                .await
            && !row.get::<_, bool>(0)
        {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rto_s = t0.elapsed().as_secs() as i64;
    eprintln!("restore-test: recovery finished after {rto_s} s; verifying");
    // 4. Read-only verification.
    let row = match client
        .query_one(
            "SELECT extract(epoch FROM pg_catalog.pg_last_xact_replay_timestamp())::int8, \
                    pg_catalog.pg_last_wal_replay_lsn()::text",
            &[],
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(format!("reading the recovered point failed: {e}")),
    };
    let replay_ts: Option<i64> = row.try_get(0).ok().flatten();
    let replay_lsn: Option<u64> = row
        .try_get::<_, Option<String>>(1)
        .ok()
        .flatten()
        .as_deref()
        .and_then(parse_lsn);
    let dbs: Vec<String> = match client
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
    {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
        Err(e) => return fail(format!("listing the databases failed: {e}")),
    };
    drop(client);
    let mut relations = 0i64;
    for db in &dbs {
        let t = target.for_database(db);
        let counted = match crate::target::connect(&t, &sess).await {
            Ok(c) => c
                .query_one("SELECT count(*) FROM pg_catalog.pg_class", &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match counted {
            Ok(n) => relations += n,
            Err(e) => {
                return fail(format!(
                    "database {db} of the restored cluster is not readable: {e}"
                ));
            }
        }
    }
    let amcheck_bin = scratch.bindir.join("pg_amcheck");
    let amcheck = if amcheck_bin.is_file() {
        let a: Vec<String> = [
            "-h",
            &dir,
            "-p",
            &port.to_string(),
            "-U",
            &plan.audited.superuser,
            "--all",
            "--install-missing",
            "--no-password",
        ]
        .map(String::from)
        .to_vec();
        match run_as(
            user.as_deref(),
            &amcheck_bin.display().to_string(),
            &a,
            plan.timeout,
        ) {
            Ok(_) => "pg_amcheck --all OK".to_string(),
            Err(e) => return fail(format!("pg_amcheck found problems: {e}")),
        }
    } else {
        "pg_amcheck not available".to_string()
    };
    // 5. Observed RPO: what a disaster at the start of the test would have lost.
    let recovered_at = replay_ts.unwrap_or(plan.set.stop_time);
    let rpo_s = (t0_epoch - recovered_at).max(0);
    let rpo_bytes = match (plan.audited.lsn, replay_lsn) {
        (Some(a), Some(r)) => Some(a.saturating_sub(r)),
        _ => None,
    };
    Outcome {
        ok: true,
        rto_s: Some(rto_s),
        rpo_s: Some(rpo_s),
        rpo_bytes,
        summary: format!(
            "pgready restore-test: {}, {what} on {} in {rto_s} s (restore {restored_s} s); \
             {} databases, {relations} relations, {amcheck}; recovered up to {} ({}), RPO {rpo_s} s",
            plan.tool.describe(),
            hostname(),
            dbs.len(),
            utc(recovered_at),
            if replay_ts.is_some() {
                "last replayed commit"
            } else {
                "backup end"
            },
        ),
    }
}

/// The effective user's name from the password database.
fn passwd_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwuid_r writes into `pwd` and `buf` (sized as passed) and sets `result`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str()
        .ok()
        .map(str::to_string)
        .filter(|n| !n.is_empty())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this host".to_string())
}

/// The evidence entry, as TOML text.
pub fn evidence_text(
    epoch: i64,
    by: &str,
    ok: bool,
    summary: &str,
    metrics: &[(&str, Option<i64>)],
) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = format!(
        "\n# Written by `pgready restore-test` on {}.\n[[evidence]]\nitem = \"B3\"\ndate = {}\nby = {}\nresult = \"{}\"\nsummary = {}\n",
        utc(epoch),
        toml_datetime(epoch),
        q(by),
        if ok { "pass" } else { "fail" },
        q(summary)
    );
    let m: Vec<String> = metrics
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")))
        .collect();
    if !m.is_empty() {
        t.push_str("[evidence.metrics]\n");
        t.push_str(&m.join("\n"));
        t.push('\n');
    }
    t
}

/// Append `entry` to the configuration file (created when missing), after checking that
/// the result still parses; the user's text is never rewritten.
fn append_evidence(path: &Path, entry: &str) -> Result<(), Failure> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Failure::Input(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut add = String::new();
    match &existing {
        None => add.push_str("# pgready.toml: context, rule parameters, waivers and evidence (see `pgready rules coverage`).\n"),
        Some(t) if !t.is_empty() && !t.ends_with('\n') => add.push('\n'),
        _ => {}
    }
    add.push_str(entry);
    let whole = format!("{}{add}", existing.as_deref().unwrap_or(""));
    Config::parse(path, &whole).map_err(|e| {
        Failure::Input(format!(
            "the evidence entry would not parse in {}: {e}; nothing written",
            path.display()
        ))
    })?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Failure::Input(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(add.as_bytes())
        .map_err(|e| Failure::Input(format!("cannot write {}: {e}", path.display())))
}

/// Whether an OS user exists.
fn user_exists(user: &str) -> bool {
    Command::new("id")
        .args(["-u", user])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `barman_user` of Barman's configuration (default `barman`): `-c FILE`, else
/// BARMAN_CONFIG_FILE, else the first of ~/.barman.conf, /etc/barman.conf,
/// /etc/barman/barman.conf that exists (barman/config.py `Config.CONFIG_FILES`, 3.4).
fn barman_user(config: Option<&Path>) -> String {
    let file = config.map(Path::to_path_buf).or_else(|| {
        let env = std::env::var_os("BARMAN_CONFIG_FILE").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".barman.conf"));
        env.into_iter()
            .chain(home)
            .chain(["/etc/barman.conf", "/etc/barman/barman.conf"].map(PathBuf::from))
            .find(|p| p.is_file())
    });
    file.and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| barman_user_in(&text))
        .unwrap_or_else(|| "barman".to_string())
}

/// `barman_user` of the `[barman]` section of a configuration text (configparser syntax:
/// `key = value` or `key: value`, `#`/`;` comment lines).
fn barman_user_in(text: &str) -> Option<String> {
    let mut in_barman = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(sec) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            in_barman = sec.trim() == "barman";
            continue;
        }
        if !in_barman {
            continue;
        }
        let Some((k, v)) = l.split_once(['=', ':']) else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("barman_user") && !v.trim().is_empty() {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Epoch of a `--target-time` written as PostgreSQL's docs do ("2026-11-20 14:00:00+00",
/// RFC 3339 too); None when it has no UTC offset or another form (then Barman judges it).
fn parse_time(s: &str) -> Option<i64> {
    let mut t = s.trim().replacen(' ', "T", 1);
    let tail = t.len().saturating_sub(3);
    if t.get(tail..tail + 1).is_some_and(|c| c == "+" || c == "-")
        && t.get(tail + 1..)
            .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
    {
        t.push_str(":00");
    }
    backup::rfc3339_epoch(&t)
}

/// Run `pgready restore-test`.
pub fn run(a: &RestoreTestArgs) -> Result<ExitCode, Failure> {
    let config_path = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    // The file must parse before anything is restored (the entry is appended to it).
    let config = if config_path.is_file() {
        Config::load(Some(&config_path))?
    } else if a.config.is_some() && config_path.exists() {
        return Err(Failure::Input(format!(
            "{} is not a file",
            config_path.display()
        )));
    } else {
        Config::default()
    };
    if !config_path.exists()
        && !config_path
            .parent()
            .map(|p| p.as_os_str().is_empty() || p.is_dir())
            .unwrap_or(true)
    {
        return Err(Failure::Input(format!(
            "{}: its folder does not exist (the evidence entry is appended there)",
            config_path.display()
        )));
    }
    let source = backup::requested(&a.sources, &config.backup).map_err(Failure::Input)?;
    let target =
        Target::resolve(a.conn.conninfo.as_deref()).map_err(|e| Failure::Input(e.to_string()))?;
    let sess = SessionOptions {
        connect_timeout: Duration::from_secs(a.conn.connect_timeout),
        statement_timeout: Duration::from_secs(a.conn.statement_timeout),
        ..SessionOptions::default()
    };
    let rt = runtime()?;
    let audited = rt.block_on(read_audited(&target, &sess))?;
    let server = ServerFacts {
        system_identifier: Some(audited.system_identifier.clone()),
        data_directory: audited.data_directory.clone(),
        major: Some(audited.major),
        wal_segment_size: audited.wal_segment_size,
        local: target.is_local(),
    };
    // The tool, and its view of the backups (read-only commands, as `audit` runs them).
    enum Chosen {
        PgBackRest(Option<PathBuf>),
        Barman(String, Option<PathBuf>),
    }
    let (chosen, report) = match source {
        Some((Source::PgBackRest { stanza, config }, _)) => {
            let report = pgbackrest::collect(stanza.as_deref(), config.as_deref(), &server)
                .map_err(Failure::Input)?;
            (Chosen::PgBackRest(config), report)
        }
        Some((
            Source::Barman {
                server: name,
                config,
            },
            _,
        )) => {
            let report =
                barman::collect(&name, config.as_deref(), &server).map_err(Failure::Input)?;
            (Chosen::Barman(name, config), report)
        }
        Some((Source::WalG { .. }, _)) => {
            return Err(Failure::Input(
                "restore-test restores from pgBackRest or Barman only: WAL-G's backups are read by \
                 `audit` but not restored (test them with `wal-g backup-fetch` on a scratch host and \
                 record the result as an [[evidence]] entry with item = \"B3\", or give \
                 --pgbackrest-stanza or --barman-server)"
                    .to_string(),
            ));
        }
        None => match pgbackrest::detect(&server) {
            Ok((stanza, msg)) => {
                eprintln!("restore-test: {msg}");
                let report =
                    pgbackrest::collect(Some(&stanza), None, &server).map_err(Failure::Input)?;
                (Chosen::PgBackRest(None), report)
            }
            Err(msg) => return Err(Failure::Input(msg)),
        },
    };
    let is_barman = matches!(chosen, Chosen::Barman(..));
    let (holder, unit) = if is_barman {
        (format!("Barman server {}", report.name), "backup")
    } else {
        (format!("stanza {}", report.name), "backup set")
    };
    let ours: Vec<&BackupSet> = report
        .backups
        .iter()
        .filter(|b| b.system_identifier.as_deref() == Some(audited.system_identifier.as_str()))
        .collect();
    // pgBackRest: the set's label; Barman: its backup id or its name (label `ID (NAME)`).
    let names = |b: &BackupSet, wanted: &str| {
        b.label == wanted
            || (is_barman
                && (barman::backup_id(&b.label) == wanted
                    || b.label.ends_with(&format!(" ({wanted})"))))
    };
    let listed = || {
        let ids: Vec<&str> = ours
            .iter()
            .map(|b| {
                if is_barman {
                    barman::backup_id(&b.label)
                } else {
                    b.label.as_str()
                }
            })
            .collect();
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    let set = match &a.set {
        Some(label) => match report.backups.iter().find(|b| names(b, label)) {
            Some(b)
                if b.system_identifier.as_deref() == Some(audited.system_identifier.as_str()) =>
            {
                b
            }
            Some(b) => {
                return Err(Failure::Input(format!(
                    "{unit} {label} is of another cluster (system identifier {}, this server is {})",
                    b.system_identifier.as_deref().unwrap_or("unknown"),
                    audited.system_identifier
                )));
            }
            None => {
                return Err(Failure::Input(format!(
                    "{holder} has no {unit} {label}{} ({unit}s of this cluster: {}): give one of them to --set, \
                     or leave --set out to restore the newest",
                    if is_barman { " in status DONE" } else { "" },
                    listed()
                )));
            }
        },
        None => {
            // Barman recovers to a time only from a backup that ended before it.
            let before = if is_barman {
                a.target_time.as_deref().and_then(parse_time)
            } else {
                None
            };
            match ours
                .iter()
                .filter(|b| before.is_none_or(|t| b.stop_time <= t))
                .max_by_key(|b| b.stop_time)
            {
                Some(b) => b,
                None if before.is_some() => {
                    return Err(Failure::Input(format!(
                        "{holder} holds no backup of this cluster that ended before {} (backups: {}): \
                         choose a later --target-time",
                        a.target_time.as_deref().unwrap_or_default(),
                        listed()
                    )));
                }
                None => {
                    let why = if report.partial.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", report.partial.join("; "))
                    };
                    return Err(Failure::Input(format!(
                        "{holder} holds no backup of this cluster (system identifier {}){why}: nothing to restore",
                        audited.system_identifier
                    )));
                }
            }
        }
    };
    // What Barman's recovery needs: the backup's tablespaces (each must be relocated) and
    // the size with the WAL it keeps after it (copied too when recovering past its end).
    let mut room_set = set.clone();
    let barman_plan = match &chosen {
        Chosen::Barman(name, config) => {
            let detail =
                barman::show_backup(name, config.as_deref(), barman::backup_id(&set.label))
                    .map_err(Failure::Input)?;
            if let Some((bad, location)) = detail
                .tablespaces
                .iter()
                .find(|(n, _)| n.is_empty() || n.contains(':'))
            {
                return Err(Failure::Input(format!(
                    "backup {} has a tablespace named {bad:?} (at {location}) that Barman cannot relocate \
                     (--tablespace NAME:LOCATION splits at the first ':'): it would be written at its \
                     location on the audited server, so nothing was restored; rename the tablespace \
                     before the next backup",
                    set.label
                )));
            }
            if a.set.is_none()
                && let Some(w) = detail.size_with_wals
            {
                room_set.size_bytes = Some(room_set.size_bytes.unwrap_or(0).max(w));
            }
            let user = if is_root() {
                let u = barman_user(config.as_deref());
                if !user_exists(&u) {
                    return Err(Failure::Input(format!(
                        "Barman's user {u} (barman_user in its configuration) does not exist: fix \
                         barman_user, or give the configuration with --barman-config"
                    )));
                }
                Some(u)
            } else {
                None
            };
            Some((
                name.clone(),
                config.clone(),
                user,
                detail
                    .tablespaces
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            ))
        }
        Chosen::PgBackRest(_) => None,
    };
    let pgb_config = match &chosen {
        Chosen::PgBackRest(c) => c.clone(),
        Chosen::Barman(..) => None,
    };
    let major = set.major.unwrap_or(audited.major);
    // Room for the restored files, the WAL replayed and the server's start.
    let parent = a.scratch.clone().unwrap_or_else(std::env::temp_dir);
    if !parent.is_dir() {
        return Err(Failure::Input(format!(
            "--scratch {}: no such folder",
            parent.display()
        )));
    }
    let parent = std::fs::canonicalize(&parent).unwrap_or(parent);
    if !plain_path(&parent) {
        return Err(Failure::Input(format!(
            "--scratch {}: use a folder whose path has only letters, digits and / . _ - + (it goes on the server's command line)",
            parent.display()
        )));
    }
    check_room(&parent, &room_set)?;
    let bindir = bindir(major)?;
    let user = os_user(a.os_user.as_deref())?;
    let by =
        a.by.clone()
            .or_else(|| std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(passwd_name)
            .unwrap_or_else(|| "unknown".to_string());
    let dir = parent.join(format!(
        "pgready-restore-test-{}-{}",
        now_epoch(),
        std::process::id()
    ));
    std::fs::create_dir(&dir)
        .map_err(|e| Failure::Input(format!("cannot create {}: {e}", dir.display())))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        bindir,
        user: user.clone(),
        started: false,
    };
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    if let Some(u) = &user {
        chown(&dir, u).map_err(Failure::Input)?;
    }
    let started_at = now_epoch();
    let tool = match &barman_plan {
        Some((name, config, user, tablespaces)) => Tool::Barman {
            server: name,
            config: config.as_deref(),
            user: user.clone(),
            tablespaces: tablespaces.clone(),
        },
        None => Tool::PgBackRest {
            stanza: &report.name,
            config: pgb_config.as_deref(),
        },
    };
    let plan = Plan {
        tool,
        set,
        target_time: a.target_time.as_deref(),
        explicit_set: a.set.is_some(),
        audited: &audited,
        timeout: Duration::from_secs(a.timeout),
    };
    let outcome = rt.block_on(restore_and_verify(&mut scratch, &plan));
    drop(scratch); // stop and remove, before anything is written
    let gone = !dir.exists();
    let entry = evidence_text(
        started_at,
        &by,
        outcome.ok,
        &outcome.summary,
        &[
            ("rto_s", outcome.rto_s),
            ("rpo_s", outcome.rpo_s),
            ("rpo_bytes", outcome.rpo_bytes.map(|b| b as i64)),
        ],
    );
    append_evidence(&config_path, &entry)?;
    println!(
        "{}: {}",
        if outcome.ok { "PASS" } else { "FAIL" },
        outcome.summary
    );
    if let (Some(rto), Some(rpo)) = (outcome.rto_s, outcome.rpo_s) {
        println!(
            "observed RTO {rto} s, observed RPO {rpo} s{}",
            outcome
                .rpo_bytes
                .map(|b| format!(" ({b} bytes of WAL behind the server)"))
                .unwrap_or_default()
        );
    }
    println!(
        "evidence B3 ({}) appended to {}; scratch folder {}",
        if outcome.ok { "pass" } else { "fail" },
        config_path.display(),
        if gone {
            "removed"
        } else {
            "could NOT be removed"
        }
    );
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_set_larger_than_the_free_space() {
        let set = BackupSet {
            label: "20261125-010000F".to_string(),
            size_bytes: Some(i64::MAX / 2),
            ..BackupSet::default()
        };
        let err = check_room(Path::new("/tmp"), &set)
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.starts_with("not enough room in /tmp: "), "{err}");
        assert!(
            err.contains("backup set 20261125-010000F restores to"),
            "{err}"
        );
        let small = BackupSet {
            size_bytes: Some(1),
            ..set
        };
        assert!(check_room(Path::new("/tmp"), &small).is_ok());
    }

    #[test]
    fn lsn_and_entry() {
        assert_eq!(parse_lsn("0/3000028"), Some(0x300_0028));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        let e = evidence_text(
            1_795_624_171,
            "Dana \"DBA\"",
            true,
            "ok",
            &[("rto_s", Some(12)), ("rpo_s", None)],
        );
        assert!(e.contains("date = 2026-11-25T16:29:31Z"), "{e}");
        assert!(e.contains("[evidence.metrics]\nrto_s = 12\n"), "{e}");
        let c = Config::parse(Path::new("x.toml"), &e).map_err(|e| e.to_string());
        let Ok(c) = c else { panic!("{c:?}") };
        assert_eq!(c.evidence[0].by, "Dana \"DBA\"");
    }

    #[test]
    fn barman_user_and_target_times() {
        let conf = "; global\n[barman]\nbarman_home = /var/lib/barman\nBarman_User: backup\n\n[pg]\nbarman_user = no\n";
        assert_eq!(barman_user_in(conf).as_deref(), Some("backup"));
        assert_eq!(barman_user_in("[pg]\nbarman_user = x\n"), None);
        assert_eq!(parse_time("2026-11-20 14:00:00+00"), Some(1_795_183_200));
        assert_eq!(parse_time("2026-11-20T15:00:00+01:00"), Some(1_795_183_200));
        assert_eq!(parse_time("2026-11-20 14:00:00"), None);
    }
}
