//! `demo`: the main job end to end, on nothing but this checkout.

use std::{path::Path, process::Command};

use crate::{cargo, status};

/// The demo itself is an example of plx-init (it links the in-process S3 server, which xtask
/// does not); it runs the real plx-init binary. On its own it builds only those two; inside
/// `cargo xtask test` the test build has built them with the whole workspace, and building the
/// two alone would build their dependencies again with fewer features.
pub(crate) fn run(root: &Path, in_test: bool) -> anyhow::Result<()> {
    if !in_test {
        // Said at once, with cargo's own progress after it: a first build is minutes of
        // compiling with nothing else to show.
        eprintln!(
            "xtask: building plx-init and the demo (debug): a first build takes about 10 minutes on 2 cores, most of it the AWS SDK; later runs start in seconds"
        );
        status(cargo().args([
            "build",
            "-p",
            "plx-init",
            "--bin",
            "plx-init",
            "--example",
            "demo",
        ]))?;
    }
    status(
        Command::new(root.join("target/debug/examples/demo"))
            .arg(root.join("target/debug/plx-init"))
            .arg(root.join("target/demo")),
    )
}
