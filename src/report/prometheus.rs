//! `--format prometheus`: the text exposition format 0.0.4, for node_exporter's textfile
//! collector (`pgready audit … --format prometheus > /var/lib/node_exporter/pgready.prom`).
//!
//! Every series carries `target` (`host:port/db`). Gauges only, no timestamps (the
//! textfile collector refuses them); `pgready_audit_timestamp_seconds` says when the
//! facts were collected.

use std::fmt::Write as _;

use super::Report;
use crate::evaluate::Status;
use crate::judge::{CriterionStatus, Decision};
use crate::rules::Severity;

/// A label value: backslash, double quote and line feed escaped.
fn label(s: &str) -> String {
    super::replace_chars(s, |c| match c {
        '\\' => Some("\\\\"),
        '"' => Some("\\\""),
        '\n' => Some("\\n"),
        _ => None,
    })
}

/// A sample value; Prometheus reads Go's float syntax, which Rust's `Display` matches
/// for finite numbers.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

/// One metric family: HELP, TYPE gauge, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    target: &'a str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, target: &'a str, name: &'static str, help: &str) -> Self {
        // HELP text escapes backslash and line feed (help strings here have neither).
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        Family { out, name, target }
    }

    fn sample(&mut self, labels: &[(&str, &str)], v: f64) {
        let _ = write!(self.out, "{}{{target=\"{}\"", self.name, label(self.target));
        for (k, l) in labels {
            let _ = write!(self.out, ",{k}=\"{}\"", label(l));
        }
        let _ = writeln!(self.out, "}} {}", value(v));
    }
}

fn decision_value(d: Decision) -> &'static str {
    match d {
        Decision::Go => "GO",
        Decision::GoWithReservations => "GO_WITH_RESERVATIONS",
        Decision::NoGo => "NO_GO",
    }
}

const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

/// Render the report as Prometheus text exposition format 0.0.4.
pub fn render(r: &Report) -> String {
    let target = r.server_name();
    let t = target.as_str();
    let mut out = String::new();
    let one = |b: bool| if b { 1.0 } else { 0.0 };

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_info",
        "The pgready release and the PostgreSQL server version of the last audit (always 1).",
    );
    f.sample(
        &[
            ("version", &r.pgready_version),
            ("server_version", r.server.version.as_deref().unwrap_or("")),
        ],
        1.0,
    );

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_decision",
        "The Go/No-Go decision of the last audit: 1 for the decision made, 0 for the others.",
    );
    for d in [Decision::Go, Decision::GoWithReservations, Decision::NoGo] {
        f.sample(
            &[("decision", decision_value(d))],
            one(r.verdict.decision == d),
        );
    }

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_maturity_level",
        "The maturity level reached (0 Cowboy to 4).",
    );
    f.sample(&[], f64::from(r.verdict.maturity_level));

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_pillar_score_ratio",
        "Weighted share of a pillar's rules that passed (0-1); absent when nothing could be judged.",
    );
    for p in &r.pillars {
        if p.score.possible > 0.0 {
            f.sample(
                &[("pillar", p.pillar.as_str())],
                p.score.earned / p.score.possible,
            );
        }
    }

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_criterion_met",
        "Whether a Go/No-Go criterion is met (1) or below or unverified (0).",
    );
    for c in &r.verdict.criteria {
        f.sample(
            &[("criterion", &c.id), ("title", &c.title)],
            one(c.status == CriterionStatus::Met),
        );
    }

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_findings",
        "Number of rules per status and severity.",
    );
    for s in Status::ALL {
        for sev in SEVERITIES {
            let n = r
                .findings
                .iter()
                .filter(|x| x.status == s && x.severity == sev)
                .count();
            f.sample(
                &[("status", s.as_str()), ("severity", sev.as_str())],
                n as f64,
            );
        }
    }

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_rule_status",
        "One series per rule, always 1: its status, pillar and severity are labels.",
    );
    for x in &r.findings {
        f.sample(
            &[
                ("rule", &x.rule_id),
                ("status", x.status.as_str()),
                ("pillar", x.pillar.as_str()),
                ("severity", x.severity.as_str()),
            ],
            1.0,
        );
    }

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_audit_timestamp_seconds",
        "When the audited facts were collected, seconds since the Unix epoch.",
    );
    f.sample(&[], r.collected_at as f64);

    let mut f = Family::new(
        &mut out,
        t,
        "pgready_audit_duration_seconds",
        "How long collecting the facts took.",
    );
    f.sample(&[], r.duration_ms as f64 / 1000.0);

    // println! adds the final line feed the format requires.
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn label_escaping() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn samples() {
        let mut r = sample_report();
        r.findings[0].rule_id = "we\"ird\\id\nx".to_string();
        let text = render(&r);
        assert!(text.contains("pgready_decision{target=\"db1:5432/app\",decision=\"NO_GO\"} 1\n"));
        assert!(text.contains("pgready_decision{target=\"db1:5432/app\",decision=\"GO\"} 0\n"));
        assert!(text.contains(
            "pgready_pillar_score_ratio{target=\"db1:5432/app\",pillar=\"configuration\"} 0.6666666666666666\n"
        ));
        assert!(text.contains(
            "pgready_pillar_score_ratio{target=\"db1:5432/app\",pillar=\"security\"} 0\n"
        ));
        // Only an info rule (weight 0): nothing judged, no sample.
        assert!(!text.contains("ratio{target=\"db1:5432/app\",pillar=\"monitoring\""));
        assert!(text.contains("pgready_criterion_met{target=\"db1:5432/app\",criterion=\"G2\",title=\"Criterion G2\"} 1\n"));
        assert!(text.contains(
            "pgready_findings{target=\"db1:5432/app\",status=\"fail\",severity=\"high\"} 1\n"
        ));
        assert!(text.contains("rule=\"we\\\"ird\\\\id\\nx\""));
        assert!(
            text.contains("pgready_audit_timestamp_seconds{target=\"db1:5432/app\"} 1795132800\n")
        );
        assert!(text.ends_with("pgready_audit_duration_seconds{target=\"db1:5432/app\"} 1.234"));
        assert_eq!(
            text.matches("pgready_rule_status{").count(),
            r.findings.len()
        );
        assert_eq!(value(f64::NAN), "NaN");
    }
}
