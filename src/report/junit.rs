//! `--format junit`: JUnit XML for the test reporters of GitLab, Jenkins and GitHub.
//!
//! A first suite `verdict` holds one case, the decision: it fails on NO-GO (and on GO WITH
//! RESERVATIONS with `--fail-on reservations`, as the exit code does). Then one suite per
//! pillar and one case per rule (`classname` the pillar, `name` the rule id and title):
//! fail and not evaluated are `<failure>` (a rule pgready could not verify is never met),
//! error is `<error>`, not applicable and waived are `<skipped>`.

use std::fmt::Write as _;

use super::{
    Report, criterion_status, escape_markup as text, escape_markup_attr as attr, observed, percent,
};
use crate::evaluate::{Finding, Status};

/// What a test case concluded.
enum Outcome {
    Pass,
    Failure {
        kind: &'static str,
        message: String,
        body: String,
    },
    Error {
        message: String,
        body: String,
    },
    Skipped {
        message: String,
    },
}

struct Case {
    classname: String,
    name: String,
    outcome: Outcome,
    system_out: Option<String>,
}

#[derive(Default)]
struct Totals {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Totals {
    fn of(cases: &[Case]) -> Totals {
        let mut t = Totals {
            tests: cases.len(),
            ..Totals::default()
        };
        for c in cases {
            match c.outcome {
                Outcome::Pass => {}
                Outcome::Failure { .. } => t.failures += 1,
                Outcome::Error { .. } => t.errors += 1,
                Outcome::Skipped { .. } => t.skipped += 1,
            }
        }
        t
    }

    fn add(&mut self, o: &Totals) {
        self.tests += o.tests;
        self.failures += o.failures;
        self.errors += o.errors;
        self.skipped += o.skipped;
    }

    fn attrs(&self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\"",
            self.tests, self.failures, self.errors, self.skipped
        )
    }
}

/// The decision, its reasons, the criteria and the maturity level, as plain text.
fn verdict_text(r: &Report) -> String {
    let v = &r.verdict;
    let mut out = format!("Decision: {}\n", v.decision.label());
    for reason in &v.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    out.push_str("Go/No-Go grid:\n");
    for c in &v.criteria {
        let _ = writeln!(
            out,
            "  {} {}: {} (minimum {:.0}%) {}{}",
            c.id,
            c.title,
            percent(c.score),
            c.minimum,
            criterion_status(c),
            if c.hard_blocker {
                " (hard blocker)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        out,
        "Maturity: level {} ({})",
        v.maturity_level, v.maturity_name
    );
    if let Some(n) = &v.next_level {
        let _ = writeln!(
            out,
            "To reach level {} ({}), fix: {}",
            n.level,
            n.name,
            n.blocking_rules.join(", ")
        );
    }
    out
}

fn verdict_case(r: &Report, fail_on_reservations: bool) -> Case {
    let v = &r.verdict;
    let body = verdict_text(r);
    let (outcome, system_out) = if r.fails(fail_on_reservations) {
        let message = if v.reasons.is_empty() {
            v.decision.label().to_string()
        } else {
            format!("{}: {}", v.decision.label(), v.reasons.join("; "))
        };
        (
            Outcome::Failure {
                kind: "verdict",
                message,
                body,
            },
            None,
        )
    } else {
        (Outcome::Pass, Some(body))
    };
    Case {
        classname: "verdict".to_string(),
        name: format!("verdict: {}", v.decision.label()),
        outcome,
        system_out,
    }
}

/// Everything a finding says, for a failure or error body.
fn details(f: &Finding) -> String {
    let mut out = format!(
        "{} · severity {} · level {} · covers {}\n",
        f.status.label(),
        f.severity,
        f.level,
        f.covers.join(", ")
    );
    if f.status == Status::NotEvaluated {
        out.push_str(
            "Not evaluated: pgready could not verify this rule, so it counts as not met.\n",
        );
    }
    if let Some(reason) = &f.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    if let Some(a) = &f.actual {
        let _ = writeln!(out, "actual: {a}");
    }
    if !f.offenders.is_empty() {
        let _ = writeln!(out, "offenders ({}):", f.offenders.len());
        for o in &f.offenders {
            let _ = writeln!(out, "  {o}");
        }
    }
    if let Some(e) = &f.expected {
        let _ = writeln!(out, "expected: {e}");
    }
    let _ = writeln!(out, "remediation: {}", f.remediation.trim_end());
    if !f.references.is_empty() {
        out.push_str("references:\n");
        for r in &f.references {
            let _ = writeln!(out, "  {r}");
        }
    }
    out
}

/// `LABEL: first line of what was observed`, or of the title.
fn summary(label: &str, f: &Finding) -> String {
    let seen = observed(f, 1);
    let first = seen.lines().next().unwrap_or(&f.title);
    format!("{label}: {first}")
}

fn rule_case(f: &Finding) -> Case {
    let outcome = match f.status {
        Status::Pass => Outcome::Pass,
        Status::Fail => Outcome::Failure {
            kind: "fail",
            message: summary("FAIL", f),
            body: details(f),
        },
        Status::NotEvaluated => Outcome::Failure {
            kind: "not_evaluated",
            message: summary("NOT EVALUATED (never counted as passing)", f),
            body: details(f),
        },
        Status::Error => Outcome::Error {
            message: summary("rule error", f),
            body: details(f),
        },
        Status::NotApplicable => Outcome::Skipped {
            message: match &f.reason {
                Some(r) => format!("not applicable: {r}"),
                None => "not applicable".to_string(),
            },
        },
        Status::Waived => Outcome::Skipped {
            message: match &f.reason {
                Some(r) => format!("waived: {r}"),
                None => "waived".to_string(),
            },
        },
    };
    Case {
        classname: f.pillar.as_str().to_string(),
        name: format!("{}: {}", f.rule_id, f.title),
        outcome,
        system_out: None,
    }
}

fn write_case(out: &mut String, c: &Case) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
        attr(&c.classname),
        attr(&c.name)
    );
    if matches!(c.outcome, Outcome::Pass) && c.system_out.is_none() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    match &c.outcome {
        Outcome::Pass => {}
        Outcome::Failure {
            kind,
            message,
            body,
        } => {
            let _ = writeln!(
                out,
                "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                attr(message),
                text(body)
            );
        }
        Outcome::Error { message, body } => {
            let _ = writeln!(
                out,
                "      <error type=\"error\" message=\"{}\">{}</error>",
                attr(message),
                text(body)
            );
        }
        Outcome::Skipped { message } => {
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", attr(message));
        }
    }
    if let Some(s) = &c.system_out {
        let _ = writeln!(out, "      <system-out>{}</system-out>", text(s));
    }
    out.push_str("    </testcase>\n");
}

/// ` timestamp="2026-12-03T14:27:53"` (JUnit's schema: ISO 8601 without a zone; this one
/// is UTC), or nothing when the time is out of range.
fn timestamp(epoch: i64) -> String {
    super::rfc3339(epoch)
        .map(|t| format!(" timestamp=\"{}\"", t.trim_end_matches('Z')))
        .unwrap_or_default()
}

/// Render the report as one JUnit XML document.
pub fn render(r: &Report, fail_on_reservations: bool) -> String {
    let mut suites: Vec<(String, Vec<Case>)> = vec![(
        "verdict".to_string(),
        vec![verdict_case(r, fail_on_reservations)],
    )];
    for p in &r.pillars {
        let cases: Vec<Case> = r
            .findings
            .iter()
            .filter(|f| f.pillar == p.pillar)
            .map(rule_case)
            .collect();
        if !cases.is_empty() {
            suites.push((p.pillar.as_str().to_string(), cases));
        }
    }
    let server = r.server_name();
    let stamp = timestamp(r.collected_at);
    let mut total = Totals::default();
    let mut body = String::new();
    for (id, (name, cases)) in suites.iter().enumerate() {
        let t = Totals::of(cases);
        total.add(&t);
        let _ = writeln!(
            body,
            "  <testsuite id=\"{id}\" name=\"{}\" {} time=\"0\"{stamp} hostname=\"{}\">",
            attr(name),
            t.attrs(),
            attr(&server)
        );
        if id == 0 {
            body.push_str("    <properties>\n");
            for (k, v) in [
                ("target", r.target.display.clone()),
                (
                    "server_version",
                    r.server.version.clone().unwrap_or_default(),
                ),
                ("pgready_version", r.pgready_version.clone()),
                ("decision", r.verdict.decision.label().to_string()),
                ("maturity_level", r.verdict.maturity_level.to_string()),
                ("maturity_name", r.verdict.maturity_name.clone()),
            ] {
                let _ = writeln!(
                    body,
                    "      <property name=\"{k}\" value=\"{}\"/>",
                    attr(&v)
                );
            }
            body.push_str("    </properties>\n");
        }
        for c in cases {
            write_case(&mut body, c);
        }
        body.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" {} time=\"{:.3}\"{stamp}>\n{body}</testsuites>",
        attr(&format!("pgready audit of {server}")),
        total.attrs(),
        r.duration_ms as f64 / 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Decision;
    use crate::report::sample_report;

    fn count(xml: &str, needle: &str) -> usize {
        xml.matches(needle).count()
    }

    #[test]
    fn counts_match_the_cases() {
        let r = sample_report();
        let xml = render(&r, false);
        // Verdict (NO-GO: a failure), then one case per finding.
        assert_eq!(count(&xml, "<testcase "), r.findings.len() + 1);
        let by = |s: Status| r.findings.iter().filter(|f| f.status == s).count();
        let failures = by(Status::Fail) + by(Status::NotEvaluated) + 1;
        let errors = by(Status::Error);
        let skipped = by(Status::NotApplicable) + by(Status::Waived);
        assert_eq!(count(&xml, "<failure "), failures);
        assert_eq!(count(&xml, "<error "), errors);
        assert_eq!(count(&xml, "<skipped "), skipped);
        assert!(xml.contains(&format!(
            "<testsuites name=\"pgready audit of db1:5432/app\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\"",
            r.findings.len() + 1
        )), "{xml}");
    }

    #[test]
    fn not_evaluated_is_a_failure_that_says_so() {
        let xml = render(&sample_report(), false);
        assert!(
            xml.contains("<failure type=\"not_evaluated\" message=\"NOT EVALUATED (never counted as passing): needs superuser"),
            "{xml}"
        );
        assert!(xml.contains("<skipped message=\"waived: accepted until the migration"));
    }

    #[test]
    fn verdict_follows_fail_on() {
        let mut r = sample_report();
        r.verdict.decision = Decision::GoWithReservations;
        let passing = render(&r, false);
        let case = passing
            .split("<testsuite id=\"1\"")
            .next()
            .unwrap_or_default();
        assert!(!case.contains("<failure"), "{case}");
        assert!(case.contains("<system-out>Decision: GO WITH RESERVATIONS"));
        let failing = render(&r, true);
        assert!(failing.contains("<failure type=\"verdict\" message=\"GO WITH RESERVATIONS: "));
        r.verdict.decision = Decision::Go;
        assert!(!render(&r, true).contains("type=\"verdict\""));
    }

    #[test]
    fn hostile_text_is_escaped() {
        let xml = render(&sample_report(), false);
        assert!(xml.contains("&lt;/failure&gt;&lt;script&gt;"), "{xml}");
        assert!(xml.contains("O&#39;Brien &amp; &quot;co&quot;"));
        assert!(!xml.contains('\u{1}'));
        assert!(!xml.contains('\u{1b}'));
        // Only the markup pgready wrote opens an element.
        assert_eq!(count(&xml, "<failure"), count(&xml, "</failure>"));
    }
}
