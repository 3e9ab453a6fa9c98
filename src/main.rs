use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`pgready audit … | head`): Rust ignores SIGPIPE, and println! would then panic.
    // SAFETY: restoring the default disposition of a signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = pgready::cli::Cli::parse();
    match pgready::app::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgready: error: {e}");
            e.exit_code()
        }
    }
}
