//! Uploads: a file or a directory tree to a prefix; multipart above the threshold, parts in
//! parallel; as many requests in flight as the store rewards, found as downloads find theirs.

use std::{
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    time::Instant,
};

use aws_sdk_s3::{
    Client,
    primitives::ByteStream,
    types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart},
};
use futures::{StreamExt, TryStreamExt, stream};

use crate::{
    Config, Error, ErrorKind, Event, Events, ObjectError, Summary, Upload,
    config::fitted,
    event::emit,
    flow::Flow,
    landing::synced,
    retry::{Failure, retrying, s3_failure},
    verify::{
        crc::{crc32c_of_file, read_range},
        is_md5,
    },
};

/// The smallest part S3 takes.
const MIN_PART: u64 = 5 * 1024 * 1024;

/// Files up to this size are read once into memory, hashed and sent from there.
const IN_MEMORY: u64 = 256 * 1024;

/// Uploads the request's `source` (a file, or every regular file under a directory; symlinks are
/// not followed) to its `prefix` in its `bucket`: a file as `prefix/<its name>`, a directory's
/// files as `prefix/<relative path>` with `/` separators.
pub async fn upload(
    client: &Client,
    request: &Upload,
    config: &Config,
    events: &Events,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let Upload {
        bucket,
        prefix,
        source,
        files: named,
    } = request;
    let bucket = bucket.as_str();
    let config = &*fitted(config, false);
    // Requests in flight are found from what they measure, within `requests` and the memory
    // bound, as a download's are (`flow.rs`): a fixed number is too few for a store far away
    // (10,000 PUTs 50 ms away at 32 at once take 15.6 s of round trips alone). The upload's own
    // client tells the controller of every 503.
    let (flow, client) = Flow::with_client(client, config);
    let client = &client;
    let flow = &*flow;
    // Large files at most `concurrency` at once, as a download's: each is a multipart upload the
    // store keeps open (and bills its parts) until completed or aborted, and a run cut short
    // leaves no more of them behind than this.
    let large = &tokio::sync::Semaphore::new(config.concurrency.max(1));
    let mut files = named.clone();
    let mut failures = Vec::new();
    if named.is_empty() {
        // A single file keeps its name under the prefix; a directory's files their relative
        // paths.
        let top = if source.is_file() {
            source.file_name().map(Path::new).unwrap_or(Path::new(""))
        } else {
            Path::new("")
        };
        collect(source, top, &mut files, &mut failures);
    }
    let prefix = prefix.trim_matches('/');
    let results: Vec<Result<(u64, u32), ObjectError>> = stream::iter(files)
        .map(|(path, relative)| {
            let key = if prefix.is_empty() {
                relative.clone()
            } else {
                format!("{prefix}/{relative}")
            };
            async move {
                let target = Target {
                    client,
                    bucket,
                    key: &key,
                    config,
                    events,
                    flow,
                    large,
                    parts_retried: AtomicU32::new(0),
                };
                // A whole object again on a transient failure (a reset, a 5xx, a server
                // restarting): the SDK's own few quick attempts do not outlast a restart.
                let (result, retries) =
                    retrying(config, &key, events, || upload_one(&target, &path)).await;
                let retries = retries + target.parts_retried.load(Ordering::Relaxed);
                result
                    .map(|bytes| (bytes, retries))
                    .map_err(|failure| failure.of(&format!("s3://{bucket}/{key}")))
            }
        })
        // Files wait here for a place in flight; a file is read only once it has one.
        .buffer_unordered(config.request_cap())
        .collect()
        .await;
    let mut summary = Summary {
        steps: flow.steps(),
        ..Summary::default()
    };
    for result in results {
        match result {
            Ok((bytes, retries)) => {
                summary.objects += 1;
                summary.bytes += bytes;
                summary.retried += u64::from(retries);
            }
            Err(error) => failures.push(error),
        }
    }
    summary.finish(failures, started)
}

fn collect(
    path: &Path,
    relative: &Path,
    files: &mut Vec<(std::path::PathBuf, String)>,
    failures: &mut Vec<ObjectError>,
) {
    let fail = |message: String| ObjectError {
        kind: ErrorKind::Io,
        key: path.display().to_string(),
        message,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) => return failures.push(fail(error.to_string())),
    };
    if meta.is_file() {
        let key = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        files.push((path.to_path_buf(), key));
    } else if meta.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    collect(
                        &entry.path(),
                        &relative.join(entry.file_name()),
                        files,
                        failures,
                    );
                }
            }
            Err(error) => failures.push(fail(error.to_string())),
        }
    }
}

async fn upload_one(target: &Target<'_>, path: &Path) -> Result<u64, Failure> {
    let (key, config, events) = (target.key, target.config, target.events);
    let size = std::fs::metadata(path).map_err(Failure::io)?.len();
    let multipart = size >= config.multipart_threshold;
    // A large file waits for its place among the large before it starts.
    let _large = if multipart {
        target.large.acquire().await.ok()
    } else {
        None
    };
    emit(
        events,
        Event::Started {
            key: key.to_owned(),
            size,
        },
    );
    // Every request carries the CRC32C of its bytes as a header (not a trailer, which older
    // stores refuse): the store checks what arrived, and keeps a checksum that makes the next
    // download's check cheap.
    if multipart {
        put_parts(target, path, size).await?;
    } else {
        put_whole(target, path, size).await?;
    }
    emit(
        events,
        Event::Done {
            key: key.to_owned(),
        },
    );
    Ok(size)
}

/// Where one file goes, and what its requests share.
struct Target<'a> {
    client: &'a Client,
    bucket: &'a str,
    key: &'a str,
    config: &'a Config,
    events: &'a Events,
    flow: &'a Flow,
    /// Large files in flight (`Config::concurrency`).
    large: &'a tokio::sync::Semaphore,
    /// Parts sent again, for the summary.
    parts_retried: AtomicU32,
}

/// The CRC32C of `length` bytes of `path` from `offset`, read on a blocking thread: an 8 MiB
/// part takes milliseconds to read and hash, which on the runtime's worker stalled every other
/// request it drives.
///
/// The body is then read a second time, from the page cache, rather than kept from this read:
/// S3 takes the checksum as a header, before the body, so the same read would hold the whole
/// part in memory (8 parts of 8 MiB in flight per file, against a 28 MiB bound for all
/// requests), where a second read from the page cache costs about a memory copy. A trailing
/// checksum would need one read, but older stores refuse trailers (`upload_one`).
async fn crc_off_worker(path: &Path, offset: u64, length: u64) -> Result<String, Failure> {
    let path = path.to_path_buf();
    synced(move || {
        std::fs::File::open(&path).and_then(|file| crc32c_of_file(&file, offset, length))
    })
    .await
    .map_err(Failure::io)
}

/// `length` bytes of `path` from `offset` as a request body, read as it is sent. In the SDK's
/// reads of 64 KiB: reads of 128 KiB (half as many trips to a blocking thread) saved no CPU on
/// W5 and held about 10 MiB more (2026-12-07).
async fn file_body(path: &Path, offset: u64, length: u64) -> Result<ByteStream, Failure> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(aws_smithy_types::byte_stream::Length::Exact(length))
        .build()
        .await
        .map_err(|error| Failure::io(std::io::Error::other(error)))
}

/// One PutObject, from memory when the file is small.
async fn put_whole(target: &Target<'_>, path: &Path, size: u64) -> Result<(), Failure> {
    // Taken before the file is read: a file waiting for its place holds no memory.
    let _slot = target.flow.slot(size).await;
    let (crc32c, body) = if size <= IN_MEMORY {
        let bytes = std::fs::read(path).map_err(Failure::io)?;
        (crate::verify::crc::crc32c(&bytes), ByteStream::from(bytes))
    } else {
        let crc32c = crc_off_worker(path, 0, size).await?;
        (crc32c, file_body(path, 0, size).await?)
    };
    let put = target
        .client
        .put_object()
        .bucket(target.bucket)
        .key(target.key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .checksum_crc32_c(&crc32c)
        .body(body)
        .send()
        .await
        .map_err(s3_failure)?;
    let sent = Sent {
        path,
        offset: 0,
        length: size,
        crc32c: &crc32c,
    };
    sent.kept(put.checksum_crc32_c(), put.e_tag()).await
}

/// What one request sent: `length` bytes of `path` from `offset`, with their CRC32C.
struct Sent<'a> {
    path: &'a Path,
    offset: u64,
    length: u64,
    crc32c: &'a str,
}

impl Sent<'_> {
    /// Whether the store kept the bytes that were sent, from its answer. A store that checks
    /// the CRC32C sent with them answers with it (S3, and it would have refused other bytes);
    /// one that ignores it (s3s-fs takes a part's bytes as they come) says only its ETag, the
    /// MD5 of what it received, so the sent bytes' MD5 is computed to compare (off the worker;
    /// only for such stores). An ETag that is not an MD5 (S3 with KMS encryption) cannot tell.
    /// A difference is a transient failure: sent again, the bytes arrive whole.
    async fn kept(&self, crc32c: Option<&str>, etag: Option<&str>) -> Result<(), Failure> {
        let damaged = |what: String| {
            Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("the store kept other bytes than were sent ({what}): damaged on the way"),
            ))
        };
        if let Some(kept) = crc32c {
            return if kept == self.crc32c {
                Ok(())
            } else {
                damaged(format!("CRC32C {kept}, sent {}", self.crc32c))
            };
        }
        let Some(etag) = etag
            .map(|etag| etag.trim_matches('"').to_ascii_lowercase())
            .filter(|etag| is_md5(etag))
        else {
            return Ok(());
        };
        let (path, offset, length) = (self.path.to_path_buf(), self.offset, self.length);
        let md5 = synced(move || {
            use md5::Digest;
            let file = std::fs::File::open(&path)?;
            let mut md5 = md5::Md5::new();
            read_range(&file, offset, length, |bytes| md5.update(bytes))?;
            Ok(hex::encode(md5.finalize()))
        })
        .await
        .map_err(Failure::io)?;
        if md5 == etag {
            Ok(())
        } else {
            damaged(format!("its ETag {etag}, the MD5 sent {md5}"))
        }
    }
}

/// One part of the upload `upload_id`: part `number`, `length` bytes of `path` from `offset`,
/// checked as kept by the store.
async fn send_part(
    target: &Target<'_>,
    path: &Path,
    upload_id: &str,
    (number, offset, length): (i32, u64, u64),
) -> Result<CompletedPart, Failure> {
    let _slot = target.flow.slot(length).await;
    let crc32c = crc_off_worker(path, offset, length).await?;
    let body = file_body(path, offset, length).await?;
    let part = target
        .client
        .upload_part()
        .bucket(target.bucket)
        .key(target.key)
        .upload_id(upload_id)
        .part_number(number)
        .checksum_crc32_c(&crc32c)
        .body(body)
        .send()
        .await
        .map_err(s3_failure)?;
    let sent = Sent {
        path,
        offset,
        length,
        crc32c: &crc32c,
    };
    sent.kept(part.checksum_crc32_c(), part.e_tag()).await?;
    emit(target.events, Event::Bytes(length));
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(part.e_tag().map(str::to_owned))
        .checksum_crc32_c(crc32c)
        .build())
}

/// A multipart upload, its parts in parallel, aborted when one fails (parts of an abandoned
/// upload cost storage until aborted).
async fn put_parts(target: &Target<'_>, path: &Path, size: u64) -> Result<(), Failure> {
    // S3 refuses parts under 5 MiB (but the last).
    let part_size = target.config.part_size.max(MIN_PART);
    let (client, bucket, key) = (target.client, target.bucket, target.key);
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .map_err(s3_failure)?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let parts: Vec<(i32, u64, u64)> = (0..size.div_ceil(part_size))
        .map(|index| {
            (
                (index + 1) as i32,
                index * part_size,
                part_size.min(size - index * part_size),
            )
        })
        .collect();
    let uploaded: Result<Vec<CompletedPart>, Failure> = stream::iter(parts)
        .map(|(number, offset, length)| {
            let upload_id = upload_id.clone();
            async move {
                // A part again on a transient failure, within the same upload: a whole object
                // again would send every part anew (a new upload's parts are new requests).
                let (part, retries) = retrying(target.config, key, target.events, || {
                    send_part(target, path, &upload_id, (number, offset, length))
                })
                .await;
                target.parts_retried.fetch_add(retries, Ordering::Relaxed);
                part
            }
        })
        // Unordered: a slow part holds its own place only, not the start of the parts behind it.
        .buffer_unordered(target.config.part_concurrency.max(1))
        .try_collect()
        .await;
    match uploaded {
        Ok(mut parts) => {
            // CompleteMultipartUpload takes its parts in ascending order.
            parts.sort_unstable_by_key(|part| part.part_number());
            client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(s3_failure)?;
        }
        Err(error) => {
            // Parts of an abandoned upload cost storage until aborted.
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(error);
        }
    }
    Ok(())
}
