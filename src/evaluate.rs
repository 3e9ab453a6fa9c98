//! Rules × facts → findings. Pure: no I/O.

use cel::Value;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::facts::Facts;
use crate::rules::expr::{self, Compiled, EvalError, Scope};
use crate::rules::{Pillar, Rule, RulePack, Severity, Test};

/// What a rule concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Fail,
    Error,
    NotEvaluated,
    Waived,
    Pass,
    NotApplicable,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pass,
        Status::Fail,
        Status::NotApplicable,
        Status::NotEvaluated,
        Status::Error,
        Status::Waived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotApplicable => "not_applicable",
            Status::NotEvaluated => "not_evaluated",
            Status::Error => "error",
            Status::Waived => "waived",
        }
    }

    /// Short label for the terminal.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
            Status::NotEvaluated => "NOT EVALUATED",
            Status::Error => "ERROR",
            Status::Waived => "WAIVED",
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub rule_id: String,
    pub pillar: Pillar,
    pub title: String,
    pub severity: Severity,
    pub level: u8,
    pub status: Status,
    pub covers: Vec<String>,
    /// Why it was not evaluated, errored or waived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The observed value, as the rule describes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    pub offenders: Vec<String>,
    pub remediation: String,
    pub references: Vec<String>,
}

/// Evaluate every rule of `pack` over `facts`.
pub fn evaluate(pack: &RulePack, facts: &Facts, config: &Config) -> Vec<Finding> {
    let mut scope = Scope::new();
    for (name, section) in &facts.sections {
        if section.collected {
            scope.bind(name, expr::to_cel(&section.data));
        }
    }
    // Sections that were not collected are null: a rule reading them is not evaluated
    // (checked before any expression runs), but a `when` may still rule itself out
    // without them.
    for name in crate::facts::SECTIONS {
        if !facts.section(name).is_some_and(|s| s.collected) {
            scope.bind(name, Value::Null);
        }
    }
    scope.bind("now", Value::Int(facts.collected_at));
    pack.rules
        .iter()
        .map(|rule| evaluate_rule(rule, &scope, facts, config))
        .collect()
}

enum Outcome {
    Status(Status, Option<String>),
    Offenders(Vec<String>),
}

fn evaluate_rule(rule: &Rule, scope: &Scope<'_>, facts: &Facts, config: &Config) -> Finding {
    let params = expr::to_cel(&serde_json::Value::Object(config.params_for(rule)));
    let (outcome, actual) = judge_rule(rule, scope, facts, &params);
    let (mut status, mut reason, offenders) = match outcome {
        Outcome::Status(s, r) => (s, r, Vec::new()),
        Outcome::Offenders(o) if o.is_empty() => (Status::Pass, None, o),
        Outcome::Offenders(o) => (Status::Fail, None, o),
    };
    // A failing rule with `[rule.tune]` says what `pgready tune` would set, computed by
    // the same expressions.
    let mut expected = rule.expected.clone();
    if status == Status::Fail {
        let recs = crate::tune::describe(rule, scope, &params);
        if !recs.is_empty() {
            let recs = format!("recommended: {}", recs.join(", "));
            expected = Some(match expected {
                Some(e) => format!("{e}; {recs}"),
                None => recs,
            });
        }
    }
    if matches!(status, Status::Fail | Status::NotEvaluated | Status::Error)
        && let Some(w) = config.waiver(&rule.id, facts.collected_at)
    {
        reason = Some(format!(
            "waived by {}: {} (would be {})",
            w.by,
            w.reason,
            status.as_str()
        ));
        status = Status::Waived;
    }
    Finding {
        rule_id: rule.id.clone(),
        pillar: rule.pillar,
        title: rule.title.clone(),
        severity: rule.severity,
        level: rule.level,
        status,
        covers: rule.covers.clone(),
        reason,
        actual,
        expected,
        offenders,
        remediation: rule.remediation.clone(),
        references: rule.references.clone(),
    }
}

fn judge_rule(
    rule: &Rule,
    scope: &Scope<'_>,
    facts: &Facts,
    params: &Value,
) -> (Outcome, Option<String>) {
    // A rule with its own query reads its rows (from the `queries` section).
    let query = match rule.query.as_ref().map(|_| query_rows(rule, facts)) {
        Some(Ok(q)) => Some(q),
        Some(Err(reason)) => return (Outcome::Status(Status::NotEvaluated, Some(reason)), None),
        None => None,
    };
    let rows = query.as_ref().map(|q| &q.0);
    let scope = &Evaluator { scope, rows };
    // A rule that does not apply needs none of its other facts: when `when` is false on
    // what was collected (missing sections are null, so `context.deployment == 'managed'
    // || host.x` decides without the host), the rule is not applicable even if a section
    // it reads is missing (host rules of a managed server). Any other outcome of `when`
    // (true, or an error on a missing fact) is decided below, as before.
    if let Some(when) = &rule.when
        && matches!(scope.eval(when, params), Ok(Value::Bool(false)))
    {
        return (Outcome::Status(Status::NotApplicable, None), None);
    }
    // Sections the rule reads must have been collected.
    let mut partial = Vec::new();
    for name in &rule.sections {
        match facts.section(name) {
            Some(s) if s.collected => {
                if s.partial {
                    partial.push(format!(
                        "{name} partly collected: {}",
                        s.reason.as_deref().unwrap_or("unknown reason")
                    ));
                }
            }
            Some(s) => {
                let why = s.reason.as_deref().unwrap_or("unknown reason");
                return (
                    Outcome::Status(
                        Status::NotEvaluated,
                        Some(format!("{name} not collected: {why}")),
                    ),
                    None,
                );
            }
            None => {
                return (
                    Outcome::Status(Status::NotEvaluated, Some(format!("{name} not collected"))),
                    None,
                );
            }
        }
    }
    if let Some((_, errors)) = &query {
        partial.extend(errors.iter().map(|e| format!("the rule's query: {e}")));
    }
    let failed = |key: &str, e: EvalError| -> Outcome {
        match e {
            EvalError::NoSuchKey(k) if !partial.is_empty() => Outcome::Status(
                Status::NotEvaluated,
                Some(format!("`{k}` is not visible ({})", partial.join("; "))),
            ),
            e => Outcome::Status(Status::Error, Some(format!("{key}: {e}"))),
        }
    };
    if let Some(when) = &rule.when {
        match scope.eval(when, params) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => {
                return (Outcome::Status(Status::NotApplicable, None), None);
            }
            Ok(other) => {
                return (
                    Outcome::Status(
                        Status::Error,
                        Some(format!("when: expected a bool, got {}", describe(&other))),
                    ),
                    None,
                );
            }
            Err(e) => return (failed("when", e), None),
        }
    }
    let actual = rule
        .actual
        .as_ref()
        .and_then(|a| render_actual(a, scope, params));
    // The facts are there but not enough to judge (statistics too young, RAM unknown).
    if let Some(ev) = &rule.evaluable {
        match scope.eval(ev, params) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => {
                let reason = rule
                    .not_evaluated_reason
                    .as_ref()
                    .and_then(|r| render_actual(r, scope, params))
                    .unwrap_or_else(|| format!("`{}` is false", ev.source.trim()));
                return (Outcome::Status(Status::NotEvaluated, Some(reason)), actual);
            }
            Ok(other) => {
                return (
                    Outcome::Status(
                        Status::Error,
                        Some(format!(
                            "evaluable: expected a bool, got {}",
                            describe(&other)
                        )),
                    ),
                    actual,
                );
            }
            Err(e) => return (failed("evaluable", e), actual),
        }
    }
    let outcome = match &rule.test {
        Test::Check(c) => match scope.eval(c, params) {
            Ok(Value::Bool(true)) => Outcome::Status(Status::Pass, None),
            Ok(Value::Bool(false)) => Outcome::Status(Status::Fail, None),
            Ok(other) => Outcome::Status(
                Status::Error,
                Some(format!("check: expected a bool, got {}", describe(&other))),
            ),
            Err(e) => failed("check", e),
        },
        Test::Offenders(c) => match scope.eval(c, params) {
            Ok(Value::List(items)) => Outcome::Offenders(items.iter().map(display).collect()),
            Ok(other) => Outcome::Status(
                Status::Error,
                Some(format!(
                    "offenders: expected a list, got {}",
                    describe(&other)
                )),
            ),
            Err(e) => failed("offenders", e),
        },
    };
    // A pass over partly collected facts proves nothing: what was hidden may fail.
    // (A failure found in what was visible is real and stays a failure.)
    let passed = match &outcome {
        Outcome::Status(s, _) => *s == Status::Pass,
        Outcome::Offenders(o) => o.is_empty(),
    };
    if passed && !partial.is_empty() {
        let reason = format!("passes on what was visible, but {}", partial.join("; "));
        return (Outcome::Status(Status::NotEvaluated, Some(reason)), actual);
    }
    (outcome, actual)
}

fn render_actual(a: &Compiled, scope: &Evaluator<'_, '_>, params: &Value) -> Option<String> {
    scope.eval(a, params).ok().map(|v| display(&v))
}

/// The fact scope, plus a query rule's rows.
struct Evaluator<'s, 'a> {
    scope: &'s Scope<'a>,
    rows: Option<&'s Value>,
}

impl Evaluator<'_, '_> {
    fn eval(&self, expr: &Compiled, params: &Value) -> Result<Value, EvalError> {
        self.scope.eval_with(expr, params, self.rows)
    }
}

/// The rows a query rule reads, and what kept part of them from being read (a database
/// that failed, rows cut off), from the `queries` section; or why there are none.
fn query_rows(rule: &Rule, facts: &Facts) -> Result<(Value, Vec<String>), String> {
    let section = facts
        .section("queries")
        .filter(|s| s.collected)
        .ok_or_else(|| {
            format!(
                "queries not collected: {}",
                facts
                    .section("queries")
                    .and_then(|s| s.reason.as_deref())
                    .unwrap_or("the facts have no queries section")
            )
        })?;
    let Some(entry) = section.data.get(&rule.id) else {
        return Err(
            "the facts hold no result of this rule's query (they were collected without this rule: \
             audit live, or write the snapshot with `pgready facts` and the same rules)"
                .to_string(),
        );
    };
    let errors: Vec<String> = entry["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match entry.get("rows").and_then(serde_json::Value::as_array) {
        Some(rows) if !rows.is_empty() || errors.is_empty() => Ok((
            expr::to_cel(&serde_json::Value::Array(rows.clone())),
            errors,
        )),
        _ => Err(format!(
            "the rule's query failed: {}",
            if errors.is_empty() {
                "no rows recorded".to_string()
            } else {
                errors.join("; ")
            }
        )),
    }
}

/// A value as the report shows it: strings bare, the rest as compact JSON.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Null => "null".to_string(),
        other => expr::to_json(other).to_string(),
    }
}

fn describe(v: &Value) -> String {
    let kind = match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "value",
    };
    let shown: String = display(v).chars().take(80).collect();
    format!("{kind} {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Section, TargetInfo};
    use crate::rules::{SourceFile, embedded_verdict, load_rules, verdict};

    fn pack(check: &str) -> RulePack {
        let text = format!(
            "[[rule]]\nid = \"sec.t.x\"\npillar = \"security\"\ntitle = \"t\"\ncovers = [\"S4\"]\n\
             severity = \"high\"\nlevel = 1\nrationale = \"r\"\n{check}\nremediation = \"x\"\n\
             references = [\"https://www.postgresql.org/docs/\"]\n"
        );
        let verdict = verdict::load(&embedded_verdict()).unwrap_or_else(|e| panic!("{e}"));
        let rules = load_rules(
            &[SourceFile {
                name: "t.toml".into(),
                text,
            }],
            &verdict,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        RulePack { rules, verdict }
    }

    fn run(check: &str, ssl: Section) -> Finding {
        let mut facts = Facts::new(0, TargetInfo::default());
        facts.insert("ssl", ssl);
        evaluate(&pack(check), &facts, &Config::default()).remove(0)
    }

    #[test]
    fn a_pass_on_partial_facts_is_not_evaluated_but_a_failure_stays() {
        let rule = "offenders = \"ssl.non_ssl.map(s, s.user)\"";
        let empty = serde_json::json!({"non_ssl": []});
        let one = serde_json::json!({"non_ssl": [{"user": "app"}]});
        assert_eq!(run(rule, Section::ok(empty.clone())).status, Status::Pass);
        let f = run(rule, Section::partial(empty, "needs pg_read_all_stats"));
        assert_eq!(f.status, Status::NotEvaluated);
        assert!(
            f.reason
                .unwrap_or_default()
                .contains("needs pg_read_all_stats")
        );
        let f = run(rule, Section::partial(one, "needs pg_read_all_stats"));
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.offenders, ["app"]);
    }

    #[test]
    fn missing_sections_and_keys_are_never_a_pass() {
        let f = run(
            "check = \"ssl.client_sessions == 0\"",
            Section::missing("needs superuser"),
        );
        assert_eq!(f.status, Status::NotEvaluated);
        assert_eq!(
            f.reason.as_deref(),
            Some("ssl not collected: needs superuser")
        );
        // A key missing from a fully collected section is a broken rule.
        let f = run(
            "check = \"ssl.nope == 0\"",
            Section::ok(serde_json::json!({})),
        );
        assert_eq!(f.status, Status::Error);
        let f = run(
            "check = \"ssl.nope\"",
            Section::partial(serde_json::json!({}), "hidden"),
        );
        assert_eq!(f.status, Status::NotEvaluated);
        let f = run("check = \"1\"", Section::ok(serde_json::json!({})));
        assert_eq!(f.status, Status::Error);
    }
}
