//! `--format html`: one self-contained page (inline CSS, no script, nothing fetched: a
//! Content-Security-Policy says so to the browser), readable on screen and printable.
//! Every text from facts or rules is escaped.

use std::fmt::Write as _;

use super::{
    Report, criterion_score, criterion_status, escape_markup as esc, needs_attention, percent,
};
use crate::evaluate::{Finding, Status};
use crate::judge::{CriterionStatus, Decision};

const STYLE: &str = r#"
:root { --go: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: #1f2328; margin: 0 auto; max-width: 72rem; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .75rem 0 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.decision { border: 2px solid; border-radius: 8px; padding: .9rem 1.2rem; margin: 1.2rem 0; }
.decision .label { font-size: 1.6rem; font-weight: 700; letter-spacing: .02em; }
.decision ul { margin: .4rem 0 0; padding-left: 1.2rem; }
.decision.go { border-color: var(--go); background: #dafbe1; }
.decision.go .label { color: var(--go); }
.decision.go-with-reservations { border-color: var(--warn); background: #fff8c5; }
.decision.go-with-reservations .label { color: var(--warn); }
.decision.no-go { border-color: var(--bad); background: #ffebe9; }
.decision.no-go .label { color: var(--bad); }
.maturity { margin-top: .5rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .35rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
td.rules ul { margin: 0; padding-left: 0; list-style: none; }
.badge { display: inline-block; border-radius: 4px; padding: 0 .4rem; font-size: .8rem; font-weight: 700; white-space: nowrap; color: #fff; background: var(--muted); }
.badge.fail, .badge.error, .badge.below, .badge.unverified { background: var(--bad); }
.badge.not_evaluated { background: var(--warn); }
.badge.pass, .badge.met { background: var(--go); }
.sev { font-size: .8rem; color: var(--muted); white-space: nowrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
.finding { border: 1px solid var(--line); border-left: 4px solid var(--muted); border-radius: 6px; padding: .6rem .9rem; margin: .6rem 0; break-inside: avoid; }
.finding.fail, .finding.error { border-left-color: var(--bad); }
.finding.not_evaluated { border-left-color: var(--warn); }
.finding .head { display: flex; flex-wrap: wrap; gap: .5rem; align-items: baseline; }
.finding .title { font-weight: 600; }
.finding dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: .5rem 0 0; }
.finding dt { color: var(--muted); }
.finding dd { margin: 0; min-width: 0; }
.finding pre, .finding ul { margin: 0; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.finding ul { padding-left: 1.1rem; }
.note { color: var(--muted); }
.bar { display: inline-block; width: 8rem; height: .6rem; background: var(--soft); border: 1px solid var(--line); border-radius: 3px; vertical-align: middle; margin-right: .4rem; }
.bar span { display: block; height: 100%; background: var(--go); }
details > summary { cursor: pointer; font-weight: 600; margin: .4rem 0; }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .85rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  .decision, .badge, .bar span { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
}
"#;

fn decision_class(d: Decision) -> &'static str {
    match d {
        Decision::Go => "go",
        Decision::GoWithReservations => "go-with-reservations",
        Decision::NoGo => "no-go",
    }
}

/// A link when the reference is http(s), plain text otherwise (never a `javascript:` URL).
fn reference(u: &str) -> String {
    if u.starts_with("https://") || u.starts_with("http://") {
        format!("<a href=\"{0}\">{0}</a>", esc(u))
    } else {
        esc(u)
    }
}

/// Rule ids as code, each a link to its finding when `link`.
fn rule_ids(ids: &[String], link: bool, sep: &str) -> String {
    ids.iter()
        .map(|id| rule_id(id, link))
        .collect::<Vec<_>>()
        .join(sep)
}

fn rule_id(id: &str, link: bool) -> String {
    let id = esc(id);
    if link {
        format!("<a href=\"#{id}\"><code>{id}</code></a>")
    } else {
        format!("<code>{id}</code>")
    }
}

/// The first [`super::MAX_OFFENDERS`] items as a list, the rest folded under "N more".
fn folded_list(out: &mut String, items: &[String]) {
    let (shown, folded) = items.split_at(items.len().min(super::MAX_OFFENDERS));
    out.push_str("<ul>");
    for i in shown {
        let _ = write!(out, "<li>{i}</li>");
    }
    out.push_str("</ul>");
    if !folded.is_empty() {
        let _ = write!(out, "<details><summary>{} more</summary><ul>", folded.len());
        for i in folded {
            let _ = write!(out, "<li>{i}</li>");
        }
        out.push_str("</ul></details>");
    }
}

fn finding_card(out: &mut String, f: &Finding) {
    let _ = write!(
        out,
        "<div class=\"finding {0}\" id=\"{1}\"><div class=\"head\"><span class=\"badge {0}\">{2}</span> <code>{1}</code> <span class=\"title\">{3}</span> <span class=\"sev\">{4} · level {5} · covers {6}</span></div><dl>",
        f.status.as_str(),
        esc(&f.rule_id),
        f.status.label(),
        esc(&f.title),
        f.severity,
        f.level,
        esc(&f.covers.join(", "))
    );
    if f.status == Status::NotEvaluated {
        out.push_str("<dt>Not evaluated</dt><dd>pgready could not verify this rule, so it counts as not met.</dd>");
    }
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = write!(out, "<dt>{k}</dt><dd><pre>{}</pre></dd>", esc(v.trim_end()));
    };
    if let Some(reason) = &f.reason {
        row(out, "Reason", reason);
    }
    if let Some(a) = &f.actual {
        row(out, "Observed", a);
    }
    if !f.offenders.is_empty() {
        let _ = write!(out, "<dt>Offenders ({})</dt><dd>", f.offenders.len());
        let items: Vec<String> = f
            .offenders
            .iter()
            .map(|o| format!("<code>{}</code>", esc(o)))
            .collect();
        folded_list(out, &items);
        out.push_str("</dd>");
    }
    if let Some(e) = &f.expected {
        row(out, "Expected", e);
    }
    row(out, "Remediation", &f.remediation);
    if !f.references.is_empty() {
        out.push_str("<dt>References</dt><dd><ul>");
        for u in &f.references {
            let _ = write!(out, "<li>{}</li>", reference(u));
        }
        out.push_str("</ul></dd>");
    }
    out.push_str("</dl></div>\n");
}

fn header(out: &mut String, r: &Report) {
    let _ = write!(
        out,
        "<header><h1>pgready audit of {}</h1><dl class=\"meta\"><dt>Target</dt><dd><code>{}</code></dd><dt>Server</dt><dd>PostgreSQL {}</dd><dt>Collected at</dt><dd>{} in {} ms</dd>",
        esc(&r.server_name()),
        esc(&r.target.display),
        esc(r.server.version.as_deref().unwrap_or("unknown version")),
        super::text::utc_time(r.collected_at),
        r.duration_ms
    );
    if let Some(t) = &r.releases {
        let _ = write!(
            out,
            "<dt>Release table</dt><dd>as of {} ({}; newer releases are unknown to it)</dd>",
            esc(&t.as_of),
            esc(&t.source)
        );
    }
    if let Some(ctx) = r.context_line() {
        let _ = write!(out, "<dt>Context</dt><dd>{}</dd>", esc(&ctx));
    }
    let _ = writeln!(
        out,
        "<dt>pgready</dt><dd>{}</dd></dl></header>",
        esc(&r.pgready_version)
    );

    let v = &r.verdict;
    let _ = write!(
        out,
        "<section class=\"decision {}\"><div class=\"label\">{}</div>",
        decision_class(v.decision),
        v.decision.label()
    );
    if !v.reasons.is_empty() {
        out.push_str("<ul>");
        for reason in &v.reasons {
            let _ = write!(out, "<li>{}</li>", esc(reason));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<div class=\"maturity\">Maturity: <strong>level {} ({})</strong>",
        v.maturity_level,
        esc(&v.maturity_name)
    );
    if let Some(n) = &v.next_level {
        let _ = write!(
            out,
            " · to reach level {} ({}: {}), fix {}",
            n.level,
            esc(&n.name),
            esc(&n.description),
            rule_ids(&n.blocking_rules, true, ", ")
        );
    }
    out.push_str("</div></section>\n");
}

fn grid(out: &mut String, r: &Report) {
    out.push_str("<h2>Go/No-Go grid</h2><table><thead><tr><th>Criterion</th><th>Requirement</th><th>Score</th><th>Minimum</th><th>Status</th><th>Blocking rules</th></tr></thead><tbody>\n");
    for c in &r.verdict.criteria {
        let class = if c.status == CriterionStatus::Met {
            "met"
        } else {
            "below"
        };
        let _ = write!(
            out,
            "<tr><td>{} {}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}%</td><td><span class=\"badge {class}\">{}</span>{}</td><td class=\"rules\">",
            esc(&c.id),
            esc(&c.title),
            esc(&c.requirement),
            criterion_score(c),
            c.minimum,
            criterion_status(c),
            if c.hard_blocker { " hard blocker" } else { "" },
        );
        // Every blocking rule has a finding card below (it failed or was not evaluated).
        let ids: Vec<String> = c.failing_rules.iter().map(|id| rule_id(id, true)).collect();
        folded_list(out, &ids);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");

    out.push_str("<h2>Pillar scores</h2><table><thead><tr><th>Pillar</th><th>Score</th><th>Rules</th></tr></thead><tbody>\n");
    for p in &r.pillars {
        let width = p.score.percent.unwrap_or(0.0).clamp(0.0, 100.0);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\"><span class=\"bar\"><span style=\"width:{width:.0}%\"></span></span>{}</td><td>{}</td></tr>",
            esc(&p.title),
            percent(p.score.percent),
            super::counts_line(&p.score)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// Render the report as one HTML document.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>pgready: {} · {}</title>\n<style>{STYLE}</style></head><body>\n",
        r.verdict.decision.label(),
        esc(&r.server_name())
    );
    header(&mut out, r);
    grid(&mut out, r);

    let attention: Vec<&Finding> = r.findings.iter().filter(|f| needs_attention(f)).collect();
    let _ = writeln!(out, "<h2>Needs attention ({})</h2>", attention.len());
    if attention.is_empty() {
        out.push_str("<p class=\"note\">Nothing: every rule passed or does not apply.</p>\n");
    }
    for p in &r.pillars {
        let findings = r.pillar_findings(p.pillar);
        if !findings.iter().any(|f| needs_attention(f)) {
            continue;
        }
        let _ = writeln!(
            out,
            "<h3>{} — {}</h3>",
            esc(&p.title),
            esc(&super::score_line(&p.score))
        );
        for f in findings.into_iter().filter(|f| needs_attention(f)) {
            finding_card(&mut out, f);
        }
    }

    let unread = r.unread_sections();
    if !unread.is_empty() {
        out.push_str("<h2>What pgready could not read</h2><p class=\"note\">Rules that need it are not evaluated, never passed.</p><ul>");
        for u in unread {
            let _ = write!(out, "<li>{}</li>", esc(&u));
        }
        out.push_str("</ul>\n");
    }

    let quiet: Vec<&Finding> = {
        let mut q: Vec<&Finding> = r.findings.iter().filter(|f| !needs_attention(f)).collect();
        q.sort_by_key(|f| (f.status, f.pillar, f.rule_id.as_str()));
        q
    };
    let passed = quiet.iter().filter(|f| f.status == Status::Pass).count();
    let _ = writeln!(
        out,
        "<h2>Passed and not applicable</h2><details><summary>{passed} passed, {} not applicable</summary><table><thead><tr><th>Status</th><th>Rule</th><th>Title</th><th>Pillar</th><th>Severity</th><th>Observed</th></tr></thead><tbody>",
        quiet.len() - passed
    );
    for f in quiet {
        let _ = writeln!(
            out,
            "<tr id=\"{id}\"><td><span class=\"badge {status}\">{label}</span></td><td><code>{id}</code></td><td>{title}</td><td>{pillar}</td><td>{severity}</td><td>{seen}</td></tr>",
            status = f.status.as_str(),
            label = f.status.label(),
            id = esc(&f.rule_id),
            title = esc(&f.title),
            pillar = f.pillar,
            severity = f.severity,
            seen = esc(&super::observed(f, super::MAX_OFFENDERS)).replace('\n', "<br>")
        );
    }
    out.push_str("</tbody></table></details>\n");
    out.push_str("<footer>A score is not a decision: the decision follows the Go/No-Go grid. <code>pgready rules show ID</code> explains a rule and how to fix it.</footer>\n</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn hostile_text_is_escaped() {
        let html = render(&sample_report());
        assert!(html.contains("&lt;/failure&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("PostgreSQL 18.1 &lt;Debian &amp; &quot;friends&quot;&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains('\u{1b}'));
        assert!(!html.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn sections() {
        let html = render(&sample_report());
        assert!(
            html.contains("<section class=\"decision no-go\"><div class=\"label\">NO-GO</div>")
        );
        assert!(html.contains("<h2>Needs attention (5)</h2>"));
        assert!(html.contains("<div class=\"finding fail\" id=\"sec.tls.ssl_on\">"));
        assert!(html.contains("<summary>2 passed, 1 not applicable</summary>"));
        // Nothing is fetched: no external resource, only links.
        for needle in ["<link", "<img", "<script", "<iframe", "src=", "url("] {
            assert!(!html.contains(needle), "{needle}");
        }
    }

    #[test]
    fn references_link_only_http() {
        assert_eq!(
            reference("https://x/?a=1&b=2"),
            "<a href=\"https://x/?a=1&amp;b=2\">https://x/?a=1&amp;b=2</a>"
        );
        assert_eq!(reference("javascript:alert(1)"), "javascript:alert(1)");
    }
}
