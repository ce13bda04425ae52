//! Planning: listing what a request names (ListObjectsV2, page by page, with the retry loop)
//! and sending each object to the fetchers as soon as its page is in.

use std::{collections::BTreeMap, path::PathBuf};

use aws_sdk_s3::Client;
use globset::GlobSet;

use crate::{
    Config, Download, Entry, ErrorKind, ObjectError, Pinned,
    job::{Job, Stamp},
    path::{local_path, under},
    retry::{Failure, retrying, s3_failure},
    select::{SIBLINGS, join_key, named_path, parent},
};

/// Objects listed and waiting to be fetched: listing runs ahead of fetching by this much.
pub(crate) const PLANNED: usize = 4096;
/// What every planner works with: where to list, which keys a directory keeps, and the queue
/// its jobs go to.
#[derive(Clone, Copy)]
pub(crate) struct Planner<'a> {
    pub(crate) client: &'a Client,
    pub(crate) request: &'a Download,
    pub(crate) include: &'a Option<GlobSet>,
    pub(crate) exclude: &'a Option<GlobSet>,
    pub(crate) config: &'a Config,
    pub(crate) planned: &'a tokio::sync::mpsc::Sender<Job>,
}

/// Lists what one entry names and sends each object to fetch as soon as its listing page is
/// in; what cannot be fetched (missing, hostile, a failed listing) comes back as failures.
pub(crate) async fn plan(planner: &Planner<'_>, entry: &Entry) -> Vec<ObjectError> {
    match entry {
        Entry::File { from, to } => plan_file(planner, from, to).await,
        Entry::Dir { from, to } => plan_dir(planner, from, to).await,
        Entry::Path { from, to } => plan_path(planner, from, to).await,
        Entry::Pinned(pinned) => plan_pinned(planner, pinned).await,
    }
}

/// A pinned object goes to fetch as its manifest recorded it, without a listing: the GET
/// itself finds it missing or changed.
async fn plan_pinned(planner: &Planner<'_>, pinned: &Pinned) -> Vec<ObjectError> {
    match named_path(&pinned.key, &pinned.path) {
        Ok(path) => {
            let _ = planner
                .planned
                .send(Job {
                    key: pinned.key.clone(),
                    size: pinned.size,
                    stamp: Stamp::recorded(&pinned.etag),
                    path,
                    marker: false,
                    version: pinned.version_id.clone(),
                    pinned: true,
                })
                .await;
            Vec::new()
        }
        Err(failure) => vec![failure],
    }
}

/// A file if an object has exactly this key, else a directory.
async fn plan_path(planner: &Planner<'_>, from: &str, to: &str) -> Vec<ObjectError> {
    let Planner {
        request, planned, ..
    } = *planner;
    let key = join_key(&request.prefix, from);
    if !key.is_empty() {
        match exact(planner, &key).await {
            Err(failure) => {
                return vec![ObjectError::new(
                    failure.kind,
                    &format!("s3://{}/{key}", request.bucket),
                    format!("listing failed: {}", failure.message),
                )];
            }
            Ok(Some(found)) => {
                return match named_path(&key, to) {
                    Ok(path) => {
                        send_named(key.clone(), path, &found, planned).await;
                        Vec::new()
                    }
                    Err(failure) => vec![failure],
                };
            }
            Ok(None) => {}
        }
    }
    plan_dir(planner, from, to).await
}

/// One named key, sent to fetch, or said missing, or said to be a prefix.
async fn plan_file(planner: &Planner<'_>, from: &str, to: &str) -> Vec<ObjectError> {
    let Planner {
        client,
        request,
        planned,
        ..
    } = *planner;
    let key = join_key(&request.prefix, from);
    let path = match named_path(&key, to) {
        Ok(path) => path,
        Err(failure) => return vec![failure],
    };
    let found = match exact(planner, &key).await {
        Ok(found) => found,
        Err(failure) => return vec![failure.of(&format!("s3://{}/{key}", request.bucket))],
    };
    if let Some(found) = found {
        send_named(key, path, &found, planned).await;
        return Vec::new();
    }
    let message = if has_objects(client, &request.bucket, &format!("{key}/")).await {
        "is a prefix, not an object: pull it as a directory (dirs)"
    } else {
        "does not exist"
    };
    vec![ObjectError::new(
        ErrorKind::NotFound,
        &format!("s3://{}/{key}", request.bucket),
        message.to_owned(),
    )]
}

/// The object whose key is exactly `key`, found by listing it: not HEAD, since some servers
/// (s3s-fs) answer 500 to a HEAD on a prefix.
async fn exact(
    planner: &Planner<'_>,
    key: &str,
) -> Result<Option<aws_sdk_s3::types::Object>, Failure> {
    let listing = Listing {
        prefix: key,
        max_keys: Some(2),
        ..Listing::default()
    };
    let page = list_page(
        planner.client,
        &planner.request.bucket,
        listing,
        planner.config,
    )
    .await?;
    Ok(page
        .contents()
        .iter()
        .find(|object| object.key() == Some(key))
        .cloned())
}

/// Every object under a prefix, page by page, each sent to fetch as its page comes in.
async fn plan_dir(planner: &Planner<'_>, from: &str, to: &str) -> Vec<ObjectError> {
    let Planner {
        client,
        request,
        include,
        exclude,
        config,
        planned,
    } = *planner;
    let mut failures = Vec::new();
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
                failures.push(ObjectError::new(
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
                                    stamp: Stamp::listed(object.e_tag(), object.last_modified()),
                                    path,
                                    marker: key.ends_with('/') && size == 0,
                                    version: None,
                                    pinned: false,
                                })
                                .await;
                        }
                        Err(error) => failures.push(ObjectError::new(
                            ErrorKind::HostileKey,
                            key,
                            format!(
                                "refused: the key {error}, so it could land outside the destination"
                            ),
                        )),
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
        failures.push(ObjectError::new(
            ErrorKind::NotFound,
            &format!("s3://{}/{list_prefix}", request.bucket),
            "no objects under this prefix".to_owned(),
        ));
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

/// Looks up named keys of one directory with one listing of its direct children, from just
/// before the first key to past the last, instead of one listing each (W4 names 504 keys of
/// one directory). It gives up after a page per [`SIBLINGS`] keys, when the keys are few among
/// many others. A key it does not find is looked up alone, which says why it is missing.
pub(crate) async fn siblings(planner: &Planner<'_>, group: &[usize]) -> Vec<ObjectError> {
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
            stamp: Stamp::listed(object.e_tag(), object.last_modified()),
            key,
            path,
            marker: false,
            version: None,
            pinned: false,
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
