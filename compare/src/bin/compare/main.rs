//! The `compare` CLI: argument parsing and output around the library.
//! Exit codes: 0 success (for `report` with a gate: ready), 1 gate not
//! ready, 2 usage or runtime error.

mod args;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => commands::replay(args).await,
        Command::Events(args) => commands::events(args).await,
        Command::Report(args) => commands::report(args),
        Command::LearnNoise(args) => commands::learn_noise(args),
        Command::Diff(args) => commands::diff(args),
        Command::CheckRules(args) => commands::check_rules(&args.file),
    }
}
