//! Downloads one object with the default configuration and prints the process's peak resident
//! memory, for the memory test (run in a child process so the figure is the engine's alone).
//!
//! Usage: `fetch ENDPOINT ACCESS_KEY SECRET_KEY BUCKET KEY DESTINATION`

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, access_key, secret_key, bucket, key, destination] = args.as_slice() else {
        anyhow::bail!("usage: fetch ENDPOINT ACCESS_KEY SECRET_KEY BUCKET KEY DESTINATION");
    };
    let client = plx_testkit::s3::client_for(endpoint, "us-east-1", access_key, secret_key);
    let request = plx_transfer::Download {
        bucket: bucket.clone(),
        entries: vec![plx_transfer::Entry::File {
            from: key.clone(),
            to: key.clone(),
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
        .map(|value| value.trim().trim_end_matches(" kB").trim().to_owned())
        .unwrap_or_default();
    println!(
        "bytes={} unverified={} peak_rss_kib={peak}",
        summary.bytes, summary.unverified
    );
    Ok(())
}
