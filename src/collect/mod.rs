//! Collectors: the only stage that touches the world. Each fills its own sections of
//! [`Facts`] or records why it could not.

pub mod backup;
pub mod docs;
pub mod host;
pub mod monitoring;
pub mod network;
pub mod pgbouncer;
pub mod postgres;
pub mod tls;

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::cli::SourceArgs;
use crate::config::{Config, ContextConfig, datetime_epoch};
use crate::facts::{Facts, Section, TargetInfo};
use crate::target::{ConnectError, SessionOptions, Target};

/// The audit could not be performed (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Collect(String),
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `context` section: flags win over the file, the file over the defaults.
pub fn context_section(flags: &ContextConfig, file: &ContextConfig) -> Section {
    fn pick<T: serde::Serialize + Copy>(
        key: &str,
        flag: Option<T>,
        file: Option<T>,
        default: &str,
        data: &mut Map<String, Value>,
        sources: &mut Map<String, Value>,
    ) {
        let (v, src) = match (flag, file) {
            (Some(v), _) => (serde_json::to_value(v).unwrap_or(Value::Null), "flag"),
            (None, Some(v)) => (serde_json::to_value(v).unwrap_or(Value::Null), "file"),
            (None, None) => (Value::String(default.to_string()), "default"),
        };
        data.insert(key.to_string(), v);
        sources.insert(key.to_string(), Value::String(src.to_string()));
    }
    let mut data = Map::new();
    let mut sources = Map::new();
    pick(
        "deployment",
        flags.deployment,
        file.deployment,
        "self-managed",
        &mut data,
        &mut sources,
    );
    pick(
        "size",
        flags.size,
        file.size,
        "mid",
        &mut data,
        &mut sources,
    );
    pick(
        "criticality",
        flags.criticality,
        file.criticality,
        "medium",
        &mut data,
        &mut sources,
    );
    pick(
        "workload",
        flags.workload,
        file.workload,
        "mixed",
        &mut data,
        &mut sources,
    );
    data.insert("sources".to_string(), Value::Object(sources));
    Section::ok(Value::Object(data))
}

/// The `evidence` section from the configuration's `[[evidence]]` entries.
pub fn evidence_section(config: &Config, now: i64) -> Section {
    let entries: Vec<Value> = config
        .evidence
        .iter()
        .filter_map(|e| {
            let date = datetime_epoch(&e.date)?;
            Some(json!({
                "item": e.item,
                "date": date,
                "age_days": (now - date).div_euclid(86_400),
                "by": e.by,
                "result": e.result,
                "summary": e.summary,
                "metrics": e.metrics,
            }))
        })
        .collect();
    Section::ok(json!({
        "file": config.path.as_ref().map(|p| p.display().to_string()),
        "entries": entries,
    }))
}

/// What the user told pgready about the sources beyond the server itself.
pub struct Inputs<'a> {
    /// `pgready.toml` (or an empty configuration).
    pub config: &'a Config,
    /// Context flags (they win over `[context]` of the file).
    pub context: &'a ContextConfig,
    /// Flags naming the other sources (backup tools, monitoring, runbooks, …).
    pub sources: &'a SourceArgs,
}

/// Collect every section for `target`.
pub async fn collect(
    target: &Target,
    opts: &SessionOptions,
    inputs: &Inputs<'_>,
) -> Result<Facts, AuditError> {
    let config = inputs.config;
    let started = Instant::now();
    let now = now_epoch();
    let mut facts = Facts::new(
        now,
        TargetInfo {
            display: target.display(),
            local: target.is_local(),
        },
    );
    let client = crate::target::connect(target, opts).await?;
    postgres::collect(&client, target, opts, &mut facts)
        .await
        .map_err(|e| AuditError::Collect(e.to_string()))?;
    // pg_stat_statements' own counters (M1) and the connection load and pooler (C9).
    facts.insert("statements", monitoring::collect_statements(&client).await);
    let pooling = match pgbouncer::console(inputs.sources, config) {
        Ok(console) => {
            let local_port = target.is_local().then(|| target.port());
            pgbouncer::collect(&client, console.as_ref(), local_port).await
        }
        Err(e) => Section::missing(e),
    };
    facts.insert("pooling", pooling);
    drop(client);
    // The exporters, the alert rules (M2, M4) and the log shippers (M5): HTTP and files,
    // on a blocking thread.
    match monitoring::Request::new(inputs.sources, config, target.is_local()) {
        Ok(req) => {
            let got = tokio::task::spawn_blocking(move || {
                let mut v = monitoring::collect_prometheus(&req);
                v.push(("log_shipping", monitoring::collect_log_shipping(&req)));
                v
            })
            .await
            .map_err(|e| AuditError::Collect(format!("the monitoring collector stopped: {e}")))?;
            for (name, section) in got {
                facts.insert(name, section);
            }
        }
        Err(e) => {
            for name in ["exporter", "node_exporter", "alerts", "log_shipping"] {
                facts.insert(name, Section::missing(e.clone()));
            }
        }
    }
    // pgready's own TLS handshake (S4/S5), also when the audit session uses sslmode=disable.
    facts.insert(
        "tls",
        tls::collect(
            target,
            opts,
            if inputs.sources.tls_names.is_empty() {
                &config.tls.names
            } else {
                &inputs.sources.tls_names
            },
            facts.collected_at,
        )
        .await,
    );
    let host = if target.is_local() {
        host::collect()
    } else {
        Section::missing("server is remote (host facts need SSH, not yet supported)")
    };
    facts.insert("host", host);
    facts.insert(
        "docs",
        docs::collect(&docs::Request::new(inputs, target, facts.collected_at)).await,
    );
    // The sockets the postmaster listens on and the host firewall (S1, S2).
    let (sockets, firewall) = if target.is_local() {
        network::collect(&facts)
    } else {
        let why = "server is remote (host facts need SSH, not yet supported)";
        (Section::missing(why), Section::missing(why))
    };
    facts.insert("sockets", sockets);
    facts.insert("firewall", firewall);
    // The release table the S10 rules judge with (embedded, or --releases FILE).
    facts.insert("releases", crate::releases::section(inputs.sources, config));
    // The backup tool's view of this cluster (B1, B2, B4–B6), matched by system identifier.
    let backup_server = backup::ServerFacts::from_facts(&facts);
    facts.insert(
        "backup",
        backup::collect(
            inputs.sources,
            &config.backup,
            &backup_server,
            facts.collected_at,
        ),
    );
    add_offline_sections(&mut facts, config, inputs.context);
    facts.duration_ms = started.elapsed().as_millis() as u64;
    Ok(facts)
}

/// The sections that come from pgready's own inputs, not from the server: evidence
/// and context. Used for live audits and to refresh a saved snapshot.
pub fn add_offline_sections(facts: &mut Facts, config: &Config, context_flags: &ContextConfig) {
    facts.insert("evidence", evidence_section(config, facts.collected_at));
    facts.insert("context", context_section(context_flags, &config.context));
}
