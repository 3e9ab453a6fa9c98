//! `--format json`: the report model as pretty JSON.

use serde::Serialize;

use super::Report;

pub fn render(report: &Report) -> String {
    pretty(report)
}

/// Pretty JSON of plain data (the SARIF log too).
pub(crate) fn pretty<T: Serialize>(value: &T) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
