//! `pgready rules list | show | coverage`.

use std::fmt::Write as _;

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::json;

use super::ListFormat;
use crate::rules::{Rule, RulePack, Test};

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(w) = super::text::Options::detect().width {
        t.set_width(w);
    }
    t.force_no_tty();
    t
}

/// Every rule, as a table or JSON.
pub fn list(pack: &RulePack, format: ListFormat) -> String {
    match format {
        ListFormat::Json => {
            let rules: Vec<_> = pack
                .rules
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id, "pillar": r.pillar, "severity": r.severity, "level": r.level,
                        "covers": r.covers, "title": r.title, "source": r.location.to_string(),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&rules).unwrap_or_default()
        }
        ListFormat::Text => {
            let mut t = table();
            t.set_header(vec![
                "Rule", "Pillar", "Severity", "Level", "Covers", "Title",
            ]);
            for r in &pack.rules {
                t.add_row(vec![
                    r.id.clone(),
                    r.pillar.to_string(),
                    r.severity.to_string(),
                    r.level.to_string(),
                    r.covers.join(", "),
                    r.title.clone(),
                ]);
            }
            format!("{t}\n{} rules", pack.rules.len())
        }
    }
}

/// A rule explained.
pub fn show(r: &Rule, pack: &RulePack) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} — {}", r.id, r.title);
    let items: Vec<String> = r
        .covers
        .iter()
        .map(|c| {
            pack.verdict
                .items
                .iter()
                .find(|i| &i.id == c)
                .map_or_else(|| c.clone(), |i| format!("{c} ({})", i.title))
        })
        .collect();
    let _ = writeln!(
        out,
        "pillar {} · severity {} · maturity level {} · covers {}",
        r.pillar,
        r.severity,
        r.level,
        items.join(", ")
    );
    let _ = writeln!(out, "\nWhy it matters\n{}", indent(&r.rationale));
    let _ = writeln!(out, "\nWhat is checked");
    if let Some(w) = &r.when {
        let _ = writeln!(out, "  applies when: {}", w.source.trim());
    }
    if let Some(q) = &r.query {
        let _ = writeln!(
            out,
            "  rows from its own query ({}, read-only):\n{}",
            if q.each_database {
                "in every database"
            } else {
                "once"
            },
            q.sql
                .lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    match &r.test {
        Test::Check(c) => {
            let _ = writeln!(out, "  passes when: {}", c.source.trim());
        }
        Test::Offenders(c) => {
            let _ = writeln!(out, "  fails for each of: {}", c.source.trim());
        }
    }
    if let Some(e) = &r.expected {
        let _ = writeln!(out, "  expected: {e}");
    }
    if let Some(e) = &r.evaluable {
        let _ = writeln!(out, "  judged only when: {}", e.source.trim());
    }
    for t in &r.tune {
        let _ = writeln!(
            out,
            "  `pgready tune` recommends {} = {}",
            t.setting,
            t.value.source.trim()
        );
    }
    if !r.sections.is_empty() {
        let _ = writeln!(
            out,
            "  reads: {} (not collected → not evaluated)",
            r.sections.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if !r.params.is_empty() {
        let _ = writeln!(
            out,
            "\nParameters (override in pgready.toml under [rules.\"{}\".params])",
            r.id
        );
        for (k, v) in &r.params {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    let _ = writeln!(out, "\nHow to fix\n{}", indent(&r.remediation));
    let _ = writeln!(out, "\nReferences");
    for reference in &r.references {
        let _ = writeln!(out, "  {reference}");
    }
    let _ = write!(out, "\nDefined at {}", r.location);
    out
}

fn indent(s: &str) -> String {
    s.trim()
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which rules cover each checklist item.
pub fn coverage(pack: &RulePack) -> String {
    let mut t = table();
    t.set_header(vec!["Item", "Pillar", "Checklist item", "Rules"]);
    let mut uncovered = Vec::new();
    for item in &pack.verdict.items {
        let rules: Vec<&str> = pack
            .rules
            .iter()
            .filter(|r| r.covers.contains(&item.id))
            .map(|r| r.id.as_str())
            .collect();
        if rules.is_empty() {
            uncovered.push(item.id.as_str());
        }
        t.add_row(vec![
            item.id.clone(),
            item.pillar.to_string(),
            item.title.clone(),
            if rules.is_empty() {
                "— none —".to_string()
            } else {
                rules.join("\n")
            },
        ]);
    }
    let summary = if uncovered.is_empty() {
        "every checklist item has at least one rule".to_string()
    } else {
        format!("items without a rule: {}", uncovered.join(", "))
    };
    format!("{t}\n{summary}")
}
