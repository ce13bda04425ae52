//! The transfer conformance runner: every case under `conformance/transfer/` seeds a fresh bucket on
//! a real server, downloads its entries, and must give exactly its tree and its failures.

use std::{collections::BTreeMap, path::Path, process::ExitCode};

use plx_testkit::{Moto, S3Server};
use plx_transfer::{Config, Download, Entry, ErrorKind};
use serde_json::Value;

fn main() -> ExitCode {
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
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("transfer conformance could not run: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("transfer.schema.json"))?)?;
    let schema = jsonschema::validator_for(&schema)
        .map_err(|error| anyhow::format_err!("transfer.schema.json: {error}"))?;
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let mut files: Vec<_> = std::fs::read_dir(root.join("transfer"))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter
            .as_ref()
            .is_some_and(|filter| !name.contains(filter.as_str()))
        {
            continue;
        }
        let case: Value = serde_yaml::from_str(&std::fs::read_to_string(&file)?)?;
        if let Some(error) = schema.iter_errors(&case).next() {
            anyhow::bail!(
                "{name}: not a case (transfer.schema.json): {error} at {}",
                error.instance_path()
            );
        }
        cases.push((name, case));
    }
    anyhow::ensure!(!cases.is_empty(), "no transfer conformance case found");

    let server = S3Server::start().await?;
    let moto = if cases.iter().any(|(_, case)| case["server"] == "moto") {
        Some(Moto::start().await?)
    } else {
        None
    };
    let mut failed = Vec::new();
    for (index, (name, case)) in cases.iter().enumerate() {
        let client = match (&moto, case["server"].as_str()) {
            (Some(moto), Some("moto")) => {
                plx_testkit::s3::client_for(&moto.endpoint, "us-east-1", "testing", "testing")
            }
            _ => server.client.clone(),
        };
        if let Err(problem) = check(&client, &format!("case-{index:03}"), case).await {
            failed.push(format!(
                "{name} ({}): {problem}",
                case["description"].as_str().unwrap_or("")
            ));
        }
    }
    println!(
        "{:<32} {:>6} {:>7} {:>7}",
        "area", "cases", "passed", "failed"
    );
    println!(
        "{:<32} {:>6} {:>7} {:>7}",
        format!("transfer ({:?})", server.backend),
        cases.len(),
        cases.len() - failed.len(),
        failed.len()
    );
    for failure in &failed {
        println!("FAIL {failure}");
    }
    println!(
        "transfer conformance: {} passed, {} failed",
        cases.len() - failed.len(),
        failed.len()
    );
    Ok(failed.is_empty())
}

async fn check(client: &aws_sdk_s3::Client, bucket: &str, case: &Value) -> anyhow::Result<()> {
    plx_testkit::s3::create_bucket(client, bucket).await?;
    for (key, content) in case["objects"].as_object().into_iter().flatten() {
        plx_testkit::s3::put(client, bucket, key, content.as_str().unwrap_or_default()).await?;
    }
    let strings = |value: &Value| {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let entries = case["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let to = entry["to"].as_str().unwrap_or_default().to_owned();
            match (entry["file"].as_str(), entry["dir"].as_str()) {
                (Some(from), _) => Entry::File {
                    from: from.to_owned(),
                    to,
                },
                (_, from) => Entry::Dir {
                    from: from.unwrap_or_default().to_owned(),
                    to,
                },
            }
        })
        .collect();
    let request = Download {
        bucket: bucket.to_owned(),
        prefix: case["prefix"].as_str().unwrap_or_default().to_owned(),
        entries,
        include: strings(&case["include"]),
        exclude: strings(&case["exclude"]),
    };
    let destination = tempfile::tempdir()?;
    let result = plx_transfer::download(
        client,
        &request,
        destination.path(),
        &Config::default(),
        &None,
    )
    .await;
    let mut problems = Vec::new();
    let failures = match &result {
        Ok(_) => Vec::new(),
        Err(error) => error.failures.clone(),
    };
    let expected_failures: Vec<&Value> = case["expect"]["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut got: Vec<(String, &'static str)> = failures
        .iter()
        .map(|failure| (failure.key.clone(), kind(failure.kind)))
        .collect();
    let mut want: Vec<(String, &'static str)> = expected_failures
        .iter()
        .map(|failure| {
            (
                failure["key"]
                    .as_str()
                    .unwrap_or_default()
                    .replace("BUCKET", bucket),
                kind_name(failure["kind"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    got.sort();
    want.sort();
    if got != want {
        problems.push(format!("failures {got:?}, expected {want:?}"));
    }
    for failure in &expected_failures {
        if let Some(needle) = failure["message_contains"].as_str()
            && !failures.iter().any(|got| got.message.contains(needle))
        {
            problems.push(format!(
                "no failure message contains {needle:?}: {failures:?}"
            ));
        }
    }
    if let Some(tree) = case["expect"]["tree"].as_object() {
        let want: BTreeMap<String, Option<String>> = tree
            .iter()
            .map(|(path, content)| (path.clone(), content.as_str().map(str::to_owned)))
            .collect();
        let got = local_tree(destination.path(), destination.path());
        if got != want {
            problems.push(format!("tree {got:?}, expected {want:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(problems.join("; "))
    }
}

fn kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not-found",
        ErrorKind::Denied => "denied",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::HostileKey => "hostile-key",
        ErrorKind::Io => "io",
        _ => "transport",
    }
}

fn kind_name(name: &str) -> &'static str {
    [
        "not-found",
        "denied",
        "corrupt",
        "hostile-key",
        "io",
        "transport",
    ]
    .into_iter()
    .find(|known| *known == name)
    .unwrap_or("unknown")
}

/// Files with their content and empty directories (`dir/`: None), without the state file.
fn local_tree(root: &Path, dir: &Path) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if relative.starts_with(".plx-transfer") {
            continue;
        }
        if path.is_dir() {
            let inner = local_tree(root, &path);
            if inner.is_empty() {
                out.insert(format!("{relative}/"), None);
            }
            out.extend(inner);
        } else {
            out.insert(relative, std::fs::read_to_string(&path).ok());
        }
    }
    out
}
