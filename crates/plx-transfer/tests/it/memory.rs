//! Peak memory of a 1 GiB download stays bounded: data streams to disk, never a whole object (or
//! a whole part) in memory. The download runs in a child process (this test binary again, running
//! only `child_download`) so the figure is the engine's alone.

use std::process::Command;

use plx_testkit::S3Server;

/// The bound this test holds the engine to with the default configuration (8 parts of 8 MiB in
/// flight, 32 objects); it measured 19 MiB when written.
const PEAK_RSS_BOUND_MIB: u64 = 64;
const CHILD: &str = "PLX_MEMORY_CHILD";

#[tokio::test]
async fn a_1_gib_download_stays_under_the_memory_bound() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("big").await?;
    let source = tempfile::tempdir()?;
    let file = source.path().join("one-gib.bin");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let block: Vec<u8> = (0..1024 * 1024)
            .map(|index: u32| (index.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for index in 0..1024u32 {
            out.write_all(&index.to_le_bytes())?;
            out.write_all(&block[4..])?;
        }
    }
    plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new("big", "", &file),
        &plx_transfer::Config::default(),
        &None,
    )
    .await?;
    drop(source);

    let destination = tempfile::tempdir()?;
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--ignored",
            "--exact",
            "memory::child_download",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            CHILD,
            format!(
                "{} {} {} {}",
                server.endpoint,
                server.access_key,
                server.secret_key,
                destination.path().display()
            ),
        )
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| {
        stdout
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name))
            .and_then(|value| value.parse::<u64>().ok())
    };
    assert_eq!(field("bytes="), Some(1024 * 1024 * 1024), "{stdout}");
    assert_eq!(field("unverified="), Some(0), "{stdout}");
    let peak_mib = field("peak_rss_kib=").unwrap_or(u64::MAX) / 1024;
    println!("peak RSS of a 1 GiB download: {peak_mib} MiB (bound {PEAK_RSS_BOUND_MIB} MiB)");
    assert!(
        peak_mib < PEAK_RSS_BOUND_MIB,
        "peak RSS {peak_mib} MiB is over the {PEAK_RSS_BOUND_MIB} MiB bound"
    );
    assert_eq!(
        std::fs::metadata(destination.path().join("one-gib.bin"))?.len(),
        1024 * 1024 * 1024
    );
    Ok(())
}

/// The child's half: run only by the test above, in its own process.
#[tokio::test]
#[ignore = "run by a_1_gib_download_stays_under_the_memory_bound in a child process"]
async fn child_download() -> anyhow::Result<()> {
    let arguments = std::env::var(CHILD).map_err(|_| {
        anyhow::format_err!("{CHILD} is not set: this runs as the memory test's child")
    })?;
    let [endpoint, access_key, secret_key, destination] =
        arguments.split(' ').collect::<Vec<_>>()[..]
    else {
        anyhow::bail!("{CHILD}: expected four words");
    };
    let client = plx_testkit::s3::client_for(endpoint, "us-east-1", access_key, secret_key);
    let request = plx_transfer::Download {
        bucket: "big".to_owned(),
        entries: vec![plx_transfer::Entry::File {
            from: "one-gib.bin".to_owned(),
            to: "one-gib.bin".to_owned(),
        }],
        ..plx_transfer::Download::default()
    };
    let summary = plx_transfer::download(
        &client,
        &request,
        std::path::Path::new(destination),
        &plx_transfer::Config::default(),
        &None,
    )
    .await?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .map(|value| value.trim().trim_end_matches("kB").trim().to_owned())
        .unwrap_or_default();
    println!(
        "bytes={} unverified={} peak_rss_kib={peak}",
        summary.bytes, summary.unverified
    );
    Ok(())
}
