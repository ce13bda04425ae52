//! The node cache with the real binary on moto (which lists ETags): pods pulling the same data at
//! once fetch each object from the store once, a job writing its file leaves the cache as it
//! was, the cache stays within its budget, a full cache disk is a plain pull with one warning,
//! and the temporaries of killed inserts are swept.

use std::{path::Path, process::Child, time::Duration};

use plx_testkit::{LatencyProxy, Moto, Network, Tmpfs};

use crate::pod::{Store, command, run};

const OBJECTS: usize = 24;

/// moto with `count` objects of `size` bytes under `v1/train/`, by their key under the
/// connection.
async fn seeded(count: usize, size: usize) -> anyhow::Result<(Moto, Vec<(String, Vec<u8>)>)> {
    let moto = Moto::start().await?;
    let client = plx_testkit::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    plx_testkit::s3::create_bucket(&client, "datasets").await?;
    let mut objects = Vec::new();
    for index in 0..count {
        let body = plx_testkit::bytes(index as u64 + 1, size);
        let key = format!("train/{index:02}.bin");
        plx_testkit::s3::put(&client, "datasets", &format!("v1/{key}"), body.clone()).await?;
        objects.push((key, body));
    }
    Ok((moto, objects))
}

fn pull(store: &Store, context: &Path, cache: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec!["artifacts", "--connection", "data", "--dirs", "train"];
    args.extend(extra);
    let mut command = command(store, context, &args);
    command
        .arg("--cache")
        .arg(cache)
        .arg("--summary")
        .arg(context.join("summary.json"));
    command
}

fn summary(context: &Path) -> anyhow::Result<plx_transfer::Summary> {
    let records: Vec<plx_transfer::Record> =
        serde_json::from_slice(&std::fs::read(context.join("summary.json"))?)?;
    Ok(records[0].summary.clone())
}

fn landed_exactly(context: &Path, objects: &[(String, Vec<u8>)]) {
    let landed = plx_testkit::all_files(&context.join("artifacts/data"));
    let wanted: std::collections::BTreeMap<String, Vec<u8>> = objects.iter().cloned().collect();
    assert!(
        landed == wanted,
        "the tree differs from the store's objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_pulling_the_same_data_at_once_fetch_each_object_once() -> anyhow::Result<()> {
    let (moto, objects) = seeded(OBJECTS, 64 * 1024).await?;
    // 40 ms away, so that the pods' pulls overlap.
    let upstream = moto.endpoint.trim_start_matches("http://").parse()?;
    let proxy = LatencyProxy::start(upstream, Network::far(Duration::from_millis(40))).await?;
    let store = Store {
        endpoint: proxy.endpoint(),
        ..Store::moto(&moto)
    };
    let cache = tempfile::tempdir()?;
    let pods: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let children: Vec<Child> = pods
        .iter()
        .map(|pod| {
            pull(&store, pod.path(), cache.path(), &[])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for child in children {
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
    }
    let mut from_store = 0;
    for pod in &pods {
        landed_exactly(pod.path(), &objects);
        let summary = summary(pod.path())?;
        assert_eq!(summary.objects as usize, OBJECTS, "{summary:?}");
        from_store += summary.objects - summary.from_cache.objects;
    }
    assert_eq!(
        from_store as usize, OBJECTS,
        "an object was fetched from the store twice"
    );
    // A later pod: all from the cache.
    let late = tempfile::tempdir()?;
    let (code, stderr) = run(&mut pull(&store, late.path(), cache.path(), &[]));
    assert_eq!(code, 0, "{stderr}");
    landed_exactly(late.path(), &objects);
    assert_eq!(summary(late.path())?.from_cache.objects as usize, OBJECTS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_writes_its_files_leaves_the_cache_as_it_was() -> anyhow::Result<()> {
    let (moto, objects) = seeded(4, 4096).await?;
    let store = Store::moto(&moto);
    let cache = tempfile::tempdir()?;
    let first = tempfile::tempdir()?;
    let (code, stderr) = run(&mut pull(&store, first.path(), cache.path(), &[]));
    assert_eq!(code, 0, "{stderr}");
    let second = tempfile::tempdir()?;
    let (code, stderr) = run(&mut pull(&store, second.path(), cache.path(), &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(second.path())?.from_cache.objects, 4);
    // The job writes into the files it was given, in place and by truncation.
    for (key, _) in &objects {
        let path = second.path().join("artifacts/data").join(key);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, b"scribbled"))?;
    }
    std::fs::write(
        second.path().join("artifacts/data").join(&objects[0].0),
        b"",
    )?;
    let third = tempfile::tempdir()?;
    let (code, stderr) = run(&mut pull(&store, third.path(), cache.path(), &[]));
    assert_eq!(code, 0, "{stderr}");
    landed_exactly(third.path(), &objects);
    assert_eq!(summary(third.path())?.from_cache.objects, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_its_budget_and_sweeps_killed_inserts() -> anyhow::Result<()> {
    let (moto, objects) = seeded(6, 40 * 1024).await?;
    let store = Store::moto(&moto);
    let cache = tempfile::tempdir()?;
    // What inserts killed mid-way leave: one long ago, one just now (its entry's lock free), and
    // a temporary that an insert is writing (its entry's lock held).
    let tmp = cache.path().join("v1/tmp");
    let locks = cache.path().join("v1/locks");
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(&locks)?;
    std::fs::write(tmp.join("killed.3"), b"half")?;
    std::fs::write(locks.join("killed"), b"")?;
    let held = std::fs::File::create(locks.join("fresh"))?;
    held.lock()?;
    std::fs::write(tmp.join("stale.1"), b"half")?;
    std::fs::File::options()
        .write(true)
        .open(tmp.join("stale.1"))?
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 3600))?;
    std::fs::write(tmp.join("fresh.2"), b"half")?;
    let pod = tempfile::tempdir()?;
    let (code, stderr) = run(&mut pull(
        &store,
        pod.path(),
        cache.path(),
        &["--cache-size", "100Ki"],
    ));
    assert_eq!(code, 0, "{stderr}");
    landed_exactly(pod.path(), &objects);
    let kept = plx_testkit::all_files(&cache.path().join("v1/objects"));
    let bytes: usize = kept.values().map(Vec::len).sum();
    assert!(
        !kept.is_empty() && bytes <= 100 * 1024,
        "{} entries, {bytes} bytes",
        kept.len()
    );
    assert!(
        !tmp.join("stale.1").exists(),
        "a killed insert's temporary stayed"
    );
    assert!(
        !tmp.join("killed.3").exists(),
        "a temporary whose entry's lock was free stayed"
    );
    assert!(
        tmp.join("fresh.2").exists(),
        "a temporary being written was removed"
    );
    drop(held);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_disk_is_a_plain_pull_with_one_warning() -> anyhow::Result<()> {
    let (moto, objects) = seeded(3, 100 * 1024).await?;
    let store = Store::moto(&moto);
    let cache = Tmpfs::mount(64)?;
    let pod = tempfile::tempdir()?;
    let (code, stderr) = run(&mut pull(
        &store,
        pod.path(),
        cache.path(),
        &["--cache-size", "1Gi"],
    ));
    assert_eq!(code, 0, "{stderr}");
    landed_exactly(pod.path(), &objects);
    assert_eq!(
        stderr.matches("cannot keep objects").count(),
        1,
        "one warning: {stderr}"
    );
    // Nothing half-written was left in the cache.
    assert!(plx_testkit::all_files(&cache.path().join("v1/objects")).is_empty());
    assert!(plx_testkit::all_files(&cache.path().join("v1/tmp")).is_empty());
    Ok(())
}
