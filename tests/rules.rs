//! Every rule of the built-in pack against its fact fixtures:
//! `tests/fixtures/rules/<rule id>/{pass,fail,na,ne}*.json` must give pass, fail,
//! not_applicable and not_evaluated respectively, and every rule must have at least one
//! passing and one failing fixture.

use std::path::Path;

use pgready::config::Config;
use pgready::evaluate::{Status, evaluate};

#[test]
fn every_rule_passes_and_fails_its_fixtures() {
    let pack = match pgready::rules::load(&[]) {
        Ok(p) => p,
        Err(e) => panic!("the built-in rule pack does not load:\n{e}"),
    };
    assert!(pack.rules.len() >= 20, "only {} rules", pack.rules.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    let config = Config::default();
    let mut problems = Vec::new();
    let mut cases = 0;
    for rule in &pack.rules {
        let dir = root.join(&rule.id);
        let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(_) => {
                problems.push(format!("{}: no fixture folder {}", rule.id, dir.display()));
                continue;
            }
        };
        entries.sort();
        let (mut has_pass, mut has_fail) = (false, false);
        for path in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let expected = if name.starts_with("pass") {
                has_pass = true;
                Status::Pass
            } else if name.starts_with("fail") {
                has_fail = true;
                Status::Fail
            } else if name.starts_with("na") {
                Status::NotApplicable
            } else if name.starts_with("ne") {
                Status::NotEvaluated
            } else {
                problems.push(format!(
                    "{}: fixture {name}.json must start with pass, fail, na or ne",
                    rule.id
                ));
                continue;
            };
            let facts = match pgready::app::read_facts(path) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!("{}: {e}", rule.id));
                    continue;
                }
            };
            cases += 1;
            let findings = evaluate(&pack, &facts, &config);
            let Some(f) = findings.iter().find(|f| f.rule_id == rule.id) else {
                problems.push(format!("{}: no finding", rule.id));
                continue;
            };
            if f.status != expected {
                problems.push(format!(
                    "{}: {name}.json gave {} (expected {}){}{}",
                    rule.id,
                    f.status.as_str(),
                    expected.as_str(),
                    f.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default(),
                    if f.offenders.is_empty() {
                        String::new()
                    } else {
                        format!(" offenders {:?}", f.offenders)
                    },
                ));
            }
            if expected == Status::Fail
                && f.actual.is_none()
                && f.offenders.is_empty()
                && rule.actual.is_some()
            {
                problems.push(format!(
                    "{}: {name}.json: `actual` could not be rendered",
                    rule.id
                ));
            }
        }
        if !has_pass || !has_fail {
            problems.push(format!(
                "{}: needs at least one pass*.json and one fail*.json",
                rule.id
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {cases} fixture(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_checklist_item_has_a_rule() {
    let pack = match pgready::rules::load(&[]) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let required = [
        "S2", "S3", "S4", "S8", "S9", "C1", "C2", "C5", "C6", "C7", "C8", "M1", "M5", "B2", "B3",
        "G6", "G7",
    ];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|item| {
            !pack
                .rules
                .iter()
                .any(|r| r.covers.iter().any(|c| c == item))
        })
        .collect();
    assert!(missing.is_empty(), "items without a rule: {missing:?}");
    for pillar in pgready::rules::Pillar::ALL {
        assert!(
            pack.rules.iter().any(|r| r.pillar == pillar),
            "no rule in pillar {pillar}"
        );
    }
}
