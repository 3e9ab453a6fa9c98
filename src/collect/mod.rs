//! Collectors: the only stage that touches the world. Each fills its own sections of
//! [`Facts`] or records why it could not.

pub mod backup;
pub mod docs;
pub mod host;
pub mod monitoring;
pub mod network;
pub mod pgbouncer;
pub mod postgres;
pub mod remote;
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

/// Seconds since the Unix epoch, now.
pub(crate) fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `context` section: flags win over the file, the file over what was detected on
/// the host (storage, RAM, CPUs; never for a managed deployment, whose host pgready does
/// not see), and that over the defaults. RAM, CPUs and storage that nobody gave and that
/// could not be detected are `null`, with the reason in `unknown` (rules that need them
/// are not evaluated with that reason).
pub fn context_section(
    flags: &ContextConfig,
    file: &ContextConfig,
    host: Option<&Section>,
) -> Section {
    let mut section = base_context_section(flags, file);
    if let Value::Object(data) = &mut section.data {
        add_sizing(data, flags, file, host);
    }
    section
}

/// Storage, RAM and CPUs with their source (`flag`, `file`, `detected`, `unknown`), a
/// short origin for the report (`cgroup limit`, `--ram`, …) and, when unknown, why.
fn add_sizing(
    data: &mut Map<String, Value>,
    flags: &ContextConfig,
    file: &ContextConfig,
    host: Option<&Section>,
) {
    use crate::config::Deployment;
    let managed = flags.deployment.or(file.deployment) == Some(Deployment::Managed);
    let host_data = host.filter(|h| h.collected).map(|h| &h.data);
    let why_unknown = |what: &str, flag: &str| -> String {
        if managed {
            format!(
                "{what} unknown: the deployment is managed (pgready does not see its host); give {flag}"
            )
        } else if let Some(h) = host.filter(|h| !h.collected) {
            format!(
                "{what} unknown: {}; give {flag}",
                h.reason.as_deref().unwrap_or("host facts not collected")
            )
        } else {
            format!("{what} unknown: give {flag}")
        }
    };
    let mut sources = match data.remove("sources") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut origin = Map::new();
    let mut unknown = Map::new();
    // detected: (value, origin) from the host section
    let detect = |key: &str, origin_key: &str| -> Option<(Value, String)> {
        if managed {
            return None;
        }
        let h = host_data?;
        let v = h.get(key).filter(|v| !v.is_null())?.clone();
        let o = h
            .get(origin_key)
            .and_then(Value::as_str)
            .unwrap_or("detected")
            .to_string();
        Some((v, o))
    };

    // storage
    let (storage, src, org) = match (flags.storage, file.storage) {
        (Some(s), _) => (json!(s.as_str()), "flag", Some("--storage".to_string())),
        (None, Some(s)) => (json!(s.as_str()), "file", Some("pgready.toml".to_string())),
        _ => match detect("storage", "storage_source") {
            Some((v, o)) => (v, "detected", Some(format!("detected: {o}"))),
            None => {
                let reason = host_data
                    .filter(|_| !managed)
                    .and_then(|h| h.get("storage_reason"))
                    .and_then(Value::as_str)
                    .map(|r| format!("storage unknown: {r}; give --storage"))
                    .unwrap_or_else(|| why_unknown("storage", "--storage"));
                unknown.insert("storage".into(), json!(reason));
                (Value::Null, "unknown", None)
            }
        },
    };
    data.insert("storage".into(), storage);
    sources.insert("storage".into(), json!(src));
    origin.insert("storage".into(), json!(org));

    // RAM
    let (mem, src, org) = match (flags.ram, file.ram) {
        (Some(b), _) => (json!(b), "flag", Some("--ram".to_string())),
        (None, Some(b)) => (json!(b), "file", Some("pgready.toml".to_string())),
        _ => match detect("mem_bytes", "mem_origin") {
            Some((v, o)) => (v, "detected", Some(o)),
            None => {
                unknown.insert("ram".into(), json!(why_unknown("RAM", "--ram")));
                (Value::Null, "unknown", None)
            }
        },
    };
    data.insert(
        "ram".into(),
        json!(mem.as_i64().map(crate::rules::expr::human_bytes)),
    );
    data.insert("mem_bytes".into(), mem);
    sources.insert("ram".into(), json!(src));
    origin.insert("ram".into(), json!(org));

    // CPUs
    let (cpus, src, org) = match (flags.cpus, file.cpus) {
        (Some(n), _) => (json!(n), "flag", Some("--cpus".to_string())),
        (None, Some(n)) => (json!(n), "file", Some("pgready.toml".to_string())),
        _ => match detect("cpus", "cpus_origin") {
            Some((v, o)) => (v, "detected", Some(o)),
            None => {
                unknown.insert("cpus".into(), json!(why_unknown("CPUs", "--cpus")));
                (Value::Null, "unknown", None)
            }
        },
    };
    data.insert("cpus".into(), cpus);
    sources.insert("cpus".into(), json!(src));
    origin.insert("cpus".into(), json!(org));

    data.insert("sources".into(), Value::Object(sources));
    data.insert("origin".into(), Value::Object(origin));
    data.insert("unknown".into(), Value::Object(unknown));
}

/// deployment, size, criticality and workload: flag, file or default.
fn base_context_section(flags: &ContextConfig, file: &ContextConfig) -> Section {
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
    /// The rules' own queries (`[rule.query]`), run on the audit session.
    pub queries: &'a [postgres::queries::UserQuery],
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
    // The rules' own SQL, after every built-in query.
    facts.insert(
        "queries",
        postgres::collect_queries(&client, target, opts, inputs.queries).await,
    );
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
    // The host facts and the sockets and firewall (S1, S2): over SSH when asked, else on
    // this machine when the server runs here.
    let (host, sockets, firewall) = host_sections(target, inputs, &facts);
    facts.insert("host", host);
    facts.insert("sockets", sockets);
    facts.insert("firewall", firewall);
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
    // The release table the S10 rules judge with (embedded, or --releases FILE).
    facts.insert("releases", crate::releases::section(inputs.sources, config));
    facts.insert(
        "docs",
        docs::collect(&docs::Request::new(inputs, target, facts.collected_at)).await,
    );
    add_offline_sections(&mut facts, config, inputs.context);
    facts.duration_ms = started.elapsed().as_millis() as u64;
    Ok(facts)
}

/// `host`, `sockets` and `firewall`, read through SSH (`--host`, `[host] ssh`), locally
/// for a local server, else not collected with the reason.
fn host_sections(
    target: &Target,
    inputs: &Inputs<'_>,
    facts: &Facts,
) -> (Section, Section, Section) {
    let ssh = inputs
        .sources
        .host
        .as_ref()
        .or(inputs.config.host.ssh.as_ref());
    let host_inputs = host::Inputs::from_facts(facts);
    let Some(ssh) = ssh else {
        if target.is_local() {
            let (sockets, firewall) = network::collect(facts, &remote::Local);
            return (
                host::collect(&host_inputs, &remote::Local),
                sockets,
                firewall,
            );
        }
        let why = "server is remote (host facts need SSH: --host ssh://[user@]host, or `[host] \
                   ssh` in pgready.toml)";
        return (
            Section::missing(why),
            Section::missing(why),
            Section::missing(why),
        );
    };
    let options: Vec<String> = inputs
        .sources
        .ssh_options
        .iter()
        .chain(&inputs.config.host.ssh_options)
        .cloned()
        .collect();
    match remote::Ssh::connect(ssh, &options) {
        Ok(access) => {
            let host = host::collect(&host_inputs, &access);
            let (sockets, firewall) = network::collect(facts, &access);
            (host, sockets, firewall)
        }
        Err(why) => (
            Section::missing(why.clone()),
            Section::missing(why.clone()),
            Section::missing(why),
        ),
    }
}

/// The sections that come from pgready's own inputs, not from the server: evidence
/// and context. Used for live audits and to refresh a saved snapshot.
pub fn add_offline_sections(facts: &mut Facts, config: &Config, context_flags: &ContextConfig) {
    facts.insert("evidence", evidence_section(config, facts.collected_at));
    let host = facts.section("host").cloned();
    facts.insert(
        "context",
        context_section(context_flags, &config.context, host.as_ref()),
    );
}
