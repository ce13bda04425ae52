//! The engine against real servers: s3s-fs in a container (or MinIO), and moto, which keeps any
//! key, however hostile.

use std::{collections::BTreeMap, path::Path};

use plx_testkit::{Moto, S3Server};
use plx_transfer::{Config, Download, Entry, ErrorKind};

const BUCKET: &str = "datasets";

fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".plx-transfer") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string();
                out.insert(relative, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn whole(to: &str) -> Download {
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

fn small() -> Config {
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
    for index in 0..1500u64 {
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
    let uploaded =
        plx_transfer::upload(&server.client, BUCKET, "v1", source.path(), &config, &None).await?;
    assert_eq!(uploaded.objects, 1500);

    let destination = tempfile::tempdir()?;
    let summary = plx_transfer::download(
        &server.client,
        &whole("data"),
        destination.path(),
        &config,
        &None,
    )
    .await?;
    assert_eq!(
        (
            summary.objects,
            summary.skipped,
            summary.failed,
            summary.retried,
            summary.unverified
        ),
        (1500, 0, 0, 0, 0)
    );
    assert_eq!(tree(&destination.path().join("data")), tree(source.path()));

    let again = plx_transfer::download(
        &server.client,
        &whole("data"),
        destination.path(),
        &config,
        &None,
    )
    .await?;
    assert_eq!((again.objects, again.skipped, again.bytes), (0, 1500, 0));
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
    plx_transfer::upload(&server.client, BUCKET, "v1", source.path(), &config, &None).await?;
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
    assert_eq!(tree(destination.path()), tree(source.path()));
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
    };
    plx_transfer::download(
        &server.client,
        &request,
        destination.path(),
        &Config::default(),
        &None,
    )
    .await?;
    let got: Vec<String> = tree(destination.path()).into_keys().collect();
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

#[tokio::test]
async fn hostile_keys_write_nothing_outside_the_destination() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let client = plx_testkit::s3::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    client.create_bucket().bucket(BUCKET).send().await?;
    for key in [
        "v1/../evil-1",
        "v1/a/../../evil-2",
        "v1/a//b",
        "v1/ok.txt",
        "v1/link/planted.txt",
        "v1/back\\slash",
    ] {
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await?;
    }
    let sandbox = tempfile::tempdir()?;
    let destination = sandbox.path().join("destination");
    let outside = sandbox.path().join("outside");
    std::fs::create_dir_all(&destination)?;
    std::fs::create_dir_all(&outside)?;
    // A symlink planted in the destination must not carry a write outside.
    std::os::unix::fs::symlink(&outside, destination.join("link"))?;
    let error =
        plx_transfer::download(&client, &whole(""), &destination, &Config::default(), &None)
            .await
            .expect_err("hostile keys are refused");
    let refused: Vec<&str> = error
        .failures
        .iter()
        .map(|failure| failure.key.as_str())
        .collect();
    assert_eq!(error.failures.len(), 5, "{error}");
    assert!(
        error
            .failures
            .iter()
            .all(|failure| failure.kind == ErrorKind::HostileKey),
        "{error}"
    );
    assert!(refused.iter().any(|key| key.contains("planted")), "{error}");
    assert_eq!(std::fs::read(destination.join("ok.txt"))?, b"x");
    let mut everything: Vec<String> = Vec::new();
    for entry in walk(sandbox.path()) {
        everything.push(entry.strip_prefix(sandbox.path())?.display().to_string());
    }
    everything.sort();
    assert_eq!(
        everything,
        [
            "destination",
            "destination/.plx-transfer.json",
            "destination/link",
            "destination/ok.txt",
            "outside"
        ]
    );
    Ok(())
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).expect("read").flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            out.extend(walk(&path));
        }
    }
    out
}
