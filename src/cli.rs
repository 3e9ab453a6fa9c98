//! Command-line definitions (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Criticality, Deployment, Size, Storage, Workload};
use crate::report::{Format, ListFormat};

#[derive(Debug, Parser)]
#[command(
    name = "pgready",
    version,
    about = "Tells whether a PostgreSQL server is ready for production: a scored Go/No-Go audit.",
    after_help = "Exit codes: 0 GO (and GO WITH RESERVATIONS unless --fail-on reservations), 1 NO-GO, \
                  2 bad input (usage, configuration, rules, facts file), 3 the server could not be audited."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Audit a server (or a saved facts file) and print the Go/No-Go report.
    Audit(AuditArgs),
    /// Collect the facts of a server and write them as JSON, without judging.
    Facts(FactsArgs),
    /// List, explain and check the rules.
    Rules(RulesArgs),
    /// Print the settings the configuration rules recommend for this server and context,
    /// as ALTER SYSTEM statements (or a postgresql.conf fragment).
    Tune(TuneArgs),
    /// Work with the team's runbook folder (`runbooks init DIR`).
    Runbooks(RunbooksArgs),
    /// Restore the newest backup (or a given set / point in time) into a scratch folder,
    /// start it, verify it, measure RTO and RPO, and record the result as evidence B3.
    RestoreTest(RestoreTestArgs),
}

/// How to reach the server.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Connection string: a URI (postgresql://user@host:5432/db?sslmode=verify-full) or
    /// key=value pairs (host=db1 user=audit). What it leaves out comes from PGHOST, PGPORT,
    /// PGUSER, PGDATABASE, PGPASSWORD, ~/.pgpass, PGSSLMODE… as with psql.
    pub conninfo: Option<String>,
    /// Seconds to wait for a connection (default 10; the conninfo's connect_timeout wins).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
    /// Seconds a single query may run before the server cancels it.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub statement_timeout: u64,
}

/// The team's context (overrides `[context]` of pgready.toml).
#[derive(Debug, Args, Default)]
pub struct ContextArgs {
    /// Where the server runs; `managed` makes host rules not applicable.
    #[arg(long, value_enum)]
    pub deployment: Option<Deployment>,
    /// Organisation size.
    #[arg(long, value_enum)]
    pub size: Option<Size>,
    /// How critical the service is.
    #[arg(long, value_enum)]
    pub criticality: Option<Criticality>,
    /// The workload the server carries.
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,
    /// Storage class of the data and WAL devices (detected from /sys/block when local).
    #[arg(long, value_enum)]
    pub storage: Option<Storage>,
    /// RAM available to PostgreSQL, e.g. 64GB (required for managed or remote servers;
    /// detected when local, honouring cgroup limits).
    #[arg(long, value_name = "SIZE", value_parser = crate::config::parse_ram)]
    pub ram: Option<i64>,
    /// CPUs available to PostgreSQL (required for managed or remote servers; detected
    /// when local, honouring cgroup quotas).
    #[arg(long, value_name = "N", value_parser = crate::config::parse_cpus)]
    pub cpus: Option<u32>,
}

/// Where the other fact sources are (backup tools, monitoring, runbooks, …). The same
/// keys exist in `pgready.toml`; a flag wins over the file. Shared by `audit` and `facts`.
#[derive(Debug, Args, Default, Clone)]
pub struct SourceArgs {
    /// postgres_exporter's metrics URL, scraped once (same as `[monitoring] exporter`),
    /// e.g. http://db1:9187/metrics.
    #[arg(long, value_name = "URL")]
    pub exporter: Option<String>,
    /// node_exporter's metrics URL (same as `[monitoring] node_exporter`), e.g. http://db1:9100/metrics.
    #[arg(long, value_name = "URL")]
    pub node_exporter: Option<String>,
    /// Another exporter whose metric names the alert rules may use (pgbackrest_exporter, a
    /// Pushgateway); repeatable (same as `[monitoring] other_exporters`).
    #[arg(long, value_name = "URL")]
    pub other_exporter: Vec<String>,
    /// Prometheus alert rule file, or a folder of them (repeatable; same as
    /// `[monitoring] prometheus_rules`).
    #[arg(long, value_name = "PATH")]
    pub prometheus_rules: Vec<PathBuf>,
    /// A Prometheus server whose loaded rules are read from /api/v1/rules (same as
    /// `[monitoring] prometheus`), e.g. http://prom1:9090.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// PgBouncer's admin console (same as `[pgbouncer] uri`), e.g.
    /// postgresql://admin@127.0.0.1:6432/pgbouncer; the password from PGPASSWORD.
    #[arg(long, value_name = "URI")]
    pub pgbouncer: Option<String>,
    /// The team's runbook folder (Markdown with YAML front matter; same as `[runbooks] dir`).
    #[arg(long, value_name = "DIR")]
    pub runbooks: Option<PathBuf>,
    /// pgBackRest stanza of this server (same as `[backup] pgbackrest_stanza`). Without any
    /// backup flag, a local server's stanza is looked up in pgBackRest's default config.
    #[arg(long, value_name = "NAME")]
    pub pgbackrest_stanza: Option<String>,
    /// pgBackRest configuration file (default: pgBackRest's own defaults).
    #[arg(long, value_name = "FILE")]
    pub pgbackrest_config: Option<PathBuf>,
    /// Barman server name of this PostgreSQL server (same as `[backup] barman_server`).
    #[arg(long, value_name = "NAME")]
    pub barman_server: Option<String>,
    /// Barman configuration file (default: Barman's own, /etc/barman.conf).
    #[arg(long, value_name = "FILE")]
    pub barman_config: Option<PathBuf>,
    /// WAL-G environment file (KEY=VALUE lines: WALG_S3_PREFIX, credentials…).
    #[arg(long, value_name = "FILE")]
    pub walg_env: Option<PathBuf>,
    /// A name clients use to reach the server (repeatable; same as `[tls] names`): the TLS
    /// probe checks that the server certificate names it, as libpq's sslmode=verify-full does.
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,
    /// A release table newer than the embedded one (format of data/releases.toml; same as
    /// `[releases] file`). Not with --from-facts: a snapshot keeps the table it was taken with.
    #[arg(long, value_name = "FILE")]
    pub releases: Option<PathBuf>,
    /// Read the host facts (RAM, CPUs, kernel settings, storage, the postmaster, its
    /// listening sockets, the firewall) on the database host over SSH (same as `[host]
    /// ssh`), e.g. ssh://root@db1 or ssh://postgres@10.0.0.5:2222. Uses the system ssh
    /// with BatchMode (keys or an agent, never a password prompt) and ~/.ssh/config. The
    /// firewall needs root there (or `sudo -n`); the postmaster's sockets the postgres
    /// user or root. Also allowed for a local server. Without it, a remote server's host
    /// facts are not collected.
    #[arg(long = "host", value_name = "ssh://[USER@]HOST[:PORT]", value_parser = crate::collect::remote::SshTargetParser)]
    pub host: Option<crate::collect::remote::SshTarget>,
    /// An ssh_config(5) option for that connection, KEY=VALUE, passed as `ssh -o`
    /// (repeatable; added before `[host] ssh_options`, so a flag wins), e.g.
    /// IdentityFile=/root/.ssh/audit_ed25519.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE", value_parser = crate::collect::remote::check_ssh_option)]
    pub ssh_options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 1 on NO-GO only.
    NoGo,
    /// Exit 1 on NO-GO and on GO WITH RESERVATIONS.
    Reservations,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Evaluate a snapshot written by `pgready facts` instead of connecting.
    #[arg(long, value_name = "FILE", conflicts_with = "conninfo")]
    pub from_facts: Option<PathBuf>,
    /// The team's pgready.toml (context, overrides, waivers, evidence). Default: ./pgready.toml if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A folder of extra rule files, added to the built-in pack (repeatable).
    #[arg(long, value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Output format; the exit code does not depend on it.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the facts snapshot this audit judged (what `pgready facts` writes).
    #[arg(long, value_name = "FILE", conflicts_with = "from_facts")]
    pub save_facts: Option<PathBuf>,
    /// In the text report, list the passing and not-applicable rules too.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Which decision makes the exit code 1.
    #[arg(long, value_enum, default_value_t = FailOn::NoGo)]
    pub fail_on: FailOn,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Args)]
pub struct FactsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Write the snapshot here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The team's pgready.toml (its evidence and context are part of the snapshot).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A folder of extra rule files (repeatable): the rows of their own queries
    /// (`[rule.query]`) are collected into the snapshot.
    #[arg(long, value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Args)]
pub struct RunbooksArgs {
    #[command(subcommand)]
    pub command: RunbooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunbooksCommand {
    /// Write the missing runbooks into DIR as templates filled with this server's facts
    /// (version, port, data directory, archiving, backup tool, replication). Existing files
    /// are never overwritten; `last_reviewed` is left empty for the team to set.
    Init(RunbooksInitArgs),
}

#[derive(Debug, Args)]
pub struct RunbooksInitArgs {
    /// The runbook folder (created when missing).
    pub dir: PathBuf,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The team's pgready.toml (`[runbooks.required]` ids, backup settings).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Output of `pgready tune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TuneFormat {
    /// `ALTER SYSTEM SET …;` statements, to paste into psql.
    Sql,
    /// A postgresql.conf fragment (for a conf.d include file).
    Conf,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Recommend from a snapshot written by `pgready facts` instead of connecting.
    #[arg(long, value_name = "FILE", conflicts_with = "conninfo")]
    pub from_facts: Option<PathBuf>,
    /// The team's pgready.toml (context and rule parameters). Default: ./pgready.toml if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A folder of extra rule files, added to the built-in pack (repeatable).
    #[arg(long, value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = TuneFormat::Sql)]
    pub format: TuneFormat,
    /// Print every recommended setting, not only those of failing rules.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List every rule (id, pillar, severity, level, checklist items, title).
    List {
        /// Extra rule folders to load and list too.
        #[arg(long, value_name = "DIR")]
        rules: Vec<PathBuf>,
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Explain one rule: what it checks, why, how to fix it, references.
    Show {
        /// The rule id, e.g. sec.auth.password_encryption.
        id: String,
        #[arg(long, value_name = "DIR")]
        rules: Vec<PathBuf>,
    },
    /// Show which rules cover each checklist item, and the items without a rule.
    Coverage {
        #[arg(long, value_name = "DIR")]
        rules: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RestoreTestArgs {
    /// The audited server (read-only session: its system identifier and current WAL position).
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The pgready.toml the evidence entry is appended to (default ./pgready.toml, created
    /// when missing); its `[backup]` section names the tool too.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder in which a new scratch folder is made (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Restore this backup set (its label) instead of the newest, to its consistent point.
    #[arg(long, value_name = "LABEL")]
    pub set: Option<String>,
    /// Recover to this point in time (e.g. "2026-11-20 14:00:00+00") instead of the end of the archive.
    #[arg(long, value_name = "TIME", conflicts_with = "set")]
    pub target_time: Option<String>,
    /// Who signs the evidence entry off (default: the OS user).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// OS user that runs the restore and the scratch server when pgready runs as root
    /// (default: pgready, created when missing, as scripts/pg-sandbox does).
    #[arg(long, value_name = "USER")]
    pub os_user: Option<String>,
    /// Seconds the restore and recovery may take before the test is declared failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub timeout: u64,
    #[command(flatten)]
    pub sources: SourceArgs,
}
