//! `plx-init` killed with SIGKILL in the middle of a pull, then run again: every file visible
//! at the kill is complete and right, the rerun completes, and what the killed run had landed
//! and verified is not fetched again; and kills at seeded random moments of pulls, uploads,
//! node-cache fills and manifest writes, each followed by its checks.

use std::{collections::BTreeMap, path::Path, time::Duration};

use plx_testkit::{S3Server, visible_files as visible};

use crate::pod::{Store, command};

const OBJECTS: usize = 1500;

fn hidden(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else if name.starts_with('.') {
                names.push(name);
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_half_way_resumes_without_fetching_what_landed() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    let mut objects = BTreeMap::new();
    for index in 0..OBJECTS {
        let body: Vec<u8> = (0..4096u32)
            .map(|at| (at as usize * 31 + index) as u8)
            .collect();
        objects.insert(format!("d/{:02}/{index:04}.bin", index % 7), body);
    }
    for (key, body) in &objects {
        server
            .put("datasets", &format!("v1/{key}"), body.clone())
            .await?;
    }
    let context = tempfile::tempdir()?;
    let destination = context.path().join("artifacts/data");
    // One worker, so the pull lasts long enough to be killed half-way.
    let store = Store::of(&server);
    let mut child = command(
        &store,
        context.path(),
        &[
            "artifacts",
            "--connection",
            "data",
            "--dirs",
            "d",
            "--workers",
            "1",
        ],
    )
    .spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while visible(&destination).len() < 100 {
        assert!(tokio::time::Instant::now() < deadline, "nothing landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill()?; // SIGKILL: no handler runs, nothing is flushed or cleaned up
    child.wait()?;
    let at_kill = visible(&destination);
    assert!(
        at_kill.len() < OBJECTS,
        "the pull finished before the kill; the test needs a slower pull"
    );
    // Nothing half-written under a final name.
    for (path, bytes) in &at_kill {
        assert!(
            &objects[path] == bytes,
            "{path} is visible but not complete"
        );
    }

    let summary = context.path().join("summary.json");
    let output = command(
        &store,
        context.path(),
        &["artifacts", "--connection", "data", "--dirs", "d"],
    )
    .arg("--summary")
    .arg(&summary)
    .output()?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        visible(&destination) == objects,
        "the tree differs after the rerun"
    );
    let records: Vec<plx_transfer::Record> = serde_json::from_slice(&std::fs::read(&summary)?)?;
    let run = &records[0].summary;
    let (fetched, skipped) = (run.objects as usize, run.skipped as usize);
    assert_eq!(fetched + skipped, OBJECTS, "{records:?}");
    // A file renamed into place an instant before the kill may not be recorded yet: at most
    // the one in flight (one worker) is fetched again.
    assert!(
        skipped + 1 >= at_kill.len(),
        "{skipped} skipped, but {} had landed before the kill: {records:?}",
        at_kill.len()
    );
    // The data tree holds only the data: no temporaries, and the engine's state (folded, no
    // journal left) is beside it.
    assert_eq!(hidden(&destination), Vec::<String>::new());
    let state = context.path().join("artifacts/.plx-transfer/data");
    let kept: Vec<String> = std::fs::read_dir(&state)?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["state.json"]);
    Ok(())
}

/// Where a seeded kill lands.
#[derive(Debug, Clone, Copy)]
enum Scene {
    /// A pull of small objects and a large one in ranged parts.
    Pull,
    /// An upload of the same tree.
    Upload,
    /// Two pulls filling one node cache at once; one of them is killed.
    Cache,
    /// A pull that writes its manifest over an older one.
    Manifest,
}

const SCENES: [Scene; 4] = [Scene::Pull, Scene::Upload, Scene::Cache, Scene::Manifest];

/// What one kill left, and what its rerun made of it; every count but `killed_at` must be 0.
#[derive(Default)]
struct Aftermath {
    /// Files under a final name that are not their object (or stored objects not their file).
    torn: usize,
    /// Temporaries after the rerun (the destination's, the state's, the node cache's, the
    /// manifest's), by name.
    temporaries: Vec<String>,
    /// Node-cache entries that are not an object's bytes.
    bad_entries: usize,
    /// The manifest neither the old one nor a whole new one.
    torn_manifest: usize,
    /// Reruns that failed or left another tree.
    failed_reruns: usize,
    /// Files visible (or objects stored) at the kill.
    visible: usize,
    /// How long the killed process ran.
    ran: Duration,
}

/// `PLX_KILLS` SIGKILLs (`cargo xtask test` 4; the soak 200 and more), each at a moment drawn
/// from a seeded generator over the length of an unkilled run of its scene, cycling through a
/// pull, an upload, a node-cache fill shared by two pulls, and a manifest's rewrite. After each:
/// nothing torn under a final name or in the store, the cache holds only whole entries, the
/// manifest is the old one or the new one, and the rerun completes with the exact tree and
/// leaves no temporary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_at_random_moments_leave_nothing_torn() -> anyhow::Result<()> {
    let kills = plx_testkit::soak::runs("PLX_KILLS", 4);
    let seed = plx_testkit::soak::runs("PLX_KILL_SEED", 1);
    let moto = plx_testkit::Moto::start().await?;
    let client = plx_testkit::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    plx_testkit::s3::create_bucket(&client, "datasets").await?;
    let mut objects = BTreeMap::new();
    for index in 0..40u64 {
        let size = 1 + (index as usize * 7919) % 40_000;
        objects.insert(format!("f{index:02}.bin"), plx_testkit::bytes(index, size));
    }
    // Above the 16 MiB threshold: ranged parts, a resumable part file and its record.
    objects.insert(
        "big.bin".to_owned(),
        plx_testkit::bytes(99, 20 * 1024 * 1024 + 3),
    );
    for (key, body) in &objects {
        plx_testkit::s3::put(
            &client,
            "datasets",
            &format!("v1/train/{key}"),
            body.clone(),
        )
        .await?;
    }
    let source = tempfile::tempdir()?;
    for (key, body) in &objects {
        std::fs::write(source.path().join(key), body)?;
    }
    let store = Store::moto(&moto);
    let world = World {
        store: &store,
        client: &client,
        objects: &objects,
        source: source.path(),
    };
    // Each scene's process unkilled: its kills fall over that length.
    let mut lengths = Vec::new();
    for scene in SCENES {
        let after = world.kill(scene, "calibrate", None).await?;
        anyhow::ensure!(
            after.failed_reruns == 0 && after.torn == 0,
            "{scene:?} fails unkilled"
        );
        lengths.push(after.ran);
    }
    let mut random = plx_testkit::Random::new(seed);
    let mut problems = Vec::new();
    for kill in 0..kills {
        let scene = SCENES[kill as usize % SCENES.len()];
        let length = lengths[kill as usize % SCENES.len()];
        let at = length.mul_f64(random.unit());
        let after = world.kill(scene, &format!("k{kill}"), Some(at)).await?;
        plx_testkit::soak::record(&serde_json::json!({
            "soak": "kills",
            "scene": format!("{scene:?}"),
            "at_ms": at.as_millis() as u64,
            "of_ms": length.as_millis() as u64,
            "visible": after.visible,
            "torn": after.torn,
            "temporaries": after.temporaries.len(),
            "bad_entries": after.bad_entries,
            "torn_manifest": after.torn_manifest,
            "failed_reruns": after.failed_reruns,
        }));
        let counts = [
            ("torn files", after.torn),
            ("temporaries", after.temporaries.len()),
            ("bad cache entries", after.bad_entries),
            ("torn manifests", after.torn_manifest),
            ("failed reruns", after.failed_reruns),
        ];
        for (what, count) in counts {
            if count > 0 {
                problems.push(format!(
                    "kill {kill} ({scene:?} at {} ms, seed {seed}): {count} {what} {:?}",
                    at.as_millis(),
                    after.temporaries
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// The store and the tree every kill works on.
struct World<'a> {
    store: &'a Store,
    client: &'a aws_sdk_s3::Client,
    objects: &'a BTreeMap<String, Vec<u8>>,
    source: &'a Path,
}

impl World<'_> {
    /// Runs `scene` under `name`, killed `at` after its start (never, with None), then again to
    /// the end; what it left.
    async fn kill(
        &self,
        scene: Scene,
        name: &str,
        at: Option<Duration>,
    ) -> anyhow::Result<Aftermath> {
        let context = tempfile::tempdir()?;
        let destination = context.path().join("artifacts/data");
        let mut after = Aftermath::default();
        let pull = |context: &Path, extra: &[&str]| {
            let mut args = vec!["artifacts", "--connection", "data", "--dirs", "train"];
            args.extend(extra);
            let mut command = command(self.store, context, &args);
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            command
        };
        let wanted: BTreeMap<String, Vec<u8>> = self
            .objects
            .iter()
            .map(|(key, body)| (format!("train/{key}"), body.clone()))
            .collect();
        match scene {
            Scene::Pull | Scene::Manifest => {
                let manifest = context.path().join("lineage/manifest.json");
                let mut extra = Vec::new();
                let old = if matches!(scene, Scene::Manifest) {
                    // The old manifest: a pull of one object.
                    let status = command(
                        self.store,
                        context.path(),
                        &[
                            "artifacts",
                            "--connection",
                            "data",
                            "--files",
                            "train/f00.bin",
                        ],
                    )
                    .arg("--manifest")
                    .arg(&manifest)
                    .output()?
                    .status;
                    anyhow::ensure!(status.success(), "the first manifest's pull failed");
                    extra = vec!["--manifest", manifest.to_str().unwrap_or_default()];
                    Some(std::fs::read(&manifest)?)
                } else {
                    None
                };
                let child = pull(context.path(), &extra).spawn()?;
                after.ran = finish(child, at).await?;
                let visible = visible(&destination);
                after.visible = visible.len();
                after.torn = torn(&visible, &wanted);
                if let Some(old) = &old {
                    let now = std::fs::read(&manifest)?;
                    if now != *old && manifest_objects(&now) != Some(self.objects.len()) {
                        after.torn_manifest = 1;
                    }
                }
                let rerun = pull(context.path(), &extra).status()?;
                if !rerun.success() || plx_testkit::visible_files(&destination) != wanted {
                    after.failed_reruns = 1;
                }
                if old.is_some()
                    && manifest_objects(&std::fs::read(&manifest)?) != Some(self.objects.len())
                {
                    after.torn_manifest = 1;
                }
                after.temporaries = [
                    hidden(&destination),
                    hidden(&context.path().join("lineage")),
                    state_leftovers(context.path()),
                ]
                .concat();
            }
            Scene::Upload => {
                let prefix = format!("up/{name}");
                let upload = || {
                    let mut command = command(
                        self.store,
                        context.path(),
                        &["upload", "--connection", "data"],
                    );
                    command
                        .arg(self.source)
                        .arg(&prefix)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null());
                    command
                };
                after.ran = finish(upload().spawn()?, at).await?;
                let stored = self.stored(&format!("v1/{prefix}/")).await?;
                after.visible = stored.len();
                after.torn = torn(&stored, self.objects);
                let rerun = upload().status()?;
                if !rerun.success() || self.stored(&format!("v1/{prefix}/")).await? != *self.objects
                {
                    after.failed_reruns = 1;
                }
            }
            Scene::Cache => {
                let cache = context.path().join("cache");
                let other = tempfile::tempdir()?;
                let with_cache = |context: &Path| {
                    let mut command = pull(context, &[]);
                    command.arg("--cache").arg(&cache);
                    command
                };
                let killed = with_cache(context.path()).spawn()?;
                let mut sharing = with_cache(other.path()).spawn()?;
                after.ran = finish(killed, at).await?;
                // The kill visible while the other pull goes on: its entries, its files.
                let visible = visible(&destination);
                after.visible = visible.len();
                after.torn = torn(&visible, &wanted);
                after.bad_entries = bad_entries(&cache, self.objects);
                let shared = tokio::task::spawn_blocking(move || sharing.wait()).await??;
                let other_tree = plx_testkit::visible_files(&other.path().join("artifacts/data"));
                if !shared.success() || other_tree != wanted {
                    after.failed_reruns += 1;
                }
                let rerun = with_cache(context.path()).status()?;
                if !rerun.success() || plx_testkit::visible_files(&destination) != wanted {
                    after.failed_reruns += 1;
                }
                after.bad_entries += bad_entries(&cache, self.objects);
                after.temporaries = [
                    hidden(&destination),
                    state_leftovers(context.path()),
                    names(&cache.join("v1/tmp")),
                ]
                .concat();
            }
        }
        Ok(after)
    }

    /// The objects under `prefix` (of the bucket), by the rest of their key.
    async fn stored(&self, prefix: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        let mut stored = BTreeMap::new();
        let listed = self
            .client
            .list_objects_v2()
            .bucket("datasets")
            .prefix(prefix)
            .send()
            .await?;
        for object in listed.contents() {
            let key = object.key().unwrap_or_default();
            let body = self
                .client
                .get_object()
                .bucket("datasets")
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes()
                .to_vec();
            stored.insert(key[prefix.len()..].to_owned(), body);
        }
        Ok(stored)
    }
}

/// Waits for `child`, just spawned, killing it with SIGKILL `at` after now (if it has not ended
/// by then); how long it ran.
async fn finish(mut child: std::process::Child, at: Option<Duration>) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    if let Some(at) = at {
        tokio::time::sleep(at).await;
        let _ = child.kill(); // SIGKILL: no handler runs, nothing is flushed or cleaned up
    }
    tokio::task::spawn_blocking(move || child.wait()).await??;
    Ok(started.elapsed())
}

/// Files in `found` that are not what `wanted` holds under their name.
fn torn(found: &BTreeMap<String, Vec<u8>>, wanted: &BTreeMap<String, Vec<u8>>) -> usize {
    found
        .iter()
        .filter(|(path, bytes)| wanted.get(*path) != Some(bytes))
        .count()
}

/// Node-cache entries whose bytes are no object's.
fn bad_entries(cache: &Path, objects: &BTreeMap<String, Vec<u8>>) -> usize {
    let entries = plx_testkit::all_files(&cache.join("v1/objects"));
    entries
        .values()
        .filter(|bytes| !objects.values().any(|object| object == *bytes))
        .count()
}

/// How many objects a manifest records, if it is one.
fn manifest_objects(text: &[u8]) -> Option<usize> {
    let manifest: serde_json::Value = serde_json::from_slice(text).ok()?;
    manifest["pulls"]
        .as_array()?
        .iter()
        .map(|pull| pull["objects"].as_array().map(Vec::len))
        .sum()
}

/// What the engine's state directory holds beside `state.json`.
fn state_leftovers(context: &Path) -> Vec<String> {
    names(&context.join("artifacts/.plx-transfer/data"))
        .into_iter()
        .filter(|name| name != "state.json")
        .collect()
}

/// The names in `dir` (none where it is missing).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}
