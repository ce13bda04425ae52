//! `--python`: the Python readers side by side, as a job's own code reads: ours
//! (`plx_connections`), Polyaxon 2.18's `get_fs_from_name` (s3fs), boto3 in a thread pool,
//! obstore, and the Mountpoint client that s3torchconnector's datasets call, each reading W1 and
//! W2 into memory, as a dataset and to disk, in one Python process within the init container's
//! one CPU (the `--cpus` limit); plx-init beside them to disk. `peers/readers.py` is the reader
//! side; here are the runs, their checks and the report's `python` section.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::Context as _;

use crate::{
    Bench, MeasuredPath,
    measure::{self, Measured},
    net, peers, report,
    workload::Workload,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Ours,
    Polyaxon,
    Boto3,
    Obstore,
    Mountpoint,
    /// plx-init to disk: the engine without Python, which `get` is measured against.
    PlxInit,
}

impl Reader {
    const ALL: [Reader; 6] = [
        Reader::Ours,
        Reader::Polyaxon,
        Reader::Boto3,
        Reader::Obstore,
        Reader::Mountpoint,
        Reader::PlxInit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reader::Ours => "plx_connections",
            Reader::Polyaxon => "polyaxon 2.18 (s3fs)",
            Reader::Boto3 => "boto3, 64 threads",
            Reader::Obstore => "obstore 0.12",
            Reader::Mountpoint => "Mountpoint client (s3torchconnectorclient 1.5)",
            Reader::PlxInit => "plx-init",
        }
    }

    /// The name `readers.py` knows it by.
    fn script(self) -> &'static str {
        match self {
            Reader::Ours => "plx_connections",
            Reader::Polyaxon => "polyaxon",
            Reader::Boto3 => "boto3",
            Reader::Obstore => "obstore",
            Reader::Mountpoint => "mountpoint",
            Reader::PlxInit => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Memory,
    Dataset,
    Disk,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Memory, Mode::Dataset, Mode::Disk];

    fn name(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Dataset => "dataset",
            Mode::Disk => "disk",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Mode::Memory => "into memory, 256 objects at a time",
            Mode::Dataset => "as a dataset, batches of 32",
            Mode::Disk => "to disk",
        }
    }
}

/// How many objects `memory` reads at once, and a dataset's batch.
const CHUNK: usize = 256;
const BATCH: usize = 32;

/// One measured run of one reader.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub workload: &'static str,
    pub network: String,
    pub mode: &'static str,
    pub reader: &'static str,
    pub round: usize,
    /// The reads alone, in a warm process (imports, the client and the first read excluded);
    /// for plx-init, its whole run.
    pub warm: f64,
    pub warm_cpu: f64,
    pub objects: usize,
    #[serde(flatten)]
    pub measured: Measured,
}

/// What `readers.py` prints on its `plx-reader` line.
#[derive(serde::Deserialize)]
struct Said {
    warm: f64,
    warm_cpu: f64,
}

/// Every reader on every workload asked for, over each path, each round in rotated order after
/// a warm-up run that is not counted; the samples kept beside the others and the report's
/// `python` section written.
pub fn run(bench: &Bench<'_>, workloads: &[Workload], python: &Path) -> anyhow::Result<()> {
    let args = bench.args;
    let mut readers: Vec<Reader> = Reader::ALL.to_vec();
    if !args.tools.is_empty() {
        readers.retain(|reader| {
            *reader == Reader::Ours
                || args
                    .tools
                    .iter()
                    .any(|name| reader.name().starts_with(name.as_str()))
        });
    }
    let workloads: Vec<&Workload> = workloads
        .iter()
        .filter(|workload| matches!(workload.name, "W1" | "W2"))
        .collect();
    let mut samples = Vec::new();
    for workload in &workloads {
        eprintln!(
            "plx-bench: python readers, {}: {}",
            workload.name, workload.about
        );
        let manifest = crate::seeded(bench, workload)?;
        for path in net::Path::for_workload(workload.name, &args.latency, 0) {
            let (route, ctx) = bench.open(&path)?;
            let at = MeasuredPath {
                ctx: &ctx,
                route: &route,
            };
            let rounds = if args.quick { 1 } else { args.rounds };
            let warm_up = usize::from(!args.quick);
            for round in 0..warm_up + rounds {
                for mode in Mode::ALL {
                    let shift = round % readers.len();
                    let order = readers[shift..].iter().chain(&readers[..shift]);
                    for &reader in order {
                        if round < warm_up && reader != Reader::Ours {
                            continue;
                        }
                        if reader == Reader::PlxInit && mode != Mode::Disk {
                            continue;
                        }
                        let Some((measured, warm, warm_cpu)) =
                            one(bench, &at, workload, &manifest, python, reader, mode)?
                        else {
                            continue;
                        };
                        eprintln!(
                            "  {:<8} {:<48} warm {:>7.3} s cpu {:>7.3} s  fresh {:>7.2} s  rss {:>4} MiB{}",
                            mode.name(),
                            reader.name(),
                            warm,
                            warm_cpu,
                            measured.wall,
                            measured.rss_kib / 1024,
                            measured.invalid_note()
                        );
                        if round >= warm_up {
                            samples.push(Sample {
                                workload: workload.name,
                                network: path.label(),
                                mode: mode.name(),
                                reader: reader.name(),
                                round: round - warm_up,
                                warm,
                                warm_cpu,
                                objects: workload.wanted().len(),
                                measured,
                            });
                        }
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&args.landing);
    measure::write_jsonl(&args.work.join("python.jsonl"), &samples)?;
    if let Some(report) = &args.report {
        write(report, bench, &workloads, &readers, &samples)?;
        eprintln!("plx-bench: wrote {}", report.display());
    }
    measure::refuse_invalid(
        args.quick,
        "Python reader runs",
        samples.iter().map(|sample| {
            (
                format!("{} {} {}", sample.workload, sample.mode, sample.reader),
                &sample.measured,
            )
        }),
    )
}

/// One reader in one mode: its run measured, what it read checked (every body's SHA-256, or the
/// tree on disk), and its own timing read; `None` where the reader has no such run.
fn one(
    bench: &Bench<'_>,
    at: &MeasuredPath<'_>,
    workload: &Workload,
    manifest: &crate::workload::Manifest,
    python: &Path,
    reader: Reader,
    mode: Mode,
) -> anyhow::Result<Option<(Measured, f64, f64)>> {
    let args = bench.args;
    let scratch = &bench.scratch;
    let destination = args.landing.join("dst");
    let _ = std::fs::remove_dir_all(&args.landing);
    std::fs::create_dir_all(&destination)?;
    let digests = scratch.join("digests.json");
    let _ = std::fs::remove_file(&digests);
    let command = if reader == Reader::PlxInit {
        peers::plx_init_pull(at.ctx, workload, &destination, &bench.source, scratch)?
    } else {
        let wanted = workload.wanted();
        let spec = serde_json::json!({
            "reader": reader.script(),
            "mode": mode.name(),
            "endpoint": at.ctx.endpoint,
            "bucket": at.ctx.bucket,
            "region": at.ctx.region,
            "prefix": workload.prefix(),
            "keys": wanted.iter().collect::<Vec<_>>(),
            "chunk": CHUNK,
            "batch": BATCH,
            "to": destination,
            "digests": digests,
        });
        let file = scratch.join("reader.json");
        std::fs::write(&file, serde_json::to_vec(&spec)?)?;
        let catalog = serde_json::json!({"connections": [{
            "name": "bench", "kind": "s3",
            "schema": {"bucket": format!("s3://{}", at.ctx.bucket)},
            "env": {"AWS_ENDPOINT_URL": at.ctx.endpoint, "AWS_REGION": at.ctx.region,
                    "AWS_USE_SSL": "false"},
        }]});
        let mut command = Command::new(python);
        command
            .arg(at.ctx.scripts.join("readers.py"))
            .arg(&file)
            .envs(peers::keys(at.ctx))
            .env("POLYAXON_CONNECTIONS_CATALOG", catalog.to_string())
            .env("POLYAXON_NO_OP", "false")
            .env("POLYAXON_HOME", scratch.join("polyaxon-home"))
            // Our `get` keeps its resume state in the user's cache: here, the scratch space.
            .env("XDG_CACHE_HOME", scratch.join("xdg"));
        command
    };
    let (mut measured, output) = bench.measure(command, scratch)?;
    let said = output
        .lines()
        .find_map(|line| line.strip_prefix("plx-reader "))
        .map(serde_json::from_str::<Said>)
        .transpose()
        .context("readers.py's plx-reader line")?;
    let (warm, warm_cpu) = match (reader, &said) {
        (Reader::PlxInit, _) => (measured.wall, measured.client_cpu),
        (_, Some(said)) => (said.warm, said.warm_cpu),
        (_, None) => (0.0, 0.0),
    };
    if measured.invalid.is_none() {
        let checked = match mode {
            Mode::Disk => crate::workload::check_tree(workload, manifest, &destination),
            _ if said.is_none() => Err(format!(
                "no plx-reader line: {}",
                crate::measure::tail(&output)
            )),
            _ => check_digests(workload, manifest, &digests),
        };
        if let Err(problem) = checked {
            measured.invalid = Some(problem);
        }
    }
    Ok(Some((measured, warm, warm_cpu)))
}

/// Every wanted object read once with the manifest's SHA-256, and nothing else.
fn check_digests(
    workload: &Workload,
    manifest: &crate::workload::Manifest,
    digests: &Path,
) -> Result<(), String> {
    let got: std::collections::BTreeMap<String, String> = std::fs::read(digests)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| format!("no digests at {}", digests.display()))?;
    let wanted = workload.wanted();
    let mut problems: Vec<String> = Vec::new();
    for key in wanted.keys() {
        match (got.get(*key), manifest.sha256.get(*key)) {
            (Some(read), Some(want)) if read == want => {}
            (Some(_), _) => problems.push(format!("{key}: wrong bytes")),
            (None, _) => problems.push(format!("{key}: not read")),
        }
    }
    problems.extend(
        got.keys()
            .filter(|key| !wanted.contains_key(key.as_str()))
            .map(|key| format!("{key}: not asked for")),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        let count = problems.len();
        problems.truncate(3);
        Err(format!("{count} problems: {}", problems.join("; ")))
    }
}

/// One reader's runs in one mode of one workload, over every path.
fn runs_of<'a>(
    samples: &'a [Sample],
    workload: &'a str,
    mode: &'a str,
    reader: Reader,
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples
        .iter()
        .filter(move |s| s.workload == workload && s.mode == mode && s.reader == reader.name())
}

/// The report's `python` section: per workload and mode, each reader's warm time at each path
/// (median [min–max], and its ratio to ours), its CPU per object, a fresh process's time and its
/// peak RSS; then the targets, each met or missed.
fn write(
    path: &Path,
    bench: &Bench<'_>,
    workloads: &[&Workload],
    readers: &[Reader],
    samples: &[Sample],
) -> anyhow::Result<()> {
    let (begin, end) = report::markers("python");
    let networks: Vec<String> = net::Path::for_workload("W1", &bench.args.latency, 0)
        .iter()
        .map(net::Path::label)
        .collect();
    let median =
        |workload: &str, mode: &str, reader: Reader, network: &str, field: fn(&Sample) -> f64| {
            let values: Vec<f64> = runs_of(samples, workload, mode, reader)
                .filter(|s| s.network == network && s.measured.invalid.is_none())
                .map(field)
                .collect();
            report::stats(&values)
        };
    let mut md = String::new();
    writeln!(md, "{begin}")?;
    writeln!(
        md,
        "Measured {} with `cargo xtask bench --python --latency {}` against one {} server: each reader in a fresh Python process within {}, median of {} rounds [min–max] after a warm-up, readers in rotated order; every run checked (the SHA-256 of every body read, or the tree on disk, against the workload's manifest). **Warm** is the reads alone, timed inside the process as a training loop sees them (imports, the client, the first read and a dataset's one listing excluded; the harness's hashing taken out); **fresh** is the whole process under GNU time; CPU per object is the warm reads' user+system time, every thread of the process. s3torchconnector 1.5 itself needs torch, whose PyPI wheels pull about 20 CUDA packages: its engine, the Mountpoint client (`s3torchconnectorclient`, one `get_object` stream per object as its `S3MapDataset` reads), is measured instead, in the same 64-thread pool as boto3.\n",
        report::date(),
        bench
            .args
            .latency
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        if bench.ctx.s3s { "s3s-fs" } else { "Garage" },
        bench
            .cpus
            .as_ref()
            .map(|cpus| format!(
                "{} CPU (a cgroup quota, as the init container's)",
                cpus.cpus
            ))
            .unwrap_or_else(|| "no CPU limit".into()),
        bench.args.rounds,
    )?;
    for workload in workloads {
        for mode in Mode::ALL {
            writeln!(
                md,
                "### {}, {} ({})\n",
                workload.name,
                mode.about(),
                workload.about
            )?;
            write!(md, "| reader |")?;
            for network in &networks {
                write!(md, " warm s, {network} |")?;
            }
            writeln!(md, " CPU µs/object, warm | fresh s | peak RSS MiB |")?;
            writeln!(md, "|---|{}---:|---:|---:|", "---:|".repeat(networks.len()))?;
            for &reader in readers {
                if reader == Reader::PlxInit && mode != Mode::Disk {
                    continue;
                }
                write!(md, "| {} |", reader.name())?;
                for network in &networks {
                    let ours = median(workload.name, mode.name(), Reader::Ours, network, |s| {
                        s.warm
                    });
                    match median(workload.name, mode.name(), reader, network, |s| s.warm) {
                        Some(warm) => {
                            let ratio = ours
                                .filter(|_| reader != Reader::Ours)
                                .map(|ours| format!(" ({:.2}×)", warm.median / ours.median))
                                .unwrap_or_default();
                            write!(
                                md,
                                " {:.3} [{:.3}–{:.3}]{ratio} |",
                                warm.median, warm.min, warm.max
                            )?
                        }
                        None => write!(md, " — |")?,
                    }
                }
                let loopback = &networks[0];
                let objects = workload.wanted().len() as f64;
                let cpu = median(workload.name, mode.name(), reader, loopback, |s| s.warm_cpu);
                let fresh = median(workload.name, mode.name(), reader, loopback, |s| {
                    s.measured.wall
                });
                let rss = runs_of(samples, workload.name, mode.name(), reader)
                    .map(|s| s.measured.rss_kib)
                    .max();
                let invalid = runs_of(samples, workload.name, mode.name(), reader)
                    .filter(|s| s.measured.invalid.is_some())
                    .count();
                writeln!(
                    md,
                    " {} | {} | {}{} |",
                    cpu.map(|cpu| format!("{:.0}", cpu.median / objects * 1e6))
                        .unwrap_or("—".into()),
                    fresh
                        .map(|fresh| format!("{:.2}", fresh.median))
                        .unwrap_or("—".into()),
                    rss.map(|rss| (rss / 1024).to_string())
                        .unwrap_or("—".into()),
                    if invalid > 0 {
                        format!(" ({invalid} runs invalid)")
                    } else {
                        String::new()
                    }
                )?;
            }
            writeln!(md)?;
        }
    }
    targets(&mut md, workloads, &networks, &median, samples)?;
    writeln!(md, "{end}")?;
    report::splice(path, (&begin, &end), "The job's own Python", &md)
}

type Median<'a> =
    dyn Fn(&str, &str, Reader, &str, fn(&Sample) -> f64) -> Option<report::Stats> + 'a;

/// The targets for the package, each cell met or missed with its figures.
fn targets(
    md: &mut String,
    workloads: &[&Workload],
    networks: &[String],
    median: &Median<'_>,
    samples: &[Sample],
) -> anyhow::Result<()> {
    writeln!(
        md,
        "**Targets** (medians; a cell with a reader missing is not counted):\n"
    )?;
    let warm = |s: &Sample| s.warm;
    let cpu = |s: &Sample| s.warm_cpu;
    let mut lines = Vec::new();
    for workload in workloads {
        let w = workload.name;
        let loopback = net::Path::DIRECT.label();
        for network in networks.iter().filter(|n| **n != loopback) {
            if let (Some(ours), Some(theirs)) = (
                median(w, "memory", Reader::Ours, network, warm),
                median(w, "memory", Reader::Polyaxon, network, warm),
            ) {
                let times = theirs.median / ours.median;
                lines.push(format!(
                    "- {w} into memory at {network}: {times:.1} times faster than Polyaxon's fs (target 3): {}",
                    if times >= 3.0 { "met" } else { "missed" }
                ));
            }
        }
        for mode in ["memory", "dataset", "disk"] {
            for network in networks {
                let Some(ours) = median(w, mode, Reader::Ours, network, warm) else {
                    continue;
                };
                let ours_cpu = median(w, mode, Reader::Ours, network, cpu);
                for peer in [Reader::Obstore, Reader::Mountpoint] {
                    let (Some(theirs), Some(theirs_cpu)) = (
                        median(w, mode, peer, network, warm),
                        median(w, mode, peer, network, cpu),
                    ) else {
                        continue;
                    };
                    let faster = ours.median <= theirs.median;
                    let cheaper = ours_cpu.is_some_and(|c| c.median <= theirs_cpu.median);
                    if !(faster && cheaper) {
                        lines.push(format!(
                            "- {w} {mode} at {network}: {} {:.3} s against ours {:.3} s, CPU {:.3} s against {:.3} s: missed",
                            peer.name(),
                            theirs.median,
                            ours.median,
                            theirs_cpu.median,
                            ours_cpu.map(|c| c.median).unwrap_or(f64::NAN)
                        ));
                    }
                }
            }
        }
        for network in networks {
            if let (Some(ours), Some(init)) = (
                median(w, "disk", Reader::Ours, network, warm),
                median(w, "disk", Reader::PlxInit, network, warm),
            ) {
                let times = ours.median / init.median;
                lines.push(format!(
                    "- {w} to disk at {network}: `get` takes {times:.2} times plx-init's time (target at most 1.15): {}",
                    if times <= 1.15 { "met" } else { "missed" }
                ));
            }
        }
    }
    let rss = samples
        .iter()
        .filter(|s| s.reader == Reader::Ours.name())
        .map(|s| s.measured.rss_kib / 1024)
        .max();
    if let Some(rss) = rss {
        lines.push(format!(
            "- peak RSS of ours, every run: {rss} MiB (target under 128): {}",
            if rss < 128 { "met" } else { "missed" }
        ));
    }
    lines.push(
        "- ahead of obstore and the Mountpoint client in time and CPU per object: every cell not listed above is met".to_owned(),
    );
    for line in lines {
        writeln!(md, "{line}")?;
    }
    writeln!(md)?;
    Ok(())
}
