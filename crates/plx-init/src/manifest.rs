//! The pinned manifest: `--manifest FILE` (or `PLX_MANIFEST`) writes what each S3 pull gave,
//! object by object (key, size, ETag, version, checksum, local path), with the connection, the
//! bucket and the destination, as a run's data lineage; `--pin FILE` (or `PLX_PIN`) pulls exactly
//! that again: the recorded versions where the bucket keeps them, else the same objects only
//! while they are unchanged.
//!
//! Several pulls write one manifest (the entries of an `init:` section, the lines of Polyaxon's
//! generated script): a pull of the same connection, bucket and destination merges into its
//! record, path by path, and the file is replaced atomically.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plx_transfer::Pinned;
use serde::{Deserialize, Serialize};

/// The format written today.
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) version: u32,
    pub(crate) pulls: Vec<Pull>,
}

/// What one connection gave into one destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pull {
    pub(crate) connection: String,
    pub(crate) bucket: String,
    /// The local directory the objects' paths are under.
    pub(crate) destination: String,
    pub(crate) objects: Vec<Pinned>,
}

/// Where the manifest goes (`--manifest`, else `PLX_MANIFEST`) and where a pin comes from
/// (`--pin`, else `PLX_PIN`).
pub(crate) fn from_env(flag: Option<&Path>, variable: &str) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(variable)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    })
}

impl Manifest {
    pub(crate) fn read(file: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the manifest {}", file.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a manifest plx-init wrote (a JSON object with `version` and `pulls`)",
                file.display()
            )
        })?;
        if manifest.version != VERSION {
            anyhow::bail!(
                "{} is a manifest of format {}; this plx-init reads format {VERSION}",
                file.display(),
                manifest.version
            );
        }
        Ok(manifest)
    }

    /// The objects pinned for `connection` into `destination`, with the bucket they were in.
    /// A manifest with one pull of that connection serves any destination (a custom `path`
    /// may differ between runs); with several, the destination decides.
    pub(crate) fn pinned(
        &self,
        file: &Path,
        connection: &str,
        destination: &Path,
    ) -> anyhow::Result<&Pull> {
        let of_connection: Vec<&Pull> = self
            .pulls
            .iter()
            .filter(|pull| pull.connection == connection)
            .collect();
        let destination = destination.display().to_string();
        match of_connection.as_slice() {
            [one] => Ok(one),
            [] => anyhow::bail!(
                "the manifest {} has no pull of connection `{connection}` (it has {}): pin a manifest this job's init wrote",
                file.display(),
                names(&self.pulls)
            ),
            several => several
                .iter()
                .find(|pull| pull.destination == destination)
                .copied()
                .with_context(|| {
                    format!(
                        "the manifest {} has {} pulls of connection `{connection}`, none into {destination}",
                        file.display(),
                        several.len()
                    )
                }),
        }
    }

    /// Adds what a pull gave: into the record of the same connection, bucket and destination,
    /// path by path, or as a record of its own.
    fn merge(&mut self, pull: Pull) {
        let same = self.pulls.iter_mut().find(|known| {
            known.connection == pull.connection
                && known.bucket == pull.bucket
                && known.destination == pull.destination
        });
        match same {
            Some(known) => {
                known
                    .objects
                    .retain(|object| !pull.objects.iter().any(|new| new.path == object.path));
                known.objects.extend(pull.objects);
                known.objects.sort_by(|a, b| a.path.cmp(&b.path));
            }
            None => self.pulls.push(pull),
        }
    }
}

fn names(pulls: &[Pull]) -> String {
    if pulls.is_empty() {
        return "none".to_owned();
    }
    pulls
        .iter()
        .map(|pull| format!("`{}`", pull.connection))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Merges `pulls` into the manifest at `file` (made if missing) and replaces it atomically: a
/// temporary beside it, renamed into place, so a reader never sees half of one.
pub(crate) fn write(file: &Path, pulls: Vec<Pull>) -> anyhow::Result<()> {
    let mut manifest = if file.exists() {
        Manifest::read(file)?
    } else {
        Manifest {
            version: VERSION,
            pulls: Vec::new(),
        }
    };
    for pull in pulls {
        manifest.merge(pull);
    }
    if let Some(parent) = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let name = file
        .file_name()
        .with_context(|| format!("the manifest path {} names no file", file.display()))?;
    let temporary = file.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let written = std::fs::write(&temporary, serde_json::to_vec_pretty(&manifest)?)
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write the manifest {}", file.display()));
    }
    Ok(())
}
