//! Copies from a mounted directory (host_path, volume_claim): the same contract as downloads.

use std::{os::unix::fs::symlink, path::Path};

use plx_transfer::{Config, Entry, ErrorKind, MountCopy, copy};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn dir(from: &str, to: &str) -> Entry {
    Entry::Dir {
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

#[tokio::test]
async fn a_rerun_skips_what_landed_and_recopies_what_changed() -> anyhow::Result<()> {
    let (mount, destination) = (tempfile::tempdir()?, tempfile::tempdir()?);
    write(&mount.path().join("v1/a.csv"), "a");
    write(&mount.path().join("v1/x/b.csv"), "b");
    let request = MountCopy {
        source: mount.path().to_path_buf(),
        entries: vec![dir("v1", "data")],
        ..MountCopy::default()
    };
    let first = copy(&request, destination.path(), &Config::default(), &None).await?;
    assert_eq!((first.objects, first.bytes, first.skipped), (2, 2, 0));
    let second = copy(&request, destination.path(), &Config::default(), &None).await?;
    assert_eq!((second.objects, second.skipped), (0, 2));
    // A changed source file (new size) is copied again; the other is not.
    write(&mount.path().join("v1/a.csv"), "a2");
    let third = copy(&request, destination.path(), &Config::default(), &None).await?;
    assert_eq!((third.objects, third.skipped), (1, 1));
    assert_eq!(
        std::fs::read_to_string(destination.path().join("data/a.csv"))?,
        "a2"
    );
    Ok(())
}

#[tokio::test]
async fn symlinks_leaving_the_mount_are_refused_and_inner_ones_followed() -> anyhow::Result<()> {
    let (outside, mount, destination) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    write(&outside.path().join("secret.txt"), "host secret");
    write(&mount.path().join("v1/a.csv"), "a");
    symlink(
        outside.path().join("secret.txt"),
        mount.path().join("v1/leak.txt"),
    )?;
    symlink("a.csv", mount.path().join("v1/alias.csv"))?;
    // A symlinked directory is not walked (no loops); one that leaves the mount is refused.
    symlink(outside.path(), mount.path().join("v1/outside"))?;
    let request = MountCopy {
        source: mount.path().to_path_buf(),
        entries: vec![dir("v1", "")],
        ..MountCopy::default()
    };
    let error = copy(&request, destination.path(), &Config::default(), &None)
        .await
        .expect_err("the escaping symlink fails the copy");
    let mut refused: Vec<&str> = error
        .failures
        .iter()
        .filter(|failure| failure.kind == ErrorKind::HostileKey)
        .map(|failure| failure.key.rsplit('/').next().unwrap_or_default())
        .collect();
    refused.sort();
    assert_eq!(refused, ["leak.txt", "outside"], "{error}");
    assert_eq!(error.failures.len(), 2, "{error}");
    assert_eq!(
        std::fs::read_to_string(destination.path().join("alias.csv"))?,
        "a"
    );
    assert!(!destination.path().join("leak.txt").exists());
    assert!(!destination.path().join("outside").exists());
    Ok(())
}

#[tokio::test]
async fn a_symlink_planted_in_the_destination_carries_no_write_outside() -> anyhow::Result<()> {
    let (outside, mount, destination) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    write(&mount.path().join("v1/sub/a.csv"), "a");
    symlink(outside.path(), destination.path().join("sub"))?;
    let request = MountCopy {
        source: mount.path().to_path_buf(),
        entries: vec![dir("v1", "")],
        ..MountCopy::default()
    };
    let error = copy(&request, destination.path(), &Config::default(), &None)
        .await
        .expect_err("the planted symlink is not followed");
    assert_eq!(error.failures[0].kind, ErrorKind::HostileKey, "{error}");
    assert_eq!(std::fs::read_dir(outside.path())?.count(), 0);
    Ok(())
}

#[tokio::test]
async fn missing_sources_and_wrong_entry_kinds_fail_by_name() -> anyhow::Result<()> {
    let (mount, destination) = (tempfile::tempdir()?, tempfile::tempdir()?);
    write(&mount.path().join("v1/a.csv"), "a");
    let request = MountCopy {
        source: mount.path().to_path_buf(),
        entries: vec![
            Entry::File {
                from: "v1/missing.csv".to_owned(),
                to: "missing.csv".to_owned(),
            },
            Entry::File {
                from: "v1".to_owned(),
                to: "v1".to_owned(),
            },
            dir("v1/a.csv", "a"),
            Entry::File {
                from: "v1/a.csv".to_owned(),
                to: "a.csv".to_owned(),
            },
        ],
        ..MountCopy::default()
    };
    let error = copy(&request, destination.path(), &Config::default(), &None)
        .await
        .expect_err("three entries are wrong");
    let messages: Vec<String> = error.failures.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].ends_with("v1/missing.csv: does not exist"));
    assert!(messages[1].contains("is a directory, not a file"));
    assert!(messages[2].contains("is a file, not a directory"));
    assert_eq!(error.summary.objects, 1);
    assert_eq!(
        std::fs::read_to_string(destination.path().join("a.csv"))?,
        "a"
    );
    // The mount itself missing (volume not mounted) is a failure too.
    let unmounted = MountCopy {
        source: mount.path().join("nowhere"),
        entries: vec![dir("", "")],
        ..MountCopy::default()
    };
    let error = copy(&unmounted, destination.path(), &Config::default(), &None)
        .await
        .expect_err("no mount");
    assert!(
        error.to_string().contains("is the volume mounted?"),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn unicode_look_alikes_are_plain_names_inside_the_destination() -> anyhow::Result<()> {
    // Fullwidth dots, a division slash, a right-to-left override and a combining mark look like
    // `..`, `/` or another name to a reader; copied, they stay the names they are.
    let names = [
        "\u{FF0E}\u{FF0E}/up.txt",
        "a\u{2215}b.txt",
        "\u{202E}txt.exe",
        "e\u{0301}.txt",
    ];
    let (mount, sandbox) = (tempfile::tempdir()?, tempfile::tempdir()?);
    for name in names {
        write(&mount.path().join("v1").join(name), name);
    }
    let destination = sandbox.path().join("destination");
    let request = MountCopy {
        source: mount.path().to_path_buf(),
        entries: vec![dir("v1", "data")],
        ..MountCopy::default()
    };
    let summary = copy(&request, &destination, &Config::default(), &None).await?;
    assert_eq!(summary.objects, names.len() as u64);
    for name in names {
        let path = destination.join("data").join(name);
        assert_eq!(std::fs::read_to_string(&path)?, name, "{}", path.display());
    }
    let beside: Vec<_> = std::fs::read_dir(sandbox.path())?
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(beside, ["destination"]);
    Ok(())
}
