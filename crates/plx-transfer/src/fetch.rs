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
    Config, ErrorKind, Event, Events, Summary, emit,
    flow::{Flow, Slot},
    hedge::Hedge,
    landing::{Temporary, open_part, part_name},
    path::Parents,
    plan::Job,
    retry::{Failure, retrying, s3_failure},
    state::{Progress, State},
    verify::{
        self, Check, Hasher, Landed, Object, Parts, Sum,
        crc::{self, Crc, Seen, Stored},
        etag_parts, stored_checksum,
    },
};

/// How one object ended.
pub(crate) enum Outcome {
    Fetched { bytes: u64, check: Check },
    Skipped,
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
}

/// The file a fetch writes under its hidden name, and the guard that removes it on failure.
struct Landing {
    path: PathBuf,
    /// A large object's record of the parts on disk, beside its fixed part name.
    progress: Option<(PathBuf, Mutex<Progress>)>,
    file: Arc<std::fs::File>,
    guard: Temporary,
}

/// One object in flight: where its bytes go and what was learned of them on the way.
struct InFlight<'a> {
    job: &'a Job,
    dir: Arc<Dir>,
    name: String,
    ranged: bool,
    /// The GET's own ETag, which the bytes must match (listings may lack it, or be stale).
    etag: Mutex<Option<String>>,
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
            });
        }
        let landed = self
            .state
            .lock()
            .ok()
            .and_then(|state| state.files.get(&job.path.display().to_string()).cloned());
        if let Some(landed) = landed {
            let same = landed.etag == job.stamp && landed.size == job.size && !job.stamp.is_empty();
            let present = self
                .dir
                .symlink_metadata(&job.path)
                .is_ok_and(|meta| meta.is_file() && meta.len() == job.size);
            if same && present {
                return Ok(Outcome::Skipped);
            }
        }
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

    /// A GET's failure, read once where the request failed; a 503 SlowDown also means fewer
    /// requests in flight, at once.
    fn request_failed<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Failure {
        let failure = s3_failure(error);
        if failure.busy {
            self.flow.slow_down();
        }
        failure
    }

    async fn fetch_once(&self, job: &Job) -> Result<Outcome, Failure> {
        let config = self.config;
        let ranged = job.size >= config.multipart_threshold && job.size > config.part_size;
        // A small object waits for a place in flight before it opens a file; a large one for a
        // place among the large, and its parts each for a place in flight.
        let (slot, _large) = if ranged {
            (None, self.large.acquire().await.ok())
        } else {
            (Some(self.flow.slot().await), None)
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
            landing,
            md5s: Mutex::default(),
            crcs: Mutex::default(),
        };
        let (streamed, stored) = match slot {
            None => (Sum::Off, self.fetch_parts(&flight).await?),
            Some(slot) => self.fetch_whole(&flight, slot).await?,
        };
        self.land(flight, streamed, stored).await
    }

    /// A large object in ranged parts, in parallel, each recorded once it is durable so that a
    /// rerun resumes; also the CRC the store keeps for the whole object, if any.
    async fn fetch_parts(&self, flight: &InFlight<'_>) -> Result<Option<Stored>, Failure> {
        let (job, config) = (flight.job, self.config);
        let stored = if config.verify {
            stored_checksum(self.client, self.bucket, &job.key).await
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
                    // Durable before recorded: a recorded part is really on disk.
                    file.sync_data().map_err(Failure::io)?;
                    if let Ok(mut progress) = progress.lock() {
                        progress.done.insert(start);
                        progress.etag = flight.etag.lock().ok().and_then(|etag| etag.clone());
                        progress.save(&flight.dir, path).map_err(Failure::io)?;
                    }
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
        let checksum_mode = etag_parts(&job.stamp)
            .is_none()
            .then_some(aws_sdk_s3::types::ChecksumMode::Enabled);
        let response = self
            .hedge
            .race(|| {
                self.client
                    .get_object()
                    .bucket(self.bucket)
                    .key(&job.key)
                    .set_checksum_mode(checksum_mode.clone())
                    .send()
            })
            .await
            .map_err(|error| self.request_failed(error))?;
        let response_etag = response
            .e_tag()
            .map(|etag| etag.trim_matches('"').to_owned());
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
            let _slot = self.flow.slot().await;
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
                    .range(&range)
                    .send()
            })
            .await
            .map_err(|error| self.request_failed(error))?;
        let part_etag = response
            .e_tag()
            .map(|etag| etag.trim_matches('"').to_owned());
        if let Ok(mut etag) = flight.etag.lock() {
            match (etag.as_ref(), part_etag) {
                // The object changed between parts: the bytes would be a mix of two versions.
                (Some(seen), Some(part)) if *seen != part => {
                    return Err(Failure::transient(
                        ErrorKind::Corrupt,
                        format!("the object changed during the download (ETag {seen} then {part})"),
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
            landing,
            md5s,
            crcs,
        } = flight;
        let Landing {
            path,
            progress,
            file,
            mut guard,
        } = landing;
        file.sync_all().map_err(Failure::io)?;
        let length = file.metadata().map_err(Failure::io)?.len();
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
        let checked = if self.config.verify {
            let object = Object {
                client: self.client,
                bucket: self.bucket,
                key: &job.key,
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
        })
    }
}

/// The body's next chunk; a body silent for `quiet` is given up (a transient failure, so the
/// retry loop fetches again at once instead of waiting out the SDK's stall protection).
async fn next_chunk(
    body: &mut aws_sdk_s3::primitives::ByteStream,
    quiet: std::time::Duration,
    what: impl Fn() -> String,
) -> Result<Option<bytes::Bytes>, Failure> {
    match tokio::time::timeout(quiet, body.try_next()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(error)) => Err(Failure::transient(
            ErrorKind::Transport,
            format!("{}: {error}", what()),
        )),
        Err(_) => Err(Failure::transient(
            ErrorKind::Transport,
            format!(
                "{}: no byte for {:.1} s (a stalled response; fetched again)",
                what(),
                quiet.as_secs_f64()
            ),
        )),
    }
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
    if ranged && !job.stamp.is_empty() {
        let path = PathBuf::from(format!(".{name}.plx-part"));
        let record = PathBuf::from(format!(".{name}.plx-parts"));
        let previous = Progress::load(dir, &record).filter(|previous| {
            previous.stamp == job.stamp
                && previous.size == job.size
                && previous.part_size == config.part_size
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
            stamp: job.stamp.clone(),
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
        });
    }
    let path = part_name(name);
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).read(true).create_new(true);
    let (file, guard) = open_part(dir, &path, &options, true)?;
    Ok(Landing {
        path,
        progress: None,
        file: Arc::new(file.into_std()),
        guard,
    })
}
