//! The real monitoring companions of the tests: Debian's postgres_exporter, node_exporter,
//! Prometheus (and promtool) and PgBouncer, each started on 127.0.0.1 with a free port and
//! stopped when its [`Daemon`] guard is dropped (also when the test fails).
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const POSTGRES_EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// The folder of the tests' rule files and exporter queries.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/prometheus")
}

/// A process started by a test; killed and reaped on drop.
pub struct Daemon {
    pub name: String,
    pub port: u16,
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// The daemon's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody listens on now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn require(bin: &str) {
    assert!(
        Path::new(bin).is_file(),
        "{bin} is missing: install the Debian packages of .ci/run (prometheus-postgres-exporter, \
         prometheus-node-exporter, prometheus, pgbouncer)"
    );
}

fn spawn(name: &str, port: u16, mut cmd: Command, dir: &Path) -> Daemon {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Daemon {
        name: name.to_string(),
        port,
        child,
        log,
    }
}

/// GET http://127.0.0.1:PORT/PATH with HTTP/1.0 (no chunking): the body, or an error.
pub fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    if !text.starts_with("HTTP/1.") || !text[..text.find('\n').unwrap_or(0)].contains(" 200") {
        return Err(text.lines().next().unwrap_or("").to_string());
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Waits until GET PATH answers 200 and its body contains `needle`.
pub fn wait_for(d: &Daemon, path: &str, needle: &str) {
    let started = Instant::now();
    loop {
        match http_get(d.port, path) {
            Ok(body) if body.contains(needle) => return,
            _ if started.elapsed() > Duration::from_secs(30) => panic!(
                "{} on port {} never served {needle:?} at {path}; its log:\n{}",
                d.name,
                d.port,
                d.log_text()
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// How postgres_exporter reaches the server: `host:port/db?params`, user, password.
pub struct Dsn {
    pub uri: String,
    pub user: String,
    pub password: Option<String>,
}

impl Dsn {
    /// From a sandbox URI such as postgresql://postgres@localhost:5432/postgres?sslmode=verify-full&sslrootcert=…
    pub fn from_uri(uri: &str, password: Option<&str>) -> Dsn {
        let rest = uri
            .strip_prefix("postgresql://")
            .unwrap_or_else(|| panic!("not a URI: {uri}"));
        let (user, hostpart) = rest.split_once('@').unwrap_or(("postgres", rest));
        let hostpart = if hostpart.contains("sslmode=") {
            hostpart.to_string()
        } else if hostpart.contains('?') {
            format!("{hostpart}&sslmode=disable")
        } else {
            format!("{hostpart}?sslmode=disable")
        };
        Dsn {
            uri: hostpart,
            user: user.to_string(),
            password: password.map(str::to_string),
        }
    }
}

/// Debian's postgres_exporter (0.11.1 on Debian 12) for `dsn`. `queries` adds
/// tests/data/prometheus/queries.yaml (the wraparound metric old releases lack);
/// `bgwriter` keeps the bgwriter collector, whose query fails on PostgreSQL 17+.
pub fn postgres_exporter(dsn: &Dsn, queries: bool, bgwriter: bool, dir: &Path) -> Daemon {
    require(POSTGRES_EXPORTER);
    let port = free_port();
    let mut cmd = Command::new(POSTGRES_EXPORTER);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("DATA_SOURCE_URI", &dsn.uri)
        .env("DATA_SOURCE_USER", &dsn.user)
        .env_remove("DATA_SOURCE_NAME");
    if let Some(p) = &dsn.password {
        cmd.env("DATA_SOURCE_PASS", p);
    }
    if queries {
        cmd.arg(format!(
            "--extend.query-path={}",
            data_dir().join("queries.yaml").display()
        ));
    }
    if !bgwriter {
        cmd.arg("--no-collector.bgwriter");
    }
    let d = spawn("postgres_exporter", port, cmd, dir);
    // The first scrapes after a start may still be connecting: wait for pg_up 1.
    wait_for(&d, "/metrics", "\npg_up 1");
    d
}

/// Debian's node_exporter with a textfile folder in which `backup.prom` says a backup
/// finished now (what a backup job writes after each success).
pub fn node_exporter(dir: &Path) -> Daemon {
    require(NODE_EXPORTER);
    let textfiles = dir.join("textfile");
    std::fs::create_dir_all(&textfiles).unwrap_or_else(|e| panic!("{e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::write(
        textfiles.join("backup.prom"),
        format!(
            "# HELP backup_last_success_timestamp_seconds End of the last successful backup.\n\
             # TYPE backup_last_success_timestamp_seconds gauge\n\
             backup_last_success_timestamp_seconds {now}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let mut cmd = Command::new(NODE_EXPORTER);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--collector.textfile.directory={}",
            textfiles.display()
        ));
    let d = spawn("node_exporter", port, cmd, dir);
    wait_for(&d, "/metrics", "node_filesystem_avail_bytes");
    d
}

/// A Prometheus server that loads the rule files `rules` (a glob) and scrapes nothing.
pub fn prometheus(rules: &str, dir: &Path) -> Daemon {
    require(PROMETHEUS);
    let port = free_port();
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!("global:\n  evaluation_interval: 1m\nrule_files:\n  - \"{rules}\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg(format!("--config.file={}", conf.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ));
    let d = spawn("prometheus", port, cmd, dir);
    wait_for(&d, "/api/v1/rules", "\"alerting\"");
    d
}

/// `promtool check rules FILES`: panics with promtool's output unless it says SUCCESS.
pub fn promtool_check(files: &[PathBuf]) {
    require(PROMTOOL);
    let out = Command::new(PROMTOOL)
        .arg("check")
        .arg("rules")
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check rules {files:?}:\n{text}"
    );
}

/// PgBouncer in front of 127.0.0.1:`pg_port`, with an admin user `admin` whose password
/// is `password`. It refuses to run as root: as root it runs as the sandbox's user.
pub fn pgbouncer(
    pg_port: u16,
    pool_mode: &str,
    pool_size: u32,
    password: &str,
    dir: &Path,
) -> Daemon {
    require(PGBOUNCER);
    let port = free_port();
    let own = dir.join("pgbouncer");
    std::fs::create_dir_all(&own).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        own.join("userlist.txt"),
        format!("\"admin\" \"{password}\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        own.join("pgbouncer.ini"),
        format!(
            "[databases]\napp = host=127.0.0.1 port={pg_port} dbname=postgres\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {}\nadmin_users = admin\n\
             pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n",
            own.join("userlist.txt").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(PGBOUNCER);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt as _;
        let user = std::env::var("PGREADY_SANDBOX_USER").unwrap_or_else(|_| "pgready".into());
        let id = |flag: &str| {
            Command::new("id")
                .args([flag, &user])
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u32>()
                        .ok()
                })
                .unwrap_or_else(|| {
                    panic!("no user {user} to run pgbouncer as (pg-sandbox creates it)")
                })
        };
        let (uid, gid) = (id("-u"), id("-g"));
        for p in [
            own.clone(),
            own.join("userlist.txt"),
            own.join("pgbouncer.ini"),
        ] {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("{e}"));
        }
        // The temporary folder above must be enterable by that user.
        let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        cmd.uid(uid).gid(gid);
    }
    cmd.arg(own.join("pgbouncer.ini"));
    let d = spawn("pgbouncer", port, cmd, dir);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "pgbouncer never listened on {port}; its log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

/// A complete monitoring setup for one server: postgres_exporter with the collectors the
/// critical alerts need (the wraparound query; bgwriter off on 17+, where Debian's 0.11.1
/// fails it), node_exporter with the backup job's textfile metric, and the complete rule set.
pub struct Monitoring {
    pub exporter: Daemon,
    pub node: Daemon,
    _tmp: tempfile::TempDir,
}

impl Monitoring {
    pub fn start(dsn: &Dsn, major: u32) -> Monitoring {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let exporter = postgres_exporter(dsn, true, major < 17, tmp.path());
        let node = node_exporter(tmp.path());
        Monitoring {
            exporter,
            node,
            _tmp: tmp,
        }
    }

    /// The `[monitoring]` section of pgready.toml that points pgready at this setup.
    pub fn toml(&self) -> String {
        format!(
            "\n[monitoring]\nexporter = \"http://127.0.0.1:{}/metrics\"\n\
             node_exporter = \"http://127.0.0.1:{}/metrics\"\nprometheus_rules = [{:?}]\n\n\
             [monitoring.alert_metrics]\nbackup_age = [\"backup_last_success_timestamp_seconds\"]\n",
            self.exporter.port,
            self.node.port,
            data_dir().join("complete").display().to_string()
        )
    }
}

pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// rsyslogd in the foreground with its own configuration, which forwards everything over
/// TCP to a loopback port where nothing listens (rsyslog queues and retries; nothing
/// leaves the machine). It reads no input, so it takes no log from the host.
pub fn rsyslogd(dir: &Path) -> Daemon {
    require(RSYSLOGD);
    let own = dir.join("rsyslog");
    std::fs::create_dir_all(&own).unwrap_or_else(|e| panic!("{e}"));
    let target = free_port();
    let conf = own.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{}\")\n*.* @@127.0.0.1:{target}\n",
            own.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(RSYSLOGD);
    cmd.arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(own.join("rsyslogd.pid"));
    let d = spawn("rsyslogd", 0, cmd, dir);
    std::thread::sleep(Duration::from_millis(500));
    d
}
