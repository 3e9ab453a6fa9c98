//! The terminal report: a table per pillar, the Go/No-Go grid, the decision and the
//! maturity level. Colour only on a TTY and without `NO_COLOR`.

use std::fmt::Write as _;

use comfy_table::{Cell, Color, ColumnConstraint, ContentArrangement, Table, presets};

use super::{
    MAX_OFFENDERS, Report, criterion_score, criterion_status, first_lines, needs_attention,
    observed, score_line,
};
use crate::evaluate::Status;
use crate::judge::{CriterionStatus, Decision};

pub struct Options {
    pub color: bool,
    /// Terminal width; None lets comfy-table decide (it wraps to the TTY).
    pub width: Option<u16>,
    /// List passing and not-applicable rules too (by default they are only counted).
    pub verbose: bool,
}

impl Options {
    /// Colour on a TTY unless `NO_COLOR` is set; 120 columns when not a TTY.
    pub fn detect() -> Options {
        use std::io::IsTerminal;
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Options {
            color: tty && !no_color,
            width: (!tty).then_some(120),
            verbose: false,
        }
    }
}

fn new_table(o: &Options) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(w) = o.width {
        t.set_width(w);
    }
    if o.color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t
}

fn status_cell(s: Status, o: &Options) -> Cell {
    let c = Cell::new(s.label());
    if !o.color {
        return c;
    }
    c.fg(match s {
        Status::Pass => Color::Green,
        Status::Fail | Status::Error => Color::Red,
        Status::NotEvaluated => Color::Yellow,
        Status::NotApplicable | Status::Waived => Color::DarkGrey,
    })
}

/// `2026-11-25 17:39:14 UTC`; the raw number when it is out of range.
pub(crate) fn utc_time(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| epoch.to_string())
}

/// Render the whole report.
pub fn render(r: &Report, o: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pgready {} audit of {}",
        r.pgready_version, r.target.display
    );
    let version = r.server.version.as_deref().unwrap_or("unknown version");
    let _ = writeln!(
        out,
        "PostgreSQL {version} · collected {} in {} ms",
        utc_time(r.collected_at),
        r.duration_ms
    );
    if let Some(t) = &r.releases {
        let _ = writeln!(
            out,
            "Release table: as of {} ({}; newer releases are unknown to it)",
            t.as_of, t.source
        );
    }
    if let Some(ctx) = r.context_line() {
        let _ = writeln!(out, "Context: {ctx}");
    }

    for p in &r.pillars {
        let mut sorted = r.pillar_findings(p.pillar);
        if sorted.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} — {}", p.title, score_line(&p.score));
        let mut t = new_table(o);
        t.set_header(vec!["Status", "Severity", "Rule", "Title", "Observed"]);
        for i in [0, 2] {
            if let Some(c) = t.column_mut(i) {
                c.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
        let hidden = if o.verbose {
            0
        } else {
            sorted.iter().filter(|f| !needs_attention(f)).count()
        };
        if !o.verbose {
            sorted.retain(|f| needs_attention(f));
        }
        if sorted.is_empty() {
            let _ = writeln!(
                out,
                "  every rule passed or does not apply (--verbose lists them)"
            );
            continue;
        }
        for f in sorted {
            t.add_row(vec![
                status_cell(f.status, o),
                Cell::new(f.severity.as_str()),
                Cell::new(&f.rule_id),
                Cell::new(&f.title),
                Cell::new(observed(f, MAX_OFFENDERS)),
            ]);
        }
        let _ = writeln!(out, "{t}");
        if hidden > 0 {
            let _ = writeln!(
                out,
                "  + {hidden} passed or not applicable (--verbose lists them)"
            );
        }
    }

    let missing = r.unread_sections();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat pgready could not read (rules that need it are NOT EVALUATED, never passed):"
        );
        for m in missing {
            let _ = writeln!(out, "  {m}");
        }
    }

    let _ = writeln!(out, "\nGo/No-Go grid");
    let mut t = new_table(o);
    t.set_header(vec![
        "Criterion",
        "Requirement",
        "Score",
        "Minimum",
        "Status",
        "Blocking rules",
    ]);
    for c in &r.verdict.criteria {
        let status = criterion_status(c);
        let mut cell = Cell::new(if c.hard_blocker {
            format!("{status} (hard blocker)")
        } else {
            status.to_string()
        });
        if o.color {
            cell = cell.fg(if c.status == CriterionStatus::Met {
                Color::Green
            } else {
                Color::Red
            });
        }
        let blocking = first_lines(&c.failing_rules, MAX_OFFENDERS);
        t.add_row(vec![
            Cell::new(format!("{} {}", c.id, c.title)),
            Cell::new(&c.requirement),
            Cell::new(criterion_score(c)),
            Cell::new(format!("{:.0}%", c.minimum)),
            cell,
            Cell::new(blocking),
        ]);
    }
    let _ = writeln!(out, "{t}");

    let decision = r.verdict.decision.label();
    let decision = if o.color {
        let code = match r.verdict.decision {
            Decision::Go => "32",
            Decision::GoWithReservations => "33",
            Decision::NoGo => "31",
        };
        format!("\x1b[1;{code}m{decision}\x1b[0m")
    } else {
        decision.to_string()
    };
    let _ = writeln!(out, "\nDecision: {decision}");
    for reason in &r.verdict.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    let _ = writeln!(
        out,
        "\nMaturity: level {} ({})",
        r.verdict.maturity_level, r.verdict.maturity_name
    );
    if let Some(n) = &r.verdict.next_level {
        let _ = writeln!(
            out,
            "To reach level {} ({}: {}), fix {} rule{}:",
            n.level,
            n.name,
            n.description,
            n.blocking_rules.len(),
            if n.blocking_rules.len() == 1 { "" } else { "s" }
        );
        for id in &n.blocking_rules {
            let _ = writeln!(out, "  - {id}: {}", r.rule_title(id));
        }
    }
    let _ = writeln!(
        out,
        "\nA score is not a decision: the decision follows the Go/No-Go grid. `pgready rules show ID` explains a rule and how to fix it."
    );
    out
}
