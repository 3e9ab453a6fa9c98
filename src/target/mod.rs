//! Where and how to connect: libpq-compatible connection settings, TLS, bounded sessions.
//!
//! A [`Target`] is resolved the way libpq (and so psql) resolves a connection: the
//! positional argument (a `postgresql://` URI, a `key=value` string, or a bare database
//! name), then the `PG*` environment variables, then the password file, then libpq's
//! built-in defaults. [`connect`] opens a session over rustls with libpq's `sslmode`
//! semantics, bounded by a timeout, and makes it read-only before handing it out.
//!
//! Nothing here ever prints or returns a password: `Debug` and [`Target::display`] leave
//! it out, and every error message is scrubbed of it.

mod connect;
mod conninfo;
mod pgpass;
mod resolve;
pub(crate) mod tls;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use connect::connect;

/// Limits applied to every session pgready opens.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Bound on connecting, TLS, authentication and session setup together. The target's
    /// own `connect_timeout` (or `PGCONNECT_TIMEOUT`) takes precedence when set.
    pub connect_timeout: Duration,
    /// `statement_timeout` of the session.
    pub statement_timeout: Duration,
    /// `lock_timeout` of the session.
    pub lock_timeout: Duration,
    /// `application_name` sent at startup, unless the target names one.
    pub application_name: String,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(1),
            application_name: "pgready".to_string(),
        }
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// libpq tries without TLS first; pgready treats it like `prefer`.
    Allow,
    /// Use TLS when the server offers it, otherwise go on without (the default).
    Prefer,
    /// Require TLS; verify the chain only when a root certificate file exists.
    Require,
    /// Require TLS and a certificate chain that leads to a trusted root.
    VerifyCa,
    /// Like `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password, or anything else that must never be shown. `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Arc<[u8]>);

impl Secret {
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(bytes.into())
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the password of a connection attempt came from, for error hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PasswordOrigin {
    /// `password=` or `user:password@` in the connection string.
    Conninfo,
    /// `PGPASSWORD`.
    Env,
    /// A line of the password file.
    PassFile { path: PathBuf, line: usize },
}

/// A file setting that libpq defaults to a path under the home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileSetting {
    /// Named in the connection string or environment.
    Explicit(PathBuf),
    /// libpq's default location (used only if it exists).
    Default(PathBuf),
    /// No home directory, so no default location.
    NoHome,
}

impl FileSetting {
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            FileSetting::Explicit(p) | FileSetting::Default(p) => Some(p),
            FileSetting::NoHome => None,
        }
    }
}

/// `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootSetting {
    /// `sslrootcert=system`: the system's trusted roots.
    System,
    /// A PEM file.
    File(FileSetting),
}

/// Everything the TLS handshake needs from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) root: RootSetting,
    pub(crate) crl: FileSetting,
    pub(crate) cert: FileSetting,
    pub(crate) key: FileSetting,
    /// `sslcertmode` is not `disable`.
    pub(crate) send_client_cert: bool,
    /// `sslsni=1`.
    pub(crate) sni: bool,
    pub(crate) tls12: bool,
    pub(crate) tls13: bool,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix-domain socket directory (`host` starting with `/`).
    Unix(PathBuf),
    /// TCP. `host` is the `host` parameter, or `hostaddr` when only that was given
    /// (`host_given` false); `hostaddr`, when set, is where to connect.
    Tcp {
        host: String,
        hostaddr: Option<IpAddr>,
        host_given: bool,
    },
}

/// A fully resolved connection target (conninfo + environment + defaults).
///
/// `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct Target {
    endpoint: Endpoint,
    port: u16,
    user: String,
    dbname: String,
    password: Option<(Secret, PasswordOrigin)>,
    passfile: Option<Arc<pgpass::PassFile>>,
    /// Why the password file was not used, when it exists but was refused.
    passfile_note: Option<String>,
    /// libpq's default socket directory: a password file line for `localhost` matches it.
    default_socket_dir: PathBuf,
    sslmode: SslMode,
    pub(crate) tls: TlsSettings,
    channel_binding: tokio_postgres::config::ChannelBinding,
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    warnings: Vec<String>,
}

/// Error while resolving a target from user input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Error while connecting (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

impl Target {
    /// Resolve from an optional conninfo (URI, `key=value` string, or a bare database
    /// name as psql takes it) and the process environment. Warnings (a password file
    /// with loose permissions, ignored options) are printed on stderr.
    pub fn resolve(conninfo: Option<&str>) -> Result<Target, TargetError> {
        let home = resolve::home_dir();
        let os_user = resolve::os_user();
        let env = |name: &str| std::env::var(name).ok();
        let target = resolve::resolve(
            conninfo,
            &env,
            home.as_deref(),
            os_user,
            &resolve::default_socket_dir,
        )?;
        for w in &target.warnings {
            eprintln!("warning: {w}");
        }
        Ok(target)
    }

    /// Resolve from an explicit environment, for tests and embedding: `env` answers
    /// `PGHOST` and friends (and `USER`/`LOGNAME` for the default user name), `home`
    /// locates `~/.pgpass` and `~/.postgresql/`. Warnings are kept in
    /// [`Target::warnings`], not printed.
    pub fn resolve_with(
        conninfo: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Target, TargetError> {
        let os_user = env("USER")
            .or_else(|| env("LOGNAME"))
            .filter(|u| !u.is_empty())
            .or_else(resolve::os_user);
        resolve::resolve(conninfo, env, home, os_user, &resolve::default_socket_dir)
    }

    /// The same target, another database.
    pub fn for_database(&self, dbname: &str) -> Target {
        Target {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// Redacted URI for display: `postgresql://user@host:port/db?sslmode=…`, or
    /// `postgresql://user@/db?host=/socket/dir&port=…` for a Unix socket. Never contains
    /// the password.
    pub fn display(&self) -> String {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        const PATH: &AsciiSet = &COMPONENT.remove(b'/');
        let user = utf8_percent_encode(&self.user, COMPONENT);
        let db = utf8_percent_encode(&self.dbname, COMPONENT);
        match &self.endpoint {
            Endpoint::Unix(dir) => format!(
                "postgresql://{user}@/{db}?host={}&port={}",
                utf8_percent_encode(&dir.to_string_lossy(), PATH),
                self.port
            ),
            Endpoint::Tcp {
                host,
                hostaddr,
                host_given,
            } => {
                let host_part = if host.parse::<std::net::Ipv6Addr>().is_ok() {
                    format!("[{host}]")
                } else {
                    utf8_percent_encode(host, COMPONENT).to_string()
                };
                let mut uri = format!(
                    "postgresql://{user}@{host_part}:{}/{db}?sslmode={}",
                    self.port, self.sslmode
                );
                if let (Some(addr), true) = (hostaddr, host_given) {
                    uri.push_str(&format!("&hostaddr={addr}"));
                }
                uri
            }
        }
    }

    /// True for a Unix socket or a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
    /// No name is looked up: other host names count as remote.
    pub fn is_local(&self) -> bool {
        fn loopback(ip: IpAddr) -> bool {
            match ip {
                IpAddr::V4(v4) => v4.is_loopback(),
                IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            }
        }
        match &self.endpoint {
            Endpoint::Unix(_) => true,
            Endpoint::Tcp {
                hostaddr: Some(ip), ..
            } => loopback(*ip),
            Endpoint::Tcp { host, .. } => match host.parse::<IpAddr>() {
                Ok(ip) => loopback(ip),
                Err(_) => {
                    let h = host.strip_suffix('.').unwrap_or(host);
                    h.eq_ignore_ascii_case("localhost")
                        || h.to_ascii_lowercase().ends_with(".localhost")
                }
            },
        }
    }

    /// The host: the socket directory for a Unix socket, else the `host` parameter (or
    /// `hostaddr` when only that was given).
    pub fn host(&self) -> &str {
        match &self.endpoint {
            Endpoint::Unix(dir) => dir.to_str().unwrap_or("<non-UTF-8 socket directory>"),
            Endpoint::Tcp { host, .. } => host,
        }
    }

    /// The numeric address to connect to, when `hostaddr` was given.
    pub fn hostaddr(&self) -> Option<IpAddr> {
        match &self.endpoint {
            Endpoint::Tcp { hostaddr, .. } => *hostaddr,
            Endpoint::Unix(_) => None,
        }
    }

    /// True when the server is reached through a Unix-domain socket (never TLS).
    pub fn is_unix_socket(&self) -> bool {
        matches!(self.endpoint, Endpoint::Unix(_))
    }

    /// The port (also the socket file's suffix, `.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The role name to log in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The database to connect to.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The sslmode in force (`prefer` unless set; `verify-full` with `sslrootcert=system`).
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// `application_name` from the connection string or `PGAPPNAME`, if any.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// The target's own `connect_timeout` / `PGCONNECT_TIMEOUT`, with libpq's rules: at
    /// least 2 s; zero or negative means "not set" here, because pgready keeps every
    /// connection attempt bounded by [`SessionOptions::connect_timeout`].
    pub fn connect_timeout_override(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// Warnings met while resolving (already printed on stderr by [`Target::resolve`]).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The password for this target and where it came from: the connection string or
    /// `PGPASSWORD` first, then the first matching password file line.
    pub(crate) fn password(&self) -> Option<(Secret, PasswordOrigin)> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let file = self.passfile.as_ref()?;
        let host = match &self.endpoint {
            Endpoint::Unix(dir) if *dir == self.default_socket_dir => "localhost".to_string(),
            Endpoint::Unix(dir) => dir.to_string_lossy().into_owned(),
            Endpoint::Tcp { host, .. } => host.clone(),
        };
        file.lookup(&host, &self.port.to_string(), &self.dbname, &self.user)
            .map(|(secret, line)| {
                (
                    secret.clone(),
                    PasswordOrigin::PassFile {
                        path: file.path().to_path_buf(),
                        line,
                    },
                )
            })
    }

    /// Replace every occurrence of a password this target knows in `text`.
    pub(crate) fn scrub(&self, text: String) -> String {
        let mut text = text;
        for (secret, _) in self.password.iter().cloned().chain(self.password()) {
            if let Ok(pw) = std::str::from_utf8(secret.expose())
                && !pw.is_empty()
                && text.contains(pw)
            {
                text = text.replace(pw, "********");
            }
        }
        text
    }
}

/// An I/O error as a short lower-case phrase ("connection refused"), without the
/// "(os error N)" suffix.
pub(crate) fn io_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
