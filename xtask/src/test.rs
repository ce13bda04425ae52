//! The test tasks: `test` (everything CI runs), `conformance`, `schemas`, `chart`.

use std::{path::Path, process::Command};

use anyhow::Context;

use crate::{
    bench, cargo, chart, demo,
    images::images,
    status,
    venvs::{polyaxon_venv, tools_venv},
};

/// Label of every container the tests start (plx-testkit sets it).
const TEST_LABEL: &str = "plx-testkit";

pub(crate) fn test(root: &Path) -> anyhow::Result<()> {
    // The style is kept by the tools, first, so that a run fails fast on it.
    status(cargo().args(["fmt", "--all", "--check"]))
        .context("rustfmt would change files: run `cargo fmt`")?;
    status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let python = polyaxon_venv(root)?;
    let tools = tools_venv(root)?;
    chart::values_schema(root, true)?;
    images(root)?;
    remove_test_containers();
    let result = status(
        cargo()
            .args(["test", "--workspace", "--all-targets"])
            .env("PLX_POLYAXON_PYTHON", &python)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("PLX_AWS_CLI", tools.join("bin/aws"))
            .env("PLX_HELM_PYTHON", tools.join("bin/python"))
            // Tests never ask a metadata service for credentials.
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    )
    .and_then(|()| status(cargo().args(["test", "--workspace", "--doc"])))
    // The demo is part of the suite: what a newcomer runs first must not rot.
    .and_then(|()| demo::run(root, true))
    // The benchmark's smoke run: every peer installs, runs and brings the right bytes.
    .and_then(|()| bench::transfer(root, &["--quick".to_owned()]));
    // Containers of a test that was killed outlive it; none may outlive the run.
    remove_test_containers();
    result
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
    let python = polyaxon_venv(root)?;
    let tools = tools_venv(root)?;
    images(root)?;
    // The model cases (validator, JSON Schema, Polyaxon), then the transfer and init cases
    // (real servers, and the real plx-init binary).
    for test in [
        ("plx-connections", "conformance"),
        ("plx-transfer", "conformance"),
        ("plx-init", "conformance"),
    ] {
        let mut command = cargo();
        command
            .args(["test", "-q", "-p", test.0, "--test", test.1, "--"])
            .env("PLX_POLYAXON_PYTHON", &python)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command.args(filter);
        status(&mut command)?;
    }
    remove_test_containers();
    Ok(())
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
    images(root)?;
    let result = status(
        cargo()
            .args(["test", "-p", "plx-webhook", "--test", "it", "--", "chart::"])
            .env("PLX_HELM_PYTHON", tools.join("bin/python")),
    );
    remove_test_containers();
    result
}
