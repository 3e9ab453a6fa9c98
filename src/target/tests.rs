//! Tests of target resolution and of connection errors against fake servers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::resolve::resolve_for_test;
use super::*;

fn sock(_port: u16) -> PathBuf {
    PathBuf::from("/run/pg")
}

fn ok(conninfo: Option<&str>, env: &[(&str, &str)]) -> Target {
    match resolve_for_test(conninfo, env, Some(Path::new("/home/me")), &sock) {
        Ok(t) => t,
        Err(e) => panic!("resolve({conninfo:?}) failed: {e}"),
    }
}

fn fails(conninfo: Option<&str>, env: &[(&str, &str)]) -> String {
    match resolve_for_test(conninfo, env, Some(Path::new("/home/me")), &sock) {
        Ok(t) => panic!("resolve({conninfo:?}) should fail, got {t:?}"),
        Err(e) => e.0,
    }
}

fn pw(t: &Target) -> Option<String> {
    t.password()
        .map(|(s, _)| String::from_utf8_lossy(s.expose()).into_owned())
}

#[test]
fn defaults_are_psqls() {
    let t = ok(None, &[]);
    assert_eq!(t.endpoint, Endpoint::Unix(PathBuf::from("/run/pg")));
    assert!(t.is_unix_socket());
    assert_eq!(t.host(), "/run/pg");
    assert_eq!(t.port(), 5432);
    assert_eq!(t.user(), "osuser");
    assert_eq!(t.dbname(), "osuser");
    assert_eq!(t.sslmode(), SslMode::Prefer);
    assert_eq!(t.connect_timeout_override(), None);
    assert_eq!(t.application_name(), None);
    assert!(t.password().is_none());
    assert_eq!(
        t.tls.root,
        RootSetting::File(FileSetting::Default(PathBuf::from(
            "/home/me/.postgresql/root.crt"
        )))
    );
    assert_eq!(
        t.tls.cert,
        FileSetting::Default(PathBuf::from("/home/me/.postgresql/postgresql.crt"))
    );
    assert!(t.tls.tls12 && t.tls.tls13 && t.tls.sni && t.tls.send_client_cert);
}

#[test]
fn environment_fills_what_the_conninfo_leaves_out() {
    let env = [
        ("PGHOST", "db1"),
        ("PGPORT", "6432"),
        ("PGUSER", "audit"),
        ("PGDATABASE", "app"),
        ("PGSSLMODE", "require"),
        ("PGAPPNAME", "ci"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGPASSWORD", "envpw"),
    ];
    let t = ok(None, &env);
    assert_eq!(t.host(), "db1");
    assert!(!t.is_unix_socket());
    assert_eq!(t.port(), 6432);
    assert_eq!(t.user(), "audit");
    assert_eq!(t.dbname(), "app");
    assert_eq!(t.sslmode(), SslMode::Require);
    assert_eq!(t.application_name(), Some("ci"));
    assert_eq!(t.connect_timeout_override(), Some(Duration::from_secs(7)));
    assert_eq!(pw(&t).as_deref(), Some("envpw"));
    assert_eq!(t.password().map(|(_, o)| o), Some(PasswordOrigin::Env));

    // The connection string wins over the environment, key by key.
    let t = ok(Some("host=db2 dbname=other password=cipw"), &env);
    assert_eq!(t.host(), "db2");
    assert_eq!(t.port(), 6432);
    assert_eq!(t.dbname(), "other");
    assert_eq!(pw(&t).as_deref(), Some("cipw"));
    assert_eq!(t.password().map(|(_, o)| o), Some(PasswordOrigin::Conninfo));

    // dbname defaults to the user, from whichever source the user came.
    let t = ok(Some("user=bob"), &[]);
    assert_eq!(t.dbname(), "bob");
}

#[test]
fn empty_values_follow_libpq() {
    // An explicit empty host blocks PGHOST and means the default socket.
    let t = ok(Some("host=''"), &[("PGHOST", "db1")]);
    assert!(t.is_unix_socket());
    // Empty URI parts are not set at all, so the environment applies.
    let t = ok(Some("postgresql:///x"), &[("PGHOST", "db1")]);
    assert_eq!(t.host(), "db1");
    assert_eq!(t.dbname(), "x");
    let t = ok(Some("postgresql://"), &[("PGDATABASE", "envdb")]);
    assert_eq!(t.dbname(), "envdb");
    // An empty PGPORT means the default port.
    assert_eq!(ok(None, &[("PGPORT", "")]).port(), 5432);
}

#[test]
fn a_bare_word_is_a_database_name_like_psql() {
    let t = ok(Some("inventory"), &[("PGDATABASE", "x")]);
    assert_eq!(t.dbname(), "inventory");
}

#[test]
fn uri_targets() {
    let t = ok(
        Some("postgresql://audit:s%40cret@[::1]:5433/app?sslmode=verify-ca"),
        &[],
    );
    assert_eq!(t.host(), "::1");
    assert_eq!(t.port(), 5433);
    assert_eq!(t.user(), "audit");
    assert_eq!(t.dbname(), "app");
    assert_eq!(t.sslmode(), SslMode::VerifyCa);
    assert_eq!(pw(&t).as_deref(), Some("s@cret"));

    let t = ok(Some("postgresql://%2Fvar%2Frun%2Fpostgresql/db"), &[]);
    assert_eq!(
        t.endpoint,
        Endpoint::Unix(PathBuf::from("/var/run/postgresql"))
    );
    assert_eq!(t.dbname(), "db");

    let t = ok(Some("postgres://h1/db?host=/tmp"), &[]);
    assert_eq!(t.endpoint, Endpoint::Unix(PathBuf::from("/tmp")));
}

#[test]
fn hostaddr() {
    let t = ok(Some("host=db1 hostaddr=10.1.2.3"), &[]);
    assert_eq!(t.host(), "db1");
    assert_eq!(t.hostaddr(), Some("10.1.2.3".parse().unwrap()));
    let t = ok(Some("hostaddr=::1"), &[]);
    assert_eq!(t.host(), "::1");
    assert_eq!(
        t.endpoint,
        Endpoint::Tcp {
            host: "::1".into(),
            hostaddr: Some("::1".parse().unwrap()),
            host_given: false
        }
    );
    assert!(fails(Some("hostaddr=db1"), &[]).contains("could not parse network address \"db1\""));
}

#[test]
fn bad_input_is_a_target_error_naming_the_problem() {
    assert_eq!(
        fails(Some("host=db1 foo=bar"), &[]),
        "invalid connection option \"foo\""
    );
    assert!(fails(Some("host=a,b"), &[]).contains("multiple hosts are not supported"));
    assert!(fails(Some("postgresql://a:1,b:2/db"), &[]).contains("multiple hosts"));
    assert!(fails(None, &[("PGHOST", "a,b")]).contains("PGHOST=\"a,b\""));
    assert!(fails(Some("port=5432,5433"), &[]).contains("multiple hosts"));
    assert_eq!(fails(Some("port=0"), &[]), "invalid port number: \"0\"");
    assert_eq!(
        fails(Some("port=70000"), &[]),
        "invalid port number: \"70000\""
    );
    assert_eq!(
        fails(None, &[("PGPORT", "abc")]),
        "invalid port number: \"abc\""
    );
    assert!(fails(Some("sslmode=verify"), &[]).contains("invalid sslmode value: \"verify\""));
    assert!(fails(None, &[("PGSSLMODE", "on")]).contains("invalid PGSSLMODE value"));
    assert!(
        fails(Some("connect_timeout=ten"), &[])
            .contains("invalid integer value \"ten\" for connection option \"connect_timeout\"")
    );
    assert!(fails(None, &[("PGSERVICE", "prod")]).contains("PGSERVICE"));
    assert!(fails(Some("service=prod"), &[]).contains("pg_service.conf"));
    assert!(fails(Some("require_auth=scram-sha-256"), &[]).contains("require_auth"));
    assert!(fails(Some("replication=database"), &[]).contains("replication"));
    assert!(fails(Some("target_session_attrs=read-write"), &[]).contains("one server"));
    assert!(fails(Some("target_session_attrs=nope"), &[]).contains("invalid target_session_attrs"));
    assert!(fails(Some("gssencmode=require"), &[]).contains("GSSAPI"));
    assert!(fails(Some("host=@abstract"), &[]).contains("abstract Unix sockets"));
    assert!(fails(Some("channel_binding=maybe"), &[]).contains("channel_binding"));
    assert!(fails(Some("ssl_min_protocol_version=TLSv2"), &[]).contains("TLSv1.3"));
    assert!(
        fails(
            Some("ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2"),
            &[]
        )
        .contains("range")
    );
    assert!(fails(Some("ssl_max_protocol_version=TLSv1.1"), &[]).contains("range"));
    assert!(
        fails(
            Some("ssl_min_protocol_version=TLSv1 ssl_max_protocol_version=TLSv1.1"),
            &[]
        )
        .contains("older than 1.2")
    );
    // sslpassword's value is never shown.
    let e = fails(Some("sslpassword=hunter2"), &[]);
    assert!(e.contains("sslpassword") && !e.contains("hunter2"), "{e}");
}

#[test]
fn tls_versions() {
    let t = ok(Some("ssl_min_protocol_version=tlsv1.3"), &[]);
    assert!(!t.tls.tls12 && t.tls.tls13);
    let t = ok(Some("ssl_min_protocol_version=TLSv1"), &[]);
    assert!(t.tls.tls12 && t.tls.tls13);
}

#[test]
fn sslrootcert_system_forces_verify_full() {
    let t = ok(Some("host=db1 sslrootcert=system"), &[]);
    assert_eq!(t.sslmode(), SslMode::VerifyFull);
    assert_eq!(t.tls.root, RootSetting::System);
    let t = ok(None, &[("PGHOST", "db1"), ("PGSSLROOTCERT", "system")]);
    assert_eq!(t.sslmode(), SslMode::VerifyFull);
    assert_eq!(
        fails(Some("sslrootcert=system sslmode=require"), &[]),
        "weak sslmode \"require\" may not be used with sslrootcert=system (use \"verify-full\")"
    );
    assert!(
        fails(
            None,
            &[("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", "system")]
        )
        .contains("weak sslmode \"verify-ca\"")
    );
    let t = ok(Some("sslrootcert=/etc/ca.pem sslmode=verify-full"), &[]);
    assert_eq!(
        t.tls.root,
        RootSetting::File(FileSetting::Explicit(PathBuf::from("/etc/ca.pem")))
    );
}

#[test]
fn requiressl_and_pgrequiressl() {
    assert_eq!(
        ok(None, &[("PGREQUIRESSL", "1")]).sslmode(),
        SslMode::Require
    );
    assert_eq!(
        ok(None, &[("PGREQUIRESSL", "0")]).sslmode(),
        SslMode::Prefer
    );
    assert_eq!(
        ok(None, &[("PGREQUIRESSL", "1"), ("PGSSLMODE", "disable")]).sslmode(),
        SslMode::Disable
    );
    assert_eq!(ok(Some("requiressl=1"), &[]).sslmode(), SslMode::Require);
}

#[test]
fn connect_timeout_rules() {
    let t = |v: &str| ok(Some(&format!("connect_timeout='{v}'")), &[]).connect_timeout_override();
    assert_eq!(t("1"), Some(Duration::from_secs(2)));
    assert_eq!(t(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(t("0"), None);
    assert_eq!(t("-3"), None);
}

#[test]
fn options_are_ignored_with_a_warning() {
    let t = ok(Some("options='-c search_path=x'"), &[]);
    assert_eq!(t.warnings().len(), 1);
    assert!(t.warnings()[0].contains("ignoring options"));
    let t = ok(None, &[("PGOPTIONS", "-c x=y")]);
    assert!(t.warnings()[0].contains("PGOPTIONS"));
    // Harmless options are accepted silently.
    let t = ok(
        Some("keepalives=1 sslcompression=0 gssencmode=prefer client_encoding=UTF8"),
        &[],
    );
    assert!(t.warnings().is_empty());
}

#[test]
fn resolve_with_uses_user_from_env() {
    let env = |k: &str| match k {
        "USER" => Some("envuser".to_string()),
        "PGHOST" => Some("db9".to_string()),
        _ => None,
    };
    let t = Target::resolve_with(None, &env, None).unwrap();
    assert_eq!(t.user(), "envuser");
    assert_eq!(t.dbname(), "envuser");
    assert_eq!(t.host(), "db9");
    assert_eq!(t.tls.root, RootSetting::File(FileSetting::NoHome));
}

#[cfg(unix)]
fn write_pgpass(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn pgpass_lookup_follows_libpq() {
    let home = tempfile::tempdir().unwrap();
    write_pgpass(
        home.path(),
        ".pgpass",
        "db1:5432:app:audit:apppw\n\
         db1:5432:*:audit:anypw\n\
         localhost:5432:*:audit:localpw\n\
         /srv/sock:5432:*:audit:sockpw\n\
         10.9.9.9:5432:*:audit:addrpw\n",
        0o600,
    );
    let resolve = |c: &str, env: &[(&str, &str)]| {
        resolve_for_test(Some(c), env, Some(home.path()), &sock).unwrap()
    };

    let t = resolve("host=db1 user=audit dbname=app", &[]);
    assert_eq!(pw(&t).as_deref(), Some("apppw"));
    assert!(matches!(
        t.password().map(|(_, o)| o),
        Some(PasswordOrigin::PassFile { line: 1, .. })
    ));
    // Another database of the same server: the lookup follows the database.
    assert_eq!(pw(&t.for_database("postgres")).as_deref(), Some("anypw"));
    // The default socket directory matches "localhost"; another directory matches itself.
    assert_eq!(pw(&resolve("user=audit", &[])).as_deref(), Some("localpw"));
    assert_eq!(
        pw(&resolve("host=/run/pg user=audit", &[])).as_deref(),
        Some("localpw")
    );
    assert_eq!(
        pw(&resolve("host=/srv/sock user=audit", &[])).as_deref(),
        Some("sockpw")
    );
    // With only hostaddr, hostaddr is the key; with host too, host is.
    assert_eq!(
        pw(&resolve("hostaddr=10.9.9.9 user=audit", &[])).as_deref(),
        Some("addrpw")
    );
    assert_eq!(
        pw(&resolve("host=db1 hostaddr=10.9.9.9 user=audit", &[])).as_deref(),
        Some("anypw")
    );
    // PGPASSWORD and password= come first.
    assert_eq!(
        pw(&resolve("host=db1 user=audit", &[("PGPASSWORD", "envpw")])).as_deref(),
        Some("envpw")
    );
    assert_eq!(
        pw(&resolve(
            "host=db1 user=audit password=connpw",
            &[("PGPASSWORD", "envpw")]
        ))
        .as_deref(),
        Some("connpw")
    );
    // No match.
    assert_eq!(pw(&resolve("host=db2 user=audit", &[])), None);
    // Debug of a target never shows a password.
    let dbg = format!("{:?}", resolve("host=db1 user=audit password=connpw", &[]));
    assert!(!dbg.contains("connpw") && !dbg.contains("apppw"), "{dbg}");
    assert!(!format!("{t:?}").contains("apppw"));
}

#[cfg(unix)]
#[test]
fn pgpass_location_and_permissions() {
    let home = tempfile::tempdir().unwrap();
    let other = write_pgpass(home.path(), "other", "*:*:*:*:otherpw\n", 0o600);
    write_pgpass(home.path(), ".pgpass", "*:*:*:*:homepw\n", 0o644);
    let resolve = |c: Option<&str>, env: &[(&str, &str)]| {
        resolve_for_test(c, env, Some(home.path()), &sock).unwrap()
    };

    // ~/.pgpass readable by others: ignored, with libpq's warning.
    let t = resolve(None, &[]);
    assert_eq!(pw(&t), None);
    assert_eq!(t.warnings().len(), 1);
    assert!(
        t.warnings()[0].contains("has group or world access"),
        "{:?}",
        t.warnings()
    );
    assert!(t.warnings()[0].contains(".pgpass"));

    // PGPASSFILE and passfile= name another file.
    let other_s = other.to_str().unwrap();
    let t = resolve(None, &[("PGPASSFILE", other_s)]);
    assert_eq!(pw(&t).as_deref(), Some("otherpw"));
    assert!(t.warnings().is_empty());
    let t = resolve(Some(&format!("passfile={other_s}")), &[]);
    assert_eq!(pw(&t).as_deref(), Some("otherpw"));

    // With a password given, the file is not even read (no warning).
    let t = resolve(None, &[("PGPASSWORD", "x")]);
    assert!(t.warnings().is_empty());
}

#[test]
fn display_is_a_redacted_uri() {
    let t = ok(
        Some("postgresql://audit:topsecret@db1.example.com:6432/app"),
        &[],
    );
    assert_eq!(
        t.display(),
        "postgresql://audit@db1.example.com:6432/app?sslmode=prefer"
    );
    let t = ok(
        Some("host=::1 user=a password=topsecret sslmode=verify-full"),
        &[],
    );
    assert_eq!(
        t.display(),
        "postgresql://a@[::1]:5432/a?sslmode=verify-full"
    );
    let t = ok(
        Some("host=db1 hostaddr=10.0.0.5 user='x@y' dbname='my db/1'"),
        &[],
    );
    assert_eq!(
        t.display(),
        "postgresql://x%40y@db1:5432/my%20db%2F1?sslmode=prefer&hostaddr=10.0.0.5"
    );
    let t = ok(Some("user=u password=topsecret"), &[("PGPORT", "5433")]);
    assert_eq!(t.display(), "postgresql://u@/u?host=/run/pg&port=5433");
    assert_eq!(
        t.for_database("other").display(),
        "postgresql://u@/other?host=/run/pg&port=5433"
    );
    // Whatever the route, never the password.
    for c in [
        "postgresql://u:topsecret@h/d",
        "host=h password=topsecret",
        "postgresql://u@h/d?password=topsecret",
    ] {
        let t = ok(Some(c), &[]);
        assert!(!t.display().contains("topsecret"));
        assert!(!format!("{t:?}").contains("topsecret"));
    }
}

#[test]
fn is_local() {
    let local = |c: &str| ok(Some(c), &[]).is_local();
    assert!(ok(None, &[]).is_local());
    assert!(local("host=/tmp"));
    assert!(local("host=localhost"));
    assert!(local("host=LOCALHOST."));
    assert!(local("host=127.0.0.1"));
    assert!(local("host=127.1.2.3"));
    assert!(local("host=::1"));
    assert!(local("host=::ffff:127.0.0.1"));
    assert!(local("host=db1 hostaddr=127.0.0.1"));
    assert!(!local("host=db1"));
    assert!(!local("host=10.0.0.1"));
    assert!(!local("host=localhost.example.com"));
    assert!(!local("host=localhost hostaddr=10.0.0.1"));
}

#[test]
fn scrub_removes_passwords() {
    let t = ok(Some("host=h password=hunter2"), &[]);
    assert_eq!(
        t.scrub("a hunter2 b hunter2".to_string()),
        "a ******** b ********"
    );
}

// ---- connecting to fake servers -------------------------------------------------------

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn quick() -> SessionOptions {
    SessionOptions {
        connect_timeout: Duration::from_millis(1500),
        ..SessionOptions::default()
    }
}

fn tcp_target(port: u16, extra: &str, env: &[(&str, &str)]) -> Target {
    let home = tempfile::tempdir().unwrap();
    resolve_for_test(
        Some(&format!(
            "host=127.0.0.1 port={port} user=audit dbname=app {extra}"
        )),
        env,
        Some(home.path()),
        &sock,
    )
    .unwrap()
}

async fn connect_err(target: &Target, opts: &SessionOptions) -> String {
    match connect(target, opts).await {
        Ok(_) => panic!("connect must fail"),
        Err(e) => e.0,
    }
}

/// Read one startup-phase message (SSLRequest or StartupMessage); true for SSLRequest.
async fn read_startup(s: &mut TcpStream) -> bool {
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    body[..4] == [0x04, 0xd2, 0x16, 0x2f]
}

/// Answer 'N' to an SSLRequest, then read the StartupMessage.
async fn plain_startup(s: &mut TcpStream) {
    if read_startup(s).await {
        s.write_all(b"N").await.unwrap();
        assert!(!read_startup(s).await);
    }
}

async fn send_error(s: &mut TcpStream, code: &str, message: &str) {
    let mut body = Vec::new();
    for (tag, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(tag);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    s.write_all(&msg).await.unwrap();
}

/// A server that runs `script` on its first connection.
async fn fake_server<F, Fut>(script: F) -> u16
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((s, _)) = listener.accept().await {
            script(s).await;
        }
    });
    port
}

#[tokio::test]
async fn refused_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = connect_err(&tcp_target(port, "", &[]), &quick()).await;
    assert_eq!(
        e,
        format!(
            "cannot connect to 127.0.0.1:{port}: connection refused (is the server running and \
             accepting TCP connections on that port? check listen_addresses and port)"
        )
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    for sslmode in ["disable", "prefer", "verify-full"] {
        let port = fake_server(|s| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        })
        .await;
        let opts = SessionOptions {
            connect_timeout: Duration::from_millis(300),
            ..SessionOptions::default()
        };
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        // verify-full needs a root certificate file to get as far as the handshake.
        std::fs::write(
            home.path().join(".postgresql/root.crt"),
            include_str!("testdata/ca.crt"),
        )
        .unwrap();
        let target = resolve_for_test(
            Some(&format!(
                "host=127.0.0.1 port={port} user=u sslmode={sslmode}"
            )),
            &[],
            Some(home.path()),
            &sock,
        )
        .unwrap();
        let started = Instant::now();
        let e = connect_err(&target, &opts).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{sslmode}: too slow"
        );
        assert!(
            e.starts_with(&format!(
                "cannot connect to 127.0.0.1:{port}: timed out after 300 ms"
            )),
            "{sslmode}: {e}"
        );
    }
}

#[tokio::test]
async fn the_targets_connect_timeout_wins() {
    let port = fake_server(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let target = tcp_target(port, "connect_timeout=1 sslmode=disable", &[]);
    let opts = SessionOptions {
        connect_timeout: Duration::from_secs(60),
        ..SessionOptions::default()
    };
    let started = Instant::now();
    let e = connect_err(&target, &opts).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(e.contains("timed out after 2 s"), "{e}");
}

#[tokio::test]
async fn require_against_a_server_without_ssl() {
    let port = fake_server(|mut s| async move {
        assert!(read_startup(&mut s).await);
        s.write_all(b"N").await.unwrap();
    })
    .await;
    let e = connect_err(&tcp_target(port, "sslmode=require", &[]), &quick()).await;
    assert!(
        e.starts_with(&format!(
            "cannot connect to 127.0.0.1:{port}: server does not support SSL, but sslmode=require"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_password_names_its_source_and_never_the_password() {
    let port = fake_server(|mut s| async move {
        plain_startup(&mut s).await;
        send_error(
            &mut s,
            "28P01",
            "password authentication failed for user \"audit\"",
        )
        .await;
    })
    .await;
    let target = tcp_target(port, "", &[("PGPASSWORD", "Tr0ub4dor&3")]);
    let e = connect_err(&target, &quick()).await;
    assert_eq!(
        e,
        format!(
            "cannot connect to 127.0.0.1:{port}: password authentication failed for user \
             \"audit\" (check PGPASSWORD)"
        )
    );
}

#[tokio::test]
async fn server_messages_are_scrubbed_of_the_password() {
    let port = fake_server(|mut s| async move {
        plain_startup(&mut s).await;
        send_error(&mut s, "XX000", "echo: Tr0ub4dor&3").await;
    })
    .await;
    let target = tcp_target(port, "password=Tr0ub4dor&3", &[]);
    let e = connect_err(&target, &quick()).await;
    assert!(!e.contains("Tr0ub4dor&3"), "{e}");
    assert!(e.contains("echo: ********"), "{e}");
}

#[tokio::test]
async fn no_password_supplied() {
    let port = fake_server(|mut s| async move {
        plain_startup(&mut s).await;
        // AuthenticationCleartextPassword
        s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.unwrap();
        let _ = s.read_u8().await;
    })
    .await;
    let e = connect_err(&tcp_target(port, "", &[]), &quick()).await;
    assert!(
        e.starts_with(&format!(
            "cannot connect to 127.0.0.1:{port}: no password supplied (the server asks for a \
             password for user \"audit\""
        )),
        "{e}"
    );
}

#[tokio::test]
async fn missing_database_and_pg_hba() {
    for (code, msg, expect) in [
        (
            "3D000",
            "database \"app\" does not exist",
            "check dbname= or PGDATABASE",
        ),
        (
            "28000",
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"audit\", database \"app\", no encryption",
            "pg_hba.conf does not let this role in",
        ),
        (
            "53300",
            "sorry, too many clients already",
            "no free connection slot",
        ),
    ] {
        let port = fake_server(move |mut s| async move {
            plain_startup(&mut s).await;
            send_error(&mut s, code, msg).await;
        })
        .await;
        let e = connect_err(&tcp_target(port, "sslmode=disable", &[]), &quick()).await;
        assert!(e.contains(msg) && e.contains(expect), "{e}");
    }
}

#[tokio::test]
async fn missing_socket() {
    let home = tempfile::tempdir().unwrap();
    let target = resolve_for_test(
        Some(&format!("host={} port=5999 user=u", home.path().display())),
        &[],
        Some(home.path()),
        &sock,
    )
    .unwrap();
    let e = connect_err(&target, &quick()).await;
    assert!(
        e.starts_with(&format!(
            "cannot connect to socket \"{}/.s.PGSQL.5999\": no such socket",
            home.path().display()
        )),
        "{e}"
    );
}

#[tokio::test]
async fn verify_modes_need_a_root_certificate() {
    let home = tempfile::tempdir().unwrap();
    let target = resolve_for_test(
        Some("host=127.0.0.1 port=1 user=u sslmode=verify-ca"),
        &[],
        Some(home.path()),
        &sock,
    )
    .unwrap();
    let e = connect_err(&target, &quick()).await;
    assert_eq!(
        e,
        format!(
            "cannot connect to 127.0.0.1:1: root certificate file \"{}/.postgresql/root.crt\" \
             does not exist (either provide the file, use the system's trusted roots with \
             sslrootcert=system, or change sslmode to disable server certificate verification)",
            home.path().display()
        )
    );
}

#[tokio::test]
async fn unresolvable_host() {
    let target = ok(Some("host=no-such-host.invalid port=5432"), &[]);
    let e = connect_err(&target, &quick()).await;
    assert!(
        e.starts_with(
            "cannot connect to no-such-host.invalid:5432: could not translate host name \
             \"no-such-host.invalid\" to an address"
        ),
        "{e}"
    );
}

/// Complete a plain-text login and answer the session setup batch.
async fn accept_session(s: &mut TcpStream) {
    plain_startup(s).await;
    // AuthenticationOk, ReadyForQuery
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]).await.unwrap();
    s.write_all(&[b'Z', 0, 0, 0, 5, b'I']).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'Q');
    let len = s.read_u32().await.unwrap() as usize;
    let mut sql = vec![0; len - 4];
    s.read_exact(&mut sql).await.unwrap();
    let sql = String::from_utf8_lossy(&sql).into_owned();
    assert!(
        sql.starts_with("SET default_transaction_read_only = on;"),
        "{sql}"
    );
    for _ in 0..sql.matches("SET ").count() {
        s.write_all(&[b'C', 0, 0, 0, 8, b'S', b'E', b'T', 0])
            .await
            .unwrap();
    }
    s.write_all(&[b'Z', 0, 0, 0, 5, b'I']).await.unwrap();
    // Keep the session open until the client goes away.
    let _ = s.read_u8().await;
}

#[tokio::test]
async fn prefer_falls_back_to_plain_text_when_tls_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        // First connection: agree to TLS, then send something that is not TLS.
        let (mut s, _) = listener.accept().await.unwrap();
        assert!(read_startup(&mut s).await);
        s.write_all(b"Snot a TLS server hello").await.unwrap();
        drop(s);
        // Second connection: plain text, as libpq would retry.
        let (mut s, _) = listener.accept().await.unwrap();
        accept_session(&mut s).await;
    });
    let client = connect(&tcp_target(port, "sslmode=prefer", &[]), &quick())
        .await
        .map_err(|e| e.0)
        .unwrap();
    assert!(!client.is_closed());

    // With require there is no fallback.
    let port = fake_server(|mut s| async move {
        assert!(read_startup(&mut s).await);
        s.write_all(b"Snot a TLS server hello").await.unwrap();
    })
    .await;
    let e = connect_err(&tcp_target(port, "sslmode=require", &[]), &quick()).await;
    assert!(e.contains("TLS handshake failed"), "{e}");
}

#[tokio::test]
async fn sessions_are_set_up_read_only_and_bounded() {
    let port = fake_server(|mut s| async move { accept_session(&mut s).await }).await;
    let client = connect(&tcp_target(port, "sslmode=disable", &[]), &quick())
        .await
        .map_err(|e| e.0)
        .unwrap();
    assert!(!client.is_closed());
}
