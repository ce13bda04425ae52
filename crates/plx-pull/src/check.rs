//! A connection tested for real, to say why it fails: an s3 connection with HeadBucket and one
//! listing, a host_path or volume_claim connection by reading its mount.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use plx_connections::{Connection, Kind};
use plx_credentials::{Environment, S3Settings};

use crate::Error;

/// Tests `connection`, each request given `timeout`. What is checked (where each setting came
/// from, or what is mounted where) goes to `show` as soon as it is known, before any request;
/// the verdict is `Ok` with a line that says what was found, or `Err` with one that says why
/// the connection fails. The error is a connection that cannot be checked at all.
pub async fn check(
    connection: &Connection,
    env: &Environment,
    timeout: Duration,
    show: impl FnOnce(&str),
) -> Result<Result<String, String>, Error> {
    match connection.kind {
        Kind::S3 => {}
        kind if kind.is_mount() => return Ok(mount(connection, show)),
        other => {
            return Err(Error::Invalid(format!(
                "plx-init checks s3, host_path and volume_claim connections; `{}` is of kind {other}",
                connection.name
            )));
        }
    }
    let settings = S3Settings::resolve(connection, env)?;
    show(&settings.report().to_string());
    let client = plx_credentials::client(&settings).await?;
    let seconds = timeout.as_secs();
    let target = format!("s3://{}/{}", settings.bucket, settings.prefix);
    let head = tokio::time::timeout(
        timeout,
        client.head_bucket().bucket(&settings.bucket).send(),
    )
    .await;
    Ok(match head {
        Err(_) => Err(format!(
            "timed out after {} s waiting for {}",
            seconds,
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
                Err(_) => Err(format!("timed out after {} s listing {target}", seconds)),
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
    })
}

/// A mounted connection works when its mount path is a readable directory in this pod.
fn mount(connection: &Connection, show: impl FnOnce(&str)) -> Result<String, String> {
    let Some(path) = connection.store_path() else {
        return Err(format!(
            "connection `{}` has no schema.mountPath",
            connection.name
        ));
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
    show(&format!(
        "connection `{}` ({}): {source} at {path}\n",
        connection.name, connection.kind
    ));
    match std::fs::read_dir(path) {
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
