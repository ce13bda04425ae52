//! `plx-init`: what runs in a Polyaxon job's init container.
//!
//! Exit codes: 0 success, 1 the input or the data is wrong (or unreachable), 2 usage, I/O or
//! configuration error.

mod artifacts;
mod check;
mod env;
mod fswatch;
mod progress;
mod upload;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "plx-init",
    version,
    about = "Polyaxon connections: validate catalogs and jobs, check connections, pull data into the pod"
)]
struct Cli {
    /// Log lines as text or JSON (level from PLX_LOG, e.g. `PLX_LOG=debug`).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate connection catalogs and jobs; every problem is reported, with its path and a fix.
    Validate(validate::Args),
    /// Test a connection for real (HeadBucket and one listing) and say where each setting came from.
    Check(check::Args),
    /// Write an AWS shared config and credentials profile for a connection, for boto3, the AWS CLI and other SDKs.
    Env(env::Args),
    /// Pull a connection's files and directories into the pod; every failure is an exit 1.
    Artifacts(artifacts::Args),
    /// Send a local file or directory to a connection (a job's outputs); every failure is an exit 1.
    Upload(upload::Args),
    /// Polyaxon's initializer commands, for an init image whose command points here unchanged.
    #[command(subcommand)]
    Initializer(Initializer),
}

#[derive(Subcommand)]
enum Initializer {
    /// `polyaxon initializer path`: pull one file or directory of a connection.
    Path(artifacts::InitializerPath),
    /// `polyaxon initializer fswatch`: write the file-watcher state for a restored tree.
    Fswatch(fswatch::Args),
}

fn main() -> ExitCode {
    if let Some(code) = shell().or_else(polyaxon) {
        return code;
    }
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
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Check(args) => on_worker(async move { check::run(&args).await }),
        Command::Env(args) => env::run(&args),
        Command::Artifacts(args) => {
            // With `--log-format json`, final summaries are log events too, for log pipelines.
            let json = matches!(cli.log_format, LogFormat::Json);
            on_worker(async move { artifacts::run(&args, json).await })
        }
        Command::Upload(args) => on_worker(async move { upload::run(&args).await }),
        Command::Initializer(Initializer::Path(args)) => {
            on_worker(async move { artifacts::initializer_path(&args).await })
        }
        Command::Initializer(Initializer::Fswatch(args)) => fswatch::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("plx-init: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The shell of the images, where /bin/sh is this binary. Polyaxon runs its generated init
/// script with `/bin/sh -c`, and a plain shell exits with the status of the script's last step
/// only: a pull that failed earlier would start the job without its data. So, called as `sh`,
/// this runs the real shell with `-e`, and the first failing step fails the script with its exit
/// code. The real shell is `PLX_SHELL` (the layered image's own dash), else busybox's (the
/// scratch image).
fn shell() -> Option<ExitCode> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    if std::path::Path::new(&argv0).file_name()? != "sh" {
        return None;
    }
    let real = std::env::var_os("PLX_SHELL").unwrap_or_else(|| "/bin/busybox".into());
    let error = std::process::Command::new(&real)
        .arg0("sh")
        .arg("-e")
        .args(args)
        .exec();
    eprintln!(
        "plx-init: cannot run {} as the shell: {error}",
        std::path::Path::new(&real).display()
    );
    Some(ExitCode::from(2))
}

/// Called as `polyaxon` (the images' `polyaxon` is this binary): plx-init runs what it does
/// better, `initializer path` for s3, host_path and volume_claim connections and `initializer
/// fswatch`, and hands every other command to Polyaxon's own CLI unchanged (same arguments,
/// environment, output and exit code) where the layered image names it in `PLX_POLYAXON_CLI`.
/// The scratch image has no Polyaxon CLI: there such a command is exit 2, naming the image that
/// runs it.
fn polyaxon() -> Option<ExitCode> {
    use std::os::unix::process::CommandExt;
    let args: Vec<String> = std::env::args().collect();
    if std::path::Path::new(args.first()?).file_name()? != "polyaxon" {
        return None;
    }
    let words = &args[1..];
    if plx_connections::runs_itself(words) {
        return None;
    }
    let command = std::iter::once("polyaxon")
        .chain(
            words
                .iter()
                .take_while(|word| !word.starts_with('-'))
                .take(2)
                .map(String::as_str),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let Some(cli) = std::env::var_os("PLX_POLYAXON_CLI") else {
        eprintln!(
            "plx-init: `{command}` is Polyaxon's own command, which the plx-init image does not run (it runs `polyaxon initializer path` for s3, host_path and volume_claim connections and `polyaxon initializer fswatch`); run this container with the layered image plx-init-polyaxon (Polyaxon's `init.image`) or Polyaxon's own init image"
        );
        return Some(ExitCode::from(2));
    };
    let error = std::process::Command::new(&cli)
        .arg0("polyaxon")
        .args(words)
        .exec();
    eprintln!(
        "plx-init: cannot run Polyaxon's CLI {} for `{command}`: {error}",
        std::path::Path::new(&cli).display()
    );
    Some(ExitCode::from(2))
}

/// Runs `task` as a task of the runtime, not on this thread. Spawned beside the HTTP
/// connections' tasks, a request's wake-ups stay on one worker instead of crossing to a thread
/// outside the runtime and back, which costs CPU (`docs/tuning.md`, "Figures behind the code").
fn on_worker<F>(task: F) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(runtime.spawn(task))?
}

fn init_logging(format: LogFormat) {
    // The SDK's own warnings (a missing credential source's Debug dump, a checksum it skipped)
    // are its internals: plx-init says what failed in a sentence of its own. `PLX_LOG=debug`
    // shows them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLX_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,plx_init=info,aws_config=off,aws_runtime=off,aws_sdk_s3=off,aws_sdk_sts=off,aws_smithy_runtime=off,aws_smithy_http_client=off",
        )
    });
    // Colour only on a terminal: `kubectl logs` and log pipelines show escapes as garbage.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
