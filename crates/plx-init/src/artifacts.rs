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
use plx_connections::{Connection, Init, Kind, PathEntry, PullMode};
use plx_credentials::{Environment, S3Settings};
use plx_transfer::{Config, Download, Entry};

use crate::{
    manifest::{self, Manifest},
    progress::Progress,
};

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
    #[arg(long, value_name = "SIZE", value_parser = quantity)]
    cache_size: Option<u64>,
    /// Seconds between progress log lines when not on a terminal.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds)]
    progress_every: Duration,
}

/// A size as Kubernetes writes quantities: bytes, or with Ki, Mi, Gi or Ti.
fn quantity(text: &str) -> Result<u64, String> {
    let units = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)];
    let (number, shift) = units
        .iter()
        .find_map(|(unit, shift)| text.strip_suffix(unit).map(|number| (number, *shift)))
        .unwrap_or((text, 0));
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is not a size: bytes, or a number with Ki, Mi, Gi or Ti"))
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds"))
}

/// The final line: on stdout for people, and as a structured log event for log pipelines.
fn report(connection: &str, root: &Path, summary: &plx_transfer::Summary) {
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
    if !crate::JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
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

fn entry(text: &str) -> PathEntry {
    match text.split_once(':') {
        Some((from, to)) => PathEntry::Renamed(from.to_owned(), to.to_owned()),
        None => PathEntry::Same(text.to_owned()),
    }
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let catalog = crate::catalog::load(args.catalog.as_deref(), &env)?;
    let inits: Vec<Init> = match &args.init {
        Some(file) => read_init(file, &catalog)?,
        None => vec![Init {
            artifacts: (!args.files.is_empty() || !args.dirs.is_empty()).then(|| {
                plx_connections::Artifacts {
                    files: (!args.files.is_empty())
                        .then(|| args.files.iter().map(|text| entry(text)).collect()),
                    dirs: (!args.dirs.is_empty())
                        .then(|| args.dirs.iter().map(|text| entry(text)).collect()),
                    workers: args.workers.map(|workers| workers as u32),
                }
            }),
            paths: (!args.paths.is_empty())
                .then(|| args.paths.iter().map(|text| entry(text)).collect()),
            connection: args.connection.clone(),
            path: args.path.clone(),
            ..Init::default()
        }],
    };
    let context_root = env
        .get("POLYAXON_CONTEXT_ROOT")
        .unwrap_or(plx_connections::DEFAULT_CONTEXT_ROOT)
        .to_owned();
    let store = catalog
        .artifacts_store
        .as_ref()
        .map(|store| store.name.clone());
    let how = How::from_env(
        args.manifest.as_deref(),
        args.pin.as_deref(),
        args.cache.as_deref(),
        args.cache_size,
    )?;
    let mut failed = false;
    let mut summaries = Vec::new();
    let mut pulled_objects = Vec::new();
    for init in &inits {
        let connection = crate::catalog::connection(
            &catalog,
            init.connection.as_deref(),
            "the entry names no connection and the catalog has no artifacts store",
        )?;
        let pulls = init.pulls(connection, store.as_deref(), &context_root);
        let workers = init
            .artifacts
            .as_ref()
            .and_then(|artifacts| artifacts.workers)
            .map(|workers| workers as usize)
            .or(args.workers);
        let root = PathBuf::from(init.destination_root(store.as_deref(), &context_root));
        let progress = Progress::start(&connection.name, args.progress_every);
        let pin = how.pinned(connection, &root, None)?;
        let pulled = pull(
            connection,
            &env,
            &root,
            &pulls,
            &Tuning {
                workers,
                verify: !args.no_verify,
                manifest: how.manifest.is_some(),
                pin,
                cache: how.cache.clone(),
            },
            progress.events(),
        )
        .await;
        progress.finish().await;
        let Pulled { result, bucket } = pulled?;
        match result {
            Ok(mut summary) => {
                if let Some(bucket) = bucket {
                    pulled_objects.push(manifest::Pull {
                        connection: connection.name.clone(),
                        bucket,
                        destination: root.display().to_string(),
                        objects: std::mem::take(&mut summary.landed),
                    });
                }
                report(&connection.name, &root, &summary);
                summaries.push(plx_transfer::Record {
                    version: plx_transfer::Record::VERSION,
                    connection: connection.name.clone(),
                    destination: Some(root.display().to_string()),
                    target: None,
                    ok: true,
                    summary,
                    failures: Vec::new(),
                });
            }
            Err(error) => {
                failed = true;
                eprintln!(
                    "plx-init: {}: {} failed:",
                    connection.name,
                    error.failures.len()
                );
                for failure in &error.failures {
                    eprintln!("  {failure}");
                }
                let failures: Vec<String> =
                    error.failures.iter().map(ToString::to_string).collect();
                if crate::JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::error!(connection = connection.name, failed = failures.len(), failures = ?failures, "pull failed");
                }
                summaries.push(plx_transfer::Record {
                    version: plx_transfer::Record::VERSION,
                    connection: connection.name.clone(),
                    destination: Some(root.display().to_string()),
                    target: None,
                    ok: false,
                    summary: *error.summary,
                    failures,
                });
            }
        }
    }
    if let Some(file) = &args.summary {
        std::fs::write(file, serde_json::to_vec_pretty(&summaries)?)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    // Lineage for a run that got its data: a failed pull leaves the manifest as it was.
    if let Some(file) = &how.manifest
        && !failed
    {
        manifest::write(file, pulled_objects)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_init(file: &Path, catalog: &plx_connections::Catalog) -> anyhow::Result<Vec<Init>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // A bare `init:` list is wrapped into a job so the validator's job rules apply to it.
    let value = plx_connections::read_value(&text)
        .map_err(|diagnostic| anyhow::format_err!("{}: {diagnostic}", file.display()))?;
    let job = if value.is_array() {
        serde_json::json!({"run": {"kind": "job", "init": value}})
    } else {
        value
    };
    let report = plx_connections::validate_value(&job, std::slice::from_ref(catalog));
    match report.content {
        Some(plx_connections::Content::Job(sections)) => Ok(sections
            .into_iter()
            .flat_map(|section| section.init)
            .collect()),
        _ => anyhow::bail!(
            "{} is not a valid init section:\n  {}",
            file.display(),
            crate::catalog::errors(&report)
        ),
    }
}

/// The manifest a run writes and the one it pins, as the flags or the environment name them.
struct How {
    manifest: Option<PathBuf>,
    pin: Option<(PathBuf, Manifest)>,
    /// The node cache's directory and size.
    cache: Option<(PathBuf, Option<u64>)>,
}

impl How {
    fn from_env(
        manifest: Option<&Path>,
        pin: Option<&Path>,
        cache: Option<&Path>,
        cache_size: Option<u64>,
    ) -> anyhow::Result<How> {
        let cache_size = match (cache_size, std::env::var("PLX_CACHE_SIZE")) {
            (Some(size), _) => Some(size),
            (None, Ok(text)) if !text.is_empty() => {
                Some(quantity(&text).map_err(|error| anyhow::anyhow!("PLX_CACHE_SIZE: {error}"))?)
            }
            _ => None,
        };
        let cache = manifest::from_env(cache, "PLX_CACHE_DIR").map(|dir| (dir, cache_size));
        let pin = match manifest::from_env(pin, "PLX_PIN") {
            Some(file) => {
                let manifest = Manifest::read(&file)?;
                Some((file, manifest))
            }
            None => None,
        };
        Ok(How {
            manifest: manifest::from_env(manifest, "PLX_MANIFEST"),
            pin,
            cache,
        })
    }

    /// The pinned objects for `connection` into `root` (those under `under` only, when given),
    /// or None without a pin; an error (exit 2) when the manifest cannot pin this pull.
    fn pinned(
        &self,
        connection: &Connection,
        root: &Path,
        under: Option<&str>,
    ) -> anyhow::Result<Option<Pin>> {
        let Some((file, manifest)) = &self.pin else {
            return Ok(None);
        };
        if connection.kind != Kind::S3 {
            anyhow::bail!(
                "connection `{}` is of kind {}: a manifest pins S3 objects; pull it without --pin (PLX_PIN)",
                connection.name,
                connection.kind
            );
        }
        let pull = manifest.pinned(file, &connection.name, root)?;
        let objects: Vec<plx_transfer::Pinned> = pull
            .objects
            .iter()
            .filter(|object| {
                under.is_none_or(|under| {
                    under.is_empty()
                        || object.path == under
                        || object.path.starts_with(&format!("{under}/"))
                })
            })
            .cloned()
            .collect();
        if objects.is_empty() {
            anyhow::bail!(
                "the manifest {} pins nothing of connection `{}` under {}",
                file.display(),
                connection.name,
                root.join(under.unwrap_or_default()).display()
            );
        }
        Ok(Some(Pin {
            bucket: pull.bucket.clone(),
            objects,
        }))
    }
}

/// What a pin fetches for one pull.
struct Pin {
    bucket: String,
    objects: Vec<plx_transfer::Pinned>,
}

/// How a pull runs: its caps, checks, and whether it records or follows a manifest.
struct Tuning {
    workers: Option<usize>,
    verify: bool,
    manifest: bool,
    pin: Option<Pin>,
    cache: Option<(PathBuf, Option<u64>)>,
}

/// A pull's outcome, and the bucket an S3 pull read (for the manifest).
struct Pulled {
    result: Result<plx_transfer::Summary, plx_transfer::Error>,
    bucket: Option<String>,
}

/// Pulls into `root`: the outer error is configuration (exit 2), the inner one data (exit 1).
async fn pull(
    connection: &Connection,
    env: &Environment,
    root: &Path,
    pulls: &[plx_connections::Pull],
    tuning: &Tuning,
    events: &plx_transfer::Events,
) -> anyhow::Result<Pulled> {
    // `--workers` caps requests in flight (a download finds how many it needs below it) and
    // the objects a mount copy handles at once.
    let config = Config {
        requests: tuning.workers.unwrap_or(Config::default().requests),
        concurrency: tuning.workers.unwrap_or(Config::default().concurrency),
        verify: tuning.verify,
        ..Config::default()
    };
    match connection.kind {
        Kind::S3 => {}
        Kind::HostPath | Kind::VolumeClaim => {
            let source = PathBuf::from(connection.store_path().unwrap_or("/"));
            let entries = pulls
                .iter()
                .map(|pull| {
                    let from = Path::new(&pull.source)
                        .strip_prefix(&source)
                        .map(|from| from.display().to_string())
                        .unwrap_or_else(|_| pull.source.clone());
                    let to = relative_to(root, &pull.destination);
                    engine_entry(pull.mode, from, to)
                })
                .collect();
            let request = plx_transfer::Copy {
                source,
                entries,
                ..plx_transfer::Copy::default()
            };
            if tuning.manifest {
                tracing::warn!(
                    "{}: the manifest records S3 objects; a mount's files are not in it",
                    connection.name
                );
            }
            return Ok(Pulled {
                result: plx_transfer::copy(&request, root, &config, events).await,
                bucket: None,
            });
        }
        kind => anyhow::bail!(
            "connection `{}` is of kind {kind}; plx-init pulls from s3, host_path and volume_claim connections (gcs and wasb are not supported yet)",
            connection.name,
        ),
    }
    let settings = S3Settings::resolve(connection, env)?;
    let client = plx_credentials::client(&settings).await?;
    let store = format!("s3://{}", settings.bucket);
    let entries = match &tuning.pin {
        Some(pin) if pin.bucket != settings.bucket => anyhow::bail!(
            "connection `{}` reads bucket `{}`, the manifest pinned objects of bucket `{}`: pin a manifest of this connection",
            connection.name,
            settings.bucket,
            pin.bucket
        ),
        Some(pin) => pin.objects.iter().cloned().map(Entry::Pinned).collect(),
        None => pulls
            .iter()
            .map(|pull| {
                let key = pull
                    .source
                    .strip_prefix(&store)
                    .unwrap_or(&pull.source)
                    .trim_start_matches('/')
                    .to_owned();
                engine_entry(pull.mode, key, relative_to(root, &pull.destination))
            })
            .collect(),
    };
    let cache = tuning
        .cache
        .as_ref()
        .map(|(dir, budget)| plx_transfer::NodeCache {
            dir: dir.clone(),
            store: plx_transfer::store_of(
                settings
                    .endpoint_url
                    .as_ref()
                    .map(|endpoint| endpoint.value.as_str()),
                &settings.region.value,
            ),
            budget: *budget,
        });
    let request = Download {
        bucket: settings.bucket.clone(),
        prefix: String::new(),
        entries,
        manifest: tuning.manifest,
        cache,
        ..Download::default()
    };
    Ok(Pulled {
        result: plx_transfer::download(&client, &request, root, &config, events).await,
        bucket: Some(settings.bucket.clone()),
    })
}

/// A pull as the engine takes it; whether a `paths` entry is a file or a directory is the
/// engine's to find out.
fn engine_entry(mode: PullMode, from: String, to: String) -> Entry {
    match mode {
        PullMode::File => Entry::File { from, to },
        PullMode::Dir => Entry::Dir { from, to },
        PullMode::Check => Entry::Path { from, to },
    }
}

/// `destination` relative to `root`, as the engine wants it.
fn relative_to(root: &Path, destination: &str) -> String {
    Path::new(destination)
        .strip_prefix(root)
        .map(|to| to.display().to_string())
        .unwrap_or_default()
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
    let catalog = crate::catalog::load(None, &env)?;
    let connection = catalog.find(&args.connection_name)?;
    // The parent is the root and the last segment the entry, for files and directories alike:
    // `--check-path` learns which it is only when pulling.
    let (root, to) = match (args.path_to.parent(), args.path_to.file_name()) {
        (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_string_lossy().into_owned()),
        _ => (args.path_to.clone(), String::new()),
    };
    let mode = if args.is_file {
        PullMode::File
    } else if args.check_path {
        PullMode::Check
    } else {
        PullMode::Dir
    };
    let request = plx_connections::Pull {
        source: args.path_from.trim_end_matches('/').to_owned(),
        destination: root.join(&to).display().to_string(),
        mode,
    };
    // Polyaxon's generated command line is fixed: the manifest and the pin come from the
    // container's environment (`init[].container.env`).
    let how = How::from_env(None, None, None, None)?;
    let tuning = Tuning {
        workers: None,
        verify: true,
        manifest: how.manifest.is_some(),
        pin: how.pinned(connection, &root, Some(to.as_str()))?,
        cache: how.cache.clone(),
    };
    let progress = Progress::start(&connection.name, Duration::from_secs(5));
    let pulled = pull(
        connection,
        &env,
        &root,
        std::slice::from_ref(&request),
        &tuning,
        progress.events(),
    )
    .await;
    progress.finish().await;
    let Pulled { result, bucket } = pulled?;
    let pulled = match result {
        // Nothing under the run's prefix: a new run has no outputs to restore yet. Only the
        // restore's own shape (a directory, `--sync-fw`, neither `--is-file` nor `--check-path`)
        // is relaxed; a path a user named stays exit 1 when missing.
        Err(error)
            if args.sync_fw
                && request.mode == PullMode::Dir
                && nothing_under(&error, &request.source) =>
        {
            tracing::info!(source = request.source, "no outputs to restore");
            Ok(*error.summary)
        }
        pulled => pulled,
    };
    if let (Some(file), Some(bucket), Ok(summary)) = (&how.manifest, bucket, &pulled) {
        manifest::write(
            file,
            vec![manifest::Pull {
                connection: connection.name.clone(),
                bucket,
                destination: root.display().to_string(),
                objects: summary.landed.clone(),
            }],
        )?;
    }
    if pulled.is_ok() && args.sync_fw {
        // As in Polyaxon, the state only spares the sidecar work: a failure to write it warns.
        if let Err(error) = crate::fswatch::write(&args.path_to) {
            tracing::warn!("the file-watcher state was not written: {error:#}");
        }
    }
    match pulled {
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

/// Whether `error` says only that nothing exists under `source` itself.
fn nothing_under(error: &plx_transfer::Error, source: &str) -> bool {
    let source = source.trim_end_matches('/');
    !error.failures.is_empty()
        && error.failures.iter().all(|failure| {
            failure.kind == plx_transfer::ErrorKind::NotFound
                && (failure.key.trim_end_matches('/') == source
                    || source.ends_with(&format!("/{}", failure.key.trim_end_matches('/'))))
        })
}
