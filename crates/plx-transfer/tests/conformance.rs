//! The transfer conformance runner: every case under `conformance/transfer/` seeds a fresh bucket on
//! a real server, downloads its entries, and must give exactly its tree and its failures.

use std::{collections::BTreeMap, path::Path, process::ExitCode, time::Duration};

use plx_testkit::{Change, LatencyProxy, Moto, Network, S3Server, Tmpfs};
use plx_transfer::{Config, Download, Entry, ErrorKind, Pinned};
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
    if let Some(upload) = case.get("upload") {
        return check_upload(client, server, bucket, case, upload).await;
    }
    for (key, content) in case["objects"].as_object().into_iter().flatten() {
        let content = content.as_str().unwrap_or_default();
        match case["checksums"][key.as_str()].as_str() {
            Some(crc) => put_with(client, bucket, key, content, crc).await?,
            None => plx_testkit::s3::put(client, bucket, key, content).await?,
        }
    }
    for (index, (key, size)) in case["generated"]
        .as_object()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let size = size.as_u64().unwrap_or_default() as usize;
        let body = plx_testkit::bytes(index as u64 + 1, size);
        plx_testkit::s3::put(client, bucket, key, body).await?;
    }
    // Each key's versions, oldest first, in a bucket that keeps them; the version ids, by key.
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(seeded) = case["versions"].as_object() {
        plx_testkit::s3::enable_versioning(client, bucket).await?;
        for (key, contents) in seeded {
            for content in contents.as_array().into_iter().flatten() {
                let put = client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(
                        content
                            .as_str()
                            .unwrap_or_default()
                            .as_bytes()
                            .to_vec()
                            .into(),
                    )
                    .send()
                    .await?;
                let id = put
                    .version_id()
                    .ok_or_else(|| anyhow::anyhow!("the store kept no version of {key}"))?;
                versions.entry(key.clone()).or_default().push(id.to_owned());
            }
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
    let mut entries = Vec::new();
    for entry in case["entries"].as_array().into_iter().flatten() {
        if let Some(key) = entry["pinned"].as_str() {
            entries.push(Entry::Pinned(
                pinned(client, bucket, entry, key, &versions).await?,
            ));
        }
    }
    let listed = case["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry.get("pinned").is_none())
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
        });
    entries.extend(listed);
    let node_cache = tempfile::tempdir()?;
    let mut request = Download {
        bucket: bucket.to_owned(),
        prefix: case["prefix"].as_str().unwrap_or_default().to_owned(),
        entries,
        include: strings(&case["include"]),
        exclude: strings(&case["exclude"]),
        manifest: false,
        cache: None,
        state: None,
    };
    if let Some(cache) = case.get("cache") {
        request.cache = Some(warmed(client, &request, node_cache.path(), cache).await?);
        // What changed in the bucket after the cache was filled.
        for (key, content) in case["changed"].as_object().into_iter().flatten() {
            plx_testkit::s3::put(client, bucket, key, content.as_str().unwrap_or_default()).await?;
        }
    }
    // A directory inside a fresh one (or a small tmpfs), so that the state beside the
    // destination is the case's own.
    let (work, tmpfs) = match case["room_kib"].as_u64() {
        Some(kib) => (None, Some(Tmpfs::mount(kib)?)),
        None => (Some(tempfile::tempdir()?), None),
    };
    let parent = match (&work, &tmpfs) {
        (Some(work), _) => work.path(),
        (_, Some(tmpfs)) => tmpfs.path(),
        _ => unreachable!("one of the two is made above"),
    };
    let destination = parent.join("dest");
    std::fs::create_dir_all(&destination)?;
    for (path, content) in case["before"].as_object().into_iter().flatten() {
        let path = destination.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(&destination))?;
        std::fs::write(path, content.as_str().unwrap_or_default())?;
    }
    // Seeded straight; downloaded through the case's network, if it has one.
    let (proxy, far_client) = through(server, client, bucket, case).await?;
    let config = Config {
        requests: case["requests"]
            .as_u64()
            .map_or(Config::default().requests, |requests| requests as usize),
        ..Config::default()
    };
    let result = plx_transfer::download(
        far_client.as_ref().unwrap_or(client),
        &request,
        &destination,
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
                    .replace("BUCKET", bucket)
                    .replace("DEST", &destination.display().to_string()),
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
        (
            "from_cache",
            summary.map(|summary| summary.from_cache.objects),
        ),
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
    if let Some(want) = case["expect"]["limit_below"].as_u64() {
        let lowest = summary.and_then(|summary| summary.steps.iter().map(|step| step.limit).min());
        if lowest.is_none_or(|lowest| u64::from(lowest) >= want) {
            problems.push(format!(
                "the requests in flight never went below {want}: {:?}",
                summary.map(|summary| &summary.steps)
            ));
        }
    }
    if let (Some(proxy), Some(network)) = (&proxy, case.get("network"))
        && missed(proxy, network)
    {
        problems.push("the proxy injected none of the case's faults".to_owned());
    }
    if let Some(tree) = case["expect"]["tree"].as_object() {
        let want: BTreeMap<String, Option<String>> = tree
            .iter()
            .map(|(path, content)| (path.clone(), content.as_str().map(str::to_owned)))
            .collect();
        let got = local_tree(&destination, &destination);
        if got != want {
            problems.push(format!("tree {got:?}, expected {want:?}"));
        }
    }
    // Generated objects that must land byte for byte (by their path under the destination).
    let prefix = case["prefix"].as_str().unwrap_or_default();
    for path in case["expect"]["intact"].as_array().into_iter().flatten() {
        let path = path.as_str().unwrap_or_default();
        let key = [prefix, path]
            .iter()
            .filter(|part| !part.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let generated = case["generated"]
            .as_object()
            .into_iter()
            .flatten()
            .enumerate()
            .find(|(_, (name, _))| **name == key);
        let Some((index, (_, size))) = generated else {
            problems.push(format!("intact: {key} is not a generated object"));
            continue;
        };
        let want = plx_testkit::bytes(index as u64 + 1, size.as_u64().unwrap_or_default() as usize);
        if std::fs::read(destination.join(path)).ok().as_deref() != Some(&want[..]) {
            problems.push(format!("{path} did not land byte for byte"));
        }
    }
    if let Some(want) = case["expect"]["state"].as_array() {
        let state = plx_transfer::state_dir(&destination);
        let mut got: Vec<String> = std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        let want: Vec<&str> = want.iter().filter_map(Value::as_str).collect();
        if got != want {
            problems.push(format!(
                "state {} holds {got:?}, expected {want:?}",
                state.display()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(problems.join("; "))
    }
}

/// An upload case: the case's files sent under its prefix (through its network), then the
/// failures, the retries and every stored object as the case says.
async fn check_upload(
    client: &aws_sdk_s3::Client,
    server: &S3Server,
    bucket: &str,
    case: &Value,
    upload: &Value,
) -> anyhow::Result<()> {
    let source = tempfile::tempdir()?;
    let mut sent = BTreeMap::new();
    for (path, content) in upload["files"].as_object().into_iter().flatten() {
        sent.insert(
            path.clone(),
            content.as_str().unwrap_or_default().as_bytes().to_vec(),
        );
    }
    for (index, (path, size)) in upload["generated"]
        .as_object()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let size = size.as_u64().unwrap_or_default() as usize;
        sent.insert(path.clone(), plx_testkit::bytes(index as u64 + 500, size));
    }
    for (path, bytes) in &sent {
        let file = source.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(source.path()))?;
        std::fs::write(file, bytes)?;
    }
    let (proxy, far_client) = through(server, client, bucket, case).await?;
    let prefix = case["prefix"].as_str().unwrap_or_default();
    let result = plx_transfer::upload(
        far_client.as_ref().unwrap_or(client),
        &plx_transfer::Upload::new(bucket, prefix, source.path()),
        &Config::default(),
        &None,
    )
    .await;
    let mut problems = Vec::new();
    let mut got: Vec<(String, &'static str)> = match &result {
        Ok(_) => Vec::new(),
        Err(error) => error
            .failures
            .iter()
            .map(|failure| (failure.key.clone(), kind(failure.kind)))
            .collect(),
    };
    let mut want: Vec<(String, &'static str)> = case["expect"]["failures"]
        .as_array()
        .into_iter()
        .flatten()
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
    let retried = result.as_ref().ok().map(|summary| summary.retried);
    if let Some(want) = case["expect"]["retried_at_least"].as_u64()
        && retried.is_none_or(|retried| retried < want)
    {
        problems.push(format!(
            "retried {retried:?}, expected at least {want} (the proxy: {:?})",
            proxy.as_ref().map(LatencyProxy::counts)
        ));
    }
    if let (Some(proxy), Some(network)) = (&proxy, case.get("network"))
        && missed(proxy, network)
    {
        problems.push("the proxy injected none of the case's faults".to_owned());
    }
    if let Some(stored) = case["expect"]["stored"].as_object() {
        let mut want = BTreeMap::new();
        for (key, content) in stored {
            let bytes = match content.as_str() {
                Some(text) => text.as_bytes().to_vec(),
                None => sent.get(key).cloned().unwrap_or_default(),
            };
            want.insert(key.clone(), bytes);
        }
        let mut got = BTreeMap::new();
        let listed = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(format!("{prefix}/"))
            .send()
            .await?;
        for object in listed.contents() {
            let key = object.key().unwrap_or_default();
            let body = client.get_object().bucket(bucket).key(key).send().await?;
            let bytes = body.body.collect().await?.into_bytes().to_vec();
            got.insert(key[prefix.len() + 1..].to_owned(), bytes);
        }
        if got != want {
            let differ: Vec<&String> = want
                .keys()
                .chain(got.keys())
                .filter(|key| want.get(*key) != got.get(*key))
                .collect();
            problems.push(format!("stored objects differ: {differ:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(problems.join("; "))
    }
}

/// The case's network, if it has one: a latency proxy in front of `server`, and a client
/// through it (the case's objects are seeded and read back straight).
async fn through(
    server: &S3Server,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    case: &Value,
) -> anyhow::Result<(Option<LatencyProxy>, Option<aws_sdk_s3::Client>)> {
    let Some(network) = case.get("network") else {
        return Ok((None, None));
    };
    let proxy = far(server, client, bucket, network).await?;
    let through = plx_testkit::s3::client_for(
        &proxy.endpoint(),
        &server.region,
        &server.access_key,
        &server.secret_key,
    );
    Ok((Some(proxy), Some(through)))
}

/// Whether a fault the case's `network` asks for never happened: a case that injects none
/// tests nothing.
fn missed(proxy: &LatencyProxy, network: &Value) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let counts = proxy.counts();
    let missed = |share: &str, count: &AtomicU64| {
        network[share].as_f64().unwrap_or(0.0) > 0.0 && count.load(Relaxed) == 0
    };
    missed("late", &counts.late)
        || missed("stall", &counts.stalled)
        || missed("busy", &counts.busy)
        || missed("corrupt", &counts.corrupted)
        || missed("corrupt_sent", &counts.corrupted)
        || missed("slow", &counts.slowed)
        || missed("slow_sent", &counts.slowed)
        || (network.get("change").is_some() && counts.changed.load(Relaxed) == 0)
}

/// A latency proxy in front of `server`, as the case's `network` says; an object it changes is
/// written through a PUT presigned by `client` with other bytes of the same size.
async fn far(
    server: &S3Server,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    network: &Value,
) -> anyhow::Result<LatencyProxy> {
    let upstream = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .map_err(|error| anyhow::anyhow!("{}: {error}", server.endpoint))?;
    let seconds = |field: &str| Duration::from_secs(network[field].as_u64().unwrap_or(0));
    let change = match network["change"]["key"].as_str() {
        Some(key) => {
            let size = network["change"]["size"].as_u64().unwrap_or_default() as usize;
            let put = client
                .put_object()
                .bucket(bucket)
                .key(key)
                .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(
                    Duration::from_secs(600),
                )?)
                .await
                .map_err(|error| anyhow::anyhow!("presigning a PUT of {key}: {error}"))?;
            Some(Change {
                path: format!("/{bucket}/{key}"),
                put: put.uri().to_owned(),
                body: plx_testkit::bytes(u64::MAX, size).into(),
            })
        }
        None => None,
    };
    let network = Network {
        change,
        late: network["late"].as_f64().unwrap_or(0.0),
        late_by: seconds("late_by_s"),
        stall: network["stall"].as_f64().unwrap_or(0.0),
        stall_for: seconds("stall_for_s"),
        busy: network["busy"].as_f64().unwrap_or(0.0),
        corrupt: network["corrupt"].as_f64().unwrap_or(0.0),
        corrupt_sent: network["corrupt_sent"].as_f64().unwrap_or(0.0),
        slow: network["slow"].as_f64().unwrap_or(0.0),
        slow_sent: network["slow_sent"].as_f64().unwrap_or(0.0),
        slow_rate: network["slow_rate"].as_u64().unwrap_or(4096),
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

/// The node cache for a case: filled by a first download of the same request into a
/// destination of its own (`warm`), then every entry overwritten with other bytes of the same
/// length (`tamper`); or a path where no cache can be made (`unusable`: a file).
async fn warmed(
    client: &aws_sdk_s3::Client,
    request: &Download,
    dir: &Path,
    case: &Value,
) -> anyhow::Result<plx_transfer::NodeCache> {
    let mut cache = plx_transfer::NodeCache {
        dir: dir.join("cache"),
        store: "conformance".to_owned(),
        budget: None,
    };
    if case["unusable"].as_bool() == Some(true) {
        std::fs::write(&cache.dir, "not a directory")?;
        return Ok(cache);
    }
    if case["warm"].as_bool() == Some(true) {
        let first = dir.join("first");
        let warming = Download {
            cache: Some(cache.clone()),
            ..request.clone()
        };
        plx_transfer::download(client, &warming, &first, &Config::default(), &None)
            .await
            .map_err(|error| anyhow::anyhow!("warming the cache: {error}"))?;
    }
    if case["tamper"].as_bool() == Some(true) {
        let mut tampered = 0;
        for (path, bytes) in plx_testkit::all_files(&cache.dir.join("v1/objects")) {
            let other: Vec<u8> = bytes.iter().map(|byte| byte ^ 0x20).collect();
            std::fs::write(cache.dir.join("v1/objects").join(path), other)?;
            tampered += 1;
        }
        anyhow::ensure!(tampered > 0, "the cache held nothing to tamper with");
    }
    cache.budget = case["budget"].as_u64();
    Ok(cache)
}

/// A pinned entry as a manifest would record it: the key's ETag (of its `version`-th version,
/// where the case seeds versions) unless the case gives one.
async fn pinned(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    entry: &Value,
    key: &str,
    versions: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<Pinned> {
    let version_id = entry["version"]
        .as_u64()
        .and_then(|at| versions.get(key)?.get(at as usize).cloned());
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.clone())
        .send()
        .await;
    let (etag, size) = match head {
        Ok(head) => (
            head.e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            head.content_length().unwrap_or(0).max(0) as u64,
        ),
        // A key the case does not seed: pinned as some object that is gone.
        Err(_) => ("0123456789abcdef0123456789abcdef".to_owned(), 1),
    };
    Ok(Pinned {
        key: key.to_owned(),
        size,
        etag: entry["etag"].as_str().map_or(etag, str::to_owned),
        version_id,
        checksum: None,
        path: entry["to"].as_str().unwrap_or_default().to_owned(),
    })
}

fn kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not-found",
        ErrorKind::Denied => "denied",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::HostileKey => "hostile-key",
        ErrorKind::Io => "io",
        ErrorKind::NoSpace => "no-space",
        ErrorKind::Changed => "changed",
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
        "no-space",
        "changed",
    ]
    .into_iter()
    .find(|known| *known == name)
    .unwrap_or("unknown")
}

/// Files with their content and empty directories (`dir/`: None): everything, hidden names too,
/// so that a temporary left behind or the engine's own state in the data tree shows.
fn local_tree(root: &Path, dir: &Path) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
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
