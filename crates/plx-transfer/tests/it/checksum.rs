//! The CRCs a store keeps: uploads send them, and a download checks a large object against
//! them (combined from the parts it fetched) rather than against the ETag's MD5.

use aws_sdk_s3::types::ChecksumMode;
use plx_testkit::{Moto, S3Server, bytes};
use plx_transfer::{Config, Download, Entry, ErrorKind};

const BUCKET: &str = "datasets";

/// 20 MiB: ranged in 8 MiB parts by the default configuration.
const LARGE: usize = 20 * 1024 * 1024;

fn whole() -> Download {
    Download {
        bucket: BUCKET.to_owned(),
        prefix: "v1".to_owned(),
        entries: vec![Entry::Dir {
            from: String::new(),
            to: String::new(),
        }],
        ..Download::default()
    }
}

/// Pulls the whole prefix with the default configuration.
async fn pull(
    client: &aws_sdk_s3::Client,
    destination: &std::path::Path,
) -> Result<plx_transfer::Summary, plx_transfer::Error> {
    plx_transfer::download(client, &whole(), destination, &Config::default(), &None).await
}

fn crc32c(data: &[u8]) -> String {
    let value = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
    aws_smithy_types::base64::encode(value.to_be_bytes())
}

/// One PUT of the whole object with its CRC32C: a full-object checksum.
async fn put_with_crc(client: &aws_sdk_s3::Client, key: &str, data: &[u8]) -> anyhow::Result<()> {
    client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .checksum_crc32_c(crc32c(data))
        .body(data.to_vec().into())
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(error)))?;
    Ok(())
}

#[tokio::test]
async fn a_large_object_is_checked_against_its_whole_object_crc() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let data = bytes(7, LARGE);
    put_with_crc(&server.client, "v1/large.bin", &data).await?;
    let destination = tempfile::tempdir()?;
    let summary = pull(&server.client, destination.path()).await?;
    assert_eq!(
        (summary.objects, summary.crc_checked, summary.unverified),
        (1, 1, 0),
        "{summary:?}"
    );
    assert!(std::fs::read(destination.path().join("large.bin"))? == data);
    Ok(())
}

#[tokio::test]
async fn multipart_uploads_keep_a_crc32c_that_the_download_checks() -> anyhow::Result<()> {
    // moto keeps a multipart upload's part checksums; s3s-fs drops them. (moto needs the
    // `crc32c` package for a real CRC32C; without it, it quietly computes a CRC32 instead.)
    let moto = Moto::start().await?;
    let client = plx_testkit::s3::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    plx_testkit::s3::create_bucket(&client, BUCKET).await?;
    let source = tempfile::tempdir()?;
    let data = bytes(8, LARGE);
    std::fs::write(source.path().join("large.bin"), &data)?;
    std::fs::write(source.path().join("small.txt"), "small\n")?;
    // 5 MiB parts: the download's 8 MiB parts cut the object another way.
    let config = Config {
        part_size: 5 * 1024 * 1024,
        ..Config::default()
    };
    plx_transfer::upload(
        &client,
        &plx_transfer::Upload::new(BUCKET, "v1", source.path()),
        &config,
        &None,
    )
    .await?;
    for key in ["v1/large.bin", "v1/small.txt"] {
        let head = client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await?;
        assert!(
            head.checksum_crc32_c().is_some(),
            "{key} was uploaded with its CRC32C: {head:?}"
        );
    }
    let destination = tempfile::tempdir()?;
    let summary = pull(&client, destination.path()).await?;
    assert_eq!(
        (summary.objects, summary.crc_checked, summary.unverified),
        (2, 2, 0),
        "{summary:?}"
    );
    assert!(std::fs::read(destination.path().join("large.bin"))? == data);
    Ok(())
}

#[tokio::test]
async fn bytes_that_do_not_match_the_stored_crc_never_land() -> anyhow::Result<()> {
    // This test edits s3s-fs's files behind the server, so it uses s3s-fs whatever PLX_TEST_S3 says.
    let server = S3Server::start_backend(plx_testkit::Backend::S3s).await?;
    server.create_bucket(BUCKET).await?;
    put_with_crc(&server.client, "v1/large.bin", &bytes(9, LARGE)).await?;
    // Same size, other bytes: s3s-fs keeps the recorded CRC and MD5 in its own metadata.
    let replacement = tempfile::NamedTempFile::new()?;
    std::fs::write(replacement.path(), bytes(10, LARGE))?;
    std::fs::set_permissions(
        replacement.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let copied = std::process::Command::new("docker")
        .arg("cp")
        .arg(replacement.path())
        .arg(format!(
            "{}:/data/{BUCKET}/v1/large.bin",
            server.container_id()
        ))
        .output()?;
    assert!(copied.status.success(), "{copied:?}");
    let destination = tempfile::tempdir()?;
    let config = Config {
        attempts: 2,
        backoff: std::time::Duration::from_millis(10),
        ..Config::default()
    };
    let error =
        plx_transfer::download(&server.client, &whole(), destination.path(), &config, &None)
            .await
            .expect_err("corruption is caught");
    assert_eq!(error.failures.len(), 1, "{error}");
    assert_eq!(error.failures[0].kind, ErrorKind::Corrupt, "{error}");
    let left: Vec<_> = std::fs::read_dir(destination.path())?
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| !name.to_string_lossy().starts_with(".plx-transfer"))
        .collect();
    assert!(
        left.is_empty(),
        "nothing lands, no temporary stays: {left:?}"
    );
    Ok(())
}
