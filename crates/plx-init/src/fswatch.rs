//! Polyaxon's file-watcher state (`<context>/artifacts/.fs`): what the init container restored,
//! so that the run's sidecar does not upload it again.
//!
//! The file is what Polyaxon 2.18's `sync_file_watcher(path)` writes (`FSWatcher().sync(path)`,
//! then `FSWatcher.write`, `polyaxon/_fs/watcher.py`): two maps, `dir_mapping` and
//! `file_mapping`, from a path relative to `path`'s parent to `[parent, modified, "put"]`, in
//! `os.walk`'s order, a map left out when it has no entry. `modified` is the file's mtime as
//! Python prints `epoch + timedelta(seconds=st_mtime)`. The tests compare it with Polyaxon's own
//! `sync_file_watcher` run on the same tree.

use std::{
    fs::Metadata,
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use serde_json::{Map, Value, json};

/// `polyaxon initializer fswatch --path=...`: the state of a tree restored by other means (the
/// `cp -R` of a mount store).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run's artifacts directory.
    #[arg(long)]
    path: PathBuf,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let written = write(&args.path)?;
    println!("file-watcher state written: `{}`", written.display());
    Ok(ExitCode::SUCCESS)
}

/// Where Polyaxon's sidecar reads the state: `CONTEXT_MOUNT_FILE_WATCHER`.
pub(crate) fn state_file() -> PathBuf {
    let root = std::env::var("POLYAXON_CONTEXT_ROOT")
        .unwrap_or_else(|_| plx_connections::DEFAULT_CONTEXT_ROOT.to_owned());
    Path::new(&root).join("artifacts/.fs")
}

/// Syncs `path` and writes the state where the sidecar reads it, atomically (a temporary beside
/// it, then a rename): a sidecar never reads half a file.
pub(crate) fn write(path: &Path) -> anyhow::Result<PathBuf> {
    let state = sync(path).with_context(|| format!("cannot walk {}", path.display()))?;
    let target = state_file();
    let dir = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = dir.join(format!(".fs.plx-tmp-{}", std::process::id()));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(serde_json::to_string(&state)?.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, &target));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write {}", target.display()));
    }
    Ok(target)
}

/// `FSWatcher().sync(path)` as JSON. A missing `path` is an empty state, as in Polyaxon.
pub(crate) fn sync(path: &Path) -> std::io::Result<Value> {
    let text = path.to_string_lossy();
    // `os.path.split`: the base is everything before the last `/` (a trailing one included).
    let (base, prefix) = match text.rfind('/') {
        Some(0) => ("/".to_owned(), text[1..].to_owned()),
        Some(at) => (text[..at].to_owned(), text[at + 1..].to_owned()),
        None => (String::new(), text.to_string()),
    };
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(path, &mut files, &mut dirs)?;
    let entries = |found: Vec<(PathBuf, Metadata)>| -> Map<String, Value> {
        found
            .into_iter()
            .filter_map(|(found, metadata)| {
                let relative = found.strip_prefix(path).ok()?;
                let key = Path::new(&prefix).join(relative);
                Some((
                    key.to_string_lossy().into_owned(),
                    json!([base, modified(&metadata), "put"]),
                ))
            })
            .collect()
    };
    let mut state = Map::new();
    // The model's field order; `sync` leaves a map unset when nothing was found for it.
    if !dirs.is_empty() {
        state.insert("dir_mapping".to_owned(), Value::Object(entries(dirs)));
    }
    if !files.is_empty() {
        state.insert("file_mapping".to_owned(), Value::Object(entries(files)));
    }
    Ok(Value::Object(state))
}

/// The engine's own files never reach the sidecar's state: they are not the run's outputs.
fn ours(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with(".plx-transfer") || name.ends_with(".plx-part")
}

/// `os.walk(path, topdown=True)` with `collect_dirs`: at each level its files, then its
/// directories, then each directory in turn. Symlinks are listed, never followed.
fn walk(
    dir: &Path,
    files: &mut Vec<(PathBuf, Metadata)>,
    dirs: &mut Vec<(PathBuf, Metadata)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // `os.walk` yields nothing for a path it cannot list.
        Err(_) => return Ok(()),
    };
    let mut below = Vec::new();
    for entry in entries {
        let entry = entry?;
        if ours(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        // `os.walk` sorts a symlink by what it points at, and `path_last_modified` stats it.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            let link = entry.file_type()?.is_symlink();
            dirs.push((path.clone(), metadata));
            if !link {
                below.push(path);
            }
        } else {
            files.push((path, metadata));
        }
    }
    for dir in below {
        walk(&dir, files, dirs)?;
    }
    Ok(())
}

/// The mtime as Python prints `epoch + timedelta(seconds=os.stat(path).st_mtime)`: st_mtime is
/// the double `sec + nsec * 1e-9`, and timedelta rounds it to microseconds, half to even.
fn modified(metadata: &Metadata) -> String {
    let seconds = metadata.mtime() as f64 + metadata.mtime_nsec() as f64 * 1e-9;
    let whole = seconds.floor();
    let mut micros = ((seconds - whole) * 1e6).round_ties_even() as i64;
    let mut whole = whole as i64;
    if micros >= 1_000_000 {
        whole += 1;
        micros -= 1_000_000;
    }
    let Ok(time) = time::OffsetDateTime::from_unix_timestamp(whole) else {
        return String::new();
    };
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    // `datetime.isoformat` leaves the fraction out when it is zero.
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text.push_str("+00:00");
    text
}
