//! Per database: the tables where autovacuum was switched off with a storage parameter
//! (`autovacuum_enabled = false`, on the table or, as `toast.autovacuum_enabled`, on its
//! TOAST table). Read on the per-database connection of `databases.rs`, pipelined with the
//! other per-database queries.
//!
//! verified: `pg_class.reloptions` (text[] of `name=value`, as written in WITH/SET, the
//! value not normalised: `off`, `false`, `0`, `No` are all stored as given) is readable by
//! every role on 14–18; `toast.autovacuum_enabled` is stored as `autovacuum_enabled` in the
//! reloptions of the TOAST relation (relkind `t`, found through `reltoastrelid`) — docs
//! sql-createtable "Storage Parameters" (14–18: autovacuum_enabled, toast.autovacuum_enabled
//! are boolean) and live on 14.23 and 18.4. Booleans accept any unique prefix of true/false/
//! yes/no, on/off and 1/0, case-insensitively (parse_bool_with_len in
//! src/backend/utils/adt/bool.c), hence the pattern below for the false spellings.

use serde_json::{Map, Value, json};
use tokio_postgres::{Client, Row};

use super::{col, pg_error};

/// How many table names are kept per database (the total is always counted).
pub(crate) const LIMIT: i64 = 200;

/// The query (pg_class of the connected database).
pub(crate) fn sql() -> String {
    format!(
        "\
SELECT coalesce(on_.nspname, n.nspname)::text AS schema, \
       coalesce(o.relname, c.relname)::text AS name, \
       c.relkind = 't' AS toast, \
       count(*) OVER ()::int8 AS total \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_class o ON c.relkind = 't' AND o.reltoastrelid = c.oid \
LEFT JOIN pg_catalog.pg_namespace on_ ON on_.oid = o.relnamespace \
WHERE c.relkind IN ('r', 'm', 't', 'p') \
  AND c.reloptions IS NOT NULL \
  AND EXISTS (SELECT 1 FROM pg_catalog.unnest(c.reloptions) AS opt \
              WHERE opt ~* '^autovacuum_enabled=(f|fa|fal|fals|false|n|no|of|off|0)$') \
ORDER BY 1, 2, 3 \
LIMIT {LIMIT}"
    )
}

/// `{tables: ["schema.table", "schema.table (TOAST)"], total: int}`.
pub(crate) fn json(rows: &[Row]) -> Result<Value, String> {
    let mut tables = Vec::with_capacity(rows.len());
    let mut total = 0i64;
    for row in rows {
        let schema: Option<String> = col(row, "schema")?;
        let name: Option<String> = col(row, "name")?;
        let toast: Option<bool> = col(row, "toast")?;
        total = col::<Option<i64>>(row, "total")?.unwrap_or(total);
        let mut t = format!(
            "{}.{}",
            schema.unwrap_or_default(),
            name.unwrap_or_default()
        );
        if toast == Some(true) {
            t.push_str(" (TOAST)");
        }
        tables.push(Value::String(t));
    }
    Ok(json!({ "tables": tables, "total": total }))
}

/// The query on one database's session.
pub(crate) async fn read_db(client: &Client) -> Result<Value, String> {
    let rows = client
        .query_typed(&sql(), &[])
        .await
        .map_err(|e| format!("query failed: {}", pg_error(&e)))?;
    json(&rows)
}

/// Record one database's outcome: `autovacuum_disabled` (list of tables, at most
/// [`LIMIT`]) and `autovacuum_disabled_total`, or null with `autovacuum_disabled_reason`.
/// A read that failed is pushed to `failed` (the section becomes partial); `skipped` is the
/// reason a database is not inspected at all (template, no connections).
pub(crate) fn record(
    data: &mut Map<String, Value>,
    db: &str,
    read: Option<Result<Value, String>>,
    skipped: Option<&str>,
    failed: &mut Vec<String>,
) {
    let (tables, total, reason) = match (read, skipped) {
        (Some(Ok(v)), _) => (v["tables"].clone(), v["total"].clone(), Value::Null),
        (Some(Err(e)), _) => {
            failed.push(format!("{db}: {e}"));
            (Value::Null, Value::Null, json!(e))
        }
        (None, Some(reason)) => (Value::Null, Value::Null, json!(reason)),
        (None, None) => {
            failed.push(format!("{db}: not read"));
            (Value::Null, Value::Null, json!("not read"))
        }
    };
    data.insert("autovacuum_disabled".into(), tables);
    data.insert("autovacuum_disabled_total".into(), total);
    data.insert("autovacuum_disabled_reason".into(), reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_limited() {
        assert!(sql().ends_with(&format!("LIMIT {LIMIT}")));
    }

    #[test]
    fn record_says_why() {
        let mut d = Map::new();
        let mut failed = Vec::new();
        record(
            &mut d,
            "app",
            None,
            Some("template database (not inspected)"),
            &mut failed,
        );
        assert!(d["autovacuum_disabled"].is_null());
        assert!(failed.is_empty());
        record(
            &mut d,
            "app",
            Some(Err("connection failed: x".into())),
            None,
            &mut failed,
        );
        assert_eq!(failed, ["app: connection failed: x"]);
        record(
            &mut d,
            "app",
            Some(Ok(json!({"tables": ["public.t"], "total": 1}))),
            None,
            &mut failed,
        );
        assert_eq!(d["autovacuum_disabled"], json!(["public.t"]));
        assert_eq!(d["autovacuum_disabled_total"], 1);
    }
}
