//! Objects for a caller that holds the bytes itself (the Python package's filesystem): a
//! listing, a HEAD, slices of objects read into memory, a body put, an object removed or
//! copied. Every request is retried as a transfer's are; reads fly under one in-flight
//! controller kept across calls (an epoch's reads go on from what the last one learned), are
//! raced when late, and are checked: a body shorter than the store said, or one whose MD5 or
//! CRC is not the store's, is an error, never bytes. (S3 keeps no checksum of part of an
//! object: a range that is not the whole object is checked for its length only.)

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use aws_sdk_s3::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
};
use bytes::Bytes;
use futures::{StreamExt, stream};

use crate::{
    Config, ErrorKind, NodeCache, ObjectError,
    cache::{Cache, Store, open_entry},
    flow::Flow,
    hedge::{Hedge, next_chunk},
    landing::synced,
    retry::{Failure, retrying, s3_failure},
    verify::{
        Hasher, Sum,
        crc::{Cover, Stored},
        etag_parts, is_md5, stored_checksum,
    },
};

/// What is known of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, without quotes.
    pub etag: Option<String>,
    /// When it was last written, in seconds since the epoch.
    pub modified: Option<i64>,
    /// Its version, where the store keeps versions and said it.
    pub version: Option<String>,
}

/// An object's bytes as they came off the connection: the body's chunks, not put together, so
/// that a caller copying them into a buffer of its own (a Python `bytes`) copies each byte once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Body {
    /// How many bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, chunk after chunk.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Copies the bytes into `out`, which is exactly [`Body::len`] long.
    pub fn copy_to(&self, out: &mut [u8]) {
        let mut at = 0;
        for chunk in &self.chunks {
            out[at..at + chunk.len()].copy_from_slice(chunk);
            at += chunk.len();
        }
    }

    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        if !chunk.is_empty() {
            self.chunks.push(chunk);
        }
    }
}

/// One page of a listing after another, put together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The objects, in key order.
    pub objects: Vec<Stat>,
    /// With `children`, the prefixes one level down (each ending in `/`).
    pub prefixes: Vec<String>,
}

/// Which bytes of an object a read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// All of them.
    Whole,
    /// From this offset to the end.
    From(u64),
    /// From the first offset up to, not including, the second.
    Between(u64, u64),
    /// The last this many.
    Last(u64),
}

/// One read: bytes of the object `key` (at `version`, or while its ETag is `etag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The object's key.
    pub key: String,
    /// The bytes wanted.
    pub span: Span,
    /// This version of it, where the store keeps versions.
    pub version: Option<String>,
    /// Only while its ETag is this one (a reader's later ranges must be of the object its first
    /// saw); another is [`ErrorKind::Changed`].
    pub etag: Option<String>,
}

impl Slice {
    /// All of `key`.
    pub fn whole(key: impl Into<String>) -> Slice {
        Slice::of(key, Span::Whole)
    }

    /// The `span` of `key`.
    pub fn of(key: impl Into<String>, span: Span) -> Slice {
        Slice {
            key: key.into(),
            span,
            version: None,
            etag: None,
        }
    }

    /// The Range header, or None for the whole object.
    fn range(&self) -> Option<String> {
        match self.span {
            Span::Whole | Span::From(0) => None,
            Span::From(start) => Some(format!("bytes={start}-")),
            Span::Between(start, end) => Some(format!("bytes={start}-{}", end.max(start + 1) - 1)),
            Span::Last(count) => Some(format!("bytes=-{count}")),
        }
    }

    /// Nothing to fetch: an empty span.
    fn is_empty(&self) -> bool {
        matches!(self.span, Span::Between(start, end) if end <= start)
            || matches!(self.span, Span::Last(0))
    }
}

/// A whole object as a listing gave it: [`Objects::read_listed`] may serve it from the node
/// cache, under this identity only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size, as listed.
    pub size: u64,
    /// Its ETag as listed, without quotes; None where the store lists none (then it is read
    /// from the store).
    pub etag: Option<String>,
}

/// One client's objects, in any of the buckets its credentials reach, with the in-flight
/// controller and the hedging its reads share.
pub struct Objects {
    client: Client,
    config: Config,
    flow: Arc<Flow>,
    hedge: Hedge,
    /// Node caches opened, by where and for which bucket (None: it cannot be used): opening
    /// one makes its directories and sweeps its stale temporaries and locks, a walk of the
    /// cache that a dataset's every batch would otherwise repeat.
    caches: Mutex<Vec<Opened>>,
}

/// A node cache as opened for a bucket; `cache` is None where it cannot be used.
struct Opened {
    config: NodeCache,
    bucket: String,
    cache: Option<Arc<Cache>>,
}

impl Objects {
    /// Objects reached through `client`, with `config`'s caps, retries and checks.
    pub fn new(client: &Client, config: Config) -> Objects {
        let (flow, client) = Flow::with_client(client, &config);
        // The engine's loop is the one retry loop: under the SDK's own (three tries, with
        // backoffs of up to seconds) a store that fails a request for good (s3s-fs's 500 to a
        // HEAD on a prefix) held a caller for twelve tries.
        let client = Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                .build(),
        );
        Objects {
            client,
            config,
            flow,
            hedge: Hedge::new(),
            caches: Mutex::new(Vec::new()),
        }
    }

    /// The node cache `config` for `bucket`, opened once.
    fn cache(&self, config: &NodeCache, bucket: &str) -> Option<Arc<Cache>> {
        let Ok(mut caches) = self.caches.lock() else {
            return Cache::open(config, bucket).map(Arc::new);
        };
        if let Some(opened) = caches
            .iter()
            .find(|opened| opened.config == *config && opened.bucket == bucket)
        {
            return opened.cache.clone();
        }
        let cache = Cache::open(config, bucket).map(Arc::new);
        caches.push(Opened {
            config: config.clone(),
            bucket: bucket.to_owned(),
            cache: cache.clone(),
        });
        cache
    }

    /// Every listed object whole, at once, as [`Objects::read`] reads: through the node cache
    /// `cache` (what a pull with `--cache` filled), as plx-init's pulls read it: from the cache
    /// where it holds the object under the ETag listed, this client's HEAD shows the store has
    /// that ETag still (the cache never gives what these credentials could not read), and the
    /// bytes match the store's CRC or the ETag's MD5 again (a damaged entry is removed and the
    /// object read from the store); else from the store.
    pub async fn read_listed(
        &self,
        bucket: &str,
        objects: &[Listed],
        cache: Option<&NodeCache>,
    ) -> Vec<Result<Body, ObjectError>> {
        // Where it cannot be used (said once), reads go to the store.
        let cache = cache.and_then(|config| self.cache(config, bucket));
        let cache = cache.as_deref();
        stream::iter(0..objects.len())
            .map(|index| async move {
                let listed = &objects[index];
                if let Some(cache) = cache
                    && let Some(body) = self.cached(cache, bucket, listed).await
                {
                    return Ok(body);
                }
                self.read_slice(bucket, &Slice::whole(listed.key.clone()))
                    .await
            })
            .buffered(self.config.request_cap().max(1))
            .collect()
            .await
    }

    /// A listed object from the node cache, checked as a pull's are (see
    /// [`Objects::read_listed`]); None when it is to be read from the store.
    async fn cached(&self, cache: &Cache, bucket: &str, listed: &Listed) -> Option<Body> {
        let etag = listed.etag.as_deref()?;
        let path = cache.listed(&listed.key, listed.size, etag)?;
        let store = Store {
            client: &self.client,
            bucket,
            flow: &self.flow,
            hedge: &self.hedge,
        };
        let head = store.head(&listed.key).await?;
        if head.etag.is_empty() || head.etag != etag {
            return None;
        }
        let stored = head.stored.filter(|stored| stored.cover == Cover::Full);
        // Off the runtime's workers: a read the page cache does not hold waits on the disk.
        let read = synced({
            let path = path.clone();
            move || {
                let mut read = Vec::new();
                std::io::Read::read_to_end(&mut open_entry(&path)?, &mut read).map(|_| read)
            }
        })
        .await
        .ok()?;
        let mut body = Body::default();
        body.push(Bytes::from(read));
        let whole = body.len() as u64 == listed.size;
        match matches(etag, stored, &body) {
            Some(true) if whole => return Some(body),
            // A multipart object whose store keeps no CRC over it: nothing here can check the
            // copy, so the store is asked (the entry may be good; a pull checks it by parts).
            None if whole => return None,
            _ => {}
        }
        tracing::warn!(
            key = %listed.key,
            "the node cache's copy does not match the store's checksum: discarded, read from the store"
        );
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Every object under `prefix` (a string prefix, as S3 has it); with `children`, only those
    /// one level down, and the prefixes below them; with `limit`, one page of at most that many
    /// (whether anything is there, without listing all of it).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        children: bool,
        limit: Option<i32>,
    ) -> Result<Listing, ObjectError> {
        let mut listing = Listing::default();
        let mut token = None;
        loop {
            let (page, _) = retrying(&self.config, prefix, &None, || async {
                self.client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.clone())
                    .set_max_keys(limit)
                    .set_delimiter(children.then(|| "/".to_owned()))
                    .send()
                    .await
                    .map_err(s3_failure)
            })
            .await;
            let page = page.map_err(|failure| failure.of(prefix))?;
            listing
                .objects
                .extend(page.contents().iter().filter_map(|object| {
                    Some(Stat {
                        key: object.key()?.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        etag: object.e_tag().map(unquoted),
                        modified: object.last_modified().map(|time| time.secs()),
                        version: None,
                    })
                }));
            listing.prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|prefix| prefix.prefix().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) && limit.is_none() => {
                    token = Some(next.to_owned());
                }
                _ => return Ok(listing),
            }
        }
    }

    /// What the store says of `key` (at `version`); with `once`, one try only (for a caller
    /// that has another way to learn what it needs, such as a listing beside it).
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        once: bool,
    ) -> Result<Stat, ObjectError> {
        let config = Config {
            attempts: if once { 1 } else { self.config.attempts },
            ..self.config.clone()
        };
        let (head, _) = retrying(&config, key, &None, || async {
            self.hedge
                .race(|| {
                    self.client
                        .head_object()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .send()
                })
                .await
                .map_err(s3_failure)
        })
        .await;
        let head = head.map_err(|failure| failure.of(key))?;
        Ok(Stat {
            key: key.to_owned(),
            size: head.content_length().unwrap_or(0).max(0) as u64,
            etag: head.e_tag().map(unquoted),
            modified: head.last_modified().map(|time| time.secs()),
            version: head.version_id().map(str::to_owned),
        })
    }

    /// Reads every slice at once, as many in flight as the controller finds pay, each tried
    /// again as an object of a download is; the results in the slices' order. A span past an
    /// object's end reads what there is (nothing, from past it).
    pub async fn read(&self, bucket: &str, slices: &[Slice]) -> Vec<Result<Body, ObjectError>> {
        // By index: a closure taking `&Slice` makes a future the compiler cannot prove `Send`
        // for every lifetime, and a Python call sends it to the runtime.
        stream::iter(0..slices.len())
            .map(|index| self.read_slice(bucket, &slices[index]))
            // Each waits for its place in flight: the controller, not this, bounds the requests.
            .buffered(self.config.request_cap().max(1))
            .collect()
            .await
    }

    /// One slice, tried again as the retry loop allows.
    async fn read_slice(&self, bucket: &str, slice: &Slice) -> Result<Body, ObjectError> {
        if slice.is_empty() {
            return Ok(Body::default());
        }
        let size = match slice.span {
            Span::Between(start, end) => end - start,
            Span::Last(count) => count,
            _ => 0,
        };
        let (result, _) = retrying(&self.config, &slice.key, &None, || async {
            let _slot = self.flow.slot(size).await;
            self.read_once(bucket, slice).await
        })
        .await;
        result.map_err(|failure| failure.of(&slice.key))
    }

    /// One try at a slice. A span the object cannot satisfy reads as a file does: nothing from
    /// past its end, and all of it where the last bytes asked for are more than it has (RFC
    /// 9110's rule, which moto and some stores answer with a 416 instead).
    async fn read_once(&self, bucket: &str, slice: &Slice) -> Result<Body, Failure> {
        match self.get(bucket, slice, slice.range()).await? {
            Some(body) => Ok(body),
            None if matches!(slice.span, Span::Last(_)) => {
                Ok(self.get(bucket, slice, None).await?.unwrap_or_default())
            }
            None => Ok(Body::default()),
        }
    }

    /// A GET of `range` (the whole object without one) raced when late, its body taken whole,
    /// its length and (for a whole object) its checksum checked; None when the range is
    /// unsatisfiable.
    async fn get(
        &self,
        bucket: &str,
        slice: &Slice,
        range: Option<String>,
    ) -> Result<Option<Body>, Failure> {
        let sent = self
            .hedge
            .race(|| {
                self.client
                    .get_object()
                    .bucket(bucket)
                    .key(&slice.key)
                    .set_version_id(slice.version.clone())
                    .set_if_match(slice.etag.as_ref().map(|etag| format!("\"{etag}\"")))
                    .set_range(range.clone())
                    .send()
            })
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return unsatisfiable(error).map(|()| None),
        };
        let length = response.content_length().unwrap_or(0).max(0) as u64;
        let etag = response.e_tag().map(unquoted);
        // A store that ignores If-Match (s3s-fs does) answers a read pinned to an ETag with
        // whatever it has now: one file read in ranges would mix two versions.
        if let (Some(want), Some(got)) = (&slice.etag, &etag)
            && want != got
        {
            return Err(Failure::permanent(
                ErrorKind::Changed,
                format!(
                    "the object changed while it was read (its ETag was `{want}` when first read, `{got}` now); open it again to read the new version"
                ),
            ));
        }
        // A range's length is the one its Content-Range gives; a whole body's, Content-Length.
        let expected = match (&range, response.content_range()) {
            (Some(_), Some(told)) => range_length(told).unwrap_or(length),
            _ => length,
        };
        // A range that turns out to be all of the object (a file read in blocks larger than
        // it) is checked as a whole body is; S3 keeps no checksum of a part of an object, so
        // any other range is checked for its length only.
        let whole = range.is_none() || response.content_range().is_some_and(covers_all);
        let body = take(response.body, expected, self.hedge.quiet()).await?;
        if whole && self.config.verify {
            self.check(bucket, slice, etag.as_deref(), &body).await?;
        }
        Ok(Some(body))
    }

    /// A whole object's bytes against the ETag's MD5 (a single-part object) or the CRC the store
    /// keeps over the whole object (a multipart one, whose ETag is no checksum of the bytes).
    async fn check(
        &self,
        bucket: &str,
        slice: &Slice,
        etag: Option<&str>,
        body: &Body,
    ) -> Result<(), Failure> {
        let Some(etag) = etag.map(str::to_ascii_lowercase) else {
            return Ok(());
        };
        let stored = if etag_parts(&etag).is_some() {
            stored_checksum(
                &self.client,
                &self.hedge,
                bucket,
                &slice.key,
                slice.version.as_deref(),
            )
            .await
            .filter(|stored| stored.cover == Cover::Full)
        } else {
            None
        };
        if matches(&etag, stored, body) != Some(false) {
            Ok(())
        } else {
            Err(Failure::transient(
                ErrorKind::Corrupt,
                format!(
                    "the {} bytes read do not match the store's {} (read again)",
                    body.len(),
                    if stored.is_some() { "CRC" } else { "ETag" }
                ),
            ))
        }
    }

    /// Writes `body` as the object `key`, its CRC32C sent for the store to check.
    pub async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<Stat, ObjectError> {
        let crc = crate::verify::crc::crc32c(&body);
        let (put, _) = retrying(&self.config, key, &None, || async {
            let _slot = self.flow.slot(body.len() as u64).await;
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .checksum_crc32_c(&crc)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map_err(s3_failure)
        })
        .await;
        let put = put.map_err(|failure| failure.of(key))?;
        Ok(Stat {
            key: key.to_owned(),
            size: body.len() as u64,
            etag: put.e_tag().map(unquoted),
            modified: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|since| since.as_secs() as i64),
            version: put.version_id().map(str::to_owned),
        })
    }

    /// Removes the object `key` (removing one that is not there is no error, as in S3).
    pub async fn remove(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let (removed, _) = retrying(&self.config, key, &None, || async {
            self.client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(s3_failure)
        })
        .await;
        removed.map(drop).map_err(|failure| failure.of(key))
    }

    /// Copies the object `from` to `to` within the store (one request, up to 5 GiB).
    pub async fn copy(&self, bucket: &str, from: &str, to: &str) -> Result<(), ObjectError> {
        let source = format!("{bucket}/{}", encoded(from));
        let (copied, _) = retrying(&self.config, from, &None, || async {
            self.client
                .copy_object()
                .bucket(bucket)
                .key(to)
                .copy_source(&source)
                .send()
                .await
                .map_err(s3_failure)
        })
        .await;
        copied.map(drop).map_err(|failure| failure.of(from))
    }
}

/// A GET's error: Ok for a range the object cannot satisfy (416), a failure otherwise.
fn unsatisfiable<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Result<(), Failure> {
    let status = error
        .raw_response()
        .map(|response| response.status().as_u16());
    if status == Some(416) || error.code() == Some("InvalidRange") {
        return Ok(());
    }
    if status == Some(412) {
        return Err(Failure::permanent(
            ErrorKind::Changed,
            "the object changed while it was read (its ETag is not the one first read); open it again to read the new version",
        ));
    }
    Err(s3_failure(error))
}

/// The body, all of it: `expected` bytes, or a transient failure (a short body is never
/// returned). A body silent for `quiet` is given up.
async fn take(
    mut body: ByteStream,
    expected: u64,
    quiet: std::time::Duration,
) -> Result<Body, Failure> {
    let mut bytes = Body::default();
    while let Some(chunk) = next_chunk(&mut body, quiet, || {
        format!(
            "the body broke off after {} of {expected} bytes",
            bytes.len()
        )
    })
    .await?
    {
        bytes.push(chunk);
    }
    if bytes.len() as u64 != expected {
        return Err(Failure::transient(
            ErrorKind::Corrupt,
            format!("got {} bytes, the store said {expected}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Whether `body` is the object the store keeps: against the CRC over the whole object where
/// the store keeps one, else the MD5 a single-part ETag is; None when neither can tell.
fn matches(etag: &str, stored: Option<Stored>, body: &Body) -> Option<bool> {
    let etag = etag.to_ascii_lowercase();
    if stored.is_none() && !is_md5(&etag) {
        return None;
    }
    let mut hasher = Hasher::new(true, stored.map(|stored| stored.crc));
    for chunk in body.chunks() {
        hasher.update(chunk);
    }
    match (hasher.finish(), stored) {
        (Sum::Crc(value), Some(stored)) => Some(value == stored.value),
        (Sum::Md5(md5), _) => Some(hex::encode(md5) == etag),
        _ => None,
    }
}

/// A Content-Range (`bytes 0-99/1000`): its first and last byte, and the object's size where
/// the store gave it (`*` where it did not).
fn content_range(told: &str) -> Option<(u64, u64, Option<u64>)> {
    let (span, total) = told.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, total.parse().ok()))
}

/// Whether a Content-Range (`bytes 0-999/1000`) covers the whole object.
fn covers_all(told: &str) -> bool {
    content_range(told).is_some_and(|(start, end, total)| start == 0 && Some(end + 1) == total)
}

/// The length a Content-Range (`bytes 0-99/1000`) covers.
fn range_length(told: &str) -> Option<u64> {
    let (start, end, _) = content_range(told)?;
    Some(end.checked_sub(start)? + 1)
}

fn unquoted(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// A key as CopyObject's source header takes it: percent-encoded but for `/`.
fn encoded(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_range_headers() {
        let range = |span| Slice::of("k", span).range();
        assert_eq!(range(Span::Whole), None);
        assert_eq!(range(Span::From(0)), None);
        assert_eq!(range(Span::From(5)).as_deref(), Some("bytes=5-"));
        assert_eq!(range(Span::Between(5, 10)).as_deref(), Some("bytes=5-9"));
        assert_eq!(range(Span::Last(3)).as_deref(), Some("bytes=-3"));
        assert!(Slice::of("k", Span::Between(5, 5)).is_empty());
    }

    #[test]
    fn a_range_is_the_whole_object_only_from_its_first_byte_to_its_last() {
        assert!(covers_all("bytes 0-999/1000"));
        assert!(!covers_all("bytes 0-998/1000"));
        assert!(!covers_all("bytes 1-999/1000"));
        assert!(!covers_all("bytes 0-999/*"));
        assert!(!covers_all("nonsense"));
    }

    #[test]
    fn content_range_lengths() {
        assert_eq!(range_length("bytes 0-99/1000"), Some(100));
        assert_eq!(range_length("bytes 5-5/6"), Some(1));
        assert_eq!(range_length("bytes */1000"), None);
    }

    #[test]
    fn copy_sources_are_encoded_but_for_slashes() {
        assert_eq!(encoded("a b/ü+x"), "a%20b/%C3%BC%2Bx");
    }
}
