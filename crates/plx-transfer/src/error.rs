//! How a transfer fails: each object's failure ([`ObjectError`], with an [`ErrorKind`] callers
//! branch on) and the transfer's ([`Error`]), which keeps what did complete.

use std::time::Instant;

use crate::Summary;

/// What kind of failure, for callers that branch (exit codes, retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object or prefix does not exist.
    NotFound,
    /// Access denied.
    Denied,
    /// The data does not match its size or checksum.
    Corrupt,
    /// A key that would leave the destination.
    HostileKey,
    /// The local file system.
    Io,
    /// The network or the server, after all retries.
    Transport,
    /// The destination has no room for what is to be fetched (found before writing it, or the
    /// disk filled up anyway).
    NoSpace,
    /// A pinned object is no longer what its manifest recorded.
    Changed,
}

/// One failure, naming the object and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ObjectError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The key (or prefix).
    pub key: String,
    /// The cause.
    pub message: String,
}

impl ObjectError {
    /// A failure of `key` (or prefix, or local path), of `kind`, for `message`.
    pub fn new(kind: ErrorKind, key: &str, message: String) -> ObjectError {
        ObjectError {
            kind,
            key: key.to_owned(),
            message,
        }
    }
}
/// A transfer that did not complete: every failed object, and what did complete.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} failed: {}", plural(.failures.len()), .failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Error {
    /// Each failure.
    pub failures: Vec<ObjectError>,
    /// What was done before and besides them (boxed: the summary carries the controller's
    /// steps, and an error stays small).
    pub summary: Box<Summary>,
}

fn plural(count: usize) -> String {
    if count == 1 {
        "1 object".to_owned()
    } else {
        format!("{count} objects")
    }
}

impl Error {
    /// The kind of the first failure.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.failures.first().map(|failure| failure.kind)
    }
}

// Here rather than beside `Summary`: the error is built on the summary, not the other way round.
impl Summary {
    /// Ends a transfer: its time, and an error naming every failure when there was one.
    pub(crate) fn finish(
        mut self,
        failures: Vec<ObjectError>,
        started: Instant,
    ) -> Result<Summary, Error> {
        self.failed = failures.len() as u64;
        self.elapsed = started.elapsed();
        if failures.is_empty() {
            Ok(self)
        } else {
            Err(Error {
                failures,
                summary: Box::new(self),
            })
        }
    }
}
