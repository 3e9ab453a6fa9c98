//! Findings → pillar scores, the seven Go/No-Go criteria, the decision and the maturity
//! level. Pure: the rules of the decision come from `checks/verdict.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::{Finding, Status};
use crate::rules::Pillar;
use crate::rules::verdict::{Criterion, Verdict, Weights};

/// GO, GO WITH RESERVATIONS or NO-GO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Go,
    GoWithReservations,
    NoGo,
}

impl Decision {
    pub fn label(self) -> &'static str {
        match self {
            Decision::Go => "GO",
            Decision::GoWithReservations => "GO WITH RESERVATIONS",
            Decision::NoGo => "NO-GO",
        }
    }
}

/// Counts of findings per status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub not_applicable: usize,
    pub not_evaluated: usize,
    pub error: usize,
    pub waived: usize,
}

impl Counts {
    fn add(&mut self, s: Status) {
        match s {
            Status::Pass => self.pass += 1,
            Status::Fail => self.fail += 1,
            Status::NotApplicable => self.not_applicable += 1,
            Status::NotEvaluated => self.not_evaluated += 1,
            Status::Error => self.error += 1,
            Status::Waived => self.waived += 1,
        }
    }
}

/// A weighted score over a set of findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Score {
    /// Percent, or None when no finding counted (nothing could be judged).
    pub percent: Option<f64>,
    pub earned: f64,
    pub possible: f64,
    pub counts: Counts,
}

fn score<'a>(findings: impl Iterator<Item = &'a Finding>, w: &Weights) -> Score {
    let mut s = Score::default();
    for f in findings {
        s.counts.add(f.status);
        let weight = w.of(f.severity);
        match f.status {
            Status::Pass => {
                s.earned += weight;
                s.possible += weight;
            }
            Status::Fail | Status::NotEvaluated | Status::Error => s.possible += weight,
            Status::NotApplicable | Status::Waived => {}
        }
    }
    if s.possible > 0.0 {
        s.percent = Some((s.earned * 1000.0 / s.possible).round() / 10.0);
    }
    s
}

/// A pillar's score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PillarScore {
    pub pillar: Pillar,
    pub title: String,
    pub score: Score,
}

/// Whether a criterion holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriterionStatus {
    Met,
    Below,
    /// Nothing could be judged (no rule, or every rule not evaluated): never met.
    Unverified,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CriterionResult {
    pub id: String,
    pub title: String,
    pub requirement: String,
    pub minimum: f64,
    pub score: Option<f64>,
    pub status: CriterionStatus,
    pub hard_blocker: bool,
    /// Rules that keep the criterion from being met.
    pub failing_rules: Vec<String>,
    /// Why the criterion could not be verified, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NextLevel {
    pub level: u8,
    pub name: String,
    pub description: String,
    /// Rules that must pass to reach it.
    pub blocking_rules: Vec<String>,
}

/// The judgement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Judgement {
    pub decision: Decision,
    pub reasons: Vec<String>,
    pub criteria: Vec<CriterionResult>,
    pub pillars: Vec<PillarScore>,
    pub total: Score,
    pub maturity_level: u8,
    pub maturity_name: String,
    pub next_level: Option<NextLevel>,
}

fn selected<'a>(c: &'a Criterion, findings: &'a [Finding]) -> impl Iterator<Item = &'a Finding> {
    findings.iter().filter(move |f| {
        c.select.pillar.is_none_or(|p| f.pillar == p)
            && (c.select.covers.is_empty() || f.covers.iter().any(|x| c.select.covers.contains(x)))
    })
}

fn not_passing(f: &Finding) -> bool {
    matches!(
        f.status,
        Status::Fail | Status::NotEvaluated | Status::Error
    )
}

/// Judge `findings` by `verdict`; `slightly_below` overrides verdict.toml's when given.
pub fn judge(findings: &[Finding], verdict: &Verdict, slightly_below: Option<f64>) -> Judgement {
    let w = &verdict.scoring.weights;
    let slightly = slightly_below.unwrap_or(verdict.scoring.slightly_below);
    let pillars = crate::rules::Pillar::ALL
        .iter()
        .map(|&p| PillarScore {
            pillar: p,
            title: p.title().to_string(),
            score: score(findings.iter().filter(|f| f.pillar == p), w),
        })
        .collect();
    let total = score(findings.iter(), w);

    let criteria: Vec<CriterionResult> = verdict
        .criteria
        .iter()
        .map(|c| {
            let sel: Vec<&Finding> = selected(c, findings).collect();
            let s = score(sel.iter().copied(), w);
            let judged = s.counts.pass + s.counts.fail;
            let failing_rules: Vec<String> = sel
                .iter()
                .filter(|f| not_passing(f))
                .map(|f| f.rule_id.clone())
                .collect();
            let (status, reason) = match s.percent {
                _ if sel.is_empty() => (
                    CriterionStatus::Unverified,
                    Some("no rule covers it".to_string()),
                ),
                None => (
                    CriterionStatus::Unverified,
                    Some("every rule for it is not applicable or waived".to_string()),
                ),
                Some(_) if judged == 0 => (
                    CriterionStatus::Unverified,
                    Some("no rule for it could be evaluated".to_string()),
                ),
                Some(p) if p + 1e-9 >= c.minimum => (CriterionStatus::Met, None),
                Some(_) => (CriterionStatus::Below, None),
            };
            CriterionResult {
                id: c.id.clone(),
                title: c.title.clone(),
                requirement: c.requirement.clone(),
                minimum: c.minimum,
                score: s.percent,
                status,
                hard_blocker: c.hard_blocker,
                failing_rules,
                reason,
            }
        })
        .collect();

    let (decision, reasons) = decide(&criteria, verdict, slightly);
    let (maturity_level, next_level) = maturity(findings, verdict);
    let maturity_name = verdict
        .levels
        .get(usize::from(maturity_level))
        .map(|l| l.name.clone())
        .unwrap_or_default();
    Judgement {
        decision,
        reasons,
        criteria,
        pillars,
        total,
        maturity_level,
        maturity_name,
        next_level,
    }
}

fn describe(c: &CriterionResult) -> String {
    match (c.status, c.score) {
        (CriterionStatus::Unverified, _) => format!(
            "{} {} could not be verified ({})",
            c.id,
            c.title,
            c.reason.as_deref().unwrap_or("no evidence")
        ),
        (_, Some(s)) => format!(
            "{} {} at {s:.0}%, minimum {:.0}% ({})",
            c.id, c.title, c.minimum, c.requirement
        ),
        (_, None) => format!("{} {}", c.id, c.title),
    }
}

fn decide(
    criteria: &[CriterionResult],
    verdict: &Verdict,
    slightly: f64,
) -> (Decision, Vec<String>) {
    let below: Vec<&CriterionResult> = criteria
        .iter()
        .filter(|c| c.status != CriterionStatus::Met)
        .collect();
    if below.is_empty() {
        return (
            Decision::Go,
            vec!["every criterion is at or above its minimum".to_string()],
        );
    }
    let mut reasons = Vec::new();
    let blockers: Vec<&&CriterionResult> = below.iter().filter(|c| c.hard_blocker).collect();
    for b in &blockers {
        reasons.push(format!("hard blocker: {}", describe(b)));
    }
    let far: Vec<&&CriterionResult> = below
        .iter()
        .filter(|c| !c.hard_blocker)
        .filter(|c| match (c.status, c.score) {
            (CriterionStatus::Below, Some(s)) => c.minimum - s > slightly + 1e-9,
            _ => true,
        })
        .collect();
    let n = below.len();
    let too_many = n >= verdict.scoring.no_go_below_count;
    if !blockers.is_empty() || too_many || !far.is_empty() {
        if too_many {
            reasons.push(format!(
                "{n} criteria below their minimum (NO-GO from {})",
                verdict.scoring.no_go_below_count
            ));
        }
        for c in below.iter().filter(|c| !c.hard_blocker) {
            let slight = !far.iter().any(|f| f.id == c.id);
            let tag = if slight { "slightly below" } else { "below" };
            reasons.push(format!("{tag}: {}", describe(c)));
        }
        return (Decision::NoGo, reasons);
    }
    for c in &below {
        reasons.push(format!(
            "slightly below (within {slightly:.0} points): {}; a catch-up plan is due within {} days",
            describe(c),
            verdict.scoring.catch_up_days
        ));
    }
    (Decision::GoWithReservations, reasons)
}

/// The highest level whose rules all hold, and what stands before the next one.
fn maturity(findings: &[Finding], verdict: &Verdict) -> (u8, Option<NextLevel>) {
    let mut by_level: BTreeMap<u8, Vec<&Finding>> = BTreeMap::new();
    for f in findings.iter().filter(|f| not_passing(f)) {
        by_level.entry(f.level).or_default().push(f);
    }
    let max = verdict.levels.last().map_or(0, |l| l.level);
    let mut reached = 0;
    for level in 1..=max {
        // A level is reached when nothing up to it fails and at least one of its own
        // rules passed: a level no rule can attest is never granted.
        let attested = findings
            .iter()
            .any(|f| f.level == level && f.status == Status::Pass);
        if !attested || by_level.range(..=level).any(|(_, v)| !v.is_empty()) {
            break;
        }
        reached = level;
    }
    let next = verdict
        .levels
        .get(usize::from(reached) + 1)
        .map(|l| NextLevel {
            level: l.level,
            name: l.name.clone(),
            description: l.description.clone(),
            blocking_rules: by_level
                .range(..=l.level)
                .flat_map(|(_, v)| v.iter().map(|f| f.rule_id.clone()))
                .collect(),
        });
    (reached, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Severity, embedded_verdict, verdict};

    fn v() -> Verdict {
        match verdict::load(&embedded_verdict()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn f(id: &str, pillar: Pillar, covers: &str, level: u8, status: Status) -> Finding {
        Finding {
            rule_id: id.into(),
            pillar,
            title: id.into(),
            severity: Severity::High,
            level,
            status,
            covers: vec![covers.into()],
            reason: None,
            actual: None,
            expected: None,
            offenders: vec![],
            remediation: String::new(),
            references: vec![],
        }
    }

    fn all_good() -> Vec<Finding> {
        vec![
            f("sec.a", Pillar::Security, "S3", 1, Status::Pass),
            f("cfg.a", Pillar::Configuration, "C1", 1, Status::Pass),
            f("mon.a", Pillar::Monitoring, "M4", 2, Status::Pass),
            f("bak.a", Pillar::Backup, "B3", 2, Status::Pass),
            f("doc.a", Pillar::Runbooks, "D1", 2, Status::Pass),
            f("cfg.load", Pillar::Configuration, "G6", 3, Status::Pass),
            f("doc.train", Pillar::Runbooks, "G7", 2, Status::Pass),
        ]
    }

    #[test]
    fn all_met_is_go() {
        let j = judge(&all_good(), &v(), None);
        assert_eq!(j.decision, Decision::Go);
        assert_eq!(j.maturity_level, 3);
    }

    #[test]
    fn untested_backup_is_no_go_alone() {
        let mut fs = all_good();
        fs[3].status = Status::Fail;
        let j = judge(&fs, &v(), None);
        assert_eq!(j.decision, Decision::NoGo);
        assert!(
            j.reasons[0].starts_with("hard blocker: G4"),
            "{:?}",
            j.reasons
        );
        assert_eq!(j.maturity_level, 1);
        let next = j.next_level.map(|n| n.blocking_rules);
        assert_eq!(next, Some(vec!["bak.a".to_string()]));
    }

    #[test]
    fn slightly_below_gives_reservations_and_unverified_does_not() {
        let mut fs = all_good();
        // G1 at 91.7% → met; add one failing security rule among 11 → 90.9… use 10 passes + 1 fail.
        for i in 0..10 {
            fs.push(f(
                &format!("sec.p{i}"),
                Pillar::Security,
                "S4",
                1,
                Status::Pass,
            ));
        }
        fs.push(f("sec.fail", Pillar::Security, "S4", 1, Status::Fail));
        fs.push(f("sec.fail2", Pillar::Security, "S4", 1, Status::Fail));
        // 11 pass / 13 → 84.6%: 5.4 points under 90 → slightly below.
        let j = judge(&fs, &v(), None);
        assert_eq!(j.decision, Decision::GoWithReservations, "{:?}", j.reasons);
        // The same with the load test not evaluated: unverified is never "slightly".
        fs[5].status = Status::NotEvaluated;
        let j = judge(&fs, &v(), None);
        assert_eq!(j.decision, Decision::NoGo, "{:?}", j.reasons);
        let g6 = j.criteria.iter().find(|c| c.id == "G6").map(|c| c.status);
        assert_eq!(g6, Some(CriterionStatus::Unverified));
    }

    #[test]
    fn three_below_is_no_go() {
        let mut fs = all_good();
        fs[2].status = Status::Fail; // G3
        fs[4].status = Status::Fail; // G5
        fs[6].status = Status::Fail; // G7
        let j = judge(&fs, &v(), None);
        assert_eq!(j.decision, Decision::NoGo);
        assert!(
            j.reasons.iter().any(|r| r.starts_with("3 criteria below")),
            "{:?}",
            j.reasons
        );
    }
}
