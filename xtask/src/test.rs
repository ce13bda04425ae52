//! The test tasks: `test` (everything CI runs), `conformance`, `schemas`, `chart`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
};

use anyhow::Context;

use crate::{
    bench, cargo, chart, demo,
    images::{Binaries, images, server_image},
    polyaxon_init, status,
    venvs::{polyaxon_venv, tools_venv},
};

/// Label of every container the tests start (plx-testkit sets it).
const TEST_LABEL: &str = "plx-testkit";

pub(crate) fn test(root: &Path) -> anyhow::Result<()> {
    // The style is kept by the tools, first, so that a run fails fast on it.
    status(cargo().args(["fmt", "--all", "--check"]))
        .context("rustfmt would change files: run `cargo fmt`")?;
    chart::values_schema(root, true)?;
    let lints = Lints::new()?;
    // What the tests run beside them is installed while the test build compiles: the venvs and
    // the stand-in for Polyaxon's image mostly wait on downloads and disks, and the test server
    // is a build of its own, which shares the two cores with the test build (the whole setup
    // ends inside the build). A failed build stops the setup at its next step.
    let (failed, stopped) = (AtomicBool::new(false), AtomicBool::new(false));
    let (built, setup) = std::thread::scope(|scope| {
        let setup = scope.spawn(|| -> anyhow::Result<(PathBuf, PathBuf)> {
            let go_on = || {
                if failed.load(Relaxed) {
                    stopped.store(true, Relaxed);
                    anyhow::bail!("setup stopped: the build failed");
                }
                Ok(())
            };
            let python = polyaxon_venv(root)?;
            go_on()?;
            let tools = tools_venv(root)?;
            go_on()?;
            bench::peers_venv(root)?;
            go_on()?;
            polyaxon_init::stand_in(root)?;
            go_on()?;
            server_image(root)?;
            Ok((python, tools))
        });
        // Every target the run uses (the tests, the binaries the images pack, the demo and the
        // benchmark's harness) in one build with one feature set. Clippy's findings fail it,
        // before any test runs.
        let built = status(lints.apply(cargo().args(["build", "--workspace", "--all-targets"])));
        if built.is_err() {
            failed.store(true, Relaxed);
        }
        let setup = setup
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the setup thread panicked")));
        (built, setup)
    });
    if let (Err(_), Err(setup)) = (&built, &setup)
        && !stopped.load(Relaxed)
    {
        eprintln!("xtask: the setup failed too: {setup:#}");
    }
    built?;
    let (python, tools) = setup?;
    images(root, Binaries::Tests)?;
    remove_test_containers();
    let result = status(
        lints
            .apply(cargo().args(["test", "--workspace", "--all-targets"]))
            .env("PLX_POLYAXON_PYTHON", &python)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("PLX_AWS_CLI", tools.join("bin/aws"))
            .env("PLX_HELM_PYTHON", tools.join("bin/python"))
            // Tests never ask a metadata service for credentials.
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    )
    .and_then(|()| status(lints.apply(cargo().args(["test", "--workspace", "--doc"]))))
    // The demo is part of the suite: what a newcomer runs first must not rot.
    .and_then(|()| demo::run(root, true))
    // The benchmark's smoke run: every peer installs, runs and brings the right bytes.
    .and_then(|()| bench::transfer(root, &["--quick".to_owned()], true));
    // Containers of a test that was killed outlive it; none may outlive the run.
    remove_test_containers();
    result
}

/// Clippy, run by the test build itself: as `cargo clippy` does, cargo hands each workspace
/// crate to clippy-driver, which lints it and then compiles it as rustc would. The dependencies
/// are then built once, for the tests, where `cargo clippy` would build every one of them a
/// second time in check mode (about 6 minutes of a cold run on 2 cores). Cargo fingerprints
/// both variables, so every cargo call of the run carries them: a call without them would
/// rebuild the workspace's crates.
pub(crate) struct Lints {
    driver: std::path::PathBuf,
}

impl Lints {
    pub(crate) fn new() -> anyhow::Result<Lints> {
        let sysroot = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .context("cannot run rustc")?;
        let driver =
            Path::new(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin/clippy-driver");
        if !driver.exists() {
            anyhow::bail!(
                "{} is missing: install clippy (`rustup component add clippy`)",
                driver.display()
            );
        }
        Ok(Lints { driver })
    }

    pub(crate) fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("RUSTC_WORKSPACE_WRAPPER", &self.driver)
            // `cargo clippy -- -D warnings`, in the form cargo-clippy hands it to the driver.
            .env(
                "CLIPPY_ARGS",
                "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
            )
    }
}

pub(crate) fn remove_test_containers() {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={TEST_LABEL}")])
        .output();
    let Ok(listed) = listed else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&ids)
            .output();
    }
}

pub(crate) fn conformance(root: &Path, filter: Option<&str>) -> anyhow::Result<()> {
    let lints = Lints::new()?;
    // The test build's own flags and features (every member selected, clippy as the wrapper), so
    // that `cargo xtask test` afterwards builds nothing of it again; of its targets only the
    // runners and the binaries they run. The venvs and the test server's image are made beside
    // it, as in `test`.
    let (built, setup) = std::thread::scope(|scope| {
        let setup = scope.spawn(|| -> anyhow::Result<(PathBuf, PathBuf)> {
            let python = polyaxon_venv(root)?;
            let tools = tools_venv(root)?;
            server_image(root)?;
            Ok((python, tools))
        });
        let built = status(lints.apply(cargo().args([
            "build",
            "--workspace",
            "--bins",
            "--test",
            "conformance",
        ])));
        let setup = setup
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the setup thread panicked")));
        (built, setup)
    });
    built?;
    let (python, tools) = setup?;
    // The model cases (validator, JSON Schema, Polyaxon), then the transfer and init cases
    // (real servers, and the real plx-init binary): one runner per crate.
    let mut command = cargo();
    lints
        .apply(command.args(["test", "-q", "--workspace", "--test", "conformance", "--"]))
        .env("PLX_POLYAXON_PYTHON", &python)
        .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command.args(filter);
    let result = status(&mut command);
    remove_test_containers();
    result
}

pub(crate) fn schemas(root: &Path, check: bool) -> anyhow::Result<()> {
    // The test in plx-connections owns the comparison; this only asks it to rewrite.
    let mut command = cargo();
    command.args([
        "test",
        "-q",
        "-p",
        "plx-connections",
        "--test",
        "it",
        "--",
        "schemas::",
    ]);
    if !check {
        command.env("PLX_UPDATE_SCHEMAS", "1");
    }
    status(&mut command)?;
    chart::values_schema(root, check)
}

/// The chart's tests (they are in `cargo xtask test` too), with what they need installed.
pub(crate) fn chart(root: &Path) -> anyhow::Result<()> {
    let tools = tools_venv(root)?;
    chart::values_schema(root, true)?;
    images(root, Binaries::Shipped)?;
    let result = status(
        cargo()
            .args(["test", "-p", "plx-webhook", "--test", "it", "--", "chart::"])
            .env("PLX_HELM_PYTHON", tools.join("bin/python")),
    );
    remove_test_containers();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test build's lints are on: a crate that breaks one of clippy's default lints fails a
    /// build run as `Lints` runs it, and builds without them. `CLIPPY_ARGS` is the driver's own
    /// argument format (what `cargo clippy -- -D warnings` hands it); a toolchain that reads it
    /// another way fails here instead of letting every lint go quiet.
    #[test]
    fn the_test_build_runs_clippy_with_warnings_denied() {
        let lints = Lints::new().expect("clippy is installed");
        let dir = std::env::temp_dir().join(format!("plx-lints-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).expect("a crate");
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"linted\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
        )
        .expect("a manifest");
        // clippy::ptr_arg, a style lint clippy warns of by default.
        std::fs::write(
            dir.join("src/lib.rs"),
            "pub fn count(values: &Vec<u32>) -> usize {\n    values.len()\n}\n",
        )
        .expect("a source");
        let build = |linted: bool| {
            let mut command = cargo();
            command
                .args(["build", "--offline", "--quiet"])
                .current_dir(&dir)
                .env("CARGO_TARGET_DIR", dir.join("target"))
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("CLIPPY_ARGS");
            if linted {
                lints.apply(&mut command);
            }
            command.output().expect("cargo runs")
        };
        let plain = build(false);
        let linted = build(true);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(plain.status.success(), "{plain:?}");
        assert!(!linted.status.success(), "{linted:?}");
        assert!(
            String::from_utf8_lossy(&linted.stderr).contains("ptr_arg"),
            "{linted:?}"
        );
    }
}
