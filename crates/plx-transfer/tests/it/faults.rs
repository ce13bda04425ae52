//! The engine through a network and a store that misbehave, in front of a real S3 server:
//! connection faults (plx-testkit's `FaultProxy`: resets, truncations, stalls, latency, refusals,
//! 503 and 500) and body faults (its `Network`: a byte flipped in a body, a body trickling, an
//! object overwritten between two ranged parts of its download). For each class, downloads and
//! uploads of a mixed tree run several times. Each run completes with every byte verified, or
//! fails naming the objects; no partial or corrupt file ever carries a final name, nor a stored
//! object; and a rerun on a healed network completes, fetching only what was missing, and leaves
//! no temporary.
//!
//! `PLX_FAULT_RUNS` sets the runs per class (2 here; `cargo xtask soak --per-class N` runs N),
//! and each run's counts go to the soak's record (`plx_testkit::soak`).

use std::{collections::BTreeMap, time::Duration};

use plx_testkit::{
    Change, Fault, FaultProxy, LatencyProxy, Network, S3Server, bytes, landed_files, soak,
    visible_files as visible,
};
use plx_transfer::{Config, Download, Entry, ErrorKind};

const BUCKET: &str = "datasets";
/// The object the `Changed` class overwrites mid-download.
const CHANGED: &str = "large/a.bin";

fn runs() -> u64 {
    soak::runs("PLX_FAULT_RUNS", 2)
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

/// One way the path to the store misbehaves in a run.
#[derive(Debug, Clone, Copy)]
enum Class {
    /// A connection broken in one of `FaultProxy`'s ways.
    Connection(Fault),
    /// One byte of an object's body flipped, its length and headers as sent: GET bodies on the
    /// way to the client, PUT bodies on the way to the store.
    Corrupt,
    /// An object's body trickling (GET bodies, PUT bodies).
    Slow,
    /// [`CHANGED`] overwritten in the store between two ranged parts of its download.
    Changed,
}

impl Class {
    fn all(upload: bool) -> Vec<Class> {
        let mut all: Vec<Class> = Fault::ALL.into_iter().map(Class::Connection).collect();
        all.extend([Class::Corrupt, Class::Slow]);
        // An upload reads local files: nothing in the store changes under it.
        if !upload {
            all.push(Class::Changed);
        }
        all
    }

    fn name(self) -> String {
        match self {
            Class::Connection(fault) => format!("{fault:?}"),
            other => format!("{other:?}"),
        }
    }

    /// Every other run breaks most connections or bodies, so that some objects fail for good
    /// and the rerun has something to finish; the others 30%, which retries should carry. An
    /// object changes once per run.
    fn rate(self, run: u64) -> f64 {
        match self {
            Class::Changed => 1.0,
            _ if run.is_multiple_of(2) => 0.3,
            _ => 0.85,
        }
    }
}

/// The proxy a run's requests go through.
enum Path {
    Connections(FaultProxy),
    Bodies(LatencyProxy),
}

impl Path {
    /// In front of `server`, breaking as `class` says at its `run`'s rate; `change` is what the
    /// `Changed` class writes.
    async fn start(
        server: &S3Server,
        class: Class,
        run: u64,
        seed: u64,
        change: Option<Change>,
    ) -> anyhow::Result<Path> {
        let upstream = server
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .map_err(|error| anyhow::anyhow!("{}: {error}", server.endpoint))?;
        let rate = class.rate(run);
        let quiet = Network {
            seed,
            // Slow enough that a body takes a second or more, fast enough that it never goes
            // silent for the engine's stall timer.
            slow_rate: 128 * 1024,
            ..Network::far(Duration::ZERO)
        };
        Ok(match class {
            Class::Connection(fault) => {
                Path::Connections(FaultProxy::start(upstream, &[fault], rate, seed).await?)
            }
            Class::Corrupt => Path::Bodies(
                LatencyProxy::start(
                    upstream,
                    Network {
                        corrupt: rate,
                        corrupt_sent: rate,
                        ..quiet
                    },
                )
                .await?,
            ),
            Class::Slow => Path::Bodies(
                LatencyProxy::start(
                    upstream,
                    Network {
                        slow: rate,
                        slow_sent: rate,
                        ..quiet
                    },
                )
                .await?,
            ),
            Class::Changed => {
                Path::Bodies(LatencyProxy::start(upstream, Network { change, ..quiet }).await?)
            }
        })
    }

    /// A client through this path: short timeouts where a connection may stall (so that a
    /// stall counts), the SDK's own for body faults. A PUT whose answer the client stops
    /// waiting for is sent again while the first may still be stored after it: on a store that
    /// keeps a body before checking it (s3s-fs), a damaged first try would land last.
    fn client(&self, server: &S3Server) -> aws_sdk_s3::Client {
        match self {
            Path::Connections(_) => client(server, &self.endpoint()),
            Path::Bodies(_) => plx_testkit::s3::client_for(
                &self.endpoint(),
                &server.region,
                &server.access_key,
                &server.secret_key,
            ),
        }
    }

    fn endpoint(&self) -> String {
        match self {
            Path::Connections(proxy) => proxy.endpoint(),
            Path::Bodies(proxy) => proxy.endpoint(),
        }
    }

    /// Connections broken, or bodies flipped, slowed or changed.
    fn injected(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            Path::Connections(proxy) => proxy.injected() as u64,
            Path::Bodies(proxy) => {
                let counts = proxy.counts();
                counts.corrupted.load(Relaxed)
                    + counts.slowed.load(Relaxed)
                    + counts.changed.load(Relaxed)
            }
        }
    }

    /// The network heals. (The body proxy never touches a request's repeat, which is what a
    /// rerun sends; it is left out all the same.)
    fn healed(&self, server: &S3Server) -> String {
        match self {
            Path::Connections(proxy) => {
                proxy.set_rate(0.0);
                proxy.endpoint()
            }
            Path::Bodies(_) => server.endpoint.clone(),
        }
    }
}

/// A client through `path` once it healed, with the SDK's own timeouts: the short ones of
/// [`client`] are for stalls, and under a soak's load a healthy answer can take longer.
fn healed(server: &S3Server, path: &Path) -> aws_sdk_s3::Client {
    plx_testkit::s3::client_for(
        &path.healed(server),
        &server.region,
        &server.access_key,
        &server.secret_key,
    )
}

/// A PUT of [`CHANGED`] with other bytes of its size, presigned for the proxy to send.
async fn change(server: &S3Server, run: u64) -> anyhow::Result<(Change, Vec<u8>)> {
    let key = format!("v1/{CHANGED}");
    let body = bytes(1_000_000 + run, mixed()[CHANGED].len());
    let put = server
        .client
        .put_object()
        .bucket(BUCKET)
        .key(&key)
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(
            Duration::from_secs(600),
        )?)
        .await
        .map_err(|error| anyhow::anyhow!("presigning a PUT of {key}: {error}"))?;
    let change = Change {
        path: format!("/{BUCKET}/{key}"),
        put: put.uri().to_owned(),
        body: body.clone().into(),
    };
    Ok((change, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_complete_or_fail_cleanly_under_every_fault() -> anyhow::Result<()> {
    let (server, original) = seeded().await?;
    let request = Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: vec![Entry::Dir {
            from: String::new(),
            to: String::new(),
        }],
        ..Download::default()
    };
    let mut problems = Vec::new();
    for class in Class::all(false) {
        let mut injected = 0;
        for run in 0..runs() {
            let mut objects = original.clone();
            let change = match class {
                Class::Changed => {
                    let (change, body) = change(&server, run).await?;
                    objects.insert(CHANGED.to_owned(), body);
                    Some(change)
                }
                _ => None,
            };
            let started = std::time::Instant::now();
            let seed = run * 7919 + class.name().len() as u64 * 31 + injected;
            let path = Path::start(&server, class, run, seed, change).await?;
            let faulty = path.client(&server);
            let destination = tempfile::tempdir()?;
            let result =
                plx_transfer::download(&faulty, &request, destination.path(), &config(), &None)
                    .await;
            let broke = path.injected();
            injected += broke;
            let landed = visible(destination.path());
            // Whatever landed is whole and right, failed or not: the old version of the object
            // that changed, or the new, never a mix.
            let bad: Vec<&String> = landed
                .iter()
                .filter(|(path, bytes)| {
                    objects.get(*path) != Some(bytes) && original.get(*path) != Some(bytes)
                })
                .map(|(path, _)| path)
                .collect();
            let mut unnamed = Vec::new();
            let mut listing_failed = false;
            let (failed, named) = match &result {
                Ok(summary) => {
                    if landed.len() != objects.len() || summary.objects as usize != objects.len() {
                        unnamed.push("succeeded incomplete".to_owned());
                    }
                    (false, 0)
                }
                Err(error) => {
                    for failure in &error.failures {
                        let Some(path) = failure.key.strip_prefix("s3://datasets/v1") else {
                            unnamed.push(format!("a failure names no object: {failure}"));
                            continue;
                        };
                        let path = path.trim_start_matches('/');
                        // The listing itself failed: it is named (the prefix), nothing fetched.
                        listing_failed |= path.is_empty();
                        if landed.contains_key(path) {
                            unnamed.push(format!("{path} failed but landed"));
                        }
                        if matches!(class, Class::Changed)
                            && (path != CHANGED || failure.kind != ErrorKind::Changed)
                        {
                            unnamed.push(format!("not the change: {failure}"));
                        }
                    }
                    if listing_failed && !landed.is_empty() {
                        unnamed.push("fetched without a listing".to_owned());
                    }
                    if !listing_failed && error.failures.len() + landed.len() != objects.len() {
                        unnamed.push("an object neither landed nor is named".to_owned());
                    }
                    (true, error.failures.len())
                }
            };
            if matches!(class, Class::Changed) && !failed {
                unnamed.push("an object that changed between its parts landed".to_owned());
            }
            // The network heals: the rerun completes, fetches only what was missing, and leaves
            // nothing temporary. A rerun that fails is counted, and the soak goes on.
            let healed = healed(&server, &path);
            let rerun =
                plx_transfer::download(&healed, &request, destination.path(), &config(), &None)
                    .await
                    .map_err(|error| format!("the rerun failed: {error}"));
            let rerun_failure = rerun.as_ref().err().cloned();
            let rerun = rerun.unwrap_or_default();
            let exact = rerun_failure.is_none() && visible(destination.path()) == objects;
            let leftovers = landed_files(destination.path())
                .keys()
                .filter(|path| !objects.contains_key(*path))
                .count();
            // What the rerun fetched beyond what the failed run had not landed.
            let refetched_landed =
                (rerun.objects as usize + landed.len()).saturating_sub(objects.len());
            soak::record(&serde_json::json!({
                "soak": "faults",
                "direction": "download",
                "class": class.name(),
                "rate": class.rate(run),
                "injected": broke,
                "failed": failed,
                "named": named,
                "landed": landed.len(),
                "objects": objects.len(),
                "bad": bad.len(),
                "unnamed": unnamed.len(),
                "refetched": rerun.objects,
                "refetched_landed": refetched_landed,
                "rerun_exact": exact,
                "ms": started.elapsed().as_millis() as u64,
                "leftovers": leftovers,
            }));
            let mut trouble = unnamed;
            trouble.extend(
                bad.iter()
                    .map(|path| format!("{path} carries a final name but is not the object")),
            );
            trouble.extend(rerun_failure);
            if !exact {
                trouble.push("the rerun's tree differs".to_owned());
            }
            if exact && (refetched_landed != 0 || rerun.skipped as usize != landed.len()) {
                trouble.push(format!("the rerun fetched what had landed: {rerun:?}"));
            }
            if leftovers != 0 {
                trouble.push(format!("{leftovers} temporaries left"));
            }
            problems.extend(
                trouble
                    .into_iter()
                    .map(|trouble| format!("{} run {run} (seed {seed}): {trouble}", class.name())),
            );
            if matches!(class, Class::Changed) {
                server
                    .put(BUCKET, &format!("v1/{CHANGED}"), original[CHANGED].clone())
                    .await?;
            }
        }
        assert!(injected > 0, "{}: no fault was injected", class.name());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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
    let mut problems = Vec::new();
    for class in Class::all(true) {
        let mut injected = 0;
        for run in 0..runs() {
            let started = std::time::Instant::now();
            let seed = run * 104_729 + class.name().len() as u64 * 31 + injected;
            let path = Path::start(&server, class, run, seed, None).await?;
            let faulty = path.client(&server);
            let prefix = format!("up/{}/{run}", class.name());
            let result = plx_transfer::upload(
                &faulty,
                &plx_transfer::Upload::new(BUCKET, &prefix, source.path()),
                &upload_config,
                &None,
            )
            .await;
            let broke = path.injected();
            injected += broke;
            let stored = stored(&server, &prefix).await?;
            // An object in the bucket is whole: S3 makes a PUT or a completed multipart upload
            // visible at once, the engine completes only when every part went up, and a body
            // damaged on the way is refused by the store against the checksum sent with it.
            let bad: Vec<&String> = stored
                .iter()
                .filter(|(key, body)| objects.get(*key) != Some(body))
                .map(|(key, _)| key)
                .collect();
            let mut unnamed = Vec::new();
            let (failed, named) = match &result {
                Ok(_) => {
                    if stored.len() != objects.len() {
                        unnamed.push("succeeded incomplete".to_owned());
                    }
                    (false, 0)
                }
                Err(error) => {
                    for failure in &error.failures {
                        let named = failure
                            .key
                            .strip_prefix(&format!("s3://{BUCKET}/{prefix}/"))
                            .is_some_and(|key| objects.contains_key(key));
                        if !named {
                            unnamed.push(format!("a failure names no object: {failure}"));
                        }
                    }
                    (true, error.failures.len())
                }
            };
            let healed = healed(&server, &path);
            let rerun = plx_transfer::upload(
                &healed,
                &plx_transfer::Upload::new(BUCKET, &prefix, source.path()),
                &upload_config,
                &None,
            )
            .await
            .map_err(|error| format!("the rerun failed: {error}"));
            let exact = rerun.is_ok() && stored_matches(&server, &prefix, &objects).await?;
            soak::record(&serde_json::json!({
                "soak": "faults",
                "direction": "upload",
                "class": class.name(),
                "rate": class.rate(run),
                "injected": broke,
                "failed": failed,
                "named": named,
                "landed": stored.len(),
                "objects": objects.len(),
                "bad": bad.len(),
                "unnamed": unnamed.len(),
                "rerun_exact": exact,
                "ms": started.elapsed().as_millis() as u64,
            }));
            let mut trouble = unnamed;
            trouble.extend(
                bad.iter()
                    .map(|key| format!("{key} stored but not the file")),
            );
            trouble.extend(rerun.err());
            if !exact {
                trouble.push("the rerun's objects differ".to_owned());
            }
            problems.extend(
                trouble
                    .into_iter()
                    .map(|trouble| format!("{} run {run} (seed {seed}): {trouble}", class.name())),
            );
        }
        assert!(injected > 0, "{}: no fault was injected", class.name());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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
