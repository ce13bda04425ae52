//! `plx-init upload`: send a local file or directory to a connection, for outputs a job leaves
//! behind. Every request carries the CRC32C of its bytes, which the store checks (one that knows
//! no checksums ignores it); any failure is exit 1.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use plx_connections::Kind;
use plx_credentials::{Environment, S3Settings};
use plx_transfer::Config;

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
    let catalog = crate::catalog::load(args.catalog.as_deref(), &env)?;
    let connection = crate::catalog::connection(
        &catalog,
        args.connection.as_deref(),
        "no --connection and the catalog has no artifacts store",
    )?;
    if connection.kind != Kind::S3 {
        anyhow::bail!(
            "connection `{}` is of kind {}; plx-init uploads to s3 connections only",
            connection.name,
            connection.kind
        );
    }
    if !args.source.exists() {
        anyhow::bail!("{} does not exist", args.source.display());
    }
    let settings = S3Settings::resolve(connection, &env)?;
    let client = plx_credentials::client(&settings).await?;
    let prefix = [settings.prefix.as_str(), args.to.trim_matches('/')]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let config = Config {
        requests: args.workers.unwrap_or(Config::default().requests),
        ..Config::default()
    };
    let sent = plx_transfer::upload(
        &client,
        &settings.bucket,
        &prefix,
        &args.source,
        &config,
        &None,
    )
    .await;
    let target = format!("s3://{}/{prefix}", settings.bucket);
    let (summary, failures) = match sent {
        Ok(summary) => (summary, Vec::new()),
        Err(error) => (*error.summary, error.failures),
    };
    println!(
        "{}: {} objects, {} bytes, {} retried to {target} in {:.1} s ({:.1} MB/s)",
        connection.name,
        summary.objects,
        summary.bytes,
        summary.retried,
        summary.elapsed.as_secs_f64(),
        summary.throughput() / 1e6
    );
    for failure in &failures {
        eprintln!("  {failure}");
    }
    if let Some(file) = &args.summary {
        let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
        let json = [plx_transfer::Record {
            version: plx_transfer::Record::VERSION,
            connection: connection.name.clone(),
            destination: None,
            target: Some(target.clone()),
            ok: failures.is_empty(),
            summary: summary.clone(),
            failures,
        }];
        std::fs::write(file, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("plx-init: {}: {} failed", connection.name, failures.len());
        ExitCode::from(1)
    })
}
