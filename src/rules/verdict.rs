//! `checks/verdict.toml`: the checklist items, the severity weights, the seven Go/No-Go
//! criteria and the maturity levels, as data.

use serde::{Deserialize, Serialize};

use super::{Diagnostic, LoadError, Location, Pillar, Severity, SourceFile, line_col};

/// One item of the checklist (`S1` … `D6`, plus `G6`/`G7` which only evidence can show).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub pillar: Pillar,
    pub title: String,
}

/// Which findings a criterion is computed from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Rules of this pillar.
    #[serde(default)]
    pub pillar: Option<Pillar>,
    /// Rules covering any of these checklist items.
    #[serde(default)]
    pub covers: Vec<String>,
}

/// A Go/No-Go criterion (G1–G7).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub id: String,
    pub title: String,
    /// The checklist's wording of the minimum, e.g. "90% of the security checklist met".
    pub requirement: String,
    /// Minimum weighted score, in percent.
    pub minimum: f64,
    pub select: Select,
    /// Not meeting it is a NO-GO whatever else holds (G4: no tested backup).
    #[serde(default)]
    pub hard_blocker: bool,
}

/// A maturity level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub level: u8,
    pub name: String,
    pub description: String,
}

/// Severity weights used by every score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub info: f64,
    pub low: f64,
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

impl Weights {
    pub fn of(&self, s: Severity) -> f64 {
        match s {
            Severity::Info => self.info,
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Critical => self.critical,
        }
    }
}

/// Scoring and decision settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    pub weights: Weights,
    /// A criterion at most this many points under its minimum is "slightly below".
    pub slightly_below: f64,
    /// Criteria below (any distance) from which the decision is NO-GO.
    pub no_go_below_count: usize,
    /// Days allowed for the catch-up plan of a GO WITH RESERVATIONS.
    pub catch_up_days: u32,
}

/// The whole verdict definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub scoring: Scoring,
    #[serde(rename = "item")]
    pub items: Vec<Item>,
    #[serde(rename = "criterion")]
    pub criteria: Vec<Criterion>,
    #[serde(rename = "level")]
    pub levels: Vec<Level>,
}

/// Parse and check `verdict.toml`.
pub fn load(file: &SourceFile) -> Result<Verdict, LoadError> {
    let diag = |offset: usize, message: String| {
        let (line, column) = line_col(&file.text, offset);
        Diagnostic {
            location: Location {
                file: file.name.clone(),
                line,
                column,
            },
            message,
        }
    };
    let v: Verdict = toml::from_str(&file.text).map_err(|e| {
        LoadError(vec![diag(
            e.span().map_or(0, |s| s.start),
            e.message().to_string(),
        )])
    })?;
    let mut errs = Vec::new();
    for c in &v.criteria {
        for item in &c.select.covers {
            if !v.items.iter().any(|i| &i.id == item) {
                errs.push(diag(
                    0,
                    format!("criterion {}: unknown checklist item `{item}`", c.id),
                ));
            }
        }
        if c.select.pillar.is_none() && c.select.covers.is_empty() {
            errs.push(diag(
                0,
                format!("criterion {}: select needs a pillar or covers", c.id),
            ));
        }
    }
    for (i, l) in v.levels.iter().enumerate() {
        if usize::from(l.level) != i {
            errs.push(diag(
                0,
                format!(
                    "levels must be listed in order from 0; found {} at position {i}",
                    l.level
                ),
            ));
        }
    }
    if errs.is_empty() {
        Ok(v)
    } else {
        Err(LoadError(errs))
    }
}
