//! Downloads: the request's types and the run that ties the parts together. Planning (`plan`)
//! lists what the request names and feeds a bounded queue that the fetchers (`fetch`) drain, so
//! the first object starts with the first listing page; each lands complete and verified or
//! not at all (`landing`, `verify`), and the run's state (`state`) lets a rerun skip it.

use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Instant,
};

use aws_sdk_s3::Client;
use cap_std::{ambient_authority, fs::Dir};
use futures::{StreamExt, stream};

use crate::{
    Config, Download, Error, ErrorKind, Event, Events, ObjectError, Pinned, Summary,
    cache::Cache,
    config::{PLANNERS, fitted},
    event::emit,
    fetch::{Fetcher, Outcome},
    flow::Flow,
    hedge::Hedge,
    job::Job,
    landing::sweep,
    path::Parents,
    plan::{PLANNED, Planner, plan, siblings},
    retry::Failure,
    select::{Unit, globs, units},
    space::Space,
    state::{Journal, Landed, State, open_state_dir},
    verify::Check,
};

/// Downloads `request` into `destination` (created if missing). Every object lands complete and
/// verified or not at all; a rerun skips what a previous run landed; no key can write outside
/// `destination`. Fails with every failed object named when any fails.
///
/// It works through a copy of `client` with an interceptor of its own ([`crate::flow::Busy`]).
/// The copy shares `client`'s HTTP client, and so its pooled connections, when `client`'s
/// configuration names one (plx-credentials' clients do); one made with the SDK's default
/// HTTP client gets a pool of its own per download.
pub async fn download(
    client: &Client,
    request: &Download,
    destination: &Path,
    config: &Config,
    events: &Events,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let config = &*fitted(config, request.cache.is_some());
    let fail = |failures: Vec<ObjectError>| {
        Err(Error {
            failures,
            summary: Box::default(),
        })
    };
    let dir = match open_destination(destination) {
        Ok(dir) => dir,
        Err(failure) => return fail(vec![failure]),
    };
    let (include, exclude) = match (globs(&request.include), globs(&request.exclude)) {
        (Ok(include), Ok(exclude)) => (include, exclude),
        (Err(error), _) | (_, Err(error)) => {
            return fail(vec![ObjectError::new(ErrorKind::NotFound, "", error)]);
        }
    };

    // The download's own client: the flow hears of every 503 from it, listings included.
    let (flow, client) = Flow::with_client(client, config);
    let client = &client;
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
    let state_dir = open_state_dir(destination, &dir, request.state.as_deref());
    let state = Mutex::new(State::load(state_dir.as_ref(), &dir));
    let parents = Parents::new(dir.clone());
    let journal = Journal::open(state_dir.as_ref());
    let space = Space::measure(destination);
    let cache = request
        .cache
        .as_ref()
        .and_then(|cache| Cache::open(cache, &request.bucket));
    let summary = Mutex::new(Summary::default());
    let hedge = Hedge::new();
    let large = tokio::sync::Semaphore::new(config.concurrency.max(1));
    let fetcher = &Fetcher {
        client,
        bucket: &request.bucket,
        dir: &dir,
        parents: &parents,
        state: &state,
        summary: &summary,
        config,
        events,
        flow: &flow,
        hedge: &hedge,
        large: &large,
        space: &space,
        cache: cache.as_ref(),
        manifest: request.manifest,
    };
    let journal = &journal;
    let fetching = queue
        .map(|job| async move {
            let outcome = fetcher.fetch(&job).await;
            record(fetcher, journal, &job, &outcome);
            (job, outcome)
        })
        // As many objects as requests may fly: each waits for its place in flight (`flow`).
        .buffer_unordered(config.request_cap())
        .collect::<Vec<(Job, Result<Outcome, Failure>)>>();
    let (mut failures, outcomes) = futures::join!(planning, fetching);

    sweep(
        &dir,
        outcomes
            .iter()
            .filter(|(job, _)| !job.marker)
            .map(|(job, _)| job.path.as_path()),
    );
    if let Some(cache) = &cache {
        cache.trim();
    }
    let mut summary = summary.into_inner().unwrap_or_default();
    summary.hedged = hedge.hedged.load(Ordering::Relaxed);
    summary.hedges_won = hedge.won.load(Ordering::Relaxed);
    summary.steps = flow.steps();
    tally(&mut summary, &mut failures, request, outcomes);
    summary.landed.sort_by(|a, b| a.path.cmp(&b.path));
    space.settle(destination, &mut failures);
    match (state.lock(), &state_dir) {
        (Ok(state), Some(state_dir)) => {
            if let Err(error) = state.save(state_dir, &dir) {
                tracing::warn!(
                    "cannot save the transfer state (a rerun will fetch again): {error}"
                );
            }
        }
        _ => tracing::warn!(
            "no place for the transfer state beside or in {} (a rerun will fetch again)",
            destination.display()
        ),
    }
    summary.finish(failures, started)
}

/// The destination, created if missing and opened as the sandbox every file is made in.
fn open_destination(destination: &Path) -> Result<Arc<Dir>, ObjectError> {
    let name = destination.display().to_string();
    std::fs::create_dir_all(destination).map_err(|error| {
        ObjectError::new(
            ErrorKind::Io,
            &name,
            format!("cannot create the destination: {error}"),
        )
    })?;
    Dir::open_ambient_dir(destination, ambient_authority())
        .map(Arc::new)
        .map_err(|error| {
            ObjectError::new(
                ErrorKind::Io,
                &name,
                format!("cannot open the destination: {error}"),
            )
        })
}

/// Records a fetched object the moment it lands, not when the run ends (a kill must not forget
/// what was already verified), and says it is done or skipped.
fn record(fetcher: &Fetcher<'_>, journal: &Journal, job: &Job, outcome: &Result<Outcome, Failure>) {
    if let Ok(Outcome::Fetched { got, .. }) = outcome
        && !job.marker
    {
        let path = job.path.display().to_string();
        let landed = Landed {
            key: job.key.clone(),
            etag: job.stamp.text(),
            size: job.size,
            got: Some(got.clone()),
        };
        journal.record(&path, &landed);
        if let Ok(mut state) = fetcher.state.lock() {
            state.files.insert(path, landed);
        }
    }
    let key = job.key.clone();
    match outcome {
        Ok(Outcome::Fetched { .. }) => emit(fetcher.events, Event::Done { key }),
        Ok(Outcome::Skipped { .. }) => emit(fetcher.events, Event::Skipped { key }),
        Err(_) => {}
    }
}

/// Counts what landed, how it was checked and what was skipped, names every failure, and keeps
/// what landed when the request asks for a manifest.
fn tally(
    summary: &mut Summary,
    failures: &mut Vec<ObjectError>,
    request: &Download,
    outcomes: Vec<(Job, Result<Outcome, Failure>)>,
) {
    let bucket = &request.bucket;
    for (job, outcome) in outcomes {
        if request.manifest
            && !job.marker
            && let Ok(outcome) = &outcome
        {
            let got = match outcome {
                Outcome::Fetched { got, .. } => Some(got),
                Outcome::Skipped { got } => got.as_ref(),
            };
            // Always there: with a manifest asked for, an object an older version's state
            // recorded without it is fetched again rather than skipped.
            if let Some(got) = got {
                summary.landed.push(Pinned {
                    key: job.key.clone(),
                    size: job.size,
                    etag: got.etag.clone(),
                    version_id: got.version_id.clone(),
                    checksum: got.checksum.clone(),
                    path: job.path.display().to_string(),
                });
            }
        }
        match outcome {
            Ok(Outcome::Fetched {
                bytes,
                check,
                cached,
                ..
            }) => {
                summary.objects += 1;
                summary.bytes += bytes;
                if cached {
                    summary.from_cache.objects += 1;
                    summary.from_cache.bytes += bytes;
                }
                match check {
                    Check::None => summary.unverified += 1,
                    Check::Crc => summary.crc_checked += 1,
                    Check::Etag => {}
                }
            }
            Ok(Outcome::Skipped { .. }) => summary.skipped += 1,
            Err(failure) => failures.push(failure.of(&format!("s3://{bucket}/{}", job.key))),
        }
    }
}
