//! Turns a Polyaxon connection plus its environment into a configured `aws_sdk_s3::Client`, and
//! says where every setting came from.
//!
//! The lookup follows Polyaxon (files under the secret's and config map's mount paths, the
//! connection's `env`, the process env, the `POLYAXON_` prefix), trims file values, and adds what
//! Polyaxon lacks: `AWS_SESSION_TOKEN`, a CA bundle, path-style addressing, proxies, web identity.
//! Secret values live in [`Secret`], which never prints itself.

mod client;
mod insecure;
mod lookup;
mod secret;
mod settings;

use std::path::PathBuf;

use plx_connections::{Catalog, Connection, Kind};

pub use crate::{
    client::{CONNECT_TIMEOUT, READ_TIMEOUT, client, sdk_config},
    lookup::{Environment, Found, Lookup, Source},
    secret::Secret,
    settings::{Addressing, AssumeRole, Report, ReportLine, S3Settings, Setting, WebIdentity},
};

/// What can go wrong before a request is made. Messages never hold secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No catalog to find the connection in.
    #[error(
        "no connections catalog: POLYAXON_CONNECTIONS_CATALOG is not set (give a catalog file instead)"
    )]
    NoCatalog,
    /// The catalog does not parse or validate.
    #[error("the connections catalog is invalid: {0}")]
    Catalog(String),
    /// The catalog has no connection of that name.
    #[error("no connection named `{name}` in the catalog; known: {known}")]
    UnknownConnection {
        /// The name asked for.
        name: String,
        /// The names the catalog has.
        known: String,
    },
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

/// The pod's catalog, from `POLYAXON_CONNECTIONS_CATALOG`.
pub fn catalog_from_env(env: &Environment) -> Result<Catalog, Error> {
    let text = env
        .get(plx_connections::CONNECTIONS_CATALOG)
        .ok_or(Error::NoCatalog)?;
    plx_connections::catalog_from_json(text).map_err(|diagnostics| {
        Error::Catalog(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// The connection of that name.
pub fn find<'c>(catalog: &'c Catalog, name: &str) -> Result<&'c Connection, Error> {
    catalog.get(name).ok_or_else(|| Error::UnknownConnection {
        name: name.to_owned(),
        known: catalog
            .all()
            .map(|connection| connection.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
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
    let catalog = catalog_from_env(env)?;
    let settings = S3Settings::resolve(find(&catalog, name)?, env)?;
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
