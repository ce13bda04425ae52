//! One transfer's entry in a summary file ([`Record`]): the stable JSON a front end writes of a
//! transfer's outcome, and the benchmark and the tests read back.

use crate::{Error, Summary};

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

impl Record {
    /// The record of a transfer from or to `connection` that ended in `result`; the caller sets
    /// where it landed (`destination`) or went (`target`).
    pub fn new(connection: &str, result: &Result<Summary, Error>) -> Record {
        let (ok, summary, failures) = match result {
            Ok(summary) => (true, summary.clone(), Vec::new()),
            Err(error) => (
                false,
                (*error.summary).clone(),
                error.failures.iter().map(ToString::to_string).collect(),
            ),
        };
        Record {
            version: Record::VERSION,
            connection: connection.to_owned(),
            destination: None,
            target: None,
            ok,
            summary,
            failures,
        }
    }
}
