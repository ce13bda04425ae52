//! The run's own files, kept out of the data tree: which files this engine wrote, from which
//! object version, so a rerun skips them without fetching a byte. Each landed file is also
//! appended to a journal as it lands, so a run killed half-way (SIGKILL, an evicted pod) still
//! tells the next one what it had verified; the journal is folded into the state when a run
//! ends. A large object fetched in ranged parts keeps its own record beside its part file
//! ([`Progress`]), so a rerun resumes from the parts already on disk.
//!
//! The state and its journal live in `.plx-transfer/<name>/` beside the destination (in its
//! parent directory, on the same volume, so they survive a container restart as the data does),
//! not in it: a job that lists its data directory sees only its data. Where the destination is
//! the root of its volume (its parent is another file system, or cannot be written), they live
//! in a hidden `.plx-transfer/` inside it instead, since a state on the container's own file
//! system would not outlive a restart. A state an older version left in the destination itself
//! is read once and removed.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use cap_std::{ambient_authority, fs::Dir};
use serde::{Deserialize, Serialize};

/// The state's file name in its directory.
pub(crate) const STATE_FILE: &str = "state.json";
/// One JSON line per landed file since the state was last saved.
pub(crate) const JOURNAL_FILE: &str = "journal";
/// The directory of states, beside a destination or (at a volume's root) inside it.
pub const STATE_DIR: &str = ".plx-transfer";
/// Where versions before this one kept the state and journal: in the destination itself.
const OLD_STATE_FILE: &str = ".plx-transfer.json";
const OLD_JOURNAL_FILE: &str = ".plx-transfer.journal";

/// The directory a download into `destination` keeps its state in: `.plx-transfer/<name>/`
/// beside the destination when its parent is on the same file system, else `.plx-transfer/`
/// inside it (see the module's text). `destination` must exist.
pub fn state_dir(destination: &Path) -> PathBuf {
    let absolute = std::path::absolute(destination).unwrap_or_else(|_| destination.to_owned());
    let beside = match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => {
            let device = |path: &Path| std::fs::metadata(path).map(|meta| meta.dev()).ok();
            let same = device(parent).is_some() && device(parent) == device(&absolute);
            same.then(|| parent.join(STATE_DIR).join(name))
        }
        _ => None,
    };
    beside.unwrap_or_else(|| absolute.join(STATE_DIR))
}

/// The state directory for `destination` (its `dir`), created and opened: `chosen` where the
/// request names one, else beside the destination, where a parent that cannot be written falls
/// back to inside the destination. None when none can be had: a rerun then fetches again,
/// nothing worse.
pub(crate) fn open_state_dir(destination: &Path, dir: &Dir, chosen: Option<&Path>) -> Option<Dir> {
    if let Some(chosen) = chosen {
        return std::fs::create_dir_all(chosen)
            .and_then(|()| Dir::open_ambient_dir(chosen, ambient_authority()))
            .inspect_err(|error| tracing::debug!("state at {}: {error}", chosen.display()))
            .ok();
    }
    let beside = state_dir(destination);
    let opened = std::fs::create_dir_all(&beside)
        .and_then(|()| Dir::open_ambient_dir(&beside, ambient_authority()));
    match opened {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::debug!(
                "state beside the destination at {}: {error}",
                beside.display()
            );
            dir.create_dir_all(STATE_DIR).ok()?;
            dir.open_dir(STATE_DIR).ok()
        }
    }
}

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
    /// The stamp it was planned with: the listing's ETag (or `lm:<time>`), or a pin's ETag.
    pub(crate) etag: String,
    pub(crate) size: u64,
    /// What its GET said, for a later run's manifest (absent in a state an older version wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) got: Option<Got>,
}

/// What a GET said of the object it delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Got {
    pub(crate) etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checksum: Option<String>,
}

impl State {
    /// The state in `state`, with its journal, and what an older version left in the
    /// destination `dir`.
    pub(crate) fn load(state: Option<&Dir>, dir: &Dir) -> State {
        let mut loaded = State::default();
        let places = [
            Some((dir, OLD_STATE_FILE, OLD_JOURNAL_FILE)),
            state.map(|state| (state, STATE_FILE, JOURNAL_FILE)),
        ];
        for (dir, file, journal) in places.into_iter().flatten() {
            // A missing or damaged state only costs a re-download.
            if let Some(saved) = dir
                .read_to_string(file)
                .ok()
                .and_then(|text| serde_json::from_str::<State>(&text).ok())
            {
                loaded.files.extend(saved.files);
            }
            for text in dir.read_to_string(journal).iter().flat_map(|t| t.lines()) {
                // A line cut short by a kill is skipped: that one file is fetched again.
                if let Ok(line) = serde_json::from_str::<Line>(text) {
                    loaded.files.insert(line.path, line.landed);
                }
            }
        }
        loaded
    }

    /// Writes the state (atomically: a temporary renamed into place, removed when it cannot
    /// be written whole, so a full disk keeps nothing of it) and folds the journal into it;
    /// what an older version left in the destination `dir` goes.
    pub(crate) fn save(&self, state: &Dir, dir: &Dir) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        replace(state, Path::new(STATE_FILE), &bytes)?;
        // Folded into the state now.
        for (dir, file) in [
            (state, JOURNAL_FILE),
            (dir, OLD_JOURNAL_FILE),
            (dir, OLD_STATE_FILE),
        ] {
            match dir.remove_file(file) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The journal, open for appending for one run.
pub(crate) struct Journal(Mutex<Option<cap_std::fs::File>>);

impl Journal {
    pub(crate) fn open(state: Option<&Dir>) -> Journal {
        let mut options = cap_std::fs::OpenOptions::new();
        options.append(true).create(true);
        // Without a journal a kill costs a re-download, nothing worse.
        Journal(Mutex::new(
            state.and_then(|state| state.open_with(JOURNAL_FILE, &options).ok()),
        ))
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
        replace(dir, path, &serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The temporary [`replace`] writes `path` through.
pub(crate) fn temporary_of(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push("-tmp");
    PathBuf::from(temporary)
}

/// Replaces `path` in `dir` with `bytes` atomically: a temporary beside it (`<path>-tmp`),
/// synced, renamed into place; removed when it cannot be written whole, so a full disk keeps
/// nothing of it.
fn replace(dir: &Dir, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_of(path);
    let written = dir.create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = dir.remove_file(&temporary);
        return Err(error);
    }
    dir.rename(&temporary, dir, path)
}
