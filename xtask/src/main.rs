//! Project automation, run as `cargo xtask <task>` (see <https://github.com/matklad/cargo-xtask>).
//!
//! Every task sets up what it needs on a fresh machine (Python venvs, Docker images, tools) and
//! caches it under `target/`. `flags` is the command line; each task is a module: `test` (with
//! `conformance`, `schemas` and `chart`), `images` (and `polyaxon_init`), `venvs`, `soak`,
//! `fuzz`, `demo`, `bench`; `chart` also generates the chart's values schema.

// The values schema is one large `json!`.
#![recursion_limit = "256"]

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};

use crate::flags::Task;

mod bench;
mod chart;
mod demo;
mod flags;
mod fuzz;
mod images;
mod polyaxon_init;
mod report;
mod soak;
mod test;
#[cfg(test)]
mod tidy;
mod venvs;
mod wheel;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  demo                 the main job end to end, on nothing but this checkout: an S3 server in
                       the process, the seed page's catalog validated and fixed, a job's init
                       section pulled by plx-init
  test                 rustfmt and clippy, then every test: unit, property, integration,
                       conformance (with Polyaxon 2.18), the images in containers, the demo
                       and the benchmark's quick run
  conformance [FILTER] the conformance cases: the model (cross-checked against Polyaxon 2.18),
                       transfers and plx-init runs (against a real S3 server)
  schemas [--check]    regenerate schemas/ from the Rust types, and the chart's
                       values.schema.json from them (or fail when stale)
  chart                the Helm chart through real Helm v4 code: lint, render every ci/
                       scenario into typed objects, the values schema against the conformance
                       cases, the rendered webhook and helm-test pods run for real
  wheel                the Python package plx_connections with maturin: one abi3 wheel for
                       CPython 3.9 and later, into target/wheels/ (a release build)
  bench [--quick] [--no-tm] [--python] [--server s3s|garage] [--workload W] [--tool T] [--rounds N]
        [--latency MS,MS...] [--bandwidth MBPS] [--cpus N]
                       plx-init side by side with s5cmd, rclone, the AWS CLI, boto3, Polyaxon's
                       s3fs path, aws-s3-transfer-manager and a curl floor on one S3 server
                       (Garage by default), every run checked, into docs/benchmarks.md;
                       --latency: also through the latency proxy, MS away (W3 also capped at
                       --bandwidth MB/s per connection, 90 by default), a table per path;
                       --cpus N: each tool within N CPUs' time (a cgroup; 1 by default,
                       as Polyaxon's init container; 0 for no limit; needs root);
                       --no-tm: without the transfer-manager peer (a long build);
                       --python: the Python readers instead (ours, Polyaxon's fs, boto3,
                       obstore, the Mountpoint client; plx-init to disk) on W1 and W2, into
                       memory, as a dataset and to disk (builds and installs the wheel);
                       --quick: small W1, W3 and W5 on s3s, W1 also 20 ms away, correctness
                       only (in `test`)
  bench webhook [SECS]  the admission webhook under sustained load from wrk (HTTPS; 1, 16 and
                       64 connections, and during certificate rotation; 60 s each), memory
                       sampled every second, into docs/benchmarks.md
  soak [--per-class N] [--kills K] [--many]
                       every fault class N times (default 20) for downloads and for uploads
                       (connections broken, bodies corrupt or slow, an object changed between
                       its parts), K SIGKILLs at seeded moments (default 40) of pulls, uploads,
                       a shared node cache's fill and a manifest's write, then the tables of
                       docs/RELIABILITY.md written from what the runs counted; --many: also
                       100,000 objects under a 256-file RLIMIT_NOFILE (s3s-fs) and under the
                       usual limit (Garage, whose image it builds when missing)
  fuzz [SECONDS]       each fuzz target (catalog, review, key_path, rendered, manifest, pod)
                       for SECONDS (default 60) with cargo-fuzz; the corpus is kept under
                       fuzz/corpus, and `test` replays it
  images [--garage]    build the plx-init, plx-webhook and test S3 server (s3s-fs) images, a
                       stand-in for Polyaxon's init image and plx-init-polyaxon on it, locally,
                       and Garage's when asked (its build is long); nothing is pulled
  images --polyaxon-init IMAGE
                       build plx-init-polyaxon:2.18.0 on Polyaxon's own init image IMAGE
                       (e.g. polyaxon/polyaxon-init:2.18.0, pulled by Docker), to push
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = project_root();
    env::set_current_dir(&root)?;
    let task = match flags::parse(&args) {
        Ok(task) => task,
        Err(error) => {
            eprint!("{USAGE}");
            return Err(error);
        }
    };
    match task {
        Task::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Task::Demo => demo::run(&root, false),
        Task::Test => test::test(&root),
        Task::Conformance { filter } => test::conformance(&root, filter.as_deref()),
        Task::Schemas { check } => test::schemas(&root, check),
        Task::Chart => test::chart(&root),
        Task::Wheel => wheel::wheel(&root).map(drop),
        Task::Bench { args } => bench::transfer(&root, &args, false),
        Task::BenchWebhook { seconds } => bench::webhook(&root, seconds),
        Task::Soak(soak) => soak::run(&root, &soak),
        Task::Fuzz { seconds } => fuzz::run(&root, seconds),
        Task::Images { garage } => {
            images::images(&root, images::Binaries::Shipped)?;
            if garage {
                images::garage_image(&root)?;
            }
            Ok(())
        }
        Task::PolyaxonInit { base } => {
            images::image_binaries()?;
            polyaxon_init::layered(&root, &base, &root.join("target/image"))?;
            eprintln!(
                "xtask: built {} on {base}; tag it for your registry and push it",
                polyaxon_init::LAYERED
            );
            Ok(())
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub(crate) fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub(crate) fn status(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
