//! Measures download wall time around the default knobs against the testkit's S3 server, to pick
//! the defaults (`Config::default`). Not a test: the figures go in docs/tuning.md.
//!
//! Usage: `cargo run --release -p plx-transfer --example tune` (PLX_TEST_S3 picks the server).

use std::time::{Duration, Instant};

use plx_testkit::S3Server;
use plx_transfer::{Config, Download, Entry};

const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("tune").await?;
    let source = tempfile::tempdir()?;
    let small = source.path().join("small");
    std::fs::create_dir_all(&small)?;
    for index in 0..2000u32 {
        std::fs::write(
            small.join(format!("{index:05}.bin")),
            index.to_le_bytes().repeat(1024),
        )?;
    }
    let large = source.path().join("large");
    std::fs::create_dir_all(&large)?;
    for index in 0..2u8 {
        std::fs::write(
            large.join(format!("{index}.bin")),
            vec![index; 256 * 1024 * 1024],
        )?;
    }
    let seed = Config {
        concurrency: 64,
        ..Config::default()
    };
    plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new("tune", "small", &small),
        &seed,
        &None,
    )
    .await?;
    plx_transfer::upload(
        &server.client,
        &plx_transfer::Upload::new("tune", "large", &large),
        &seed,
        &None,
    )
    .await?;
    println!(
        "server: {:?}; {} rounds each, median wall time",
        server.backend, ROUNDS
    );

    println!("\nW-small: 2000 objects x 4 KiB");
    println!("| requests in flight (cap) | median | objects/s |");
    println!("|---|---|---|");
    for requests in [4, 8, 16, 32, 64, 128] {
        let config = Config {
            requests,
            ..Config::default()
        };
        let median = measure(&server, "small", &config).await?;
        println!(
            "| {requests} | {:.2} s | {:.0} |",
            median.as_secs_f64(),
            2000.0 / median.as_secs_f64()
        );
    }

    println!("\nW-large: 2 objects x 256 MiB");
    println!("| part size | parts in flight | median | MiB/s |");
    println!("|---|---|---|---|");
    for (part_mib, parts) in [(4u64, 8usize), (8, 4), (8, 8), (8, 16), (16, 8), (32, 4)] {
        let config = Config {
            part_size: part_mib * 1024 * 1024,
            part_concurrency: parts,
            ..Config::default()
        };
        let median = measure(&server, "large", &config).await?;
        println!(
            "| {part_mib} MiB | {parts} | {:.2} s | {:.0} |",
            median.as_secs_f64(),
            512.0 / median.as_secs_f64()
        );
    }
    Ok(())
}

async fn measure(server: &S3Server, prefix: &str, config: &Config) -> anyhow::Result<Duration> {
    let request = Download {
        bucket: "tune".to_owned(),
        prefix: prefix.to_owned(),
        entries: vec![Entry::Dir {
            from: String::new(),
            to: String::new(),
        }],
        ..Download::default()
    };
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let destination = tempfile::tempdir()?;
        let started = Instant::now();
        plx_transfer::download(&server.client, &request, destination.path(), config, &None).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[ROUNDS / 2])
}
