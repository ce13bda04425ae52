//! A Polyaxon job's data in and out of its pod, for every front end (plx-init, the Python
//! package, a Rust program): the connections of a catalog, a job's `init:` entries pulled from
//! them as Polyaxon names them, a job's outputs sent, and the manifest that records a pull and
//! pins it again.
//!
//! The engine ([`plx_transfer`]) moves bytes; this crate decides what to ask of it: which
//! connection an entry names, by its kind a download from S3 or a copy from a mount, keys made
//! relative to the bucket, the node cache scoped to the store, a manifest's pin. A front end
//! keeps its own arguments, progress and exit codes.
//!
//! ```no_run
//! # async fn pull() -> Result<(), plx_pull::Error> {
//! let env = plx_credentials::Environment::from_process();
//! let catalog = plx_pull::catalog::load(None, &env)?;
//! let init = plx_pull::catalog::read_init("polyaxonfile.yaml".as_ref(), &catalog)?;
//! let puller = plx_pull::Puller::new(&catalog, &env);
//! for entry in &init {
//!     let pulled = puller.init(entry, &plx_pull::Options::default(), &None).await?;
//!     println!("{}", serde_json::to_string(&pulled.record()).unwrap_or_default());
//! }
//! # Ok(())
//! # }
//! ```

pub mod catalog;
mod check;
mod error;
pub mod manifest;
mod pull;
mod upload;

pub use crate::{
    check::check,
    error::Error,
    pull::{Cache, Options, Pulled, Puller, path_entry, quantity},
    upload::{Sent, upload},
};
