//! `plx-init check NAME`: tests a connection for real and says why it fails: an s3 connection
//! with HeadBucket and one listing, a host_path or volume_claim connection by reading its mount
//! (`plx_pull::check`).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use plx_credentials::Environment;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The connection's name.
    name: String,
    /// A catalog file (any form); by default the pod's POLYAXON_CONNECTIONS_CATALOG.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Seconds to wait for each request before giving up.
    #[arg(long, default_value_t = 20, value_name = "SECONDS")]
    timeout: u64,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let catalog = plx_pull::catalog::load(args.catalog.as_deref(), &env)?;
    let connection = catalog.find(&args.name)?;
    let timeout = Duration::from_secs(args.timeout);
    let verdict = plx_pull::check(connection, &env, timeout, |about| print!("{about}")).await?;
    match verdict {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(line) => {
            println!("failed: {line}");
            Ok(ExitCode::from(1))
        }
    }
}
