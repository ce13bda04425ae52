//! Downloads: plan (list and head), then fetch every object in parallel, each to a temporary name
//! in its final directory, verified, then renamed.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use aws_sdk_s3::{
    Client,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
};
use cap_std::{ambient_authority, fs::Dir};
use futures::{StreamExt, TryStreamExt, stream};
use globset::{Glob, GlobSet, GlobSetBuilder};
use md5::{Digest, Md5};

use crate::{
    Config, Error, ErrorKind, Event, Events, ObjectError, Summary,
    checksum::{self, Crc, Seen, Stored},
    emit, object,
    path::{Parents, local_path, under},
    state::{Journal, Landed, State},
};

/// A fresh hidden name beside `name` for its bytes until they are checked:
/// `.name.<nonce>.plx-part`, the form [`sweep`] removes when a killed run left one.
pub(crate) fn part_name(name: &str) -> PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    PathBuf::from(format!(".{name}.{nonce:x}.plx-part"))
}

/// Removes the temporaries a killed run left beside this run's files (`.name.<nonce>.plx-part`;
/// a large object's resumable `.name.plx-part` has no nonce and stays). Every fetch of this run
/// has ended, so none of them is being written.
fn sweep<'a>(dir: &Dir, jobs: impl Iterator<Item = &'a Job>) {
    let mut names: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for job in jobs.filter(|job| !job.marker) {
        let parent = job.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(name) = job.path.file_name() {
            names
                .entry(parent)
                .or_default()
                .insert(name.to_string_lossy().into_owned());
        }
    }
    for (parent, files) in names {
        let listing = if parent.as_os_str().is_empty() {
            dir.entries()
        } else {
            dir.read_dir(&parent)
        };
        for entry in listing.into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(".plx-part"))
                .and_then(|rest| rest.rsplit_once('.'))
                .is_some_and(|(file, nonce)| {
                    files.contains(file)
                        && nonce.len() >= 12
                        && nonce.chars().all(|c| c.is_ascii_hexdigit())
                });
            if stale {
                let _ = dir.remove_file(parent.join(&name));
            }
        }
    }
}

/// Objects listed and waiting to be fetched: listing runs ahead of fetching by this much.
const PLANNED: usize = 4096;
/// Entries listed at once (each a connection of its own; see [`Config::open_files`]).
pub(crate) const PLANNERS: usize = 8;
/// Named keys of one directory looked up with one listing of it rather than one each, from this
/// many; each page of that listing may cost at most this many single lookups.
const SIBLINGS: usize = 4;

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
}

struct Job {
    key: String,
    size: u64,
    /// The listing's ETag, or `lm:<last modified>` where the server lists none (s3s-fs): what a
    /// rerun compares to decide that the local file is still current.
    stamp: String,
    path: PathBuf,
    marker: bool,
}

fn stamp(etag: Option<&str>, last_modified: Option<&aws_sdk_s3::primitives::DateTime>) -> String {
    match (
        etag.map(|etag| etag.trim_matches('"'))
            .filter(|etag| !etag.is_empty()),
        last_modified,
    ) {
        (Some(etag), _) => etag.to_owned(),
        (None, Some(time)) => format!("lm:{}", time.as_nanos()),
        (None, None) => String::new(),
    }
}

enum Outcome {
    Fetched { bytes: u64, check: Check },
    Skipped,
}

pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    transient: bool,
}

impl Failure {
    fn permanent(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            transient: false,
        }
    }

    fn transient(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            transient: true,
        }
    }

    pub(crate) fn io(error: std::io::Error) -> Failure {
        Failure::permanent(ErrorKind::Io, error.to_string())
    }
}

pub(crate) fn s3_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Failure {
    match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("").to_owned();
            let text = format!("{status} {code}").trim().to_owned();
            match status {
                404 => Failure::permanent(ErrorKind::NotFound, format!("does not exist ({text})")),
                403 => Failure::permanent(ErrorKind::Denied, format!("access denied ({text})")),
                500..=599 => {
                    Failure::transient(ErrorKind::Transport, format!("server error ({text})"))
                }
                _ if code == "SlowDown" || code == "RequestTimeout" => {
                    Failure::transient(ErrorKind::Transport, text)
                }
                _ => Failure::permanent(ErrorKind::Transport, format!("refused ({text})")),
            }
        }
        _ => Failure::transient(
            ErrorKind::Transport,
            DisplayErrorContext(&error).to_string(),
        ),
    }
}

fn join_key(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{rest}"),
    }
}

pub(crate) fn globs(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(|error| format!("glob `{pattern}`: {error}"))?);
    }
    builder.build().map(Some).map_err(|error| error.to_string())
}

/// Downloads `request` into `destination` (created if missing). Every object lands complete and
/// verified or not at all; a rerun skips what a previous run landed; no key can write outside
/// `destination`. Fails with every failed object named when any fails.
pub async fn download(
    client: &Client,
    request: &Download,
    destination: &Path,
    config: &Config,
    events: &Events,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let config = &*crate::fitted(config);
    let fail = |failures: Vec<ObjectError>, summary: Summary| Err(Error { failures, summary });
    if let Err(error) = std::fs::create_dir_all(destination) {
        return fail(
            vec![object(
                ErrorKind::Io,
                &destination.display().to_string(),
                format!("cannot create the destination: {error}"),
            )],
            Summary::default(),
        );
    }
    let dir = match Dir::open_ambient_dir(destination, ambient_authority()) {
        Ok(dir) => Arc::new(dir),
        Err(error) => {
            return fail(
                vec![object(
                    ErrorKind::Io,
                    &destination.display().to_string(),
                    format!("cannot open the destination: {error}"),
                )],
                Summary::default(),
            );
        }
    };
    let (include, exclude) = match (globs(&request.include), globs(&request.exclude)) {
        (Ok(include), Ok(exclude)) => (include, exclude),
        (Err(error), _) | (_, Err(error)) => {
            return fail(
                vec![object(ErrorKind::NotFound, "", error)],
                Summary::default(),
            );
        }
    };

    // Fetching starts with the first listing page: a long listing, or many single keys each
    // looked up, no longer holds back the first byte.
    let (planned, queue) = tokio::sync::mpsc::channel::<Job>(PLANNED);
    let planning = async move {
        let planned = &planned;
        // By index: a closure taking `&Entry` would make the download future not `Send` (a
        // higher-ranked lifetime rustc cannot see through).
        let units = &units(request);
        let planner = &Planner {
            client,
            request,
            include: &include,
            exclude: &exclude,
            config,
            planned,
        };
        stream::iter(0..units.len())
            .map(|at| async move {
                match &units[at] {
                    Unit::One(at) => plan(planner, &request.entries[*at]).await,
                    Unit::Siblings(group) => siblings(planner, group).await,
                }
            })
            .buffer_unordered(PLANNERS)
            .concat()
            .await
    };
    let queue = stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|job| (job, queue))
    });
    let state = Arc::new(Mutex::new(State::load(&dir)));
    let parents = Arc::new(Parents::new(dir.clone()));
    let journal = Arc::new(Journal::open(&dir));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let fetching = queue
        .map(|job| {
            let (dir, state, summary) = (dir.clone(), state.clone(), summary.clone());
            let parents = parents.clone();
            let journal = journal.clone();
            let bucket = request.bucket.clone();
            async move {
                let outcome = fetch(
                    client, &bucket, &job, &dir, &parents, &state, &summary, config, events,
                )
                .await;
                // Recorded as soon as it lands, not when the run ends: a kill must not
                // forget what was already verified.
                if let Ok(Outcome::Fetched { .. }) = outcome
                    && !job.marker
                {
                    let path = job.path.display().to_string();
                    let landed = Landed {
                        key: job.key.clone(),
                        etag: job.stamp.clone(),
                        size: job.size,
                    };
                    journal.record(&path, &landed);
                    if let Ok(mut state) = state.lock() {
                        state.files.insert(path, landed);
                    }
                }
                match outcome {
                    Ok(Outcome::Fetched { .. }) => emit(
                        events,
                        Event::Done {
                            key: job.key.clone(),
                        },
                    ),
                    Ok(Outcome::Skipped) => emit(
                        events,
                        Event::Skipped {
                            key: job.key.clone(),
                        },
                    ),
                    Err(_) => {}
                }
                (job, outcome)
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect::<Vec<(Job, Result<Outcome, Failure>)>>();
    let (mut failures, outcomes) = futures::join!(planning, fetching);

    sweep(&dir, outcomes.iter().map(|(job, _)| job));
    let mut summary = summary
        .lock()
        .map(|summary| summary.clone())
        .unwrap_or_default();
    for (job, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Fetched { bytes, check }) => {
                summary.objects += 1;
                summary.bytes += bytes;
                match check {
                    Check::None => summary.unverified += 1,
                    Check::Crc => summary.crc_checked += 1,
                    Check::Etag => {}
                }
            }
            Ok(Outcome::Skipped) => summary.skipped += 1,
            Err(failure) => failures.push(object(
                failure.kind,
                &format!("s3://{}/{}", request.bucket, job.key),
                failure.message,
            )),
        }
    }
    drop(journal);
    if let Ok(state) = state.lock()
        && let Err(error) = state.save(&dir)
    {
        tracing::warn!("cannot save the transfer state (a rerun will fetch again): {error}");
    }
    summary.finish(failures, started)
}

/// What every planner works with: where to list, which keys a directory keeps, and the queue
/// its jobs go to.
#[derive(Clone, Copy)]
struct Planner<'a> {
    client: &'a Client,
    request: &'a Download,
    include: &'a Option<GlobSet>,
    exclude: &'a Option<GlobSet>,
    config: &'a Config,
    planned: &'a tokio::sync::mpsc::Sender<Job>,
}

/// Lists what one entry names and sends each object to fetch as soon as its listing page is
/// in; what cannot be fetched (missing, hostile, a failed listing) comes back as failures.
async fn plan(planner: &Planner<'_>, entry: &Entry) -> Vec<ObjectError> {
    let Planner {
        client,
        request,
        include,
        exclude,
        config,
        planned,
    } = *planner;
    let mut failures = Vec::new();
    match entry {
        Entry::File { from, to } => {
            let key = join_key(&request.prefix, from);
            let path = match named_path(&key, to) {
                Ok(path) => path,
                Err(failure) => {
                    failures.push(failure);
                    return failures;
                }
            };
            // Listing, not HEAD: some servers (s3s-fs) answer 500 to a HEAD on a prefix.
            let listing = Listing {
                prefix: &key,
                max_keys: Some(2),
                ..Listing::default()
            };
            match list_page(client, &request.bucket, listing, config).await {
                Ok(page) => match page
                    .contents()
                    .iter()
                    .find(|object| object.key() == Some(key.as_str()))
                {
                    Some(object) => send_named(key, path, object, planned).await,
                    None => {
                        let message =
                            if has_objects(client, &request.bucket, &format!("{key}/")).await {
                                "is a prefix, not an object: pull it as a directory (dirs)"
                            } else {
                                "does not exist"
                            };
                        failures.push(object(
                            ErrorKind::NotFound,
                            &format!("s3://{}/{key}", request.bucket),
                            message.to_owned(),
                        ));
                    }
                },
                Err(failure) => {
                    failures.push(object(
                        failure.kind,
                        &format!("s3://{}/{key}", request.bucket),
                        failure.message,
                    ));
                }
            }
        }
        Entry::Dir { from, to } => {
            let base = join_key(&request.prefix, from);
            let list_prefix = if base.is_empty() {
                String::new()
            } else {
                format!("{}/", base.trim_end_matches('/'))
            };
            let mut listed = 0usize;
            let mut token = None;
            loop {
                let listing = Listing {
                    prefix: &list_prefix,
                    token: token.take(),
                    ..Listing::default()
                };
                match list_page(client, &request.bucket, listing, config).await {
                    Err(failure) => {
                        failures.push(object(
                            failure.kind,
                            &format!("s3://{}/{list_prefix}", request.bucket),
                            format!("listing failed: {}", failure.message),
                        ));
                        break;
                    }
                    Ok(page) => {
                        token = page
                            .next_continuation_token()
                            .filter(|_| page.is_truncated() == Some(true))
                            .map(str::to_owned);
                        for object in page.contents() {
                            let Some(key) = object.key() else { continue };
                            listed += 1;
                            let relative = &key[list_prefix.len().min(key.len())..];
                            if relative.is_empty() {
                                continue;
                            }
                            let matched = include.as_ref().is_none_or(|set| set.is_match(relative))
                                && !exclude.as_ref().is_some_and(|set| set.is_match(relative));
                            if !matched {
                                continue;
                            }
                            let size = object.size().unwrap_or(0).max(0) as u64;
                            match local_path(relative).and_then(|path| under(to, &path)) {
                                Ok(path) => {
                                    let _ = planned
                                        .send(Job {
                                            key: key.to_owned(),
                                            size,
                                            stamp: stamp(object.e_tag(), object.last_modified()),
                                            path,
                                            marker: key.ends_with('/') && size == 0,
                                        })
                                        .await;
                                }
                                Err(error) => failures.push(crate::object(ErrorKind::HostileKey, key, format!("refused: the key {error}, so it could land outside the destination"))),
                            }
                        }
                        if token.is_none() {
                            break;
                        }
                    }
                }
            }
            if listed == 0
                && !failures
                    .iter()
                    .any(|failure| failure.key.ends_with(&list_prefix))
            {
                failures.push(object(
                    ErrorKind::NotFound,
                    &format!("s3://{}/{list_prefix}", request.bucket),
                    "no objects under this prefix".to_owned(),
                ));
            }
        }
    }
    failures
}

/// What one ListObjectsV2 request asks for.
#[derive(Default, Clone)]
struct Listing<'a> {
    prefix: &'a str,
    max_keys: Option<i32>,
    token: Option<String>,
    /// Keys after this one only.
    start_after: Option<String>,
    /// Direct children only: deeper keys fold into common prefixes.
    children: bool,
}

/// One ListObjectsV2 page, retried on transient failures as an object is: a listing that gives
/// up after the SDK's own few attempts would fail a whole pull for one dropped connection.
async fn list_page(
    client: &Client,
    bucket: &str,
    listing: Listing<'_>,
    config: &Config,
) -> Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output, Failure> {
    // No events: a listing is not an object a progress bar counts.
    let (page, _) = retrying(config, listing.prefix, &None, || async {
        client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(listing.prefix)
            .set_max_keys(listing.max_keys)
            .set_continuation_token(listing.token.clone())
            .set_start_after(listing.start_after.clone())
            .set_delimiter(listing.children.then(|| "/".to_owned()))
            .send()
            .await
            .map_err(s3_failure)
    })
    .await;
    page
}

/// What one planner looks up: an entry, or the named keys of one directory together.
enum Unit {
    One(usize),
    Siblings(Vec<usize>),
}

/// The request's entries as planning units: named keys grouped by their directory where it
/// names at least [`SIBLINGS`] of them.
fn units(request: &Download) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut directories: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (at, entry) in request.entries.iter().enumerate() {
        let Entry::File { from, .. } = entry else {
            units.push(Unit::One(at));
            continue;
        };
        let key = join_key(&request.prefix, from);
        // A key ending in `/` lists as a common prefix of its directory, not as an object.
        if key.is_empty() || key.ends_with('/') {
            units.push(Unit::One(at));
            continue;
        }
        directories
            .entry(parent(&key).to_owned())
            .or_default()
            .push(at);
    }
    for (_, group) in directories {
        if group.len() >= SIBLINGS {
            units.push(Unit::Siblings(group));
        } else {
            units.extend(group.into_iter().map(Unit::One));
        }
    }
    units
}

/// The directory a key is in, with its trailing `/` (empty at the top).
fn parent(key: &str) -> &str {
    key.rfind('/').map_or("", |end| &key[..=end])
}

/// Looks up named keys of one directory with one listing of its direct children, from just
/// before the first key to past the last, instead of one listing each (W4 names 504 keys of
/// one directory). It gives up after a page per [`SIBLINGS`] keys, when the keys are few among
/// many others. A key it does not find is looked up alone, which says why it is missing.
async fn siblings(planner: &Planner<'_>, group: &[usize]) -> Vec<ObjectError> {
    let Planner {
        client,
        request,
        config,
        planned,
        ..
    } = *planner;
    let mut failures = Vec::new();
    let mut wanted: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &at in group {
        if let Entry::File { from, .. } = &request.entries[at] {
            wanted
                .entry(join_key(&request.prefix, from))
                .or_default()
                .push(at);
        }
    }
    let (Some(first), Some(last)) = (wanted.keys().next(), wanted.keys().next_back()) else {
        return failures;
    };
    let parent = parent(first).to_owned();
    let last = last.clone();
    // All but the first key's last character sorts just before it.
    let mut start_after = first.clone();
    start_after.pop();
    let mut token = None;
    for _ in 0..group.len().div_ceil(SIBLINGS) {
        let listing = Listing {
            prefix: &parent,
            start_after: token.is_none().then(|| start_after.clone()),
            token: token.take(),
            children: true,
            ..Listing::default()
        };
        let Ok(page) = list_page(client, &request.bucket, listing, config).await else {
            break;
        };
        for object in page.contents() {
            let Some((key, found)) = object.key().and_then(|key| wanted.remove_entry(key)) else {
                continue;
            };
            for at in found {
                let Entry::File { to, .. } = &request.entries[at] else {
                    continue;
                };
                match named_path(&key, to) {
                    Ok(path) => send_named(key.clone(), path, object, planned).await,
                    Err(failure) => failures.push(failure),
                }
            }
        }
        let past = page
            .contents()
            .last()
            .and_then(|object| object.key())
            .is_some_and(|key| key >= last.as_str());
        token = page
            .next_continuation_token()
            .filter(|_| page.is_truncated() == Some(true))
            .map(str::to_owned);
        if wanted.is_empty() || past || token.is_none() {
            break;
        }
    }
    // One at a time: missing keys are few, and this planner counts as one connection.
    for at in wanted.into_values().flatten() {
        let entry = &request.entries[at];
        failures.extend(plan(planner, entry).await);
    }
    failures
}

/// Where a named key lands, or why it may not.
fn named_path(key: &str, to: &str) -> Result<PathBuf, ObjectError> {
    local_path(to).map_err(|error| {
        object(
            ErrorKind::HostileKey,
            key,
            format!("destination `{to}` {error}"),
        )
    })
}

/// Sends a named key's listed object to fetch.
async fn send_named(
    key: String,
    path: PathBuf,
    object: &aws_sdk_s3::types::Object,
    planned: &tokio::sync::mpsc::Sender<Job>,
) {
    // Closed only when the fetching has stopped; nothing is lost then.
    let _ = planned
        .send(Job {
            size: object.size().unwrap_or(0).max(0) as u64,
            stamp: stamp(object.e_tag(), object.last_modified()),
            key,
            path,
            marker: false,
        })
        .await;
}

async fn has_objects(client: &Client, bucket: &str, prefix: &str) -> bool {
    client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .max_keys(1)
        .send()
        .await
        .is_ok_and(|page| page.key_count().unwrap_or(0) > 0)
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    client: &Client,
    bucket: &str,
    job: &Job,
    dir: &Arc<Dir>,
    parents: &Parents,
    state: &Mutex<State>,
    summary: &Mutex<Summary>,
    config: &Config,
    events: &Events,
) -> Result<Outcome, Failure> {
    if job.marker {
        dir.create_dir_all(&job.path).map_err(Failure::io)?;
        return Ok(Outcome::Fetched {
            bytes: 0,
            check: Check::Etag,
        });
    }
    let landed = state
        .lock()
        .ok()
        .and_then(|state| state.files.get(&job.path.display().to_string()).cloned());
    if let Some(landed) = landed {
        let same = landed.etag == job.stamp && landed.size == job.size && !job.stamp.is_empty();
        let present = dir
            .symlink_metadata(&job.path)
            .is_ok_and(|meta| meta.is_file() && meta.len() == job.size);
        if same && present {
            return Ok(Outcome::Skipped);
        }
    }
    emit(
        events,
        Event::Started {
            key: job.key.clone(),
            size: job.size,
        },
    );
    let (result, retries) = retrying(config, &job.key, events, || {
        fetch_once(client, bucket, job, parents, config, events)
    })
    .await;
    if let Ok(mut summary) = summary.lock() {
        summary.retried += u64::from(retries);
    }
    result
}

/// Runs `run` until it succeeds, fails for good, or `config.attempts` are spent, waiting the
/// backoff between tries and saying each retry in an event; also how many retries it took. One
/// loop for objects, parts, listings and uploads, so none of them gives up after the SDK's own
/// few quick attempts.
pub(crate) async fn retrying<T, F, Fut>(
    config: &Config,
    key: &str,
    events: &Events,
    mut run: F,
) -> (Result<T, Failure>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 1;
    loop {
        match run().await {
            Err(failure) if failure.transient && attempt < config.attempts => {
                emit(
                    events,
                    Event::Retry {
                        key: key.to_owned(),
                        attempt,
                        cause: failure.message.clone(),
                    },
                );
                tokio::time::sleep(backoff(config, attempt, key)).await;
                attempt += 1;
            }
            result => return (result, attempt - 1),
        }
    }
}

/// Exponential backoff with jitter derived from the key and attempt (no RNG needed, and
/// different objects still spread out).
fn backoff(config: &Config, attempt: u32, key: &str) -> std::time::Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (key, attempt, std::time::SystemTime::now()).hash(&mut hasher);
    let base = config.backoff.saturating_mul(1 << (attempt - 1).min(6));
    base + base.mul_f64((hasher.finish() % 1000) as f64 / 1000.0)
}

/// The parts of a large object already on disk, kept beside its part file so a rerun resumes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Progress {
    stamp: String,
    size: u64,
    part_size: u64,
    etag: Option<String>,
    done: std::collections::BTreeSet<u64>,
}

impl Progress {
    fn load(dir: &Dir, path: &Path) -> Option<Progress> {
        serde_json::from_str(&dir.read_to_string(path).ok()?).ok()
    }

    fn save(&self, dir: &Dir, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let temporary = path.with_extension("plx-parts-tmp");
        let mut file = dir.create(&temporary)?;
        file.write_all(&serde_json::to_vec(self).unwrap_or_default())?;
        file.sync_all()?;
        dir.rename(&temporary, dir, path)
    }
}

/// Opens a part file through the sandbox, with the guard that removes it when `armed`.
pub(crate) fn open_part(
    dir: &Arc<Dir>,
    path: &Path,
    options: &cap_std::fs::OpenOptions,
    armed: bool,
) -> Result<(cap_std::fs::File, Temporary), Failure> {
    let file = dir.open_with(path, options).map_err(|error| {
        Failure::permanent(
            ErrorKind::HostileKey,
            format!("cannot create a file at {}: {error}", path.display()),
        )
    })?;
    Ok((
        file,
        Temporary {
            dir: dir.clone(),
            path: path.to_path_buf(),
            armed,
        },
    ))
}

/// Removes the temporary file unless the download completed.
pub(crate) struct Temporary {
    dir: Arc<Dir>,
    path: PathBuf,
    pub(crate) armed: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.dir.remove_file(&self.path);
        }
    }
}

async fn fetch_once(
    client: &Client,
    bucket: &str,
    job: &Job,
    parents: &Parents,
    config: &Config,
    events: &Events,
) -> Result<Outcome, Failure> {
    // From here on, every file is named inside the directory that holds it.
    let (dir, name) = parents
        .of(&job.path)
        .map_err(|message| Failure::permanent(ErrorKind::HostileKey, message))?;
    let dir = &dir;
    let name = name.to_string_lossy();
    let ranged = job.size >= config.multipart_threshold && job.size > config.part_size;
    // The GET's own ETag is what the bytes must match (listings may lack it, or be stale).
    let etag: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (temporary_path, progress, file, mut temporary) = if ranged && !job.stamp.is_empty() {
        // Large objects resume: a fixed hidden name, and a record of the parts already on disk.
        let temporary_path = PathBuf::from(format!(".{name}.plx-part"));
        let progress_path = PathBuf::from(format!(".{name}.plx-parts"));
        let previous = Progress::load(dir, &progress_path).filter(|previous| {
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
        let (file, temporary) = open_part(dir, &temporary_path, &options, false)?;
        let progress = previous.unwrap_or(Progress {
            stamp: job.stamp.clone(),
            size: job.size,
            part_size: config.part_size,
            etag: None,
            done: Default::default(),
        });
        if let (Some(seen), Ok(mut etag)) = (&progress.etag, etag.lock()) {
            *etag = Some(seen.clone());
        }
        (
            temporary_path,
            Some((progress_path, Mutex::new(progress))),
            file,
            temporary,
        )
    } else {
        let temporary_path = part_name(&name);
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).read(true).create_new(true);
        let (file, temporary) = open_part(dir, &temporary_path, &options, true)?;
        (temporary_path, None, file, temporary)
    };
    let file = Arc::new(file.into_std());

    // Each part's MD5, taken as its bytes stream in: a multipart ETag is checked from these
    // when the uploader's part size is ours, without reading the file again.
    let part_md5s: Mutex<BTreeMap<u64, [u8; 16]>> = Mutex::default();
    let part_crcs: Mutex<BTreeMap<u64, u64>> = Mutex::default();
    let mut stored = None;
    let streamed = if ranged {
        if config.verify {
            stored = stored_checksum(client, bucket, &job.key).await;
        }
        let crc = stored.map(|stored| stored.crc);
        file.set_len(job.size).map_err(Failure::io)?;
        let done = progress
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
            .map(|(start, end)| {
                let (etag, file, progress, part_md5s, part_crcs) =
                    (&etag, &file, &progress, &part_md5s, &part_crcs);
                async move {
                    let range = Range { start, end, crc };
                    let sum =
                        fetch_range(client, bucket, job, file, range, etag, config, events).await?;
                    match sum {
                        Sum::Md5(md5) => {
                            if let Ok(mut part_md5s) = part_md5s.lock() {
                                part_md5s.insert(start, md5);
                            }
                        }
                        Sum::Crc(value) => {
                            if let Ok(mut part_crcs) = part_crcs.lock() {
                                part_crcs.insert(start, value);
                            }
                        }
                        Sum::Off => {}
                    }
                    if let Some((path, progress)) = progress {
                        // Durable before recorded: a recorded part is really on disk.
                        file.sync_data().map_err(Failure::io)?;
                        if let Ok(mut progress) = progress.lock() {
                            progress.done.insert(start);
                            progress.etag = etag.lock().ok().and_then(|etag| etag.clone());
                            progress.save(dir, path).map_err(Failure::io)?;
                        }
                    }
                    emit(
                        events,
                        Event::PartDone {
                            key: job.key.clone(),
                            start,
                        },
                    );
                    Ok::<(), Failure>(())
                }
            })
            .buffer_unordered(config.part_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Sum::Off
    } else {
        // With checksum mode on, the store sends the CRC it keeps, and the SDK checks it as the
        // body streams. Not for a multipart object: Garage sends a composite CRC bare, and the
        // SDK would take it for the whole object's.
        let response = client
            .get_object()
            .bucket(bucket)
            .key(&job.key)
            .set_checksum_mode(
                etag_parts(&job.stamp)
                    .is_none()
                    .then_some(aws_sdk_s3::types::ChecksumMode::Enabled),
            )
            .send()
            .await
            .map_err(s3_failure)?;
        let response_etag = response
            .e_tag()
            .map(|etag| etag.trim_matches('"').to_owned());
        // A CRC over the whole object is checked instead of the ETag's MD5.
        stored = Stored::from_headers(
            response.checksum_crc64_nvme(),
            response.checksum_crc32_c(),
            response.checksum_crc32(),
            response.checksum_type(),
        )
        .filter(|stored| match stored.cover {
            checksum::Cover::Full => true,
            checksum::Cover::Unsaid => response_etag.as_deref().and_then(etag_parts).is_none(),
            checksum::Cover::Parts(_) => false,
        })
        .filter(|_| config.verify);
        if let Ok(mut etag) = etag.lock() {
            *etag = response_etag;
        }
        let mut body = response.body;
        let mut digest = Hasher::new(config.verify, stored.map(|stored| stored.crc));
        let mut written = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|error| {
            Failure::transient(
                ErrorKind::Transport,
                format!("the body broke off after {written} bytes: {error}"),
            )
        })? {
            file.write_all_at(&chunk, written).map_err(Failure::io)?;
            digest.update(&chunk);
            written += chunk.len() as u64;
            emit(events, Event::Bytes(chunk.len() as u64));
        }
        if written != job.size {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("got {written} bytes, the object has {}", job.size),
            ));
        }
        match digest.finish() {
            Sum::Crc(value) => {
                if let Ok(mut part_crcs) = part_crcs.lock() {
                    part_crcs.insert(0, value);
                }
                Sum::Off
            }
            sum => sum,
        }
    };
    file.sync_all().map_err(Failure::io)?;
    let length = file.metadata().map_err(Failure::io)?.len();
    if length != job.size {
        return Err(Failure::transient(
            ErrorKind::Corrupt,
            format!("{length} bytes landed, the object has {}", job.size),
        ));
    }
    let etag = etag
        .lock()
        .ok()
        .and_then(|etag| etag.clone())
        .unwrap_or_default();
    let seen = Parts {
        size: config.part_size,
        md5s: part_md5s.into_inner().unwrap_or_default(),
        crcs: Seen {
            part_size: if ranged { config.part_size } else { job.size },
            crcs: part_crcs.into_inner().unwrap_or_default(),
        },
    };
    let streamed_md5 = match streamed {
        Sum::Md5(md5) => Some(hex::encode(md5)),
        _ => None,
    };
    let checked = if config.verify {
        verify(
            client,
            bucket,
            job,
            &etag,
            &file,
            streamed_md5,
            stored,
            &seen,
        )
        .await
    } else {
        Ok(Check::None)
    };
    let check = match checked {
        Ok(check) => check,
        Err(failure) => {
            // Bad bytes are not worth resuming from.
            temporary.armed = true;
            if let Some((path, _)) = &progress {
                let _ = dir.remove_file(path);
            }
            return Err(failure);
        }
    };
    dir.rename(&temporary_path, dir, &*name).map_err(|error| {
        Failure::permanent(ErrorKind::Io, format!("cannot move into place: {error}"))
    })?;
    temporary.armed = false;
    if let Some((path, _)) = &progress {
        let _ = dir.remove_file(path);
    }
    Ok(Outcome::Fetched {
        bytes: job.size,
        check,
    })
}

/// What an object's bytes were checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: no checksum to check against (sizes only).
    None,
    /// The ETag's MD5 (of the parts' MD5s for a multipart ETag).
    Etag,
    /// The CRC the store keeps.
    Crc,
}

/// One ranged GET: bytes `start..=end`, hashed with `crc` (the stored checksum's) or MD5.
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    crc: Option<Crc>,
}

/// What bytes were hashed into as they came.
enum Sum {
    Off,
    Md5([u8; 16]),
    Crc(u64),
}

/// Hashes bytes as they stream: with the store's CRC where it keeps one, else with MD5 for the
/// ETag; not at all when verification is off.
enum Hasher {
    Off,
    Md5(Md5),
    // Boxed: the digest's tables make it 296 bytes, and one hasher lives per fetch.
    Crc(Box<crc_fast::Digest>),
}

impl Hasher {
    fn new(verify: bool, crc: Option<Crc>) -> Hasher {
        match (verify, crc) {
            (false, _) => Hasher::Off,
            (true, Some(crc)) => Hasher::Crc(Box::new(crc.digest())),
            (true, None) => Hasher::Md5(Md5::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Off => {}
            Hasher::Md5(md5) => md5.update(bytes),
            Hasher::Crc(crc) => crc.update(bytes),
        }
    }

    fn finish(self) -> Sum {
        match self {
            Hasher::Off => Sum::Off,
            Hasher::Md5(md5) => Sum::Md5(md5.finalize().into()),
            Hasher::Crc(crc) => Sum::Crc(crc.finalize()),
        }
    }
}

/// The CRC the store keeps for the whole object (`HEAD` with checksum mode on), if any.
async fn stored_checksum(client: &Client, bucket: &str, key: &str) -> Option<Stored> {
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .ok()?;
    Stored::from_headers(
        head.checksum_crc64_nvme(),
        head.checksum_crc32_c(),
        head.checksum_crc32(),
        head.checksum_type(),
    )
}

/// The parts count of a multipart ETag (`<md5 of the parts' MD5s>-<parts>`).
fn etag_parts(etag: &str) -> Option<u64> {
    let (md5, parts) = etag.trim_matches('"').split_once('-')?;
    let hex = md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit());
    parts.parse().ok().filter(|parts| hex && *parts > 0)
}

#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    client: &Client,
    bucket: &str,
    job: &Job,
    file: &std::fs::File,
    Range { start, end, crc }: Range,
    etag: &Mutex<Option<String>>,
    config: &Config,
    events: &Events,
) -> Result<Sum, Failure> {
    let (result, _) = retrying(config, &job.key, events, || async {
        let response = client
            .get_object()
            .bucket(bucket)
            .key(&job.key)
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(s3_failure)?;
        let part_etag = response
            .e_tag()
            .map(|etag| etag.trim_matches('"').to_owned());
        if let Ok(mut etag) = etag.lock() {
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
        let mut digest = Hasher::new(config.verify, crc);
        while let Some(chunk) = body.try_next().await.map_err(|error| {
            Failure::transient(
                ErrorKind::Transport,
                format!("part {start}-{end} broke off: {error}"),
            )
        })? {
            if offset + chunk.len() as u64 > end + 1 {
                return Err(Failure::transient(
                    ErrorKind::Corrupt,
                    format!("part {start}-{end} is longer than asked"),
                ));
            }
            file.write_all_at(&chunk, offset).map_err(Failure::io)?;
            digest.update(&chunk);
            offset += chunk.len() as u64;
            emit(events, Event::Bytes(chunk.len() as u64));
        }
        if offset != end + 1 {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("part {start}-{end} ended after {} bytes", offset - start),
            ));
        }
        Ok(digest.finish())
    })
    .await;
    result
}

/// The MD5 or CRC of each ranged part this run fetched, by offset.
struct Parts {
    size: u64,
    md5s: BTreeMap<u64, [u8; 16]>,
    crcs: Seen,
}

/// Checks the landed bytes: against the CRC the store keeps where it gave one (`stored`), else, or
/// if the CRC matches no way the object may have been cut into parts, against the ETag: the MD5
/// for single-part objects, the MD5 of the parts' MD5s for multipart ones. Returns whether a
/// checksum was checked, and which; a mismatch is an error.
#[allow(clippy::too_many_arguments)]
async fn verify(
    client: &Client,
    bucket: &str,
    job: &Job,
    etag: &str,
    file: &std::fs::File,
    streamed_md5: Option<String>,
    stored: Option<Stored>,
    seen: &Parts,
) -> Result<Check, Failure> {
    let etag = etag.to_ascii_lowercase();
    let parts = etag_parts(&etag);
    if let Some(stored) = stored {
        // A composite CRC is over the uploader's parts: which sizes they may have had.
        let parts = match stored.cover {
            checksum::Cover::Parts(parts) => Some(parts),
            checksum::Cover::Unsaid => parts,
            checksum::Cover::Full => None,
        };
        let sizes = match parts {
            Some(parts) => part_sizes(client, bucket, job, parts).await.1,
            None => Vec::new(),
        };
        if checksum::matches(stored, file, job.size, parts, &sizes, &seen.crcs)
            .map_err(Failure::io)?
        {
            return Ok(Check::Crc);
        }
        tracing::debug!(key = %job.key, "the stored CRC matches no part layout; checking the ETag");
    }
    let is_md5 = |text: &str| text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_md5(&etag) {
        let actual = match streamed_md5 {
            Some(md5) => md5,
            None => file_md5(file, 0, job.size).map_err(Failure::io)?,
        };
        return if actual == etag {
            Ok(Check::Etag)
        } else {
            Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("content MD5 {actual} does not match the ETag {etag}"),
            ))
        };
    }
    let (Some(parts), Some((md5, _))) = (parts, etag.split_once('-')) else {
        return Ok(Check::None);
    };
    let (told, candidates) = part_sizes(client, bucket, job, parts).await;
    for part_size in candidates {
        let mut combined = Md5::new();
        let mut offset = 0;
        while offset < job.size {
            let length = part_size.min(job.size - offset);
            // A part fetched by this run was hashed as it came; one a killed run left is read.
            let streamed = (part_size == seen.size)
                .then(|| seen.md5s.get(&offset))
                .flatten();
            match streamed {
                Some(md5) => combined.update(md5),
                None => combined.update(
                    hex::decode(file_md5(file, offset, length).map_err(Failure::io)?)
                        .unwrap_or_default(),
                ),
            }
            offset += length;
        }
        if hex::encode(combined.finalize()) == md5 {
            return Ok(Check::Etag);
        }
        if Some(part_size) == told {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("content does not match the multipart ETag {etag}"),
            ));
        }
    }
    Ok(Check::None)
}

/// The part sizes a multipart object of `parts` parts may have been uploaded with: the one the
/// store tells (also returned alone), then the usual ones.
async fn part_sizes(
    client: &Client,
    bucket: &str,
    job: &Job,
    parts: u64,
) -> (Option<u64>, Vec<u64>) {
    // A server that honours `?partNumber=1` says how large the parts are (and how many); one that
    // ignores it (s3s-fs) answers for the whole object, so only a parts count makes it trustworthy.
    let told = match client
        .head_object()
        .bucket(bucket)
        .key(&job.key)
        .part_number(1)
        .send()
        .await
    {
        Ok(head) if head.parts_count() == Some(parts as i32) => head
            .content_length()
            .filter(|size| *size > 0)
            .map(|size| size as u64),
        _ => None,
    };
    // Otherwise the uploader's part size was a whole number of MiB (5, 8, 16, ... in every common
    // tool) with `parts` parts: few sizes fit.
    let mib = 1024 * 1024;
    let mut candidates: Vec<u64> = told.into_iter().collect();
    candidates.extend(
        (1..=5 * 1024u64)
            .map(|n| n * mib)
            .filter(|size| job.size.div_ceil(*size) == parts)
            .take(8),
    );
    (told, candidates)
}

fn file_md5(file: &std::fs::File, start: u64, length: u64) -> std::io::Result<String> {
    let mut digest = Md5::new();
    checksum::read_range(file, start, length, |bytes| digest.update(bytes))?;
    Ok(hex::encode(digest.finalize()))
}
