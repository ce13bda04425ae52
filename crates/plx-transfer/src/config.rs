//! The knobs ([`Config`]) and what they cost: the memory each request in flight is counted to
//! hold, and the open files a configuration needs, fitted under the process's limit.

use std::{borrow::Cow, time::Duration};

use crate::path::OPEN_DIRS;

/// Entries listed at once (each a connection of its own; see [`Config::open_files`]).
pub(crate) const PLANNERS: usize = 8;

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
    /// MD5s). Off, only sizes are checked: hashing costs more CPU than the rest of a download
    /// (`docs/tuning.md`, "Figures behind the code").
    pub verify: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // s5cmd's: enough for a store 50 ms away, and within 1,024 open files.
            requests: 256,
            // With the base, under 64 MiB: 99 requests of bodies of 64 KiB or more in flight,
            // 256 of small ones (`docs/tuning.md`, "Figures behind the code").
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
/// its connection's buffers at rest, and a file being written (sized from what small objects in
/// flight were measured to hold: `docs/tuning.md`, "Figures behind the code").
pub const REQUEST_BASE: u64 = 96 * 1024;
/// The most a body adds to its request: its connection's read buffer, which grows while a body
/// arrives faster than it is written, and the chunks cut from it until they are written. With
/// plx-credentials' HTTP client, whose read buffer stops at 64 KiB (`READ_BUFFER`), that is at
/// most about three times 64 KiB. With hyper's default buffer (about 400 KiB, as the SDK's own
/// client has) a body holds more: a client built without plx-credentials may hold up to four
/// times this per request (`docs/tuning.md`, "Figures behind the code").
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
        requests.max(objects) + PLANNERS as u64 + OPEN_DIRS as u64 + 16
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
pub(crate) fn fitted(config: &Config, cache: bool) -> Cow<'_, Config> {
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
            Cow::Owned(fitted)
        }
        _ => Cow::Borrowed(config),
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
