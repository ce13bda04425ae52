//! The workloads: which objects, what a run asks for, and the bytes, made from a fixed seed so
//! any range of any object can be made again to check it, and random so nothing compresses.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use sha2::{Digest, Sha256};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// What a run asks for: a whole prefix, or one key.
#[derive(Debug, Clone)]
pub enum Entry {
    Prefix(String),
    Key(String),
}

pub struct Workload {
    pub name: &'static str,
    pub about: String,
    /// Uploads from the local copy, not downloads.
    pub upload: bool,
    /// Every object under the workload's prefix, asked for or not.
    pub objects: Vec<Object>,
    pub entries: Vec<Entry>,
}

impl Workload {
    /// The objects a run must bring, by key.
    pub fn wanted(&self) -> BTreeMap<&str, u64> {
        self.objects
            .iter()
            .filter(|object| {
                self.entries.iter().any(|entry| match entry {
                    Entry::Prefix(prefix) => object.key.starts_with(prefix.as_str()),
                    Entry::Key(key) => &object.key == key,
                })
            })
            .map(|object| (object.key.as_str(), object.size))
            .collect()
    }

    pub fn bytes(&self) -> u64 {
        self.wanted().values().sum()
    }

    /// The top-level prefix every key of this workload starts with.
    pub fn prefix(&self) -> String {
        format!("{}/", self.name.to_lowercase())
    }
}

fn many(prefix: &str, count: usize, size: u64, per_dir: usize) -> Vec<Object> {
    (0..count)
        .map(|i| Object {
            key: format!("{prefix}{:03}/{i:05}.bin", i / per_dir),
            size,
        })
        .collect()
}

/// W1 to W6 of the issues; `quick` shrinks them to a smoke test (W1, W3 and a small W5).
pub fn all(quick: bool) -> Vec<Workload> {
    let scale = |full: usize, small: usize| if quick { small } else { full };
    let mut workloads = vec![
        Workload {
            name: "W1",
            about: format!("{} × 4 KiB, one prefix", scale(10_000, 500)),
            upload: false,
            objects: many("w1/", scale(10_000, 500), 4 * KIB, 1000),
            entries: vec![Entry::Prefix("w1/".into())],
        },
        Workload {
            name: "W2",
            about: "1,000 × 256 KiB, one prefix".into(),
            upload: false,
            objects: many("w2/", 1000, 256 * KIB, 100),
            entries: vec![Entry::Prefix("w2/".into())],
        },
        Workload {
            name: "W3",
            about: if quick {
                "2 × 64 MiB".into()
            } else {
                "4 × 1 GiB".into()
            },
            upload: false,
            objects: (0..scale(4, 2))
                .map(|i| Object {
                    key: format!("w3/{i}.bin"),
                    size: if quick { 64 * MIB } else { GIB },
                })
                .collect(),
            entries: vec![Entry::Prefix("w3/".into())],
        },
        w4(),
        w5(quick),
        Workload {
            name: "W6",
            about: "2,000 × 4 KiB, one prefix: a short pull, where reaching the requests in flight a far store needs is most of the time".into(),
            upload: false,
            objects: many("w6/", 2000, 4 * KIB, 500),
            entries: vec![Entry::Prefix("w6/".into())],
        },
    ];
    if quick {
        workloads.retain(|workload| matches!(workload.name, "W1" | "W3" | "W5"));
    }
    workloads
}

/// Mixed, as the engine is used: an explicit list of keys (small and large) beside objects
/// that are not asked for, plus two whole prefixes, one of small files and one of large.
fn w4() -> Workload {
    let mut objects = Vec::new();
    let mut entries = Vec::new();
    for i in 0..500 {
        let key = format!("w4/list/{i:04}.bin");
        entries.push(Entry::Key(key.clone()));
        objects.push(Object {
            key,
            size: 16 * KIB,
        });
    }
    for i in 0..4 {
        let key = format!("w4/list/big{i}.bin");
        entries.push(Entry::Key(key.clone()));
        objects.push(Object {
            key,
            size: 32 * MIB,
        });
    }
    // Beside the listed keys and not asked for: a run that brings them is wrong.
    for i in 0..100 {
        objects.push(Object {
            key: format!("w4/list/other{i:03}.bin"),
            size: 16 * KIB,
        });
    }
    objects.extend(many("w4/small/", 2000, 4 * KIB, 200));
    objects.extend((0..2).map(|i| Object {
        key: format!("w4/large/{i}.bin"),
        size: 256 * MIB,
    }));
    entries.push(Entry::Prefix("w4/small/".into()));
    entries.push(Entry::Prefix("w4/large/".into()));
    Workload {
        name: "W4",
        about: "mixed: 504 listed keys (500 × 16 KiB, 4 × 32 MiB) among 100 others, and two prefixes (2,000 × 4 KiB, 2 × 256 MiB)".into(),
        upload: false,
        objects,
        entries,
    }
}

fn w5(quick: bool) -> Workload {
    let small = if quick { 200 } else { 10_000 };
    let mut objects = many("w5/small/", small, 4 * KIB, 1000);
    objects.extend((0..if quick { 1 } else { 2 }).map(|i| Object {
        key: format!("w5/large/{i}.bin"),
        size: if quick { 32 * MIB } else { GIB },
    }));
    Workload {
        name: "W5",
        about: if quick {
            "upload: 200 × 4 KiB and 1 × 32 MiB".into()
        } else {
            "upload: 10,000 × 4 KiB and 2 × 1 GiB".into()
        },
        upload: true,
        objects,
        entries: vec![Entry::Prefix("w5/".into())],
    }
}

/// The bytes of `key` from `offset` into `buffer`: 8-byte words of splitmix64 seeded by the
/// key and the word's position, so any range can be made again without the rest.
pub fn fill(key: &str, offset: u64, buffer: &mut [u8]) {
    let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    });
    let mut position = offset;
    let mut index = 0;
    while index < buffer.len() {
        let word = mix(seed ^ (position / 8)).to_le_bytes();
        let within = (position % 8) as usize;
        let take = (8 - within).min(buffer.len() - index);
        buffer[index..index + take].copy_from_slice(&word[within..within + take]);
        index += take;
        position += take as u64;
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// sha256 and MD5 of every object, by key.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub sha256: BTreeMap<String, String>,
}

/// Writes every object of `workload` under `source` (kept between runs when already complete)
/// and returns their digests.
pub fn materialize(workload: &Workload, source: &Path) -> anyhow::Result<Manifest> {
    let stamp = source.join(format!(".{}.manifest.json", workload.name));
    let expected: Vec<(String, u64)> = workload
        .objects
        .iter()
        .map(|object| (object.key.clone(), object.size))
        .collect();
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && let Ok(manifest) = serde_json::from_str::<Manifest>(&text)
        && manifest.sha256.len() == expected.len()
        && expected.iter().all(|(key, size)| {
            std::fs::metadata(source.join(key)).is_ok_and(|meta| meta.len() == *size)
        })
    {
        return Ok(manifest);
    }
    let mut manifest = Manifest::default();
    let mut buffer = vec![0u8; 4 * MIB as usize];
    for (key, size) in expected {
        let path = source.join(&key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let mut digest = Sha256::new();
        let mut offset = 0;
        while offset < size {
            let take = (size - offset).min(buffer.len() as u64) as usize;
            fill(&key, offset, &mut buffer[..take]);
            digest.update(&buffer[..take]);
            file.write_all(&buffer[..take])?;
            offset += take as u64;
        }
        file.flush()?;
        manifest.sha256.insert(key, hex::encode(digest.finalize()));
    }
    std::fs::write(&stamp, serde_json::to_vec(&manifest)?)?;
    Ok(manifest)
}

/// What a download run left under `destination`, checked against the manifest: every wanted
/// key present with its digest, nothing else (but the engine's own state files at the root).
pub fn check_tree(
    workload: &Workload,
    manifest: &Manifest,
    destination: &Path,
) -> Result<(), String> {
    let wanted = workload.wanted();
    let mut found = Vec::new();
    walk(destination, destination, &mut found).map_err(|error| error.to_string())?;
    let mut problems = Vec::new();
    let mut seen = 0;
    for (relative, path) in &found {
        if !wanted.contains_key(relative.as_str()) {
            problems.push(format!("unexpected file {relative}"));
            continue;
        }
        seen += 1;
        let digest = std::fs::File::open(path).and_then(|mut file| {
            use std::io::Read;
            let mut digest = Sha256::new();
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                digest.update(&buffer[..read]);
            }
            Ok(hex::encode(digest.finalize()))
        });
        match digest {
            Ok(digest) if Some(&digest) == manifest.sha256.get(relative) => {}
            Ok(_) => problems.push(format!("{relative}: wrong content")),
            Err(error) => problems.push(format!("{relative}: {error}")),
        }
    }
    if seen != wanted.len() {
        problems.push(format!("{} of {} files present", seen, wanted.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(5);
        Err(problems.join("; "))
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, found)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            found.push((relative, path));
        }
    }
    Ok(())
}

/// The curl floor's ranged parts (`<key>.<index>` under `parts`, 8 MiB each): every part of every
/// wanted object, with the bytes the seed makes for its range.
pub fn check_parts(workload: &Workload, parts: &Path, part_size: u64) -> Result<(), String> {
    let mut problems = Vec::new();
    for (key, size) in workload.wanted() {
        for (index, start) in (0..size).step_by(part_size as usize).enumerate() {
            let length = (part_size.min(size - start)) as usize;
            let path = parts.join(format!("{key}.{index}"));
            match std::fs::read(&path) {
                Ok(got) => {
                    let mut want = vec![0u8; length];
                    fill(key, start, &mut want);
                    if got != want {
                        problems.push(format!("{key} part {index}: wrong bytes"));
                    }
                }
                Err(_) => problems.push(format!("{key} part {index} missing")),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(5);
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_range_is_made_again_the_same() {
        let mut whole = vec![0u8; 100];
        fill("w3/0.bin", 0, &mut whole);
        for start in [0, 1, 7, 8, 9, 63] {
            let mut part = vec![0u8; 30];
            fill("w3/0.bin", start as u64, &mut part);
            assert_eq!(part, whole[start..start + 30]);
        }
        let mut other = vec![0u8; 100];
        fill("w3/1.bin", 0, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn w4_wants_the_listed_keys_and_prefixes_only() {
        let w4 = w4();
        let wanted = w4.wanted();
        assert_eq!(wanted.len(), 504 + 2000 + 2);
        assert!(!wanted.keys().any(|key| key.contains("other")));
    }
}
