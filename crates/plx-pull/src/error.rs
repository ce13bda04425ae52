//! Why a pull or an upload could not start: the catalog, the connection, its credentials, a
//! manifest or a setting. What goes wrong with the data itself is the engine's
//! [`plx_transfer::Error`], in [`crate::Pulled::result`].

use std::path::PathBuf;

/// Why a pull or an upload could not start; each says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot {what} {}: {cause}", .path.display())]
    File {
        /// What was being done: `read`, `write the manifest`, ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A catalog, an init section or a manifest that does not say what it must; the message
    /// names the file and what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The connection is not in the catalog, or there is no catalog.
    #[error(transparent)]
    Lookup(#[from] plx_connections::LookupError),
    /// The connection's settings or credentials.
    #[error(transparent)]
    Credentials(#[from] plx_credentials::Error),
    /// The connection is of a kind this cannot pull, send or pin.
    #[error("connection `{connection}` is of kind {kind}{why}")]
    Kind {
        /// The connection.
        connection: String,
        /// Its kind.
        kind: plx_connections::Kind,
        /// What can be done instead, with its punctuation.
        why: &'static str,
    },
    /// Nothing names a connection, and the catalog has no artifacts store to fall back on.
    #[error("{0}")]
    NoConnection(&'static str),
    /// A manifest that cannot pin this pull.
    #[error("{0}")]
    Pin(String),
    /// A setting from the environment (`PLX_CACHE_SIZE`, ...).
    #[error("{variable}: {message}")]
    Setting {
        /// The variable.
        variable: &'static str,
        /// What is wrong with its value.
        message: String,
    },
}

impl Error {
    pub(crate) fn file(what: &'static str, path: &std::path::Path, cause: std::io::Error) -> Error {
        Error::File {
            what,
            path: path.to_owned(),
            cause,
        }
    }
}
