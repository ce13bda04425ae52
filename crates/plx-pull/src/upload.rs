//! A job's outputs sent to a connection: a local file or directory to a place under the
//! connection's bucket and prefix.

use std::path::Path;

use plx_connections::{Connection, Kind};
use plx_credentials::{Environment, S3Settings};
use plx_transfer::{Config, Events, Record, Summary, Upload};

use crate::Error;

/// What came of one upload.
#[derive(Debug)]
pub struct Sent {
    /// The connection sent to.
    pub connection: String,
    /// Where it went, `s3://bucket/prefix`.
    pub target: String,
    /// The counts, or every file that failed (with the counts of the rest).
    pub result: Result<Summary, plx_transfer::Error>,
}

impl Sent {
    /// The upload's entry in a summary file (`--summary`).
    pub fn record(&self) -> Record {
        Record {
            target: Some(self.target.clone()),
            ..Record::new(&self.connection, &self.result)
        }
    }
}

/// Sends `source` (a file or a directory) to `to` under `connection`'s bucket and prefix, at
/// most `workers` requests in flight (256 by default). The error is the configuration's; what
/// happened to the files is in [`Sent::result`].
pub async fn upload(
    connection: &Connection,
    env: &Environment,
    source: &Path,
    to: &str,
    workers: Option<usize>,
    events: &Events,
) -> Result<Sent, Error> {
    if connection.kind != Kind::S3 {
        return Err(Error::Kind {
            connection: connection.name.clone(),
            kind: connection.kind,
            why: "; plx-init uploads to s3 connections only",
        });
    }
    if !source.exists() {
        return Err(Error::Invalid(format!(
            "{} does not exist",
            source.display()
        )));
    }
    let settings = S3Settings::resolve(connection, env)?;
    let client = plx_credentials::client(&settings).await?;
    let prefix = [settings.prefix.as_str(), to.trim_matches('/')]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let config = Config {
        requests: workers.unwrap_or(Config::default().requests),
        ..Config::default()
    };
    let request = Upload::new(settings.bucket.clone(), prefix, source);
    let result = plx_transfer::upload(&client, &request, &config, events).await;
    Ok(Sent {
        connection: connection.name.clone(),
        target: format!("s3://{}/{}", request.bucket, request.prefix),
        result,
    })
}
