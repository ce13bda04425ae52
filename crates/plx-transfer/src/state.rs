//! The sidecar state under the destination: which files this engine wrote, from which object
//! version, so a rerun skips them without fetching a byte.

use std::{collections::BTreeMap, io::Write};

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

/// The file name, hidden, at the destination's root.
pub(crate) const STATE_FILE: &str = ".plx-transfer.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Local relative path → what landed there.
    pub(crate) files: BTreeMap<String, Landed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Landed {
    pub(crate) key: String,
    pub(crate) etag: String,
    pub(crate) size: u64,
}

impl State {
    pub(crate) fn load(dir: &Dir) -> State {
        // A missing or damaged state only costs a re-download.
        dir.read_to_string(STATE_FILE)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    pub(crate) fn save(&self, dir: &Dir) -> std::io::Result<()> {
        let temporary = format!("{STATE_FILE}.tmp");
        let mut file = dir.create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        file.sync_all()?;
        dir.rename(&temporary, dir, STATE_FILE)
    }
}
