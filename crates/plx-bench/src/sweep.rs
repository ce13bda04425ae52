//! `--sweep N`: the runs of a sweep on one node. plx-init pulls the same workload N times, each
//! into a fresh destination, with one node cache (`--cache`) that the first run fills and the
//! others read; each run is timed and checked like any other, and the table (every run against
//! the first) goes into the `sweep` section of `docs/benchmarks.md`.

use std::{fmt::Write as _, path::Path};

use crate::{Bench, measure, peers, workload};

/// One run of the sweep.
pub struct Run {
    pub measured: measure::Measured,
    /// Objects the node cache served.
    pub from_cache: u64,
}

/// `runs` pulls of `workload` with one node cache, the first into an empty one.
pub fn sweep(
    bench: &Bench<'_>,
    ctx: &peers::Context,
    workload: &workload::Workload,
    manifest: &workload::Manifest,
    runs: usize,
) -> anyhow::Result<Vec<Run>> {
    let (args, scratch) = (bench.args, &bench.scratch);
    let cache = args.work.join("node-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let mut done = Vec::new();
    for index in 0..runs {
        let destination = args.landing.join("dst");
        let _ = std::fs::remove_dir_all(&args.landing);
        std::fs::create_dir_all(&destination)?;
        let mut command =
            peers::plx_init_pull(ctx, workload, &destination, &bench.source, scratch)?;
        command.arg("--cache").arg(&cache);
        let _ = std::fs::remove_file(scratch.join("summary.json"));
        let (mut measured, output) = bench.measure(command, scratch)?;
        if measured.invalid.is_none()
            && let Err(problem) = workload::check_tree(workload, manifest, &destination)
        {
            measured.invalid = Some(format!("{problem} ({})", measure::tail(&output)));
        }
        let from_cache = crate::summed(&scratch.join("summary.json"), |summary| {
            summary.from_cache.objects
        })
        .unwrap_or_default();
        eprintln!(
            "  sweep run {:>2}  {:>8.2} s  cpu {:>7.2} s  server {:>7.2} s  from the cache {from_cache}{}",
            index + 1,
            measured.wall,
            measured.client_cpu,
            measured.server_cpu,
            measured.invalid_note()
        );
        done.push(Run {
            measured,
            from_cache,
        });
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(done)
}

/// The sweep's tables, one per workload, between the `sweep` markers of `path`.
pub fn write(path: &Path, server: &str, sweeps: &[(&str, usize, Vec<Run>)]) -> anyhow::Result<()> {
    let (begin, end) = (
        "<!-- sweep:begin (written by `cargo xtask bench --sweep N`) -->",
        "<!-- sweep:end -->",
    );
    let mut md = String::new();
    writeln!(md, "{begin}")?;
    writeln!(
        md,
        "A sweep's runs on one node: plx-init pulls the same workload into a fresh destination each time with one node cache (`--cache`), the first run filling it, on one {server} server on this machine. CPU is the client's; every run checked against the workload's sha256 manifest.\n"
    )?;
    for (workload, objects, runs) in sweeps {
        writeln!(md, "### {workload}\n")?;
        writeln!(
            md,
            "| run | wall s | vs run 1 | client CPU s | server CPU s | from the cache |\n|---|---|---|---|---|---|"
        )?;
        let first = runs.first().map_or(f64::NAN, |run| run.measured.wall);
        for (index, run) in runs.iter().enumerate() {
            let invalid = run
                .measured
                .invalid
                .as_ref()
                .map(|why| format!(" (invalid: {why})"))
                .unwrap_or_default();
            writeln!(
                md,
                "| {} | {:.2} | {:.2}× | {:.2} | {:.2} | {} of {objects}{invalid} |",
                index + 1,
                run.measured.wall,
                first / run.measured.wall,
                run.measured.client_cpu,
                run.measured.server_cpu,
                run.from_cache,
            )?;
        }
        writeln!(md)?;
    }
    writeln!(md, "{end}")?;
    crate::report::splice(
        path,
        (begin, end),
        "A sweep on one node: the node cache",
        &md,
    )
}
