//! Helm v4's own Go code, through helm-python-sdk in the tools venv `cargo xtask test` makes:
//! one harness (`helm.py`, beside this crate's sources) for every test that runs real Helm.

use std::path::PathBuf;

/// The Python with helm-python-sdk: `PLX_HELM_PYTHON`, or xtask's tools venv under `target/`.
/// Missing, it fails the test with what to run.
pub fn helm_python() -> PathBuf {
    let python = std::env::var_os("PLX_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/plx-tools/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run the tests with `cargo xtask test` (or `cargo xtask chart`), which installs helm-python-sdk",
        python.display()
    );
    python
}

/// `helm.py`: JSON requests on stdin (lint, render, validate, install with a post-renderer),
/// JSON answers on stdout.
pub fn helm_harness() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("helm.py")
}
