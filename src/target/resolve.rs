//! Resolving a [`Target`] the way libpq does: connection string, then environment, then
//! defaults (`conninfo_add_defaults` and `pqConnectOptions2` in libpq's `fe-connect.c`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::ChannelBinding;

use super::conninfo;
use super::pgpass;
use super::{
    Endpoint, FileSetting, PasswordOrigin, RootSetting, Secret, SslMode, Target, TargetError,
    TlsSettings,
};

/// libpq's directories for the default Unix socket: Debian's first, then the compiled-in
/// default of a source build.
const SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// The default socket directory: the one that holds this port's socket, else the first
/// that exists (`/var/run/postgresql` on Debian and Ubuntu), else `/tmp`.
pub(crate) fn default_socket_dir(port: u16) -> PathBuf {
    let socket = format!(".s.PGSQL.{port}");
    SOCKET_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join(&socket).exists())
        .or_else(|| SOCKET_DIRS.iter().map(PathBuf::from).find(|d| d.is_dir()))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The effective user's passwd entry: (name, home directory).
#[cfg(unix)]
fn passwd_entry() -> Option<(String, PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;

    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `pwd` and `buf` outlive the call; getpwuid_r writes only into them and
        // sets `result` to null or to `&pwd`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                libc::geteuid(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name and pw_dir point to NUL-terminated strings in `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        let dir = if pwd.pw_dir.is_null() {
            PathBuf::new()
        } else {
            let bytes = unsafe { CStr::from_ptr(pwd.pw_dir) }.to_bytes();
            PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
        };
        return Some((name, dir));
    }
}

#[cfg(not(unix))]
fn passwd_entry() -> Option<(String, PathBuf)> {
    None
}

/// The operating system user name, as libpq's `pg_fe_getauthname` finds it (the
/// effective uid's passwd entry), falling back to `USER` / `LOGNAME`.
pub(crate) fn os_user() -> Option<String> {
    passwd_entry()
        .map(|(name, _)| name)
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
}

/// The home directory as libpq's `pqGetHomeDirectory` finds it: `HOME`, else the passwd
/// entry.
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            passwd_entry()
                .map(|(_, dir)| dir)
                .filter(|d| !d.as_os_str().is_empty())
        })
}

/// The raw options: the connection string's, then the environment's.
struct Raw<'a> {
    explicit: HashMap<String, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Raw<'_> {
    fn env_var(key: &str) -> Option<&'static str> {
        conninfo::KEYWORDS
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, e)| *e)
    }

    /// The value libpq would use before defaults: the connection string's (even if
    /// empty), else the environment variable's (even if empty).
    fn get(&self, key: &str) -> Option<String> {
        self.explicit
            .get(key)
            .cloned()
            .or_else(|| Self::env_var(key).and_then(|e| (self.env)(e)))
    }

    /// Like [`Raw::get`], with an empty value counting as unset (libpq's `val[0] == '\0'`).
    fn nonempty(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// How the user wrote this option, for messages: `sslmode` or `PGSSLMODE`.
    fn source(&self, key: &str) -> String {
        match (self.explicit.contains_key(key), Self::env_var(key)) {
            (false, Some(env)) => env.to_string(),
            _ => key.to_string(),
        }
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, TargetError> {
    Err(TargetError(msg.into()))
}

/// libpq's `pqParseIntParam`: optional surrounding whitespace, a decimal `int`.
fn parse_int(value: &str) -> Option<i32> {
    value
        .trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
        .parse()
        .ok()
}

fn check_one_of(raw: &Raw<'_>, key: &str, allowed: &[&str]) -> Result<Option<String>, TargetError> {
    match raw.get(key) {
        Some(v) if !allowed.contains(&v.as_str()) => err(format!(
            "invalid {} value: \"{v}\" (expected one of: {})",
            raw.source(key),
            allowed.join(", ")
        )),
        other => Ok(other),
    }
}

fn tls_version_rank(raw: &Raw<'_>, key: &str) -> Result<Option<u8>, TargetError> {
    let Some(v) = raw.nonempty(key) else {
        return Ok(None);
    };
    let rank = match v.to_ascii_lowercase().as_str() {
        "tlsv1" => 0,
        "tlsv1.1" => 1,
        "tlsv1.2" => 2,
        "tlsv1.3" => 3,
        _ => {
            return err(format!(
                "invalid {} value: \"{v}\" (expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)",
                raw.source(key)
            ));
        }
    };
    Ok(Some(rank))
}

/// Options libpq knows that pgready refuses, with the reason shown to the user.
const REFUSED: &[(&str, &str)] = &[
    (
        "service",
        "connection service files (pg_service.conf) are not supported by pgready yet; \
         give the connection settings directly",
    ),
    (
        "sslpassword",
        "encrypted client keys are not supported; decrypt the key (openssl pkey) and protect it with chmod 600",
    ),
    (
        "sslcrldir",
        "CRL directories are not supported; concatenate the CRLs into one file and use sslcrl",
    ),
    ("requirepeer", "it is not supported by pgready"),
    ("require_auth", "it is not supported by pgready"),
    ("replication", "pgready never opens replication connections"),
    ("scram_client_key", "it is not supported by pgready"),
    ("scram_server_key", "it is not supported by pgready"),
    (
        "oauth_issuer",
        "OAuth authentication is not supported by pgready",
    ),
    (
        "oauth_client_id",
        "OAuth authentication is not supported by pgready",
    ),
    (
        "oauth_client_secret",
        "OAuth authentication is not supported by pgready",
    ),
    (
        "oauth_scope",
        "OAuth authentication is not supported by pgready",
    ),
];

/// Resolve a target. `socket_dir` gives the default Unix socket directory for a port.
pub(crate) fn resolve(
    conninfo: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    os_user: Option<String>,
    socket_dir: &dyn Fn(u16) -> PathBuf,
) -> Result<Target, TargetError> {
    let pairs = match conninfo {
        Some(s) if conninfo::is_connection_string(s) => conninfo::parse(s).map_err(TargetError)?,
        // psql takes a bare word as the database name.
        Some(s) if !s.is_empty() => vec![("dbname".to_string(), s.to_string())],
        _ => Vec::new(),
    };
    let raw = Raw {
        explicit: pairs.into_iter().collect(),
        env,
    };
    let mut warnings = Vec::new();

    for (key, why) in REFUSED {
        if let Some(v) = raw.nonempty(key) {
            let shown = if key.contains("secret") || *key == "sslpassword" {
                String::new()
            } else {
                format!("=\"{v}\"")
            };
            return err(format!("cannot use {}{shown}: {why}", raw.source(key)));
        }
    }
    if let Some(v) = check_one_of(&raw, "gssencmode", &["disable", "prefer", "require"])?
        && v == "require"
    {
        return err(format!(
            "{}=require cannot be honoured: pgready has no GSSAPI support (use TLS: sslmode=verify-full)",
            raw.source("gssencmode")
        ));
    }
    if let Some(v) = check_one_of(
        &raw,
        "target_session_attrs",
        &[
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ],
    )? && v != "any"
    {
        return err(format!(
            "{}={v} is not supported by pgready: it audits the one server you name",
            raw.source("target_session_attrs")
        ));
    }
    let certmode = check_one_of(&raw, "sslcertmode", &["disable", "allow", "require"])?;
    if certmode.as_deref() == Some("require") {
        return err(format!(
            "{}=require is not supported by pgready yet (use allow)",
            raw.source("sslcertmode")
        ));
    }
    if let Some(v) = check_one_of(&raw, "sslnegotiation", &["postgres", "direct"])?
        && v == "direct"
    {
        return err(format!(
            "{}=direct is not supported by pgready yet (use postgres)",
            raw.source("sslnegotiation")
        ));
    }
    check_one_of(&raw, "load_balance_hosts", &["disable", "random"])?;
    if raw.nonempty("options").is_some() {
        warnings.push(format!(
            "ignoring {}: pgready sets its own session parameters (read-only, timeouts)",
            raw.source("options")
        ));
    }

    // Port, then host: the default socket directory depends on the port.
    for key in ["host", "hostaddr", "port"] {
        if let Some(v) = raw.get(key)
            && v.contains(',')
        {
            return err(format!(
                "multiple hosts are not supported: {}=\"{v}\" (pgready audits one server at a time; \
                 name one host)",
                raw.source(key)
            ));
        }
    }
    let port = match raw.nonempty("port") {
        None => 5432,
        Some(v) => match parse_int(&v) {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            _ => return err(format!("invalid port number: \"{v}\"")),
        },
    };
    let hostaddr = match raw.nonempty("hostaddr") {
        None => None,
        Some(v) => Some(v.parse::<IpAddr>().map_err(|_| {
            TargetError(format!(
                "could not parse network address \"{v}\" (hostaddr must be a numeric IP \
                 address; use host= for a name)"
            ))
        })?),
    };
    let default_socket_dir = socket_dir(port);
    let endpoint = match (raw.nonempty("host"), hostaddr) {
        (Some(h), _) if h.starts_with('@') => {
            return err(format!(
                "abstract Unix sockets are not supported: {}=\"{h}\"",
                raw.source("host")
            ));
        }
        (Some(h), None) if h.starts_with('/') => Endpoint::Unix(PathBuf::from(h)),
        (Some(h), addr) => Endpoint::Tcp {
            host: h,
            hostaddr: addr,
            host_given: true,
        },
        (None, Some(addr)) => Endpoint::Tcp {
            host: addr.to_string(),
            hostaddr: Some(addr),
            host_given: false,
        },
        (None, None) => Endpoint::Unix(default_socket_dir.clone()),
    };

    let Some(user) = raw.nonempty("user").or(os_user) else {
        return err(
            "could not determine the operating system user name; set PGUSER or user= in the \
             connection string",
        );
    };
    let dbname = raw.nonempty("dbname").unwrap_or_else(|| user.clone());

    // The password: the connection string's, else PGPASSWORD, else the password file.
    let password = raw.nonempty("password").map(|p| {
        let origin = if raw.explicit.contains_key("password") {
            PasswordOrigin::Conninfo
        } else {
            PasswordOrigin::Env
        };
        (Secret::from_bytes(p.into_bytes()), origin)
    });
    let mut passfile = None;
    let mut passfile_note = None;
    if password.is_none() {
        let path = raw
            .nonempty("passfile")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".pgpass")));
        if let Some(path) = path {
            match pgpass::load(&path) {
                pgpass::Loaded::Missing => {}
                pgpass::Loaded::File(f) => passfile = Some(Arc::new(f)),
                pgpass::Loaded::Ignored(why) => {
                    warnings.push(why.clone());
                    passfile_note = Some(why);
                }
            }
        }
    }

    // TLS.
    let sslmode_raw = raw.get("sslmode").or_else(|| {
        (env)("PGREQUIRESSL")
            .filter(|v| v.starts_with('1'))
            .map(|_| "require".to_string())
    });
    let sslmode_given = sslmode_raw.is_some();
    let mut sslmode = match sslmode_raw {
        None => SslMode::Prefer,
        Some(v) => SslMode::parse(&v).ok_or_else(|| {
            TargetError(format!(
                "invalid {} value: \"{v}\" (expected disable, allow, prefer, require, verify-ca \
                 or verify-full)",
                raw.source("sslmode")
            ))
        })?,
    };
    let in_home = |rel: &str| match home {
        Some(h) => FileSetting::Default(h.join(".postgresql").join(rel)),
        None => FileSetting::NoHome,
    };
    let file_setting = |key: &str, default: &str| match raw.nonempty(key) {
        Some(p) => FileSetting::Explicit(PathBuf::from(p)),
        None => in_home(default),
    };
    let root = match raw.nonempty("sslrootcert") {
        Some(v) if v == "system" => {
            if !sslmode_given {
                sslmode = SslMode::VerifyFull;
            } else if sslmode != SslMode::VerifyFull {
                return err(format!(
                    "weak sslmode \"{sslmode}\" may not be used with sslrootcert=system (use \
                     \"verify-full\")"
                ));
            }
            RootSetting::System
        }
        Some(p) => RootSetting::File(FileSetting::Explicit(PathBuf::from(p))),
        None => RootSetting::File(in_home("root.crt")),
    };
    let min = tls_version_rank(&raw, "ssl_min_protocol_version")?.unwrap_or(2);
    let max = tls_version_rank(&raw, "ssl_max_protocol_version")?;
    if max.is_some_and(|max| max < min) {
        return err(
            "invalid SSL protocol version range (ssl_min_protocol_version is above ssl_max_protocol_version)",
        );
    }
    let max = max.unwrap_or(3);
    if max < 2 {
        return err(format!(
            "{} allows only TLS versions older than 1.2, which pgready does not support",
            raw.source("ssl_max_protocol_version")
        ));
    }
    let tls = TlsSettings {
        root,
        crl: file_setting("sslcrl", "root.crl"),
        cert: file_setting("sslcert", "postgresql.crt"),
        key: file_setting("sslkey", "postgresql.key"),
        send_client_cert: certmode.as_deref() != Some("disable"),
        sni: raw.get("sslsni").is_none_or(|v| v.starts_with('1')),
        tls12: min <= 2,
        tls13: true,
    };
    let channel_binding = match check_one_of(
        &raw,
        "channel_binding",
        &["disable", "prefer", "require"],
    )?
    .as_deref()
    {
        Some("disable") => ChannelBinding::Disable,
        Some("require") => ChannelBinding::Require,
        _ => ChannelBinding::Prefer,
    };

    let connect_timeout = match raw.nonempty("connect_timeout") {
        None => None,
        Some(v) => match parse_int(&v) {
            Some(s) if s > 0 => Some(Duration::from_secs(u64::from(s.max(2).unsigned_abs()))),
            Some(_) => None,
            None => {
                return err(format!(
                    "invalid integer value \"{v}\" for connection option \"connect_timeout\""
                ));
            }
        },
    };

    let target = Target {
        endpoint,
        port,
        user,
        dbname,
        password,
        passfile,
        passfile_note,
        default_socket_dir,
        sslmode,
        tls,
        channel_binding,
        connect_timeout,
        application_name: raw.nonempty("application_name"),
        fallback_application_name: raw
            .explicit
            .get("fallback_application_name")
            .filter(|v| !v.is_empty())
            .cloned(),
        warnings,
    };
    Ok(target)
}

/// Resolve from a fixed environment, OS user `osuser` and the given socket directory.
#[cfg(test)]
pub(crate) fn resolve_for_test(
    conninfo: Option<&str>,
    env: &[(&str, &str)],
    home: Option<&Path>,
    socket_dir: &dyn Fn(u16) -> PathBuf,
) -> Result<Target, TargetError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| env.get(k).cloned();
    resolve(
        conninfo,
        &lookup,
        home,
        Some("osuser".to_string()),
        socket_dir,
    )
}
