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

use plx_transfer::Pinned;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The format written today.
pub const VERSION: u32 = 1;

/// A manifest: what the pulls of a run gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Its format, [`VERSION`].
    pub version: u32,
    /// What each connection gave into each destination.
    pub pulls: Vec<Lineage>,
}

/// What one connection gave into one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The connection's name.
    pub connection: String,
    /// The bucket its objects were in.
    pub bucket: String,
    /// The local directory the objects' paths are under.
    pub destination: String,
    /// Each object as it landed.
    pub objects: Vec<Pinned>,
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
    /// The manifest in `file`.
    pub fn read(file: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(file)
            .map_err(|cause| Error::file("read the manifest", file, cause))?;
        Manifest::parse(&text, file)
    }

    /// The manifest `text` holds, read from `file` (named in the errors).
    pub fn parse(text: &str, file: &Path) -> Result<Manifest, Error> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|error| {
            Error::Invalid(format!(
                "{} is not a manifest plx-init wrote (a JSON object with `version` and `pulls`): {error}",
                file.display()
            ))
        })?;
        if manifest.version != VERSION {
            return Err(Error::Invalid(format!(
                "{} is a manifest of format {}; this plx-init reads format {VERSION}",
                file.display(),
                manifest.version
            )));
        }
        Ok(manifest)
    }

    /// The objects pinned for `connection` into `destination`, with the bucket they were in.
    /// A manifest with one pull of that connection serves any destination (a custom `path`
    /// may differ between runs); with several, the destination decides.
    pub fn pinned(
        &self,
        file: &Path,
        connection: &str,
        destination: &Path,
    ) -> Result<&Lineage, Error> {
        let of_connection: Vec<&Lineage> = self
            .pulls
            .iter()
            .filter(|pull| pull.connection == connection)
            .collect();
        let destination = destination.display().to_string();
        match of_connection.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::Pin(format!(
                "the manifest {} has no pull of connection `{connection}` (it has {}): pin a manifest this job's init wrote",
                file.display(),
                names(&self.pulls)
            ))),
            several => several
                .iter()
                .find(|pull| pull.destination == destination)
                .copied()
                .ok_or_else(|| {
                    Error::Pin(format!(
                        "the manifest {} has {} pulls of connection `{connection}`, none into {destination}",
                        file.display(),
                        several.len()
                    ))
                }),
        }
    }

    /// Adds what a pull gave: into the record of the same connection, bucket and destination,
    /// path by path, or as a record of its own.
    fn merge(&mut self, pull: Lineage) {
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

fn names(pulls: &[Lineage]) -> String {
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
pub fn write(file: &Path, pulls: Vec<Lineage>) -> Result<(), Error> {
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
        std::fs::create_dir_all(parent).map_err(|cause| Error::file("create", parent, cause))?;
    }
    let name = file.file_name().ok_or_else(|| {
        Error::Invalid(format!(
            "the manifest path {} names no file",
            file.display()
        ))
    })?;
    let temporary = file.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    // Synced before the rename: after a crash the name holds the old manifest or the new one,
    // never an empty file.
    let written = serde_json::to_vec_pretty(&manifest)
        .map_err(std::io::Error::from)
        .and_then(|json| {
            let mut written = std::fs::File::create(&temporary)?;
            std::io::Write::write_all(&mut written, &json)?;
            written.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(cause) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::file("write the manifest", file, cause));
    }
    Ok(())
}
