//! What the soak's runs saw, for `cargo xtask soak` to add up into `docs/RELIABILITY.md`: the
//! tests hold every run to its invariants as they always do and, where `PLX_SOAK_RECORD` names a
//! file, append one JSON line per run of what they counted. The figures in the document are then
//! sums a program made, never a person.

use std::io::Write;

/// How many runs a soaked test makes: `variable` from the environment (the soak sets it), else
/// `default` (what `cargo xtask test` runs).
pub fn runs(variable: &str, default: u64) -> u64 {
    std::env::var(variable)
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(default)
}

/// Appends `line` to the file `PLX_SOAK_RECORD` names, if any. One `write` of one line to a file
/// opened for appending: lines from tests running at once do not interleave.
pub fn record(line: &serde_json::Value) {
    let Some(path) = std::env::var_os("PLX_SOAK_RECORD") else {
        return;
    };
    let mut text = line.to_string();
    text.push('\n');
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(error) = written {
        panic!("the soak's record {}: {error}", path.to_string_lossy());
    }
}
