//! Test data and the trees it lands in.

use std::{collections::BTreeMap, path::Path};

/// `size` bytes of a repeatable pseudo-random sequence (xorshift from `seed`): distinct objects
/// with distinct checksums, the same on every run.
pub fn bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every file under `root`, hidden ones too, with its bytes, by relative path.
pub fn all_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root, |_| true)
}

/// The visible files under `root` (not hidden names: the engine's state, journal and
/// temporaries) with their bytes, by relative path.
pub fn visible_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root, |name| !name.starts_with('.'))
}

/// What a run landed under `root`: every file, hidden ones too (so a leftover temporary shows),
/// but the engine's own state (`.plx-transfer.json`, its journal), by relative path.
pub fn landed_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root, |name| !name.starts_with(".plx-transfer"))
}

fn tree(root: &Path, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !keep(&entry.file_name().to_string_lossy()) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                files.insert(relative.display().to_string(), bytes);
            }
        }
    }
    files
}

/// A small tmpfs mounted on a fresh directory, for a destination that runs out of room: a real
/// file system that answers ENOSPC. Needs root (as `cargo xtask test` runs in CI); unmounted on
/// drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `kib` KiB.
    pub fn mount(kib: u64) -> anyhow::Result<Tmpfs> {
        let dir = tempfile::tempdir()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "plx-test"])
            .arg(dir.path())
            .status()?;
        if !status.success() {
            anyhow::bail!(
                "cannot mount a tmpfs on {} ({status}): the out-of-room tests need root",
                dir.path().display()
            );
        }
        Ok(Tmpfs { dir })
    }

    /// Its root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free on it, as `df` says.
    pub fn free(&self) -> anyhow::Result<u64> {
        let output = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.dir.path())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("df said {text:?}"))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
