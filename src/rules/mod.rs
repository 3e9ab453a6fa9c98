//! Rules as data: the TOML schema, loading with `file:line:col` diagnostics, and the
//! verdict definition (`checks/verdict.toml`).
//!
//! Loading happens in two phases: deserialise the raw TOML (unknown keys are errors),
//! then validate everything (duplicate ids, CEL that does not compile, unknown fact
//! sections, functions or params, unknown pillars or checklist items). Every problem is
//! collected; any problem means no report.

pub mod expr;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::facts::SECTIONS;
use expr::Compiled;
pub use verdict::Verdict;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_checks.rs"));
}

/// The five pillars of the checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pillar {
    Security,
    Configuration,
    Monitoring,
    Backup,
    Runbooks,
}

impl Pillar {
    pub const ALL: [Pillar; 5] = [
        Pillar::Security,
        Pillar::Configuration,
        Pillar::Monitoring,
        Pillar::Backup,
        Pillar::Runbooks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pillar::Security => "security",
            Pillar::Configuration => "configuration",
            Pillar::Monitoring => "monitoring",
            Pillar::Backup => "backup",
            Pillar::Runbooks => "runbooks",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Pillar::Security => "Security",
            Pillar::Configuration => "Configuration",
            Pillar::Monitoring => "Monitoring",
            Pillar::Backup => "Backup and disaster recovery",
            Pillar::Runbooks => "Documentation and runbooks",
        }
    }
}

impl fmt::Display for Pillar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a failure matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A problem found while loading rules or configuration.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem of a rule pack or a configuration file; the caller exits 2.
#[derive(Debug)]
pub struct LoadError(pub Vec<Diagnostic>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// How a rule decides.
#[derive(Debug)]
pub enum Test {
    /// A boolean: true passes.
    Check(Compiled),
    /// A list: empty passes; each element names an offender.
    Offenders(Compiled),
}

impl Test {
    pub fn compiled(&self) -> &Compiled {
        match self {
            Test::Check(c) | Test::Offenders(c) => c,
        }
    }
}

/// A validated rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub pillar: Pillar,
    pub title: String,
    pub covers: Vec<String>,
    pub severity: Severity,
    pub level: u8,
    pub rationale: String,
    pub when: Option<Compiled>,
    pub test: Test,
    pub actual: Option<Compiled>,
    pub expected: Option<String>,
    /// When false, the rule is `not_evaluated` (after `when`, before the test): the facts
    /// are there but not enough to judge (statistics too young, RAM unknown).
    pub evaluable: Option<Compiled>,
    /// The reason given when `evaluable` is false (a CEL string).
    pub not_evaluated_reason: Option<Compiled>,
    /// The settings this rule recommends (`pgready tune`), each computed by a CEL
    /// expression from the same facts and parameters as the check.
    pub tune: Vec<Tune>,
    pub remediation: String,
    pub references: Vec<String>,
    /// Default parameters (before `pgready.toml` overrides).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Fact sections the rule reads (derived from its expressions, plus `requires`).
    pub sections: BTreeSet<String>,
    /// `[rule.query]`: the rule's own read-only SQL, whose rows its expressions read as
    /// `rows` (collected into the `queries` section).
    pub query: Option<Query>,
    pub location: Location,
}

/// A rule's own SQL (`[rule.query]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// One read-only query (SELECT, WITH, VALUES or TABLE), without a trailing `;`.
    pub sql: String,
    /// Run once (`cluster`), or in every database pgready can connect to
    /// (`each_database`, each row then carrying a `database` key).
    pub each_database: bool,
}

/// Check that `sql` is one read-only query and return it without its trailing `;`.
///
/// It is run as a subquery, `SELECT to_jsonb(q) FROM (<sql>) q`, in a read-only
/// transaction, with the extended protocol (which refuses several statements): anything
/// but a query fails there anyway; this says so at load time, before any connection.
pub fn check_query_sql(sql: &str) -> Result<String, String> {
    let body = sql
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    // Skip leading comments to find the first keyword.
    let mut rest = body;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    if !["select", "with", "values", "table"].contains(&word.as_str()) {
        return Err(format!(
            "must be one read-only query starting with SELECT, WITH, VALUES or TABLE{}",
            if word.is_empty() {
                String::new()
            } else {
                format!(", not {}", word.to_ascii_uppercase())
            }
        ));
    }
    if body.contains(';') && body.matches(';').count() > quoted_semicolons(body) {
        return Err("must be one query: it contains `;` outside a string".to_string());
    }
    Ok(body.to_string())
}

/// The `;` inside single-quoted strings, double-quoted names or comments of `sql`.
fn quoted_semicolons(sql: &str) -> usize {
    let (mut n, mut quote, mut chars) = (0, None::<char>, sql.chars().peekable());
    let mut line_comment = false;
    let mut block_comment = false;
    while let Some(c) = chars.next() {
        if line_comment {
            line_comment = c != '\n';
            n += usize::from(c == ';');
            continue;
        }
        if block_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block_comment = false;
            }
            n += usize::from(c == ';');
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), ';') => n += 1,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => line_comment = true,
            (None, '/') if chars.peek() == Some(&'*') => {
                chars.next();
                block_comment = true;
            }
            _ => {}
        }
    }
    n
}

impl Rule {
    fn expressions(&self) -> impl Iterator<Item = &Compiled> {
        self.when
            .iter()
            .chain(std::iter::once(self.test.compiled()))
            .chain(self.actual.iter())
    }
}

/// How a recommended value is written in `ALTER SYSTEM` / postgresql.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TuneUnit {
    /// An integer number of bytes, written with PostgreSQL's units (`6016MB`).
    Bytes,
    /// An integer number of milliseconds, written `10min`, `30s`, `250ms`.
    Ms,
    /// A plain integer.
    Int,
    /// A number (double).
    Real,
    /// `on` / `off`.
    Bool,
    /// A string or enum value, quoted.
    Text,
}

impl TuneUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            TuneUnit::Bytes => "bytes",
            TuneUnit::Ms => "ms",
            TuneUnit::Int => "int",
            TuneUnit::Real => "real",
            TuneUnit::Bool => "bool",
            TuneUnit::Text => "text",
        }
    }
}

/// One setting a rule recommends (`[rule.tune]` or `[[rule.tune]]`).
#[derive(Debug)]
pub struct Tune {
    /// The GUC, e.g. `shared_buffers`.
    pub setting: String,
    /// CEL computing the recommended value (in the unit of `unit`).
    pub value: Compiled,
    pub unit: TuneUnit,
    /// CEL string: the formula with its inputs (`25% of 23.5 GB RAM (cgroup limit)`).
    pub formula: Option<Compiled>,
    /// CEL bool: recommend this setting only when true.
    pub when: Option<Compiled>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTune {
    setting: String,
    value: String,
    unit: TuneUnit,
    #[serde(default)]
    formula: Option<String>,
    #[serde(default)]
    when: Option<String>,
}

/// The loaded, validated rules, in a stable order (file path, then position).
#[derive(Debug)]
pub struct RulePack {
    pub rules: Vec<Rule>,
    pub verdict: Verdict,
}

impl RulePack {
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The rules' own queries (`[rule.query]`), for the collector.
    pub fn queries(&self) -> Vec<crate::collect::postgres::queries::UserQuery> {
        self.rules
            .iter()
            .filter_map(|r| {
                r.query
                    .as_ref()
                    .map(|q| crate::collect::postgres::queries::UserQuery {
                        rule_id: r.id.clone(),
                        sql: q.sql.clone(),
                        each_database: q.each_database,
                    })
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    pillar: Spanned<String>,
    title: String,
    covers: Spanned<Vec<String>>,
    severity: Severity,
    level: Spanned<u8>,
    rationale: String,
    #[serde(default)]
    when: Option<Spanned<String>>,
    #[serde(default)]
    check: Option<Spanned<String>>,
    #[serde(default)]
    offenders: Option<Spanned<String>>,
    #[serde(default)]
    actual: Option<Spanned<String>>,
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    evaluable: Option<Spanned<String>>,
    #[serde(default)]
    not_evaluated_reason: Option<Spanned<String>>,
    /// `[rule.tune]` (one table) or `[[rule.tune]]` (several).
    #[serde(default)]
    tune: Option<Spanned<toml::Value>>,
    remediation: String,
    references: Vec<String>,
    #[serde(default)]
    requires: Vec<Spanned<String>>,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    query: Option<RawQuery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    sql: Spanned<String>,
    #[serde(default)]
    scope: Option<Spanned<String>>,
}

/// A source of rule files: the embedded pack or a user's folder.
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// The files of the embedded pack (`checks/**/*.toml`, without `verdict.toml`).
pub fn embedded_files() -> Vec<SourceFile> {
    embedded::EMBEDDED_CHECKS
        .iter()
        .filter(|(name, _)| !name.ends_with("verdict.toml"))
        .map(|(name, text)| SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        })
        .collect()
}

/// The embedded `checks/verdict.toml`.
pub fn embedded_verdict() -> SourceFile {
    let (name, text) = embedded::EMBEDDED_CHECKS
        .iter()
        .find(|(name, _)| name.ends_with("verdict.toml"))
        .copied()
        .unwrap_or(("checks/verdict.toml", ""));
    SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    }
}

/// Read every `*.toml` under `dir` (recursively, sorted).
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, LoadError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let fail = |msg: String| {
        LoadError(vec![Diagnostic {
            location: Location {
                file: dir.display().to_string(),
                line: 0,
                column: 0,
            },
            message: msg,
        }])
    };
    let mut paths = Vec::new();
    walk(dir, &mut paths).map_err(|e| {
        fail(format!(
            "cannot read rule folder: {e} (check the path given to --rules)"
        ))
    })?;
    if paths.is_empty() {
        return Err(fail(
            "no *.toml rule files in this folder (check the path given to --rules)".into(),
        ));
    }
    paths
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(&p)
                .map(|text| SourceFile {
                    name: p.display().to_string(),
                    text,
                })
                .map_err(|e| fail(format!("cannot read {}: {e}", p.display())))
        })
        .collect()
}

/// Byte offset → (line, column), both 1-based.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

struct Ctx<'a> {
    file: &'a SourceFile,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn at(&self, offset: usize) -> Location {
        let (line, column) = line_col(&self.file.text, offset);
        Location {
            file: self.file.name.clone(),
            line,
            column,
        }
    }

    fn error(&mut self, offset: usize, message: impl Into<String>) {
        let location = self.at(offset);
        self.diags.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    /// Compile an expression written at `span`, mapping CEL positions into the file.
    fn compile(&mut self, rule: &str, key: &str, s: &Spanned<String>) -> Option<Compiled> {
        match expr::compile(s.get_ref()) {
            Ok(c) => Some(c),
            Err(errs) => {
                let start = s.span().start;
                let text = &self.file.text[start.min(self.file.text.len())..];
                // Skip the opening quote(s) of the TOML string.
                let quote = if text.starts_with("'''") || text.starts_with("\"\"\"") {
                    3 + usize::from(text[3..].starts_with('\n'))
                } else {
                    1
                };
                let (l0, c0) = line_col(&self.file.text, start + quote);
                for e in errs {
                    let (line, column) = if e.line <= 1 {
                        (l0, c0 + e.column - 1)
                    } else {
                        (l0 + e.line - 1, e.column)
                    };
                    self.diags.push(Diagnostic {
                        location: Location {
                            file: self.file.name.clone(),
                            line,
                            column,
                        },
                        message: format!("rule {rule}: {key}: {}", e.message),
                    });
                }
                None
            }
        }
    }
}

/// Names an expression may read besides fact sections.
const BUILTIN_ROOTS: &[&str] = &["now", "params"];

/// Load and validate the rules of `files` against the checklist of `verdict`.
pub fn load_rules(files: &[SourceFile], verdict: &Verdict) -> Result<Vec<Rule>, LoadError> {
    // Compiling CEL dominates the load (about 0.3 ms a rule): spread the files over the
    // cores, then put the results back in file order so diagnostics stay deterministic.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(files.len().max(1));
    let mut per_file: Vec<Option<(Vec<Rule>, Vec<Diagnostic>)>> =
        (0..files.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..files.len())
                        .step_by(threads)
                        .map(|i| (i, load_file(&files[i], verdict)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            let done = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            for (i, result) in done {
                per_file[i] = Some(result);
            }
        }
    });
    let mut rules = Vec::new();
    let mut diags = Vec::new();
    let mut seen: BTreeMap<String, Location> = BTreeMap::new();
    for (file_rules, file_diags) in per_file.into_iter().flatten() {
        diags.extend(file_diags);
        for rule in file_rules {
            if let Some(prev) = seen.get(&rule.id) {
                diags.push(Diagnostic {
                    location: rule.location.clone(),
                    message: format!("duplicate rule id `{}` (first defined at {prev})", rule.id),
                });
                continue;
            }
            seen.insert(rule.id.clone(), rule.location.clone());
            rules.push(rule);
        }
    }
    if diags.is_empty() {
        Ok(rules)
    } else {
        Err(LoadError(diags))
    }
}

/// Parse and validate one file (duplicates within the file included).
fn load_file(file: &SourceFile, verdict: &Verdict) -> (Vec<Rule>, Vec<Diagnostic>) {
    let mut ctx = Ctx {
        file,
        diags: Vec::new(),
    };
    let mut rules = Vec::new();
    let mut seen: BTreeMap<String, Location> = BTreeMap::new();
    match toml::from_str::<RawFile>(&file.text) {
        Ok(raw) => {
            for spanned in raw.rule {
                let start = spanned.span().start;
                let raw = spanned.into_inner();
                if let Some(rule) = validate(&mut ctx, start, raw, verdict, &mut seen) {
                    rules.push(rule);
                }
            }
        }
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            ctx.error(offset, e.message().to_string());
        }
    }
    (rules, ctx.diags)
}

fn validate(
    ctx: &mut Ctx<'_>,
    start: usize,
    raw: RawRule,
    verdict: &Verdict,
    seen: &mut BTreeMap<String, Location>,
) -> Option<Rule> {
    let before = ctx.diags.len();
    let id = raw.id.get_ref().clone();
    let id_at = raw.id.span().start;
    let id_ok = !id.is_empty()
        && id.split('.').count() >= 2
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
    if !id_ok {
        ctx.error(
            id_at,
            format!("rule id `{id}` must look like <pillar>.<area>.<name> (lowercase letters, digits, `_` and `.`)"),
        );
    }
    if let Some(prev) = seen.get(&id) {
        ctx.error(
            id_at,
            format!("duplicate rule id `{id}` (first defined at {prev})"),
        );
    } else {
        seen.insert(id.clone(), ctx.at(id_at));
    }
    let pillar = match raw.pillar.get_ref().as_str() {
        "security" => Some(Pillar::Security),
        "configuration" => Some(Pillar::Configuration),
        "monitoring" => Some(Pillar::Monitoring),
        "backup" => Some(Pillar::Backup),
        "runbooks" => Some(Pillar::Runbooks),
        other => {
            ctx.error(
                raw.pillar.span().start,
                format!("rule {id}: unknown pillar `{other}`, expected one of security, configuration, monitoring, backup, runbooks"),
            );
            None
        }
    };
    for item in raw.covers.get_ref() {
        if !verdict.items.iter().any(|i| &i.id == item) {
            ctx.error(
                raw.covers.span().start,
                format!("rule {id}: covers unknown checklist item `{item}` (see `pgready rules coverage` for the list)"),
            );
        }
    }
    if raw.covers.get_ref().is_empty() {
        ctx.error(
            raw.covers.span().start,
            format!("rule {id}: `covers` must name at least one checklist item"),
        );
    }
    let level = *raw.level.get_ref();
    if !(1..=4).contains(&level) {
        ctx.error(
            raw.level.span().start,
            format!("rule {id}: level must be 1–4, got {level}"),
        );
    }
    if raw.remediation.trim().is_empty()
        || raw.rationale.trim().is_empty()
        || raw.title.trim().is_empty()
    {
        ctx.error(
            start,
            format!("rule {id}: title, rationale and remediation must not be empty"),
        );
    }
    if raw.references.is_empty() {
        ctx.error(start, format!("rule {id}: give at least one reference"));
    }
    let params = match serde_json::to_value(&raw.params) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => {
            ctx.error(
                start,
                format!("rule {id}: params must be a table of plain values"),
            );
            serde_json::Map::new()
        }
    };
    let when = raw.when.as_ref().and_then(|s| ctx.compile(&id, "when", s));
    let test = match (&raw.check, &raw.offenders) {
        (Some(c), None) => ctx.compile(&id, "check", c).map(Test::Check),
        (None, Some(o)) => ctx.compile(&id, "offenders", o).map(Test::Offenders),
        _ => {
            ctx.error(
                start,
                format!("rule {id}: give exactly one of `check` or `offenders`"),
            );
            None
        }
    };
    let actual = raw
        .actual
        .as_ref()
        .and_then(|s| ctx.compile(&id, "actual", s));
    let evaluable = raw
        .evaluable
        .as_ref()
        .and_then(|s| ctx.compile(&id, "evaluable", s));
    let not_evaluated_reason = raw
        .not_evaluated_reason
        .as_ref()
        .and_then(|s| ctx.compile(&id, "not_evaluated_reason", s));
    if raw.not_evaluated_reason.is_some() && raw.evaluable.is_none() {
        ctx.error(
            start,
            format!("rule {id}: `not_evaluated_reason` needs `evaluable`"),
        );
    }
    let tune = raw
        .tune
        .as_ref()
        .map(|t| tune_entries(ctx, &id, t))
        .unwrap_or_default();
    let mut sections = BTreeSet::new();
    for r in &raw.requires {
        if SECTIONS.contains(&r.get_ref().as_str()) {
            sections.insert(r.get_ref().clone());
        } else {
            ctx.error(
                r.span().start,
                format!("rule {id}: requires unknown fact section `{}`", r.get_ref()),
            );
        }
    }
    let has_query = raw.query.is_some();
    let query = raw.query.as_ref().and_then(|q| {
        let each_database = match q.scope.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("cluster") => false,
            Some("each_database") => true,
            Some(other) => {
                ctx.error(
                    q.scope.as_ref().map_or(start, |s| s.span().start),
                    format!("rule {id}: query.scope `{other}`: expected cluster or each_database"),
                );
                false
            }
        };
        match check_query_sql(q.sql.get_ref()) {
            Ok(sql) => Some(Query { sql, each_database }),
            Err(e) => {
                ctx.error(q.sql.span().start, format!("rule {id}: query.sql {e}"));
                None
            }
        }
    });
    if query.is_some() {
        sections.insert("queries".to_string());
    }
    let test = test?;
    let rule = Rule {
        id: id.clone(),
        pillar: pillar?,
        title: raw.title,
        covers: raw.covers.into_inner(),
        severity: raw.severity,
        level,
        rationale: raw.rationale,
        when,
        test,
        actual,
        expected: raw.expected,
        evaluable,
        not_evaluated_reason,
        tune,
        remediation: raw.remediation,
        references: raw.references,
        params,
        sections,
        query,
        location: ctx.at(start),
    };
    let mut sections = rule.sections.clone();
    // The sections a recommendation reads are not required to judge the rule: `tune`
    // skips a recommendation whose facts are missing, the audit does not.
    let tune_exprs = rule.tune.iter().flat_map(|t| {
        std::iter::once(("tune", Some(&t.value)))
            .chain(std::iter::once(("tune", t.formula.as_ref())))
            .chain(std::iter::once(("tune", t.when.as_ref())))
    });
    for (key, c) in [
        ("when", rule.when.as_ref()),
        ("check", Some(rule.test.compiled())),
        ("actual", rule.actual.as_ref()),
        ("evaluable", rule.evaluable.as_ref()),
        ("not_evaluated_reason", rule.not_evaluated_reason.as_ref()),
    ]
    .into_iter()
    .chain(tune_exprs)
    {
        let Some(c) = c else { continue };
        for root in &c.roots {
            if SECTIONS.contains(&root.as_str()) {
                if key != "tune" {
                    sections.insert(root.clone());
                }
            } else if root == "rows" && !has_query {
                ctx.error(
                    start,
                    format!(
                        "rule {id}: {key}: reads `rows`, which only a rule with [rule.query] has"
                    ),
                );
            } else if !BUILTIN_ROOTS.contains(&root.as_str()) && root != "rows" {
                ctx.error(start, format!("rule {id}: {key}: unknown name `{root}` (fact sections are {}; also `now` and `params`)", SECTIONS.join(", ")));
            }
        }
        for f in &c.functions {
            if !expr::KNOWN_FUNCTIONS.contains(&f.as_str()) {
                ctx.error(start, format!("rule {id}: {key}: unknown function `{f}`"));
            }
        }
        for p in &c.params {
            if !rule.params.contains_key(p) {
                ctx.error(
                    start,
                    format!(
                        "rule {id}: {key}: reads params.{p}, which [rule.params] does not define"
                    ),
                );
            }
        }
        for re in &c.regexes {
            if let Err(e) = regex::Regex::new(re) {
                ctx.error(
                    start,
                    format!("rule {id}: {key}: invalid regular expression `{re}`: {e}"),
                );
            }
        }
    }
    let rule = Rule { sections, ..rule };
    let _ = rule.expressions();
    (ctx.diags.len() == before).then_some(rule)
}

/// The `tune` entries of a rule: one table or an array of tables.
fn tune_entries(ctx: &mut Ctx<'_>, id: &str, t: &Spanned<toml::Value>) -> Vec<Tune> {
    let at = t.span().start;
    let raws: Vec<toml::Value> = match t.get_ref() {
        toml::Value::Table(_) => vec![t.get_ref().clone()],
        toml::Value::Array(a) => a.clone(),
        _ => {
            ctx.error(
                at,
                format!("rule {id}: `tune` must be a table ([rule.tune]) or an array of tables ([[rule.tune]])"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, v) in raws.into_iter().enumerate() {
        let raw: RawTune = match v.try_into() {
            Ok(r) => r,
            Err(e) => {
                ctx.error(at, format!("rule {id}: tune[{i}]: {}", e.message()));
                continue;
            }
        };
        let setting_ok = !raw.setting.is_empty()
            && raw
                .setting
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !setting_ok {
            ctx.error(
                at,
                format!(
                    "rule {id}: tune[{i}]: `{}` is not a setting name (lowercase letters, digits, `_`, `.`)",
                    raw.setting
                ),
            );
        }
        let mut compile = |key: &str, src: &str| -> Option<Compiled> {
            match expr::compile(src) {
                Ok(c) => Some(c),
                Err(errs) => {
                    for e in errs {
                        ctx.error(
                            at,
                            format!(
                                "rule {id}: tune[{i}].{key} (line {}, column {}): {}",
                                e.line, e.column, e.message
                            ),
                        );
                    }
                    None
                }
            }
        };
        let value = compile("value", &raw.value);
        let formula = raw.formula.as_deref().map(|f| compile("formula", f));
        let when = raw.when.as_deref().map(|w| compile("when", w));
        let (Some(value), Some(formula), Some(when)) = (
            value,
            formula.map_or(Some(None), |f| f.map(Some)),
            when.map_or(Some(None), |w| w.map(Some)),
        ) else {
            continue;
        };
        out.push(Tune {
            setting: raw.setting,
            value,
            unit: raw.unit,
            formula,
            when,
        });
    }
    out
}

/// Load the embedded pack plus the user's folders, and the verdict definition.
pub fn load(extra_dirs: &[PathBuf]) -> Result<RulePack, LoadError> {
    let verdict = verdict::load(&embedded_verdict())?;
    let mut files = embedded_files();
    for dir in extra_dirs {
        files.extend(read_dir(dir)?);
    }
    let rules = load_rules(&files, &verdict)?;
    Ok(RulePack { rules, verdict })
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_sql_must_be_one_read_only_query() {
        assert_eq!(check_query_sql("  SELECT 1 ;\n").as_deref(), Ok("SELECT 1"));
        assert!(check_query_sql("-- why\n/* note */ with x as (select 1) select * from x").is_ok());
        assert!(check_query_sql("VALUES (1)").is_ok());
        assert!(check_query_sql("TABLE pg_roles").is_ok());
        assert!(check_query_sql("SELECT ';', \"a;b\" -- c;\n /* d; */ FROM t").is_ok());
        for bad in [
            "DELETE FROM t",
            "show all",
            "",
            "-- only a comment",
            "SELECT 1; SELECT 2",
        ] {
            assert!(check_query_sql(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_query_sql("update t set a = 1").unwrap_err(),
            "must be one read-only query starting with SELECT, WITH, VALUES or TABLE, not UPDATE"
        );
    }

    use super::*;

    fn verdict() -> Verdict {
        match verdict::load(&embedded_verdict()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn load_one(text: &str) -> Result<Vec<Rule>, LoadError> {
        load_rules(
            &[SourceFile {
                name: "t.toml".into(),
                text: text.into(),
            }],
            &verdict(),
        )
    }

    const GOOD: &str = r#"
[[rule]]
id = "sec.auth.password_encryption"
pillar = "security"
title = "SCRAM"
covers = ["S3"]
severity = "high"
level = 1
rationale = "why"
check = "settings.password_encryption == 'scram-sha-256'"
remediation = "fix"
references = ["https://www.postgresql.org/docs/18/auth-password.html"]
"#;

    #[test]
    fn embedded_pack_loads() {
        match load(&[]) {
            Ok(pack) => assert!(!pack.rules.is_empty()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn good_rule_loads_and_derives_sections() {
        let rules = load_one(GOOD).map_err(|e| e.to_string());
        let rules = rules.as_deref().map_err(String::as_str);
        let Ok([rule]) = rules else {
            panic!("{rules:?}")
        };
        assert_eq!(rule.sections.iter().collect::<Vec<_>>(), ["settings"]);
    }

    #[test]
    fn errors_name_file_line_column() {
        let bad = GOOD.replace("check =", "chek =");
        let err = load_one(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("t.toml:10:1: unknown field `chek`"),
            "{err}"
        );

        let bad = GOOD.replace("== 'scram-sha-256'", "== ");
        let err = load_one(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("t.toml:10:"), "{err}");
        assert!(
            err.contains("rule sec.auth.password_encryption: check:"),
            "{err}"
        );

        let bad = GOOD.replace("\"S3\"", "\"S99\"");
        let err = load_one(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown checklist item `S99`"), "{err}");

        let bad = GOOD.replace(
            "settings.password_encryption",
            "setings.password_encryption",
        );
        let err = load_one(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown name `setings`"), "{err}");

        let twice = format!("{GOOD}{GOOD}");
        let err = load_one(&twice)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("duplicate rule id"), "{err}");

        let bad = GOOD.replace("severity = \"high\"", "severity = \"severe\"");
        let err = load_one(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown variant `severe`"), "{err}");
    }
}
