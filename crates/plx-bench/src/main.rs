//! `plx-bench`: plx-init side by side with the S3 tools users would otherwise pick, on one S3
//! server, in one run. `cargo xtask bench` installs the peers and runs it; see
//! `docs/benchmarks.md` for the results and how to read them.

mod measure;
mod net;
mod peers;
mod python;
mod report;
mod sweep;
#[cfg(feature = "tm")]
mod tm;
mod workload;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use plx_testkit::{Backend, S3Server};

use crate::{
    measure::Measured,
    peers::{Peer, Tool},
    workload::Workload,
};

#[derive(Parser)]
#[command(
    name = "plx-bench",
    about = "plx-init side by side with other S3 tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start: the size of the larger variant costs nothing"
)]
#[derive(Subcommand)]
enum Command {
    /// Seed the workloads once, run every tool on each in rotated order, check every run.
    Run(RunArgs),
    /// The aws-s3-transfer-manager peer, for one spec file.
    Tm { spec: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Small W1, W3 and W5 against s3s, one round, correctness only.
    #[arg(long)]
    quick: bool,
    /// The S3 server: s3s or garage.
    #[arg(long, default_value = "garage")]
    server: String,
    /// Only these workloads (W1 … W6).
    #[arg(long = "workload")]
    workloads: Vec<String>,
    /// Only these tools (by name, as in the table: plx-init, s5cmd, rclone, …).
    #[arg(long = "tool")]
    tools: Vec<String>,
    /// Also through the latency proxy, this many milliseconds away (several: `--latency 5,20,50`;
    /// 0 is the proxy alone). W3 also runs with each connection capped at `--bandwidth`.
    #[arg(long, value_delimiter = ',')]
    latency: Vec<u64>,
    /// The per-connection cap for W3 behind the proxy, in MB/s (S3 gives about 90).
    #[arg(long, default_value = "90")]
    bandwidth: u64,
    /// The CPU time each tool may use, in CPUs (a cgroup quota): 1, as Polyaxon's init container
    /// is limited (`limits: {cpu: 1}`); 0 for no limit. Not for `--quick`, a correctness check.
    #[arg(long, default_value = "1")]
    cpus: f64,
    /// Measured rounds per workload, after a warm-up.
    #[arg(long, default_value = "3")]
    rounds: usize,
    /// Instead of the tools side by side: a sweep of this many plx-init runs per download
    /// workload with one node cache, each against the first (the report's `sweep` section).
    #[arg(long)]
    sweep: Option<usize>,
    /// Instead of the tools side by side: the Python readers (ours, Polyaxon's fs, boto3,
    /// obstore, the Mountpoint client) on W1 and W2, with this venv's Python, which has them all.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Scratch space on disk: the server's data and the workloads' local copies.
    #[arg(long)]
    work: PathBuf,
    /// Where downloads land (tmpfs by default, to measure client and server, not the disk).
    #[arg(long, default_value = "/dev/shm/plx-bench")]
    landing: PathBuf,
    /// The Markdown report to update (its transfer section) and the chart beside it.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long)]
    plx_init: PathBuf,
    #[arg(long)]
    venv: PathBuf,
    #[arg(long)]
    polyaxon: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Tm { spec } => tm(&spec),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plx-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "tm")]
fn tm(spec: &Path) -> anyhow::Result<()> {
    let spec: peers::Spec = serde_json::from_slice(&std::fs::read(spec)?)?;
    tokio::runtime::Runtime::new()?.block_on(tm::run(&spec))
}

#[cfg(not(feature = "tm"))]
fn tm(_: &Path) -> anyhow::Result<()> {
    bail!("built without the transfer-manager peer (feature `tm`)")
}

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub workload: &'static str,
    /// The way to the server (`net::Path::label`).
    pub network: String,
    pub peer: String,
    pub round: usize,
    /// plx-init's in-flight controller, step by step (from its summary).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<plx_transfer::Step>,
    #[serde(flatten)]
    pub measured: Measured,
}

/// The bucket every workload is seeded into.
const BUCKET: &str = "bench";

/// What every measured run shares: the server, its process, and where files go.
struct Bench<'a> {
    args: &'a RunArgs,
    runtime: &'a tokio::runtime::Runtime,
    server: &'a S3Server,
    ctx: peers::Context,
    pid: u32,
    timeout: Duration,
    /// The CPU limit every tool runs under (`--cpus`).
    cpus: Option<measure::Cpus>,
    source: PathBuf,
    scratch: PathBuf,
}

impl Bench<'_> {
    /// One run of one tool, within the run's CPU limit, with the server's CPU around it.
    fn measure(
        &self,
        command: std::process::Command,
        scratch: &Path,
    ) -> anyhow::Result<(measure::Measured, String)> {
        measure::run(command, self.cpus.as_ref(), self.pid, self.timeout, scratch)
    }

    /// `path` opened (its latency proxy started, where it has one), and the tools' context on it.
    fn open(&self, path: &net::Path) -> anyhow::Result<(net::Route, peers::Context)> {
        let route = self.runtime.block_on(net::Route::open(path, self.server))?;
        let ctx = peers::Context {
            endpoint: route.endpoint.clone(),
            ..self.ctx.clone()
        };
        Ok((route, ctx))
    }
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    // The server's container is removed when dropped, which needs the runtime.
    let _entered = runtime.enter();
    let backend = match args.server.as_str() {
        "s3s" => Backend::S3s,
        "garage" => Backend::Garage,
        other => bail!("--server {other}: use s3s or garage"),
    };
    let (workloads, rows) = select(args);
    let server_dir = args.work.join("server");
    let _ = std::fs::remove_dir_all(&server_dir);
    // Apart for --quick: its workloads are smaller versions under the same prefixes.
    let source = args
        .work
        .join(if args.quick { "source-quick" } else { "source" });
    let scratch = args.work.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    std::fs::create_dir_all(&source)?;

    // A correctness check runs unlimited; a measured run as the tools run in the pod.
    let cpus = (!args.quick && args.cpus > 0.0)
        .then(|| measure::Cpus::new(args.cpus))
        .transpose()?;
    eprintln!("plx-bench: starting {backend:?}");
    let server = runtime.block_on(S3Server::start_with(backend, Some(&server_dir)))?;
    runtime.block_on(server.create_bucket(BUCKET))?;
    let bench = Bench {
        args,
        runtime: &runtime,
        server: &server,
        ctx: peers::Context {
            endpoint: server.endpoint.clone(),
            bucket: BUCKET.to_owned(),
            region: server.region.clone(),
            access_key: server.access_key.clone(),
            secret_key: server.secret_key.clone(),
            plx_init: args.plx_init.clone(),
            venv: args.venv.clone(),
            polyaxon: args.polyaxon.clone(),
            bench: std::env::current_exe()?,
            scripts: Path::new(env!("CARGO_MANIFEST_DIR")).join("peers"),
            tm: cfg!(feature = "tm"),
            s3s: backend == Backend::S3s,
        },
        pid: container_pid(server.container_id())?,
        timeout: Duration::from_secs(if args.quick { 120 } else { 900 }),
        cpus,
        source,
        scratch,
    };
    if let Some(python) = &args.python {
        return python::run(&bench, &workloads, python);
    }
    if let Some(runs) = args.sweep {
        let mut sweeps = Vec::new();
        for workload in workloads.iter().filter(|workload| !workload.upload) {
            eprintln!(
                "plx-bench: {} ({} runs, one node cache)",
                workload.name, runs
            );
            let manifest = seeded(&bench, workload)?;
            let done = sweep::sweep(&bench, &bench.ctx, workload, &manifest, runs)?;
            sweeps.push((workload.name, workload.objects.len(), done));
        }
        let _ = std::fs::remove_dir_all(&args.landing);
        if let Some(path) = &args.report {
            sweep::write(path, &format!("{backend:?}"), &sweeps)?;
        }
        let invalid = sweeps
            .iter()
            .flat_map(|(_, _, runs)| runs)
            .filter(|run| run.measured.invalid.is_some())
            .count();
        if invalid > 0 {
            bail!("{invalid} sweep runs were invalid");
        }
        return Ok(());
    }
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for workload in &workloads {
        workload_rounds(&bench, workload, &rows, &mut samples, &mut skipped)?;
    }
    let _ = std::fs::remove_dir_all(&args.landing);
    finish(
        &bench,
        format!("{backend:?}"),
        &workloads,
        &rows,
        &samples,
        &skipped,
    )
}

/// The workloads and tools asked for (`--workload`, `--tool`; `--quick` runs the defaults only).
fn select(args: &RunArgs) -> (Vec<workload::Workload>, Vec<Peer>) {
    let mut workloads = workload::all(args.quick);
    if !args.workloads.is_empty() {
        workloads.retain(|workload| {
            args.workloads
                .iter()
                .any(|name| name.eq_ignore_ascii_case(workload.name))
        });
    }
    let mut rows = Peer::all();
    if !args.tools.is_empty() {
        rows.retain(|peer| {
            peer.tool == Tool::PlxInit
                || args
                    .tools
                    .iter()
                    .any(|name| peer.tool.name().starts_with(name.as_str()))
        });
    }
    if args.quick {
        rows.retain(|peer| !peer.tuned);
    }
    (workloads, rows)
}

/// One workload: seeded, then over each path (straight, then through the latency proxy) every
/// tool in rotated order each round, after a warm-up run of plx-init that is not counted (the
/// server's caches start the same for all).
fn workload_rounds<'w>(
    bench: &Bench<'_>,
    workload: &'w workload::Workload,
    rows: &[Peer],
    samples: &mut Vec<Sample>,
    skipped: &mut Vec<(&'w str, Peer)>,
) -> anyhow::Result<()> {
    let args = bench.args;
    eprintln!("plx-bench: {}: {}", workload.name, workload.about);
    let manifest = seeded(bench, workload)?;
    let latencies: Vec<u64> = if args.quick && args.latency.is_empty() && workload.name == "W1" {
        // One short run through the proxy, for correctness: the delay on every request of
        // keep-alive connections, and the controller and hedging in a real pull.
        vec![20]
    } else {
        args.latency.clone()
    };
    for path in net::Path::for_workload(workload.name, &latencies, args.bandwidth * 1_000_000) {
        let (route, ctx) = bench.open(&path)?;
        if path != net::Path::DIRECT {
            eprintln!("plx-bench: {} over {}", workload.name, path.label());
        }
        let warm_up = if args.quick { 0 } else { 1 };
        let rounds = if args.quick { 1 } else { args.rounds };
        for round in 0..warm_up + rounds {
            let order: Vec<Peer> = if round < warm_up {
                vec![rows[0]]
            } else {
                let shift = (round - warm_up) % rows.len();
                rows[shift..]
                    .iter()
                    .chain(&rows[..shift])
                    .copied()
                    .collect()
            };
            for peer in order {
                let at = MeasuredPath {
                    ctx: &ctx,
                    route: &route,
                };
                let Some((measured, steps)) = measure_one(bench, &at, workload, &manifest, peer)?
                else {
                    if round == warm_up && path == net::Path::DIRECT {
                        skipped.push((workload.name, peer));
                    }
                    continue;
                };
                if round >= warm_up {
                    samples.push(Sample {
                        workload: workload.name,
                        network: path.label(),
                        peer: peer.label(),
                        round: round - warm_up,
                        steps,
                        measured,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The workload made on disk and, for a download, uploaded into the bucket; its manifest.
fn seeded(bench: &Bench<'_>, workload: &workload::Workload) -> anyhow::Result<workload::Manifest> {
    let manifest = workload::materialize(workload, &bench.source)?;
    if !workload.upload {
        let seeded = bench.runtime.block_on(plx_transfer::upload(
            &bench.server.client,
            &plx_transfer::Upload::new(
                BUCKET,
                workload.prefix().trim_end_matches('/'),
                bench.source.join(workload.prefix()),
            ),
            &plx_transfer::Config::default(),
            &None,
        ));
        seeded.map_err(|error| anyhow::format_err!("seeding {}: {error}", workload.name))?;
    }
    Ok(manifest)
}

/// The path a measured run takes: the tools' context (its endpoint) and a client on it.
struct MeasuredPath<'a> {
    ctx: &'a peers::Context,
    route: &'a net::Route,
}

/// One tool on one workload: run under GNU time, its result checked (the tree against the
/// manifest, or the uploaded objects), and said; `None` when the tool has no such run.
fn measure_one(
    bench: &Bench<'_>,
    at: &MeasuredPath<'_>,
    workload: &workload::Workload,
    manifest: &workload::Manifest,
    peer: Peer,
) -> anyhow::Result<Option<(measure::Measured, Vec<plx_transfer::Step>)>> {
    let (args, source, scratch) = (bench.args, &bench.source, &bench.scratch);
    let destination = args.landing.join("dst");
    let _ = std::fs::remove_dir_all(&args.landing);
    std::fs::create_dir_all(&destination)?;
    let prefix = format!("up/{}/", peer.slug());
    let presigned = if peer.tool == Tool::Curl {
        bench
            .runtime
            .block_on(presign(&at.route.client, BUCKET, workload, &prefix))?
    } else {
        Vec::new()
    };
    let run = peers::Run {
        workload,
        destination: &destination,
        source,
        upload_prefix: &prefix,
        scratch,
        presigned: &presigned,
    };
    let _ = std::fs::remove_file(scratch.join("summary.json"));
    let Some(command) = peers::command(at.ctx, peer, &run)? else {
        return Ok(None);
    };
    let seen_before = at.route.seen();
    let (mut measured, output) = bench.measure(command, scratch)?;
    // What the tool asked of the proxy: its connections and requests (retries and hedges
    // included), to read beside the proxy's CPU.
    let asked = match (seen_before, at.route.seen()) {
        (Some((connections, requests)), Some((connections_after, requests_after))) => format!(
            "  via proxy {} conn {} req",
            connections_after - connections,
            requests_after - requests
        ),
        _ => String::new(),
    };
    let parts = peers::curl_parts(&destination);
    if measured.invalid.is_none() {
        let checked = if peer.tool == Tool::Curl && parts.exists() {
            workload::check_parts(workload, &parts, peers::PART_MIB << 20)
        } else if workload.upload {
            bench.runtime.block_on(check_upload(
                &bench.server.client,
                BUCKET,
                workload,
                &prefix,
            ))
        } else {
            workload::check_tree(workload, manifest, &destination)
        };
        if let Err(problem) = checked {
            measured.invalid = Some(format!(
                "{problem} (the tool said: {})",
                measure::tail(&output)
            ));
        }
    }
    if measured.invalid.is_none()
        && matches!(peer.tool, Tool::PlxInit | Tool::PlxInitSizes)
        && let Some(retried) = retried(&scratch.join("summary.json"))
        && retried > 0
    {
        measured.invalid = Some(format!("{retried} retries"));
    }
    if workload.upload {
        bench
            .runtime
            .block_on(delete_prefix(&bench.server.client, BUCKET, &prefix))?;
    }
    // How plx-init checked what it pulled: against stored CRCs, ETags, or sizes only.
    let checks = match peer.tool {
        Tool::PlxInit | Tool::PlxInitSizes if !workload.upload => {
            let summary = scratch.join("summary.json");
            format!(
                "  crc {} unverified {}",
                summed(&summary, |s| s.crc_checked).unwrap_or_default(),
                summed(&summary, |s| s.unverified).unwrap_or_default()
            )
        }
        _ => String::new(),
    };
    let steps = match peer.tool {
        Tool::PlxInit if !workload.upload => {
            steps(&scratch.join("summary.json")).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let peak = steps
        .iter()
        .map(|step| step.limit)
        .max()
        .map(|peak| format!("  in flight ≤ {peak}"))
        .unwrap_or_default();
    eprintln!(
        "  {:<36} {:>8.2} s  cpu {:>7.2} s  throttled {:>5.2} s  server {:>7.2} s  proxy {:>6.2} s  rss {:>5} MiB{checks}{peak}{asked}{}",
        peer.label(),
        measured.wall,
        measured.client_cpu,
        measured.throttled,
        measured.server_cpu,
        measured.proxy_cpu,
        measured.rss_kib / 1024,
        measured.invalid_note()
    );
    Ok(Some((measured, steps)))
}

/// plx-init's controller steps, from its `--summary`.
fn steps(summary: &Path) -> Option<Vec<plx_transfer::Step>> {
    Some(
        records(summary)?
            .into_iter()
            .flat_map(|record| record.summary.steps)
            .collect(),
    )
}

/// The samples and the report written; with `--quick`, any invalid run fails the whole.
fn finish(
    bench: &Bench<'_>,
    server: String,
    workloads: &[workload::Workload],
    rows: &[Peer],
    samples: &[Sample],
    skipped: &[(&str, Peer)],
) -> anyhow::Result<()> {
    let args = bench.args;
    measure::write_jsonl(&args.work.join("samples.jsonl"), samples)?;
    if let Some(path) = &args.report {
        let versions = versions(&bench.ctx);
        report::write(
            path,
            &report::Context {
                section: if args.latency.is_empty() {
                    "transfer"
                } else {
                    "latency"
                },
                server,
                rounds: args.rounds,
                cpus: bench.cpus.as_ref().map(|cpus| cpus.cpus),
                versions,
                landing: format!(
                    "{} ({})",
                    args.landing.display(),
                    file_system(&args.landing)
                ),
            },
            workloads,
            rows,
            samples,
            skipped,
        )?;
        eprintln!("plx-bench: wrote {}", path.display());
    }
    measure::refuse_invalid(
        args.quick,
        "runs",
        samples.iter().map(|sample| {
            (
                format!("{} {}", sample.workload, sample.peer),
                &sample.measured,
            )
        }),
    )
}

fn retried(summary: &Path) -> Option<u64> {
    summed(summary, |s| s.retried)
}

/// plx-init's `--summary` records.
fn records(summary: &Path) -> Option<Vec<plx_transfer::Record>> {
    serde_json::from_slice(&std::fs::read(summary).ok()?).ok()
}

/// A count of plx-init's `--summary` (its records), summed over its entries.
fn summed(summary: &Path, field: fn(&plx_transfer::Summary) -> u64) -> Option<u64> {
    Some(
        records(summary)?
            .iter()
            .map(|record| field(&record.summary))
            .sum(),
    )
}

fn container_pid(id: &str) -> anyhow::Result<u32> {
    let output = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{.State.Pid}}", id])
        .output()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("no pid for the server's container")
}

/// Presigned URLs for the curl floor: GETs of the wanted keys, or PUTs under `prefix`.
async fn presign(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    workload: &Workload,
    prefix: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))?;
    let mut urls = Vec::new();
    for (key, _) in workload.wanted() {
        let (key, request) = if workload.upload {
            let key = format!("{prefix}{}", &key[workload.prefix().len()..]);
            let request = client
                .put_object()
                .bucket(bucket)
                .key(&key)
                .presigned(config.clone())
                .await?;
            (key, request)
        } else {
            let request = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .presigned(config.clone())
                .await?;
            (key.to_owned(), request)
        };
        urls.push((key, request.uri().to_owned()));
    }
    Ok(urls)
}

/// Every object of an upload run is on the server with its size; single-part objects have the
/// MD5 of their bytes as ETag; each multipart object has 16 ranges read back and compared.
async fn check_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    workload: &Workload,
    prefix: &str,
) -> Result<(), String> {
    use md5::Digest as _;
    let mut found = std::collections::BTreeMap::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| format!("listing: {error}"))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            found.insert(
                format!("{}{}", workload.prefix(), &key[prefix.len()..]),
                (
                    key.to_owned(),
                    object.size().unwrap_or(-1) as u64,
                    object
                        .e_tag()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                ),
            );
        }
    }
    let mut problems = Vec::new();
    for object in &workload.objects {
        let Some((key, size, etag)) = found.remove(&object.key) else {
            problems.push(format!("{} missing", object.key));
            continue;
        };
        if size != object.size {
            problems.push(format!("{key}: {size} bytes, not {}", object.size));
        } else if etag.is_empty() {
            // Some servers (s3s-fs) list no ETags: read the object back instead.
            let mut want = vec![0; object.size as usize];
            workload::fill(&object.key, 0, &mut want);
            let got = match client.get_object().bucket(bucket).key(&key).send().await {
                Ok(response) => response.body.collect().await.map(|b| b.to_vec()).ok(),
                Err(_) => None,
            };
            if got.as_deref() != Some(&want[..]) {
                problems.push(format!("{key}: wrong content"));
            }
        } else if !etag.contains('-') {
            let mut bytes = vec![0; object.size as usize];
            workload::fill(&object.key, 0, &mut bytes);
            let md5 = hex::encode(md5::Md5::digest(&bytes));
            if md5 != etag {
                problems.push(format!("{key}: ETag {etag}, the bytes' MD5 is {md5}"));
            }
        } else {
            for i in 0..16u64 {
                let start = (object.size / 16) * i;
                let end = (start + (1 << 20)).min(object.size) - 1;
                let got = match client
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                {
                    Ok(response) => response.body.collect().await.map(|b| b.to_vec()).ok(),
                    Err(_) => None,
                };
                let mut want = vec![0; (end - start + 1) as usize];
                workload::fill(&object.key, start, &mut want);
                if got.as_deref() != Some(&want[..]) {
                    problems.push(format!("{key}: wrong content at {start}"));
                    break;
                }
            }
        }
    }
    problems.extend(found.keys().map(|key| format!("unexpected object {key}")));
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(5);
        Err(problems.join("; "))
    }
}

async fn delete_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await?;
        let objects: Vec<ObjectIdentifier> = page
            .contents()
            .iter()
            .filter_map(|object| ObjectIdentifier::builder().key(object.key()?).build().ok())
            .collect();
        if objects.is_empty() {
            return Ok(());
        }
        client
            .delete_objects()
            .bucket(bucket)
            .delete(Delete::builder().set_objects(Some(objects)).build()?)
            .send()
            .await?;
    }
}

/// Each tool's version, as it says it.
fn versions(ctx: &peers::Context) -> Vec<(String, String)> {
    let bin = ctx.venv.join("bin");
    let say = |program: &Path, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|output| {
                let text = String::from_utf8_lossy(&output.stdout).to_string()
                    + &String::from_utf8_lossy(&output.stderr);
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_default()
    };
    let python = |venv: &Path, module: &str| {
        say(
            &venv.join("bin/python"),
            &[
                "-c",
                &format!("import importlib.metadata as m; print(m.version('{module}'))"),
            ],
        )
    };
    vec![
        ("plx-init".into(), say(&ctx.plx_init, &["--version"])),
        ("s5cmd".into(), say(&bin.join("s5cmd"), &["version"])),
        ("rclone".into(), say(&bin.join("rclone"), &["version"])),
        ("aws cli".into(), say(&bin.join("aws"), &["--version"])),
        (
            "boto3 / s3transfer".into(),
            format!(
                "{} / {}",
                python(&ctx.venv, "boto3"),
                python(&ctx.venv, "s3transfer")
            ),
        ),
        (
            "polyaxon / s3fs".into(),
            format!(
                "{} / {}",
                python(&ctx.polyaxon, "polyaxon"),
                python(&ctx.polyaxon, "s3fs")
            ),
        ),
        (
            "aws-s3-transfer-manager".into(),
            if ctx.tm {
                "0.3.1".into()
            } else {
                "not built".into()
            },
        ),
        ("curl".into(), say(Path::new("curl"), &["--version"])),
    ]
}

/// The type of the file system that holds `path` (`tmpfs`, `ext2/ext3`: what `stat -f` says),
/// from its nearest ancestor that exists; `unknown file system` when that cannot be read.
fn file_system(path: &std::path::Path) -> String {
    let Some(existing) = path.ancestors().find(|dir| dir.exists()) else {
        return "unknown file system".to_owned();
    };
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(existing)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown file system".to_owned())
}
