//! Moves data between S3 and a local directory: parallel over objects and over the parts of large
//! objects, verified against sizes and checksums, landed atomically, resumable, and never writing
//! outside the destination whatever the keys say.
//!
//! Why not awslabs' `aws-s3-transfer-manager` (0.3, read at its `download_objects` worker): it
//! writes each object straight to its final name (`File::create`, so an interrupted run leaves a
//! partial file that looks complete), guards keys lexically (`path_clean` then `starts_with`, so
//! a symlink planted in the destination is followed), collapses `a////b` into `a/b`, checks no
//! ETag, and keeps no state to skip or resume on a rerun. Its useful parts, ranged GETs and
//! parallel part uploads, are a few dozen lines on `aws-sdk-s3`, so this engine owns them and
//! keeps every guarantee in one place.

mod cache;
mod copy;
mod download;
mod explain;
mod fetch;
mod flow;
mod hedge;
mod landing;
mod path;
mod plan;
mod retry;
mod select;
mod space;
mod state;
mod upload;
mod verify;

use std::time::Duration;

pub use crate::{
    cache::{NodeCache, store_of},
    copy::{Copy, copy},
    download::{Download, Entry, download},
    explain::{About, Explained, explain},
    flow::Step,
    path::{KeyError, local_path},
    state::{STATE_DIR, state_dir},
    upload::upload,
};

/// The knobs; the defaults are sized for a small pod (two cores) talking to a nearby store.
#[derive(Debug, Clone)]
pub struct Config {
    /// Downloads and uploads: the most requests in flight. A transfer finds how many it needs
    /// below this and the memory bound from what it measures (it starts at 32 and climbs while
    /// more pays; a 503 SlowDown halves it), so a far store gets more and a near one a few
    /// dozen without a flag.
    pub requests: usize,
    /// Downloads and uploads: the memory the requests in flight may hold, each counted by what
    /// its body makes it hold ([`request_memory`]); it caps the requests in flight below
    /// `requests` when their bodies are large, not when they are small (4 KiB objects 50 ms
    /// away need hundreds in flight, and hold little).
    pub memory: u64,
    /// Copies: objects in flight at once. Downloads: large objects (fetched in parts) in flight
    /// at once.
    pub concurrency: usize,
    /// Objects at least this large are fetched (and sent) in parts.
    pub multipart_threshold: u64,
    /// The size of one part.
    pub part_size: u64,
    /// Parts in flight at once, per object.
    pub part_concurrency: usize,
    /// Attempts per object (or part) for transient failures.
    pub attempts: u32,
    /// The first retry's delay; each later one doubles, with jitter.
    pub backoff: Duration,
    /// Downloads: check each object's bytes against its ETag (its MD5, or the MD5 of its parts'
    /// MD5s). Off, only sizes are checked: hashing costs about 1.6 CPU-seconds per GiB here,
    /// more than the rest of a download (docs/benchmarks.md).
    pub verify: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // s5cmd's: enough for a store 50 ms away, and within 1,024 open files.
            requests: 256,
            // With the base, under 64 MiB: 99 requests of bodies of 64 KiB or more in flight,
            // 256 of small ones (W4, the mixed pull, peaked at 34 to 39 MiB).
            memory: 28 * 1024 * 1024,
            concurrency: 32,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: 8,
            attempts: 4,
            backoff: Duration::from_millis(200),
            verify: true,
        }
    }
}

/// What any request in flight is counted to hold, whatever its body: the SDK's request state,
/// its connection's buffers at rest, and a file being written. Measured: 4 KiB objects cost
/// about 0.1 MiB each in flight (W1 at 190 in flight peaked at 42 to 46 MiB, the base about 25).
pub const REQUEST_BASE: u64 = 96 * 1024;
/// The most a body adds to its request: its connection's read buffer, which grows while a body
/// arrives faster than it is written, and the chunks cut from it until they are written. With
/// plx-credentials' HTTP client, whose read buffer stops at 64 KiB (`READ_BUFFER`), that is at
/// most about three times 64 KiB. Measured: 1,000 objects of 256 KiB, up to 256 in flight,
/// peaked at 30 to 35 MiB (W2). With hyper's default buffer (about 400 KiB, as the SDK's own
/// client has) a body of 256 KiB held about 0.7 MiB: a client built without plx-credentials
/// may hold up to four times this per request.
pub const REQUEST_BODY: u64 = 192 * 1024;

/// What a request for `size` bytes of body (a whole object, or one part) is counted to hold.
pub fn request_memory(size: u64) -> u64 {
    REQUEST_BASE + size.saturating_mul(3).min(REQUEST_BODY)
}

impl Config {
    /// Downloads: the most requests in flight, by `requests` and by `memory` at its smallest
    /// request ([`REQUEST_BASE`]); within it, `memory` is taken by each request's size
    /// ([`request_memory`]).
    pub fn request_cap(&self) -> usize {
        self.requests
            .min((self.memory / REQUEST_BASE).max(1) as usize)
            .max(1)
    }

    /// Open files and sockets this configuration may hold at once. A download: per request in
    /// flight a file, its directory and a connection, and a connection more for each hedge (at
    /// most one request in 16 at once, in practice one in twenty over a run). An upload or copy:
    /// per object in flight a file, its directory and a connection, and for a large one a
    /// connection per part in flight. Plus the listings running ahead, the directories kept
    /// open between files, and some slack for the runtime and the state.
    pub fn open_files(&self) -> u64 {
        self.descriptors(false)
    }

    /// [`Config::open_files`], and with a node cache one more per request: the lock of the
    /// cache entry its object waits for or fills.
    fn descriptors(&self, cache: bool) -> u64 {
        let per_request = 3 + u64::from(cache);
        let requests = self.requests as u64 * per_request + (self.requests as u64).div_ceil(16);
        let objects = self.concurrency as u64 * (3 + self.part_concurrency as u64);
        requests.max(objects) + plan::PLANNERS as u64 + path::OPEN_DIRS as u64 + 16
    }

    /// This configuration with fewer requests, objects (and, if need be, parts) in flight, so
    /// that it fits under `limit` open files.
    pub fn within(self, limit: u64) -> Config {
        self.fit(limit, false)
    }

    fn fit(mut self, limit: u64, cache: bool) -> Config {
        while self.descriptors(cache) > limit
            && (self.requests > 1 || self.concurrency > 1 || self.part_concurrency > 1)
        {
            let requests = self.requests as u64 * (3 + u64::from(cache));
            let objects = self.concurrency as u64 * (3 + self.part_concurrency as u64);
            if requests >= objects && self.requests > 1 {
                self.requests -= 1;
            } else if self.concurrency > 1 {
                self.concurrency -= 1;
            } else if self.part_concurrency > 1 {
                self.part_concurrency -= 1;
            } else {
                self.requests -= 1;
            }
        }
        self
    }
}

/// This process's soft limit on open files (`RLIMIT_NOFILE`), as `/proc/self/limits` says; None
/// where it is unlimited or unknown.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `config`, or a smaller one under the process's open-file limit, said in a warning: running out
/// of file descriptors half-way would fail objects for no fault of theirs. `cache`: a download
/// with a node cache, which holds a lock file per request too.
pub(crate) fn fitted(config: &Config, cache: bool) -> std::borrow::Cow<'_, Config> {
    match open_file_limit() {
        Some(limit) if config.descriptors(cache) > limit => {
            let fitted = config.clone().fit(limit, cache);
            tracing::warn!(
                limit,
                "the open-file limit (RLIMIT_NOFILE) is {limit}: at most {} requests, {} objects and {} parts in flight instead of {}, {} and {}",
                fitted.requests,
                fitted.concurrency,
                fitted.part_concurrency,
                config.requests,
                config.concurrency,
                config.part_concurrency
            );
            std::borrow::Cow::Owned(fitted)
        }
        _ => std::borrow::Cow::Borrowed(config),
    }
}

/// What happens, as it happens, for progress bars and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An object started.
    Started {
        /// Its key.
        key: String,
        /// Its size.
        size: u64,
    },
    /// Bytes arrived (or left).
    Bytes(u64),
    /// One part of a large object is on disk (and recorded, so a rerun will not fetch it again).
    PartDone {
        /// The object's key.
        key: String,
        /// The part's first byte.
        start: u64,
    },
    /// An object is complete and verified.
    Done {
        /// Its key.
        key: String,
    },
    /// An object was already present and verified; nothing was fetched.
    Skipped {
        /// Its key.
        key: String,
    },
    /// A transient failure; the object (or part) is tried again.
    Retry {
        /// Its key.
        key: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        cause: String,
    },
}

/// Where events go; `None` to ignore them.
pub type Events = Option<tokio::sync::mpsc::UnboundedSender<Event>>;

pub(crate) fn emit(events: &Events, event: Event) {
    if let Some(sender) = events {
        let _ = sender.send(event);
    }
}

/// The outcome of a transfer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Objects transferred.
    pub objects: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Objects already present and skipped.
    pub skipped: u64,
    /// Retries made.
    pub retried: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Objects whose checksum could not be checked (size checked only).
    pub unverified: u64,
    /// Objects checked against the CRC the store keeps (`x-amz-checksum-*`) rather than the
    /// ETag's MD5: the cheaper check, where the store offers it.
    pub crc_checked: u64,
    /// Downloads: requests whose response was late and that were raced by a second one.
    #[serde(default)]
    pub hedged: u64,
    /// Of those, the races the second request won.
    #[serde(default)]
    pub hedges_won: u64,
    /// Downloads with a node cache: the objects (and their bytes) that came from it, checked,
    /// instead of from the store; they are counted in `objects` and `bytes` too.
    #[serde(default)]
    pub from_cache: FromCache,
    /// Downloads asked for a manifest ([`Download::manifest`]): every object the download
    /// gives, fetched or skipped, as it landed. Not in the summary record.
    #[serde(skip)]
    pub landed: Vec<Pinned>,
    /// Downloads and uploads: the in-flight controller's steps (when, its limit, requests in
    /// flight).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Wall time (in seconds when serialised).
    #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64())
}

fn from_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = <f64 as serde::Deserialize>::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
}

/// What a node cache served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FromCache {
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One object as a download gave it: what a manifest records, and what a pinned download
/// ([`Entry::Pinned`]) fetches again, exactly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pinned {
    /// The object's key in its bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The ETag its GET answered with (no quotes); empty where the store gave none.
    pub etag: String,
    /// The version it was, where the bucket keeps versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The CRC the store keeps and the bytes were checked against, `crc32c:<base64>` (a
    /// composite one over parts ends in `-<parts>`); absent where the ETag was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Where it landed, relative to the destination.
    pub path: String,
}

/// One connection's entry in `plx-init artifacts|upload --summary FILE`, which holds a JSON list
/// of them; the benchmark and the tests read it back with this type. Its keys are stable: keys
/// may be added, none renamed or removed (a change that must break them bumps `version`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The record's format: 1.
    #[serde(default = "first_version")]
    pub version: u32,
    /// The connection's name.
    pub connection: String,
    /// A pull: the local directory it landed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// An upload: where it went, `s3://bucket/prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Everything asked for landed (or went).
    pub ok: bool,
    /// The counts.
    pub summary: Summary,
    /// Each failed object, with its cause.
    #[serde(default)]
    pub failures: Vec<String>,
}

fn first_version() -> u32 {
    Record::VERSION
}

impl Record {
    /// The format written today.
    pub const VERSION: u32 = 1;
}

impl Summary {
    /// Ends a transfer: its time, and an error naming every failure when there was one.
    pub(crate) fn finish(
        mut self,
        failures: Vec<ObjectError>,
        started: std::time::Instant,
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

    /// Bytes per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.bytes as f64 / seconds
        } else {
            0.0
        }
    }
}

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

/// An [`ObjectError`] for `key`.
pub(crate) fn object(kind: ErrorKind, key: &str, message: String) -> ObjectError {
    ObjectError {
        kind,
        key: key.to_owned(),
        message,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_cache_counts_a_lock_per_request() {
        let config = Config::default();
        // 256 requests: 3 descriptors each, plus hedges, listings and directories kept open.
        assert_eq!(config.descriptors(false), 256 * 3 + 16 + 8 + 16 + 16);
        assert_eq!(config.descriptors(true), config.descriptors(false) + 256);
        // Under a soft limit of 1,024 a plain pull keeps its 256 requests; one with a cache
        // keeps fewer, since each waits for or fills its entry under a lock of its own.
        assert_eq!(config.clone().fit(1024, false).requests, 256);
        let cached = config.fit(1024, true);
        assert!(cached.requests < 256 && cached.descriptors(true) <= 1024);
    }
}
