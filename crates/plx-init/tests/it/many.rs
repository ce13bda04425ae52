//! Many small objects: `plx-init artifacts` pulls everything, never runs out of descriptors, and
//! its peak memory stays bounded. `PLX_MANY_OBJECTS` sets the count (2,000 here; `cargo xtask
//! soak` pulls 100,000 from each server).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use plx_testkit::Embedded;
use plx_testkit::s3::{Backend, S3Server};

/// The open-file limit the first pull runs under (`prlimit --nofile`).
const LIMIT: u32 = 256;

fn count() -> usize {
    std::env::var("PLX_MANY_OBJECTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(2_000)
}

/// Puts `count` small objects under `v1/` in 500 directories.
async fn seed(client: &aws_sdk_s3::Client, count: usize) -> anyhow::Result<Duration> {
    plx_testkit::s3::create_bucket(client, "datasets").await?;
    let puts = futures::stream::iter(0..count).map(|index| async move {
        let key = format!("v1/d{:03}/{index:06}.txt", index % 500);
        plx_testkit::s3::put(client, "datasets", &key, format!("{index}\n")).await
    });
    let started = std::time::Instant::now();
    let seeded: Vec<anyhow::Result<()>> = puts.buffer_unordered(64).collect().await;
    seeded.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(started.elapsed())
}

/// What one pull took.
struct Pulled {
    stderr: String,
    seconds: f64,
    peak_rss_kib: u64,
    /// The most descriptors plx-init held at once, sampled from `/proc` every 10 ms.
    peak_fds: usize,
}

/// Runs `plx-init artifacts` on the whole prefix, under `limit` open files if given, and checks
/// that it exits 0 with every object pulled and none failed.
fn pull(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    count: usize,
    limit: Option<u32>,
) -> anyhow::Result<Pulled> {
    let context = tempfile::tempdir()?;
    let catalog = format!(
        r#"{{"connections":[{{"name":"data","kind":"s3","schema":{{"bucket":"s3://datasets/v1"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{endpoint}"}}}}]}}"#
    );
    let summary = context.path().join("summary.json");
    let log = context.path().join("stderr.log");
    // GNU time reports the peak RSS; prlimit lowers the open-file limit for the pull alone.
    let mut command = Command::new("/usr/bin/time");
    command.args(["-f", "peak-rss-kib=%M"]);
    if let Some(limit) = limit {
        command
            .arg("prlimit")
            .arg(format!("--nofile={limit}:{limit}"));
    }
    let mut child = command
        .arg(env!("CARGO_BIN_EXE_plx-init"))
        .args(["artifacts", "--connection", "data"])
        .arg("--summary")
        .arg(&summary)
        .env_clear()
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog)
        .env("POLYAXON_CONTEXT_ROOT", context.path())
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut peak_fds = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // time forks plx-init (prlimit execs it): the one child of time's process.
        let children = format!("/proc/{0}/task/{0}/children", child.id());
        if let Some(pid) = std::fs::read_to_string(children)
            .ok()
            .and_then(|pids| pids.split_whitespace().next().map(str::to_owned))
        {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
            peak_fds = peak_fds.max(fds);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(&log)?;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let records: Vec<plx_transfer::Record> = serde_json::from_slice(&std::fs::read(&summary)?)?;
    assert_eq!(records[0].summary.objects, count as u64, "{records:?}");
    assert_eq!(records[0].summary.failed, 0, "{records:?}");
    assert_eq!(landed(&context.path().join("artifacts")), count);
    let peak_rss_kib = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak-rss-kib="))
        .and_then(|value| value.trim().parse().ok())
        .expect("GNU time's figure");
    let seconds = records[0].summary.elapsed.as_secs_f64();
    Ok(Pulled {
        stderr,
        seconds,
        peak_rss_kib,
        peak_fds,
    })
}

/// Files under `dir`, hidden ones (a temporary or a state file) excluded.
fn landed(dir: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            match entry.file_type() {
                Ok(kind) if kind.is_dir() && !hidden => dirs.push(entry.path()),
                Ok(kind) if kind.is_file() && !hidden => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Per object the engine keeps its listing entry and its state line; the data streams.
fn check_memory(pulled: &Pulled, count: usize) {
    let bound_kib = 64 * 1024 + count as u64 * 2;
    assert!(
        pulled.peak_rss_kib < bound_kib,
        "peak RSS {} KiB for {count} objects (bound {bound_kib} KiB)",
        pulled.peak_rss_kib
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_objects_under_a_low_open_file_limit() -> anyhow::Result<()> {
    let count = count();
    // s3s-fs in this process on the host's file system: the container's overlay file system
    // writes a few dozen small files a second, too slow to seed 100,000.
    let store = tempfile::tempdir()?;
    let server = Embedded::start(store.path()).await?;
    let seeding = seed(&server.client, count).await?;
    let pulled = pull(
        &server.endpoint,
        &server.access_key,
        &server.secret_key,
        count,
        Some(LIMIT),
    )?;
    assert!(
        pulled
            .stderr
            .contains(&format!("the open-file limit (RLIMIT_NOFILE) is {LIMIT}")),
        "the limit is reported: {}",
        pulled.stderr
    );
    println!(
        "{count} objects (seeded in {seeding:.0?}) pulled under RLIMIT_NOFILE={LIMIT} in {:.1} s: peak RSS {} MiB, at most {} descriptors",
        pulled.seconds,
        pulled.peak_rss_kib / 1024,
        pulled.peak_fds
    );
    check_memory(&pulled, count);
    Ok(())
}

/// The same pull from Garage in a container (its data on this machine's file system), under the
/// open-file limit this process has (a container's is usually 1,048,576): the configuration fits
/// without shrinking, and the descriptors it holds stay within what `Config::open_files` counts.
/// Needs `cargo xtask images --garage`; `cargo xtask soak` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Garage image; run by cargo xtask soak"]
async fn many_small_objects_from_garage() -> anyhow::Result<()> {
    let count = count();
    let data = tempfile::tempdir()?;
    let server = S3Server::start_with(Backend::Garage, Some(data.path())).await?;
    let seeding = seed(&server.client, count).await?;
    let pulled = pull(
        &server.endpoint,
        &server.access_key,
        &server.secret_key,
        count,
        None,
    )?;
    let limit = plx_transfer::open_file_limit();
    let budget = plx_transfer::Config::default().open_files();
    assert!(
        !pulled.stderr.contains("RLIMIT_NOFILE"),
        "under {limit:?} open files nothing shrinks: {}",
        pulled.stderr
    );
    assert!(
        pulled.peak_fds as u64 <= budget,
        "{} descriptors open, more than the {budget} the configuration counts",
        pulled.peak_fds
    );
    println!(
        "{count} objects (seeded in {seeding:.0?}) pulled from Garage under RLIMIT_NOFILE={} in {:.1} s: peak RSS {} MiB, at most {} descriptors (counted: {budget})",
        limit.map_or("unlimited".to_owned(), |limit| limit.to_string()),
        pulled.seconds,
        pulled.peak_rss_kib / 1024,
        pulled.peak_fds
    );
    check_memory(&pulled, count);
    Ok(())
}
