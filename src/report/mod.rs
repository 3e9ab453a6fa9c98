//! The report model (the versioned JSON schema) and its renderers.

pub mod json;
pub mod rules;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::Finding;
use crate::facts::{Facts, TargetInfo};
use crate::judge::{CriterionResult, Decision, Judgement, NextLevel, PillarScore};

/// Version of the report JSON schema (`docs/report-schema.md`).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for a terminal or a CI log.
    Text,
    /// The versioned JSON report on stdout.
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
