//! `--format sarif`: SARIF 2.1.0 (OASIS), one run.
//!
//! `tool.driver.rules` describes every rule of the report (title, rationale, remediation,
//! first reference, pillar, severity, checklist items). `results` holds the rules that
//! need work: a failed rule is `kind: fail` with a level from its severity; a rule that
//! was not evaluated or errored is `kind: open` ("insufficient information to decide",
//! §3.27.9), whose level must then be `none`. Every result is located at the audited
//! server as a logical location (there is no file to point at).

use serde_json::{Map, Value, json};

use super::{Report, observed};
use crate::evaluate::{Finding, Status};
use crate::rules::{RulePack, Severity};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// A failed rule's level: error for critical and high, warning for medium, note below.
fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning's `security-severity` (CVSS-like, 0–10) for security rules.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

fn text(s: &str) -> Value {
    json!({ "text": s })
}

fn rule(f: &Finding, pack: &RulePack) -> Value {
    let mut d = Map::new();
    d.insert("id".into(), json!(f.rule_id));
    d.insert("shortDescription".into(), text(&f.title));
    if let Some(rationale) = pack
        .get(&f.rule_id)
        .map(|r| r.rationale.trim())
        .filter(|r| !r.is_empty())
    {
        d.insert("fullDescription".into(), text(rationale));
    }
    d.insert("help".into(), text(f.remediation.trim()));
    if let Some(uri) = f.references.first() {
        d.insert("helpUri".into(), json!(uri));
    }
    d.insert(
        "defaultConfiguration".into(),
        json!({ "level": level(f.severity) }),
    );
    let mut tags = vec![f.pillar.as_str().to_string()];
    tags.extend(f.covers.iter().cloned());
    let mut props = json!({
        "pillar": f.pillar.as_str(),
        "severity": f.severity.as_str(),
        "level": f.level,
        "covers": f.covers,
        "tags": tags,
    });
    if f.pillar == crate::rules::Pillar::Security {
        props["security-severity"] = json!(security_severity(f.severity));
    }
    d.insert("properties".into(), props);
    Value::Object(d)
}

fn result(f: &Finding, index: usize, location: &Value) -> Option<Value> {
    let (kind, level, prefix) = match f.status {
        Status::Fail => ("fail", level(f.severity), ""),
        Status::NotEvaluated => ("open", "none", "not evaluated (never counted as passing): "),
        Status::Error => ("open", "none", "rule error: "),
        Status::Pass | Status::NotApplicable | Status::Waived => return None,
    };
    let seen = observed(f, usize::MAX);
    let message = if seen.is_empty() {
        format!("{prefix}{}", f.title)
    } else {
        format!("{prefix}{seen}")
    };
    let mut props = json!({ "status": f.status.as_str(), "pillar": f.pillar.as_str(), "severity": f.severity.as_str() });
    if let Some(e) = &f.expected {
        props["expected"] = json!(e);
    }
    if !f.offenders.is_empty() {
        props["offenders"] = json!(f.offenders);
    }
    Some(json!({
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "kind": kind,
        "level": level,
        "message": { "text": message },
        "locations": [location],
        "properties": props,
    }))
}

/// The SARIF log as a JSON value.
pub fn log(r: &Report, pack: &RulePack) -> Value {
    let server = r.server_name();
    let location = json!({
        "logicalLocations": [{
            "name": server,
            "fullyQualifiedName": r.target.display,
            "kind": "resource",
        }]
    });
    let rules: Vec<Value> = r.findings.iter().map(|f| rule(f, pack)).collect();
    let results: Vec<Value> = r
        .findings
        .iter()
        .enumerate()
        .filter_map(|(i, f)| result(f, i, &location))
        .collect();
    let mut invocation = json!({ "executionSuccessful": true });
    if let Some(t) = super::rfc3339(r.collected_at) {
        invocation["startTimeUtc"] = json!(t);
    }
    let criteria: Vec<Value> = r
        .verdict
        .criteria
        .iter()
        .map(|c| json!({ "id": c.id, "title": c.title, "status": super::criterion_status(c), "score": c.score, "minimum": c.minimum }))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "pgready",
                "version": r.pgready_version,
                "semanticVersion": r.pgready_version,
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": rules,
            }},
            "invocations": [invocation],
            "results": results,
            "properties": {
                "target": r.target.display,
                "server": server,
                "serverVersion": r.server.version,
                "decision": r.verdict.decision,
                "reasons": r.verdict.reasons,
                "maturityLevel": r.verdict.maturity_level,
                "maturityName": r.verdict.maturity_name,
                "criteria": criteria,
            },
        }],
    })
}

/// Render the SARIF log as pretty JSON.
pub fn render(r: &Report, pack: &RulePack) -> String {
    super::json::pretty(&log(r, pack))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    fn pack() -> RulePack {
        // The embedded pack: no rule of the sample is in it but the rationale lookup runs.
        crate::rules::load(&[]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn results_for_fail_not_evaluated_and_error() {
        let r = sample_report();
        let log = log(&r, &pack());
        let run = &log["runs"][0];
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(run["tool"]["driver"]["name"], "pgready");
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().map(Vec::len),
            Some(r.findings.len())
        );
        let results = run["results"].as_array().cloned().unwrap_or_default();
        let got: Vec<(&str, &str, &str)> = results
            .iter()
            .map(|x| {
                (
                    x["ruleId"].as_str().unwrap_or(""),
                    x["kind"].as_str().unwrap_or(""),
                    x["level"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("sec.tls.ssl_on", "fail", "error"),
                ("sec.auth.trust", "fail", "error"),
                ("sec.hba.no_trust", "open", "none"),
                ("cfg.broken", "open", "none"),
            ]
        );
        for x in &results {
            let i = x["ruleIndex"].as_u64().unwrap_or(u64::MAX) as usize;
            assert_eq!(run["tool"]["driver"]["rules"][i]["id"], x["ruleId"]);
            assert_eq!(
                x["locations"][0]["logicalLocations"][0]["name"],
                "db1:5432/app"
            );
        }
        assert!(
            results[2]["message"]["text"]
                .as_str()
                .is_some_and(|m| m.contains("needs superuser"))
        );
        let rule = &run["tool"]["driver"]["rules"][1];
        assert_eq!(rule["shortDescription"]["text"], "Title of sec.tls.ssl_on");
        assert_eq!(rule["help"]["text"], "Do the right thing.");
        assert_eq!(
            rule["helpUri"],
            "https://www.postgresql.org/docs/current/ssl-tcp.html"
        );
        assert_eq!(rule["properties"]["pillar"], "security");
        assert_eq!(rule["properties"]["covers"][0], "S4");
    }

    #[test]
    fn full_description_is_the_rationale() {
        let pack = pack();
        let mut r = sample_report();
        let Some(real) = pack.rules.first() else {
            panic!("empty pack")
        };
        r.findings[1].rule_id = real.id.clone();
        let log = log(&r, &pack);
        assert_eq!(
            log["runs"][0]["tool"]["driver"]["rules"][1]["fullDescription"]["text"],
            real.rationale.trim()
        );
    }
}
