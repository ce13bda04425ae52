//! The engine against real servers: s3s-fs in a container (or MinIO), and moto, which keeps any
//! key, however hostile.

use std::collections::BTreeMap;

use plx_testkit::{S3Server, bytes, landed_files};
use plx_transfer::{Config, Download, Entry, ErrorKind, Event};

const BUCKET: &str = "datasets";

pub(super) fn whole(to: &str) -> Download {
    Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: vec![Entry::Dir {
            from: String::new(),
            to: to.to_owned(),
        }],
        ..Download::default()
    }
}

/// The whole of `v1`, downloaded to `destination/data`.
async fn pull(
    server: &S3Server,
    destination: &std::path::Path,
    config: &Config,
) -> anyhow::Result<plx_transfer::Summary> {
    Ok(plx_transfer::download(&server.client, &whole("data"), destination, config, &None).await?)
}

pub(super) fn small() -> Config {
    Config {
        multipart_threshold: 1024 * 1024,
        part_size: 256 * 1024,
        ..Config::default()
    }
}

#[tokio::test]
async fn a_tree_of_small_files_round_trips_and_a_rerun_skips_everything() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let source = tempfile::tempdir()?;
    for index in 0..2000u64 {
        let name = match index % 5 {
            0 => format!("train/{index:04}.bin"),
            1 => format!("train/sub dir/{index:04} with space.bin"),
            2 => format!("val/ünï-{index:04}.bin"),
            3 => format!("{index:04}.csv"),
            _ => format!("deep/a/b/c/{index:04}"),
        };
        let path = source.path().join(&name);
        std::fs::create_dir_all(path.parent().expect("parent"))?;
        std::fs::write(&path, bytes(index, (index as usize * 37) % 5000))?;
    }
    let config = Config::default();
    let uploaded = plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new(BUCKET, "v1", source.path()),
        &config,
        &None,
    )
    .await?;
    assert_eq!(uploaded.objects, 2000);

    let destination = tempfile::tempdir()?;
    let summary = pull(&server, destination.path(), &config).await?;
    assert_eq!(
        (
            summary.objects,
            summary.skipped,
            summary.failed,
            summary.retried,
            summary.unverified
        ),
        (2000, 0, 0, 0, 0)
    );
    assert_eq!(
        landed_files(&destination.path().join("data")),
        landed_files(source.path())
    );

    let again = pull(&server, destination.path(), &config).await?;
    assert_eq!((again.objects, again.skipped, again.bytes), (0, 2000, 0));
    Ok(())
}

/// Named keys of one directory are looked up with a listing of it, one page per 4 keys; keys
/// past that budget (here beyond the first page of 1,000) are looked up one by one.
#[tokio::test]
async fn named_keys_spread_through_a_large_directory_all_land() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let source = tempfile::tempdir()?;
    for index in 0..1200u64 {
        std::fs::write(source.path().join(format!("k{index:04}")), bytes(index, 16))?;
    }
    plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new(BUCKET, "v1", source.path()),
        &Config::default(),
        &None,
    )
    .await?;
    let named = ["k0001", "k0500", "k1100", "k1199"];
    let request = Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: named
            .iter()
            .map(|name| Entry::File {
                from: (*name).to_owned(),
                to: format!("out/{name}"),
            })
            .collect(),
        ..Download::default()
    };
    let destination = tempfile::tempdir()?;
    let summary = plx_transfer::download(
        &server.client,
        &request,
        destination.path(),
        &Config::default(),
        &None,
    )
    .await?;
    assert_eq!((summary.objects, summary.failed), (4, 0));
    let expected: BTreeMap<String, Vec<u8>> = named
        .iter()
        .map(|name| {
            let index: u64 = name[1..].parse().expect("a number");
            (format!("out/{name}"), bytes(index, 16))
        })
        .collect();
    assert_eq!(landed_files(destination.path()), expected);
    Ok(())
}

/// Large files go up at most `concurrency` at once, as large downloads come down: each is a
/// multipart upload the store keeps open until completed or aborted. Small files beside them
/// are not held back by it.
#[tokio::test]
async fn large_uploads_are_held_to_the_concurrency() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let source = tempfile::tempdir()?;
    for index in 0..6u64 {
        let body = bytes(index, 6 * 1024 * 1024 + index as usize * 999);
        std::fs::write(source.path().join(format!("big{index}")), body)?;
    }
    for index in 0..40u64 {
        std::fs::write(
            source.path().join(format!("small{index:02}")),
            bytes(index, 3000),
        )?;
    }
    let config = Config {
        concurrency: 2,
        multipart_threshold: 5 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..Config::default()
    };
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let summary = plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new(BUCKET, "v1", source.path()),
        &config,
        &Some(sender),
    )
    .await?;
    assert_eq!(summary.objects, 46);
    // Started and Done of each large file, in the order they happened.
    let (mut open, mut most) = (0, 0);
    while let Ok(event) = events.try_recv() {
        match event {
            Event::Started { size, .. } if size >= config.multipart_threshold => {
                open += 1;
                most = most.max(open);
            }
            Event::Done { key } if key.starts_with("v1/big") => open -= 1,
            _ => {}
        }
    }
    assert!(
        most == 2,
        "{most} large uploads were open at once, with concurrency 2"
    );
    let destination = tempfile::tempdir()?;
    pull(&server, destination.path(), &config).await?;
    assert_eq!(
        landed_files(&destination.path().join("data")),
        landed_files(source.path())
    );
    Ok(())
}

/// A sync waiting on the disk holds up only the file it makes durable. In the pod plx-init has
/// one runtime worker (the container's one CPU), and a sync made on it would stop every transfer
/// until the disk answered. Here, on one worker, the volume's disk is stopped before the pull:
/// every body must still come down while the syncs wait, and every file lands once the disk
/// runs again.
#[tokio::test]
async fn a_sync_waiting_on_the_disk_holds_up_no_other_object() -> anyhow::Result<()> {
    const OBJECTS: u64 = 64;
    const SIZE: usize = 64 * 1024;
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    for index in 0..OBJECTS {
        server
            .put(BUCKET, &format!("v1/f{index:02}"), bytes(index, SIZE))
            .await?;
    }
    let mut disk = plx_testkit::Disk::mount(64)?;
    disk.stop()?;
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (client, destination) = (server.client.clone(), disk.path());
    let pod = std::thread::spawn(move || -> anyhow::Result<plx_transfer::Summary> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let config = Config::default();
        Ok(runtime.block_on(plx_transfer::download(
            &client,
            &whole("data"),
            &destination,
            &config,
            &Some(sender),
        ))?)
    });
    let total = OBJECTS * SIZE as u64;
    let mut arrived = 0;
    // Waited for at most this long; a worker stuck in a sync brings nothing more, ever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while arrived < total {
            match events.recv().await {
                Some(Event::Bytes(count)) => arrived += count,
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    disk.resume()?;
    let summary = tokio::task::spawn_blocking(move || pod.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pull panicked"))??;
    assert_eq!(
        arrived, total,
        "only {arrived} of {total} bytes came down while a sync waited on the stopped disk"
    );
    assert_eq!(summary.objects, OBJECTS);
    let landed = landed_files(&disk.path().join("data"));
    assert_eq!(landed.len() as u64, OBJECTS);
    for index in 0..OBJECTS {
        assert_eq!(
            landed.get(&format!("f{index:02}")),
            Some(&bytes(index, SIZE)),
            "f{index:02}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn large_objects_of_odd_sizes_come_back_exact_through_ranged_parts() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let config = small();
    let part = config.part_size as usize;
    let source = tempfile::tempdir()?;
    // Around the download part size, and one above the 5 MiB upload part so it is a real multipart object.
    let sizes = [
        0,
        1,
        part - 1,
        part,
        part + 1,
        4 * part,
        4 * part + 1,
        5 * part - 1,
        9 * part + 12345,
        11 * 1024 * 1024 + 3,
    ];
    for (index, size) in sizes.iter().enumerate() {
        std::fs::write(
            source.path().join(format!("object-{index}-{size}")),
            bytes(index as u64 + 7, *size),
        )?;
    }
    plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new(BUCKET, "v1", source.path()),
        &config,
        &None,
    )
    .await?;
    let destination = tempfile::tempdir()?;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let summary = plx_transfer::download(
        &server.client,
        &whole(""),
        destination.path(),
        &config,
        &Some(sender),
    )
    .await?;
    assert_eq!(
        landed_files(destination.path()),
        landed_files(source.path())
    );
    assert_eq!(summary.objects as usize, sizes.len());
    assert_eq!(
        summary.retried, 0,
        "no retry is expected against a healthy server"
    );
    assert_eq!(
        summary.unverified, 0,
        "every object is checked against its ETag"
    );
    let mut streamed = 0;
    while let Ok(event) = receiver.try_recv() {
        if let plx_transfer::Event::Bytes(count) = event {
            streamed += count;
        }
    }
    assert_eq!(streamed, sizes.iter().sum::<usize>() as u64);
    Ok(())
}

#[tokio::test]
async fn files_dirs_renames_and_globs() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    server
        .seed(
            BUCKET,
            &[
                ("v1/train/a.csv", b"a"),
                ("v1/train/b.json", b"b"),
                ("v1/train/x/c.csv", b"c"),
                ("v1/labels.csv", b"l"),
                ("v1/meta/m.json", b"m"),
            ],
        )
        .await?;
    let destination = tempfile::tempdir()?;
    let request = Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: vec![
            Entry::File {
                from: "labels.csv".to_owned(),
                to: "labels.csv".to_owned(),
            },
            Entry::File {
                from: "meta/m.json".to_owned(),
                to: "renamed/meta.json".to_owned(),
            },
            Entry::Dir {
                from: "train".to_owned(),
                to: "training".to_owned(),
            },
        ],
        include: vec!["**.csv".to_owned()],
        exclude: vec!["x/**".to_owned()],
        ..Download::default()
    };
    plx_transfer::download(
        &server.client,
        &request,
        destination.path(),
        &Config::default(),
        &None,
    )
    .await?;
    let got: Vec<String> = landed_files(destination.path()).into_keys().collect();
    assert_eq!(got, ["labels.csv", "renamed/meta.json", "training/a.csv"]);
    Ok(())
}

#[tokio::test]
async fn missing_data_is_an_error_naming_it() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    server.seed(BUCKET, &[("v1/train/a.csv", b"a")]).await?;
    let destination = tempfile::tempdir()?;
    let request = Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: vec![
            Entry::File {
                from: "nope.csv".to_owned(),
                to: "nope.csv".to_owned(),
            },
            Entry::File {
                from: "train".to_owned(),
                to: "train".to_owned(),
            },
            Entry::Dir {
                from: "empty".to_owned(),
                to: "empty".to_owned(),
            },
            Entry::Dir {
                from: "train".to_owned(),
                to: "train".to_owned(),
            },
        ],
        ..Download::default()
    };
    let error = plx_transfer::download(
        &server.client,
        &request,
        destination.path(),
        &Config::default(),
        &None,
    )
    .await
    .expect_err("missing data");
    let messages: Vec<String> = error.failures.iter().map(ToString::to_string).collect();
    assert_eq!(error.failures.len(), 3, "{messages:?}");
    assert!(
        error
            .failures
            .iter()
            .all(|failure| failure.kind == ErrorKind::NotFound),
        "{messages:?}"
    );
    assert!(
        messages.contains(
            &"s3://datasets/v1/train: is a prefix, not an object: pull it as a directory (dirs)"
                .to_owned()
        ),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"s3://datasets/v1/empty/: no objects under this prefix".to_owned()),
        "{messages:?}"
    );
    // What exists still landed.
    assert!(destination.path().join("train/a.csv").exists());
    Ok(())
}

fn docker(args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn bytes_changed_behind_the_engine_are_caught_and_never_land() -> anyhow::Result<()> {
    // This test edits s3s-fs's files behind the server, so it uses s3s-fs whatever PLX_TEST_S3 says.
    let server = S3Server::start_backend(plx_testkit::Backend::S3s).await?;
    server.create_bucket(BUCKET).await?;
    server
        .seed(
            BUCKET,
            &[
                ("v1/good.bin", &bytes(1, 4000)),
                ("v1/bad.bin", &bytes(2, 4000)),
            ],
        )
        .await?;
    // Same size, other bytes: s3s-fs keeps the recorded MD5 (the ETag) in its own metadata.
    let replacement = tempfile::NamedTempFile::new()?;
    std::fs::write(replacement.path(), bytes(3, 4000))?;
    // The server runs as nobody: it must be able to read the replaced file.
    std::fs::set_permissions(
        replacement.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    docker(&[
        "cp",
        replacement.path().to_str().unwrap_or_default(),
        &format!("{}:/data/{BUCKET}/v1/bad.bin", server.container_id()),
    ])?;
    let destination = tempfile::tempdir()?;
    let config = Config {
        attempts: 2,
        backoff: std::time::Duration::from_millis(10),
        ..Config::default()
    };
    let error = plx_transfer::download(
        &server.client,
        &whole(""),
        destination.path(),
        &config,
        &None,
    )
    .await
    .expect_err("corruption is caught");
    assert_eq!(error.failures.len(), 1, "{error}");
    assert_eq!(error.failures[0].kind, ErrorKind::Corrupt, "{error}");
    assert!(
        error.failures[0]
            .to_string()
            .starts_with("s3://datasets/v1/bad.bin: content MD5"),
        "{error}"
    );
    assert!(
        !destination.path().join("bad.bin").exists(),
        "a corrupt file landed"
    );
    assert_eq!(
        std::fs::read(destination.path().join("good.bin"))?,
        bytes(1, 4000)
    );
    assert_eq!(
        landed_files(destination.path()).len(),
        1,
        "no temporary file is left"
    );
    Ok(())
}

#[tokio::test]
async fn a_server_paused_past_the_read_timeout_is_retried_to_completion() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects: Vec<(String, Vec<u8>)> = (0..40u64)
        .map(|index| (format!("v1/f{index:02}"), bytes(index, 20_000)))
        .collect();
    for (key, body) in &objects {
        server.put(BUCKET, key, body.clone()).await?;
    }
    let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
        .read_timeout(std::time::Duration::from_millis(800))
        .connect_timeout(std::time::Duration::from_millis(800))
        .build();
    let client = aws_sdk_s3::Client::from_conf(
        server
            .client
            .config()
            .to_builder()
            .timeout_config(timeouts)
            .build(),
    );
    docker(&["pause", server.container_id()])?;
    let id = server.container_id().to_owned();
    let unpause = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let _ = std::process::Command::new("docker")
            .args(["unpause", &id])
            .output();
    });
    let destination = tempfile::tempdir()?;
    let config = Config {
        attempts: 8,
        backoff: std::time::Duration::from_millis(300),
        ..Config::default()
    };
    let summary =
        plx_transfer::download(&client, &whole(""), destination.path(), &config, &None).await;
    unpause.await?;
    let summary = summary?;
    assert_eq!(summary.objects, 40);
    // The SDK's own retries (or the engine's) carried the transfer across the pause.
    assert!(
        summary.elapsed >= std::time::Duration::from_millis(1500),
        "the pause did not happen during the transfer"
    );
    for (key, body) in &objects {
        assert_eq!(
            &std::fs::read(destination.path().join(key.trim_start_matches("v1/")))?,
            body
        );
    }
    Ok(())
}

/// A download in a runtime of its own, on a thread, ended as a killed process ends: dropping
/// the runtime waits for the work it handed to blocking threads (a file's or a part's sync, a
/// part's record), so nothing of the run still writes when a test looks at what it left.
/// Aborting a task would not: a blocking thread's write could land after the test looked.
struct Killable {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Killable {
    fn start(
        client: aws_sdk_s3::Client,
        request: Download,
        path: std::path::PathBuf,
        config: Config,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> Killable {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let events = Some(events);
            runtime.block_on(async move {
                tokio::select! {
                    _ = plx_transfer::download(&client, &request, &path, &config, &events) => {}
                    _ = stopped => {}
                }
            });
            Ok(())
        });
        Killable { stop, thread }
    }

    /// Stops the run and waits until its runtime, blocking threads included, is gone.
    async fn kill(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the killed run panicked"))?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_leaves_no_partial_file() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let big = bytes(9, 6 * 1024 * 1024);
    server.put(BUCKET, "v1/big.bin", big.clone()).await?;
    for index in 0..30u64 {
        server
            .put(BUCKET, &format!("v1/small-{index}"), bytes(index, 50_000))
            .await?;
    }
    let destination = tempfile::tempdir()?;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let client = server.client.clone();
    let path = destination.path().to_path_buf();
    let config = Config {
        multipart_threshold: 1024 * 1024,
        part_size: 128 * 1024,
        part_concurrency: 2,
        concurrency: 4,
        requests: 4,
        ..Config::default()
    };
    let run = Killable::start(client, whole(""), path, config, sender);
    // Cancel once bytes are flowing.
    while let Some(event) = receiver.recv().await {
        if matches!(event, plx_transfer::Event::Bytes(_)) {
            break;
        }
    }
    run.kill().await?;
    for (name, content) in landed_files(destination.path()) {
        // Only a large object's resumable part file (and its record) may stay, hidden.
        if name.contains(".plx-part") {
            assert!(
                name == ".big.bin.plx-part" || name == ".big.bin.plx-parts",
                "a temporary file was left: {name}"
            );
            continue;
        }
        let expected = if name == "big.bin" {
            big.clone()
        } else {
            bytes(name.trim_start_matches("small-").parse()?, 50_000)
        };
        assert_eq!(content, expected, "{name} landed incomplete");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_large_download_resumes_fetching_only_the_missing_parts()
-> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let big = bytes(42, 5 * 1024 * 1024 + 77);
    server.put(BUCKET, "v1/big.bin", big.clone()).await?;
    let config = Config {
        multipart_threshold: 1024 * 1024,
        part_size: 128 * 1024,
        part_concurrency: 2,
        ..Config::default()
    };
    let total_parts = big.len().div_ceil(128 * 1024);
    let destination = tempfile::tempdir()?;

    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let first = Killable::start(
        server.client.clone(),
        whole(""),
        destination.path().to_path_buf(),
        config.clone(),
        sender,
    );
    let mut parts_before = 0;
    while let Some(event) = receiver.recv().await {
        if matches!(event, plx_transfer::Event::PartDone { .. }) {
            parts_before += 1;
            if parts_before == 10 {
                break;
            }
        }
    }
    first.kill().await?;
    assert!(
        !destination.path().join("big.bin").exists(),
        "nothing may look complete"
    );
    let progress: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        destination.path().join(".big.bin.plx-parts"),
    )?)?;
    let recorded = progress["done"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        recorded >= 10 && recorded < total_parts,
        "{recorded} of {total_parts} parts recorded"
    );

    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let summary = plx_transfer::download(
        &server.client,
        &whole(""),
        destination.path(),
        &config,
        &Some(sender),
    )
    .await?;
    let mut fetched = 0;
    while let Ok(event) = receiver.try_recv() {
        if matches!(event, plx_transfer::Event::PartDone { .. }) {
            fetched += 1;
        }
    }
    assert_eq!(
        fetched,
        total_parts - recorded,
        "only the missing parts are fetched again"
    );
    assert_eq!((summary.objects, summary.unverified), (1, 0));
    assert_eq!(std::fs::read(destination.path().join("big.bin"))?, big);
    assert_eq!(
        landed_files(destination.path()).len(),
        1,
        "the part file and its record are gone: {:?}",
        landed_files(destination.path()).keys().collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_mid_transfer_completes_after_retries() -> anyhow::Result<()>
{
    let mut server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let objects: Vec<(String, Vec<u8>)> = (0..60u64)
        .map(|index| (format!("v1/f{index:02}"), bytes(index, 200_000)))
        .collect();
    for (key, body) in &objects {
        server.put(BUCKET, key, body.clone()).await?;
    }
    let forwarder = plx_testkit::TcpForwarder::start(([127, 0, 0, 1], server.port).into()).await?;
    let client = plx_testkit::s3::client_for(
        &forwarder.endpoint(),
        &server.region,
        &server.access_key,
        &server.secret_key,
    );
    let destination = tempfile::tempdir()?;
    let config = Config {
        requests: 2,
        attempts: 10,
        backoff: std::time::Duration::from_millis(300),
        ..Config::default()
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let path = destination.path().to_path_buf();
    let task = tokio::spawn(async move {
        plx_transfer::download(&client, &whole(""), &path, &config, &Some(sender)).await
    });
    let mut done = 0;
    while let Some(event) = receiver.recv().await {
        if matches!(event, plx_transfer::Event::Done { .. }) {
            done += 1;
            if done == 5 {
                break;
            }
        }
    }
    server.kill().await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.restart().await?;
    forwarder.set_upstream(([127, 0, 0, 1], server.port).into());
    let summary = task.await??;
    assert_eq!(summary.objects, 60);
    assert_eq!(summary.unverified, 0);
    for (key, body) in &objects {
        assert_eq!(
            &std::fs::read(destination.path().join(key.trim_start_matches("v1/")))?,
            body,
            "{key}"
        );
    }
    Ok(())
}
