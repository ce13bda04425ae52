//! Fetching one object: skipped when a previous run landed it, else written to its temporary
//! name (one GET with the store's CRC checked as it streams, or ranged parts in parallel for a
//! large object, resumable), its size checked, verified, and renamed into place.

use std::{
    collections::BTreeMap,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use aws_sdk_s3::Client;
use cap_std::fs::Dir;
use futures::{StreamExt, TryStreamExt, stream};

use crate::{
    Config, ErrorKind, Event, Events, Summary,
    cache::{Cache, Served, Store},
    event::emit,
    flow::{Flow, Slot},
    hedge::{Hedge, next_chunk},
    job::Job,
    landing::{
        Temporary, durable_length, fresh_part, open_part, remove_resumable, resumable_names, synced,
    },
    path::Parents,
    retry::{Failure, retrying, s3_failure},
    space::Space,
    state::{Got, Progress, State},
    verify::{
        self, Check, Hasher, Landed, Object, Parts, Sum,
        crc::{self, Crc, Seen, Stored},
        etag_parts, stored_checksum,
    },
};

/// How one object ended.
pub(crate) enum Outcome {
    /// Fetched (from the store, or `cached`, from the node cache), checked, landed; what the
    /// store said of the object.
    Fetched {
        bytes: u64,
        check: Check,
        got: Got,
        cached: bool,
    },
    /// Landed by an earlier run; what the store said of it then, where the state kept it.
    Skipped { got: Option<Got> },
}

/// What every fetch of a run shares.
pub(crate) struct Fetcher<'a> {
    pub(crate) client: &'a Client,
    pub(crate) bucket: &'a str,
    pub(crate) dir: &'a Arc<Dir>,
    pub(crate) parents: &'a Parents,
    pub(crate) state: &'a Mutex<State>,
    pub(crate) summary: &'a Mutex<Summary>,
    pub(crate) config: &'a Config,
    pub(crate) events: &'a Events,
    /// How many requests fly, and when a late one is raced.
    pub(crate) flow: &'a Flow,
    pub(crate) hedge: &'a Hedge,
    /// Large objects in flight (`Config::concurrency`): each holds a file while its parts wait
    /// for places in flight.
    pub(crate) large: &'a tokio::sync::Semaphore,
    /// Room at the destination, reserved by each object before its bytes are written.
    pub(crate) space: &'a Space,
    /// The node cache, when the download has one.
    pub(crate) cache: Option<&'a Cache>,
    /// The download keeps what landed for a manifest.
    pub(crate) manifest: bool,
}

/// The file a fetch writes under its hidden name, and the guard that removes it on failure.
struct Landing {
    path: PathBuf,
    /// A large object's record of the parts on disk, beside its fixed part name.
    progress: Option<(PathBuf, Mutex<Progress>)>,
    file: Arc<std::fs::File>,
    guard: Temporary,
    /// Held while a part is synced and recorded.
    saving: tokio::sync::Mutex<()>,
}

/// One object in flight: where its bytes go and what was learned of them on the way.
struct InFlight<'a> {
    job: &'a Job,
    dir: Arc<Dir>,
    name: String,
    ranged: bool,
    /// The GET's own ETag, which the bytes must match (listings may lack it, or be stale).
    etag: Mutex<Option<String>>,
    /// The version the GET answered with, where the store keeps versions.
    version: Mutex<Option<String>>,
    landing: Landing,
    /// Each part's MD5, taken as its bytes stream in: a multipart ETag is checked from these
    /// when the uploader's part size is ours, without reading the file again.
    md5s: Mutex<BTreeMap<u64, [u8; 16]>>,
    crcs: Mutex<BTreeMap<u64, u64>>,
}

/// One ranged GET: bytes `start..=end`, hashed with `crc` (the stored checksum's) or MD5.
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    crc: Option<Crc>,
}

impl Fetcher<'_> {
    /// Fetches `job` unless a previous run landed it and it is still there, trying again as the
    /// retry loop allows.
    pub(crate) async fn fetch(&self, job: &Job) -> Result<Outcome, Failure> {
        if job.marker {
            self.dir.create_dir_all(&job.path).map_err(Failure::io)?;
            return Ok(Outcome::Fetched {
                bytes: 0,
                check: Check::Etag,
                got: Got::default(),
                cached: false,
            });
        }
        let landed = self
            .state
            .lock()
            .ok()
            .and_then(|state| state.files.get(&job.path.display().to_string()).cloned());
        if let Some(landed) = landed {
            let got = landed.got.as_ref();
            // A pinned object's stamp is the GET's ETag the manifest kept; a listed one's is the
            // listing's.
            let stamp =
                job.stamp.is(&landed.etag) || got.is_some_and(|got| job.stamp.is(&got.etag));
            let version = job.version.is_none()
                || got.and_then(|got| got.version_id.as_ref()) == job.version.as_ref();
            // A state an older version wrote kept no ETag of the GET: a manifest needs one.
            let recorded = !self.manifest || got.is_some();
            let same =
                stamp && version && recorded && landed.size == job.size && job.stamp.is_known();
            let present = self
                .dir
                .symlink_metadata(&job.path)
                .is_ok_and(|meta| meta.is_file() && meta.len() == job.size);
            if same && present {
                return Ok(Outcome::Skipped { got: landed.got });
            }
        }
        // Room first: a pull that does not fit stops before it writes more than fits. A large
        // object's parts already on disk (a killed run's) are in use already.
        let room = self
            .space
            .reserve(job.size.saturating_sub(self.resumable_bytes(job)))?;
        // The node cache's copy, when it has a good one; else this process fetches it while
        // others wanting it wait (single flight), and keeps it there.
        let cached = match self.cache {
            Some(cache) => cache.slot(job).await,
            None => None,
        };
        let served = match &cached {
            Some(slot) => {
                let store = Store {
                    client: self.client,
                    bucket: self.bucket,
                    flow: self.flow,
                    hedge: self.hedge,
                };
                slot.serve(job, &store, self.parents, self.config)
                    .await
                    .map(|served| {
                        served.map(|Served { check, got }| Outcome::Fetched {
                            bytes: job.size,
                            check,
                            got,
                            cached: true,
                        })
                    })
            }
            None => Ok(None),
        };
        let result = match served {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => {
                emit(
                    self.events,
                    Event::Started {
                        key: job.key.clone(),
                        size: job.size,
                    },
                );
                let (result, retries) =
                    retrying(self.config, &job.key, self.events, || self.fetch_once(job)).await;
                if let Ok(mut summary) = self.summary.lock() {
                    summary.retried += u64::from(retries);
                }
                result
            }
            Err(failure) => Err(failure),
        };
        match &result {
            Ok(outcome) => {
                room.keep();
                // Served from the node cache: the parts a killed run left of the object are of
                // no use any more (a fetch in parts would have landed them by rename).
                if let Outcome::Fetched { cached: true, .. } = outcome
                    && job.size >= self.config.multipart_threshold
                    && let Ok((dir, name)) = self.parents.of(&job.path)
                {
                    remove_resumable(&dir, &name.to_string_lossy());
                }
                // Only bytes checked against the store's ETag or CRC are kept.
                if let (Some(slot), Outcome::Fetched { check, cached, .. }) = (&cached, outcome)
                    && *check != Check::None
                    && !cached
                    && let Ok((dir, name)) = self.parents.of(&job.path)
                    && let Ok(landed) = dir.open(&name)
                {
                    slot.insert(landed.into_std(), job.size).await;
                }
            }
            // The disk filled up under a write: nothing more is fetched, and a large object's
            // resumable part file goes too, so that the disk is given back.
            Err(failure) if failure.kind == ErrorKind::NoSpace => {
                self.space.fill(&failure.message);
                if let Ok((dir, name)) = self.parents.of(&job.path) {
                    remove_resumable(&dir, &name.to_string_lossy());
                }
            }
            Err(_) => {}
        }
        result
    }

    /// The bytes a large object's resumable part file already holds on disk (its allocated
    /// blocks: the file is sparse until its parts arrive).
    fn resumable_bytes(&self, job: &Job) -> u64 {
        use cap_std::fs::MetadataExt;
        if job.size < self.config.multipart_threshold {
            return 0;
        }
        let Ok((dir, name)) = self.parents.of(&job.path) else {
            return 0;
        };
        let (part, _) = resumable_names(&name.to_string_lossy());
        dir.symlink_metadata(part)
            .ok()
            .and_then(|meta| meta.blocks().checked_mul(512))
            .unwrap_or(0)
    }

    async fn fetch_once(&self, job: &Job) -> Result<Outcome, Failure> {
        let config = self.config;
        let ranged = job.size >= config.multipart_threshold && job.size > config.part_size;
        // A small object waits for a place in flight before it opens a file; a large one for a
        // place among the large, and its parts each for a place in flight.
        let (slot, _large) = if ranged {
            (None, self.large.acquire().await.ok())
        } else {
            (Some(self.flow.slot(job.size).await), None)
        };
        // From here on, every file is named inside the directory that holds it.
        let (dir, name) = self
            .parents
            .of(&job.path)
            .map_err(|message| Failure::permanent(ErrorKind::HostileKey, message))?;
        let name = name.to_string_lossy().into_owned();
        let landing = open_landing(&dir, &name, job, ranged, config)?;
        let seen_etag = landing
            .progress
            .as_ref()
            .and_then(|(_, progress)| progress.lock().ok().and_then(|p| p.etag.clone()));
        let flight = InFlight {
            job,
            dir,
            name,
            ranged,
            etag: Mutex::new(seen_etag),
            version: Mutex::default(),
            landing,
            md5s: Mutex::default(),
            crcs: Mutex::default(),
        };
        let (streamed, stored) = match slot {
            None => match self.fetch_parts(&flight).await {
                Ok(stored) => (Sum::Off, stored),
                Err(failure) => {
                    // Parts of a version the store no longer has are kept for no rerun: it
                    // lists the new version, and fetches it whole.
                    if failure.kind == ErrorKind::Changed {
                        remove_resumable(&flight.dir, &flight.name);
                    }
                    return Err(failure);
                }
            },
            Some(slot) => self.fetch_whole(&flight, slot).await?,
        };
        self.land(flight, streamed, stored).await
    }

    /// A large object in ranged parts, in parallel, each recorded once it is durable so that a
    /// rerun resumes; also the CRC the store keeps for the whole object, if any.
    async fn fetch_parts(&self, flight: &InFlight<'_>) -> Result<Option<Stored>, Failure> {
        let (job, config) = (flight.job, self.config);
        let stored = if config.verify {
            stored_checksum(
                self.client,
                self.hedge,
                self.bucket,
                &job.key,
                job.version.as_deref(),
            )
            .await
        } else {
            None
        };
        let crc = stored.map(|stored| stored.crc);
        let file = &flight.landing.file;
        file.set_len(job.size).map_err(Failure::io)?;
        let done = flight
            .landing
            .progress
            .as_ref()
            .and_then(|(_, progress)| progress.lock().ok().map(|progress| progress.done.clone()))
            .unwrap_or_default();
        let parts: Vec<(u64, u64)> = (0..job.size.div_ceil(config.part_size))
            .map(|index| {
                let start = index * config.part_size;
                (start, (start + config.part_size).min(job.size) - 1)
            })
            .filter(|(start, _)| !done.contains(start))
            .collect();
        stream::iter(parts)
            .map(|(start, end)| async move {
                let sum = self.fetch_range(flight, Range { start, end, crc }).await?;
                match sum {
                    Sum::Md5(md5) => {
                        if let Ok(mut md5s) = flight.md5s.lock() {
                            md5s.insert(start, md5);
                        }
                    }
                    Sum::Crc(value) => {
                        if let Ok(mut crcs) = flight.crcs.lock() {
                            crcs.insert(start, value);
                        }
                    }
                    Sum::Off => {}
                }
                if let Some((path, progress)) = &flight.landing.progress {
                    // Durable before recorded: a recorded part is really on disk. One record
                    // is written at a time (they share a temporary), in the order recorded.
                    // The record is written after the sync, in the same hand-off.
                    let _saving = flight.landing.saving.lock().await;
                    let record = progress.lock().ok().map(|mut progress| {
                        progress.done.insert(start);
                        progress.etag = flight.etag.lock().ok().and_then(|etag| etag.clone());
                        progress.clone()
                    });
                    let (file, dir, path) = (file.clone(), flight.dir.clone(), path.clone());
                    synced(move || {
                        file.sync_data()?;
                        let Some(record) = record else { return Ok(()) };
                        record.save(&dir, &path)?;
                        // A failure of another part (the object changed, the disk filled) may
                        // have removed the part file and its record while this one was being
                        // saved: this thread outlives the download it served (`synced`). The
                        // part file goes before its record, so seeing it unlinked here means
                        // the record just written is one nobody removes: it goes.
                        if std::os::unix::fs::MetadataExt::nlink(&file.metadata()?) == 0 {
                            let _ = dir.remove_file(&path);
                        }
                        Ok(())
                    })
                    .await
                    .map_err(Failure::io)?;
                }
                emit(
                    self.events,
                    Event::PartDone {
                        key: job.key.clone(),
                        start,
                    },
                );
                Ok::<(), Failure>(())
            })
            .buffer_unordered(config.part_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(stored)
    }

    /// One GET of the whole object, hashed as it streams: with the store's CRC where it keeps one
    /// over the whole object, else with MD5 for the ETag. The place in flight is given back when
    /// the body is in.
    async fn fetch_whole(
        &self,
        flight: &InFlight<'_>,
        slot: Slot<'_>,
    ) -> Result<(Sum, Option<Stored>), Failure> {
        let (job, config) = (flight.job, self.config);
        // With checksum mode on, the store sends the CRC it keeps, and the SDK checks it as the
        // body streams. Not for a multipart object: Garage sends a composite CRC bare, and the
        // SDK would take it for the whole object's.
        let checksum_mode = job
            .stamp
            .etag()
            .and_then(etag_parts)
            .is_none()
            .then_some(aws_sdk_s3::types::ChecksumMode::Enabled);
        let response = self
            .hedge
            .race(|| {
                self.client
                    .get_object()
                    .bucket(self.bucket)
                    .key(&job.key)
                    .set_version_id(job.version.clone())
                    .set_checksum_mode(checksum_mode.clone())
                    .send()
            })
            .await
            .map_err(s3_failure)?;
        let response_etag = response
            .e_tag()
            .map(|etag| etag.trim_matches('"').to_owned());
        unchanged(job, response_etag.as_deref(), response.content_length())?;
        if let Ok(mut version) = flight.version.lock() {
            version.clone_from(&response.version_id);
        }
        // A CRC over the whole object is checked instead of the ETag's MD5.
        let stored = Stored::from_headers(
            response.checksum_crc64_nvme(),
            response.checksum_crc32_c(),
            response.checksum_crc32(),
            response.checksum_type(),
        )
        .filter(|stored| match stored.cover {
            crc::Cover::Full => true,
            crc::Cover::Unsaid => response_etag.as_deref().and_then(etag_parts).is_none(),
            crc::Cover::Parts(_) => false,
        })
        .filter(|_| config.verify);
        if let Ok(mut etag) = flight.etag.lock() {
            *etag = response_etag;
        }
        let mut body = response.body;
        let mut digest = Hasher::new(config.verify, stored.map(|stored| stored.crc));
        let mut written = 0u64;
        let quiet = self.hedge.quiet();
        while let Some(chunk) = next_chunk(&mut body, quiet, || {
            format!("the body broke off after {written} bytes")
        })
        .await?
        {
            flight
                .landing
                .file
                .write_all_at(&chunk, written)
                .map_err(Failure::io)?;
            digest.update(&chunk);
            written += chunk.len() as u64;
            emit(self.events, Event::Bytes(chunk.len() as u64));
        }
        drop(slot);
        if written != job.size {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("got {written} bytes, the object has {}", job.size),
            ));
        }
        let streamed = match digest.finish() {
            Sum::Crc(value) => {
                if let Ok(mut crcs) = flight.crcs.lock() {
                    crcs.insert(0, value);
                }
                Sum::Off
            }
            sum => sum,
        };
        Ok((streamed, stored))
    }

    /// Bytes `start..=end` of the object into its file at the same offset, retried alone; the
    /// part's ETag must be the object's (else it changed between parts).
    async fn fetch_range(
        &self,
        flight: &InFlight<'_>,
        Range { start, end, crc }: Range,
    ) -> Result<Sum, Failure> {
        let job = flight.job;
        let (result, _) = retrying(self.config, &job.key, self.events, || async {
            // The place is held until the part's body is in.
            let _slot = self.flow.slot(end.saturating_sub(start) + 1).await;
            self.fetch_range_once(flight, Range { start, end, crc })
                .await
        })
        .await;
        result
    }

    /// One try at a part: a GET raced when late, its body written at its offset and hashed.
    async fn fetch_range_once(
        &self,
        flight: &InFlight<'_>,
        Range { start, end, crc }: Range,
    ) -> Result<Sum, Failure> {
        let job = flight.job;
        let range = format!("bytes={start}-{end}");
        let response = self
            .hedge
            .race(|| {
                self.client
                    .get_object()
                    .bucket(self.bucket)
                    .key(&job.key)
                    .set_version_id(job.version.clone())
                    .range(&range)
                    .send()
            })
            .await
            .map_err(s3_failure)?;
        let part_etag = response
            .e_tag()
            .map(|etag| etag.trim_matches('"').to_owned());
        let total = response
            .content_range()
            .and_then(|range| range.rsplit_once('/'))
            .and_then(|(_, total)| total.parse().ok());
        unchanged(job, part_etag.as_deref(), total)?;
        if let Ok(mut version) = flight.version.lock() {
            version.clone_from(&response.version_id);
        }
        if let Ok(mut etag) = flight.etag.lock() {
            match (etag.as_ref(), part_etag) {
                // The object changed between parts: the bytes would be a mix of two versions.
                // For good: every later part has the new ETag too, so a retry only fails again;
                // a new run lists the new version and fetches it whole.
                (Some(seen), Some(part)) if *seen != part => {
                    return Err(Failure::permanent(
                        ErrorKind::Changed,
                        format!(
                            "changed during the download (its parts had ETag `{seen}`, then `{part}`), so it did not land; run again to fetch the new version"
                        ),
                    ));
                }
                (None, part) => *etag = part,
                _ => {}
            }
        }
        let mut body = response.body;
        let mut offset = start;
        let mut digest = Hasher::new(self.config.verify, crc);
        let quiet = self.hedge.quiet();
        while let Some(chunk) =
            next_chunk(&mut body, quiet, || format!("part {start}-{end} broke off")).await?
        {
            if offset + chunk.len() as u64 > end + 1 {
                return Err(Failure::transient(
                    ErrorKind::Corrupt,
                    format!("part {start}-{end} is longer than asked"),
                ));
            }
            flight
                .landing
                .file
                .write_all_at(&chunk, offset)
                .map_err(Failure::io)?;
            digest.update(&chunk);
            offset += chunk.len() as u64;
            emit(self.events, Event::Bytes(chunk.len() as u64));
        }
        if offset != end + 1 {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("part {start}-{end} ended after {} bytes", offset - start),
            ));
        }
        Ok(digest.finish())
    }

    /// The bytes on disk: synced, their size checked, verified, and renamed into place. Bad
    /// bytes are removed, with the parts record: they are not worth resuming from.
    async fn land(
        &self,
        flight: InFlight<'_>,
        streamed: Sum,
        stored: Option<Stored>,
    ) -> Result<Outcome, Failure> {
        let InFlight {
            job,
            dir,
            name,
            ranged,
            etag,
            version,
            landing,
            md5s,
            crcs,
        } = flight;
        let Landing {
            path,
            progress,
            file,
            mut guard,
            ..
        } = landing;
        let length = durable_length(&file).await.map_err(Failure::io)?;
        if length != job.size {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("{length} bytes landed, the object has {}", job.size),
            ));
        }
        let etag = etag.into_inner().ok().flatten().unwrap_or_default();
        let seen = Parts {
            size: self.config.part_size,
            md5s: md5s.into_inner().unwrap_or_default(),
            crcs: Seen {
                part_size: if ranged {
                    self.config.part_size
                } else {
                    job.size
                },
                crcs: crcs.into_inner().unwrap_or_default(),
            },
        };
        let checksum = stored.map(|stored| stored.text());
        let checked = if self.config.verify {
            let object = Object {
                client: self.client,
                bucket: self.bucket,
                key: &job.key,
                version: job.version.as_deref(),
                size: job.size,
            };
            let landed = Landed {
                etag: &etag,
                file: &file,
                streamed_md5: match streamed {
                    Sum::Md5(md5) => Some(hex::encode(md5)),
                    _ => None,
                },
                stored,
                seen: &seen,
            };
            verify::verify(&object, landed).await
        } else {
            Ok(Check::None)
        };
        let check = match checked {
            Ok(check) => check,
            Err(failure) => {
                guard.armed = true;
                if let Some((record, _)) = &progress {
                    let _ = dir.remove_file(record);
                }
                return Err(failure);
            }
        };
        dir.rename(&path, &dir, &name).map_err(|error| {
            Failure::permanent(ErrorKind::Io, format!("cannot move into place: {error}"))
        })?;
        guard.armed = false;
        if let Some((record, _)) = &progress {
            let _ = dir.remove_file(record);
        }
        Ok(Outcome::Fetched {
            bytes: job.size,
            check,
            got: Got {
                etag,
                version_id: version.into_inner().ok().flatten(),
                checksum: checksum.filter(|_| check == Check::Crc),
            },
            cached: false,
        })
    }
}

/// A pinned object must still be what its manifest recorded: the GET's ETag (and the size the
/// store gives, where it gives one) are the recorded ones, else it changed and fails for good,
/// naming what changed.
fn unchanged(job: &Job, etag: Option<&str>, size: Option<i64>) -> Result<(), Failure> {
    let etag = etag.unwrap_or_default();
    let size = size.and_then(|size| u64::try_from(size).ok());
    if !job.pinned || (job.stamp.is(etag) && size.is_none_or(|size| size == job.size)) {
        return Ok(());
    }
    let now = match size {
        Some(size) => format!("ETag `{etag}`, {size} bytes"),
        None => format!("ETag `{etag}`"),
    };
    Err(Failure::permanent(
        ErrorKind::Changed,
        format!(
            "changed since the manifest was written: it recorded ETag `{}`, {} bytes, the store now has {now}; pull without --pin to take the new version, or restore the recorded one",
            job.stamp.text(),
            job.size
        ),
    ))
}

/// The temporary a fetch writes: for a large object with a stamp, a fixed hidden name and a
/// record of the parts already on disk (resumed when it matches this object and part size);
/// otherwise a fresh name, removed unless the fetch lands.
fn open_landing(
    dir: &Arc<Dir>,
    name: &str,
    job: &Job,
    ranged: bool,
    config: &Config,
) -> Result<Landing, Failure> {
    if ranged && job.stamp.is_known() {
        let (path, record) = resumable_names(name);
        // A record counts only beside its part file (at its full length from the first part
        // on): a record whose part file is gone would mark zeros as done.
        let previous = Progress::load(dir, &record).filter(|previous| {
            job.stamp.is(&previous.stamp)
                && previous.size == job.size
                && previous.part_size == config.part_size
                && dir.metadata(&path).is_ok_and(|part| part.len() == job.size)
        });
        let mut options = cap_std::fs::OpenOptions::new();
        options
            .write(true)
            .read(true)
            .create(true)
            .truncate(previous.is_none());
        // A resumable part file stays when the run stops; it is hidden and never looks complete.
        let (file, guard) = open_part(dir, &path, &options, false)?;
        let progress = previous.unwrap_or(Progress {
            stamp: job.stamp.text(),
            size: job.size,
            part_size: config.part_size,
            etag: None,
            done: Default::default(),
        });
        return Ok(Landing {
            path,
            progress: Some((record, Mutex::new(progress))),
            file: Arc::new(file.into_std()),
            guard,
            saving: tokio::sync::Mutex::new(()),
        });
    }
    let (path, file, guard) = fresh_part(dir, name)?;
    Ok(Landing {
        path,
        progress: None,
        file,
        guard,
        saving: tokio::sync::Mutex::new(()),
    })
}
