//! The release table (S10): every supported major's newest minor and end-of-life date, and
//! the CVEs each recent minor fixed. pgready has no Internet at run time, so the table ships
//! inside the binary (`data/releases.toml`); `--releases FILE` (or `[releases] file` in
//! pgready.toml) takes a newer copy of the same format.
//!
//! The table is validated before any connection (a broken file is bad input, exit 2) and
//! copied into the facts as the `releases` section at collection time, so that
//! `pgready audit --from-facts` judges with the very table the live audit used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};
use toml::value::Datetime;

use crate::cli::SourceArgs;
use crate::config::{Config, datetime_epoch};
use crate::facts::Section;

/// The embedded table.
pub const EMBEDDED: &str = include_str!("../data/releases.toml");

/// What a CVE's fix lives in. Upgrading the server package fixes `server` and `contrib`;
/// `libpq` and `client tool` fixes also need the clients (application hosts, backup hosts)
/// upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Component {
    #[serde(rename = "server")]
    Server,
    #[serde(rename = "contrib")]
    Contrib,
    #[serde(rename = "libpq")]
    Libpq,
    #[serde(rename = "client tool")]
    ClientTool,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Server => "server",
            Component::Contrib => "contrib",
            Component::Libpq => "libpq",
            Component::ClientTool => "client tool",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    table: RawMeta,
    major: Vec<RawMajor>,
    #[serde(default)]
    release: Vec<RawRelease>,
    #[serde(default)]
    cve: Vec<RawCve>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    as_of: Datetime,
    compiled: Datetime,
    #[serde(default)]
    next_minor_release: Option<Datetime>,
    #[serde(default)]
    sources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMajor {
    major: u32,
    first_release: Datetime,
    eol: Datetime,
    #[serde(default)]
    eol_verified: bool,
    newest: String,
    newest_date: Datetime,
    cves_from: String,
    verified: bool,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    date: Datetime,
    versions: Vec<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCve {
    id: String,
    #[serde(default)]
    cvss: Option<f64>,
    component: Component,
    summary: String,
    fixed: Vec<String>,
    verified: bool,
}

/// A `MAJOR.MINOR` version as `server_version_num` spells it (18.6 → 180006).
pub fn version_num(v: &str) -> Option<i64> {
    let (major, minor) = v.split_once('.')?;
    let major: i64 = major.parse().ok()?;
    let minor: i64 = minor.parse().ok()?;
    ((10..=99).contains(&major) && (0..=99).contains(&minor)).then_some(major * 10_000 + minor)
}

fn day(d: &Datetime) -> Option<(String, i64)> {
    let date = d.date?;
    if d.time.is_some() || d.offset.is_some() {
        return None;
    }
    Some((date.to_string(), datetime_epoch(d)?))
}

/// A validated table, ready to become the `releases` section.
#[derive(Debug, Clone)]
pub struct Table {
    /// `embedded` or the file it was read from.
    pub source: String,
    /// The newest release the table is complete up to (`YYYY-MM-DD`).
    pub as_of: String,
    data: Value,
}

impl Table {
    /// The section data (documented in docs/facts.md, `## releases`).
    pub fn data(&self) -> &Value {
        &self.data
    }
}

/// Parse and check a table; `name` is used in messages.
pub fn parse(name: &str, text: &str) -> Result<Table, String> {
    let raw: RawTable = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => {
                let (line, col) = crate::rules::line_col(text, span.start);
                format!("{name}:{line}:{col}: {msg}")
            }
            None => format!("{name}: {msg}"),
        }
    })?;
    let mut problems = Vec::new();
    let mut bad = |p: String| problems.push(p);

    let Some((as_of, as_of_epoch)) = day(&raw.table.as_of) else {
        return Err(format!("{name}: [table] as_of must be a date (YYYY-MM-DD)"));
    };
    let compiled = day(&raw.table.compiled).map(|d| d.0);
    if compiled.is_none() {
        bad("[table] compiled must be a date (YYYY-MM-DD)".to_string());
    }
    let next = match &raw.table.next_minor_release {
        Some(d) => match day(d) {
            Some(d) => Some(d),
            None => {
                bad("[table] next_minor_release must be a date (YYYY-MM-DD)".to_string());
                None
            }
        },
        None => None,
    };

    // Majors.
    let mut majors: BTreeMap<u32, (RawMajor, i64)> = BTreeMap::new();
    for m in raw.major {
        let label = format!("[[major]] {}", m.major);
        if !(10..=99).contains(&m.major) {
            bad(format!("{label}: major must be between 10 and 99"));
            continue;
        }
        let Some(newest_num) = version_num(&m.newest) else {
            bad(format!(
                "{label}: newest = {:?} is not MAJOR.MINOR",
                m.newest
            ));
            continue;
        };
        if newest_num / 10_000 != i64::from(m.major) {
            bad(format!(
                "{label}: newest {} is not a {} release",
                m.newest, m.major
            ));
        }
        match version_num(&m.cves_from) {
            Some(n) if n / 10_000 == i64::from(m.major) && n <= newest_num => {}
            _ => bad(format!(
                "{label}: cves_from = {:?} must be a {} release no newer than {}",
                m.cves_from, m.major, m.newest
            )),
        }
        match (day(&m.first_release), day(&m.eol), day(&m.newest_date)) {
            (Some(first), Some(eol), Some(newest)) => {
                if eol.1 <= first.1 {
                    bad(format!(
                        "{label}: eol {} is not after first_release {}",
                        eol.0, first.0
                    ));
                }
                if newest.1 > as_of_epoch {
                    bad(format!(
                        "{label}: newest_date {} is after the table's as_of {as_of}",
                        newest.0
                    ));
                }
            }
            _ => bad(format!(
                "{label}: first_release, eol and newest_date must be dates (YYYY-MM-DD)"
            )),
        }
        if majors.contains_key(&m.major) {
            bad(format!("{label}: listed twice"));
            continue;
        }
        majors.insert(m.major, (m, newest_num));
    }
    if majors.is_empty() {
        bad("no [[major]] entry".to_string());
    }

    // Releases.
    let mut releases = Vec::new();
    for r in &raw.release {
        let Some((date, epoch)) = day(&r.date) else {
            bad("[[release]]: date must be a date (YYYY-MM-DD)".to_string());
            continue;
        };
        if epoch > as_of_epoch {
            bad(format!(
                "[[release]] {date}: after the table's as_of {as_of}"
            ));
        }
        for v in &r.versions {
            match version_num(v) {
                None => bad(format!("[[release]] {date}: {v:?} is not MAJOR.MINOR")),
                Some(n) => {
                    let major = (n / 10_000) as u32;
                    if let Some((m, newest)) = majors.get(&major) {
                        if n > *newest {
                            bad(format!(
                                "[[release]] {date}: {v} is newer than major {major}'s newest {}",
                                m.newest
                            ));
                        }
                        if n == *newest && day(&m.newest_date).is_some_and(|d| d.0 != date) {
                            bad(format!(
                                "[[release]] {date}: {v} is major {major}'s newest, dated {} there",
                                m.newest_date
                            ));
                        }
                    }
                }
            }
        }
        releases.push(json!({"date": date, "versions": r.versions, "note": r.note}));
    }

    // CVEs, indexed per major.
    let id_re = regex::Regex::new(r"^CVE-\d{4}-\d{4,7}$").map_err(|e| e.to_string())?;
    let mut seen = BTreeSet::new();
    let mut fixes: BTreeMap<u32, Vec<(Component, i64, String, Value)>> = BTreeMap::new();
    for c in &raw.cve {
        let label = format!("[[cve]] {}", c.id);
        if !id_re.is_match(&c.id) {
            bad(format!("{label}: id must look like CVE-2026-12345"));
        }
        if !seen.insert(c.id.clone()) {
            bad(format!("{label}: listed twice"));
        }
        if let Some(s) = c.cvss
            && !(0.0..=10.0).contains(&s)
        {
            bad(format!("{label}: cvss {s} is not between 0 and 10"));
        }
        if c.summary.trim().is_empty() {
            bad(format!("{label}: empty summary"));
        }
        if c.fixed.is_empty() {
            bad(format!("{label}: fixed lists no version"));
        }
        let mut majors_seen = BTreeSet::new();
        for v in &c.fixed {
            let Some(n) = version_num(v) else {
                bad(format!("{label}: fixed {v:?} is not MAJOR.MINOR"));
                continue;
            };
            let major = (n / 10_000) as u32;
            if !majors_seen.insert(major) {
                bad(format!("{label}: two fixed versions for major {major}"));
                continue;
            }
            let Some((m, newest)) = majors.get(&major) else {
                bad(format!(
                    "{label}: fixed {v}, but major {major} has no [[major]] entry"
                ));
                continue;
            };
            if n > *newest {
                bad(format!(
                    "{label}: fixed {v} is newer than major {major}'s newest {}",
                    m.newest
                ));
                continue;
            }
            let cvss_text = c
                .cvss
                .map_or_else(|| "n/a".to_string(), |s| format!("{s:.1}"));
            let unverified = if c.verified { "" } else { ", unverified" };
            let line = format!(
                "{} (CVSS {cvss_text}, {}, fixed in {v}{unverified}): {}",
                c.id,
                c.component.as_str(),
                c.summary
            );
            fixes.entry(major).or_default().push((
                c.component,
                // Higher CVSS first; unknown last.
                -(c.cvss.map_or(-1.0, |s| s * 10.0) as i64),
                c.id.clone(),
                json!({
                    "id": c.id,
                    "cvss": c.cvss,
                    "component": c.component.as_str(),
                    "summary": c.summary,
                    "version": v,
                    "num": n,
                    "verified": c.verified,
                    "label": line,
                }),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{name}: {} problem(s) in the release table:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }

    let mut majors_json = serde_json::Map::new();
    for (major, (m, newest_num)) in &majors {
        let mut list = fixes.remove(major).unwrap_or_default();
        list.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        let cves_from_num = version_num(&m.cves_from).unwrap_or(*newest_num);
        let (eol, eol_epoch) = day(&m.eol).unwrap_or_default();
        majors_json.insert(
            major.to_string(),
            json!({
                "major": major,
                "first_release": day(&m.first_release).map(|d| d.0),
                "eol": eol,
                "eol_epoch": eol_epoch,
                "eol_verified": m.eol_verified,
                "newest": m.newest,
                "newest_num": newest_num,
                "newest_date": day(&m.newest_date).map(|d| d.0),
                "cves_from": m.cves_from,
                "complete_after_num": cves_from_num - 1,
                "verified": m.verified,
                "note": m.note,
                "fixes": list.into_iter().map(|f| f.3).collect::<Vec<_>>(),
            }),
        );
    }
    let newest_major = majors.keys().next_back().copied().unwrap_or_default();
    let oldest_major = majors.keys().next().copied().unwrap_or_default();
    let data = json!({
        "source": name,
        "as_of": as_of,
        "as_of_epoch": as_of_epoch,
        "compiled": compiled,
        "next_minor_release": next.as_ref().map(|d| d.0.clone()),
        "next_minor_release_epoch": next.as_ref().map(|d| d.1),
        "sources": raw.table.sources,
        "newest_major": newest_major,
        "oldest_major": oldest_major,
        "majors": majors_json,
        "releases": releases,
        "cve_count": seen.len(),
    });
    Ok(Table {
        source: name.to_string(),
        as_of,
        data,
    })
}

/// The embedded table (validated by the unit tests; a failure here is a packaging bug).
pub fn embedded() -> Result<Table, String> {
    parse("embedded", EMBEDDED)
}

/// Which table the user asked for: `--releases FILE` wins over `[releases] file` (whose
/// relative path the configuration loader already took from the file's folder).
pub fn requested_file(sources: &SourceArgs, config: &Config) -> Option<PathBuf> {
    sources
        .releases
        .clone()
        .or_else(|| config.releases.file.clone())
}

/// Load the table the user asked for, or the embedded one.
pub fn load(sources: &SourceArgs, config: &Config) -> Result<Table, String> {
    match requested_file(sources, config) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read the release table {}: {e} (give a file in the format of \
                     pgready's data/releases.toml, or drop --releases to use the embedded table)",
                    path.display()
                )
            })?;
            parse(&path.display().to_string(), &text)
        }
        None => embedded(),
    }
}

/// The `releases` section for a live collection.
pub fn section(sources: &SourceArgs, config: &Config) -> Section {
    match load(sources, config) {
        Ok(t) => Section::ok(t.data),
        Err(e) => Section::missing(e),
    }
}

/// The table's date and source as a report shows them, from a facts snapshot.
pub fn report_info(facts: &crate::facts::Facts) -> Option<(String, String)> {
    let s = facts.section("releases").filter(|s| s.collected)?;
    let as_of = s.data.get("as_of")?.as_str()?.to_string();
    let source = s.data.get("source")?.as_str()?.to_string();
    Some((as_of, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Table {
        match parse("t.toml", text) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse("t.toml", text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    const SMALL: &str = r#"
[table]
as_of = 2026-05-14
compiled = 2026-05-20
[[major]]
major = 18
first_release = 2025-09-25
eol = 2030-11-14
newest = "18.4"
newest_date = 2026-05-14
cves_from = "18.2"
verified = true
[[major]]
major = 17
first_release = 2024-09-26
eol = 2029-11-08
newest = "17.10"
newest_date = 2026-05-14
cves_from = "17.8"
verified = true
[[release]]
date = 2026-05-14
versions = ["18.4", "17.10"]
[[cve]]
id = "CVE-2026-6477"
cvss = 8.8
component = "libpq"
summary = "libpq"
fixed = ["18.4", "17.10"]
verified = true
[[cve]]
id = "CVE-2026-6575"
cvss = 4.3
component = "server"
summary = "stats"
fixed = ["18.4"]
verified = true
[[cve]]
id = "CVE-2026-6473"
cvss = 8.8
component = "server"
summary = "wraparound"
fixed = ["18.4", "17.10"]
verified = true
"#;

    #[test]
    fn version_numbers_compare_as_integers() {
        assert_eq!(version_num("17.10"), Some(170010));
        assert_eq!(version_num("17.9"), Some(170009));
        assert!(version_num("17.10") > version_num("17.9"));
        assert_eq!(version_num("18"), None);
        assert_eq!(version_num("18.x"), None);
        assert_eq!(version_num("9.6"), None);
    }

    #[test]
    fn the_embedded_table_is_valid_and_knows_every_supported_major() {
        let t = match embedded() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        for m in ["14", "15", "16", "17", "18"] {
            let major = &t.data()["majors"][m];
            assert!(major["eol_epoch"].as_i64().unwrap_or(0) > 0, "{m}");
            assert!(major["newest_num"].as_i64().unwrap_or(0) > 0, "{m}");
        }
        assert_eq!(t.data()["majors"]["18"]["newest"], "18.6");
        assert_eq!(t.as_of, "2026-08-13");
    }

    #[test]
    fn fixes_are_indexed_per_major_server_first() {
        let t = ok(SMALL);
        let fixes = t.data()["majors"]["18"]["fixes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ids: Vec<&str> = fixes.iter().filter_map(|f| f["id"].as_str()).collect();
        assert_eq!(ids, ["CVE-2026-6473", "CVE-2026-6575", "CVE-2026-6477"]);
        let seventeen = t.data()["majors"]["17"]["fixes"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(seventeen, 2);
        assert_eq!(t.data()["majors"]["18"]["complete_after_num"], 180001);
        assert_eq!(
            fixes[0]["label"],
            "CVE-2026-6473 (CVSS 8.8, server, fixed in 18.4): wraparound"
        );
    }

    #[test]
    fn inconsistent_tables_are_refused_with_every_problem() {
        let e = err(&SMALL.replace("fixed = [\"18.4\"]", "fixed = [\"18.5\"]"));
        assert!(e.contains("newer than major 18's newest 18.4"), "{e}");
        let e = err(&SMALL.replace("CVE-2026-6575", "CVE-26-1"));
        assert!(e.contains("id must look like"), "{e}");
        let e = err(&SMALL.replace("newest = \"17.10\"", "newest = \"18.1\""));
        assert!(e.contains("not a 17 release"), "{e}");
        let e = err(&SMALL.replace("cvss = 4.3", "cvss = 43.0"));
        assert!(e.contains("not between 0 and 10"), "{e}");
        let e = err(&SMALL.replace("as_of = 2026-05-14", "as_of = 2026-05-01"));
        assert!(e.contains("after the table's as_of"), "{e}");
        let e = err(&SMALL.replace(
            "verified = true\n[[major]]",
            "verified = true\nbogus = 1\n[[major]]",
        ));
        assert!(e.contains("t.toml:") && e.contains("bogus"), "{e}");
    }
}
