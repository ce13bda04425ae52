//! Hostile keys and names against a real S3 server: traversal, links planted in the destination,
//! and look-alike names, none of which may write outside the destination or under another name.

use std::path::Path;

use plx_testkit::{Moto, S3Server};
use plx_transfer::{Config, ErrorKind};

use super::download::whole;

const BUCKET: &str = "datasets";

#[tokio::test]
async fn hostile_keys_write_nothing_outside_the_destination() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let client = plx_testkit::s3::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    plx_testkit::s3::create_bucket(&client, BUCKET).await?;
    for key in [
        "v1/../evil-1",
        "v1/a/../../evil-2",
        "v1/a//b",
        "v1/ok.txt",
        "v1/link/planted.txt",
        "v1/back\\slash",
    ] {
        plx_testkit::s3::put(&client, BUCKET, key, "x").await?;
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
            // The run's state, beside the destination.
            ".plx-transfer",
            ".plx-transfer/destination",
            ".plx-transfer/destination/state.json",
            "destination",
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

#[tokio::test]
async fn a_hardlink_planted_in_the_destination_does_not_carry_a_write_outside() -> anyhow::Result<()>
{
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    server
        .put(BUCKET, "v1/labels.csv", b"from the bucket".to_vec())
        .await?;
    let sandbox = tempfile::tempdir()?;
    let (destination, outside) = (
        sandbox.path().join("destination"),
        sandbox.path().join("secret.txt"),
    );
    std::fs::create_dir_all(&destination)?;
    std::fs::write(&outside, "outside, must not change")?;
    // Where the object lands, a hard link to a file outside: writing through it would change it.
    std::fs::hard_link(&outside, destination.join("labels.csv"))?;
    plx_transfer::download(
        &server.client,
        &whole(""),
        &destination,
        &Config::default(),
        &None,
    )
    .await?;
    // The bytes went to a new file renamed over the link, never through it.
    assert_eq!(
        std::fs::read(destination.join("labels.csv"))?,
        b"from the bucket"
    );
    assert_eq!(std::fs::read(&outside)?, b"outside, must not change");
    Ok(())
}

#[tokio::test]
async fn unicode_look_alikes_are_plain_names_inside_the_destination() -> anyhow::Result<()> {
    // Fullwidth dots, a division slash, a right-to-left override and a combining mark look like
    // `..`, `/` or another name to a reader, but are ordinary characters to the file system.
    let keys = [
        "v1/\u{FF0E}\u{FF0E}/up.txt",
        "v1/a\u{2215}b.txt",
        "v1/\u{202E}txt.exe",
        "v1/e\u{0301}.txt",
    ];
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    for key in keys {
        server.put(BUCKET, key, key.as_bytes().to_vec()).await?;
    }
    let sandbox = tempfile::tempdir()?;
    let destination = sandbox.path().join("destination");
    plx_transfer::download(
        &server.client,
        &whole(""),
        &destination,
        &Config::default(),
        &None,
    )
    .await?;
    for key in keys {
        let path = destination.join(key.trim_start_matches("v1/"));
        assert_eq!(std::fs::read(&path)?, key.as_bytes(), "{}", path.display());
    }
    // Nothing beside the destination but the run's state.
    let mut names: Vec<_> = std::fs::read_dir(sandbox.path())?
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    assert_eq!(names, [".plx-transfer", "destination"]);
    Ok(())
}

#[tokio::test]
async fn unicode_look_alike_file_names_upload_as_exactly_their_own_keys() -> anyhow::Result<()> {
    // The same look-alikes as file names: each becomes the key it spells, under the prefix, and
    // none turns into a real `..` or `/` segment.
    let names = [
        "\u{FF0E}\u{FF0E}/up.txt",
        "a\u{2215}b.txt",
        "\u{202E}txt.exe",
        "e\u{0301}.txt",
    ];
    let source = tempfile::tempdir()?;
    for name in names {
        let path = source.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(source.path()))?;
        std::fs::write(&path, name)?;
    }
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let summary = plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new(BUCKET, "out", source.path()),
        &Config::default(),
        &None,
    )
    .await?;
    assert_eq!(summary.objects, names.len() as u64);
    let listed = server
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await?;
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort_unstable();
    let mut wanted: Vec<String> = names.iter().map(|name| format!("out/{name}")).collect();
    wanted.sort_unstable();
    assert_eq!(keys, wanted);
    for key in &keys {
        assert!(
            !key.split('/')
                .any(|segment| segment == ".." || segment.is_empty())
        );
        let body = server
            .client
            .get_object()
            .bucket(BUCKET)
            .key(*key)
            .send()
            .await?;
        assert_eq!(
            body.body.collect().await?.into_bytes().as_ref(),
            key.trim_start_matches("out/").as_bytes()
        );
    }
    Ok(())
}
