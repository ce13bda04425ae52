//! The aws-s3-transfer-manager peer (awslabs' Rust transfer manager), as its README uses it:
//! `download_objects` per prefix, `download().write_to_file` per key, `upload_objects`.

use aws_sdk_s3_transfer_manager::{
    Client,
    io::walk::FsWalker,
    types::{ConcurrencyMode, PartSize},
};

use crate::peers::Spec;

pub async fn run(spec: &Spec) -> anyhow::Result<()> {
    // The testkit's client: path-style, checksums only where required, as for every peer.
    let s3 = plx_testkit::s3::client_for(
        &spec.endpoint,
        &spec.region,
        &std::env::var("AWS_ACCESS_KEY_ID")?,
        &std::env::var("AWS_SECRET_ACCESS_KEY")?,
    );
    let mut config = aws_sdk_s3_transfer_manager::Config::builder().client(s3);
    if spec.tuned {
        config = config
            .concurrency(ConcurrencyMode::Explicit(
                spec.concurrency * spec.part_concurrency,
            ))
            .part_size(PartSize::Target(spec.part_size))
            .multipart_threshold(PartSize::Target(spec.threshold));
    }
    let client = Client::new(config.build());
    if spec.upload {
        client
            .upload_objects()
            .bucket(&spec.bucket)
            .source(&spec.local)
            .key_prefix(spec.upload_prefix.trim_end_matches('/'))
            .walker(FsWalker::builder().recursive(true).build())
            .initiate()?
            .join()
            .await?;
        return Ok(());
    }
    for prefix in &spec.prefixes {
        std::fs::create_dir_all(spec.local.join(prefix))?;
        client
            .download_objects()
            .bucket(&spec.bucket)
            .key_prefix(prefix)
            .destination(spec.local.join(prefix))
            .initiate()?
            .join()
            .await?;
    }
    let mut handles = Vec::new();
    for key in &spec.keys {
        let path = spec.local.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::File::create(&path)?;
        handles.push(
            client
                .download()
                .bucket(&spec.bucket)
                .key(key)
                .write_to_file(file)?,
        );
    }
    for handle in handles {
        handle.join().await?;
    }
    Ok(())
}
