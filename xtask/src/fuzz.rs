//! `fuzz`: the cargo-fuzz targets under `fuzz/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use crate::{cargo, status};

/// The fuzz targets under `fuzz/`, each for `seconds`, with cargo-fuzz (installed under
/// `target/` when missing) on the stable toolchain: `RUSTC_BOOTSTRAP=1` lets it pass its
/// nightly flags, and without a sanitizer (safe Rust) it needs no nightly runtime.
pub(crate) fn run(root: &Path, seconds: u32) -> anyhow::Result<()> {
    let tools = root.join("target/plx-tools/cargo-fuzz");
    let installed = tools.join("bin/cargo-fuzz");
    let on_path = Command::new("cargo-fuzz")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    let program = if on_path {
        PathBuf::from("cargo-fuzz")
    } else {
        if !installed.exists() {
            status(
                cargo()
                    .args([
                        "install",
                        "--quiet",
                        "--locked",
                        "cargo-fuzz@0.13.2",
                        "--root",
                    ])
                    .arg(&tools),
            )?;
        }
        installed
    };
    let dir = root.join("fuzz");
    for target in ["catalog", "review", "key_path"] {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        status(
            Command::new(&program)
                .args(["fuzz", "run", "-s", "none", target])
                .arg(&corpus)
                .arg(dir.join("regressions").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                // Bounded memory and no hangs are part of the verdict.
                .args(["-rss_limit_mb=1024", "-timeout=10"])
                .current_dir(&dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_DIR", root.join("target/fuzz")),
        )
        .with_context(|| {
            format!("{target}: a crash is saved under fuzz/artifacts/{target}; add it to fuzz/regressions/{target}")
        })?;
    }
    Ok(())
}
