//! A pull into a volume too small for it, on a real tmpfs: refused before it writes more than
//! fits, with both figures and the destination named; and a disk that fills anyway (two pulls
//! sharing it) gives its room back, with nothing partial left under a final name.

use std::{path::Path, process::Command, time::Duration};

use plx_testkit::{LatencyProxy, Network, S3Server, Tmpfs, all_files};

fn catalog(endpoint: &str) -> String {
    format!(
        r#"{{"connections":[{{"name":"data","kind":"s3","schema":{{"bucket":"s3://datasets"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{endpoint}"}}}}]}}"#
    )
}

fn command(server: &S3Server, endpoint: &str, context: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plx-init"));
    command
        .args(args)
        .env_clear()
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog(endpoint))
        .env("POLYAXON_CONTEXT_ROOT", context)
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// No temporary anywhere on the volume, and every visible file whole.
fn nothing_partial(root: &Path, objects: &[(&str, Vec<u8>)]) {
    for (path, bytes) in all_files(root) {
        assert!(
            !path.ends_with(".plx-part")
                && !path.ends_with(".plx-parts")
                && !path.ends_with("-tmp"),
            "{path} was left behind"
        );
        if let Some((_, want)) = objects
            .iter()
            .find(|(name, _)| path.ends_with(&format!("/{name}")))
        {
            assert!(
                bytes == *want,
                "{path} is under its final name but not whole"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_larger_than_the_volume_fails_before_writing_and_says_both_figures()
-> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    let big = plx_testkit::bytes(7, 20_000_000);
    server.put("datasets", "big.bin", big.clone()).await?;
    let volume = Tmpfs::mount(8 * 1024)?;
    let free = volume.free()?;
    let output = command(
        &server,
        &server.endpoint,
        volume.path(),
        &["artifacts", "--connection", "data", "--files", "big.bin"],
    )
    .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let destination = volume.path().join("artifacts/data");
    for said in [
        format!("{}: this pull needs 19.1 MiB", destination.display()),
        "and the destination had 8.0 MiB (8388608 bytes) free".to_owned(),
    ] {
        assert!(
            stderr.contains(&said),
            "stderr does not say `{said}`: {stderr}"
        );
    }
    nothing_partial(volume.path(), &[("big.bin", big)]);
    assert!(
        !destination.join("big.bin").exists(),
        "a file that does not fit landed"
    );
    // Only the state (a few hundred bytes, in one page) was written.
    let used = free - volume.free()?;
    assert!(
        used <= 64 * 1024,
        "{used} bytes of the volume stayed in use"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_anyway_fails_and_gives_its_room_back() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("a.bin", plx_testkit::bytes(1, 6_000_000)),
        ("b.bin", plx_testkit::bytes(2, 6_000_000)),
    ];
    for (key, body) in &objects {
        server.put("datasets", key, body.clone()).await?;
    }
    // Bodies at 20 MB/s: each pull takes 300 ms, so the two overlap. Each fits the volume
    // alone when it starts; together they do not, and one of them meets a full disk.
    let upstream = server.endpoint.trim_start_matches("http://").parse()?;
    let network = Network {
        bandwidth: Some(20_000_000),
        ..Network::far(Duration::ZERO)
    };
    let proxy = LatencyProxy::start(upstream, network).await?;
    let volume = Tmpfs::mount(8 * 1024)?;
    let free = volume.free()?;
    let children = objects
        .iter()
        .map(|(key, _)| {
            command(
                &server,
                &proxy.endpoint(),
                volume.path(),
                &[
                    "artifacts",
                    "--connection",
                    "data",
                    "--files",
                    key,
                    "--path",
                    &volume
                        .path()
                        .join(key.replace(".bin", ""))
                        .display()
                        .to_string(),
                ],
            )
            .stderr(std::process::Stdio::piped())
            .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut failed = Vec::new();
    let mut landed = 0u64;
    for (child, (key, _)) in children.into_iter().zip(&objects) {
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match output.status.code() {
            Some(0) => landed += 6_000_000u64.div_ceil(4096) * 4096,
            Some(1) => failed.push(stderr),
            code => panic!("{key}: exit {code:?}: {stderr}"),
        }
    }
    assert!(
        !failed.is_empty(),
        "both pulls fitted: the test needs a smaller volume"
    );
    for stderr in &failed {
        assert!(
            stderr.contains("this pull needs 5.7 MiB")
                && (stderr.contains("the disk filled up") || stderr.contains("free: make room")),
            "{stderr}"
        );
    }
    nothing_partial(volume.path(), &objects);
    // The failed pulls' temporaries are gone: what stays in use is what landed, and the state.
    let used = free - volume.free()?;
    assert!(
        used >= landed && used <= landed + 64 * 1024,
        "{used} bytes in use, {landed} landed: the room was not given back"
    );
    Ok(())
}
