//! `plx-init artifacts` and Polyaxon's `initializer path`: pull a connection's data into the pod.
//!
//! Unlike Polyaxon's initializer, every failure (a missing source, `--is-file` on a prefix, an
//! unknown connection, any download error) exits non-zero with the object named.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use plx_connections::{Init, PullMode};
use plx_credentials::Environment;
use plx_pull::{Options, Puller, manifest};

use crate::progress::Progress;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The connection to pull from; the artifacts store when absent.
    #[arg(long)]
    connection: Option<String>,
    /// Objects to pull: `path` or `from:to`.
    #[arg(long = "files", value_name = "F")]
    files: Vec<String>,
    /// Prefixes to pull recursively: `path` or `from:to`.
    #[arg(long = "dirs", value_name = "D")]
    dirs: Vec<String>,
    /// Objects or prefixes, decided when pulling: `path` or `from:to`.
    #[arg(long = "paths", value_name = "P")]
    paths: Vec<String>,
    /// A custom destination root (Polyaxon's `init[].path`).
    #[arg(long, value_name = "DEST")]
    path: Option<String>,
    /// The most requests in flight (Polyaxon defines `workers` and ignores it; this uses it as a
    /// cap: 256 by default, within a memory bound that counts each request by its body). Below
    /// it a pull finds how many it needs: a few dozen for a store nearby, more for one far away.
    #[arg(long)]
    workers: Option<usize>,
    /// Check sizes only, not each object's bytes against the CRC the store keeps or its ETag
    /// (MD5): for data another check covers, where the hashing's CPU matters more (an MD5 costs
    /// about 1.5 s per GiB, a CRC about 0.2 s).
    #[arg(long)]
    no_verify: bool,
    /// The `init:` section of a Polyaxon operation (a YAML list, or an operation/component file).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["connection", "files", "dirs", "paths", "path", "workers"])]
    init: Option<PathBuf>,
    /// A catalog file (any form); by default the pod's POLYAXON_CONNECTIONS_CATALOG.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Record what each S3 pull gave in this JSON file (also PLX_MANIFEST): per object its key,
    /// size, ETag, version id, checksum and local path, with the connection, bucket and
    /// destination; merged with what the file holds, written when the pull succeeds. Keep it
    /// with the run's artifacts as its data lineage.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Pull exactly what this manifest records (also PLX_PIN), in place of the entries: each
    /// object at its recorded version where the bucket keeps versions, else only while its ETag
    /// and size are unchanged (a changed object fails, exit 1, naming what changed).
    #[arg(long, value_name = "FILE")]
    pin: Option<PathBuf>,
    /// A node cache shared by the pods of a node (a hostPath), also PLX_CACHE_DIR: objects this
    /// pod's listing shows unchanged are copied from it, checked again, instead of fetched;
    /// what is fetched is kept there.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// The node cache's size (also PLX_CACHE_SIZE): bytes, or with Ki, Mi, Gi or Ti; least
    /// recently used objects go past it. Half its file system by default.
    #[arg(long, value_name = "SIZE", value_parser = plx_pull::quantity)]
    cache_size: Option<u64>,
    /// Seconds between progress log lines when not on a terminal.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds)]
    progress_every: Duration,
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds"))
}

/// The final line: on stdout for people, and as a structured log event for log pipelines.
fn report(connection: &str, root: &Path, summary: &plx_transfer::Summary, json: bool) {
    let cached = match summary.from_cache.objects {
        0 => String::new(),
        objects => format!(" ({objects} from the node cache)"),
    };
    println!(
        "{connection}: {} objects{cached}, {} bytes, {} skipped, {} retried into {} in {:.1} s ({:.1} MB/s)",
        summary.objects,
        summary.bytes,
        summary.skipped,
        summary.retried,
        root.display(),
        summary.elapsed.as_secs_f64(),
        summary.throughput() / 1e6
    );
    if !json {
        return;
    }
    tracing::info!(
        connection,
        destination = %root.display(),
        objects = summary.objects,
        bytes = summary.bytes,
        skipped = summary.skipped,
        retried = summary.retried,
        from_cache = summary.from_cache.objects,
        unverified = summary.unverified,
        crc_checked = summary.crc_checked,
        seconds = summary.elapsed.as_secs_f64(),
        "pulled"
    );
}

/// Pulls what `args` name; `json`: the final summaries are log events too.
pub(crate) async fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let catalog = plx_pull::catalog::load(args.catalog.as_deref(), &env)?;
    let inits: Vec<Init> = match &args.init {
        Some(file) => plx_pull::catalog::read_init(file, &catalog)?,
        None => vec![Init {
            artifacts: (!args.files.is_empty() || !args.dirs.is_empty()).then(|| {
                plx_connections::Artifacts {
                    files: (!args.files.is_empty()).then(|| {
                        args.files
                            .iter()
                            .map(|text| plx_pull::path_entry(text))
                            .collect()
                    }),
                    dirs: (!args.dirs.is_empty()).then(|| {
                        args.dirs
                            .iter()
                            .map(|text| plx_pull::path_entry(text))
                            .collect()
                    }),
                    workers: args.workers.map(|workers| workers as u32),
                }
            }),
            paths: (!args.paths.is_empty()).then(|| {
                args.paths
                    .iter()
                    .map(|text| plx_pull::path_entry(text))
                    .collect()
            }),
            connection: args.connection.clone(),
            path: args.path.clone(),
            ..Init::default()
        }],
    };
    let options = Options {
        workers: args.workers,
        verify: !args.no_verify,
        ..Options::from_env(
            args.manifest.as_deref(),
            args.pin.as_deref(),
            args.cache.as_deref(),
            args.cache_size,
        )?
    };
    let puller = Puller::new(&catalog, &env);
    let mut failed = false;
    let mut records = Vec::new();
    let mut lineage = Vec::new();
    for init in &inits {
        let connection = puller.connection(init.connection.as_deref())?;
        let progress = Progress::start(&connection.name, args.progress_every);
        let pulled = puller.init(init, &options, progress.events()).await;
        progress.finish().await;
        let pulled = pulled?;
        match &pulled.result {
            Ok(summary) => report(&pulled.connection, &pulled.destination, summary, json),
            Err(error) => {
                failed = true;
                eprintln!(
                    "plx-init: {}: {} failed:",
                    pulled.connection,
                    error.failures.len()
                );
                for failure in &error.failures {
                    eprintln!("  {failure}");
                }
                if json {
                    let failures: Vec<String> =
                        error.failures.iter().map(ToString::to_string).collect();
                    tracing::error!(connection = pulled.connection, failed = failures.len(), failures = ?failures, "pull failed");
                }
            }
        }
        lineage.extend(pulled.lineage());
        records.push(pulled.record());
    }
    if let Some(file) = &args.summary {
        std::fs::write(file, serde_json::to_vec_pretty(&records)?)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    // Lineage for a run that got its data: a failed pull leaves the manifest as it was.
    if let Some(file) = &options.manifest
        && !failed
    {
        manifest::write(file, lineage)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Polyaxon's `polyaxon initializer path` flags, accepted as they are.
#[derive(clap::Args)]
pub(crate) struct InitializerPath {
    #[arg(long = "connection-name")]
    connection_name: String,
    /// Used only in the success message, as in Polyaxon.
    #[arg(long = "connection-kind")]
    connection_kind: Option<String>,
    #[arg(long = "path-from")]
    path_from: String,
    #[arg(long = "path-to")]
    path_to: PathBuf,
    #[arg(long = "is-file")]
    is_file: bool,
    #[arg(long = "check-path")]
    check_path: bool,
    /// Accepted for compatibility: plx-init always fails on errors.
    #[arg(long = "raise-errors")]
    raise_errors: bool,
    /// The run's outputs restore (Polyaxon passes it only there, on a directory): a prefix with
    /// nothing under it is a new run, not missing data, and the file-watcher state (`<context>/artifacts/.fs`)
    /// is written for what landed, so that the sidecar does not upload it again.
    #[arg(long = "sync-fw")]
    sync_fw: bool,
}

pub(crate) async fn initializer_path(args: &InitializerPath) -> anyhow::Result<ExitCode> {
    let _ = args.raise_errors;
    let env = Environment::from_process();
    let catalog = plx_pull::catalog::load(None, &env)?;
    let mode = if args.is_file {
        PullMode::File
    } else if args.check_path {
        PullMode::Check
    } else {
        PullMode::Dir
    };
    // Polyaxon's generated command line is fixed: the manifest, the pin and the node cache come
    // from the container's environment (`init[].container.env`).
    let options = Options::from_env(None, None, None, None)?;
    let puller = Puller::new(&catalog, &env);
    let connection = puller.connection(Some(&args.connection_name))?;
    let progress = Progress::start(&connection.name, Duration::from_secs(5));
    let pulled = puller
        .path(
            &connection.name,
            &args.path_from,
            &args.path_to,
            mode,
            &options,
            progress.events(),
        )
        .await;
    progress.finish().await;
    let mut pulled = pulled?;
    // Nothing under the run's prefix: a new run has no outputs to restore yet. Only the restore's
    // own shape (a directory, `--sync-fw`, neither `--is-file` nor `--check-path`) is relaxed; a
    // path a user named stays exit 1 when missing.
    if args.sync_fw
        && mode == PullMode::Dir
        && pulled.found_nothing_under(args.path_from.trim_end_matches('/'))
        && let Err(error) = &pulled.result
    {
        tracing::info!(source = args.path_from, "no outputs to restore");
        pulled.result = Ok((*error.summary).clone());
    }
    if let (Some(file), Some(lineage)) = (&options.manifest, pulled.lineage()) {
        manifest::write(file, vec![lineage])?;
    }
    if pulled.result.is_ok() && args.sync_fw {
        // As in Polyaxon, the state only spares the sidecar work: a failure to write it warns.
        if let Err(error) = crate::fswatch::write(&args.path_to) {
            tracing::warn!("the file-watcher state was not written: {error:#}");
        }
    }
    match pulled.result {
        Ok(summary) => {
            if summary.from_cache.objects > 0 {
                eprintln!(
                    "plx-init: {}: {} objects from the node cache",
                    connection.name, summary.from_cache.objects
                );
            }
            let kind = args
                .connection_kind
                .clone()
                .unwrap_or_else(|| connection.kind.to_string());
            println!(
                "{kind} path is initialized, path: `{}`",
                args.path_to.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            for failure in &error.failures {
                eprintln!("plx-init: {failure}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
