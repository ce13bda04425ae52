//! Polyaxon 2.18 itself, from the venv `cargo xtask test` installs: the reference the tests
//! compare with.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use serde_json::Value;

/// The Python with `polyaxon==2.18.0`: `PLX_POLYAXON_PYTHON`, or xtask's venv under `target/`.
pub fn polyaxon_python() -> PathBuf {
    std::env::var_os("PLX_POLYAXON_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/plx-venv/bin/python"))
}

/// A run's init containers and volumes as Polyaxon's own converter generates them, as its agent
/// does (`conformance/polyaxon_converter.py`). `case` is `{"agent", "operation", "uuid"}`; the
/// answer is `{"initContainers", "volumes"}`.
pub fn polyaxon_converter(case: &Value) -> anyhow::Result<Value> {
    let python = polyaxon_python();
    let output = std::process::Command::new(&python)
        .arg(crate::workspace_root().join("conformance/polyaxon_converter.py"))
        .arg(case.to_string())
        .output()
        .with_context(|| {
            format!(
                "{}: run the tests with `cargo xtask test`, which installs Polyaxon",
                python.display()
            )
        })?;
    ensure!(
        output.status.success(),
        "Polyaxon's converter failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}
