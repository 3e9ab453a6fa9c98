//! Collection against a live server, without the `target` module: set
//! `PGREADY_TEST_PG_URI` (e.g. `postgresql://postgres@127.0.0.1:5432/postgres`) to run
//! them; they do nothing otherwise. `PGREADY_TEST_DUMP=path` writes the facts as JSON.

use serde_json::Value;
use tokio_postgres::{Client, Config, NoTls};

use super::{DbConnector, collect_with};
use crate::facts::{Facts, TargetInfo};

struct ConfigConnector(Config);

impl DbConnector for ConfigConnector {
    async fn connect_db(&self, dbname: &str) -> Result<Client, String> {
        let mut config = self.0.clone();
        config.dbname(dbname);
        let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(client)
    }
}

async fn collect_from(uri: &str) -> Facts {
    let config: Config = uri
        .parse()
        .expect("PGREADY_TEST_PG_URI is not a connection URI");
    let connector = ConfigConnector(config.clone());
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    let mut facts = Facts::new(0, TargetInfo::default());
    let started = std::time::Instant::now();
    collect_with(&client, &connector, &mut facts)
        .await
        .expect("collect");
    eprintln!("collected in {:?}", started.elapsed());
    if let Ok(path) = std::env::var("PGREADY_TEST_DUMP") {
        std::fs::write(&path, serde_json::to_string_pretty(&facts).unwrap()).unwrap();
    }
    facts
}

fn data<'a>(facts: &'a Facts, name: &str) -> &'a Value {
    &facts
        .section(name)
        .unwrap_or_else(|| panic!("no section {name}"))
        .data
}

#[tokio::test]
async fn live_sections_are_typed_as_documented() {
    let Ok(uri) = std::env::var("PGREADY_TEST_PG_URI") else {
        eprintln!("PGREADY_TEST_PG_URI not set: skipped");
        return;
    };
    let facts = collect_from(&uri).await;
    for (name, s) in &facts.sections {
        eprintln!(
            "{name}: collected={} partial={} reason={:?}",
            s.collected, s.partial, s.reason
        );
    }
    for name in [
        "server",
        "settings",
        "settings_meta",
        "roles",
        "databases",
        "stats",
        "replication",
        "ssl",
    ] {
        assert!(
            facts.section(name).unwrap().collected,
            "{name} not collected"
        );
    }
    let server = data(&facts, "server");
    let major = server["major"].as_i64().unwrap();
    assert!((14..=18).contains(&major));
    assert!(server["version_num"].is_i64());
    assert!(server["uptime_s"].is_i64());
    assert!(server["predefined_roles"].is_array());

    let settings = data(&facts, "settings");
    assert!(settings["shared_buffers"].is_i64());
    assert!(settings["checkpoint_timeout"].as_i64().unwrap() >= 30_000);
    assert!(settings["autovacuum_vacuum_cost_delay"].is_f64());
    assert!(settings["fsync"].is_boolean());
    assert!(settings["wal_level"].is_string());
    let log_connections = &settings["log_connections"];
    if major >= 18 {
        assert!(log_connections.is_string());
    } else {
        assert!(log_connections.is_boolean());
    }
    let meta = &data(&facts, "settings_meta")["shared_buffers"];
    assert_eq!(meta["unit"], "8kB");
    assert!(meta["boot_val"].is_i64());

    let stats = data(&facts, "stats");
    assert!(stats["checkpointer"]["num_timed"].is_i64());
    assert!(stats["wal"]["wal_bytes"].is_i64());
    assert!(stats["bgwriter"]["buffers_alloc"].is_i64());

    let dbs = data(&facts, "databases").as_array().unwrap();
    let postgres = dbs.iter().find(|d| d["name"] == "postgres").unwrap();
    assert!(postgres["extensions"].is_array());
    assert!(postgres["xid_age"].is_i64());
    let template0 = dbs.iter().find(|d| d["name"] == "template0").unwrap();
    assert!(template0["extensions"].is_null());
    assert!(template0["extensions_reason"].is_string());

    let roles = data(&facts, "roles").as_array().unwrap();
    assert!(roles.iter().any(|r| r["name"] == server["current_user"]));

    if server["is_superuser"] == true {
        assert!(facts.section("hba").unwrap().collected);
        assert!(facts.section("passwords").unwrap().collected);
        let hba = data(&facts, "hba").as_array().unwrap();
        assert!(hba.iter().all(|r| r["line_number"].is_i64()));
    } else {
        assert!(!facts.section("hba").unwrap().collected);
        assert!(!facts.section("passwords").unwrap().collected);
    }
}
