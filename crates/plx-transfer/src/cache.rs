//! The node cache ([`NodeCache`]): a directory every pod on a node shares (a hostPath), so that
//! the runs of a sweep fetch each object from the store once.
//!
//! - **Validity.** An entry's name is a SHA-256 of the store, the bucket, the key, the size and
//!   the ETag as *this run's own listing* gave them (or the time it lists, where a store lists
//!   no ETag), with this pod's credentials, and before an entry is served this pod's own HEAD of
//!   the object must succeed with that ETag: a pod is only ever served an object it could read
//!   from the store, and an object that changed has another name. Pinned objects (not listed)
//!   bypass the cache.
//! - **No bad bytes.** Only bytes checked against the store's CRC or ETag go in. What comes out
//!   is copied into the destination's temporary and checked again, against the CRC the HEAD
//!   gave or the ETag, before it lands, so a damaged or tampered entry costs a refetch (and the
//!   entry), never bad data.
//! - **A job cannot corrupt it.** Entries are copied out (a copy the kernel may make a reflink),
//!   never linked: the job's file shares no inode with the cache.
//! - **Single flight.** A fetch holds an exclusive `flock` on its entry's lock file while it looks
//!   and fetches, so pods pulling the same object at once fetch it once: the others wait (up to
//!   two minutes, then fetch it themselves), then copy it out. A killed holder's lock goes with
//!   its process.
//! - **Bounded.** After a run, least recently used entries (by their time, touched on every use)
//!   go until the cache is within its budget.
//! - **Failure-proof.** Entries appear by rename from `tmp/`, whose leftovers (a kill mid-insert)
//!   are swept by the next run (a temporary whose entry's lock is free has no writer); a cache that cannot be written or read (full, read-only, gone) is
//!   warned about once and the pull goes on without it.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use crate::{
    Config, ErrorKind, NodeCache,
    flow::Flow,
    hedge::Hedge,
    job::{Job, Stamp},
    landing::{durable_length, fresh_part, synced},
    path::Parents,
    retry::Failure,
    state::Got,
    verify::{
        self, Check, Landed, Object, Parts,
        crc::{Seen, Stored},
    },
};

/// A temporary older than this was left by a killed insert.
const STALE: Duration = Duration::from_secs(3600);
/// How long a fetch waits for another process fetching the same object, before it fetches the
/// object itself.
const WAIT: Duration = Duration::from_secs(120);

pub(crate) struct Cache {
    root: PathBuf,
    scope: String,
    budget: u64,
    /// Set at the first failure to write: the run goes on without inserting.
    broken: AtomicBool,
}

/// One object's place in the cache, held locked while this process looks and fetches.
pub(crate) struct Slot<'a> {
    cache: &'a Cache,
    name: String,
    _lock: Option<std::fs::File>,
}

impl Cache {
    /// The cache at `config.dir` for objects of `bucket`, made if missing; None (said once)
    /// when it cannot be.
    pub(crate) fn open(config: &NodeCache, bucket: &str) -> Option<Cache> {
        let root = config.dir.join("v1");
        let made = ["objects", "tmp", "locks"]
            .iter()
            .try_for_each(|dir| std::fs::create_dir_all(root.join(dir)));
        if let Err(error) = made {
            tracing::warn!(
                "the node cache {} cannot be used ({error}): pulling without it",
                config.dir.display()
            );
            return None;
        }
        let budget = config.budget.unwrap_or_else(|| {
            rustix::fs::statvfs(&root)
                .map(|stat| stat.f_blocks.saturating_mul(stat.f_frsize) / 2)
                .unwrap_or(u64::MAX)
        });
        let cache = Cache {
            root,
            scope: serde_json::json!([config.store, bucket]).to_string(),
            budget,
            broken: AtomicBool::new(false),
        };
        cache.sweep();
        Some(cache)
    }

    /// The entry for `job`, locked against other processes fetching it, or None where the cache
    /// must not serve it.
    pub(crate) async fn slot(&self, job: &Job) -> Option<Slot<'_>> {
        // Listed (a pin is not), with a stamp: the ETag, or the time where the store lists none.
        let listed = !job.pinned && job.version.is_none() && job.stamp.is_known();
        // An object the cache would not keep is not waited for.
        let kept = job.size <= self.budget && !self.broken.load(Ordering::Relaxed);
        if !listed || !kept {
            return None;
        }
        let name = self.name(&job.key, job.size, &job.stamp);
        let lock = self.lock(&name).await;
        Some(Slot {
            cache: self,
            name,
            _lock: lock,
        })
    }

    /// An exclusive lock on the entry's lock file, waited for up to [`WAIT`] (another pod is
    /// fetching the object; a pod that hangs must not hold the others). None (no single flight,
    /// nothing worse) when it cannot be had in time.
    async fn lock(&self, name: &str) -> Option<std::fs::File> {
        use rustix::fs::{FlockOperation, flock};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("locks").join(name))
            .ok()?;
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut pause = Duration::from_millis(10);
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Some(file),
                Err(rustix::io::Errno::WOULDBLOCK) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(_) => return None,
            }
        }
    }

    /// An entry's name: the object as a listing gave it, within this cache's store and bucket.
    fn name(&self, key: &str, size: u64, stamp: &Stamp) -> String {
        let identity = serde_json::json!([self.scope, key, size, stamp.text()]).to_string();
        hex::encode(Sha256::digest(identity.as_bytes()))
    }

    /// The entry of an object a listing gave with `etag`, where the cache holds one: for a
    /// reader that takes the bytes into memory ([`crate::Objects::read_listed`]), which checks
    /// them as [`Slot::serve`] does before it gives them out.
    pub(crate) fn listed(&self, key: &str, size: u64, etag: &str) -> Option<PathBuf> {
        let path = self.entry(&self.name(key, size, &Stamp::Etag(etag.to_owned())));
        path.exists().then_some(path)
    }

    fn entry(&self, name: &str) -> PathBuf {
        self.root.join("objects").join(&name[..2]).join(name)
    }

    fn degrade(&self, what: &str, error: &std::io::Error) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the node cache {} cannot {what} ({error}): this pull goes on without it",
                self.root.display()
            );
        }
    }

    /// Removes the temporaries of killed inserts, and the lock files of entries long gone (a
    /// recent one may be held).
    fn sweep(&self) {
        let old = SystemTime::now() - STALE;
        let aged = |entry: &std::fs::DirEntry| {
            entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified < old)
        };
        for entry in std::fs::read_dir(self.root.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if aged(&entry) || self.abandoned(&entry) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for entry in std::fs::read_dir(self.root.join("locks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() > 2 && !self.entry(&name).exists() && aged(&entry) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Whether the temporary `entry` (`<name>.<nanos>`) was left by a killed insert: an insert
    /// writes it while it holds its entry's lock, so a temporary whose lock is free has no
    /// writer. (An insert that gave up waiting for the lock writes without it; if a sweep takes
    /// its temporary, its rename fails and the cache is set aside for that run, said once.)
    fn abandoned(&self, entry: &std::fs::DirEntry) -> bool {
        use rustix::fs::{FlockOperation, flock};
        let file_name = entry.file_name();
        let Some((name, _)) = file_name
            .to_string_lossy()
            .rsplit_once('.')
            .map(|(name, nanos)| (name.to_owned(), nanos.to_owned()))
        else {
            return false;
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.root.join("locks").join(name))
            .is_ok_and(|lock| flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok())
    }

    /// Trims the cache to its budget, least recently used first.
    pub(crate) fn trim(&self) {
        let mut entries = Vec::new();
        let mut total = 0u64;
        for shard in std::fs::read_dir(self.root.join("objects"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for entry in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(meta) = entry.metadata() {
                    total += meta.blocks() * 512;
                    entries.push((meta.mtime(), meta.blocks() * 512, entry.path()));
                }
            }
        }
        if total <= self.budget {
            return;
        }
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.budget {
                break;
            }
            // Its lock file stays: another process may hold it (`sweep` removes it when old).
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

/// An entry opened to be read, its place in the LRU order refreshed: a read is a use (`trim`
/// removes the least recently modified first).
pub(crate) fn open_entry(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::File::open(path)?;
    let _ = file.set_modified(SystemTime::now());
    Ok(file)
}

/// The store an entry is served for: the pod's own client (the cache never gives what the
/// store would refuse this pod), within the download's flow and hedging.
pub(crate) struct Store<'a> {
    pub(crate) client: &'a Client,
    pub(crate) bucket: &'a str,
    pub(crate) flow: &'a Flow,
    pub(crate) hedge: &'a Hedge,
}

/// What the store's HEAD says of an object an entry would stand for.
pub(crate) struct Head {
    /// Its ETag, without quotes; empty where the store gave none.
    pub(crate) etag: String,
    /// The CRC the store keeps over it, if any.
    pub(crate) stored: Option<Stored>,
    pub(crate) version_id: Option<String>,
}

impl Store<'_> {
    /// The object's HEAD with this pod's credentials, within the flow and hedged, asking for
    /// its stored checksum; None when it cannot be had (then the cache is not used: it never
    /// gives what the store would refuse this pod).
    pub(crate) async fn head(&self, key: &str) -> Option<Head> {
        let _slot = self.flow.slot(0).await;
        let head = self
            .hedge
            .race(|| {
                self.client
                    .head_object()
                    .bucket(self.bucket)
                    .key(key)
                    .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                    .send()
            })
            .await
            .ok()?;
        Some(Head {
            etag: head
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            stored: Stored::from_headers(
                head.checksum_crc64_nvme(),
                head.checksum_crc32_c(),
                head.checksum_crc32(),
                head.checksum_type(),
            ),
            version_id: head.version_id,
        })
    }
}

/// What the node cache gave: the object landed from its copy, checked as it was.
pub(crate) struct Served {
    pub(crate) check: Check,
    /// What the store's HEAD said of the object.
    pub(crate) got: Got,
}

impl Slot<'_> {
    /// The object copied out of the node cache into its temporary and landed, once this pod's
    /// own HEAD shows it may read the object and that it is the one listed, and the copy
    /// matches the store's CRC or ETag again; None when the cache has no good copy (a damaged
    /// one is discarded) and the object is to be fetched from the store.
    pub(crate) async fn serve(
        &self,
        job: &Job,
        store: &Store<'_>,
        parents: &Parents,
        config: &Config,
    ) -> Result<Option<Served>, Failure> {
        if !self.holds() {
            return Ok(None);
        }
        let Some(Head {
            etag,
            stored,
            version_id,
        }) = store.head(&job.key).await
        else {
            return Ok(None);
        };
        // The object listed: its ETag, where the listing gave one (a stamp of its time
        // otherwise, which named the entry; the bytes are checked against this ETag below).
        let listed = match &job.stamp {
            Stamp::Modified(_) => true,
            stamp => stamp.is(&etag),
        };
        if etag.is_empty() || !listed {
            return Ok(None);
        }
        let (dir, name) = parents
            .of(&job.path)
            .map_err(|message| Failure::permanent(ErrorKind::HostileKey, message))?;
        let name = name.to_string_lossy().into_owned();
        // A fresh temporary, removed unless the copy lands.
        let (path, file, mut guard) = fresh_part(&dir, &name)?;
        if !self.copy_out(&file).await {
            return Ok(None);
        }
        let length = durable_length(&file).await.map_err(Failure::io)?;
        let checked = if length == job.size {
            let object = Object {
                client: store.client,
                bucket: store.bucket,
                key: &job.key,
                version: None,
                size: job.size,
            };
            let seen = Parts {
                size: config.part_size,
                md5s: BTreeMap::new(),
                crcs: Seen {
                    part_size: job.size,
                    crcs: BTreeMap::new(),
                },
            };
            let landed = Landed {
                etag: &etag,
                file: &file,
                streamed_md5: None,
                stored,
                seen: &seen,
            };
            verify::verify(&object, landed).await.ok()
        } else {
            None
        };
        let Some(check @ (Check::Etag | Check::Crc)) = checked else {
            tracing::warn!(
                key = %job.key,
                "the node cache's copy does not match the store's checksum: discarded, fetched from the store"
            );
            self.discard();
            return Ok(None);
        };
        dir.rename(&path, &dir, &name).map_err(|error| {
            Failure::permanent(ErrorKind::Io, format!("cannot move into place: {error}"))
        })?;
        guard.armed = false;
        Ok(Some(Served {
            check,
            got: Got {
                etag,
                version_id,
                checksum: stored
                    .filter(|_| check == Check::Crc)
                    .map(|stored| stored.text()),
            },
        }))
    }

    /// Whether the cache has an entry for the object.
    pub(crate) fn holds(&self) -> bool {
        self.cache.entry(&self.name).exists()
    }

    /// The entry's bytes copied into `into` (at its start), off the runtime's workers (a read
    /// the page cache does not hold waits on the disk); false when there is no entry or it
    /// cannot be read. A read refreshes its place in the LRU order.
    pub(crate) async fn copy_out(&self, into: &Arc<std::fs::File>) -> bool {
        let path = self.cache.entry(&self.name);
        let into = into.clone();
        synced(move || std::io::copy(&mut open_entry(&path)?, &mut &*into))
            .await
            .is_ok()
    }

    /// A damaged entry goes: the next pull fetches it again.
    pub(crate) fn discard(&self) {
        let _ = std::fs::remove_file(self.cache.entry(&self.name));
    }

    /// Keeps a copy of `landed` (verified, under its final name): written under `tmp/`,
    /// synced, then renamed into place, so an entry is whole or absent. Off the runtime's
    /// workers: the sync waits on the disk.
    pub(crate) async fn insert(&self, mut landed: std::fs::File, size: u64) {
        let cache = self.cache;
        if cache.broken.load(Ordering::Relaxed) || size > cache.budget {
            return;
        }
        let temporary = cache.root.join("tmp").join(format!(
            "{}.{:x}",
            self.name,
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|since| since.as_nanos())
                .unwrap_or(0)
        ));
        let entry = cache.entry(&self.name);
        let written = synced({
            let temporary = temporary.clone();
            move || {
                let mut file = std::fs::File::create(&temporary)?;
                std::io::copy(&mut landed, &mut file)?;
                file.flush()?;
                file.sync_all()?;
                if let Some(shard) = entry.parent() {
                    std::fs::create_dir_all(shard)?;
                }
                std::fs::rename(&temporary, &entry)
            }
        })
        .await;
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            cache.degrade("keep objects", &error);
        }
    }
}

/// The store part of a cache's scope: the endpoint, else (AWS) the region.
pub fn store_of(endpoint: Option<&str>, region: &str) -> String {
    endpoint.map_or_else(
        || format!("aws:{region}"),
        |endpoint| endpoint.trim_end_matches('/').to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Stamp;

    fn job(stamp: Stamp) -> Job {
        Job {
            key: "train/a.csv".to_owned(),
            size: 5,
            stamp,
            path: PathBuf::from("a.csv"),
            marker: false,
            version: None,
            pinned: false,
        }
    }

    async fn name(
        dir: &std::path::Path,
        store: &str,
        bucket: &str,
        stamp: Stamp,
    ) -> Option<String> {
        let config = NodeCache {
            dir: dir.to_owned(),
            store: store.to_owned(),
            budget: None,
        };
        let cache = Cache::open(&config, bucket)?;
        cache.slot(&job(stamp)).await.map(|slot| slot.name.clone())
    }

    #[tokio::test]
    async fn two_stores_or_two_buckets_never_share_an_entry() {
        let dir = tempfile::tempdir().expect("a directory");
        let etag = "2c1743a391305fbf367df8e4f069f9f9";
        let here = name(
            dir.path(),
            "http://a:9000",
            "data",
            Stamp::Etag(etag.to_owned()),
        )
        .await;
        assert!(here.is_some());
        assert_ne!(
            here,
            name(
                dir.path(),
                "http://b:9000",
                "data",
                Stamp::Etag(etag.to_owned())
            )
            .await
        );
        assert_ne!(
            here,
            name(
                dir.path(),
                "http://a:9000",
                "other",
                Stamp::Etag(etag.to_owned())
            )
            .await
        );
        // Another ETag is another object.
        let changed = "0cc175b9c0f1b6a831c399e269772661";
        assert_ne!(
            here,
            name(
                dir.path(),
                "http://a:9000",
                "data",
                Stamp::Etag(changed.to_owned())
            )
            .await
        );
        // A store that lists no ETag: its time stamp names the entry (the HEAD's ETag checks
        // the bytes); no stamp at all, no entry.
        let timed = name(
            dir.path(),
            "http://a:9000",
            "data",
            Stamp::Modified(1_700_000_000),
        )
        .await;
        assert!(timed.is_some());
        assert_eq!(
            name(dir.path(), "http://a:9000", "data", Stamp::Unknown).await,
            None
        );
    }

    #[test]
    fn a_store_is_its_endpoint_or_its_region() {
        assert_eq!(
            store_of(Some("http://minio:9000/"), "us-east-1"),
            "http://minio:9000"
        );
        assert_eq!(store_of(None, "eu-west-1"), "aws:eu-west-1");
    }
}
