//! Landing: every file is written under a hidden temporary name in its final directory and
//! renamed only when verified, so nothing half-written ever carries a final name; a killed
//! run's temporaries are swept by the next. The syncs that make a file durable wait for the
//! disk, so they run off the runtime's workers ([`synced`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use cap_std::fs::Dir;

use crate::{ErrorKind, retry::Failure};

/// Runs `work`, file-system calls that wait for the disk (a sync), on tokio's blocking threads
/// rather than on a runtime worker. In the pod plx-init has one worker (the container's one CPU;
/// `docs/tuning.md`), and a sync on it would stop every transfer until the disk answered. On a
/// real volume a sync takes from a fraction of a millisecond to several: over 10,000 small
/// files, seconds. A blocking thread cannot be stopped: a download dropped half-way (a task
/// aborted, not a process killed) leaves such work to end there, so a part's record may still be
/// written just after the drop.
pub(crate) async fn synced<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|joined| Err(std::io::Error::other(joined)))
}

/// Syncs `file` to the disk (off the workers) and gives its length: what has landed. On tmpfs
/// (an `emptyDir` with `medium: Memory`; the benchmark's landing) a sync returns at once, and
/// the hand-off to a blocking thread would cost more than it (`docs/tuning.md`, "Figures behind
/// the code"). There it stays on the worker.
pub(crate) async fn durable_length(file: &Arc<std::fs::File>) -> std::io::Result<u64> {
    let sync = |file: &std::fs::File| {
        file.sync_all()?;
        Ok(file.metadata()?.len())
    };
    if in_memory(file) {
        return sync(file);
    }
    let file = file.clone();
    synced(move || sync(&file)).await
}

/// Whether `file` is on a file system kept in memory (tmpfs, ramfs), where a sync never waits.
fn in_memory(file: &std::fs::File) -> bool {
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6;
    #[allow(
        clippy::unnecessary_cast,
        reason = "`f_type` is as wide as the architecture makes it: the cast is needed on some"
    )]
    rustix::fs::fstatfs(file).is_ok_and(|fs| matches!(fs.f_type as i64, TMPFS | RAMFS))
}

/// A fresh hidden name beside `name` for its bytes until they are checked:
/// `.name.<nonce>.plx-part`, the form [`sweep`] removes when a killed run left one.
pub(crate) fn part_name(name: &str) -> PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    PathBuf::from(format!(".{name}.{nonce:x}.plx-part"))
}

/// A large object's resumable part file and its record of the parts on disk, beside `name`:
/// fixed names (no nonce), so that a rerun finds them.
pub(crate) fn resumable_names(name: &str) -> (PathBuf, PathBuf) {
    (
        PathBuf::from(format!(".{name}.plx-part")),
        PathBuf::from(format!(".{name}.plx-parts")),
    )
}

/// Removes a large object's resumable part file, its record and the record's temporary: to give
/// the disk back when it filled up, or parts of a version that changed. The part file goes
/// first: a part's record written after this, by a save that outlived its download, sees its
/// part file unlinked and removes itself (`Fetcher::fetch_parts`).
pub(crate) fn remove_resumable(dir: &Dir, name: &str) {
    let (part, record) = resumable_names(name);
    let _ = dir.remove_file(part);
    let _ = dir.remove_file(crate::state::temporary_of(&record));
    let _ = dir.remove_file(record);
}

/// Removes the temporaries a killed run left beside this run's files (`.name.<nonce>.plx-part`;
/// a large object's resumable `.name.plx-part` has no nonce and stays). Every fetch of this run
/// has ended, so none of them is being written.
pub(crate) fn sweep<'a>(dir: &Dir, files: impl Iterator<Item = &'a Path>) {
    let mut names: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(name) = path.file_name() {
            names
                .entry(parent)
                .or_default()
                .insert(name.to_string_lossy().into_owned());
        }
    }
    for (parent, files) in names {
        let listing = if parent.as_os_str().is_empty() {
            dir.entries()
        } else {
            dir.read_dir(&parent)
        };
        for entry in listing.into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(".plx-part"))
                .and_then(|rest| rest.rsplit_once('.'))
                .is_some_and(|(file, nonce)| {
                    files.contains(file)
                        && nonce.len() >= 12
                        && nonce.chars().all(|c| c.is_ascii_hexdigit())
                });
            if stale {
                let _ = dir.remove_file(parent.join(&name));
            }
        }
    }
}

/// Opens a part file through the sandbox, with the guard that removes it when `armed`.
/// A fresh hidden temporary for the file `name` in `dir` (never one a run left), removed unless
/// it lands: its path, the file, and the guard that removes it.
pub(crate) fn fresh_part(
    dir: &Arc<Dir>,
    name: &str,
) -> Result<(PathBuf, Arc<std::fs::File>, Temporary), Failure> {
    let path = part_name(name);
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).read(true).create_new(true);
    let (file, guard) = open_part(dir, &path, &options, true)?;
    Ok((path, Arc::new(file.into_std()), guard))
}

pub(crate) fn open_part(
    dir: &Arc<Dir>,
    path: &Path,
    options: &cap_std::fs::OpenOptions,
    armed: bool,
) -> Result<(cap_std::fs::File, Temporary), Failure> {
    let file = dir.open_with(path, options).map_err(|error| {
        // A full disk (no inode left) is no room; anything else here is the sandbox refusing.
        let kind = match crate::retry::io_kind(&error) {
            ErrorKind::NoSpace => ErrorKind::NoSpace,
            _ => ErrorKind::HostileKey,
        };
        Failure::permanent(
            kind,
            format!("cannot create a file at {}: {error}", path.display()),
        )
    })?;
    Ok((
        file,
        Temporary {
            dir: dir.clone(),
            path: path.to_path_buf(),
            armed,
        },
    ))
}

/// Removes the temporary file unless the download completed.
pub(crate) struct Temporary {
    dir: Arc<Dir>,
    path: PathBuf,
    pub(crate) armed: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.dir.remove_file(&self.path);
        }
    }
}
