//! `plx-init check NAME`: tests a connection for real and says why it fails: an s3 connection
//! with HeadBucket and one listing, a host_path or volume_claim connection by reading its mount.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use plx_connections::{Connection, Kind};
use plx_credentials::{Environment, S3Settings};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The connection's name.
    name: String,
    /// A catalog file (any form); by default the pod's POLYAXON_CONNECTIONS_CATALOG.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Seconds to wait for each request before giving up.
    #[arg(long, default_value_t = 20, value_name = "SECONDS")]
    timeout: u64,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let catalog = crate::catalog::load(args.catalog.as_deref(), &env)?;
    let connection = catalog.find(&args.name)?;
    match connection.kind {
        Kind::S3 => {}
        Kind::HostPath | Kind::VolumeClaim => return Ok(mount(connection)),
        other => anyhow::bail!(
            "plx-init checks s3, host_path and volume_claim connections; `{}` is of kind {other}",
            connection.name
        ),
    }
    let settings = S3Settings::resolve(connection, &env)?;
    print!("{}", settings.report());
    let client = plx_credentials::client(&settings).await?;
    let timeout = Duration::from_secs(args.timeout);
    let target = format!("s3://{}/{}", settings.bucket, settings.prefix);

    let head = tokio::time::timeout(
        timeout,
        client.head_bucket().bucket(&settings.bucket).send(),
    )
    .await;
    let verdict = match head {
        Err(_) => Err(format!(
            "timed out after {} s waiting for {}",
            args.timeout,
            endpoint(&settings)
        )),
        Ok(Err(error)) => Err(explain(&error, &settings)),
        Ok(Ok(_)) => {
            let prefix = if settings.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", settings.prefix)
            };
            let list = client
                .list_objects_v2()
                .bucket(&settings.bucket)
                .prefix(prefix)
                .max_keys(10)
                .send();
            match tokio::time::timeout(timeout, list).await {
                Err(_) => Err(format!(
                    "timed out after {} s listing {target}",
                    args.timeout
                )),
                Ok(Err(error)) => Err(explain(&error, &settings)),
                Ok(Ok(output)) => Ok(match output.key_count() {
                    Some(0) | None => format!("ok: {target} is reachable and empty"),
                    Some(count) if output.is_truncated() == Some(true) => format!(
                        "ok: {target} is reachable and holds objects (listed the first {count})"
                    ),
                    Some(count) => format!("ok: {target} is reachable and holds {count} objects"),
                }),
            }
        }
    };
    match verdict {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(line) => {
            println!("failed: {line}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A mounted connection works when its mount path is a readable directory in this pod.
fn mount(connection: &Connection) -> ExitCode {
    let Some(path) = connection.store_path() else {
        println!(
            "failed: connection `{}` has no schema.mountPath",
            connection.name
        );
        return ExitCode::from(1);
    };
    let source = match connection.schema.as_ref() {
        Some(plx_connections::ConnectionSchema::Claim(schema)) => {
            format!("volume claim `{}`", schema.volume_claim)
        }
        Some(plx_connections::ConnectionSchema::HostPath(schema)) => {
            format!("host path {}", schema.host_path)
        }
        _ => "its volume".to_owned(),
    };
    println!(
        "connection `{}` ({}): {source} at {path}",
        connection.name, connection.kind
    );
    let verdict = match std::fs::read_dir(path) {
        Ok(entries) => {
            // Count a few entries, not the whole volume: it may hold millions.
            let count = entries.take(1000).count();
            match count {
                0 => Ok(format!("ok: {path} is mounted and empty")),
                1000 => Ok(format!(
                    "ok: {path} is mounted and holds 1000 or more entries"
                )),
                count => Ok(format!("ok: {path} is mounted and holds {count} entries")),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "nothing is mounted at {path}: the pod needs {source} mounted there (as Polyaxon mounts it in jobs)"
        )),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "{path} is mounted but this user may not read it: check the volume's permissions"
        )),
        Err(error) => Err(format!("cannot read {path}: {error}")),
    };
    match verdict {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            println!("failed: {line}");
            ExitCode::from(1)
        }
    }
}

fn endpoint(settings: &S3Settings) -> String {
    settings.endpoint_url.as_ref().map_or_else(
        || format!("AWS S3 in {}", settings.region.value),
        |endpoint| endpoint.value.clone(),
    )
}

/// One clear sentence per way a connection fails (plx-transfer's reading, for a bucket).
fn explain<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    settings: &S3Settings,
) -> String {
    let endpoint = endpoint(settings);
    let about = plx_transfer::About::Bucket {
        bucket: &settings.bucket,
        endpoint: &endpoint,
        region: &settings.region.value,
    };
    plx_transfer::explain(error, &about).message
}
