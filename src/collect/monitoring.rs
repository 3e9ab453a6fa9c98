//! The monitoring collectors (M1, M2, M4, M5): pg_stat_statements' own counters, the
//! Prometheus exporters' scrapes, the alert rules, and the log shippers running on the
//! host. They record what they found (docs/facts.md `## statements`, `## exporter`,
//! `## node_exporter`, `## alerts`, `## log_shipping`); the rules decide.
//!
//! # Exporters
//! `--exporter URL` (postgres_exporter) and `--node-exporter URL` are fetched once with
//! an HTTP GET bounded by [`HTTP_TIMEOUT`]; the facts keep the metric *names* (never
//! label values, which can carry query texts or addresses), `pg_up`, the exporter's
//! version (`postgres_exporter_build_info`, `node_exporter_build_info`) and which
//! postgres_exporter collectors ran and whether they succeeded
//! (`pg_scrape_collector_success{collector=…}`). `--other-exporter URL` scrapes more
//! components (pgbackrest_exporter, a Pushgateway) only to verify alert metric names.
//!
//! # Alert rules
//! Rule files (`--prometheus-rules PATH`, a file or a folder of `*.yml`/`*.yaml`; plain
//! Prometheus rule files or Kubernetes `PrometheusRule` objects) or a running Prometheus
//! (`--prometheus URL`, `/api/v1/rules`). Each expression's metric names are read by a
//! small PromQL scanner ([`metric_names`]); recording rules are followed to their inputs.
//! A name is checked against the scrape of the component that owns it: `pg_*` against
//! postgres_exporter, `node_*` against node_exporter, any other name against every scrape
//! (a textfile metric of node_exporter, a pgbackrest_exporter metric). A name pgready
//! scraped no owner for is *unverified*, never *absent*. Absent `pg_*` names are
//! explained with the catalogue of postgres_exporter's own names by release
//! (`postgres_exporter_metrics.txt`, read from its sources v0.11.0 … v0.20.1): renamed,
//! collector off, collector failing, or a name it never emitted. The critical cases and
//! the names that recognise them are data (`alert_cases.toml`), extended by
//! `[monitoring] alert_metrics`.
//!
//! # Verified
//! - `pg_stat_statements_info` (`dealloc bigint`, `stats_reset timestamptz`) exists from
//!   pg_stat_statements 1.9 (`pg_stat_statements--1.8--1.9.sql`), the version shipped
//!   with PostgreSQL 14; an extension left at 1.8 by pg_upgrade has no such view, which
//!   the facts say. Live: 14.23, 16.14, 17.10, 18.4 sandboxes (15 not run).
//! - postgres_exporter: names and collectors from the tagged sources (see the catalogue
//!   file's header); Debian 12's package (0.11.1) scraped live against 16, 17 and 18: its
//!   `bgwriter` collector fails on 17+ (`column "checkpoints_timed" does not exist`, the
//!   counters moved to `pg_stat_checkpointer`), which `pg_scrape_collector_success 0` shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::cli::SourceArgs;
use crate::config::Config;
use crate::facts::Section;

/// Bound on each HTTP request (connect, TLS, request and the whole body together).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A scrape or an API answer larger than this is refused.
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// At most this many rule files are read from a folder.
const MAX_RULE_FILES: usize = 2000;

pub const EXPORTER_NOT_GIVEN: &str =
    "no exporter given (--exporter URL or [monitoring] exporter in pgready.toml)";
pub const NODE_NOT_GIVEN: &str =
    "no node_exporter given (--node-exporter URL or [monitoring] node_exporter in pgready.toml)";
pub const RULES_NOT_GIVEN: &str = "no alert rules given (--prometheus-rules PATH or --prometheus URL, or [monitoring] prometheus_rules / prometheus in pgready.toml)";

// ---------------------------------------------------------------------------------------
// Inputs

/// An HTTP(S) address as the user gave it, split for fetching and for display.
#[derive(Debug, Clone)]
pub struct HttpUrl {
    /// The URL without user information (what is fetched).
    pub fetch: String,
    /// The URL with the password replaced by `***` (what the facts and messages show).
    pub display: String,
    /// `Basic …` when the URL carried `user:password@`.
    auth: Option<String>,
}

impl HttpUrl {
    /// Parse `http://[user[:password]@]host[:port][/path]`; `what` names the option in
    /// error messages.
    pub fn parse(text: &str, what: &str) -> Result<HttpUrl, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("http://") {
            ("http://", &t[7..])
        } else if lower.starts_with("https://") {
            ("https://", &t[8..])
        } else {
            return Err(format!(
                "{what}: `{}` is not an http:// or https:// URL (e.g. http://db1:9187/metrics)",
                redact(t)
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(format!("{what}: `{}` has no host", redact(t)));
        }
        let auth = userinfo.map(|u| {
            let decoded = percent_encoding::percent_decode_str(u).decode_utf8_lossy();
            format!("Basic {}", base64(decoded.as_bytes()))
        });
        let shown_user = userinfo.map(|u| match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        });
        Ok(HttpUrl {
            fetch: format!("{scheme}{hostport}{path}"),
            display: format!("{scheme}{}{hostport}{path}", shown_user.unwrap_or_default()),
            auth,
        })
    }

    /// `/metrics` when the URL names no path (an exporter's landing page is HTML).
    fn metrics_path(mut self) -> HttpUrl {
        let after_scheme = |u: &str| {
            u.split_once("://")
                .map_or(String::new(), |(_, r)| r.to_string())
        };
        if !after_scheme(&self.fetch).contains('/') {
            self.fetch.push_str("/metrics");
            self.display.push_str("/metrics");
        }
        self
    }

    /// The same server, another path (for Prometheus's API).
    fn with_path(&self, path: &str) -> HttpUrl {
        let join = |u: &str| {
            let base = u.trim_end_matches('/');
            if base.ends_with(path) {
                base.to_string()
            } else {
                format!("{base}{path}")
            }
        };
        HttpUrl {
            fetch: join(&self.fetch),
            display: join(&self.display),
            auth: self.auth.clone(),
        }
    }
}

/// A URL for messages: the password of `user:password@` replaced.
fn redact(text: &str) -> String {
    if let Some(scheme_end) = text.find("://") {
        let rest = &text[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}{}:***{}",
                &text[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            );
        }
    }
    text.to_string()
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Everything the monitoring collectors need, from the flags and `pgready.toml` (a flag
/// wins over the file; a repeatable flag given at all replaces the file's list).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub exporter: Option<HttpUrl>,
    pub node_exporter: Option<HttpUrl>,
    pub other_exporters: Vec<HttpUrl>,
    pub prometheus: Option<HttpUrl>,
    /// Rule files or folders, with where they were named.
    pub rule_paths: Vec<PathBuf>,
    /// Extra metric names per alert case id.
    pub alert_metrics: BTreeMap<String, Vec<String>>,
    /// Extra process names counted as log shippers.
    pub log_shippers: Vec<String>,
    /// The server runs on this machine: its processes can be inspected.
    pub local: bool,
}

impl Request {
    /// Build from the flags and the file; errors are input errors (exit 2).
    pub fn new(sources: &SourceArgs, config: &Config, local: bool) -> Result<Request, String> {
        let m = &config.monitoring;
        let url =
            |flag: &Option<String>, file: &Option<String>, what_flag, what_file| match (flag, file)
            {
                (Some(u), _) => HttpUrl::parse(u, what_flag).map(Some),
                (None, Some(u)) => HttpUrl::parse(u, what_file).map(Some),
                (None, None) => Ok(None),
            };
        let exporter = url(
            &sources.exporter,
            &m.exporter,
            "--exporter",
            "[monitoring] exporter",
        )?
        .map(HttpUrl::metrics_path);
        let node_exporter = url(
            &sources.node_exporter,
            &m.node_exporter,
            "--node-exporter",
            "[monitoring] node_exporter",
        )?
        .map(HttpUrl::metrics_path);
        let prometheus = url(
            &sources.prometheus,
            &m.prometheus,
            "--prometheus",
            "[monitoring] prometheus",
        )?;
        let others = if sources.other_exporter.is_empty() {
            m.other_exporters
                .iter()
                .map(|u| {
                    HttpUrl::parse(u, "[monitoring] other_exporters").map(HttpUrl::metrics_path)
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            sources
                .other_exporter
                .iter()
                .map(|u| HttpUrl::parse(u, "--other-exporter").map(HttpUrl::metrics_path))
                .collect::<Result<Vec<_>, _>>()?
        };
        let rule_paths = if sources.prometheus_rules.is_empty() {
            m.prometheus_rules.clone()
        } else {
            sources.prometheus_rules.clone()
        };
        let known: BTreeSet<&str> = cases().iter().map(|c| c.id.as_str()).collect();
        for (id, names) in &m.alert_metrics {
            if !known.contains(id.as_str()) {
                return Err(format!(
                    "[monitoring.alert_metrics]: unknown alert case `{id}` (the cases are: {})",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
            if let Some(bad) = names.iter().find(|n| !is_metric_name(n)) {
                return Err(format!(
                    "[monitoring.alert_metrics] {id}: `{bad}` is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
                ));
            }
        }
        Ok(Request {
            exporter,
            node_exporter,
            other_exporters: others,
            prometheus,
            rule_paths,
            alert_metrics: m.alert_metrics.clone(),
            log_shippers: m.log_shippers.clone(),
            local,
        })
    }
}

/// Checks made before any connection: URLs well formed, rule files present and readable
/// as Prometheus rule files (a YAML error is reported as `file:line:column`).
pub fn check_inputs(sources: &SourceArgs, config: &Config) -> Result<(), String> {
    let req = Request::new(sources, config, false)?;
    load_rule_files(&req.rule_paths).map(|_| ())
}

fn is_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

// ---------------------------------------------------------------------------------------
// The alert cases and the postgres_exporter catalogue (embedded data)

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    pub title: String,
    pub metrics: Vec<String>,
}

#[derive(Deserialize)]
struct CasesFile {
    case: Vec<Case>,
}

/// The critical alert cases of `alert_cases.toml`.
pub fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        toml::from_str::<CasesFile>(include_str!("alert_cases.toml"))
            .map(|f| f.case)
            // The file is part of the binary and parsed by a unit test: never empty in a
            // released build.
            .unwrap_or_default()
    })
}

/// One postgres_exporter metric of the catalogue.
#[derive(Debug, Clone)]
struct Known {
    first: Version,
    last: Version,
    collector: String,
    default_enabled: bool,
    /// First release where a collector (not the built-in maps) emits it.
    collector_since: Option<Version>,
}

type Version = (u32, u32, u32);

fn parse_version(v: &str) -> Option<Version> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+', ' ']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

fn show_version(v: Version) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

fn catalogue() -> &'static BTreeMap<String, Known> {
    static CAT: OnceLock<BTreeMap<String, Known>> = OnceLock::new();
    CAT.get_or_init(|| {
        include_str!("postgres_exporter_metrics.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() != 6 {
                    return None;
                }
                Some((
                    f[0].to_string(),
                    Known {
                        first: parse_version(f[1])?,
                        last: parse_version(f[2])?,
                        collector: f[3].to_string(),
                        default_enabled: f[4] == "Enabled",
                        collector_since: parse_version(f[5]),
                    },
                ))
            })
            .collect()
    })
}

/// Names that current postgres_exporter releases do not emit and that alert packs still
/// use, with what replaced them (verified against the sources, see the module docs).
fn stale_hint(name: &str) -> Option<String> {
    if name == "pg_replication_lag" {
        return Some(
            "not one of postgres_exporter's own metrics: it came from the example queries.yaml \
             of old releases; the replication collector (0.13+) exposes pg_replication_lag_seconds"
                .to_string(),
        );
    }
    if let Some(col) = name.strip_prefix("pg_stat_bgwriter_")
        && !col.ends_with("_total")
    {
        return Some(format!(
            "old name: postgres_exporter's stat_bgwriter collector exposes pg_stat_bgwriter_{col}_total, \
             and on PostgreSQL 17+ checkpoint counters are in pg_stat_checkpointer_*_total \
             (stat_checkpointer collector, 0.17+, off by default)"
        ));
    }
    if let Some(rest) = name.strip_prefix("pg_replication_slot_") {
        return Some(format!(
            "postgres_exporter 0.13–0.19 name, renamed pg_replication_slots_{rest} in 0.20"
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------
// HTTP

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(3)
        .user_agent(concat!("pgready/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// GET `url`: the status and the body, or why it failed.
fn http_get(url: &HttpUrl, accept: &str) -> Result<(u16, String), String> {
    let mut req = agent().get(&url.fetch).header("Accept", accept);
    if let Some(a) = &url.auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call().map_err(|e| describe_http_error(&e))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| format!("reading the answer failed: {}", describe_http_error(&e)))?;
    Ok((status, body))
}

fn describe_http_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => format!(
            "timed out after {} s (check the address, the port and firewalls)",
            HTTP_TIMEOUT.as_secs()
        ),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listens on that port: is the exporter running?)"
                .to_string()
        }
        ureq::Error::HostNotFound => "host not found (check the name)".to_string(),
        ureq::Error::BodyExceedsLimit(n) => {
            format!("the answer is larger than {n} bytes")
        }
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus text exposition

/// `(name, labels, value)` of one sample.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// What a scrape gave.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub url: String,
    pub reachable: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub names: BTreeSet<String>,
    /// The few samples the facts keep.
    pub samples: Vec<Sample>,
}

const KEPT_SAMPLES: &[&str] = &[
    "pg_up",
    "pg_exporter_last_scrape_error",
    "pg_scrape_collector_success",
    "postgres_exporter_build_info",
    "node_exporter_build_info",
];

/// Parse the Prometheus text format (and OpenMetrics): every sample's metric name, and the
/// samples of [`KEPT_SAMPLES`] with their labels.
pub fn parse_exposition(text: &str) -> (BTreeSet<String>, Vec<Sample>) {
    let mut names = BTreeSet::new();
    let mut kept = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = &line[..end];
        if !is_metric_name(name) {
            continue;
        }
        names.insert(name.to_string());
        if KEPT_SAMPLES.contains(&name) {
            let (labels, rest) = if line[end..].starts_with('{') {
                parse_labels(&line[end + 1..])
            } else {
                (BTreeMap::new(), &line[end..])
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(v) = value {
                kept.push((name.to_string(), labels, v));
            }
        }
    }
    (names, kept)
}

/// `a="x",b="y\"z"} rest` → the labels and what follows the closing brace.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            return (labels, "");
        }
        if b[i] == b'}' {
            return (labels, &s[i + 1..]);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b'}' {
            i += 1;
        }
        let key = s[start..i].trim().to_string();
        if i >= b.len() || b[i] == b'}' {
            return (labels, s.get(i + 1..).unwrap_or(""));
        }
        i += 1; // '='
        if i >= b.len() || b[i] != b'"' {
            return (labels, "");
        }
        i += 1;
        let mut value = String::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
                value.push(match b[i] {
                    b'n' => '\n',
                    other => other as char,
                });
            } else {
                // Copy a whole UTF-8 character.
                let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
                value.push_str(&s[i..i + ch_len]);
                i += ch_len;
                continue;
            }
            i += 1;
        }
        i += 1; // closing quote
        labels.insert(key, value);
    }
}

fn scrape(url: &HttpUrl) -> Scrape {
    let started = Instant::now();
    let mut s = Scrape {
        url: url.display.clone(),
        ..Scrape::default()
    };
    match http_get(url, "text/plain;version=0.0.4;q=1,*/*;q=0.1") {
        Ok((status, body)) => {
            s.status = Some(status);
            if status == 200 {
                s.reachable = true;
                let (names, samples) = parse_exposition(&body);
                s.names = names;
                s.samples = samples;
            } else {
                s.error = Some(format!(
                    "HTTP status {status} (expected 200: check the path, usually /metrics, and any authentication)"
                ));
            }
        }
        Err(e) => s.error = Some(format!("cannot scrape {}: {e}", url.display)),
    }
    s.duration_ms = started.elapsed().as_millis() as u64;
    s
}

impl Scrape {
    fn value(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    fn label(&self, name: &str, label: &str) -> Option<String> {
        self.samples
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, l, _)| l.get(label).cloned())
    }

    /// postgres_exporter's collectors that ran: name → success (0 or 1).
    fn collectors(&self) -> BTreeMap<String, i64> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == "pg_scrape_collector_success")
            .filter_map(|(_, l, v)| l.get("collector").map(|c| (c.clone(), *v as i64)))
            .collect()
    }

    fn version(&self, info: &str) -> Option<String> {
        self.label(info, "version")
    }
}

fn int_or_null(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() && x.fract() == 0.0 => json!(x as i64),
        Some(x) if x.is_finite() => json!(x),
        _ => Value::Null,
    }
}

fn scrape_section(s: &Scrape, build_info: &str) -> Section {
    let mut data = json!({
        "url": s.url,
        "reachable": s.reachable,
        "status": s.status,
        "error": s.error,
        "duration_ms": s.duration_ms,
        "version": s.version(build_info),
        "metric_count": s.names.len(),
        "names": s.names,
    });
    if build_info == "postgres_exporter_build_info" {
        data["pg_up"] = int_or_null(s.value("pg_up"));
        data["last_scrape_error"] = int_or_null(s.value("pg_exporter_last_scrape_error"));
        data["collectors"] = json!(s.collectors());
    }
    Section::ok(data)
}

// ---------------------------------------------------------------------------------------
// PromQL: the metric names an expression reads

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "inf", "nan", "atan2", "offset", "start", "end",
];

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregations, keywords or label names, plus `{__name__="…"}` selectors.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                let end = skip_group(b, i, b'{', b'}');
                if let Some(n) = name_matcher(&expr[i + 1..end.saturating_sub(1).max(i + 1)]) {
                    out.insert(n);
                }
                i = end;
            }
            b'[' => i = skip_group(b, i, b'[', b']'),
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                i += 1;
                while i < b.len() {
                    let d = b[i];
                    let exponent_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E');
                    if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let ident = &expr[start..i];
                let lower = ident.to_ascii_lowercase();
                let j = next_non_space(i);
                let next = b.get(j).copied();
                if GROUPING.contains(&lower.as_str()) {
                    if next == Some(b'(') {
                        i = skip_group(b, j, b'(', b')');
                    }
                    continue;
                }
                if lower == "offset" {
                    // offset [-]5m
                    let mut k = j;
                    if b.get(k) == Some(&b'-') {
                        k += 1;
                    }
                    while k < b.len() && b[k].is_ascii_alphanumeric() {
                        k += 1;
                    }
                    i = k;
                    continue;
                }
                if next == Some(b'(') || KEYWORDS.contains(&lower.as_str()) {
                    continue;
                }
                if AGGREGATIONS.contains(&lower.as_str()) {
                    // `sum by (x) (…)`: an aggregation followed by its grouping clause.
                    let word: String = expr[j..]
                        .chars()
                        .take_while(|ch| ch.is_ascii_alphabetic())
                        .collect::<String>()
                        .to_ascii_lowercase();
                    if word == "by" || word == "without" {
                        continue;
                    }
                }
                out.insert(ident.to_string());
            }
            _ => i += 1,
        }
    }
    out
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && q != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index just after the `close` that matches the `open` at `start` (strings skipped).
fn skip_group(b: &[u8], start: usize, open: u8, close: u8) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            x if x == open => depth += 1,
            x if x == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// `__name__="x"` inside a selector's braces.
fn name_matcher(inner: &str) -> Option<String> {
    let pos = inner.find("__name__")?;
    let rest = inner[pos + 8..].trim_start();
    let rest = rest.strip_prefix('=')?;
    if rest.starts_with('~') || rest.starts_with('=') {
        return None;
    }
    let rest = rest.trim_start();
    let q = rest.chars().next()?;
    if !matches!(q, '"' | '\'' | '`') {
        return None;
    }
    let body = &rest[1..];
    let end = body.find(q)?;
    let name = &body[..end];
    is_metric_name(name).then(|| name.to_string())
}

/// A Prometheus duration (`1h30m`, `5m`, `90s`, `1d`) in seconds.
pub fn duration_s(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    Some(total as i64)
}

// ---------------------------------------------------------------------------------------
// Rule files

/// One Prometheus rule, from a file or from `/api/v1/rules`.
#[derive(Debug, Clone)]
pub struct PromRule {
    pub group: String,
    pub source: String,
    /// `alerting` or `recording`.
    pub kind: &'static str,
    pub name: String,
    pub expr: String,
    pub for_s: Option<i64>,
    pub severity: Option<String>,
}

/// Every file to read under `paths` (a file as given; a folder: its `*.yml`/`*.yaml`,
/// recursively, sorted), each with whether it was named explicitly.
fn rule_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, bool)>, String> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| {
            format!(
                "cannot read the alert rules {}: {e} (give a Prometheus rule file or a folder of them)",
                p.display()
            )
        })?;
        if meta.is_file() {
            out.push((p.clone(), true));
            continue;
        }
        let mut stack = vec![p.clone()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let hidden = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if hidden {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                    found.push(path);
                }
            }
            if found.len() > MAX_RULE_FILES {
                return Err(format!(
                    "{} holds more than {MAX_RULE_FILES} YAML files: give the folder of the rule files",
                    p.display()
                ));
            }
        }
        found.sort();
        out.extend(found.into_iter().map(|f| (f, false)));
    }
    Ok(out)
}

/// What the rule files hold: the rules, the files read, the YAML files left out (with why).
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<PromRule>,
    pub files: Vec<String>,
    pub skipped: Vec<String>,
}

/// Read and parse the rule files under `paths`. A file that is not valid YAML, or a file
/// named explicitly that holds no `groups`, is an input error.
pub fn load_rule_files(paths: &[PathBuf]) -> Result<RuleSet, String> {
    let mut set = RuleSet::default();
    for (file, explicit) in rule_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let shown = file.display().to_string();
        match parse_rule_file(&text, &shown) {
            Ok(rules) => {
                set.rules.extend(rules);
                set.files.push(shown);
            }
            Err(RuleFileError::NotRules(why)) if !explicit => {
                set.skipped.push(format!("{shown}: {why}"));
            }
            Err(RuleFileError::NotRules(why) | RuleFileError::Invalid(why)) => {
                return Err(format!("{shown}{why}"));
            }
        }
    }
    Ok(set)
}

enum RuleFileError {
    /// Valid YAML but not a rule file (`: why`).
    NotRules(String),
    /// Broken YAML or a broken rule (`:line:col: why` or `: why`).
    Invalid(String),
}

fn parse_rule_file(text: &str, source: &str) -> Result<Vec<PromRule>, RuleFileError> {
    use serde_norway::Value as Y;
    let mut rules = Vec::new();
    let mut any_groups = false;
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = Y::deserialize(doc).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            RuleFileError::Invalid(format!("{at}: not valid YAML: {e}"))
        })?;
        if value.is_null() {
            continue;
        }
        let groups = value
            .get("groups")
            .or_else(|| value.get("spec").and_then(|s| s.get("groups")));
        let Some(groups) = groups else {
            continue;
        };
        let Some(groups) = groups.as_sequence() else {
            return Err(RuleFileError::Invalid(
                ": `groups` must be a list".to_string(),
            ));
        };
        any_groups = true;
        for (gi, g) in groups.iter().enumerate() {
            let gname = g
                .get("name")
                .and_then(Y::as_str)
                .map_or_else(|| format!("group #{}", gi + 1), str::to_string);
            let list = match g.get("rules") {
                None | Some(Y::Null) => continue,
                Some(r) => r.as_sequence().ok_or_else(|| {
                    RuleFileError::Invalid(format!(": group {gname}: `rules` must be a list"))
                })?,
            };
            for (ri, r) in list.iter().enumerate() {
                let text_of = |key: &str| -> Option<String> {
                    match r.get(key)? {
                        Y::String(s) => Some(s.clone()),
                        Y::Number(n) => Some(n.to_string()),
                        Y::Bool(b) => Some(b.to_string()),
                        _ => None,
                    }
                };
                let (kind, name) = match (text_of("alert"), text_of("record")) {
                    (Some(a), _) => ("alerting", a),
                    (None, Some(rec)) => ("recording", rec),
                    (None, None) => {
                        return Err(RuleFileError::Invalid(format!(
                            ": group {gname}, rule #{}: neither `alert` nor `record`",
                            ri + 1
                        )));
                    }
                };
                let Some(expr) = text_of("expr") else {
                    return Err(RuleFileError::Invalid(format!(
                        ": group {gname}, rule {name}: no `expr`"
                    )));
                };
                let for_s = text_of("for").and_then(|f| duration_s(&f));
                let severity = r
                    .get("labels")
                    .and_then(|l| l.get("severity"))
                    .and_then(Y::as_str)
                    .map(str::to_string);
                rules.push(PromRule {
                    group: gname.clone(),
                    source: source.to_string(),
                    kind,
                    name,
                    expr,
                    for_s,
                    severity,
                });
            }
        }
    }
    if !any_groups {
        return Err(RuleFileError::NotRules(
            ": not a Prometheus rule file (no `groups:` list)".to_string(),
        ));
    }
    Ok(rules)
}

/// The rules a running Prometheus has loaded (`GET /api/v1/rules`).
fn prometheus_rules(url: &HttpUrl) -> Result<Vec<PromRule>, String> {
    let api = url.with_path("/api/v1/rules");
    let (status, body) =
        http_get(&api, "application/json").map_err(|e| format!("{}: {e}", api.display))?;
    if status != 200 {
        return Err(format!(
            "{}: HTTP status {status} (expected 200 from Prometheus's rules API)",
            api.display
        ));
    }
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| format!("{}: not a Prometheus API answer: {e}", api.display))?;
    if v["status"] != "success" {
        return Err(format!(
            "{}: Prometheus answered status {} ({})",
            api.display, v["status"], v["error"]
        ));
    }
    let mut out = Vec::new();
    for g in v["data"]["groups"].as_array().into_iter().flatten() {
        let group = g["name"].as_str().unwrap_or("").to_string();
        let file = g["file"].as_str().unwrap_or("").to_string();
        for r in g["rules"].as_array().into_iter().flatten() {
            let kind = match r["type"].as_str() {
                Some("alerting") => "alerting",
                Some("recording") => "recording",
                _ => continue,
            };
            out.push(PromRule {
                group: group.clone(),
                source: format!("{} ({file})", api.display),
                kind,
                name: r["name"].as_str().unwrap_or("").to_string(),
                expr: r["query"].as_str().unwrap_or("").to_string(),
                for_s: r["duration"].as_f64().map(|d| d as i64),
                severity: r["labels"]["severity"].as_str().map(str::to_string),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Verifying metric names

/// What pgready could establish about one metric name an alert uses.
#[derive(Debug, Clone, PartialEq)]
enum NameStatus {
    /// In the scrape of `by`.
    Exposed,
    /// Made by Prometheus itself (`up`, `ALERTS`, `scrape_*`).
    Builtin,
    /// A name of the scraped postgres_exporter release whose collector runs, with no
    /// series now (no standby, no slot…).
    NoSeries(String),
    /// Owned by a scraped component that does not expose it.
    Absent(String),
    /// Owned by nothing pgready scraped.
    Unverified(String),
}

struct Verifier<'a> {
    pg: Option<&'a Scrape>,
    node: Option<&'a Scrape>,
    others: &'a [Scrape],
}

const PROMETHEUS_BUILTINS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

impl Verifier<'_> {
    fn scrapes(&self) -> impl Iterator<Item = &Scrape> {
        self.pg
            .into_iter()
            .chain(self.node)
            .chain(self.others.iter())
            .filter(|s| s.reachable)
    }

    fn classify(&self, name: &str) -> NameStatus {
        if PROMETHEUS_BUILTINS.contains(&name) {
            return NameStatus::Builtin;
        }
        if self.scrapes().any(|s| s.names.contains(name)) {
            return NameStatus::Exposed;
        }
        if name.starts_with("pg_") {
            return match self.pg {
                Some(s) if s.reachable => NameStatus::classify_pg(name, s),
                Some(s) => NameStatus::Unverified(format!(
                    "postgres_exporter did not answer ({})",
                    s.error.as_deref().unwrap_or("no answer")
                )),
                None => NameStatus::Unverified(
                    "no postgres_exporter scraped (--exporter URL)".to_string(),
                ),
            };
        }
        if name.starts_with("node_") {
            return match self.node {
                Some(s) if s.reachable => NameStatus::Absent(format!(
                    "node_exporter {} does not expose it (its collector is off, or the name is from another release)",
                    s.version("node_exporter_build_info").unwrap_or_default()
                )),
                Some(s) => NameStatus::Unverified(format!(
                    "node_exporter did not answer ({})",
                    s.error.as_deref().unwrap_or("no answer")
                )),
                None => NameStatus::Unverified(
                    "no node_exporter scraped (--node-exporter URL)".to_string(),
                ),
            };
        }
        if name.contains(':') {
            return NameStatus::Unverified(
                "a recording rule that is not among the rules given".to_string(),
            );
        }
        // Another component: the scrape that exposes names with the same prefix owns it.
        let prefix = match name.find('_') {
            Some(i) => &name[..=i],
            None => name,
        };
        if let Some(owner) = self
            .scrapes()
            .find(|s| s.names.iter().any(|n| n.starts_with(prefix)))
        {
            return NameStatus::Absent(format!(
                "{} exposes {prefix}* metrics but not this one",
                owner.url
            ));
        }
        NameStatus::Unverified(format!(
            "no scraped component exposes {prefix}* metrics (add its exporter with --other-exporter URL)"
        ))
    }
}

impl NameStatus {
    fn classify_pg(name: &str, s: &Scrape) -> NameStatus {
        let version_text = s.version("postgres_exporter_build_info");
        let version = version_text.as_deref().and_then(parse_version);
        let shown = version_text.unwrap_or_else(|| "(version unknown)".to_string());
        let collectors = s.collectors();
        let Some(k) = catalogue().get(name) else {
            if let Some(hint) = stale_hint(name) {
                return NameStatus::Absent(hint);
            }
            if let Some(setting) = name.strip_prefix("pg_settings_") {
                return NameStatus::Absent(format!(
                    "postgres_exporter {shown} exposes no setting `{setting}` (pg_settings_* exists for numeric and boolean settings the exporter's role can read)"
                ));
            }
            return NameStatus::Absent(format!(
                "postgres_exporter {shown} does not expose it (a custom query of --extend.query-path that is not configured, or a name it never had)"
            ));
        };
        if let Some(v) = version {
            if v < k.first {
                return NameStatus::Absent(format!(
                    "first emitted by postgres_exporter {}; this exporter is {shown}",
                    show_version(k.first)
                ));
            }
            if v > k.last {
                let hint = stale_hint(name)
                    .map(|h| format!(": {h}"))
                    .unwrap_or_default();
                return NameStatus::Absent(format!(
                    "postgres_exporter emitted it up to {}, not {shown}{hint}",
                    show_version(k.last)
                ));
            }
        }
        let collector_era = match (k.collector_since, version) {
            (Some(since), Some(v)) => v >= since,
            (Some(_), None) => collectors.contains_key(&k.collector),
            (None, _) => false,
        };
        if !collector_era {
            return NameStatus::NoSeries(
                "a built-in metric of this release, with series only when its query returns rows"
                    .to_string(),
            );
        }
        // 0.11 and 0.12 registered the stat_bgwriter collector as `bgwriter`.
        let ran = collectors.get(&k.collector).or_else(|| {
            (k.collector == "stat_bgwriter")
                .then(|| collectors.get("bgwriter"))
                .flatten()
        });
        match ran {
            None => NameStatus::Absent(format!(
                "collector {c} is not enabled ({d}; start the exporter with --collector.{c})",
                c = k.collector,
                d = if k.default_enabled {
                    "on by default, turned off here"
                } else {
                    "off by default"
                }
            )),
            Some(0) => NameStatus::Absent(format!(
                "collector {} fails on this server (pg_scrape_collector_success 0: see the exporter's log)",
                k.collector
            )),
            Some(_) => NameStatus::NoSeries(format!(
                "collector {} runs; it has series only when there is something to report (a standby, a slot, a table)",
                k.collector
            )),
        }
    }
}

/// Recording rules: name → the leaf metric names their expressions read (followed
/// recursively; a cycle stops).
fn expand(
    name: &str,
    records: &BTreeMap<String, Vec<BTreeSet<String>>>,
    seen: &mut BTreeSet<String>,
    out: &mut BTreeSet<String>,
) {
    match records.get(name) {
        Some(exprs) if seen.insert(name.to_string()) => {
            for names in exprs {
                for n in names {
                    expand(n, records, seen, out);
                }
            }
        }
        Some(_) => {}
        None => {
            out.insert(name.to_string());
        }
    }
}

/// The `alerts` section: each rule's metric names classified, and each critical case
/// covered, covered only by unverifiable rules, stale, or missing.
fn alerts_section(
    rules: &[PromRule],
    sources: Vec<String>,
    skipped: Vec<String>,
    v: &Verifier<'_>,
    extra: &BTreeMap<String, Vec<String>>,
) -> Section {
    let mut records: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    for r in rules.iter().filter(|r| r.kind == "recording") {
        records
            .entry(r.name.clone())
            .or_default()
            .push(metric_names(&r.expr));
    }
    let mut verdicts: BTreeMap<String, NameStatus> = BTreeMap::new();
    let mut rule_facts = Vec::new();
    // Per alerting rule: (name, severity, direct+expanded names, ok, absent, unverified).
    struct Alert {
        name: String,
        severity: Option<String>,
        names: BTreeSet<String>,
        absent: Vec<(String, String)>,
        unverified: Vec<(String, String)>,
    }
    let mut alerts = Vec::new();
    let mut stale: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let mut unverified_all: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for r in rules {
        let direct = metric_names(&r.expr);
        let mut inputs = BTreeSet::new();
        for n in &direct {
            expand(n, &records, &mut BTreeSet::new(), &mut inputs);
        }
        let mut absent = Vec::new();
        let mut unverified = Vec::new();
        for n in &inputs {
            let st = verdicts
                .entry(n.clone())
                .or_insert_with(|| v.classify(n))
                .clone();
            match st {
                NameStatus::Absent(why) => absent.push((n.clone(), why)),
                NameStatus::Unverified(why) => unverified.push((n.clone(), why)),
                _ => {}
            }
        }
        if r.kind == "alerting" {
            for (n, why) in &absent {
                stale
                    .entry(n.clone())
                    .or_insert_with(|| (why.clone(), BTreeSet::new()))
                    .1
                    .insert(r.name.clone());
            }
            for (n, why) in &unverified {
                unverified_all
                    .entry(n.clone())
                    .or_insert_with(|| (why.clone(), BTreeSet::new()))
                    .1
                    .insert(r.name.clone());
            }
        }
        let pair = |l: &[(String, String)]| -> Vec<Value> {
            l.iter()
                .map(|(n, w)| json!({"name": n, "why": w}))
                .collect()
        };
        rule_facts.push(json!({
            "group": r.group,
            "name": r.name,
            "kind": r.kind,
            "severity": r.severity,
            "for_s": r.for_s,
            "source": r.source,
            "expr": r.expr,
            "metrics": direct,
            "inputs": inputs,
            "absent": pair(&absent),
            "unverified": pair(&unverified),
        }));
        if r.kind == "alerting" {
            let mut names = direct.clone();
            names.extend(inputs.iter().cloned());
            alerts.push(Alert {
                name: r.name.clone(),
                severity: r.severity.clone(),
                names,
                absent,
                unverified,
            });
        }
    }
    let mut case_facts = Vec::new();
    let mut unverified_cases = Vec::new();
    for c in cases() {
        let mut metrics: BTreeSet<&str> = c.metrics.iter().map(String::as_str).collect();
        if let Some(more) = extra.get(&c.id) {
            metrics.extend(more.iter().map(String::as_str));
        }
        let matching: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.names.iter().any(|n| metrics.contains(n.as_str())))
            .collect();
        let good: Vec<&&Alert> = matching
            .iter()
            .filter(|a| a.absent.is_empty() && a.unverified.is_empty())
            .collect();
        let unver: Vec<&&Alert> = matching
            .iter()
            .filter(|a| a.absent.is_empty() && !a.unverified.is_empty())
            .collect();
        let status = if !good.is_empty() {
            "covered"
        } else if !unver.is_empty() {
            "unverified"
        } else if !matching.is_empty() {
            "stale"
        } else {
            "missing"
        };
        let describe = |a: &Alert, l: &[(String, String)]| {
            format!(
                "{}: {}",
                a.name,
                l.iter()
                    .map(|(n, w)| format!("{n} ({w})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if status == "unverified" {
            unverified_cases.push(format!(
                "{} ({})",
                c.title,
                unver
                    .iter()
                    .map(|a| describe(a, &a.unverified))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        case_facts.push(json!({
            "id": c.id,
            "title": c.title,
            "status": status,
            "metrics": metrics,
            "alerts": good.iter().map(|a| json!({"name": a.name, "severity": a.severity})).collect::<Vec<_>>(),
            "unverified": unver.iter().map(|a| describe(a, &a.unverified)).collect::<Vec<_>>(),
            "stale": matching.iter().filter(|a| !a.absent.is_empty()).map(|a| describe(a, &a.absent)).collect::<Vec<_>>(),
        }));
    }
    let listed = |m: BTreeMap<String, (String, BTreeSet<String>)>| -> Vec<Value> {
        m.into_iter()
            .map(|(n, (why, alerts))| json!({"name": n, "why": why, "alerts": alerts}))
            .collect()
    };
    let data = json!({
        "sources": sources,
        "skipped": skipped,
        "rule_count": rules.len(),
        "alert_count": alerts.len(),
        "rules": rule_facts,
        "cases": case_facts,
        "stale_metrics": listed(stale),
        "unverified_metrics": listed(unverified_all),
    });
    if unverified_cases.is_empty() {
        Section::ok(data)
    } else {
        Section::partial(
            data,
            format!(
                "the alerts for {} use metrics pgready could not check against a scrape",
                unverified_cases.join("; ")
            ),
        )
    }
}

/// The sections `exporter`, `node_exporter` and `alerts` (blocking HTTP and file I/O: run
/// it on a blocking thread).
pub fn collect_prometheus(req: &Request) -> Vec<(&'static str, Section)> {
    let pg = req.exporter.as_ref().map(scrape);
    let node = req.node_exporter.as_ref().map(scrape);
    let others: Vec<Scrape> = req.other_exporters.iter().map(scrape).collect();
    let mut out = vec![
        (
            "exporter",
            pg.as_ref().map_or_else(
                || Section::missing(EXPORTER_NOT_GIVEN),
                |s| scrape_section(s, "postgres_exporter_build_info"),
            ),
        ),
        (
            "node_exporter",
            node.as_ref().map_or_else(
                || Section::missing(NODE_NOT_GIVEN),
                |s| scrape_section(s, "node_exporter_build_info"),
            ),
        ),
    ];
    let verifier = Verifier {
        pg: pg.as_ref(),
        node: node.as_ref(),
        others: &others,
    };
    let alerts = if req.rule_paths.is_empty() && req.prometheus.is_none() {
        Section::missing(RULES_NOT_GIVEN)
    } else {
        let mut rules = Vec::new();
        let mut sources = Vec::new();
        let mut skipped = Vec::new();
        let mut failure = None;
        match load_rule_files(&req.rule_paths) {
            Ok(set) => {
                rules.extend(set.rules);
                sources.extend(set.files);
                skipped.extend(set.skipped);
            }
            Err(e) => failure = Some(e),
        }
        if let Some(p) = &req.prometheus {
            match prometheus_rules(p) {
                Ok(r) => {
                    rules.extend(r);
                    sources.push(p.with_path("/api/v1/rules").display);
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) => Section::missing(format!("cannot read the alert rules: {e}")),
            None => alerts_section(&rules, sources, skipped, &verifier, &req.alert_metrics),
        }
    };
    out.push(("alerts", alerts));
    out
}

// ---------------------------------------------------------------------------------------
// pg_stat_statements (SQL on pgready's session)

/// The `statements` section: pg_stat_statements' own counters, read in the database
/// pgready is connected to (the view exists only where the extension was created).
pub async fn collect_statements(client: &Client) -> Section {
    let row = client
        .query_opt(
            "SELECT current_database()::text, n.nspname::text, e.extversion::text, \
                    to_regclass(format('%I.pg_stat_statements_info', n.nspname)) IS NOT NULL \
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'pg_stat_statements'",
            &[],
        )
        .await;
    let row = match row {
        Ok(Some(r)) => r,
        Ok(None) => {
            let db = client
                .query_one("SELECT current_database()::text", &[])
                .await
                .ok()
                .and_then(|r| r.try_get::<_, String>(0).ok())
                .unwrap_or_default();
            return Section::missing(format!(
                "pg_stat_statements is not created in database {db} (the one pgready connects to): \
                 its counters are read there; CREATE EXTENSION pg_stat_statements, or audit a database that has it"
            ));
        }
        Err(e) => return Section::missing(format!("reading pg_extension failed: {e}")),
    };
    let db: String = row.try_get(0).unwrap_or_default();
    let schema: String = row.try_get(1).unwrap_or_default();
    let version: String = row.try_get(2).unwrap_or_default();
    let has_info: bool = row.try_get(3).unwrap_or(false);
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let mut data = json!({
        "database": db,
        "schema": schema,
        "version": version,
        "entries": null,
    });
    // dealloc and stats_reset are left out (not null) until read: a rule that needs them
    // on a partial section is then not evaluated rather than broken.
    // Counting entries without their texts (pg_stat_statements(false)) fails when the
    // library is not loaded: that error is the fact.
    match client
        .query_one(
            &format!("SELECT count(*) FROM {quoted}.pg_stat_statements(false)"),
            &[],
        )
        .await
    {
        Ok(r) => data["entries"] = json!(r.try_get::<_, i64>(0).ok()),
        Err(e) => {
            let msg = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string());
            return Section::missing(format!(
                "pg_stat_statements is created in {db} but cannot be read: {msg}"
            ));
        }
    }
    if !has_info {
        return Section::partial(
            data,
            format!(
                "pg_stat_statements {version} in {db} has no pg_stat_statements_info view (1.9+, PostgreSQL 14): \
                 ALTER EXTENSION pg_stat_statements UPDATE"
            ),
        );
    }
    match client
        .query_one(
            &format!(
                "SELECT dealloc, extract(epoch FROM stats_reset)::bigint FROM {quoted}.pg_stat_statements_info"
            ),
            &[],
        )
        .await
    {
        Ok(r) => {
            data["dealloc"] = json!(r.try_get::<_, i64>(0).ok());
            data["stats_reset"] = json!(r.try_get::<_, Option<i64>>(1).ok().flatten());
            Section::ok(data)
        }
        Err(e) => Section::partial(data, format!("reading pg_stat_statements_info failed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// Log shipping (local host processes and syslog forwarding)

/// Process names (argv[0]'s file name, or a word of the command line for interpreters)
/// of agents that ship logs off the host.
const SHIPPERS: &[(&str, &str)] = &[
    ("vector", "Vector"),
    ("fluent-bit", "Fluent Bit"),
    ("td-agent-bit", "Fluent Bit (td-agent-bit)"),
    ("fluentd", "Fluentd"),
    ("td-agent", "Fluentd (td-agent)"),
    ("filebeat", "Filebeat"),
    ("promtail", "Promtail"),
    ("alloy", "Grafana Alloy"),
    ("grafana-agent", "Grafana Agent"),
    ("otelcol", "OpenTelemetry Collector"),
    ("otelcol-contrib", "OpenTelemetry Collector"),
    ("otelcol-k8s", "OpenTelemetry Collector"),
    ("datadog-agent", "Datadog Agent"),
    ("splunkd", "Splunk forwarder"),
    ("nxlog", "NXLog"),
    ("logstash", "Logstash"),
    ("amazon-cloudwatch-agent", "CloudWatch agent"),
    ("google_cloud_ops_agent_engine", "Google Cloud Ops agent"),
    (
        "systemd-journal-upload",
        "systemd-journal-upload (ships the journal)",
    ),
];

#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    /// argv[0]'s file name (or comm).
    name: String,
    args: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = e.path();
        let args: Vec<String> = std::fs::read(base.join("cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let name = args
            .first()
            .map(|a0| {
                a0.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(':')
                    .to_string()
            })
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string(base.join("comm"))
                    .ok()
                    .map(|c| c.trim().to_string())
            })
            .unwrap_or_default();
        out.push(Proc { pid, name, args });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// The local processes (for the pgbouncer collector too).
pub(crate) fn local_processes() -> Vec<(u32, String, Vec<String>)> {
    processes()
        .into_iter()
        .map(|p| (p.pid, p.name, p.args))
        .collect()
}

/// Lines of syslog daemon configuration that forward to another host.
fn syslog_forwarding(files: &[PathBuf], syslog_ng: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let fwd = if syslog_ng {
                line.contains("network(")
                    || line.contains("tcp(")
                    || line.contains("udp(")
                    || line.contains("syslog(\"")
            } else {
                line.contains("omfwd")
                    || line.contains("omrelp")
                    || line.contains("omhttp")
                    || line.contains("omkafka")
                    || line.contains("omelasticsearch")
                    || line
                        .split_whitespace()
                        .skip(1)
                        .any(|w| w.starts_with('@') && w.len() > 1 && !w.starts_with("@@@"))
            };
            if fwd {
                let shown: String = line.chars().take(200).collect();
                out.push(json!({"file": f.display().to_string(), "line": i + 1, "text": shown}));
            }
        }
    }
    out
}

/// `main` and the `*.ext` files of `dir` (rsyslog's and syslog-ng's include folders).
fn conf_files(main: &str, dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(main)];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut more: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

/// The `log_shipping` section. Always collected: for a remote server `inspected` is
/// false (its processes cannot be seen from here) and only evidence can prove shipping.
pub fn collect_log_shipping(req: &Request) -> Section {
    if !req.local {
        return Section::ok(json!({
            "inspected": false,
            "reason": "server is remote: its host's processes were not inspected (pgready looks for log shippers only among the processes of the machine it runs on, even with --host; run it on the database host, or record an evidence entry M5)",
            "agents": [],
            "syslog_daemons": [],
        }));
    }
    let procs = processes();
    let mut agents = Vec::new();
    let mut daemons = Vec::new();
    for p in &procs {
        let words: Vec<&str> = p
            .args
            .iter()
            .flat_map(|a| a.split_whitespace())
            .map(|w| w.rsplit('/').next().unwrap_or(w))
            .collect();
        let interpreted = matches!(p.name.as_str(), "ruby" | "java" | "python3" | "python");
        let found = SHIPPERS
            .iter()
            .find(|(n, _)| {
                p.name == *n
                    || (interpreted && words.iter().skip(1).any(|w| w == n))
                    || (p.name == "agent" && p.args.first().is_some_and(|a| a.contains("datadog")))
                        && *n == "datadog-agent"
            })
            .map(|(_, label)| (*label).to_string())
            .or_else(|| {
                req.log_shippers
                    .iter()
                    .find(|n| **n == p.name)
                    .map(|n| format!("{n} (declared in [monitoring] log_shippers)"))
            });
        if let Some(label) = found {
            agents.push(json!({"pid": p.pid, "name": p.name, "agent": label}));
        }
        if p.name == "rsyslogd" {
            // `rsyslogd -f FILE` reads FILE instead of /etc/rsyslog.conf.
            let main = p
                .args
                .iter()
                .position(|a| a == "-f")
                .and_then(|i| p.args.get(i + 1))
                .or_else(|| {
                    p.args
                        .iter()
                        .find_map(|a| a.strip_prefix("-f").filter(|f| !f.is_empty()).map(|_| a))
                })
                .map(|a| a.trim_start_matches("-f").to_string())
                .unwrap_or_else(|| "/etc/rsyslog.conf".to_string());
            let files = conf_files(&main, "/etc/rsyslog.d", "conf");
            daemons.push(json!({"pid": p.pid, "name": "rsyslogd", "forwarding": syslog_forwarding(&files, false)}));
        }
        if p.name == "syslog-ng" {
            let files = conf_files(
                "/etc/syslog-ng/syslog-ng.conf",
                "/etc/syslog-ng/conf.d",
                "conf",
            );
            daemons.push(json!({"pid": p.pid, "name": "syslog-ng", "forwarding": syslog_forwarding(&files, true)}));
        }
    }
    Section::ok(json!({
        "inspected": true,
        "reason": null,
        "agents": agents,
        "syslog_daemons": daemons,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        metric_names(e).into_iter().collect()
    }

    #[test]
    fn promql_metric_names() {
        assert_eq!(names("pg_up == 0"), ["pg_up"]);
        assert_eq!(
            names(
                "sum by (datname) (rate(pg_stat_database_deadlocks{datname!~\"template.*\"}[5m])) > 0"
            ),
            ["pg_stat_database_deadlocks"]
        );
        assert_eq!(
            names(
                "sum(pg_stat_activity_count) by (instance) / on(instance) group_left max(pg_settings_max_connections) > 0.8"
            ),
            ["pg_settings_max_connections", "pg_stat_activity_count"]
        );
        assert_eq!(
            names(
                "(node_filesystem_avail_bytes{mountpoint=\"/\"} * 100) / node_filesystem_size_bytes < 10 and ON (instance, device, mountpoint) node_filesystem_readonly == 0"
            ),
            [
                "node_filesystem_avail_bytes",
                "node_filesystem_readonly",
                "node_filesystem_size_bytes"
            ]
        );
        assert_eq!(
            names("time() - pg_postmaster_start_time_seconds < 60 offset 5m"),
            ["pg_postmaster_start_time_seconds"]
        );
        assert_eq!(names("{__name__=\"pg_up\", job=\"pg\"} == 0"), ["pg_up"]);
        assert_eq!(
            names("absent(up{job=\"postgres\"}) or vector(1) > bool 2e-3"),
            ["up"]
        );
        assert_eq!(
            names("increase(pg_stat_archiver_failed_count[10m:1m]) > 0 # comment pg_fake"),
            ["pg_stat_archiver_failed_count"]
        );
        assert_eq!(
            names("label_replace(job:pg_lag:max, \"x\", \"$1\", \"y\", \"(.*)\") > 1e9"),
            ["job:pg_lag:max"]
        );
        assert_eq!(
            names("topk(5, max without (pid) (pg_stat_activity_max_tx_duration))"),
            ["pg_stat_activity_max_tx_duration"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_s("5m"), Some(300));
        assert_eq!(duration_s("1h30m"), Some(5400));
        assert_eq!(duration_s("0s"), Some(0));
        assert_eq!(duration_s("2x"), None);
    }

    #[test]
    fn embedded_data_parses() {
        assert!(cases().len() >= 9, "{:?}", cases());
        assert!(catalogue().len() > 100);
        let k = &catalogue()["pg_replication_lag_seconds"];
        assert_eq!(k.first, (0, 13, 0));
        assert_eq!(k.collector, "replication");
    }

    #[test]
    fn exposition_and_labels() {
        let text = "# HELP x\npg_up 1\npg_scrape_collector_success{collector=\"bgwriter\"} 0\n\
                    postgres_exporter_build_info{branch=\"a\",version=\"0.11.1\",x=\"q\\\"z\"} 1\nnode_load1 0.5\n";
        let (names, kept) = parse_exposition(text);
        assert!(names.contains("node_load1"));
        let s = Scrape {
            reachable: true,
            names,
            samples: kept,
            ..Scrape::default()
        };
        assert_eq!(s.value("pg_up"), Some(1.0));
        assert_eq!(s.collectors().get("bgwriter"), Some(&0));
        assert_eq!(
            s.version("postgres_exporter_build_info").as_deref(),
            Some("0.11.1")
        );
    }

    #[test]
    fn urls_hide_passwords() {
        let u = HttpUrl::parse("http://mon:s3cret@db1:9187/metrics", "--exporter")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.fetch, "http://db1:9187/metrics");
        assert_eq!(u.display, "http://mon:***@db1:9187/metrics");
        assert_eq!(u.auth.as_deref(), Some("Basic bW9uOnMzY3JldA=="));
        assert!(HttpUrl::parse("db1:9187", "--exporter").is_err());
        let bare = HttpUrl::parse("http://db1:9187", "--exporter").map(HttpUrl::metrics_path);
        assert!(bare.is_ok_and(|u| u.fetch == "http://db1:9187/metrics"));
        assert_eq!(redact("https://a:b@h/x"), "https://a:***@h/x");
    }

    #[test]
    fn absent_names_are_explained() {
        let (names, samples) = parse_exposition(
            "pg_up 1\npg_stat_activity_count 1\npg_scrape_collector_success{collector=\"database\"} 1\n\
             pg_scrape_collector_success{collector=\"bgwriter\"} 0\n\
             postgres_exporter_build_info{version=\"0.11.1\"} 1\n",
        );
        let pg = Scrape {
            reachable: true,
            names,
            samples,
            ..Scrape::default()
        };
        let v = Verifier {
            pg: Some(&pg),
            node: None,
            others: &[],
        };
        assert_eq!(v.classify("pg_up"), NameStatus::Exposed);
        assert!(
            matches!(v.classify("pg_replication_lag"), NameStatus::Absent(w) if w.contains("pg_replication_lag_seconds"))
        );
        assert!(
            matches!(v.classify("pg_replication_lag_seconds"), NameStatus::Absent(w) if w.contains("0.13.0"))
        );
        assert!(
            matches!(v.classify("pg_stat_bgwriter_checkpoints_timed_total"), NameStatus::Absent(w) if w.contains("fails"))
        );
        assert!(matches!(
            v.classify("pg_stat_replication_pg_wal_lsn_diff"),
            NameStatus::NoSeries(_)
        ));
        assert!(matches!(
            v.classify("node_filesystem_avail_bytes"),
            NameStatus::Unverified(_)
        ));
        assert!(matches!(
            v.classify("pgbackrest_backup_since_last_completion_seconds"),
            NameStatus::Unverified(_)
        ));
        assert_eq!(v.classify("up"), NameStatus::Builtin);
    }

    #[test]
    fn rule_files_parse_with_positions() {
        let ok = "groups:\n- name: pg\n  rules:\n  - alert: PgDown\n    expr: pg_up == 0\n    for: 1m\n    labels:\n      severity: critical\n  - record: job:x:sum\n    expr: sum(pg_up)\n";
        let r = parse_rule_file(ok, "f.yml").unwrap_or_else(|_| panic!("parse"));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].for_s, Some(60));
        assert_eq!(r[0].severity.as_deref(), Some("critical"));
        let crd = "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec:\n  groups:\n  - name: g\n    rules:\n    - alert: A\n      expr: up == 0\n";
        assert!(parse_rule_file(crd, "c.yml").is_ok_and(|r| r.len() == 1));
        match parse_rule_file("groups:\n  - name: [\n", "bad.yml") {
            Err(RuleFileError::Invalid(m)) => {
                assert!(m.starts_with(":2:") || m.starts_with(":3:"), "{m}")
            }
            _ => panic!("expected a YAML error"),
        }
        assert!(matches!(
            parse_rule_file("route:\n  receiver: x\n", "am.yml"),
            Err(RuleFileError::NotRules(_))
        ));
    }
}
