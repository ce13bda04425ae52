//! `plx-init upload`: send a local file or directory to a connection, for outputs a job leaves
//! behind. Every request carries the CRC32C of its bytes, which the store checks (one that knows
//! no checksums ignores it); any failure is exit 1.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use plx_credentials::Environment;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The connection to send to; the artifacts store when absent.
    #[arg(long)]
    connection: Option<String>,
    /// The most requests in flight (256 by default, within a memory bound that counts each by
    /// its body). Below it an upload finds how many it needs, as a pull does.
    #[arg(long)]
    workers: Option<usize>,
    /// A catalog file (any form); by default the pod's POLYAXON_CONNECTIONS_CATALOG.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// The file or directory to send.
    source: PathBuf,
    /// Where under the connection's bucket and prefix (a directory's files keep their paths).
    #[arg(default_value = "")]
    to: String,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let catalog = plx_pull::catalog::load(args.catalog.as_deref(), &env)?;
    let connection = plx_pull::catalog::connection(
        &catalog,
        args.connection.as_deref(),
        "no --connection and the catalog has no artifacts store",
    )?;
    let sent = plx_pull::upload(
        connection,
        &env,
        &args.source,
        &args.to,
        args.workers,
        &None,
    )
    .await?;
    let (summary, failures) = match &sent.result {
        Ok(summary) => (summary.clone(), Vec::new()),
        Err(error) => ((*error.summary).clone(), error.failures.clone()),
    };
    println!(
        "{}: {} objects, {} bytes, {} retried to {} in {:.1} s ({:.1} MB/s)",
        sent.connection,
        summary.objects,
        summary.bytes,
        summary.retried,
        sent.target,
        summary.elapsed.as_secs_f64(),
        summary.throughput() / 1e6
    );
    for failure in &failures {
        eprintln!("  {failure}");
    }
    if let Some(file) = &args.summary {
        std::fs::write(file, serde_json::to_vec_pretty(&[sent.record()])?)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("plx-init: {}: {} failed", connection.name, failures.len());
        ExitCode::from(1)
    })
}
