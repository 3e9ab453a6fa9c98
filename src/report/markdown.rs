//! `--format markdown`: a CI job summary (`$GITHUB_STEP_SUMMARY`) or a merge-request
//! comment. The decision and maturity level, the Go/No-Go grid, then what needs attention
//! per pillar (what was seen in the table, what is expected and how to fix it folded in
//! `<details>`), then how many rules passed.

use std::fmt::Write as _;

use super::{
    MAX_OFFENDERS, Report, criterion_score, criterion_status, needs_attention, observed, score_line,
};
use crate::evaluate::Status;
use crate::judge::Decision;

/// Text from facts or rules, made inert: escaped as for HTML (GitHub and GitLab render
/// the entities; control characters become U+FFFD), then Markdown punctuation
/// backslash-escaped.
fn inline(s: &str) -> String {
    super::replace_chars(&super::escape_markup(s), |c| match c {
        '\\' => Some("\\\\"),
        '`' => Some("\\`"),
        '*' => Some("\\*"),
        '_' => Some("\\_"),
        '[' => Some("\\["),
        ']' => Some("\\]"),
        '|' => Some("\\|"),
        '~' => Some("\\~"),
        _ => None,
    })
}

/// [`inline`] for a table cell: `|` escaped, line breaks as `<br>`.
fn cell(s: &str) -> String {
    inline(s.trim_end())
        .replace("\r\n", "\n")
        .replace('\n', "<br>")
}

/// [`inline`] for a paragraph: each line break kept as a Markdown hard break.
fn block(s: &str) -> String {
    inline(s.trim_end()).replace('\n', "  \n")
}

/// Rule ids as code spans, at most [`MAX_OFFENDERS`] then "… and N more".
fn code_list(ids: &[String], sep: &str) -> String {
    let mut parts: Vec<String> = ids
        .iter()
        .take(MAX_OFFENDERS)
        .map(|id| format!("`{}`", id.replace('`', "'")))
        .collect();
    if ids.len() > MAX_OFFENDERS {
        parts.push(format!("… and {} more", ids.len() - MAX_OFFENDERS));
    }
    parts.join(sep)
}

fn icon(d: Decision) -> &'static str {
    match d {
        Decision::Go => "✅",
        Decision::GoWithReservations => "⚠️",
        Decision::NoGo => "❌",
    }
}

/// Render the report as GitHub-flavoured Markdown.
pub fn render(r: &Report) -> String {
    let v = &r.verdict;
    let mut out = format!(
        "## {} pgready: **{}** · maturity level {} ({})\n\n",
        icon(v.decision),
        v.decision.label(),
        v.maturity_level,
        inline(&v.maturity_name)
    );
    let _ = writeln!(
        out,
        "`{}` · PostgreSQL {} · collected {} · pgready {}\n",
        r.server_name().replace('`', "'"),
        inline(r.server.version.as_deref().unwrap_or("unknown version")),
        super::text::utc_time(r.collected_at),
        inline(&r.pgready_version)
    );
    for reason in &v.reasons {
        let _ = writeln!(out, "- {}", block(reason));
    }
    if let Some(n) = &v.next_level {
        let _ = writeln!(
            out,
            "- to reach level {} ({}), fix: {}",
            n.level,
            inline(&n.name),
            code_list(&n.blocking_rules, ", ")
        );
    }

    out.push_str("\n### Go/No-Go grid\n\n| Criterion | Requirement | Score | Minimum | Status | Blocking rules |\n|---|---|---|---|---|---|\n");
    for c in &v.criteria {
        let status = if c.hard_blocker {
            format!("{} (hard blocker)", criterion_status(c))
        } else {
            criterion_status(c).to_string()
        };
        let _ = writeln!(
            out,
            "| {} {} | {} | {} | {:.0}% | {} | {} |",
            c.id,
            cell(&c.title),
            cell(&c.requirement),
            criterion_score(c),
            c.minimum,
            if c.status == crate::judge::CriterionStatus::Met {
                format!("✅ {status}")
            } else {
                format!("❌ {status}")
            },
            code_list(&c.failing_rules, "<br>")
        );
    }

    let attention = r.findings.iter().filter(|f| needs_attention(f)).count();
    let _ = writeln!(out, "\n### Needs attention ({attention})");
    for p in &r.pillars {
        let findings: Vec<_> = r
            .pillar_findings(p.pillar)
            .into_iter()
            .filter(|f| needs_attention(f))
            .collect();
        if findings.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n#### {} — {}\n\n| Status | Severity | Rule | Title | Observed |\n|---|---|---|---|---|",
            inline(&p.title),
            score_line(&p.score)
        );
        for f in &findings {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} |",
                f.status.label(),
                f.severity,
                f.rule_id,
                cell(&f.title),
                cell(&observed(f, MAX_OFFENDERS))
            );
        }
        out.push('\n');
        for f in &findings {
            let _ = writeln!(
                out,
                "<details><summary><code>{}</code> {}: expected, how to fix</summary>\n",
                f.rule_id,
                super::escape_markup(&f.title)
            );
            if f.status == Status::NotEvaluated {
                out.push_str("Not evaluated: pgready could not verify this rule, so it counts as not met.\n\n");
            }
            if f.offenders.len() > MAX_OFFENDERS {
                let _ = writeln!(out, "All {} offenders:\n", f.offenders.len());
                for o in &f.offenders {
                    let _ = writeln!(out, "- {}", inline(o));
                }
                out.push('\n');
            }
            if let Some(e) = &f.expected {
                let _ = writeln!(out, "**Expected:** {}\n", block(e));
            }
            let _ = writeln!(out, "**Remediation:** {}\n", block(&f.remediation));
            if !f.references.is_empty() {
                let refs: Vec<String> = f.references.iter().map(|u| format!("<{u}>")).collect();
                let _ = writeln!(out, "**References:** {}\n", refs.join(" · "));
            }
            let _ = writeln!(
                out,
                "`pgready rules show {}` explains the rule.\n\n</details>",
                f.rule_id
            );
        }
    }
    if attention == 0 {
        out.push_str("\nNothing: every rule passed or does not apply.\n");
    }

    let unread = r.unread_sections();
    if !unread.is_empty() {
        out.push_str("\n### What pgready could not read\n\nRules that need it are not evaluated, never passed.\n\n");
        for u in unread {
            let _ = writeln!(out, "- {}", inline(&u));
        }
    }

    let count = |s: Status| r.findings.iter().filter(|f| f.status == s).count();
    let _ = write!(
        out,
        "\n{} rules passed and {} do not apply (not listed); {} rules in all.",
        count(Status::Pass),
        count(Status::NotApplicable),
        r.findings.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn cells_escape_pipes_and_newlines() {
        assert_eq!(cell("a | b\nc\r\nd"), "a \\| b<br>c<br>d");
        assert_eq!(cell("<script>&"), "&lt;script&gt;&amp;");
        assert_eq!(inline("x\u{1b}[31m_y_"), "x\u{FFFD}\\[31m\\_y\\_");
    }

    #[test]
    fn layout() {
        let md = render(&sample_report());
        assert!(
            md.starts_with("## ❌ pgready: **NO-GO** · maturity level 0 (Cowboy)"),
            "{md}"
        );
        assert!(md.contains("| G1 Criterion G1 | 90% \\| of the checklist met | 40% | 90% | ❌ below | `sec.tls.ssl_on` |"), "{md}");
        assert!(md.contains("### Needs attention (5)"));
        assert!(md.contains("#### Security — 0% (0 pass, 2 fail, 1 not evaluated)"));
        assert!(md.contains("| FAIL | high | `sec.tls.ssl_on` | Title of sec.tls.ssl\\_on | ssl = off<br>role O&#39;Brien &amp; &quot;co&quot; &lt;admin&gt;<br>app\\_name &lt;/failure&gt;&lt;script&gt;alert(1)&lt;/script&gt; \\| pipe<br>ctl\u{FFFD}char\u{FFFD}\\[31m and<br>newline |"), "{md}");
        assert!(md.contains("| WAIVED | high | `bak.backup.offsite` |"));
        assert!(md.contains("**Remediation:** Do the right thing."));
        assert!(md.ends_with("2 rules passed and 1 do not apply (not listed); 8 rules in all."));
        // Every table row has the header's number of cells.
        for line in md.lines().filter(|l| l.starts_with("| ")) {
            let cells = line.replace("\\|", "").matches('|').count();
            assert!(cells == 6 || cells == 7, "{line}");
        }
    }
}
