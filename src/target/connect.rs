//! Opening a bounded, read-only session on a resolved [`Target`].

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::config::{Config, SslMode as PgSslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, NoTls};
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{self, Material};
use super::{ConnectError, Endpoint, PasswordOrigin, SessionOptions, SslMode, Target};

/// Open a read-only, bounded session. The connection task is spawned on the current
/// runtime.
///
/// Connecting, TLS, authentication and the session setup together must finish within the
/// target's `connect_timeout` (or `PGCONNECT_TIMEOUT`), else
/// [`SessionOptions::connect_timeout`]. The session then has
/// `default_transaction_read_only = on`, the statement and lock timeouts of `opts`, and an
/// `idle_in_transaction_session_timeout`, all set in one round trip.
///
/// A zero [`SessionOptions::connect_timeout`] means no bound, as `connect_timeout=0` does in
/// libpq; the target's own zero is ignored instead (see
/// [`Target::connect_timeout_override`]).
pub async fn connect(target: &Target, opts: &SessionOptions) -> Result<Client, ConnectError> {
    let budget = target.connect_timeout.unwrap_or(opts.connect_timeout);
    if budget.is_zero() {
        return open(target, opts)
            .await
            .map_err(|msg| ConnectError(target.scrub(msg)));
    }
    let result = match tokio::time::timeout(budget, open(target, opts)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "cannot connect to {}: timed out after {} (the server did not complete the \
             connection in time: check the address and port, firewalls that drop packets, \
             and the server's load; set connect_timeout or PGCONNECT_TIMEOUT to wait longer)",
            location(target, None),
            human_duration(budget)
        )),
    };
    result.map_err(|msg| ConnectError(target.scrub(msg)))
}

/// The longest a pgready session may sit idle inside a transaction.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis().min(i32::MAX as u128)
}

/// "db1:5432", "db1:5432 (10.0.0.5)", "[::1]:5432", or `socket "/tmp/.s.PGSQL.5432"`.
fn location(target: &Target, ip: Option<IpAddr>) -> String {
    match &target.endpoint {
        Endpoint::Unix(dir) => format!(
            "socket \"{}\"",
            dir.join(format!(".s.PGSQL.{}", target.port)).display()
        ),
        Endpoint::Tcp { host, hostaddr, .. } => {
            let host_part = if host.contains(':') {
                format!("[{host}]:{}", target.port)
            } else {
                format!("{host}:{}", target.port)
            };
            match ip.or(*hostaddr) {
                Some(ip) if ip.to_string() != *host => format!("{host_part} ({ip})"),
                _ => host_part,
            }
        }
    }
}

async fn open(target: &Target, opts: &SessionOptions) -> Result<Client, String> {
    let password = target.password();
    let mut config = Config::new();
    config
        .user(&target.user)
        .dbname(&target.dbname)
        .port(target.port)
        .channel_binding(target.channel_binding)
        .application_name(
            target
                .application_name
                .as_deref()
                .or(target.fallback_application_name.as_deref())
                .unwrap_or(&opts.application_name),
        );
    if let Some((secret, _)) = &password {
        config.password(secret.expose());
    }
    let origin = password.map(|(_, origin)| origin);

    let client = match &target.endpoint {
        // libpq never uses TLS over a Unix socket, whatever the sslmode.
        Endpoint::Unix(dir) => {
            config.host_path(dir).ssl_mode(PgSslMode::Disable);
            start(&config, NoTls).await.map_err(|e| {
                format!(
                    "cannot connect to {}: {}",
                    location(target, None),
                    describe(&e, target, origin.as_ref(), None)
                )
            })?
        }
        Endpoint::Tcp {
            host,
            hostaddr,
            host_given,
        } => {
            connect_tcp(
                target,
                &config,
                host,
                *hostaddr,
                *host_given,
                origin.as_ref(),
            )
            .await?
        }
    };

    let setup = format!(
        "SET default_transaction_read_only = on; SET statement_timeout = {}; \
         SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
        millis(opts.statement_timeout),
        millis(opts.lock_timeout),
        millis(IDLE_IN_TRANSACTION.max(opts.statement_timeout)),
    );
    client.batch_execute(&setup).await.map_err(|e| {
        format!(
            "connected to {}, but could not make the session read-only and bounded: {}",
            location(target, None),
            describe(&e, target, origin.as_ref(), None)
        )
    })?;
    Ok(client)
}

/// Connect, then run the connection on its own task; its errors surface on the client.
async fn start<T>(config: &Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn connect_tcp(
    target: &Target,
    base: &Config,
    host: &str,
    hostaddr: Option<IpAddr>,
    host_given: bool,
    origin: Option<&PasswordOrigin>,
) -> Result<Client, String> {
    let addrs: Vec<IpAddr> = match hostaddr.or_else(|| host.parse().ok()) {
        Some(ip) => vec![ip],
        None => {
            let found = tokio::net::lookup_host((host, target.port))
                .await
                .map_err(|e| {
                    format!(
                        "cannot connect to {}: could not translate host name \"{host}\" to an \
                         address: {} (check the host name and DNS)",
                        location(target, None),
                        lookup_error_text(&e)
                    )
                })?;
            let mut ips: Vec<IpAddr> = Vec::new();
            for sa in found {
                if !ips.contains(&sa.ip()) {
                    ips.push(sa.ip());
                }
            }
            ips
        }
    };
    if addrs.is_empty() {
        return Err(format!(
            "cannot connect to {}: host name \"{host}\" has no address",
            location(target, None)
        ));
    }

    // The files TLS needs are read once for all addresses. libpq falls back to an
    // unencrypted connection under prefer/allow when TLS cannot be set up.
    let material = match target.sslmode {
        SslMode::Disable => None,
        mode => match tls::load(&target.tls, mode) {
            Ok(m) => Some(m),
            Err(_) if matches!(mode, SslMode::Allow | SslMode::Prefer) => None,
            Err(e) => return Err(format!("cannot connect to {}: {e}", location(target, None))),
        },
    };
    let verify_host = host_given.then_some(host);

    let mut failures: Vec<(IpAddr, String)> = Vec::new();
    for ip in &addrs {
        let mut config = base.clone();
        // tokio-postgres uses `host` as the TLS server name and `hostaddr` to connect.
        if host.starts_with('/') {
            config.host(ip.to_string());
        } else {
            config.host(host);
        }
        config.hostaddr(*ip);
        match attempt(target, config, material.as_ref(), verify_host, origin).await {
            Ok(client) => return Ok(client),
            Err(msg) => failures.push((*ip, msg)),
        }
    }

    let all_same = failures.windows(2).all(|w| w[0].1 == w[1].1);
    Err(match failures.as_slice() {
        [(ip, msg)] => format!("cannot connect to {}: {msg}", location(target, Some(*ip))),
        [(_, msg), ..] if all_same => format!(
            "cannot connect to {} ({}): {msg}",
            location(target, None),
            failures
                .iter()
                .map(|(ip, _)| ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!(
            "cannot connect to {}: {}",
            location(target, None),
            failures
                .iter()
                .map(|(ip, msg)| format!("at {ip}: {msg}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

/// One TCP connection attempt to one address, with libpq's `prefer` fallback: when the
/// TLS handshake fails, or the server refuses the session over TLS, try once more without
/// TLS.
async fn attempt(
    target: &Target,
    mut config: Config,
    material: Option<&Material>,
    verify_host: Option<&str>,
    origin: Option<&PasswordOrigin>,
) -> Result<Client, String> {
    let Some(material) = material else {
        config.ssl_mode(PgSslMode::Disable);
        return start(&config, NoTls)
            .await
            .map_err(|e| describe(&e, target, origin, None));
    };
    let saw_handshake = Arc::new(AtomicBool::new(false));
    let rustls_config =
        tls::client_config(material, target.sslmode, verify_host, saw_handshake.clone())?;
    let prefer = matches!(target.sslmode, SslMode::Allow | SslMode::Prefer);
    config.ssl_mode(if prefer {
        PgSslMode::Prefer
    } else {
        PgSslMode::Require
    });
    match start(&config, MakeRustlsConnect::new(rustls_config)).await {
        Ok(client) => Ok(client),
        Err(e) => {
            let first = describe(&e, target, origin, Some(material));
            // libpq retries when the handshake fails or the server refuses the login
            // (pg_hba.conf, authentication: SQLSTATE class 28) over TLS.
            let refused = e.code().is_some_and(|c| c.code().starts_with("28"));
            let retry =
                prefer && (is_tls_error(&e) || (refused && saw_handshake.load(Ordering::SeqCst)));
            if !retry {
                return Err(first);
            }
            config.ssl_mode(PgSslMode::Disable);
            start(&config, NoTls).await.map_err(|_| first)
        }
    }
}

fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    e.to_string() == "error performing TLS handshake"
}

/// The first rustls error in the chain of causes.
fn rustls_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// The first I/O error in the chain of causes.
fn io_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

fn lookup_error_text(e: &io::Error) -> String {
    let text = super::io_error_text(e);
    text.strip_prefix("failed to lookup address information: ")
        .map(str::to_string)
        .unwrap_or(text)
}

/// Say what went wrong, why, and what to do — the part after "cannot connect to …: ".
fn describe(
    e: &tokio_postgres::Error,
    target: &Target,
    origin: Option<&PasswordOrigin>,
    material: Option<&Material>,
) -> String {
    if let Some(db) = e.as_db_error() {
        return describe_db_error(db, target, origin);
    }
    let unix = target.is_unix_socket();
    let kind = e.to_string();
    let source = e.source();
    match kind.as_str() {
        "error performing TLS handshake" => {
            let roots = material.and_then(Material::roots_from);
            if let Some(r) = source.and_then(rustls_cause) {
                return tls::describe(r, roots, target.sslmode);
            }
            let text = source.map(|s| s.to_string()).unwrap_or_default();
            if text == "server does not support TLS" {
                return format!(
                    "server does not support SSL, but sslmode={} (turn ssl on in the server's \
                     postgresql.conf, or use sslmode=prefer to accept an unencrypted connection)",
                    target.sslmode
                );
            }
            match source.and_then(io_cause).map(io::Error::kind) {
                Some(io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
                    "the server closed the connection during the TLS handshake (is this a \
                     PostgreSQL server? check its log)"
                        .to_string()
                }
                _ => format!("TLS handshake failed: {text}"),
            }
        }
        "error connecting to server" => match source.and_then(io_cause) {
            Some(io) => match io.kind() {
                io::ErrorKind::ConnectionRefused if unix => "connection refused (is the server \
                    running locally and accepting connections on that socket?)"
                    .to_string(),
                io::ErrorKind::ConnectionRefused => "connection refused (is the server running \
                    and accepting TCP connections on that port? check listen_addresses and port)"
                    .to_string(),
                io::ErrorKind::NotFound if unix => "no such socket (is the server running \
                    locally and accepting connections on that socket? check host= and port=)"
                    .to_string(),
                io::ErrorKind::PermissionDenied => format!(
                    "permission denied ({})",
                    if unix {
                        "check the permissions of the socket directory"
                    } else {
                        "a local firewall or security policy refused the connection"
                    }
                ),
                io::ErrorKind::TimedOut => "connection timed out (check firewalls and the \
                    address)"
                    .to_string(),
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    "no route to host (check the address and the network)".to_string()
                }
                _ => super::io_error_text(io),
            },
            None => kind,
        },
        "invalid configuration" if source.is_some_and(|s| s.to_string() == "password missing") => {
            no_password(target)
        }
        "connection closed" | "error communicating with the server" => {
            let detail = source
                .and_then(io_cause)
                .map(|io| format!(": {}", super::io_error_text(io)))
                .unwrap_or_default();
            format!(
                "the server closed the connection unexpectedly{detail} (it may have crashed or \
                 restarted, or something between pgready and the server dropped the connection; \
                 check the server log)"
            )
        }
        "unexpected message from server" | "error parsing response from server" => {
            "the server does not speak the PostgreSQL protocol as expected (is this port a \
             PostgreSQL server?)"
                .to_string()
        }
        _ => match source {
            Some(s) => format!("{kind}: {s}"),
            None => kind,
        },
    }
}

fn no_password(target: &Target) -> String {
    let mut msg = format!(
        "no password supplied (the server asks for a password for user \"{}\"; set PGPASSWORD, \
         add a line to ~/.pgpass, or give password= in the connection string)",
        target.user
    );
    if let Some(note) = &target.passfile_note {
        msg.push_str(&format!("; note: {note}"));
    } else if let Some(file) = &target.passfile {
        msg.push_str(&format!(
            "; no line of \"{}\" matches {}:{}:{}:{}",
            file.path().display(),
            match &target.endpoint {
                Endpoint::Unix(dir) if *dir == target.default_socket_dir => "localhost".into(),
                Endpoint::Unix(dir) => dir.display().to_string(),
                Endpoint::Tcp { host, .. } => host.clone(),
            },
            target.port,
            target.dbname,
            target.user
        ));
    }
    msg
}

fn describe_db_error(
    db: &tokio_postgres::error::DbError,
    target: &Target,
    origin: Option<&PasswordOrigin>,
) -> String {
    let message = db.message();
    let code = db.code();
    if *code == SqlState::INVALID_PASSWORD {
        let hint = match origin {
            Some(PasswordOrigin::Conninfo) => {
                "check the password given in the connection string".to_string()
            }
            Some(PasswordOrigin::Env) => "check PGPASSWORD".to_string(),
            Some(PasswordOrigin::PassFile { path, line }) => format!(
                "password retrieved from file \"{}\", line {line}; check that line",
                path.display()
            ),
            None => "check PGPASSWORD or ~/.pgpass".to_string(),
        };
        return format!("{message} ({hint})");
    }
    if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        let hint = if message.contains("pg_hba.conf") {
            "the server's pg_hba.conf does not let this role in from this address with this \
             encryption; ask for a line for pgready's role, or try another sslmode"
                .to_string()
        } else if message.starts_with("role") && message.ends_with("does not exist") {
            format!(
                "check the user name: user= or PGUSER (without one, pgready uses the operating \
                 system user, here \"{}\")",
                target.user
            )
        } else if message.contains("certificate") {
            "set sslcert and sslkey to a client certificate that the server's ssl_ca_file \
             trusts, issued to this user name"
                .to_string()
        } else {
            "the server refused the login".to_string()
        };
        return format!("{message} ({hint})");
    }
    if *code == SqlState::INVALID_CATALOG_NAME {
        return format!(
            "{message} (check dbname= or PGDATABASE; without one, pgready, like psql, uses the \
             user name)"
        );
    }
    if *code == SqlState::TOO_MANY_CONNECTIONS {
        return format!(
            "{message} (no free connection slot: retry later, or raise max_connections or the \
             role's CONNECTION LIMIT)"
        );
    }
    if *code == SqlState::CANNOT_CONNECT_NOW {
        return format!("{message} (the server is starting up or shutting down; retry later)");
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return format!(
            "{message} (grant the audit role CONNECT on the database, or audit another one)"
        );
    }
    let mut msg = format!("{message} (SQLSTATE {})", code.code());
    if let Some(detail) = db.detail() {
        msg.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        msg.push_str(&format!("; hint: {hint}"));
    }
    msg
}
