//! `pgready.toml`: the team's context, rule parameter overrides, waivers and the dated
//! evidence for what no machine can observe (a restore test, a load test, training).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::value::Datetime;

use crate::rules::{Diagnostic, LoadError, Location, RulePack, line_col};

/// The file's content, validated.
#[derive(Debug, Default, Clone)]
pub struct Config {
    /// Where it was read from (None when there is no file).
    pub path: Option<PathBuf>,
    pub context: ContextConfig,
    pub verdict: VerdictConfig,
    pub rules: BTreeMap<String, RuleConfig>,
    pub waivers: Vec<Waiver>,
    pub evidence: Vec<Evidence>,
    /// `[runbooks]`: the team's runbook folder (docs section, D1–D6, M8, B7).
    pub runbooks: RunbooksConfig,
    /// `[backup]`: which backup tool holds this server's backups (flags win).
    pub backup: BackupConfig,
    /// `[releases]`: a newer release table than the embedded one (S10).
    pub releases: ReleasesConfig,
    /// `[monitoring]`: exporters, alert rules, log shippers (M2, M4, M5; flags win).
    pub monitoring: MonitoringConfig,
    /// `[pgbouncer]`: PgBouncer's admin console (C9; `--pgbouncer` wins).
    pub pgbouncer: PgbouncerConfig,
    /// `[tls]`: the names clients use for the server (S5 name check; `--tls-name` wins).
    pub tls: TlsConfig,
    /// `[host]`: where the host facts come from (`--host`, `--ssh-option` win).
    pub host: HostConfig,
    spans: BTreeMap<String, (usize, usize)>,
}

/// `[tls]` of pgready.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Host names (or addresses) clients use to reach the server: the server certificate
    /// must name each of them (libpq's verify-full rules). `--tls-name` wins.
    #[serde(default)]
    pub names: Vec<String>,
}

/// `[host]` of pgready.toml: the host facts (`host`, `sockets`, `firewall`) over SSH.
#[derive(Debug, Default, Clone)]
pub struct HostConfig {
    /// `ssh = "ssh://[user@]host[:port]"`.
    pub ssh: Option<crate::collect::remote::SshTarget>,
    /// `ssh_options = ["KEY=VALUE", …]`, given to ssh as `-o`.
    pub ssh_options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    ssh: Option<String>,
    #[serde(default, alias = "ssh-options")]
    ssh_options: Vec<String>,
}

/// `[monitoring]` of pgready.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// postgres_exporter's metrics URL.
    pub exporter: Option<String>,
    /// node_exporter's metrics URL.
    pub node_exporter: Option<String>,
    /// Other exporters whose names the alert rules may use.
    #[serde(default)]
    pub other_exporters: Vec<String>,
    /// Alert rule files or folders; a relative path is taken from this file's folder.
    #[serde(default)]
    pub prometheus_rules: Vec<PathBuf>,
    /// A Prometheus server (its /api/v1/rules).
    pub prometheus: Option<String>,
    /// Extra metric names that recognise an alert case (case id → names).
    #[serde(default)]
    pub alert_metrics: BTreeMap<String, Vec<String>>,
    /// Extra process names counted as log shippers.
    #[serde(default)]
    pub log_shippers: Vec<String>,
}

/// `[pgbouncer]` of pgready.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgbouncerConfig {
    /// The admin console, e.g. postgresql://admin@127.0.0.1:6432/pgbouncer.
    pub uri: Option<String>,
}

/// `[releases]` of pgready.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasesConfig {
    /// A release table in the format of data/releases.toml; a relative path is taken from
    /// the configuration file's folder. `--releases FILE` wins.
    pub file: Option<PathBuf>,
}

/// `[backup]` of pgready.toml: the same keys as the flags (`--pgbackrest-stanza` is
/// `pgbackrest_stanza`, or `pgbackrest-stanza`). Relative paths are taken from the file's folder.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    #[serde(alias = "pgbackrest-stanza")]
    pub pgbackrest_stanza: Option<String>,
    #[serde(alias = "pgbackrest-config")]
    pub pgbackrest_config: Option<PathBuf>,
    #[serde(alias = "barman-server")]
    pub barman_server: Option<String>,
    #[serde(alias = "barman-config")]
    pub barman_config: Option<PathBuf>,
    #[serde(alias = "walg-env")]
    pub walg_env: Option<PathBuf>,
}

/// `[runbooks]` of pgready.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbooksConfig {
    /// The runbook folder; a relative path is taken from the configuration file's folder.
    /// `--runbooks DIR` wins.
    pub dir: Option<PathBuf>,
    /// Where the runbooks are published (http or https): D5 checks that it answers.
    pub url: Option<String>,
    /// The operations team, matched against the training records (D6).
    #[serde(default)]
    pub roster: Vec<String>,
    /// The runbook ids the rules require.
    #[serde(default)]
    pub required: RequiredRunbooks,
}

/// `[runbooks.required]`: runbook ids by kind (defaults: the checklist's runbooks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequiredRunbooks {
    /// Critical incidents (D1).
    pub critical: Vec<String>,
    /// Maintenance procedures (D2).
    pub maintenance: Vec<String>,
    /// The monitoring runbook (M8).
    pub monitoring: Vec<String>,
}

impl Default for RequiredRunbooks {
    fn default() -> Self {
        let v = |ids: &[&str]| ids.iter().map(|s| (*s).to_string()).collect();
        Self {
            critical: v(&[
                "database-down",
                "disk-full",
                "replication-lag",
                "connection-saturation",
                "restore-pitr",
                "failover",
            ]),
            maintenance: v(&[
                "vacuum-bloat",
                "upgrade-minor-major",
                "certificate-rotation",
                "backup-verification",
            ]),
            monitoring: v(&["monitoring"]),
        }
    }
}

impl RunbooksConfig {
    /// What is wrong with the section (empty when it is fine).
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(url) = &self.url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                out.push(format!(
                    "url `{url}` must start with http:// or https:// (the address where on-call reads the runbooks)"
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.roster {
            if name.trim().is_empty() {
                out.push("roster: a name is empty".to_string());
            } else if !seen.insert(name.trim().to_lowercase()) {
                out.push(format!("roster: `{name}` is listed twice"));
            }
        }
        let r = &self.required;
        for (kind, ids) in [
            ("critical", &r.critical),
            ("maintenance", &r.maintenance),
            ("monitoring", &r.monitoring),
        ] {
            for id in ids {
                if id.is_empty()
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    out.push(format!(
                        "required.{kind}: `{id}` is not a runbook id (letters, digits, - _ . as in the front matter's `id:`)"
                    ));
                }
            }
        }
        out
    }
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContextConfig {
    pub size: Option<Size>,
    pub criticality: Option<Criticality>,
    pub deployment: Option<Deployment>,
    pub workload: Option<Workload>,
    /// Storage class of the devices holding PGDATA and pg_wal (detected from the host
    /// when the server is local).
    pub storage: Option<Storage>,
    /// RAM available to PostgreSQL, a size such as "64GB" (required when `deployment =
    /// managed`; detected from the host, honouring cgroup limits, when local).
    #[serde(default, deserialize_with = "de_ram")]
    pub ram: Option<i64>,
    /// CPUs available to PostgreSQL (required when managed; detected when local).
    #[serde(default, deserialize_with = "de_cpus")]
    pub cpus: Option<u32>,
}

/// The storage classes PGTune distinguishes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    Hdd,
    Ssd,
    San,
    Nvme,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Hdd => "hdd",
            Storage::Ssd => "ssd",
            Storage::San => "san",
            Storage::Nvme => "nvme",
        }
    }
}

/// Parse a RAM size as written by people: `64GB`, `64 GB`, `64G`, `64GiB`, `65536MB`,
/// `512MiB`, `1TB` (binary multiples, like PostgreSQL's units), or a plain byte count.
pub fn parse_ram(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("not a RAM size: '{s}' (write e.g. 64GB or 512MB)"))?;
    let mult: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit '{other}' in RAM size '{s}' (use MB, GB or TB, e.g. 64GB)"
            ));
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("RAM size '{s}' is too large"))?;
    if bytes < 64 << 20 {
        return Err(format!(
            "RAM size '{s}' is below 64 MB: write the unit (e.g. 64GB)"
        ));
    }
    Ok(bytes)
}

/// Parse a CPU count: 1 to 4096.
pub fn parse_cpus(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!(
            "not a CPU count: '{s}' (a whole number from 1 to 4096)"
        )),
    }
}

fn de_ram<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ram {
        Text(String),
        Bytes(i64),
    }
    match Ram::deserialize(d)? {
        Ram::Text(s) => parse_ram(&s).map(Some).map_err(serde::de::Error::custom),
        Ram::Bytes(n) => parse_ram(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn de_cpus<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    parse_cpus(&n.to_string())
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Size {
    Startup,
    Mid,
    Enterprise,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Criticality {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Deployment {
    SelfManaged,
    Managed,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Web,
    Oltp,
    Dw,
    Mixed,
    Desktop,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictConfig {
    /// Overrides `scoring.slightly_below` of verdict.toml.
    pub slightly_below: Option<f64>,
}

/// Per-rule settings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default)]
    pub params: toml::Table,
}

/// An accepted exception: the rule is reported as `waived`, not as passed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub rule: String,
    pub reason: String,
    pub by: String,
    /// The waiver lapses after this date.
    #[serde(default)]
    pub until: Option<Datetime>,
}

/// A dated, signed-off attestation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub item: String,
    pub date: Datetime,
    pub by: String,
    pub result: EvidenceResult,
    pub summary: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceResult {
    Pass,
    Fail,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    context: ContextConfig,
    #[serde(default)]
    verdict: VerdictConfig,
    #[serde(default)]
    rules: BTreeMap<String, Spanned<RuleConfig>>,
    #[serde(default)]
    waiver: Vec<Spanned<Waiver>>,
    #[serde(default)]
    evidence: Vec<Spanned<Evidence>>,
    #[serde(default)]
    runbooks: Option<Spanned<RunbooksConfig>>,
    #[serde(default)]
    backup: BackupConfig,
    #[serde(default)]
    releases: ReleasesConfig,
    #[serde(default)]
    monitoring: MonitoringConfig,
    #[serde(default)]
    pgbouncer: PgbouncerConfig,
    #[serde(default)]
    tls: TlsConfig,
    #[serde(default)]
    host: Option<Spanned<RawHost>>,
}

/// The name looked for in the current folder when `--config` is not given.
pub const DEFAULT_FILE: &str = "pgready.toml";

fn diag(path: &Path, text: &str, offset: usize, message: String) -> Diagnostic {
    let (line, column) = line_col(text, offset);
    Diagnostic {
        location: Location {
            file: path.display().to_string(),
            line,
            column,
        },
        message,
    }
}

/// Epoch seconds (UTC midnight for a plain date) of a TOML date or date-time.
pub fn datetime_epoch(d: &Datetime) -> Option<i64> {
    let date = d.date?;
    let month = time::Month::try_from(date.month).ok()?;
    let day = time::Date::from_calendar_date(i32::from(date.year), month, date.day).ok()?;
    let mut t = day.midnight().assume_utc();
    if let Some(tm) = d.time {
        t = t.replace_time(time::Time::from_hms(tm.hour, tm.minute, tm.second).ok()?);
    }
    let mut epoch = t.unix_timestamp();
    if let Some(toml::value::Offset::Custom { minutes }) = d.offset {
        epoch -= i64::from(minutes) * 60;
    }
    Some(epoch)
}

impl Config {
    /// Read `explicit`, else `./pgready.toml` when it exists, else an empty config.
    pub fn load(explicit: Option<&Path>) -> Result<Config, LoadError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                if !p.is_file() {
                    return Ok(Config::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LoadError(vec![diag(
                &path,
                "",
                0,
                format!(
                    "cannot read the configuration file: {e} (check the path given to --config)"
                ),
            )])
        })?;
        Self::parse(&path, &text)
    }

    /// Parse a configuration file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Config, LoadError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            LoadError(vec![diag(
                path,
                text,
                e.span().map_or(0, |s| s.start),
                e.message().to_string(),
            )])
        })?;
        let mut errs = Vec::new();
        let mut spans = BTreeMap::new();
        let mut evidence = Vec::new();
        for e in raw.evidence {
            let at = e.span().start;
            let e = e.into_inner();
            if datetime_epoch(&e.date).is_none() {
                errs.push(diag(
                    path,
                    text,
                    at,
                    format!(
                        "evidence for {}: `date` must be a date such as 2026-11-20",
                        e.item
                    ),
                ));
            }
            if e.by.trim().is_empty() {
                errs.push(diag(
                    path,
                    text,
                    at,
                    format!("evidence for {}: `by` must name who signed it off", e.item),
                ));
            }
            spans.insert(format!("evidence:{}", evidence.len()), line_col(text, at));
            evidence.push(e);
        }
        let mut waivers = Vec::new();
        for w in raw.waiver {
            let at = w.span().start;
            let w = w.into_inner();
            spans.insert(format!("waiver:{}", w.rule), line_col(text, at));
            waivers.push(w);
        }
        let mut rules = BTreeMap::new();
        for (id, rc) in raw.rules {
            spans.insert(format!("rule:{id}"), line_col(text, rc.span().start));
            rules.insert(id, rc.into_inner());
        }
        let mut runbooks = RunbooksConfig::default();
        if let Some(rb) = raw.runbooks {
            let at = rb.span().start;
            runbooks = rb.into_inner();
            for problem in runbooks.problems() {
                errs.push(diag(path, text, at, format!("[runbooks]: {problem}")));
            }
            if let Some(dir) = runbooks.dir.as_mut().filter(|d| d.is_relative()) {
                let base = path.parent().unwrap_or(Path::new(""));
                *dir = base.join(&*dir);
            }
        }
        let mut backup = raw.backup;
        for file in [
            &mut backup.pgbackrest_config,
            &mut backup.barman_config,
            &mut backup.walg_env,
        ]
        .into_iter()
        .flatten()
        .filter(|f| f.is_relative())
        {
            *file = path.parent().unwrap_or(Path::new("")).join(&*file);
        }
        let mut releases = raw.releases;
        if let Some(file) = releases.file.as_mut().filter(|f| f.is_relative()) {
            *file = path.parent().unwrap_or(Path::new("")).join(&*file);
        }
        let mut monitoring = raw.monitoring;
        for rules_path in monitoring
            .prometheus_rules
            .iter_mut()
            .filter(|f| f.is_relative())
        {
            *rules_path = path.parent().unwrap_or(Path::new("")).join(&*rules_path);
        }
        let mut host = HostConfig::default();
        if let Some(h) = raw.host {
            let at = h.span().start;
            let h = h.into_inner();
            if let Some(url) = &h.ssh {
                match url.parse() {
                    Ok(t) => host.ssh = Some(t),
                    Err(e) => errs.push(diag(path, text, at, format!("[host] ssh: {e}"))),
                }
            }
            for o in &h.ssh_options {
                match crate::collect::remote::check_ssh_option(o) {
                    Ok(o) => host.ssh_options.push(o),
                    Err(e) => errs.push(diag(path, text, at, format!("[host] ssh_options: {e}"))),
                }
            }
        }
        if !errs.is_empty() {
            return Err(LoadError(errs));
        }
        Ok(Config {
            host,
            monitoring,
            pgbouncer: raw.pgbouncer,
            tls: raw.tls,
            releases,
            runbooks,
            backup,
            path: Some(path.to_path_buf()),
            context: raw.context,
            verdict: raw.verdict,
            rules,
            waivers,
            evidence,
            spans,
        })
    }

    fn location(&self, key: &str) -> Location {
        let (line, column) = self.spans.get(key).copied().unwrap_or((0, 0));
        Location {
            file: self
                .path
                .as_ref()
                .map_or_else(|| DEFAULT_FILE.to_string(), |p| p.display().to_string()),
            line,
            column,
        }
    }

    /// Check the references to rules (overrides, waivers) and the evidence items against
    /// the loaded pack.
    pub fn validate(&self, pack: &RulePack) -> Result<(), LoadError> {
        let mut errs = Vec::new();
        for (id, rc) in &self.rules {
            let Some(rule) = pack.get(id) else {
                errs.push(Diagnostic {
                    location: self.location(&format!("rule:{id}")),
                    message: format!("[rules.\"{id}\"]: no such rule (see `pgready rules list`)"),
                });
                continue;
            };
            for (k, v) in &rc.params {
                match rule.params.get(k) {
                    None => errs.push(Diagnostic {
                        location: self.location(&format!("rule:{id}")),
                        message: format!(
                            "[rules.\"{id}\".params]: unknown parameter `{k}` (this rule has: {})",
                            rule.params.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    }),
                    Some(default) => {
                        let same_kind = matches!(
                            (default, v),
                            (
                                serde_json::Value::Number(_),
                                toml::Value::Integer(_) | toml::Value::Float(_)
                            ) | (serde_json::Value::String(_), toml::Value::String(_))
                                | (serde_json::Value::Bool(_), toml::Value::Boolean(_))
                                | (serde_json::Value::Array(_), toml::Value::Array(_))
                        );
                        if !same_kind {
                            errs.push(Diagnostic {
                                location: self.location(&format!("rule:{id}")),
                                message: format!("[rules.\"{id}\".params]: `{k}` must have the same type as its default ({default})"),
                            });
                        }
                    }
                }
            }
        }
        for w in &self.waivers {
            if pack.get(&w.rule).is_none() {
                errs.push(Diagnostic {
                    location: self.location(&format!("waiver:{}", w.rule)),
                    message: format!(
                        "[[waiver]]: no such rule `{}` (see `pgready rules list`)",
                        w.rule
                    ),
                });
            }
        }
        for (i, e) in self.evidence.iter().enumerate() {
            if !pack.verdict.items.iter().any(|it| it.id == e.item) {
                errs.push(Diagnostic {
                    location: self.location(&format!("evidence:{i}")),
                    message: format!(
                        "[[evidence]]: unknown checklist item `{}` (see `pgready rules coverage`)",
                        e.item
                    ),
                });
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(LoadError(errs))
        }
    }

    /// The parameters of `rule` after this file's overrides.
    pub fn params_for(
        &self,
        rule: &crate::rules::Rule,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut params = rule.params.clone();
        if let Some(rc) = self.rules.get(&rule.id) {
            for (k, v) in &rc.params {
                if let Ok(v) = serde_json::to_value(v) {
                    params.insert(k.clone(), v);
                }
            }
        }
        params
    }

    /// The active waiver of `rule_id` at `now`, if any.
    pub fn waiver(&self, rule_id: &str, now: i64) -> Option<&Waiver> {
        self.waivers.iter().find(|w| {
            w.rule == rule_id
                && w.until
                    .as_ref()
                    .and_then(datetime_epoch)
                    .is_none_or(|until| now < until + 86_400)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_evidence_and_context() {
        let text = r#"
[context]
deployment = "managed"

[[evidence]]
item = "B3"
date = 2026-11-20
by = "Dana"
result = "pass"
summary = "restored"
[evidence.metrics]
rto_min = 41
"#;
        let c = Config::parse(Path::new("pgready.toml"), text).map_err(|e| e.to_string());
        let Ok(c) = c else { panic!("{c:?}") };
        assert_eq!(c.context.deployment, Some(Deployment::Managed));
        assert_eq!(c.evidence.len(), 1);
        assert_eq!(datetime_epoch(&c.evidence[0].date), Some(1_795_132_800));
        assert_eq!(c.evidence[0].metrics.get("rto_min"), Some(&41.0));
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let text = "[context]\nsize = \"mid\"\ncolour = \"red\"\n";
        let err = Config::parse(Path::new("pgready.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("pgready.toml:3:1: unknown field `colour`"),
            "{err}"
        );
        let text = "[context]\ndeployment = \"cloud\"\n";
        let err = Config::parse(Path::new("pgready.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown variant `cloud`"), "{err}");
    }
}
