//! Embeds the default rule pack (`checks/**/*.toml`) into the binary.
//!
//! Generates `$OUT_DIR/embedded_checks.rs` holding `(relative path, include_str!(…))`
//! pairs, so that the binary works from any folder and a change to a rule file rebuilds it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let checks = root.join("checks");
    println!("cargo:rerun-if-changed=checks");
    let mut files = Vec::new();
    if checks.is_dir() {
        collect(&checks, &mut files)?;
    }
    let out =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("embedded_checks.rs");
    let mut f = fs::File::create(out)?;
    writeln!(f, "pub static EMBEDDED_CHECKS: &[(&str, &str)] = &[")?;
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let rel = path.strip_prefix(&root).unwrap_or(path);
        writeln!(
            f,
            "    ({:?}, include_str!({:?})),",
            rel.to_string_lossy(),
            path.to_string_lossy()
        )?;
    }
    writeln!(f, "];")?;
    Ok(())
}
