//! Where and how to connect: libpq-compatible connection settings, TLS, bounded sessions.
//!
//! OWNED BY THE CONNECTION HELPER — interface below is the contract other modules use.

use std::time::Duration;

/// Limits applied to every session pgready opens.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
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

/// A fully resolved connection target (conninfo + environment + defaults).
#[derive(Debug, Clone)]
pub struct Target {}

/// Error while resolving a target from user input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Error while connecting (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

impl Target {
    /// Resolve from an optional conninfo (URI or key=value) and the process environment.
    pub fn resolve(_conninfo: Option<&str>) -> Result<Target, TargetError> {
        todo!()
    }
    /// The same target, another database.
    pub fn for_database(&self, _dbname: &str) -> Target {
        todo!()
    }
    /// Redacted URI for display (never contains a password).
    pub fn display(&self) -> String {
        todo!()
    }
    /// True for a Unix socket or a loopback address.
    pub fn is_local(&self) -> bool {
        todo!()
    }
}

/// Open a read-only, bounded session. The connection task is spawned on the current runtime.
pub async fn connect(
    _target: &Target,
    _opts: &SessionOptions,
) -> Result<tokio_postgres::Client, ConnectError> {
    todo!()
}
