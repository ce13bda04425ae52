//! Turns a Polyaxon connection plus its environment into a configured `aws_sdk_s3::Client`, and
//! says where every setting came from.
//!
//! The lookup follows Polyaxon (files under the secret's and config map's mount paths, the
//! connection's `env`, the process env, the `POLYAXON_` prefix), trims file values, and adds what
//! Polyaxon lacks: `AWS_SESSION_TOKEN`, a CA bundle, path-style addressing, proxies, web identity.
//! Secret values live in [`Secret`], which never prints itself.

mod client;
mod http;
mod insecure;
mod lookup;
mod secret;
mod settings;

use std::path::PathBuf;

use plx_connections::Kind;

pub use crate::{
    client::{CONNECT_TIMEOUT, READ_TIMEOUT, client, sdk_config},
    http::READ_BUFFER,
    lookup::{Environment, Found, Lookup, Source},
    secret::Secret,
    settings::{Addressing, AssumeRole, Report, ReportLine, S3Settings, Setting, WebIdentity},
};

/// What can go wrong before a request is made. Messages never hold secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No catalog, an invalid one, or no connection of that name in it.
    #[error(transparent)]
    Lookup(#[from] plx_connections::LookupError),
    /// The connection is not an s3 connection.
    #[error("connection `{name}` is of kind {kind}; only s3 connections get an S3 client")]
    NotS3 {
        /// The connection.
        name: String,
        /// Its kind.
        kind: Kind,
    },
    /// A setting has a value that cannot be used.
    #[error("{key} (from {origin}): {message}")]
    InvalidSetting {
        /// The key.
        key: &'static str,
        /// Where it came from.
        origin: String,
        /// What is wrong, without the value when it is a secret.
        message: String,
    },
    /// A file named by a setting cannot be read.
    #[error("cannot read {what} at {}: {error}", path.display())]
    Io {
        /// What the file is for.
        what: String,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The TLS configuration cannot be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// An S3 client for the named connection of the pod's catalog: the Rust counterpart of Polyaxon's
/// `get_fs_from_name`.
pub async fn client_from_name(name: &str) -> Result<aws_sdk_s3::Client, Error> {
    client_from_name_in(name, &Environment::from_process()).await
}

/// [`client_from_name`] with a given environment instead of the process's.
pub async fn client_from_name_in(
    name: &str,
    env: &Environment,
) -> Result<aws_sdk_s3::Client, Error> {
    let catalog = plx_connections::pod_catalog(env.get(plx_connections::CONNECTIONS_CATALOG))?;
    let settings = S3Settings::resolve(catalog.find(name)?, env)?;
    client(&settings).await
}

/// [`client_from_name`] for programs without an async runtime of their own. The client still
/// needs a Tokio runtime to make requests.
pub fn client_from_name_blocking(name: &str) -> Result<aws_sdk_s3::Client, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Error::Io {
            what: "a Tokio runtime".to_owned(),
            path: PathBuf::new(),
            error,
        })?;
    runtime.block_on(client_from_name(name))
}
