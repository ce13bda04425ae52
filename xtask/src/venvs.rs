//! The Python environments under `target/`: Polyaxon 2.18 (the reference the conformance suite
//! is compared with) and the tools the tests talk to (moto, the AWS CLI, Helm's Go code).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::status;

/// The reference implementation the conformance suite is compared with, with its `fs` extra
/// (s3fs): the benchmark runs Polyaxon's own path from the same venv, so a run installs
/// Polyaxon once. The Python package's tests run there too (with pytest), beside the code they
/// are compared with.
const POLYAXON: &[&str] = &["polyaxon[fs]==2.18.0", "pytest==9.2.0"];
/// The peers tests talk to: moto (S3 and STS), the AWS CLI, and Helm v4's Go code (no helm
/// binary can be had here; a `helm` on PATH is used instead when there is one).
const TOOLS: &[&str] = &[
    "moto[server]==5.2.5",
    // Without it moto quietly computes a CRC32 where a CRC32C is asked for.
    "crc32c==2.9.post0",
    "awscli==1.46.3",
    "helm-python-sdk==0.2.2",
];

/// A venv under `target/` with the test peers (moto, the AWS CLI).
pub(crate) fn tools_venv(root: &Path) -> anyhow::Result<PathBuf> {
    venv(&root.join("target/plx-tools"), TOOLS)
}

/// A Python venv at `dir` with `packages`, installed once: a stamp records what is in it.
pub(crate) fn venv(dir: &Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let stamp = dir.join(".installed");
    let want = packages.join(" ");
    if std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim() == want)
        && dir.join("bin/python").exists()
    {
        return Ok(dir.to_path_buf());
    }
    eprintln!("xtask: installing {want} into {}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    status(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
    pip_install(&dir.join("bin/python"), packages)?;
    std::fs::write(&stamp, want)?;
    Ok(dir.to_path_buf())
}

/// `pip install` of `args` (packages, files, flags) with `python`, quietly.
pub(crate) fn pip_install<S: AsRef<std::ffi::OsStr>>(
    python: &Path,
    args: &[S],
) -> anyhow::Result<()> {
    status(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(args),
    )
}

/// A venv under `target/` with Polyaxon, made once and reused: its Python.
pub(crate) fn polyaxon_venv(root: &Path) -> anyhow::Result<PathBuf> {
    Ok(venv(&root.join("target/plx-venv"), POLYAXON)?.join("bin/python"))
}
