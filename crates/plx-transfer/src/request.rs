//! What a front end asks of the engine: a download ([`Download`], its [`Entry`]s, a
//! [`Pinned`] object, a [`NodeCache`]), an upload ([`Upload`]) and a copy from a mount
//! ([`MountCopy`]). Plain data: every layer above reads these, and they import nothing of the
//! engine.

use std::path::PathBuf;

/// One thing to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// One object, `from` under the prefix, landing at `to` under the destination.
    File {
        /// The key under the prefix.
        from: String,
        /// The local path under the destination.
        to: String,
    },
    /// Every object under `from` (recursively), landing under `to`. `from` empty: the whole prefix.
    Dir {
        /// The sub-prefix under the prefix.
        from: String,
        /// The local directory under the destination.
        to: String,
    },
    /// `from` as a file where an object has exactly that key, else as a directory (Polyaxon's
    /// `paths`, and `initializer path` without `--is-file`). The engine decides, with a listing
    /// inside its retry loop: a listing that fails is a failure, never a guess.
    Path {
        /// The key or sub-prefix under the prefix.
        from: String,
        /// The local path under the destination.
        to: String,
    },
    /// Exactly one object as a manifest recorded it (`plx-init artifacts --pin`): its key (not
    /// under the prefix), fetched at its recorded version where the store versions it, else
    /// only while its ETag and size are the recorded ones (a changed object fails, naming what
    /// changed), landing at its recorded path. Nothing is listed.
    Pinned(Pinned),
}

/// What to download.
#[derive(Debug, Clone, Default)]
pub struct Download {
    /// The bucket.
    pub bucket: String,
    /// The store's prefix in the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// What to fetch.
    pub entries: Vec<Entry>,
    /// Only keys (relative to their entry) matching one of these globs; all when empty.
    pub include: Vec<String>,
    /// Never keys matching one of these globs.
    pub exclude: Vec<String>,
    /// Keep what the download gives (each object's key, size, ETag, version and checksum, and
    /// where it landed, skipped ones included) in [`Summary::landed`], for a manifest.
    pub manifest: bool,
    /// A node cache to serve objects from and keep them in.
    pub cache: Option<NodeCache>,
    /// Where the run's state and journal live (what lets a rerun skip what landed); beside the
    /// destination when None ([`crate::state_dir`]). A front end whose destination must hold
    /// nothing but the data and whose parent is the user's (the Python package's `get`) names
    /// its own.
    pub state: Option<PathBuf>,
}

/// The cache a download may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCache {
    /// The directory every pod of the node shares.
    pub dir: PathBuf,
    /// Where the objects come from (the store's endpoint, or its region for AWS): with the
    /// bucket, the scope of every key, so two stores or two buckets never share an entry.
    pub store: String,
    /// The bytes it may hold; past it, least recently used entries go. None: half its file
    /// system.
    pub budget: Option<u64>,
}

/// One object as a download gave it: what a manifest records, and what a pinned download
/// ([`Entry::Pinned`]) fetches again, exactly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pinned {
    /// The object's key in its bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The ETag its GET answered with (no quotes); empty where the store gave none.
    pub etag: String,
    /// The version it was, where the bucket keeps versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The CRC the store keeps and the bytes were checked against, `crc32c:<base64>` (a
    /// composite one over parts ends in `-<parts>`); absent where the ETag was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Where it landed, relative to the destination.
    pub path: String,
}

/// What to upload.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The bucket.
    pub bucket: String,
    /// Where in the bucket (no leading or trailing `/`; empty for the bucket's root): a file
    /// goes to `prefix/<its name>`, a directory's files to `prefix/<their paths>`.
    pub prefix: String,
    /// The local file or directory to send.
    pub source: PathBuf,
    /// Named files, each local file to its key under the prefix, in place of `source`'s (a
    /// front end that has worked out where each file goes: the Python package's `put`).
    pub files: Vec<(PathBuf, String)>,
}

impl Upload {
    /// `source` to `prefix` in `bucket`.
    pub fn new(
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        source: impl Into<PathBuf>,
    ) -> Upload {
        Upload {
            bucket: bucket.into(),
            prefix: prefix.into(),
            source: source.into(),
            files: Vec::new(),
        }
    }
}

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct MountCopy {
    /// The mounted directory (the connection's `mountPath`).
    pub source: PathBuf,
    /// What to copy, relative to `source`.
    pub entries: Vec<Entry>,
    /// Only paths (relative to their entry) matching one of these globs; all when empty.
    pub include: Vec<String>,
    /// Never paths matching one of these globs.
    pub exclude: Vec<String>,
}
