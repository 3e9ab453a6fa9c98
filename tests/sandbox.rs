//! The test servers themselves: every scenario cluster of `tests/common` starts, and each
//! scenario is what the rule tests rely on (a plain initdb for `default`; SCRAM, TLS only,
//! checksums, pg_stat_statements, archiving and evidence for `hardened`). Also the sandbox's
//! idempotent start and its owner-pid watchdog.

mod common;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, cluster, sandbox};
use tokio_postgres::{Client, NoTls};

/// Connects without TLS (default clusters trust loopback).
async fn connect_plain(c: &Cluster, dbname: &str) -> Result<Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(c.port())
        .user("postgres")
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10));
    if let Some(pw) = &c.password {
        cfg.password(pw);
    }
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Connects as the URI says for a hardened cluster: TLS to `localhost`, the certificate
/// checked against the cluster's own CA (rustls verifies the chain and the host name).
async fn connect_tls(
    c: &Cluster,
    dbname: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let pem = std::fs::read(c.dir.join("ca.crt")).expect("ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("localhost")
        .port(c.port())
        .user("postgres")
        .password(password)
        .dbname(dbname)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = cfg
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn one(client: &Client, sql: &str) -> String {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get(0)
}

fn assert_port_open(c: &Cluster) {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{}", c.port()).parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{}: nothing listens on {}: {e}", c.name, c.uri));
}

/// RAM as the sandbox sizes memory: MemTotal, or a lower cgroup limit.
fn host_mem_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    let mut mem = kb * 1024;
    for f in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Some(limit) = std::fs::read_to_string(f)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            mem = mem.min(limit);
        }
    }
    mem
}

#[tokio::test]
async fn default_clusters_are_a_plain_initdb() {
    for (name, major) in [("pg18-default", 18), ("pg17-default", 17)] {
        let c = cluster(name);
        assert_eq!(c.major, major);
        assert_eq!(
            c.password, None,
            "{name}: the default scenario has no password"
        );
        let port = c.port();
        assert_eq!(
            c.uri,
            format!("postgresql://postgres@127.0.0.1:{port}/postgres")
        );
        assert_port_open(c);

        let client = connect_plain(c, "postgres").await.unwrap_or_else(|e| {
            panic!("{name}: trust on loopback should let postgres in without TLS: {e}")
        });
        let version: i32 = one(&client, "SELECT current_setting('server_version_num')")
            .await
            .parse()
            .unwrap();
        assert_eq!(version / 10000, major as i32, "{name}");
        assert_eq!(one(&client, "SHOW listen_addresses").await, "127.0.0.1");
        assert_eq!(one(&client, "SHOW ssl").await, "off");
        assert_eq!(
            one(&client, "SHOW unix_socket_directories").await,
            c.dir.display().to_string()
        );
        // initdb's own default: checksums on from 18, off before.
        let checksums = if major >= 18 { "on" } else { "off" };
        assert_eq!(
            one(&client, "SHOW data_checksums").await,
            checksums,
            "{name}"
        );
        let methods = one(
            &client,
            "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules",
        )
        .await;
        assert_eq!(methods, "trust", "{name}: initdb's default hba is trust");
        assert_eq!(
            one(&client, "SHOW shared_preload_libraries").await,
            "",
            "{name}"
        );
        assert!(c.evidence_file().is_none());
    }
}

#[tokio::test]
async fn hardened_clusters_are_hardened() {
    for (name, major) in [("pg18-hardened", 18), ("pg17-hardened", 17)] {
        let c = cluster(name);
        assert_eq!(c.major, major);
        let port = c.port();
        let ca = c.dir.join("ca.crt");
        assert!(ca.is_file(), "{name}: no {}", ca.display());
        assert_eq!(
            c.uri,
            format!(
                "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
                ca.display()
            )
        );
        let password = c.password.as_deref().expect("hardened has a password");
        assert!(password.len() >= 32, "{name}: a weak password");
        assert_port_open(c);

        // Neither a non-TLS session nor a wrong password gets in.
        let err = connect_plain(c, "postgres")
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: a session without TLS was let in"));
        let msg = err.as_db_error().map(|d| d.message().to_string());
        assert!(
            msg.as_deref()
                .is_some_and(|m| m.contains("no pg_hba.conf entry")),
            "{name}: unexpected error without TLS: {err:?}"
        );
        assert!(
            connect_tls(c, "postgres", "not-the-password")
                .await
                .is_err(),
            "{name}: a wrong password was accepted"
        );

        let client = connect_tls(c, "postgres", password)
            .await
            .unwrap_or_else(|e| panic!("{name}: TLS + SCRAM connection failed: {e}"));
        let version: i32 = one(&client, "SELECT current_setting('server_version_num')")
            .await
            .parse()
            .unwrap();
        assert_eq!(version / 10000, major as i32, "{name}");
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "{name}: our own session is not TLS");
        for (setting, want) in [
            ("ssl", "on"),
            ("ssl_min_protocol_version", "TLSv1.2"),
            ("password_encryption", "scram-sha-256"),
            ("data_checksums", "on"),
            ("shared_preload_libraries", "pg_stat_statements"),
            ("listen_addresses", "127.0.0.1"),
            ("archive_mode", "on"),
            ("logging_collector", "on"),
            ("log_destination", "jsonlog"),
            ("log_disconnections", "on"),
            ("log_statement", "ddl"),
            ("log_lock_waits", "on"),
            ("log_checkpoints", "on"),
            ("log_temp_files", "0"),
            ("log_min_duration_statement", "1s"),
            ("idle_in_transaction_session_timeout", "10min"),
            ("maintenance_work_mem", "256MB"),
            ("work_mem", "16MB"),
            ("max_wal_size", "4GB"),
            ("checkpoint_completion_target", "0.9"),
            ("max_connections", "100"),
        ] {
            assert_eq!(
                one(&client, &format!("SHOW {setting}")).await,
                want,
                "{name}: {setting}"
            );
        }
        let connections = if major >= 18 {
            "receipt,authentication,authorization"
        } else {
            "on"
        };
        assert_eq!(one(&client, "SHOW log_connections").await, connections);
        if major >= 18 {
            assert_eq!(one(&client, "SHOW io_method").await, "worker");
        }

        // shared_buffers = 25% and effective_cache_size = 75% of the host's RAM.
        let bytes = |setting: &'static str| {
            let client = &client;
            async move {
                let sql = format!(
                    "SELECT (setting::bigint * CASE WHEN unit ~ '^[0-9]' THEN pg_size_bytes(unit) \
                     ELSE pg_size_bytes('1' || unit) END)::text FROM pg_settings WHERE name = '{setting}'"
                );
                one(client, &sql).await.parse::<u64>().unwrap()
            }
        };
        let mem = host_mem_bytes();
        let sb = bytes("shared_buffers").await;
        let ecs = bytes("effective_cache_size").await;
        let mib = 1024 * 1024;
        assert!(
            sb <= mem / 4 && sb + 2 * mib >= mem / 4,
            "{name}: shared_buffers {sb} of {mem}"
        );
        assert!(
            ecs <= mem / 4 * 3 && ecs + 4 * mib >= mem / 4 * 3,
            "{name}: effective_cache_size {ecs} of {mem}"
        );

        // The hba holds only SCRAM: local, and hostssl on loopback.
        let hba: Vec<(String, String, String)> = client
            .query(
                "SELECT type, coalesce(address, ''), auth_method FROM pg_hba_file_rules ORDER BY line_number",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let want: Vec<(String, String, String)> =
            [("local", ""), ("hostssl", "127.0.0.1"), ("hostssl", "::1")]
                .iter()
                .map(|(t, a)| (t.to_string(), a.to_string(), "scram-sha-256".to_string()))
                .collect();
        assert_eq!(hba, want, "{name}: pg_hba.conf");
        let kind = one(
            &client,
            "SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'postgres'",
        )
        .await;
        assert_eq!(
            kind, "SCRAM-SHA-256",
            "{name}: postgres's password is not SCRAM"
        );

        // pg_stat_statements in every database that takes connections, app included.
        let dbs: Vec<String> = client
            .query(
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(dbs, ["app", "postgres"], "{name}: databases");
        for db in &dbs {
            let other = connect_tls(c, db, password).await.unwrap();
            let n: i64 = other
                .query_one(
                    "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1, "{name}: no pg_stat_statements in {db}");
        }

        // WAL archiving works: at least one segment archived, and it is in archive/.
        let archived: i64 = client
            .query_one("SELECT archived_count FROM pg_stat_archiver", &[])
            .await
            .unwrap()
            .get(0);
        assert!(archived > 0, "{name}: nothing archived");
        let archive = std::fs::read_dir(c.dir.join("archive"))
            .unwrap_or_else(|e| panic!("{name}: archive/: {e}"))
            .count();
        assert!(archive > 0, "{name}: archive/ is empty");

        check_evidence(c);
    }
}

/// The evidence file parses and every entry is a recent pass.
fn check_evidence(c: &Cluster) {
    let file = c
        .evidence_file()
        .unwrap_or_else(|| panic!("{}: no pgready.toml", c.name));
    let text = std::fs::read_to_string(&file).unwrap();
    let doc: toml::Table =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let entries = doc["evidence"].as_array().expect("[[evidence]]");
    let today = time::OffsetDateTime::now_utc().date();
    let mut items = Vec::new();
    for e in entries {
        let item = e["item"].as_str().unwrap().to_string();
        let date = e["date"].as_datetime().expect("a TOML date").to_string();
        let date = time::Date::parse(
            &date,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .unwrap_or_else(|err| panic!("{item}: date {date}: {err}"));
        let age = (today - date).whole_days();
        assert!((0..=7).contains(&age), "{item}: dated {age} days ago");
        assert_eq!(e["result"].as_str(), Some("pass"), "{item}");
        assert!(!e["by"].as_str().unwrap().is_empty(), "{item}");
        assert!(!e["summary"].as_str().unwrap().is_empty(), "{item}");
        items.push(item);
    }
    items.sort();
    let mut want = [
        "B1", "B3", "B4", "B5", "B6", "B7", "B8", "C10", "D1", "D2", "D3", "D4", "D5", "D6", "G6",
        "M2", "M3", "M4", "M5", "M6", "M7",
    ];
    want.sort();
    assert_eq!(items, want, "{}: evidence items", c.name);
    let metric = |item: &str, key: &str| {
        entries
            .iter()
            .find(|e| e["item"].as_str() == Some(item))
            .and_then(|e| e.get("metrics"))
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_else(|| panic!("{item}: no metric {key}"))
    };
    assert_eq!(metric("D6", "trained").as_integer(), Some(4));
    assert_eq!(metric("D6", "team_size").as_integer(), Some(4));
    assert_eq!(metric("G6", "load_ratio").as_float(), Some(1.6));
    assert_eq!(metric("B3", "rto_min").as_integer(), Some(41));
}

#[test]
fn start_is_idempotent() {
    let c = cluster("pg18-default");
    let t = Instant::now();
    let again = sandbox(&["start", "pg18-default", "--major", "18"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), c.uri);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a second start is not quick"
    );
    let uri = sandbox(&["uri", "pg18-default"]);
    assert!(uri.status.success());
    assert_eq!(String::from_utf8_lossy(&uri.stdout).trim(), c.uri);
    assert_port_open(c);
}

#[test]
fn watchdog_stops_the_server_when_its_last_owner_exits() {
    let name = "harness-watchdog";
    let spawn_owner = || {
        std::process::Command::new("sleep")
            .arg("120")
            .spawn()
            .expect("spawn sleep")
    };
    let (mut first, mut second) = (spawn_owner(), spawn_owner());
    let start = |owner: &std::process::Child| {
        sandbox(&[
            "start",
            name,
            "--major",
            "18",
            "--owner-pid",
            &owner.id().to_string(),
        ])
    };
    let (out1, out2) = (start(&first), start(&second));
    for out in [&out1, &out2] {
        if !out.status.success() {
            let _ = (first.kill(), second.kill());
            panic!(
                "pg-sandbox start {name} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let uri = String::from_utf8_lossy(&out1.stdout).trim().to_string();
    assert_eq!(
        String::from_utf8_lossy(&out2.stdout).trim(),
        uri,
        "a second owner gets the same server"
    );
    let port: u16 = uri
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {uri}"));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let listening = || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
    assert!(listening(), "{uri} does not listen");

    // One owner gone: the other still uses the server.
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    if !listening() {
        let _ = second.kill();
        panic!("{name} was stopped while an owner still runs");
    }

    // The last owner gone: the watchdog stops the server.
    second.kill().unwrap();
    second.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while listening() {
        if Instant::now() > deadline {
            let _ = sandbox(&["stop", name]);
            panic!("{name} still runs 15 s after its last owner exited");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = sandbox(&["uri", name]);
    assert!(!status.status.success(), "{name} still reported as running");
}
