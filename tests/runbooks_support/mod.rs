//! Runbook folders for the integration tests: copies of `tests/data/runbooks/*` made
//! current (the fixture review date 2026-11-01 becomes today), under git with a remote,
//! and a pgready.toml naming the folder and the team roster.
//!
//! Included with `#[path = "runbooks_support/mod.rs"] mod runbooks_support;` (a folder
//! without main.rs is not a test binary of its own).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The review and training date used by the fixture folders; rewritten to today.
pub const FIXTURE_DATE: &str = "2026-11-01";
/// The roster matching the `training.md` of the fixtures.
pub const ROSTER: &str = r#"["Ana Lima", "bob martin", "Carol"]"#;

/// Today's UTC date, YYYY-MM-DD (civil-from-days, no date crate in the tests).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    date_of(secs.div_euclid(86_400))
}

/// YYYY-MM-DD of a day number since 1970-01-01.
pub fn date_of(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Runs git in `dir` (identity and default branch fixed) and panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=pgready tests",
            "-c",
            "user.email=tests@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (install git): {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary runbook folder and a pgready.toml beside it (both removed on drop).
pub struct RunbookDir {
    pub tmp: tempfile::TempDir,
}

impl RunbookDir {
    /// The runbook folder.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("runbooks")
    }

    pub fn dir_str(&self) -> String {
        self.dir().display().to_string()
    }

    /// Writes `<tmp>/pgready.toml`: `base` (e.g. the hardened cluster's evidence file), then
    /// `[runbooks]` with this folder, the fixture roster and `extra` lines.
    pub fn config(&self, base: Option<&Path>, extra: &str) -> PathBuf {
        let mut text = match base {
            Some(b) => std::fs::read_to_string(b)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", b.display())),
            None => String::new(),
        };
        text.push_str(&format!(
            "\n[runbooks]\ndir = {:?}\nroster = {ROSTER}\n{extra}\n",
            self.dir_str()
        ));
        let path = self.tmp.path().join("pgready.toml");
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

/// An empty runbook folder in a new temporary folder (outside any git repository).
pub fn empty() -> RunbookDir {
    let tmp = tempfile::Builder::new()
        .prefix("pgready-runbooks-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary folder: {e}"));
    std::fs::create_dir(tmp.path().join("runbooks"))
        .unwrap_or_else(|e| panic!("cannot create the runbook folder: {e}"));
    RunbookDir { tmp }
}

/// A copy of `tests/data/runbooks/<name>` with FIXTURE_DATE replaced by today, committed
/// in a git repository whose `origin` is a network remote (never contacted).
pub fn fixture(name: &str) -> RunbookDir {
    let rb = empty();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/runbooks")
        .join(name);
    let today = today();
    let entries = std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for e in entries.filter_map(Result::ok) {
        let text = std::fs::read_to_string(e.path())
            .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        std::fs::write(
            rb.dir().join(e.file_name()),
            text.replace(FIXTURE_DATE, &today),
        )
        .unwrap_or_else(|err| panic!("cannot copy {}: {err}", e.path().display()));
    }
    let d = rb.dir();
    git(&d, &["init", "-q"]);
    git(&d, &["add", "."]);
    git(&d, &["commit", "-q", "-m", "runbooks"]);
    git(
        &d,
        &[
            "remote",
            "add",
            "origin",
            "git@git.example.com:dba/runbooks.git",
        ],
    );
    rb
}
