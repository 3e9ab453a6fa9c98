//! verify-full against a pinned self-signed server certificate that carries CA:TRUE (what
//! `openssl req -x509`, the PostgreSQL docs' recipe, makes): libpq accepts it, so must
//! pgready; with another root it is refused with a message that says what to do.

mod common;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

#[test]
fn pinned_self_signed_ca_certificate_is_accepted_like_libpq() {
    let name = "lead-pinned";
    let pid = std::process::id().to_string();
    let uri = common::start_own(name, 18, "hardened").unwrap_or_else(|e| panic!("{e}"));
    let dir = common::sandbox_dir().join(name);
    let data = dir.join("data");
    let password = std::fs::read_to_string(dir.join("password"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let port = uri
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("no port in {uri}"))
        .to_string();

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (crt, key) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
    let out = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&crt));
    assert!(String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"));

    for (from, to, mode) in [(&crt, "pinned.crt", "644"), (&key, "pinned.key", "600")] {
        let dest = data.join(to);
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("{e}"));
        let ok = run(Command::new("chown").arg("pgready").arg(&dest))
            .status
            .success()
            && run(Command::new("chmod").arg(mode).arg(&dest))
                .status
                .success();
        assert!(ok, "cannot hand {} to the server user", dest.display());
    }
    let out = common::sandbox(&[
        "sql",
        name,
        "ALTER SYSTEM SET ssl_cert_file = 'pinned.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'pinned.key'",
        "SELECT pg_reload_conf()",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let facts = |root: &Path| {
        let target = format!(
            "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            root.display()
        );
        run(Command::new(env!("CARGO_BIN_EXE_pgready"))
            .args(["facts", &target, "-o"])
            .arg(tmp.path().join("facts.json"))
            .env("PGPASSWORD", &password))
    };
    let out = facts(&crt);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = facts(&dir.join("ca.crt"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("presents a CA certificate"), "{err}");
    assert!(!err.contains(password.trim()), "{err}");
    let _ = common::sandbox(&["release", name, "--owner-pid", &pid]);
}
