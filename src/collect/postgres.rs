//! PostgreSQL collector: the SQL that fills the cluster-level fact sections (`server`,
//! `settings`, `settings_meta`, `hba`, `roles`, `passwords`, `databases`, `stats`,
//! `replication`, `ssl`; shapes in `docs/facts.md`), version-aware for PostgreSQL 14–18.
//!
//! How it runs: one probe query reads the version and the audit role's privileges; then
//! every fact query is sent once, all of them pipelined on the one session
//! (`query_typed`: Parse/Bind/Execute in one message, no separate prepare round trip);
//! then the extensions of the other databases are read over at most four extra sessions
//! at a time. Only a failed probe aborts ([`CollectError`]); any other failure makes its
//! own section `missing` or `partial` with the reason.
//!
//! # What was verified, and where
//!
//! "live" = read from the catalogs of running servers 14.23, 15.18 (Debian), 16.14, 17.10
//! and 18.4 (`pg_attribute` of each view, `pg_proc.proacl`, `pg_class.relacl`,
//! `pg_settings`), and every query of this module run on each of them as superuser, as a
//! role with only pg_monitor + pg_read_all_settings, and as a role with no predefined role.
//!
//! | fact | 14 | 15 | 16 | 17 | 18 | source |
//! |---|---|---|---|---|---|---|
//! | `pg_hba_file_rules` (`line_number, type, database, user_name, address, netmask, auth_method, options, error`) | ✓ | ✓ | ✓ | ✓ | ✓ | live; docs `view-pg-hba-file-rules` 16/17/18 |
//! | `pg_hba_file_rules.rule_number`, `.file_name` | — | — | ✓ | ✓ | ✓ | live; docs 16 page (first to list them) |
//! | `pg_hba_file_rules`: SELECT only for the bootstrap superuser, and EXECUTE on `pg_hba_file_rules()` likewise | ✓ | ✓ | ✓ | ✓ | ✓ | live (`relacl`, `proacl`); docs "can be read only by superusers" |
//! | `pg_hba_file_rules.address` holds the keyword (`all`, `samehost`, `samenet`) or host name as written; IPs come split into `address` + `netmask` | ✓ | ✓ | ✓ | ✓ | ✓ | docs (address column); live |
//! | `pg_stat_checkpointer` (`num_timed, num_requested, write_time, sync_time, buffers_written, stats_reset`) | — | — | — | ✓ | ✓ (+`num_done`, `slru_written`) | live; commit 96f05261 "Introduce pg_stat_checkpointer" (renames listed) |
//! | `pg_stat_bgwriter` checkpoint columns (`checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint`) | ✓ | ✓ | ✓ | — | — | live; same commit |
//! | `pg_stat_bgwriter` `buffers_clean, maxwritten_clean, buffers_alloc, stats_reset` | ✓ | ✓ | ✓ | ✓ | ✓ | live |
//! | `pg_stat_wal` `wal_records, wal_fpi, wal_bytes (numeric), wal_buffers_full, stats_reset` | ✓ | ✓ | ✓ | ✓ | ✓ | live; pgsql-hackers patch adding them (PG 14) |
//! | `pg_stat_wal` `wal_write, wal_sync, wal_write_time, wal_sync_time` | ✓ | ✓ | ✓ | ✓ | — | live; commit 2421e9a5 (removed in 18); not read here |
//! | `pg_stat_archiver` columns read | ✓ | ✓ | ✓ | ✓ | ✓ | live |
//! | `pg_stat_database.checksum_failures`, `.checksum_last_failure` (NULL when checksums are off) | ✓ | ✓ | ✓ | ✓ | ✓ | live; commit 252b707b "Return NULL for checksum failures if checksums are not enabled" (12) |
//! | `pg_database_size()`: CONNECT on the database or privileges of pg_read_all_stats | ✓ | ✓ | ✓ | ✓ | ✓ | pgsql-committers 2026-07 "psql: Allow pg_read_all_stats to see database size" (states the function's rule, back-patched to 14) |
//! | `pg_stat_database` row `datid = 0` (shared catalogs) | ✓ | ✓ | ✓ | ✓ | ✓ | live; pgsql-committers "Show shared object statistics in pg_stat_database" (77bd49ad, 12) |
//! | `pg_stat_replication` `application_name, client_addr, state, sync_state, write_lag, flush_lag, replay_lag` | ✓ | ✓ | ✓ | ✓ | ✓ | live; a streaming standby of 15 read as superuser, pg_monitor and no role |
//! | `pg_replication_slots.wal_status` | ✓ | ✓ | ✓ | ✓ | ✓ | live |
//! | `pg_current_wal_lsn()` raises an error during recovery; `pg_last_wal_receive_lsn()`/`pg_last_wal_replay_lsn()` work there | ✓ | ✓ | ✓ | ✓ | ✓ | live (15 standby with a slot of its own); docs functions-admin |
//! | `pg_stat_wal_receiver` `status, sender_host, sender_port, slot_name` | ✓ | ✓ | ✓ | ✓ | ✓ | live |
//! | `pg_stat_ssl` `pid, ssl, …` (no `compression` since 14) | ✓ | ✓ | ✓ | ✓ | ✓ | live |
//! | other sessions' details in `pg_stat_activity`/`pg_stat_ssl`/`pg_stat_replication` need pg_read_all_stats | ✓ | ✓ | ✓ | ✓ | ✓ | docs monitoring.sgml "security restricted" note (commit 213eae9b); live |
//! | `pg_settings.sourcefile/sourceline` only for superuser / pg_read_all_settings; superuser-only GUCs hidden otherwise | ✓ | ✓ | ✓ | ✓ | ✓ | docs `view-pg-settings` (17, 18); guc.c patch 2018 "fix sourcefile/line display for pg_read_all_settings"; live |
//! | `pg_settings.unit` values: `B`, `kB`, `MB`, `8kB`, `ms`, `s`, `min` (integers), `ms` (reals) | ✓ | ✓ | ✓ | ✓ | ✓ | live (`SELECT DISTINCT unit, vartype`); `us`, `GB`, `TB`, `h`, `d`, `16MB` also handled |
//! | `pg_file_settings` (`sourcefile, sourceline, seqno, name, setting, applied, error`), re-reading the files at each query; SELECT and EXECUTE on `pg_show_all_file_settings()` revoked from PUBLIC | ✓ | ✓ | ✓ | ✓ | ✓ | docs `view-pg-file-settings` (13–19 pages identical); system_views.sql REVOKEs; live |
//! | `pg_file_settings.error` texts: `syntax error` (name NULL), `unrecognized configuration parameter` (then no other entry reports an error: none is applied), `setting could not be applied` (an invalid value, or a postmaster setting that differs from the running one: the same text) | ✓ | ✓ | ✓ | ✓ | ✓ | live on 15.20, 16, 17, 18 (lines appended to postgresql.conf) |
//! | `log_connections` vartype | bool | bool | bool | bool | string | live; security.md §3.1 (release-18.sgml) |
//! | `pg_control_system()` EXECUTE: PUBLIC (default ACL) | ✓ | ✓ | ✓ | ✓ | ✓ | live (`proacl` NULL) |
//! | `pg_current_wal_lsn()`, `pg_last_wal_receive_lsn()`, `pg_wal_lsn_diff()`, `mxid_age()`: PUBLIC | ✓ | ✓ | ✓ | ✓ | ✓ | live |
//! | predefined roles present | 11 roles | + `pg_checkpoint` | + `pg_create_subscription`, `pg_use_reserved_connections` | + `pg_maintain` | + `pg_signal_autovacuum_worker` | live (`pg_roles`) |
//! | pg_monitor includes pg_read_all_settings, pg_read_all_stats, pg_stat_scan_tables | ✓ | ✓ | ✓ | ✓ | ✓ | live (`pg_has_role`) |

mod autovacuum;
mod cluster;
mod databases;
mod hba;
pub mod queries;
mod security;
mod settings;

use serde_json::Value;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Row};

use crate::facts::{Facts, Section};
use crate::target::{SessionOptions, Target};

/// The server could not be audited at all: the first query failed (connection lost,
/// statement refused…). Every later failure is recorded in its section instead.
#[derive(Debug, thiserror::Error)]
#[error("the server could not be audited: {0}")]
pub struct CollectError(pub String);

/// Fill the PostgreSQL sections of `facts` from an open session, connecting to the other
/// databases for per-database facts.
pub async fn collect(
    client: &Client,
    target: &Target,
    opts: &SessionOptions,
    facts: &mut Facts,
) -> Result<(), CollectError> {
    let connector = TargetConnector { target, opts };
    collect_with(client, &connector, facts).await
}

/// Run the rules' own queries (`[rule.query]`) on the audit session (and, for
/// `each_database` ones, on a session per database): the `queries` section.
pub async fn collect_queries(
    client: &Client,
    target: &Target,
    opts: &SessionOptions,
    queries: &[queries::UserQuery],
) -> Section {
    queries::collect(client, &TargetConnector { target, opts }, queries).await
}

/// Opens a session on another database of the audited server.
pub(crate) trait DbConnector {
    async fn connect_db(&self, dbname: &str) -> Result<Client, String>;
}

struct TargetConnector<'a> {
    target: &'a Target,
    opts: &'a SessionOptions,
}

impl DbConnector for TargetConnector<'_> {
    async fn connect_db(&self, dbname: &str) -> Result<Client, String> {
        let target = self.target.for_database(dbname);
        crate::target::connect(&target, self.opts)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Read a column, with a message naming it when its type is not the one expected.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, String> {
    row.try_get(name).map_err(|e| format!("column {name}: {e}"))
}

/// A driver error as one line: the server's message and SQLSTATE when there is one.
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => e.to_string(),
    }
}

/// The server version and what the audit role may read, from one query.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub version_num: i32,
    pub version: String,
    pub current_user: String,
    pub current_database: String,
    pub is_superuser: bool,
    pub in_recovery: bool,
    /// Predefined `pg_*` roles whose privileges the audit role has (all of them for a
    /// superuser).
    pub predefined_roles: Vec<String>,
    pub can_read_hba: bool,
    pub can_read_file_settings: bool,
    pub can_read_authid: bool,
    pub can_control_system: bool,
}

/// `pg_has_role(…, 'USAGE')`: the privileges are usable without SET ROLE (membership
/// through INHERIT). Predefined roles have OIDs below `FirstNormalObjectId` (16384) and
/// names starting with `pg_` (a prefix reserved to the system since 9.6). Objects are
/// looked up with `to_regclass`/`to_regprocedure`, so a server that lacks one (a fork, a
/// managed service) answers "no privilege" instead of failing the probe.
const PROBE_SQL: &str = "\
SELECT current_setting('server_version_num')::int4 AS version_num, \
       current_setting('server_version') AS version, \
       current_user::text AS current_user, \
       current_database()::text AS current_database, \
       coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), \
                false) AS is_superuser, \
       pg_catalog.pg_is_in_recovery() AS in_recovery, \
       ARRAY(SELECT rolname::text FROM pg_catalog.pg_roles \
             WHERE oid < 16384 AND left(rolname, 3) = 'pg_' \
               AND pg_catalog.pg_has_role(current_user, oid, 'USAGE') \
             ORDER BY 1) AS predefined_roles, \
       coalesce(pg_catalog.has_table_privilege( \
                  pg_catalog.to_regclass('pg_catalog.pg_hba_file_rules'), 'SELECT') \
                AND pg_catalog.has_function_privilege( \
                  pg_catalog.to_regprocedure('pg_catalog.pg_hba_file_rules()'), 'EXECUTE'), \
                false) AS can_read_hba, \
       coalesce(pg_catalog.has_table_privilege( \
                  pg_catalog.to_regclass('pg_catalog.pg_file_settings'), 'SELECT') \
                AND pg_catalog.has_function_privilege( \
                  pg_catalog.to_regprocedure('pg_catalog.pg_show_all_file_settings()'), 'EXECUTE'), \
                false) AS can_read_file_settings, \
       coalesce(pg_catalog.has_column_privilege( \
                  pg_catalog.to_regclass('pg_catalog.pg_authid'), 'rolpassword', 'SELECT'), \
                false) AS can_read_authid, \
       coalesce(pg_catalog.has_function_privilege( \
                  pg_catalog.to_regprocedure('pg_catalog.pg_control_system()'), 'EXECUTE'), \
                false) AS can_control_system";

impl Probe {
    async fn read(client: &Client) -> Result<Probe, CollectError> {
        let rows = client
            .query_typed(PROBE_SQL, &[])
            .await
            .map_err(|e| CollectError(pg_error(&e)))?;
        let row = rows
            .first()
            .ok_or_else(|| CollectError("the probe query returned no row".into()))?;
        let parse = || -> Result<Probe, String> {
            Ok(Probe {
                version_num: col::<Option<i32>>(row, "version_num")?.unwrap_or(0),
                version: col::<Option<String>>(row, "version")?.unwrap_or_default(),
                current_user: col::<Option<String>>(row, "current_user")?.unwrap_or_default(),
                current_database: col::<Option<String>>(row, "current_database")?
                    .unwrap_or_default(),
                is_superuser: col::<Option<bool>>(row, "is_superuser")?.unwrap_or(false),
                in_recovery: col::<Option<bool>>(row, "in_recovery")?.unwrap_or(false),
                predefined_roles: col::<Option<Vec<String>>>(row, "predefined_roles")?
                    .unwrap_or_default(),
                can_read_hba: col::<Option<bool>>(row, "can_read_hba")?.unwrap_or(false),
                can_read_file_settings: col::<Option<bool>>(row, "can_read_file_settings")?
                    .unwrap_or(false),
                can_read_authid: col::<Option<bool>>(row, "can_read_authid")?.unwrap_or(false),
                can_control_system: col::<Option<bool>>(row, "can_control_system")?
                    .unwrap_or(false),
            })
        };
        parse().map_err(CollectError)
    }

    fn has_role(&self, role: &str) -> bool {
        self.is_superuser || self.predefined_roles.iter().any(|r| r == role)
    }

    pub(crate) fn read_all_settings(&self) -> bool {
        self.has_role("pg_read_all_settings")
    }

    pub(crate) fn read_all_stats(&self) -> bool {
        self.has_role("pg_read_all_stats")
    }
}

/// A section from its data and the list of what is missing from it.
fn section(data: Value, problems: Vec<String>) -> Section {
    if problems.is_empty() {
        Section::ok(data)
    } else {
        Section::partial(data, problems.join("; "))
    }
}

/// A section built by `build` from the rows of a query, or `missing` with the error.
fn from_rows(
    rows: Result<Vec<Row>, String>,
    build: impl FnOnce(&[Row]) -> Result<Value, String>,
) -> Section {
    match rows.and_then(|rows| build(&rows)) {
        Ok(data) => Section::ok(data),
        Err(e) => Section::missing(format!("query failed: {e}")),
    }
}

/// [`collect`] with the way to reach other databases abstracted, for tests.
pub(crate) async fn collect_with<C: DbConnector>(
    client: &Client,
    connector: &C,
    facts: &mut Facts,
) -> Result<(), CollectError> {
    let probe = Probe::read(client).await?;
    let v = probe.version_num;

    // Every query below is independent: joined, they are pipelined on the one session
    // (sent back to back, answered in order), each in its own implicit transaction, so one
    // failing does not affect the others.
    let query = |sql: String| async move {
        client
            .query_typed(&sql, &[])
            .await
            .map_err(|e| pg_error(&e))
    };
    let maybe =
        |ok: bool, sql: String| async move { if ok { Some(query(sql).await) } else { None } };
    let (
        ssl_rows,
        server_rows,
        settings_rows,
        hba_rows,
        roles_rows,
        password_rows,
        db_rows,
        ext_rows,
        stats_rows,
        standby_rows,
        slot_rows,
        receiver_rows,
        file_settings_rows,
    ) = tokio::join!(
        query(cluster::SSL_SQL.to_string()),
        query(cluster::server_sql(&probe)),
        query(settings::SQL.to_string()),
        maybe(probe.can_read_hba, hba::sql(v).to_string()),
        query(cluster::ROLES_SQL.to_string()),
        maybe(probe.can_read_authid, cluster::PASSWORDS_SQL.to_string()),
        query(databases::sql(true)),
        query(databases::EXTENSIONS_SQL.to_string()),
        query(cluster::stats_sql(v)),
        query(cluster::STANDBYS_SQL.to_string()),
        query(cluster::slots_sql(probe.in_recovery)),
        query(cluster::RECEIVER_SQL.to_string()),
        maybe(
            probe.can_read_file_settings,
            settings::FILE_ERRORS_SQL.to_string()
        ),
    );

    // settings, settings_meta
    let (mut data_directory, mut hba_file) = (None, None);
    match settings_rows.and_then(|rows| settings::build(&rows)) {
        Ok(s) => {
            data_directory = s.raw("data_directory").map(str::to_string);
            hba_file = s.raw("hba_file").map(str::to_string);
            let mut problems = Vec::new();
            if !probe.read_all_settings() {
                problems.push(
                    "settings marked superuser-only are hidden (among them \
                     shared_preload_libraries, ssl_min_protocol_version, ssl_ciphers, \
                     log_directory, data_directory, hba_file) and sourcefile/sourceline are \
                     null: grant pg_read_all_settings (or pg_monitor)"
                        .to_string(),
                );
            }
            if !s.problems.is_empty() {
                problems.push(format!(
                    "values that could not be typed are null: {}",
                    s.problems.join(", ")
                ));
            }
            facts.insert(
                "settings",
                section(Value::Object(s.settings), problems.clone()),
            );
            facts.insert("settings_meta", section(Value::Object(s.meta), problems));
        }
        Err(e) => {
            let reason = format!("query failed: {e}");
            facts.insert("settings", Section::missing(reason.clone()));
            facts.insert("settings_meta", Section::missing(reason));
        }
    }

    // server
    let (data, problems) = cluster::server(&probe, server_rows, data_directory.as_deref());
    facts.insert("server", section(data, problems));

    // hba
    let hba_file = hba_file.as_deref().unwrap_or("pg_hba.conf");
    facts.insert(
        "hba",
        match hba_rows {
            Some(rows) => from_rows(rows, |rows| {
                hba::build(rows, hba_file).map(security::annotate_hba)
            }),
            None => Section::missing(
                "needs superuser: pg_hba_file_rules is readable only by superusers \
                 (or a role granted SELECT on it and EXECUTE on pg_hba_file_rules())",
            ),
        },
    );

    // roles, passwords
    facts.insert("roles", from_rows(roles_rows, cluster::roles));
    facts.insert(
        "passwords",
        match password_rows {
            Some(rows) => from_rows(rows, cluster::passwords),
            None => Section::missing(
                "needs superuser: pg_authid.rolpassword is readable only by superusers",
            ),
        },
    );

    // file_settings: what the configuration files would fail to apply
    facts.insert(
        "file_settings",
        match file_settings_rows {
            Some(rows) => from_rows(rows, settings::file_errors),
            None => Section::missing(
                "needs superuser: pg_file_settings is readable only by superusers \
                 (or a role granted SELECT on it and EXECUTE on pg_show_all_file_settings())",
            ),
        },
    );

    // stats, replication, ssl
    facts.insert("stats", from_rows(stats_rows, cluster::stats));
    let (data, problems) = cluster::replication(&probe, standby_rows, slot_rows, receiver_rows);
    facts.insert("replication", section(data, problems));
    facts.insert(
        "ssl",
        match ssl_rows.and_then(|rows| cluster::ssl(&rows)) {
            Ok(data) if probe.read_all_stats() => Section::ok(data),
            Ok(data) => Section::partial(
                data,
                "sessions of other roles show no client address without pg_read_all_stats \
                 (or pg_monitor) and are not counted",
            ),
            Err(e) => Section::missing(format!("query failed: {e}")),
        },
    );

    // memberships, password_checks, and this database's security facts (security.rs)
    let current_security = security::collect(client, &probe, facts).await;
    // this database's tables with autovacuum off (autovacuum.rs)
    let current_autovacuum = autovacuum::read_db(client).await;

    // databases (last: it opens sessions on the other databases)
    let mut problems = Vec::new();
    let db_rows = match db_rows {
        Ok(rows) => Ok(rows),
        Err(e) => {
            // One database that cannot be measured must not hide all the others.
            problems.push(format!("size_bytes not read: {e}"));
            query(databases::sql(false)).await
        }
    };
    let section_db = match db_rows.and_then(|rows| databases::parse(&rows)) {
        Ok(dbs) => {
            let (data, problems) = databases::finish(
                dbs,
                (
                    probe.current_database.as_str(),
                    ext_rows,
                    current_security,
                    current_autovacuum,
                ),
                connector,
                problems,
            )
            .await;
            section(data, problems)
        }
        Err(e) => Section::missing(format!("query failed: {e}")),
    };
    facts.insert("databases", section_db);
    Ok(())
}

#[cfg(test)]
mod live_tests;
