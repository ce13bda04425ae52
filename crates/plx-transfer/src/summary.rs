//! What a transfer reports when it ends: the counts ([`Summary`]), what the node cache served
//! and the in-flight controller's steps.

use std::time::Duration;

use crate::Pinned;

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

impl Summary {
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

/// One step of the in-flight controller (`flow.rs`), for the summary: when it ended, the limit it ran at, and the
/// requests in flight on average over it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// Seconds since the run started.
    pub at: f64,
    /// The limit during the step.
    pub limit: u32,
    /// Requests in flight, on average over the step.
    pub in_flight: f64,
}
