//! A pull as Polyaxon names it (an entry of a job's `init:` section, plx-init's flags, or
//! Polyaxon's `initializer path`) turned into the engine's request: the connection found in the
//! catalog, by its kind a download from S3 or a copy from a mount, keys made relative to the
//! bucket, the node cache scoped to the store, a manifest's pin applied; and what came of it.

use std::path::{Path, PathBuf};

use plx_connections::{Catalog, Connection, Init, Kind, PullMode};
use plx_credentials::{Environment, S3Settings};
use plx_transfer::{Config, Download, Entry, Events, MountCopy, NodeCache, Record, Summary};

use crate::{
    Error,
    manifest::{self, Lineage, Manifest},
};

/// How pulls run, beyond what each entry says: caps, checks, the manifest they keep or follow,
/// the node cache.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most requests in flight, where an entry's `workers` says none (Polyaxon defines
    /// `workers` and ignores it; here it caps a pull, which finds how many it needs below it).
    pub workers: Option<usize>,
    /// Check each object's bytes against the CRC the store keeps or its ETag (true by default);
    /// false checks sizes only.
    pub verify: bool,
    /// Write what each S3 pull gave to this manifest ([`manifest::write`]).
    pub manifest: Option<PathBuf>,
    /// Pull exactly what this manifest (read from the file named) pinned, in place of the
    /// entries.
    pub pin: Option<(PathBuf, Manifest)>,
    /// A node cache shared by the pods of a node.
    pub cache: Option<Cache>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: None,
            verify: true,
            manifest: None,
            pin: None,
            cache: None,
        }
    }
}

/// A node cache's directory and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// The directory the pods of a node share (a hostPath).
    pub dir: PathBuf,
    /// Its size in bytes; half its file system when None.
    pub size: Option<u64>,
}

impl Cache {
    /// The node cache `dir` names (else `PLX_CACHE_DIR`), of `size` (else `PLX_CACHE_SIZE`);
    /// None without a directory.
    pub fn from_env(dir: Option<&Path>, size: Option<u64>) -> Result<Option<Cache>, Error> {
        let size = match (size, std::env::var("PLX_CACHE_SIZE")) {
            (Some(size), _) => Some(size),
            (None, Ok(text)) if !text.is_empty() => {
                Some(quantity(&text).map_err(|message| Error::Setting {
                    variable: "PLX_CACHE_SIZE",
                    message,
                })?)
            }
            _ => None,
        };
        Ok(manifest::from_env(dir, "PLX_CACHE_DIR").map(|dir| Cache { dir, size }))
    }

    /// The engine's node cache for the store `settings` reach: its entries are kept apart from
    /// every other store's.
    pub fn for_store(&self, settings: &S3Settings) -> NodeCache {
        NodeCache {
            dir: self.dir.clone(),
            store: plx_transfer::store_of(
                settings
                    .endpoint_url
                    .as_ref()
                    .map(|endpoint| endpoint.value.as_str()),
                &settings.region.value,
            ),
            budget: self.size,
        }
    }
}

impl Options {
    /// The manifest to write, the pin and the node cache as the flags give them, each else as
    /// the container's environment does (`PLX_MANIFEST`, `PLX_PIN`, `PLX_CACHE_DIR`,
    /// `PLX_CACHE_SIZE`): Polyaxon's generated command lines are fixed, so its init containers
    /// can only set these through `init[].container.env`.
    pub fn from_env(
        manifest: Option<&Path>,
        pin: Option<&Path>,
        cache: Option<&Path>,
        cache_size: Option<u64>,
    ) -> Result<Options, Error> {
        let pin = match manifest::from_env(pin, "PLX_PIN") {
            Some(file) => {
                let manifest = Manifest::read(&file)?;
                Some((file, manifest))
            }
            None => None,
        };
        Ok(Options {
            manifest: manifest::from_env(manifest, "PLX_MANIFEST"),
            pin,
            cache: Cache::from_env(cache, cache_size)?,
            ..Options::default()
        })
    }

    /// The pinned objects for `connection` into `root` (those under `under` only, when given),
    /// or None without a pin; an error when the manifest cannot pin this pull.
    fn pinned(
        &self,
        connection: &Connection,
        root: &Path,
        under: Option<&str>,
    ) -> Result<Option<Pin>, Error> {
        let Some((file, manifest)) = &self.pin else {
            return Ok(None);
        };
        if connection.kind != Kind::S3 {
            return Err(Error::Kind {
                connection: connection.name.clone(),
                kind: connection.kind,
                why: ": a manifest pins S3 objects; pull it without --pin (PLX_PIN)",
            });
        }
        let pull = manifest.pinned(file, &connection.name, root)?;
        let objects: Vec<plx_transfer::Pinned> = pull
            .objects
            .iter()
            .filter(|object| {
                under.is_none_or(|under| {
                    under.is_empty()
                        || object.path == under
                        || object.path.starts_with(&format!("{under}/"))
                })
            })
            .cloned()
            .collect();
        if objects.is_empty() {
            return Err(Error::Pin(format!(
                "the manifest {} pins nothing of connection `{}` under {}",
                file.display(),
                connection.name,
                root.join(under.unwrap_or_default()).display()
            )));
        }
        Ok(Some(Pin {
            bucket: pull.bucket.clone(),
            objects,
        }))
    }
}

/// A size as Kubernetes writes quantities: bytes, or with Ki, Mi, Gi or Ti.
pub fn quantity(text: &str) -> Result<u64, String> {
    let units = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)];
    let (number, shift) = units
        .iter()
        .find_map(|(unit, shift)| text.strip_suffix(unit).map(|number| (number, *shift)))
        .unwrap_or((text, 0));
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is not a size: bytes, or a number with Ki, Mi, Gi or Ti"))
}

/// A path of plx-init's `--dirs`, `--files` or `--paths` (and the Python package's): `from:to`,
/// or a path pulled to the same place.
pub fn path_entry(text: &str) -> plx_connections::PathEntry {
    match text.split_once(':') {
        Some((from, to)) => plx_connections::PathEntry::Renamed(from.to_owned(), to.to_owned()),
        None => plx_connections::PathEntry::Same(text.to_owned()),
    }
}

/// What a pin fetches for one pull.
struct Pin {
    bucket: String,
    objects: Vec<plx_transfer::Pinned>,
}

/// What came of one pull.
#[derive(Debug)]
pub struct Pulled {
    /// The connection pulled from.
    pub connection: String,
    /// The local directory it landed in.
    pub destination: PathBuf,
    /// The bucket an S3 pull read; None for a mount.
    pub bucket: Option<String>,
    /// The counts, or every object that failed (with the counts of the rest).
    pub result: Result<Summary, plx_transfer::Error>,
}

impl Pulled {
    /// The pull's entry in a summary file (`--summary`).
    pub fn record(&self) -> Record {
        Record {
            destination: Some(self.destination.display().to_string()),
            ..Record::new(&self.connection, &self.result)
        }
    }

    /// What an S3 pull that succeeded gave, for the manifest.
    pub fn lineage(&self) -> Option<Lineage> {
        match (&self.bucket, &self.result) {
            (Some(bucket), Ok(summary)) => Some(Lineage {
                connection: self.connection.clone(),
                bucket: bucket.clone(),
                destination: self.destination.display().to_string(),
                objects: summary.landed.clone(),
            }),
            _ => None,
        }
    }

    /// Whether the pull failed only because nothing exists under `source` itself (Polyaxon's
    /// outputs restore of a new run: not missing data).
    pub fn found_nothing_under(&self, source: &str) -> bool {
        let Err(error) = &self.result else {
            return false;
        };
        let source = source.trim_end_matches('/');
        !error.failures.is_empty()
            && error.failures.iter().all(|failure| {
                failure.kind == plx_transfer::ErrorKind::NotFound
                    && (failure.key.trim_end_matches('/') == source
                        || source.ends_with(&format!("/{}", failure.key.trim_end_matches('/'))))
            })
    }
}

/// What every pull of a pod shares: its catalog, its environment, and the context root its
/// default destinations are under.
pub struct Puller<'a> {
    catalog: &'a Catalog,
    env: &'a Environment,
    context_root: String,
}

impl<'a> Puller<'a> {
    /// Pulls from `catalog`'s connections, with the credentials `env` gives, into the context
    /// root `POLYAXON_CONTEXT_ROOT` names (Polyaxon's default without it).
    pub fn new(catalog: &'a Catalog, env: &'a Environment) -> Puller<'a> {
        let context_root = env
            .get("POLYAXON_CONTEXT_ROOT")
            .unwrap_or(plx_connections::DEFAULT_CONTEXT_ROOT)
            .to_owned();
        Puller {
            catalog,
            env,
            context_root,
        }
    }

    /// The connection `name` names, or the artifacts store without a name.
    pub fn connection(&self, name: Option<&str>) -> Result<&'a Connection, Error> {
        crate::catalog::connection(
            self.catalog,
            name,
            "the entry names no connection and the catalog has no artifacts store",
        )
    }

    fn store(&self) -> Option<&str> {
        self.catalog
            .artifacts_store
            .as_ref()
            .map(|store| store.name.as_str())
    }

    /// Where `init`'s pull lands: its `path`, else Polyaxon's default under the context root.
    pub fn destination(&self, init: &Init) -> PathBuf {
        PathBuf::from(init.destination_root(self.store(), &self.context_root))
    }

    /// Pulls one entry of an `init:` section as Polyaxon would, into
    /// [`Puller::destination`]. The error is the configuration's (the connection, its
    /// credentials, the pin); what happened to the data is in [`Pulled::result`].
    pub async fn init(
        &self,
        init: &Init,
        options: &Options,
        events: &Events,
    ) -> Result<Pulled, Error> {
        let connection = self.connection(init.connection.as_deref())?;
        let pulls = init.pulls(connection, self.store(), &self.context_root);
        let workers = init
            .artifacts
            .as_ref()
            .and_then(|artifacts| artifacts.workers)
            .map(|workers| workers as usize)
            .or(options.workers);
        let root = self.destination(init);
        let pin = options.pinned(connection, &root, None)?;
        pull(
            connection,
            self.env,
            &root,
            &pulls,
            &Tuning {
                workers,
                options,
                pin,
            },
            events,
        )
        .await
    }

    /// Polyaxon's `polyaxon initializer path`: `from` (a key under the connection's store, or
    /// a path in its mount) into `to`, as a file, a directory, or whichever it is (`mode`).
    pub async fn path(
        &self,
        connection: &str,
        from: &str,
        to: &Path,
        mode: PullMode,
        options: &Options,
        events: &Events,
    ) -> Result<Pulled, Error> {
        let connection = self.catalog.find(connection)?;
        // The parent is the root and the last segment the entry, for files and directories
        // alike: `--check-path` learns which it is only when pulling.
        let (root, name) = match (to.parent(), to.file_name()) {
            (Some(parent), Some(name)) => {
                (parent.to_path_buf(), name.to_string_lossy().into_owned())
            }
            _ => (to.to_path_buf(), String::new()),
        };
        let request = plx_connections::Pull {
            source: from.trim_end_matches('/').to_owned(),
            destination: root.join(&name).display().to_string(),
            mode,
        };
        let pin = options.pinned(connection, &root, Some(name.as_str()))?;
        pull(
            connection,
            self.env,
            &root,
            std::slice::from_ref(&request),
            &Tuning {
                workers: options.workers,
                options,
                pin,
            },
            events,
        )
        .await
    }
}

/// How one pull runs: the options, and its own cap (an entry's `workers` over the options').
struct Tuning<'a> {
    workers: Option<usize>,
    options: &'a Options,
    pin: Option<Pin>,
}

/// Pulls `pulls` of `connection` into `root`.
async fn pull(
    connection: &Connection,
    env: &Environment,
    root: &Path,
    pulls: &[plx_connections::Pull],
    tuning: &Tuning<'_>,
    events: &Events,
) -> Result<Pulled, Error> {
    // `workers` caps requests in flight (a download finds how many it needs below it) and the
    // objects a mount copy handles at once.
    let config = Config {
        requests: tuning.workers.unwrap_or(Config::default().requests),
        concurrency: tuning.workers.unwrap_or(Config::default().concurrency),
        verify: tuning.options.verify,
        ..Config::default()
    };
    let pulled = |bucket: Option<String>, result| Pulled {
        connection: connection.name.clone(),
        destination: root.to_path_buf(),
        bucket,
        result,
    };
    match connection.kind {
        Kind::S3 => {}
        kind if kind.is_mount() => {
            let copied = from_mount(connection, root, pulls, tuning, &config, events).await;
            return Ok(pulled(None, copied));
        }
        kind => {
            return Err(Error::Kind {
                connection: connection.name.clone(),
                kind,
                why: "; plx-init pulls from s3, host_path and volume_claim connections (gcs and wasb are not supported yet)",
            });
        }
    }
    let settings = S3Settings::resolve(connection, env)?;
    let client = plx_credentials::client(&settings).await?;
    let store = format!("s3://{}", settings.bucket);
    let entries = match &tuning.pin {
        Some(pin) if pin.bucket != settings.bucket => {
            return Err(Error::Pin(format!(
                "connection `{}` reads bucket `{}`, the manifest pinned objects of bucket `{}`: pin a manifest of this connection",
                connection.name, settings.bucket, pin.bucket
            )));
        }
        Some(pin) => pin.objects.iter().cloned().map(Entry::Pinned).collect(),
        None => pulls
            .iter()
            .map(|pull| {
                let key = pull
                    .source
                    .strip_prefix(&store)
                    .unwrap_or(&pull.source)
                    .trim_start_matches('/')
                    .to_owned();
                entry(pull.mode, key, relative_to(root, &pull.destination))
            })
            .collect(),
    };
    let cache = tuning
        .options
        .cache
        .as_ref()
        .map(|cache| cache.for_store(&settings));
    let request = Download {
        bucket: settings.bucket.clone(),
        prefix: String::new(),
        entries,
        manifest: tuning.options.manifest.is_some(),
        cache,
        ..Download::default()
    };
    Ok(pulled(
        Some(settings.bucket.clone()),
        plx_transfer::download(&client, &request, root, &config, events).await,
    ))
}

/// A mount's pull: a copy from the directory the connection is mounted at.
async fn from_mount(
    connection: &Connection,
    root: &Path,
    pulls: &[plx_connections::Pull],
    tuning: &Tuning<'_>,
    config: &Config,
    events: &Events,
) -> Result<Summary, plx_transfer::Error> {
    let source = PathBuf::from(connection.store_path().unwrap_or("/"));
    let entries = pulls
        .iter()
        .map(|pull| {
            let from = Path::new(&pull.source)
                .strip_prefix(&source)
                .map(|from| from.display().to_string())
                .unwrap_or_else(|_| pull.source.clone());
            entry(pull.mode, from, relative_to(root, &pull.destination))
        })
        .collect();
    let request = MountCopy {
        source,
        entries,
        ..MountCopy::default()
    };
    if tuning.options.manifest.is_some() {
        tracing::warn!(
            "{}: the manifest records S3 objects; a mount's files are not in it",
            connection.name
        );
    }
    plx_transfer::copy(&request, root, config, events).await
}

/// A pull as the engine takes it; whether a `paths` entry is a file or a directory is the
/// engine's to find out.
fn entry(mode: PullMode, from: String, to: String) -> Entry {
    match mode {
        PullMode::File => Entry::File { from, to },
        PullMode::Dir => Entry::Dir { from, to },
        PullMode::Check => Entry::Path { from, to },
    }
}

/// `destination` relative to `root`, as the engine wants it.
fn relative_to(root: &Path, destination: &str) -> String {
    Path::new(destination)
        .strip_prefix(root)
        .map(|to| to.display().to_string())
        .unwrap_or_default()
}
