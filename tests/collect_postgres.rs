//! The PostgreSQL collector against real servers (`scripts/pg-sandbox`): every section it
//! owns is present and typed as `docs/facts.md` says, as superuser on 18 and 17, over TLS
//! with SCRAM (hardened), and as a least-privilege role (pg_monitor + pg_read_all_settings).

mod common;

use pgready::collect::postgres;
use pgready::facts::{Facts, TargetInfo};
use pgready::target::{SessionOptions, Target, connect};
use serde_json::Value;

/// Collect the PostgreSQL sections of `uri`, authenticating with `password` if given.
async fn collect(uri: &str, password: Option<&str>) -> Facts {
    let password = password.map(str::to_string);
    let env = move |name: &str| match name {
        "PGPASSWORD" => password.clone(),
        _ => None,
    };
    let target = Target::resolve_with(Some(uri), &env, None)
        .unwrap_or_else(|e| panic!("cannot resolve {uri}: {e}"));
    let opts = SessionOptions::default();
    let client = connect(&target, &opts)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {uri}: {e}"));
    let mut facts = Facts::new(0, TargetInfo::default());
    postgres::collect(&client, &target, &opts, &mut facts)
        .await
        .unwrap_or_else(|e| panic!("collect failed on {uri}: {e}"));
    facts
}

fn data<'a>(facts: &'a Facts, name: &str) -> &'a Value {
    let s = facts
        .section(name)
        .unwrap_or_else(|| panic!("section {name} missing"));
    assert!(s.collected, "{name} not collected: {:?}", s.reason);
    &s.data
}

fn assert_full(facts: &Facts, name: &str) {
    let s = facts.section(name).unwrap();
    assert!(
        s.collected && !s.partial,
        "{name} should be complete: {:?}",
        s.reason
    );
}

fn int_or_null(v: &Value) -> bool {
    v.is_i64() || v.is_null()
}

/// Checks every superuser can make, whatever the server's configuration.
fn check_superuser_facts(facts: &Facts, major: i64) {
    for name in [
        "server",
        "settings",
        "settings_meta",
        "file_settings",
        "hba",
        "roles",
        "passwords",
        "databases",
        "stats",
        "replication",
        "ssl",
    ] {
        assert_full(facts, name);
    }

    let server = data(facts, "server");
    assert_eq!(server["major"], major);
    assert_eq!(server["version_num"].as_i64().unwrap() / 10000, major);
    assert!(server["minor"].is_i64());
    assert!(server["uptime_s"].as_i64().unwrap() >= 0);
    assert_eq!(server["in_recovery"], false);
    assert_eq!(server["is_superuser"], true);
    assert_eq!(server["current_user"], "postgres");
    assert!(server["data_directory"].is_string());
    let sysid = server["system_identifier"].as_str().unwrap();
    assert!(sysid.parse::<u64>().is_ok(), "system_identifier {sysid}");
    let roles = server["predefined_roles"].as_array().unwrap();
    assert!(roles.iter().any(|r| r == "pg_monitor"));
    assert!(server["session_ssl"].is_boolean());

    // settings: typed and normalised
    let settings = data(facts, "settings");
    let shared_buffers = settings["shared_buffers"].as_i64().unwrap();
    assert_eq!(shared_buffers % 8192, 0, "bytes, not 8kB blocks");
    assert!(shared_buffers >= 1 << 20);
    assert!(
        settings["checkpoint_timeout"].as_i64().unwrap() >= 30_000,
        "ms"
    );
    assert!(
        settings["max_wal_size"].as_i64().unwrap() >= 2 << 20,
        "bytes"
    );
    assert!(settings["autovacuum_vacuum_cost_delay"].is_f64());
    assert!(settings["checkpoint_completion_target"].is_f64());
    assert!(settings["max_connections"].is_i64());
    assert!(settings["fsync"].is_boolean());
    assert!(settings["wal_level"].is_string());
    assert!(settings["shared_preload_libraries"].is_string());
    // negative sentinels are kept as they are, whatever the unit
    let metas = data(facts, "settings_meta").as_object().unwrap();
    let mut negatives = 0;
    for (name, meta) in metas {
        if meta["vartype"] == "integer" {
            let raw: i64 = meta["raw"].as_str().unwrap().parse().unwrap();
            if raw < 0 {
                assert_eq!(settings[name], raw, "{name}");
                negatives += 1;
            }
        }
    }
    assert!(negatives > 0, "some integer setting is -1 on every server");
    assert_eq!(metas["wal_buffers"]["boot_val"], -1);
    if major >= 18 {
        assert!(settings["log_connections"].is_string());
    } else {
        assert!(settings["log_connections"].is_boolean());
    }
    let meta = &data(facts, "settings_meta")["shared_buffers"];
    assert_eq!(meta["unit"], "8kB");
    assert_eq!(meta["vartype"], "integer");
    assert!(meta["raw"].is_string());
    assert!(meta["boot_val"].is_i64() && meta["reset_val"].is_i64());
    assert!(meta["pending_restart"].is_boolean());
    let wal_level = &data(facts, "settings_meta")["wal_level"];
    assert!(wal_level["enumvals"].as_array().unwrap().len() >= 3);

    // hba: rules with the loopback entries every sandbox has
    let hba = data(facts, "hba").as_array().unwrap();
    assert!(!hba.is_empty());
    for rule in hba {
        assert!(rule["line_number"].is_i64());
        assert!(rule["file_name"].as_str().unwrap().ends_with("pg_hba.conf"));
        assert!(rule["database"].is_array() && rule["user_name"].is_array());
        assert!(rule["options"].is_array());
        assert!(int_or_null(&rule["prefix_len"]));
        if major >= 16 && rule["error"].is_null() {
            assert!(rule["rule_number"].is_i64());
        }
    }
    assert!(
        hba.iter()
            .any(|r| r["address"] == "127.0.0.1" && r["prefix_len"] == 32),
        "127.0.0.1/32 expected in {hba:?}"
    );
    assert!(
        hba.iter()
            .any(|r| r["type"] == "local" && r["prefix_len"].is_null())
    );

    // roles and passwords
    let roles = data(facts, "roles").as_array().unwrap();
    let postgres = roles.iter().find(|r| r["name"] == "postgres").unwrap();
    assert_eq!(postgres["superuser"], true);
    assert_eq!(postgres["oid"], 10);
    assert!(postgres["member_of"].is_array());
    assert!(int_or_null(&postgres["valid_until"]));
    assert!(postgres["connection_limit"].is_i64());
    let passwords = data(facts, "passwords").as_object().unwrap();
    assert!(passwords.values().all(|k| {
        ["scram-sha-256", "md5", "plain", "none"].contains(&k.as_str().unwrap_or(""))
    }));
    assert!(passwords.contains_key("postgres"));

    // databases
    let dbs = data(facts, "databases").as_array().unwrap();
    let db = |name: &str| dbs.iter().find(|d| d["name"] == name).unwrap();
    let pg = db("postgres");
    assert!(pg["size_bytes"].as_i64().unwrap() > 0);
    assert!(pg["xid_age"].is_i64() && pg["mxid_age"].is_i64());
    assert_eq!(pg["encoding"], "UTF8");
    let exts = pg["extensions"].as_array().unwrap();
    assert!(
        exts.iter()
            .any(|e| e["name"] == "plpgsql" && e["schema"] == "pg_catalog")
    );
    assert!(pg["extensions_reason"].is_null());
    let stats = &pg["stats"];
    for key in [
        "numbackends",
        "xact_commit",
        "xact_rollback",
        "deadlocks",
        "temp_files",
        "temp_bytes",
        "conflicts",
        "blks_read",
        "blks_hit",
    ] {
        assert!(stats[key].is_i64(), "databases[postgres].stats.{key}");
    }
    assert!(int_or_null(&stats["checksum_failures"]));
    assert!(int_or_null(&stats["stats_reset"]));
    for template in ["template0", "template1"] {
        assert!(db(template)["extensions"].is_null());
        assert_eq!(
            db(template)["extensions_reason"],
            "template database (not inspected)"
        );
    }

    // stats
    let stats = data(facts, "stats");
    for key in [
        "num_timed",
        "num_requested",
        "write_time_ms",
        "sync_time_ms",
        "buffers_written",
    ] {
        assert!(stats["checkpointer"][key].is_i64(), "checkpointer.{key}");
    }
    for key in ["buffers_clean", "maxwritten_clean", "buffers_alloc"] {
        assert!(stats["bgwriter"][key].is_i64(), "bgwriter.{key}");
    }
    for key in ["wal_records", "wal_fpi", "wal_bytes", "wal_buffers_full"] {
        assert!(stats["wal"][key].is_i64(), "wal.{key}");
    }
    assert!(stats["archiver"]["archived_count"].is_i64());
    assert!(int_or_null(&stats["stats_age_s"]));
    assert!(stats["shared_objects"].is_object());

    // replication and ssl (a lone primary)
    let repl = data(facts, "replication");
    assert_eq!(repl["is_standby"], false);
    assert!(repl["standbys"].is_array() && repl["slots"].is_array());
    assert!(repl["receiver"].is_null());
    let ssl = data(facts, "ssl");
    assert!(ssl["client_sessions"].is_i64() && ssl["ssl_sessions"].is_i64());
    assert!(ssl["non_ssl"].is_array());
}

#[tokio::test]
async fn pg18_default_as_superuser() {
    let pg = common::cluster("pg18-default");
    let facts = collect(&pg.uri, None).await;
    check_superuser_facts(&facts, 18);
    // pgready bounds its own session with SET statement_timeout etc.; the facts show the
    // server's values, not pgready's
    let settings = data(&facts, "settings");
    for name in [
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
    ] {
        assert_eq!(settings[name], 0, "{name}");
        assert_eq!(data(&facts, "settings_meta")[name]["source"], "default");
    }
    assert_eq!(settings["default_transaction_read_only"], false);
    // initdb's default in 18: data checksums on, so failures are counted (0), not null
    let dbs = data(&facts, "databases").as_array().unwrap();
    let postgres = dbs.iter().find(|d| d["name"] == "postgres").unwrap();
    assert_eq!(postgres["stats"]["checksum_failures"], 0);
    assert_eq!(data(&facts, "settings")["data_checksums"], true);
}

#[tokio::test]
async fn pg17_default_as_superuser() {
    let pg = common::cluster("pg17-default");
    let facts = collect(&pg.uri, None).await;
    check_superuser_facts(&facts, 17);
}

#[tokio::test]
async fn pg18_hardened_over_tls() {
    let pg = common::cluster("pg18-hardened");
    let facts = collect(&pg.uri, pg.password.as_deref()).await;
    check_superuser_facts(&facts, 18);
    let server = data(&facts, "server");
    assert_eq!(server["session_ssl"], true);
    // configured in postgresql.conf by the sandbox, and overridden in pgready's session
    assert_eq!(
        data(&facts, "settings")["idle_in_transaction_session_timeout"],
        600_000
    );
    assert_eq!(data(&facts, "passwords")["postgres"], "scram-sha-256");
    let settings = data(&facts, "settings");
    assert!(
        settings["shared_preload_libraries"]
            .as_str()
            .unwrap()
            .contains("pg_stat_statements")
    );
    assert!(settings["pg_stat_statements.max"].is_i64());
    let dbs = data(&facts, "databases").as_array().unwrap();
    let app = dbs.iter().find(|d| d["name"] == "app").unwrap();
    let exts = app["extensions"].as_array().unwrap();
    assert!(exts.iter().any(|e| e["name"] == "pg_stat_statements"));
    // the sandbox archives one segment before handing the cluster over
    let archiver = &data(&facts, "stats")["archiver"];
    assert!(archiver["archived_count"].as_i64().unwrap() >= 1);
    assert!(archiver["last_archived_time"].is_i64());
    // hostssl rules only for TCP in the hardened pg_hba.conf
    let hba = data(&facts, "hba").as_array().unwrap();
    assert!(hba.iter().any(|r| r["type"] == "hostssl"));
}

/// A least-privilege audit role gets everything but hba and passwords, and says why.
#[tokio::test]
async fn pg18_monitor_role() {
    const NAME: &str = "collect-pg18-monitor";
    let owner = std::process::id().to_string();
    let out = common::sandbox(&["start", NAME, "--major", "18", "--owner-pid", &owner]);
    assert!(
        out.status.success(),
        "pg-sandbox start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // As superuser (trust on loopback): the audit role, and a database it may not enter.
    let (admin, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
        .await
        .expect("connect as postgres");
    tokio::spawn(conn);
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE pgready_monitor LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT pg_monitor, pg_read_all_settings TO pgready_monitor; \
             DO $$ BEGIN CREATE ROLE nobody_else LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
        )
        .await
        .expect("create the audit role");
    let exists = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'secret'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    if exists == 0 {
        admin.batch_execute("CREATE DATABASE secret").await.unwrap();
    }
    admin
        .batch_execute("REVOKE CONNECT ON DATABASE secret FROM PUBLIC")
        .await
        .unwrap();

    let monitor_uri = uri.replacen("postgres@", "pgready_monitor@", 1);
    let facts = collect(&monitor_uri, None).await;

    let hba = facts.section("hba").unwrap();
    assert!(!hba.collected);
    assert!(hba.reason.as_deref().unwrap().contains("superuser"));
    let passwords = facts.section("passwords").unwrap();
    assert!(!passwords.collected);
    assert!(passwords.reason.as_deref().unwrap().contains("superuser"));
    let file_settings = facts.section("file_settings").unwrap();
    assert!(!file_settings.collected);
    assert!(
        file_settings
            .reason
            .as_deref()
            .unwrap()
            .contains("pg_file_settings is readable only by superusers")
    );

    for name in [
        "server",
        "settings",
        "settings_meta",
        "roles",
        "stats",
        "replication",
        "ssl",
    ] {
        assert_full(&facts, name);
    }
    let server = data(&facts, "server");
    assert_eq!(server["is_superuser"], false);
    assert_eq!(server["current_user"], "pgready_monitor");
    assert!(
        server["data_directory"].is_string(),
        "pg_read_all_settings shows it"
    );
    let roles: Vec<&str> = server["predefined_roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for r in [
        "pg_monitor",
        "pg_read_all_settings",
        "pg_read_all_stats",
        "pg_stat_scan_tables",
    ] {
        assert!(roles.contains(&r), "{r} in {roles:?}");
    }
    assert!(!roles.contains(&"pg_read_server_files"));
    assert!(data(&facts, "settings")["shared_preload_libraries"].is_string());

    // pg_read_all_stats measures `secret`, but without CONNECT its extensions stay unread
    let databases = facts.section("databases").unwrap();
    assert!(databases.partial);
    assert!(databases.reason.as_deref().unwrap().contains("secret"));
    let dbs = databases.data.as_array().unwrap();
    let secret = dbs.iter().find(|d| d["name"] == "secret").unwrap();
    assert!(secret["size_bytes"].as_i64().unwrap() > 0);
    assert!(secret["extensions"].is_null());
    assert!(
        secret["extensions_reason"]
            .as_str()
            .unwrap()
            .contains("CONNECT")
    );

    // a role with no predefined role: settings partial, and says which grant fixes it
    let nobody_uri = uri.replacen("postgres@", "nobody_else@", 1);
    let facts = collect(&nobody_uri, None).await;
    let settings = facts.section("settings").unwrap();
    assert!(settings.collected && settings.partial);
    assert!(
        settings
            .reason
            .as_deref()
            .unwrap()
            .contains("pg_read_all_settings")
    );
    assert!(settings.data.get("data_directory").is_none());
    assert!(data(&facts, "server")["data_directory"].is_null());
    assert!(facts.section("server").unwrap().partial);
    assert!(facts.section("ssl").unwrap().partial);

    drop(admin);
    let _ = common::sandbox(&["stop", NAME]);
}
