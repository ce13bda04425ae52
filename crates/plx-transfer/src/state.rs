//! The sidecar state under the destination: which files this engine wrote, from which object
//! version, so a rerun skips them without fetching a byte. Each landed file is also appended to
//! a journal as it lands, so a run killed half-way (SIGKILL, an evicted pod) still tells the
//! next one what it had verified; the journal is folded into the state when a run ends. A large
//! object fetched in ranged parts keeps its own record beside its part file ([`Progress`]), so a
//! rerun resumes from the parts already on disk.

use std::{collections::BTreeMap, io::Write, path::Path, sync::Mutex};

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

/// The file name, hidden, at the destination's root.
pub(crate) const STATE_FILE: &str = ".plx-transfer.json";
/// One JSON line per landed file since the state was last saved.
pub(crate) const JOURNAL_FILE: &str = ".plx-transfer.journal";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Local relative path → what landed there.
    pub(crate) files: BTreeMap<String, Landed>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    path: String,
    #[serde(flatten)]
    landed: Landed,
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
        let mut state: State = dir
            .read_to_string(STATE_FILE)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for text in dir
            .read_to_string(JOURNAL_FILE)
            .iter()
            .flat_map(|t| t.lines())
        {
            // A line cut short by a kill is skipped: that one file is fetched again.
            if let Ok(line) = serde_json::from_str::<Line>(text) {
                state.files.insert(line.path, line.landed);
            }
        }
        state
    }

    pub(crate) fn save(&self, dir: &Dir) -> std::io::Result<()> {
        let temporary = format!("{STATE_FILE}.tmp");
        let mut file = dir.create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        file.sync_all()?;
        dir.rename(&temporary, dir, STATE_FILE)?;
        // Folded into the state now.
        match dir.remove_file(JOURNAL_FILE) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// The journal, open for appending for one run.
pub(crate) struct Journal(Mutex<Option<cap_std::fs::File>>);

impl Journal {
    pub(crate) fn open(dir: &Dir) -> Journal {
        let mut options = cap_std::fs::OpenOptions::new();
        options.append(true).create(true);
        // Without a journal a kill costs a re-download, nothing worse.
        Journal(Mutex::new(dir.open_with(JOURNAL_FILE, &options).ok()))
    }

    /// Records a file that has landed, verified, under its final name. One `write` of one line
    /// to a file opened for appending: a kill leaves whole lines and at most one cut short.
    pub(crate) fn record(&self, path: &str, landed: &Landed) {
        let line = Line {
            path: path.to_owned(),
            landed: landed.clone(),
        };
        let Ok(mut bytes) = serde_json::to_vec(&line) else {
            return;
        };
        bytes.push(b'\n');
        if let Ok(mut file) = self.0.lock()
            && let Some(file) = file.as_mut()
        {
            let _ = file.write_all(&bytes);
        }
    }
}

/// The parts of a large object already on disk, kept beside its part file so a rerun resumes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Progress {
    pub(crate) stamp: String,
    pub(crate) size: u64,
    pub(crate) part_size: u64,
    pub(crate) etag: Option<String>,
    pub(crate) done: std::collections::BTreeSet<u64>,
}

impl Progress {
    pub(crate) fn load(dir: &Dir, path: &Path) -> Option<Progress> {
        serde_json::from_str(&dir.read_to_string(path).ok()?).ok()
    }

    pub(crate) fn save(&self, dir: &Dir, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("plx-parts-tmp");
        let mut file = dir.create(&temporary)?;
        file.write_all(&serde_json::to_vec(self).unwrap_or_default())?;
        file.sync_all()?;
        dir.rename(&temporary, dir, path)
    }
}
