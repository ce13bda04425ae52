//! The pinned manifest with the real binary: `--manifest` records what landed (with versions on
//! a versioned bucket, moto's), `--pin` pulls exactly that after the bucket changed, a changed
//! object of an unversioned bucket fails naming what changed, and Polyaxon's generated
//! `initializer path` lines write and follow one manifest through PLX_MANIFEST and PLX_PIN.

use std::path::Path;

use plx_testkit::{Moto, S3Server};
use serde_json::Value;

use crate::pod::{Store, command, run};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `artifacts --dirs train` with `--manifest FILE` or `--pin FILE`.
fn train(store: &Store, context: &Path, flag: &str, file: &Path) -> std::process::Command {
    let mut command = command(
        store,
        context,
        &["artifacts", "--connection", "data", "--dirs", "train"],
    );
    command.arg(flag).arg(file);
    command
}

async fn put(client: &aws_sdk_s3::Client, key: &str, body: &str) -> anyhow::Result<()> {
    plx_testkit::s3::put(client, "datasets", key, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_pull_of_a_versioned_bucket_gets_the_recorded_versions() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let client = plx_testkit::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    plx_testkit::s3::create_bucket(&client, "datasets").await?;
    plx_testkit::s3::enable_versioning(&client, "datasets").await?;
    put(&client, "v1/train/a.csv", "old a").await?;
    put(&client, "v1/train/b.csv", "b").await?;
    let store = Store::moto(&moto);
    let first = tempfile::tempdir()?;
    let manifest = first.path().join("lineage/manifest.json");
    let (code, stderr) = run(&mut train(&store, first.path(), "--manifest", &manifest));
    assert_eq!(code, 0, "{stderr}");
    let recorded: Value = serde_json::from_str(&read(&manifest))?;
    assert_eq!(recorded["version"], 1);
    let pull = &recorded["pulls"][0];
    assert_eq!(pull["connection"], "data");
    assert_eq!(pull["bucket"], "datasets");
    assert_eq!(
        pull["destination"],
        first.path().join("artifacts/data").display().to_string()
    );
    let objects = pull["objects"].as_array().cloned().unwrap_or_default();
    let keys: Vec<&str> = objects.iter().filter_map(|o| o["key"].as_str()).collect();
    assert_eq!(keys, ["v1/train/a.csv", "v1/train/b.csv"], "{recorded}");
    let a = &objects[0];
    assert_eq!(a["path"], "train/a.csv");
    assert_eq!(a["size"], 5);
    assert_eq!(a["etag"], format!("{:032x}", md5_of(b"old a")));
    let version = a["version_id"].as_str().unwrap_or_default().to_owned();
    assert!(!version.is_empty(), "no version recorded: {recorded}");

    // The bucket moves on: a new version of a.csv, and a new file.
    put(&client, "v1/train/a.csv", "new a").await?;
    put(&client, "v1/train/c.csv", "c").await?;
    let second = tempfile::tempdir()?;
    let (code, stderr) = run(&mut train(&store, second.path(), "--pin", &manifest));
    assert_eq!(code, 0, "{stderr}");
    let landed = plx_testkit::visible_files(&second.path().join("artifacts/data"));
    let landed: Vec<(String, String)> = landed
        .into_iter()
        .map(|(path, bytes)| (path, String::from_utf8_lossy(&bytes).into_owned()))
        .collect();
    assert_eq!(
        landed,
        [
            ("train/a.csv".to_owned(), "old a".to_owned()),
            ("train/b.csv".to_owned(), "b".to_owned())
        ]
    );
    Ok(())
}

fn md5_of(bytes: &[u8]) -> u128 {
    use md5::Digest;
    u128::from_be_bytes(md5::Md5::digest(bytes).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_object_that_changed_fails_naming_it() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    server.put("datasets", "v1/a.csv", "alpha").await?;
    server.put("datasets", "v1/b.csv", "beta").await?;
    let store = Store::of(&server);
    let first = tempfile::tempdir()?;
    let manifest = first.path().join("manifest.json");
    let args = [
        "artifacts",
        "--connection",
        "data",
        "--files",
        "a.csv",
        "--files",
        "b.csv",
    ];
    let (code, stderr) = run(command(&store, first.path(), &args)
        .arg("--manifest")
        .arg(&manifest));
    assert_eq!(code, 0, "{stderr}");
    server.put("datasets", "v1/a.csv", "ALPHA!").await?;
    let second = tempfile::tempdir()?;
    let (code, stderr) = run(command(&store, second.path(), &args)
        .arg("--pin")
        .arg(&manifest));
    assert_eq!(code, 1, "{stderr}");
    let said = format!(
        "s3://datasets/v1/a.csv: changed since the manifest was written: it recorded ETag `{:032x}`, 5 bytes, the store now has ETag `{:032x}`, 6 bytes",
        md5_of(b"alpha"),
        md5_of(b"ALPHA!")
    );
    assert!(
        stderr.contains(&said),
        "stderr does not say `{said}`: {stderr}"
    );
    // The unchanged object lands; the changed one does not, not even under a temporary name.
    let landed = plx_testkit::all_files(&second.path().join("artifacts/data"));
    assert_eq!(landed.keys().collect::<Vec<_>>(), ["b.csv"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyaxon_generated_lines_write_one_manifest_and_follow_it() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    server.put("datasets", "v1/train/a.csv", "a").await?;
    server.put("datasets", "v1/labels.csv", "l").await?;
    let store = Store::of(&server);
    let context = tempfile::tempdir()?;
    let manifest = context
        .path()
        .join("artifacts/run1/outputs/plx-manifest.json");
    // The two lines Polyaxon's converter writes for `dirs: [train]` and `files: [labels.csv]`.
    for (from, file) in [("train", false), ("labels.csv", true)] {
        let mut line = initializer_path(&store, context.path(), from, file);
        let (code, stderr) = run(line.env("PLX_MANIFEST", &manifest));
        assert_eq!(code, 0, "{stderr}");
    }
    let recorded: Value = serde_json::from_str(&read(&manifest))?;
    let paths: Vec<&str> = recorded["pulls"][0]["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|object| object["path"].as_str())
        .collect();
    assert_eq!(paths, ["labels.csv", "train/a.csv"], "{recorded}");
    assert_eq!(recorded["pulls"].as_array().map(Vec::len), Some(1));

    // A rerun pinned to it: the labels changed in the bucket, so that line fails.
    server.put("datasets", "v1/labels.csv", "L2").await?;
    let rerun = tempfile::tempdir()?;
    let root = rerun.path().join("artifacts/data");
    let (code, stderr) =
        run(initializer_path(&store, rerun.path(), "train", false).env("PLX_PIN", &manifest));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read(&root.join("train/a.csv")), "a");
    let (code, stderr) =
        run(initializer_path(&store, rerun.path(), "labels.csv", true).env("PLX_PIN", &manifest));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("v1/labels.csv: changed since the manifest was written"),
        "{stderr}"
    );
    Ok(())
}

/// One line of the script Polyaxon's converter writes for the connection `data`: `from` under
/// `s3://datasets/v1`, into `<context>/artifacts/data/<from>`.
fn initializer_path(
    store: &Store,
    context: &Path,
    from: &str,
    file: bool,
) -> std::process::Command {
    let to = context.join("artifacts/data").join(from);
    let mut line = command(
        store,
        context,
        &[
            "initializer",
            "path",
            "--connection-name=data",
            "--connection-kind=s3",
            &format!("--path-from=s3://datasets/v1/{from}"),
            &format!("--path-to={}", to.display()),
        ],
    );
    if file {
        line.arg("--is-file");
    }
    line
}

/// The `manifest` fuzz corpus and regressions (`cargo xtask fuzz`), replayed through the same
/// calls and invariant as the fuzz target: read, each pull looked up as a pin looks it up, each
/// recorded path refused or under the destination.
#[test]
fn every_fuzzed_manifest_is_refused_or_stays_under_its_destination() {
    use std::path::Component;
    let inputs = plx_testkit::fuzz_inputs("manifest");
    assert!(!inputs.is_empty(), "the manifest corpus is missing");
    let (mut read, mut refused_paths) = (0, 0);
    for (name, bytes) in inputs {
        let text = String::from_utf8_lossy(&bytes);
        let file = Path::new("manifest.json");
        let Ok(manifest) = plx_pull::manifest::Manifest::parse(&text, file) else {
            continue;
        };
        read += 1;
        for pull in &manifest.pulls {
            let _ = manifest.pinned(file, &pull.connection, Path::new(&pull.destination));
            for object in &pull.objects {
                match plx_transfer::local_path(&object.path) {
                    Ok(path) => assert!(
                        path.components().all(|c| matches!(c, Component::Normal(_))),
                        "{name}: {} → {path:?}",
                        object.path
                    ),
                    Err(_) => refused_paths += 1,
                }
            }
        }
    }
    assert!(
        read > 0 && refused_paths > 0,
        "{read} read, {refused_paths} refused"
    );
}
