//! The engine through a network and a store that misbehave (plx-testkit's `FaultProxy` in front
//! of a real S3 server): for each fault class, downloads and uploads of a mixed tree run several
//! times. Each run completes with every byte verified, or fails naming the objects; no partial or
//! corrupt file ever carries a final name; and a rerun on a healed network completes, fetching
//! only what was missing.
//!
//! `PLX_FAULT_RUNS` sets the runs per class (2 here; `cargo xtask soak` runs many more).

use std::{collections::BTreeMap, time::Duration};

use plx_testkit::{Fault, FaultProxy, S3Server, bytes, visible_files as visible};
use plx_transfer::{Config, Download, Entry};

const BUCKET: &str = "datasets";

fn runs() -> u64 {
    std::env::var("PLX_FAULT_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(2)
}

/// Small files in a few directories and two objects large enough to go in ranged parts.
fn mixed() -> BTreeMap<String, Vec<u8>> {
    let mut objects = BTreeMap::new();
    for index in 0..24u64 {
        let size = 1 + (index as usize * 7919) % 60_000;
        objects.insert(
            format!("d{}/f{index:02}.bin", index % 3),
            bytes(index, size),
        );
    }
    objects.insert("large/a.bin".to_owned(), bytes(100, 3 * 1024 * 1024 + 17));
    objects.insert("large/b.bin".to_owned(), bytes(101, 2 * 1024 * 1024));
    objects
}

/// A client of the server through `endpoint`, with timeouts short enough for a stall to count.
fn client(server: &S3Server, endpoint: &str) -> aws_sdk_s3::Client {
    let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
        .read_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build();
    let direct = plx_testkit::s3::client_for(
        endpoint,
        &server.region,
        &server.access_key,
        &server.secret_key,
    );
    aws_sdk_s3::Client::from_conf(
        direct
            .config()
            .to_builder()
            .timeout_config(timeouts)
            .build(),
    )
}

fn config() -> Config {
    Config {
        concurrency: 8,
        multipart_threshold: 1024 * 1024,
        part_size: 256 * 1024,
        part_concurrency: 4,
        attempts: 4,
        backoff: Duration::from_millis(20),
        ..Config::default()
    }
}

async fn seeded() -> anyhow::Result<(S3Server, BTreeMap<String, Vec<u8>>)> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects = mixed();
    for (key, body) in &objects {
        server
            .put(BUCKET, &format!("v1/{key}"), body.clone())
            .await?;
    }
    Ok((server, objects))
}

/// Every other run breaks most connections, so that some objects fail for good and the rerun
/// has something to finish; the others break 30%, which retries should carry.
fn rate(run: u64) -> f64 {
    if run.is_multiple_of(2) { 0.3 } else { 0.85 }
}

async fn proxy(server: &S3Server, fault: Fault, run: u64, seed: u64) -> anyhow::Result<FaultProxy> {
    let upstream = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .map_err(|error| anyhow::anyhow!("{}: {error}", server.endpoint))?;
    FaultProxy::start(upstream, &[fault], rate(run), seed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_complete_or_fail_cleanly_under_every_fault() -> anyhow::Result<()> {
    let (server, objects) = seeded().await?;
    let request = Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: vec![Entry::Dir {
            from: String::new(),
            to: String::new(),
        }],
        ..Download::default()
    };
    let mut report = Vec::new();
    for fault in Fault::ALL {
        let mut injected = 0;
        for run in 0..runs() {
            let proxy = proxy(&server, fault, run, run * 7919 + fault as u64).await?;
            let faulty = client(&server, &proxy.endpoint());
            let destination = tempfile::tempdir()?;
            let result =
                plx_transfer::download(&faulty, &request, destination.path(), &config(), &None)
                    .await;
            injected += proxy.injected();
            let landed = visible(destination.path());
            // Whatever landed is whole and right, failed or not.
            for (path, bytes) in &landed {
                assert!(
                    objects.get(path) == Some(bytes),
                    "{fault:?} run {run}: {path} carries a final name but is not the object"
                );
            }
            match &result {
                Ok(summary) => {
                    assert!(
                        landed == objects,
                        "{fault:?} run {run}: succeeded incomplete"
                    );
                    assert_eq!(summary.objects as usize, objects.len());
                }
                Err(error) => {
                    assert!(!error.failures.is_empty());
                    let mut listing_failed = false;
                    for failure in &error.failures {
                        assert!(
                            failure.key.starts_with("s3://datasets/v1"),
                            "{fault:?}: a failure names no object: {failure}"
                        );
                        let path = failure.key.trim_start_matches("s3://datasets/v1");
                        let path = path.trim_start_matches('/');
                        // The listing itself failed: it is named (the prefix), nothing is fetched.
                        listing_failed |= path.is_empty();
                        assert!(!landed.contains_key(path), "{path} failed but landed");
                    }
                    if listing_failed {
                        assert!(landed.is_empty(), "{fault:?}: fetched without a listing");
                    } else {
                        assert_eq!(
                            error.failures.len() + landed.len(),
                            objects.len(),
                            "{fault:?}: every object either landed or is named"
                        );
                    }
                }
            }
            // The network heals: the rerun completes and fetches only what was missing.
            proxy.set_rate(0.0);
            let summary =
                plx_transfer::download(&faulty, &request, destination.path(), &config(), &None)
                    .await
                    .map_err(|error| anyhow::anyhow!("{fault:?} run {run}: rerun: {error}"))?;
            assert!(
                visible(destination.path()) == objects,
                "{fault:?}: rerun tree"
            );
            assert_eq!(
                summary.skipped as usize,
                landed.len(),
                "{fault:?}: {summary:?}"
            );
            assert_eq!(summary.objects as usize, objects.len() - landed.len());
            report.push(format!(
                "{fault:?} at {:.0}%: {} connections broken, {} of {} landed, the rest named; the rerun fetched {}",
                rate(run) * 100.0,
                proxy.injected(),
                landed.len(),
                objects.len(),
                summary.objects
            ));
        }
        assert!(injected > 0, "{fault:?}: no fault was injected");
    }
    println!("{}", report.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_complete_or_fail_cleanly_under_every_fault() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects = mixed();
    let source = tempfile::tempdir()?;
    for (path, body) in &objects {
        let file = source.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(source.path()))?;
        std::fs::write(file, body)?;
    }
    // Uploads go in parts above 5 MiB, S3's smallest part: make one such file.
    let mut objects = objects;
    let big = bytes(200, 6 * 1024 * 1024 + 5);
    std::fs::write(source.path().join("large/c.bin"), &big)?;
    objects.insert("large/c.bin".to_owned(), big);
    let upload_config = Config {
        multipart_threshold: 5 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..config()
    };
    for fault in Fault::ALL {
        let mut injected = 0;
        for run in 0..runs() {
            let proxy = proxy(&server, fault, run, run * 104_729 + fault as u64).await?;
            let faulty = client(&server, &proxy.endpoint());
            let prefix = format!("up/{fault:?}/{run}");
            let result = plx_transfer::upload(
                &faulty,
                &plx_transfer::Upload::new(BUCKET, &prefix, source.path()),
                &upload_config,
                &None,
            )
            .await;
            injected += proxy.injected();
            let stored = stored(&server, &prefix).await?;
            // An object in the bucket is whole: S3 makes a PUT or a completed multipart upload
            // visible at once, and the engine completes only when every part went up.
            for (key, body) in &stored {
                assert!(
                    objects.get(key) == Some(body),
                    "{fault:?}: {key} stored wrong"
                );
            }
            match &result {
                Ok(_) => assert!(stored == objects, "{fault:?}: succeeded incomplete"),
                Err(error) => {
                    for failure in &error.failures {
                        let key = failure
                            .key
                            .strip_prefix(&format!("s3://{BUCKET}/{prefix}/"))
                            .unwrap_or_else(|| panic!("a failure names no object: {failure}"));
                        assert!(objects.contains_key(key), "{key}");
                    }
                }
            }
            proxy.set_rate(0.0);
            plx_transfer::upload(
                &faulty,
                &plx_transfer::Upload::new(BUCKET, &prefix, source.path()),
                &upload_config,
                &None,
            )
            .await
            .map_err(|error| anyhow::anyhow!("{fault:?}: rerun: {error}"))?;
            assert!(
                stored_matches(&server, &prefix, &objects).await?,
                "{fault:?}: rerun"
            );
        }
        assert!(injected > 0, "{fault:?}: no fault was injected");
    }
    Ok(())
}

async fn stored(server: &S3Server, prefix: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut stored = BTreeMap::new();
    let mut pages = server
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("{prefix}/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            let key = object.key().unwrap_or_default();
            let body = server
                .client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes()
                .to_vec();
            stored.insert(key[prefix.len() + 1..].to_owned(), body);
        }
    }
    Ok(stored)
}

async fn stored_matches(
    server: &S3Server,
    prefix: &str,
    objects: &BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<bool> {
    Ok(&stored(server, prefix).await? == objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_survives_the_server_killed_and_restarted_mid_transfer() -> anyhow::Result<()> {
    let mut server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let source = tempfile::tempdir()?;
    let mut files = BTreeMap::new();
    for index in 0..60u64 {
        let body = bytes(300 + index, 200_000);
        std::fs::write(source.path().join(format!("f{index:02}")), &body)?;
        files.insert(format!("f{index:02}"), body);
    }
    let forwarder = plx_testkit::TcpForwarder::start(([127, 0, 0, 1], server.port).into()).await?;
    let client = plx_testkit::s3::client_for(
        &forwarder.endpoint(),
        &server.region,
        &server.access_key,
        &server.secret_key,
    );
    let config = Config {
        concurrency: 2,
        attempts: 10,
        backoff: Duration::from_millis(300),
        ..Config::default()
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let path = source.path().to_path_buf();
    let task = tokio::spawn(async move {
        plx_transfer::upload(
            &client,
            &plx_transfer::Upload::new(BUCKET, "up", &path),
            &config,
            &Some(sender),
        )
        .await
    });
    // Kill the server once a few files are up, restart it (the data volume is kept) on another
    // port behind the same forwarder.
    let mut sent = 0;
    while let Some(event) = receiver.recv().await {
        if matches!(event, plx_transfer::Event::Done { .. }) {
            sent += 1;
            if sent == 5 {
                break;
            }
        }
    }
    server.kill().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await?;
    forwarder.set_upstream(([127, 0, 0, 1], server.port).into());
    let summary = task.await??;
    assert_eq!(summary.objects, 60);
    assert!(
        stored_matches(&server, "up", &files).await?,
        "the bucket differs"
    );
    Ok(())
}
