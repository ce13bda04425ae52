//! `plx-init`: what runs in a Polyaxon job's init container.
//!
//! Exit codes: 0 success, 1 the input or the data is wrong, 2 usage, I/O or configuration error.

mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "plx-init",
    version,
    about = "Polyaxon connections: validate catalogs and jobs, pull data into the pod"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate connection catalogs and jobs; every problem is reported, with its path and a fix.
    Validate(validate::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap's help and version are successes; everything else is a usage error.
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("plx-init: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
