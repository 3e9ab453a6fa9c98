//! The Facts snapshot: everything the collectors learnt, as plain serialisable data.
//!
//! Each top-level section (`server`, `settings`, `hba`, …) is a [`Section`] that records
//! whether it was collected and, when not (or only partly), why. The shape of every
//! section's `data` is documented in `docs/facts.md`; rules read it through CEL.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the facts JSON layout. Bump when a section changes shape incompatibly.
pub const FACTS_SCHEMA_VERSION: u32 = 1;

/// One fact section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Section {
    /// True when `data` holds what the collector read.
    pub collected: bool,
    /// True when the collector read only part of the section (e.g. some settings hidden
    /// for lack of a privilege). `reason` says what is missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Why the section was not collected, or why it is partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The section's content (null when not collected).
    #[serde(default)]
    pub data: Value,
}

impl Section {
    /// A fully collected section.
    pub fn ok(data: Value) -> Self {
        Self {
            collected: true,
            partial: false,
            reason: None,
            data,
        }
    }

    /// A section collected in part; `reason` says what is missing and what would fix it.
    pub fn partial(data: Value, reason: impl Into<String>) -> Self {
        Self {
            collected: true,
            partial: true,
            reason: Some(reason.into()),
            data,
        }
    }

    /// A section that could not be collected, with the reason.
    pub fn missing(reason: impl Into<String>) -> Self {
        Self {
            collected: false,
            partial: false,
            reason: Some(reason.into()),
            data: Value::Null,
        }
    }
}

/// Who was audited (never holds a password).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    /// The connection as a redacted URI, e.g. `postgresql://audit@db1:5432/postgres?sslmode=require`.
    #[serde(default)]
    pub display: String,
    /// Whether the server runs on this machine (Unix socket or loopback address).
    #[serde(default)]
    pub local: bool,
}

/// The whole snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    #[serde(default = "default_schema")]
    pub schema_version: u32,
    #[serde(default)]
    pub pgready_version: String,
    /// When collection started, seconds since the Unix epoch. Rules read it as `now`, so
    /// that an offline evaluation of a saved snapshot gives the same findings.
    pub collected_at: i64,
    /// How long collection took, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub target: TargetInfo,
    #[serde(default)]
    pub sections: BTreeMap<String, Section>,
}

fn default_schema() -> u32 {
    FACTS_SCHEMA_VERSION
}

impl Facts {
    pub fn new(collected_at: i64, target: TargetInfo) -> Self {
        Self {
            schema_version: FACTS_SCHEMA_VERSION,
            pgready_version: env!("CARGO_PKG_VERSION").to_string(),
            collected_at,
            duration_ms: 0,
            target,
            sections: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, section: Section) {
        self.sections.insert(name.to_string(), section);
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name)
    }
}

/// Every section name pgready knows. Rules may only read these (plus `now`, `params`).
pub const SECTIONS: &[&str] = &[
    "server",
    "settings",
    "settings_meta",
    "file_settings",
    "hba",
    "roles",
    "passwords",
    "memberships",
    "password_checks",
    "databases",
    "stats",
    "replication",
    "ssl",
    "tls",
    "host",
    "sockets",
    "firewall",
    "releases",
    "evidence",
    "context",
    "backup",
    "docs",
    "statements",
    "exporter",
    "node_exporter",
    "alerts",
    "log_shipping",
    "pooling",
    "queries",
];
