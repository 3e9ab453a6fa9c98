//! `databases`: one element per `pg_database` row, with its statistics and, read over a
//! connection to that database, its extensions and its security facts (`security.rs`;
//! both queries pipelined on the one connection).

use std::cell::{Cell, RefCell};

use serde_json::{Map, Value, json};
use tokio_postgres::Row;

use super::{DbConnector, autovacuum, col, pg_error, security};

/// How big each database is. `pg_database_size()` needs CONNECT on the database or the
/// privileges of pg_read_all_stats; checking first keeps one forbidden database from
/// failing the whole query. An invalid database (`datconnlimit = -2`, left by an
/// interrupted DROP DATABASE since 14.9/15.4/16.0) is not measured.
const SIZE_EXPR: &str = "\
CASE WHEN d.datconnlimit <> -2 \
      AND (pg_catalog.has_database_privilege(d.oid, 'CONNECT') \
           OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')) \
     THEN pg_catalog.pg_database_size(d.oid) END";

/// The databases query; `with_sizes` false is the fallback when measuring one failed.
pub(crate) fn sql(with_sizes: bool) -> String {
    let size = if with_sizes { SIZE_EXPR } else { "NULL::int8" };
    format!(
        "SELECT d.datname::text AS name, d.oid::int8 AS oid, \
                d.datallowconn AS allow_connections, d.datistemplate AS is_template, \
                d.datconnlimit::int8 AS connection_limit, \
                pg_catalog.has_database_privilege(d.oid, 'CONNECT') AS can_connect, \
                {size} AS size_bytes, \
                pg_catalog.age(d.datfrozenxid)::int8 AS xid_age, \
                pg_catalog.mxid_age(d.datminmxid)::int8 AS mxid_age, \
                pg_catalog.pg_encoding_to_char(d.encoding)::text AS encoding, \
                s.datid IS NOT NULL AS has_stats, \
                s.numbackends::int8 AS numbackends, s.xact_commit::int8 AS xact_commit, \
                s.xact_rollback::int8 AS xact_rollback, s.deadlocks::int8 AS deadlocks, \
                s.temp_files::int8 AS temp_files, s.temp_bytes::int8 AS temp_bytes, \
                s.checksum_failures::int8 AS checksum_failures, \
                floor(extract(epoch FROM s.checksum_last_failure))::int8 AS checksum_last_failure, \
                s.conflicts::int8 AS conflicts, s.blks_read::int8 AS blks_read, \
                s.blks_hit::int8 AS blks_hit, \
                floor(extract(epoch FROM s.stats_reset))::int8 AS stats_reset \
         FROM pg_catalog.pg_database d \
         LEFT JOIN pg_catalog.pg_stat_database s ON s.datid = d.oid \
         ORDER BY d.datname"
    )
}

pub(crate) const EXTENSIONS_SQL: &str = "\
SELECT e.extname::text AS name, e.extversion::text AS version, n.nspname::text AS schema \
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
ORDER BY e.extname";

/// One database as read from the catalog, before its extensions are known.
pub(crate) struct Db {
    pub name: String,
    allow_connections: bool,
    is_template: bool,
    connection_limit: i64,
    can_connect: bool,
    size_hidden: bool,
    data: Map<String, Value>,
}

pub(crate) fn parse(rows: &[Row]) -> Result<Vec<Db>, String> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = col(row, "name")?;
        let allow_connections: bool =
            col::<Option<bool>>(row, "allow_connections")?.unwrap_or(false);
        let is_template: bool = col::<Option<bool>>(row, "is_template")?.unwrap_or(false);
        let connection_limit: Option<i64> = col(row, "connection_limit")?;
        let can_connect: bool = col::<Option<bool>>(row, "can_connect")?.unwrap_or(false);
        let size: Option<i64> = col(row, "size_bytes")?;
        let has_stats: bool = col::<Option<bool>>(row, "has_stats")?.unwrap_or(false);
        let stats = if has_stats {
            json!({
                "numbackends": col::<Option<i64>>(row, "numbackends")?,
                "xact_commit": col::<Option<i64>>(row, "xact_commit")?,
                "xact_rollback": col::<Option<i64>>(row, "xact_rollback")?,
                "deadlocks": col::<Option<i64>>(row, "deadlocks")?,
                "temp_files": col::<Option<i64>>(row, "temp_files")?,
                "temp_bytes": col::<Option<i64>>(row, "temp_bytes")?,
                "checksum_failures": col::<Option<i64>>(row, "checksum_failures")?,
                "checksum_last_failure": col::<Option<i64>>(row, "checksum_last_failure")?,
                "conflicts": col::<Option<i64>>(row, "conflicts")?,
                "blks_read": col::<Option<i64>>(row, "blks_read")?,
                "blks_hit": col::<Option<i64>>(row, "blks_hit")?,
                "stats_reset": col::<Option<i64>>(row, "stats_reset")?,
            })
        } else {
            Value::Null
        };
        let mut data = Map::new();
        data.insert("name".into(), json!(name));
        data.insert("oid".into(), json!(col::<Option<i64>>(row, "oid")?));
        data.insert("allow_connections".into(), json!(allow_connections));
        data.insert("is_template".into(), json!(is_template));
        data.insert("connection_limit".into(), json!(connection_limit));
        data.insert("size_bytes".into(), json!(size));
        data.insert("xid_age".into(), json!(col::<Option<i64>>(row, "xid_age")?));
        data.insert(
            "mxid_age".into(),
            json!(col::<Option<i64>>(row, "mxid_age")?),
        );
        data.insert(
            "encoding".into(),
            json!(col::<Option<String>>(row, "encoding")?),
        );
        data.insert("extensions".into(), Value::Null);
        data.insert("extensions_reason".into(), Value::Null);
        data.insert("security".into(), Value::Null);
        data.insert("security_reason".into(), Value::Null);
        data.insert("stats".into(), stats);
        out.push(Db {
            name,
            allow_connections,
            is_template,
            connection_limit: connection_limit.unwrap_or(-1),
            can_connect,
            size_hidden: size.is_none() && connection_limit != Some(-2),
            data,
        });
    }
    Ok(out)
}

/// What became of one database's extensions.
#[derive(Debug, Clone, PartialEq)]
enum Extensions {
    Read(Value),
    /// Not read because of what the database is (template, no connections): not a gap in
    /// the audit.
    NotApplicable(&'static str),
    /// Not read although they should have been: the section is partial.
    Unread(String),
}

/// Why the extensions of `db` are not read, or `None` when they should be.
fn skip(db: &Db) -> Option<Extensions> {
    use Extensions::{NotApplicable, Unread};
    if db.is_template {
        Some(NotApplicable("template database (not inspected)"))
    } else if db.connection_limit == -2 {
        Some(NotApplicable(
            "invalid database (an interrupted DROP DATABASE left it unusable)",
        ))
    } else if !db.allow_connections {
        Some(NotApplicable(
            "database does not accept connections (datallowconn is false)",
        ))
    } else if !db.can_connect {
        Some(Unread(
            "the audit role has no CONNECT privilege on this database".to_string(),
        ))
    } else {
        None
    }
}

fn extensions_json(rows: &[Row]) -> Result<Value, String> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(json!({
            "name": col::<Option<String>>(row, "name")?,
            "version": col::<Option<String>>(row, "version")?,
            "schema": col::<Option<String>>(row, "schema")?,
        }));
    }
    Ok(Value::Array(out))
}

/// What was read on one database: its extensions, its security facts and its tables with
/// autovacuum switched off (`autovacuum.rs`).
type DbRead = (
    Result<Value, String>,
    Result<Value, String>,
    Result<Value, String>,
);

/// Extensions and security facts of one database over a fresh connection (closed when
/// this returns); the two queries are pipelined.
async fn read_db<C: DbConnector>(connector: &C, dbname: &str) -> DbRead {
    let client = match connector.connect_db(dbname).await {
        Ok(c) => c,
        Err(e) => {
            let e = format!("connection failed: {e}");
            return (Err(e.clone()), Err(e.clone()), Err(e));
        }
    };
    let (ext, sec, av) = tokio::join!(
        client.query_typed(EXTENSIONS_SQL, &[]),
        security::read_db(&client),
        autovacuum::read_db(&client)
    );
    let ext = ext
        .map_err(|e| format!("query failed: {}", pg_error(&e)))
        .and_then(|rows| extensions_json(&rows));
    (ext, sec, av)
}

/// The database of the main session: its name, and what was read on it (extensions rows,
/// security facts, tables with autovacuum off).
pub(crate) type Current<'a> = (
    &'a str,
    Result<Vec<Row>, String>,
    Result<Value, String>,
    Result<Value, String>,
);

/// Fill `extensions` of every database and return the section.
///
/// `current` is the database of the main session with the result of [`EXTENSIONS_SQL`]
/// and of [`security::read_db`] read on it, so that it needs no second connection.
pub(crate) async fn finish<C: DbConnector>(
    dbs: Vec<Db>,
    current: Current<'_>,
    connector: &C,
    mut problems: Vec<String>,
) -> (Value, Vec<String>) {
    let (current_name, current_rows, current_security, current_autovacuum) = current;
    let mut current_security = Some(current_security);
    let mut current_autovacuum = Some(current_autovacuum);
    let mut autovacuum_off: Vec<Option<Result<Value, String>>> = vec![None; dbs.len()];
    let mut results: Vec<Option<Extensions>> = vec![None; dbs.len()];
    let mut security: Vec<Option<Result<Value, String>>> = vec![None; dbs.len()];
    let mut todo: Vec<usize> = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        if let Some(skipped) = skip(db) {
            results[i] = Some(skipped);
        } else if db.name == current_name {
            let read = match &current_rows {
                Ok(rows) => extensions_json(rows),
                Err(e) => Err(format!("query failed: {e}")),
            };
            results[i] = Some(read.map_or_else(Extensions::Unread, Extensions::Read));
            security[i] = current_security.take();
            autovacuum_off[i] = current_autovacuum.take();
        } else {
            todo.push(i);
        }
    }

    // Four workers pull databases from a shared queue, so at most four extra sessions
    // are open at once; they all run on this task (no spawn).
    let next = Cell::new(0usize);
    let fetched: RefCell<Vec<(usize, DbRead)>> = RefCell::new(Vec::new());
    let worker = || async {
        loop {
            let k = next.get();
            let Some(&i) = todo.get(k) else { break };
            next.set(k + 1);
            let r = read_db(connector, &dbs[i].name).await;
            fetched.borrow_mut().push((i, r));
        }
    };
    tokio::join!(worker(), worker(), worker(), worker());
    for (i, (ext, sec, av)) in fetched.into_inner() {
        results[i] = Some(ext.map_or_else(Extensions::Unread, Extensions::Read));
        security[i] = Some(sec);
        autovacuum_off[i] = Some(av);
    }

    let mut failed = Vec::new();
    let mut security_failed = Vec::new();
    let mut autovacuum_failed = Vec::new();
    let mut hidden_sizes = Vec::new();
    let mut out = Vec::with_capacity(dbs.len());
    for (((db, result), sec), av) in dbs
        .into_iter()
        .zip(results)
        .zip(security)
        .zip(autovacuum_off)
    {
        let mut data = db.data;
        let result = result.unwrap_or_else(|| Extensions::Unread("not read".to_string()));
        let skipped = match &result {
            Extensions::NotApplicable(reason) => Some(*reason),
            _ => None,
        };
        autovacuum::record(&mut data, &db.name, av, skipped, &mut autovacuum_failed);
        // Security facts follow the extensions: skipped for the same reasons, and a
        // failed read (connection or query) makes the section partial.
        match (&result, sec) {
            (_, Some(Ok(v))) => {
                data.insert("security".into(), v);
            }
            (_, Some(Err(e))) => {
                security_failed.push(format!("{}: {e}", db.name));
                data.insert("security_reason".into(), json!(e));
            }
            (Extensions::NotApplicable(reason), None) => {
                data.insert("security_reason".into(), json!(reason));
            }
            (Extensions::Unread(reason), None) => {
                data.insert("security_reason".into(), json!(reason));
                security_failed.push(format!("{}: {reason}", db.name));
            }
            (Extensions::Read(_), None) => {
                data.insert("security_reason".into(), json!("not read"));
                security_failed.push(format!("{}: not read", db.name));
            }
        }
        match result {
            Extensions::Read(exts) => {
                data.insert("extensions".into(), exts);
            }
            Extensions::NotApplicable(reason) => {
                data.insert("extensions_reason".into(), json!(reason));
            }
            Extensions::Unread(reason) => {
                failed.push(format!("{}: {reason}", db.name));
                data.insert("extensions_reason".into(), json!(reason));
            }
        }
        if db.size_hidden {
            hidden_sizes.push(db.name);
        }
        out.push(Value::Object(data));
    }
    if !hidden_sizes.is_empty() {
        problems.push(format!(
            "size_bytes is null for {} (needs CONNECT on the database or pg_read_all_stats)",
            hidden_sizes.join(", ")
        ));
    }
    if !failed.is_empty() {
        problems.push(format!("extensions not read for {}", failed.join("; ")));
    }
    if !security_failed.is_empty() {
        problems.push(format!(
            "security facts not read for {}",
            security_failed.join("; ")
        ));
    }
    if !autovacuum_failed.is_empty() {
        problems.push(format!(
            "tables with autovacuum off not read for {}",
            autovacuum_failed.join("; ")
        ));
    }
    (Value::Array(out), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_query_has_no_size_call() {
        let q = sql(false);
        assert!(!q.contains("pg_database_size"));
        assert!(q.contains("NULL::int8 AS size_bytes"));
        assert!(sql(true).contains("pg_database_size"));
    }

    fn db(allow: bool, template: bool, limit: i64, connect: bool) -> Db {
        Db {
            name: "d".into(),
            allow_connections: allow,
            is_template: template,
            connection_limit: limit,
            can_connect: connect,
            size_hidden: false,
            data: Map::new(),
        }
    }

    #[test]
    fn which_databases_are_skipped() {
        let na = |d: &Db| match skip(d) {
            Some(Extensions::NotApplicable(r)) => r.to_string(),
            other => panic!("expected NotApplicable, got {other:?}"),
        };
        assert_eq!(skip(&db(true, false, -1, true)), None);
        assert!(na(&db(true, true, -1, true)).starts_with("template"));
        assert!(na(&db(false, false, -1, true)).contains("datallowconn"));
        assert!(na(&db(true, false, -2, true)).starts_with("invalid"));
        // a missing privilege is a gap in the audit, not a property of the database
        match skip(&db(true, false, -1, false)) {
            Some(Extensions::Unread(r)) => assert!(r.contains("CONNECT")),
            other => panic!("expected Unread, got {other:?}"),
        }
    }
}
