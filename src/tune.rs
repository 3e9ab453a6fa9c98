//! `pgready tune`: the settings the configuration rules recommend for this server and
//! its context, as `ALTER SYSTEM` statements or a postgresql.conf fragment.
//!
//! There is no second formula set: a rule's `[rule.tune]` entries (docs/rules.md) compute
//! the recommended value with the same facts, context and parameters as the rule's check.
//! Recommendations interact (shared_buffers feeds the work_mem formula, work_mem and
//! max_connections the worst-case memory), so they are found by simulation: evaluate the
//! rules, apply the recommendations of the failing ones to a copy of the facts, evaluate
//! again, until nothing changes. The final simulated evaluation tells which rules the
//! recommendations do not fix (printed as a warning, never hidden).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use cel::Value;
use serde_json::Value as Json;

use crate::app::Failure;
use crate::cli::{TuneArgs, TuneFormat};
use crate::config::Config;
use crate::evaluate::Status;
use crate::facts::Facts;
use crate::rules::expr::{self, Scope};
use crate::rules::{Pillar, Rule, RulePack, Tune, TuneUnit};

/// One recommended setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The GUC.
    pub setting: String,
    /// The value as written in SQL / postgresql.conf (`'6016MB'`, `0.9`, `on`).
    pub literal: String,
    /// The value as the facts hold it (bytes, ms, …), used for the simulation.
    pub value: Json,
    /// The rule that recommends it.
    pub rule_id: String,
    /// The formula with its inputs, when the rule gives one.
    pub formula: Option<String>,
    /// The server's current value, formatted like `literal` (None when not visible).
    pub current: Option<String>,
    /// `pg_settings.context` of the setting (`postmaster` needs a restart).
    pub context: Option<String>,
    /// Whether the current value already is the recommended one (only with `--all`).
    pub unchanged: bool,
}

impl Recommendation {
    pub fn needs_restart(&self) -> bool {
        self.context.as_deref() == Some("postmaster")
    }

    fn apply_note(&self) -> String {
        match self.context.as_deref() {
            Some("postmaster") => "restart needed (context postmaster)".to_string(),
            Some(c) => format!("reload is enough (context {c})"),
            None => "context unknown".to_string(),
        }
    }
}

/// What `tune` found.
#[derive(Debug, Default)]
pub struct Tuning {
    pub recommendations: Vec<Recommendation>,
    /// Rules that could not be judged, so recommend nothing: `id: reason`.
    pub not_evaluated: Vec<String>,
    /// Tunable rules that would still fail after the recommendations: `id: actual`.
    pub still_failing: Vec<String>,
    /// Recommendations that could not be computed or applied: `id: why`.
    pub skipped: Vec<String>,
}

/// A CEL scope over the collected sections of `facts`, as the evaluator builds it.
fn scope_for(facts: &Facts) -> Scope<'static> {
    let mut scope = Scope::new();
    for (name, section) in &facts.sections {
        if section.collected {
            scope.bind(name, expr::to_cel(&section.data));
        }
    }
    // Like the evaluator: a section that was not collected is null, so that a
    // recommendation can fall back without it (`host != null && …`).
    for name in crate::facts::SECTIONS {
        if !facts.section(name).is_some_and(|s| s.collected) {
            scope.bind(name, Value::Null);
        }
    }
    scope.bind("now", Value::Int(facts.collected_at));
    scope
}

fn params_for(rule: &Rule, config: &Config) -> Value {
    expr::to_cel(&Json::Object(config.params_for(rule)))
}

/// Integer value of a CEL result (doubles are truncated toward zero).
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Float(f) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

/// Round `bytes` to what one would write: whole MB from 1 GB up, whole kB below, and a
/// multiple of the setting's own unit (`8kB` for shared_buffers, `MB` for max_wal_size).
fn round_bytes(bytes: i64, base: i64) -> i64 {
    let step = if bytes >= 1 << 30 { 1 << 20 } else { 1 << 10 };
    let step = step.max(base);
    let r = bytes / step * step;
    if r == 0 { step } else { r }
}

fn bytes_literal(b: i64) -> String {
    for (unit, size) in [("TB", 1i64 << 40), ("GB", 1 << 30), ("MB", 1 << 20)] {
        if b >= size && b % size == 0 {
            return format!("{}{unit}", b / size);
        }
    }
    if b % 1024 == 0 {
        format!("{}kB", b / 1024)
    } else {
        format!("{b}B")
    }
}

fn ms_literal(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000i64),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Bytes of one unit of a memory setting (`8kB` → 8192), 1 when unknown.
fn byte_unit(unit: Option<&str>) -> i64 {
    let Some(u) = unit else { return 1 };
    let split = u.find(|c: char| !c.is_ascii_digit()).unwrap_or(u.len());
    let (n, u) = u.split_at(split);
    let n: i64 = if n.is_empty() {
        1
    } else {
        n.parse().unwrap_or(1)
    };
    let m = match u {
        "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => 1,
    };
    n * m
}

/// Milliseconds of one unit of a time setting (`s` → 1000), 1 when unknown.
fn ms_unit(unit: Option<&str>) -> i64 {
    match unit {
        Some("s") => 1000,
        Some("min") => 60_000,
        Some("h") => 3_600_000,
        Some("d") => 86_400_000,
        _ => 1,
    }
}

fn real_literal(f: f64) -> String {
    let s = format!("{f:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `(literal, facts value)` of a CEL result in `unit`, aligned to the setting's own unit
/// (`settings_meta.<name>.unit`), or why it cannot be written.
fn convert(v: &Value, unit: TuneUnit, pg_unit: Option<&str>) -> Result<(String, Json), String> {
    match unit {
        TuneUnit::Bytes => {
            let b = as_i64(v).ok_or_else(|| format!("expected a number of bytes, got {v:?}"))?;
            if b <= 0 {
                return Err(format!("computed {b} bytes"));
            }
            let b = round_bytes(b, byte_unit(pg_unit));
            Ok((quote(&bytes_literal(b)), Json::from(b)))
        }
        TuneUnit::Ms => {
            let ms = as_i64(v).ok_or_else(|| format!("expected milliseconds, got {v:?}"))?;
            let base = ms_unit(pg_unit);
            let ms = if ms > 0 {
                (ms / base).max(1) * base
            } else {
                ms
            };
            let lit = if ms > 0 {
                quote(&ms_literal(ms))
            } else {
                ms.to_string()
            };
            Ok((lit, Json::from(ms)))
        }
        TuneUnit::Int => {
            let n = as_i64(v).ok_or_else(|| format!("expected an integer, got {v:?}"))?;
            Ok((n.to_string(), Json::from(n)))
        }
        TuneUnit::Real => {
            let f = match v {
                Value::Float(f) => *f,
                other => {
                    as_i64(other).ok_or_else(|| format!("expected a number, got {other:?}"))? as f64
                }
            };
            Ok((real_literal(f), Json::from(f)))
        }
        TuneUnit::Bool => match v {
            Value::Bool(b) => Ok(((if *b { "on" } else { "off" }).to_string(), Json::Bool(*b))),
            other => Err(format!("expected a bool, got {other:?}")),
        },
        TuneUnit::Text => match v {
            Value::String(s) => Ok((quote(s), Json::String(s.to_string()))),
            other => Err(format!("expected a string, got {other:?}")),
        },
    }
}

/// The server's value of `setting` written like a recommendation in `unit`.
fn current_literal(facts: &Facts, setting: &str, unit: TuneUnit) -> Option<String> {
    let v = facts.section("settings")?.data.get(setting)?;
    Some(match (unit, v) {
        (TuneUnit::Bytes, Json::Number(n)) => expr::human_bytes(n.as_i64()?),
        (TuneUnit::Ms, Json::Number(n)) if n.as_i64() == Some(0) => "0 (off)".to_string(),
        (TuneUnit::Ms, Json::Number(n)) => expr::human_ms(n.as_i64()?),
        (TuneUnit::Bool, Json::Bool(b)) => (if *b { "on" } else { "off" }).to_string(),
        (_, Json::String(s)) => quote(s),
        (_, Json::Number(n)) => n.to_string(),
        (_, other) => other.to_string(),
    })
}

fn meta<'a>(facts: &'a Facts, setting: &str) -> Option<&'a Json> {
    facts.section("settings_meta")?.data.get(setting)
}

/// Evaluate one tune entry: `Ok(None)` when its `when` is false.
fn compute(
    t: &Tune,
    scope: &Scope<'_>,
    params: &Value,
    facts: &Facts,
) -> Result<Option<(String, Json, Option<String>)>, String> {
    if let Some(w) = &t.when {
        match scope.eval(w, params) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Ok(None),
            Ok(other) => return Err(format!("when: expected a bool, got {other:?}")),
            Err(e) => return Err(format!("when: {e}")),
        }
    }
    let v = scope
        .eval(&t.value, params)
        .map_err(|e| format!("value: {e}"))?;
    let pg_unit = meta(facts, &t.setting)
        .and_then(|m| m.get("unit"))
        .and_then(Json::as_str);
    let (literal, value) = convert(&v, t.unit, pg_unit)?;
    let formula = t
        .formula
        .as_ref()
        .and_then(|f| match scope.eval(f, params) {
            Ok(Value::String(s)) => Some(s.to_string()),
            _ => None,
        });
    Ok(Some((literal, value, formula)))
}

/// The recommendations of `rule` as short text (`shared_buffers = '6016MB' (25% of …)`),
/// for the `expected` of a failing finding. Entries that cannot be computed are left out.
pub fn describe(rule: &Rule, scope: &Scope<'_>, params: &Value) -> Vec<String> {
    let empty = Facts::new(0, Default::default());
    rule.tune
        .iter()
        .filter_map(|t| match compute(t, scope, params, &empty) {
            Ok(Some((literal, _, formula))) => Some(match formula {
                Some(f) => format!("{} = {literal} ({f})", t.setting),
                None => format!("{} = {literal}", t.setting),
            }),
            _ => None,
        })
        .collect()
}

/// Put `value` into the simulated server: `settings` and the `reset_val` of
/// `settings_meta` (rules read either).
fn apply(sim: &mut Facts, setting: &str, value: &Json) {
    if let Some(s) = sim.sections.get_mut("settings")
        && let Json::Object(m) = &mut s.data
    {
        m.insert(setting.to_string(), value.clone());
    }
    if let Some(s) = sim.sections.get_mut("settings_meta")
        && let Some(Json::Object(m)) = s.data.get_mut(setting)
    {
        m.insert("reset_val".to_string(), value.clone());
    }
}

/// The settings to change so that the configuration rules pass (all recommendations
/// with `all`).
pub fn recommend(pack: &RulePack, facts: &Facts, config: &Config, all: bool) -> Tuning {
    let mut tuning = Tuning::default();
    let tunable: Vec<&Rule> = pack
        .rules
        .iter()
        .filter(|r| r.pillar == Pillar::Configuration && !r.tune.is_empty())
        .collect();
    let mut sim = facts.clone();
    let mut order: Vec<String> = Vec::new();
    let mut recs: BTreeMap<String, Recommendation> = BTreeMap::new();
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    // Each rule sets each of its settings at most once: a rule whose check does not depend
    // on what it recommends (observed statistics) would otherwise raise it forever.
    let mut applied: std::collections::BTreeSet<(String, String)> = Default::default();
    // A few passes reach the fixed point; within a pass, every rule is judged and computed
    // on the server as already changed by the rules before it (shared_buffers first, then
    // work_mem from the new shared_buffers, …).
    for _pass in 0..4 {
        let mut changed = false;
        let mut status: BTreeMap<String, Status> = BTreeMap::new();
        let mut scope = scope_for(&sim);
        let mut dirty = true;
        for rule in &tunable {
            if dirty {
                status = crate::evaluate::evaluate(pack, &sim, config)
                    .into_iter()
                    .map(|f| (f.rule_id, f.status))
                    .collect();
                scope = scope_for(&sim);
                dirty = false;
            }
            let wanted = match status.get(&rule.id) {
                Some(Status::Fail) => true,
                Some(Status::Pass) => all,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let params = params_for(rule, config);
            for t in &rule.tune {
                let key = format!("{}: {}", rule.id, t.setting);
                let (literal, value, formula) = match compute(t, &scope, &params, &sim) {
                    Ok(Some(x)) => x,
                    Ok(None) => continue,
                    Err(e) => {
                        skipped.insert(key, e);
                        continue;
                    }
                };
                let Some(m) = meta(facts, &t.setting) else {
                    skipped.insert(
                        key,
                        format!(
                            "this server has no setting {} (or it is hidden from the audit role)",
                            t.setting
                        ),
                    );
                    continue;
                };
                let context = m.get("context").and_then(Json::as_str).map(str::to_string);
                if context.as_deref() == Some("internal") {
                    skipped.insert(key, format!("{} cannot be set", t.setting));
                    continue;
                }
                skipped.remove(&key);
                let server_value = facts
                    .section("settings")
                    .and_then(|s| s.data.get(&t.setting));
                let sim_value = sim
                    .section("settings")
                    .and_then(|s| s.data.get(&t.setting))
                    .cloned();
                let done = (rule.id.clone(), t.setting.clone());
                if sim_value.as_ref() == Some(&value) {
                    // Already so: listed with --all, nothing to simulate.
                    if all && !recs.contains_key(&t.setting) {
                        order.push(t.setting.clone());
                        recs.insert(
                            t.setting.clone(),
                            Recommendation {
                                setting: t.setting.clone(),
                                literal,
                                value: value.clone(),
                                rule_id: rule.id.clone(),
                                formula,
                                current: current_literal(facts, &t.setting, t.unit),
                                context,
                                unchanged: server_value == Some(&value),
                            },
                        );
                    }
                    continue;
                }
                if applied.contains(&done) {
                    continue;
                }
                if !recs.contains_key(&t.setting) {
                    order.push(t.setting.clone());
                }
                recs.insert(
                    t.setting.clone(),
                    Recommendation {
                        setting: t.setting.clone(),
                        literal,
                        value: value.clone(),
                        rule_id: rule.id.clone(),
                        formula,
                        current: current_literal(facts, &t.setting, t.unit),
                        context,
                        unchanged: server_value == Some(&value),
                    },
                );
                apply(&mut sim, &t.setting, &value);
                applied.insert(done);
                changed = true;
                dirty = true;
            }
        }
        if !changed {
            break;
        }
    }
    let findings = crate::evaluate::evaluate(pack, &sim, config);
    for f in &findings {
        if !tunable.iter().any(|r| r.id == f.rule_id) {
            continue;
        }
        match f.status {
            Status::Fail => tuning.still_failing.push(format!(
                "{}: {}",
                f.rule_id,
                f.actual.as_deref().unwrap_or("fails")
            )),
            Status::NotEvaluated | Status::Error => tuning.not_evaluated.push(format!(
                "{}: {}",
                f.rule_id,
                f.reason.as_deref().unwrap_or("not evaluated")
            )),
            _ => {}
        }
    }
    tuning.recommendations = order
        .iter()
        .filter_map(|s| recs.get(s).cloned())
        .filter(|r| all || !r.unchanged)
        .collect();
    tuning.skipped = skipped
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    tuning
}

/// The context line: what the formulas used and where it came from.
fn context_line(facts: &Facts) -> Option<String> {
    let ctx = &facts.section("context")?.data;
    let src = |k: &str| {
        ctx.get("sources")
            .and_then(|s| s.get(k))
            .and_then(Json::as_str)
            .unwrap_or("default")
            .to_string()
    };
    let origin = |k: &str| {
        ctx.get("origin")
            .and_then(|s| s.get(k))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let mut parts = Vec::new();
    if let Some(w) = ctx.get("workload").and_then(Json::as_str) {
        parts.push(format!("workload {w} ({})", src("workload")));
    }
    match ctx.get("storage").and_then(Json::as_str) {
        Some(s) => parts.push(format!(
            "storage {s} ({})",
            origin("storage").unwrap_or_else(|| src("storage"))
        )),
        None => parts.push("storage unknown".to_string()),
    }
    match ctx.get("mem_bytes").and_then(Json::as_i64) {
        Some(m) => parts.push(format!(
            "RAM {} ({})",
            expr::human_bytes(m),
            origin("ram").unwrap_or_else(|| src("ram"))
        )),
        None => parts.push("RAM unknown".to_string()),
    }
    match ctx.get("cpus").and_then(Json::as_i64) {
        Some(c) => parts.push(format!(
            "{c} CPUs ({})",
            origin("cpus").unwrap_or_else(|| src("cpus"))
        )),
        None => parts.push("CPUs unknown".to_string()),
    }
    Some(parts.join(", "))
}

/// Render the recommendations as SQL (`ALTER SYSTEM`) or a postgresql.conf fragment.
pub fn render(t: &Tuning, facts: &Facts, format: TuneFormat, all: bool) -> String {
    let c = match format {
        TuneFormat::Sql => "--",
        TuneFormat::Conf => "#",
    };
    let mut out = String::new();
    let version = facts
        .section("server")
        .and_then(|s| s.data.get("version"))
        .and_then(Json::as_str)
        .unwrap_or("unknown version");
    let _ = writeln!(
        out,
        "{c} pgready tune for {} (PostgreSQL {version})",
        facts.target.display
    );
    let _ = writeln!(
        out,
        "{c} {}",
        if all {
            "every setting the configuration rules recommend"
        } else {
            "settings of the configuration rules that fail (--all: every recommendation)"
        }
    );
    if let Some(line) = context_line(facts) {
        let _ = writeln!(out, "{c} context: {line}");
    }
    if t.recommendations.is_empty() {
        let _ = writeln!(
            out,
            "{c}\n{c} nothing to change: no tunable configuration rule fails"
        );
    }
    for r in &t.recommendations {
        let mut why = r.rule_id.clone();
        if let Some(f) = &r.formula {
            let _ = write!(why, ": {f}");
        }
        match &r.current {
            Some(cur) if r.unchanged => {
                let _ = write!(why, "; already {cur}");
            }
            Some(cur) => {
                let _ = write!(why, "; now {cur}");
            }
            None => {}
        }
        let _ = writeln!(out, "{c}\n{c} {why}");
        match format {
            TuneFormat::Sql => {
                let _ = writeln!(
                    out,
                    "ALTER SYSTEM SET {} = {};  -- {}",
                    r.setting,
                    r.literal,
                    r.apply_note()
                );
            }
            TuneFormat::Conf => {
                let _ = writeln!(out, "{} = {}\t# {}", r.setting, r.literal, r.apply_note());
            }
        }
    }
    let changes: Vec<&Recommendation> = t.recommendations.iter().filter(|r| !r.unchanged).collect();
    if !changes.is_empty() {
        let restart: Vec<&str> = changes
            .iter()
            .filter(|r| r.needs_restart())
            .map(|r| r.setting.as_str())
            .collect();
        let _ = writeln!(out, "{c}");
        match format {
            TuneFormat::Sql => {
                let _ = writeln!(out, "{c} then: SELECT pg_reload_conf();");
            }
            TuneFormat::Conf => {
                let _ = writeln!(
                    out,
                    "# then reload (pg_ctl reload, or SELECT pg_reload_conf())"
                );
            }
        }
        if !restart.is_empty() {
            let _ = writeln!(
                out,
                "{c} and restart the server: {} only change{} at a restart",
                restart.join(", "),
                if restart.len() == 1 { "s" } else { "" }
            );
        }
    }
    for (title, list) in [
        ("not evaluated, so nothing recommended", &t.not_evaluated),
        (
            "still failing after these changes (fix by hand)",
            &t.still_failing,
        ),
        ("recommendations left out", &t.skipped),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{c}\n{c} {title}:");
        for l in list {
            let _ = writeln!(out, "{c}   {l}");
        }
    }
    out
}

/// `pgready tune`.
pub fn run(a: &TuneArgs) -> Result<ExitCode, Failure> {
    let pack = crate::rules::load(&a.rules)?;
    let config = Config::load(a.config.as_deref())?;
    config.validate(&pack)?;
    let facts = match &a.from_facts {
        Some(path) => crate::app::read_facts(path)?,
        None => crate::app::collect_live(&a.conn, &config, &a.context, &a.sources, &[])?,
    };
    let tuning = recommend(&pack, &facts, &config, a.all);
    if !tuning.not_evaluated.is_empty() {
        eprintln!(
            "pgready tune: {} configuration rule(s) could not be judged, so they recommend nothing \
             (listed at the end of the output)",
            tuning.not_evaluated.len()
        );
    }
    print!("{}", render(&tuning, &facts, a.format, a.all));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(bytes_literal(6016 << 20), "6016MB");
        assert_eq!(bytes_literal(4 << 30), "4GB");
        assert_eq!(bytes_literal(48 << 10), "48kB");
        assert_eq!(ms_literal(600_000), "10min");
        assert_eq!(ms_literal(1500), "1500ms");
        assert_eq!(real_literal(1.1), "1.1");
        assert_eq!(real_literal(0.9000001), "0.9");
        assert_eq!(real_literal(200.0), "200");
        assert_eq!(quote("it's"), "'it''s'");
    }

    #[test]
    fn rounding_follows_the_setting_unit() {
        // 25% of 23.5 GB, shared_buffers in 8kB pages: whole MB
        assert_eq!(round_bytes(6_319_128_576, 8192), 6026 << 20);
        // max_wal_size is in MB
        assert_eq!(round_bytes(1_500_000, 1 << 20), 1 << 20);
        // work_mem in kB
        assert_eq!(round_bytes(50_000_000, 1024), 48828 << 10);
        assert_eq!(byte_unit(Some("8kB")), 8192);
        assert_eq!(byte_unit(Some("MB")), 1 << 20);
        let (lit, v) = match convert(&Value::Int(300_500), TuneUnit::Ms, Some("s")) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!((lit.as_str(), v), ("'5min'", Json::from(300_000)));
    }
}
