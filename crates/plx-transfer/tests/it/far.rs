//! The engine against a store far away (plx-testkit's `LatencyProxy` in front of a real S3
//! server): the proxy's delay lands on every request of a kept connection; the in-flight
//! controller climbs where the store is far and backs off when it says SlowDown; a straggler is
//! raced and only one of the two responses lands; a body that stalls is given up and fetched
//! again. What these tests hold is behaviour (counts, trees, bytes), not speed: speed is
//! `cargo xtask bench --latency`.

use std::{collections::BTreeMap, net::SocketAddr, sync::atomic::Ordering, time::Duration};

use plx_testkit::{Fault, FaultProxy, LatencyProxy, Network, S3Server, bytes, visible_files};
use plx_transfer::{Config, Download, Entry, Summary};

const BUCKET: &str = "far";

fn upstream(server: &S3Server) -> anyhow::Result<SocketAddr> {
    server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .map_err(|error| anyhow::anyhow!("{}: {error}", server.endpoint))
}

fn client(server: &S3Server, endpoint: &str) -> aws_sdk_s3::Client {
    plx_testkit::s3::client_for(
        endpoint,
        &server.region,
        &server.access_key,
        &server.secret_key,
    )
}

/// `count` small objects (1 to 5 KiB) under `prefix`, and `large` of 3 MiB, seeded in parallel
/// straight to the server.
async fn seeded(
    server: &S3Server,
    prefix: &str,
    count: u64,
    large: u64,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut objects = BTreeMap::new();
    for index in 0..count {
        objects.insert(
            format!("d{}/f{index:04}.bin", index % 7),
            bytes(index, 1024 + (index as usize * 613) % 4096),
        );
    }
    for index in 0..large {
        objects.insert(
            format!("large/{index}.bin"),
            bytes(10_000 + index, 3 * 1024 * 1024 + 11),
        );
    }
    let source = tempfile::tempdir()?;
    for (path, body) in &objects {
        let file = source.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(source.path()))?;
        std::fs::write(file, body)?;
    }
    plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new(BUCKET, prefix, source.path()),
        &Config::default(),
        &None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("seeding: {error}"))?;
    Ok(objects)
}

fn request(prefix: &str) -> Download {
    Download {
        bucket: BUCKET.to_owned(),
        prefix: prefix.to_owned(),
        entries: vec![Entry::Dir {
            from: String::new(),
            to: String::new(),
        }],
        ..Download::default()
    }
}

/// Large objects in 1 MiB parts, so that parts are raced and stalled too.
fn parts() -> Config {
    Config {
        multipart_threshold: 2 * 1024 * 1024,
        part_size: 1024 * 1024,
        ..Config::default()
    }
}

fn peak(summary: &Summary) -> u32 {
    summary
        .steps
        .iter()
        .map(|step| step.limit)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delay_lands_on_every_request_of_a_kept_connection() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    server.put(BUCKET, "one", b"1".to_vec()).await?;
    let delay = Duration::from_millis(150);
    let proxy = LatencyProxy::start(upstream(&server)?, Network::far(delay)).await?;
    let far = client(&server, &proxy.endpoint());
    for _ in 0..4 {
        let started = std::time::Instant::now();
        far.head_object().bucket(BUCKET).key("one").send().await?;
        assert!(
            started.elapsed() >= delay,
            "a request answered in {:?}, under the proxy's {delay:?}",
            started.elapsed()
        );
    }
    // One after the other, on fewer connections than requests: some went on a kept-alive
    // connection, and every one waited, so the delay is per request, not per connection.
    let connections = proxy.counts().connections.load(Ordering::Relaxed);
    assert_eq!(proxy.counts().requests.load(Ordering::Relaxed), 4);
    assert!(connections < 4, "{connections} connections for 4 requests");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_store_gets_more_requests_in_flight() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects = seeded(&server, "many", 1500, 0).await?;
    let proxy =
        LatencyProxy::start(upstream(&server)?, Network::far(Duration::from_millis(40))).await?;
    let far = client(&server, &proxy.endpoint());
    let destination = tempfile::tempdir()?;
    let summary = plx_transfer::download(
        &far,
        &request("many"),
        destination.path(),
        &Config::default(),
        &None,
    )
    .await?;
    assert!(visible_files(destination.path()) == objects);
    // 32 in flight at 40 ms is 800 objects/s; doubling pays (small bodies: the memory bound
    // allows hundreds).
    assert!(
        peak(&summary) >= 64,
        "the controller stayed at {}: {:?}",
        peak(&summary),
        summary.steps
    );
    // And `requests` is a cap it never passes.
    let capped = tempfile::tempdir()?;
    let config = Config {
        requests: 40,
        ..Config::default()
    };
    let summary =
        plx_transfer::download(&far, &request("many"), capped.path(), &config, &None).await?;
    assert!(peak(&summary) <= 40, "{:?}", summary.steps);
    assert!(visible_files(capped.path()) == objects);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_far_store_gets_more_requests_in_flight() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let source = tempfile::tempdir()?;
    let mut files = BTreeMap::new();
    for index in 0..1500u64 {
        let path = format!("d{}/f{index:04}.bin", index % 7);
        let body = bytes(index, 1024 + (index as usize * 613) % 4096);
        std::fs::create_dir_all(source.path().join(format!("d{}", index % 7)))?;
        std::fs::write(source.path().join(&path), &body)?;
        files.insert(path, body);
    }
    let proxy =
        LatencyProxy::start(upstream(&server)?, Network::far(Duration::from_millis(40))).await?;
    let far = client(&server, &proxy.endpoint());
    let summary = plx_transfer::upload(
        &far,
        &plx_transfer::Upload::new(BUCKET, "sent", source.path()),
        &Config::default(),
        &None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    // 32 in flight at 40 ms is 800 PUTs a second; doubling pays, as for a download (it was a
    // fixed 32 objects at once).
    assert!(
        peak(&summary) >= 64,
        "the controller stayed at {}: {:?}",
        peak(&summary),
        summary.steps
    );
    let back = tempfile::tempdir()?;
    plx_transfer::download(
        &server.client,
        &request("sent"),
        back.path(),
        &Config::default(),
        &None,
    )
    .await?;
    assert!(
        visible_files(back.path()) == files,
        "what landed is not what was sent"
    );
    // `requests` is a cap it never passes.
    let config = Config {
        requests: 40,
        ..Config::default()
    };
    let summary = plx_transfer::upload(
        &far,
        &plx_transfer::Upload::new(BUCKET, "capped", source.path()),
        &config,
        &None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    assert!(peak(&summary) <= 40, "{:?}", summary.steps);
    assert!(summary.objects == 1500, "{} objects sent", summary.objects);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_halves_the_requests_in_flight() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects = seeded(&server, "busy", 400, 0).await?;
    // 60% of new connections answered 503 SlowDown (and closed): the engine must cut below
    // where it started (32); a revert never goes under it. The SDK's own retries are on, as in
    // every real run: they absorb most of the 503s, and the flow must hear of each one all the
    // same (before it did, 36 of 36 were absorbed and nothing was cut).
    let proxy = FaultProxy::start(upstream(&server)?, &[Fault::SlowDown], 0.6, 29).await?;
    let busy = client(&server, &proxy.endpoint());
    let destination = tempfile::tempdir()?;
    let config = Config {
        attempts: 20,
        backoff: Duration::from_millis(10),
        ..Config::default()
    };
    let summary =
        plx_transfer::download(&busy, &request("busy"), destination.path(), &config, &None).await?;
    assert!(visible_files(destination.path()) == objects);
    let lowest = summary.steps.iter().map(|step| step.limit).min();
    assert!(proxy.injected() > 0, "no SlowDown was injected");
    assert!(
        lowest.is_some_and(|lowest| lowest < 32),
        "SlowDown did not cut the limit: {:?}",
        summary.steps
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stragglers_are_raced_and_one_response_lands() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects = seeded(&server, "tail", 300, 8).await?;
    // After a warm-up, 4% of responses come ten minutes late: without racing, each would wait
    // out the SDK's 60 s read timeout, and the run below would not finish in its bound.
    let network = Network {
        late: 0.04,
        late_by: Duration::from_secs(600),
        // The run starts 32 requests at once and races only after 16 answers: a straggler
        // among the first ones would be waited for. 80 covers both with room.
        spare: 80,
        seed: 7,
        ..Network::far(Duration::from_millis(5))
    };
    let proxy = LatencyProxy::start(upstream(&server)?, network).await?;
    let far = client(&server, &proxy.endpoint());
    let destination = tempfile::tempdir()?;
    let summary = tokio::time::timeout(
        Duration::from_secs(50),
        plx_transfer::download(&far, &request("tail"), destination.path(), &parts(), &None),
    )
    .await
    .map_err(|_| anyhow::anyhow!("a straggler was waited for"))??;
    let late = proxy.counts().late.load(Ordering::Relaxed);
    assert!(late > 0, "the proxy made no straggler");
    assert!(
        summary.hedged >= 1 && summary.hedges_won >= 1,
        "{summary:?}"
    );
    // Every object landed once, whole, under its name, and nothing else (no second copy, no
    // temporary left by the losing response).
    assert!(visible_files(destination.path()) == objects);
    assert_eq!(summary.objects as usize, objects.len());
    assert_eq!(summary.retried, 0, "a straggler was retried, not raced");
    // The budget: at most about 5% more requests, plus its first ten.
    let requests = proxy.counts().requests.load(Ordering::Relaxed);
    assert!(
        summary.hedged as f64 <= 10.0 + requests as f64 * 0.05,
        "{} hedges for {requests} requests",
        summary.hedged
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_fetched_again() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects = seeded(&server, "stall", 120, 6).await?;
    // After a warm-up, 10% of bodies go silent for ten minutes part-way.
    let network = Network {
        stall: 0.1,
        stall_for: Duration::from_secs(600),
        spare: 80,
        seed: 11,
        ..Network::far(Duration::from_millis(5))
    };
    let proxy = LatencyProxy::start(upstream(&server)?, network).await?;
    let far = client(&server, &proxy.endpoint());
    let destination = tempfile::tempdir()?;
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        plx_transfer::download(
            &far,
            &request("stall"),
            destination.path(),
            &parts(),
            &Some(sender),
        ),
    )
    .await
    .map_err(|_| anyhow::anyhow!("a stalled body was waited for"))??;
    assert!(proxy.counts().stalled.load(Ordering::Relaxed) > 0);
    assert!(visible_files(destination.path()) == objects);
    let mut causes = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let plx_transfer::Event::Retry { cause, .. } = event {
            causes.push(cause);
        }
    }
    // Given up by the engine's quiet timer, which says so: it is never longer than 10 s, under
    // the SDK's stalled-stream grace (20 s), even when a loaded machine makes the run's times
    // long, so the SDK's protection does not give the body up first.
    assert!(
        causes.iter().any(|cause| cause.contains("no byte for")),
        "no stall was given up by the engine: {causes:?}"
    );
    assert!(summary.retried as usize >= causes.len().min(1));
    Ok(())
}

/// An upload in parts through the proxy: CreateMultipartUpload is a POST without a body, which
/// the proxy must pass on without one (sent chunked, S3 refuses it: 411 MissingContentLength).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_parts_passes_the_proxy() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let proxy = LatencyProxy::start(upstream(&server)?, Network::far(Duration::ZERO)).await?;
    let far = client(&server, &proxy.endpoint());
    let source = tempfile::tempdir()?;
    std::fs::write(source.path().join("big.bin"), bytes(3, 20 * 1024 * 1024))?;
    plx_transfer::upload(
        &far,
        &plx_transfer::Upload::new(BUCKET, "up", source.path()),
        &Config::default(),
        &None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let landed = plx_testkit::s3::get(&server.client, BUCKET, "up/big.bin").await?;
    assert!(landed == bytes(3, 20 * 1024 * 1024));
    Ok(())
}

/// Parts answered in any order (a seeded jitter of up to 200 ms on each response) land as one
/// object in part order: parts fly in an unordered window, and the upload is completed with its
/// parts sorted, as S3 requires. Eight parts: answered in order once in 40,320 draws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_parts_answer_out_of_order_lands_whole() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let network = Network {
        jitter: Duration::from_millis(200),
        seed: 5,
        ..Network::far(Duration::ZERO)
    };
    let proxy = LatencyProxy::start(upstream(&server)?, network).await?;
    let far = client(&server, &proxy.endpoint());
    let source = tempfile::tempdir()?;
    let size = 40 * 1024 * 1024;
    std::fs::write(source.path().join("big.bin"), bytes(9, size))?;
    let config = Config {
        part_size: 5 * 1024 * 1024,
        ..Config::default()
    };
    plx_transfer::upload(
        &far,
        &plx_transfer::Upload::new(BUCKET, "shuffled", source.path()),
        &config,
        &None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let landed = plx_testkit::s3::get(&server.client, BUCKET, "shuffled/big.bin").await?;
    assert!(landed == bytes(9, size), "the parts landed out of order");
    Ok(())
}
