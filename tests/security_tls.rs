//! S4/S5 on real servers: pgready's TLS probe and the certificate rules.
//!
//! One hardened PostgreSQL 18 cluster and one 16 (the version matrix) are started once for
//! this binary. Each case installs one certificate in the data directory (owned by the
//! server account, key 0600), points `ssl_cert_file`/`ssl_key_file` at it with ALTER SYSTEM,
//! reloads (TLS files are re-read on SIGHUP since PostgreSQL 10; the case checks that the
//! served certificate is the new one), runs `pgready audit --format json` and checks that
//! the right rule fails and names the certificate. Certificates are made here with openssl:
//! a test CA, a CA-signed one, an expired one (`openssl ca -startdate/-enddate`), one that
//! expires in 10 days, a self-signed one, one for another host name, a 1024-bit RSA one and
//! a SHA-1-signed one (PostgreSQL's OpenSSL accepts both).
//!
//! The audits of the broken certificates connect with `sslmode=disable` (a loopback `host`
//! line is added to pg_hba.conf) and `sslrootcert` = the test CA: the audit session itself
//! must not refuse the certificate under test, while the probe still verifies the chain.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::Value;

/// A cluster of this binary, with the lock that serialises the cases that change it.
struct Server {
    name: String,
    major: u32,
    /// The sandbox's own URI (verify-full against the sandbox CA, host localhost).
    uri: String,
    port: u16,
    password: String,
    dir: PathBuf,
    lock: Mutex<()>,
}

struct Setup {
    pg18: Result<Server, String>,
    pg16: Result<Server, String>,
    certs: Result<Certs, String>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        std::thread::scope(|s| {
            let a = s.spawn(|| start("tlsprobe-pg18", 18));
            let b = s.spawn(|| start("tlsprobe-pg16", 16));
            let c = s.spawn(make_certs);
            Setup {
                pg18: a.join().unwrap_or_else(|_| Err("start panicked".into())),
                pg16: b.join().unwrap_or_else(|_| Err("start panicked".into())),
                certs: c.join().unwrap_or_else(|_| Err("openssl panicked".into())),
            }
        })
    })
}

fn servers() -> [&'static Server; 2] {
    let s = setup();
    let get = |r: &'static Result<Server, String>| match r {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    [get(&s.pg18), get(&s.pg16)]
}

fn certs() -> &'static Certs {
    match &setup().certs {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn start(name: &str, major: u32) -> Result<Server, String> {
    let pid = std::process::id().to_string();
    let major_s = major.to_string();
    let out = common::sandbox(&[
        "start",
        name,
        "--major",
        &major_s,
        "--scenario",
        "hardened",
        "--owner-pid",
        &pid,
        "--fresh",
    ]);
    if !out.status.success() {
        return Err(format!(
            "pg-sandbox start {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = common::sandbox_dir().join(name);
    let password = std::fs::read_to_string(dir.join("password"))
        .map_err(|e| format!("{name}: no password file: {e}"))?
        .trim()
        .to_string();
    let port = uri
        .rsplit_once("localhost:")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {uri}"))?;
    // A loopback `host` line, so that the audit session can do without TLS while the
    // certificate under test is broken (loopback lines are exempt from the hostssl rule).
    let hba = dir.join("data/pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).map_err(|e| format!("{e}"))?;
    text.push_str("host     all      all  127.0.0.1/32  scram-sha-256\n");
    std::fs::write(&hba, text).map_err(|e| format!("{e}"))?;
    sql(name, &["SELECT pg_reload_conf()"])?;
    Ok(Server {
        name: name.to_string(),
        major,
        uri,
        port,
        password,
        dir,
        lock: Mutex::new(()),
    })
}

fn sql(name: &str, statements: &[&str]) -> Result<String, String> {
    let mut args = vec!["sql", name];
    args.extend_from_slice(statements);
    let out = common::sandbox(&args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "pg-sandbox sql {name} {statements:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The test certificates, in a folder that lives as long as the process.
struct Certs {
    dir: PathBuf,
    /// The UTC date `soon` expires on (YYYY-MM-DD).
    soon_date: String,
    _keep: tempfile::TempDir,
}

impl Certs {
    fn ca(&self) -> String {
        self.dir.join("ca.crt").to_string_lossy().into_owned()
    }
}

const CA_CNF: &str = "\
[ca]
default_ca = test
[test]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
";

fn ext(san: &str) -> String {
    format!(
        "[srv]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,\
         keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = {san}\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
    )
}

fn make_certs() -> Result<Certs, String> {
    let keep = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = keep.path().to_path_buf();
    let w = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    w("ca.cnf", CA_CNF)?;
    w("index.txt", "")?;
    w("serial", "1000\n")?;
    w("local.ext", &ext("DNS:localhost,IP:127.0.0.1"))?;
    w("db2.ext", &ext("DNS:db2.example.com"))?;
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").args(args).current_dir(&dir))
            .map_err(|e| format!("install openssl (apt-get install openssl): {e}"))
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-sha256",
        "-days",
        "3650",
        "-nodes",
        "-subj",
        "/CN=pgready TLS test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ])?;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let soon_end = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        soon.year(),
        u8::from(soon.month()),
        soon.day(),
        soon.hour(),
        soon.minute(),
        soon.second()
    );
    let soon_date = soon.date().to_string();
    // (name, key, subject CN, extensions file, extra `openssl ca` arguments)
    let cases: [(&str, &str, &str, &str, Vec<&str>); 6] = [
        (
            "good",
            "rsa:2048",
            "localhost",
            "local.ext",
            vec!["-days", "365"],
        ),
        (
            "expired",
            "rsa:2048",
            "localhost",
            "local.ext",
            vec![
                "-startdate",
                "20240101000000Z",
                "-enddate",
                "20250101000000Z",
            ],
        ),
        (
            "soon",
            "rsa:2048",
            "localhost",
            "local.ext",
            vec!["-enddate", &soon_end],
        ),
        (
            "wronghost",
            "rsa:2048",
            "db2.example.com",
            "db2.ext",
            vec!["-days", "365"],
        ),
        (
            "weak",
            "rsa:1024",
            "localhost",
            "local.ext",
            vec!["-days", "365"],
        ),
        (
            "sha1",
            "rsa:2048",
            "localhost",
            "local.ext",
            vec!["-days", "365", "-md", "sha1"],
        ),
    ];
    for (name, key, cn, extfile, extra) in &cases {
        let (keyf, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subj = format!("/CN={cn}");
        openssl(&[
            "req", "-new", "-newkey", key, "-nodes", "-subj", &subj, "-keyout", &keyf, "-out", &csr,
        ])?;
        let mut args = vec![
            "ca",
            "-config",
            "ca.cnf",
            "-batch",
            "-notext",
            "-cert",
            "ca.crt",
            "-keyfile",
            "ca.key",
            "-in",
            &csr,
            "-out",
            &crt,
            "-extfile",
            extfile,
            "-extensions",
            "srv",
        ];
        args.extend(extra.iter().copied());
        openssl(&args)?;
    }
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-sha256",
        "-days",
        "365",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        "selfsigned.key",
        "-out",
        "selfsigned.crt",
    ])?;
    Ok(Certs {
        dir,
        soon_date,
        _keep: keep,
    })
}

/// SHA-256 fingerprint of a PEM certificate, as the `tls` facts write it.
fn fingerprint(crt: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(crt)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit_once('=')
        .map(|(_, f)| f.replace(':', ""))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
}

/// What one audit gave: the JSON report and the facts it judged.
struct Audit {
    report: Value,
    facts: Value,
}

impl Audit {
    fn finding(&self, id: &str) -> &Value {
        self.report["findings"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["rule_id"] == id))
            .unwrap_or_else(|| panic!("no finding {id}"))
    }

    fn status(&self, id: &str) -> &str {
        self.finding(id)["status"].as_str().unwrap_or("?")
    }

    fn offenders(&self, id: &str) -> Vec<String> {
        self.finding(id)["offenders"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tls(&self) -> &Value {
        &self.facts["sections"]["tls"]
    }

    /// Every certificate rule and the TLS 1.3 rule, with their status.
    fn tls_statuses(&self) -> Vec<(String, String)> {
        self.report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["rule_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("sec.cert.") || id == "sec.tls.tls13")
            })
            .map(|f| {
                (
                    f["rule_id"].as_str().unwrap_or("?").to_string(),
                    format!("{} {}", f["status"], f["offenders"]),
                )
            })
            .collect()
    }
}

impl Server {
    fn hold(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The URI the broken-certificate cases use: no TLS for the session, the test CA for
    /// the probe's chain check.
    fn plain_uri(&self, host: &str) -> String {
        format!(
            "postgresql://postgres@{host}:{}/postgres?sslmode=disable&sslrootcert={}",
            self.port,
            certs().ca()
        )
    }

    fn audit(&self, uri: &str, extra: &[&str]) -> Audit {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let facts_file = tmp.path().join("facts.json");
        let facts_s = facts_file.to_string_lossy().to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgready"));
        cmd.args(["audit", uri, "--format", "json", "--save-facts", &facts_s])
            .args(extra)
            .current_dir(&self.dir)
            .env("PGPASSWORD", &self.password)
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("PG") && k != "PGPASSWORD" {
                cmd.env_remove(&key);
            }
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("pgready: {e}"));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: no JSON report ({e}); stderr: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let facts: Value = std::fs::read(&facts_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| panic!("{}: no facts file", self.name));
        Audit { report, facts }
    }

    /// Serve certificate `case` of the test folder, and wait until the server has
    /// re-read its configuration.
    fn install(&self, case: &str) {
        let certs = certs();
        let data = self.dir.join("data");
        let (crt, key) = (format!("pgready-{case}.crt"), format!("pgready-{case}.key"));
        for (from, to, mode) in [
            (format!("{case}.crt"), &crt, 0o644),
            (format!("{case}.key"), &key, 0o600),
        ] {
            let dest = data.join(to);
            std::fs::copy(certs.dir.join(&from), &dest)
                .unwrap_or_else(|e| panic!("copy {from}: {e}"));
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", dest.display()));
            // As root the server runs as the sandbox account, which must own its key.
            if unsafe { libc::geteuid() } == 0 {
                let user = std::env::var("PGREADY_SANDBOX_USER")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| "pgready".to_string());
                run(Command::new("chown")
                    .arg(format!("{user}:{user}"))
                    .arg(&dest))
                .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        self.configure(&[
            &format!("ALTER SYSTEM SET ssl_cert_file = '{crt}'"),
            &format!("ALTER SYSTEM SET ssl_key_file = '{key}'"),
        ]);
        self.wait_for("ssl_cert_file", &crt);
    }

    fn configure(&self, statements: &[&str]) {
        let mut all: Vec<&str> = statements.to_vec();
        all.push("SELECT pg_reload_conf()");
        sql(&self.name, &all).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A new session sees `value` once the postmaster has processed the reload (TLS
    /// files included: they are re-read in the same SIGHUP handling).
    fn wait_for(&self, setting: &str, value: &str) {
        for _ in 0..100 {
            let seen = sql(&self.name, &[&format!("SHOW {setting}")]).unwrap_or_default();
            if seen == value {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{}: {setting} never became {value}", self.name);
    }

    /// Back to the sandbox's own certificate and protocol settings.
    fn restore(&self) {
        self.configure(&[
            "ALTER SYSTEM RESET ssl_cert_file",
            "ALTER SYSTEM RESET ssl_key_file",
            "ALTER SYSTEM RESET ssl_max_protocol_version",
            "ALTER SYSTEM RESET ssl_min_protocol_version",
            "ALTER SYSTEM RESET ssl",
        ]);
        self.wait_for("ssl_cert_file", "server.crt");
        self.wait_for("ssl", "on");
    }

    fn served_is(&self, a: &Audit, case: &str) {
        let want = fingerprint(&certs().dir.join(format!("{case}.crt")));
        let got = a.tls()["data"]["chain"][0]["sha256"].as_str().unwrap_or("");
        assert_eq!(
            got,
            want,
            "{}: the server does not serve {case}.crt after the reload: {}",
            self.name,
            a.tls()
        );
    }

    /// Run `case` on this server: install, audit, restore.
    fn case(&self, case: &str, host: &str, extra: &[&str]) -> Audit {
        let _guard = self.hold();
        self.install(case);
        let a = self.audit(&self.plain_uri(host), extra);
        self.served_is(&a, case);
        self.restore();
        a
    }
}

fn expect(a: &Audit, server: &Server, rule: &str, status: &str) {
    assert_eq!(
        a.status(rule),
        status,
        "{} (PostgreSQL {}): {rule}: {}\nall: {:#?}",
        server.name,
        server.major,
        a.finding(rule),
        a.tls_statuses()
    );
}

/// The rules other than `failing` stay passing (no collateral alarm).
fn only_fails(a: &Audit, server: &Server, failing: &[&str]) {
    for (id, status) in a.tls_statuses() {
        if failing.contains(&id.as_str()) {
            continue;
        }
        assert!(
            status.starts_with("\"pass\"") || status.starts_with("\"not_applicable\""),
            "{} (PostgreSQL {}): {id} is {status}, expected pass",
            server.name,
            server.major
        );
    }
}

#[test]
fn hardened_baseline_passes_every_tls_rule() {
    for s in servers() {
        let _guard = s.hold();
        let a = s.audit(&s.uri, &[]);
        let data = &a.tls()["data"];
        assert_eq!(a.tls()["collected"], true, "{}", a.tls());
        assert_eq!(data["protocol"], "TLSv1.3");
        assert_eq!(data["chain_verified"], true, "{data}");
        assert_eq!(data["hostname_matches"], true, "{data}");
        assert_eq!(data["chain"][0]["label"], "CN=localhost");
        assert_eq!(data["chain"][0]["key"], "RSA 2048-bit");
        assert_eq!(
            data["chain"][0]["signature_algorithm"],
            "sha256WithRSAEncryption"
        );
        // ALPN is answered from 17 on; 16 ignores the extension.
        let alpn = if s.major >= 17 {
            Value::from("postgresql")
        } else {
            Value::Null
        };
        assert_eq!(data["alpn"], alpn, "{}", s.name);
        for (id, status) in a.tls_statuses() {
            assert!(
                status.starts_with("\"pass\""),
                "{}: {id} is {status} on the hardened baseline",
                s.name
            );
        }
        // The probe closes cleanly: the server logs no TLS error for it.
        let log_dir = s.dir.join("data/log");
        for entry in std::fs::read_dir(&log_dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for bad in [
                "could not accept SSL connection",
                "SSL error",
                "incomplete startup packet",
            ] {
                assert!(
                    !text.contains(bad),
                    "{}: the server logged {bad:?} ({})",
                    s.name,
                    entry.path().display()
                );
            }
        }
    }
}

#[test]
fn a_good_ca_signed_certificate_passes_with_a_plain_session() {
    for s in servers() {
        let a = s.case("good", "localhost", &[]);
        assert_eq!(a.tls()["data"]["chain_verified"], true);
        only_fails(&a, s, &[]);
    }
}

#[test]
fn expired_certificate_is_critical_and_named() {
    for s in servers() {
        let a = s.case("expired", "localhost", &[]);
        expect(&a, s, "sec.cert.not_expired", "fail");
        let o = a.offenders("sec.cert.not_expired");
        assert_eq!(o.len(), 1, "{o:?}");
        assert!(
            o[0].starts_with("CN=localhost (expired 2025-01-01, ") && o[0].ends_with(" days ago)"),
            "{o:?}"
        );
        assert_eq!(a.finding("sec.cert.not_expired")["severity"], "critical");
        // The chain itself is fine: dates are this rule's business only.
        only_fails(&a, s, &["sec.cert.not_expired"]);
    }
}

#[test]
fn certificate_expiring_in_ten_days_is_flagged() {
    for s in servers() {
        let a = s.case("soon", "localhost", &[]);
        expect(&a, s, "sec.cert.expiry_soon", "fail");
        assert_eq!(
            a.offenders("sec.cert.expiry_soon"),
            vec![format!(
                "CN=localhost (expires {}, in 10 days)",
                certs().soon_date
            )]
        );
        only_fails(&a, s, &["sec.cert.expiry_soon"]);
    }
}

#[test]
fn self_signed_certificate_is_neither_ca_issued_nor_trusted() {
    for s in servers() {
        let _guard = s.hold();
        s.install("selfsigned");
        let a = s.audit(&s.plain_uri("localhost"), &[]);
        s.served_is(&a, "selfsigned");
        // Pinned: the certificate itself is the client's root, which libpq (OpenSSL)
        // accepts with verify-full (`openssl s_client -starttls postgres -CAfile` agrees).
        let pinned_root = certs().dir.join("selfsigned.crt");
        let pinned = s.audit(
            &format!(
                "postgresql://postgres@localhost:{}/postgres?sslmode=disable&sslrootcert={}",
                s.port,
                pinned_root.display()
            ),
            &[],
        );
        s.restore();
        expect(&a, s, "sec.cert.self_signed", "fail");
        assert_eq!(
            a.offenders("sec.cert.self_signed"),
            vec!["CN=localhost is self-signed (issuer = subject: CN=localhost)".to_string()]
        );
        expect(&a, s, "sec.cert.chain_trusted", "fail");
        assert_eq!(
            a.offenders("sec.cert.chain_trusted"),
            vec![format!(
                "CN=localhost: the server certificate is self-signed and is not one of the roots \
                 in root certificate file \"{}\"",
                certs().ca()
            )]
        );
        only_fails(&a, s, &["sec.cert.self_signed", "sec.cert.chain_trusted"]);
        expect(&pinned, s, "sec.cert.chain_trusted", "pass");
        only_fails(&pinned, s, &["sec.cert.self_signed"]);
    }
}

#[test]
fn certificate_for_another_host_fails_the_name_check() {
    for s in servers() {
        // Connected as db1.example.com (hostaddr 127.0.0.1): the certificate names db2.
        let uri = format!("{}&hostaddr=127.0.0.1", s.plain_uri("db1.example.com"));
        let _guard = s.hold();
        s.install("wronghost");
        let a = s.audit(&uri, &[]);
        s.served_is(&a, "wronghost");
        s.restore();
        expect(&a, s, "sec.cert.hostname_match", "fail");
        assert_eq!(
            a.offenders("sec.cert.hostname_match"),
            vec![
                "db1.example.com: not among the names in CN=db2.example.com: DNS db2.example.com"
                    .to_string()
            ]
        );
        assert_eq!(a.tls()["data"]["hostname_matches"], false);
        only_fails(&a, s, &["sec.cert.hostname_match"]);
    }
}

#[test]
fn names_clients_use_are_checked_and_loopback_is_not_held_against_the_certificate() {
    for s in servers() {
        // Connected over loopback: a certificate for db2 is not judged against 127.0.0.1...
        let a = s.case("wronghost", "127.0.0.1", &[]);
        expect(&a, s, "sec.cert.hostname_match", "not_applicable");
        // ... but a name clients use, given with --tls-name, is.
        let _guard = s.hold();
        let a = s.audit(&s.uri, &["--tls-name", "db1.example.com"]);
        expect(&a, s, "sec.cert.hostname_match", "fail");
        assert_eq!(
            a.offenders("sec.cert.hostname_match"),
            vec![
                "db1.example.com: not among the names in CN=localhost: DNS localhost; IP 127.0.0.1"
                    .to_string()
            ]
        );
    }
}

#[test]
fn weak_rsa_key_is_flagged() {
    for s in servers() {
        let a = s.case("weak", "localhost", &[]);
        expect(&a, s, "sec.cert.key_strength", "fail");
        assert_eq!(
            a.offenders("sec.cert.key_strength"),
            vec!["CN=localhost: RSA 1024-bit key".to_string()]
        );
        only_fails(&a, s, &["sec.cert.key_strength"]);
    }
}

#[test]
fn sha1_signature_is_flagged() {
    for s in servers() {
        let a = s.case("sha1", "localhost", &[]);
        expect(&a, s, "sec.cert.signature_hash", "fail");
        assert_eq!(
            a.offenders("sec.cert.signature_hash"),
            vec!["CN=localhost: signed with sha1WithRSAEncryption".to_string()]
        );
        // Current verifiers (OpenSSL 3, rustls) refuse SHA-1 chains too, and say why.
        expect(&a, s, "sec.cert.chain_trusted", "fail");
        let o = a.offenders("sec.cert.chain_trusted");
        assert!(
            o[0].contains("CN=localhost signed with sha1WithRSAEncryption"),
            "{o:?}"
        );
        only_fails(
            &a,
            s,
            &["sec.cert.signature_hash", "sec.cert.chain_trusted"],
        );
    }
}

#[test]
fn protocol_settings_are_judged() {
    for s in servers() {
        let _guard = s.hold();
        s.configure(&[
            "ALTER SYSTEM SET ssl_max_protocol_version = 'TLSv1.2'",
            "ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1'",
        ]);
        s.wait_for("ssl_max_protocol_version", "TLSv1.2");
        let a = s.audit(&s.uri, &[]);
        s.restore();
        assert_eq!(a.tls()["data"]["protocol"], "TLSv1.2", "{}", a.tls());
        expect(&a, s, "sec.tls.tls13", "fail");
        // rustls cannot try TLS 1.0/1.1: the setting is the evidence.
        expect(&a, s, "sec.tls.min_protocol", "fail");
        assert_eq!(
            a.finding("sec.tls.min_protocol")["actual"],
            "ssl_min_protocol_version = TLSv1"
        );
    }
}

#[test]
fn without_tls_the_section_says_why() {
    for s in servers() {
        let _guard = s.hold();
        s.configure(&["ALTER SYSTEM SET ssl = off"]);
        s.wait_for("ssl", "off");
        let a = s.audit(&s.plain_uri("localhost"), &[]);
        s.restore();
        assert_eq!(a.tls()["collected"], false);
        assert_eq!(a.tls()["reason"], "server does not offer TLS (ssl = off)");
        expect(&a, s, "sec.cert.not_expired", "not_evaluated");
        assert_eq!(
            a.finding("sec.cert.not_expired")["reason"],
            "tls not collected: server does not offer TLS (ssl = off)"
        );
        // Over the Unix socket there is no TLS to look at.
        let socket = format!(
            "postgresql://postgres@/postgres?host={}&port={}",
            s.dir.display(),
            s.port
        );
        let a = s.audit(&socket, &[]);
        assert_eq!(a.tls()["collected"], false);
        assert!(
            a.tls()["reason"].as_str().is_some_and(
                |r| r.starts_with("server reached over a Unix socket: TLS is not used there")
            ),
            "{}",
            a.tls()
        );
    }
}
