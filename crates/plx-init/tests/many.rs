//! Many small objects under a low open-file limit: `plx-init artifacts` says it fits under the
//! limit, pulls everything, never runs out of descriptors, and its peak memory stays bounded.
//! `PLX_MANY_OBJECTS` sets the count (2,000 here; `cargo xtask soak` pulls 100,000).

use std::process::Command;

use futures::StreamExt;
use plx_testkit::Embedded;

/// The open-file limit the pull runs under (`prlimit --nofile`).
const LIMIT: u32 = 256;

fn count() -> usize {
    std::env::var("PLX_MANY_OBJECTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(2_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_objects_under_a_low_open_file_limit() -> anyhow::Result<()> {
    let count = count();
    // s3s-fs in this process on the host's file system: the container's overlay file system
    // writes a few dozen small files a second, too slow to seed 100,000.
    let store = tempfile::tempdir()?;
    let server = Embedded::start(store.path()).await?;
    plx_testkit::s3::create_bucket(&server.client, "datasets").await?;
    let client = &server.client;
    let puts = futures::stream::iter(0..count).map(|index| async move {
        let key = format!("v1/d{:03}/{index:06}.txt", index % 500);
        plx_testkit::s3::put(client, "datasets", &key, format!("{index}\n")).await
    });
    let started = std::time::Instant::now();
    let seeded: Vec<anyhow::Result<()>> = puts.buffer_unordered(64).collect().await;
    seeded.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    let seeding = started.elapsed();
    let context = tempfile::tempdir()?;
    let catalog = format!(
        r#"{{"connections":[{{"name":"data","kind":"s3","schema":{{"bucket":"s3://datasets/v1"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{}"}}}}]}}"#,
        server.endpoint
    );
    let summary = context.path().join("summary.json");
    // GNU time reports the peak RSS; prlimit lowers the open-file limit for the pull alone.
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib=%M"])
        .arg("prlimit")
        .arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .arg(env!("CARGO_BIN_EXE_plx-init"))
        .args(["artifacts", "--connection", "data"])
        .arg("--summary")
        .arg(&summary)
        .env_clear()
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog)
        .env("POLYAXON_CONTEXT_ROOT", context.path())
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("the open-file limit (RLIMIT_NOFILE) is {LIMIT}")),
        "the limit is reported: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary)?)?;
    assert_eq!(summary[0]["summary"]["objects"], count, "{summary}");
    assert_eq!(summary[0]["summary"]["failed"], 0, "{summary}");
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak-rss-kib="))
        .and_then(|value| value.trim().parse().ok())
        .expect("GNU time's figure");
    println!(
        "{count} objects (seeded in {:.0?}) pulled under RLIMIT_NOFILE={LIMIT} in {:.1} s: peak RSS {} MiB",
        seeding,
        summary[0]["summary"]["elapsed"]
            .as_f64()
            .unwrap_or_default(),
        peak_kib / 1024
    );
    // Per object the engine keeps its listing entry and its state line; the data streams.
    let bound_kib = 64 * 1024 + count as u64 * 2;
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB for {count} objects (bound {bound_kib} KiB)"
    );
    Ok(())
}
