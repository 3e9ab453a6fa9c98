//! The `pooling` section (C9): the connection load the server sees, and the pooler in
//! front of it — read from PgBouncer's admin console (`--pgbouncer URI`, database
//! `pgbouncer`: `SHOW VERSION`, `SHOW CONFIG`, `SHOW DATABASES`, `SHOW POOLS`, all
//! read-only, over the simple query protocol the console speaks) or, for a server on this
//! machine, from a running `pgbouncer` process and its configuration file.
//!
//! # Verified
//! - `pg_stat_database.sessions` (sessions established since the last reset) appeared in
//!   PostgreSQL 14 (commit 960869da, "Add pg_stat_database counters for sessions and
//!   session time"); live on 14.23, 16.14, 17.10, 18.4. `numbackends` counts backends connected to each
//!   database (pgready's own session included).
//! - PgBouncer admin console: Debian 12's pgbouncer 1.18 and the docs (usage.html): `SHOW
//!   CONFIG` columns key, value, default, changeable; `SHOW DATABASES` name, host, port,
//!   database, force_user, pool_size, min_pool_size, reserve_pool, pool_mode,
//!   max_connections, current_connections, paused, disabled; `SHOW POOLS` database, user,
//!   cl_active, cl_waiting, sv_active, sv_idle, sv_used, …, pool_mode. The console refuses
//!   the extended query protocol, and `SET` there changes PgBouncer's configuration: pgready
//!   sends only the four SHOW commands above, never the session setup of its PostgreSQL
//!   sessions.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::cli::SourceArgs;
use crate::config::Config;
use crate::facts::Section;

/// Bound on connecting to the admin console and running the SHOW commands.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin console to read, parsed.
#[derive(Clone)]
pub struct Console {
    config: tokio_postgres::Config,
    /// The URI without its password.
    pub display: String,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// `--pgbouncer URI` (or `[pgbouncer] uri`), parsed; errors are input errors.
pub fn console(sources: &SourceArgs, config: &Config) -> Result<Option<Console>, String> {
    let (text, what) = match (&sources.pgbouncer, &config.pgbouncer.uri) {
        (Some(u), _) => (u.as_str(), "--pgbouncer"),
        (None, Some(u)) => (u.as_str(), "[pgbouncer] uri"),
        (None, None) => return Ok(None),
    };
    let mut cfg = tokio_postgres::Config::from_str(text).map_err(|e| {
        format!(
            "{what}: not a connection string ({e}); e.g. postgresql://pgbouncer_admin@127.0.0.1:6432/pgbouncer"
        )
    })?;
    if cfg.get_dbname() != Some("pgbouncer") {
        return Err(format!(
            "{what}: the database must be `pgbouncer` (PgBouncer's admin console), e.g. postgresql://admin@127.0.0.1:6432/pgbouncer"
        ));
    }
    if cfg.get_hosts().is_empty() {
        cfg.host("localhost");
    }
    if cfg.get_ports().is_empty() {
        cfg.port(6432);
    }
    if cfg.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_default();
        cfg.user(&user);
    }
    if cfg.get_password().is_none()
        && let Ok(pw) = std::env::var("PGPASSWORD")
    {
        cfg.password(pw);
    }
    match cfg.get_ssl_mode() {
        tokio_postgres::config::SslMode::Require => {
            return Err(format!(
                "{what}: sslmode=require is not supported for the admin console yet; use it over a loopback or Unix-socket address"
            ));
        }
        _ => {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
    }
    cfg.application_name("pgready");
    cfg.connect_timeout(ADMIN_TIMEOUT);
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(6432);
    let display = format!(
        "postgresql://{}@{}:{port}/pgbouncer",
        cfg.get_user().unwrap_or(""),
        host
    );
    Ok(Some(Console {
        config: cfg,
        display,
    }))
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<BTreeMap<String, Option<String>>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn int(row: &BTreeMap<String, Option<String>>, key: &str) -> Value {
    row.get(key)
        .cloned()
        .flatten()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(Value::Null, |n| json!(n))
}

fn text(row: &BTreeMap<String, Option<String>>, key: &str) -> Value {
    row.get(key)
        .cloned()
        .flatten()
        .map_or(Value::Null, Value::String)
}

async fn read_console(c: &Console) -> Result<Value, String> {
    let (client, connection) = c
        .config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            let detail = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string());
            format!(
                "cannot connect to the PgBouncer admin console {}: {detail} (the user must be in admin_users or stats_users)",
                c.display
            )
        })?;
    let task = tokio::spawn(connection);
    let run = |q: &'static str| {
        let client = &client;
        async move {
            client
                .simple_query(q)
                .await
                .map(rows)
                .map_err(|e| format!("{q} on {} failed: {e}", c.display))
        }
    };
    let version = run("SHOW VERSION").await?;
    let config = run("SHOW CONFIG").await?;
    let databases = run("SHOW DATABASES").await?;
    let pools = run("SHOW POOLS").await?;
    drop(client);
    task.abort();
    let setting: BTreeMap<String, String> = config
        .iter()
        .filter_map(|r| Some((r.get("key")?.clone()?, r.get("value")?.clone()?)))
        .collect();
    let conf_int = |k: &str| {
        setting
            .get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(Value::Null, |n| json!(n))
    };
    let dbs: Vec<Value> = databases
        .iter()
        .filter(|r| r.get("name").cloned().flatten().as_deref() != Some("pgbouncer"))
        .map(|r| {
            json!({
                "name": text(r, "name"),
                "pool_size": int(r, "pool_size"),
                "reserve_pool": int(r, "reserve_pool"),
                "pool_mode": text(r, "pool_mode"),
                "max_connections": int(r, "max_connections"),
                "current_connections": int(r, "current_connections"),
            })
        })
        .collect();
    let pools: Vec<Value> = pools
        .iter()
        .filter(|r| r.get("database").cloned().flatten().as_deref() != Some("pgbouncer"))
        .map(|r| {
            json!({
                "database": text(r, "database"),
                "user": text(r, "user"),
                "cl_active": int(r, "cl_active"),
                "cl_waiting": int(r, "cl_waiting"),
                "sv_active": int(r, "sv_active"),
                "sv_idle": int(r, "sv_idle"),
                "pool_mode": text(r, "pool_mode"),
            })
        })
        .collect();
    let version = version
        .first()
        .and_then(|r| r.values().next().cloned().flatten());
    let mut p = json!({
        "kind": "pgbouncer",
        "source": "admin console",
        "address": c.display,
        "version": version,
        "pool_mode": setting.get("pool_mode"),
        "max_client_conn": conf_int("max_client_conn"),
        "default_pool_size": conf_int("default_pool_size"),
        "reserve_pool_size": conf_int("reserve_pool_size"),
        "max_db_connections": conf_int("max_db_connections"),
        "max_user_connections": conf_int("max_user_connections"),
        "databases": dbs,
        "pools": pools,
    });
    server_connections(&mut p);
    Ok(p)
}

/// The most server connections PgBouncer may open with the databases and pools it has:
/// Σ over databases of min(pools × (pool_size + reserve_pool), max_connections when set).
fn server_connections(p: &mut Value) {
    let pools = p["pools"].as_array().cloned().unwrap_or_default();
    let reserve_default = p["reserve_pool_size"].as_i64().unwrap_or(0);
    let pool_default = p["default_pool_size"].as_i64();
    let mut total = 0i64;
    let mut known = true;
    for d in p["databases"].as_array().into_iter().flatten() {
        let name = d["name"].as_str().unwrap_or("");
        let users = pools
            .iter()
            .filter(|x| x["database"].as_str() == Some(name))
            .count()
            .max(1) as i64;
        let Some(size) = d["pool_size"].as_i64().or(pool_default) else {
            known = false;
            continue;
        };
        let reserve = d["reserve_pool"].as_i64().unwrap_or(reserve_default);
        let mut cap = users * (size + reserve);
        if let Some(m) = d["max_connections"].as_i64().filter(|m| *m > 0) {
            cap = cap.min(m);
        }
        total += cap;
    }
    p["max_server_connections"] =
        if known && p["databases"].as_array().is_some_and(|d| !d.is_empty()) {
            json!(total)
        } else {
            Value::Null
        };
}

/// The running `pgbouncer` processes of this machine, and the first whose configuration
/// file sends a database to `server_port` (the audited server) as the pooler, with what
/// that file says. A pgbouncer whose file cannot be read, or that fronts other servers, is
/// listed but not taken for this server's pooler. Connection strings are never kept (they
/// may hold passwords); only their port is compared.
fn from_processes(server_port: u16) -> (Vec<Value>, Option<Value>) {
    let mut seen = Vec::new();
    let mut pooler = None;
    for (pid, name, args) in super::monitoring::local_processes() {
        if name != "pgbouncer" {
            continue;
        }
        let ini = args.iter().skip(1).rfind(|a| !a.starts_with('-')).cloned();
        let parsed = ini
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| parse_ini(&t));
        let fronts = parsed
            .as_ref()
            .map(|(_, dbs)| dbs.iter().any(|d| d.4 == server_port));
        seen.push(json!({"pid": pid, "config": ini, "fronts_this_server": fronts}));
        if pooler.is_some() || fronts != Some(true) {
            continue;
        }
        let mut p = json!({
            "kind": "pgbouncer",
            "source": "process",
            "address": null,
            "version": null,
            "pool_mode": "session",
            "max_client_conn": 100,
            "default_pool_size": 20,
            "reserve_pool_size": 0,
            "max_db_connections": 0,
            "max_user_connections": 0,
            "databases": [],
            "pools": [],
        });
        if let Some((settings, dbs)) = parsed {
            for (k, v) in &settings {
                match k.as_str() {
                    "pool_mode" => p["pool_mode"] = json!(v),
                    "listen_port" => p["address"] = json!(format!("port {v}")),
                    "max_client_conn"
                    | "default_pool_size"
                    | "reserve_pool_size"
                    | "max_db_connections"
                    | "max_user_connections" => {
                        if let Ok(n) = v.parse::<i64>() {
                            p[k.as_str()] = json!(n);
                        }
                    }
                    _ => {}
                }
            }
            p["databases"] = json!(
                dbs.iter()
                    .filter(|d| d.4 == server_port)
                    .map(|(name, pool_size, mode, maxc, _)| json!({
                        "name": name, "pool_size": pool_size, "reserve_pool": null,
                        "pool_mode": mode, "max_connections": maxc, "current_connections": null,
                    }))
                    .collect::<Vec<_>>()
            );
        }
        server_connections(&mut p);
        pooler = Some(p);
    }
    (seen, pooler)
}

type IniDb = (String, Option<i64>, Option<String>, Option<i64>, u16);

/// `[pgbouncer]` settings and `[databases]` entries (name, pool_size, pool_mode,
/// max_db_connections) of a pgbouncer.ini.
fn parse_ini(text: &str) -> (BTreeMap<String, String>, Vec<IniDb>) {
    let mut section = String::new();
    let mut settings = BTreeMap::new();
    let mut dbs = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].trim().to_ascii_lowercase();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        match section.as_str() {
            "pgbouncer" => {
                settings.insert(k, v);
            }
            "databases" => {
                let field = |key: &str| {
                    v.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                        .map(str::to_string)
                };
                dbs.push((
                    k,
                    field("pool_size").and_then(|s| s.parse().ok()),
                    field("pool_mode"),
                    field("max_db_connections").and_then(|s| s.parse().ok()),
                    field("port").and_then(|s| s.parse().ok()).unwrap_or(5432),
                ));
            }
            _ => {}
        }
    }
    (settings, dbs)
}

/// The `pooling` section.
/// `local_port`: the server's port when it runs on this machine (its processes are then
/// inspected for a pgbouncer whose configuration points at that port).
pub async fn collect(
    client: &Client,
    console: Option<&Console>,
    local_port: Option<u16>,
) -> Section {
    let local = local_port.is_some();
    let load = client
        .query_one(
            "SELECT coalesce(sum(numbackends), 0)::bigint, \
                    coalesce(sum(sessions), 0)::bigint, \
                    coalesce(sum(sessions / greatest(extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time())), 1)), 0)::float8, \
                    coalesce(min(extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time()))), 0)::bigint, \
                    coalesce(bool_and(stats_reset IS NOT NULL), false) \
             FROM pg_stat_database WHERE datname IS NOT NULL",
            &[],
        )
        .await;
    let mut problems = Vec::new();
    let (backends, sessions, rate, window, exact) = match load {
        Ok(r) => (
            json!(r.try_get::<_, i64>(0).ok()),
            json!(r.try_get::<_, i64>(1).ok()),
            json!(
                r.try_get::<_, f64>(2)
                    .ok()
                    .map(|x| (x * 1000.0).round() / 1000.0)
            ),
            json!(r.try_get::<_, i64>(3).ok()),
            json!(r.try_get::<_, bool>(4).ok()),
        ),
        Err(e) => {
            problems.push(format!("reading pg_stat_database failed: {e}"));
            (
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            )
        }
    };
    let mut admin_error = Value::Null;
    let (processes, mut pooler) = if let Some(port) = local_port {
        from_processes(port)
    } else {
        (Vec::new(), None)
    };
    if let Some(c) = console {
        match tokio::time::timeout(ADMIN_TIMEOUT, read_console(c)).await {
            Ok(Ok(p)) => pooler = Some(p),
            Ok(Err(e)) => {
                problems.push(e.clone());
                admin_error = json!(e);
            }
            Err(_) => {
                let e = format!(
                    "the PgBouncer admin console {} did not answer within {} s",
                    c.display,
                    ADMIN_TIMEOUT.as_secs()
                );
                problems.push(e.clone());
                admin_error = json!(e);
            }
        }
    }
    let data = json!({
        "backends": backends,
        "sessions": sessions,
        "sessions_per_s": rate,
        "window_s": window,
        "window_exact": exact,
        "host_inspected": local,
        "console_given": console.is_some(),
        "admin_error": admin_error,
        "processes": processes,
        "pooler": pooler,
    });
    if problems.is_empty() {
        Section::ok(data)
    } else {
        Section::partial(data, problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_settings_and_databases() {
        let (s, d) = parse_ini(
            "[databases]\napp = host=127.0.0.1 port=5432 dbname=app pool_size=30 password=x\n\
             * = host=127.0.0.1\n\n[pgbouncer]\npool_mode = transaction\n; x = 1\nmax_client_conn=500\n",
        );
        assert_eq!(s.get("pool_mode").map(String::as_str), Some("transaction"));
        assert_eq!(s.get("max_client_conn").map(String::as_str), Some("500"));
        assert_eq!(d[0], ("app".to_string(), Some(30), None, None, 5432));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn server_connection_bound() {
        let mut p = json!({
            "default_pool_size": 20, "reserve_pool_size": 5,
            "databases": [
                {"name": "app", "pool_size": 20, "reserve_pool": 5, "max_connections": 0},
                {"name": "rep", "pool_size": 10, "reserve_pool": 0, "max_connections": 15},
            ],
            "pools": [
                {"database": "app", "user": "a"}, {"database": "app", "user": "b"},
                {"database": "rep", "user": "a"}, {"database": "rep", "user": "b"},
            ],
        });
        server_connections(&mut p);
        assert_eq!(p["max_server_connections"], 2 * 25 + 15);
    }
}
