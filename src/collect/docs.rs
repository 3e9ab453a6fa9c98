//! The `docs` section: the team's runbook folder (D1–D6, M8, B7).
//!
//! A runbook is a Markdown file with YAML front matter (`id`, `title`, `owner`,
//! `last_reviewed: YYYY-MM-DD`); its sections are its level-2 headings. The collector
//! reads every Markdown file of the folder (recursively, hidden folders left out), the
//! special documents `architecture`, `contacts`, `dr-plan` and `training`, whether the
//! folder is a git repository with a remote, and whether the configured URL answers. It
//! records what it found; the rules decide (docs/facts.md `## docs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{Map, Value, json};
use serde_norway::{Mapping, Value as Yaml};

use crate::cli::SourceArgs;
use crate::config::{Config, RequiredRunbooks};
use crate::facts::Section;
use crate::target::Target;

/// The reason recorded when no folder was given.
pub const NOT_GIVEN: &str =
    "no runbook folder given (--runbooks DIR or [runbooks] dir in pgready.toml)";

/// Files larger than this are listed, not read (a runbook is a page, not a dump).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// At most this many Markdown files are read.
const MAX_FILES: usize = 5000;
/// Folder depth below the runbook folder.
const MAX_DEPTH: usize = 8;
/// Bound on the URL check (connect, TLS, request, status line together).
const URL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on each `git` command.
const GIT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the collector needs, taken from the flags, `pgready.toml` and the target.
#[derive(Debug, Clone)]
pub struct Request {
    /// The folder and where it was named (`flag` or `file`), if any.
    pub dir: Option<(PathBuf, &'static str)>,
    pub url: Option<String>,
    pub roster: Vec<String>,
    pub required: RequiredRunbooks,
    /// The server runs on this machine (Unix socket or loopback): so does the folder.
    pub server_local: bool,
    /// The server's host as given (socket folder for a Unix socket).
    pub server_host: String,
    pub now: i64,
}

/// The folder: `--runbooks` wins over `[runbooks] dir`.
pub fn folder(sources: &SourceArgs, config: &Config) -> Option<(PathBuf, &'static str)> {
    match (&sources.runbooks, &config.runbooks.dir) {
        (Some(d), _) => Some((d.clone(), "flag")),
        (None, Some(d)) => Some((d.clone(), "file")),
        (None, None) => None,
    }
}

/// Checks made before any connection: a folder that was named must exist.
pub fn check_inputs(sources: &SourceArgs, config: &Config) -> Result<(), String> {
    let Some((dir, src)) = folder(sources, config) else {
        return Ok(());
    };
    let named = if src == "flag" {
        "--runbooks".to_string()
    } else {
        format!(
            "[runbooks] dir in {}",
            config
                .path
                .as_ref()
                .map_or_else(|| "pgready.toml".to_string(), |p| p.display().to_string())
        )
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "the runbook folder {} ({named}) is not a folder",
            dir.display()
        )),
        Err(e) => Err(format!(
            "cannot open the runbook folder {} ({named}): {e} (check the path; `pgready runbooks init DIR` writes a first set)",
            dir.display()
        )),
    }
}

impl Request {
    pub fn new(inputs: &super::Inputs<'_>, target: &Target, now: i64) -> Self {
        let rb = &inputs.config.runbooks;
        Self {
            dir: folder(inputs.sources, inputs.config),
            url: rb.url.clone(),
            roster: rb.roster.iter().map(|s| s.trim().to_string()).collect(),
            required: rb.required.clone(),
            server_local: target.is_local(),
            server_host: if target.is_unix_socket() {
                "localhost".to_string()
            } else {
                target.host().to_string()
            },
            now,
        }
    }
}

/// Collect the `docs` section.
pub async fn collect(req: &Request) -> Section {
    let Some((dir, source)) = &req.dir else {
        return Section::missing(NOT_GIVEN);
    };
    let folder = match read_folder(dir) {
        Ok(f) => f,
        Err(e) => return Section::missing(e),
    };
    let mut data = folder.to_json(req);
    data.insert("dir_source".into(), json!(source));
    data.insert("on_server_host".into(), json!(req.server_local));
    data.insert("git".into(), git_facts(dir, req));
    data.insert(
        "url".into(),
        match &req.url {
            Some(u) => check_url(u, req).await,
            None => Value::Null,
        },
    );
    if folder.unreadable.is_empty() {
        Section::ok(Value::Object(data))
    } else {
        let reason = format!(
            "cannot read {} file(s) of the runbook folder: {}",
            folder.unreadable.len(),
            folder.unreadable.join("; ")
        );
        Section::partial(Value::Object(data), reason)
    }
}

// ---------------------------------------------------------------------------------------
// The folder

/// One Markdown file with an `id` in its front matter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc {
    pub id: String,
    /// Path relative to the folder, `/`-separated.
    pub file: String,
    pub title: Option<String>,
    pub owner: Option<String>,
    pub last_reviewed: Option<i64>,
    /// `last_reviewed` as written (None when absent or empty).
    pub last_reviewed_text: Option<String>,
    /// The normalised names of the non-empty level-2 sections.
    pub sections: Vec<String>,
    /// The normalised names of level-2 sections with nothing in them.
    pub empty_sections: Vec<String>,
    /// Every level-2 heading as written.
    pub headings: Vec<String>,
    /// Lines with TODO, TBD or FIXME.
    pub todos: i64,
    pub problems: Vec<String>,
    /// The whole front matter (for the special documents).
    front: Option<Mapping>,
    body: String,
}

/// A Markdown file without a usable `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherFile {
    pub file: String,
    /// File name without `.md`, to hint at "failover.md has no front matter".
    pub stem: String,
    pub reason: String,
}

/// The folder as read.
#[derive(Debug, Default)]
pub struct Folder {
    pub dir: PathBuf,
    pub documents: Vec<Doc>,
    pub other_files: Vec<OtherFile>,
    pub problems: Vec<String>,
    /// `file: error` for files that could not be read.
    pub unreadable: Vec<String>,
}

fn is_markdown(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"))
}

fn rel(dir: &Path, p: &Path) -> String {
    let r = p.strip_prefix(dir).unwrap_or(p);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every Markdown file under `dir` (sorted), hidden entries and symlinked folders left out.
fn walk(dir: &Path, problems: &mut Vec<String>) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if d == dir => {
                return Err(format!(
                    "cannot read the runbook folder {}: {e}",
                    dir.display()
                ));
            }
            Err(e) => {
                problems.push(format!("{}/: cannot be read: {e}", rel(dir, &d)));
                continue;
            }
        };
        for entry in rd.filter_map(Result::ok) {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
            } else if is_markdown(&path) && (ft.is_file() || (ft.is_symlink() && path.is_file())) {
                out.push(path);
            }
        }
    }
    out.sort();
    if out.len() > MAX_FILES {
        problems.push(format!(
            "{} Markdown files: only the first {MAX_FILES} were read",
            out.len()
        ));
        out.truncate(MAX_FILES);
    }
    Ok(out)
}

/// Read every Markdown file of `dir`.
pub fn read_folder(dir: &Path) -> Result<Folder, String> {
    let mut folder = Folder {
        dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        ..Folder::default()
    };
    let files = walk(dir, &mut folder.problems)?;
    for path in files {
        let file = rel(dir, &path);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_FILE_BYTES {
            folder.other_files.push(OtherFile {
                file,
                stem,
                reason: format!("larger than {} KiB, not read", MAX_FILE_BYTES / 1024),
            });
            continue;
        }
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                folder.unreadable.push(format!("{file}: {e}"));
                folder.other_files.push(OtherFile {
                    file,
                    stem,
                    reason: format!("could not be read: {e}"),
                });
                continue;
            }
        };
        match parse_doc(&file, &text) {
            Ok(doc) => folder.documents.push(doc),
            Err(reason) => folder.other_files.push(OtherFile { file, stem, reason }),
        }
    }
    // Duplicate ids: every copy is named, and none is silently preferred.
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &folder.documents {
        by_id.entry(d.id.clone()).or_default().push(d.file.clone());
    }
    for (id, files) in &by_id {
        if files.len() > 1 {
            folder.problems.push(format!(
                "id {id} is declared by {} files: {}",
                files.len(),
                files.join(", ")
            ));
            for d in folder.documents.iter_mut().filter(|d| &d.id == id) {
                let others: Vec<&str> = files
                    .iter()
                    .filter(|f| **f != d.file)
                    .map(String::as_str)
                    .collect();
                d.problems.push(format!(
                    "{}: duplicate id {id} (also declared by {})",
                    d.file,
                    others.join(", ")
                ));
            }
        }
    }
    Ok(folder)
}

/// Split `---\n…\n---` front matter from the body. None when the file has none.
fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next()?;
    if first.trim_end() != "---" {
        return None;
    }
    let start = first.len();
    let mut pos = start;
    for line in lines {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            return Some((&text[start..pos], &text[pos + line.len()..]));
        }
        pos += line.len();
    }
    None
}

/// A YAML scalar as text (dates, numbers and booleans as written).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(h: &'a Mapping, key: &str) -> Option<&'a Yaml> {
    h.get(key)
}

/// Epoch seconds (UTC midnight) of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s.get(0..4)?.parse().ok()?;
    let m: u8 = s.get(5..7)?.parse().ok()?;
    let d: u8 = s.get(8..10)?.parse().ok()?;
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

fn todo_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\b(TODO|TBD|FIXME)\b").unwrap_or_else(|_| unreachable!()))
}

/// Parse one file. Err(reason) when it has no usable front matter or no `id`.
pub fn parse_doc(file: &str, text: &str) -> Result<Doc, String> {
    let Some((front, body)) = split_front_matter(text) else {
        return Err(
            "no front matter: the file must start with a `---` line, then `id: …`, then `---`"
                .into(),
        );
    };
    let yaml: Yaml = serde_norway::from_str(front)
        .map_err(|e| format!("front matter is not valid YAML: {e}"))?;
    let Yaml::Mapping(h) = yaml else {
        return Err("front matter is not a list of `key: value` lines".into());
    };
    let id = match get(&h, "id") {
        None | Some(Yaml::Null) => return Err("front matter has no `id`".into()),
        Some(y) => scalar(y)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "front matter `id` is not a plain value".to_string())?,
    };
    let mut doc = Doc {
        id,
        file: file.to_string(),
        body: body.to_string(),
        ..Doc::default()
    };
    let text_field = |key: &str, problems: &mut Vec<String>| match get(&h, key) {
        None | Some(Yaml::Null) => None,
        Some(y) => match scalar(y) {
            Some(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => None,
            None => {
                problems.push(format!("{file}: front matter `{key}` is not a plain value"));
                None
            }
        },
    };
    let mut problems = Vec::new();
    doc.title = text_field("title", &mut problems);
    doc.owner = text_field("owner", &mut problems);
    doc.last_reviewed_text = text_field("last_reviewed", &mut problems);
    doc.last_reviewed = doc.last_reviewed_text.as_deref().and_then(parse_date);
    doc.problems = problems;
    let (headings, sections, empty) = level2_sections(body);
    doc.headings = headings;
    doc.sections = sections;
    doc.empty_sections = empty;
    doc.todos = text.lines().filter(|l| todo_re().is_match(l)).count() as i64;
    doc.front = Some(h);
    Ok(doc)
}

/// The section name a heading stands for: lower case, numbering and punctuation dropped,
/// first word (`## 3. Verification steps` → `verification`).
pub fn normalise_heading(h: &str) -> String {
    let t = h.trim().trim_end_matches('#').trim().to_lowercase();
    let t = t.trim_start_matches(|c: char| !c.is_alphabetic());
    t.split(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
        .next()
        .unwrap_or("")
        .to_string()
}

/// A body line that carries nothing: blank, a one-line HTML comment, or a placeholder
/// starting with TODO, TBD or FIXME (a template's section that was never written).
fn is_blank(line: &str) -> bool {
    let t = line.trim();
    let t = t.strip_prefix(['-', '*', '+']).map_or(t, str::trim_start);
    t.is_empty()
        || (t.starts_with("<!--") && t.ends_with("-->"))
        || ["TODO", "TBD", "FIXME"].iter().any(|w| {
            t.strip_prefix(w)
                .is_some_and(|r| !r.starts_with(|c: char| c.is_alphanumeric()))
        })
}

/// Level-2 headings (ATX `## X` and setext `X\n---`) outside fenced code, with their
/// normalised names split into those with content and empty ones.
pub fn level2_sections(body: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let lines: Vec<&str> = body.lines().collect();
    // (line index where the content starts, heading text) and (index of the heading line).
    let mut heads: Vec<(usize, usize, String)> = Vec::new(); // (heading line, content start, text)
    let mut stops: Vec<usize> = Vec::new(); // lines that end a level-2 section (level 1 or 2 headings)
    let mut fence: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if let Some(f) = &fence {
            if t.starts_with(f.as_str())
                && t.trim_end().chars().all(|c| c == f.as_bytes()[0] as char)
            {
                fence = None;
            }
            continue;
        }
        if indent < 4 && (t.starts_with("```") || t.starts_with("~~~")) {
            let ch = t.as_bytes()[0] as char;
            let n = t.chars().take_while(|&c| c == ch).count();
            fence = Some(std::iter::repeat_n(ch, n).collect());
            continue;
        }
        if indent >= 4 {
            continue;
        }
        if let Some(rest) = t
            .strip_prefix("## ")
            .or_else(|| (t.trim_end() == "##").then_some(""))
        {
            heads.push((
                i,
                i + 1,
                rest.trim().trim_end_matches('#').trim().to_string(),
            ));
            stops.push(i);
        } else if t.starts_with("# ") || t.trim_end() == "#" {
            stops.push(i);
        } else if i > 0
            && !t.is_empty()
            && t.trim_end().chars().all(|c| c == '-' || c == '=')
            && t.trim_end().len() >= 2
        {
            // Setext: the previous line is a paragraph line (not blank, not a heading or list).
            let prev = lines[i - 1].trim();
            let prev_is_text = !prev.is_empty()
                && !prev.starts_with('#')
                && !prev.starts_with('-')
                && !prev.starts_with('*')
                && !prev.starts_with('|')
                && !stops.contains(&(i - 1));
            if prev_is_text {
                if t.starts_with('-') {
                    heads.push((i - 1, i + 1, prev.to_string()));
                }
                stops.push(i - 1);
            }
        }
    }
    let mut headings = Vec::new();
    let mut sections = Vec::new();
    let mut empty = Vec::new();
    for (head_line, start, text) in &heads {
        let end = stops
            .iter()
            .copied()
            .filter(|&s| s > *head_line)
            .min()
            .unwrap_or(lines.len());
        let has_content = lines
            .get(*start..end)
            .is_some_and(|ls| ls.iter().any(|l| !is_blank(l)));
        headings.push(text.clone());
        let name = normalise_heading(text);
        if name.is_empty() {
            continue;
        }
        if has_content {
            if !sections.contains(&name) {
                sections.push(name);
            }
        } else if !empty.contains(&name) {
            empty.push(name);
        }
    }
    // A name with content somewhere is not empty.
    empty.retain(|e| !sections.contains(e));
    (headings, sections, empty)
}

/// Body lines outside fenced code blocks.
fn prose_lines(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in body.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            out.push(line);
        }
    }
    out
}

/// Contact entries: list items and table body rows (without TODO/TBD), and how many of
/// them carry a phone number or an e-mail address.
pub fn count_contacts(body: &str) -> (i64, i64, i64) {
    static RE: OnceLock<(Regex, Regex, Regex, Regex)> = OnceLock::new();
    let (item, sep, phone, email) = RE.get_or_init(|| {
        let r = |s: &str| Regex::new(s).unwrap_or_else(|_| unreachable!());
        (
            r(r"^\s*(?:[-*+]|\d+[.)])\s+\S"),
            r(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$"),
            r(r"\+?\(?\d[\d\s().\-/]{5,}\d"),
            r(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"),
        )
    });
    let lines = prose_lines(body);
    let (mut entries, mut phones, mut emails) = (0, 0, 0);
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let is_row = t.starts_with('|')
            && !sep.is_match(t)
            // the header row is the one just above the separator
            && !lines.get(i + 1).is_some_and(|n| sep.is_match(n.trim()));
        if !(item.is_match(line) || is_row) || todo_re().is_match(line) {
            continue;
        }
        entries += 1;
        let digits = phone
            .find_iter(line)
            .any(|m| m.as_str().chars().filter(char::is_ascii_digit).count() >= 7);
        if digits {
            phones += 1;
        }
        if email.is_match(line) {
            emails += 1;
        }
    }
    (entries, phones, emails)
}

/// Seconds in a duration such as `1 h`, `15 min`, `1h30m`, `90 seconds`, `0`, `< 4 hours`.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim().to_lowercase();
    let mut rest = s.as_str();
    for prefix in [
        "<=",
        "≤",
        "<",
        "~",
        "≈",
        "at most",
        "max.",
        "maximum",
        "max",
        "under",
        "within",
        "up to",
        "less than",
    ] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r.trim_start();
            break;
        }
    }
    if rest == "zero" || rest.starts_with("zero ") {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut parts = 0;
    let mut chars = rest.char_indices().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
        {
            chars.next();
        }
        let Some(&(start, c)) = chars.peek() else {
            break;
        };
        if !c.is_ascii_digit() {
            // "and" between parts
            if rest[start..].starts_with("and ") && parts > 0 {
                for _ in 0..4 {
                    chars.next();
                }
                continue;
            }
            break;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_ascii_digit() || c == '.' {
                end = i + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = rest[start..end].parse().ok()?;
        while chars.peek().is_some_and(|(_, c)| *c == ' ') {
            chars.next();
        }
        let ustart = chars.peek().map_or(rest.len(), |(i, _)| *i);
        let mut uend = ustart;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_alphabetic() {
                uend = i + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let unit = &rest[ustart..uend];
        let mult = match unit {
            "" if n == 0.0 && parts == 0 => 0.0,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" | "mn" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "wk" | "week" | "weeks" => 604_800.0,
            _ => {
                return if parts > 0 {
                    Some(total.round() as i64)
                } else {
                    None
                };
            }
        };
        total += n * mult;
        parts += 1;
    }
    (parts > 0).then(|| total.round() as i64)
}

/// The value of the first `RTO: …` (or `RPO`) line, or table row `| RTO | … |`.
pub fn target_line(body: &str, key: &str) -> Option<String> {
    let re = Regex::new(&format!(
        r"(?i)^\s*(?:[-*+]\s+)?(?:\*\*|__)?\s*{key}\b[^:=|\n]{{0,60}}?(?:\*\*|__)?\s*[:=]\s*(?:\*\*|__)?\s*(.*?)\s*$"
    ))
    .ok()?;
    for line in prose_lines(body) {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() >= 2 {
                let label = cells[0].trim_matches(|c| c == '*' || c == '_').trim();
                let word = label
                    .split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or("");
                if word.eq_ignore_ascii_case(key) {
                    return Some(
                        cells[1]
                            .trim_matches(|c| c == '*' || c == '_')
                            .trim()
                            .to_string(),
                    );
                }
            }
            continue;
        }
        if let Some(c) = re.captures(line) {
            let v = c.get(1).map_or("", |m| m.as_str());
            return Some(v.trim_end_matches(['*', '_']).trim().to_string());
        }
    }
    None
}

/// The `trained:` map of the training document: name → date text.
fn training_records(doc: &Doc) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let Some(front) = &doc.front else {
        return (out, problems);
    };
    match get(front, "trained") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Mapping(h)) => {
            for (k, v) in h {
                let Some(name) = scalar(k) else {
                    problems.push(format!("{}: a `trained` key is not a name", doc.file));
                    continue;
                };
                out.push((
                    name.trim().to_string(),
                    scalar(v).map(|s| s.trim().to_string()),
                ));
            }
        }
        Some(_) => problems.push(format!(
            "{}: `trained` must map each name to the date of its last training (alice: 2026-10-14)",
            doc.file
        )),
    }
    (out, problems)
}

impl Doc {
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("file".into(), json!(self.file));
        m.insert("title".into(), json!(self.title));
        m.insert("owner".into(), json!(self.owner));
        m.insert("last_reviewed".into(), json!(self.last_reviewed));
        m.insert("last_reviewed_text".into(), json!(self.last_reviewed_text));
        m.insert("sections".into(), json!(self.sections));
        m.insert("empty_sections".into(), json!(self.empty_sections));
        m.insert("headings".into(), json!(self.headings));
        m.insert("todos".into(), json!(self.todos));
        m.insert("problems".into(), json!(self.problems));
        m
    }
}

impl Folder {
    fn first(&self, id: &str) -> Option<&Doc> {
        self.documents.iter().find(|d| d.id == id)
    }

    /// The facts (without the git and URL parts).
    pub fn to_json(&self, req: &Request) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("dir".into(), json!(self.dir.display().to_string()));
        data.insert(
            "required".into(),
            serde_json::to_value(&req.required).unwrap_or(Value::Null),
        );
        data.insert(
            "documents".into(),
            Value::Array(
                self.documents
                    .iter()
                    .map(|d| Value::Object(d.to_json()))
                    .collect(),
            ),
        );
        data.insert(
            "other_files".into(),
            Value::Array(
                self.other_files
                    .iter()
                    .map(|f| json!({"file": f.file, "stem": f.stem, "reason": f.reason}))
                    .collect(),
            ),
        );
        data.insert("problems".into(), json!(self.problems));
        data.insert(
            "architecture".into(),
            self.first("architecture")
                .map_or(Value::Null, |d| Value::Object(d.to_json())),
        );
        data.insert(
            "contacts".into(),
            self.first("contacts").map_or(Value::Null, |d| {
                let mut m = d.to_json();
                let (entries, phones, emails) = count_contacts(&d.body);
                m.insert("entries".into(), json!(entries));
                m.insert("phones".into(), json!(phones));
                m.insert("emails".into(), json!(emails));
                Value::Object(m)
            }),
        );
        data.insert(
            "dr_plan".into(),
            self.first("dr-plan").map_or(Value::Null, |d| {
                let mut m = d.to_json();
                for key in ["rto", "rpo"] {
                    // A front-matter key `rto:` counts like a line `RTO: …`.
                    let text = d
                        .front
                        .as_ref()
                        .and_then(|f| get(f, key).or_else(|| get(f, &key.to_uppercase())))
                        .and_then(scalar)
                        .or_else(|| target_line(&d.body, &key.to_uppercase()));
                    let secs = text.as_deref().and_then(parse_duration);
                    m.insert(format!("{key}_text"), json!(text));
                    m.insert(format!("{key}_s"), json!(secs));
                }
                Value::Object(m)
            }),
        );
        data.insert("training".into(), self.training_json(req));
        data
    }

    fn training_json(&self, req: &Request) -> Value {
        let doc = self.first("training");
        let (records, mut problems) = doc.map(training_records).unwrap_or_default();
        let records: Vec<Value> = records
            .into_iter()
            .map(|(name, date_text)| {
                let date = date_text.as_deref().and_then(parse_date);
                if date.is_none() {
                    problems.push(format!(
                        "{}: training date of {name} {} is not a date YYYY-MM-DD",
                        doc.map_or("", |d| d.file.as_str()),
                        date_text.as_deref().map_or("(empty)".to_string(), |t| format!("'{t}'"))
                    ));
                }
                json!({"name": name, "key": name.to_lowercase(), "date": date, "date_text": date_text})
            })
            .collect();
        // One entry per roster member: the newest valid record under that name (names
        // match without regard to case).
        let members: Vec<Value> = req
            .roster
            .iter()
            .map(|name| {
                let key = name.to_lowercase();
                let newest = records
                    .iter()
                    .filter(|r| r["key"] == key.as_str() && r["date"].is_i64())
                    .max_by_key(|r| r["date"].as_i64());
                json!({
                    "name": name,
                    "date": newest.map(|r| r["date"].clone()),
                    "date_text": newest.map(|r| r["date_text"].clone()),
                })
            })
            .collect();
        json!({
            "file": doc.map(|d| d.file.clone()),
            "roster": req.roster,
            "members": members,
            "records": records,
            "problems": problems,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Git: is there a copy elsewhere?

/// The git directory of the repository holding `dir` (walking up), and the work tree root.
fn find_git_dir(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let start = std::fs::canonicalize(dir).ok()?;
    for d in start.ancestors() {
        let dot = d.join(".git");
        if dot.is_dir() {
            return Some((dot, d.to_path_buf()));
        }
        if dot.is_file() {
            // Worktrees and submodules: "gitdir: <path>".
            let text = std::fs::read_to_string(&dot).ok()?;
            let p = text.trim().strip_prefix("gitdir:")?.trim();
            let p = if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                d.join(p)
            };
            return Some((p, d.to_path_buf()));
        }
    }
    None
}

/// `[section "sub"]` → key → values, from a git config file (enough for remotes and
/// branches: no includes, no continuation lines).
fn parse_git_config(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = match h.split_once(char::is_whitespace) {
                Some((sec, sub)) => {
                    format!("{} {}", sec.to_lowercase(), sub.trim().trim_matches('"'))
                }
                None => h.to_lowercase(),
            };
            continue;
        }
        let (k, v) = match t.split_once('=') {
            Some((k, v)) => (
                k.trim().to_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ),
            None => (t.to_lowercase(), "true".to_string()),
        };
        out.entry(current.clone())
            .or_default()
            .entry(k)
            .or_default()
            .push(v);
    }
    out
}

/// Where a remote URL points: (`network`|`local`, host); `local` when the host names this
/// machine (see [`crate::collect::host::names_this_machine`]).
pub fn remote_location(url: &str) -> (&'static str, Option<String>) {
    let loopback = crate::collect::host::names_this_machine;
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file://") {
        return ("local", None);
    }
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        let host = if hostport.starts_with('[') {
            hostport
                .split(']')
                .next()
                .map(|h| format!("{h}]"))
                .unwrap_or_default()
        } else {
            hostport.split(':').next().unwrap_or("").to_string()
        };
        if host.is_empty() {
            return ("local", None);
        }
        let kind = if loopback(&host) { "local" } else { "network" };
        return (kind, Some(host));
    }
    // scp-like `user@host:path` (a colon before any slash).
    if let Some((before, _)) = url.split_once(':')
        && !before.contains('/')
        && !before.is_empty()
        && before.len() > 1
    {
        let host = before.rsplit('@').next().unwrap_or(before).to_string();
        let kind = if loopback(&host) { "local" } else { "network" };
        return (kind, Some(host));
    }
    ("local", None)
}

/// The commit a ref points to (loose, then packed-refs).
fn resolve_ref(git_dir: &Path, common: &Path, name: &str) -> Option<String> {
    for d in [git_dir, common] {
        if let Ok(s) = std::fs::read_to_string(d.join(name)) {
            let s = s.trim();
            if let Some(r) = s.strip_prefix("ref:") {
                return resolve_ref(git_dir, common, r.trim());
            }
            return Some(s.to_string());
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (sha, r) = l.split_once(' ')?;
        (r.trim() == name).then(|| sha.to_string())
    })
}

/// Run `git` with a time bound; None when it is missing, fails or takes too long.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + GIT_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut so) = child.stdout.take() {
                    use std::io::Read as _;
                    let _ = so.read_to_string(&mut out);
                }
                return status.success().then_some(out);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The `git` part of the section: null when the folder is not in a git repository.
fn git_facts(dir: &Path, req: &Request) -> Value {
    let Some((git_dir, root)) = find_git_dir(dir) else {
        return Value::Null;
    };
    // A worktree's config and refs live in its common folder.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| {
            let c = c.trim();
            if Path::new(c).is_absolute() {
                PathBuf::from(c)
            } else {
                git_dir.join(c)
            }
        })
        .unwrap_or_else(|| git_dir.clone());
    let config = std::fs::read_to_string(common.join("config"))
        .map(|t| parse_git_config(&t))
        .unwrap_or_default();
    let remotes: Vec<Value> = config
        .iter()
        .filter_map(|(sec, kv)| {
            let name = sec.strip_prefix("remote ")?;
            let url = kv.get("url")?.first()?;
            let (location, host) = remote_location(url);
            // On the database host: a local path (or loopback) while the server is local,
            // or the server's own host name.
            let same_host = (location == "local" && req.server_local)
                || host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(req.server_host.trim_end_matches('.')));
            Some(
                json!({"name": name, "url": redact_url(url), "location": location, "host": host,
                "same_host_as_server": same_host}),
            )
        })
        .collect();
    let head_text = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
    let branch = head_text
        .trim()
        .strip_prefix("ref:")
        .map(|r| r.trim().trim_start_matches("refs/heads/").to_string());
    let head = resolve_ref(&git_dir, &common, "HEAD");
    let upstream = branch.as_ref().and_then(|b| {
        let sec = config.get(&format!("branch {b}"))?;
        let remote = sec.get("remote")?.first()?;
        let merge = sec.get("merge")?.first()?;
        Some(format!(
            "{remote}/{}",
            merge.trim_start_matches("refs/heads/")
        ))
    });
    let upstream_head = upstream
        .as_ref()
        .and_then(|u| resolve_ref(&git_dir, &common, &format!("refs/remotes/{u}")));
    // Ahead/behind and uncommitted changes need git itself; null without it.
    let counts = upstream_head.as_ref().and_then(|_| {
        let out = git(
            dir,
            &["rev-list", "--left-right", "--count", "HEAD...@{upstream}"],
        )?;
        let mut it = out.split_whitespace().map(|n| n.parse::<i64>().ok());
        Some((it.next()??, it.next()??))
    });
    let uncommitted = git(dir, &["status", "--porcelain", "--", "."])
        .map(|out| out.lines().filter(|l| !l.trim().is_empty()).count() as i64);
    json!({
        "root": root.display().to_string(),
        "remotes": remotes,
        "branch": branch,
        "head": head,
        "upstream": upstream,
        "upstream_head": upstream_head,
        "ahead": counts.map(|c| c.0).or(match (&head, &upstream_head) {
            (Some(h), Some(u)) if h == u => Some(0),
            _ => None,
        }),
        "behind": counts.map(|c| c.1).or(match (&head, &upstream_head) {
            (Some(h), Some(u)) if h == u => Some(0),
            _ => None,
        }),
        "uncommitted": uncommitted,
    })
}

/// A URL as it may be shown and stored: without user information (a password, or a token
/// used as user name) and without the query string (`?private_token=…`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or("");
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?…"),
        None => path.to_string(),
    };
    format!("{scheme}://{host}{path}")
}

// ---------------------------------------------------------------------------------------
// The published URL

struct Url {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(u: &str) -> Result<Url, String> {
    let (scheme, rest) = u
        .split_once("://")
        .ok_or_else(|| "not an http(s) URL".to_string())?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        s => return Err(format!("scheme {s} is not http or https")),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h.split_once(']').ok_or("bad IPv6 address")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port {p}"))?,
        None if https => 443,
        None => 80,
    };
    Ok(Url {
        https,
        host,
        port,
        path,
    })
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "no trusted root certificates on this machine (install ca-certificates)".into(),
                );
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Send `HEAD path` and read the status line.
async fn http_status(url: &Url) -> Result<u16, String> {
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        req: &[u8],
    ) -> Result<u16, String> {
        s.write_all(req)
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.lines().next().unwrap_or("");
        let mut parts = line.split_whitespace();
        match (
            parts.next(),
            parts.next().and_then(|c| c.parse::<u16>().ok()),
        ) {
            (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
            _ => Err(format!(
                "the answer is not HTTP: {:?}",
                line.chars().take(60).collect::<String>()
            )),
        }
    }
    let host_header = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let req = format!(
        "HEAD {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: pgready/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        env!("CARGO_PKG_VERSION")
    );
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    if url.https {
        let config = tls_config()?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("bad host name {}: {e}", url.host))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {}: {e}", url.host))?;
        exchange(tls, req.as_bytes()).await
    } else {
        exchange(tcp, req.as_bytes()).await
    }
}

/// The `url` part: whether the published copy answers, and whether it is served from the
/// database host itself.
async fn check_url(u: &str, req: &Request) -> Value {
    let shown = redact_url(u);
    let url = match parse_url(u) {
        Ok(url) => url,
        Err(e) => {
            return json!({"url": shown, "host": null, "status": null, "error": e, "same_host_as_server": null});
        }
    };
    let loopback = url.host.eq_ignore_ascii_case("localhost")
        || url
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let same_host = (loopback && req.server_local)
        || url
            .host
            .eq_ignore_ascii_case(req.server_host.trim_end_matches('.'));
    let started = Instant::now();
    let result = tokio::time::timeout(URL_TIMEOUT, http_status(&url)).await;
    let (status, error) = match result {
        Ok(Ok(code)) => (Some(code), None),
        Ok(Err(e)) => (None, Some(e)),
        Err(_) => (
            None,
            Some(format!("no answer within {} s", URL_TIMEOUT.as_secs())),
        ),
    };
    json!({
        "url": shown,
        "host": url.host,
        "status": status,
        "error": error,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "same_host_as_server": same_host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_and_sections() {
        let text = "---\nid: failover\ntitle: Failover\nowner: dba\nlast_reviewed: 2026-01-10\n---\n# Failover\n\n## Symptoms\nPrimary gone.\n\n## 2. Diagnosis steps\n```sh\n## not a heading\n```\n## Resolution\n<!-- nothing -->\nTODO: write it\n\n## Verification\n\nSELECT 1;\n\nEscalation\n----------\nCall Bob.\n";
        let d = parse_doc("failover.md", text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.id, "failover");
        assert_eq!(d.last_reviewed, Some(1_768_003_200));
        assert_eq!(
            d.sections,
            vec!["symptoms", "diagnosis", "verification", "escalation"]
        );
        assert_eq!(d.empty_sections, vec!["resolution"]);
        assert_eq!(d.headings.len(), 5);
    }

    #[test]
    fn files_without_usable_front_matter() {
        assert!(parse_doc("a.md", "# Title\n").is_err());
        assert!(parse_doc("a.md", "---\ntitle: x\n---\n").is_err());
        assert!(parse_doc("a.md", "---\nid: [unclosed\n---\n").is_err());
        let d = parse_doc("a.md", "---\nid: a\nlast_reviewed:\n---\n").unwrap_or_default();
        assert_eq!(d.last_reviewed_text, None);
        let d =
            parse_doc("a.md", "---\nid: a\nlast_reviewed: 2026-13-01\n---\n").unwrap_or_default();
        assert_eq!(d.last_reviewed_text.as_deref(), Some("2026-13-01"));
        assert_eq!(d.last_reviewed, None);
    }

    #[test]
    fn durations() {
        for (s, v) in [
            ("1 h", Some(3600)),
            ("15 min", Some(900)),
            ("1h30m", Some(5400)),
            ("1 hour and 30 minutes", Some(5400)),
            ("< 4 hours (business hours)", Some(14400)),
            ("0", Some(0)),
            ("zero (synchronous replica)", Some(0)),
            ("90 seconds", Some(90)),
            ("2 days", Some(172_800)),
            ("TODO", None),
            ("", None),
            ("5 parsecs", None),
        ] {
            assert_eq!(parse_duration(s), v, "{s}");
        }
    }

    #[test]
    fn target_lines() {
        let body = "Intro\n\n- **RTO**: 1 h\n* RPO (max data loss): 5 min\n";
        assert_eq!(target_line(body, "RTO").as_deref(), Some("1 h"));
        assert_eq!(target_line(body, "RPO").as_deref(), Some("5 min"));
        let table = "| target | value |\n|---|---|\n| **RTO** | 30 min |\n| RPO | 0 |\n";
        assert_eq!(target_line(table, "RTO").as_deref(), Some("30 min"));
        assert_eq!(target_line(table, "RPO").as_deref(), Some("0"));
        assert_eq!(target_line("The RTO is one hour.\n", "RTO"), None);
    }

    #[test]
    fn contacts() {
        let body = "| role | name | phone |\n|---|---|---|\n| DBA | Ana | +33 6 12 34 56 78 |\n| SRE | Bob | bob@example.com |\n| Vendor | TODO | TODO |\n\n- Manager: Carol, 555-0100-22\n";
        assert_eq!(count_contacts(body), (3, 2, 1));
    }

    #[test]
    fn remotes() {
        assert_eq!(
            remote_location("git@github.com:team/runbooks.git"),
            ("network", Some("github.com".into()))
        );
        assert_eq!(
            remote_location("https://user:pw@git.example.com/x.git"),
            ("network", Some("git.example.com".into()))
        );
        assert_eq!(remote_location("/srv/git/runbooks.git"), ("local", None));
        assert_eq!(remote_location("file:///srv/git/x"), ("local", None));
        assert_eq!(
            remote_location("ssh://localhost/srv/x"),
            ("local", Some("localhost".into()))
        );
        assert_eq!(
            redact_url("https://user:pw@git.example.com/x.git?token=1"),
            "https://git.example.com/x.git?…"
        );
    }

    #[test]
    fn git_config() {
        let c = parse_git_config(
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@h:x.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n",
        );
        assert_eq!(c["remote origin"]["url"], vec!["git@h:x.git"]);
        assert_eq!(c["branch main"]["merge"], vec!["refs/heads/main"]);
    }
}
