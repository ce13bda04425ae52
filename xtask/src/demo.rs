//! `demo`: the main job end to end, on nothing but this checkout.

use std::{path::Path, process::Command};

use crate::{cargo, status};

/// The demo itself is an example of plx-init (it links the in-process S3 server, which xtask
/// does not); it runs the real plx-init binary. On its own it builds only those two; inside
/// `cargo xtask test` the whole workspace is built already, with the features every target
/// needs, and building the two alone would build their dependencies again with fewer.
pub(crate) fn run(root: &Path, in_test: bool) -> anyhow::Result<()> {
    let mut build = cargo();
    build.args(["build", "--quiet"]);
    if in_test {
        build.args(["--workspace", "--all-targets"]);
    } else {
        build.args(["-p", "plx-init", "--bin", "plx-init", "--example", "demo"]);
    }
    status(&mut build)?;
    status(
        Command::new(root.join("target/debug/examples/demo"))
            .arg(root.join("target/debug/plx-init"))
            .arg(root.join("target/demo")),
    )
}
