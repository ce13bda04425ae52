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
