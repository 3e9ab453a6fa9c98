//! The thin shell around the pure core: read inputs, run the pipeline, pick the exit code.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{
    AuditArgs, Cli, Command, ConnArgs, ContextArgs, FactsArgs, FailOn, RulesCommand, SourceArgs,
};
use crate::config::{Config, ContextConfig};
use crate::facts::Facts;
use crate::report::{Format, Report};
use crate::rules::{LoadError, RulePack};
use crate::target::{SessionOptions, Target};

/// Why a run stopped before a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input: usage, configuration, rules, facts file (exit 2).
    #[error("{0}")]
    Input(String),
    /// The server could not be audited (exit 3).
    #[error("{0}")]
    Audit(String),
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        Failure::Input(e.to_string())
    }
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Input(_) => ExitCode::from(2),
            Failure::Audit(_) => ExitCode::from(3),
        }
    }
}

fn session_options(c: &ConnArgs) -> SessionOptions {
    SessionOptions {
        connect_timeout: Duration::from_secs(c.connect_timeout),
        statement_timeout: Duration::from_secs(c.statement_timeout),
        ..SessionOptions::default()
    }
}

fn context_flags(c: &ContextArgs) -> ContextConfig {
    ContextConfig {
        size: c.size,
        criticality: c.criticality,
        deployment: c.deployment,
        workload: c.workload,
        storage: c.storage,
        ram: c.ram,
        cpus: c.cpus,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Audit(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn collect_live(
    conn: &ConnArgs,
    config: &Config,
    ctx: &ContextArgs,
    sources: &SourceArgs,
    queries: &[crate::collect::postgres::queries::UserQuery],
) -> Result<Facts, Failure> {
    let target =
        Target::resolve(conn.conninfo.as_deref()).map_err(|e| Failure::Input(e.to_string()))?;
    crate::collect::docs::check_inputs(sources, config).map_err(Failure::Input)?;
    crate::collect::monitoring::check_inputs(sources, config).map_err(Failure::Input)?;
    crate::collect::pgbouncer::console(sources, config).map_err(Failure::Input)?;
    crate::releases::load(sources, config).map_err(Failure::Input)?;
    let opts = session_options(conn);
    runtime()?
        .block_on(crate::collect::collect(
            &target,
            &opts,
            &crate::collect::Inputs {
                config,
                context: &context_flags(ctx),
                sources,
                queries,
            },
        ))
        .map_err(|e| Failure::Audit(e.to_string()))
}

/// Read a snapshot written by `pgready facts`.
pub fn read_facts(path: &Path) -> Result<Facts, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Input(format!(
            "cannot read facts file {}: {e} (write one with `pgready facts CONNINFO -o FILE`)",
            path.display()
        ))
    })?;
    let facts: Facts = serde_json::from_str(&text).map_err(|e| {
        Failure::Input(format!(
            "{}:{}:{}: not a pgready facts file: {e} (write one with `pgready facts CONNINFO -o FILE`)",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    if facts.schema_version > crate::facts::FACTS_SCHEMA_VERSION {
        return Err(Failure::Input(format!(
            "{}: facts schema version {} is newer than this pgready understands ({}); upgrade pgready",
            path.display(),
            facts.schema_version,
            crate::facts::FACTS_SCHEMA_VERSION
        )));
    }
    Ok(facts)
}

/// Evaluate and judge a snapshot.
pub fn build_report(pack: &RulePack, facts: &Facts, config: &Config) -> Report {
    let findings = crate::evaluate::evaluate(pack, facts, config);
    let j = crate::judge::judge(&findings, &pack.verdict, config.verdict.slightly_below);
    Report::new(facts, findings, j)
}

fn audit(a: &AuditArgs) -> Result<ExitCode, Failure> {
    // Everything the user wrote is validated before any connection.
    let pack = crate::rules::load(&a.rules)?;
    let config = Config::load(a.config.as_deref())?;
    config.validate(&pack)?;
    if a.from_facts.is_some() && a.sources.releases.is_some() {
        return Err(Failure::Input(
            "--releases cannot be used with --from-facts: a snapshot is judged with the release \
             table it was collected with (collect again with `pgready facts … --releases FILE`)"
                .to_string(),
        ));
    }
    if a.from_facts.is_some() && a.sources.runbooks.is_some() {
        return Err(Failure::Input(
            "--runbooks cannot be used with --from-facts: a snapshot is judged with the runbook \
             folder as it was read when it was collected (collect again with `pgready facts … \
             --runbooks DIR`)"
                .to_string(),
        ));
    }
    let facts = match &a.from_facts {
        Some(path) => read_facts(path)?,
        None => collect_live(&a.conn, &config, &a.context, &a.sources, &pack.queries())?,
    };
    if let Some(path) = &a.save_facts {
        write_facts(&facts, Some(path))?;
    }
    let report = build_report(&pack, &facts, &config);
    let fail_on_reservations = a.fail_on == FailOn::Reservations;
    let out = match a.format {
        Format::Json => crate::report::json::render(&report),
        Format::Text => crate::report::text::render(
            &report,
            &crate::report::text::Options {
                verbose: a.verbose,
                ..crate::report::text::Options::detect()
            },
        ),
        Format::Junit => crate::report::junit::render(&report, fail_on_reservations),
        Format::Sarif => crate::report::sarif::render(&report, &pack),
        Format::Markdown => crate::report::markdown::render(&report),
        Format::Html => crate::report::html::render(&report),
        Format::Prometheus => crate::report::prometheus::render(&report),
    };
    println!("{out}");
    Ok(if report.fails(fail_on_reservations) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn facts(a: &FactsArgs) -> Result<ExitCode, Failure> {
    // The rule pack is loaded for its queries (`[rule.query]`), whose rows the snapshot keeps.
    let pack = crate::rules::load(&a.rules)?;
    let config = Config::load(a.config.as_deref())?;
    let facts = collect_live(&a.conn, &config, &a.context, &a.sources, &pack.queries())?;
    write_facts(&facts, a.output.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Write a snapshot as pretty JSON to `path`, or stdout.
fn write_facts(facts: &Facts, path: Option<&Path>) -> Result<(), Failure> {
    let json = serde_json::to_string_pretty(facts)
        .map_err(|e| Failure::Input(format!("cannot serialise the facts: {e}")))?;
    match path {
        Some(path) => std::fs::write(path, json + "\n")
            .map_err(|e| Failure::Input(format!("cannot write {}: {e}", path.display()))),
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

fn rules(cmd: &RulesCommand) -> Result<ExitCode, Failure> {
    match cmd {
        RulesCommand::List { rules, format } => {
            let pack = crate::rules::load(rules)?;
            println!("{}", crate::report::rules::list(&pack, *format));
        }
        RulesCommand::Show { id, rules } => {
            let pack = crate::rules::load(rules)?;
            let Some(rule) = pack.get(id) else {
                let close: Vec<&str> = pack
                    .rules
                    .iter()
                    .map(|r| r.id.as_str())
                    .filter(|r| {
                        r.contains(id.as_str()) || id.contains(r.rsplit('.').next().unwrap_or(r))
                    })
                    .take(5)
                    .collect();
                let hint = if close.is_empty() {
                    "see `pgready rules list`".to_string()
                } else {
                    format!("did you mean {}?", close.join(", "))
                };
                return Err(Failure::Input(format!("no rule `{id}` ({hint})")));
            };
            println!("{}", crate::report::rules::show(rule, &pack));
        }
        RulesCommand::Coverage { rules } => {
            let pack = crate::rules::load(rules)?;
            println!("{}", crate::report::rules::coverage(&pack));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run a parsed command line.
pub fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    match &cli.command {
        Command::Audit(a) => audit(a),
        Command::Facts(a) => facts(a),
        Command::Rules(r) => rules(&r.command),
        Command::Tune(t) => crate::tune::run(t),
        Command::Runbooks(r) => crate::runbooks::run(&r.command),
        Command::RestoreTest(r) => crate::restore_test::run(r),
    }
}
