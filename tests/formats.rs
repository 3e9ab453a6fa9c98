//! The CI output formats (`--format junit|sarif|markdown|html|prometheus`) through the
//! real binary, rendered from one facts snapshot of the shared hardened PostgreSQL 18
//! server, and checked with the real readers: promtool for the Prometheus text, headless
//! Chromium for the HTML page.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

const FORMATS: [&str; 7] = [
    "text",
    "json",
    "junit",
    "sarif",
    "markdown",
    "html",
    "prometheus",
];

/// Server text no renderer may pass through raw: markup, quotes, a pipe, a backslash, a
/// line break and control characters (invalid in XML 1.0).
const HOSTILE: &str =
    "18.4 </failure><script>alert(1)</script> & \"q\" 'a' |z\\y\nnext\u{1}\u{1b}[31m";

static WORKDIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_workdir() {
    if let Some(dir) = WORKDIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A folder of this test process under cargo's target tmp dir, removed at exit.
fn workdir() -> &'static Path {
    WORKDIR.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("formats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // SAFETY: `remove_workdir` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(remove_workdir) };
        dir
    })
}

/// The snapshot every test renders: `pgready facts` of pg18-hardened, written once.
fn snapshot() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let pg = common::cluster("pg18-hardened");
        let file = workdir().join("facts.json");
        let path = file.to_string_lossy().into_owned();
        common::ok(
            pg.pgready(&["facts", &pg.uri, "-o", &path]),
            "pgready facts",
        );
        file
    })
}

/// The snapshot with [`HOSTILE`] as the server version (it reaches every format).
fn hostile_snapshot() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let text = std::fs::read_to_string(snapshot()).unwrap_or_else(|e| panic!("{e}"));
        let mut facts: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        facts["sections"]["server"]["data"]["version"] = Value::from(HOSTILE);
        let file = workdir().join("hostile-facts.json");
        std::fs::write(&file, facts.to_string()).unwrap_or_else(|e| panic!("{e}"));
        file
    })
}

/// `pgready audit --from-facts FILE --format FORMAT EXTRA…`.
fn audit(file: &Path, format: &str, extra: &[&str]) -> Output {
    let pg = common::cluster("pg18-hardened");
    let file = file.to_string_lossy();
    let mut args = vec!["audit", "--from-facts", &file, "--format", format];
    args.extend_from_slice(extra);
    pg.pgready(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_report() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| {
        let out = audit(snapshot(), "json", &[]);
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e})"))
    })
}

fn findings() -> &'static [Value] {
    json_report()["findings"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn count(status: &str) -> usize {
    findings().iter().filter(|f| f["status"] == status).count()
}

/// The id of a rule that failed in the snapshot (the hardened server runs an outdated
/// minor or has another failing rule; a test needs at least one).
fn failing_rule() -> &'static str {
    findings()
        .iter()
        .find(|f| f["status"] == "fail")
        .and_then(|f| f["rule_id"].as_str())
        .unwrap_or_else(|| panic!("no failing rule in the snapshot"))
}

/// `GO`, `GO WITH RESERVATIONS` or `NO-GO`, as the reports print it.
fn decision_label() -> &'static str {
    match json_report()["verdict"]["decision"].as_str() {
        Some("GO") => "GO",
        Some("GO_WITH_RESERVATIONS") => "GO WITH RESERVATIONS",
        Some("NO_GO") => "NO-GO",
        other => panic!("decision {other:?}"),
    }
}

/// The integer value of attribute `name` in the first tag that starts with `tag`.
fn xml_attr(xml: &str, tag: &str, name: &str) -> usize {
    let start = xml.find(tag).unwrap_or_else(|| panic!("no {tag}"));
    let head = &xml[start..start + xml[start..].find('>').unwrap_or(0)];
    let key = format!(" {name}=\"");
    let at = head
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {head}"))
        + key.len();
    head[at..]
        .split('"')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {name} in {head}"))
}

#[test]
fn every_format_renders_with_the_same_exit_code() {
    for fail_on in ["no-go", "reservations"] {
        let codes: Vec<(&str, Option<i32>)> = FORMATS
            .iter()
            .map(|f| {
                let out = audit(snapshot(), f, &["--fail-on", fail_on]);
                assert!(!out.stdout.is_empty(), "{f}: empty output");
                (*f, out.status.code())
            })
            .collect();
        let expected = match decision_label() {
            "GO" => Some(0),
            "GO WITH RESERVATIONS" if fail_on == "no-go" => Some(0),
            _ => Some(1),
        };
        for (f, code) in codes {
            assert_eq!(code, expected, "--format {f} --fail-on {fail_on}");
        }
    }
    // Bad input stays 2, whatever the format.
    let missing = workdir().join("missing.json");
    for f in FORMATS {
        assert_eq!(audit(&missing, f, &[]).status.code(), Some(2), "{f}");
    }
}

#[test]
fn junit_counts_and_verdict() {
    let xml = stdout(&audit(snapshot(), "junit", &[]));
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    let n = findings().len();
    assert_eq!(xml_attr(&xml, "<testsuites ", "tests"), n + 1);
    let verdict_fails = decision_label() == "NO-GO";
    assert_eq!(
        xml_attr(&xml, "<testsuites ", "failures"),
        count("fail") + count("not_evaluated") + usize::from(verdict_fails)
    );
    assert_eq!(xml_attr(&xml, "<testsuites ", "errors"), count("error"));
    assert_eq!(
        xml_attr(&xml, "<testsuites ", "skipped"),
        count("not_applicable") + count("waived")
    );
    assert_eq!(xml.matches("<testcase ").count(), n + 1);
    assert_eq!(
        xml.matches("<testsuite ").count(),
        1 + 5,
        "verdict + 5 pillars"
    );
    // The verdict case comes first.
    let first = xml.find("<testcase ").unwrap_or(0);
    assert!(xml[first..].starts_with(&format!(
        "<testcase classname=\"verdict\" name=\"verdict: {}\"",
        decision_label()
    )));
    assert_eq!(xml.contains("<failure type=\"verdict\""), verdict_fails);
    let id = failing_rule();
    let case = xml
        .find(&format!("name=\"{id}: "))
        .map(|i| &xml[i..i + xml[i..].find("</testcase>").unwrap_or(0)])
        .unwrap_or_else(|| panic!("no case for {id}"));
    assert!(
        case.contains("<failure type=\"fail\" message=\"FAIL: "),
        "{case}"
    );
    assert!(case.contains("remediation: "), "{case}");
    if count("not_evaluated") > 0 {
        assert!(xml.contains("<failure type=\"not_evaluated\" message=\"NOT EVALUATED"));
    }
}

#[test]
fn sarif_has_what_the_spec_requires() {
    let log: Value = serde_json::from_str(&stdout(&audit(snapshot(), "sarif", &[])))
        .unwrap_or_else(|e| panic!("not JSON: {e}"));
    // sarifLog: version and runs; run: tool; tool: driver; toolComponent: name;
    // reportingDescriptor: id; result: message (with text).
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(
        log["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    let run = &log["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "pgready");
    assert!(
        driver["informationUri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://"))
    );
    let rules = driver["rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), findings().len());
    let mut ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rules.len(), "rule ids are unique");
    for r in &rules {
        assert!(r["shortDescription"]["text"].is_string(), "{r}");
        assert!(r["fullDescription"]["text"].is_string(), "rationale: {r}");
        assert!(r["help"]["text"].is_string(), "{r}");
        assert!(r["properties"]["pillar"].is_string(), "{r}");
    }
    let results = run["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        results.len(),
        count("fail") + count("not_evaluated") + count("error")
    );
    for x in &results {
        assert!(
            x["message"]["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{x}"
        );
        let i = x["ruleIndex"].as_u64().unwrap_or(u64::MAX) as usize;
        assert_eq!(rules[i]["id"], x["ruleId"], "{x}");
        let kind = x["kind"].as_str().unwrap_or("");
        let level = x["level"].as_str().unwrap_or("");
        // §3.27.9: a kind other than fail has level none.
        match kind {
            "fail" => assert!(["error", "warning", "note"].contains(&level), "{x}"),
            "open" => assert_eq!(level, "none", "{x}"),
            _ => panic!("kind {kind}: {x}"),
        }
        let loc = &x["locations"][0]["logicalLocations"][0];
        assert!(
            loc["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("localhost:")),
            "{x}"
        );
    }
    let id = failing_rule();
    assert!(
        results
            .iter()
            .any(|x| x["ruleId"] == id && x["kind"] == "fail")
    );
}

#[test]
fn markdown_summary() {
    let md = stdout(&audit(snapshot(), "markdown", &[]));
    let headline = md.lines().next().unwrap_or("");
    assert!(
        headline.starts_with("## ") && headline.contains(&format!("**{}**", decision_label())),
        "{headline}"
    );
    assert!(headline.contains("maturity level"), "{headline}");
    assert!(md.contains("| G1 "), "{md}");
    assert!(md.contains(&format!("`{}`", failing_rule())));
    assert!(md.contains(&format!("{} rules passed", count("pass"))));
    // Each table keeps its number of cells on every row.
    let mut width = 0;
    for line in md.lines() {
        if !line.starts_with('|') {
            width = 0;
            continue;
        }
        let cells = line.replace("\\|", "").matches('|').count();
        if width == 0 {
            width = cells;
        }
        assert_eq!(cells, width, "{line}");
    }
}

#[test]
fn prometheus_passes_promtool() {
    for file in [snapshot(), hostile_snapshot()] {
        let text = stdout(&audit(file, "prometheus", &[]));
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run promtool (Debian package prometheus): {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            stdin
                .write_all(text.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let decision = json_report()["verdict"]["decision"].as_str().unwrap_or("");
        assert!(
            text.contains(&format!("decision=\"{decision}\"}} 1\n")),
            "{text}"
        );
        assert_eq!(
            text.matches("pgready_rule_status{").count(),
            findings().len()
        );
    }
}

/// Runs headless Chromium on `html` with `args` (a screenshot or a DOM dump) and returns
/// its stdout. A new empty profile each time; nothing is fetched from the network.
fn chromium(html: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir_in(workdir()).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium (Debian package chromium): {e}"));
    assert!(
        out.status.success(),
        "chromium {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// The HTML report of `facts`, written to `name` in the work folder, and the DOM
/// Chromium built from it.
fn html_page(facts: &Path, name: &str) -> (PathBuf, String) {
    let html = stdout(&audit(facts, "html", &[]));
    let page = workdir().join(name);
    std::fs::write(&page, &html).unwrap_or_else(|e| panic!("{e}"));
    let dom = chromium(&page, &["--dump-dom"]);
    (page, dom)
}

#[test]
fn html_as_chromium_renders_it() {
    let (page, dom) = html_page(snapshot(), "report.html");
    assert!(
        dom.contains(&format!("<div class=\"label\">{}</div>", decision_label())),
        "{dom}"
    );
    let id = failing_rule();
    assert!(dom.contains(&format!("id=\"{id}\"")), "no card for {id}");
    assert!(dom.contains("<h2>Go/No-Go grid</h2>"));
    assert!(!dom.contains("<script"), "the page runs no script");

    let shot = workdir().join("report.png");
    chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}"));
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn hostile_server_text_stays_text() {
    let (_, dom) = html_page(hostile_snapshot(), "hostile.html");
    assert!(!dom.contains("<script"), "an injected script element");
    assert!(
        dom.contains("&lt;/failure&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the version shows as text"
    );

    let xml = stdout(&audit(hostile_snapshot(), "junit", &[]));
    assert!(!xml.contains("<script>") && !xml.contains('\u{1}') && !xml.contains('\u{1b}'));
    assert_eq!(
        xml.matches("<failure").count(),
        xml.matches("</failure>").count()
    );
    assert!(xml.contains("&lt;/failure&gt;&lt;script&gt;"));

    let md = stdout(&audit(hostile_snapshot(), "markdown", &[]));
    assert!(!md.contains("<script>") && !md.contains('\u{1}'));

    let sarif = stdout(&audit(hostile_snapshot(), "sarif", &[]));
    let log: Value = serde_json::from_str(&sarif).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(log["runs"][0]["properties"]["serverVersion"], HOSTILE);
}

#[test]
fn a_conninfo_password_appears_in_no_format() {
    let pg = common::cluster("pg18-hardened");
    let password = pg
        .password
        .as_deref()
        .unwrap_or_else(|| panic!("the hardened cluster has a password"));
    // postgresql://postgres@localhost:PORT/… → postgresql://postgres:PASSWORD@localhost:PORT/…
    let uri = pg.uri.replacen(
        "postgresql://postgres@",
        &format!("postgresql://postgres:{password}@"),
        1,
    );
    assert_ne!(uri, pg.uri, "{}", pg.uri);
    for f in FORMATS {
        let out = pg.pgready(&["audit", &uri, "--format", f]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !String::from_utf8_lossy(bytes).contains(password),
                "--format {f}: the password is in {what}"
            );
        }
    }
}
