//! The Python package's wheel: `crates/plx-python` built by maturin (PyPI's, in a venv under
//! `target/`) into `target/wheels/`: one abi3 wheel for CPython 3.9 and later.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use crate::{status, venvs::venv};

/// maturin ships its binary in the wheel, so it installs without a Rust build of its own.
const MATURIN: &str = "maturin==1.16.0";

/// Builds the wheel (a release build of the engine: about 10 minutes the first time on two
/// cores) and returns its path.
pub(crate) fn wheel(root: &Path) -> anyhow::Result<PathBuf> {
    let tools = venv(&root.join("target/plx-maturin"), &[MATURIN])?;
    let out = root.join("target/wheels");
    eprintln!("xtask: building the plx_connections wheel with {MATURIN} (a release build)");
    status(
        Command::new(tools.join("bin/maturin"))
            .args(["build", "--release", "--manifest-path"])
            .arg(root.join("crates/plx-python/Cargo.toml"))
            .arg("--out")
            .arg(&out),
    )?;
    let wheel = std::fs::read_dir(&out)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("plx_connections-"))
        })
        .max_by_key(|path| path.metadata().and_then(|meta| meta.modified()).ok())
        .context("maturin wrote no plx_connections wheel")?;
    eprintln!("xtask: {}", wheel.display());
    Ok(wheel)
}
