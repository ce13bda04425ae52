//! Peak memory of a 1 GiB download stays bounded: data streams to disk, never a whole object (or
//! a whole part) in memory. Measured in a child process (`examples/fetch.rs`) so the figure is
//! the engine's alone.

use std::process::Command;

use plx_testkit::S3Server;

/// The bound this test holds the engine to, with the default configuration (8 parts of 8 MiB in
/// flight, 32 objects): well under one part per in-flight request plus the runtime.
const PEAK_RSS_BOUND_MIB: u64 = 64;

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
        "big",
        "",
        &file,
        &plx_transfer::Config::default(),
        &None,
    )
    .await?;

    // The example binary sits beside this test's binary: target/<profile>/examples/fetch.
    let fetch = std::env::current_exe()?
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples/fetch"))
        .ok_or_else(|| anyhow::format_err!("no target dir"))?;
    anyhow::ensure!(
        fetch.exists(),
        "{} is missing: `cargo test` builds the examples",
        fetch.display()
    );
    let destination = tempfile::tempdir()?;
    let output = Command::new(&fetch)
        .args([
            &server.endpoint,
            &server.access_key,
            &server.secret_key,
            "big",
            "one-gib.bin",
            destination.path().to_str().unwrap_or_default(),
        ])
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
