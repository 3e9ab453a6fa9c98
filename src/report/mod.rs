//! The report model (the versioned JSON schema) and its renderers.

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod prometheus;
pub mod rules;
pub mod sarif;
pub mod text;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::evaluate::{Finding, Status};
use crate::facts::{Facts, TargetInfo};
use crate::judge::{
    CriterionResult, CriterionStatus, Decision, Judgement, NextLevel, PillarScore, Score,
};
use crate::rules::Pillar;

/// Version of the report JSON schema (`docs/report-schema.md`).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Output formats of `pgready audit`. Every one renders the same report (`--from-facts`
/// included) and none changes the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for a terminal or a CI log.
    Text,
    /// The versioned JSON report on stdout.
    Json,
    /// JUnit XML for CI test reporters: a test suite per pillar, a test case per rule,
    /// and a first "verdict" case.
    Junit,
    /// SARIF 2.1.0: the rules, and a result per failed, not evaluated or errored rule.
    Sarif,
    /// Markdown for a CI job summary or a merge-request comment.
    Markdown,
    /// One self-contained HTML page (inline CSS, no script, nothing fetched), printable.
    Html,
    /// Prometheus text exposition format 0.0.4, for node_exporter's textfile collector.
    Prometheus,
}

/// Output formats of `pgready rules list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// A table.
    Text,
    /// A JSON array.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    pub version: Option<String>,
    pub version_num: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SectionStatus {
    pub collected: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerdictReport {
    pub decision: Decision,
    pub reasons: Vec<String>,
    pub maturity_level: u8,
    pub maturity_name: String,
    pub next_level: Option<NextLevel>,
    pub criteria: Vec<CriterionResult>,
}

/// Which release table (S10) the report was judged with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleasesInfo {
    /// The newest release the table knows (`YYYY-MM-DD`).
    pub as_of: String,
    /// `embedded` or the file given with `--releases`.
    pub source: String,
}

/// Everything a renderer needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub pgready_version: String,
    pub target: TargetInfo,
    pub server: ServerInfo,
    pub collected_at: i64,
    pub duration_ms: u64,
    pub context: serde_json::Value,
    pub verdict: VerdictReport,
    pub pillars: Vec<PillarScore>,
    pub findings: Vec<Finding>,
    /// What was and was not collected, and why.
    pub sections: BTreeMap<String, SectionStatus>,
    /// The release table the S10 rules judged with (null when the snapshot has none).
    #[serde(default)]
    pub releases: Option<ReleasesInfo>,
}

impl Report {
    pub fn new(facts: &Facts, findings: Vec<Finding>, j: Judgement) -> Report {
        let server = facts.section("server").filter(|s| s.collected);
        let server = ServerInfo {
            version: server
                .and_then(|s| s.data.get("version"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
            version_num: server
                .and_then(|s| s.data.get("version_num"))
                .and_then(|v| v.as_i64()),
        };
        let context = facts
            .section("context")
            .map(|s| s.data.clone())
            .unwrap_or(serde_json::Value::Null);
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            pgready_version: env!("CARGO_PKG_VERSION").to_string(),
            target: facts.target.clone(),
            server,
            collected_at: facts.collected_at,
            duration_ms: facts.duration_ms,
            releases: crate::releases::report_info(facts)
                .map(|(as_of, source)| ReleasesInfo { as_of, source }),
            context,
            verdict: VerdictReport {
                decision: j.decision,
                reasons: j.reasons,
                maturity_level: j.maturity_level,
                maturity_name: j.maturity_name,
                next_level: j.next_level,
                criteria: j.criteria,
            },
            pillars: j.pillars,
            findings,
            sections: facts
                .sections
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        SectionStatus {
                            collected: s.collected,
                            partial: s.partial,
                            reason: s.reason.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl Report {
    /// Whether CI should fail on this report: NO-GO always, GO WITH RESERVATIONS only with
    /// `--fail-on reservations`. The exit code and the JUnit verdict both follow it.
    pub fn fails(&self, fail_on_reservations: bool) -> bool {
        match self.verdict.decision {
            Decision::Go => false,
            Decision::GoWithReservations => fail_on_reservations,
            Decision::NoGo => true,
        }
    }

    /// The findings of one pillar, in [`attention_order`].
    pub fn pillar_findings(&self, pillar: Pillar) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.pillar == pillar)
            .collect();
        out.sort_by_key(|f| attention_order(f));
        out
    }

    /// The title of rule `id`, or "" when the report has no finding for it.
    pub fn rule_title(&self, id: &str) -> &str {
        self.findings
            .iter()
            .find(|f| f.rule_id == id)
            .map_or("", |f| f.title.as_str())
    }

    /// The audited server as `host:port/db` (`/socket/dir:port/db` for a Unix socket),
    /// read from the redacted target URI; the URI itself when it is not one.
    pub fn server_name(&self) -> String {
        let display = &self.target.display;
        let Some(rest) = display
            .strip_prefix("postgresql://")
            .or_else(|| display.strip_prefix("postgres://"))
        else {
            return if display.is_empty() {
                "unknown".to_string()
            } else {
                display.clone()
            };
        };
        let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
        let (authority_path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, db) = authority_path
            .split_once('/')
            .unwrap_or((authority_path, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map(decode)
        };
        let authority = if authority.is_empty() {
            // A Unix socket: postgresql://user@/db?host=/run/pg&port=5432
            format!(
                "{}:{}",
                param("host").unwrap_or_default(),
                param("port").unwrap_or_else(|| "5432".to_string())
            )
        } else {
            decode(authority)
        };
        format!("{authority}/{}", decode(db))
    }

    /// The context the rules were judged in: `deployment self-managed (default), …`.
    pub fn context_line(&self) -> Option<String> {
        let ctx = self.context.as_object()?;
        let sources = ctx.get("sources").and_then(|s| s.as_object());
        let parts: Vec<String> = [
            "deployment",
            "size",
            "criticality",
            "workload",
            "storage",
            "ram",
            "cpus",
        ]
        .iter()
        .filter_map(|k| {
            let v = match ctx.get(*k)? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            let src = sources
                .and_then(|s| s.get(*k))
                .and_then(|s| s.as_str())
                .unwrap_or("default");
            Some(format!("{k} {v} ({src})"))
        })
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// The fact sections that were not (or only partly) collected: `name: what: reason`.
    pub fn unread_sections(&self) -> Vec<String> {
        self.sections
            .iter()
            .filter(|(_, s)| !s.collected || s.partial)
            .map(|(name, s)| {
                let what = if s.collected {
                    "partly collected"
                } else {
                    "not collected"
                };
                format!(
                    "{name}: {what}: {}",
                    s.reason.as_deref().unwrap_or("unknown reason")
                )
            })
            .collect()
    }
}

/// What every report lists: fail, error, not evaluated and waived. Passing and
/// not-applicable rules are only counted (the text report's `--verbose` lists them).
pub fn needs_attention(f: &Finding) -> bool {
    !matches!(f.status, Status::Pass | Status::NotApplicable)
}

/// The order findings are listed in: fail, error, not evaluated, waived, pass, not
/// applicable; the most severe first within a status.
pub fn attention_order(f: &Finding) -> (Status, std::cmp::Reverse<crate::rules::Severity>) {
    (f.status, std::cmp::Reverse(f.severity))
}

/// How many offenders the human formats show per finding before "… and N more".
pub const MAX_OFFENDERS: usize = 5;

/// The first `max` items, one per line, then "… and N more".
pub fn first_lines(items: &[String], max: usize) -> String {
    let mut out = items
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    if items.len() > max {
        let _ = write!(out, "\n… and {} more", items.len() - max);
    }
    out
}

/// What a finding observed: the actual value, the offenders (at most `max`) and the
/// reason (not evaluated, error, waived), one per line.
pub fn observed(f: &Finding, max: usize) -> String {
    let offenders = (!f.offenders.is_empty()).then(|| first_lines(&f.offenders, max));
    [f.actual.clone(), offenders, f.reason.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

/// `98% (63 pass, 1 fail, 3 not applicable)`.
pub fn score_line(s: &Score) -> String {
    format!("{} ({})", percent(s.percent), counts_line(s))
}

/// `63 pass, 1 fail, 3 not applicable`: pass and fail always, the others when not zero.
pub fn counts_line(s: &Score) -> String {
    let c = &s.counts;
    let mut parts = vec![format!("{} pass", c.pass), format!("{} fail", c.fail)];
    for (n, label) in [
        (c.not_evaluated, "not evaluated"),
        (c.error, "error"),
        (c.not_applicable, "not applicable"),
        (c.waived, "waived"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {label}"));
        }
    }
    parts.join(", ")
}

/// `62%`, or `not scored` when nothing counted.
pub fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "not scored".to_string(), |p| format!("{p:.0}%"))
}

/// A criterion's score for a table: `62%`, or `—` when nothing could be judged.
pub fn criterion_score(c: &CriterionResult) -> String {
    c.score
        .map_or_else(|| "—".to_string(), |s| format!("{s:.0}%"))
}

/// `met`, `below` or `unverified`.
pub fn criterion_status(c: &CriterionResult) -> &'static str {
    match c.status {
        CriterionStatus::Met => "met",
        CriterionStatus::Below => "below",
        CriterionStatus::Unverified => "unverified",
    }
}

/// Whether `c` is a character XML 1.0 allows in a document (`Char`, with the C1 controls
/// and DEL, which it only discourages, left out too: HTML forbids them).
fn markup_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || !(c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
}

/// Escape text for XML 1.0 and HTML, in element content and in quoted attribute values:
/// `& < > " '` become references, characters a document may not contain (control
/// characters but tab, line feed and carriage return) become U+FFFD.
pub fn escape_markup(s: &str) -> String {
    escape_markup_with(s, false)
}

/// [`escape_markup`] for an attribute value whose line breaks and tabs must survive
/// attribute-value normalisation: they become character references too.
pub fn escape_markup_attr(s: &str) -> String {
    escape_markup_with(s, true)
}

fn escape_markup_with(s: &str, attr: bool) -> String {
    replace_chars(s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#39;"),
        '\t' if attr => Some("&#9;"),
        '\n' if attr => Some("&#10;"),
        '\r' if attr => Some("&#13;"),
        c if !markup_char(c) => Some("\u{FFFD}"),
        _ => None,
    })
}

/// `s` with every character that `map` names replaced by what it returns: the one loop
/// behind each format's escaping.
pub fn replace_chars(s: &str, map: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match map(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    out
}

/// `2026-12-03T14:27:53Z`, or None when the time is out of range.
pub fn rfc3339(epoch: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A small report with every status, every decision input and hostile server text, for
/// the renderers' unit tests.
#[cfg(test)]
pub(crate) fn sample_report() -> Report {
    use crate::rules::Severity;

    let mut findings: Vec<Finding> = [
        (
            "cfg.memory.shared_buffers",
            Pillar::Configuration,
            Severity::Medium,
            Status::Pass,
        ),
        (
            "sec.tls.ssl_on",
            Pillar::Security,
            Severity::High,
            Status::Fail,
        ),
        (
            "sec.auth.trust",
            Pillar::Security,
            Severity::Critical,
            Status::Fail,
        ),
        (
            "sec.hba.no_trust",
            Pillar::Security,
            Severity::Medium,
            Status::NotEvaluated,
        ),
        (
            "cfg.broken",
            Pillar::Configuration,
            Severity::Low,
            Status::Error,
        ),
        (
            "bak.backup.offsite",
            Pillar::Backup,
            Severity::High,
            Status::Waived,
        ),
        (
            "cfg.host.swappiness",
            Pillar::Configuration,
            Severity::Low,
            Status::NotApplicable,
        ),
        (
            "mon.stats.pgss",
            Pillar::Monitoring,
            Severity::Info,
            Status::Pass,
        ),
    ]
    .into_iter()
    .map(|(id, pillar, severity, status)| Finding {
        rule_id: id.to_string(),
        pillar,
        title: format!("Title of {id}"),
        severity,
        level: 1,
        status,
        covers: vec!["S4".to_string()],
        reason: None,
        actual: None,
        expected: None,
        offenders: Vec::new(),
        remediation: "Do the right thing.".to_string(),
        references: vec!["https://www.postgresql.org/docs/current/ssl-tcp.html".to_string()],
    })
    .collect();
    findings[1].actual = Some("ssl = off".to_string());
    findings[1].expected = Some("on".to_string());
    findings[1].offenders = vec![
        "role O'Brien & \"co\" <admin>".to_string(),
        "app_name </failure><script>alert(1)</script> | pipe".to_string(),
        "ctl\u{1}char\u{1b}[31m and\nnewline".to_string(),
    ];
    findings[2].actual = Some("trust on 0.0.0.0/0".to_string());
    findings[3].reason = Some("needs superuser: pg_hba_file_rules".to_string());
    findings[4].reason = Some("no such key: settings.nope".to_string());
    findings[5].reason = Some("accepted until the migration (ticket OPS-1)".to_string());
    let verdict = crate::rules::verdict::load(&crate::rules::embedded_verdict())
        .unwrap_or_else(|e| panic!("{e}"));
    let pillars = crate::judge::judge(&findings, &verdict, None).pillars;
    let criterion = |id: &str, status: CriterionStatus, score: Option<f64>| CriterionResult {
        id: id.to_string(),
        title: format!("Criterion {id}"),
        requirement: "90% | of the checklist met".to_string(),
        minimum: 90.0,
        score,
        status,
        hard_blocker: id == "G4",
        failing_rules: vec!["sec.tls.ssl_on".to_string()],
        reason: None,
    };
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        pgready_version: "0.1.0".to_string(),
        target: TargetInfo {
            display: "postgresql://audit@db1:5432/app?sslmode=verify-full".to_string(),
            local: false,
        },
        server: ServerInfo {
            version: Some("18.1 <Debian & \"friends\">".to_string()),
            version_num: Some(180001),
        },
        collected_at: 1_795_132_800,
        duration_ms: 1234,
        context: serde_json::json!({
            "deployment": "self-managed", "size": "mid", "ram": "24 GB",
            "sources": { "deployment": "default", "size": "file", "ram": "detected" }
        }),
        verdict: VerdictReport {
            decision: Decision::NoGo,
            reasons: vec!["hard blocker: G4 Backup tested is below".to_string()],
            maturity_level: 0,
            maturity_name: "Cowboy".to_string(),
            next_level: Some(NextLevel {
                level: 1,
                name: "Beginner".to_string(),
                description: "the basics".to_string(),
                blocking_rules: vec!["sec.tls.ssl_on".to_string()],
            }),
            criteria: vec![
                criterion("G1", CriterionStatus::Below, Some(40.0)),
                criterion("G2", CriterionStatus::Met, Some(100.0)),
                criterion("G4", CriterionStatus::Unverified, None),
            ],
        },
        pillars,
        findings,
        sections: BTreeMap::from([(
            "hba".to_string(),
            SectionStatus {
                collected: false,
                partial: false,
                reason: Some("needs superuser".to_string()),
            },
        )]),
        releases: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escaping() {
        assert_eq!(
            escape_markup(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        // Control characters XML 1.0 forbids are replaced; tab, LF and CR stay.
        assert_eq!(
            escape_markup("x\u{0}y\u{1b}z\u{7f}\u{85}\t\n\r\u{FFFE}é€😀"),
            "x\u{FFFD}y\u{FFFD}z\u{FFFD}\u{FFFD}\t\n\r\u{FFFD}é€😀"
        );
        assert_eq!(
            escape_markup_attr("a\nb\tc\rd\""),
            "a&#10;b&#9;c&#13;d&quot;"
        );
    }

    #[test]
    fn server_name_from_the_redacted_uri() {
        let mut r = sample_report();
        let name = |r: &mut Report, d: &str| {
            r.target.display = d.to_string();
            r.server_name()
        };
        assert_eq!(
            name(
                &mut r,
                "postgresql://audit@db1.example.com:6432/app?sslmode=prefer"
            ),
            "db1.example.com:6432/app"
        );
        assert_eq!(
            name(&mut r, "postgresql://a@[::1]:5432/a?sslmode=verify-full"),
            "[::1]:5432/a"
        );
        assert_eq!(
            name(
                &mut r,
                "postgresql://x%40y@db1:5432/my%20db%2F1?sslmode=prefer&hostaddr=10.0.0.5"
            ),
            "db1:5432/my db/1"
        );
        assert_eq!(
            name(&mut r, "postgresql://u@/u?host=/run/pg&port=5433"),
            "/run/pg:5433/u"
        );
        assert_eq!(name(&mut r, ""), "unknown");
    }

    #[test]
    fn observed_joins_actual_offenders_reason() {
        let r = sample_report();
        let f = &r.findings[1];
        assert_eq!(
            observed(f, 1),
            "ssl = off\nrole O'Brien & \"co\" <admin>\n… and 2 more"
        );
    }

    #[test]
    fn attention_order_puts_failures_first() {
        let r = sample_report();
        let ids: Vec<&str> = r
            .pillar_findings(Pillar::Security)
            .iter()
            .map(|f| f.rule_id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["sec.auth.trust", "sec.tls.ssl_on", "sec.hba.no_trust"]
        );
    }
}
