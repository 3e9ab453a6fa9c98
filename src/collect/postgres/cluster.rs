//! Cluster-wide sections read over the main session: `server`, `roles`, `passwords`,
//! `stats`, `replication`, `ssl`. Each has its query (per major where it differs) and the
//! function that turns the rows into the documented JSON.

use serde_json::{Value, json};
use tokio_postgres::Row;

use super::{Probe, col};

// ---------------------------------------------------------------- server

/// The part of `server` not already in the probe. `system_identifier` only when the audit
/// role may execute `pg_control_system()` (PUBLIC may on 14–18 unless an administrator
/// revoked it).
pub(crate) fn server_sql(probe: &Probe) -> String {
    let sysid = if probe.can_control_system {
        "(SELECT system_identifier::text FROM pg_catalog.pg_control_system())"
    } else {
        "NULL::text"
    };
    format!(
        "SELECT floor(extract(epoch FROM now() - pg_catalog.pg_postmaster_start_time()))::int8 \
                AS uptime_s, \
                (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()) \
                AS session_ssl, \
                {sysid} AS system_identifier"
    )
}

/// `server`: from the probe, the server query (when it worked) and `data_directory` from
/// `pg_settings` (when visible).
pub(crate) fn server(
    probe: &Probe,
    rows: Result<Vec<Row>, String>,
    data_directory: Option<&str>,
) -> (Value, Vec<String>) {
    let mut problems = Vec::new();
    let (mut uptime, mut session_ssl, mut sysid) = (None, None, None);
    match rows.and_then(|rows| {
        let row = rows.first().ok_or("no row")?;
        Ok((
            col::<Option<i64>>(row, "uptime_s")?,
            col::<Option<bool>>(row, "session_ssl")?,
            col::<Option<String>>(row, "system_identifier")?,
        ))
    }) {
        Ok((u, s, i)) => {
            (uptime, session_ssl, sysid) = (u, s, i);
            if sysid.is_none() {
                problems.push(
                    "system_identifier is null: the audit role may not execute \
                     pg_control_system() (grant EXECUTE on it)"
                        .to_string(),
                );
            }
        }
        Err(e) => problems.push(format!(
            "uptime_s, session_ssl and system_identifier not read: {e}"
        )),
    }
    if data_directory.is_none() {
        problems
            .push("data_directory is hidden (needs superuser or pg_read_all_settings)".to_string());
    }
    let v = probe.version_num;
    let data = json!({
        "version": probe.version,
        "version_num": v,
        "major": v / 10000,
        "minor": v % 10000,
        "uptime_s": uptime,
        "in_recovery": probe.in_recovery,
        "data_directory": data_directory,
        "system_identifier": sysid,
        "current_user": probe.current_user,
        "is_superuser": probe.is_superuser,
        "predefined_roles": probe.predefined_roles,
        "session_ssl": session_ssl,
    });
    (data, problems)
}

// ---------------------------------------------------------------- roles

/// `valid_until`: `infinity` (and NULL) = no expiry → null; `-infinity` = always expired → 0.
pub(crate) const ROLES_SQL: &str = "\
SELECT r.rolname::text AS name, r.oid::int8 AS oid, r.rolsuper AS superuser, \
       r.rolinherit AS inherit, r.rolcreaterole AS createrole, r.rolcreatedb AS createdb, \
       r.rolcanlogin AS login, r.rolreplication AS replication, r.rolbypassrls AS bypassrls, \
       r.rolconnlimit::int8 AS connection_limit, \
       CASE WHEN pg_catalog.isfinite(r.rolvaliduntil) \
                 THEN floor(extract(epoch FROM r.rolvaliduntil))::int8 \
            WHEN r.rolvaliduntil < now() THEN 0::int8 END AS valid_until, \
       ARRAY(SELECT DISTINCT g.rolname::text \
             FROM pg_catalog.pg_auth_members m \
             JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
             WHERE m.member = r.oid ORDER BY 1) AS member_of \
FROM pg_catalog.pg_roles r ORDER BY r.rolname";

pub(crate) fn roles(rows: &[Row]) -> Result<Value, String> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(json!({
            "name": col::<String>(row, "name")?,
            "oid": col::<Option<i64>>(row, "oid")?,
            "superuser": col::<Option<bool>>(row, "superuser")?,
            "inherit": col::<Option<bool>>(row, "inherit")?,
            "createrole": col::<Option<bool>>(row, "createrole")?,
            "createdb": col::<Option<bool>>(row, "createdb")?,
            "login": col::<Option<bool>>(row, "login")?,
            "replication": col::<Option<bool>>(row, "replication")?,
            "bypassrls": col::<Option<bool>>(row, "bypassrls")?,
            "connection_limit": col::<Option<i64>>(row, "connection_limit")?,
            "valid_until": col::<Option<i64>>(row, "valid_until")?,
            "member_of": col::<Option<Vec<String>>>(row, "member_of")?.unwrap_or_default(),
        }));
    }
    Ok(Value::Array(out))
}

// ---------------------------------------------------------------- passwords

/// The hash never leaves the server: the query returns three booleans per role, computed
/// like PostgreSQL's own `get_password_type()` (md5: `md5` + 32 hex digits; SCRAM: the
/// `SCRAM-SHA-256$` prefix).
pub(crate) const PASSWORDS_SQL: &str = "\
SELECT rolname::text AS name, rolpassword IS NULL AS is_null, \
       rolpassword LIKE 'SCRAM-SHA-256$%' AS is_scram, \
       rolpassword ~ '^md5[0-9a-f]{32}$' AS is_md5 \
FROM pg_catalog.pg_authid ORDER BY rolname";

/// The kind of a stored password from the flags of [`PASSWORDS_SQL`].
pub(crate) fn password_kind(is_null: bool, is_scram: bool, is_md5: bool) -> &'static str {
    if is_null {
        "none"
    } else if is_scram {
        "scram-sha-256"
    } else if is_md5 {
        "md5"
    } else {
        "plain"
    }
}

pub(crate) fn passwords(rows: &[Row]) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for row in rows {
        let name: String = col(row, "name")?;
        let is_null = col::<Option<bool>>(row, "is_null")?.unwrap_or(true);
        let is_scram = col::<Option<bool>>(row, "is_scram")?.unwrap_or(false);
        let is_md5 = col::<Option<bool>>(row, "is_md5")?.unwrap_or(false);
        out.insert(name, json!(password_kind(is_null, is_scram, is_md5)));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------- stats

/// One row joining the single-row statistics views, plus the checksum failures found in
/// shared catalogs (the `pg_stat_database` row with `datid = 0`, which no database owns). Checkpoint counters come from
/// `pg_stat_checkpointer` on 17+ and from `pg_stat_bgwriter` before (same meaning, renamed
/// columns); `pg_stat_wal` exists from 14 on and lost its write/sync columns in 18 (none
/// of which are read here).
pub(crate) fn stats_sql(version_num: i32) -> String {
    let ckpt = if version_num >= 170000 {
        "SELECT num_timed, num_requested, write_time, sync_time, buffers_written, stats_reset \
         FROM pg_catalog.pg_stat_checkpointer"
    } else {
        "SELECT checkpoints_timed AS num_timed, checkpoints_req AS num_requested, \
                checkpoint_write_time AS write_time, checkpoint_sync_time AS sync_time, \
                buffers_checkpoint AS buffers_written, stats_reset \
         FROM pg_catalog.pg_stat_bgwriter"
    };
    let wal = if version_num >= 140000 {
        "SELECT true AS present, wal_records, wal_fpi, wal_bytes, wal_buffers_full, stats_reset \
         FROM pg_catalog.pg_stat_wal"
    } else {
        "SELECT false AS present, NULL::int8 AS wal_records, NULL::int8 AS wal_fpi, \
                NULL::numeric AS wal_bytes, NULL::int8 AS wal_buffers_full, \
                NULL::timestamptz AS stats_reset"
    };
    format!(
        "SELECT floor(extract(epoch FROM now()))::int8 AS now_s, \
                a.archived_count::int8 AS a_archived_count, \
                a.last_archived_wal::text AS a_last_archived_wal, \
                floor(extract(epoch FROM a.last_archived_time))::int8 AS a_last_archived_time, \
                a.failed_count::int8 AS a_failed_count, \
                a.last_failed_wal::text AS a_last_failed_wal, \
                floor(extract(epoch FROM a.last_failed_time))::int8 AS a_last_failed_time, \
                floor(extract(epoch FROM a.stats_reset))::int8 AS a_stats_reset, \
                c.num_timed::int8 AS c_num_timed, c.num_requested::int8 AS c_num_requested, \
                round(c.write_time)::int8 AS c_write_time_ms, \
                round(c.sync_time)::int8 AS c_sync_time_ms, \
                c.buffers_written::int8 AS c_buffers_written, \
                floor(extract(epoch FROM c.stats_reset))::int8 AS c_stats_reset, \
                b.buffers_clean::int8 AS b_buffers_clean, \
                b.maxwritten_clean::int8 AS b_maxwritten_clean, \
                b.buffers_alloc::int8 AS b_buffers_alloc, \
                floor(extract(epoch FROM b.stats_reset))::int8 AS b_stats_reset, \
                w.present AS w_present, w.wal_records::int8 AS w_wal_records, \
                w.wal_fpi::int8 AS w_wal_fpi, w.wal_bytes::int8 AS w_wal_bytes, \
                w.wal_buffers_full::int8 AS w_wal_buffers_full, \
                floor(extract(epoch FROM w.stats_reset))::int8 AS w_stats_reset, \
                s.checksum_failures::int8 AS s_checksum_failures, \
                floor(extract(epoch FROM s.checksum_last_failure))::int8 \
                  AS s_checksum_last_failure \
         FROM pg_catalog.pg_stat_archiver a, pg_catalog.pg_stat_bgwriter b, \
              ({ckpt}) c, ({wal}) w \
         LEFT JOIN pg_catalog.pg_stat_database s ON s.datid = 0"
    )
}

/// Age in seconds of the most recent reset among `resets` (the shortest window over
/// which the counters have been accumulating), or `None` when none is known.
pub(crate) fn stats_age(now: Option<i64>, resets: &[Option<i64>]) -> Option<i64> {
    let newest = resets.iter().flatten().max()?;
    Some((now? - newest).max(0))
}

pub(crate) fn stats(rows: &[Row]) -> Result<Value, String> {
    let row = rows.first().ok_or("the statistics views returned no row")?;
    let i = |name: &str| col::<Option<i64>>(row, name);
    let t = |name: &str| col::<Option<String>>(row, name);
    let (a_reset, c_reset, b_reset, w_reset) = (
        i("a_stats_reset")?,
        i("c_stats_reset")?,
        i("b_stats_reset")?,
        i("w_stats_reset")?,
    );
    let wal_present = col::<Option<bool>>(row, "w_present")?.unwrap_or(false);
    let wal = if wal_present {
        json!({
            "wal_records": i("w_wal_records")?,
            "wal_fpi": i("w_wal_fpi")?,
            "wal_bytes": i("w_wal_bytes")?,
            "wal_buffers_full": i("w_wal_buffers_full")?,
            "stats_reset": w_reset,
        })
    } else {
        Value::Null
    };
    Ok(json!({
        "archiver": {
            "archived_count": i("a_archived_count")?,
            "last_archived_wal": t("a_last_archived_wal")?,
            "last_archived_time": i("a_last_archived_time")?,
            "failed_count": i("a_failed_count")?,
            "last_failed_wal": t("a_last_failed_wal")?,
            "last_failed_time": i("a_last_failed_time")?,
            "stats_reset": a_reset,
        },
        "checkpointer": {
            "num_timed": i("c_num_timed")?,
            "num_requested": i("c_num_requested")?,
            "write_time_ms": i("c_write_time_ms")?,
            "sync_time_ms": i("c_sync_time_ms")?,
            "buffers_written": i("c_buffers_written")?,
            "stats_reset": c_reset,
        },
        "bgwriter": {
            "buffers_clean": i("b_buffers_clean")?,
            "maxwritten_clean": i("b_maxwritten_clean")?,
            "buffers_alloc": i("b_buffers_alloc")?,
            "stats_reset": b_reset,
        },
        "wal": wal,
        "shared_objects": {
            "checksum_failures": i("s_checksum_failures")?,
            "checksum_last_failure": i("s_checksum_last_failure")?,
        },
        "stats_age_s": stats_age(i("now_s")?, &[a_reset, c_reset, b_reset, w_reset]),
    }))
}

// ---------------------------------------------------------------- replication

/// Lags are intervals; converted to milliseconds (rounded down).
pub(crate) const STANDBYS_SQL: &str = "\
SELECT application_name::text AS application_name, host(client_addr) AS client_addr, \
       state::text AS state, sync_state::text AS sync_state, \
       floor(extract(epoch FROM write_lag) * 1000)::int8 AS write_lag_ms, \
       floor(extract(epoch FROM flush_lag) * 1000)::int8 AS flush_lag_ms, \
       floor(extract(epoch FROM replay_lag) * 1000)::int8 AS replay_lag_ms \
FROM pg_catalog.pg_stat_replication ORDER BY application_name, pid";

/// `retained_bytes`: WAL kept for the slot, measured from the newest WAL position of this
/// server. `pg_current_wal_lsn()` fails during recovery, so a standby uses the newest of
/// the received and replayed positions.
pub(crate) fn slots_sql(in_recovery: bool) -> String {
    let head = if in_recovery {
        "GREATEST(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())"
    } else {
        "pg_catalog.pg_current_wal_lsn()"
    };
    format!(
        "SELECT slot_name::text AS slot_name, slot_type::text AS slot_type, active, \
                wal_status::text AS wal_status, \
                pg_catalog.pg_wal_lsn_diff({head}, restart_lsn)::int8 AS retained_bytes \
         FROM pg_catalog.pg_replication_slots ORDER BY slot_name"
    )
}

pub(crate) const RECEIVER_SQL: &str = "\
SELECT status::text AS status, sender_host::text AS sender_host, \
       sender_port::int8 AS sender_port, slot_name::text AS slot_name \
FROM pg_catalog.pg_stat_wal_receiver";

/// `replication` from its three queries; each list that failed is null and named.
pub(crate) fn replication(
    probe: &Probe,
    standbys: Result<Vec<Row>, String>,
    slots: Result<Vec<Row>, String>,
    receiver: Result<Vec<Row>, String>,
) -> (Value, Vec<String>) {
    let mut problems = Vec::new();
    let standbys = standbys.and_then(|rows| {
        rows.iter()
            .map(|row| {
                Ok(json!({
                    "application_name": col::<Option<String>>(row, "application_name")?,
                    "client_addr": col::<Option<String>>(row, "client_addr")?,
                    "state": col::<Option<String>>(row, "state")?,
                    "sync_state": col::<Option<String>>(row, "sync_state")?,
                    "write_lag_ms": col::<Option<i64>>(row, "write_lag_ms")?,
                    "flush_lag_ms": col::<Option<i64>>(row, "flush_lag_ms")?,
                    "replay_lag_ms": col::<Option<i64>>(row, "replay_lag_ms")?,
                }))
            })
            .collect::<Result<Vec<Value>, String>>()
    });
    let slots = slots.and_then(|rows| {
        rows.iter()
            .map(|row| {
                Ok(json!({
                    "slot_name": col::<Option<String>>(row, "slot_name")?,
                    "slot_type": col::<Option<String>>(row, "slot_type")?,
                    "active": col::<Option<bool>>(row, "active")?,
                    "wal_status": col::<Option<String>>(row, "wal_status")?,
                    "retained_bytes": col::<Option<i64>>(row, "retained_bytes")?,
                }))
            })
            .collect::<Result<Vec<Value>, String>>()
    });
    let receiver = receiver.and_then(|rows| match rows.first() {
        None => Ok(Value::Null),
        Some(row) => Ok(json!({
            "status": col::<Option<String>>(row, "status")?,
            "sender_host": col::<Option<String>>(row, "sender_host")?,
            "sender_port": col::<Option<i64>>(row, "sender_port")?,
            "slot_name": col::<Option<String>>(row, "slot_name")?,
        })),
    });

    let mut take = |what: &str, r: Result<Value, String>| match r {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{what} not read: {e}"));
            Value::Null
        }
    };
    let standbys = take("standbys", standbys.map(Value::Array));
    let slots = take("slots", slots.map(Value::Array));
    let receiver = take("receiver", receiver);

    let has_walsenders = standbys.as_array().is_some_and(|s| !s.is_empty());
    if !probe.read_all_stats() && (has_walsenders || !receiver.is_null()) {
        problems.push(
            "state, lags and addresses of replication connections are hidden without \
             pg_read_all_stats (or pg_monitor)"
                .to_string(),
        );
    }
    let data = json!({
        "is_standby": probe.in_recovery,
        "standbys": standbys,
        "slots": slots,
        "receiver": receiver,
    });
    (data, problems)
}

// ---------------------------------------------------------------- ssl

/// TCP client sessions (a client address is known) grouped by who and whether TLS is used;
/// pgready's own session is left out (it is `server.session_ssl`). Other roles' sessions
/// show no address without pg_read_all_stats, so they are not counted then.
pub(crate) const SSL_SQL: &str = "\
SELECT a.usename::text AS usename, a.datname::text AS datname, \
       host(a.client_addr) AS client_addr, a.application_name::text AS application_name, \
       coalesce(s.ssl, false) AS ssl, count(*)::int8 AS sessions \
FROM pg_catalog.pg_stat_activity a \
LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = a.pid \
WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL \
  AND a.pid <> pg_catalog.pg_backend_pid() \
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5";

pub(crate) fn ssl(rows: &[Row]) -> Result<Value, String> {
    let (mut total, mut with_ssl) = (0i64, 0i64);
    let mut non_ssl = Vec::new();
    for row in rows {
        let n = col::<Option<i64>>(row, "sessions")?.unwrap_or(0);
        total += n;
        if col::<Option<bool>>(row, "ssl")?.unwrap_or(false) {
            with_ssl += n;
        } else {
            non_ssl.push(json!({
                "user": col::<Option<String>>(row, "usename")?,
                "database": col::<Option<String>>(row, "datname")?,
                "client_addr": col::<Option<String>>(row, "client_addr")?,
                "application_name": col::<Option<String>>(row, "application_name")?,
                "sessions": n,
            }));
        }
    }
    Ok(json!({
        "client_sessions": total,
        "ssl_sessions": with_ssl,
        "non_ssl": non_ssl,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_kinds() {
        assert_eq!(password_kind(true, false, false), "none");
        assert_eq!(password_kind(false, true, false), "scram-sha-256");
        assert_eq!(password_kind(false, false, true), "md5");
        assert_eq!(password_kind(false, false, false), "plain");
        // NULL wins over anything else
        assert_eq!(password_kind(true, true, true), "none");
    }

    #[test]
    fn stats_age_uses_the_newest_reset() {
        assert_eq!(
            stats_age(Some(1000), &[Some(100), Some(900), None]),
            Some(100)
        );
        assert_eq!(stats_age(Some(1000), &[None, None]), None);
        assert_eq!(stats_age(None, &[Some(1)]), None);
        // a clock skew never gives a negative age
        assert_eq!(stats_age(Some(10), &[Some(20)]), Some(0));
    }

    #[test]
    fn stats_query_follows_the_major() {
        assert!(stats_sql(180000).contains("pg_stat_checkpointer"));
        assert!(stats_sql(170000).contains("pg_stat_checkpointer"));
        assert!(!stats_sql(160000).contains("pg_stat_checkpointer"));
        assert!(stats_sql(160000).contains("checkpoints_timed AS num_timed"));
        assert!(stats_sql(140000).contains("FROM pg_catalog.pg_stat_wal"));
        assert!(!stats_sql(130000).contains("pg_stat_wal"));
        for v in [140000, 170000, 180000] {
            assert!(!stats_sql(v).contains("wal_write"), "18 removed wal_write*");
        }
    }

    #[test]
    fn slots_query_does_not_call_primary_functions_on_a_standby() {
        assert!(!slots_sql(true).contains("pg_current_wal_lsn"));
        assert!(slots_sql(false).contains("pg_current_wal_lsn"));
    }
}
