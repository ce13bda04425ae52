//! Conformance cases as data: the files of one folder under `conformance/`, each checked
//! against that folder's case schema, for the harness-less runners.

use std::{future::Future, path::Path, process::ExitCode};

use serde_json::Value;

/// The cases of `conformance/<area>/` (`<area>.schema.json` is their format), sorted by name,
/// keeping those whose name contains the first non-flag argument when one is given. None found
/// is an error: a runner that checks nothing must not pass.
pub fn cases(area: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let root = crate::workspace_root().join("conformance");
    let schema_file = format!("{area}.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(root.join(&schema_file))?)?;
    let schema = jsonschema::validator_for(&schema)
        .map_err(|error| anyhow::format_err!("{schema_file}: {error}"))?;
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let mut files: Vec<_> = std::fs::read_dir(root.join(area))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let name = name_of(&file);
        if filter
            .as_ref()
            .is_some_and(|filter| !name.contains(filter.as_str()))
        {
            continue;
        }
        let case: Value = serde_yaml::from_str(&std::fs::read_to_string(&file)?)?;
        if let Some(error) = schema.iter_errors(&case).next() {
            anyhow::bail!(
                "{name}: not a case ({schema_file}): {error} at {}",
                error.instance_path()
            );
        }
        cases.push((name, case));
    }
    anyhow::ensure!(!cases.is_empty(), "no {area} conformance case found");
    Ok(cases)
}

/// Every model case (`conformance/model/`, its folders walked), sorted, each named by its path
/// under that folder; for the tests that hold other readers (the webhook, the chart's values
/// schema) to the cases the model's own runner checks.
pub fn model_cases() -> anyhow::Result<Vec<(String, Value)>> {
    let root = crate::workspace_root().join("conformance/model");
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let case: Value = serde_yaml::from_str(&std::fs::read_to_string(&file)?)
            .map_err(|error| anyhow::format_err!("{name}: {error}"))?;
        cases.push((name, case));
    }
    anyhow::ensure!(!cases.is_empty(), "no model conformance case found");
    Ok(cases)
}

fn name_of(file: &Path) -> String {
    file.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A runner's `main`: `run` on a two-thread runtime; it returns whether every case passed.
pub fn run_cases<F>(area: &str, run: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<bool>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{area} conformance could not run: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The inputs a fuzz target keeps (`fuzz/corpus/<target>`) and the crashes turned into
/// regressions (`fuzz/regressions/<target>`), for tests that replay them without libFuzzer.
pub fn fuzz_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = crate::workspace_root().join("fuzz");
    let mut inputs = Vec::new();
    for kind in ["regressions", "corpus"] {
        for entry in std::fs::read_dir(root.join(kind).join(target))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                inputs.push((format!("{kind}/{target}/{}", name_of(&entry.path())), bytes));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Prints a runner's table row, each failure, and the closing `N passed, N failed` line;
/// whether every case passed.
pub fn report(area: &str, backend: &str, total: usize, failed: &[String]) -> bool {
    println!(
        "{:<32} {:>6} {:>7} {:>7}",
        "area", "cases", "passed", "failed"
    );
    println!(
        "{:<32} {:>6} {:>7} {:>7}",
        format!("{area} ({backend})"),
        total,
        total - failed.len(),
        failed.len()
    );
    for failure in failed {
        println!("FAIL {failure}");
    }
    println!(
        "{area} conformance: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    failed.is_empty()
}
