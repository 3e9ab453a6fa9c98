//! The `queries` section: the rows of the rules' own SQL (`[rule.query]`).
//!
//! Each query was checked at load time to be one SELECT/WITH/VALUES/TABLE
//! ([`crate::rules::check_query_sql`]). It runs as a subquery whose rows come back as JSON
//! text, `SELECT pg_catalog.to_jsonb(q)::text FROM (<sql>) AS q` (to_jsonb of a row gives
//! an object keyed by column name, with numbers, booleans, nulls, arrays and nested JSON
//! as JSON; other types as their text form), on the audit's own read-only session with its
//! statement timeout, after every built-in query, each in a READ ONLY transaction that is
//! rolled back. `each_database` queries run once in
//! every database the audit role may connect to, one session at a time; each row gains a
//! `database` key. At most [`MAX_ROWS`] rows per query and database are kept.

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::{DbConnector, pg_error};
use crate::facts::Section;

/// A rule's query, as the collector needs it.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub rule_id: String,
    pub sql: String,
    pub each_database: bool,
}

/// Rows kept per query (and per database): beyond, the rest is cut and said so.
pub const MAX_ROWS: usize = 10_000;

fn wrapped(sql: &str) -> String {
    // The newlines keep a trailing `-- comment` of the user's SQL from eating the `)`.
    format!(
        "SELECT pg_catalog.to_jsonb(q)::text FROM (\n{sql}\n) AS q LIMIT {}",
        MAX_ROWS + 1
    )
}

/// The rows of one query on one session, and whether some were cut off.
///
/// The query runs in its own READ ONLY transaction, always rolled back: even a query that
/// calls `set_config('default_transaction_read_only', 'off', false)` leaves the session as
/// it found it, so no later query of the audit can write.
async fn run(client: &Client, sql: &str) -> Result<(Vec<Value>, bool), String> {
    client
        .batch_execute("BEGIN TRANSACTION READ ONLY")
        .await
        .map_err(|e| pg_error(&e))?;
    let result = client.query_typed(&wrapped(sql), &[]).await;
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(|e| pg_error(&e))?;
    let rows = result.map_err(|e| pg_error(&e))?;
    let truncated = rows.len() > MAX_ROWS;
    let mut out = Vec::with_capacity(rows.len().min(MAX_ROWS));
    for row in rows.iter().take(MAX_ROWS) {
        let text: Option<String> = row.try_get(0).map_err(|e| e.to_string())?;
        out.push(match text {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| format!("a row did not come back as JSON: {e}"))?,
            None => Value::Null,
        });
    }
    Ok((out, truncated))
}

#[derive(Default)]
struct Entry {
    rows: Vec<Value>,
    errors: Vec<String>,
}

impl Entry {
    fn add(&mut self, got: Result<(Vec<Value>, bool), String>, database: Option<&str>) {
        let at = database.map_or(String::new(), |d| format!("database {d}: "));
        match got {
            Ok((rows, truncated)) => {
                if truncated {
                    self.errors.push(format!(
                        "{at}more than {MAX_ROWS} rows: only the first {MAX_ROWS} were kept"
                    ));
                }
                self.rows.extend(rows.into_iter().map(|mut r| {
                    if let (Some(d), Some(o)) = (database, r.as_object_mut()) {
                        o.insert("database".to_string(), Value::from(d));
                    }
                    r
                }));
            }
            Err(e) => self.errors.push(format!("{at}{e}")),
        }
    }
}

/// Run `queries` and build the section: `{rule_id: {sql, scope, rows, errors}}`.
pub(crate) async fn collect<C: DbConnector>(
    client: &Client,
    connector: &C,
    queries: &[UserQuery],
) -> Section {
    let mut entries: Vec<(&UserQuery, Entry)> =
        queries.iter().map(|q| (q, Entry::default())).collect();
    for (q, entry) in entries.iter_mut().filter(|(q, _)| !q.each_database) {
        entry.add(run(client, &q.sql).await, None);
    }
    if entries.iter().any(|(q, _)| q.each_database) {
        let listed = client
            .query_typed(
                "SELECT datname::text, datname = current_database() AS current \
                 FROM pg_catalog.pg_database \
                 WHERE datallowconn AND NOT datistemplate \
                   AND pg_catalog.has_database_privilege(datname, 'CONNECT') \
                 ORDER BY datname",
                &[],
            )
            .await
            .map_err(|e| pg_error(&e));
        match listed {
            Ok(rows) => {
                for row in rows {
                    let (Ok(name), Ok(current)) =
                        (row.try_get::<_, String>(0), row.try_get::<_, bool>(1))
                    else {
                        continue;
                    };
                    let other = if current {
                        None
                    } else {
                        match connector.connect_db(&name).await {
                            Ok(c) => Some(c),
                            Err(e) => {
                                for (_, entry) in
                                    entries.iter_mut().filter(|(q, _)| q.each_database)
                                {
                                    entry
                                        .errors
                                        .push(format!("database {name}: cannot connect: {e}"));
                                }
                                continue;
                            }
                        }
                    };
                    let session = other.as_ref().unwrap_or(client);
                    for (q, entry) in entries.iter_mut().filter(|(q, _)| q.each_database) {
                        entry.add(run(session, &q.sql).await, Some(&name));
                    }
                }
            }
            Err(e) => {
                for (_, entry) in entries.iter_mut().filter(|(q, _)| q.each_database) {
                    entry
                        .errors
                        .push(format!("listing the databases failed: {e}"));
                }
            }
        }
    }
    let mut out = Map::new();
    for (q, entry) in entries {
        out.insert(
            q.rule_id.clone(),
            json!({
                "sql": q.sql,
                "scope": if q.each_database { "each_database" } else { "cluster" },
                "rows": entry.rows,
                "errors": entry.errors,
            }),
        );
    }
    Section::ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_wrapped_as_one_subquery() {
        let w = wrapped("SELECT 1 AS one -- a comment");
        assert!(w.starts_with("SELECT pg_catalog.to_jsonb(q)::text FROM (\nSELECT 1 AS one -- a comment\n) AS q LIMIT "));
    }

    #[test]
    fn rows_of_each_database_name_it_and_cut_rows_are_said() {
        let mut e = Entry::default();
        e.add(Ok((vec![json!({"n": 1})], true)), Some("crm"));
        e.add(Err("ERROR: boom (SQLSTATE XX000)".to_string()), Some("app"));
        assert_eq!(e.rows, vec![json!({"n": 1, "database": "crm"})]);
        assert_eq!(
            e.errors,
            vec![
                format!(
                    "database crm: more than {MAX_ROWS} rows: only the first {MAX_ROWS} were kept"
                ),
                "database app: ERROR: boom (SQLSTATE XX000)".to_string(),
            ]
        );
    }
}
