use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pgready::cli::Cli::parse();
    match pgready::app::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgready: error: {e}");
            e.exit_code()
        }
    }
}
