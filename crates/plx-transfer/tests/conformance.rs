//! The transfer conformance runner: every case under `conformance/transfer/` seeds a fresh bucket on
//! a real server, downloads its entries, and must give exactly its tree and its failures.

use std::{collections::BTreeMap, path::Path, process::ExitCode, time::Duration};

use plx_testkit::{LatencyProxy, Moto, Network, S3Server};
use plx_transfer::{Config, Download, Entry, ErrorKind};
use serde_json::Value;

fn main() -> ExitCode {
    plx_testkit::run_cases("transfer", run())
}

async fn run() -> anyhow::Result<bool> {
    let cases = plx_testkit::cases("transfer")?;
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
        let bucket = format!("case-{index:03}");
        if let Err(problem) = check(&client, &server, &bucket, case).await {
            failed.push(format!(
                "{name} ({}): {problem}",
                case["description"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(plx_testkit::report(
        "transfer",
        &format!("{:?}", server.backend),
        cases.len(),
        &failed,
    ))
}

async fn check(
    client: &aws_sdk_s3::Client,
    server: &S3Server,
    bucket: &str,
    case: &Value,
) -> anyhow::Result<()> {
    plx_testkit::s3::create_bucket(client, bucket).await?;
    for (key, content) in case["objects"].as_object().into_iter().flatten() {
        let content = content.as_str().unwrap_or_default();
        match case["checksums"][key.as_str()].as_str() {
            Some(crc) => put_with(client, bucket, key, content, crc).await?,
            None => plx_testkit::s3::put(client, bucket, key, content).await?,
        }
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
            match (
                entry["file"].as_str(),
                entry["path"].as_str(),
                entry["dir"].as_str(),
            ) {
                (Some(from), _, _) => Entry::File {
                    from: from.to_owned(),
                    to,
                },
                (_, Some(from), _) => Entry::Path {
                    from: from.to_owned(),
                    to,
                },
                (_, _, from) => Entry::Dir {
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
    for (path, content) in case["before"].as_object().into_iter().flatten() {
        let path = destination.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(destination.path()))?;
        std::fs::write(path, content.as_str().unwrap_or_default())?;
    }
    // Seeded straight; downloaded through the case's network, if it has one.
    let proxy = match case.get("network") {
        Some(network) => Some(far(server, network).await?),
        None => None,
    };
    let far_client = proxy.as_ref().map(|proxy| {
        plx_testkit::s3::client_for(
            &proxy.endpoint(),
            &server.region,
            &server.access_key,
            &server.secret_key,
        )
    });
    let config = Config {
        requests: case["requests"]
            .as_u64()
            .map_or(Config::default().requests, |requests| requests as usize),
        ..Config::default()
    };
    let result = plx_transfer::download(
        far_client.as_ref().unwrap_or(client),
        &request,
        destination.path(),
        &config,
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
    let summary = result.as_ref().ok();
    for (field, got) in [
        ("crc_checked", summary.map(|summary| summary.crc_checked)),
        ("unverified", summary.map(|summary| summary.unverified)),
        ("retried", summary.map(|summary| summary.retried)),
    ] {
        if let Some(want) = case["expect"][field].as_u64()
            && got != Some(want)
        {
            problems.push(format!("{field} {got:?}, expected {want}"));
        }
    }
    for (field, got) in [
        ("hedged_at_least", summary.map(|summary| summary.hedged)),
        ("retried_at_least", summary.map(|summary| summary.retried)),
    ] {
        if let Some(want) = case["expect"][field].as_u64()
            && got.is_none_or(|got| got < want)
        {
            problems.push(format!("{field}: {got:?}, expected at least {want}"));
        }
    }
    if let (Some(proxy), Some(network)) = (&proxy, case.get("network")) {
        // The case's faults happened: a case that injects none tests nothing.
        let counts = proxy.counts();
        let made = |share: &str, count: &std::sync::atomic::AtomicU64| {
            network[share].as_f64().unwrap_or(0.0) > 0.0
                && count.load(std::sync::atomic::Ordering::Relaxed) == 0
        };
        if made("late", &counts.late) || made("stall", &counts.stalled) {
            problems.push("the proxy injected none of the case's faults".to_owned());
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

/// A latency proxy in front of `server`, as the case's `network` says.
async fn far(server: &S3Server, network: &Value) -> anyhow::Result<LatencyProxy> {
    let upstream = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .map_err(|error| anyhow::anyhow!("{}: {error}", server.endpoint))?;
    let seconds = |field: &str| Duration::from_secs(network[field].as_u64().unwrap_or(0));
    let network = Network {
        late: network["late"].as_f64().unwrap_or(0.0),
        late_by: seconds("late_by_s"),
        stall: network["stall"].as_f64().unwrap_or(0.0),
        stall_for: seconds("stall_for_s"),
        spare: network["spare"].as_u64().unwrap_or(0),
        seed: network["seed"].as_u64().unwrap_or(1),
        ..Network::far(Duration::from_millis(
            network["delay_ms"].as_u64().unwrap_or(0),
        ))
    };
    LatencyProxy::start(upstream, network).await
}

/// A PUT that sends the CRC `crc` of its bytes, for the store to check and keep.
async fn put_with(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    content: &str,
    crc: &str,
) -> anyhow::Result<()> {
    use aws_sdk_s3::types::ChecksumAlgorithm;
    use crc_fast::CrcAlgorithm;
    let encode = |algorithm, width: usize| {
        let value = crc_fast::checksum(algorithm, content.as_bytes()).to_be_bytes();
        aws_smithy_types::base64::encode(&value[8 - width..])
    };
    let put = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(content.as_bytes().to_vec().into());
    // The algorithm named as well as its value: moto keeps a value only when it is named.
    let put = match crc {
        "crc32" => put
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_crc32(encode(CrcAlgorithm::Crc32IsoHdlc, 4)),
        "crc32c" => put
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(encode(CrcAlgorithm::Crc32Iscsi, 4)),
        "crc64nvme" => put
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(encode(CrcAlgorithm::Crc64Nvme, 8)),
        other => anyhow::bail!("no CRC called {other}"),
    };
    put.send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(error)))?;
    Ok(())
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

/// Files with their content and empty directories (`dir/`: None), without the state file and
/// its journal (temporaries are listed: none may be left).
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
